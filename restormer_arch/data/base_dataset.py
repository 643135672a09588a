"""What the folder datasets share: options, pairing, reader, pre-flight image checks, training patches, tensors.

A missing required option is a ``KeyError`` naming it: ``basicsr train|test`` build the datasets before anything is
written (:mod:`restormer_arch.options.build`) and make any constructor error one line naming the dataset. Images are
numpy arrays in OpenCV layout (HWC, BGR for colour, HxWx1 for gray, float32 in [0, 1]) until :func:`to_tensor`.
Random choices use Python's :mod:`random` (crop offsets, augmentation mode), which BasicSR's dataloader seeds per
worker.
"""
import random
from os import path as osp
from typing import Any, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch
import torch.utils.data as data

from .paths import collect_paths, listing
from .readers import ImageReader, check_images


def _check_distinct_result_names(samples: Sequence[Dict[str, str]], key: str) -> None:
    # Validation and basicsr test save each result as <dataset>/<stem of the input (key)>_<tag>.png and score it under
    # that stem: a.png and a.jpg, or x/a.png and y/a.png, would overwrite each other's image and mix their rows in
    # metrics.csv.
    by_stem: Dict[str, List[str]] = {}
    for sample in samples:
        path = sample[f'{key}_path']
        by_stem.setdefault(osp.splitext(osp.basename(path))[0], []).append(path)
    clashes = {stem: paths for stem, paths in by_stem.items() if len(paths) > 1}
    if clashes:
        stem, paths = next(iter(clashes.items()))
        raise ValueError(f'{len(clashes)} result name(s) would be shared by several images, e.g. "{stem}": '
                         f'{listing(paths)}. Results are saved and scored by file name without extension and folder; '
                         'rename the images or split them into separate datasets.')


def apply_dihedral(img: np.ndarray, mode: int) -> np.ndarray:
    """Apply one of the 8 flip/rot90 transforms: ``mode // 2`` quarter turns, then a vertical flip if ``mode`` odd."""
    out = np.rot90(img, k=mode // 2, axes=(0, 1))
    if mode % 2:
        out = out[::-1]
    return np.ascontiguousarray(out)


def to_tensor(img: np.ndarray, mean: Optional[Sequence[float]] = None,
              std: Optional[Sequence[float]] = None) -> torch.Tensor:
    """HWC BGR (or HxWx1) float image -> CHW RGB float32 tensor, optionally normalised ``(x - mean) / std``."""
    if img.shape[2] == 3:
        img = img[..., ::-1]  # BGR (OpenCV) -> RGB
    tensor = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32))
    if mean is not None:
        tensor = (tensor - torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)) / torch.tensor(
            std, dtype=torch.float32).view(-1, 1, 1)
    return tensor


class FolderDataset(data.Dataset):
    """Aligned images in folders, a ``meta_info_file`` list or BasicSR LMDBs (``dataroot_<key>`` per folder).

    Subclasses set :attr:`folder_keys` (inputs first, GT last) and :attr:`require_16bit`. Images are read in colour
    (``in_ch: 3``, default) or gray (``in_ch: 1``), 16-bit files as 8-bit with ``bit_depth: 8``. Items are ``{'lq',
    'gt', 'lq_path', 'gt_path'}``: ``lq`` is the input views concatenated along the channels, ``lq_path`` the first
    view's path.

    Attributes:
        opt: The dataset options.
        phase: ``'train'`` or the evaluation phase.
        backend: The ``io_backend`` options.
        folders: ``{key: folder}`` (``~`` expanded: BasicSR only expands dataroot_gt/lq).
        flag: How images are read (see :meth:`~restormer_arch.data.readers.ImageReader.read`).
        mean, std: Optional normalisation.
        gt_size: Training patch size (None outside training).
        paths: One ``{'<key>_path': path}`` dict per sample.
        reader: Reads the images (disk or LMDB).
    """

    folder_keys: Tuple[str, ...] = ('lq', 'gt')
    require_16bit = False

    def __init__(self, opt: Dict[str, Any]) -> None:
        super().__init__()
        name = type(self).__name__
        self.opt = opt
        self.phase = str(opt['phase'])  # BasicSR sets it from the datasets key (train / val / test_*)
        self.backend = dict(opt.get('io_backend') or {'type': 'disk'})
        if self.backend.get('type') not in ('disk', 'lmdb'):
            raise ValueError(f'{name}: io_backend type {self.backend.get("type")!r} is not supported; use io_backend: '
                             '{type: disk} or {type: lmdb}.')
        self.folders = {key: osp.expanduser(str(opt[f'dataroot_{key}'])) for key in self.folder_keys}
        in_ch, depth = opt.get('in_ch', 3), opt.get('bit_depth')
        if in_ch not in (1, 3):
            raise ValueError(f'{name}: in_ch must be 1 (grayscale) or 3 (RGB), got {in_ch!r}.')
        if depth not in (None, 8):
            raise ValueError(f'{name}: bit_depth must be 8 (read 16-bit images as 8-bit, as OpenCV does by default) '
                             f'or left out (keep every file\'s own depth), got {depth!r}.')
        self.flag = ('color' if in_ch == 3 else 'grayscale') + ('_8bit' if depth else '')
        self.mean, self.std = opt.get('mean'), opt.get('std')
        if (self.mean is None) != (self.std is None) or any(s == 0 for s in self.std or ()):
            raise ValueError(f'{name}: give both "mean" and "std" (no 0 in std) for normalisation, or neither.')
        self.gt_size: Optional[int] = None
        if self.phase == 'train':
            self.gt_size = opt['gt_size']
            if not isinstance(self.gt_size, int) or isinstance(self.gt_size, bool) or self.gt_size <= 0:
                raise ValueError(f'{name}: gt_size must be a positive integer (the training patch size), got '
                                 f'{self.gt_size!r}.')
            if opt.get('scale', 1) != 1:
                raise ValueError(f'{name}: only scale 1 is supported (restoration, LQ and GT have the same size), '
                                 f'got scale {opt["scale"]}; set "scale: 1" in the YAML file.')
        self.paths: List[Dict[str, str]] = collect_paths(self.folders, self.backend['type'],
                                                         opt.get('meta_info_file'), opt.get('filename_tmpl', '{}'))
        if self.phase != 'train':
            _check_distinct_result_names(self.paths, self.folder_keys[0])
        self.reader = ImageReader(self.backend, self.folders)
        no_padding = self.phase == 'train' and not opt.get('use_padding', True)
        check_images(self.reader, self.paths, self.folder_keys, name, opt, self.flag, self.require_16bit,
                     min_size=self.gt_size if no_padding else None)

    def read_sample(self, index: int) -> Tuple[Dict[str, str], List[np.ndarray]]:
        """The paths and images (in :attr:`folder_keys` order) of sample ``index``, training patches in training.

        Returns:
            ``(paths, images)``: float32 HWC images of equal size; in training cropped to ``gt_size`` at one place
            (after reflect-padding the bottom/right of smaller images with OpenCV's BORDER_REFLECT, as the official
            code always does, unless ``use_padding: false``) and with ``geometric_augs`` given one of the 8 flip/rot90
            modes (:func:`apply_dihedral`) alike, so inputs and targets stay aligned.

        Raises:
            ValueError: The images differ in size, or one is smaller than ``gt_size`` with ``use_padding: false``
                (both found by the image check when the dataset is built, unless ``check_images: false``).
        """
        paths = self.paths[index % len(self.paths)]
        names = [paths[f'{key}_path'] for key in self.folder_keys]
        imgs = [self.reader.read(path, key, self.flag) for path, key in zip(names, self.folder_keys)]
        sizes = [img.shape[:2] for img in imgs]
        if any(size != sizes[0] for size in sizes):
            listing = ', '.join(f'{n}: {s[0]}x{s[1]}' for n, s in zip(names, sizes))
            raise ValueError(f'input and target images differ in size ({listing}); restoration pairs must have the '
                             'same height and width (scale 1).')
        if self.phase != 'train':
            return paths, imgs
        (h, w), size = sizes[0], self.gt_size
        pad_h, pad_w = max(0, size - h), max(0, size - w)
        if self.opt.get('use_padding', True) and (pad_h or pad_w):
            # OpenCV drops a trailing channel axis of size 1, hence the reshape.
            imgs = [cv2.copyMakeBorder(img, 0, pad_h, 0, pad_w, cv2.BORDER_REFLECT).reshape(
                (h + pad_h, w + pad_w) + img.shape[2:]) for img in imgs]
            h, w = h + pad_h, w + pad_w
        top, left = random.randint(0, h - size), random.randint(0, w - size)
        imgs = [img[top:top + size, left:left + size] for img in imgs]
        if self.opt.get('geometric_augs', False):
            mode = random.randint(0, 7)
            imgs = [apply_dihedral(img, mode) for img in imgs]
        return paths, imgs

    def __getitem__(self, index: int) -> Dict[str, Any]:
        paths, imgs = self.read_sample(index)
        *inputs, gt = (to_tensor(img, self.mean, self.std) for img in imgs)
        return {'lq': torch.cat(inputs, dim=0), 'gt': gt, 'lq_path': paths[f'{self.folder_keys[0]}_path'],
                'gt_path': paths['gt_path']}

    def __len__(self) -> int:
        return len(self.paths)

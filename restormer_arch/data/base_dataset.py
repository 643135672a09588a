"""The constructor the folder datasets share: options, pairing, reader, pre-flight image checks.

A missing required option is a ``KeyError`` naming it: ``basicsr train|test`` build the datasets before anything is
written (:mod:`restormer_arch.options.build`) and make any constructor error one line naming the dataset.
"""
from os import path as osp
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.utils.data as data

from .paths import check_distinct_result_names, collect_paths
from .readers import ImageReader, check_images
from .transforms import check_same_size, make_train_patches, to_tensor


class FolderDataset(data.Dataset):
    """Aligned images in folders, a ``meta_info_file`` list or BasicSR LMDBs (``dataroot_<key>`` per folder).

    Subclasses set :attr:`folder_keys` (inputs first, GT last), :attr:`require_16bit`, and may override
    :meth:`read_flag` (default: ``in_ch``) and :meth:`configure` (their own options, checked before any file is
    listed). Items are ``{'lq', 'gt', 'lq_path', 'gt_path'}``: ``lq`` is the input views concatenated along the
    channels, ``lq_path`` the first view's path.

    Attributes:
        opt: The dataset options.
        phase: ``'train'`` or the evaluation phase.
        backend: The ``io_backend`` options.
        folders: ``{key: folder}`` (``~`` expanded: BasicSR only expands dataroot_gt/lq).
        flag: How images are read (see :func:`~restormer_arch.data.readers.to_dataset_image`).
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
        self.flag = self.read_flag(opt, name)
        self.mean, self.std = opt.get('mean'), opt.get('std')
        if (self.mean is None) != (self.std is None) or any(s == 0 for s in self.std or ()):
            raise ValueError(f'{name}: give both "mean" and "std" (no 0 in std) for normalisation, or neither.')
        self.configure(opt, name)
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
            check_distinct_result_names(self.paths, self.folder_keys[0])
        self.reader = ImageReader(self.backend, self.folders)
        no_padding = self.phase == 'train' and not opt.get('use_padding', True)
        check_images(self.reader, self.paths, self.folder_keys, name, opt, self.flag, self.require_16bit,
                     min_size=self.gt_size if no_padding else None)

    def read_flag(self, opt: Dict[str, Any], name: str) -> str:
        """How the images are read: ``in_ch`` 3 (default) colour, 1 gray (stored as ``self.in_ch``)."""
        self.in_ch = opt.get('in_ch', 3)
        if self.in_ch not in (1, 3):
            raise ValueError(f'{name}: in_ch must be 1 (grayscale) or 3 (RGB), got {self.in_ch!r}.')
        return 'color' if self.in_ch == 3 else 'grayscale'

    def configure(self, opt: Dict[str, Any], name: str) -> None:
        """Check and store the subclass's own options (called before any file is listed)."""

    def read_sample(self, index: int) -> Tuple[Dict[str, str], List[np.ndarray]]:
        """The paths and images (in :attr:`folder_keys` order) of sample ``index``, training patches in training.

        Returns:
            ``(paths, images)``: float32 HWC images of equal size; in training cropped to ``gt_size`` at one place
            (after reflect padding unless ``use_padding: false``) and augmented alike with ``geometric_augs``.
        """
        paths = self.paths[index % len(self.paths)]
        names = [paths[f'{key}_path'] for key in self.folder_keys]
        imgs = [self.reader.read(path, key, self.flag, self.require_16bit)
                for path, key in zip(names, self.folder_keys)]
        check_same_size(imgs, names)
        if self.phase == 'train':
            imgs = make_train_patches(imgs, self.gt_size, self.opt.get('use_padding', True),
                                      self.opt.get('geometric_augs', False))
        return paths, imgs

    def __getitem__(self, index: int) -> Dict[str, Any]:
        paths, imgs = self.read_sample(index)
        *inputs, gt = (to_tensor(img, self.mean, self.std) for img in imgs)
        return {'lq': torch.cat(inputs, dim=0), 'gt': gt, 'lq_path': paths[f'{self.folder_keys[0]}_path'],
                'gt_path': paths['gt_path']}

    def __len__(self) -> int:
        return len(self.paths)

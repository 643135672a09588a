"""The constructor the folder datasets share: options, pairing, reader, pre-flight image checks."""
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch.utils.data as data

from .image_checks import check_images
from .options import check_train_options, get_backend, get_folder, get_mean_std, get_phase
from .paths import check_distinct_result_names, collect_paths
from .readers import ImageReader
from .transforms import check_same_size, make_train_patches


class FolderDataset(data.Dataset):
    """Aligned images in folders, a ``meta_info_file`` list or BasicSR LMDBs (``dataroot_<key>`` per folder).

    Subclasses set :attr:`folder_keys` (GT last), :attr:`require_16bit`, and may override :meth:`read_flag` (default:
    ``in_ch``) and :meth:`configure` (their own options, checked before any file is listed).

    Attributes:
        opt: The dataset options.
        phase: ``'train'`` or the evaluation phase.
        backend: The ``io_backend`` options.
        folders: ``{key: folder}``.
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
        self.phase = get_phase(opt, name)
        self.backend = get_backend(opt, name)
        self.folders = {key: get_folder(opt, f'dataroot_{key}', name) for key in self.folder_keys}
        self.flag = self.read_flag(opt, name)
        self.mean, self.std = get_mean_std(opt, name)
        self.configure(opt, name)
        self.gt_size: Optional[int] = check_train_options(opt, name) if self.phase == 'train' else None
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
            imgs = make_train_patches(imgs, names, self.gt_size, self.opt.get('use_padding', True),
                                      self.opt.get('geometric_augs', False))
        return paths, imgs

    def __len__(self) -> int:
        return len(self.paths)

"""``Dataset_DefocusDeblur_DualPixel_16bit``: DPDD left/right dual-pixel views (16-bit) and the sharp target."""
from typing import Any, Dict

import torch
import torch.utils.data as data
from basicsr.utils.registry import DATASET_REGISTRY

from .data_utils import (
    ImageReader,
    check_images,
    check_same_size,
    check_train_options,
    collect_paths,
    get_backend,
    get_folder,
    get_mean_std,
    get_phase,
    make_train_patches,
    to_tensor,
)


@DATASET_REGISTRY.register()
class Dataset_DefocusDeblur_DualPixel_16bit(data.Dataset):  # noqa: N801  (official Restormer name)
    """Dual-pixel defocus deblurring: 16-bit PNG views ``dataroot_lqL``/``dataroot_lqR`` and target ``dataroot_gt``.

    Files are paired by name across the three folders (or LMDBs, or ``meta_info_file``), read at 16 bits (an 8-bit
    input is an error) and divided by 65535. Training pads, crops and augments all three at the same offsets. The
    input is the 6-channel ``concat([L, R])`` (L RGB, then R RGB), as expected by ``Restormer(inp_channels=6,
    dual_pixel_task=True)``.

    Args:
        opt: Dataset options: ``dataroot_gt``, ``dataroot_lqL``, ``dataroot_lqR``, ``io_backend``, ``phase``,
            ``gt_size`` (train), ``geometric_augs``, ``use_padding``, ``filename_tmpl``, ``meta_info_file``,
            ``mean``/``std`` (3 values, applied to each view), ``check_images`` (see :class:`Dataset_PairedImage`).

    Returns (per item):
        dict with ``lq`` (6xHxW), ``gt`` (3xHxW) float32 tensors in [0, 1], ``lq_path`` (the L view), ``gt_path``.
    """

    def __init__(self, opt: Dict[str, Any]) -> None:
        super().__init__()
        name = type(self).__name__
        self.opt = opt
        self.phase = get_phase(opt, name)
        self.backend = get_backend(opt, name)
        folders = {key: get_folder(opt, f'dataroot_{key}', name) for key in ('lqL', 'lqR', 'gt')}
        self.mean, self.std = get_mean_std(opt, name)
        if self.phase == 'train':
            self.gt_size = check_train_options(opt, name)
        self.paths = collect_paths(folders, self.backend['type'], opt.get('meta_info_file'),
                                   opt.get('filename_tmpl', '{}'))
        self.reader = ImageReader(self.backend, folders)
        check_images(self.reader, self.paths, ('lqL', 'lqR', 'gt'), name, opt, require_16bit=True,
                     min_size=self.gt_size if self.phase == 'train' and not opt.get('use_padding', True) else None)

    def __getitem__(self, index: int) -> Dict[str, Any]:
        paths = self.paths[index % len(self.paths)]
        keys = ('lqL', 'lqR', 'gt')
        names = [paths[f'{k}_path'] for k in keys]
        imgs = [self.reader.read(p, k, 'color', require_16bit=True) for p, k in zip(names, keys)]
        check_same_size(imgs, names)
        if self.phase == 'train':
            imgs = make_train_patches(imgs, names, self.gt_size, self.opt.get('use_padding', True),
                                      self.opt.get('geometric_augs', False))
        left, right, gt = (to_tensor(img, self.mean, self.std) for img in imgs)
        return {'lq': torch.cat([left, right], dim=0), 'gt': gt, 'lq_path': paths['lqL_path'],
                'gt_path': paths['gt_path']}

    def __len__(self) -> int:
        return len(self.paths)

    @classmethod
    def check_options(cls, opt: Dict[str, Any], phase: str) -> list[str]:
        """Problems with this dataset's options, found before it is built (``restormer_arch.options`` calls it)."""
        from restormer_arch.options import check_dataset_options

        return check_dataset_options(opt, phase, keys=('dataroot_lqL', 'dataroot_lqR'),
                                     required=('dataroot_gt', 'dataroot_lqL', 'dataroot_lqR'))

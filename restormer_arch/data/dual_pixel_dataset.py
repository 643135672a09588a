"""``Dataset_DefocusDeblur_DualPixel_16bit``: DPDD left/right dual-pixel views (16-bit) and the sharp target."""
from basicsr.utils.registry import DATASET_REGISTRY

from .base_dataset import FolderDataset


@DATASET_REGISTRY.register()
class Dataset_DefocusDeblur_DualPixel_16bit(FolderDataset):  # noqa: N801  (official Restormer name)
    """Dual-pixel defocus deblurring: 16-bit PNG views ``dataroot_lqL``/``dataroot_lqR`` and target ``dataroot_gt``.

    Files are paired by name across the three folders (or LMDBs, or ``meta_info_file``), 16-bit (an 8-bit view is
    refused by the image check, ``check_images``) and divided by 65535. Training pads, crops and augments all three at
    the same offsets. The input is the 6-channel ``concat([L, R])`` (L RGB, then R RGB), as expected by
    ``Restormer(inp_channels=6, dual_pixel_task=True)``.

    Args:
        opt: Dataset options: ``dataroot_gt``, ``dataroot_lqL``, ``dataroot_lqR``, ``io_backend``, ``phase``,
            ``gt_size`` (train), ``geometric_augs``, ``use_padding``, ``filename_tmpl``, ``meta_info_file``,
            ``mean``/``std`` (3 values, applied to each view), ``check_images`` (see :class:`Dataset_PairedImage`).

    Returns (per item):
        dict with ``lq`` (6xHxW), ``gt`` (3xHxW) float32 tensors in [0, 1], ``lq_path`` (the L view), ``gt_path``.
    """

    folder_keys = ('lqL', 'lqR', 'gt')
    require_16bit = True

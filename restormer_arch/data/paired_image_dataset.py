"""Paired folder datasets: ``Dataset_PairedImage``, aligned input/target pairs (deraining, motion/defocus deblurring,
real denoising), and ``Dataset_DefocusDeblur_DualPixel_16bit``, DPDD left/right dual-pixel views and the sharp target.
"""
from basicsr.utils.registry import DATASET_REGISTRY

from .base_dataset import FolderDataset


@DATASET_REGISTRY.register()
class Dataset_PairedImage(FolderDataset):  # noqa: N801  (official Restormer name, used by its option files)
    """Paired LQ/GT images read from folders, a meta-info list or BasicSR LMDBs.

    Modes (chosen from the options): ``io_backend: {type: lmdb}`` with ``.lmdb`` dataroots (keys from their
    ``meta_info.txt``); ``meta_info_file`` (one GT path per line, relative to ``dataroot_gt``; extra columns are
    ignored); otherwise both folders are listed and paired by file name (``filename_tmpl`` maps a GT name to its LQ
    name, default ``'{}'``). 8- and 16-bit images are read at full precision (divided by 255 or 65535).

    Training (``phase: train``): images smaller than ``gt_size`` are reflect-padded at the bottom/right
    (``use_padding``, default true), a ``gt_size`` patch is cropped at the same place in LQ and GT, and with
    ``geometric_augs: true`` one of the 8 flip/rot90 modes is applied to both. Validation/test: full images.

    Args:
        opt: Dataset options: ``dataroot_gt``, ``dataroot_lq``, ``io_backend``, ``phase``, ``gt_size`` (train),
            ``geometric_augs``, ``use_padding``, ``filename_tmpl``, ``meta_info_file``, ``in_ch`` (3: RGB, default;
            1: grayscale), ``bit_depth`` (8: read 16-bit files as 8-bit, the high byte, like OpenCV's default and the
            official single-image DPDD test), ``mean``/``std`` (optional normalisation), ``check_images`` (default
            true: every image header is checked when the dataset is built; ``decode``: decode every image; false:
            skip).

    Returns (per item):
        dict with ``lq``, ``gt`` (CHW float32 RGB tensors in [0, 1]) and ``lq_path``, ``gt_path``.
    """


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

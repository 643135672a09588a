"""Validation/test helpers of :class:`ImageCleanModel`: the images metrics see, and the (optionally tiled) forward.

``val.image_dtype`` says what the metrics compare (the restored image and the ground truth alike):

* ``uint8`` (default): BasicSR's ``tensor2img`` (clamped to [0, 1], x255, rounded): what the published numbers of
  deraining, motion deblurring and Gaussian denoising were computed on (saved 8-bit PNGs).
* ``uint16``: clamped, x65535, rounded - for 16-bit ground truth (DPDD dual-pixel): the 16-bit target survives
  exactly and the metrics take the peak 65535 from the dtype. Saved images are 16-bit PNGs.
* ``float32``: clamped to [0, 1], not quantised - the official DPDD and SIDD scripts score the network's float output.
  Every metric then needs ``data_range: 1``.

BasicSR's ``calculate_psnr`` / ``calculate_ssim`` hard-code the peak 255, so they only accept ``uint8``;
:func:`check_val_options` refuses other combinations before the run starts.

``val.tile`` / ``val.tile_overlap`` (and ``val.tile_blend``) run the network on overlapping tiles
(:func:`restormer_arch.tiling.tiled_forward`: bounded memory for huge test images) through
:func:`restormer_arch.tiling.run_network`, the one forward of restore and validation.
"""
from typing import Any, List, Mapping

import cv2
import numpy as np
from basicsr.utils import tensor2img
from torch import Tensor

from restormer_arch.data.image_io import write_image
from restormer_arch.tiling import BLEND_MODES, check_tile_options

IMAGE_DTYPES = ('uint8', 'uint16', 'float32')
UINT8_ONLY_METRICS = ('calculate_psnr', 'calculate_ssim', 'calculate_niqe')
DEFAULT_TILE_OVERLAP = 32


def check_val_options(val_opt: Mapping[str, Any]) -> List[str]:
    """Problems with ``val.image_dtype``, ``val.tile``, ``val.tile_overlap`` and the metrics they affect.

    Args:
        val_opt: The ``val`` section.

    Returns:
        One message per problem (empty when fine).
    """
    problems = []
    dtype = val_opt.get('image_dtype', 'uint8')
    if dtype not in IMAGE_DTYPES:
        problems.append(f'val.image_dtype: {dtype!r} is not one of {", ".join(IMAGE_DTYPES)}.')
    for name, metric in (val_opt.get('metrics') or {}).items():
        kind = (metric or {}).get('type')
        if dtype != 'uint8' and kind in UINT8_ONLY_METRICS:
            problems.append(f'val.metrics.{name}: BasicSR\'s {kind} assumes uint8 images (peak 255) but '
                            f'val.image_dtype is {dtype}; use calculate_psnr_rgb_matlab (PSNR with the peak of the '
                            'dtype or data_range) or remove image_dtype.')
        elif dtype == 'float32' and (metric or {}).get('data_range') is None:
            problems.append(f'val.metrics.{name}: val.image_dtype float32 passes images in [0, 1]; add '
                            '"data_range: 1" to this metric.')
    if val_opt.get('tile') is not None:
        try:  # the one tile rule of restore, validation and the library
            check_tile_options(val_opt['tile'], val_opt.get('tile_overlap', DEFAULT_TILE_OVERLAP))
        except ValueError as err:
            problems.append(f'val.tile / val.tile_overlap: {err}')
    blend = val_opt.get('tile_blend', 'cosine')
    if blend not in BLEND_MODES:
        problems.append(f'val.tile_blend: {blend!r} is not one of {", ".join(BLEND_MODES)}.')
    return problems


def to_metric_image(tensor: Tensor, dtype: str = 'uint8') -> np.ndarray:
    """A ``(C, H, W)`` RGB (or gray) tensor in [0, 1] as the ``H x W (x 3)`` BGR array the metrics receive.

    Args:
        tensor: One image.
        dtype: ``uint8``, ``uint16`` or ``float32`` (see the module docstring).

    Returns:
        HWC BGR array (HW for one channel), like BasicSR's ``tensor2img``.
    """
    if dtype == 'uint8':
        return tensor2img([tensor])
    img = tensor.detach().float().cpu().clamp_(0, 1).numpy().transpose(1, 2, 0)
    if dtype == 'uint16':
        img = np.round(img * 65535.0).astype(np.uint16)
    img = img[..., 0] if img.shape[2] == 1 else cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    return np.ascontiguousarray(img)


def save_val_image(img: np.ndarray, path: str) -> None:
    """Write a validation/test image atomically (:func:`~restormer_arch.data.image_io.write_image`): uint8 and uint16
    as they are, float32 (in [0, 1]) as 8-bit.

    Args:
        img: ``(H, W)`` or ``(H, W, C)`` BGR from :func:`to_metric_image`.
        path: Output file (its folder is created).
    """
    if img.dtype == np.float32:
        img = np.round(img * 255.0).astype(np.uint8)
    write_image(path, img, 16 if img.dtype == np.uint16 else 8)


__all__ = ['IMAGE_DTYPES', 'check_val_options', 'to_metric_image', 'save_val_image']

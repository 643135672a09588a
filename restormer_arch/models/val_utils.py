"""Validation/test helpers of :class:`ImageCleanModel`: the images metrics see, and the (optionally tiled) forward.

``val.image_dtype`` says what the metrics compare (the restored image and the ground truth alike):

* ``uint8`` (default): BasicSR's ``tensor2img`` (clamped to [0, 1], x255, rounded): what the published numbers of
  deraining, motion deblurring and Gaussian denoising were computed on (saved 8-bit PNGs).
* ``uint16``: clamped, x65535, rounded - for 16-bit ground truth (DPDD dual-pixel): the 16-bit target survives
  exactly and the metrics take the peak 65535 from the dtype. Saved images are 16-bit PNGs.
* ``float32``: clamped to [0, 1], not quantised - the official DPDD and SIDD scripts score the network's float output.
  Every metric then needs ``data_range: 1``.

BasicSR's ``calculate_psnr`` / ``calculate_ssim`` hard-code the peak 255, so they only accept ``uint8``;
the option check refuses other combinations before the run starts (:mod:`restormer_arch.options.rules`).

``val.tile`` / ``val.tile_overlap`` (and ``val.tile_blend``) run the network on overlapping tiles
(:func:`restormer_arch.tiling.tiled_forward`: bounded memory for huge test images) through
:func:`restormer_arch.tiling.run_network`, the one forward of restore and validation.
"""

import cv2
import numpy as np
from basicsr.utils import tensor2img
from torch import Tensor

from restormer_arch.data.image_io import write_image

IMAGE_DTYPES = ('uint8', 'uint16', 'float32')
UINT8_ONLY_METRICS = ('calculate_psnr', 'calculate_ssim', 'calculate_niqe')
DEFAULT_TILE_OVERLAP = 32


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
    """Write a validation/test image atomically (:func:`~restormer_arch.data.image_io.write_image`).

    Args:
        img: ``(H, W)`` or ``(H, W, C)`` BGR from :func:`to_metric_image`: uint8/uint16 saved as they are, float32 (in
            [0, 1]) as 8-bit (rounded by :func:`~restormer_arch.data.image_io.write_image`).
        path: Output file (its folder is created).
    """
    write_image(path, img, 16 if img.dtype == np.uint16 else 8)


__all__ = ['IMAGE_DTYPES', 'to_metric_image', 'save_val_image']

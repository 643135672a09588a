"""RealBlur-J / RealBlur-R evaluation: ECC alignment of the restored image to the ground truth, then masked metrics.

RealBlur's reference and blurred images are not perfectly registered, so its protocol (``evaluate_realblur.py`` of
the benchmark, used by the Restormer paper) first aligns the restored image to the ground truth:

1. Images as float in [0, 1]. Intensity matching: the restored image ``z`` is scaled by ``sum(x z) / sum(z z)``.
2. ``cv2.findTransformECC`` estimates a **homography** from the gray ground truth (template) to the gray scaled
   restored image: identity start, 100 iterations, termination epsilon 0, Gaussian pre-filter size 5.
3. The scaled restored image is warped onto the ground-truth grid (``warpPerspective``, bicubic, ``WARP_INVERSE_MAP``,
   reflected borders), and a validity mask (ones warped with nearest interpolation and a zero border) marks the pixels
   that came from inside the image. Both images are multiplied by the mask.
4. **PSNR** = ``10 log10(1 / (sum of squared errors / number of valid values))`` (peak 1).
5. **SSIM**: skimage-style Gaussian SSIM (sigma 1.5, window 11, population covariance, L = 1, 'reflect' filtering) per
   channel; the map is multiplied by the mask, the 5-pixel rim is dropped, each channel's map is averaged over its valid
   pixels, and the channels are averaged.

:func:`calculate_psnr_realblur` and :func:`calculate_ssim_realblur` share the alignment of the last pair they saw, so
computing both costs one ECC run.
"""
import hashlib
from typing import Dict, Optional, Tuple

import cv2
import numpy as np
from basicsr.utils.registry import METRIC_REGISTRY

from ._common import check_channel_order, default_data_range, prepare_pair, ssim_map

__all__ = ['align_realblur', 'calculate_psnr_realblur', 'calculate_ssim_realblur']

ECC_ITERATIONS = 100
_RIM = 5  # radius of the 11-pixel SSIM window
_last_alignment: Dict[str, tuple] = {}


def align_realblur(restored: np.ndarray, gt: np.ndarray,
                   channel_order: str = 'bgr') -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Align ``restored`` to ``gt`` with the RealBlur protocol (intensity matching + ECC homography).

    Args:
        restored: ``(H, W, C)`` float image in [0, 1].
        gt: ``(H, W, C)`` float ground truth in [0, 1].
        channel_order: ``'bgr'`` or ``'rgb'`` (only used for the gray conversion fed to ECC).

    Returns:
        ``(aligned, gt_masked, mask, warp)``: the aligned and masked restored image, the masked ground truth, the
        validity mask (same shape, 0/1) and the 3x3 homography.
    """
    z, x = restored.astype(np.float32), gt.astype(np.float32)
    z = z * (np.sum(x * z) / max(float(np.sum(z * z)), 1e-12))
    if z.shape[2] == 3:
        code = cv2.COLOR_BGR2GRAY if check_channel_order(channel_order) == 'bgr' else cv2.COLOR_RGB2GRAY
        x_gray, z_gray = cv2.cvtColor(x, code), cv2.cvtColor(z, code)
    else:
        x_gray, z_gray = x[..., 0], z[..., 0]
    warp = np.eye(3, dtype=np.float32)
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, ECC_ITERATIONS, 0)
    try:
        _, warp = cv2.findTransformECC(x_gray, z_gray, warp, cv2.MOTION_HOMOGRAPHY, criteria, None, 5)
    except cv2.error as err:
        raise RuntimeError(f'RealBlur ECC alignment did not converge ({err}); are the two images of the same '
                           'scene?') from err
    h, w = x.shape[:2]
    flags = cv2.WARP_INVERSE_MAP
    aligned = cv2.warpPerspective(z, warp, (w, h), flags=cv2.INTER_CUBIC + flags, borderMode=cv2.BORDER_REFLECT)
    mask = cv2.warpPerspective(np.ones_like(z), warp, (w, h), flags=cv2.INTER_NEAREST + flags,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    aligned, mask = aligned.reshape(z.shape), mask.reshape(z.shape)
    return aligned * mask, x * mask, mask, warp


def _aligned_pair(img, img2, crop_border: int, input_order: str, data_range: Optional[float],
                  channel_order: str) -> tuple:
    a, b = prepare_pair(img, img2, crop_border, input_order)
    peak = default_data_range(img, data_range)
    key = hashlib.blake2b(a.tobytes() + b'|' + b.tobytes() + repr((a.shape, peak, channel_order)).encode(),
                          digest_size=16).hexdigest()
    if key not in _last_alignment:
        _last_alignment.clear()
        _last_alignment[key] = align_realblur(a / peak, b / peak, channel_order)
    return _last_alignment[key]


@METRIC_REGISTRY.register()
def calculate_psnr_realblur(img, img2, crop_border: int = 0, input_order: str = 'HWC',
                            data_range: Optional[float] = None, channel_order: str = 'bgr', **kwargs) -> float:
    """RealBlur PSNR: ECC-aligned, masked, peak 1 on [0, 1] images.

    Args:
        img: Restored image (uint8-range values by default).
        img2: Ground truth.
        crop_border: Pixels cropped on each border before the alignment (protocol: 0).
        input_order: ``'HWC'`` or ``'CHW'``.
        data_range: Value of white in the inputs; default 255 (65535 for uint16).
        channel_order: ``'bgr'`` (BasicSR) or ``'rgb'``.
        **kwargs: Ignored.

    Returns:
        PSNR in dB.
    """
    aligned, gt, mask, _ = _aligned_pair(img, img2, crop_border, input_order, data_range, channel_order)
    err = np.sum((gt.astype(np.float64) - aligned) ** 2) / np.sum(mask, dtype=np.float64)
    return float('inf') if err == 0 else float(10 * np.log10(1.0 / err))


@METRIC_REGISTRY.register()
def calculate_ssim_realblur(img, img2, crop_border: int = 0, input_order: str = 'HWC',
                            data_range: Optional[float] = None, channel_order: str = 'bgr', **kwargs) -> float:
    """RealBlur SSIM: ECC-aligned, per-channel Gaussian SSIM map masked and averaged over the valid pixels.

    Args:
        img: Restored image (uint8-range values by default).
        img2: Ground truth.
        crop_border: Pixels cropped on each border before the alignment (protocol: 0).
        input_order: ``'HWC'`` or ``'CHW'``.
        data_range: Value of white in the inputs; default 255 (65535 for uint16).
        channel_order: ``'bgr'`` (BasicSR) or ``'rgb'``.
        **kwargs: Ignored.

    Returns:
        Mean SSIM.
    """
    aligned, gt, mask, _ = _aligned_pair(img, img2, crop_border, input_order, data_range, channel_order)
    ssim = ssim_map(gt.astype(np.float64), aligned.astype(np.float64), 1.0, axes=(0, 1), mode='reflect')
    ssim, mask = (ssim * mask)[_RIM:-_RIM, _RIM:-_RIM], mask[_RIM:-_RIM, _RIM:-_RIM]
    per_channel = ssim.sum(axis=(0, 1)) / np.maximum(mask.sum(axis=(0, 1)), 1)
    return float(per_channel.mean())

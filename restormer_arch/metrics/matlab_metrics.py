"""PSNR / SSIM exactly as the MATLAB evaluation scripts of the Restormer paper compute them, in numpy.

Two protocols are implemented (all inputs hold uint8-range values, like the PNGs the MATLAB scripts read):

**Deraining** (Rain100L/H, Test100, Test1200, Test2800; ``evaluate_PSNR_SSIM.m``) - :func:`calculate_psnr_y_matlab`,
:func:`calculate_ssim_y_matlab`:

* Y channel of MATLAB's ``rgb2ycbcr`` (ITU-R BT.601, studio swing 16-235):
  ``Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255``. MATLAB returns uint8 for uint8 input, so for uint8 images the
  Y plane is rounded to integers (half away from zero) exactly like MATLAB; float inputs are not rounded.
* PSNR with peak 255 on the Y plane, no border crop.
* SSIM is Wang et al.'s original ``ssim_index``: 11x11 Gaussian window (sigma 1.5, normalised), K1 = 0.01,
  K2 = 0.03, L = 255, ``filter2(..., 'valid')`` (the 5-pixel rim where the window does not fit is left out), mean of
  the SSIM map.

**GoPro / HIDE** (``evaluate_gopro_hide.m``) - :func:`calculate_psnr_rgb_matlab`, :func:`calculate_ssim_rgb_matlab`:

* MATLAB ``psnr(A, ref)`` on the RGB uint8 images: MSE over all pixels and channels, peak 255 (65535 for uint16).
* MATLAB ``ssim(A, ref)`` on the RGB uint8 images. ``ssim`` has no notion of colour channels: an ``H x W x 3`` array
  is a 3-D *volume*, so the statistics use a **3-D** Gaussian window (11x11x11, sigma 1.5) with ``'replicate'``
  padding on every axis - along the 3 colour planes too - and the result is the mean of the full-size SSIM map
  (no 'valid' crop, unlike ``ssim_index``). L = 255 (the range of the uint8 class), K1 = 0.01, K2 = 0.03; with unit
  exponents and C3 = C2/2 MATLAB's three-term formula reduces to the usual two-term SSIM implemented here.
  Gray (2-D) inputs get MATLAB's 2-D window with replicate padding.

The functions follow BasicSR's metric signature and are registered in ``METRIC_REGISTRY``, e.g.::

    metrics:
      psnr: {type: calculate_psnr_y_matlab, crop_border: 0}
      ssim: {type: calculate_ssim_y_matlab, crop_border: 0}

BasicSR hands metrics BGR images (``tensor2img(rgb2bgr=True)``), hence ``channel_order='bgr'`` by default for the
Y-channel metrics; pass ``channel_order: rgb`` for RGB arrays. The RGB metrics do not depend on the channel order.
"""
from typing import Optional

import numpy as np
from basicsr.utils.registry import METRIC_REGISTRY

from ._common import check_channel_order, default_data_range, prepare_pair, psnr_from_mse, ssim_map

__all__ = ['rgb2y_matlab', 'calculate_psnr_y_matlab', 'calculate_ssim_y_matlab', 'calculate_psnr_rgb_matlab',
           'calculate_ssim_rgb_matlab']

# MATLAB rgb2ycbcr, first row of the transform for values in [0, 255] (the offset 16 is added separately).
_Y_COEFFS_RGB = np.array([65.481, 128.553, 24.966]) / 255.0
_WINDOW_RADIUS = 5  # 11x11 window


def rgb2y_matlab(img: np.ndarray, channel_order: str = 'bgr', round_uint8: Optional[bool] = None) -> np.ndarray:
    """Y channel of MATLAB's ``rgb2ycbcr`` for images holding uint8-range values.

    Args:
        img: ``(H, W, 3)`` image, values in [0, 255] (uint8 or float).
        channel_order: ``'bgr'`` (OpenCV / BasicSR) or ``'rgb'``.
        round_uint8: Round Y to integers like MATLAB does for uint8 input. Default: only for uint8 inputs.

    Returns:
        ``(H, W)`` float64 Y plane in [16, 235].
    """
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f'rgb2y_matlab needs an (H, W, 3) image, got shape {img.shape}.')
    coeffs = _Y_COEFFS_RGB if check_channel_order(channel_order) == 'rgb' else _Y_COEFFS_RGB[::-1]
    y = 16.0 + img.astype(np.float64) @ coeffs
    if round_uint8 is None:
        round_uint8 = img.dtype == np.uint8
    if round_uint8:
        y = np.clip(np.floor(y + 0.5), 0, 255)  # MATLAB rounds half away from zero; y > 0 here
    return y


def _y_planes(img, img2, crop_border: int, input_order: str, channel_order: str):
    a, b = prepare_pair(img, img2, crop_border, input_order)
    if a.shape[2] == 1:  # already gray: MATLAB's scripts skip rgb2ycbcr for 2-D images
        return a[..., 0], b[..., 0]
    rounding = [np.asarray(x).dtype == np.uint8 for x in (img, img2)]
    return (rgb2y_matlab(a, channel_order, rounding[0]), rgb2y_matlab(b, channel_order, rounding[1]))


@METRIC_REGISTRY.register()
def calculate_psnr_y_matlab(img, img2, crop_border: int = 0, input_order: str = 'HWC', channel_order: str = 'bgr',
                            **kwargs) -> float:
    """Deraining PSNR: MATLAB ``rgb2ycbcr`` Y channel, peak 255.

    Args:
        img: Restored image, uint8-range values (``HWC`` or ``CHW``).
        img2: Ground-truth image.
        crop_border: Pixels cropped on each border (the paper's protocol uses 0).
        input_order: ``'HWC'`` or ``'CHW'``.
        channel_order: ``'bgr'`` (BasicSR default) or ``'rgb'``.
        **kwargs: Ignored (BasicSR passes the whole metric option dict).

    Returns:
        PSNR in dB (``inf`` for identical Y planes).
    """
    y, y2 = _y_planes(img, img2, crop_border, input_order, channel_order)
    return psnr_from_mse(float(np.mean((y - y2) ** 2)), 255.0)


@METRIC_REGISTRY.register()
def calculate_ssim_y_matlab(img, img2, crop_border: int = 0, input_order: str = 'HWC', channel_order: str = 'bgr',
                            **kwargs) -> float:
    """Deraining SSIM: Wang et al.'s ``ssim_index`` (Gaussian 11/1.5, L=255, 'valid') on the MATLAB Y channel.

    Args:
        img: Restored image, uint8-range values (``HWC`` or ``CHW``).
        img2: Ground-truth image.
        crop_border: Pixels cropped on each border (the paper's protocol uses 0).
        input_order: ``'HWC'`` or ``'CHW'``.
        channel_order: ``'bgr'`` (BasicSR default) or ``'rgb'``.
        **kwargs: Ignored.

    Returns:
        Mean SSIM over the valid region.
    """
    y, y2 = _y_planes(img, img2, crop_border, input_order, channel_order)
    if min(y.shape) < 2 * _WINDOW_RADIUS + 1:
        raise ValueError(f'SSIM needs images of at least 11x11 pixels (after crop_border), got {y.shape}.')
    r = _WINDOW_RADIUS
    # 'valid' filtering = the full map without the rim where the window overhangs, so the padding mode is irrelevant.
    ssim = ssim_map(y, y2, 255.0, axes=(0, 1), mode='nearest')[r:-r, r:-r]
    return float(ssim.mean())


@METRIC_REGISTRY.register()
def calculate_psnr_rgb_matlab(img, img2, crop_border: int = 0, input_order: str = 'HWC',
                              data_range: Optional[float] = None, **kwargs) -> float:
    """GoPro/HIDE PSNR: MATLAB ``psnr`` over all RGB values, peak 255 (65535 for uint16 inputs).

    Args:
        img: Restored image (``HWC`` or ``CHW``; gray or RGB).
        img2: Ground-truth image.
        crop_border: Pixels cropped on each border.
        input_order: ``'HWC'`` or ``'CHW'``.
        data_range: Peak value; default from the dtype of ``img`` (255, or 65535 for uint16).
        **kwargs: Ignored.

    Returns:
        PSNR in dB.
    """
    a, b = prepare_pair(img, img2, crop_border, input_order)
    return psnr_from_mse(float(np.mean((a - b) ** 2)), default_data_range(img, data_range))


@METRIC_REGISTRY.register()
def calculate_ssim_rgb_matlab(img, img2, crop_border: int = 0, input_order: str = 'HWC',
                              data_range: Optional[float] = None, **kwargs) -> float:
    """GoPro/HIDE SSIM: MATLAB ``ssim`` on the RGB image as a 3-D volume (11x11x11 Gaussian, replicate, full mean).

    Args:
        img: Restored image (``HWC`` or ``CHW``; gray or RGB).
        img2: Ground-truth image.
        crop_border: Pixels cropped on each border.
        input_order: ``'HWC'`` or ``'CHW'``.
        data_range: Dynamic range L; default from the dtype of ``img`` (255, or 65535 for uint16).
        **kwargs: Ignored.

    Returns:
        Mean SSIM.
    """
    a, b = prepare_pair(img, img2, crop_border, input_order)
    axes = (0, 1) if a.shape[2] == 1 else (0, 1, 2)
    return float(ssim_map(a, b, default_data_range(img, data_range), axes=axes, mode='nearest').mean())

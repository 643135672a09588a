"""Helpers shared by the metric modules: input normalisation, cropping and Gaussian filtering."""
from typing import Optional, Tuple

import numpy as np
from scipy import ndimage

CHANNEL_ORDERS = ('bgr', 'rgb')


def to_hwc_array(img, input_order: str = 'HWC') -> np.ndarray:
    """Return ``img`` as an ``(H, W, C)`` numpy array without changing its dtype.

    Args:
        img: Numpy array or torch tensor (``HW``, ``HWC``/``CHW`` or ``1CHW``).
        input_order: ``'HWC'`` or ``'CHW'``.

    Returns:
        The image as an ``(H, W, C)`` array.
    """
    if input_order not in ('HWC', 'CHW'):
        raise ValueError(f"input_order must be 'HWC' or 'CHW', got {input_order!r}.")
    if hasattr(img, 'detach'):  # torch tensor (BasicSR passes numpy, but tensors are accepted for convenience)
        img = img.detach().cpu().numpy()
    img = np.asarray(img)
    if img.ndim == 4 and img.shape[0] == 1:
        img = img[0]
    if img.ndim == 2:
        return img[..., None]
    if img.ndim != 3:
        raise ValueError(f'Expected a 2-D or 3-D image, got shape {img.shape}.')
    return img.transpose(1, 2, 0) if input_order == 'CHW' else img


def prepare_pair(img, img2, crop_border: int = 0, input_order: str = 'HWC') -> Tuple[np.ndarray, np.ndarray]:
    """Bring a metric's two inputs to float64 ``(H, W, C)`` arrays of the same shape and crop their borders.

    Args:
        img: First image (the restored one in BasicSR's calls).
        img2: Second image (the ground truth).
        crop_border: Pixels cropped from each border before the metric.
        input_order: ``'HWC'`` or ``'CHW'``.

    Returns:
        The two cropped float64 arrays.
    """
    a, b = to_hwc_array(img, input_order), to_hwc_array(img2, input_order)
    if a.shape != b.shape:
        raise ValueError(f'Image shapes differ: {a.shape} vs {b.shape}. Metrics compare images of the same size.')
    if crop_border:
        crop = (slice(crop_border, -crop_border), slice(crop_border, -crop_border))
        a, b = a[crop], b[crop]
    return a.astype(np.float64), b.astype(np.float64)


def default_data_range(img, data_range: Optional[float]) -> float:
    """The peak value: ``data_range`` if given, else 65535 for uint16 inputs and 255 for everything else."""
    if data_range is not None:
        return float(data_range)
    dtype = getattr(img, 'dtype', None)
    return 65535.0 if str(dtype) in ('uint16', 'torch.uint16') else 255.0


def check_channel_order(channel_order: str) -> str:
    order = channel_order.lower()
    if order not in CHANNEL_ORDERS:
        raise ValueError(f"channel_order must be 'bgr' (OpenCV/BasicSR images) or 'rgb', got {channel_order!r}.")
    return order


def gaussian_kernel_1d(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    """Normalised 1-D Gaussian; the outer product of two of them is MATLAB's ``fspecial('gaussian', size, sigma)``."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    kernel = np.exp(-x ** 2 / (2 * sigma ** 2))
    return kernel / kernel.sum()


def gaussian_filter(img: np.ndarray, axes: Tuple[int, ...], mode: str, size: int = 11,
                    sigma: float = 1.5) -> np.ndarray:
    """Separable Gaussian filtering of ``img`` along ``axes`` (scipy ``mode``: 'nearest' = MATLAB 'replicate')."""
    kernel = gaussian_kernel_1d(size, sigma)
    out = img
    for axis in axes:
        out = ndimage.correlate1d(out, kernel, axis=axis, mode=mode)
    return out


def ssim_map(a: np.ndarray, b: np.ndarray, data_range: float, axes: Tuple[int, ...], mode: str,
             size: int = 11, sigma: float = 1.5, k1: float = 0.01, k2: float = 0.03) -> np.ndarray:
    """Per-pixel SSIM with Gaussian-weighted local statistics (population covariance, as Wang et al. and MATLAB).

    Args:
        a: First image (float64).
        b: Second image (float64, same shape).
        data_range: Dynamic range L of the pixel values (C1 = (k1 L)^2, C2 = (k2 L)^2).
        axes: Axes the Gaussian window extends over (2-D window: (0, 1); MATLAB's 3-D window: (0, 1, 2)).
        mode: Border handling of the filter (scipy ``ndimage`` mode); irrelevant where the caller crops 'valid'.
        size: Window size.
        sigma: Window standard deviation.
        k1: SSIM constant K1.
        k2: SSIM constant K2.

    Returns:
        The SSIM map, same shape as the inputs.
    """
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2

    def blur(x: np.ndarray) -> np.ndarray:
        return gaussian_filter(x, axes, mode, size, sigma)

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a ** 2
    var_b = blur(b * b) - mu_b ** 2
    cov = blur(a * b) - mu_a * mu_b
    numerator = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    denominator = (mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2)
    return numerator / denominator


def psnr_from_mse(mse: float, peak: float) -> float:
    """``10 log10(peak^2 / mse)``; ``inf`` for identical images (as MATLAB's ``psnr``)."""
    return float('inf') if mse == 0 else float(10.0 * np.log10(peak ** 2 / mse))

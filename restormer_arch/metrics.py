"""Evaluation metrics with the protocols of the Restormer paper, registered in BasicSR's ``METRIC_REGISTRY``.

==============================  ==============================================================================
name                            protocol
==============================  ==============================================================================
``calculate_psnr_y_matlab``     deraining: PSNR on MATLAB ``rgb2ycbcr`` Y (uint8-rounded), peak 255
``calculate_ssim_y_matlab``     deraining: Wang et al. ``ssim_index`` (Gaussian 11/1.5, 'valid') on that Y
``calculate_psnr_rgb_matlab``   GoPro / HIDE / SIDD: MATLAB ``psnr`` on RGB
``calculate_ssim_rgb_matlab``   GoPro / HIDE / SIDD: MATLAB ``ssim`` on RGB as a 3-D volume
``calculate_psnr_realblur``     RealBlur: ECC homography alignment, masked PSNR
``calculate_ssim_realblur``     RealBlur: ECC homography alignment, masked Gaussian SSIM
``calculate_ssim_dpdd``         DPDD: scikit-image default SSIM (7x7 uniform window), channels averaged
``calculate_mae``               DPDD: mean absolute error on [0, 1]
``calculate_lpips``             DPDD: LPIPS AlexNet (optional ``lpips`` package)
==============================  ==============================================================================

BasicSR's own ``calculate_psnr`` / ``calculate_ssim`` stay available under their names; these exist only where a
protocol differs from them: BasicSR's PSNR has peak 255 whatever the data (wrong for uint16 and [0, 1] floats), its
Y channel is not rounded like MATLAB's, and its SSIM is a per-channel 2-D Gaussian SSIM (not MATLAB's 3-D volume, nor
scikit-image's uniform window). In the options::

    metrics:
      psnr: {type: calculate_psnr_y_matlab, crop_border: 0}
      ssim: {type: calculate_ssim_y_matlab, crop_border: 0}

**Arguments shared by every metric** (BasicSR calls ``metric(img=..., img2=..., **metric_options)``):

* ``img``, ``img2``: the restored image and the ground truth, numpy arrays or tensors of one shape (``HW``,
  ``HWC``/``CHW`` or ``1CHW``). Their dtype gives the default peak: 65535 for uint16, 255 for everything else.
* ``crop_border``: pixels cropped from each border before the metric (the paper's protocols use 0).
* ``input_order``: ``'HWC'`` (BasicSR) or ``'CHW'``.
* ``data_range``: the value of white in the inputs; default from the dtype (see above); 1 for [0, 1] floats. The
  Y-channel metrics always use 255.
* ``channel_order``: ``'bgr'`` (BasicSR hands metrics ``tensor2img(rgb2bgr=True)`` images) or ``'rgb'``; used by the
  Y-channel, RealBlur and LPIPS metrics, where the colour planes are not interchangeable.
* Other keys are ignored (BasicSR passes the whole metric option dict), except ``net`` and ``device`` of LPIPS.

The protocols in detail, with the benchmarks they belong to: ``options/test/README.md`` ("Evaluation protocols").
"""
import functools
import hashlib
from typing import Callable, Dict, Optional, Tuple

import cv2
import numpy as np
import torch
from basicsr.utils.registry import METRIC_REGISTRY
from scipy import ndimage

__all__ = ['calculate_psnr_y_matlab', 'calculate_ssim_y_matlab', 'calculate_psnr_rgb_matlab',
           'calculate_ssim_rgb_matlab', 'calculate_psnr_realblur', 'calculate_ssim_realblur', 'calculate_mae',
           'calculate_ssim_dpdd', 'calculate_lpips', 'rgb2y_matlab', 'align_realblur', 'LPIPS_INSTALL_HINT']

# MATLAB rgb2ycbcr, first row of the transform for values in [0, 255] (the offset 16 is added separately).
_Y_COEFFS_RGB = np.array([65.481, 128.553, 24.966]) / 255.0
_RIM = 5  # radius of the 11-pixel Gaussian SSIM window
# Normalised 11-tap Gaussian, sigma 1.5; the outer product of two is MATLAB's fspecial('gaussian', 11, 1.5).
_GAUSSIAN = np.exp(-np.arange(-_RIM, _RIM + 1, dtype=np.float64) ** 2 / (2 * 1.5 ** 2))
_GAUSSIAN /= _GAUSSIAN.sum()
LPIPS_INSTALL_HINT = ("pip install 'restormer-basicsr[lpips]' (or: pip install lpips); the first use downloads "
                      "torchvision's AlexNet weights into $TORCH_HOME (pre-fill that cache on offline machines)")
_last_alignment: Dict[str, tuple] = {}
_lpips_models = {}


def _to_hwc(img, input_order: str) -> np.ndarray:
    # The image as an (H, W, C) numpy array of its own dtype (tensors are accepted for convenience).
    if hasattr(img, 'detach'):
        img = img.detach().cpu().numpy()
    img = np.asarray(img)
    if img.ndim == 4 and img.shape[0] == 1:
        img = img[0]
    if img.ndim == 2:
        return img[..., None]
    if img.ndim != 3:
        raise ValueError(f'Expected a 2-D or 3-D image, got shape {img.shape}.')
    return img.transpose(1, 2, 0) if input_order == 'CHW' else img


def _channel_order(channel_order: str) -> str:
    order = channel_order.lower()
    if order not in ('bgr', 'rgb'):
        raise ValueError(f"channel_order must be 'bgr' (OpenCV/BasicSR images) or 'rgb', got {channel_order!r}.")
    return order


def _metric(fn: Callable[..., float]) -> Callable[..., float]:
    """Register ``fn(a, b, peak, channel_order, uint8, **kwargs)`` as a metric with the shared arguments.

    ``a`` and ``b`` are the float64 ``(H, W, C)`` images after ``crop_border``, ``peak`` the value of white,
    ``uint8`` whether each input was uint8 (MATLAB rounds its Y plane then).
    """
    @functools.wraps(fn)
    def metric(img, img2, crop_border: int = 0, input_order: str = 'HWC', data_range: Optional[float] = None,
               channel_order: str = 'bgr', **kwargs) -> float:
        # Unknown spellings would silently pick the wrong layout (or colour weights), hence refused.
        if input_order not in ('HWC', 'CHW'):
            raise ValueError(f"input_order must be 'HWC' or 'CHW', got {input_order!r}.")
        order = _channel_order(channel_order)
        a, b = _to_hwc(img, input_order), _to_hwc(img2, input_order)
        if a.shape != b.shape:
            raise ValueError(f'Image shapes differ: {a.shape} vs {b.shape}. Metrics compare images of the same size.')
        if crop_border:
            crop = (slice(crop_border, -crop_border),) * 2
            a, b = a[crop], b[crop]
        peak = float(data_range) if data_range is not None else 65535.0 if a.dtype == np.uint16 else 255.0
        return float(fn(a.astype(np.float64), b.astype(np.float64), peak, order,
                        (a.dtype == np.uint8, b.dtype == np.uint8), **kwargs))

    del metric.__wrapped__  # help() and inspect show the arguments BasicSR passes, not fn's
    return METRIC_REGISTRY.register()(metric)


def _gaussian(axes: Tuple[int, ...], mode: str) -> Callable[[np.ndarray], np.ndarray]:
    # Local means under the 11-tap (per axis) Gaussian window along `axes`; `mode` is scipy's border handling
    # ('nearest' = MATLAB 'replicate').
    def blur(x: np.ndarray) -> np.ndarray:
        for axis in axes:
            x = ndimage.correlate1d(x, _GAUSSIAN, axis=axis, mode=mode)
        return x
    return blur


def _ssim_map(a: np.ndarray, b: np.ndarray, data_range: float, mean: Callable[[np.ndarray], np.ndarray],
              sample: float = 1.0) -> np.ndarray:
    # Per-pixel SSIM from the local means `mean` (K1 = 0.01, K2 = 0.03); population (co)variances as Wang et al. and
    # MATLAB, times `sample` = N / (N - 1) for scikit-image's sample covariance.
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_a, mu_b = mean(a), mean(b)
    var_a, var_b = sample * (mean(a * a) - mu_a ** 2), sample * (mean(b * b) - mu_b ** 2)
    cov = sample * (mean(a * b) - mu_a * mu_b)
    return (2 * mu_a * mu_b + c1) * (2 * cov + c2) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))


def _psnr(mse: float, peak: float) -> float:
    # inf for identical images, as MATLAB's psnr
    return float('inf') if mse == 0 else float(10.0 * np.log10(peak ** 2 / mse))


# --------------------------------------------------------------------------------------------- MATLAB (deraining)
def rgb2y_matlab(img: np.ndarray, channel_order: str = 'bgr', round_uint8: Optional[bool] = None) -> np.ndarray:
    """Y channel of MATLAB's ``rgb2ycbcr`` for images holding uint8-range values.

    Args:
        img: ``(H, W, 3)`` image, values in [0, 255] (uint8 or float).
        channel_order: ``'bgr'`` (OpenCV / BasicSR) or ``'rgb'``.
        round_uint8: Round Y to integers like MATLAB does for uint8 input. Default: only for uint8 inputs.

    Returns:
        ``(H, W)`` float64 Y plane in [16, 235].
    """
    coeffs = _Y_COEFFS_RGB if _channel_order(channel_order) == 'rgb' else _Y_COEFFS_RGB[::-1]
    y = 16.0 + img.astype(np.float64) @ coeffs
    if (img.dtype == np.uint8) if round_uint8 is None else round_uint8:
        y = np.clip(np.floor(y + 0.5), 0, 255)  # MATLAB rounds half away from zero; y > 0 here
    return y


def _y_planes(a: np.ndarray, b: np.ndarray, channel_order: str, uint8: Tuple[bool, bool]):
    if a.shape[2] == 1:  # already gray: MATLAB's scripts skip rgb2ycbcr for 2-D images
        return a[..., 0], b[..., 0]
    return rgb2y_matlab(a, channel_order, uint8[0]), rgb2y_matlab(b, channel_order, uint8[1])


@_metric
def calculate_psnr_y_matlab(a, b, peak, channel_order, uint8, **kwargs) -> float:
    """Deraining PSNR: MATLAB ``rgb2ycbcr`` Y channel, peak 255.

    Args:
        img, img2, crop_border, input_order, channel_order: Shared by every metric (see the module docstring).

    Returns:
        PSNR in dB (``inf`` for identical Y planes).
    """
    y, y2 = _y_planes(a, b, channel_order, uint8)
    return _psnr(float(np.mean((y - y2) ** 2)), 255.0)


@_metric
def calculate_ssim_y_matlab(a, b, peak, channel_order, uint8, **kwargs) -> float:
    """Deraining SSIM: Wang et al.'s ``ssim_index`` (Gaussian 11/1.5, L=255, 'valid') on the MATLAB Y channel.

    Args:
        img, img2, crop_border, input_order, channel_order: Shared by every metric (see the module docstring).

    Returns:
        Mean SSIM over the valid region.

    Raises:
        ValueError: The images (after ``crop_border``) are smaller than the 11x11 window.
    """
    y, y2 = _y_planes(a, b, channel_order, uint8)
    if min(y.shape) < 2 * _RIM + 1:
        raise ValueError(f'SSIM needs images of at least 11x11 pixels (after crop_border), got {y.shape}.')
    # 'valid' filtering = the full map without the rim where the window overhangs, so the padding mode is irrelevant.
    return float(_ssim_map(y, y2, 255.0, _gaussian((0, 1), 'nearest'))[_RIM:-_RIM, _RIM:-_RIM].mean())


@_metric
def calculate_psnr_rgb_matlab(a, b, peak, channel_order, uint8, **kwargs) -> float:
    """GoPro/HIDE PSNR: MATLAB ``psnr`` over all values (gray or RGB), peak 255 (65535 for uint16 inputs).

    Args:
        img, img2, crop_border, input_order, data_range: Shared by every metric (see the module docstring).

    Returns:
        PSNR in dB.
    """
    return _psnr(float(np.mean((a - b) ** 2)), peak)


@_metric
def calculate_ssim_rgb_matlab(a, b, peak, channel_order, uint8, **kwargs) -> float:
    """GoPro/HIDE SSIM: MATLAB ``ssim`` on the RGB image as a 3-D volume (11x11x11 Gaussian, replicate, full mean).

    Args:
        img, img2, crop_border, input_order, data_range: Shared by every metric (see the module docstring); gray
            or RGB images.

    Returns:
        Mean SSIM.
    """
    # MATLAB's ssim has no colour channels: an H x W x 3 array is a volume, filtered along the planes too, and the
    # map is averaged whole (no 'valid' crop). With unit exponents and C3 = C2 / 2 its three-term formula is this one.
    return _ssim_map(a, b, peak, _gaussian((0, 1) if a.shape[2] == 1 else (0, 1, 2), 'nearest')).mean()


# --------------------------------------------------------------------------------------------------------- RealBlur
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

    Raises:
        RuntimeError: ECC did not converge (the images do not show one scene).
    """
    z, x = restored.astype(np.float32), gt.astype(np.float32)
    z = z * (np.sum(x * z) / max(float(np.sum(z * z)), 1e-12))
    if z.shape[2] == 3:
        code = cv2.COLOR_BGR2GRAY if _channel_order(channel_order) == 'bgr' else cv2.COLOR_RGB2GRAY
        x_gray, z_gray = cv2.cvtColor(x, code), cv2.cvtColor(z, code)
    else:
        x_gray, z_gray = x[..., 0], z[..., 0]
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 100, 0)  # 100 iterations, epsilon 0
    try:
        _, warp = cv2.findTransformECC(x_gray, z_gray, np.eye(3, dtype=np.float32), cv2.MOTION_HOMOGRAPHY, criteria,
                                       None, 5)
    except cv2.error as err:
        raise RuntimeError(f'RealBlur ECC alignment did not converge ({err}); are the two images of the same '
                           'scene?') from err
    size, flags = (x.shape[1], x.shape[0]), cv2.WARP_INVERSE_MAP
    aligned = cv2.warpPerspective(z, warp, size, flags=cv2.INTER_CUBIC + flags, borderMode=cv2.BORDER_REFLECT)
    mask = cv2.warpPerspective(np.ones_like(z), warp, size, flags=cv2.INTER_NEAREST + flags,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    aligned, mask = aligned.reshape(z.shape), mask.reshape(z.shape)
    return aligned * mask, x * mask, mask, warp


def _aligned_pair(a: np.ndarray, b: np.ndarray, peak: float, channel_order: str) -> tuple:
    key = hashlib.blake2b(a.tobytes() + b'|' + b.tobytes() + repr((a.shape, peak, channel_order)).encode(),
                          digest_size=16).hexdigest()
    if key not in _last_alignment:
        _last_alignment.clear()
        _last_alignment[key] = align_realblur(a / peak, b / peak, channel_order)
    return _last_alignment[key]


@_metric
def calculate_psnr_realblur(a, b, peak, channel_order, uint8, **kwargs) -> float:
    """RealBlur PSNR: ECC-aligned, masked, peak 1 on [0, 1] images.

    Args:
        img, img2, crop_border, input_order, data_range, channel_order: Shared by every metric (see the module
            docstring); ``crop_border`` applies before the alignment.

    Returns:
        PSNR in dB.
    """
    aligned, gt, mask, _ = _aligned_pair(a, b, peak, channel_order)
    return _psnr(np.sum((gt.astype(np.float64) - aligned) ** 2) / np.sum(mask, dtype=np.float64), 1.0)


@_metric
def calculate_ssim_realblur(a, b, peak, channel_order, uint8, **kwargs) -> float:
    """RealBlur SSIM: ECC-aligned, per-channel Gaussian SSIM map masked and averaged over the valid pixels.

    Args:
        img, img2, crop_border, input_order, data_range, channel_order: Shared by every metric (see the module
            docstring); ``crop_border`` applies before the alignment.

    Returns:
        Mean SSIM.
    """
    aligned, gt, mask, _ = _aligned_pair(a, b, peak, channel_order)
    ssim = _ssim_map(gt.astype(np.float64), aligned.astype(np.float64), 1.0, _gaussian((0, 1), 'reflect'))
    ssim, mask = (ssim * mask)[_RIM:-_RIM, _RIM:-_RIM], mask[_RIM:-_RIM, _RIM:-_RIM]
    return (ssim.sum(axis=(0, 1)) / np.maximum(mask.sum(axis=(0, 1)), 1)).mean()


# ------------------------------------------------------------------------------------------------------------- DPDD
@_metric
def calculate_mae(a, b, peak, channel_order, uint8, **kwargs) -> float:
    """Mean absolute error on the [0, 1] scale (DPDD protocol).

    Args:
        img, img2, crop_border, input_order, data_range: Shared by every metric (see the module docstring).

    Returns:
        The MAE in [0, 1].
    """
    return np.mean(np.abs(a - b)) / peak


@_metric
def calculate_ssim_dpdd(a, b, peak, channel_order, uint8, **kwargs) -> float:
    """DPDD SSIM: scikit-image's default SSIM (7x7 uniform window, sample covariance), channels averaged.

    Args:
        img, img2, crop_border, input_order, data_range: Shared by every metric (see the module docstring).

    Returns:
        Mean SSIM.

    Raises:
        ValueError: The images (after ``crop_border``) are smaller than the 7x7 window.
    """
    if min(a.shape[:2]) < 7:
        raise ValueError(f'SSIM needs images of at least 7x7 pixels (after crop_border), got {a.shape[:2]}.')
    ssim = _ssim_map(a / peak, b / peak, 1.0, lambda x: ndimage.uniform_filter(x, size=(7, 7, 1), mode='reflect'),
                     sample=49 / 48)  # 7x7 window, unbiased (N-1) local covariance
    return ssim[3:-3, 3:-3].mean(axis=(0, 1)).mean()  # without the rim where the window overhangs


@_metric
def calculate_lpips(a, b, peak, channel_order, uint8, net: str = 'alex', device: Optional[str] = None,
                    **kwargs) -> float:
    """LPIPS distance (AlexNet by default), as in the DPDD evaluation of the paper.

    Args:
        img, img2, crop_border, input_order, data_range, channel_order: Shared by every metric (see the module
            docstring); 3-channel images (LPIPS networks take RGB).
        net: LPIPS backbone (``'alex'`` in the paper).
        device: Torch device; default CUDA when available.

    Returns:
        The LPIPS distance (lower is better).

    Raises:
        ImportError: The optional ``lpips`` package is missing (the message says how to install it).
        RuntimeError: Its backbone weights could not be loaded.
    """
    dev = torch.device(device or ('cuda' if torch.cuda.is_available() else 'cpu'))
    if (net, str(dev)) not in _lpips_models:  # one model per backbone and device for the whole run
        try:
            import lpips
        except ImportError as err:
            raise ImportError(f'calculate_lpips needs the optional lpips package: {LPIPS_INSTALL_HINT}.') from err
        try:
            model = lpips.LPIPS(net=net, version='0.1', verbose=False)
        except Exception as err:  # weights download or cache problems surface here
            raise RuntimeError(f'Could not load the LPIPS {net} weights ({err}). {LPIPS_INSTALL_HINT}.') from err
        _lpips_models[net, str(dev)] = model.eval().to(dev)
    model = _lpips_models[net, str(dev)]
    if channel_order == 'bgr':
        a, b = a[..., ::-1], b[..., ::-1]

    def to_tensor(x: np.ndarray) -> torch.Tensor:
        x = np.ascontiguousarray(x.transpose(2, 0, 1)) / peak * 2 - 1  # [0, peak] -> [-1, 1]
        return torch.from_numpy(x).float().unsqueeze(0).to(dev)

    with torch.no_grad():
        return model(to_tensor(a), to_tensor(b)).item()

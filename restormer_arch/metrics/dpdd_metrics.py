"""DPDD defocus-deblurring metrics: SSIM as scikit-image's default, mean absolute error and LPIPS (AlexNet).

The DPDD protocol of the paper works on float images in [0, 1] (8-bit / 255, 16-bit / 65535). The single-image
protocol reads the 16-bit DPDD PNGs as 8-bit (OpenCV's default), the dual-pixel one as 16-bit.

* **PSNR**: ``10 log10(1 / mse)`` over all values - BasicSR's ``calculate_psnr`` gives the same on uint8 images.
* **SSIM**: scikit-image's *default* ``structural_similarity`` (``data_range=1``, channels averaged): a 7x7
  **uniform** window with the sample (N-1) covariance, K1 = 0.01, K2 = 0.03, mean over the map without its 3-pixel
  rim - not a Gaussian SSIM. :func:`calculate_ssim_dpdd` implements it in numpy.
* **MAE**: mean absolute error per channel, averaged over the channels (= the mean over all values).
  :func:`calculate_mae` divides by ``data_range`` (255 by default, 65535 for uint16 inputs) to report it on [0, 1].
* **LPIPS**: the learned perceptual distance of Zhang et al. with the **AlexNet** backbone (``lpips.LPIPS(net='alex')``,
  version 0.1) on RGB inputs in [0, 1] scaled to [-1, 1] (lpips' ``normalize=True``). It needs the optional ``lpips``
  package (``pip install 'restormer-basicsr[lpips]'``) and, on first use, torchvision's ImageNet AlexNet weights
  (downloaded to the torch hub cache, ``$TORCH_HOME``). Without them :func:`calculate_lpips` raises an error that
  says so: it never returns a made-up value.
"""
from typing import Optional

import numpy as np
import torch
from basicsr.utils.registry import METRIC_REGISTRY
from scipy import ndimage

from ._common import check_channel_order, default_data_range, prepare_pair

__all__ = ['calculate_mae', 'calculate_ssim_dpdd', 'calculate_lpips', 'LPIPS_INSTALL_HINT']

LPIPS_INSTALL_HINT = ("pip install 'restormer-basicsr[lpips]' (or: pip install lpips); the first use downloads "
                      "torchvision's AlexNet weights into $TORCH_HOME (pre-fill that cache on offline machines)")
_lpips_models = {}


@METRIC_REGISTRY.register()
def calculate_mae(img, img2, crop_border: int = 0, input_order: str = 'HWC', data_range: Optional[float] = None,
                  **kwargs) -> float:
    """Mean absolute error on the [0, 1] scale (DPDD protocol).

    Args:
        img: Restored image.
        img2: Ground truth.
        crop_border: Pixels cropped on each border.
        input_order: ``'HWC'`` or ``'CHW'``.
        data_range: Value of white in the inputs; default 255 (65535 for uint16). Use 1 for [0, 1] floats.
        **kwargs: Ignored.

    Returns:
        The MAE in [0, 1].
    """
    a, b = prepare_pair(img, img2, crop_border, input_order)
    return float(np.mean(np.abs(a - b)) / default_data_range(img, data_range))


@METRIC_REGISTRY.register()
def calculate_ssim_dpdd(img, img2, crop_border: int = 0, input_order: str = 'HWC', data_range: Optional[float] = None,
                        **kwargs) -> float:
    """DPDD SSIM: scikit-image's default SSIM (7x7 uniform window, sample covariance), channels averaged.

    Args:
        img: Restored image.
        img2: Ground truth.
        crop_border: Pixels cropped on each border.
        input_order: ``'HWC'`` or ``'CHW'``.
        data_range: Value of white in the inputs; default 255 (65535 for uint16). Use 1 for [0, 1] floats.
        **kwargs: Ignored.

    Returns:
        Mean SSIM.
    """
    a, b = prepare_pair(img, img2, crop_border, input_order)
    peak = default_data_range(img, data_range)
    a, b = a / peak, b / peak
    win, rim = 7, 3
    if min(a.shape[:2]) < win:
        raise ValueError(f'SSIM needs images of at least 7x7 pixels (after crop_border), got {a.shape[:2]}.')
    sample = win * win / (win * win - 1)  # unbiased (N-1) local covariance

    def mean(x: np.ndarray) -> np.ndarray:
        return ndimage.uniform_filter(x, size=(win, win, 1), mode='reflect')

    mu_a, mu_b = mean(a), mean(b)
    var_a, var_b = sample * (mean(a * a) - mu_a ** 2), sample * (mean(b * b) - mu_b ** 2)
    cov = sample * (mean(a * b) - mu_a * mu_b)
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    ssim = (2 * mu_a * mu_b + c1) * (2 * cov + c2) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return float(ssim[rim:-rim, rim:-rim].mean(axis=(0, 1)).mean())


def _lpips_model(net: str, device: torch.device):
    key = (net, str(device))
    if key not in _lpips_models:
        try:
            import lpips
        except ImportError as err:
            raise ImportError(f'calculate_lpips needs the optional lpips package: {LPIPS_INSTALL_HINT}.') from err
        try:
            model = lpips.LPIPS(net=net, version='0.1', verbose=False)
        except Exception as err:  # weights download or cache problems surface here
            raise RuntimeError(f'Could not load the LPIPS {net} weights ({err}). {LPIPS_INSTALL_HINT}.') from err
        _lpips_models[key] = model.eval().to(device)
    return _lpips_models[key]


@METRIC_REGISTRY.register()
def calculate_lpips(img, img2, crop_border: int = 0, input_order: str = 'HWC', data_range: Optional[float] = None,
                    channel_order: str = 'bgr', net: str = 'alex', device: Optional[str] = None, **kwargs) -> float:
    """LPIPS distance (AlexNet by default), as in the DPDD evaluation of the paper.

    Args:
        img: Restored image (3 channels).
        img2: Ground truth.
        crop_border: Pixels cropped on each border.
        input_order: ``'HWC'`` or ``'CHW'``.
        data_range: Value of white in the inputs; default 255 (65535 for uint16).
        channel_order: ``'bgr'`` (BasicSR) or ``'rgb'``; LPIPS networks expect RGB.
        net: LPIPS backbone (``'alex'`` in the paper).
        device: Torch device; default CUDA when available.
        **kwargs: Ignored.

    Returns:
        The LPIPS distance (lower is better).

    Raises:
        ImportError: The optional ``lpips`` package is missing (the message says how to install it).
        RuntimeError: Its backbone weights could not be loaded.
    """
    a, b = prepare_pair(img, img2, crop_border, input_order)
    if a.shape[2] != 3:
        raise ValueError(f'LPIPS needs 3-channel images, got {a.shape[2]} channel(s).')
    dev = torch.device(device or ('cuda' if torch.cuda.is_available() else 'cpu'))
    model = _lpips_model(net, dev)
    peak = default_data_range(img, data_range)
    if check_channel_order(channel_order) == 'bgr':
        a, b = a[..., ::-1], b[..., ::-1]

    def to_tensor(x: np.ndarray) -> torch.Tensor:
        x = np.ascontiguousarray(x.transpose(2, 0, 1)) / peak * 2 - 1  # [0, peak] -> [-1, 1]
        return torch.from_numpy(x).float().unsqueeze(0).to(dev)

    with torch.no_grad():
        return float(model(to_tensor(a), to_tensor(b)).item())

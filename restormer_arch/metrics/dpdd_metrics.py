"""DPDD defocus-deblurring metrics besides PSNR/SSIM: mean absolute error and LPIPS (AlexNet).

The DPDD protocol of the paper works on float images in [0, 1] (8-bit / 255, 16-bit / 65535):

* **MAE**: mean absolute error per channel, averaged over the channels (= the mean over all values).
  :func:`calculate_mae` divides by ``data_range`` (255 by default, 65535 for uint16 inputs) to report it on [0, 1].
* **LPIPS**: the learned perceptual distance of Zhang et al. with the **AlexNet** backbone (``lpips.LPIPS(net='alex')``,
  version 0.1), inputs scaled to [-1, 1] in RGB order. It needs the optional ``lpips`` package
  (``pip install 'restormer-basicsr[lpips]'``) and, on first use, torchvision's ImageNet AlexNet weights (downloaded to
  the torch hub cache, ``$TORCH_HOME``). Without them :func:`calculate_lpips` raises an error that says so: it never
  returns a made-up value.
"""
from typing import Optional

import numpy as np
import torch
from basicsr.utils.registry import METRIC_REGISTRY

from ._common import check_channel_order, default_data_range, prepare_pair

__all__ = ['calculate_mae', 'calculate_lpips', 'LPIPS_INSTALL_HINT']

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

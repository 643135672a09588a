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

BasicSR's own ``calculate_psnr`` / ``calculate_ssim`` stay available under their names.
"""
from .dpdd_metrics import calculate_lpips, calculate_mae, calculate_ssim_dpdd
from .matlab_metrics import (
    calculate_psnr_rgb_matlab,
    calculate_psnr_y_matlab,
    calculate_ssim_rgb_matlab,
    calculate_ssim_y_matlab,
    rgb2y_matlab,
)
from .realblur_metrics import align_realblur, calculate_psnr_realblur, calculate_ssim_realblur

__all__ = ['calculate_psnr_y_matlab', 'calculate_ssim_y_matlab', 'calculate_psnr_rgb_matlab',
           'calculate_ssim_rgb_matlab', 'calculate_psnr_realblur', 'calculate_ssim_realblur', 'calculate_mae',
           'calculate_ssim_dpdd', 'calculate_lpips', 'rgb2y_matlab', 'align_realblur']

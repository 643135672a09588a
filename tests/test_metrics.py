"""The evaluation metrics against hand-computed values and independent implementations (skimage, scipy)."""
import sys

import cv2
import numpy as np
import pytest
from basicsr.metrics import calculate_metric
from basicsr.utils.registry import METRIC_REGISTRY
from scipy import ndimage
from skimage.metrics import structural_similarity

from restormer_arch import metrics
from restormer_arch.metrics import (
    align_realblur,
    calculate_lpips,
    calculate_mae,
    calculate_psnr_realblur,
    calculate_psnr_rgb_matlab,
    calculate_psnr_y_matlab,
    calculate_ssim_dpdd,
    calculate_ssim_realblur,
    calculate_ssim_rgb_matlab,
    calculate_ssim_y_matlab,
    rgb2y_matlab,
)

NAMES = ['calculate_psnr_y_matlab', 'calculate_ssim_y_matlab', 'calculate_psnr_rgb_matlab',
         'calculate_ssim_rgb_matlab', 'calculate_psnr_realblur', 'calculate_ssim_realblur', 'calculate_mae',
         'calculate_ssim_dpdd', 'calculate_lpips']


def _pair(shape=(40, 48, 3), noise=20, seed=0):
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.integers(0, 256, shape).astype(np.float32), (0, 0), 1.0).astype(np.uint8)
    noisy = np.clip(img.astype(int) + rng.integers(-noise, noise + 1, shape), 0, 255).astype(np.uint8)
    return noisy, img


def _matlab_y_by_hand(bgr: np.ndarray) -> np.ndarray:
    b, g, r = (bgr[..., i].astype(np.float64) for i in range(3))
    return np.floor(16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255 + 0.5)


def test_registered_without_replacing_basicsr_metrics():
    import basicsr.metrics.psnr_ssim as bsr

    for name in NAMES:
        assert METRIC_REGISTRY.get(name).__module__.startswith('restormer_arch.metrics')
    assert METRIC_REGISTRY.get('calculate_psnr') is bsr.calculate_psnr
    assert METRIC_REGISTRY.get('calculate_ssim') is bsr.calculate_ssim
    img, gt = _pair()
    value = calculate_metric({'img': img, 'img2': gt}, {'type': 'calculate_psnr_y_matlab', 'crop_border': 0})
    assert value == pytest.approx(calculate_psnr_y_matlab(img, gt))


def test_rgb2y_matches_matlab_uint8_values():
    # MATLAB: rgb2ycbcr(uint8) of white, black, red, green, blue gives Y = 235, 16, 81, 145, 41.
    rgb = np.array([[[255, 255, 255], [0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255]]], dtype=np.uint8)
    assert rgb2y_matlab(rgb, channel_order='rgb').tolist() == [[235, 16, 81, 145, 41]]
    assert rgb2y_matlab(rgb[..., ::-1].copy(), channel_order='bgr').tolist() == [[235, 16, 81, 145, 41]]


def test_psnr_y_matlab_by_formula():
    img, gt = _pair()
    mse = np.mean((_matlab_y_by_hand(img) - _matlab_y_by_hand(gt)) ** 2)
    assert calculate_psnr_y_matlab(img, gt) == pytest.approx(10 * np.log10(255 ** 2 / mse), abs=1e-10)
    assert calculate_psnr_y_matlab(gt, gt) == float('inf')


def test_ssim_y_matlab_is_wang_valid_ssim():
    img, gt = _pair()
    y, y2 = _matlab_y_by_hand(img), _matlab_y_by_hand(gt)
    # skimage with these settings averages the map without its 5-pixel rim: Wang et al.'s filter2(..., 'valid').
    expected = structural_similarity(y, y2, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                     data_range=255)
    assert calculate_ssim_y_matlab(img, gt) == pytest.approx(expected, abs=1e-10)
    assert calculate_ssim_y_matlab(gt, gt) == pytest.approx(1.0)


def test_crop_border_and_chw_input():
    img, gt = _pair()
    cropped = calculate_psnr_y_matlab(img[4:-4, 4:-4], gt[4:-4, 4:-4])
    assert calculate_psnr_y_matlab(img, gt, crop_border=4) == pytest.approx(cropped)
    chw = calculate_ssim_rgb_matlab(img.transpose(2, 0, 1), gt.transpose(2, 0, 1), input_order='CHW')
    assert chw == pytest.approx(calculate_ssim_rgb_matlab(img, gt))
    with pytest.raises(ValueError, match='shapes differ'):
        calculate_psnr_rgb_matlab(img, gt[:-1])


def test_psnr_rgb_matlab_by_formula_and_uint16_peak():
    img, gt = _pair()
    mse = np.mean((img.astype(float) - gt.astype(float)) ** 2)
    assert calculate_psnr_rgb_matlab(img, gt) == pytest.approx(10 * np.log10(255 ** 2 / mse))
    img16, gt16 = img.astype(np.uint16) * 257, gt.astype(np.uint16) * 257
    assert calculate_psnr_rgb_matlab(img16, gt16) == pytest.approx(10 * np.log10(255 ** 2 / mse))


def test_ssim_rgb_matlab_uses_a_3d_window():
    img, gt = _pair()
    a, b = img.astype(np.float64), gt.astype(np.float64)

    def blur(x):  # 11x11x11 Gaussian (radius int(3.34 * 1.5 + 0.5) = 5), MATLAB 'replicate' = scipy 'nearest'
        return ndimage.gaussian_filter(x, sigma=1.5, truncate=3.34, mode='nearest')

    mu_a, mu_b = blur(a), blur(b)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    cov, var_a, var_b = blur(a * b) - mu_a * mu_b, blur(a * a) - mu_a ** 2, blur(b * b) - mu_b ** 2
    expected = np.mean((2 * mu_a * mu_b + c1) * (2 * cov + c2) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2)))
    assert calculate_ssim_rgb_matlab(img, gt) == pytest.approx(expected, abs=1e-10)
    # A per-channel 2-D SSIM gives a different number: the third dimension matters.
    per_channel = np.mean([calculate_ssim_rgb_matlab(img[..., c], gt[..., c]) for c in range(3)])
    assert abs(per_channel - expected) > 1e-4


def test_y_channel_and_rgb_results_differ():
    _, gt = _pair()
    blue_shift = gt.copy()
    blue_shift[..., 0] = np.clip(blue_shift[..., 0].astype(int) + 12, 0, 255)  # BGR: blue barely changes Y
    psnr_y, psnr_rgb = calculate_psnr_y_matlab(blue_shift, gt), calculate_psnr_rgb_matlab(blue_shift, gt)
    assert psnr_y > psnr_rgb + 5
    assert calculate_ssim_y_matlab(blue_shift, gt) > calculate_ssim_rgb_matlab(blue_shift, gt)


def test_realblur_alignment_recovers_a_known_shift():
    rng = np.random.default_rng(1)
    gt = (cv2.GaussianBlur(rng.random((96, 96, 3)).astype(np.float32), (0, 0), 3) * 255 * 3 - 200)
    gt = np.clip(gt, 0, 255).astype(np.uint8)
    shift = np.float32([[1, 0, 2.0], [0, 1, -1.0]])
    restored = cv2.warpAffine(gt, shift, (96, 96), borderMode=cv2.BORDER_REFLECT)
    aligned, gt_masked, mask, warp = align_realblur(restored / 255.0, gt / 255.0)
    assert warp[0, 2] == pytest.approx(2.0, abs=0.2) and warp[1, 2] == pytest.approx(-1.0, abs=0.2)
    assert mask.min() == 0 and mask.mean() > 0.9  # pixels shifted in from outside are masked out
    psnr = calculate_psnr_realblur(restored, gt)
    expected = 10 * np.log10(1 / (np.sum((gt_masked - aligned) ** 2, dtype=np.float64) / mask.sum()))
    assert psnr == pytest.approx(expected, rel=1e-6)
    assert psnr > calculate_psnr_rgb_matlab(restored, gt) + 10
    assert calculate_ssim_realblur(restored, gt) > 0.98


def test_mae_by_formula():
    img, gt = _pair()
    expected = np.mean(np.abs(img.astype(float) - gt.astype(float))) / 255
    assert calculate_mae(img, gt) == pytest.approx(expected)
    assert calculate_mae(img / 255.0, gt / 255.0, data_range=1) == pytest.approx(expected)
    assert calculate_mae(img.astype(np.uint16) * 257, gt.astype(np.uint16) * 257) == pytest.approx(expected)


def test_ssim_dpdd_is_skimage_default_ssim():
    img, gt = _pair()
    expected = structural_similarity(img / 255.0, gt / 255.0, data_range=1, channel_axis=2)
    assert calculate_ssim_dpdd(img, gt) == pytest.approx(expected, abs=1e-10)
    img16, gt16 = img.astype(np.uint16) * 257, gt.astype(np.uint16) * 257
    assert calculate_ssim_dpdd(img16, gt16) == pytest.approx(expected, abs=1e-10)


def test_lpips_without_the_package_raises_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, 'lpips', None)  # makes `import lpips` fail as if it were not installed
    monkeypatch.setattr(metrics, '_lpips_models', {})
    img, gt = _pair()
    with pytest.raises(ImportError, match=r"pip install 'restormer-basicsr\[lpips\]'"):
        calculate_lpips(img, gt)

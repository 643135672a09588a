"""The library API behind ``basicsr restore``: load_restormer and Restorer on arrays and tensors."""
import os

import numpy as np
import pytest
import torch

import restormer_arch
from restormer_arch.archs.presets import task_options
from restormer_arch.archs.restormer_arch import Restormer
from restormer_arch.restorer import RestoreError, Restorer, load_restormer
from restormer_arch.tiling import run_network, tiled_forward

TINY = {'dim': 8, 'num_blocks': [1, 1, 1, 1], 'num_refinement_blocks': 1, 'heads': [1, 1, 1, 1]}


def _net(task='deraining', **extra):
    torch.manual_seed(0)
    return Restormer(**{**task_options(task), **TINY, **extra}).eval()


def _reference(net, rgb_float):
    """The network on an (H, W, C) float image, clamped: what every restore path must give."""
    with torch.no_grad():
        out = net(torch.from_numpy(np.ascontiguousarray(rgb_float.transpose(2, 0, 1)))[None].float())
    return out.clamp(0, 1)[0].permute(1, 2, 0).numpy()


def _image(shape, seed=0):
    return np.random.default_rng(seed).random(shape).astype(np.float32)


def test_load_restormer_is_public_and_reads_the_architecture(tmp_path):
    net = _net('real_denoising', ffn_expansion_factor=2.0, heads=[1, 2, 2, 4], dim=16)
    torch.save({'params_ema': net.state_dict()}, tmp_path / 'w.pth')
    loaded = restormer_arch.load_restormer(str(tmp_path / 'w.pth'))
    assert not loaded.training
    x = torch.rand(1, 3, 24, 20)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), net(x), rtol=0, atol=0)
    # A task that contradicts the weights, or sizes that do, are refused; one that agrees is accepted.
    with pytest.raises(RestoreError):
        load_restormer(str(tmp_path / 'w.pth'), task='deraining')
    with pytest.raises(RestoreError):
        load_restormer(str(tmp_path / 'w.pth'), arch_options={'ffn_expansion_factor': 2.66})
    assert load_restormer(str(tmp_path / 'w.pth'), task='gaussian_color_denoising',
                          arch_options={'use_checkpoint': True}).dual_pixel_task is False
    with pytest.raises(RestoreError):
        load_restormer(str(tmp_path / 'missing.pth'))


@pytest.mark.parametrize('dtype', [np.uint8, np.uint16, np.float32])
def test_restore_arrays_keep_dtype_and_match_the_network(dtype):
    net = _net()
    restorer = Restorer(net, device='cpu')
    image = _image((19, 26, 3))
    peak = np.iinfo(dtype).max if dtype != np.float32 else 1
    given = np.round(image * peak).astype(dtype) if peak > 1 else image
    out = restorer.restore(given)
    assert out.dtype == dtype and out.shape == given.shape
    expected = _reference(net, given.astype(np.float32) / peak) * peak
    assert np.abs(out.astype(np.float64) - expected).max() <= (1 if peak > 1 else 1e-5)
    # BGR in, BGR out: the same result with the channels reversed.
    np.testing.assert_array_equal(restorer.restore(given[..., ::-1].copy(), bgr=True), out[..., ::-1])


def test_gray_alpha_and_gray_network():
    image = (_image((16, 20, 4)) * 255).astype(np.uint8)
    out = Restorer(_net(), device='cpu').restore(image)
    assert out.shape == (16, 20, 4)
    np.testing.assert_array_equal(out[..., 3], image[..., 3])
    gray = (_image((16, 20)) * 255).astype(np.uint8)
    assert Restorer(_net(), device='cpu').restore(gray).shape == (16, 20)
    gray_net = _net('gaussian_gray_denoising')
    out = Restorer(gray_net, device='cpu').restore(gray)
    assert np.abs(out.astype(float) - _reference(gray_net, gray[..., None] / 255.0)[..., 0] * 255).max() <= 1
    assert Restorer(gray_net, device='cpu').restore(image[..., :3]).shape == (16, 20, 1)


def test_dual_pixel_takes_two_views():
    net = _net('dual_pixel_defocus_deblurring')
    left, right = _image((16, 24, 3), 1), _image((16, 24, 3), 2)
    out = Restorer(net, device='cpu').restore(left, right)
    np.testing.assert_allclose(out, _reference(net, np.concatenate([left, right], axis=2)), atol=1e-5)
    with pytest.raises(RestoreError):
        Restorer(net, device='cpu').restore(left)


def test_tensor_path_tiled_and_whole():
    net = _net()
    x = torch.rand(2, 3, 40, 36)
    whole = Restorer(net, device='cpu').restore_tensor(x)
    with torch.no_grad():
        torch.testing.assert_close(whole, net(x).clamp(0, 1))
        expected = tiled_forward(net, x, tile=24, overlap=8).clamp(0, 1)
    torch.testing.assert_close(Restorer(net, device='cpu', tile=24, tile_overlap=8).restore_tensor(x), expected)
    whole.add_(1)  # an ordinary tensor, not an inference-mode one


@pytest.mark.parametrize('tile, overlap', [(16, 8), (16, 12), (0, 0), (16, -1)])
def test_tile_rule_is_tilings_and_is_checked_up_front(tile, overlap):
    with pytest.raises(RestoreError):
        Restorer(_net(), device='cpu', tile=tile, tile_overlap=overlap)
    with pytest.raises(ValueError):
        tiled_forward(lambda t: t, torch.zeros(1, 1, 4, 4), tile=tile, overlap=overlap)


def test_precision_names_and_devices():
    net = _net()
    with pytest.raises(RestoreError):
        Restorer(net, device='cpu', precision='fp16')
    with pytest.raises(RestoreError):
        Restorer(net, device='cpu', precision='int8')
    x = torch.rand(1, 3, 16, 16)
    bf16 = Restorer(net, device='cpu', precision='bf16').restore_tensor(x)
    assert bf16.dtype == torch.float32
    assert (bf16 - Restorer(net, device='cpu').restore_tensor(x)).abs().mean() < 0.02


def test_memory_check_suggests_a_tile():
    restorer = Restorer(_net(), device='cpu', max_memory=2**20)
    with pytest.raises(RestoreError):
        restorer.restore(_image((64, 64, 3)))
    assert Restorer(_net(), device='cpu', max_memory=2**20, tile=16, tile_overlap=4).restore(
        _image((64, 64, 3))).shape == (64, 64, 3)


def test_run_network_is_the_shared_forward_for_validation():
    """What validation would call: whole or tiled, any blend, last output of multi-output networks, not clamped."""
    from restormer_arch.tiling import run_network

    net = _net()
    x = torch.rand(1, 3, 40, 36) * 2 - 0.5
    with torch.no_grad():
        whole = net(x)
        tiled = tiled_forward(net, x, tile=24, overlap=8, blend='linear')
    torch.testing.assert_close(run_network(net, x), whole)
    torch.testing.assert_close(run_network(lambda t: [t, net(t)], x, tile=24, overlap=8, blend='linear'), tiled)
    assert run_network(net, x).requires_grad is False
    with pytest.raises(RestoreError):
        Restorer(net, device='cpu', tile=24, tile_overlap=8, blend='gaussian')


def test_bf16_restores_with_a_bf16_network_close_to_fp32():
    torch.manual_seed(0)
    net = Restormer(**TINY).eval()
    x = torch.rand(1, 3, 37, 29)
    reference = Restorer(net, 'cpu', 'fp32').restore_tensor(x)
    half = Restorer(Restormer(**TINY).eval(), 'cpu', 'bf16')
    half.network.load_state_dict(net.state_dict())
    assert all(p.dtype == torch.bfloat16 for p in half.network.parameters())  # bf16 end to end, not autocast
    out = half.restore_tensor(x)
    assert out.dtype == torch.float32 and out.shape == reference.shape
    psnr = 10 * torch.log10(1 / torch.mean((out - reference) ** 2))
    assert psnr >= 40  # a tiny random network; the full model measures ~53 dB (docs/performance.md)


@pytest.mark.skipif(not os.environ.get('RESTORMER_TEST_COMPILE'),
                    reason='torch.compile takes 1-2 min on this CPU; set RESTORMER_TEST_COMPILE=1 to run it')
def test_compiled_restorer_equals_eager_with_fixed_size_tiles():
    torch.manual_seed(0)
    net = Restormer(**TINY).eval()
    x = torch.rand(1, 3, 40, 56)
    eager = run_network(net, x, tile=32, overlap=8, fit_tile=False).clamp(0, 1)  # the grid a compiled run uses
    compiled = Restorer(net, 'cpu', 'fp32', tile=32, tile_overlap=8, compile=True)
    assert torch.allclose(compiled.restore_tensor(x), eager, atol=1e-4)

"""``basicsr restore``: checkpoint formats, bit depths, gray, odd sizes, tiling, safety and error messages."""
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from restormer_arch.archs.presets import task_options
from restormer_arch.inference import main
from restormer_arch.restorer import build_network
from tests.conftest import REPO_ROOT

TINY = {'dim': 8, 'num_blocks': [1, 1, 1, 1], 'num_refinement_blocks': 1, 'heads': [1, 1, 1, 1]}
TINY_JSON = json.dumps(TINY)


def _tiny_net(task):
    torch.manual_seed(1)
    return build_network({**task_options(task), **TINY})


def _save(net, path, fmt):
    sd = net.state_dict()
    payload = {
        'official': {'params': sd},
        'params_ema': {'params_ema': sd, 'params': {k: torch.zeros_like(v) for k, v in sd.items()}},
        'generator': {'meta': {'epoch': 3}, 'state_dict': {**{f'generator.{k}': v for k, v in sd.items()},
                                                           'data_preprocessor.mean': torch.zeros(3)}},
        'bare': sd,
        'module': {f'module.{k}': v for k, v in sd.items()},
    }[fmt]
    torch.save(payload, path)
    return path


def _expected(net, img, peak):
    """What the restore command must produce: the network on the [0, 1] RGB image, rounded to the input depth."""
    rgb = img[..., None] if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    with torch.no_grad():
        out = net(torch.from_numpy(rgb.transpose(2, 0, 1).astype(np.float32) / peak)[None])
    out = np.round(out.clamp(0, 1)[0].permute(1, 2, 0).numpy() * peak)
    return out[..., 0] if img.ndim == 2 else cv2.cvtColor(out.astype(np.float32), cv2.COLOR_RGB2BGR)


def _restore(tmp_path, inp, task, *extra, weights=None):
    args = ['-i', str(inp), '-o', str(tmp_path / 'out'), '--task', task, '--arch-options', TINY_JSON,
            '--no-progress', *extra]
    args += ['--weights', str(weights)] if weights else ['--allow-random-weights']
    return main(args)


def _random_image(shape, dtype=np.uint8, seed=0):
    peak = np.iinfo(dtype).max
    smooth = cv2.GaussianBlur(np.random.default_rng(seed).random(shape).astype(np.float32), (0, 0), 2)
    return np.round(np.clip(smooth * 2 - 0.5, 0, 1) * peak).astype(dtype)


@pytest.mark.parametrize('fmt', ['official', 'params_ema', 'generator', 'bare', 'module'])
def test_every_checkpoint_format_loads_and_restores(tmp_path, fmt):
    net = _tiny_net('deraining')
    weights = _save(net, tmp_path / f'{fmt}.pth', fmt)
    img = _random_image((21, 27, 3))
    cv2.imwrite(str(tmp_path / 'rain.png'), img)
    assert _restore(tmp_path, tmp_path / 'rain.png', 'deraining', weights=weights) == 0
    out = cv2.imread(str(tmp_path / 'out' / 'rain.png'), cv2.IMREAD_UNCHANGED)
    assert out.dtype == np.uint8 and out.shape == img.shape
    assert np.abs(out.astype(float) - _expected(net, img, 255)).max() <= 1


def test_16bit_in_16bit_out_with_odd_size(tmp_path):
    net = _tiny_net('motion_deblurring')
    weights = _save(net, tmp_path / 'w.pth', 'official')
    img = _random_image((19, 33, 3), np.uint16)
    cv2.imwrite(str(tmp_path / 'blur.png'), img)
    cv2.imwrite(str(tmp_path / 'blur.tif'), img)
    assert _restore(tmp_path, tmp_path, 'motion_deblurring', weights=weights) == 0
    expected = _expected(net, img, 65535)
    for name in ('blur.png', 'blur.tif'):
        out = cv2.imread(str(tmp_path / 'out' / name), cv2.IMREAD_UNCHANGED)
        assert out.dtype == np.uint16 and out.shape == img.shape
        assert np.abs(out.astype(float) - expected).max() <= 1  # 16-bit precision, not 8-bit steps of 257
        assert np.any(out % 257 != 0)


def test_gray_model_on_gray_image(tmp_path):
    net = _tiny_net('gaussian_gray_denoising')
    weights = _save(net, tmp_path / 'gray.pth', 'official')
    img = _random_image((23, 17))
    cv2.imwrite(str(tmp_path / 'noisy.png'), img)
    assert _restore(tmp_path, tmp_path / 'noisy.png', 'gaussian_gray_denoising', weights=weights) == 0
    out = cv2.imread(str(tmp_path / 'out' / 'noisy.png'), cv2.IMREAD_UNCHANGED)
    assert out.shape == img.shape
    assert np.abs(out.astype(float) - _expected(net, img, 255)).max() <= 1


def test_gray_image_through_colour_model_stays_gray_and_side_by_side(tmp_path):
    cv2.imwrite(str(tmp_path / 'g.png'), _random_image((24, 20)))
    assert _restore(tmp_path, tmp_path / 'g.png', 'real_denoising', '--side-by-side', '--tile', '16',
                    '--tile-overlap', '6') == 0
    assert cv2.imread(str(tmp_path / 'out' / 'g.png'), cv2.IMREAD_UNCHANGED).shape == (24, 20)
    assert cv2.imread(str(tmp_path / 'out' / 'g_side_by_side.png'), cv2.IMREAD_UNCHANGED).shape == (24, 40)


def test_bad_tile_overlap_is_a_clear_error(tmp_path, capsys):
    """The tiling machinery itself is tested in tests/test_perf.py; here: its errors name the restore flags."""
    cv2.imwrite(str(tmp_path / 'g.png'), _random_image((24, 20)))
    assert _restore(tmp_path, tmp_path / 'g.png', 'real_denoising', '--tile', '16', '--tile-overlap', '8') != 0
    assert '--tile 16 --tile-overlap 8' in capsys.readouterr().err


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return open, (self.marker, 'w')


def test_malicious_pickle_is_refused(tmp_path, capsys):
    marker = tmp_path / 'pwned'
    torch.save({'params': _Evil(str(marker))}, tmp_path / 'evil.pth')
    cv2.imwrite(str(tmp_path / 'x.png'), _random_image((16, 16, 3)))
    assert _restore(tmp_path, tmp_path / 'x.png', 'deraining', weights=tmp_path / 'evil.pth') == 2
    assert not marker.exists()
    assert 'refusing to load' in capsys.readouterr().err


def test_wrong_task_checkpoint_names_keys_and_suggests_task(tmp_path, capsys):
    weights = _save(_tiny_net('gaussian_gray_denoising'), tmp_path / 'gray.pth', 'official')
    cv2.imwrite(str(tmp_path / 'x.png'), _random_image((16, 16, 3)))
    assert _restore(tmp_path, tmp_path / 'x.png', 'deraining', weights=weights) == 2
    err = capsys.readouterr().err
    assert 'shape mismatches (checkpoint vs network' in err
    assert 'patch_embed.proj.weight: (8, 1, 3, 3) vs (8, 3, 3, 3)' in err
    assert 'norm1.body.bias' in err  # WithBias keys the BiasFree checkpoint lacks
    assert '--task gaussian_gray_denoising' in err


def test_size_mismatch_suggests_arch_options(tmp_path, capsys):
    """--arch-options that contradict the weights: the error prints options that do load them (no loop)."""
    weights = _save(_tiny_net('deraining'), tmp_path / 'w.pth', 'official')
    cv2.imwrite(str(tmp_path / 'x.png'), _random_image((16, 16, 3)))
    args = ['-i', str(tmp_path / 'x.png'), '-o', str(tmp_path / 'o'), '--task', 'deraining', '--weights', str(weights),
            '--no-progress']
    assert main(args + ['--arch-options', '{"dim": 16}']) == 2
    err = capsys.readouterr().err
    assert '"dim": 8, "num_blocks": [1, 1, 1, 1]' in err
    suggested = err.split("--arch-options '")[-1].split("'")[0]
    assert main(args + ['--arch-options', suggested]) == 0
    assert cv2.imread(str(tmp_path / 'o' / 'x.png')).shape == (16, 16, 3)


def test_checkpoint_configuration_needs_no_task_or_arch_options(tmp_path):
    """restore-arch-hint-missing-ffn: width 16, heads [1, 2, 2, 4], FFN factor 2.0 load from the weights alone."""
    torch.manual_seed(3)
    net = build_network({'dim': 16, 'num_blocks': [1, 1, 1, 1], 'num_refinement_blocks': 1, 'heads': [1, 2, 2, 4],
                         'ffn_expansion_factor': 2.0})
    weights = _save(net, tmp_path / 'custom.pth', 'official')
    img = _random_image((20, 28, 3))
    cv2.imwrite(str(tmp_path / 'x.png'), img)
    for extra in ([], ['--task', 'deraining'], ['--task', 'motion_deblurring']):
        out_dir = tmp_path / f'out{len(extra)}{extra[-1] if extra else ""}'
        assert main(['-i', str(tmp_path / 'x.png'), '-o', str(out_dir), '--weights', str(weights), '--no-progress',
                     *extra]) == 0
        out = cv2.imread(str(out_dir / 'x.png'), cv2.IMREAD_UNCHANGED)
        assert np.abs(out.astype(float) - _expected(net, img, 255)).max() <= 1


def test_weights_required_unless_random_allowed(tmp_path, capsys):
    cv2.imwrite(str(tmp_path / 'x.png'), _random_image((16, 16, 3)))
    assert main(['-i', str(tmp_path / 'x.png'), '-o', str(tmp_path / 'o'), '--task', 'deraining']) == 2
    assert '--allow-random-weights' in capsys.readouterr().err


def test_too_large_for_memory_suggests_tile(tmp_path, capsys):
    cv2.imwrite(str(tmp_path / 'x.png'), _random_image((40, 40, 3)))
    # The tiny network needs ~1.5 kB per pixel by the estimate: 40x40 does not fit into 1 MiB, 24x24 tiles do.
    assert _restore(tmp_path, tmp_path / 'x.png', 'deraining', '--max-memory', str(1 / 1024)) == 2
    err = capsys.readouterr().err
    assert 'x.png (40x40) likely needs' in err and '--tile 16 --tile-overlap 4' in err
    assert _restore(tmp_path, tmp_path / 'x.png', 'deraining', '--max-memory', str(1 / 1024), '--tile', '24',
                    '--tile-overlap', '4') == 0


def test_precision_options_on_cpu(tmp_path, capsys):
    img = _random_image((16, 24, 3))
    cv2.imwrite(str(tmp_path / 'x.png'), img)
    assert _restore(tmp_path, tmp_path / 'x.png', 'deraining', '--precision', 'fp16', '--device', 'cpu') == 2
    assert 'bf16' in capsys.readouterr().err
    weights = _save(_tiny_net('deraining'), tmp_path / 'w.pth', 'bare')
    assert _restore(tmp_path, tmp_path / 'x.png', 'deraining', '--precision', 'bf16', weights=weights) == 0
    out = cv2.imread(str(tmp_path / 'out' / 'x.png')).astype(float)
    assert np.abs(out - _expected(_tiny_net('deraining'), img, 255)).mean() < 3


@pytest.mark.parametrize('layout', ['folders', 'suffixes'])
def test_dual_pixel_inputs(tmp_path, layout):
    net = _tiny_net('dual_pixel_defocus_deblurring')
    weights = _save(net, tmp_path / 'dp.pth', 'official')
    left, right = _random_image((20, 18, 3), np.uint16, 1), _random_image((20, 18, 3), np.uint16, 2)
    src = tmp_path / 'dp'
    if layout == 'folders':
        (src / 'inputL').mkdir(parents=True)
        (src / 'inputR').mkdir()
        cv2.imwrite(str(src / 'inputL' / 'scene.png'), left)
        cv2.imwrite(str(src / 'inputR' / 'scene.png'), right)
    else:
        src.mkdir()
        cv2.imwrite(str(src / 'scene_L.png'), left)
        cv2.imwrite(str(src / 'scene_R.png'), right)
    assert _restore(tmp_path, src, 'dual_pixel_defocus_deblurring', weights=weights) == 0
    out = cv2.imread(str(tmp_path / 'out' / 'scene.png'), cv2.IMREAD_UNCHANGED)
    assert out.dtype == np.uint16 and out.shape == left.shape
    views = [cv2.cvtColor(v, cv2.COLOR_BGR2RGB).astype(np.float32) / 65535 for v in (left, right)]
    with torch.no_grad():
        expected = net(torch.from_numpy(np.concatenate(views, 2).transpose(2, 0, 1))[None]).clamp(0, 1)
    expected = cv2.cvtColor(expected[0].permute(1, 2, 0).numpy(), cv2.COLOR_RGB2BGR) * 65535
    assert np.abs(out - expected).max() <= 1


def test_basicsr_restore_console_command(tmp_path):
    cv2.imwrite(str(tmp_path / 'x.jpg'), _random_image((16, 16, 3)))
    env = {**os.environ, 'PYTHONPATH': str(REPO_ROOT)}
    cmd = [sys.executable, '-m', 'restormer_arch', 'restore', '-i', str(tmp_path / 'x.jpg'), '-o',
           str(tmp_path / 'out'), '--task', 'defocus_deblurring', '--allow-random-weights', '--arch-options',
           TINY_JSON, '--device', 'cpu']
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert cv2.imread(str(tmp_path / 'out' / 'x.jpg')).shape == (16, 16, 3)


def test_alpha_channel_passes_through(tmp_path):
    img = _random_image((20, 24, 4))
    cv2.imwrite(str(tmp_path / 'a.png'), img)
    assert _restore(tmp_path, tmp_path / 'a.png', 'deraining') == 0
    out = cv2.imread(str(tmp_path / 'out' / 'a.png'), cv2.IMREAD_UNCHANGED)
    assert out.shape == (20, 24, 4)
    np.testing.assert_array_equal(out[..., 3], img[..., 3])

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
from restormer_arch.archs.restormer_arch import Restormer
from restormer_arch.inference import main
from tests.conftest import REPO_ROOT

TINY = {'dim': 8, 'num_blocks': [1, 1, 1, 1], 'num_refinement_blocks': 1, 'heads': [1, 1, 1, 1]}
TINY_JSON = json.dumps(TINY)


def _tiny_net(task):
    torch.manual_seed(1)
    return Restormer(**{**task_options(task), **TINY}).eval()


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


def test_colour_image_through_gray_model_with_side_by_side(tmp_path):
    net = _tiny_net('gaussian_gray_denoising')
    weights = _save(net, tmp_path / 'gray.pth', 'official')
    cv2.imwrite(str(tmp_path / 'c.png'), _random_image((18, 22, 3)))
    assert _restore(tmp_path, tmp_path / 'c.png', 'gaussian_gray_denoising', '--side-by-side', weights=weights) == 0
    assert cv2.imread(str(tmp_path / 'out' / 'c.png'), cv2.IMREAD_UNCHANGED).shape == (18, 22)
    assert cv2.imread(str(tmp_path / 'out' / 'c_side_by_side.png'), cv2.IMREAD_UNCHANGED).shape == (18, 44)


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
    """The tiling machinery itself is tested in tests/archs/test_perf.py; here: its errors name the restore flags."""
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
    assert 'try --task' not in err  # the task is right (motion_deblurring etc. share its configuration)
    suggested = err.split("--arch-options '")[-1].split("'")[0]
    assert main(args + ['--arch-options', suggested]) == 0
    assert cv2.imread(str(tmp_path / 'o' / 'x.png')).shape == (16, 16, 3)


def test_checkpoint_configuration_needs_no_task_or_arch_options(tmp_path, capsys):
    """restore-arch-hint-missing-ffn: width 16, heads [1, 2, 2, 4], FFN factor 2.0 load from the weights alone."""
    torch.manual_seed(3)
    net = Restormer(dim=16, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1, heads=[1, 2, 2, 4],
                    ffn_expansion_factor=2.0).eval()
    weights = _save(net, tmp_path / 'custom.pth', 'official')
    img = _random_image((20, 28, 3))
    cv2.imwrite(str(tmp_path / 'x.png'), img)
    for extra in ([], ['--task', 'deraining'], ['--task', 'motion_deblurring']):
        out_dir = tmp_path / f'out{len(extra)}{extra[-1] if extra else ""}'
        assert main(['-i', str(tmp_path / 'x.png'), '-o', str(out_dir), '--weights', str(weights), '--no-progress',
                     *extra]) == 0
        out = cv2.imread(str(out_dir / 'x.png'), cv2.IMREAD_UNCHANGED)
        assert np.abs(out.astype(float) - _expected(net, img, 255)).max() <= 1
    # Options that contradict it: the printed suggestion (FFN factor included) loads it, no loop.
    args = ['-i', str(tmp_path / 'x.png'), '--weights', str(weights), '--no-progress', '--task', 'deraining']
    assert main(args + ['-o', str(tmp_path / 'o1'), '--arch-options', '{"dim": 16, "heads": [1, 1, 1, 1]}']) == 2
    suggested = capsys.readouterr().err.split("--arch-options '")[-1].split("'")[0]
    assert json.loads(suggested)['ffn_expansion_factor'] == 2.0
    assert main(args + ['-o', str(tmp_path / 'o2'), '--arch-options', suggested]) == 0


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
    assert not (tmp_path / 'out').exists()  # refused before the output folder is made
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


RELATIVE_LAYOUTS = {  # how Restormer relatives' training code saves: MST++, torch.compile, a plain training script
    'mstpp': lambda sd: {'epoch': 3, 'iter': 3000, 'state_dict': {f'module.{k}': v for k, v in sd.items()},
                         'optimizer': {'state': {}, 'param_groups': [{'lr': 4e-4, 'params': [0]}]}},
    'compiled': lambda sd: {'params': {f'_orig_mod.{k}': v for k, v in sd.items()}},
    'model_state_dict': lambda sd: {'epoch': 1, 'model_state_dict': sd, 'optimizer_state_dict': {'state': {}}},
}


@pytest.mark.parametrize('layout', sorted(RELATIVE_LAYOUTS))
def test_restormer_relatives_restore_one_image_or_are_refused_by_their_channels(tmp_path, layout):
    torch.manual_seed(2)
    # skip_conv (dual_pixel_task) without a 6-channel input: one RGB image in, as MST++'s Restormer takes it.
    for out_channels in (3, 31):
        net = Restormer(**{**TINY, 'inp_channels': 3, 'out_channels': out_channels, 'dual_pixel_task': True}).eval()
        weights = tmp_path / f'{out_channels}.pth'
        torch.save(RELATIVE_LAYOUTS[layout](net.state_dict()), weights)
        img = _random_image((16, 24, 3))
        cv2.imwrite(str(tmp_path / 'in.png'), img)
        out = tmp_path / f'out{out_channels}'
        code = main(['-i', str(tmp_path / 'in.png'), '-o', str(out), '--weights', str(weights), '--no-progress'])
        if out_channels == 3:
            assert code == 0
            restored = cv2.imread(str(out / 'in.png'))
            assert np.abs(restored.astype(float) - _expected(net, img, 255)).max() <= 1
        else:  # 31 bands cannot be an image: refused before any output folder
            assert code == 2 and not out.exists()


def test_a_gray_to_colour_network_writes_colour(tmp_path):
    torch.manual_seed(3)
    net = Restormer(**{**TINY, 'inp_channels': 1, 'out_channels': 3, 'dual_pixel_task': True}).eval()
    torch.save({'params': net.state_dict()}, tmp_path / 'colorize.pth')
    gray = _random_image((16, 24))
    cv2.imwrite(str(tmp_path / 'g.png'), gray)
    weights = str(tmp_path / 'colorize.pth')
    assert main(['-i', str(tmp_path / 'g.png'), '-o', str(tmp_path / 'out'), '--weights', weights, '--side-by-side',
                 '--no-progress']) == 0
    with torch.no_grad():
        expected = net(torch.from_numpy(gray.astype(np.float32) / 255)[None, None]).clamp(0, 1)[0]
    expected = cv2.cvtColor(np.round(expected.permute(1, 2, 0).numpy() * 255), cv2.COLOR_RGB2BGR)
    restored = cv2.imread(str(tmp_path / 'out' / 'g.png'), cv2.IMREAD_UNCHANGED)
    assert restored.shape == (16, 24, 3) and np.abs(restored - expected).max() <= 1
    assert cv2.imread(str(tmp_path / 'out' / 'g_side_by_side.png')).shape == (16, 48, 3)


@pytest.mark.slow
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


# ------------------------------------------------------------------------------------------------ output safety
def _md5s(folder):
    import hashlib
    return {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _photos(tmp_path, n=2):
    photos = tmp_path / 'photos'
    photos.mkdir()
    for i in range(n):
        cv2.imwrite(str(photos / f'p{i}.png'), _random_image((16, 20, 3), seed=i))
    return photos


def _run(inp, out, *extra):
    return main(['-i', str(inp), '-o', str(out), '--allow-random-weights', '--arch-options', TINY_JSON,
                 '--no-progress', *extra])


def test_output_folder_equal_to_input_is_refused_unless_suffix_or_overwrite(tmp_path):
    """restore-output-dir-equals-input-overwrites-originals."""
    photos = _photos(tmp_path)
    before = _md5s(photos)
    assert _run(photos, photos, '--side-by-side') == 2
    assert _md5s(photos) == before  # nothing replaced, nothing added
    assert _run(photos / 'p0.png', photos) == 2  # a single file into its own folder too
    assert _md5s(photos) == before
    assert _run(photos, photos, '--suffix', 'restored') == 0
    after = _md5s(photos)
    assert {k: after[k] for k in before} == before
    assert sorted(after) == ['p0.png', 'p0_restored.png', 'p1.png', 'p1_restored.png']
    assert _run(photos, tmp_path / 'elsewhere', '--overwrite') == 0
    assert _run(photos, photos, '--overwrite') == 0  # asked for: the originals are replaced
    assert _md5s(photos)['p0.png'] != before['p0.png']


def test_existing_results_are_refused_before_any_work_unless_overwrite(tmp_path):
    photos = _photos(tmp_path)
    out = tmp_path / 'out'
    assert _run(photos, out) == 0
    first = _md5s(out)
    (photos / 'p2.png').write_bytes((photos / 'p0.png').read_bytes())
    assert _run(photos, out, '--arch-options', json.dumps({**TINY, 'dim': 16})) == 2  # p0/p1 exist
    assert _md5s(out) == first  # p2 was not written either: refused before any work
    assert _run(photos, out, '--overwrite', '--arch-options', json.dumps({**TINY, 'dim': 16})) == 0
    assert _md5s(out)['p0.png'] != first['p0.png'] and 'p2.png' in _md5s(out)
    (tmp_path / 'file.png').write_bytes(b'x')
    assert _run(photos, tmp_path / 'file.png') == 2  # -o must be a folder
    assert (tmp_path / 'file.png').read_bytes() == b'x'


def test_suffix_and_ext_name_the_outputs(tmp_path, capsys):
    inp = tmp_path / 'in'
    inp.mkdir()
    cv2.imwrite(str(inp / 'a.jpg'), _random_image((16, 24, 3)))
    cv2.imwrite(str(inp / 'b.png'), _random_image((16, 24, 3), np.uint16))
    assert _run(inp, tmp_path / 'out', '--suffix', 'x4', '--ext', 'png', '--side-by-side') == 0
    assert sorted(p.name for p in (tmp_path / 'out').iterdir()) == [
        'a_x4.png', 'a_x4_side_by_side.png', 'b_x4.png', 'b_x4_side_by_side.png']
    assert cv2.imread(str(tmp_path / 'out' / 'b_x4.png'), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    # 16-bit into JPEG: written as 8-bit with a warning rather than failing.
    assert _run(inp / 'b.png', tmp_path / 'jpg', '--ext', 'jpg') == 0
    assert cv2.imread(str(tmp_path / 'jpg' / 'b.jpg'), cv2.IMREAD_UNCHANGED).dtype == np.uint8
    assert 'warning' in capsys.readouterr().err
    assert _run(inp, tmp_path / 'bad', '--suffix', 'a/b') == 2
    assert not (tmp_path / 'bad').exists()


@pytest.mark.parametrize('options', ['{"dim": "8"}', '{"num_blocks": 4}', '{"heads": [1, 2]}', '{"bias": "no"}',
                                     '{"ffn_expansion_factor": "2.66"}', '[8]', '{"dim": 8'])
def test_arch_options_wrong_types_are_option_errors(tmp_path, options):
    """restore-arch-options-wrong-type-traceback: exit 2 (a message), not a TypeError from the constructor."""
    photos = _photos(tmp_path, 1)
    assert main(['-i', str(photos), '-o', str(tmp_path / 'out'), '--task', 'deraining', '--allow-random-weights',
                 '--arch-options', options, '--no-progress']) == 2
    assert not (tmp_path / 'out').exists()


def test_options_are_checked_before_the_weights_are_loaded(tmp_path, capsys):
    """A bad --tile-overlap (half the tile) is reported even when the weights could not be loaded at all."""
    photos = _photos(tmp_path, 1)
    (tmp_path / 'broken.pth').write_bytes(b'not a checkpoint')
    for extra in (['--tile', '16', '--tile-overlap', '8'], ['--arch-options', '{"dim": "8"}'],
                  ['--precision', 'fp16', '--device', 'cpu']):
        assert main(['-i', str(photos), '-o', str(tmp_path / 'out'), '--weights', str(tmp_path / 'broken.pth'),
                     '--no-progress', *extra]) == 2
        assert 'broken.pth' not in capsys.readouterr().err
    (tmp_path / 'empty').mkdir()
    assert main(['-i', str(tmp_path / 'empty'), '-o', str(tmp_path / 'out'), '--weights',
                 str(tmp_path / 'broken.pth')]) == 2
    assert 'broken.pth' not in capsys.readouterr().err
    assert main(['-i', str(photos), '-o', str(tmp_path / 'out'), '--weights', str(tmp_path / 'broken.pth')]) == 2
    assert 'broken.pth' in capsys.readouterr().err


# ------------------------------------------------------------------------------------------- image files in and out
def test_exif_orientation_icc_and_exif_survive(tmp_path):
    """restore-exif-orientation: a portrait phone photo comes out upright, with its ICC profile and EXIF."""
    from PIL import Image, ImageCms, ImageOps

    stored = (np.linspace(0, 255, 40)[:, None, None] * np.ones((40, 24, 3))).astype(np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = 'PhoneMaker'
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile('sRGB')).tobytes()
    Image.fromarray(stored).save(tmp_path / 'phone.jpg', exif=exif.tobytes(), icc_profile=icc, quality=95)
    for ext in ('auto', 'png'):
        out_dir = tmp_path / f'out_{ext}'
        assert _run(tmp_path / 'phone.jpg', out_dir, '--ext', ext) == 0
        with Image.open(next(out_dir.iterdir())) as out:
            assert out.size == (40, 24)  # upright pixels: width 40, height 24
            assert ImageOps.exif_transpose(out).size == (40, 24)
            assert out.getexif().get(0x0112, 1) == 1 and out.getexif().get(0x010F) == 'PhoneMaker'
            assert out.info.get('icc_profile') == icc


def test_truncated_input_is_reported_before_any_image_is_restored(tmp_path):
    photos = _photos(tmp_path, 2)
    data = (photos / 'p1.png').read_bytes()
    (photos / 'p1.png').write_bytes(data[:len(data) // 2])
    assert _run(photos, tmp_path / 'out') == 2
    assert not (tmp_path / 'out').exists() or not any((tmp_path / 'out').iterdir())  # p0 was not written either
    assert _run(photos / 'p1.png', tmp_path / 'out') == 2


def test_two_inputs_for_one_output_name_are_refused(tmp_path):
    photos = _photos(tmp_path, 1)
    cv2.imwrite(str(photos / 'p0.jpg'), _random_image((16, 20, 3)))
    for extra in ([], ['--overwrite']):
        assert _run(photos, tmp_path / 'out', '--ext', 'png', *extra) == 2
        assert not (tmp_path / 'out').exists()
    assert _run(photos, tmp_path / 'out') == 0  # auto: p0.png and p0.jpg


@pytest.mark.slow
def test_killed_restore_leaves_only_complete_images(tmp_path):
    """torn-output-images-on-kill: SIGKILL while an output is written leaves no torn file under a final name."""
    import signal
    import time

    inp = tmp_path / 'in'
    inp.mkdir()
    for i in range(2):  # large 16-bit PNGs encode slowly, so the kill likely lands during a write
        cv2.imwrite(str(inp / f'img{i}.png'), cv2.resize(_random_image((64, 64, 3), np.uint16, i), (1000, 1000)))
    env = {**os.environ, 'PYTHONPATH': str(REPO_ROOT), 'OMP_NUM_THREADS': '1'}
    cmd = [sys.executable, '-m', 'restormer_arch', 'restore', '-i', str(inp), '-o', str(tmp_path / 'out'),
           '--allow-random-weights', '--arch-options', TINY_JSON, '--tile', '256', '--no-progress']
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline and not (tmp_path / 'out' / 'img1.png').exists() \
            and not any((tmp_path / 'out').glob('.img1*')):
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    for path in (tmp_path / 'out').glob('*.png') if (tmp_path / 'out').exists() else []:
        data = path.read_bytes()
        assert data.endswith(b'IEND\xaeB`\x82'), path
        assert cv2.imread(str(path), cv2.IMREAD_UNCHANGED).shape == (1000, 1000, 3)


@pytest.mark.parametrize('bad', [b'hello, not an image', 'float32'])
def test_a_folder_with_an_unreadable_input_is_refused_before_any_result(tmp_path, bad):
    folder = tmp_path / 'in'
    folder.mkdir()
    cv2.imwrite(str(folder / 'a.png'), _random_image((16, 16, 3)))
    if bad == 'float32':
        cv2.imwrite(str(folder / 'f.tif'), np.zeros((16, 16, 3), np.float32))
    else:
        (folder / 'z.png').write_bytes(bad)
    assert _restore(tmp_path, folder, 'deraining') == 2
    assert not (tmp_path / 'out').exists()  # no half-restored folder that a rerun would then refuse to overwrite


def test_an_output_folder_that_cannot_be_made_is_refused_before_restoring(tmp_path):
    cv2.imwrite(str(tmp_path / 'x.png'), _random_image((16, 16, 3)))
    (tmp_path / 'file').write_bytes(b'')
    args = ['-i', str(tmp_path / 'x.png'), '-o', str(tmp_path / 'file' / 'sub'), '--task', 'deraining',
            '--arch-options', TINY_JSON, '--no-progress', '--allow-random-weights']
    assert main(args) == 2


def test_compile_warns_before_any_work_when_shapes_differ(tmp_path, capsys):
    """torch.compile specialises on shapes: every distinct network input shape compiles again (minutes on a CPU)."""
    from restormer_arch.inference import _build_parser, _prepare

    photos = _photos(tmp_path)  # two 16x20 images: one size, no warning
    args = ['-i', str(photos), '-o', str(tmp_path / 'out'), '--allow-random-weights', '--arch-options', TINY_JSON,
            '--compile']
    tiled = args + ['--tile', '16', '--tile-overlap', '4']
    _prepare(_build_parser().parse_args(args))  # compiles lazily: nothing runs here
    assert 'warning' not in capsys.readouterr().err
    cv2.imwrite(str(photos / 'big.png'), _random_image((24, 32, 3), seed=9))
    _prepare(_build_parser().parse_args(args))
    assert 'warning' in capsys.readouterr().err
    _prepare(_build_parser().parse_args(tiled))  # every tile 16x16
    assert 'warning' not in capsys.readouterr().err
    cv2.imwrite(str(photos / 'small.png'), _random_image((10, 40, 3), seed=10))  # 10 rows: a 10x16 tile shape
    _prepare(_build_parser().parse_args(tiled))
    assert 'warning' in capsys.readouterr().err


def test_the_suggested_tile_gives_one_compiled_shape(tmp_path, capsys):
    """The --compile warning's --tile advice must fit every image (a tile larger than an image does not help)."""
    import re

    from restormer_arch.inference import _build_parser, _prepare

    photos = _photos(tmp_path)  # 16x20
    cv2.imwrite(str(photos / 'big.png'), _random_image((40, 56, 3), seed=9))
    args = ['-i', str(photos), '-o', str(tmp_path / 'out'), '--allow-random-weights', '--arch-options', TINY_JSON,
            '--compile']
    _prepare(_build_parser().parse_args(args))
    advice = re.search(r'(--tile \d+(?: --tile-overlap \d+)?)', capsys.readouterr().err)
    assert advice is not None
    _prepare(_build_parser().parse_args(args + advice.group(1).split()))
    assert 'warning' not in capsys.readouterr().err


def test_random_weights_are_the_same_in_every_run(tmp_path):
    """Two runs with --allow-random-weights must restore alike, so that a user can compare flags with them."""
    from restormer_arch.inference import _build_parser, _prepare

    args = ['-i', str(_photos(tmp_path)), '-o', str(tmp_path / 'out'), '--allow-random-weights', '--arch-options',
            TINY_JSON]
    torch.manual_seed(1)
    first = _prepare(_build_parser().parse_args(args))[0].network.state_dict()
    torch.manual_seed(2)
    second = _prepare(_build_parser().parse_args(args))[0].network.state_dict()
    assert all(torch.equal(first[key], second[key]) for key in first)

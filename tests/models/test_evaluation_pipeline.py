"""``basicsr test`` end to end with the shipped options/test/*.yml: per-image metrics.csv, metrics.md, combined rows,
16-bit and float metric inputs, the SIDD .mat dataset, DPDD scene lists, official Gaussian noise, tiled validation.

Each family runs the real command (``python -m restormer_arch test -opt ...``) in a subprocess, from a temporary folder
that holds tiny fixture images at the relative paths of the shipped option file, and a tiny random Restormer saved as
``pretrained_models/<released name>.pth`` (``{'params': ...}``). Only the network size is changed in the option file
(and LPIPS dropped: it needs downloaded AlexNet weights).
"""
import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.io as sio
import torch
import yaml
from basicsr.archs import build_network
from torch import nn
from torch.utils.data import DataLoader

from restormer_arch.data import Dataset_GaussianDenoising, Dataset_PairedImage, Dataset_SIDDBlocks
from restormer_arch.errors import OptionsError
from restormer_arch.models import ImageCleanModel
from restormer_arch.models.results_table import ResultsTable
from restormer_arch.options import check_file
from tests.models.test_models import make_opt

REPO_ROOT = Path(__file__).resolve().parents[2]
TEST_OPTIONS = REPO_ROOT / 'options' / 'test'
TINY = {'dim': 8, 'num_blocks': [1, 1, 1, 1], 'num_refinement_blocks': 1}


pytestmark = pytest.mark.usefixtures('one_thread')


# ---------------------------------------------------------------------------------------------------------- fixtures
def smooth_image(rng, h, w, channels=3, peak=255, dtype=np.uint8):
    """A random but smooth image (low-frequency noise), so SSIM and alignment-free metrics are not degenerate."""
    small = rng.random((max(2, h // 4), max(2, w // 4), channels))
    img = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    img = img.reshape(h, w, channels)
    return np.clip(np.round(img * peak), 0, peak).astype(dtype)


def write_pairs(root, names, rng, size=(20, 28), peak=255, dtype=np.uint8, inputs=('input',)):
    """``root/target/NAME`` and a degraded partner in every folder of ``inputs``."""
    for folder in ('target', *inputs):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for name in names:
        gt = smooth_image(rng, *size, peak=peak, dtype=dtype)
        cv2.imwrite(str(root / 'target' / name), gt)
        for folder in inputs:
            noise = rng.normal(0, 0.05 * peak, gt.shape)
            cv2.imwrite(str(root / folder / name), np.clip(gt + noise, 0, peak).astype(dtype))


def save_checkpoint(path, network_g, seed=0):
    """A tiny random network of ``network_g``'s configuration, saved as the released files are: ``{'params': ...}``."""
    torch.manual_seed(seed)
    net = build_network(dict(network_g))
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({'params': net.state_dict()}, path)
    return net


def tiny_options(name, workdir, drop_metrics=(), **val):
    """The shipped ``options/test/<name>``, with a tiny network and a random checkpoint saved where it points."""
    opt = yaml.safe_load((TEST_OPTIONS / name).read_text())
    opt['network_g'].update(TINY)
    for metric in drop_metrics:
        opt['val']['metrics'].pop(metric)
    opt['val'].update(val)
    save_checkpoint(workdir / opt['path']['pretrain_network_g'], opt['network_g'])
    path = workdir / name
    path.write_text(yaml.safe_dump(opt, sort_keys=False))
    return opt, path


def run_test(workdir, opt_path):
    """``python -m restormer_arch test -opt ...`` from ``workdir``; returns the results folder."""
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')
    result = subprocess.run([sys.executable, '-m', 'restormer_arch', 'test', '-opt', str(opt_path)], cwd=workdir,
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    name = yaml.safe_load(opt_path.read_text())['name']
    return workdir / 'results' / name


def read_metrics_csv(path):
    """Rows of a metrics.csv (metric columns as floats)."""
    with open(path, encoding='utf-8', newline='') as f:
        return [{k: (v if k in ('dataset', 'image') else float(v)) for k, v in row.items()}
                for row in csv.DictReader(f)]


def read_md(path):
    """metrics.md rows as ``{dataset: {column: value}}`` (bold combined rows unwrapped)."""
    lines = [line for line in path.read_text().splitlines() if line.startswith('|')]
    header = [c.strip() for c in lines[0].strip('|').split('|')]
    rows = {}
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip('|').split('|')]
        rows[cells[0].strip('*')] = {h: (c if h == 'dataset' else float(c)) for h, c in zip(header, cells)}
    return rows


def check_tables(results, datasets, metrics):
    """metrics.csv has one row per image with every metric; metrics.md's rows are the means of those rows."""
    rows = read_metrics_csv(str(results / 'metrics.csv'))
    with open(results / 'metrics.csv', newline='') as f:
        assert next(csv.reader(f)) == ['dataset', 'image', *metrics]
    counts = {d: sum(r['dataset'] == d for r in rows) for d in datasets}
    assert counts == datasets
    md = read_md(results / 'metrics.md')
    for dataset, count in datasets.items():
        assert md[dataset]['count'] == count
        for metric in metrics:
            mean = np.mean([r[metric] for r in rows if r['dataset'] == dataset])
            assert md[dataset][metric] == pytest.approx(mean, abs=5.1e-5)
    return rows, md


def by_image(rows, dataset):
    return {r['image']: r for r in rows if r['dataset'] == dataset}


def psnr(a, b, peak):
    mse = np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)
    return 10 * np.log10(peak ** 2 / mse)


# ------------------------------------------------------------------------------------------------------------ families
@pytest.mark.slow
def test_deraining_y_channel_tables_and_average(tmp_path):
    rng = np.random.default_rng(0)
    sets = {'Rain100L': 2, 'Rain100H': 1, 'Test100': 1, 'Test1200': 1, 'Test2800': 2}
    for name, count in sets.items():
        write_pairs(tmp_path / 'datasets/Deraining/test' / name, [f'{i}.png' for i in range(count)], rng)
    opt, path = tiny_options('Deraining.yml', tmp_path)
    results = run_test(tmp_path, path)
    rows, md = check_tables(results, sets, ['psnr', 'ssim'])
    # The paper's average: the mean of the five dataset means (not of the 7 images).
    assert md['Average']['count'] == 7
    assert md['Average']['psnr'] == pytest.approx(np.mean([md[d]['psnr'] for d in sets]), abs=1e-4)
    # Independent check: MATLAB's rgb2ycbcr Y of the saved result and the target, rounded to uint8, PSNR peak 255.
    restored = cv2.imread(str(results / 'visualization/Rain100H/0_Deraining_Restormer.png'))[..., ::-1]
    target = cv2.imread(str(tmp_path / 'datasets/Deraining/test/Rain100H/target/0.png'))[..., ::-1]

    def y(img):
        return np.round(16 + img.astype(np.float64) @ np.array([65.481, 128.553, 24.966]) / 255)

    assert by_image(rows, 'Rain100H')['0']['psnr'] == pytest.approx(psnr(y(restored), y(target), 255), abs=1e-9)


@pytest.mark.slow
def test_gopro_hide_rgb_tables(tmp_path):
    rng = np.random.default_rng(1)
    for name in ('GoPro', 'HIDE'):
        write_pairs(tmp_path / 'datasets/Motion_Deblurring/test' / name, ['a.png', 'b.png'], rng, size=(24, 16))
    _, path = tiny_options('MotionDeblurring_GoPro_HIDE.yml', tmp_path)
    results = run_test(tmp_path, path)
    rows, md = check_tables(results, {'GoPro': 2, 'HIDE': 2}, ['psnr', 'ssim'])
    assert 'Average' not in md  # the paper reports no combined row here
    restored = cv2.imread(str(results / 'visualization/HIDE/b_MotionDeblurring_GoPro_HIDE_Restormer.png'))
    target = cv2.imread(str(tmp_path / 'datasets/Motion_Deblurring/test/HIDE/target/b.png'))
    assert by_image(rows, 'HIDE')['b']['psnr'] == pytest.approx(psnr(restored, target, 255), abs=1e-9)


@pytest.mark.slow
def test_dpdd_dual_pixel_16bit_indoor_outdoor(tmp_path):
    rng = np.random.default_rng(2)
    root = tmp_path / 'datasets/Defocus_Deblurring/test/DPDD'
    write_pairs(root, ['s1.png', 's2.png', 's3.png'], rng, size=(24, 24), peak=65535, dtype=np.uint16,
                inputs=('inputL', 'inputR'))
    (root / 'meta_info_indoor.txt').write_text('s1.png\ns3.png\n')
    (root / 'meta_info_outdoor.txt').write_text('s2.png\n')
    _, path = tiny_options('DefocusDeblurring_DualPixel.yml', tmp_path, drop_metrics=['lpips'])
    results = run_test(tmp_path, path)
    rows, md = check_tables(results, {'DPDD_indoor': 2, 'DPDD_outdoor': 1}, ['psnr', 'ssim', 'mae'])
    assert set(by_image(rows, 'DPDD_indoor')) == {'s1', 's3'}
    combined = md['DPDD (combined)']
    assert combined['count'] == 3
    assert combined['psnr'] == pytest.approx(np.mean([r['psnr'] for r in rows]), abs=1e-4)  # over all images
    # 16-bit result saved and scored at 16 bits: PSNR with peak 65535 and MAE on [0, 1] from the saved PNG.
    restored = cv2.imread(str(results / 'visualization/DPDD_outdoor/s2_DefocusDeblurring_DualPixel_Restormer.png'),
                          cv2.IMREAD_UNCHANGED)
    target = cv2.imread(str(root / 'target/s2.png'), cv2.IMREAD_UNCHANGED)
    assert restored.dtype == np.uint16
    row = by_image(rows, 'DPDD_outdoor')['s2']
    assert row['psnr'] == pytest.approx(psnr(restored, target, 65535), abs=1e-9)
    assert row['mae'] == pytest.approx(np.mean(np.abs(restored / 65535 - target / 65535)), abs=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize('option_file, folders, sigmas, gray', [
    ('GaussianDenoising_Color_Sigma25.yml', {'CBSD68': 'CBSD68', 'Kodak24': 'Kodak', 'McMaster': 'McMaster',
                                             'Urban100': 'Urban100'}, [25], False),
    ('GaussianDenoising_Gray_Blind.yml', {'Set12': 'Set12', 'BSD68': 'BSD68', 'Urban100': 'Urban100'},
     [15, 25, 50], True),
])
def test_gaussian_denoising_tables(tmp_path, option_file, folders, sigmas, gray):
    rng = np.random.default_rng(3)
    for folder in folders.values():
        (tmp_path / 'datasets/Denoising/test' / folder).mkdir(parents=True)
        for i in range(2):
            img = smooth_image(rng, 16, 24, channels=1 if gray else 3)
            cv2.imwrite(str(tmp_path / 'datasets/Denoising/test' / folder / f'{i}.png'), img)
    opt, path = tiny_options(option_file, tmp_path)
    results = run_test(tmp_path, path)
    datasets = {f'{name}_sigma{s}': 2 for s in sigmas for name in folders}
    rows, _ = check_tables(results, datasets, ['psnr'])
    name = f'Urban100_sigma{sigmas[-1]}'
    restored = cv2.imread(str(results / 'visualization' / name / f'1_{opt["name"]}.png'), cv2.IMREAD_UNCHANGED)
    target = cv2.imread(str(tmp_path / 'datasets/Denoising/test/Urban100/1.png'), cv2.IMREAD_UNCHANGED)
    assert restored.ndim == (2 if gray else 3)
    assert by_image(rows, name)['1']['psnr'] == pytest.approx(psnr(restored, target, 255), abs=1e-9)


@pytest.mark.slow
def test_sidd_blocks_from_mat_files(tmp_path):
    rng = np.random.default_rng(4)
    root = tmp_path / 'datasets/Denoising/test/SIDD'
    root.mkdir(parents=True)
    gt = np.stack([np.stack([smooth_image(rng, 16, 16) for _ in range(2)]) for _ in range(2)])  # (2, 2, 16, 16, 3)
    noisy = np.clip(gt + rng.normal(0, 12, gt.shape), 0, 255).astype(np.uint8)
    sio.savemat(str(root / 'ValidationNoisyBlocksSrgb.mat'), {'ValidationNoisyBlocksSrgb': noisy})
    sio.savemat(str(root / 'ValidationGtBlocksSrgb.mat'), {'ValidationGtBlocksSrgb': gt})
    opt, path = tiny_options('RealDenoising_SIDD.yml', tmp_path)
    results = run_test(tmp_path, path)
    rows, _ = check_tables(results, {'SIDD_val': 4}, ['psnr', 'ssim'])
    assert [r['image'] for r in rows] == ['0000_00', '0000_01', '0001_00', '0001_01']
    # Independent check: the float (unquantised) output of the same weights, PSNR peak 1 as evaluate_sidd.m.
    net = build_network(dict(opt['network_g']))
    net.load_state_dict(torch.load(tmp_path / opt['path']['pretrain_network_g'], weights_only=True)['params'])
    with torch.no_grad():
        out = net(torch.from_numpy(noisy[1, 0].transpose(2, 0, 1)).float().div(255)[None]).clamp(0, 1)
    expected = psnr(out[0].numpy().transpose(1, 2, 0), gt[1, 0] / 255, 1)
    assert by_image(rows, 'SIDD_val')['0001_00']['psnr'] == pytest.approx(expected, abs=1e-4)


# --------------------------------------------------------------------------------------------------- units around it
def test_sidd_blocks_dataset_names_and_errors(tmp_path):
    blocks = np.zeros((3, 2, 8, 8, 3), np.uint8)
    blocks[2, 1] = 255
    sio.savemat(str(tmp_path / 'noisy.mat'), {'n': blocks})
    dataset = Dataset_SIDDBlocks({'name': 'sidd', 'phase': 'test', 'dataroot_lq': str(tmp_path / 'noisy.mat')})
    assert len(dataset) == 6
    item = dataset[5]
    assert item['lq_path'] == '0002_01' and 'gt' not in item and float(item['lq'].min()) == 1.0
    with pytest.raises(FileNotFoundError, match='dataroot_gt.*missing.mat'):
        Dataset_SIDDBlocks({'name': 'sidd', 'phase': 'test', 'dataroot_lq': str(tmp_path / 'noisy.mat'),
                            'dataroot_gt': str(tmp_path / 'missing.mat')})
    with pytest.raises(ValueError, match='for evaluation'):
        Dataset_SIDDBlocks({'name': 'sidd', 'phase': 'train', 'dataroot_lq': str(tmp_path / 'noisy.mat')})


def test_official_gaussian_noise_is_seed_zero_per_image(tmp_path):
    rng = np.random.default_rng(5)
    for i, size in enumerate([(8, 12), (10, 6)]):
        cv2.imwrite(str(tmp_path / f'{i}.png'), smooth_image(rng, *size))
    dataset = Dataset_GaussianDenoising({'name': 'g', 'phase': 'test', 'dataroot_gt': str(tmp_path), 'in_ch': 3,
                                         'sigma_test': 25, 'noise_protocol': 'official'})
    for i in range(2):
        item = dataset[i]
        # The official scripts: RGB float32 image, np.random.seed(0), += np.random.normal(0, sigma/255, shape).
        rgb = np.float32(cv2.imread(str(tmp_path / f'{i}.png'))[..., ::-1]) / 255.
        np.random.seed(0)
        rgb += np.random.normal(0, 25 / 255., rgb.shape)
        np.testing.assert_array_equal(item['lq'].numpy().transpose(1, 2, 0), rgb)
    with pytest.raises(ValueError, match='noise_protocol'):
        Dataset_GaussianDenoising({'name': 'g', 'phase': 'test', 'dataroot_gt': str(tmp_path), 'sigma_test': 25,
                                   'noise_protocol': 'matlab'})


def test_bit_depth_8_reads_16bit_as_opencv_does(tmp_path):
    img = np.full((8, 8, 3), 511, np.uint16)  # high byte 1, rounded 511/257 would be 2
    for folder in ('lq', 'gt'):
        (tmp_path / folder).mkdir()
        cv2.imwrite(str(tmp_path / folder / 'a.png'), img)
    opt = {'name': 'd', 'phase': 'test', 'dataroot_lq': str(tmp_path / 'lq'), 'dataroot_gt': str(tmp_path / 'gt')}
    assert float(Dataset_PairedImage(opt)[0]['gt'][0, 0, 0]) == pytest.approx(511 / 65535)
    assert float(Dataset_PairedImage(dict(opt, bit_depth=8))[0]['gt'][0, 0, 0]) == pytest.approx(1 / 255)


def test_dpdd_scene_lists(tmp_path):
    sys.path.insert(0, str(REPO_ROOT / 'datasets'))
    try:
        import dpdd_scene_lists
    finally:
        sys.path.pop(0)
    root = tmp_path / 'DPDD'
    (root / 'target').mkdir(parents=True)
    for i in range(76):
        (root / 'target' / f'img{i}.png').write_bytes(b'')
    labels = tmp_path / 'labels'
    labels.mkdir()
    np.save(labels / 'indoor_labels.npy', np.array(dpdd_scene_lists.INDOOR) + 1)  # the official files are 1-based
    np.save(labels / 'outdoor_labels.npy', np.array(dpdd_scene_lists.OUTDOOR) + 1)
    assert dpdd_scene_lists.main([str(root), '--labels', str(labels)]) == 0
    indoor = (root / 'meta_info_indoor.txt').read_text().split()
    assert len(indoor) == 37 and indoor[0] == 'img8.png'  # natural order: img8 is the 9th image, not img16
    assert len((root / 'meta_info_outdoor.txt').read_text().split()) == 39
    assert dpdd_scene_lists.main([str(root)]) == 0
    assert (root / 'meta_info_indoor.txt').read_text().split() == indoor
    (root / 'target' / 'extra.png').write_bytes(b'')
    assert dpdd_scene_lists.main([str(root)]) == 2


def test_results_table_combined_rows(tmp_path):
    table = ResultsTable(str(tmp_path), [{'name': 'All', 'datasets': ['a', 'b'], 'weight': 'image'},
                                         {'name': 'Mean', 'datasets': ['a', 'b'], 'weight': 'dataset'}])
    for value in (1.0, 2.0, 3.0):
        table.add('a', f'i{value}', {'psnr': value})
    table.write()
    assert 'All' not in (tmp_path / 'metrics.md').read_text()  # b not scored yet
    table.start_dataset('b')
    table.add('b', 'j', {'psnr': 6.0})
    table.write()
    md = read_md(tmp_path / 'metrics.md')
    assert md['All']['psnr'] == 3.0 and md['Mean']['psnr'] == 4.0 and md['All']['count'] == 4
    with pytest.raises(ValueError, match=r'\[0\]: expected .*weight: image or dataset'):
        ResultsTable(str(tmp_path), [{'name': 'x', 'datasets': ['a'], 'weight': 'median'}])


@pytest.mark.parametrize('val, message', [
    ({'image_dtype': 'uint16', 'metrics': {'psnr': {'type': 'calculate_psnr', 'crop_border': 0}}},
     "BasicSR's calculate_psnr assumes"),
    ({'image_dtype': 'float32', 'metrics': {'p': {'type': 'calculate_mae'}}}, 'add "data_range: 1"'),
    ({'image_dtype': 'float16'}, "val.image_dtype: 'float16' is not one of"),
    ({'tile': 0}, 'val.tile / val.tile_overlap: tile=0: the tile size must be a positive'),
    ({'tile': 64, 'tile_overlap': 32}, 'val.tile / val.tile_overlap: overlap=32 with tile=64: the overlap must be'),
    ({'tile': 64, 'tile_blend': 'gauss'}, "val.tile_blend: 'gauss' is not one of"),
    ({'combined_rows': [{'name': 'x', 'datasets': ['Rain100X']}]}, 'Rain100X is not the name of a dataset'),
])
def test_val_options_are_checked(val, message, tmp_path):
    opt = yaml.safe_load((TEST_OPTIONS / 'Deraining.yml').read_text())
    opt['val'].update(val)
    opt['path']['pretrain_network_g'] = None
    (tmp_path / 'o.yml').write_text(yaml.safe_dump(opt))
    with pytest.raises(OptionsError, match=re.escape(message)):
        check_file(str(tmp_path / 'o.yml'), is_train=False, root_path=str(tmp_path), data=False)


# ------------------------------------------------------------------------------------------------------------ tiling
def _validate(tmp_path, net, val, name):
    opt = make_opt(tmp_path / name, is_train=False, val={'metrics_table': True, **val})
    model = ImageCleanModel(opt)
    model.net_g = net
    dataset = Dataset_PairedImage({'name': 'tiles', 'phase': 'val', 'dataroot_lq': str(tmp_path / 'data/input'),
                                   'dataroot_gt': str(tmp_path / 'data/target')})
    model.nondist_validation(DataLoader(dataset, batch_size=1), 'tiny', None, save_img=False)
    outputs = []
    for index in range(len(dataset)):  # the dataset wraps indices around: plain iteration would never stop
        model.feed_data({'lq': dataset[index]['lq'][None]})
        model.test()
        outputs.append(model.output)
    return outputs, read_metrics_csv(str(tmp_path / name / 'experiment' / 'metrics.csv'))


def test_tiled_validation_equals_whole_image_for_a_local_network(tmp_path):
    write_pairs(tmp_path / 'data', ['a.png', 'b.png'], np.random.default_rng(6), size=(60, 44))
    torch.manual_seed(0)
    # Receptive radius 3 px, less than the zero-weight margin of the tiles (overlap // 4 = 4 px).
    net = nn.Sequential(*[nn.Conv2d(3, 3, 3, padding=1) for _ in range(3)])
    whole, whole_rows = _validate(tmp_path, net, {}, 'whole')
    tiled, tiled_rows = _validate(tmp_path, net, {'tile': 40, 'tile_overlap': 16}, 'tiled')
    for a, b in zip(whole, tiled):
        torch.testing.assert_close(a, b, atol=2e-6, rtol=0)
    assert [r['psnr'] for r in whole_rows] == pytest.approx([r['psnr'] for r in tiled_rows], abs=1e-4)


def test_tiled_validation_of_restormer_is_close(tmp_path):
    write_pairs(tmp_path / 'data', ['a.png'], np.random.default_rng(7), size=(64, 64))
    torch.manual_seed(0)
    net = build_network({'type': 'Restormer', **TINY})
    whole, _ = _validate(tmp_path, net, {}, 'whole')
    tiled, _ = _validate(tmp_path, net, {'tile': 48, 'tile_overlap': 16}, 'tiled')
    # Channel attention pools over the whole input, so tiles see other statistics: close, not equal (stated bound).
    diff = (whole[0] - tiled[0]).abs()
    print(f'Restormer tiled vs whole: max {float(diff.max()):.2e}, mean {float(diff.mean()):.2e}')
    assert 0 < float(diff.max()) < 0.05 and float(diff.mean()) < 0.01  # > 0: the tiles were really used

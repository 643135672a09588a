"""Tests for restormer_arch.data: real PNG files (8/16-bit, gray/colour) and real BasicSR LMDBs written per test."""
import os
import random
import subprocess
import sys
from os import path as osp

import cv2
import numpy as np
import pytest
import torch
from basicsr.data import build_dataloader, build_dataset
from basicsr.utils.lmdb_util import make_lmdb_from_imgs

from restormer_arch.data import Dataset_DefocusDeblur_DualPixel_16bit, Dataset_GaussianDenoising, Dataset_PairedImage
from restormer_arch.data.base_dataset import apply_dihedral
from restormer_arch.data.gaussian_denoising_dataset import eval_noise
from tests.conftest import REPO_ROOT

H, W = 24, 32


# ----------------------------------------------------------------------------------------------------------- helpers
def write(path, img):
    os.makedirs(osp.dirname(path), exist_ok=True)
    assert cv2.imwrite(str(path), img)
    return str(path)


def random_images(n, dtype=np.uint8, shape=(H, W, 3), seed=0):
    rng = np.random.default_rng(seed)
    peak = np.iinfo(dtype).max
    return [rng.integers(0, peak + 1, size=shape).astype(dtype) for _ in range(n)]


def make_folder(root, imgs, names=None):
    os.makedirs(root, exist_ok=True)
    names = names or [f'img{i}.png' for i in range(len(imgs))]
    for name, img in zip(names, imgs):
        write(osp.join(root, name), img)
    return str(root)


def make_lmdb(folder, lmdb_path):
    names = sorted(os.listdir(folder))
    make_lmdb_from_imgs(str(folder), str(lmdb_path), names, [osp.splitext(n)[0] for n in names], map_size=2**24)
    return str(lmdb_path)


def paired_opt(lq, gt, phase='val', **kw):
    opt = {'name': 'pairs', 'type': 'Dataset_PairedImage', 'dataroot_lq': lq, 'dataroot_gt': gt, 'phase': phase,
           'io_backend': {'type': 'disk'}, 'filename_tmpl': '{}', 'scale': 1}
    opt.update(kw)
    return opt


def to_chw_rgb(img_bgr, peak):
    img = img_bgr.astype(np.float64) / peak
    img = img[..., None] if img.ndim == 2 else img[..., ::-1]
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float()


@pytest.fixture
def pairs(tmp_path):
    gts = random_images(3, seed=1)
    lqs = random_images(3, seed=2)
    return make_folder(tmp_path / 'lq', lqs), make_folder(tmp_path / 'gt', gts), lqs, gts


@pytest.fixture
def same_pairs(tmp_path):
    """LQ identical to GT, so crops/augmentations must keep them equal."""
    imgs = random_images(2, seed=3)
    return make_folder(tmp_path / 'lq', imgs), make_folder(tmp_path / 'gt', imgs), imgs


def find_transform(patch, full):
    """Return the dihedral mode whose transform of ``full`` contains ``patch`` (HWC), or None."""
    size = patch.shape[0]
    for mode in range(8):
        img = apply_dihedral(full, mode)
        for top in range(img.shape[0] - size + 1):
            for left in range(img.shape[1] - size + 1):
                if np.array_equal(img[top:top + size, left:left + size], patch):
                    return mode
    return None


# ---------------------------------------------------------------------------------------------- Dataset_PairedImage
def test_paired_folder_val_returns_full_images(pairs):
    lq_dir, gt_dir, lqs, gts = pairs
    ds = Dataset_PairedImage(paired_opt(lq_dir, gt_dir))
    assert len(ds) == 3
    item = ds[1]
    assert set(item) == {'lq', 'gt', 'lq_path', 'gt_path'}
    assert item['lq_path'] == osp.join(lq_dir, 'img1.png') and item['gt_path'] == osp.join(gt_dir, 'img1.png')
    for key, ref in (('lq', lqs[1]), ('gt', gts[1])):
        assert item[key].dtype == torch.float32 and item[key].shape == (3, H, W)
        assert 0 <= item[key].min() and item[key].max() <= 1
        torch.testing.assert_close(item[key], to_chw_rgb(ref, 255), rtol=0, atol=1e-6)


def test_paired_is_rgb(tmp_path):
    red = np.zeros((H, W, 3), np.uint8)
    red[..., 2] = 255  # OpenCV writes BGR: channel 2 is red
    red[:, :4] = (255, 0, 0)  # a blue stripe on the left
    lq_dir, gt_dir = make_folder(tmp_path / 'lq', [red]), make_folder(tmp_path / 'gt', [red])
    gt = Dataset_PairedImage(paired_opt(lq_dir, gt_dir))[0]['gt']
    assert gt[0, :, 4:].min() == 1 and gt[2, :, 4:].max() == 0  # channel 0 is red
    assert gt[2, :, :4].min() == 1 and gt[0, :, :4].max() == 0  # channel 2 is blue


def test_paired_16bit_keeps_precision(tmp_path):
    img = np.full((H, W, 3), 1000, np.uint16)
    img[0, 0] = (65535, 1, 0)
    lq_dir, gt_dir = make_folder(tmp_path / 'lq', [img]), make_folder(tmp_path / 'gt', [img])
    gt = Dataset_PairedImage(paired_opt(lq_dir, gt_dir))[0]['gt']
    assert gt[0, 5, 5].item() == pytest.approx(1000 / 65535, abs=1e-7)  # 8-bit reading would give 4/255
    assert gt[:, 0, 0].tolist() == pytest.approx([0.0, 1 / 65535, 1.0], abs=1e-7)


def test_paired_gray_images(tmp_path):
    gray = random_images(1, shape=(H, W), seed=4)
    lq_dir, gt_dir = make_folder(tmp_path / 'lq', gray), make_folder(tmp_path / 'gt', gray)
    with pytest.warns(UserWarning, match='all 1 target images are gray, but the dataset reads them as RGB'):
        rgb = Dataset_PairedImage(paired_opt(lq_dir, gt_dir))[0]['gt']
    assert rgb.shape == (3, H, W) and torch.equal(rgb[0], rgb[1]) and torch.equal(rgb[1], rgb[2])
    one = Dataset_PairedImage(paired_opt(lq_dir, gt_dir, in_ch=1))[0]['gt']
    torch.testing.assert_close(one, to_chw_rgb(gray[0], 255), rtol=0, atol=1e-6)


def test_paired_color_read_as_gray_with_in_ch_1(pairs):
    lq_dir, gt_dir, _, gts = pairs
    gt = Dataset_PairedImage(paired_opt(lq_dir, gt_dir, in_ch=1))[0]['gt']
    expected = cv2.cvtColor(gts[0], cv2.COLOR_BGR2GRAY)  # the documented conversion (docs/images.md)
    torch.testing.assert_close(gt, to_chw_rgb(expected, 255), rtol=0, atol=1e-6)


def test_paired_train_crop_and_augmentation_stay_aligned(same_pairs):
    lq_dir, gt_dir, imgs = same_pairs
    ds = Dataset_PairedImage(paired_opt(lq_dir, gt_dir, phase='train', gt_size=16, geometric_augs=True))
    random.seed(0)
    modes = set()
    for i in range(24):
        item = ds[i % 2]
        assert item['lq'].shape == item['gt'].shape == (3, 16, 16)
        assert torch.equal(item['lq'], item['gt'])
        patch = (item['gt'].numpy().transpose(1, 2, 0)[..., ::-1] * 255).round().astype(np.uint8)
        mode = find_transform(patch, imgs[i % 2])
        assert mode is not None, 'the patch is not a flip/rot90 crop of the image'
        modes.add(mode)
    assert len(modes) >= 4, f'augmentation hardly varies: modes {modes}'


def test_paired_train_without_augmentation_is_plain_crop(same_pairs):
    lq_dir, gt_dir, imgs = same_pairs
    ds = Dataset_PairedImage(paired_opt(lq_dir, gt_dir, phase='train', gt_size=16, geometric_augs=False))
    random.seed(1)
    for _ in range(6):
        patch = (ds[0]['gt'].numpy().transpose(1, 2, 0)[..., ::-1] * 255).round().astype(np.uint8)
        assert find_transform(patch, imgs[0]) == 0


def test_paired_pads_small_images(tmp_path):
    small = random_images(1, shape=(10, 12, 3), seed=5)[0]
    lq_dir, gt_dir = make_folder(tmp_path / 'lq', [small]), make_folder(tmp_path / 'gt', [small])
    item = Dataset_PairedImage(paired_opt(lq_dir, gt_dir, phase='train', gt_size=16))[0]
    gt = item['gt']
    assert gt.shape == item['lq'].shape == (3, 16, 16)
    ref = to_chw_rgb(small, 255)
    torch.testing.assert_close(gt[:, :10, :12], ref, rtol=0, atol=1e-6)  # original kept top-left
    torch.testing.assert_close(gt[:, 10:, :12], ref.flip(1)[:, :6], rtol=0, atol=1e-6)  # mirrored bottom rows
    torch.testing.assert_close(gt[:, :10, 12:], ref.flip(2)[:, :, :4], rtol=0, atol=1e-6)  # mirrored right columns


def test_paired_small_image_without_padding_is_an_error(tmp_path):
    small = random_images(1, shape=(10, 12, 3))
    lq_dir, gt_dir = make_folder(tmp_path / 'lq', small), make_folder(tmp_path / 'gt', small)
    # Found when the dataset is built (check_images), not when the sampler first draws the image.
    with pytest.raises(ValueError, match=r'img0.png.*10x12.*smaller than the training patch gt_size=16'):
        Dataset_PairedImage(paired_opt(lq_dir, gt_dir, phase='train', gt_size=16, use_padding=False))
    ds = Dataset_PairedImage(paired_opt(lq_dir, gt_dir, phase='train', gt_size=16, use_padding=False,
                                        check_images=False))
    with pytest.raises(ValueError):  # without the check: the crop's own error, no undersized patch
        ds[0]


def test_paired_filename_template(tmp_path):
    gts = random_images(2, seed=6)
    gt_dir = make_folder(tmp_path / 'gt', gts, ['a.png', 'b.png'])
    lq_dir = make_folder(tmp_path / 'lq', gts, ['a_rain.png', 'b_rain.png'])
    ds = Dataset_PairedImage(paired_opt(lq_dir, gt_dir, filename_tmpl='{}_rain'))
    assert [p['lq_path'] for p in ds.paths] == [osp.join(lq_dir, 'a_rain.png'), osp.join(lq_dir, 'b_rain.png')]


def test_paired_meta_info_file(pairs, tmp_path):
    lq_dir, gt_dir, lqs, _ = pairs
    meta = tmp_path / 'meta.txt'
    meta.write_text('img2.png (24,32,3) 1\n\nimg0.png\n')  # extra columns and blank lines are ignored
    ds = Dataset_PairedImage(paired_opt(lq_dir, gt_dir, meta_info_file=str(meta)))
    assert len(ds) == 2 and ds[0]['lq_path'] == osp.join(lq_dir, 'img2.png')
    torch.testing.assert_close(ds[0]['lq'], to_chw_rgb(lqs[2], 255), rtol=0, atol=1e-6)


def test_paired_lmdb_matches_disk(pairs, tmp_path):
    lq_dir, gt_dir, _, _ = pairs
    lq_db, gt_db = make_lmdb(lq_dir, tmp_path / 'lq.lmdb'), make_lmdb(gt_dir, tmp_path / 'gt.lmdb')
    disk = Dataset_PairedImage(paired_opt(lq_dir, gt_dir))
    db = Dataset_PairedImage(paired_opt(lq_db, gt_db, io_backend={'type': 'lmdb'}))
    assert len(db) == 3 and db[2]['lq_path'] == 'img2' and db[2]['gt_path'] == 'img2'
    for i in range(3):
        assert torch.equal(db[i]['lq'], disk[i]['lq']) and torch.equal(db[i]['gt'], disk[i]['gt'])


def test_paired_lmdb_with_meta_info_file(pairs, tmp_path):
    lq_dir, gt_dir, _, _ = pairs
    lq_db, gt_db = make_lmdb(lq_dir, tmp_path / 'lq.lmdb'), make_lmdb(gt_dir, tmp_path / 'gt.lmdb')
    meta = tmp_path / 'subset.txt'
    meta.write_text('img2.png (24,32,3) 1\nimg0.png\n')
    ds = Dataset_PairedImage(paired_opt(lq_db, gt_db, io_backend={'type': 'lmdb'}, meta_info_file=str(meta)))
    assert [p['gt_path'] for p in ds.paths] == ['img0', 'img2']
    meta.write_text('img9.png\n')
    with pytest.raises(ValueError, match=r'LMDB key "img9" not found in ".*lq.lmdb"'):  # found by the image check
        Dataset_PairedImage(paired_opt(lq_db, gt_db, io_backend={'type': 'lmdb'}, meta_info_file=str(meta)))


def test_paired_lmdb_keeps_16bit(tmp_path):
    img = np.full((H, W, 3), 1000, np.uint16)
    folder = make_folder(tmp_path / 'imgs', [img])
    db, lq_db = make_lmdb(folder, tmp_path / 'x.lmdb'), make_lmdb(folder, tmp_path / 'lq.lmdb')
    gt = Dataset_PairedImage(paired_opt(lq_db, db, io_backend={'type': 'lmdb'}))[0]['gt']
    assert gt.max().item() == pytest.approx(1000 / 65535, abs=1e-7)


def test_paired_mean_std(pairs):
    lq_dir, gt_dir, _, _ = pairs
    plain = Dataset_PairedImage(paired_opt(lq_dir, gt_dir))[0]
    norm = Dataset_PairedImage(paired_opt(lq_dir, gt_dir, mean=[0.5, 0.5, 0.25], std=[0.5, 0.5, 2.0]))[0]
    torch.testing.assert_close(norm['gt'][2], (plain['gt'][2] - 0.25) / 2.0)
    torch.testing.assert_close(norm['lq'][0], (plain['lq'][0] - 0.5) / 0.5)


def test_paired_through_basicsr_builders(same_pairs):
    lq_dir, gt_dir, _ = same_pairs
    opt = paired_opt(lq_dir, gt_dir, phase='train', gt_size=16, geometric_augs=True, use_shuffle=True,
                     num_worker_per_gpu=0, batch_size_per_gpu=2, dataset_enlarge_ratio=1, prefetch_mode=None)
    ds = build_dataset(opt)
    batch = next(iter(build_dataloader(ds, opt, num_gpu=0, dist=False, sampler=None, seed=0)))
    assert batch['lq'].shape == batch['gt'].shape == (2, 3, 16, 16) and torch.equal(batch['lq'], batch['gt'])


# ------------------------------------------------------------------------------------------------- errors (paired)
def test_error_missing_dataroot(pairs, tmp_path):
    _, gt_dir, _, _ = pairs
    with pytest.raises(FileNotFoundError, match=r'dataroot_lq.*nope.*does not exist'):
        Dataset_PairedImage(paired_opt(str(tmp_path / 'nope'), gt_dir))


def test_error_missing_option(pairs):
    _, gt_dir, _, _ = pairs
    opt = paired_opt(None, gt_dir)
    opt.pop('dataroot_lq')
    with pytest.raises(KeyError, match='dataroot_lq'):
        Dataset_PairedImage(opt)


def test_error_name_mismatch_lists_names(tmp_path):
    imgs = random_images(3)
    gt_dir = make_folder(tmp_path / 'gt', imgs, ['a.png', 'b.png', 'c.png'])
    lq_dir = make_folder(tmp_path / 'lq', imgs, ['a.png', 'x.png', 'y.png'])
    with pytest.raises(ValueError, match=r'2 file\(s\) missing in dataroot_lq: b.png, c.png.*without a gt partner: '
                                         r'x.png, y.png'):
        Dataset_PairedImage(paired_opt(lq_dir, gt_dir))


def test_error_meta_info_lists_missing_files(pairs, tmp_path):
    lq_dir, gt_dir, _, _ = pairs
    meta = tmp_path / 'meta.txt'
    meta.write_text('img0.png\nghost.png\n')
    with pytest.raises(ValueError, match='missing in dataroot_lq: ghost.png'):
        Dataset_PairedImage(paired_opt(lq_dir, gt_dir, meta_info_file=str(meta)))
    with pytest.raises(FileNotFoundError, match='meta_info_file.*absent.txt'):
        Dataset_PairedImage(paired_opt(lq_dir, gt_dir, meta_info_file=str(tmp_path / 'absent.txt')))


def test_error_size_mismatch(tmp_path):
    lq_dir = make_folder(tmp_path / 'lq', random_images(1, shape=(H, W + 2, 3)))
    gt_dir = make_folder(tmp_path / 'gt', random_images(1))
    with pytest.raises(ValueError, match=r'sizes differ \(lq ".*img0.png" 24x34, gt ".*img0.png" 24x32\)'):
        Dataset_PairedImage(paired_opt(lq_dir, gt_dir))  # found when the dataset is built (check_images)
    with pytest.raises(ValueError, match=r'differ in size.*img0.png: 24x34.*img0.png: 24x32'):
        Dataset_PairedImage(paired_opt(lq_dir, gt_dir, check_images=False))[0]


def test_error_corrupt_image(pairs):
    lq_dir, gt_dir, _, _ = pairs
    with open(osp.join(lq_dir, 'img1.png'), 'wb') as f:
        f.write(b'not a png at all')
    with pytest.raises(ValueError, match=r'lq/img1.png" cannot be decoded'):
        Dataset_PairedImage(paired_opt(lq_dir, gt_dir))  # found when the dataset is built (check_images)
    ds = Dataset_PairedImage(paired_opt(lq_dir, gt_dir, check_images=False))
    with pytest.raises(ValueError, match=r'lq/img1.png" cannot be decoded'):
        ds[1]


def test_error_lmdb_without_meta_info(pairs, tmp_path):
    lq_dir, gt_dir, _, _ = pairs
    lq_db, gt_db = make_lmdb(lq_dir, tmp_path / 'lq.lmdb'), make_lmdb(gt_dir, tmp_path / 'gt.lmdb')
    os.remove(osp.join(lq_db, 'meta_info.txt'))
    with pytest.raises(FileNotFoundError, match=r'dataroot_lq.*lq.lmdb.*meta_info.txt.*make_lmdb.py'):
        Dataset_PairedImage(paired_opt(lq_db, gt_db, io_backend={'type': 'lmdb'}))


def test_error_lmdb_missing_key(pairs, tmp_path):
    lq_dir, gt_dir, _, _ = pairs
    lq_db, gt_db = make_lmdb(lq_dir, tmp_path / 'lq.lmdb'), make_lmdb(gt_dir, tmp_path / 'gt.lmdb')
    for db in (lq_db, gt_db):
        with open(osp.join(db, 'meta_info.txt'), 'a') as f:
            f.write('lost.png (24,32,3) 1\n')
    with pytest.raises(ValueError, match=r'LMDB key "lost" not found in .*rebuild the LMDB'):
        Dataset_PairedImage(paired_opt(lq_db, gt_db, io_backend={'type': 'lmdb'}))


def test_error_lmdb_size_mismatch_found_before_training(tmp_path):
    lq_db = make_lmdb(make_folder(tmp_path / 'lq', random_images(1, shape=(H, W + 8, 3))), tmp_path / 'lq.lmdb')
    gt_db = make_lmdb(make_folder(tmp_path / 'gt', random_images(1)), tmp_path / 'gt.lmdb')
    with pytest.raises(ValueError, match=r'sizes differ \(lq "img0" 24x40, gt "img0" 24x32\)'):
        Dataset_PairedImage(paired_opt(lq_db, gt_db, io_backend={'type': 'lmdb'}))


def test_error_lmdb_key_sets_differ(tmp_path):
    imgs = random_images(2)
    lq_db = make_lmdb(make_folder(tmp_path / 'lq', imgs, ['a.png', 'b.png']), tmp_path / 'lq.lmdb')
    gt_db = make_lmdb(make_folder(tmp_path / 'gt', imgs, ['a.png', 'c.png']), tmp_path / 'gt.lmdb')
    with pytest.raises(ValueError, match=r'different keys \(missing in lq: c; missing in gt: b\)'):
        Dataset_PairedImage(paired_opt(lq_db, gt_db, io_backend={'type': 'lmdb'}))


@pytest.mark.parametrize('change, message', [
    ({'gt_size': None}, 'gt_size must be a positive integer'),
    ({'gt_size': 0}, 'gt_size must be a positive integer'),
    ({'scale': 2}, 'only scale 1 is supported'),
    ({'in_ch': 2}, 'in_ch must be 1 .grayscale. or 3'),
    ({'io_backend': {'type': 'memcached'}}, 'io_backend type .memcached. is not supported'),
    ({'mean': [0.5, 0.5, 0.5]}, 'give both "mean" and "std"'),
])
def test_error_bad_options(pairs, change, message):
    lq_dir, gt_dir, _, _ = pairs
    opt = paired_opt(lq_dir, gt_dir, phase='train', gt_size=16)
    opt.update(change)
    with pytest.raises(ValueError, match=message):
        Dataset_PairedImage(opt)


# ---------------------------------------------------------------------------------------- Dataset_GaussianDenoising
def gauss_opt(gt, phase='train', **kw):
    opt = {'name': 'dfwb', 'type': 'Dataset_GaussianDenoising', 'dataroot_gt': gt, 'dataroot_lq': 'none',
           'phase': phase, 'io_backend': {'type': 'disk'}, 'in_ch': 3, 'scale': 1}
    if phase == 'train':
        opt.update(gt_size=32, geometric_augs=True, sigma_type='constant', sigma_range=25)
    else:
        opt.update(sigma_test=25)
    opt.update(kw)
    return opt


@pytest.fixture
def flat_images(tmp_path):
    """Two 40x48 mid-gray colour images (identical pixels, different names) and one gray one."""
    flat = np.full((40, 48, 3), 128, np.uint8)
    return make_folder(tmp_path / 'clean', [flat, flat], ['a.png', 'b.png'])


def noise_std(item):
    return (item['lq'] - item['gt']).std().item()


def test_gaussian_train_constant_sigma_color(flat_images):
    ds = Dataset_GaussianDenoising(gauss_opt(flat_images))
    item = ds[0]
    assert set(item) == {'lq', 'gt', 'lq_path', 'gt_path'} and item['lq_path'] == item['gt_path']
    assert item['gt'].shape == item['lq'].shape == (3, 32, 32) and item['lq'].dtype == torch.float32
    assert noise_std(item) == pytest.approx(25 / 255, rel=0.1)
    assert not torch.equal(ds[0]['lq'], ds[0]['lq'])  # fresh noise every time in training


def test_gaussian_train_noise_is_not_clipped(tmp_path):
    folder = make_folder(tmp_path / 'black', [np.zeros((H, W, 3), np.uint8)])
    lq = Dataset_GaussianDenoising(gauss_opt(folder, gt_size=16))[0]['lq']
    assert lq.min() < 0 and (lq < 0).float().mean() > 0.3


def test_gaussian_train_random_sigma_per_sample(flat_images):
    ds = Dataset_GaussianDenoising(gauss_opt(flat_images, sigma_type='random', sigma_range=[5, 50]))
    random.seed(0)
    stds = [noise_std(ds[0]) * 255 for _ in range(12)]
    assert min(stds) > 5 * 0.8 and max(stds) < 50 * 1.2
    assert max(stds) - min(stds) > 10  # sigma changes between samples


def test_gaussian_train_choice_sigma(flat_images):
    ds = Dataset_GaussianDenoising(gauss_opt(flat_images, sigma_type='choice', sigma_range=[10, 50]))
    random.seed(0)
    stds = [noise_std(ds[i % 2]) * 255 for i in range(12)]
    assert all(abs(s - 10) < 2 or abs(s - 50) < 8 for s in stds)
    assert any(abs(s - 10) < 2 for s in stds) and any(abs(s - 50) < 8 for s in stds)


def test_gaussian_gray_reads_one_channel(pairs):
    _, gt_dir, _, gts = pairs
    item = Dataset_GaussianDenoising(gauss_opt(gt_dir, phase='val', in_ch=1))[0]
    assert item['gt'].shape == item['lq'].shape == (1, H, W)
    expected = cv2.cvtColor(gts[0], cv2.COLOR_BGR2GRAY)  # the documented conversion (docs/images.md)
    torch.testing.assert_close(item['gt'], to_chw_rgb(expected, 255), rtol=0, atol=1e-6)
    train = Dataset_GaussianDenoising(gauss_opt(gt_dir, in_ch=1, gt_size=16))[0]
    assert train['gt'].shape == train['lq'].shape == (1, 16, 16)


def test_gaussian_color_is_rgb(tmp_path):
    red = np.zeros((H, W, 3), np.uint8)
    red[..., 2] = 255
    gt = Dataset_GaussianDenoising(gauss_opt(make_folder(tmp_path / 'r', [red]), phase='val'))[0]['gt']
    assert gt[0].min() == 1 and gt[1:].max() == 0


def test_gaussian_val_noise_reproducible_and_per_image(flat_images, tmp_path):
    ds = Dataset_GaussianDenoising(gauss_opt(flat_images, phase='val'))
    a, b = ds[0], ds[1]
    assert a['gt'].shape == (3, 40, 48)
    assert torch.equal(a['lq'], ds[0]['lq'])  # reproducible
    assert torch.equal(a['gt'], b['gt']) and not torch.equal(a['lq'], b['lq'])  # same pixels, different noise
    assert noise_std(a) == pytest.approx(25 / 255, rel=0.05)
    # The exact float64 draw, as documented: default_rng([noise_seed, crc32(name)]).normal(0, sigma / 255).
    clean = np.full((40, 48, 3), 128 / 255, np.float32)
    expected = (clean.astype(np.float64) + eval_noise('b', clean.shape, 25.0)).astype(np.float32)
    torch.testing.assert_close(b['lq'], to_chw_rgb(expected, 1.0), rtol=0, atol=0)
    # Independent of the order images are listed in, and of noise_seed only through the documented formula.
    meta = tmp_path / 'reversed.txt'
    meta.write_text('b.png\na.png\n')
    rev = Dataset_GaussianDenoising(gauss_opt(flat_images, phase='val', meta_info_file=str(meta)))
    assert torch.equal(rev[1]['lq'], a['lq']) and torch.equal(rev[0]['lq'], b['lq'])
    other = Dataset_GaussianDenoising(gauss_opt(flat_images, phase='val', noise_seed=7))
    assert not torch.equal(other[0]['lq'], a['lq'])


def test_gaussian_val_noise_independent_of_workers(flat_images):
    ds = Dataset_GaussianDenoising(gauss_opt(flat_images, phase='val'))
    serial = [ds[i]['lq'] for i in range(len(ds))]
    loader = torch.utils.data.DataLoader(ds, batch_size=1, num_workers=2, shuffle=False)
    for ref, batch in zip(serial, loader):
        assert torch.equal(batch['lq'][0], ref)


def test_gaussian_lmdb_matches_disk(flat_images, tmp_path):
    db = make_lmdb(flat_images, tmp_path / 'clean.lmdb')
    disk = Dataset_GaussianDenoising(gauss_opt(flat_images, phase='val'))
    lmdb_ds = Dataset_GaussianDenoising(gauss_opt(db, phase='val', io_backend={'type': 'lmdb'}))
    assert lmdb_ds[1]['gt_path'] == 'b'
    assert torch.equal(lmdb_ds[1]['lq'], disk[1]['lq'])  # same key name -> same evaluation noise
    train = Dataset_GaussianDenoising(gauss_opt(db, io_backend={'type': 'lmdb'}))
    assert train[0]['lq'].shape == (3, 32, 32)
    # DataLoader workers forked after the parent opened the same LMDB (val and train share it here) still read it.
    loader = torch.utils.data.DataLoader(lmdb_ds, batch_size=1, num_workers=2, shuffle=False)
    assert [torch.equal(b['lq'][0], lmdb_ds[i]['lq']) for i, b in enumerate(loader)] == [True, True]


def test_gaussian_meta_info_mode(flat_images, tmp_path):
    meta = tmp_path / 'meta.txt'
    meta.write_text('b.png (40,48,3) 1\n')
    ds = Dataset_GaussianDenoising(gauss_opt(flat_images, meta_info_file=str(meta)))
    assert len(ds) == 1 and ds[0]['gt_path'].endswith('b.png')


@pytest.mark.parametrize('change, message', [
    ({'sigma_type': 'gaussian'}, r"sigma_type must be one of \('constant', 'random', 'choice'\), got 'gaussian'"),
    ({'sigma_type': 'random', 'sigma_range': 25}, r'sigma_range must be \[low, high\]'),
    ({'sigma_type': 'random', 'sigma_range': [50, 0]}, r'sigma_range must be \[low, high\]'),
    ({'sigma_type': 'choice', 'sigma_range': []}, 'non-empty list'),
    ({'sigma_type': 'constant', 'sigma_range': [0, 50]}, 'sigma_range must be one number'),
    ({'sigma_range': None}, 'sigma_range must be one number'),
    ({'in_ch': 4}, 'in_ch must be 1'),
    ({'gt_size': None}, 'gt_size must be a positive integer'),
])
def test_gaussian_bad_train_options(flat_images, change, message):
    opt = gauss_opt(flat_images)
    opt.update(change)
    with pytest.raises(ValueError, match=message):
        Dataset_GaussianDenoising(opt)


def test_gaussian_bad_val_options(flat_images):
    with pytest.raises(ValueError, match='sigma_test must be a non-negative number'):
        Dataset_GaussianDenoising(gauss_opt(flat_images, phase='val', sigma_test=None))
    with pytest.raises(ValueError, match='sigma_test must be a non-negative number'):
        Dataset_GaussianDenoising(gauss_opt(flat_images, phase='val', sigma_test='25'))


# -------------------------------------------------------------------------------- Dataset_DefocusDeblur_DualPixel
def dp_opt(root, phase='val', **kw):
    opt = {'name': 'dpdd', 'type': 'Dataset_DefocusDeblur_DualPixel_16bit', 'phase': phase, 'scale': 1,
           'dataroot_gt': osp.join(root, 'target_crops'), 'dataroot_lqL': osp.join(root, 'inputL_crops'),
           'dataroot_lqR': osp.join(root, 'inputR_crops'), 'io_backend': {'type': 'disk'}, 'filename_tmpl': '{}'}
    opt.update(kw)
    return opt


def make_dp(root, left, right, target, names=('p0.png',)):
    for sub, img in (('inputL_crops', left), ('inputR_crops', right), ('target_crops', target)):
        make_folder(osp.join(root, sub), [img] * len(names), list(names))
    return str(root)


def solid(bgr, dtype=np.uint16, shape=(H, W)):
    return np.tile(np.array(bgr, dtype), shape + (1,))


def test_dual_pixel_six_channels_in_order(tmp_path):
    # Distinct colours (OpenCV BGR order): L is pure red 1000, R is pure blue 2000, target green 3000.
    root = make_dp(tmp_path, solid((0, 0, 1000)), solid((2000, 0, 0)), solid((0, 3000, 0)))
    item = Dataset_DefocusDeblur_DualPixel_16bit(dp_opt(root))[0]
    assert set(item) == {'lq', 'gt', 'lq_path', 'gt_path'}
    assert item['lq'].shape == (6, H, W) and item['gt'].shape == (3, H, W) and item['lq'].dtype == torch.float32
    assert item['lq_path'] == osp.join(root, 'inputL_crops', 'p0.png')
    means = [round(v * 65535) for v in item['lq'].mean((1, 2)).tolist()]
    assert means == [1000, 0, 0, 0, 0, 2000]  # [L R, L G, L B, R R, R G, R B]
    assert item['lq'][0, 0, 0].item() == pytest.approx(1000 / 65535, abs=1e-7)
    assert [round(v * 65535) for v in item['gt'].mean((1, 2)).tolist()] == [0, 3000, 0]


def test_dual_pixel_train_crops_all_three_alike(tmp_path):
    img = random_images(1, np.uint16)[0]
    root = make_dp(tmp_path, img, img, img)
    ds = Dataset_DefocusDeblur_DualPixel_16bit(dp_opt(root, phase='train', gt_size=16, geometric_augs=True))
    random.seed(0)
    for _ in range(8):
        item = ds[0]
        assert item['lq'].shape == (6, 16, 16) and item['gt'].shape == (3, 16, 16)
        assert torch.equal(item['lq'][:3], item['gt']) and torch.equal(item['lq'][3:], item['gt'])


def test_dual_pixel_rejects_8bit(tmp_path):
    root = make_dp(tmp_path, solid((0, 0, 1000)), solid((10, 20, 30), np.uint8), solid((0, 3000, 0)))
    with pytest.raises(ValueError, match=r'inputR_crops/p0.png" is 8-bit but .* expects 16-bit PNGs'):
        Dataset_DefocusDeblur_DualPixel_16bit(dp_opt(root))  # found when the dataset is built (check_images)


def test_dual_pixel_lmdb_keeps_16bit(tmp_path):
    root = make_dp(tmp_path / 'disk', solid((0, 0, 1000)), solid((2000, 0, 0)), solid((0, 3000, 0)))
    dbs = {k: make_lmdb(osp.join(root, sub), tmp_path / f'{sub}.lmdb')
           for k, sub in (('lqL', 'inputL_crops'), ('lqR', 'inputR_crops'), ('gt', 'target_crops'))}
    opt = dp_opt(root, io_backend={'type': 'lmdb'}, dataroot_gt=dbs['gt'], dataroot_lqL=dbs['lqL'],
                 dataroot_lqR=dbs['lqR'])
    db_item = Dataset_DefocusDeblur_DualPixel_16bit(opt)[0]
    disk_item = Dataset_DefocusDeblur_DualPixel_16bit(dp_opt(root))[0]
    assert db_item['lq_path'] == 'p0'
    assert torch.equal(db_item['lq'], disk_item['lq']) and torch.equal(db_item['gt'], disk_item['gt'])


def test_dual_pixel_expands_home(tmp_path, monkeypatch):
    monkeypatch.setenv('HOME', str(tmp_path))
    make_dp(tmp_path / 'DPDD', solid((1, 2, 3)), solid((1, 2, 3)), solid((1, 2, 3)))
    assert len(Dataset_DefocusDeblur_DualPixel_16bit(dp_opt('~/DPDD'))) == 1


def test_dual_pixel_errors(tmp_path):
    img = solid((1, 2, 3))
    root = make_dp(tmp_path, img, img, img, names=('p0.png', 'p1.png'))
    os.remove(osp.join(root, 'inputR_crops', 'p1.png'))
    with pytest.raises(ValueError, match='missing in dataroot_lqR: p1.png'):
        Dataset_DefocusDeblur_DualPixel_16bit(dp_opt(root))
    opt = dp_opt(root)
    opt.pop('dataroot_lqL')
    with pytest.raises(KeyError, match='dataroot_lqL'):
        Dataset_DefocusDeblur_DualPixel_16bit(opt)


# ------------------------------------------------------------------------------------------ datasets/make_lmdb.py
@pytest.mark.slow
def test_make_lmdb_script(pairs, tmp_path):
    _, gt_dir, _, _ = pairs
    script = str(REPO_ROOT / 'datasets' / 'make_lmdb.py')
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    out = str(tmp_path / 'gt.lmdb')
    done = subprocess.run([sys.executable, script, gt_dir, out], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert open(osp.join(out, 'meta_info.txt')).read().split('\n')[0] == 'img0.png (24,32,3) 1'
    ds = Dataset_PairedImage(paired_opt(make_lmdb(gt_dir, tmp_path / 'lq.lmdb'), out, io_backend={'type': 'lmdb'}))
    assert len(ds) == 3
    bad = subprocess.run([sys.executable, script, str(tmp_path / 'missing'), str(tmp_path / 'm.lmdb')], env=env,
                         capture_output=True, text=True)
    assert bad.returncode == 2 and 'input folder' in bad.stderr and 'missing" does not exist' in bad.stderr


# --------------------------------------------------------------------------------------- through a real BasicSR run
TRAIN_YML = """
name: data_smoke
model_type: SRModel
scale: 1
num_gpu: 0
manual_seed: 10
datasets:
  train:
    name: pairs
    type: Dataset_PairedImage
    dataroot_gt: {gt}
    dataroot_lq: {lq}
    filename_tmpl: '{{}}'
    io_backend: {{type: disk}}
    gt_size: 16
    geometric_augs: true
    use_shuffle: true
    num_worker_per_gpu: 1
    batch_size_per_gpu: 2
    dataset_enlarge_ratio: 1
    prefetch_mode: ~
  val:
    name: cbsd
    type: Dataset_GaussianDenoising
    dataroot_gt: {gt}
    dataroot_lq: none
    in_ch: 3
    sigma_test: 25
    io_backend: {{type: lmdb}}
network_g: {{type: Restormer, dim: 8, num_blocks: [1, 1, 1, 1], num_refinement_blocks: 1, heads: [1, 1, 1, 1]}}
path: {{pretrain_network_g: ~, strict_load_g: true, resume_state: ~}}
train:
  optim_g: {{type: Adam, lr: 1.0e-3}}
  scheduler: {{type: MultiStepLR, milestones: [100], gamma: 0.5}}
  total_iter: 2
  warmup_iter: -1
  pixel_opt: {{type: L1Loss, loss_weight: 1.0, reduction: mean}}
val:
  val_freq: 2
  save_img: false
  metrics:
    psnr: {{type: calculate_psnr, crop_border: 0, test_y_channel: false}}
logger: {{print_freq: 1, save_checkpoint_freq: 100, use_tb_logger: false}}
"""


@pytest.mark.slow
def test_datasets_in_basicsr_training_run(tmp_path):
    imgs = random_images(4, seed=9)
    lq_dir, gt_dir = make_folder(tmp_path / 'lq', imgs), make_folder(tmp_path / 'gt', imgs)
    gt_db = make_lmdb(gt_dir, tmp_path / 'gt.lmdb')
    (tmp_path / 'train.yml').write_text(TRAIN_YML.format(gt=gt_dir, lq=lq_dir).replace(
        f'dataroot_gt: {gt_dir}\n    dataroot_lq: none', f'dataroot_gt: {gt_db}\n    dataroot_lq: none'))
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    done = subprocess.run([sys.executable, '-m', 'restormer_arch', 'train', '-opt', 'train.yml'], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=300)
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-3000:]
    assert 'Dataset [Dataset_PairedImage] - pairs is built.' in log
    assert 'Dataset [Dataset_GaussianDenoising] - cbsd is built.' in log
    assert '# psnr:' in log

"""SIDD block files, DND submission files and the folder evaluator, on real files."""
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
from scipy import io as sio

from restormer_arch.evaluation import (
    evaluate_sidd,
    load_sidd_blocks,
    read_dnd_submission,
    write_dnd_submission,
)
from restormer_arch.metrics import calculate_psnr_rgb_matlab, calculate_ssim_rgb_matlab
from tests.conftest import REPO_ROOT


def _sidd_files(tmp_path):
    rng = np.random.default_rng(0)
    gt = rng.integers(30, 220, (2, 3, 16, 16, 3), dtype=np.uint8)
    noisy = np.clip(gt.astype(int) + rng.integers(-9, 10, gt.shape), 0, 255).astype(np.uint8)
    sio.savemat(str(tmp_path / 'ValidationGtBlocksSrgb.mat'), {'ValidationGtBlocksSrgb': gt})
    sio.savemat(str(tmp_path / 'ValidationNoisyBlocksSrgb.mat'), {'ValidationNoisyBlocksSrgb': noisy})
    return gt, noisy


def test_sidd_blocks_load_and_evaluate(tmp_path):
    gt, noisy = _sidd_files(tmp_path)
    loaded_gt = load_sidd_blocks(tmp_path / 'ValidationGtBlocksSrgb.mat')
    loaded_noisy = load_sidd_blocks(tmp_path / 'ValidationNoisyBlocksSrgb.mat')
    assert loaded_gt.dtype == np.uint8 and np.array_equal(loaded_gt, gt) and np.array_equal(loaded_noisy, noisy)
    psnr, ssim = evaluate_sidd(noisy.astype(np.float32) / 255, loaded_gt)
    blocks = list(zip(noisy.reshape(-1, 16, 16, 3), gt.reshape(-1, 16, 16, 3)))
    assert psnr == pytest.approx(np.mean([calculate_psnr_rgb_matlab(a, b) for a, b in blocks]), abs=1e-5)
    assert ssim == pytest.approx(np.mean([calculate_ssim_rgb_matlab(a, b) for a, b in blocks]), abs=1e-5)
    sio.savemat(str(tmp_path / 'Idenoised.mat'), {'Idenoised': noisy.astype(np.float32) / 255})  # a results file
    assert load_sidd_blocks(tmp_path / 'Idenoised.mat').shape == gt.shape


def test_sidd_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match='SIDD validation blocks'):
        load_sidd_blocks(tmp_path / 'missing.mat')
    sio.savemat(str(tmp_path / 'flat.mat'), {'x': np.zeros((4, 4))})
    with pytest.raises(ValueError, match=r'\(images, blocks, H, W, 3\)'):
        load_sidd_blocks(tmp_path / 'flat.mat')


def test_dnd_submission_format(tmp_path):
    boxes = [np.random.default_rng(i).random((8 + i, 10, 3)).astype(np.float32) for i in range(20)]
    path = write_dnd_submission(tmp_path / 'sub', 7, boxes)
    assert path.name == '0007.mat'
    raw = sio.loadmat(str(path))
    assert raw['Idenoised'].shape == (1, 20) and raw['Idenoised'].dtype == object  # MATLAB 1x20 cell
    assert raw['eval_version'].item() == '1.0' and not raw['israw'].item()
    read_boxes, israw, version = read_dnd_submission(path)
    assert all(np.array_equal(a, b) and a.dtype == np.float32 for a, b in zip(read_boxes, boxes))
    assert (israw, version) == (False, '1.0')
    with pytest.raises(ValueError, match='expected 20 boxes'):
        write_dnd_submission(tmp_path, 1, boxes[:3])


@pytest.mark.slow
def test_folder_evaluation_command(tmp_path):
    rng = np.random.default_rng(3)
    (tmp_path / 'res').mkdir()
    (tmp_path / 'gt').mkdir()
    expected = []
    for i in range(2):
        gt = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
        out = np.clip(gt.astype(int) + rng.integers(-8, 9, gt.shape), 0, 255).astype(np.uint8)
        cv2.imwrite(str(tmp_path / 'gt' / f'im{i}.png'), gt)
        cv2.imwrite(str(tmp_path / 'res' / f'im{i}.png'), out)
        expected.append(calculate_psnr_rgb_matlab(out, gt))
    cmd = [sys.executable, '-m', 'restormer_arch.evaluation', '--protocol', 'gopro', '--restored',
           str(tmp_path / 'res'), '--gt', str(tmp_path / 'gt'), '--csv', str(tmp_path / 'm.csv')]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                            env={**os.environ, 'PYTHONPATH': str(REPO_ROOT)})
    assert result.returncode == 0, result.stderr
    assert f'PSNR {np.mean(expected):.4f}' in result.stdout
    assert (tmp_path / 'm.csv').read_text().splitlines()[0] == 'name,psnr,ssim'
    (tmp_path / 'res' / 'im1.png').unlink()
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                            env={**os.environ, 'PYTHONPATH': str(REPO_ROOT)})
    assert result.returncode == 2 and "no restored image for 1 ground truth(s), e.g. ['im1']" in result.stderr

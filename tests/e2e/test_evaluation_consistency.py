"""One checkpoint, one network, one number: validation during training, ``basicsr test`` and ``basicsr restore`` +
the folder evaluator score the same parameters of a checkpoint (docs/weights.md, 'Which parameters').

A real tiny training run (with and without ``train.ema_decay``) in a subprocess; then the real commands on the
checkpoint of the validated iteration, with a test file as BasicSR's and Restormer's are written (no
``path.param_key_g``).
"""
import re
import subprocess
import sys

import pytest
import torch
import yaml

from tests.models.test_models import TINY_NET, write_pairs

pytestmark = pytest.mark.usefixtures('one_thread')

SCHEDULE = {'type': 'CosineAnnealingRestartCyclicLR', 'periods': [6], 'restart_weights': [1], 'eta_mins': [1e-6]}
PSNR = {'psnr': {'type': 'calculate_psnr', 'crop_border': 0, 'test_y_channel': False}}


def _basicsr(*args, cwd):
    result = subprocess.run([sys.executable, '-m', 'restormer_arch', *args], cwd=cwd, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return result.stdout + result.stderr


def _psnr(log):
    return float(re.findall(r'# psnr: *([0-9.]+)', log)[-1])


@pytest.mark.parametrize('ema_decay', [0.9, 0])
def test_validation_test_and_restore_score_one_checkpoint_alike(tmp_path, ema_decay):
    write_pairs(tmp_path / 'train', ['a', 'b', 'c'], (24, 24))
    write_pairs(tmp_path / 'val', ['v'], (24, 32), seed=1, noise=30)
    pairs = {'type': 'Dataset_PairedImage', 'io_backend': {'type': 'disk'}}
    val_set = {**pairs, 'name': 'va', 'dataroot_gt': 'val/gt', 'dataroot_lq': 'val/lq'}
    train = {
        'name': 'run', 'model_type': 'ImageCleanModel', 'scale': 1, 'num_gpu': 0, 'manual_seed': 1,
        'datasets': {'train': {**pairs, 'name': 'tr', 'dataroot_gt': 'train/gt', 'dataroot_lq': 'train/lq',
                               'gt_size': 16, 'geometric_augs': True, 'use_shuffle': True, 'num_worker_per_gpu': 0,
                               'batch_size_per_gpu': 2, 'dataset_enlarge_ratio': 10, 'prefetch_mode': None},
                     'val': val_set},
        'network_g': TINY_NET, 'path': {'pretrain_network_g': None, 'strict_load_g': True, 'resume_state': None},
        'train': {'total_iter': 6, 'warmup_iter': -1, 'ema_decay': ema_decay, 'scheduler': SCHEDULE,
                  'optim_g': {'type': 'AdamW', 'lr': 1e-3}, 'pixel_opt': {'type': 'L1Loss'}},
        'val': {'val_freq': 6, 'save_img': False, 'metrics': PSNR},
        'logger': {'print_freq': 6, 'save_checkpoint_freq': 6, 'use_tb_logger': False},
    }
    (tmp_path / 'train.yml').write_text(yaml.safe_dump(train))
    validated = _psnr(_basicsr('train', '-opt', 'train.yml', cwd=tmp_path))
    weights = 'experiments/run/models/net_g_6.pth'
    entries = set(torch.load(tmp_path / weights, weights_only=True))
    assert entries == ({'params', 'params_ema'} if ema_decay else {'params'})

    test = {'name': 'scored', 'model_type': 'ImageCleanModel', 'scale': 1, 'num_gpu': 0,
            'datasets': {'test_1': val_set}, 'network_g': TINY_NET,
            'path': {'pretrain_network_g': weights, 'strict_load_g': True},
            'val': {'window_size': 8, 'save_img': False, 'metrics': PSNR}}
    (tmp_path / 'test.yml').write_text(yaml.safe_dump(test))
    test_log = _basicsr('test', '-opt', 'test.yml', cwd=tmp_path)
    used = 'params_ema' if ema_decay else 'params'
    assert f'loaded {used} into Restormer' in test_log
    restore_log = _basicsr('restore', '-i', 'val/lq', '-o', 'restored', '--weights', weights, '--no-progress',
                           cwd=tmp_path)
    assert f'loaded {used}, ' in restore_log
    evaluated = subprocess.run([sys.executable, '-m', 'restormer_arch.evaluation', '--protocol', 'gaussian_denoising',
                                '--restored', 'restored', '--gt', 'val/gt'], cwd=tmp_path, capture_output=True,
                               text=True, check=True).stdout
    restored = float(re.search(r'PSNR ([0-9.]+)', evaluated).group(1))
    assert abs(_psnr(test_log) - validated) <= 1e-4 and abs(restored - validated) <= 1e-4, (validated, test_log,
                                                                                             restored)
    if ema_decay:  # an explicit path.param_key_g wins: the trained (non-EMA) weights score otherwise
        test['name'], test['path']['param_key_g'] = 'explicit', 'params'
        (tmp_path / 'test.yml').write_text(yaml.safe_dump(test))
        explicit_log = _basicsr('test', '-opt', 'test.yml', cwd=tmp_path)
        assert 'loaded params into Restormer' in explicit_log and abs(_psnr(explicit_log) - validated) > 1e-3

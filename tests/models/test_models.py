"""ImageCleanModel: schedules, progressive patches, mixup, clipping, EMA, validation, other archs, real train runs."""
import logging
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
import warnings
from copy import deepcopy
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml
from basicsr.data import build_dataloader, build_dataset
from basicsr.losses.basic_loss import L1Loss
from basicsr.models import build_model

from restormer_arch.models import CosineAnnealingRestartCyclicLR, ImageCleanModel, Mixup, ProgressiveSchedule
from restormer_arch.models.image_clean_model import NonFiniteLossError
from restormer_arch.models.progressive import Stage
from tests.conftest import run_process_group

REPO_ROOT = Path(__file__).resolve().parents[2]
PAPER_ITERS = [92000, 64000, 48000, 36000, 36000, 24000]
PAPER_BATCHES = [8, 5, 4, 2, 1, 1]
PAPER_SIZES = [128, 160, 192, 256, 320, 384]
TINY_NET = {'type': 'Restormer', 'inp_channels': 3, 'out_channels': 3, 'dim': 8, 'num_blocks': [1, 1, 1, 1],
            'num_refinement_blocks': 1, 'heads': [1, 1, 1, 1], 'ffn_expansion_factor': 2, 'bias': False,
            'LayerNorm_type': 'BiasFree'}


pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.fixture
def basicsr_log():
    """Messages logged to BasicSR's 'basicsr' logger (it does not propagate, so caplog cannot see them)."""
    records = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())
    logger = logging.getLogger('basicsr')
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    yield records
    logger.removeHandler(handler)
    logger.setLevel(level)


def make_opt(tmp_path, network=None, train=None, train_set=None, val=None, is_train=True, **top):
    """Options as BasicSR's parse_options would give them, for a tiny CPU model writing under tmp_path."""
    root = tmp_path / 'experiment'
    paths = {key: str(root / key) for key in ('models', 'training_states', 'visualization', 'log')}
    for folder in paths.values():
        os.makedirs(folder, exist_ok=True)
    opt = {
        'name': 'tiny', 'model_type': 'ImageCleanModel', 'scale': 1, 'num_gpu': 0, 'is_train': is_train,
        'dist': False, 'rank': 0, 'world_size': 1, 'network_g': deepcopy(network or TINY_NET),
        'path': {'pretrain_network_g': None, 'strict_load_g': True, 'resume_state': None,
                 'experiments_root': str(root), **paths},
        'datasets': {'train': {'name': 'tiny', 'type': 'Dataset_PairedImage', 'gt_size': 32,
                               'batch_size_per_gpu': 4, **(train_set or {})}},
        'train': {'total_iter': 10, 'optim_g': {'type': 'AdamW', 'lr': 1e-3, 'weight_decay': 1e-4,
                                                 'betas': [0.9, 0.999]},
                  'scheduler': {'type': 'MultiStepLR', 'milestones': [100], 'gamma': 0.5},
                  'pixel_opt': {'type': 'L1Loss', 'loss_weight': 1.0, 'reduction': 'mean'}, **(train or {})},
        'val': {'window_size': 8, 'metrics': {'psnr': {'type': 'calculate_psnr', 'crop_border': 0,
                                                         'test_y_channel': False}}, **(val or {})},
    }
    opt.update(top)
    return opt


def batch(n=4, size=32, channels=3):
    gt = torch.rand(n, channels, size, size)
    return {'lq': (gt + 0.1 * torch.randn_like(gt)), 'gt': gt}


def grad_norm(net):
    return float(torch.norm(torch.stack([p.grad.norm() for p in net.parameters() if p.grad is not None])))


def paper_lr(iteration):
    """The official schedule written out: constant 3e-4 for 92k iterations, then cosine to 1e-6 over 208k."""
    step = iteration - 1  # BasicSR steps the scheduler from iteration 2 on
    if step <= 92000:
        return 3e-4
    return 1e-6 + 0.5 * (3e-4 - 1e-6) * (1 + math.cos(math.pi * (step - 92000) / 208000))


# ----------------------------------------------------------------------------------------------------- scheduler
@pytest.mark.slow
def test_cyclic_scheduler_paper_values_through_the_model(tmp_path):
    scheduler = {'type': 'CosineAnnealingRestartCyclicLR', 'periods': [92000, 208000], 'restart_weights': [1, 1],
                 'eta_mins': [0.0003, 0.000001]}
    model = build_model(make_opt(tmp_path, train={'scheduler': scheduler, 'total_iter': 300000,
                                                  'optim_g': {'type': 'AdamW', 'lr': 3e-4}}))
    assert isinstance(model.schedulers[0], CosineAnnealingRestartCyclicLR)
    checkpoints = {1: 3e-4, 92000: 3e-4, 92001: 3e-4, 150000: 2.462e-4, 196000: 1.505e-4, 300000: 1e-6}
    seen = {}
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # torch: "lr_scheduler.step() before optimizer.step()"
        for iteration in range(1, 300001):
            model.update_learning_rate(iteration)
            if iteration in checkpoints:
                seen[iteration] = model.get_current_learning_rate()[0]
    for iteration, approx_value in checkpoints.items():
        assert seen[iteration] == pytest.approx(paper_lr(iteration), rel=1e-9, abs=1e-15), iteration
        assert seen[iteration] == pytest.approx(approx_value, rel=2e-3), iteration


def test_cyclic_scheduler_restart_weights_floors_and_resume():
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([param], lr=1.0)
    scheduler = CosineAnnealingRestartCyclicLR(optimizer, periods=[4, 6], restart_weights=[1, 0.5], eta_mins=[0.5, 0.1])
    lrs = [optimizer.param_groups[0]['lr']]
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        for _ in range(12):
            scheduler.step()
            lrs.append(optimizer.param_groups[0]['lr'])
    expected = []
    for e in range(13):
        i = 0 if e <= 4 else 1
        start, period, eta, w = [(0, 4, 0.5, 1), (4, 6, 0.1, 0.5)][i]
        expected.append(eta + w * 0.5 * (1.0 - eta) * (1 + math.cos(math.pi * min(e - start, period) / period)))
    assert lrs == pytest.approx(expected)
    assert lrs[4] == pytest.approx(0.5) and lrs[10] == pytest.approx(0.1) and lrs[12] == pytest.approx(0.1)

    # The state (saved in BasicSR's .state files) restores the position in the schedule.
    state = scheduler.state_dict()
    optimizer2 = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler2 = CosineAnnealingRestartCyclicLR(optimizer2, periods=[4, 6], restart_weights=[1, 0.5],
                                                eta_mins=[0.5, 0.1])
    scheduler2.load_state_dict(state)
    assert scheduler2.last_epoch == 12 and scheduler2.get_lr()[0] == pytest.approx(lrs[12])
    with pytest.raises(ValueError, match='same length'):
        CosineAnnealingRestartCyclicLR(optimizer, periods=[4, 6], restart_weights=[1], eta_mins=[0.5, 0.1])


@pytest.mark.parametrize('scheduler', [
    {'type': 'MultiStepLR', 'milestones': [2], 'gamma': 0.5},
    {'type': 'CosineAnnealingRestartLR', 'periods': [4], 'restart_weights': [1], 'eta_min': 0.0},
])
def test_basicsr_schedulers_still_work(tmp_path, scheduler):
    model = build_model(make_opt(tmp_path, train={'scheduler': scheduler}))
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # torch: "lr_scheduler.step() before optimizer.step()"
        for iteration in range(1, 5):
            model.update_learning_rate(iteration)
    assert model.get_current_learning_rate()[0] < 1e-3
    bad = make_opt(tmp_path, train={'scheduler': {'type': 'CosineAnnealingLR'}})
    with pytest.raises(NotImplementedError, match='CosineAnnealingRestartCyclicLR'):
        build_model(bad)


# -------------------------------------------------------------------------------------------------- progressive
def test_progressive_stage_selection_paper_schedule():
    schedule = ProgressiveSchedule(PAPER_ITERS, PAPER_BATCHES, PAPER_SIZES)
    assert schedule.stage(1) == Stage(0, 92000, 8, 128)
    assert schedule.stage(92000).index == 0
    assert schedule.stage(92001) == Stage(1, 156000, 5, 160)
    assert [schedule.stage(i).index for i in (156000, 156001, 204001, 240001, 276000, 276001, 300000)] == \
        [1, 2, 3, 4, 4, 5, 5]
    assert schedule.stage(350000).index == 5  # past the schedule: stays in the last stage


def _index_batch(n=8, size=384):
    # Every pixel holds sample*1e6 + row*1e3 + col (exact in float32), so a crop tells where it came from.
    sample = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1) * 1e6
    rows = torch.arange(size, dtype=torch.float32).view(1, 1, size, 1) * 1e3
    cols = torch.arange(size, dtype=torch.float32).view(1, 1, 1, size)
    return (sample + rows + cols).expand(n, 3, size, size).contiguous()


def _decode(crop):
    value = crop[:, 0, 0, 0]
    sample = torch.div(value, 1e6, rounding_mode='floor')
    rest = value - sample * 1e6
    return sample.long().tolist(), torch.div(rest, 1e3, rounding_mode='floor').long().tolist(), \
        (rest % 1e3).long().tolist()


@pytest.mark.parametrize('iteration, n, size', [(92000, 8, 128), (92001, 5, 160)])
def test_progressive_crop_at_stage_boundary(iteration, n, size):
    schedule = ProgressiveSchedule(PAPER_ITERS, PAPER_BATCHES, PAPER_SIZES)
    lq = _index_batch()
    gt = lq + 0.5  # distinguishable, same geometry
    lq_out, gt_out, stage = schedule.apply(lq, gt, iteration)
    assert lq_out.shape == gt_out.shape == (n, 3, size, size)
    assert stage.index == (0 if iteration == 92000 else 1)
    samples, tops, lefts = _decode(lq_out)
    assert len(set(samples)) == n and all(0 <= s < 8 for s in samples)  # a subset without repeats
    assert len(set(tops)) == 1 and len(set(lefts)) == 1  # ONE offset for the whole batch
    assert 0 <= tops[0] <= 384 - size and 0 <= lefts[0] <= 384 - size
    assert torch.equal(gt_out, lq_out + 0.5)  # lq and gt: same samples, same window
    # Each crop is the exact window of its source sample.
    t, left = tops[0], lefts[0]
    assert torch.equal(lq_out, lq[samples][..., t:t + size, left:left + size])


def test_progressive_batch_is_per_device():
    schedule = ProgressiveSchedule(PAPER_ITERS, PAPER_BATCHES, PAPER_SIZES)
    # DataParallel: one process feeds 2 GPUs, the loader batch is 16 -> 5 samples per GPU.
    lq, _, _ = schedule.apply(torch.rand(16, 3, 160, 160), torch.rand(16, 3, 160, 160), 92001, devices=2)
    assert lq.shape[0] == 10
    # A smaller batch than the stage's (e.g. the last incomplete one) is used whole.
    lq, _, _ = schedule.apply(torch.rand(3, 3, 160, 160), torch.rand(3, 3, 160, 160), 92001)
    assert lq.shape[0] == 3


@pytest.mark.parametrize('dist, num_gpu, devices', [(False, 0, 1), (False, 1, 1), (True, 8, 1), (False, 2, 2)])
def test_model_devices_per_process(tmp_path, dist, num_gpu, devices):
    model = build_model(make_opt(tmp_path))
    model.opt.update(dist=dist, num_gpu=num_gpu)
    assert model._devices_per_process() == devices


def test_model_applies_progressive_stages_and_logs_changes(tmp_path, basicsr_log):
    train_set = {'iters': [2, 3], 'mini_batch_sizes': [4, 2], 'gt_sizes': [16, 24], 'gt_size': 32}
    model = build_model(make_opt(tmp_path, train_set=train_set))
    shapes = []
    for iteration in range(1, 7):
        model.feed_data(batch(4, 32))
        model.optimize_parameters(iteration)
        shapes.append((tuple(model.lq.shape), tuple(model.gt.shape), tuple(model.output.shape)))
    assert [s[0] for s in shapes] == [(4, 3, 16, 16)] * 2 + [(2, 3, 24, 24)] * 4
    assert all(s[0] == s[1] == s[2] for s in shapes)
    changes = [m for m in basicsr_log if m.startswith('Progressive training: iter')]
    assert len(changes) == 2 and 'iter 1 -> stage 0' in changes[0] and 'iter 3 -> stage 1' in changes[1]


# ------------------------------------------------------------------------------------------------ mixup / clip
def test_mixup_uses_one_lambda_and_permutation_for_lq_and_gt():
    gt = torch.rand(6, 3, 8, 8)
    lq = 2 * gt + 1  # an affine relation survives mixing only if lq and gt are mixed identically
    mixed_lq, mixed_gt = Mixup(beta=1.2)(lq, gt)
    assert not torch.allclose(mixed_gt, gt)
    assert torch.allclose(mixed_lq, 2 * mixed_gt + 1, atol=1e-5)
    # Half of the batches are left untouched with use_identity.
    untouched = sum(torch.equal(Mixup(1.2, use_identity=True)(lq, gt)[1], gt) for _ in range(200))
    assert 60 < untouched < 140


def test_model_mixup_changes_the_training_batch(tmp_path):
    augs = {'mixing_augs': {'mixup': True, 'mixup_beta': 1.2, 'use_identity': False}}
    model = build_model(make_opt(tmp_path, train=augs))
    data = batch()
    model.feed_data(data)
    model.optimize_parameters(1)
    assert not torch.allclose(model.gt, data['gt'])
    off = build_model(make_opt(tmp_path, train={'mixing_augs': {'mixup': False}}))
    off.feed_data(data)
    off.optimize_parameters(1)
    assert torch.equal(off.gt, data['gt'])


@pytest.mark.parametrize('clip_opt, limit', [({'use_grad_clip': True}, 0.01),
                                             ({'use_grad_clip': True, 'grad_clip_norm': 0.002}, 0.002)])
def test_gradient_clipping(tmp_path, clip_opt, limit):
    data = batch()
    torch.manual_seed(0)
    free = build_model(make_opt(tmp_path))
    free.feed_data(data)
    free.optimize_parameters(1)
    assert grad_norm(free.net_g) > 0.05  # a tiny random net on noise: far above the clip norm
    torch.manual_seed(0)
    clipped = build_model(make_opt(tmp_path, train=clip_opt))
    clipped.feed_data(data)
    clipped.optimize_parameters(1)
    assert grad_norm(clipped.net_g) == pytest.approx(limit, rel=1e-3)
    assert clipped.get_current_log()['grad_norm'] == pytest.approx(grad_norm(free.net_g), rel=1e-3)


def test_default_loss_is_l1(tmp_path):
    opt = make_opt(tmp_path)
    del opt['train']['pixel_opt']
    model = build_model(opt)
    assert isinstance(model.cri_pix, L1Loss)
    model.feed_data(batch())
    model.optimize_parameters(1)
    assert model.get_current_log()['l_pix'] > 0


def test_ema_tracks_the_network_and_is_saved(tmp_path):
    model = build_model(make_opt(tmp_path, train={'ema_decay': 0.5}))
    before = {k: v.clone() for k, v in model.net_g.state_dict().items()}
    assert all(torch.equal(before[k], v) for k, v in model.net_g_ema.state_dict().items())
    model.feed_data(batch())
    model.optimize_parameters(1)
    after = model.net_g.state_dict()
    ema = model.net_g_ema.state_dict()
    for key in ('patch_embed.proj.weight', 'output.weight'):
        assert not torch.equal(after[key], before[key])
        assert torch.allclose(ema[key], 0.5 * before[key] + 0.5 * after[key], atol=1e-7)
    assert model._inference_net() is model.net_g_ema
    model.save(0, 1)
    saved = torch.load(Path(model.opt['path']['models']) / 'net_g_1.pth', weights_only=True)
    assert set(saved) == {'params', 'params_ema'}
    assert torch.equal(saved['params_ema']['output.weight'], ema['output.weight'])
    assert (Path(model.opt['path']['training_states']) / '1.state').is_file()


def test_pretrained_weights_are_loaded(tmp_path):
    source = build_model(make_opt(tmp_path, is_train=False))
    weights = tmp_path / 'pretrained.pth'
    torch.save({'params_ema': source.net_g.state_dict()}, weights)
    path_opt = {'pretrain_network_g': str(weights), 'param_key_g': 'params_ema', 'strict_load_g': True}
    opt = make_opt(tmp_path, is_train=False)
    opt['path'].update(path_opt)
    torch.manual_seed(123)
    loaded = build_model(opt)
    assert all(torch.equal(v, loaded.net_g.state_dict()[k]) for k, v in source.net_g.state_dict().items())


@pytest.mark.parametrize('model_type', ['ImageCleanModel', 'SRModel'])
def test_unset_param_key_g_means_params_ema_except_on_resume(tmp_path, model_type):
    from restormer_arch.models.training_hooks import TrainingRun, applied

    trained, ema = (build_model(make_opt(tmp_path, is_train=False)).net_g.state_dict() for _ in range(2))
    path = tmp_path / 'net_g_6.pth'
    torch.save({'params': trained, 'params_ema': ema}, path)
    # BasicSR's own models get the rule from the hooks that basicsr train and basicsr test apply.
    with applied(TrainingRun()):
        for path_opt, expected in (({}, ema), ({'param_key_g': 'params'}, trained),
                                   ({'resume_state': 'experiment/training_states/6.state'}, trained)):
            opt = make_opt(tmp_path, is_train=False, model_type=model_type)
            opt['path'].update(pretrain_network_g=str(path), **path_opt)
            loaded = build_model(opt).net_g.state_dict()
            assert all(torch.equal(loaded[k], v) for k, v in expected.items()), path_opt


# --------------------------------------------------------------------------------------------------- validation
def write_pairs(folder, names, size, seed=0, noise=20):
    """Tiny real PNG pairs: smooth gradients (gt) and noisy versions (lq)."""
    rng = np.random.default_rng(seed)
    for sub in ('gt', 'lq'):
        os.makedirs(folder / sub, exist_ok=True)
    h, w = size
    for i, name in enumerate(names):
        yy, xx = np.mgrid[0:h, 0:w]
        gt = np.stack([(xx * 255 // max(w - 1, 1)), (yy * 255 // max(h - 1, 1)), np.full_like(xx, 40 * i % 255)], -1)
        gt = gt.astype(np.uint8)
        lq = np.clip(gt + rng.normal(0, noise, gt.shape), 0, 255).astype(np.uint8)
        cv2.imwrite(str(folder / 'gt' / f'{name}.png'), gt)
        cv2.imwrite(str(folder / 'lq' / f'{name}.png'), lq)


def val_loader(folder, name='tiny_val'):
    opt = {'name': name, 'type': 'Dataset_PairedImage', 'dataroot_gt': str(folder / 'gt'),
           'dataroot_lq': str(folder / 'lq'), 'io_backend': {'type': 'disk'}, 'phase': 'val', 'scale': 1}
    return build_dataloader(build_dataset(opt), opt, num_gpu=0, dist=False, sampler=None, seed=0)


def test_validation_without_ground_truth_skips_metrics_and_keeps_no_stale_target(tmp_path, basicsr_log):
    write_pairs(tmp_path / 'real', ['r0', 'r1'], (32, 32))  # lq only is used: the size of the training patches
    opt = {'name': 'real', 'type': 'SingleImageDataset', 'dataroot_lq': str(tmp_path / 'real' / 'lq'),
           'io_backend': {'type': 'disk'}, 'phase': 'val', 'scale': 1}
    loader = build_dataloader(build_dataset(opt), opt, num_gpu=0, dist=False, sampler=None, seed=0)
    model = build_model(make_opt(tmp_path, val={'metrics_table': True}))
    model.feed_data(batch(size=32))
    model.optimize_parameters(1)  # the last training target stays on the model until a batch replaces or clears it
    model.validation(loader, 1, None, save_img=True)
    assert not hasattr(model, 'gt') and not hasattr(model, 'metric_results')
    assert sum('no ground truth' in m for m in basicsr_log) == 1
    assert not (tmp_path / 'experiment' / 'metrics').exists()  # no table of counts without any metric
    for name in ('r0', 'r1'):
        saved = tmp_path / 'experiment' / 'visualization' / 'real' / f'{name}_1.png'
        assert cv2.imread(str(saved)).shape == (32, 32, 3)


def test_validation_pads_crops_saves_and_tracks_best(tmp_path, basicsr_log):
    write_pairs(tmp_path / 'val', ['a', 'b'], (21, 30))  # not multiples of 8
    loader = val_loader(tmp_path / 'val')
    val = {'save_img': True, 'log_input_metrics': True,
           'metrics': {'psnr': {'type': 'calculate_psnr', 'crop_border': 0, 'test_y_channel': True},
                       'ssim': {'type': 'calculate_ssim', 'crop_border': 2, 'test_y_channel': False}}}
    opt = make_opt(tmp_path, val=val)
    opt['network_g']['LayerNorm_type'] = 'WithBias'
    model = build_model(opt)
    model.validation(loader, 7, None, save_img=True)
    first = dict(model.metric_results)
    assert set(first) == {'psnr', 'ssim'} and 5 < first['psnr'] < 60
    for name in ('a', 'b'):
        saved = cv2.imread(str(tmp_path / 'experiment' / 'visualization' / 'tiny_val' / f'{name}_7.png'))
        assert saved.shape == (21, 30, 3)
    assert model.best_metric_results['tiny_val']['psnr']['iter'] == 7
    assert 'tiny_val' in model.input_metric_results  # the degraded input's PSNR is logged once
    assert sum('degraded input' in m for m in basicsr_log) == 1
    model.validation(loader, 8, None, save_img=False)
    assert sum('degraded input' in m for m in basicsr_log) == 1
    assert model.net_g.training  # validation puts the network back in training mode
    assert any('Validation tiny_val' in m and 'Best' in m for m in basicsr_log)
    # BasicSR's extra call after the last iteration (total_iter + 1) is labelled total_iter, and skipped if done.
    total = model.opt['train']['total_iter']
    model.validation(loader, total, None, save_img=False)
    runs = sum('Validation tiny_val\n' in m for m in basicsr_log)
    model.validation(loader, total + 1, None, save_img=False)
    assert sum('Validation tiny_val\n' in m for m in basicsr_log) == runs
    assert model.best_metric_results['tiny_val']['psnr']['iter'] in (7, 8, total)
    assert any('already done at iter' in m for m in basicsr_log)


def test_validation_in_test_mode_uses_suffix(tmp_path):
    write_pairs(tmp_path / 'val', ['a'], (16, 24))
    model = build_model(make_opt(tmp_path, is_train=False, val={'suffix': 'restored'}))
    model.validation(val_loader(tmp_path / 'val'), 'tiny', None, save_img=True)
    assert (tmp_path / 'experiment' / 'visualization' / 'tiny_val' / 'a_restored.png').is_file()
    model.opt['val']['suffix'] = None
    model.validation(val_loader(tmp_path / 'val'), 'tiny', None, save_img=True)
    assert (tmp_path / 'experiment' / 'visualization' / 'tiny_val' / 'a_tiny.png').is_file()


def test_validation_warns_when_the_output_is_not_finite(tmp_path, basicsr_log):
    """A NaN output (e.g. fp16 overflow) is scored as black; the run must say so rather than log the score quietly."""
    write_pairs(tmp_path / 'val', ['ok_image', 'nan_image'], (16, 16))
    val = {'metrics': {'psnr': {'type': 'calculate_psnr', 'crop_border': 0}}}
    model = build_model(make_opt(tmp_path, is_train=False, val=val))
    model.validation(val_loader(tmp_path / 'val'), 'tiny', None, save_img=False)
    assert not any('nan_image' in m for m in basicsr_log)
    with torch.no_grad():
        model.net_g.output.weight.fill_(float('nan'))
    model.validation(val_loader(tmp_path / 'val'), 'tiny', None, save_img=False)
    assert any('nan_image' in m and 'ok_image' in m for m in basicsr_log)


@pytest.mark.slow
def test_compiled_testing_keeps_one_shape_with_tiles_and_reports_new_shapes(tmp_path, basicsr_log):
    """`basicsr test` with performance.compile: with val.tile every tile is exactly the tile size (one compilation for
    images of several sizes); without it each new image shape is reported as a recompilation."""
    from restormer_arch.tiling import run_network

    perf_opt = {'compile': {'freezing': True}}
    model = build_model(make_opt(tmp_path, is_train=False, val={'tile': 32, 'tile_overlap': 4},
                                 performance=perf_opt))
    lq = torch.rand(1, 3, 40, 48)
    model.feed_data({'lq': lq})
    model.test()
    fixed, fitted = (run_network(model.net_g.eval(), lq, tile=32, overlap=4, fit_tile=fit) for fit in (False, True))
    assert (fixed - fitted).abs().max() > 1e-4  # fitted tiles (24x32 here) would be another shape
    assert (model.output - fixed).abs().max() < 1e-4
    model.feed_data({'lq': torch.rand(1, 3, 48, 40)})
    model.test()
    assert model._compiled_shapes == {(32, 32)}
    assert not any('compiles again' in m for m in basicsr_log)
    write_pairs(tmp_path / 'val', ['a'], (16, 24))
    write_pairs(tmp_path / 'val', ['b'], (24, 16))
    model = build_model(make_opt(tmp_path, is_train=False, performance=perf_opt))
    model.validation(val_loader(tmp_path / 'val'), 'tiny', None, save_img=False)
    assert model._compiled_shapes == {(16, 24), (24, 16)}
    assert sum('compiles again' in m for m in basicsr_log) == 1


def test_validation_never_runs_the_ddp_wrapper(tmp_path):
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    dist.init_process_group('gloo', init_method=f'file://{tmp_path / "rendezvous"}', rank=0, world_size=1)
    try:
        model = build_model(make_opt(tmp_path))
        model.net_g = DistributedDataParallel(model.net_g)
        assert not isinstance(model._inference_net(), DistributedDataParallel)
        model.feed_data(batch(1, 20))
        model.test()
        assert model.output.shape == (1, 3, 20, 20)
    finally:
        dist.destroy_process_group()


# ---------------------------------------------------------------------------------------------- other networks
def test_basicsr_swinir_trains_under_image_clean_model(tmp_path):
    swinir = {'type': 'SwinIR', 'upscale': 1, 'in_chans': 3, 'img_size': 16, 'window_size': 4, 'img_range': 1.0,
              'depths': [1], 'embed_dim': 12, 'num_heads': [2], 'mlp_ratio': 2, 'upsampler': '',
              'resi_connection': '1conv'}
    train_set = {'iters': [2, 2], 'mini_batch_sizes': [4, 2], 'gt_sizes': [16, 32], 'gt_size': 32}
    model = build_model(make_opt(tmp_path, network=swinir, train_set=train_set, train={'use_grad_clip': True}))
    start = {k: v.clone() for k, v in model.net_g.state_dict().items()}
    for iteration in range(1, 5):
        model.feed_data(batch(4, 32))
        model.optimize_parameters(iteration)
    assert model.output.shape == (2, 3, 32, 32)
    assert any(not torch.equal(start[k], v) for k, v in model.net_g.state_dict().items())
    write_pairs(tmp_path / 'val', ['a'], (18, 22))  # padded to multiples of 8 (SwinIR needs the window)
    model.validation(val_loader(tmp_path / 'val'), 4, None, save_img=False)
    assert model.metric_results['psnr'] > 0


def test_restormer_trains_under_basicsr_srmodel(tmp_path):
    opt = make_opt(tmp_path, model_type='SRModel')
    model = build_model(opt)
    assert type(model).__name__ == 'SRModel' and not isinstance(model, ImageCleanModel)
    data = batch(2, 16)
    losses = []
    for iteration in range(1, 6):
        model.update_learning_rate(iteration)
        model.feed_data(data)
        model.optimize_parameters(iteration)
        losses.append(model.get_current_log()['l_pix'])
    assert losses[-1] < losses[0]



@pytest.mark.parametrize('model_type', ['SRGANModel', 'ESRGANModel'])
def test_restormer_is_the_generator_of_basicsr_gan_models(tmp_path, model_type):
    train = {'gan_opt': {'type': 'GANLoss', 'gan_type': 'vanilla', 'loss_weight': 5e-3},
             'optim_d': {'type': 'Adam', 'lr': 1e-4}, 'net_d_iters': 1, 'net_d_init_iters': 0}
    model = build_model(make_opt(tmp_path, model_type=model_type, train=train,
                                 network_d={'type': 'VGGStyleDiscriminator', 'num_in_ch': 3, 'num_feat': 4}))
    start = {k: v.clone() for k, v in model.net_g.state_dict().items()}
    model.feed_data(batch(2, 128))  # the discriminator takes 128 px patches
    model.optimize_parameters(1)
    assert model.output.is_contiguous()
    assert any(not torch.equal(start[k], v) for k, v in model.net_g.state_dict().items())

# ------------------------------------------------------------------------------------------ real training runs
def _train_yaml(tmp_path, total_iter):
    stage = total_iter // 3
    return {
        'name': 'tiny_subprocess', 'model_type': 'ImageCleanModel', 'scale': 1, 'num_gpu': 0, 'manual_seed': 10,
        'datasets': {
            'train': {'name': 'tiny_train', 'type': 'Dataset_PairedImage', 'dataroot_gt': str(tmp_path / 'train/gt'),
                      'dataroot_lq': str(tmp_path / 'train/lq'), 'io_backend': {'type': 'disk'},
                      'geometric_augs': True, 'use_shuffle': True, 'num_worker_per_gpu': 0, 'batch_size_per_gpu': 2,
                      'dataset_enlarge_ratio': 50, 'prefetch_mode': None, 'gt_size': 32,
                      'iters': [stage, total_iter - stage], 'mini_batch_sizes': [2, 1], 'gt_sizes': [16, 32]},
            'val': {'name': 'tiny_val', 'type': 'Dataset_PairedImage', 'dataroot_gt': str(tmp_path / 'val/gt'),
                    'dataroot_lq': str(tmp_path / 'val/lq'), 'io_backend': {'type': 'disk'}}},
        'network_g': dict(TINY_NET),
        'path': {'pretrain_network_g': None, 'strict_load_g': True, 'resume_state': None},
        'train': {'total_iter': total_iter, 'warmup_iter': -1, 'use_grad_clip': True,
                  'scheduler': {'type': 'CosineAnnealingRestartCyclicLR', 'periods': [stage, total_iter - stage],
                                'restart_weights': [1, 1], 'eta_mins': [1e-3, 1e-5]},
                  'mixing_augs': {'mixup': True, 'mixup_beta': 1.2, 'use_identity': True},
                  'optim_g': {'type': 'AdamW', 'lr': 1e-3, 'weight_decay': 1e-4, 'betas': [0.9, 0.999]},
                  'pixel_opt': {'type': 'L1Loss', 'loss_weight': 1, 'reduction': 'mean'}},
        'val': {'val_freq': 10, 'save_img': True,
                'metrics': {'psnr': {'type': 'calculate_psnr', 'crop_border': 0, 'test_y_channel': False}}},
        'logger': {'print_freq': 1, 'save_checkpoint_freq': 10, 'use_tb_logger': False},
    }


def _basicsr(tmp_path, *args, command='train', **kwargs):
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), OMP_NUM_THREADS='1')
    cmd = [sys.executable, '-m', 'restormer_arch', command, '-opt', str(tmp_path / f'{command}.yml'), *args]
    return subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            **kwargs)


@pytest.mark.slow
def test_basicsr_train_subprocess_checkpoints_is_killed_and_resumes(tmp_path):
    write_pairs(tmp_path / 'train', [f'im{i}' for i in range(4)], (40, 40))
    write_pairs(tmp_path / 'val', ['v0'], (20, 28), seed=1)
    total = 60
    (tmp_path / 'train.yml').write_text(yaml.safe_dump(_train_yaml(tmp_path, total)))
    states = tmp_path / 'experiments' / 'tiny_subprocess' / 'training_states'

    first = _basicsr(tmp_path)
    deadline = time.time() + 240
    while not (states / '10.state').is_file():
        assert first.poll() is None, first.stdout.read()
        assert time.time() < deadline, 'no checkpoint after 240 s'
        time.sleep(0.02)
    time.sleep(0.3)  # let the checkpoint finish writing; a torn newest state would be skipped on resume anyway
    first.send_signal(signal.SIGKILL)
    log1 = first.communicate(timeout=60)[0]
    assert first.returncode == -signal.SIGKILL, log1
    assert 'End of training' not in log1
    saved = sorted(int(p.stem) for p in states.glob('*.state'))
    assert saved and saved[-1] < total, saved

    second = _basicsr(tmp_path, '--auto_resume')
    log2 = second.communicate(timeout=300)[0]
    assert second.returncode == 0, log2
    resumed = int(re.search(r'Resuming training from epoch: \d+, iter: (\d+)', log2).group(1))
    assert resumed in saved and resumed >= 10
    logged_iters = [int(m) for m in re.findall(r'iter:\s+(\d+), lr', log2)]
    assert logged_iters[0] == resumed + 1 and logged_iters[-1] == total
    assert 'End of training' in log2
    assert 'Validation tiny_val' in log2 and re.search(r'# psnr: \d+\.\d+', log2)
    experiment = tmp_path / 'experiments' / 'tiny_subprocess'
    assert (experiment / 'models' / 'net_g_latest.pth').is_file()
    assert (experiment / 'visualization' / 'tiny_val' / f'v0_{total}.png').is_file()
    assert (states / f'{total}.state').is_file()
    # The schedule continued where it stopped: the LR logged at the last iteration follows the cyclic formula.
    last_lr = float(re.findall(r'iter:\s+\d+, lr:\(([\d.e+-]+),\)', log2)[-1])
    expected = 1e-5 + 0.5 * (1e-3 - 1e-5) * (1 + math.cos(math.pi * (total - 1 - 20) / 40))
    assert last_lr == pytest.approx(expected, rel=1e-3)

    # `basicsr test` with the final weights reproduces the final validation PSNR.
    final_psnr = float(re.findall(r'# psnr: (\d+\.\d+)', log2)[-1])
    test_opt = {'name': 'tiny_test', 'model_type': 'ImageCleanModel', 'scale': 1, 'num_gpu': 0,
                'datasets': {'test_1': dict(_train_yaml(tmp_path, total)['datasets']['val'])},
                'network_g': dict(TINY_NET),
                'path': {'pretrain_network_g': str(experiment / 'models' / 'net_g_latest.pth'), 'param_key_g': 'params',
                         'strict_load_g': True},
                'val': {'save_img': True, 'suffix': None,
                        'metrics': {'psnr': {'type': 'calculate_psnr', 'crop_border': 0, 'test_y_channel': False}}}}
    (tmp_path / 'test.yml').write_text(yaml.safe_dump(test_opt))
    tested = _basicsr(tmp_path, command='test')
    log3 = tested.communicate(timeout=120)[0]
    assert tested.returncode == 0, log3
    assert float(re.findall(r'# psnr: (\d+\.\d+)', log3)[-1]) == pytest.approx(final_psnr, abs=1e-4)
    assert (tmp_path / 'results' / 'tiny_test' / 'visualization' / 'tiny_val' / 'v0_tiny_test.png').is_file()


@pytest.mark.slow
def test_cli_rejects_an_invalid_option_file(tmp_path):
    opt = _train_yaml(tmp_path, 60)
    opt['train']['total_iter'] = 61
    (tmp_path / 'train.yml').write_text(yaml.safe_dump(opt))
    result = _basicsr(tmp_path)
    out = result.communicate(timeout=120)[0]
    assert result.returncode == 2, out
    assert 'iters sums to 60 but train.total_iter is 61' in out
    assert not (tmp_path / 'experiments').exists()


@pytest.mark.slow
def test_torchrun_two_process_ddp_on_cpu(tmp_path):
    """Per-process progressive batches under DDP, and rank-0 validation that does not deadlock the other rank."""
    write_pairs(tmp_path / 'train', [f'im{i}' for i in range(4)], (40, 40))
    write_pairs(tmp_path / 'val', ['v0'], (20, 28), seed=1)
    opt = _train_yaml(tmp_path, 30)
    opt['dist_params'] = {'backend': 'gloo', 'port': 29500}
    (tmp_path / 'train.yml').write_text(yaml.safe_dump(opt))
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), OMP_NUM_THREADS='1')
    with socket.socket() as sock:  # a free port for the rendezvous
        sock.bind(('127.0.0.1', 0))
        port = sock.getsockname()[1]
    torchrun = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2', f'--master_port={port}',
                '-m', 'restormer_arch', 'train', '-opt', str(tmp_path / 'train.yml'), '--launcher', 'pytorch']
    result = run_process_group(torchrun, timeout=180, cwd=tmp_path, env=env)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log
    assert 'World size (gpu number): 2' in log
    # Loader batch 2 per process; stage 1 keeps 1 sample per process (not 1 of the 4 summed over both ranks).
    assert 'iter 11 -> stage 1: batch 1/device, patch 32 (lq batch (1, 3, 32, 32))' in log
    assert len(re.findall(r'# psnr: \d+\.\d+', log)) == 3  # iterations 10, 20, 30 on rank 0 only
    assert 'End of training' in log


# ------------------------------------------------------------------------------------------ numerical faults
def test_nonfinite_loss_skips_the_step_then_stops_with_a_checkpoint(tmp_path, basicsr_log):
    model = build_model(make_opt(tmp_path, train={'max_nonfinite_steps': 3}))
    good = batch()
    bad = {'lq': good['lq'].clone(), 'gt': good['gt']}
    bad['lq'][0, 0, 0, 0] = float('nan')
    for iteration, data in enumerate((good, bad, bad, good, bad, bad), start=1):  # a finite loss resets the count
        model.feed_data(data)
        weights = {k: v.clone() for k, v in model.net_g.state_dict().items()}
        model.optimize_parameters(iteration)
        skipped = all(torch.equal(weights[k], v) for k, v in model.net_g.state_dict().items())
        assert skipped is (data is bad)
    assert sum('Non-finite loss at iteration' in m for m in basicsr_log) == 4
    model.feed_data(bad)
    with pytest.raises(NonFiniteLossError, match='3 consecutive non-finite losses up to iteration 7.*--auto_resume'):
        model.optimize_parameters(7)
    saved = torch.load(tmp_path / 'experiment' / 'models' / 'net_g_6.pth', weights_only=True)['params']
    assert all(torch.equal(weights[k], v) for k, v in saved.items())
    assert torch.load(tmp_path / 'experiment' / 'training_states' / '6.state', weights_only=True)['iter'] == 6
    assert model.nonfinite_skipped == 5


def test_nonfinite_gradient_skips_the_step(tmp_path):
    model = build_model(make_opt(tmp_path))
    model.feed_data(batch())
    weights = {k: v.clone() for k, v in model.net_g.state_dict().items()}
    # The loss stays finite; only the backward pass overflows.
    model.net_g.output.weight.register_hook(lambda grad: grad * float('inf'))
    model.optimize_parameters(1)
    assert all(torch.equal(weights[k], v) for k, v in model.net_g.state_dict().items())
    assert model.nonfinite_skipped == 1


# ------------------------------------------------------------------------------------------ performance options
def test_performance_options_bf16_and_channels_last_train_and_validate(tmp_path):
    torch.manual_seed(0)
    plain = build_model(make_opt(tmp_path))
    torch.manual_seed(0)
    fast = build_model(make_opt(tmp_path, performance={'precision': 'bf16', 'channels_last': True}))
    assert fast.net_g.patch_embed.proj.weight.is_contiguous(memory_format=torch.channels_last)
    data = batch()
    for model in (plain, fast):
        model.feed_data(data)
        model.optimize_parameters(1)
    # bf16 changes the numbers a little, not the training: same loss to bf16 precision, finite weights
    assert fast.get_current_log()['l_pix'] == pytest.approx(plain.get_current_log()['l_pix'], rel=2e-2)
    for model in (plain, fast):
        model.feed_data(data)
        model.test()
    assert fast.output.dtype == torch.float32
    mse = torch.mean((fast.output - plain.output) ** 2)
    assert 10 * torch.log10(1 / mse) > 40  # PSNR of bf16 vs fp32 restoration on this tiny model
    saved = tmp_path / 'experiment' / 'models'
    fast.save(0, 1)
    keys = torch.load(saved / 'net_g_1.pth', weights_only=True)['params'].keys()
    assert set(keys) == set(plain.net_g.state_dict().keys())


def test_performance_options_are_validated(tmp_path):
    with pytest.raises(ValueError, match='fp16 is for inference only'):
        build_model(make_opt(tmp_path, performance={'precision': 'fp16'}))
    with pytest.raises(ValueError, match='performance.precision must be one of'):
        build_model(make_opt(tmp_path, performance={'precision': 'int8'}))
    # An unknown performance key is the option check's "did you mean" warning (tests/options/test_options.py).


def test_fp16_testing_on_a_cpu_warns(tmp_path, basicsr_log):
    build_model(make_opt(tmp_path, is_train=False, performance={'precision': 'bf16'}))
    assert not any('fp16' in m for m in basicsr_log)
    build_model(make_opt(tmp_path, is_train=False, performance={'precision': 'half'}))
    assert any('fp16' in m and 'bf16' in m for m in basicsr_log)

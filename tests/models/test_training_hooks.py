"""Our additions to BasicSR training (restormer_arch.models.training_hooks): states, checkpoints, resume, checks."""
import math
import os
import warnings

import pytest
import torch
from basicsr.data import build_dataset
from basicsr.models import build_model
from basicsr.models.base_model import BaseModel
from torch.utils.data import DataLoader

from restormer_arch import checkpoint
from restormer_arch.checkpoint import CheckpointError, CheckpointHooks
from restormer_arch.models import training_hooks
from restormer_arch.models.training_hooks import RunError
from tests.models import test_models
from tests.models.test_models import TINY_NET, make_opt, write_pairs

basicsr_log = test_models.basicsr_log  # the fixture


def _training_state(iteration: int) -> dict:
    return {'epoch': 0, 'iter': iteration, 'optimizers': [{}], 'schedulers': [{}]}


def _resume_opt(tmp_path, auto_resume=True, resume_state=None):
    states = tmp_path / 'experiments' / 'run' / 'training_states'
    states.mkdir(parents=True, exist_ok=True)
    models = tmp_path / 'experiments' / 'run' / 'models'
    models.mkdir(parents=True, exist_ok=True)
    return {'name': 'run', 'num_gpu': 0, 'auto_resume': auto_resume, 'is_train': True, 'network_g': {'type': 'X'},
            'path': {'training_states': str(states), 'models': str(models), 'resume_state': resume_state}}, states


def _save_checkpoint(states, iteration):
    torch.save(_training_state(iteration), states / f'{iteration}.state')
    torch.save({'params': {}}, states.parent / 'models' / f'net_g_{iteration}.pth')


def test_auto_resume_uses_root_path_not_cwd(tmp_path, monkeypatch):
    opt, states = _resume_opt(tmp_path)
    for it in (4, 12, 8):
        _save_checkpoint(states, it)
    monkeypatch.chdir('/')  # BasicSR's version would look in /experiments/run/training_states and start from 0
    state = checkpoint.load_resume_state(opt)
    assert state['iter'] == 12
    assert opt['path']['resume_state'].endswith('12.state')
    assert opt['path']['pretrain_network_g'].endswith('net_g_12.pth')  # check_resume points the net at it


def test_auto_resume_skips_a_torn_state(tmp_path):
    opt, states = _resume_opt(tmp_path)
    _save_checkpoint(states, 4)
    (states / '8.state').write_bytes(b'PK\x03\x04 truncated while writing')
    torch.save(_training_state(12), states / '12.state')  # its net_g_12.pth was never written
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        state = checkpoint.load_resume_state(opt)
    assert state['iter'] == 4
    messages = ' '.join(str(w.message) for w in caught)
    assert '8.state' in messages and 'net_g_12.pth' in messages


def test_auto_resume_without_states_starts_fresh(tmp_path):
    opt, _ = _resume_opt(tmp_path)
    assert checkpoint.load_resume_state(opt) is None


def test_resume_state_loads_on_cpu(tmp_path):
    opt, states = _resume_opt(tmp_path, auto_resume=False)
    torch.save(_training_state(6), states / '6.state')
    opt['path']['resume_state'] = str(states / '6.state')
    with pytest.raises(CheckpointError, match='net_g_6.pth'):  # checked before any folder or log, not in the model
        checkpoint.load_resume_state(opt)
    _save_checkpoint(states, 6)
    assert checkpoint.load_resume_state(opt)['iter'] == 6


def test_resume_state_errors_name_the_file(tmp_path):
    opt, states = _resume_opt(tmp_path, auto_resume=False)
    opt['path']['resume_state'] = str(states / 'missing.state')
    with pytest.raises(CheckpointError, match='missing.state'):
        checkpoint.load_resume_state(opt)
    net_file = tmp_path / 'net_g_4.pth'
    torch.save({'params': {'w': torch.zeros(1)}}, net_file)
    opt['path']['resume_state'] = str(net_file)
    with pytest.raises(ValueError, match='net_g_4.pth.*not a BasicSR training state'):
        checkpoint.load_resume_state(opt)


class _Evil:
    """Unpickling this would run a shell command: weights_only loading must refuse it."""

    def __reduce__(self):
        return (os.system, ('echo pwned > /dev/null',))


class _Holder(CheckpointHooks, BaseModel):
    """A bare BasicSR model with our checkpoint methods (as ImageCleanModel, or any model under `basicsr train`)."""


def _holder(tmp_path, **opt):
    holder = _Holder.__new__(_Holder)
    holder.opt = {'dist': False, 'num_gpu': 0, 'path': {'models': str(tmp_path), 'training_states': str(tmp_path)},
                  **opt}
    holder.device = torch.device('cpu')
    holder.optimizers, holder.schedulers = [], []
    return holder


def test_save_network_and_training_state_are_atomic_and_loadable(tmp_path):
    holder = _holder(tmp_path)
    net = torch.nn.Linear(2, 3)
    holder.optimizers = [torch.optim.AdamW(net.parameters(), 1e-3)]
    holder.save_network([net, net], 'net_g', 7, param_key=['params', 'params_ema'])
    holder.save_training_state(epoch=1, current_iter=7)
    assert sorted(os.listdir(tmp_path)) == ['7.state', 'net_g_7.pth']
    saved = torch.load(tmp_path / 'net_g_7.pth', weights_only=True)
    assert set(saved) == {'params', 'params_ema'} and torch.equal(saved['params']['weight'], net.weight)
    assert torch.load(tmp_path / '7.state', weights_only=True)['iter'] == 7


def test_save_failure_raises_instead_of_being_ignored(tmp_path):
    holder = _holder(tmp_path / 'missing_dir')
    with pytest.raises(CheckpointError, match='net_g_1.pth'):
        holder.save_network(torch.nn.Linear(2, 2), 'net_g', 1)


def test_load_network_refuses_code_execution(tmp_path):
    evil = tmp_path / 'evil.pth'
    torch.save({'params': {'weight': torch.zeros(1)}, 'payload': _Evil()}, evil)
    holder = _holder(tmp_path)
    with pytest.raises(ValueError, match='refusing to load .*evil.pth.*could run code.*posix.system'):
        holder.load_network(torch.nn.Linear(1, 1), str(evil))
    with pytest.raises(ValueError, match='refusing'):
        checkpoint.load_file(str(evil))


def test_load_network_strips_module_prefix_and_falls_back_to_params(tmp_path):
    net = torch.nn.Linear(2, 2)
    path = tmp_path / 'net.pth'
    torch.save({'params': {f'module.{k}': v for k, v in net.state_dict().items()}}, path)
    target = torch.nn.Linear(2, 2)
    _holder(tmp_path).load_network(target, str(path), param_key='params_ema')
    assert torch.equal(target.weight, net.weight)


def test_load_network_names_a_configuration_mismatch(tmp_path):
    from restormer_arch import Restormer

    tiny = dict(dim=8, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1)
    path = tmp_path / 'denoise.pth'
    torch.save({'params': Restormer(**tiny, LayerNorm_type='BiasFree').state_dict()}, path)
    with pytest.raises(ValueError, match=r'denoise.pth.*missing keys.*norm1.body.bias.*LayerNorm_type'):
        _holder(tmp_path).load_network(Restormer(**tiny), str(path))
    gray = tmp_path / 'gray.pth'
    torch.save({'params': Restormer(**tiny, inp_channels=1, out_channels=1).state_dict()}, gray)
    mismatch = r'shape mismatches.*patch_embed.proj.weight: \(8, 1, 3, 3\) vs \(8, 3, 3, 3\)'
    with pytest.raises(ValueError, match=mismatch):
        _holder(tmp_path).load_network(Restormer(**tiny), str(gray))
    with pytest.raises(CheckpointError, match='nope.pth'):
        _holder(tmp_path).load_network(Restormer(**tiny), str(tmp_path / 'nope.pth'))


# ---------------------------------------------------------------------------------------------------- resume
def _cyclic(periods, total, **train):
    return {'total_iter': total, 'scheduler': {'type': 'CosineAnnealingRestartCyclicLR', 'periods': periods,
                                               'restart_weights': [1] * len(periods), 'eta_mins': [1e-3, 1e-6]},
            **train}


def _run_schedule(model, first, last, data=None):
    """What BasicSR's loop does to the learning rate for iterations first..last (plus a step when data is given)."""
    lrs = {}
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # lr_scheduler.step() before optimizer.step()
        for iteration in range(first, last + 1):
            model.update_learning_rate(iteration, warmup_iter=model.opt['train'].get('warmup_iter', -1))
            lrs[iteration] = model.get_current_learning_rate()[0]
            if data is not None:
                model.feed_data(data)
                model.optimize_parameters(iteration)
    return lrs


def _state(model, iteration):
    model.save_training_state(0, iteration)
    return torch.load(os.path.join(model.opt['path']['training_states'], f'{iteration}.state'), weights_only=True)


def test_resume_follows_the_edited_schedule_and_lists_the_changes(tmp_path, basicsr_log):
    first = build_model(make_opt(tmp_path, train=_cyclic([3, 3], 6)))
    _run_schedule(first, 1, 6)
    state = _state(first, 6)
    extended = build_model(make_opt(tmp_path, train=_cyclic([3, 7], 10)))
    extended.resume_training(state)
    lrs = _run_schedule(extended, 7, 10)
    for iteration, lr in lrs.items():  # the file's schedule: 1e-3 for 3 steps, then cosine to 1e-6 over 7
        step = iteration - 1
        expected = 1e-6 + 0.5 * (1e-3 - 1e-6) * (1 + math.cos(math.pi * min(step - 3, 7) / 7))
        assert lr == pytest.approx(expected, rel=1e-9), iteration
    changes = [m for m in basicsr_log if '[3, 3]' in m and '[3, 7]' in m]
    assert changes and '10' in changes[0]  # periods and total_iter are both listed


def test_resume_from_a_state_without_recorded_options_warns_that_the_file_wins(tmp_path, basicsr_log):
    state = _state(build_model(make_opt(tmp_path)), 1)
    del state['options']  # as BasicSR's own save_training_state writes it
    build_model(make_opt(tmp_path)).resume_training(state)
    assert any('records no options' in m for m in basicsr_log)


def test_resume_after_a_signal_save_continues_the_uninterrupted_schedule(tmp_path):
    """The stop signal is seen inside iteration 7, after its scheduler step: the state of iteration 6 is saved."""
    train = {'total_iter': 12, 'warmup_iter': 4,
             'scheduler': {'type': 'MultiStepLR', 'milestones': [5, 8, 10], 'gamma': 0.5}}  # recursive lr
    reference = _run_schedule(build_model(make_opt(tmp_path, train=train)), 1, 12)
    data = {'lq': torch.rand(1, 3, 16, 16), 'gt': torch.rand(1, 3, 16, 16)}
    interrupted = build_model(make_opt(tmp_path, train=train))
    _run_schedule(interrupted, 1, 6, data)
    _run_schedule(interrupted, 7, 7)  # stepped for iteration 7, then stopped before training it
    state = _state(interrupted, 6)
    resumed = build_model(make_opt(tmp_path, train=train))
    resumed.resume_training(state)
    assert _run_schedule(resumed, 7, 12) == pytest.approx({i: reference[i] for i in range(7, 13)}, rel=1e-12)
    moments = resumed.optimizer_g.state_dict()['state']
    saved = interrupted.optimizer_g.state_dict()['state']
    assert moments and all(torch.equal(moments[k]['exp_avg'], saved[k]['exp_avg']) for k in saved)
    # A new base lr in the file wins too: every later lr is the new schedule's (here twice the old one).
    doubled = build_model(make_opt(tmp_path, train=dict(train, optim_g={'type': 'AdamW', 'lr': 2e-3})))
    doubled.resume_training(state)
    assert _run_schedule(doubled, 7, 12) == pytest.approx({i: 2 * reference[i] for i in range(7, 13)}, rel=1e-12)


def test_resume_refuses_a_state_of_another_model_type(tmp_path):
    model = build_model(make_opt(tmp_path))
    state = _state(model, 1)
    state['optimizers'].append(state['optimizers'][0])
    with pytest.raises(CheckpointError):
        model.resume_training(state)


# ---------------------------------------------------------------------------------------------------- fine-tuning
LAYOUTS = {
    'params': lambda sd: {'params': sd},
    'params_ema': lambda sd: {'params_ema': sd},  # no 'params' (BasicSR's default param_key_g): found anyway
    'state_dict+generator.': lambda sd: {'meta': {'epoch': 3},
                                         'state_dict': {f'generator.{k}': v for k, v in sd.items()}},
    'module.': lambda sd: {'params': {f'module.{k}': v for k, v in sd.items()}},
    'bare': lambda sd: dict(sd),
    'net_g': lambda sd: {'net_g': sd},
}


@pytest.mark.parametrize('strict', [True, False])
@pytest.mark.parametrize('layout', sorted(LAYOUTS))
def test_pretrain_network_g_loads_every_layout_restore_accepts(tmp_path, basicsr_log, layout, strict):
    torch.manual_seed(123)
    source = build_model(make_opt(tmp_path, is_train=False)).net_g.state_dict()
    path = tmp_path / 'pretrained.pth'
    torch.save(LAYOUTS[layout](source), path)
    opt = make_opt(tmp_path, is_train=False)
    opt['path'].update(pretrain_network_g=str(path), strict_load_g=strict)  # param_key_g: BasicSR's default
    loaded = build_model(opt).net_g.state_dict()
    assert all(torch.equal(v, loaded[k]) for k, v in source.items())
    assert any(f'{len(source)} of {len(source)}' in m for m in basicsr_log)  # the count of loaded tensors


def test_non_strict_pretrain_that_fills_too_little_is_refused(tmp_path, basicsr_log):
    other = build_model(make_opt(tmp_path, is_train=False, network=dict(TINY_NET, dim=16))).net_g.state_dict()
    path = tmp_path / 'other_width.pth'
    torch.save({'params': other}, path)
    opt = make_opt(tmp_path, is_train=False)
    opt['path'].update(pretrain_network_g=str(path), strict_load_g=False)
    with pytest.raises(CheckpointError):
        build_model(opt)
    # More than half matches: loaded, and what was left out is reported.
    torch.manual_seed(5)
    source = build_model(make_opt(tmp_path, is_train=False)).net_g.state_dict()
    partial = dict(list(source.items())[:int(0.7 * len(source))])
    torch.save({'params': partial}, path)
    torch.manual_seed(6)
    net = build_model(opt).net_g.state_dict()
    assert all(torch.equal(net[k], v) for k, v in partial.items())
    assert any(f'{len(partial)} of {len(source)}' in m for m in basicsr_log)
    assert any(sorted(set(source) - set(partial))[0] in m for m in basicsr_log)  # the missing ones are listed


# ---------------------------------------------------------------------------------------------------- swaps
def _paired_dataset(tmp_path, scale=1, size=24):
    write_pairs(tmp_path / 'pairs', ['a', 'b'], (size, size))
    if scale != 1:  # real x2 pairs: shrink the lq images
        import cv2
        for name in ('a', 'b'):
            img = cv2.imread(str(tmp_path / 'pairs' / 'lq' / f'{name}.png'))
            cv2.imwrite(str(tmp_path / 'pairs' / 'lq' / f'{name}.png'), cv2.resize(img, (size // scale,) * 2))
    return build_dataset({'name': 'pairs', 'type': 'PairedImageDataset', 'dataroot_gt': str(tmp_path / 'pairs/gt'),
                          'dataroot_lq': str(tmp_path / 'pairs/lq'), 'io_backend': {'type': 'disk'},
                          'filename_tmpl': '{}', 'phase': 'train', 'scale': scale, 'gt_size': 16,
                          'use_hflip': True, 'use_rot': True})


RRDB_X4 = {'type': 'RRDBNet', 'num_in_ch': 3, 'num_out_ch': 3, 'scale': 4, 'num_feat': 8, 'num_block': 1,
           'num_grow_ch': 4}


def test_basicsr_models_get_a_dry_test_before_training(tmp_path):
    def attach(model, dataset):  # what basicsr train does with the model its pipeline built
        return training_hooks.TrainingRun(train_loader=DataLoader(dataset)).attach(model)

    dataset = _paired_dataset(tmp_path)
    attach(build_model(make_opt(tmp_path, model_type='SRModel')), dataset)  # Restormer fits
    x2 = build_model(make_opt(tmp_path, model_type='SRModel', network=dict(RRDB_X4, scale=2)))
    attach(x2, _paired_dataset(tmp_path / 'x2', scale=2))  # (shapes: the option check's dry forward)
    swinir_model = build_model(make_opt(tmp_path, model_type='SwinIRModel'))  # reads network_g.window_size
    with pytest.raises(RunError, match='model_type SwinIRModel cannot run network_g Restormer'):
        attach(swinir_model, dataset)


def test_basicsr_train_changes_basicsr_only_while_its_pipeline_runs():
    import basicsr.train as train

    before = {name: getattr(train, name) for name in ('build_model', 'load_resume_state', 'make_exp_dirs')}
    with training_hooks.applied(training_hooks.TrainingRun()) as run:
        assert BaseModel.save_network is CheckpointHooks.save_network
        assert train.load_resume_state is not before['load_resume_state']  # records the resumed data position
        assert run.epoch == 0
    assert BaseModel.save_network.__module__.startswith('basicsr.')
    assert not hasattr(BaseModel, '_replay_schedule')
    assert all(getattr(train, name) is value for name, value in before.items())

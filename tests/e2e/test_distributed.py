"""Real multi-process and crash tests: torchrun DDP on CPU, SIGKILL at many moments, SIGTERM saves a state."""
import json
import os
import re
import signal
import socket
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from tests.conftest import run_process_group
from tests.models.test_models import TINY_NET, _train_yaml, write_pairs
from tests.train_process import ENV, TrainProcess, kill_leftover_runs


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def test_torchrun_ddp_shards_data_syncs_weights_and_only_rank0_writes(tmp_path):
    names = [f'im{i}' for i in range(8)]
    write_pairs(tmp_path / 'train', names, (32, 32))
    write_pairs(tmp_path / 'val', ['v0'], (20, 28), seed=1)
    opt = _train_yaml(tmp_path, 8)
    opt['model_type'] = 'ProbeImageCleanModel'
    opt['dist_params'] = {'backend': 'gloo'}
    opt['datasets']['train'].update(dataset_enlarge_ratio=1, batch_size_per_gpu=2, geometric_augs=False, gt_size=32,
                                    iters=[4, 4], mini_batch_sizes=[2, 2], gt_sizes=[16, 32])
    opt['train']['scheduler'].update(periods=[4, 4])
    opt['val']['val_freq'] = 4
    opt['logger']['save_checkpoint_freq'] = 4
    (tmp_path / 'train.yml').write_text(yaml.safe_dump(opt))
    probe_dir = tmp_path / 'probe'
    probe_dir.mkdir()
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2', f'--master_port={_free_port()}',
           '-m', 'tests.ddp_probe', 'train', '-opt', str(tmp_path / 'train.yml'), '--launcher', 'pytorch']
    start = time.time()
    result = run_process_group(cmd, timeout=240, cwd=tmp_path, env=dict(ENV, DDP_PROBE_DIR=str(probe_dir)))
    log = result.stdout + result.stderr
    assert result.returncode == 0, log
    print(f'2-process DDP run: {time.time() - start:.1f} s')
    ranks = [json.loads((probe_dir / f'rank{r}.json').read_text()) for r in (0, 1)]
    # 8 images, 2 per batch, 2 ranks: 2 iterations per epoch, and in every epoch the ranks split the images.
    for rank in ranks:
        assert len(rank['batches']) == 8
    for epoch in range(4):
        seen = [{p for batch in rank['batches'][2 * epoch:2 * epoch + 2] for p in batch} for rank in ranks]
        assert not seen[0] & seen[1], f'epoch {epoch}: both ranks trained on {seen[0] & seen[1]}'
        assert seen[0] | seen[1] == {f'{n}.png' for n in names}
    assert ranks[0]['weights_sha256'] == ranks[1]['weights_sha256'], 'DDP weights diverged'
    assert ranks[1]['saved'] == [] and ranks[1]['validations'] == 0
    assert {'net_g_4.pth', '4.state', 'net_g_8.pth', '8.state', 'net_g_latest.pth'} <= set(ranks[0]['saved'])
    assert ranks[0]['validations'] == 2  # iterations 4 and 8 (the duplicate final validation is skipped)
    assert 'World size (gpu number): 2' in log and 'End of training' in log
    assert 'process group' not in result.stderr.lower() or 'destroy' not in result.stderr.lower()


@pytest.fixture(autouse=True)
def _kill_leftover_runs():
    yield
    kill_leftover_runs()


def _complete_states(experiment: Path) -> list:
    """Iterations whose training state and network both load: what a resume may use."""
    done = []
    for state in (experiment / 'training_states').glob('*.state'):
        try:
            iteration = torch.load(state, weights_only=True)['iter']
            torch.load(experiment / 'models' / f'net_g_{iteration}.pth', weights_only=True)
        except Exception:
            continue
        done.append(iteration)
    return sorted(done)


def _kill_moment(run: TrainProcess, experiment: Path, moment: str, deadline: float) -> None:
    """Wait for a moment of the run (mid-checkpoint-write, or a given iteration), then SIGKILL it."""
    stale = set(_temporaries(experiment))  # left by an earlier kill; the resume removes them
    while time.time() < deadline and run.proc.poll() is None:
        if moment == 'writing':
            if set(_temporaries(experiment)) - stale:
                break
        elif run.last_iter() >= int(moment):
            break
        time.sleep(0.001)
    run.proc.send_signal(signal.SIGKILL)
    assert run.finish() == -signal.SIGKILL, run.log()


def _temporaries(experiment: Path) -> list:
    return [p for sub in ('models', 'training_states') if (experiment / sub).is_dir()
            for p in os.listdir(experiment / sub) if '.tmp' in p]


def _kill_yaml(tmp_path: Path, total: int, freq: int) -> dict:
    opt = _train_yaml(tmp_path, total)
    # A 2 MB checkpoint (dim 24 + EMA) widens the window in which a kill lands inside a write.
    opt['network_g'] = dict(TINY_NET, dim=24)
    opt['train']['ema_decay'] = 0.9
    opt['logger'].update(save_checkpoint_freq=freq, print_freq=1)
    opt['val']['val_freq'] = total
    return opt


def test_sigkill_at_many_moments_then_auto_resume_loses_at_most_one_interval(tmp_path):
    write_pairs(tmp_path / 'train', [f'im{i}' for i in range(4)], (40, 40))
    write_pairs(tmp_path / 'val', ['v0'], (20, 28), seed=1)
    total, freq = 48, 4
    (tmp_path / 'train.yml').write_text(yaml.safe_dump(_kill_yaml(tmp_path, total, freq)))
    experiment = tmp_path / 'experiments' / 'tiny_subprocess'
    resumed_from = []
    for kill_number, moment in enumerate(['6', 'writing', '15', 'writing', '29', 'writing']):
        run = TrainProcess(tmp_path, '--auto_resume')
        _kill_moment(run, experiment, moment, deadline=time.time() + 120)
        reached = run.last_iter()
        complete = _complete_states(experiment)
        assert complete, run.log()
        assert reached - complete[-1] <= freq, f'kill {kill_number}: at iter {reached}, newest state {complete[-1]}'
        if kill_number:  # every restart resumed from the newest complete state of the previous kill
            assert re.search(r'Resuming training from epoch: \d+, iter: (\d+)', run.log())
        resumed_from.append(complete[-1])
        assert 'archived' not in run.log()
        # no temporary file is ever taken for a checkpoint
        assert not [tmp for tmp in _temporaries(experiment) if tmp.endswith(('.state', '.pth'))]
    final = TrainProcess(tmp_path, '--auto_resume')
    assert final.finish() == 0, final.log()
    start = int(re.search(r'Resuming training from epoch: \d+, iter: (\d+)', final.log()).group(1))
    assert start == resumed_from[-1]
    assert 'End of training' in final.log() and final.last_iter() == total
    assert not _temporaries(experiment), 'stale temporary files were not cleaned up on resume'
    assert not list(tmp_path.glob('experiments/*_archived_*'))


def test_sigterm_saves_a_state_and_resume_continues_from_it(tmp_path):
    write_pairs(tmp_path / 'train', [f'im{i}' for i in range(4)], (40, 40))
    write_pairs(tmp_path / 'val', ['v0'], (20, 28), seed=1)
    total, freq = 40, 100  # no periodic checkpoint before the signal
    opt = _kill_yaml(tmp_path, total, freq)
    (tmp_path / 'train.yml').write_text(yaml.safe_dump(opt))
    experiment = tmp_path / 'experiments' / 'tiny_subprocess'
    run = TrainProcess(tmp_path)
    deadline = time.time() + 120
    while run.last_iter() < 7 and time.time() < deadline:
        assert run.proc.poll() is None, run.log()
        time.sleep(0.01)
    run.proc.send_signal(signal.SIGTERM)
    assert run.finish() == 128 + signal.SIGTERM, run.log()
    saved = _complete_states(experiment)
    assert len(saved) == 1 and saved[0] >= 7, (saved, run.log())
    assert f'state of iteration {saved[0]} saved' in run.log()
    resumed = TrainProcess(tmp_path, '--auto_resume')
    assert resumed.finish() == 0, resumed.log()
    assert f'iter: {saved[0]}.' in resumed.log() and resumed.last_iter() == total


def test_epoch_count_follows_the_real_loader_length(tmp_path):
    """5 images, batch 2: BasicSR would plan 3 iterations per epoch but drop_last gives 2; training must still end."""
    write_pairs(tmp_path / 'train', [f'im{i}' for i in range(5)], (32, 32))
    write_pairs(tmp_path / 'val', ['v0'], (16, 16), seed=1)
    opt = _train_yaml(tmp_path, 12)
    opt['datasets']['train'].update(dataset_enlarge_ratio=1, batch_size_per_gpu=2, iters=[6, 6],
                                    mini_batch_sizes=[2, 2], gt_sizes=[16, 32])
    opt['train']['scheduler'].update(periods=[6, 6])
    (tmp_path / 'train.yml').write_text(yaml.safe_dump(opt))
    run = TrainProcess(tmp_path)
    assert run.finish() == 0, run.log()
    assert run.last_iter() == 12, run.log()
    assert 'total epochs corrected from 4 to 6' in run.log()

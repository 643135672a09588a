"""A resumed run is the run without the interruption: real `basicsr train` processes killed and resumed."""
import os
import re
import resource
import signal
from pathlib import Path

import pytest
import torch
import yaml

from tests.models.test_models import _train_yaml, write_pairs
from tests.train_process import TrainProcess, kill_leftover_runs

TOTAL = 24
@pytest.fixture(autouse=True)
def _kill_leftover_runs():
    yield
    kill_leftover_runs()


def sequence(log: str) -> dict:
    """``{iteration: (lr, progressive stage)}`` as logged (the stage is logged when it changes, and after a start)."""
    seen, stage = {}, None
    for line in log.splitlines():
        changed = re.search(r'Progressive training: iter (\d+) -> stage (\d+)', line)
        if changed:
            stage = int(changed.group(2))
        logged = re.search(r'iter:\s+(\d+), lr:\(([\d.e+-]+),\)', line)
        if logged:
            seen[int(logged.group(1))] = (float(logged.group(2)), stage)
    return seen


def _options(folder: Path) -> dict:
    opt = _train_yaml(folder, TOTAL)  # progressive stages [8, 16], cyclic cosine periods [8, 16], mixup
    opt['datasets']['train']['num_worker_per_gpu'] = 2  # the group-wide SIGTERM also reaches the workers
    opt['train']['warmup_iter'] = 3
    opt['train']['scheduler']['eta_mins'] = [5e-4, 1e-5]
    opt['logger'].update(print_freq=1, save_checkpoint_freq=4)
    opt['val']['val_freq'] = 1000
    return opt


def test_killed_and_signalled_runs_resume_with_the_uninterrupted_sequence(tmp_path):
    write_pairs(tmp_path / 'train', [f'im{i}' for i in range(4)], (40, 40))
    write_pairs(tmp_path / 'val', ['v0'], (20, 28), seed=1)
    for folder in (tmp_path / 'ref', tmp_path / 'run'):
        folder.mkdir()
        (folder / 'train.yml').write_text(yaml.safe_dump(_options(tmp_path)))
    reference = TrainProcess(tmp_path / 'ref')
    experiment = tmp_path / 'run' / 'experiments' / 'tiny_subprocess'
    # A first attempt that died before its first checkpoint: --auto_resume starts over in this folder, keeping it.
    (experiment / 'training_states').mkdir(parents=True)
    (experiment / 'first_attempt.log').write_text('killed before the first checkpoint\n')

    segments = []
    first = TrainProcess(tmp_path / 'run', '--auto_resume')  # SIGTERM to the whole group, workers included
    first.wait_for_iter(6)
    os.killpg(first.proc.pid, signal.SIGTERM)
    assert first.finish() == 128 + signal.SIGTERM, first.log()
    segments.append(first.log())
    second = TrainProcess(tmp_path / 'run', '--auto_resume')  # SIGKILL after the periodic checkpoint of iteration 8
    second.wait_for_iter(11)
    os.killpg(second.proc.pid, signal.SIGKILL)
    assert second.finish() == -signal.SIGKILL
    segments.append(second.log())
    third = TrainProcess(tmp_path / 'run', '--auto_resume')  # SIGTERM to the main process only, mid-stage 2
    third.wait_for_iter(15)
    third.proc.send_signal(signal.SIGTERM)
    assert third.finish() == 128 + signal.SIGTERM, third.log()
    segments.append(third.log())
    last = TrainProcess(tmp_path / 'run', '--auto_resume')
    assert last.finish() == 0, last.log()
    segments.append(last.log())
    assert reference.finish() == 0, reference.log()

    expected = sequence(reference.log())
    assert sorted(expected) == list(range(1, TOTAL + 1))
    covered = set()
    for number, log in enumerate(segments):
        got = sequence(log)
        assert got, log
        for iteration, (lr, stage) in got.items():
            assert lr == pytest.approx(expected[iteration][0], rel=1e-6), (number, iteration, log)
            assert stage == expected[iteration][1], (number, iteration)
        if number:  # every restart continued from a saved state, not from 0
            assert min(got) > 1
        covered |= set(got)
    assert covered == set(range(1, TOTAL + 1))
    assert (experiment / 'first_attempt.log').is_file()
    assert not list((tmp_path / 'run' / 'experiments').glob('*_archived_*'))


def test_a_failed_checkpoint_write_stops_with_one_line_and_keeps_the_previous_state(tmp_path):
    """The file-size limit (RLIMIT_FSIZE) makes the kernel refuse the checkpoint write, as a full disk does."""
    write_pairs(tmp_path / 'train', [f'im{i}' for i in range(4)], (40, 40))
    write_pairs(tmp_path / 'val', ['v0'], (20, 28), seed=1)
    opt = _train_yaml(tmp_path, 8)
    opt['logger'].update(print_freq=4, save_checkpoint_freq=2)
    opt['network_g']['dim'] = 24  # a 6.5 MB network file fits under the limit, the 13 MB training state does not
    (tmp_path / 'train.yml').write_text(yaml.safe_dump(opt))
    limit = 10_000_000

    def limit_file_size():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    run = TrainProcess(tmp_path, preexec_fn=limit_file_size)
    code = run.finish()
    log = run.log()
    experiment = tmp_path / 'experiments' / 'tiny_subprocess'
    assert code == 1, log
    assert 'Traceback' not in log
    error_lines = [line for line in log.splitlines() if line.startswith('basicsr train: error')]
    assert len(error_lines) == 1 and str(experiment) in error_lines[0]
    assert not [p for sub in ('models', 'training_states') for p in os.listdir(experiment / sub) if '.tmp' in p]
    for path in (experiment / 'models').glob('*.pth'):  # whatever was written is complete
        torch.load(path, weights_only=True)

"""A resumed run continues the interrupted epoch's data: real `basicsr train` processes stopped and resumed."""
import json
import signal
import sys
from pathlib import Path

import pytest
import yaml

from tests.models.test_models import _train_yaml, write_pairs
from tests.train_process import ENV, TrainProcess, kill_leftover_runs

PROBE = (sys.executable, '-m', 'tests.ddp_probe')


@pytest.fixture(autouse=True)
def _kill_leftover_runs():
    yield
    kill_leftover_runs()


def probe_run(folder: Path, *args: str, cmd: tuple = PROBE, env: dict = ENV) -> TrainProcess:
    """``basicsr train`` with the recording model of tests/ddp_probe.py; its records go to ``folder/probe``."""
    (folder / 'probe').mkdir(exist_ok=True)
    return TrainProcess(folder, *args, cmd=cmd, env=dict(env, DDP_PROBE_DIR=str(folder / 'probe')))


def trained(folder: Path, rank: int = 0) -> dict:
    """``{iteration: (images, lr)}`` of the iterations that a rank completed; a redone iteration keeps its last."""
    lines = (folder / 'probe' / f'rank{rank}.jsonl').read_text().splitlines()
    return {(r := json.loads(line))['iter']: (sorted(r['paths']), r['lr']) for line in lines}


def data_options(folder: Path, images: int, total: int) -> dict:
    """8 images, 2 per batch, no enlargement: 4 iterations per epoch, so checkpoints every 3 land mid-epoch."""
    write_pairs(folder / 'train', [f'im{i}' for i in range(images)], (32, 32))
    write_pairs(folder / 'val', ['v0'], (16, 16), seed=1)
    opt = _train_yaml(folder, total)
    opt['model_type'] = 'ProbeImageCleanModel'
    opt['datasets']['train'].update(dataset_enlarge_ratio=1, batch_size_per_gpu=2, mini_batch_sizes=[2, 2])
    opt['logger'].update(print_freq=1, save_checkpoint_freq=3)
    opt['val']['val_freq'] = 1000
    return opt


def each_epoch_sees_every_image_once(sequence: dict, per_epoch: int, images: int) -> None:
    for start in range(1, max(sequence) + 1, per_epoch):
        seen = [p for it in range(start, start + per_epoch) for p in sequence[it][0]]
        assert sorted(seen) == sorted(f'im{i}.png' for i in range(images)), (start, seen)


def test_a_resume_continues_the_epoch_where_it_stopped(tmp_path):
    total = 16
    for name in ('ref', 'run'):
        (tmp_path / name).mkdir()
        (tmp_path / name / 'train.yml').write_text(yaml.safe_dump(data_options(tmp_path / name, 8, total)))
    reference = probe_run(tmp_path / 'ref')
    first = probe_run(tmp_path / 'run', '--auto_resume', env=dict(ENV, DDP_PROBE_DIE_AT='7'))
    assert first.finish() == -signal.SIGKILL  # after iteration 7: the newest state is 6 (epoch 1, batch 2 of 4)
    second = probe_run(tmp_path / 'run', '--auto_resume')
    second.wait_for_iter(10)
    second.proc.send_signal(signal.SIGTERM)  # saves the state of the last completed iteration, mid-epoch 2
    assert second.finish() == 128 + signal.SIGTERM, second.log()
    assert 'Resuming training from epoch: 1, iter: 6' in second.log()
    last = probe_run(tmp_path / 'run', '--auto_resume')
    assert last.finish() == 0, last.log()
    assert reference.finish() == 0, reference.log()
    expected, got = trained(tmp_path / 'ref'), trained(tmp_path / 'run')
    assert sorted(expected) == sorted(got) == list(range(1, total + 1))
    assert got == expected  # the same images (and learning rate) at every iteration as without the interruptions
    each_epoch_sees_every_image_once(got, 4, 8)

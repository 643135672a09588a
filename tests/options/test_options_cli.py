"""``basicsr train`` / ``basicsr test`` judge the options BasicSR will run (issue 10: A, B, F).

Each test runs the command as a user does and asserts what happens: the exit code, whether a traceback is printed,
which folders are left, and for runs that train, the learning rate logged at every iteration. Runs that train, and one
of each kind of refusal, are real processes; the other refusals call the same entry point in this process (they stop
before anything is built).
"""
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

import pytest
import torch

from restormer_arch.cli import main
from restormer_arch.errors import OptionsError
from restormer_arch.options import OptionsWarning, check_file
from tests.options.test_bad_inputs import base_options, write_options

REPO_ROOT = Path(__file__).resolve().parents[2]
LR_LOG = re.compile(r'iter:\s*([\d,]+), lr:\(([0-9.e+-]+)')


def basicsr(tmp: Path, *argv: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), OMP_NUM_THREADS='1')
    return subprocess.run([sys.executable, '-m', 'restormer_arch', *argv], cwd=tmp, env=env, capture_output=True,
                          text=True, timeout=300)


def logged_lrs(done: subprocess.CompletedProcess) -> Dict[int, float]:
    return {int(i.replace(',', '')): float(lr) for i, lr in LR_LOG.findall(done.stdout + done.stderr)}


def refused_up_front(done: subprocess.CompletedProcess, tmp: Path) -> bool:
    """Exit code 2, no traceback, and nothing created (no experiments/, results/ or tb_logger/ folder)."""
    log = done.stdout + done.stderr
    created = [d for d in ('experiments', 'results', 'tb_logger') if (tmp / d).exists()]
    return done.returncode == 2 and 'Traceback' not in log and not created


def refused_in_process(tmp: Path, capsys: Any, *argv: str) -> bool:
    """``main(argv)`` in ``tmp``: exit code 2, one short report, nothing created."""
    cwd = os.getcwd()
    os.chdir(tmp)
    try:
        code = main(list(argv))
    finally:
        os.chdir(cwd)
    err = capsys.readouterr().err
    created = [d for d in ('experiments', 'results', 'tb_logger') if (tmp / d).exists()]
    errors = [line for line in err.splitlines() if line.startswith(f'basicsr {argv[0]}: error: ')]
    return code == 2 and len(errors) == 1 and 'Traceback' not in err and not created


def small_run(tmp: Path, total_iter: int = 4, **train: Any) -> Dict[str, Any]:
    opt = base_options(tmp)
    opt['train']['total_iter'] = total_iter
    opt['train'].update(train)
    opt['datasets']['train'].update(iters=[total_iter], mini_batch_sizes=[2], gt_sizes=[16])
    opt['val']['val_freq'] = opt['logger']['save_checkpoint_freq'] = total_iter
    return opt


@pytest.mark.slow
def test_force_yml_num_gpu_is_judged_after_the_override(tmp_path, capsys):
    opt = small_run(tmp_path)
    opt['num_gpu'] = torch.cuda.device_count() + 8
    write_options(tmp_path, opt)
    assert refused_in_process(tmp_path, capsys, 'train', '-opt', 'options.yml')
    done = basicsr(tmp_path, 'train', '-opt', 'options.yml', '--force_yml', 'num_gpu=0')
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(logged_lrs(done)) == [1, 2, 3, 4]
    assert (tmp_path / 'experiments' / 'bad_input' / 'models' / 'net_g_latest.pth').is_file()


@pytest.mark.parametrize('override', [['train:total_iter=9'], ['train:total_iter=9', 'logger:print_freq=1']])
def test_force_yml_gets_the_same_verdict_as_the_file(tmp_path, capsys, override):
    opt = small_run(tmp_path)
    write_options(tmp_path, dict(opt, train=dict(opt['train'], total_iter=9)))
    assert refused_in_process(tmp_path, capsys, 'train', '-opt', 'options.yml')
    write_options(tmp_path, opt)
    assert refused_in_process(tmp_path, capsys, 'train', '-opt', 'options.yml', '--force_yml', *override)


@pytest.mark.parametrize('argv', [['--force_yml', 'train:total_iter=many'],
                                  ['--force_yml', 'train:optim:lr=0.1'], ['--force_yml', 'train:total_iter'],
                                  ['--force_yml', 'logger:print_freq=1', '--force_yml', 'num_gpu=0']])
def test_bad_overrides_are_refused_before_anything_is_made(tmp_path, capsys, argv):
    write_options(tmp_path, small_run(tmp_path))
    assert refused_in_process(tmp_path, capsys, 'train', '-opt', 'options.yml', *argv)


@pytest.mark.slow
@pytest.mark.parametrize('command, damage', [('train', 'tab'), ('test', 'tab'), ('train', 'unclosed'),
                                             ('test', 'duplicate'), ('train', 'missing')])
def test_unreadable_option_file_is_one_line(tmp_path, capsys, command, damage):
    path = write_options(tmp_path, small_run(tmp_path))
    text = path.read_text()
    if damage == 'missing':
        path.unlink()
    else:
        path.write_text({'tab': text.replace('  total_iter: 4', '\ttotal_iter: 4'),
                         'unclosed': text.replace('gt_sizes:', 'gt_sizes: [16', 1),
                         'duplicate': text + 'num_gpu: 1\n'}[damage])
    if damage != 'tab':  # the case's input runs in real processes; the other damages in this one
        assert refused_in_process(tmp_path, capsys, command, '-opt', 'options.yml')
        return
    done = basicsr(tmp_path, command, '-opt', 'options.yml')
    assert refused_up_front(done, tmp_path)
    assert len(done.stderr.strip().splitlines()) <= 2  # the count line and the problem, no traceback


@pytest.mark.slow
@pytest.mark.parametrize('name', ['denoise/run1', '..', 'a/../b'])
def test_name_that_is_not_a_folder_name_is_refused(tmp_path, capsys, name):
    opt = small_run(tmp_path)
    opt['name'] = name
    write_options(tmp_path, opt)
    if name == 'denoise/run1':  # the case's input, in a real process
        assert refused_up_front(basicsr(tmp_path, 'train', '-opt', 'options.yml'), tmp_path)
    else:
        assert refused_in_process(tmp_path, capsys, 'train', '-opt', 'options.yml')


@pytest.mark.slow
def test_last_cycle_longer_than_the_run_trains_a_partial_anneal(tmp_path):
    scheduler = {'type': 'CosineAnnealingRestartCyclicLR', 'periods': [3, 8], 'restart_weights': [1, 1],
                 'eta_mins': [3e-4, 1e-6]}
    opt = small_run(tmp_path, total_iter=6, scheduler=scheduler)
    opt['train']['optim_g']['lr'] = 3e-4
    write_options(tmp_path, opt)
    done = basicsr(tmp_path, 'train', '-opt', 'options.yml')
    assert done.returncode == 0, done.stderr[-3000:]
    lrs = logged_lrs(done)
    assert sorted(lrs) == [1, 2, 3, 4, 5, 6]
    anneal: List[float] = [lrs[i] for i in (5, 6)]
    assert all(lr <= 3e-4 * (1 + 1e-6) for lr in lrs.values())
    assert 1e-6 < anneal[1] < anneal[0] < 3e-4  # part-way down the second cycle, far above its floor
    assert (tmp_path / 'experiments' / 'bad_input' / 'models' / 'net_g_latest.pth').is_file()


@pytest.mark.slow
def test_eta_min_above_lr_trains_with_a_warning(tmp_path):
    scheduler = {'type': 'CosineAnnealingRestartCyclicLR', 'periods': [2, 2], 'restart_weights': [1, 1],
                 'eta_mins': [3e-4, 1e-6]}
    opt = small_run(tmp_path, scheduler=scheduler)
    opt['train']['optim_g']['lr'] = 1e-4
    write_options(tmp_path, opt)
    done = basicsr(tmp_path, 'train', '-opt', 'options.yml')
    assert done.returncode == 0, done.stderr[-3000:]
    assert re.search(r'^basicsr: warning: train.scheduler.eta_min', done.stderr, re.MULTILINE)  # one line, shown
    assert sorted(logged_lrs(done)) == [1, 2, 3, 4]


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec('wandb') is not None, reason='wandb is installed here')
def test_wandb_without_the_package_is_refused_and_nothing_piles_up(tmp_path, capsys):
    opt = small_run(tmp_path)
    opt['logger'].update(use_tb_logger=True, wandb={'project': 'my_project', 'resume_id': None})
    write_options(tmp_path, opt)
    assert refused_up_front(basicsr(tmp_path, 'train', '-opt', 'options.yml'), tmp_path)
    # BasicSR would archive the first attempt's folder on the second: nothing piles up.
    assert refused_in_process(tmp_path, capsys, 'train', '-opt', 'options.yml')


@pytest.mark.parametrize('command,phase,key', [('train', 'train', 'dataroot_lq'), ('train', 'val', 'dataroot_gt'),
                                               ('test', 'val', 'dataroot_lq')])
def test_missing_dataset_folders_are_refused_before_any_folder_is_made(tmp_path, capsys, command, phase, key):
    # The README's own `basicsr train -opt options/Deraining.yml` in a fresh clone: no data prepared yet.
    opt = small_run(tmp_path)
    opt['datasets'][phase][key] = 'datasets/not_prepared/input'
    if command == 'test':
        del opt['datasets']['train'], opt['train']
    write_options(tmp_path, opt)
    assert refused_in_process(tmp_path, capsys, command, '-opt', 'options.yml')


@pytest.mark.slow
def test_the_shipped_option_files_name_missing_data_in_one_report(tmp_path, capsys):
    assert refused_in_process(tmp_path, capsys, 'train', '-opt', str(REPO_ROOT / 'options' / 'Deraining.yml'))


@pytest.mark.slow
def test_option_warnings_are_one_line_each(tmp_path):
    opt = small_run(tmp_path)
    opt['val']['colour_mode'] = 'rgb'  # unknown, not close to a known key: a warning, not an error
    opt['datasets']['val']['dataroot_gt'] = 'not_prepared'  # stop before training
    write_options(tmp_path, opt)
    done = basicsr(tmp_path, 'train', '-opt', 'options.yml')
    assert refused_up_front(done, tmp_path)
    warning_lines = [line for line in done.stderr.splitlines() if 'val.colour_mode' in line]
    assert len(warning_lines) == 1 and warning_lines[0].startswith('basicsr: warning: ')
    assert not any(line.startswith('  ') and 'problems' in line for line in done.stderr.splitlines())


def test_force_yml_number_forms_as_basicsr_reads_them(tmp_path):
    path = write_options(tmp_path, small_run(tmp_path))
    with pytest.raises(OptionsError, match="lr: '1e-4' is text"):  # BasicSR sets the text '1e-4'
        check_file(str(path), True, ['train:optim_g:lr=1e-4'], root_path=str(tmp_path), data=False)
    for form in ('!!float 1e-4', '0.0001'):
        opt = check_file(str(path), True, [f'train:optim_g:lr={form}'], root_path=str(tmp_path), data=False)
        assert opt['train']['optim_g']['lr'] == pytest.approx(1e-4)


def test_force_yml_key_nothing_reads_is_a_did_you_mean_warning(tmp_path):
    path = write_options(tmp_path, small_run(tmp_path))
    with pytest.warns(OptionsWarning, match='train.total_iters: not read by this run'):
        check_file(str(path), True, ['train:total_iters=8'], root_path=str(tmp_path), data=False)


def test_settings_basicsr_overrides_are_reported(tmp_path):
    opt = small_run(tmp_path)
    opt['name'] = 'debug_run'  # BasicSR's debug mode: validation every 8 iterations, logs every iteration
    opt['logger']['print_freq'] = 100
    opt['path']['experiments_root'] = 'elsewhere'
    with pytest.warns(OptionsWarning) as record:
        check_file(str(write_options(tmp_path, opt)), True, root_path=str(tmp_path), data=False)
    notes = '\n'.join(str(w.message) for w in record)
    assert "logger.print_freq: you wrote 100, BasicSR uses 1" in notes
    assert "path.experiments_root: you wrote 'elsewhere'" in notes


def test_two_test_sets_with_one_name_are_refused_before_any_work(tmp_path, capsys):
    opt = small_run(tmp_path)
    del opt['train']
    opt['datasets'] = {'test_1': dict(opt['datasets']['val']), 'test_2': dict(opt['datasets']['val'])}
    write_options(tmp_path, opt)
    assert refused_in_process(tmp_path, capsys, 'test', '-opt', 'options.yml')


def test_read_only_experiments_location_is_one_line(tmp_path, capsys):
    write_options(tmp_path, small_run(tmp_path))
    (tmp_path / 'experiments').mkdir()
    (tmp_path / 'experiments').chmod(0o555)
    try:
        if os.access(tmp_path / 'experiments', os.W_OK):
            pytest.skip('running as a user who can write anywhere')
        assert main(['train', '-opt', str(tmp_path / 'options.yml')]) == 2
        assert 'experiments' in capsys.readouterr().err and not (tmp_path / 'experiments' / 'bad_input').exists()
    finally:
        (tmp_path / 'experiments').chmod(0o755)

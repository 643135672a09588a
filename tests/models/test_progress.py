"""Progress of ``basicsr test`` and of validation: a bar per dataset (``val.pbar``), the results table at the end."""
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import yaml
from torch.utils.data import DataLoader

from restormer_arch.data import Dataset_PairedImage
from restormer_arch.models import ImageCleanModel
from tests.models.test_evaluation_pipeline import REPO_ROOT, tiny_options, write_pairs
from tests.models.test_models import make_opt

SETS = {'GoPro': 3, 'HIDE': 2}


def bar_counts(stderr, phase='Test'):
    """``{dataset: images done}`` of the last state of every progress bar in ``stderr`` (tqdm's ``n/total``)."""
    counts = {}
    for name, done, total in re.findall(rf'{phase} (\w+):[^\r\n]*?\b(\d+)/(\d+)\b', stderr):
        counts[name] = (int(done), int(total))
    return counts


def run_basicsr_test(tmp_path, **val):
    rng = np.random.default_rng(0)
    for name, count in SETS.items():
        write_pairs(tmp_path / 'datasets/Motion_Deblurring/test' / name, [f'{i}.png' for i in range(count)], rng,
                    size=(20, 12))
    _, path = tiny_options('MotionDeblurring_GoPro_HIDE.yml', tmp_path, **val)
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')
    result = subprocess.run([sys.executable, '-m', 'restormer_arch', 'test', '-opt', str(path)], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result, tmp_path / 'results' / yaml.safe_load(path.read_text())['name']


@pytest.mark.slow
def test_basicsr_test_shows_a_bar_per_dataset_and_prints_the_table_last(tmp_path):
    result, results = run_basicsr_test(tmp_path)
    assert bar_counts(result.stderr) == {name: (count, count) for name, count in SETS.items()}
    table = (results / 'metrics.md').read_text()
    assert result.stdout.rstrip().endswith(table.rstrip())  # the complete table, once, at the very end
    assert all(f'| {name} | {count} |' in table for name, count in SETS.items())


@pytest.mark.slow
def test_val_pbar_false_hides_the_bar(tmp_path):
    result, results = run_basicsr_test(tmp_path, pbar=False)
    assert bar_counts(result.stderr) == {}
    assert result.stdout.rstrip().endswith((results / 'metrics.md').read_text().rstrip())


@pytest.mark.parametrize('pbar, shown', [(None, False), (True, True), (False, False)])
def test_training_validation_bar_only_when_enabled(tmp_path, capfd, pbar, shown):
    write_pairs(tmp_path / 'data', ['a.png', 'b.png', 'c.png'], np.random.default_rng(1), size=(16, 24))
    opt = make_opt(tmp_path, val={} if pbar is None else {'pbar': pbar})
    model = ImageCleanModel(opt)
    dataset = Dataset_PairedImage({'name': 'val', 'phase': 'val', 'dataroot_lq': str(tmp_path / 'data/input'),
                                   'dataroot_gt': str(tmp_path / 'data/target')})
    capfd.readouterr()
    model.nondist_validation(DataLoader(dataset, batch_size=2), 5, None, save_img=False)
    counts = bar_counts(capfd.readouterr().err, phase='Validation')
    assert counts == ({'val': (3, 3)} if shown else {})

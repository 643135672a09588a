"""The option check never refuses what BasicSR runs: every option file shipped with BasicSR 1.4.2, and public fork
option files of Restormer.

The files are read where the project keeps third-party corpora, ``../shared/corpus/`` beside the checkout
(``$RESTORMER_CORPUS_DIR`` overrides the BasicSR one); they are never copied into the project. The check judges the
options, not the data: the weights a test file names are stood in by empty files, datasets are not built
(``data=False``), and ``num_gpu`` is set to 0 with ``--force_yml`` as a user without GPUs would.
"""
import os
import warnings
from pathlib import Path

import pytest
from basicsr.archs import build_network
from basicsr.losses import build_loss

from restormer_arch.errors import OptionsError
from restormer_arch.options import check_file, load_options

REPO_ROOT = Path(__file__).resolve().parents[2]


def _corpus_dir() -> Path:
    if os.environ.get('RESTORMER_CORPUS_DIR'):
        return Path(os.environ['RESTORMER_CORPUS_DIR'])
    beside = REPO_ROOT.parent / 'shared' / 'corpus' / 'basicsr-1.4.2-options'
    return beside if beside.is_dir() else Path('/work/shared/corpus/basicsr-1.4.2-options')


CORPUS = _corpus_dir()
FILES = sorted(CORPUS.glob('**/*.yml'))
FORKS = sorted((CORPUS.parent / 'forks').glob('*.yml'))


def _edvr_network_gets_ema_decay(opt):
    with pytest.raises(TypeError, match='ema_decay'):
        build_network(dict(opt['network_g']))


def _hifacegan_loss_is_not_in_basicsr(opt):
    with pytest.raises(KeyError, match='GANFeatLoss'):
        build_loss(dict(opt['train']['feature_matching_opt']))


def _rcan_test_has_no_val_section(opt):
    assert 'val' not in opt  # basicsr test reads opt['val']['save_img']: KeyError


# The files BasicSR itself cannot run, each with the demonstration of why; every other file must pass the check.
BASICSR_CANNOT_RUN = {
    'train/EDVR/train_EDVR_L_x4_SR_REDS.yml': _edvr_network_gets_ema_decay,
    'train/EDVR/train_EDVR_L_x4_SR_REDS_woTSA.yml': _edvr_network_gets_ema_decay,
    'train/HiFaceGAN/train_hifacegan.yml': _hifacegan_loss_is_not_in_basicsr,
    'test/RCAN/test_RCAN.yml': _rcan_test_has_no_val_section,
}


def _name(path: Path) -> str:
    return path.relative_to(CORPUS).as_posix()


@pytest.fixture(scope='module', autouse=True)
def _corpus_present():
    if not FILES:
        if os.environ.get('RESTORMER_REQUIRE_REFERENCE'):
            pytest.fail(f'no option files under {CORPUS} and RESTORMER_REQUIRE_REFERENCE is set')
        pytest.skip(f'BasicSR option corpus not found at {CORPUS} (set RESTORMER_CORPUS_DIR)')


def test_the_corpus_is_complete():
    assert len(FILES) == 70
    assert set(BASICSR_CANNOT_RUN) <= {_name(p) for p in FILES}


def _check(path: Path, tmp_path: Path, is_train: bool) -> dict:
    opt = load_options(str(path))
    for key, value in (opt.get('path') or {}).items():
        if key.startswith('pretrain_network') and value:  # weights the test files name: judge options, not files
            (tmp_path / value).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / value).touch()
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # keys of other models are warned about: allowed
        return check_file(str(path), is_train, force_yml=('num_gpu=0',), root_path=str(tmp_path), data=False)


@pytest.mark.slow
@pytest.mark.parametrize('path', FILES, ids=[_name(p) for p in FILES])
def test_check_refuses_only_what_basicsr_cannot_run(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    is_train = _name(path).startswith('train/')
    if _name(path) in BASICSR_CANNOT_RUN:
        with pytest.raises(OptionsError):
            _check(path, tmp_path, is_train)
        BASICSR_CANNOT_RUN[_name(path)](load_options(str(path)))
    else:
        resolved = _check(path, tmp_path, is_train)
        assert resolved['num_gpu'] == 0
        assert resolved['path']['experiments_root' if is_train else 'results_root'].startswith(str(tmp_path))


@pytest.mark.slow
@pytest.mark.parametrize('path', FORKS, ids=[p.name for p in FORKS])
def test_fork_option_files_are_not_refused(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert _check(path, tmp_path, 'train' in load_options(str(path)))['num_gpu'] == 0

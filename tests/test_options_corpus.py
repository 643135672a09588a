"""The option check never refuses what BasicSR runs: every option file shipped with BasicSR 1.4.2.

The files are read where the project keeps third-party corpora, ``../shared/corpus/basicsr-1.4.2-options`` beside the
checkout (``$RESTORMER_CORPUS_DIR`` overrides it); they are never copied into the project. The check judges the
options, not the data: the weights a test file names are stood in by empty files, dataset folders are not looked at,
and ``num_gpu`` is set to 0 with ``--force_yml`` as a user without GPUs would.
"""
import os
import warnings
from pathlib import Path

import pytest
from basicsr.archs import build_network
from basicsr.losses import build_loss

from restormer_arch.options import CommandLine, OptionsError, load_options, validate_options_file

REPO_ROOT = Path(__file__).resolve().parent.parent


def _corpus_dir() -> Path:
    if os.environ.get('RESTORMER_CORPUS_DIR'):
        return Path(os.environ['RESTORMER_CORPUS_DIR'])
    beside = REPO_ROOT.parent / 'shared' / 'corpus' / 'basicsr-1.4.2-options'
    return beside if beside.is_dir() else Path('/work/shared/corpus/basicsr-1.4.2-options')


CORPUS = _corpus_dir()
FILES = sorted(CORPUS.glob('**/*.yml'))


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


@pytest.mark.parametrize('path', FILES, ids=[_name(p) for p in FILES])
def test_check_refuses_only_what_basicsr_cannot_run(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    opt = load_options(str(path))
    for key, value in (opt.get('path') or {}).items():
        if key.startswith('pretrain_network') and value:  # weights the test files name: judge options, not files
            (tmp_path / value).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / value).touch()
    cmd = CommandLine(str(path), overrides=('num_gpu=0',), override_flags=1)
    is_train = _name(path).startswith('train/')
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # keys of other models are warned about: allowed
        if _name(path) in BASICSR_CANNOT_RUN:
            with pytest.raises(OptionsError):
                validate_options_file(str(path), is_train, cmd=cmd)
            BASICSR_CANNOT_RUN[_name(path)](opt)
        else:
            resolved = validate_options_file(str(path), is_train, cmd=cmd)
            assert resolved['num_gpu'] == 0
            assert resolved['path']['experiments_root' if is_train else 'results_root'].startswith(str(tmp_path))

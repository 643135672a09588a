"""The ``basicsr`` console command and ``python -m restormer_arch``."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from restormer_arch import __version__
from restormer_arch.cli import main

BASICSR_BIN = Path(sys.executable).parent / 'basicsr'


def _commands():
    commands = [[sys.executable, '-m', 'restormer_arch']]
    if BASICSR_BIN.exists() or shutil.which('basicsr'):
        commands.append([str(BASICSR_BIN) if BASICSR_BIN.exists() else 'basicsr'])
    return commands


@pytest.mark.slow
@pytest.mark.parametrize('command', _commands(), ids=lambda c: Path(c[-1]).name)
def test_version_and_help(command):
    version = subprocess.run(command + ['--version'], capture_output=True, text=True, timeout=120)
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f'restormer-basicsr {__version__}'
    helped = subprocess.run(command + ['--help'], capture_output=True, text=True, timeout=120)
    assert helped.returncode == 0, helped.stderr
    for word in ('train', 'test', '--version'):
        assert word in helped.stdout


def test_console_script_is_installed():
    assert BASICSR_BIN.exists() or shutil.which('basicsr'), 'pip install the package to get the basicsr command'


@pytest.mark.slow
def test_train_help_shows_basicsr_flags():
    result = subprocess.run([sys.executable, '-m', 'restormer_arch', 'train', '--help'], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    for flag in ('-opt', '--launcher', '--auto_resume', '--debug', '--force_yml'):
        assert flag in result.stdout


def test_unknown_command_fails(capsys):
    with pytest.raises(SystemExit) as exc:
        main(['trian'])
    assert exc.value.code == 2
    assert 'invalid choice' in capsys.readouterr().err

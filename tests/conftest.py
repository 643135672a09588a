"""Shared fixtures. Importing restormer_arch first applies the BasicSR compat fixes for every test module."""
import os
from pathlib import Path

import pytest
import torch

import restormer_arch  # noqa: F401

TESTS_DIR = Path(__file__).parent
REPO_ROOT = TESTS_DIR.parent
DATA_DIR = TESTS_DIR / 'data'
# The official golden outputs (5 MB) live in the project's shared reference folder beside the checkout, not in git.
REFERENCE_DIR = Path(os.environ.get('RESTORMER_REFERENCE_DIR', REPO_ROOT.parent / 'shared' / 'reference'))


def pytest_collection_modifyitems(config, items):
    """Everything under tests/e2e (real torchrun/Slurm/kill runs) is ``slow`` and ``e2e``; ``make test-fast`` skips
    ``slow`` (subprocesses, training runs), CI runs everything."""
    for item in items:
        if 'e2e' in item.path.parts:
            item.add_marker(pytest.mark.e2e)
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope='session')
def golden_cases():
    path = REFERENCE_DIR / 'restormer_golden_tiny.pt'
    if not path.is_file():
        if os.environ.get('RESTORMER_REQUIRE_REFERENCE'):
            pytest.fail(f'{path} is missing and RESTORMER_REQUIRE_REFERENCE is set')
        pytest.skip(f'official golden tensors not found at {path} (set RESTORMER_REFERENCE_DIR)')
    return torch.load(path, weights_only=True)


@pytest.fixture
def one_thread():
    """Run a test module's in-process training/validation on one thread (``pytestmark`` in those modules).

    The CI box has 2 cores shared with other jobs; OpenMP spin-waiting on an oversubscribed CPU is 10-50x slower.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _deterministic_seed():
    torch.manual_seed(0)


def run_process_group(cmd, timeout, **kwargs):
    """``subprocess.run`` in a new session whose whole process group is killed on timeout.

    torchrun's workers outlive a killed torchrun; left behind they hold CPU and pipes for the rest of the test run.
    """
    import signal
    import subprocess

    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            **kwargs)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        raise AssertionError(f'{cmd} timed out after {timeout} s:\n{stdout}\n{stderr}') from None
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)

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


@pytest.fixture(scope='session')
def golden_cases():
    path = REFERENCE_DIR / 'restormer_golden_tiny.pt'
    if not path.is_file():
        if os.environ.get('RESTORMER_REQUIRE_REFERENCE'):
            pytest.fail(f'{path} is missing and RESTORMER_REQUIRE_REFERENCE is set')
        pytest.skip(f'official golden tensors not found at {path} (set RESTORMER_REFERENCE_DIR)')
    return torch.load(path, weights_only=True)


@pytest.fixture(autouse=True)
def _deterministic_seed():
    torch.manual_seed(0)

"""Training guards: stop signals become a flag, non-finite losses are skipped and eventually stop the run."""
import os
import signal

import pytest
import torch

from restormer_arch.models.guards import NonFiniteLossError, NonFiniteLossGuard, StopSignalHandler, agree_across_ranks


def test_sigterm_sets_the_flag_and_a_second_one_is_default():
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    handler = StopSignalHandler()
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        assert handler.signum == signal.SIGTERM
        # the first signal re-armed the previous handler, so a second SIGTERM is no longer swallowed
        assert signal.getsignal(signal.SIGTERM) is not handler._handle
    finally:  # the test process keeps its own handlers
        for signum, previous_handler in previous.items():
            signal.signal(signum, previous_handler)


def test_nonfinite_guard_skips_then_stops():
    guard = NonFiniteLossGuard(max_consecutive=3)
    assert not guard.should_skip(False, 1)
    assert guard.should_skip(True, 2) and guard.should_skip(True, 3)
    assert not guard.should_skip(False, 4)  # a finite loss resets the count
    assert guard.should_skip(True, 5) and guard.should_skip(True, 6)
    with pytest.raises(NonFiniteLossError, match='3 consecutive non-finite losses up to iteration 7.*--auto_resume'):
        guard.should_skip(True, 7)
    assert guard.skipped_total == 5


def test_nonfinite_guard_validates_its_option():
    with pytest.raises(ValueError, match='max_nonfinite_steps'):
        NonFiniteLossGuard(-1)


def test_agree_without_distributed_is_identity():
    assert agree_across_ranks(True, False, device=torch.device('cpu')) == (True, False)

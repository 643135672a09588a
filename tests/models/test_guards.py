"""Training guards: stop signals become a flag, agreed on by every rank (non-finite steps: test_models.py)."""
import os
import signal

import torch

from restormer_arch.models.image_clean_model import agree_across_ranks
from restormer_arch.models.training_hooks import StopSignalHandler


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


def test_agree_without_distributed_is_identity():
    assert agree_across_ranks(True, False, device=torch.device('cpu')) == (True, False)

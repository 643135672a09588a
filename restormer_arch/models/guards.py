"""Guards that keep a long training run from being lost: non-finite losses and stop signals.

Both are checked once per iteration, *before* the backward pass, and under DDP the decision is agreed on by every rank
(one small all-reduce): a rank that skipped a step or stopped alone would leave the others waiting in a collective.
"""
import signal
import threading
from typing import Any, Optional, Tuple

import torch
import torch.distributed as dist
from basicsr.utils import get_root_logger


class NonFiniteLossError(RuntimeError):
    """Raised after ``train.max_nonfinite_steps`` consecutive non-finite losses (the last good weights are saved)."""


class StopRequested(SystemExit):
    """Raised (as a SystemExit with code 128 + signal) after a stop signal, once the training state is saved."""


class StopSignalHandler:
    """Turn SIGTERM/SIGINT into a flag checked between iterations, so the run can save a state and exit cleanly.

    A second signal of the same kind restores the default behaviour (a second Ctrl-C interrupts at once).

    Args:
        signals: The signals to catch.
    """

    def __init__(self, signals: Tuple[int, ...] = (signal.SIGTERM, signal.SIGINT)) -> None:
        self.signum: Optional[int] = None
        self._previous = {}
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be installed from the main thread
        for signum in signals:
            self._previous[signum] = signal.signal(signum, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        self.signum = signum
        signal.signal(signum, self._previous.get(signum, signal.SIG_DFL))
        get_root_logger().warning(f'Received {signal.Signals(signum).name}: saving a training state before exiting '
                                  '(send it again to stop at once).')


def agree_across_ranks(*flags: bool, device: torch.device) -> Tuple[bool, ...]:
    """Logical OR of boolean flags over all distributed ranks (identity when not distributed)."""
    if not (dist.is_available() and dist.is_initialized()):
        return tuple(bool(f) for f in flags)
    tensor = torch.tensor([float(f) for f in flags], device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return tuple(bool(v) for v in tensor.tolist())


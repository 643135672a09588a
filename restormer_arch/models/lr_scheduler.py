"""Learning-rate schedules that BasicSR 1.4.2 lacks, and the table of the schedules ImageCleanModel knows."""
import math
from typing import List, Sequence

from basicsr.models import lr_scheduler as basicsr_lr_scheduler
from torch.optim import Optimizer
from torch.optim.lr_scheduler import _LRScheduler


class CosineAnnealingRestartCyclicLR(_LRScheduler):
    """Cosine annealing in consecutive cycles, each with its own floor.

    Cycle ``i`` covers ``periods[i]`` scheduler steps and anneals from ``restart_weights[i] * base_lr`` (plus the
    floor) down to ``eta_mins[i]``::

        lr = eta_min_i + w_i * 0.5 * (base_lr - eta_min_i) * (1 + cos(pi * (e - start_i) / period_i))

    where ``e`` is the step count (``last_epoch``), ``start_i = sum(periods[:i])`` and ``i`` is the first cycle with
    ``e <= sum(periods[:i + 1])``. Restormer uses ``periods=[92000, 208000]``, ``eta_mins=[3e-4, 1e-6]``: constant 3e-4
    for 92k iterations, then a cosine decay to 1e-6. Steps past the last cycle keep the last cycle's final value.

    Args:
        optimizer: The wrapped optimizer.
        periods: Length of each cycle in scheduler steps (iterations).
        restart_weights: Multiplier of the cosine amplitude of each cycle.
        eta_mins: Final learning rate of each cycle.
        last_epoch: Index of the last step (``-1`` to start fresh).
    """

    def __init__(self, optimizer: Optimizer, periods: Sequence[int], restart_weights: Sequence[float] = (1, ),
                 eta_mins: Sequence[float] = (0, ), last_epoch: int = -1) -> None:
        if not (len(periods) == len(restart_weights) == len(eta_mins)):
            raise ValueError('CosineAnnealingRestartCyclicLR: periods, restart_weights and eta_mins need the same '
                             f'length, got {list(periods)}, {list(restart_weights)}, {list(eta_mins)}.')
        if any(p <= 0 for p in periods):
            raise ValueError(f'CosineAnnealingRestartCyclicLR: every period must be positive, got {list(periods)}.')
        self.periods = [int(p) for p in periods]
        self.restart_weights = [float(w) for w in restart_weights]
        self.eta_mins = [float(e) for e in eta_mins]
        self.cumulative_period = [sum(self.periods[:i + 1]) for i in range(len(self.periods))]
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> List[float]:
        """Closed-form learning rate of every parameter group after ``last_epoch`` scheduler steps."""
        step = self.last_epoch
        i = next((i for i, end in enumerate(self.cumulative_period) if step <= end), len(self.periods) - 1)
        progress = min(step - (self.cumulative_period[i] - self.periods[i]), self.periods[i]) / self.periods[i]
        eta_min, weight = self.eta_mins[i], self.restart_weights[i]
        return [eta_min + weight * 0.5 * (base_lr - eta_min) * (1 + math.cos(math.pi * progress))
                for base_lr in self.base_lrs]


# ``train.scheduler.type`` -> class, for ImageCleanModel (BasicSR's BaseModel knows only its first three).
SCHEDULERS = {
    'MultiStepLR': basicsr_lr_scheduler.MultiStepRestartLR,
    'MultiStepRestartLR': basicsr_lr_scheduler.MultiStepRestartLR,
    'CosineAnnealingRestartLR': basicsr_lr_scheduler.CosineAnnealingRestartLR,
    'CosineAnnealingRestartCyclicLR': CosineAnnealingRestartCyclicLR,
}

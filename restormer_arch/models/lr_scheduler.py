"""Learning-rate schedules that BasicSR 1.4.2 lacks, and the checks of a ``train.scheduler`` section."""
import difflib
import inspect
import math
import warnings
from typing import Any, Dict, List, Optional, Sequence

from torch.optim import Optimizer
from torch.optim.lr_scheduler import _LRScheduler

from restormer_arch.option_checks import OptionsWarning, note_known, unknown_choice

# BasicSR's BaseModel.setup_schedulers knows only these; ImageCleanModel has its own (image_clean_model.SCHEDULERS).
BASICSR_SCHEDULERS = ('MultiStepLR', 'MultiStepRestartLR', 'CosineAnnealingRestartLR')


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

    def _cycle(self, step: int) -> int:
        for i, end in enumerate(self.cumulative_period):
            if step <= end:
                return i
        return len(self.periods) - 1

    def lr_at(self, step: int, base_lr: float) -> float:
        """Closed-form learning rate after ``step`` scheduler steps, for one ``base_lr``."""
        i = self._cycle(step)
        start = self.cumulative_period[i] - self.periods[i]
        progress = min(step - start, self.periods[i]) / self.periods[i]
        eta_min = self.eta_mins[i]
        return eta_min + self.restart_weights[i] * 0.5 * (base_lr - eta_min) * (1 + math.cos(math.pi * progress))

    def get_lr(self) -> List[float]:
        return [self.lr_at(self.last_epoch, base_lr) for base_lr in self.base_lrs]


def _positive_ints(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and bool(value) and all(
        isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)


def _bind_arguments(cls: type, scheduler_opt: Dict[str, Any], where: str) -> List[str]:
    """Check the section's arguments against the scheduler's constructor (what BasicSR passes them to)."""
    kwargs = {k: v for k, v in scheduler_opt.items() if k != 'type'}
    try:
        inspect.signature(cls).bind(None, **kwargs)
    except TypeError as err:
        params = [p for p in inspect.signature(cls).parameters if p not in ('optimizer', 'last_epoch')]
        unknown = [k for k in kwargs if k not in params]
        if not unknown:
            return [f'{where} ({scheduler_opt["type"]}): {err}; arguments: {", ".join(params)}.']
        problems = []
        for key in unknown:
            close = difflib.get_close_matches(str(key), params, n=1, cutoff=0.6)
            hint = f'did you mean {close[0]}?' if close else f'arguments: {", ".join(params)}.'
            problems.append(f'{where}.{key}: not an argument of {scheduler_opt["type"]}; {hint}')
        return problems
    return []


def check_scheduler_options(scheduler_opt: Any, cls: type, total_iter: Optional[int], base_lr: Any,
                            where: str = 'train.scheduler') -> List[str]:
    """Problems with a ``train.scheduler`` section; warnings (``OptionsWarning``) for what runs but looks unintended.

    Periodic schedules (``periods``): ``sum(periods) < total_iter`` is an error (the scheduler would hold its last value
    for the rest of the run, or BasicSR's ``CosineAnnealingRestartLR`` stops with an error there); ``sum(periods) >
    total_iter`` is valid (the last cycle does not finish) and only noted. A cycle floor (``eta_min`` / ``eta_mins``)
    above the base learning rate makes the "annealing" raise the rate: a warning. Milestones after ``total_iter`` are
    never reached: a warning.

    Args:
        scheduler_opt: The ``train.scheduler`` section (with ``type``).
        cls: The scheduler class ``type`` names; its constructor signature judges the arguments.
        total_iter: ``train.total_iter`` when known and valid.
        base_lr: ``train.optim_g.lr`` (checked only when it is a number).
        where: Name of the section, for messages.

    Returns:
        One message per problem (empty when the section is fine).
    """
    problems = _bind_arguments(cls, scheduler_opt, where)
    if problems:
        return problems
    lr = base_lr if isinstance(base_lr, (int, float)) and not isinstance(base_lr, bool) else None
    periods = scheduler_opt.get('periods')
    if 'periods' in scheduler_opt:
        if not _positive_ints(periods):
            return [f'{where}.periods: expected a list of positive integers (iterations per cycle), got {periods!r}.']
        # Defaults count too: a one-cycle default restart_weights with two periods stops the constructor.
        params = inspect.signature(cls).parameters
        given = {k: scheduler_opt[k] if k in scheduler_opt else params[k].default
                 for k in ('periods', 'restart_weights', 'eta_mins') if k in scheduler_opt or k in params}
        lengths = {k: len(v) for k, v in given.items() if isinstance(v, (list, tuple))}
        if len(set(lengths.values())) > 1:
            return [f'{where}: {", ".join(lengths)} need the same length (one entry per cycle), got {lengths}.']
        if total_iter is not None and sum(periods) < total_iter:
            problems.append(f'{where}.periods sums to {sum(periods)} but train.total_iter is {total_iter}; make them '
                            f'equal (or longer: the last cycle then stops part-way), or iterations '
                            f'{sum(periods) + 1}-{total_iter} would stay at the last cycle\'s final rate.')
        elif total_iter is not None and sum(periods) > total_iter:
            warnings.warn(f'{where}.periods sums to {sum(periods)}, more than train.total_iter {total_iter}: the last '
                          'cycle stops part-way (fine if that is what you want).', OptionsWarning, stacklevel=2)
    floors = scheduler_opt.get('eta_mins', [scheduler_opt['eta_min']] if 'eta_min' in scheduler_opt else [])
    key = 'eta_mins' if 'eta_mins' in scheduler_opt else 'eta_min'
    for i, floor in enumerate(floors if isinstance(floors, (list, tuple)) else [floors]):
        if isinstance(floor, bool) or not isinstance(floor, (int, float)):
            problems.append(f'{where}.{key}: expected numbers (learning rates), got {floor!r}.')
        elif lr is not None and floor > lr:
            warnings.warn(f'{where}.{key}[{i}] = {floor:g} is above the base learning rate train.optim_g.lr = {lr:g}: '
                          'the learning rate rises towards the floor instead of falling; lower the floor (or raise '
                          'lr).', OptionsWarning, stacklevel=2)
    milestones = scheduler_opt.get('milestones')
    if milestones is not None:
        if not _positive_ints(milestones):
            problems.append(f'{where}.milestones: expected a list of positive integers (iterations), got '
                            f'{milestones!r}.')
        elif total_iter is not None and max(milestones) > total_iter:
            warnings.warn(f'{where}.milestones: {[m for m in milestones if m > total_iter]} come after '
                          f'train.total_iter {total_iter} and are never reached.', OptionsWarning, stacklevel=2)
    return problems


def check_scheduler_section(opt: Dict[str, Any], total_iter: Optional[int], image_clean_model: bool) -> List[str]:
    """Problems with ``train.scheduler``: its type (among those the model knows), then :func:`check_scheduler_options`.

    Args:
        opt: The whole option dict (``train`` is a mapping).
        total_iter: ``train.total_iter`` when it is valid, else ``None``.
        image_clean_model: The model is ImageCleanModel (or a subclass), which knows more schedulers than BasicSR's
            ``BaseModel``.

    Returns:
        One message per problem (empty when fine).
    """
    from restormer_arch.models.image_clean_model import SCHEDULERS  # it imports this module

    problems: List[str] = []
    train_opt = opt['train']
    scheduler = train_opt.get('scheduler')
    if not isinstance(scheduler, dict):
        problems.append('train.scheduler: missing (e.g. type: CosineAnnealingRestartCyclicLR).')
        return problems
    name = scheduler.get('type')
    usable = list(SCHEDULERS) if image_clean_model else list(BASICSR_SCHEDULERS)
    if name not in usable:
        problems.append(unknown_choice('scheduler type', name, usable, 'train.scheduler.type')
                        + ('' if name not in SCHEDULERS else f' ({name} is only known to ImageCleanModel)'))
        return problems
    note_known('train.scheduler', inspect.signature(SCHEDULERS[name]).parameters)
    base_lr = (train_opt.get('optim_g') or {}).get('lr') if isinstance(train_opt.get('optim_g'), dict) else None
    problems.extend(check_scheduler_options(scheduler, SCHEDULERS[name], total_iter, base_lr))
    return problems

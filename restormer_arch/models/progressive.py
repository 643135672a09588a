"""Restormer's progressive patch training and mixup, applied to the batch a BasicSR loader delivers."""
import bisect
import difflib
import itertools
import random
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

PROGRESSIVE_KEYS = ('iters', 'mini_batch_sizes', 'gt_sizes')
PATCH_MULTIPLE = 8  # Restormer down-samples three times, so training patches must be multiples of 8.
MIXUP_KEYS = ('mixup', 'mixup_beta', 'use_identity')
DEFAULT_MIXUP_BETA = 1.2


def _int_list(value: Any, where: str, problems: List[str]) -> Optional[List[int]]:
    if not isinstance(value, (list, tuple)) or not value or not all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value):
        problems.append(f'{where}: expected a list of positive integers (one per stage, e.g. [92000, 208000]), got '
                        f'{value!r}.')
        return None
    return list(value)


@dataclass(frozen=True)
class Stage:
    """One stage of the progressive schedule.

    Args:
        index: Position in the schedule (0-based).
        last_iter: Last iteration (inclusive) of the stage; iterations past the schedule stay in the last stage.
        mini_batch_size: Samples per device used in this stage.
        patch_size: Ground-truth patch side used in this stage.
    """

    index: int
    last_iter: int
    mini_batch_size: int
    patch_size: int


class ProgressiveSchedule:
    """Progressive training: larger patches and smaller batches as training goes on.

    The loader always delivers ``batch_size_per_gpu`` patches of ``gt_size`` per device. At ``current_iter`` the stage
    is the first ``j`` with ``current_iter <= cumsum(iters)[j]``; its batch is a random subset of
    ``mini_batch_sizes[j]`` samples (per device) and its patches a crop of side ``gt_sizes[j]`` taken at one random
    offset shared by the whole batch.

    Args:
        iters: Iterations of each stage.
        mini_batch_sizes: Per-device batch of each stage.
        gt_sizes: Ground-truth patch side of each stage.
    """

    def __init__(self, iters: Sequence[int], mini_batch_sizes: Sequence[int], gt_sizes: Sequence[int]) -> None:
        if not (len(iters) == len(mini_batch_sizes) == len(gt_sizes)) or not iters:
            raise ValueError('progressive training: datasets.train.iters, mini_batch_sizes and gt_sizes need the same '
                             f'non-zero length, got {list(iters)}, {list(mini_batch_sizes)}, {list(gt_sizes)}.')
        ends = list(itertools.accumulate(int(i) for i in iters))
        self.stages = [Stage(j, end, int(b), int(p)) for j, (end, b, p) in enumerate(zip(ends, mini_batch_sizes,
                                                                                         gt_sizes))]
        self._ends = ends

    @classmethod
    def from_options(cls, dataset_opt: Optional[Dict[str, Any]]) -> Optional['ProgressiveSchedule']:
        """Build the schedule from ``datasets.train``; ``None`` when it has no ``iters`` (fixed patches)."""
        if not dataset_opt or all(dataset_opt.get(key) is None for key in PROGRESSIVE_KEYS):
            return None
        problems = cls.check_options(dataset_opt)
        if problems:
            raise ValueError('progressive training: ' + ' '.join(problems))
        return cls(dataset_opt['iters'], dataset_opt['mini_batch_sizes'], dataset_opt['gt_sizes'])

    @staticmethod
    def check_options(dataset_opt: Dict[str, Any], total_iter: Optional[int] = None,
                      where: str = 'datasets.train') -> List[str]:
        """Problems with the progressive keys (and ``gt_size``) of a training dataset; empty when fine.

        ``sum(iters)`` may exceed ``total_iter`` (the run stops inside the last stage) but not fall short of it: the
        iterations past the schedule would all train in its last stage, which nobody asked for.

        Args:
            dataset_opt: The ``datasets.train`` section.
            total_iter: ``train.total_iter`` when known and valid.
            where: Name of the section, for messages.

        Returns:
            One message per problem.
        """
        problems: List[str] = []
        gt_size = dataset_opt.get('gt_size')
        if gt_size is not None and (not isinstance(gt_size, int) or isinstance(gt_size, bool)):
            problems.append(f'{where}.gt_size: expected an integer (the patch side, a multiple of {PATCH_MULTIPLE}), '
                            f'got {gt_size!r}.')
            gt_size = None
        elif isinstance(gt_size, int) and gt_size % PATCH_MULTIPLE:
            rounded = gt_size // PATCH_MULTIPLE * PATCH_MULTIPLE or PATCH_MULTIPLE
            problems.append(f'{where}.gt_size: {gt_size!r} must be a multiple of {PATCH_MULTIPLE} (Restormer halves '
                            f'the patch three times); e.g. {rounded}.')
        present = [k for k in PROGRESSIVE_KEYS if dataset_opt.get(k) is not None]
        if not present:
            return problems
        if len(present) != len(PROGRESSIVE_KEYS):
            missing = [k for k in PROGRESSIVE_KEYS if k not in present]
            problems.append(f'{where}: progressive training needs {", ".join(PROGRESSIVE_KEYS)} together; '
                            f'{", ".join(missing)} missing.')
            return problems
        lists = {k: _int_list(dataset_opt[k], f'{where}.{k}', problems) for k in PROGRESSIVE_KEYS}
        if any(v is None for v in lists.values()):
            return problems
        iters, batches, sizes = lists['iters'], lists['mini_batch_sizes'], lists['gt_sizes']
        if not len(iters) == len(batches) == len(sizes):
            problems.append(f'{where}: iters ({len(iters)}), mini_batch_sizes ({len(batches)}) and gt_sizes '
                            f'({len(sizes)}) need one entry per stage (the same length).')
        if total_iter is not None and sum(iters) < total_iter:
            problems.append(f'{where}.iters sums to {sum(iters)} but train.total_iter is {total_iter}; make them '
                            f'equal (iterations {sum(iters) + 1}-{total_iter} would all stay in the last stage).')
        bad = [s for s in sizes if s % PATCH_MULTIPLE]
        if bad:
            problems.append(f'{where}.gt_sizes: {bad} are not multiples of {PATCH_MULTIPLE} (Restormer halves the '
                            f'patch three times); round them to multiples of {PATCH_MULTIPLE}.')
        if isinstance(gt_size, int) and max(sizes) > gt_size:
            problems.append(f'{where}.gt_sizes: {max(sizes)} exceeds gt_size {gt_size} (the loader\'s patch, '
                            'from which every stage crops); raise gt_size or lower gt_sizes.')
        batch = dataset_opt.get('batch_size_per_gpu')
        if isinstance(batch, int) and max(batches) > batch:
            problems.append(f'{where}.mini_batch_sizes: {max(batches)} exceeds batch_size_per_gpu {batch} (the '
                            'loader\'s batch, from which every stage samples); raise batch_size_per_gpu.')
        return problems

    def stage(self, current_iter: int) -> Stage:
        """The stage of a (1-based) iteration."""
        return self.stages[min(bisect.bisect_left(self._ends, current_iter), len(self.stages) - 1)]

    def apply(self, lq: Tensor, gt: Tensor, current_iter: int, devices: int = 1,
              scale: int = 1) -> Tuple[Tensor, Tensor, Stage]:
        """Cut the stage's batch and patch out of the loader batch.

        Args:
            lq: ``(B, C, h, w)`` low-quality patches as delivered to this process.
            gt: ``(B, C', h*scale, w*scale)`` ground-truth patches.
            current_iter: The 1-based training iteration.
            devices: Devices this process feeds (``num_gpu`` under DataParallel, else 1); stage batches are per device.
            scale: Ground-truth / low-quality size ratio (1 for restoration).

        Returns:
            ``(lq, gt, stage)`` with at most ``mini_batch_size * devices`` samples and ``patch_size`` GT patches.
        """
        stage = self.stage(current_iter)
        batch = stage.mini_batch_size * devices
        if batch < lq.shape[0]:
            keep = torch.tensor(sorted(random.sample(range(lq.shape[0]), k=batch)), device=lq.device)
            lq, gt = lq.index_select(0, keep), gt.index_select(0, keep)
        lq_patch = stage.patch_size // scale
        if lq_patch < min(lq.shape[-2:]):
            # One offset for the whole batch (the samples are already random crops).
            top = int((lq.shape[-2] - lq_patch) * random.random())
            left = int((lq.shape[-1] - lq_patch) * random.random())
            lq = lq[..., top:top + lq_patch, left:left + lq_patch]
            gt = gt[..., top * scale:(top + lq_patch) * scale, left * scale:(left + lq_patch) * scale]
        return lq, gt, stage


class Mixup:
    """Mixup of a batch with a random permutation of itself, identical for ``lq`` and ``gt``.

    ``lam ~ Beta(beta, beta)`` is drawn once per batch: ``x = lam * x + (1 - lam) * x[perm]``. With
    ``use_identity`` half of the batches (chosen at random) pass through unchanged.

    Args:
        beta: Parameter of the symmetric Beta distribution.
        use_identity: Leave a random half of the batches untouched.
    """

    def __init__(self, beta: float = DEFAULT_MIXUP_BETA, use_identity: bool = False) -> None:
        if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not beta > 0:
            raise ValueError(f'train.mixing_augs.mixup_beta must be positive, got {beta!r}.')
        self.distribution = torch.distributions.Beta(torch.tensor([float(beta)]), torch.tensor([float(beta)]))
        self.use_identity = use_identity

    @classmethod
    def from_options(cls, train_opt: Dict[str, Any]) -> Optional['Mixup']:
        """``train.mixing_augs`` -> a :class:`Mixup`, or ``None`` when ``mixup`` is off or absent."""
        problems = cls.check_options(train_opt.get('mixing_augs'))
        if problems:
            raise ValueError(' '.join(problems))
        augs = train_opt.get('mixing_augs') or {}
        if not augs.get('mixup', False):
            return None
        return cls(augs.get('mixup_beta', DEFAULT_MIXUP_BETA), augs.get('use_identity', False))

    @staticmethod
    def check_options(augs: Any, where: str = 'train.mixing_augs') -> List[str]:
        """Problems with ``train.mixing_augs`` (its keys, their types and ranges); empty when fine.

        Args:
            augs: The ``train.mixing_augs`` section (``None`` when absent).
            where: Name of the section, for messages.

        Returns:
            One message per problem. A misspelled key is one: BasicSR would train with the default silently.
        """
        if augs is None:
            return []
        if not isinstance(augs, dict):
            return [f'{where}: expected a mapping {{mixup, mixup_beta, use_identity}}, got {augs!r}.']
        problems = []
        for key in augs:
            if key not in MIXUP_KEYS:
                close = difflib.get_close_matches(str(key), MIXUP_KEYS, n=1, cutoff=0.6)
                hint = f'did you mean {close[0]}?' if close else f'known: {", ".join(MIXUP_KEYS)}.'
                problems.append(f'{where}.{key}: unknown option; {hint} (it would be ignored and the default used.)')
        for key in ('mixup', 'use_identity'):
            if key in augs and not isinstance(augs[key], bool):
                problems.append(f'{where}.{key}: expected true or false, got {augs[key]!r}.')
        beta = augs.get('mixup_beta', DEFAULT_MIXUP_BETA)
        if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not beta > 0:
            problems.append(f'{where}.mixup_beta: expected a positive number (the Beta distribution\'s parameter, '
                            f'e.g. {DEFAULT_MIXUP_BETA}), got {beta!r}.')
        return problems

    def __call__(self, lq: Tensor, gt: Tensor) -> Tuple[Tensor, Tensor]:
        """Mix the batch (or return it unchanged for an identity draw)."""
        if self.use_identity and random.randint(0, 1) == 1:
            return lq, gt
        lam = self.distribution.sample().item()
        perm = torch.randperm(lq.shape[0]).to(lq.device)
        return lam * lq + (1 - lam) * lq[perm], lam * gt + (1 - lam) * gt[perm]


def stage_table(schedule: ProgressiveSchedule) -> List[str]:
    """Human-readable lines describing a schedule (for the training log)."""
    start = 1
    lines = []
    for stage in schedule.stages:
        lines.append(f'stage {stage.index}: iters {start}-{stage.last_iter}, batch {stage.mini_batch_size}/device, '
                     f'patch {stage.patch_size}')
        start = stage.last_iter + 1
    return lines

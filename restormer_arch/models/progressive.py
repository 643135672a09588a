"""Restormer's progressive patch training and mixup, applied to the batch a BasicSR loader delivers."""
import bisect
import itertools
import random
from dataclasses import dataclass
from typing import Any, Dict, Optional, Sequence, Tuple

import torch
from torch import Tensor

PROGRESSIVE_KEYS = ('iters', 'mini_batch_sizes', 'gt_sizes')
DEFAULT_MIXUP_BETA = 1.2


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
        lists = {'iters': iters, 'mini_batch_sizes': mini_batch_sizes, 'gt_sizes': gt_sizes}
        for key, values in lists.items():
            if not isinstance(values, (list, tuple)) or not values or not all(
                    isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values):
                raise ValueError(f'{key}: expected a list of positive integers (one per stage), got {values!r}.')
        if len({len(v) for v in lists.values()}) > 1:
            raise ValueError(f'iters ({len(iters)}), mini_batch_sizes ({len(mini_batch_sizes)}) and gt_sizes '
                             f'({len(gt_sizes)}) need one entry per stage (the same length).')
        self._ends = list(itertools.accumulate(iters))
        self.stages = [Stage(*stage) for stage in zip(itertools.count(), self._ends, mini_batch_sizes, gt_sizes)]

    @classmethod
    def from_options(cls, dataset_opt: Optional[Dict[str, Any]]) -> Optional['ProgressiveSchedule']:
        """Build the schedule from ``datasets.train``; ``None`` when it has none of ``iters``, ``mini_batch_sizes``,
        ``gt_sizes`` (fixed patches). A missing one of the three is refused by the constructor (not a list)."""
        if not dataset_opt or all(dataset_opt.get(key) is None for key in PROGRESSIVE_KEYS):
            return None
        return cls(*(dataset_opt.get(key) for key in PROGRESSIVE_KEYS))

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
        if not float(beta) > 0:  # torch's Beta would say it in terms of its concentrations
            raise ValueError(f'mixup_beta must be positive (e.g. {DEFAULT_MIXUP_BETA}), got {beta!r}.')
        self.distribution = torch.distributions.Beta(torch.tensor([float(beta)]), torch.tensor([float(beta)]))
        self.use_identity = use_identity

    @classmethod
    def from_options(cls, train_opt: Dict[str, Any]) -> Optional['Mixup']:
        """``train.mixing_augs`` -> a :class:`Mixup`, or ``None`` when ``mixup`` is off or absent."""
        augs = train_opt.get('mixing_augs') or {}
        if not augs.get('mixup', False):
            return None
        return cls(augs.get('mixup_beta', DEFAULT_MIXUP_BETA), augs.get('use_identity', False))

    def __call__(self, lq: Tensor, gt: Tensor) -> Tuple[Tensor, Tensor]:
        """Mix the batch (or return it unchanged for an identity draw)."""
        if self.use_identity and random.randint(0, 1) == 1:
            return lq, gt
        lam = self.distribution.sample().item()
        perm = torch.randperm(lq.shape[0]).to(lq.device)
        return lam * lq + (1 - lam) * lq[perm], lam * gt + (1 - lam) * gt[perm]

"""What ``basicsr train`` adds to BasicSR's training pipeline, inside :func:`applied` and only while it runs
(compatibility fixes live in :mod:`restormer_arch.compat`; checkpoint and training-state reading and writing, and the
checkpoint methods every model gets, in :mod:`restormer_arch.checkpoint`).

:class:`TrainingRun` is the explicit state of that one process: the resume state and its data position, the train
loader and sampler, the model. A library user who builds models directly gets none of it. See
``docs/fault_tolerance.md``.
"""
import functools
import math
import os
import random
import signal
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from os import path as osp
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np
import torch
from basicsr.utils import get_root_logger

from ..checkpoint import CheckpointHooks, load_resume_state

__all__ = ['RunError', 'TrainingRun', 'ResumedSampler', 'StopSignalHandler', 'applied']


class RunError(Exception):
    """A problem with the user's run (options, files, disk) that ``basicsr train`` reports in one line, no traceback."""


# ---------------------------------------------------------------------------------------------------- the run
def _remaining_indices(position: Dict[str, int], world_size: int, rank: int) -> List[int]:
    """This rank's share of the images an interrupted epoch had not reached (dataset indices, in order), from the
    ``data`` entry of a training state (:meth:`TrainingRun.position`).

    The epoch's global order is the one BasicSR's ``EnlargedSampler`` draws (a permutation of the padded dataset
    seeded by the epoch; rank ``r`` of ``W`` takes positions ``r, r + W, ...``), so the images a run consumed are
    exactly the order's first ``position['consumed']`` positions. The rest are dealt out in the same way to this run's
    ``world_size`` ranks, each the same number (at most ``world_size - 1`` left over), so a resume on another number of
    processes also sees each remaining image once.
    """
    order = torch.randperm(position['total_size'], generator=torch.Generator().manual_seed(position['epoch']))
    order = (order[position['consumed']:] % position['samples']).tolist()
    return order[rank::world_size][:len(order) // world_size]


class ResumedSampler(torch.utils.data.Sampler):
    """BasicSR's training sampler, except that the epoch a resumed state was saved in continues where it stopped."""

    def __init__(self, sampler: Any, position: Dict[str, int]) -> None:
        self.sampler, self.position = sampler, position

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[int]:
        position, self.position = self.position, None  # only the first epoch after the resume
        if position is None or position['epoch'] != self.sampler.epoch:
            return iter(self.sampler)
        return iter(_remaining_indices(position, self.sampler.num_replicas, self.sampler.rank))


@dataclass
class TrainingRun:
    """The state of one ``basicsr train`` process that our additions need (instead of module globals).

    Args:
        auto_resume: ``--auto_resume`` was given.
    """

    auto_resume: bool = False
    train_sampler: Any = None
    train_loader: Any = None
    resumed: Optional[Dict[str, int]] = None  # the resumed state's data position, with its 'iter'
    first_full_epoch: Tuple[int, int] = (0, 0)  # (epoch, iterations done) where this process's first whole epoch starts

    @property
    def epoch(self) -> int:
        """The epoch BasicSR's loop is in (its sampler records it in ``set_epoch``; 0 before training)."""
        return int(getattr(self.train_sampler, 'epoch', 0))

    def attach(self, model: Any) -> Any:
        """Hand the run to a freshly built model.

        A model with a ``stop_handler`` (ImageCleanModel) gets the stop-signal handler (``train.save_on_signal``,
        default on): SIGTERM/SIGINT save a state at the next iteration instead of losing the work since the last
        checkpoint. Only a ``basicsr train`` process does this, never a library user's or a test runner's. BasicSR's
        own models get :func:`_dry_test` instead.

        Raises:
            RunError: The model cannot run its network on this data (see :func:`_dry_test`).
        """
        model.run = self
        if hasattr(model, 'stop_handler'):
            if model.is_train and model.opt['train'].get('save_on_signal', True):
                model.stop_handler = StopSignalHandler()
        elif model.is_train and self.train_loader is not None:
            _dry_test(model, self.train_loader.dataset)
        return model

    def position(self, epoch: int, iteration: int) -> Optional[Dict[str, int]]:
        """The data position after ``iteration`` (stored in training states, so that a resume continues the epoch).

        Returns:
            ``{epoch, consumed, total_size, samples, world_size, batch_size}``: ``consumed`` of the epoch's
            ``total_size`` global positions are used (:func:`_remaining_indices`); ``batch_size`` per process. None
            before the training loader exists.
        """
        sampler, loader = self.train_sampler, self.train_loader
        if loader is None:
            return None
        step = loader.batch_size * sampler.num_replicas
        if self.resumed and epoch == self.resumed['epoch']:
            consumed = self.resumed['consumed'] + (iteration - self.resumed['iter']) * step
            total = self.resumed['total_size']
        else:
            epoch_start = self.first_full_epoch[1] + (epoch - self.first_full_epoch[0]) * len(loader)
            consumed, total = (iteration - epoch_start) * step, sampler.total_size
        return {'epoch': epoch, 'consumed': consumed, 'total_size': total, 'samples': len(loader.dataset),
                'world_size': sampler.num_replicas, 'batch_size': loader.batch_size}

    def _resume_data(self, state: Optional[Dict[str, Any]], dataset: Any, logger: Any) -> Optional[Dict[str, int]]:
        """The data position of the resumed ``state``, which the training sampler continues from; None without a state
        or a usable position (then the interrupted epoch starts again from its first batch, as in BasicSR). A changed
        world size or batch is reported."""
        if state is None:
            return None
        data = state.get('data')
        self.first_full_epoch = (state['epoch'], state['iter'])
        if not data or data['samples'] != len(dataset):
            logger.warning(f'Resume: the state records no data position for this dataset ({len(dataset)} images); '
                           f'epoch {state["epoch"]} starts again from its first batch.')
            return None
        world_size, batch = self.train_sampler.num_replicas, self.train_loader.batch_size
        if (data['world_size'], data['batch_size']) != (world_size, batch):
            logger.warning(f'Resume: the state was saved by {data["world_size"]} process(es) x batch '
                           f'{data["batch_size"]}, this run has {world_size} x {batch} (the schedule is per '
                           'iteration); the interrupted epoch continues with the images it had not used.')
        self.resumed = dict(data, iter=state['iter'])
        left = len(_remaining_indices(data, world_size, self.train_sampler.rank)) // batch
        self.first_full_epoch = (state['epoch'] + 1, state['iter'] + left)
        return data


@contextmanager
def preserved_rng() -> Iterator[None]:
    """Restore Python's, NumPy's and torch's random generators on exit: a check must not change the run's data."""
    states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])


def _dry_test(model: Any, dataset: Any) -> None:
    """Run a BasicSR model's ``test()`` on the first patch of its training dataset.

    BasicSR's models assume things of their network (SwinIRModel reads ``network_g.window_size``). Swapping in another
    network breaks them at the first validation, maybe hours later; this says which model, which network and what
    failed (:class:`RunError`), before training. (Whether the network's output has the target's shape, the option
    check has already seen.)
    """
    with preserved_rng():
        sample = dataset[0]
    if not (isinstance(sample, dict) and torch.is_tensor(sample.get('lq')) and torch.is_tensor(sample.get('gt'))):
        return  # e.g. Real-ESRGAN data, whose lq is synthesised inside the model
    model.lq = sample['lq'][None].to(model.device)
    try:
        with preserved_rng():
            model.test()
    except Exception as err:
        raise RunError(f'model_type {model.opt["model_type"]} cannot run network_g {model.opt["network_g"]["type"]}: '
                       f'its test() fails on one training patch ({type(err).__name__}: {err}). Use a model type made '
                       'for this network (e.g. ImageCleanModel for Restormer).') from None
    finally:
        for attr in ('lq', 'output'):
            model.__dict__.pop(attr, None)


# ---------------------------------------------------------------------------------------------------- the pipeline
class StopSignalHandler:
    """Turn SIGTERM/SIGINT into a flag checked between iterations, so the run can save a state and exit cleanly.

    A second signal of the same kind restores the default behaviour (a second Ctrl-C interrupts at once).
    """

    def __init__(self) -> None:
        self.signum: Optional[int] = None
        self._previous = {}
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be installed from the main thread
        for signum in (signal.SIGTERM, signal.SIGINT):
            self._previous[signum] = signal.signal(signum, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        self.signum = signum
        signal.signal(signum, self._previous.get(signum, signal.SIG_DFL))
        get_root_logger().warning(f'Received {signal.Signals(signum).name}: saving a training state before exiting '
                                  '(send it again to stop at once).')


def _ignore_stop_signals(inner: Optional[Callable[[int], None]], worker_id: int) -> None:
    """``worker_init_fn`` of data-loading workers: they ignore SIGTERM/SIGINT, then run BasicSR's own (``inner``).

    Slurm, systemd and ``kill -- -PGID`` signal the whole process group. A worker killed by it makes the main process
    fail with "DataLoader worker ... is killed by signal" before it can save; ignoring the signal lets the main process
    save a state and shut the workers down itself (they also exit when it dies).
    """
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if inner is not None:
        inner(worker_id)


def _exact_epoch_count(run: TrainingRun, planned: int, total_iters: int, logger: Any) -> int:
    # BasicSR computes iterations per epoch as ceil(N * ratio / (batch * world)), but with drop_last each rank gets
    # floor(ceil(N * ratio / world) / batch) batches, and after a resume in mid-epoch or on another world size the
    # epochs start elsewhere. Its count then runs out of epochs and training ends early without a word (e.g. at
    # iteration 22 of 30). Count from the real loader (at least one batch: the option check refuses fewer) and the
    # resumed position.
    per_epoch = len(run.train_loader)
    first_epoch, done = run.first_full_epoch
    exact = first_epoch + math.ceil(max(0, total_iters - done) / per_epoch)
    if exact != planned:
        logger.info(f'Iterations per epoch per process: {per_epoch}; total epochs corrected from {planned} to '
                    f'{exact} so that training reaches {total_iters} iterations.')
    return exact


@contextmanager
def applied(run: TrainingRun) -> Iterator[TrainingRun]:
    """Apply our additions to BasicSR's training pipeline while the block runs (``basicsr train`` wraps the pipeline).

    BasicSR's ``BaseModel``, ``basicsr.train`` and ``mkdir_and_rename`` are put back afterwards, so a process that
    runs the command as a function (a test, a notebook) keeps plain BasicSR outside it.

    Args:
        run: The run's explicit state; the pipeline fills in the sampler, loader and model as it creates them.

    Yields:
        ``run``.
    """
    import basicsr.train as train
    import basicsr.utils.misc as misc
    from basicsr.models.base_model import BaseModel

    names = ('save_network', 'save_training_state', 'load_network', 'resume_training', '_replay_schedule')
    hooks = {(BaseModel, name): getattr(CheckpointHooks, name) for name in names}
    pipeline = _pipeline_hooks(run, dict(vars(train)))
    hooks.update({(train, name): hook for name, hook in pipeline.items()})
    hooks[misc, 'mkdir_and_rename'] = pipeline['mkdir_and_rename']  # what BasicSR's make_exp_dirs calls
    saved = {(owner, name): vars(owner).get(name) for owner, name in hooks}  # None: BaseModel has no such method
    try:
        for (owner, name), hook in hooks.items():
            setattr(owner, name, hook)
        yield run
    finally:
        for (owner, name), value in saved.items():
            if value is None:
                delattr(owner, name)
            else:
                setattr(owner, name, value)


def _pipeline_hooks(run: TrainingRun, originals: Dict[str, Any]) -> Dict[str, Callable[..., Any]]:
    # `originals`: a copy of basicsr.train's namespace before the hooks, so each hook calls BasicSR's own function.
    resumed = {}

    def load_state(opt: Dict[str, Any]) -> Optional[Dict[str, Any]]:
        state = resumed['state'] = load_resume_state(opt)
        root = opt['path']['experiments_root']
        if state is None and run.auto_resume and osp.isdir(root) and opt['rank'] == 0:
            print(f'auto_resume: no usable training state in {root}; starting from iteration 0 in the same folder.',
                  flush=True)
        return state

    def create_loaders(opt: Dict[str, Any], logger: Any) -> Any:
        # A dataset that cannot be built was refused (one line, exit 2) by the option check, which builds them all.
        train_loader, sampler, val_loaders, total_epochs, total_iters = originals['create_train_val_dataloader'](
            opt, logger)
        run.train_loader, run.train_sampler = train_loader, sampler
        if train_loader is not None:
            train_loader.sampler.position = run._resume_data(resumed.get('state'), train_loader.dataset, logger)
            total_epochs = _exact_epoch_count(run, total_epochs, total_iters, logger)
        return train_loader, sampler, val_loaders, total_epochs, total_iters

    def build_dataloader(dataset: Any, dataset_opt: Dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        if kwargs.get('sampler') is not None:
            kwargs['sampler'] = ResumedSampler(kwargs['sampler'], None)
        loader = originals['build_dataloader'](dataset, dataset_opt, *args, **kwargs)
        if loader.num_workers > 0:
            loader.worker_init_fn = functools.partial(_ignore_stop_signals, loader.worker_init_fn)
        return loader

    def mkdir_and_rename(path: str) -> None:
        # Reached with --auto_resume only when no usable state exists: start over in the run's own folders (the
        # experiment's, through BasicSR's make_exp_dirs, and tb_logger's) instead of archiving them.
        if run.auto_resume:
            os.makedirs(path, exist_ok=True)
        else:
            originals['mkdir_and_rename'](path)

    return {'load_resume_state': load_state, 'create_train_val_dataloader': create_loaders,
            'build_dataloader': build_dataloader, 'build_model': lambda opt: run.attach(originals['build_model'](opt)),
            'mkdir_and_rename': mkdir_and_rename}

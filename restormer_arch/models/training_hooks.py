"""Behaviour we add to BasicSR's training (not compatibility fixes: those live in :mod:`restormer_arch.compat`).

It reaches a run in two ways:

- :class:`CheckpointHooks` is a base class of :class:`~restormer_arch.models.ImageCleanModel`: atomic saves that fail
  loudly, checkpoints of every layout ``basicsr restore`` accepts for ``path.pretrain_network_g`` (with a load report
  and a refusal when little or nothing matches), and a resume on which the option file's schedule wins.
- ``basicsr train`` runs BasicSR's pipeline inside :func:`applied`, with a :class:`TrainingRun` (the explicit state
  of that one process) and only while the pipeline runs. BasicSR's own models (``SRModel``, the GAN models ...) get
  the same checkpoint methods, and the pipeline changes: ``--auto_resume`` finds states under the run's root and skips
  torn ones, and without a usable state starts over in the same folder instead of archiving it; data-loading workers
  leave SIGTERM/SIGINT to the main process (which saves a state); the epoch count comes from the real loader; the
  model built by the pipeline is handed the run (:meth:`TrainingRun.attach`), so ImageCleanModel saves on stop
  signals with the right epoch, and every model is tried on the first training patch before training.

A library user who builds models directly gets only :class:`CheckpointHooks`; nothing here touches their process.
See ``docs/fault_tolerance.md``.
"""
import json
import math
import os
import random
import signal
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from os import path as osp
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np
import torch
from basicsr.utils import get_root_logger

from ..checkpoint import CheckpointError, atomic_save, compare_state_dicts, find_state_dict, load_file, param_entry
from ..compat import map_location_for

__all__ = ['RunError', 'CheckpointLoadError', 'TrainingRun', 'CheckpointHooks', 'applied', 'load_resume_state',
           'find_resume_states', 'MIN_LOADED_FRACTION']

# A non-strict pretrained load must fill at least this share of the network's tensors; below it the run would be
# mostly random weights under a log line that says "Loading".
MIN_LOADED_FRACTION = 0.5
# Options stored in each training state so that a resume can list what the option file changed.
RECORDED_OPTIONS = ('network_g', 'train.total_iter', 'train.warmup_iter', 'train.scheduler', 'train.optim_g')
# Scheduler state entries that are progress, not configuration (they are recomputed on resume).
SCHEDULER_PROGRESS = {'last_epoch', '_step_count', '_last_lr', '_get_lr_called_within_step', '_is_initial', 'verbose'}


class RunError(Exception):
    """A problem with the user's run (options, files, disk) that ``basicsr train`` reports in one line, no traceback."""


class CheckpointLoadError(RunError, ValueError):
    """A checkpoint named by the options cannot be used for this network; the message says what differs."""


class MissingCheckpointError(RunError, FileNotFoundError):
    """A checkpoint or training state named by the options does not exist."""


class DatasetError(RunError, ValueError):
    """A dataset cannot be built from the user's options and files (bad image, pairing, option); message as raised."""


class MissingDataError(RunError, FileNotFoundError):
    """A folder, LMDB or file named by a dataset's options does not exist; message as raised."""


def _as_run_error(err: Exception) -> Exception:
    # The datasets check the user's files and options up front and raise ValueError/FileNotFoundError with a message
    # that names the file or key; keep the type (callers may catch it) and add RunError so basicsr train prints one
    # line instead of a traceback.
    if isinstance(err, FileNotFoundError):
        return MissingDataError(str(err))
    if isinstance(err, ValueError) and not isinstance(err, RunError):
        return DatasetError(str(err))
    return err


class NotATrainingStateError(RunError, ValueError):
    """``path.resume_state`` names a file that is not a training state (e.g. a network checkpoint)."""


# ---------------------------------------------------------------------------------------------------- the run
@dataclass
class TrainingRun:
    """The state of one ``basicsr train`` process that our additions need (instead of module globals).

    Args:
        auto_resume: ``--auto_resume`` was given.
    """

    auto_resume: bool = False
    train_sampler: Any = None
    train_loader: Any = None
    model: Any = None
    notes: List[str] = field(default_factory=list)

    @property
    def epoch(self) -> int:
        """The epoch BasicSR's loop is in (its sampler records it in ``set_epoch``; 0 before training)."""
        return int(getattr(self.train_sampler, 'epoch', 0))

    def attach(self, model: Any) -> Any:
        """Hand the run to a freshly built model; a model that does not know runs gets :func:`dry_test`.

        Raises:
            RunError: The model cannot run its network on this data (see :func:`dry_test`).
        """
        self.model = model
        if hasattr(model, 'attach_run'):
            model.attach_run(self)
        elif model.is_train and self.train_loader is not None:
            dry_test(model, self.train_loader.dataset)
        return model


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


def first_pair(dataset: Any) -> Optional[Tuple[torch.Tensor, torch.Tensor]]:
    """``(lq, gt)`` of the dataset's first sample, each ``(1, C, H, W)``; None when it has no such pair."""
    if len(dataset) == 0:
        return None
    with preserved_rng():
        sample = dataset[0]
    if not (isinstance(sample, dict) and torch.is_tensor(sample.get('lq')) and torch.is_tensor(sample.get('gt'))):
        return None  # e.g. Real-ESRGAN data, whose lq is synthesised inside the model
    return sample['lq'][None], sample['gt'][None]


def dry_test(model: Any, dataset: Any) -> None:
    """Run a BasicSR model's ``test()`` on its first training patch; the output must have the target's shape.

    BasicSR's models assume things of their network (SwinIRModel reads ``network_g.window_size``, every model an
    output the size of ``gt``). Swapping in another network breaks them at the first iteration or validation with an
    error about tensors; this says which model, which network and what failed, before training.

    Args:
        model: A freshly built BasicSR model.
        dataset: Its training dataset.

    Raises:
        RunError: ``test()`` fails, or its output differs from the target in channels or size.
    """
    pair = first_pair(dataset)
    if pair is None:
        return
    lq, gt = pair
    net_name = model.opt['network_g'].get('type')
    model.lq = lq.to(model.device)
    try:
        with preserved_rng():
            model.test()
        out = model.output
    except Exception as err:
        raise RunError(f'model_type {model.opt["model_type"]} cannot run network_g {net_name}: its test() fails on '
                       f'one training patch ({type(err).__name__}: {err}). Use a model type made for this network '
                       '(e.g. ImageCleanModel for Restormer).') from None
    finally:
        for attr in ('lq', 'output'):
            if hasattr(model, attr):
                delattr(model, attr)
    if tuple(out.shape[1:]) != tuple(gt.shape[1:]):
        raise RunError(shape_mismatch_message(model.opt, net_name, tuple(lq.shape[1:]), tuple(out.shape[1:]),
                                              tuple(gt.shape[1:])))


def shape_mismatch_message(opt: Dict[str, Any], net_name: str, lq: tuple, out: tuple, gt: tuple) -> str:
    """What differs between a network's output and the target (channels, scale), and which options to check."""
    problems = []
    if out[0] != gt[0]:
        problems.append(f'it outputs {out[0]} channel(s) but the targets have {gt[0]} (check the network\'s output '
                        'channels, e.g. out_channels / num_out_ch, against the dataset)')
    if out[1:] != gt[1:]:
        problems.append(f'it scales images by x{out[-1] / lq[-1]:g} but the data needs x{gt[-1] / lq[-1]:g} (scale: '
                        f'{opt.get("scale", 1)}; check network_g\'s scale/upscale argument and the top-level scale)')
    return (f'network_g ({net_name}) turns a {"x".join(map(str, lq))} input into {"x".join(map(str, out))}, but the '
            f'target is {"x".join(map(str, gt))}: {"; ".join(problems)}. Training would fail in the loss.')


# ---------------------------------------------------------------------------------------------------- resume states
def _state_iteration(filename: str) -> Optional[int]:
    stem = filename[:-len('.state')] if filename.endswith('.state') else None
    return int(stem) if stem is not None and stem.isdigit() else None


def find_resume_states(training_states_dir: str) -> List[str]:
    """Training-state files of an experiment, newest (highest iteration) first.

    Args:
        training_states_dir: ``experiments/<name>/training_states`` (absolute, from ``opt['path']``).

    Returns:
        Paths of ``<iter>.state`` files sorted by decreasing iteration; temporary/partial files are ignored.
    """
    if not osp.isdir(training_states_dir):
        return []
    states = [(it, name) for name in os.listdir(training_states_dir) if (it := _state_iteration(name)) is not None]
    return [osp.join(training_states_dir, name) for _, name in sorted(states, reverse=True)]


def _load_state(path: str, opt: Dict[str, Any]) -> Dict[str, Any]:
    state = torch.load(path, map_location=map_location_for(opt), weights_only=True)
    if not isinstance(state, dict) or 'iter' not in state or 'optimizers' not in state:
        raise NotATrainingStateError(
            f'{path} is not a BasicSR training state (expected a dict with "iter" and "optimizers"). '
            'path.resume_state must point at experiments/<name>/training_states/<iter>.state, not at a network '
            'checkpoint (.pth).')
    return state


def _missing_network_files(opt: Dict[str, Any], iteration: int) -> List[str]:
    # Resuming also loads models/net_<x>_<iter>.pth for every network_<x> (basicsr.utils.check_resume).
    names = [key[len('network_'):] for key in opt if key.startswith('network_')]
    paths = [osp.join(opt['path']['models'], f'net_{name}_{iteration}.pth') for name in names]
    return [p for p in paths if not osp.isfile(p)]


def _remove_stale_temporaries(opt: Dict[str, Any]) -> None:
    # A process killed inside atomic_save leaves its `.<name>.<random>.tmp` behind: never a checkpoint, only litter.
    for folder in (opt['path'].get('training_states'), opt['path'].get('models')):
        if not folder or not osp.isdir(folder):
            continue
        for name in os.listdir(folder):
            if name.startswith('.') and '.tmp' in name:
                try:
                    os.remove(osp.join(folder, name))
                except FileNotFoundError:  # another rank removed it first
                    pass


def load_resume_state(opt: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """What ``basicsr train`` uses for ``basicsr.train.load_resume_state``.

    BasicSR's ``--auto_resume`` searches the *CWD-relative* ``experiments/<name>/training_states`` and trusts the newest
    file, which may be torn if the process was killed while writing it. Here the folder comes from ``opt['path']``,
    states load with ``weights_only=True`` onto the run's device, and unreadable states (or states whose network file
    is missing) are skipped with a warning in favour of the next newest.

    Args:
        opt: The parsed BasicSR options.

    Returns:
        The training state dict, or ``None`` to start from scratch.

    Raises:
        MissingCheckpointError: ``path.resume_state`` names a file that does not exist.
        NotATrainingStateError: ``path.resume_state`` is not a training state.
    """
    from basicsr.utils import check_resume

    if opt.get('auto_resume'):
        _remove_stale_temporaries(opt)
        for path in find_resume_states(opt['path']['training_states']):
            try:
                state = _load_state(path, opt)
                missing = _missing_network_files(opt, state['iter'])
                if missing:
                    raise FileNotFoundError(f'its network checkpoint is missing: {", ".join(missing)}')
            except Exception as err:  # a torn or foreign file: fall back to the previous complete state
                warnings.warn(f'auto_resume: skipping training state {path}: {err}', stacklevel=2)
                continue
            opt['path']['resume_state'] = path
            check_resume(opt, state['iter'])
            return state
        return None
    path = opt['path'].get('resume_state')
    if not path:
        return None
    if not osp.isfile(path):
        raise MissingCheckpointError(f'path.resume_state: {path} does not exist. Point it at an existing '
                                'experiments/<name>/training_states/<iter>.state file or use --auto_resume.')
    state = _load_state(path, opt)
    check_resume(opt, state['iter'])
    return state


# ---------------------------------------------------------------------------------------------------- checkpoints
def _option(opt: Dict[str, Any], dotted: str) -> Any:
    value: Any = opt
    for key in dotted.split('.'):
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _plain(value: Any) -> Any:
    # Training states are loaded with weights_only=True: store options as plain JSON types only.
    return json.loads(json.dumps(value, default=str))


def _differences(stored: Dict[str, Any], current: Dict[str, Any], where: str, recurse: bool = True) -> List[str]:
    lines = []
    for key in sorted(set(stored) | set(current), key=str):
        old, new = stored.get(key), current.get(key)
        if recurse and isinstance(old, dict) and isinstance(new, dict):
            lines.extend(_differences(old, new, f'{where}.{key}'))
        elif _plain(old) != _plain(new):
            lines.append(f'{where}.{key}: {_plain(old)} in the state -> {_plain(new)} in the option file')
    return lines


class CheckpointHooks:
    """Checkpoint methods for a BasicSR model (a base class placed before ``BaseModel``; ``basicsr train`` also puts
    them on ``BaseModel`` itself).

    - ``save_network`` / ``save_training_state``: atomic (:func:`~restormer_arch.checkpoint.atomic_save`), rank 0
      only, and a failed write raises (BasicSR logs "Just ignore it" and trains on without checkpoints). States also
      record the options of :data:`RECORDED_OPTIONS`, so a later resume can list what changed.
    - ``load_network``: every layout ``basicsr restore`` accepts; logs how many tensors were loaded and what was
      missing, unexpected or of another shape; refuses a strict load with any difference and a non-strict one that
      fills less than :data:`MIN_LOADED_FRACTION` of the network.
    - ``resume_training``: optimizer moments from the state; learning rates, schedule and every other hyperparameter
      from the option file, replayed to the resumed iteration, with each difference listed in the log.
    """

    def save_network(self, net: Any, net_label: str, current_iter: Any, param_key: Any = 'params') -> None:
        """Save one network (or several under several keys) to ``models/<net_label>_<iter>.pth``, atomically.

        Args:
            net: A network or a list of networks (DDP/DataParallel wrappers are unwrapped).
            net_label: File name prefix, e.g. ``net_g``.
            current_iter: The iteration (``-1`` for ``latest``).
            param_key: The entry of each network, e.g. ``params`` / ``['params', 'params_ema']``.

        Raises:
            CheckpointSaveError: The file could not be written (one line with the path and the reason).
        """
        from basicsr.utils.dist_util import get_dist_info

        if get_dist_info()[0] != 0:
            return
        nets = net if isinstance(net, list) else [net]
        keys = param_key if isinstance(param_key, list) else [param_key]
        if len(nets) != len(keys):
            raise ValueError(f'save_network: {len(nets)} networks but {len(keys)} param keys.')
        save_dict = {}
        for net_, key in zip(nets, keys):
            state_dict = self.get_bare_model(net_).state_dict()
            save_dict[key] = {k[len('module.'):] if k.startswith('module.') else k: v.cpu()
                              for k, v in state_dict.items()}
        label = 'latest' if current_iter == -1 else current_iter
        atomic_save(save_dict, osp.join(self.opt['path']['models'], f'{net_label}_{label}.pth'))

    def save_training_state(self, epoch: int, current_iter: int) -> None:
        """Save optimizers, schedulers and the recorded options to ``training_states/<iter>.state`` (rank 0).

        Args:
            epoch: The epoch BasicSR's loop is in.
            current_iter: The last *completed* iteration (a resume continues with the next one).
        """
        from basicsr.utils.dist_util import get_dist_info

        if current_iter == -1 or get_dist_info()[0] != 0:
            return
        state = {'epoch': epoch, 'iter': current_iter,
                 'optimizers': [o.state_dict() for o in self.optimizers],
                 'schedulers': [_plain_scheduler_state(s.state_dict()) for s in self.schedulers],
                 'options': {key: _plain(_option(self.opt, key)) for key in RECORDED_OPTIONS}}
        atomic_save(state, osp.join(self.opt['path']['training_states'], f'{current_iter}.state'))

    def load_network(self, net: torch.nn.Module, load_path: str, strict: bool = True,
                     param_key: Optional[str] = 'params') -> None:
        """Load ``path.pretrain_network_*`` into ``net``, safely and with a report of what was loaded.

        Args:
            net: The network (wrappers are unwrapped).
            load_path: The checkpoint file, of any layout :mod:`restormer_arch.checkpoint` accepts.
            strict: Refuse any missing, unexpected or shape-mismatched tensor.
            param_key: Preferred entry (``params``, ``params_ema``, ``state_dict`` ...); when the file has no such
                entry, or the model passes BasicSR's default ``'params'`` for an unset ``path.param_key_<x>``, the
                entry is found by :func:`~restormer_arch.checkpoint.param_entry` (and the log says which).

        Raises:
            MissingCheckpointError: The file does not exist.
            CheckpointLoadError: Unsafe or unreadable file, no parameters inside, a strict load with differences, or a
                non-strict load that would leave most of the network random.
        """
        label = next((key for key, value in vars(self).items() if value is net and key.startswith('net_')), '')
        path_opt = self.opt.get('path') or {}
        if param_key == 'params' and f'param_key{label[3:]}' not in path_opt:
            # BasicSR passes the default 'params' for an unset path.param_key_<x>: unset means checkpoint.param_entry's
            # rule (params_ema first: what validation scored); a resume continues from the network's trained weights.
            param_key = 'params' if path_opt.get('resume_state') else None
        net = self.get_bare_model(net)
        name = net.__class__.__name__
        expected = net.state_dict()
        state_dict, used_key, mismatch = check_checkpoint_fits(expected, load_path, strict, param_key, name)
        logger = get_root_logger()
        report = mismatch.describe(limit=6)
        loadable = {k: v for k, v in state_dict.items() if k in expected and expected[k].shape == v.shape}
        net.load_state_dict(loadable, strict=strict)
        logger.info(f'{load_path}: loaded {used_key} into {name}, {mismatch.matched} of {len(expected)} tensors.')
        if mismatch:
            logger.warning(f'{load_path}: not loaded into {name} (strict_load off): {report}')

    def resume_training(self, resume_state: Dict[str, Any]) -> None:
        """Continue a run from a training state: the option file's schedule wins, the optimizer keeps its moments.

        The learning rate of every iteration after the resume is the one an uninterrupted run of the *current* option
        file has: the scheduler is rebuilt from the file and replayed up to ``resume_state['iter']`` (whatever the
        stored scheduler says: a state saved on a stop signal may have been one step ahead). Every difference between
        the stored options/schedule and the file is logged as a warning.

        Args:
            resume_state: What :func:`load_resume_state` returned.

        Raises:
            CheckpointLoadError: The state has another number of optimizers/schedulers than this model.
        """
        optimizers, schedulers = resume_state['optimizers'], resume_state.get('schedulers', [])
        if len(optimizers) != len(self.optimizers) or len(schedulers) != len(self.schedulers):
            raise CheckpointLoadError(
                f'the training state has {len(optimizers)} optimizer(s) and {len(schedulers)} scheduler(s), this '
                f'model {len(self.optimizers)} and {len(self.schedulers)}: it was saved by another model_type.')
        changes = []
        if resume_state.get('options'):  # states written by BasicSR itself or before this feature have none
            current = {key: _option(self.opt, key) for key in RECORDED_OPTIONS}
            changes += [line.replace('options.', '', 1)
                        for line in _differences(resume_state['options'], current, 'options')]
        for index, (optimizer, stored) in enumerate(zip(self.optimizers, optimizers)):
            changes += _load_optimizer_keeping_hyperparameters(optimizer, stored, index)
        for index, (scheduler, stored) in enumerate(zip(self.schedulers, schedulers)):
            fresh = _plain_scheduler_state(scheduler.state_dict())
            stored = {k: v for k, v in stored.items() if k not in SCHEDULER_PROGRESS}
            changes += _differences(stored, {k: v for k, v in fresh.items() if k not in SCHEDULER_PROGRESS},
                                    f'scheduler[{index}]', recurse=False)
        self._replay_schedule(int(resume_state['iter']))
        logger = get_root_logger()
        if changes:
            logger.warning('Resume: the option file differs from the training state; the option file wins (the '
                           'schedule is recomputed from it for every iteration):\n\t' + '\n\t'.join(changes))
        logger.info(f'Resume: learning rate(s) at iteration {resume_state["iter"]}: '
                    f'{self.get_current_learning_rate()}')

    def _replay_schedule(self, iteration: int) -> None:
        # Exactly what BasicSR's loop did for iterations 1..iteration (scheduler steps and warm-up), on the freshly
        # built schedulers: about 1 s per 300k iterations.
        warmup_iter = self.opt['train'].get('warmup_iter', -1)
        with warnings.catch_warnings():
            warnings.filterwarnings('ignore', message='Detected call of `lr_scheduler.step\\(\\)`')
            for current in range(1, iteration + 1):
                self.update_learning_rate(current, warmup_iter=warmup_iter)


def _plain_scheduler_state(state: Dict[str, Any]) -> Dict[str, Any]:
    # BasicSR's MultiStepRestartLR keeps its milestones in a Counter; store {milestone: count} as a plain dict.
    return {k: dict(v) if isinstance(v, dict) else v for k, v in state.items()}


def _load_optimizer_keeping_hyperparameters(optimizer: torch.optim.Optimizer, stored: Dict[str, Any],
                                            index: int) -> List[str]:
    own = [{k: v for k, v in group.items() if k != 'params'} for group in optimizer.param_groups]
    try:
        optimizer.load_state_dict(stored)
    except ValueError as err:
        raise CheckpointLoadError(f'the training state does not fit optimizer {index}: {err}') from None
    changes = []
    for group_index, (group, file_values) in enumerate(zip(optimizer.param_groups, own)):
        for key, value in file_values.items():
            if key != 'lr' and key in group and _plain(group[key]) != _plain(value):
                changes.append(f'optimizer[{index}].param_groups[{group_index}].{key}: {_plain(group[key])} in the '
                               f'state -> {_plain(value)} in the option file')
            group[key] = value
    return changes


def check_checkpoint_fits(expected: Dict[str, torch.Tensor], load_path: str, strict: bool,
                          param_key: Optional[str], name: str, log: bool = True) -> tuple:
    """Read ``path.pretrain_network_*`` and check it against a network's state dict, without loading it.

    Shared by :meth:`CheckpointHooks.load_network` and the option check (which runs it on a network built on the meta
    device, so a checkpoint that cannot be loaded is refused before any folder is made).

    Args:
        expected: The network's ``state_dict()`` (only names and shapes are used).
        load_path: The checkpoint file.
        strict: ``path.strict_load_*``: any difference is an error.
        param_key: ``path.param_key_*``.
        name: The network's class name, for messages.
        log: Log which entry was used when ``param_key`` is absent (False before the logger is set up).

    Returns:
        ``(state_dict, used_key, mismatch)``.

    Raises:
        MissingCheckpointError: The file does not exist.
        CheckpointLoadError: Unsafe or unreadable file, no parameters inside, a strict load with differences, or a
            non-strict load that would leave most of the network random.
    """
    try:
        state_dict, used_key = _read_parameters(load_path, param_key, log)
    except FileNotFoundError as err:
        raise MissingCheckpointError(str(err)) from None
    except CheckpointError as err:
        raise CheckpointLoadError(str(err)) from None
    mismatch = compare_state_dicts(expected, state_dict)
    report = mismatch.describe(limit=6)
    if mismatch and strict:
        raise CheckpointLoadError(
            f'{load_path} [{used_key}] does not match network {name}: {report}. The checkpoint was made for '
            'another configuration: check network_g (LayerNorm_type BiasFree for denoising, '
            'inp_channels/out_channels 1 for gray, inp_channels 6 + dual_pixel_task for dual-pixel), or set '
            'path.strict_load_g: false to load the matching part only.')
    if mismatch.matched < MIN_LOADED_FRACTION * len(expected):
        raise CheckpointLoadError(
            f'{load_path} [{used_key}] fills only {mismatch.matched} of the {len(expected)} tensors of {name} '
            f'({report}); training would start from mostly random weights. Check that the file was saved from '
            'this architecture and these network_g options.')
    return state_dict, used_key, mismatch


def _read_parameters(load_path: str, param_key: Optional[str], log: bool = True) -> tuple:
    checkpoint = load_file(load_path, 'path.pretrain_network_*')
    # An absent param_key falls back to the rule every command uses (restormer_arch.checkpoint.param_entry).
    state_dict, entry = find_state_dict(checkpoint, load_path,
                                        param_key if param_entry(checkpoint, param_key) == param_key else None)
    if param_key not in (None, entry) and log:
        get_root_logger().info(f'{load_path} has no {param_key!r} entry; using {entry!r} (as basicsr restore does).')
    return state_dict, entry


# ---------------------------------------------------------------------------------------------------- the pipeline
class _WorkerIgnoresStopSignals:
    """``worker_init_fn`` wrapper: data-loading workers ignore SIGTERM/SIGINT.

    Slurm, systemd and ``kill -- -PGID`` signal the whole process group. A worker killed by it makes the main process
    fail with "DataLoader worker ... is killed by signal" before it can save; ignoring the signal lets the main process
    save a state and shut the workers down itself (they also exit when it dies).
    """

    def __init__(self, inner: Optional[Callable[[int], None]]) -> None:
        self.inner = inner

    def __call__(self, worker_id: int) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if self.inner is not None:
            self.inner(worker_id)


def _exact_epoch_count(opt: Dict[str, Any], train_loader: Any, planned: int, total_iters: int, logger: Any) -> int:
    # BasicSR computes iterations per epoch as ceil(N * ratio / (batch * world)), but with drop_last each rank gets
    # floor(ceil(N * ratio / world) / batch) batches. When the global batch does not divide the data the loop runs out
    # of epochs and training ends early without a word (e.g. at iteration 22 of 30). Count from the real loader.
    per_epoch = len(train_loader)
    if per_epoch == 0:
        train_opt = opt['datasets']['train']
        raise RunError(f'datasets.train: {len(train_loader.dataset)} images (x dataset_enlarge_ratio '
                       f'{train_opt.get("dataset_enlarge_ratio", 1)}) over {opt["world_size"]} process(es) give no '
                       f'complete batch of batch_size_per_gpu={train_opt["batch_size_per_gpu"]}. Lower the batch '
                       'size or raise dataset_enlarge_ratio.')
    exact = math.ceil(total_iters / per_epoch)
    if exact != planned:
        logger.info(f'Iterations per epoch per process: {per_epoch}; total epochs corrected from {planned} to '
                    f'{exact} so that training reaches {total_iters} iterations.')
    return exact


def _folders_of(opt: Dict[str, Any]) -> List[str]:
    skip = ('strict_load', 'pretrain_network', 'resume', 'param_key')
    return [p for key, p in opt['path'].items() if isinstance(p, str) and not any(s in key for s in skip)]


@contextmanager
def applied(run: TrainingRun) -> Iterator[TrainingRun]:
    """Apply our additions to BasicSR's training pipeline while the block runs (``basicsr train`` wraps the pipeline).

    BasicSR's ``BaseModel`` and ``basicsr.train`` are put back afterwards, so a process that runs the command as a
    function (a test, a notebook) keeps plain BasicSR outside it.

    Args:
        run: The run's explicit state; the pipeline fills in the sampler, loader and model as it creates them.

    Yields:
        ``run``.
    """
    import basicsr.train as train
    from basicsr.models.base_model import BaseModel

    saved = {name: BaseModel.__dict__.get(name) for name in _MODEL_HOOKS}
    saved_train = {name: getattr(train, name) for name in _PIPELINE_HOOKS}
    try:
        _install(run, train, BaseModel, dict(saved_train))
        yield run
    finally:
        for name, value in saved.items():
            if value is None:
                delattr(BaseModel, name)
            else:
                setattr(BaseModel, name, value)
        for name, value in saved_train.items():
            setattr(train, name, value)


_MODEL_HOOKS = ('save_network', 'save_training_state', 'load_network', 'resume_training', '_replay_schedule')
_PIPELINE_HOOKS = ('load_resume_state', 'create_train_val_dataloader', 'build_model', 'build_dataloader',
                   'make_exp_dirs', 'mkdir_and_rename')


def _install(run: TrainingRun, train: Any, base_model: Any, originals: Dict[str, Any]) -> None:
    from basicsr.utils.dist_util import master_only

    for name in _MODEL_HOOKS:
        setattr(base_model, name, getattr(CheckpointHooks, name))
    train.load_resume_state = load_resume_state

    def create_loaders(opt: Dict[str, Any], logger: Any) -> Any:
        try:
            train_loader, sampler, val_loaders, total_epochs, total_iters = originals['create_train_val_dataloader'](
                opt, logger)
        except (ValueError, FileNotFoundError) as err:
            raise _as_run_error(err) from err
        run.train_loader, run.train_sampler = train_loader, sampler
        if train_loader is not None:
            total_epochs = _exact_epoch_count(opt, train_loader, total_epochs, total_iters, logger)
        return train_loader, sampler, val_loaders, total_epochs, total_iters

    def build_dataloader(dataset: Any, dataset_opt: Dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        loader = originals['build_dataloader'](dataset, dataset_opt, *args, **kwargs)
        if loader.num_workers > 0:
            loader.worker_init_fn = _WorkerIgnoresStopSignals(loader.worker_init_fn)
        return loader

    @master_only
    def make_exp_dirs(opt: Dict[str, Any]) -> None:
        # Reached with --auto_resume only when no usable state exists: start over in the run's own folder.
        if not (run.auto_resume and osp.isdir(opt['path']['experiments_root'])):
            return originals['make_exp_dirs'](opt)
        print(f'auto_resume: no usable training state in {opt["path"]["experiments_root"]}; starting from '
              'iteration 0 in the same folder.', flush=True)
        for folder in _folders_of(opt):
            os.makedirs(folder, exist_ok=True)

    def mkdir_and_rename(path: str) -> None:
        if run.auto_resume:
            os.makedirs(path, exist_ok=True)
        else:
            originals['mkdir_and_rename'](path)

    train.create_train_val_dataloader = create_loaders
    train.build_dataloader = build_dataloader
    train.build_model = lambda opt: run.attach(originals['build_model'](opt))
    train.make_exp_dirs = make_exp_dirs
    train.mkdir_and_rename = mkdir_and_rename

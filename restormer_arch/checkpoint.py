"""Checkpoints and training states: safe loading, every parameter layout we accept, the mismatch report, atomic
saving, the one resume-state finder and the checkpoint methods of training models (:class:`CheckpointHooks`).

This is the one place that reads and writes ``.pth``/``.state`` files. Training (``path.pretrain_network_g``, resume),
``basicsr restore`` and the evaluation scripts all go through it, so they accept the same files:

- official Restormer / BasicSR files ``{'params': sd}`` and ``{'params_ema': sd, 'params': sd}``,
- ``{'state_dict': sd}`` (Lightning, mmagic), ``{'model': sd}``, ``{'net_g': sd}``, bare state dicts,
- any other layout with exactly one entry that is a dict of tensors (``model_state_dict``, ``net`` ...),
- keys prefixed with ``module.`` (DataParallel/DDP), ``_orig_mod.`` (``torch.compile``), ``generator.`` (mmagic, other
  modules dropped) or ``net_g.``.

Which parameters a checkpoint means is one rule (:func:`param_entry`), the same for validation, ``basicsr test``,
``basicsr restore``, export and fine-tuning. Every load uses ``torch.load(weights_only=True)`` (:func:`load_file`).
"""
import errno
import json
import os
import pickle
import shutil
import warnings
from os import path as osp
from typing import Any, Dict, List, Optional, Tuple

import torch
from basicsr.utils import get_root_logger
from basicsr.utils.dist_util import master_only
from torch import Tensor

from restormer_arch.atomic import atomic_write

__all__ = ['CheckpointError', 'STATE_DICT_KEYS', 'STRIPPED_PREFIXES', 'BARE', 'atomic_save', 'load_file', 'param_entry',
           'load_state_dict', 'compare_state_dicts', 'read_training_state', 'load_resume_state', 'CheckpointHooks',
           'check_checkpoint_fits', 'MIN_LOADED_FRACTION']

# Entries that hold the parameters, in order of preference: the EMA weights first, because validation during training
# scores the EMA network (so every command scores what the training log reported).
STATE_DICT_KEYS = ('params_ema', 'params', 'state_dict', 'model', 'net_g')
BARE = 'bare state dict'  # the name param_entry gives a checkpoint that is the state dict itself
# Prefixes that wrappers add to every key; removed while all keys carry them.
STRIPPED_PREFIXES = ('module.', '_orig_mod.', 'generator.', 'net_g.')


class CheckpointError(ValueError):
    """A checkpoint or training state cannot be used (missing, unsafe pickle, corrupt file, no parameters inside, not a
    training state, does not fit the network or model) or cannot be written (disk full, read-only folder: the previous
    file of that name is untouched); the message names the file and says why."""


def atomic_save(obj: Any, path: str) -> None:
    """``torch.save`` that never leaves a torn file (:func:`restormer_arch.atomic.atomic_write`).

    A kill at any moment leaves either the previous file or the complete new one. The temporary name starts with a dot
    and ends in ``.tmp``, so resume logic never mistakes it for a checkpoint.

    Args:
        obj: What to save.
        path: Destination file.

    Raises:
        CheckpointError: The operating system refused the write (disk full, no such folder, permission): one message
            naming ``path``, the reason and the free space. Other errors (e.g. an unpicklable object) propagate.
    """
    try:
        with atomic_write(path, 'wb') as f:
            torch.save(obj, f)
    except Exception as err:
        # torch's zip writer reports a full disk as "RuntimeError: [enforce fail at inline_container.cc] unexpected
        # pos"; the OSError that says why is in the exception chain (if not, that message is its only symptom).
        cause, seen = err, set()
        while cause is not None and not isinstance(cause, OSError) and id(cause) not in seen:
            seen.add(id(cause))
            cause = cause.__cause__ or cause.__context__
        if not isinstance(cause, OSError) and isinstance(err, RuntimeError) and 'unexpected pos' in str(err):
            cause = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        if not isinstance(cause, OSError):
            raise
        folder = osp.dirname(osp.abspath(path))
        free = f' ({shutil.disk_usage(folder).free / 2**20:.1f} MiB free in {folder})' if osp.isdir(folder) else ''
        raise CheckpointError(f'cannot save {path}: {cause.strerror or cause}{free}; fix that and resume with '
                              '--auto_resume. The previous checkpoints are intact.') from None


def load_file(path: str, what: str = 'checkpoint') -> Any:
    """Load a checkpoint file with ``weights_only=True``; failures become messages that say what to do.

    Args:
        path: The file to load.
        what: What the file is for, used in messages (e.g. the option key or flag that named it).

    Returns:
        The loaded object (tensors on the CPU).

    Raises:
        CheckpointError: ``path`` cannot be read (missing, a folder), holds other pickled objects than tensors and
            containers, or is not a PyTorch checkpoint (truncated, corrupt, another format).
    """
    try:
        return torch.load(path, map_location='cpu', weights_only=True)
    except OSError as err:  # FileNotFoundError, IsADirectoryError, PermissionError
        raise CheckpointError(f'{what}: cannot read {path}: {err.strerror or err}.') from None
    except Exception as err:
        # A pickle of forbidden objects names the global in a long message: that line is the useful part.
        offending = [line.strip() for line in str(err).splitlines() if 'GLOBAL' in line]
        if offending and isinstance(err, pickle.UnpicklingError):
            raise CheckpointError(f'{what}: refusing to load {path}: it contains pickled objects other than tensors '
                                  'and plain containers, which could run code when loaded (weights_only=True). If you '
                                  'trust the file, load it yourself and re-save only its state_dict: torch.save('
                                  f'{{"params": sd}}, "clean.pth"). Offending object: {offending[0]}') from None
        # Anything else (truncated archives, random bytes, other formats) fails with RuntimeError, EOFError, KeyError,
        # ...: torch's reasons name its internals (miniz, inline_container) or guess (a safetensors hint for any bytes).
        raise CheckpointError(f'{what}: {path} is not a PyTorch checkpoint (empty, truncated, damaged, or another '
                              'format such as a zip archive or a safetensors file). Pass the .pth file that '
                              'torch.save wrote (e.g. a released Restormer checkpoint); convert a safetensors file '
                              'with torch.save({"params": safetensors.torch.load_file(path)}, "model.pth").') from None


def param_entry(checkpoint: Any, param_key: Optional[str] = None) -> str:
    """The one rule for which parameters a loaded checkpoint means.

    Args:
        checkpoint: What :func:`load_file` returned.
        param_key: An entry named explicitly (``--param-key``, ``path.param_key_g``); it wins when present.

    Returns:
        ``param_key`` when the checkpoint has it, else the first entry of :data:`STATE_DICT_KEYS` that holds a dict,
        else the one entry that is a dict of tensors, else :data:`BARE` (the checkpoint is the state dict itself).
    """
    if not isinstance(checkpoint, dict):
        return BARE
    known = [key for key in (param_key, *STATE_DICT_KEYS) if key and isinstance(checkpoint.get(key), dict)]
    tensor_dicts = [key for key, value in checkpoint.items() if isinstance(value, dict) and value
                    and all(isinstance(v, Tensor) for v in value.values())]
    return known[0] if known else tensor_dicts[0] if len(tensor_dicts) == 1 else BARE


def _strip_prefixes(state_dict: Dict[str, Tensor]) -> Dict[str, Tensor]:
    # mmagic checkpoints hold the generator next to other modules (discriminator, EMA copies): keep the generator.
    if any(k.startswith('generator.') for k in state_dict):
        state_dict = {k: v for k, v in state_dict.items() if k.startswith('generator.')}
    # Wrappers nest in any order (module._orig_mod., _orig_mod.module. ...): strip one, then look again.
    prefix = next((p for p in STRIPPED_PREFIXES if state_dict and all(k.startswith(p) for k in state_dict)), None)
    return _strip_prefixes({k[len(prefix):]: v for k, v in state_dict.items()}) if prefix else state_dict


def load_state_dict(path: str, param_key: Optional[str] = None, what: str = 'checkpoint',
                    fallback: bool = False) -> Tuple[Dict[str, Tensor], str]:
    """Read a network's parameters from a checkpoint file of any accepted layout (see the module docstring), safely.

    Args:
        path: Checkpoint file (``.pth``/``.pt``).
        param_key: Entry to use (``params_ema``, ``params`` ...); default: :func:`param_entry`'s choice.
        what: The option key or flag that named the file (for messages).
        fallback: When ``param_key`` is absent, use :func:`param_entry`'s choice instead of refusing (training's
            ``path.param_key_*``, whose default ``params`` is BasicSR's, not the user's).

    Returns:
        The state dict (tensors only, on the CPU) with wrapper prefixes removed, and the entry it came from (or
        :data:`BARE`).

    Raises:
        CheckpointError: Missing, unsafe or unreadable file, ``param_key`` absent (without ``fallback``), or no
            tensors inside.
    """
    checkpoint = load_file(path, what)
    if isinstance(checkpoint, dict) and param_key is not None and param_key not in checkpoint and not fallback:
        raise CheckpointError(f'{path}: no {param_key!r} entry (top-level keys: {sorted(map(str, checkpoint))[:10]}); '
                              'name one of them, or none for a bare state dict.')
    entry = param_entry(checkpoint, param_key)
    checkpoint = checkpoint if entry == BARE else checkpoint[entry]
    tensors = {k: v for k, v in checkpoint.items() if isinstance(v, Tensor)} if isinstance(checkpoint, dict) else {}
    if not tensors:
        found = sorted(map(str, checkpoint))[:10] if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise CheckpointError(f'{path}: no state dict found (expected tensors, or one of the entries '
                              f'{STATE_DICT_KEYS}); found {found}.')
    return _strip_prefixes(tensors), entry


def compare_state_dicts(expected: Dict[str, Tensor], loaded: Dict[str, Tensor], sep: str = '; ') -> Tuple[int, str]:
    """Compare a network's ``state_dict()`` (``expected``) with loaded parameters, by name and shape.

    Args:
        expected: The network's own state dict.
        loaded: The state dict read from a checkpoint.
        sep: Separator between the kinds of difference in the report.

    Returns:
        ``(matched, report)``: how many keys are in both with equal shapes, and each kind of difference (missing keys,
        unexpected keys, shape mismatches) with its count and up to 6 examples; ``''`` when all match.
    """
    common = set(expected) & set(loaded)
    shapes = [f'{k}: {tuple(loaded[k].shape)} vs {tuple(expected[k].shape)}' for k in sorted(common)
              if expected[k].shape != loaded[k].shape]
    kinds = {'missing keys (': sorted(set(expected) - set(loaded)),
             'unexpected keys (': sorted(set(loaded) - set(expected)),
             'shape mismatches (checkpoint vs network, ': shapes}
    report = sep.join(f'{len(items)} {title}e.g. {", ".join(items[:6])}'
                      f'{f" ... +{len(items) - 6} more" if len(items) > 6 else ""})'
                      for title, items in kinds.items() if items)
    return len(common) - len(shapes), report


# ---------------------------------------------------------------------------------------------------- training states
# A non-strict pretrained load must fill at least this share of the network's tensors; below it the run would be
# mostly random weights under a log line that says "Loading".
MIN_LOADED_FRACTION = 0.5
# Options stored in each training state so that a resume can list what the option file changed.
RECORDED_OPTIONS = ('network_g', 'train.total_iter', 'train.warmup_iter', 'train.scheduler', 'train.optim_g')

def read_training_state(path: str, opt: Dict[str, Any]) -> Dict[str, Any]:
    """Load ``<iter>.state`` (:func:`load_file`); it must be a training state whose network files all exist.

    Tensors stay on the CPU (BasicSR maps them to the current CUDA device, which fails without one): the optimizers'
    ``load_state_dict`` moves each moment to its parameter's device.

    Raises:
        CheckpointError: ``path`` is missing, unreadable (torn) or not a training state (e.g. a network checkpoint), or
            one of its ``models/net_<x>_<iter>.pth`` (which a resume loads too, ``basicsr.utils.check_resume``) is
            missing.
    """
    state = load_file(path, 'path.resume_state')
    if not isinstance(state, dict) or 'iter' not in state or 'optimizers' not in state:
        raise CheckpointError(
            f'{path} is not a BasicSR training state (expected a dict with "iter" and "optimizers"). '
            'path.resume_state must point at experiments/<name>/training_states/<iter>.state, not at a network '
            'checkpoint (.pth).')
    names = [key[len('network_'):] for key in opt if key.startswith('network_')]
    missing = [p for p in (osp.join(opt['path']['models'], f'net_{n}_{state["iter"]}.pth') for n in names)
               if not osp.isfile(p)]
    if missing:
        # BasicSR resumes the network from this run's own models folder (check_resume), whatever folder the state is in.
        own = osp.samefile(osp.dirname(osp.abspath(path)), opt['path']['training_states']) if osp.isdir(
            opt['path']['training_states']) else False
        other = '' if own else (f' (BasicSR loads the network from this run\'s models folder, {opt["path"]["models"]};'
                                ' to continue another run, give this file that run\'s name)')
        raise CheckpointError(f'{path}: its network checkpoint is missing: {", ".join(missing)}{other}')
    return state


def _newest_usable_state(opt: Dict[str, Any]) -> tuple:
    # A process killed inside atomic_save leaves its `.<name>.<random>.tmp` behind: never a checkpoint, only litter.
    for folder in (opt['path'].get('training_states'), opt['path'].get('models')):
        for name in os.listdir(folder) if folder and osp.isdir(folder) else []:
            if name.startswith('.') and '.tmp' in name:
                try:
                    os.remove(osp.join(folder, name))
                except FileNotFoundError:  # another rank removed it first
                    pass
    folder = opt['path']['training_states']
    names = os.listdir(folder) if osp.isdir(folder) else []
    # `<iter>.state` files, highest iteration first; temporary/partial files do not match.
    for _, name in sorted(((int(n[:-6]), n) for n in names if n.endswith('.state') and n[:-6].isdigit()), reverse=True):
        path = osp.join(folder, name)
        try:
            return path, read_training_state(path, opt)
        except Exception as err:  # a torn or foreign file: fall back to the previous complete state
            warnings.warn(f'auto_resume: skipping training state {path}: {err}', stacklevel=3)
    return None, None


def load_resume_state(opt: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """The one resume-state finder (``basicsr.train.load_resume_state``): every rank resumes from the same state.

    BasicSR's ``--auto_resume`` searches the *CWD-relative* ``experiments/<name>/training_states``, trusts the newest
    file (torn if the process was killed while writing it) and maps it to a CUDA device; each rank decides alone, so
    ranks that see different folders resume from different iterations and hang. Here rank 0 decides (the newest
    state under ``opt['path']`` that loads and whose network files exist; torn ones are skipped with a warning) and
    every rank loads that iteration from its own ``training_states`` folder; without ``--auto_resume``,
    ``path.resume_state``. States load on the CPU with ``weights_only=True``. When one rank cannot load
    the state, every rank stops with the same one-line error.

    Args:
        opt: The parsed BasicSR options (``path.resume_state`` is set to the chosen file).

    Returns:
        The training state dict, or ``None`` to start from scratch.

    Raises:
        CheckpointError: The chosen state (or ``path.resume_state``) is missing or not a training state on some rank.
    """
    import torch.distributed as dist
    from basicsr.utils import check_resume

    distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
    path, state, problem = opt['path'].get('resume_state'), None, None
    if opt.get('auto_resume'):
        chosen = [None]  # a file name: node-local folders may be mounted at different paths
        if not distributed or dist.get_rank() == 0:
            path, state = _newest_usable_state(opt)
            chosen = [osp.basename(path) if path else None]
        if distributed:
            dist.broadcast_object_list(chosen, src=0)
        path = osp.join(opt['path']['training_states'], chosen[0]) if chosen[0] else None
    if not path:
        return None
    try:
        state = state or read_training_state(path, opt)
    except CheckpointError as err:
        problem = err
    if distributed:
        problems = [None] * dist.get_world_size()
        dist.all_gather_object(problems, str(problem) if problem else None)
        rank, text = next(((r, p) for r, p in enumerate(problems) if p), (0, None))
        if text:  # the same line on every rank
            problem = CheckpointError(f'rank {rank} cannot resume from {osp.basename(path)}, which rank 0 chose: '
                                      f'{text} Every process must see the same experiments folder (a shared '
                                      'filesystem; docs/training.md).')
    if problem is not None:
        raise problem
    opt['path']['resume_state'] = path
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


def _differences(stored: Dict[str, Any], current: Dict[str, Any], where: str = '') -> List[str]:
    lines = []
    for key in sorted(set(stored) | set(current), key=str):
        old, new = stored.get(key), current.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            lines.extend(_differences(old, new, f'{where}{key}.'))
        elif _plain(old) != _plain(new):
            lines.append(f'{where}{key}: {_plain(old)} in the state -> {_plain(new)} in the option file')
    return lines


class CheckpointHooks:
    """Checkpoint methods for a BasicSR model (a base class placed before ``BaseModel``; ``basicsr train`` also puts
    them on ``BaseModel`` itself). Saves are atomic and rank 0 only, and a failed write raises (BasicSR logs "Just
    ignore it" and trains on without checkpoints)."""

    @master_only
    def save_network(self, net: Any, net_label: str, current_iter: Any, param_key: Any = 'params') -> None:
        """Save one network (or several under several keys) to ``models/<net_label>_<iter>.pth``, atomically.

        Args:
            net: A network or a list of networks (DDP/DataParallel wrappers are unwrapped).
            net_label: File name prefix, e.g. ``net_g``.
            current_iter: The iteration (``-1`` for ``latest``).
            param_key: The entry of each network, e.g. ``params`` / ``['params', 'params_ema']``.

        Raises:
            CheckpointError: The file could not be written (one line with the path and the reason).
        """
        nets = net if isinstance(net, list) else [net]
        keys = param_key if isinstance(param_key, list) else [param_key]
        save_dict = {key: {k.removeprefix('module.'): v.cpu() for k, v in self.get_bare_model(n).state_dict().items()}
                     for n, key in zip(nets, keys)}
        label = 'latest' if current_iter == -1 else current_iter
        atomic_save(save_dict, osp.join(self.opt['path']['models'], f'{net_label}_{label}.pth'))

    @master_only
    def save_training_state(self, epoch: int, current_iter: int) -> None:
        """Save optimizers, schedulers, the recorded options and, in ``basicsr train``, the data position (so that a
        resume continues the epoch: :meth:`~restormer_arch.models.training_hooks.TrainingRun.position`) to
        ``training_states/<iter>.state`` (rank 0).

        Args:
            epoch: The epoch BasicSR's loop is in.
            current_iter: The last *completed* iteration (a resume continues with the next one).
        """
        if current_iter == -1:
            return
        run = getattr(self, 'run', None)
        # BasicSR's MultiStepRestartLR keeps its milestones in a Counter; store {milestone: count} as a plain dict.
        state = {'epoch': epoch, 'iter': current_iter,
                 'optimizers': [o.state_dict() for o in self.optimizers],
                 'schedulers': [{k: dict(v) if isinstance(v, dict) else v for k, v in s.state_dict().items()}
                                for s in self.schedulers],
                 'options': {key: _plain(_option(self.opt, key)) for key in RECORDED_OPTIONS},
                 'data': run.position(epoch, current_iter) if run is not None else None}
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
                entry is found by :func:`param_entry` (and the log says which).

        Raises:
            CheckpointError: Missing, unsafe or unreadable file, no parameters inside, a strict load with differences,
                or a non-strict load that would leave most of the network random.
        """
        label = next((key for key, value in vars(self).items() if value is net and key.startswith('net_')), '')
        path_opt = self.opt.get('path') or {}
        if param_key == 'params' and f'param_key{label[3:]}' not in path_opt:
            # BasicSR passes the default 'params' for an unset path.param_key_<x>: unset means param_entry's rule
            # (params_ema first: what validation scored); a resume continues from the network's trained weights.
            param_key = 'params' if path_opt.get('resume_state') else None
        net = self.get_bare_model(net)
        name = net.__class__.__name__
        expected = net.state_dict()
        state_dict, used_key, matched, report = check_checkpoint_fits(expected, load_path, strict, param_key, name)
        loadable = {k: v for k, v in state_dict.items() if k in expected and expected[k].shape == v.shape}
        net.load_state_dict(loadable, strict=strict)
        absent = f' (no {param_key!r} in the file)' if param_key not in (None, used_key) else ''
        logger = get_root_logger()
        logger.info(f'{load_path}: loaded {used_key}{absent} into {name}, {matched} of {len(expected)} tensors.')
        if report:
            logger.warning(f'{load_path}: not loaded into {name} (strict_load off): {report}')

    def resume_training(self, resume_state: Dict[str, Any]) -> None:
        """Continue a run from a training state: the option file's schedule wins, the optimizer keeps its moments.

        The learning rate of every iteration after the resume is the one an uninterrupted run of the *current* option
        file has: the scheduler is rebuilt from the file and replayed up to ``resume_state['iter']`` (whatever the
        stored scheduler says: a state saved on a stop signal may have been one step ahead); every optimizer
        hyperparameter comes from the file too. Every difference between the options recorded in the state
        (:data:`RECORDED_OPTIONS`) and the file is logged as a warning.

        Args:
            resume_state: What :func:`load_resume_state` returned.

        Raises:
            CheckpointError: The state has another number of optimizers/schedulers than this model.
        """
        optimizers, schedulers = resume_state['optimizers'], resume_state.get('schedulers', [])
        if len(optimizers) != len(self.optimizers) or len(schedulers) != len(self.schedulers):
            raise CheckpointError(
                f'the training state has {len(optimizers)} optimizer(s) and {len(schedulers)} scheduler(s), this '
                f'model {len(self.optimizers)} and {len(self.schedulers)}: it was saved by another model_type.')
        for index, (optimizer, stored) in enumerate(zip(self.optimizers, optimizers)):
            own = [{k: v for k, v in group.items() if k != 'params'} for group in optimizer.param_groups]
            try:
                optimizer.load_state_dict(stored)
            except ValueError as err:
                raise CheckpointError(f'the training state does not fit optimizer {index}: {err}') from None
            for group, file_values in zip(optimizer.param_groups, own):
                group.update(file_values)  # the moments come from the state, every hyperparameter from the file
        self._replay_schedule(int(resume_state['iter']))
        logger = get_root_logger()
        changes = _differences(resume_state.get('options') or {}, {k: _option(self.opt, k) for k in RECORDED_OPTIONS})
        if not resume_state.get('options'):  # written by BasicSR itself, whose resume keeps the state's schedule
            logger.warning('Resume: the training state records no options; the learning rate, schedule and optimizer '
                           'settings come from the option file.')
        elif changes:
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


def check_checkpoint_fits(expected: Dict[str, torch.Tensor], load_path: str, strict: bool,
                          param_key: Optional[str], name: str) -> tuple:
    """Read ``path.pretrain_network_*`` and check it against a network's state dict, without loading it.

    Shared by :meth:`CheckpointHooks.load_network` and the option check (which runs it on a network built on the meta
    device, so a checkpoint that cannot be loaded is refused before any folder is made).

    Args:
        expected: The network's ``state_dict()`` (only names and shapes are used).
        load_path: The checkpoint file.
        strict: ``path.strict_load_*``: any difference is an error.
        param_key: ``path.param_key_*``; when the file has no such entry, :func:`param_entry`'s choice.
        name: The network's class name, for messages.

    Returns:
        ``(state_dict, used_key, matched, report)``: the parameters, their entry and :func:`compare_state_dicts`'
        result.

    Raises:
        CheckpointError: Missing, unsafe or unreadable file, no parameters inside, a strict load with differences, or a
            non-strict load that would leave most of the network random.
    """
    state_dict, used_key = load_state_dict(load_path, param_key, 'path.pretrain_network_*', fallback=True)
    matched, report = compare_state_dicts(expected, state_dict)
    if report and strict:
        raise CheckpointError(
            f'{load_path} [{used_key}] does not match network {name}: {report}. The checkpoint was made for '
            'another configuration: check network_g (LayerNorm_type BiasFree for denoising, '
            'inp_channels/out_channels 1 for gray, inp_channels 6 + dual_pixel_task for dual-pixel), or set '
            'path.strict_load_g: false to load the matching part only.')
    if matched < MIN_LOADED_FRACTION * len(expected):
        raise CheckpointError(
            f'{load_path} [{used_key}] fills only {matched} of the {len(expected)} tensors of {name} '
            f'({report}); training would start from mostly random weights. Check that the file was saved from '
            'this architecture and these network_g options.')
    return state_dict, used_key, matched, report

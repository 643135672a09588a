"""Checkpoints: safe loading, finding the parameters in every layout we accept, the mismatch report, atomic saving.

This is the one place that reads and writes ``.pth``/``.state`` files. Training (``path.pretrain_network_g``, resume),
``basicsr restore`` and the evaluation scripts all go through it, so they accept the same files:

- official Restormer / BasicSR files ``{'params': sd}`` and ``{'params_ema': sd, 'params': sd}``,
- ``{'state_dict': sd}`` (Lightning, mmagic), ``{'model': sd}``, ``{'net_g': sd}``, bare state dicts,
- any other layout with exactly one entry that is a dict of tensors (``model_state_dict``, ``net`` ...),
- keys prefixed with ``module.`` (DataParallel/DDP), ``_orig_mod.`` (``torch.compile``), ``generator.`` (mmagic, other
  modules dropped) or ``net_g.``.

Which parameters a checkpoint means is one rule (:func:`param_entry`), the same for validation, ``basicsr test``,
``basicsr restore``, export and fine-tuning: an entry named explicitly wins, else ``params_ema`` when present (the
network validation scored), else ``params``, else the other entries. Every load says which entry it used.

Every load uses ``torch.load(weights_only=True)``: a file holding arbitrary pickled objects is refused, because
unpickling it could run code.
"""
import errno
import logging
import os
import pickle
import shutil
import zipfile
from dataclasses import dataclass, field
from os import path as osp
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import Tensor

from restormer_arch.atomic import atomic_write

__all__ = ['CheckpointError', 'CheckpointSaveError', 'STATE_DICT_KEYS', 'STRIPPED_PREFIXES', 'BARE', 'atomic_save',
           'load_file', 'param_entry', 'find_state_dict', 'load_state_dict', 'StateDictMismatch', 'compare_state_dicts']

# Entries that hold the parameters, in order of preference: the EMA weights first, because validation during training
# scores the EMA network (so every command scores what the training log reported).
STATE_DICT_KEYS = ('params_ema', 'params', 'state_dict', 'model', 'net_g')
BARE = 'bare state dict'  # the name param_entry gives a checkpoint that is the state dict itself
# Prefixes that wrappers add to every key; removed while all keys carry them.
STRIPPED_PREFIXES = ('module.', '_orig_mod.', 'generator.', 'net_g.')


class CheckpointError(ValueError):
    """A checkpoint cannot be used (unsafe pickle, corrupt file, no parameters inside); the message says why."""


class CheckpointSaveError(OSError):
    """A checkpoint could not be written (disk full, folder missing or read-only); the message names the file and the
    operating system's reason. The previous file of that name, if any, is untouched."""


def _os_cause(err: BaseException) -> Optional[OSError]:
    # torch's zip writer reports a full disk as "RuntimeError: [enforce fail at inline_container.cc] unexpected pos";
    # the OSError that says why is in the exception chain.
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, OSError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def _save_error(err: BaseException, path: str, directory: str) -> Optional[CheckpointSaveError]:
    cause = _os_cause(err)
    if cause is None and isinstance(err, RuntimeError) and 'unexpected pos' in str(err):
        cause = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # the zip writer's only short-write symptom
    if cause is None:
        return None
    reason = cause.strerror or str(cause)
    hint = {errno.ENOSPC: 'free space there (or point the experiment elsewhere) and resume with --auto_resume',
            errno.EDQUOT: 'free space within your quota and resume with --auto_resume',
            errno.EACCES: 'make the folder writable and resume with --auto_resume',
            errno.EROFS: 'the file system is read-only; train on a writable one'}.get(cause.errno, 'fix it and resume '
                                                                                       'with --auto_resume')
    free = ''
    if osp.isdir(directory):
        free = f' ({shutil.disk_usage(directory).free / 2**20:.1f} MiB free in {directory})'
    return CheckpointSaveError(cause.errno, f'cannot save {path}: {reason}{free}; {hint}. The previous checkpoints '
                                            'are intact.')


def atomic_save(obj: Any, path: str) -> None:
    """``torch.save`` that never leaves a torn file (:func:`restormer_arch.atomic.atomic_write`).

    A kill at any moment leaves either the previous file or the complete new one. The temporary name starts with a dot
    and ends in ``.tmp``, so resume logic never mistakes it for a checkpoint.

    Args:
        obj: What to save.
        path: Destination file.

    Raises:
        CheckpointSaveError: The operating system refused the write (disk full, no such folder, permission): one
            message naming ``path`` and the reason. Other errors (e.g. an unpicklable object) propagate unchanged.
    """
    try:
        with atomic_write(path, 'wb') as f:
            torch.save(obj, f)
    except Exception as err:
        save_error = _save_error(err, path, osp.dirname(osp.abspath(path)))
        if save_error is not None:
            raise save_error from None
        raise


def load_file(path: str, what: str = 'checkpoint') -> Any:
    """Load a checkpoint file with ``weights_only=True``; failures become messages that say what to do.

    Args:
        path: The file to load.
        what: What the file is for, used in messages (e.g. the option key or flag that named it).

    Returns:
        The loaded object (tensors on the CPU).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CheckpointError: The file holds other pickled objects than tensors and containers, or is truncated/corrupt.
    """
    if osp.isdir(path):
        raise CheckpointError(f'{what}: {path} is a folder, not a checkpoint file; name the .pth file inside it.')
    if not osp.isfile(path):
        raise FileNotFoundError(f'{what}: {path} does not exist.')
    if osp.getsize(path) == 0:
        raise CheckpointError(f'{what}: {path} is empty (0 bytes): an interrupted download or copy? Fetch it again.')
    try:
        return torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as err:
        if not _unsupported_global(err):  # not a pickle of forbidden objects: random bytes, another file format
            raise _not_a_checkpoint(path, what) from None
        raise CheckpointError(f'{what}: refusing to load {path}: it contains pickled objects other than tensors and '
                              'plain containers, which could run code when loaded (weights_only=True). If you trust '
                              'the file, load it yourself and re-save only its state_dict: '
                              f'torch.save({{"params": sd}}, "clean.pth"). {_unsupported_global(err)}') from None
    except Exception:  # truncated archives (RuntimeError, EOFError); arbitrary bytes make the weights-only unpickler
        raise _not_a_checkpoint(path, what) from None  # fail with KeyError, ValueError, struct.error, ...


def _not_a_checkpoint(path: str, what: str) -> 'CheckpointError':
    """The error for a file that torch.load cannot read, saying what the file looks like (torch's own reasons name
    its internals: miniz, inline_container, a safetensors hint)."""
    with open(path, 'rb') as f:
        head = f.read(64)
    text = head.decode('utf-8', errors='replace')
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                is_torch = any(name.endswith('/data.pkl') for name in archive.namelist())
        except zipfile.BadZipFile:
            is_torch = True
        kind = ('a damaged PyTorch checkpoint (its archive is incomplete: truncated?)' if is_torch
                else 'a zip archive, not a PyTorch checkpoint; unpack it and name the .pth file inside')
    elif head.startswith(b'PK'):
        kind = 'a damaged PyTorch checkpoint or zip archive (truncated?)'
    elif len(head) > 9 and int.from_bytes(head[:8], 'little') > 1 and head[8:10] in (b'{"', b'{ '):
        kind = ('a safetensors file; this project reads torch.save checkpoints: convert it with '
                'torch.save({"params": safetensors.torch.load_file(path)}, "model.pth")')
    elif text.strip() and all(c.isprintable() or c in '\r\n\t' for c in text):
        kind = f'a text file, not a PyTorch checkpoint (it starts with {text.strip().splitlines()[0][:40]!r})'
    else:
        kind = 'not a PyTorch checkpoint (corrupt or truncated, or another file format)'
    return CheckpointError(f'{what}: {path} is {kind}. Pass the .pth file that torch.save wrote (e.g. a released '
                           'Restormer checkpoint).')


def _unsupported_global(err: Exception) -> str:
    # torch's message is long; the line naming the offending global is the useful part.
    lines = [line.strip() for line in str(err).splitlines() if 'global' in line.lower() and 'GLOBAL' in line]
    return f'Offending object: {lines[0]}' if lines else ''


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
    changed = True
    while changed:
        changed = False
        for prefix in STRIPPED_PREFIXES:
            if all(k.startswith(prefix) for k in state_dict):
                state_dict = {k[len(prefix):]: v for k, v in state_dict.items()}
                changed = True
    return state_dict


def find_state_dict(checkpoint: Any, path: str = 'checkpoint',
                    param_key: Optional[str] = None) -> Tuple[Dict[str, Tensor], str]:
    """Find the network parameters in a loaded checkpoint, whatever its layout (see the module docstring).

    Args:
        checkpoint: What :func:`load_file` returned.
        path: The file it came from (for messages).
        param_key: Entry to use (``params_ema``, ``params`` ...); default: :func:`param_entry`'s choice.

    Returns:
        The state dict (tensors only) with wrapper prefixes removed, and the entry it came from (or :data:`BARE`).

    Raises:
        CheckpointError: ``param_key`` is absent, or no tensors were found.
    """
    if isinstance(checkpoint, dict) and param_key is not None and param_key not in checkpoint:
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


def load_state_dict(path: str, param_key: Optional[str] = None,
                    what: str = 'checkpoint') -> Tuple[Dict[str, Tensor], str]:
    """Read a network's parameters from a checkpoint file of any accepted layout, safely; logs the entry used
    (``loaded params_ema, 98 tensors``) on the ``restormer_arch`` logger.

    Args:
        path: Checkpoint file (``.pth``/``.pt``).
        param_key: See :func:`find_state_dict`.
        what: The option key or flag that named the file (for messages).

    Returns:
        The state dict (prefixes removed, tensors on the CPU) and the entry it came from.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CheckpointError: Unsafe, unreadable, or no parameters inside.
    """
    state_dict, entry = find_state_dict(load_file(path, what), path, param_key)
    logging.getLogger('restormer_arch').info(f'{path}: loaded {entry}, {len(state_dict)} tensors')
    return state_dict, entry


@dataclass
class StateDictMismatch:
    """How a loaded state dict differs from a network's own (all lists sorted).

    Attributes:
        missing: Keys the network has and the checkpoint lacks.
        unexpected: Keys the checkpoint has and the network lacks.
        shapes: ``(key, checkpoint shape, network shape)`` for keys whose shapes differ.
        matched: Number of keys present in both with equal shapes.
    """
    missing: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)
    shapes: List[tuple] = field(default_factory=list)
    matched: int = 0

    def __bool__(self) -> bool:
        return bool(self.missing or self.unexpected or self.shapes)

    def describe(self, limit: int = 6, sep: str = '; ') -> str:
        """Each kind of difference with its count and up to ``limit`` examples, joined by ``sep`` ('' if none)."""
        def listing(title: str, items: List[str]) -> List[str]:
            more = f' ... +{len(items) - limit} more' if len(items) > limit else ''
            return [f'{len(items)} {title}e.g. {", ".join(items[:limit])}{more})'] if items else []

        shapes = [f'{k}: {tuple(got)} vs {tuple(want)}' for k, got, want in self.shapes]
        return sep.join(listing('missing keys (', self.missing) + listing('unexpected keys (', self.unexpected)
                        + listing('shape mismatches (checkpoint vs network, ', shapes))


def compare_state_dicts(expected: Dict[str, Tensor], loaded: Dict[str, Tensor]) -> StateDictMismatch:
    """Compare a network's ``state_dict()`` (``expected``) with loaded parameters.

    Args:
        expected: The network's own state dict.
        loaded: The state dict read from a checkpoint.

    Returns:
        The differences; falsy when every key matches in name and shape.
    """
    common = set(expected) & set(loaded)
    shapes = [(k, loaded[k].shape, expected[k].shape) for k in sorted(common) if expected[k].shape != loaded[k].shape]
    return StateDictMismatch(missing=sorted(set(expected) - set(loaded)),
                             unexpected=sorted(set(loaded) - set(expected)), shapes=shapes,
                             matched=len(common) - len(shapes))

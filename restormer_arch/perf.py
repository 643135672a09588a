"""Performance options: CPU allocator, channels_last, mixed precision and ``torch.compile``.

Everything here is opt-in and leaves the weights untouched. The YAML section (read by :func:`apply_performance_options`
and :func:`autocast_context`) is::

    performance:
      channels_last: true     # convert the network's 4-D weights to channels_last (activations already are)
      precision: fp32         # fp32 | bf16 | fp16: autocast for inference and training
      compile: false          # true, or {mode: max-autotune-no-cudagraphs, dynamic: false, fullgraph: false}

On the command line, BasicSR's ``--force_yml performance:precision=bf16`` overrides a key. Activation checkpointing is
a network argument (``network_g: {use_checkpoint: true}``), and the allocator is set up by :func:`configure_allocator`
(the ``basicsr`` command calls it; ``RESTORMER_ALLOCATOR=system`` turns it off).
"""
import contextlib
import ctypes
import ctypes.util
import os
import sys
from typing import Any, ContextManager, Dict, Optional

import torch
from torch import nn

__all__ = ['configure_allocator', 'apply_performance_options', 'autocast_context', 'resolve_precision',
           'compile_network', 'to_channels_last', 'PRECISIONS', 'ALLOCATOR_ENV']

ALLOCATOR_ENV = 'RESTORMER_ALLOCATOR'
PRECISIONS = {'fp32': torch.float32, 'bf16': torch.bfloat16, 'fp16': torch.float16}
_PRECISION_ALIASES = {'float32': 'fp32', 'bfloat16': 'bf16', 'float16': 'fp16', 'half': 'fp16', 'none': 'fp32'}

# glibc mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
# Keep up to 2 GiB of freed memory at the top of the heap instead of returning it after every layer (mallopt takes a
# C int, so this is the largest value it accepts).
_TRIM_THRESHOLD = 2**31 - 1

_allocator_state: Optional[str] = None


def configure_allocator() -> str:
    """Make glibc keep large freed buffers for reuse instead of unmapping them after every layer.

    By default glibc serves every block over 32 MiB with a fresh ``mmap`` and returns it on free, so each large
    activation of every layer is page-faulted in again (millions of minor faults per forward, 1.7-2.8x slower on
    CPU). ``mallopt(M_MMAP_MAX, 0)`` serves them from the heap instead and a high ``M_TRIM_THRESHOLD`` keeps the freed
    memory mapped. The settings take effect for all later allocations of the running process, so call this early
    (before building the network and loading data). Peak RSS can grow somewhat because freed heap memory is reused
    rather than returned.

    Set the environment variable ``RESTORMER_ALLOCATOR=system`` to keep glibc's defaults. Does nothing off glibc
    (macOS, Windows, musl).

    Returns:
        ``'tuned'`` when the settings were applied, ``'system'`` when turned off by the environment, ``'unsupported'``
        when the C library is not glibc or refused a setting.
    """
    global _allocator_state
    if os.environ.get(ALLOCATOR_ENV, '').strip().lower() in ('system', 'default', 'off', '0'):
        _allocator_state = 'system'
        return _allocator_state
    if _allocator_state == 'tuned':
        return _allocator_state
    libc = _glibc()
    if libc is None:
        _allocator_state = 'unsupported'
        return _allocator_state
    ok = libc.mallopt(_M_MMAP_MAX, 0) == 1 and libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD) == 1
    _allocator_state = 'tuned' if ok else 'unsupported'
    return _allocator_state


def _glibc() -> Optional[ctypes.CDLL]:
    if not sys.platform.startswith('linux'):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6')
        libc.gnu_get_libc_version.restype = ctypes.c_char_p
        libc.gnu_get_libc_version()  # only glibc has it; musl raises AttributeError
    except (OSError, AttributeError):
        return None
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.mallopt.restype = ctypes.c_int
    return libc


def resolve_precision(precision: Optional[str]) -> torch.dtype:
    """Map a precision name from an option file to a dtype.

    Args:
        precision: ``'fp32'``, ``'bf16'`` or ``'fp16'`` (also ``float32``/``bfloat16``/``float16``/``half``/None).

    Returns:
        The torch dtype.

    Raises:
        ValueError: For an unknown name.
    """
    name = 'fp32' if precision is None else str(precision).strip().lower()
    name = _PRECISION_ALIASES.get(name, name)
    if name not in PRECISIONS:
        raise ValueError(f'performance.precision must be one of {sorted(PRECISIONS)}, got {precision!r}. '
                         "Use 'bf16' for fast CPU/Ampere+ inference and training, 'fp32' for exact results.")
    return PRECISIONS[name]


def autocast_context(precision: Optional[str], device_type: str = 'cpu') -> ContextManager:
    """A context manager that runs the enclosed forward (and loss) in the given precision.

    fp32 gives a no-op context. bf16 needs no loss scaling; fp16 training on CUDA should use
    ``torch.amp.GradScaler('cuda')`` for the backward pass.

    Args:
        precision: ``'fp32'``, ``'bf16'`` or ``'fp16'``.
        device_type: ``'cpu'`` or ``'cuda'`` (the device of the tensors).

    Returns:
        The context manager.
    """
    dtype = resolve_precision(precision)
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device_type, dtype=dtype)


def to_channels_last(network: nn.Module) -> nn.Module:
    """Store the network's 4-D weights channels_last (in place; the state_dict keys and shapes do not change).

    Args:
        network: The network.

    Returns:
        The same network.
    """
    return network.to(memory_format=torch.channels_last)


def compile_network(network: nn.Module, mode: Optional[str] = None, dynamic: Optional[bool] = None,
                    fullgraph: bool = False) -> nn.Module:
    """Wrap the network with ``torch.compile``; the first call of each new input shape compiles (about 1-2 min on CPU).

    The compiled module shares the parameters (``_orig_mod``), so saving/loading uses the original network.

    Args:
        network: The network.
        mode: ``torch.compile`` mode (None, ``'reduce-overhead'``, ``'max-autotune-no-cudagraphs'``, ...).
        dynamic: Compile for dynamic shapes (useful when image sizes vary).
        fullgraph: Require a single graph.

    Returns:
        The compiled module.
    """
    return torch.compile(network, mode=mode, dynamic=dynamic, fullgraph=fullgraph)


def apply_performance_options(network: nn.Module, options: Optional[Dict[str, Any]]) -> nn.Module:
    """Apply an option file's ``performance:`` section to a network (channels_last, then compile).

    Precision is not applied here: wrap the forward (and loss) in :func:`autocast_context`.

    Args:
        network: The network (already on its device).
        options: The ``performance`` dict (keys ``channels_last``, ``compile``, ``precision``) or None.

    Returns:
        The network to call (compiled if requested; its parameters are those of ``network``).

    Raises:
        ValueError: For unknown keys or bad values.
    """
    options = dict(options or {})
    unknown = set(options) - {'channels_last', 'compile', 'precision'}
    if unknown:
        raise ValueError(f'performance: unknown key(s) {sorted(unknown)}; valid keys are channels_last, compile, '
                         'precision.')
    resolve_precision(options.get('precision'))  # validate early, before a long run starts
    if options.get('channels_last', False):
        to_channels_last(network)
    compile_opt = options.get('compile', False)
    if compile_opt:
        kwargs = compile_opt if isinstance(compile_opt, dict) else {}
        bad = set(kwargs) - {'mode', 'dynamic', 'fullgraph'}
        if bad:
            raise ValueError(f'performance.compile: unknown key(s) {sorted(bad)}; use mode, dynamic, fullgraph.')
        network = compile_network(network, **kwargs)
    return network

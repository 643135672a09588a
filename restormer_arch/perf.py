"""Performance options: CPU allocator, channels_last, precision (bf16/fp16) and ``torch.compile``.

Everything here is opt-in and leaves the weights' values untouched. The YAML section (applied by
:func:`apply_performance_options` and :func:`autocast_context`; its unknown keys are reported with the option file's)
is::

    performance:
      channels_last: true     # store the network's 4-D weights channels_last (activations already are)
      precision: fp32         # fp32 | bf16 | fp16 (names in PRECISIONS): autocast for training and validation
      compile: false          # true, or {mode: ..., dynamic: false, fullgraph: false, freezing: false}

For inference outside a training run, :func:`prepare_inference` casts the network itself to bf16/fp16 (weights and
activations in low precision end to end; Restormer keeps its attention norms, softmax and residual in fp32) and
:func:`compile_for_inference` compiles it with freezing (weights folded into the graph as constants). On the command
line, BasicSR's ``--force_yml performance:precision=bf16`` overrides a key. Training memory is set by network arguments
(``network_g: {memory: full}`` keeps each block's depthwise outputs instead of recomputing them as the default
``lean`` does: faster, more memory; ``use_checkpoint: true`` recomputes whole blocks), and the allocator is set up
by :func:`configure_allocator` (the ``basicsr`` command calls it; ``RESTORMER_ALLOCATOR=system`` turns it off).
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
           'prepare_inference', 'compile_for_inference', 'optimizer_defaults', 'PRECISIONS', 'OPTION_KEYS',
           'COMPILE_KEYS', 'ALLOCATOR_ENV']

ALLOCATOR_ENV = 'RESTORMER_ALLOCATOR'
PRECISIONS = {'fp32': torch.float32, 'bf16': torch.bfloat16, 'fp16': torch.float16}
_PRECISION_ALIASES = {'float32': 'fp32', 'bfloat16': 'bf16', 'float16': 'fp16', 'half': 'fp16', 'none': 'fp32'}
# Keys of the `performance:` section and of its `compile:` mapping (torch.compile arguments, plus inductor freezing).
OPTION_KEYS = ('channels_last', 'precision', 'compile')
COMPILE_KEYS = ('mode', 'dynamic', 'fullgraph', 'freezing')

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


def apply_performance_options(network: nn.Module, options: Optional[Dict[str, Any]]) -> nn.Module:
    """Apply an option file's ``performance:`` section to a network (channels_last, then compile).

    Precision is not applied here: wrap the forward (and loss) in :func:`autocast_context`.

    Args:
        network: The network (already on its device).
        options: The ``performance`` dict (keys ``channels_last``, ``compile``, ``precision``) or None.

    Returns:
        The network to call (compiled if requested; its parameters are those of ``network``).

    Raises:
        TypeError, RuntimeError: From ``torch.compile`` for arguments or a mode it does not take (``basicsr train``
            builds this before anything is written: one line naming ``performance``).
    """
    options = options or {}
    if options.get('channels_last', False):
        network.to(memory_format=torch.channels_last)  # weights only: keys, shapes and values are unchanged
    compile_opt = options.get('compile', False)
    if compile_opt:
        kwargs = dict(compile_opt) if isinstance(compile_opt, dict) else {}
        if kwargs.pop('freezing', False):
            kwargs['options'] = {'freezing': True}
            if kwargs.get('mode') in (None, 'default'):  # torch takes a mode or options, not both: others stop
                kwargs.pop('mode', None)
        network = torch.compile(network, **kwargs)
    return network


def optimizer_defaults(optim_type: str, options: Dict[str, Any], device: torch.device) -> Dict[str, Any]:
    """Optimizer arguments with the fused implementation switched on where it is available and not chosen otherwise.

    Fused Adam/AdamW updates all parameters in one kernel instead of a Python loop of small ops (the same update to
    float rounding); torch supports it on CUDA, and on CPU from torch 2.4.

    Args:
        optim_type: The ``torch.optim`` class name (``train.optim_g.type``).
        options: The other ``train.optim_g`` arguments (not modified).
        device: The parameters' device.

    Returns:
        A copy of ``options``, with ``fused=True`` added when it applies (never when ``fused`` or ``foreach`` is set).
    """
    options = dict(options)
    cpu_ok = tuple(int(v) for v in torch.__version__.split('+')[0].split('.')[:2]) >= (2, 4)
    if (optim_type in ('Adam', 'AdamW') and 'fused' not in options and 'foreach' not in options
            and (device.type == 'cuda' or (device.type == 'cpu' and cpu_ok))):
        options['fused'] = True
    return options


def prepare_inference(network: nn.Module, precision: Optional[str] = 'fp32') -> nn.Module:
    """Put a network in eval mode and cast it (in place) to the inference precision, weights and activations.

    With ``'bf16'`` (fast on CPUs with AVX512-BF16/AMX and on Ampere+ GPUs) or ``'fp16'`` (GPUs), the convolutions,
    matmuls and elementwise work run in that dtype end to end, with no per-op autocast casts; Restormer keeps its
    attention norms, softmax and global residual in fp32 and returns the input's dtype. Measured accuracy of bf16
    against fp32 on CPU: about 53-55 dB PSNR (docs/performance.md).

    Args:
        network: The network; modified in place (do not keep training it afterwards).
        precision: A name accepted by :func:`resolve_precision`.

    Returns:
        The same network, in eval mode, channels_last, with parameters in the precision's dtype.

    Raises:
        ValueError: For an unknown precision.
    """
    dtype = resolve_precision(precision)
    return network.eval().to(dtype=dtype, memory_format=torch.channels_last)


def compile_for_inference(network: nn.Module, dynamic: bool = False) -> nn.Module:
    """``torch.compile`` with freezing for inference: weights become graph constants, elementwise work is fused.

    Each new input shape compiles again (about 1-2 min for the full Restormer on a CPU; seconds on a GPU), so feed
    fixed shapes: tiles of one size (:func:`restormer_arch.tiling.tiled_forward` with ``fit_tile=False``) or images
    padded to one size. Call the result under ``torch.no_grad()``/``torch.inference_mode()``; the weights must not
    change afterwards (they are folded in at the first call).

    Args:
        network: The network, already prepared (:func:`prepare_inference`).
        dynamic: Compile for dynamic shapes (fewer recompiles, slower code).

    Returns:
        The compiled module (shares ``network``'s parameters).
    """
    return torch.compile(network.eval(), dynamic=dynamic, options={'freezing': True})

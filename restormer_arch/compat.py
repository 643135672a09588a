"""Make pip ``basicsr`` 1.4.2 (2022) work on today's torch / torchvision / scipy / OpenCV, on CPU and GPU.

Only shims live here: each one makes something of BasicSR that fails on today's stack run as BasicSR meant it, and
changes nothing else. It is imported by ``restormer_arch/__init__.py`` before anything else touches ``basicsr``, so
importing ``restormer_arch`` is enough. BasicSR itself is never edited, forked or vendored: each fix either pre-seeds
``sys.modules`` (before ``import basicsr``) or replaces one function that BasicSR looks up at call time.

Shims (all applied on import; tests in ``tests/test_compat.py``; the list with reasons: ``docs/compat.md``):

- ``torchvision.transforms.functional_tensor`` alias (removed in torchvision 0.17: ``import basicsr`` fails);
- ``scipy.ndimage.filters`` alias (deprecated, to be removed in SciPy 2.0);
- ``basicsr.train.load_resume_state`` loads on the CPU (BasicSR's maps storages to the current CUDA device);
- ``dist_util._init_dist_pytorch``: gloo without CUDA, ``dist_params.backend`` (:func:`use_dist_backend`),
  ``LOCAL_RANK``;
- ``BaseModel.model_to_device``: no CUDA ``device_ids`` for CPU DDP;
- ``BaseModel.get_optimizer``: AdamW (today's option files, Restormer's included) and any ``torch.optim`` class;
- ``degradations.add_jpg_compression``: integer JPEG quality (OpenCV >= 4.5.5 rejects floats).

Behaviour we *add* to BasicSR is not here: atomic saves that fail loudly, pretrained loading of every layout with a
report, resume on the option file's schedule, root-based ``--auto_resume`` that skips torn states and never archives,
saves on stop signals, exact epoch counts and the dry forward check live in
:mod:`restormer_arch.models.training_hooks` (inherited by ``ImageCleanModel``; applied to BasicSR's models and
pipeline by ``basicsr train`` only).

Call :func:`apply` again to re-apply the shims (it is idempotent); :data:`APPLIED` lists what was done.
"""
import functools
import importlib
import os
import sys
import warnings
from os import path as osp
from typing import Any, Callable, Dict, List, Optional

import torch

APPLIED: List[str] = []

def _alias_module(name: str, target: Any) -> None:
    sys.modules[name] = target
    parent, _, child = name.rpartition('.')
    if parent in sys.modules:
        setattr(sys.modules[parent], child, target)


def _fix_torchvision_functional_tensor() -> None:
    # basicsr/data/degradations.py does `from torchvision.transforms.functional_tensor import rgb_to_grayscale`;
    # torchvision 0.17 renamed the module to `_functional_tensor`, so `import basicsr` itself fails without this alias.
    name = 'torchvision.transforms.functional_tensor'
    if name not in sys.modules:
        try:
            importlib.import_module(name)
            return  # an old torchvision that still has the module: nothing to fix
        except ImportError:
            _alias_module(name, importlib.import_module('torchvision.transforms._functional_tensor'))
    if sys.modules[name].__name__.endswith('._functional_tensor'):
        APPLIED.append('torchvision.transforms.functional_tensor -> _functional_tensor')


def _fix_scipy_ndimage_filters() -> None:
    # basicsr/metrics/niqe.py and data_util.py import `scipy.ndimage.filters`, deprecated since SciPy 1.8 (a warning on
    # every `import basicsr`) and due to be removed in SciPy 2.0 (then `import basicsr` fails). Everything they use
    # (convolve, correlate1d) lives in `scipy.ndimage`, so the alias is exact.
    import scipy.ndimage
    _alias_module('scipy.ndimage.filters', scipy.ndimage)
    APPLIED.append('scipy.ndimage.filters -> scipy.ndimage')


def map_location_for(opt: Dict[str, Any]) -> Any:
    """Device to load a training state onto: the current CUDA device when the run uses GPUs, else the CPU."""
    if opt.get('num_gpu', 0) != 0 and torch.cuda.is_available():
        device_id = torch.cuda.current_device()
        return lambda storage, loc: storage.cuda(device_id)
    return 'cpu'


def load_resume_state(opt: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """Replacement for ``basicsr.train.load_resume_state`` that works without CUDA.

    BasicSR's version maps every storage with ``torch.cuda.current_device()``, which fails on a machine without a GPU
    (and with ``num_gpu: 0``). This one finds the state as BasicSR does (``path.resume_state``, or with
    ``--auto_resume`` the newest ``experiments/<name>/training_states/<iter>.state`` under the current directory) and
    loads it onto the run's device. ``basicsr train`` replaces it with the root-based, torn-state-skipping search of
    :func:`restormer_arch.models.training_hooks.load_resume_state`.
    """
    from basicsr.utils import check_resume

    path = opt['path'].get('resume_state')
    if opt.get('auto_resume'):
        folder = osp.join('experiments', opt['name'], 'training_states')
        iterations = [int(n[:-len('.state')]) for n in (os.listdir(folder) if osp.isdir(folder) else [])
                      if n.endswith('.state') and n[:-len('.state')].isdigit()]
        path = osp.join(folder, f'{max(iterations)}.state') if iterations else None
        if path:
            opt['path']['resume_state'] = path
    if not path:
        return None
    state = torch.load(path, map_location=map_location_for(opt), weights_only=True)
    check_resume(opt, state['iter'])
    return state


def resolve_dist_backend(requested: Optional[str] = None) -> str:
    """The torch.distributed backend to use: the requested one, else nccl with CUDA and gloo without.

    nccl needs CUDA; the official option files all say ``backend: nccl``, so on a machine without CUDA a request for
    nccl falls back to gloo with a warning instead of failing at start-up.
    """
    if requested == 'nccl' and not torch.cuda.is_available():
        warnings.warn('dist_params.backend: nccl needs CUDA, which is not available here; using gloo.', stacklevel=2)
        return 'gloo'
    if requested:
        return requested
    return 'nccl' if torch.cuda.is_available() else 'gloo'


def _init_dist_pytorch(backend: str = 'nccl', requested: Optional[str] = None, **kwargs: Any) -> None:
    """Replacement for ``basicsr.utils.dist_util._init_dist_pytorch``.

    BasicSR's version does ``torch.cuda.set_device(rank % torch.cuda.device_count())`` (ZeroDivisionError without a GPU)
    and always uses nccl (``parse_options`` passes no ``dist_params`` for torchrun), which needs CUDA. We use
    ``requested`` (``dist_params.backend``, bound by :func:`use_dist_backend`), else nccl with CUDA and gloo on CPU,
    and select the GPU by ``LOCAL_RANK`` (correct on multi-node jobs too).
    """
    import torch.distributed as dist

    backend = resolve_dist_backend(requested)
    if torch.cuda.is_available() and backend != 'gloo':
        local_rank = int(os.environ.get('LOCAL_RANK', os.environ.get('RANK', 0)))
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
    dist.init_process_group(backend=backend, **kwargs)


def use_dist_backend(requested: Optional[str]) -> None:
    """Make ``--launcher pytorch`` use ``requested`` (``dist_params.backend``; None: nccl with CUDA, else gloo).

    BasicSR initialises the process group inside ``parse_options``, before anyone else sees the options, so the
    ``basicsr`` command reads the backend from the file first and binds it here.
    """
    import basicsr.utils.dist_util as dist_util

    dist_util._init_dist_pytorch = functools.partial(_init_dist_pytorch, requested=requested)


def _model_to_device(self: Any, net: torch.nn.Module) -> torch.nn.Module:
    """Replacement for ``BaseModel.model_to_device``: DDP gets CUDA ``device_ids`` only when the model is on CUDA.

    BasicSR passes ``device_ids=[torch.cuda.current_device()]`` unconditionally, which fails for CPU (gloo) DDP.
    """
    from torch.nn.parallel import DataParallel, DistributedDataParallel

    net = net.to(self.device)
    if self.opt['dist']:
        find_unused_parameters = self.opt.get('find_unused_parameters', False)
        device_ids = [torch.cuda.current_device()] if self.device.type == 'cuda' else None
        net = DistributedDataParallel(net, device_ids=device_ids, find_unused_parameters=find_unused_parameters)
    elif self.opt['num_gpu'] > 1:
        net = DataParallel(net)
    return net


def _get_optimizer(self: Any, optim_type: str, params: Any, lr: float, **kwargs: Any) -> torch.optim.Optimizer:
    """Replacement for ``BaseModel.get_optimizer``: pip BasicSR 1.4.2 only knows ``Adam``.

    Any optimizer class in ``torch.optim`` works by name (``Adam``, ``AdamW`` - Restormer's - ``SGD``, ...).
    """
    optimizer_cls = getattr(torch.optim, optim_type, None)
    if not (isinstance(optimizer_cls, type) and issubclass(optimizer_cls, torch.optim.Optimizer)):
        raise NotImplementedError(f'train.optim_g.type: optimizer {optim_type!r} is not supported. Use a torch.optim '
                                  'class name such as Adam or AdamW.')
    return optimizer_cls(params, lr, **kwargs)


def _int_jpeg_quality(add_jpg_compression: Callable[..., Any]) -> Callable[..., Any]:
    # OpenCV >= 4.5.5 rejects a float JPEG quality, which `random_add_jpg_compression` passes (XPixelGroup/BasicSR#578).
    def wrapper(img: Any, quality: float = 90) -> Any:
        return add_jpg_compression(img, int(quality))

    wrapper.__wrapped__ = add_jpg_compression
    wrapper.__doc__ = add_jpg_compression.__doc__
    return wrapper


def _patch_basicsr() -> None:
    import basicsr.data.degradations as degradations
    import basicsr.train
    import basicsr.utils.dist_util as dist_util
    from basicsr.models.base_model import BaseModel

    basicsr.train.load_resume_state = load_resume_state
    dist_util._init_dist_pytorch = _init_dist_pytorch
    BaseModel.model_to_device = _model_to_device
    BaseModel.get_optimizer = _get_optimizer
    if not hasattr(degradations.add_jpg_compression, '__wrapped__'):
        degradations.add_jpg_compression = _int_jpeg_quality(degradations.add_jpg_compression)
    APPLIED.extend([
        'basicsr.train.load_resume_state (loads on CPU; BasicSR maps storages to the current CUDA device)',
        'basicsr.utils.dist_util._init_dist_pytorch (gloo on CPU, dist_params.backend, LOCAL_RANK)',
        'BaseModel.model_to_device (no CUDA device_ids on CPU)',
        'BaseModel.get_optimizer (AdamW and any torch.optim class)',
        'degradations.add_jpg_compression (int JPEG quality for OpenCV >= 4.5.5)',
    ])


def apply() -> List[str]:
    """Apply every fix (idempotent). Returns the list of applied fixes."""
    APPLIED.clear()
    _fix_torchvision_functional_tensor()
    _fix_scipy_ndimage_filters()
    _patch_basicsr()
    return list(APPLIED)


apply()

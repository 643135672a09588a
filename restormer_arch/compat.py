"""Make pip ``basicsr`` 1.4.2 (2022) work on today's torch / torchvision / OpenCV, on CPU and GPU.

Only shims live here: each one makes something of BasicSR that fails on today's stack run as BasicSR meant it, and
changes nothing else. It is imported by ``restormer_arch/__init__.py`` before anything else touches ``basicsr``, so
importing ``restormer_arch`` is enough. BasicSR itself is never edited, forked or vendored: each fix either pre-seeds
``sys.modules`` (before ``import basicsr``) or replaces one function that BasicSR looks up at call time.

The shims, each with the reason it is needed, are listed in ``docs/compat.md`` and tested in ``tests/test_compat.py``.
Behaviour we *add* to BasicSR's training pipeline (data position on resume, saves on stop signals, exact epoch counts,
the dry forward check ...) lives in :mod:`restormer_arch.models.training_hooks`, applied by ``basicsr train`` only;
checkpoint methods in :mod:`restormer_arch.checkpoint`.

Call :func:`apply` again to re-apply the shims (it is idempotent); :data:`APPLIED` names what was patched.
"""
import functools
import importlib
import os
import subprocess
import sys
import warnings
from typing import Any, Callable, List, Optional

import torch

from restormer_arch.errors import UserError

APPLIED: List[str] = []


def resolve_dist_backend(requested: Optional[str] = None) -> str:
    """The torch.distributed backend to use: the requested one, else nccl with CUDA and gloo without.

    nccl needs CUDA; the official option files all say ``backend: nccl``, so on a machine without CUDA a request for
    nccl falls back to gloo with a warning instead of failing at start-up.
    """
    if requested == 'nccl' and not torch.cuda.is_available():
        warnings.warn('dist_params.backend: nccl needs CUDA, which is not available here; using gloo.', stacklevel=2)
    elif requested:
        return requested
    return 'nccl' if torch.cuda.is_available() else 'gloo'


def _init_dist_pytorch(backend: str = 'nccl', requested: Optional[str] = None, **kwargs: Any) -> None:
    """``--launcher pytorch`` (torchrun) without BasicSR's CUDA-only assumptions (why: docs/compat.md): the backend is
    ``requested`` (``dist_params.backend``, bound by :func:`use_dist_backend`), else nccl with CUDA and gloo without;
    the GPU is chosen by ``LOCAL_RANK`` (correct on multi-node jobs too).

    Raises:
        UserError: A variable a launcher sets (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``) is missing.
    """
    import torch.distributed as dist

    missing = [k for k in ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT') if k not in os.environ]
    if missing:
        raise UserError(f'--launcher pytorch: {", ".join(missing)} not set: start the command with torchrun (e.g. '
                        'torchrun --nproc_per_node=2 -m restormer_arch train ...), or drop --launcher.')
    backend = resolve_dist_backend(requested)
    if torch.cuda.is_available() and backend != 'gloo':
        torch.cuda.set_device(int(os.environ.get('LOCAL_RANK', os.environ['RANK'])) % torch.cuda.device_count())
    if os.environ.get('TORCHELASTIC_USE_AGENT_STORE') == 'True' and os.environ.get('TORCHELASTIC_MAX_RESTARTS', '0') \
            != '0' and backend == 'gloo' and os.environ['RANK'] == '0':
        warnings.warn('torchrun --max-restarts with gloo: a restarted group can hang in gloo\'s connectFullMesh; '
                      'launch torchrun with TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 in its environment.', stacklevel=1)
    dist.init_process_group(backend=backend, **kwargs)


def _init_dist_slurm(backend: str = 'nccl', port: Optional[int] = None, requested: Optional[str] = None,
                     **kwargs: Any) -> None:
    """``--launcher slurm`` (srun, one task per device; why: docs/compat.md): srun's variables become torchrun's for
    :func:`_init_dist_pytorch`. The port is ``MASTER_PORT``, else ``10000 + SLURM_JOB_ID % 20000`` (one per job, shared
    by its tasks and kept on requeue; BasicSR's 29500 for every job collides); the address ``MASTER_ADDR``, else the
    job's first node.

    Raises:
        UserError: Not started by srun, or ``scontrol`` missing.
    """
    env = os.environ
    missing = [k for k in ('SLURM_PROCID', 'SLURM_NTASKS', 'SLURM_NODELIST') if k not in env]
    if missing:
        raise UserError(f'--launcher slurm: {", ".join(missing)} not set: start one task per device with srun (e.g. '
                        'srun --ntasks-per-node=2 basicsr train ... --launcher slurm), or use --launcher pytorch.')
    if 'MASTER_ADDR' not in env:
        try:
            env['MASTER_ADDR'] = subprocess.run(['scontrol', 'show', 'hostnames', env['SLURM_NODELIST']], check=True,
                                                capture_output=True, text=True).stdout.split()[0]
        except (OSError, subprocess.CalledProcessError, IndexError) as err:
            raise UserError(f'--launcher slurm: cannot find the first node of {env["SLURM_NODELIST"]} with scontrol '
                            f'({err}); set MASTER_ADDR.') from None
    job_port = str(10000 + int(env.get('SLURM_JOB_ID', 19500)) % 20000)
    if port is not None and str(port) != env.get('MASTER_PORT', job_port) and env['SLURM_PROCID'] == '0':
        warnings.warn(f'dist_params.port: {port} is not used under --launcher slurm, so that jobs sharing a node never '
                      f'collide; using {env.get("MASTER_PORT", job_port)} (set MASTER_PORT to choose).', stacklevel=1)
    env.setdefault('MASTER_PORT', job_port)
    env.update(RANK=env['SLURM_PROCID'], WORLD_SIZE=env['SLURM_NTASKS'], LOCAL_RANK=env.get('SLURM_LOCALID', '0'))
    _init_dist_pytorch(backend, requested=requested, **kwargs)


def use_dist_backend(requested: Optional[str]) -> None:
    """Make ``--launcher pytorch`` use ``requested`` (``dist_params.backend``; None: nccl with CUDA, else gloo).

    BasicSR initialises the process group inside ``parse_options``, before anyone else sees the options, so the
    ``basicsr`` command reads the backend from the file first and binds it here.
    """
    import basicsr.utils.dist_util as dist_util

    dist_util._init_dist_pytorch = functools.partial(_init_dist_pytorch, requested=requested)
    dist_util._init_dist_slurm = functools.partial(_init_dist_slurm, requested=requested)


def _model_to_device(self: Any, net: torch.nn.Module) -> torch.nn.Module:
    """``BaseModel.model_to_device`` that gives DDP CUDA ``device_ids`` only for a CUDA model (CPU DDP fails else)."""
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
    """``BaseModel.get_optimizer`` for any ``torch.optim`` class by name (pip BasicSR 1.4.2 knows only ``Adam``)."""
    optimizer_cls = getattr(torch.optim, optim_type, None)
    if not (isinstance(optimizer_cls, type) and issubclass(optimizer_cls, torch.optim.Optimizer)):
        raise NotImplementedError(f'train.optim_g.type: optimizer {optim_type!r} is not supported. Use a torch.optim '
                                  'class name such as Adam or AdamW.')
    return optimizer_cls(params, lr, **kwargs)


def _int_jpeg_quality(add_jpg_compression: Callable[..., Any]) -> Callable[..., Any]:
    # OpenCV >= 4.5.5 rejects a float JPEG quality, which `random_add_jpg_compression` passes (XPixelGroup/BasicSR#578).
    @functools.wraps(add_jpg_compression)  # also sets __wrapped__, by which apply() sees the shim is in place
    def wrapper(img: Any, quality: float = 90) -> Any:
        return add_jpg_compression(img, int(quality))

    return wrapper


def apply() -> List[str]:
    """Apply every fix (idempotent). Returns the list of applied fixes."""
    APPLIED.clear()
    # basicsr/data/degradations.py does `from torchvision.transforms.functional_tensor import rgb_to_grayscale`;
    # torchvision 0.17 renamed the module to `_functional_tensor`, so `import basicsr` itself fails without this alias.
    name = 'torchvision.transforms.functional_tensor'
    try:
        importlib.import_module(name)  # an old torchvision that still has the module, or the alias already set
    except ImportError:
        sys.modules[name] = importlib.import_module('torchvision.transforms._functional_tensor')
    if sys.modules[name].__name__.endswith('._functional_tensor'):
        APPLIED.append('torchvision.transforms.functional_tensor -> _functional_tensor')
    import basicsr.data.degradations as degradations
    import basicsr.train
    import basicsr.utils.dist_util as dist_util
    from basicsr.models.base_model import BaseModel

    from restormer_arch.checkpoint import load_resume_state

    basicsr.train.load_resume_state = load_resume_state
    dist_util._init_dist_pytorch = _init_dist_pytorch
    dist_util._init_dist_slurm = _init_dist_slurm
    BaseModel.model_to_device = _model_to_device
    BaseModel.get_optimizer = _get_optimizer
    if not hasattr(degradations.add_jpg_compression, '__wrapped__'):
        degradations.add_jpg_compression = _int_jpeg_quality(degradations.add_jpg_compression)
    APPLIED.extend(['basicsr.train.load_resume_state', 'dist_util._init_dist_pytorch', 'dist_util._init_dist_slurm',
                    'BaseModel.model_to_device', 'BaseModel.get_optimizer', 'degradations.add_jpg_compression'])
    return list(APPLIED)


apply()

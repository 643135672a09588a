"""Make pip ``basicsr`` 1.4.2 (2022) work on today's torch / torchvision / scipy / OpenCV, on CPU and GPU.

This is the single home of every fix we apply to BasicSR. It is imported by ``restormer_arch/__init__.py`` before
anything else touches ``basicsr``; importing ``restormer_arch`` is therefore enough. BasicSR itself is never edited,
forked or vendored: each fix either pre-seeds ``sys.modules`` (before ``import basicsr``) or replaces one function that
BasicSR looks up at call time. Every fix says why it exists and is covered by ``tests/test_compat.py``.

Call :func:`apply` again to re-apply the patches (it is idempotent); :data:`APPLIED` lists what was done.
"""
import importlib
import math
import os
import sys
import warnings
from os import path as osp
from typing import Any, Callable, Dict, List, Optional

import torch

from restormer_arch.checkpoint import atomic_save, compare_state_dicts, load_file

APPLIED: List[str] = []

# Backend for ``--launcher pytorch``; set by the CLI from ``dist_params.backend`` (``None``: nccl with CUDA, else gloo).
DIST_BACKEND: Optional[str] = None


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
        raise ValueError(f'{path} is not a BasicSR training state (expected a dict with "iter" and "optimizers"). '
                         'path.resume_state must point at experiments/<name>/training_states/<iter>.state, '
                         'not at a network checkpoint (.pth).')
    return state


def _missing_network_files(opt: Dict[str, Any], iteration: int) -> List[str]:
    # Resuming also loads models/net_<x>_<iter>.pth for every network_<x> (basicsr.utils.check_resume).
    names = [key[len('network_'):] for key in opt if key.startswith('network_')]
    paths = [osp.join(opt['path']['models'], f'net_{name}_{iteration}.pth') for name in names]
    return [p for p in paths if not osp.isfile(p)]


def _remove_stale_temporaries(opt: Dict[str, Any]) -> None:
    # A process killed inside atomic_save leaves its `.<name>.tmp<pid>` behind; it is never a checkpoint, only litter.
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
    """Replacement for ``basicsr.train.load_resume_state``.

    BasicSR's version (1) maps storages with ``torch.cuda.current_device()``, which fails on CPU; (2) with
    ``--auto_resume`` searches the *CWD-relative* ``experiments/<name>/training_states``, so a run launched from another
    directory silently restarts from iteration 0 and archives the old experiment folder; (3) trusts the newest file,
    which may be torn if the process was killed while writing it. Here the folder comes from ``opt['path']`` (rooted at
    the run's root path), states load with ``weights_only=True`` onto the run's device, and unreadable states are
    skipped with a warning in favour of the next newest.

    Args:
        opt: The parsed BasicSR options.

    Returns:
        The training state dict, or ``None`` to start from scratch.
    """
    from basicsr.utils import check_resume

    if opt.get('auto_resume'):
        _remove_stale_temporaries(opt)
        candidates = find_resume_states(opt['path']['training_states'])
        for path in candidates:
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
        raise FileNotFoundError(f'path.resume_state: {path} does not exist. Point it at an existing '
                                'experiments/<name>/training_states/<iter>.state file or use --auto_resume.')
    state = _load_state(path, opt)
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


def _init_dist_pytorch(backend: str = 'nccl', **kwargs: Any) -> None:
    """Replacement for ``basicsr.utils.dist_util._init_dist_pytorch``.

    BasicSR's version does ``torch.cuda.set_device(rank % torch.cuda.device_count())`` (ZeroDivisionError without a GPU)
    and always uses the nccl backend it is given (``parse_options`` passes no ``dist_params`` for torchrun). We use the
    backend from ``dist_params.backend`` (set by our CLI in :data:`DIST_BACKEND`), falling back to nccl with CUDA and
    gloo on CPU, and select the GPU by ``LOCAL_RANK`` (correct on multi-node jobs too).
    """
    import torch.distributed as dist

    backend = resolve_dist_backend(DIST_BACKEND)
    if torch.cuda.is_available() and backend != 'gloo':
        local_rank = int(os.environ.get('LOCAL_RANK', os.environ.get('RANK', 0)))
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
    dist.init_process_group(backend=backend, **kwargs)


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


def _save_network(self: Any, net: Any, net_label: str, current_iter: Any, param_key: Any = 'params') -> None:
    """Replacement for ``BaseModel.save_network``: atomic, and a failure raises instead of being logged and ignored.

    BasicSR writes in place (a kill mid-write leaves a torn ``.pth`` that auto-resume then trusts) and, after three
    failed tries, only logs "Just ignore it" - training then goes on without checkpoints. Rank 0 only, as before.
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
        save_dict[key] = {k[len('module.'):] if k.startswith('module.') else k: v.cpu() for k, v in state_dict.items()}
    label = 'latest' if current_iter == -1 else current_iter
    atomic_save(save_dict, osp.join(self.opt['path']['models'], f'{net_label}_{label}.pth'))


def _save_training_state(self: Any, epoch: int, current_iter: int) -> None:
    """Replacement for ``BaseModel.save_training_state``: atomic, rank 0 only, and failures raise (see above)."""
    from basicsr.utils.dist_util import get_dist_info

    if current_iter == -1 or get_dist_info()[0] != 0:
        return
    state = {'epoch': epoch, 'iter': current_iter,
             'optimizers': [o.state_dict() for o in self.optimizers],
             'schedulers': [s.state_dict() for s in self.schedulers]}
    atomic_save(state, osp.join(self.opt['path']['training_states'], f'{current_iter}.state'))


def _load_network(self: Any, net: torch.nn.Module, load_path: str, strict: bool = True,
                  param_key: Optional[str] = 'params') -> None:
    """Replacement for ``BaseModel.load_network``: ``weights_only`` loading and errors that name the mismatch.

    BasicSR relies on torch's default (weights_only only from torch 2.6 on) and, on a checkpoint made for another
    configuration, fails with a long PyTorch error after printing key lists. Here the message names the file, what
    differs, and the usual cause (LayerNorm_type, channels, dual_pixel_task).
    """
    from basicsr.utils import get_root_logger

    net = self.get_bare_model(net)
    checkpoint = load_file(load_path, 'path.pretrain_network_*')
    if param_key is not None and isinstance(checkpoint, dict):
        if param_key not in checkpoint and 'params' in checkpoint:
            param_key = 'params'
        if param_key not in checkpoint:
            raise KeyError(f'{load_path} has no {param_key!r} entry (it has {sorted(checkpoint)[:5]}). '
                           'Set path.param_key_g to one of them, or ~ for a bare state_dict.')
        checkpoint = checkpoint[param_key]
    state_dict = {k[len('module.'):] if k.startswith('module.') else k: v for k, v in checkpoint.items()}
    expected = net.state_dict()
    mismatch = compare_state_dicts(expected, state_dict)
    if mismatch and strict:
        raise ValueError(f'{load_path} does not match network {net.__class__.__name__}: {mismatch.describe()}. '
                         'The checkpoint was made for another configuration: check network_g (LayerNorm_type '
                         'BiasFree for denoising, inp_channels/out_channels 1 for gray, inp_channels 6 + '
                         'dual_pixel_task for dual-pixel), or set path.strict_load_g: false to load the matching '
                         'part only.')
    if not strict:  # drop shape mismatches, as BasicSR does, instead of failing inside load_state_dict
        state_dict = {k: v for k, v in state_dict.items() if k not in expected or expected[k].shape == v.shape}
    get_root_logger().info(f'Loading {net.__class__.__name__} from {load_path} [{param_key}].')
    net.load_state_dict(state_dict, strict=strict)


def _exact_epoch_count(create_loaders: Callable[..., Any]) -> Callable[..., Any]:
    # BasicSR computes iterations per epoch as ceil(N * ratio / (batch * world)), but with drop_last each rank gets
    # floor(ceil(N * ratio / world) / batch) batches. When the global batch does not divide the data the loop runs out
    # of epochs and training ends early without a word (e.g. at iteration 22 of 30). Count from the real loader.
    def wrapper(opt: Dict[str, Any], logger: Any) -> Any:
        train_loader, sampler, val_loaders, total_epochs, total_iters = create_loaders(opt, logger)
        if train_loader is not None:
            per_epoch = len(train_loader)
            if per_epoch == 0:
                train_opt = opt['datasets']['train']
                raise ValueError(
                    f'datasets.train: {len(train_loader.dataset)} images (x dataset_enlarge_ratio '
                    f'{train_opt.get("dataset_enlarge_ratio", 1)}) over {opt["world_size"]} process(es) give no '
                    f'complete batch of batch_size_per_gpu={train_opt["batch_size_per_gpu"]}. Lower the batch size or '
                    'raise dataset_enlarge_ratio.')
            exact = math.ceil(total_iters / per_epoch)
            if exact != total_epochs:
                logger.info(f'Iterations per epoch per process: {per_epoch}; total epochs corrected from '
                            f'{total_epochs} to {exact} so that training reaches {total_iters} iterations.')
            total_epochs = exact
        return train_loader, sampler, val_loaders, total_epochs, total_iters

    wrapper.__wrapped__ = create_loaders
    return wrapper


_current_epoch = 0


def current_epoch() -> int:
    """The epoch BasicSR's training loop is in (recorded from ``EnlargedSampler.set_epoch``; 0 before training)."""
    return _current_epoch


def _recording_set_epoch(set_epoch: Callable[..., Any]) -> Callable[..., Any]:
    # A model that saves a state outside BasicSR's own `model.save(epoch, iter)` call (on a stop signal, on repeated
    # non-finite losses) needs the epoch, which only the training loop knows; it always calls set_epoch first.
    def wrapper(self: Any, epoch: int) -> None:
        global _current_epoch
        _current_epoch = epoch
        set_epoch(self, epoch)

    wrapper.__wrapped__ = set_epoch
    return wrapper


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
    from basicsr.data.data_sampler import EnlargedSampler
    from basicsr.models.base_model import BaseModel

    basicsr.train.load_resume_state = load_resume_state
    if not hasattr(basicsr.train.create_train_val_dataloader, '__wrapped__'):
        basicsr.train.create_train_val_dataloader = _exact_epoch_count(basicsr.train.create_train_val_dataloader)
    dist_util._init_dist_pytorch = _init_dist_pytorch
    BaseModel.model_to_device = _model_to_device
    BaseModel.get_optimizer = _get_optimizer
    BaseModel.save_network = _save_network
    BaseModel.save_training_state = _save_training_state
    BaseModel.load_network = _load_network
    if not hasattr(EnlargedSampler.set_epoch, '__wrapped__'):
        EnlargedSampler.set_epoch = _recording_set_epoch(EnlargedSampler.set_epoch)
    if not hasattr(degradations.add_jpg_compression, '__wrapped__'):
        degradations.add_jpg_compression = _int_jpeg_quality(degradations.add_jpg_compression)
    APPLIED.extend([
        'basicsr.train.load_resume_state (CPU map_location, root-based auto_resume, skip torn states)',
        'basicsr.train.create_train_val_dataloader (epoch count from the real per-rank loader length)',
        'basicsr.utils.dist_util._init_dist_pytorch (gloo on CPU, dist_params.backend, LOCAL_RANK)',
        'BaseModel.model_to_device (no CUDA device_ids on CPU)',
        'BaseModel.get_optimizer (AdamW and any torch.optim class)',
        'BaseModel.save_network / save_training_state (atomic writes; failures raise)',
        'BaseModel.load_network (weights_only, clear configuration-mismatch errors)',
        'degradations.add_jpg_compression (int JPEG quality for OpenCV >= 4.5.5)',
        'EnlargedSampler.set_epoch (records the epoch for saves outside the training loop)',
    ])


def apply() -> List[str]:
    """Apply every fix (idempotent). Returns the list of applied fixes."""
    APPLIED.clear()
    _fix_torchvision_functional_tensor()
    _fix_scipy_ndimage_filters()
    _patch_basicsr()
    return list(APPLIED)


apply()

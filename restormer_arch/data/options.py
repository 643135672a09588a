"""Dataset options: the getters the datasets read them with (required keys, folders, phase, I/O backend, training
patch size, normalisation, read flag). Each raises a ValueError naming the key; ``basicsr train|test`` build the
datasets before anything is written (:mod:`restormer_arch.options.build`), so that is the check.

The rest of the data pipeline lives in its own modules: :mod:`.paths` (listing and pairing), :mod:`.image_io` (the
one decoder), :mod:`.readers` (disk and LMDB reading), :mod:`.image_checks` (pre-flight checks), :mod:`.transforms`
(crops, augmentation, tensors) and :mod:`.base_dataset` (the constructor the datasets share).
"""
from os import path as osp
from typing import Any, Dict, List, Mapping, Optional, Tuple


# ----------------------------------------------------------------------------------------------------------- getters
def require_option(opt: Mapping[str, Any], key: str, dataset: str) -> Any:
    """Return ``opt[key]``, raising a ValueError that names the dataset and the missing key when it is absent.

    Args:
        opt: Dataset options.
        key: The required key.
        dataset: Dataset class name, for the message.

    Returns:
        The option value.
    """
    if opt.get(key) is None:
        raise ValueError(f'{dataset} "{opt.get("name", "?")}": option "{key}" is required but missing; '
                         f'add "{key}: ..." to this dataset in the YAML file.')
    return opt[key]


def get_folder(opt: Mapping[str, Any], key: str, dataset: str) -> str:
    """Return the required folder option ``key`` with ``~`` expanded (BasicSR only expands dataroot_gt/lq)."""
    return osp.expanduser(str(require_option(opt, key, dataset)))


def get_phase(opt: Mapping[str, Any], dataset: str) -> str:
    """Return ``'train'`` or the evaluation phase name; BasicSR derives ``phase`` from the ``datasets:`` key."""
    phase = opt.get('phase')
    if phase is None:
        raise ValueError(f'{dataset} "{opt.get("name", "?")}": option "phase" is missing. BasicSR sets it from the '
                         'datasets key (train / val / test_*); set "phase: train" or "phase: val" when building the '
                         'dataset by hand.')
    return str(phase)


def get_backend(opt: Mapping[str, Any], dataset: str) -> Dict[str, Any]:
    """Return a copy of ``io_backend`` after checking it is disk or lmdb."""
    backend = dict(opt.get('io_backend') or {'type': 'disk'})
    if backend.get('type') not in ('disk', 'lmdb'):
        raise ValueError(f'{dataset} "{opt.get("name", "?")}": io_backend type {backend.get("type")!r} is not '
                         "supported; use io_backend: {type: disk} or {type: lmdb}.")
    return backend


def check_train_options(opt: Mapping[str, Any], dataset: str) -> int:
    """Validate the training-phase options shared by all datasets and return ``gt_size``."""
    gt_size = require_option(opt, 'gt_size', dataset)
    if not isinstance(gt_size, int) or isinstance(gt_size, bool) or gt_size <= 0:
        raise ValueError(f'{dataset}: gt_size must be a positive integer (the training patch size), got {gt_size!r}.')
    if opt.get('scale', 1) != 1:
        raise ValueError(f'{dataset}: only scale 1 is supported (restoration, LQ and GT have the same size), '
                         f'got scale {opt["scale"]}; set "scale: 1" in the YAML file.')
    return gt_size


def get_mean_std(opt: Mapping[str, Any], dataset: str) -> Tuple[Optional[List[float]], Optional[List[float]]]:
    """Return the optional normalisation ``(mean, std)``; both or neither must be given."""
    mean, std = opt.get('mean'), opt.get('std')
    if (mean is None) != (std is None):
        raise ValueError(f'{dataset}: give both "mean" and "std" for normalisation, or neither.')
    if std is not None and any(s == 0 for s in std):
        raise ValueError(f'{dataset}: "std" must not contain 0, got {std}.')
    return mean, std


def read_flag(opt: Mapping[str, Any], flag: str, dataset: str) -> str:
    """``flag`` (color/grayscale), or its 8-bit variant with ``bit_depth: 8`` (16-bit files read as 8-bit)."""
    depth = opt.get('bit_depth')
    if depth is None:
        return flag
    if depth != 8:
        raise ValueError(f'{dataset}: bit_depth must be 8 (read 16-bit images as 8-bit, as OpenCV does by default) or '
                         f'left out (keep every file\'s own depth), got {depth!r}.')
    return f'{flag}_8bit'

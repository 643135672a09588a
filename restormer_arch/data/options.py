"""Dataset options: the getters the datasets read them with, and their checks before anything is built.

Getters: required keys, folders, phase, I/O backend, training patch size, normalisation, read flag. Checks:
:func:`check_datasets` (the ``datasets`` section, for :mod:`restormer_arch.options`), :func:`check_dataset_options` (the
keys of one plugin dataset, for each class's ``check_options``) and :func:`check_channels` (datasets against the
network).

The rest of the data pipeline lives in its own modules: :mod:`.paths` (listing and pairing), :mod:`.image_io` (the
one decoder), :mod:`.readers` (disk and LMDB reading), :mod:`.image_checks` (pre-flight checks), :mod:`.transforms`
(crops, augmentation, tensors) and :mod:`.base_dataset` (the constructor the datasets share).
"""
import inspect
from os import path as osp
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from restormer_arch.option_checks import check_keys, check_numbers, check_type, lookup, registries


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


# ------------------------------------------------------------------------------------------------------------ checks
# Keys every plugin dataset shares (each dataset adds its own, and the progressive keys of datasets.train count too).
DATASET_KEYS = ('name', 'type', 'phase', 'scale', 'dataroot_gt', 'dataroot_lq', 'io_backend', 'meta_info_file',
                'filename_tmpl', 'use_shuffle', 'num_worker_per_gpu', 'batch_size_per_gpu', 'dataset_enlarge_ratio',
                'prefetch_mode', 'pin_memory', 'persistent_workers', 'num_prefetch_queue', 'gt_size', 'geometric_augs',
                'use_padding', 'mean', 'std', 'check_images')
DUAL_PIXEL_DATASETS = ('Dataset_DefocusDeblur_DualPixel_16bit',)
# What a missing required key is, for its message.
REQUIRED_HINTS = {
    'dataroot_gt': 'the folder (or .lmdb) of target images',
    'dataroot_lq': 'the folder (or .lmdb) of input images',
    'dataroot_lqL': 'the folder of left dual-pixel views (16-bit PNG)',
    'dataroot_lqR': 'the folder of right dual-pixel views (16-bit PNG)',
    'gt_size': 'the training patch side, a multiple of 8 (e.g. 128)',
    'batch_size_per_gpu': 'the batch per GPU (per process), e.g. 8',
    'num_worker_per_gpu': 'data-loading processes per GPU, e.g. 8 (0 loads in the main process)',
    'sigma_type': 'constant, random or choice',
    'sigma_range': 'the training noise level(s), e.g. 25 or [0, 50]',
    'sigma_test': 'the evaluation noise level, e.g. 25',
}


def check_datasets(opt: Dict[str, Any], is_train: bool) -> List[str]:
    """Problems with the ``datasets`` section: phase names, types, numbers written as text, plugin datasets' keys.

    The keys of the plugin's datasets are judged by each class's ``check_options``; those of other datasets are their
    own business.

    Args:
        opt: The whole option dict.
        is_train: Training needs a ``train`` dataset.

    Returns:
        One message per problem (empty when fine).
    """
    problems: List[str] = []
    datasets = opt.get('datasets')
    if not isinstance(datasets, dict) or not datasets:
        problems.append('datasets: missing (a mapping of phases such as train / val / test_1).')
        return problems
    for phase, dataset_opt in datasets.items():
        where = f'datasets.{phase}'
        if phase != 'train' and phase.split('_')[0] not in ('val', 'test'):
            problems.append(f'{where}: phase names must be "train", "val*" or "test*".')
        if not isinstance(dataset_opt, dict):
            problems.append(f'{where}: expected a mapping.')
            continue
        check_type('dataset', dataset_opt.get('type'), f'{where}.type', problems)
        _check_dataset_keys(phase, dataset_opt, problems)
        check_numbers(dataset_opt, where, problems)
    if is_train and 'train' not in datasets:
        problems.append('datasets.train: missing; training needs a train dataset.')
    return problems


def check_dataset_options(dataset_opt: Dict[str, Any], phase: str, keys: Sequence[str] = (),
                          required: Sequence[str] = (), required_train: Sequence[str] = (),
                          required_eval: Sequence[str] = ()) -> List[str]:
    """Problems with the keys of one of the plugin's datasets (each dataset's ``check_options`` calls this).

    Args:
        dataset_opt: The dataset's section.
        phase: Its name under ``datasets`` (``train``, ``val``, ``test_1``, ...).
        keys: The dataset's own keys, beyond those every plugin dataset shares (:data:`DATASET_KEYS`).
        required: Keys it always needs; ``required_train`` / ``required_eval`` when training / evaluating.

    Returns:
        One message per problem: misspelled keys (with a "did you mean") and missing required ones.
    """
    from restormer_arch.models.progressive import PROGRESSIVE_KEYS  # here: restormer_arch.models imports this package

    problems: List[str] = []
    where = f'datasets.{phase}'
    suggested = check_keys(dataset_opt, DATASET_KEYS + PROGRESSIVE_KEYS + tuple(keys), where, problems, strict=True)
    needed = tuple(required)
    if phase == 'train':
        needed += tuple(required_train) + ('gt_size', 'batch_size_per_gpu', 'num_worker_per_gpu')
    else:
        needed += tuple(required_eval)
    for key in needed:
        if dataset_opt.get(key) is None and key not in suggested:
            problems.append(f'{where}.{key}: missing; add {key}: ... ({REQUIRED_HINTS.get(key, "see the docs")}).')
    return problems


def missing_data_paths(opt: Dict[str, Any]) -> List[str]:
    """The folders and files the plugin's datasets name that do not exist (checked before BasicSR makes any folder).

    Only the plugin's own datasets are judged: their path keys are known (``dataroot_*``, ``meta_info_file``).
    Relative paths are taken from the current directory, as BasicSR and the datasets take them.

    Args:
        opt: The resolved option dict.

    Returns:
        One message per missing path.
    """
    problems = []
    for phase, dataset_opt in (opt.get('datasets') or {}).items():
        cls = plugin_dataset(dataset_opt)
        if cls is None:
            continue
        # Folder datasets read exactly dataroot_<key> for their folder_keys (the Gaussian one ignores dataroot_lq,
        # which official files set to "none"); the others read every dataroot_* they are given.
        read = ([f'dataroot_{key}' for key in cls.folder_keys] if hasattr(cls, 'folder_keys')
                else [key for key in dataset_opt if key.startswith('dataroot')]) + ['meta_info_file']
        for key in read:
            value = dataset_opt.get(key)
            if isinstance(value, str) and not osp.exists(osp.expanduser(value)):
                problems.append(f'datasets.{phase}.{key}: "{value}" does not exist (relative to '
                                f'{osp.abspath(".")}); fix the path, or prepare the data as described in '
                                'datasets/README.md.')
    return problems


def plugin_dataset(dataset_opt: Any) -> Optional[type]:
    """The plugin's dataset class a section names (it has ``check_options``), else ``None``."""
    cls = lookup('dataset', dataset_opt.get('type')) if isinstance(dataset_opt, dict) else None
    return cls if isinstance(cls, type) and hasattr(cls, 'check_options') else None


def _check_dataset_keys(phase: str, dataset_opt: Dict[str, Any], problems: List[str]) -> None:
    cls = plugin_dataset(dataset_opt)
    if cls is not None:  # a BasicSR or third-party dataset's keys are its own business
        problems.extend(cls.check_options(dataset_opt, phase))


def _network_arg(opt: Dict[str, Any], name: str) -> Any:
    net_opt = opt.get('network_g') or {}
    if name in net_opt:
        return net_opt[name]
    cls = registries()['arch'].get(net_opt['type']) if net_opt.get('type') in registries()['arch'] else None
    param = inspect.signature(cls).parameters.get(name) if cls is not None else None
    return None if param is None or param.default is inspect.Parameter.empty else param.default


def check_channels(opt: Dict[str, Any]) -> List[str]:
    """Compare what each plugin dataset delivers (gray/RGB/dual-pixel) with the network's channels.

    Args:
        opt: The whole option dict.

    Returns:
        One message per mismatch (empty when they fit, or when ``network_g`` has no ``inp_channels``).
    """
    problems: List[str] = []
    inp, out, dual = (_network_arg(opt, k) for k in ('inp_channels', 'out_channels', 'dual_pixel_task'))
    if not isinstance(inp, int):
        return problems  # not a network with inp_channels (or not one we know): nothing to compare
    for phase, dataset_opt in (opt.get('datasets') or {}).items():
        if plugin_dataset(dataset_opt) is None:
            continue
        where = f'datasets.{phase} ({dataset_opt["type"]})'
        if dataset_opt['type'] in DUAL_PIXEL_DATASETS:
            if inp != 6 or not dual:
                problems.append(f'{where} gives 6-channel inputs (left + right views, 3 each) but network_g has '
                                f'inp_channels {inp} and dual_pixel_task {dual}; set network_g.inp_channels: 6 and '
                                'dual_pixel_task: true.')
            continue
        in_ch = dataset_opt.get('in_ch', 3)
        if not isinstance(in_ch, int):
            continue  # the dataset reports a wrong in_ch itself
        kind = {1: 'gray', 3: 'RGB'}.get(in_ch, f'{in_ch}-channel')
        if dual:
            problems.append(f'network_g.dual_pixel_task is true but {where} is not a dual-pixel dataset; use '
                            'Dataset_DefocusDeblur_DualPixel_16bit, or set dual_pixel_task: false.')
        elif inp != in_ch or (isinstance(out, int) and out != in_ch):
            fix = ('network_g.inp_channels: 1 and out_channels: 1 for a gray model' if in_ch == 1 else
                   f'network_g.inp_channels: {in_ch} and out_channels: {in_ch}')
            problems.append(f'{where}.in_ch is {in_ch} ({kind} images) but network_g has inp_channels {inp} and '
                            f'out_channels {out}; set {fix}, or change in_ch to match the network.')
    return problems

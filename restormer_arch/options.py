"""Check a BasicSR option file before training starts, with messages that say which key is wrong and how to fix it.

BasicSR only finds most mistakes deep into a run (a misspelled ``type`` after the data is loaded, an LR scheduler that
runs out of periods at the last iteration, a progressive schedule that is never reached). :func:`validate_options`
finds them up front; the ``basicsr`` command calls it on every ``-opt`` file before handing over to BasicSR.
"""
import difflib
import inspect
import os
import re
import warnings
from typing import Any, Dict, Iterable, List, Optional

import torch
import yaml

PATCH_MULTIPLE = 8  # Restormer down-samples three times, so training patches must be multiples of 8.
PERIODIC_SCHEDULERS = ('CosineAnnealingRestartLR', 'CosineAnnealingRestartCyclicLR')


# Keys each section may hold. A key that is not listed but close to a listed one that is absent (``gt_szie`` for
# ``gt_size``) is an error; any other unknown key is a warning (a plugin of yours may read it). New options must be
# added here.
TOP_LEVEL_KEYS = ('name', 'model_type', 'scale', 'num_gpu', 'manual_seed', 'datasets', 'network_g', 'path', 'train',
                  'val', 'logger', 'dist_params', 'find_unused_parameters', 'performance',
                  # set by BasicSR's parse_options / the train pipeline
                  'is_train', 'dist', 'rank', 'world_size', 'auto_resume', 'root_path')
DATASET_KEYS = ('name', 'type', 'phase', 'scale', 'dataroot_gt', 'dataroot_lq', 'io_backend', 'meta_info_file',
                'filename_tmpl', 'use_shuffle', 'num_worker_per_gpu', 'batch_size_per_gpu', 'dataset_enlarge_ratio',
                'prefetch_mode', 'pin_memory', 'persistent_workers', 'num_prefetch_queue', 'gt_size', 'geometric_augs',
                'use_padding', 'mean', 'std', 'iters', 'mini_batch_sizes', 'gt_sizes', 'check_images')
# The plugin's datasets: their own keys and what they need. Other (BasicSR) dataset types are not checked key by key.
DATASET_TYPES = {
    'Dataset_PairedImage': {'keys': ('in_ch', 'bit_depth'), 'required': ('dataroot_gt', 'dataroot_lq'),
                            'required_train': (), 'required_eval': ()},
    'Dataset_GaussianDenoising': {'keys': ('in_ch', 'sigma_type', 'sigma_range', 'sigma_test', 'noise_seed',
                                           'noise_protocol'),
                                  'required': ('dataroot_gt',), 'required_train': ('sigma_type', 'sigma_range'),
                                  'required_eval': ('sigma_test',)},
    'Dataset_DefocusDeblur_DualPixel_16bit': {'keys': ('dataroot_lqL', 'dataroot_lqR'),
                                              'required': ('dataroot_gt', 'dataroot_lqL', 'dataroot_lqR'),
                                              'required_train': (), 'required_eval': ()},
    'Dataset_SIDDBlocks': {'keys': ('key_lq', 'key_gt'), 'required': ('dataroot_lq',), 'required_train': (),
                           'required_eval': ()},
}
DUAL_PIXEL_DATASETS = ('Dataset_DefocusDeblur_DualPixel_16bit',)
TRAIN_KEYS = ('total_iter', 'warmup_iter', 'use_grad_clip', 'grad_clip_norm', 'optim_g', 'scheduler', 'mixing_augs',
              'ema_decay', 'max_nonfinite_steps', 'save_on_signal')  # plus any "<name>_opt" loss
VAL_KEYS = ('val_freq', 'save_img', 'metrics', 'window_size', 'log_input_metrics', 'suffix', 'pbar',
            # per-image tables, metric image type and tiling (restormer_arch/models/{results_table,val_utils}.py)
            'metrics_table', 'combined_rows', 'image_dtype', 'tile', 'tile_overlap', 'tile_blend')
LOGGER_KEYS = ('print_freq', 'save_checkpoint_freq', 'use_tb_logger', 'wandb')
PATH_KEYS = ('pretrain_network_g', 'strict_load_g', 'param_key_g', 'resume_state',
             # set by BasicSR's parse_options
             'experiments_root', 'models', 'training_states', 'log', 'visualization', 'results_root')
# Keys of other projects that mean something else here: the hint names ours.
FOREIGN_KEYS = {
    'use_hflip': 'geometric_augs: true (flips and rotations)', 'use_rot': 'geometric_augs: true (flips and rotations)',
    'use_flip': 'geometric_augs: true (flips and rotations)', 'meta_info': 'meta_info_file',
    'gpu_ids': 'num_gpu', 'n_gpu': 'num_gpu', 'niter': 'total_iter', 'batch_size': 'batch_size_per_gpu',
}
# A YAML scalar that is a number written as text: quoted, or 3e-4 (YAML 1.1 needs a dot: 3.0e-4).
_NUMBER_TEXT = re.compile(r'^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$')
# Keys whose values are names or paths and may legitimately look like numbers.
_TEXT_KEYS = ('name', 'type', 'meta_info_file', 'filename_tmpl', 'suffix', 'project', 'resume_id', 'db_paths',
              'client_keys', 'backend')


class OptionsError(ValueError):
    """An option file is invalid; the message lists every problem found."""


def load_options(path: str) -> Dict[str, Any]:
    """Read a YAML option file.

    Args:
        path: The option file.

    Returns:
        The options as a dict.

    Raises:
        OptionsError: The file is not valid YAML or not a mapping.
    """
    try:
        with open(path, encoding='utf-8') as f:
            opt = yaml.safe_load(f)
    except yaml.YAMLError as err:
        raise OptionsError(f'{path}: invalid YAML: {err}') from err
    if not isinstance(opt, dict):
        raise OptionsError(f'{path}: expected a mapping of options at the top level, got {type(opt).__name__}.')
    return opt


def _close_matches(name: Any, choices: Iterable[str]) -> List[str]:
    # Case-insensitive: 'Adamw' should suggest AdamW first.
    by_lower = {c.lower(): c for c in choices}
    return [by_lower[c] for c in difflib.get_close_matches(str(name).lower(), list(by_lower), n=3, cutoff=0.6)]


def _unknown(kind: str, name: Any, choices: Iterable[str], where: str) -> str:
    choices = sorted(choices)
    close = _close_matches(name, choices)
    hint = f'did you mean {", ".join(close)}?' if close else f'known {kind}s: {", ".join(choices)}.'
    return f'{where}: unknown {kind} {name!r}; {hint}'


class OptionsWarning(UserWarning):
    """An option is probably unused (unknown key); training goes on."""


def _check_keys(section: Any, known: Iterable[str], where: str, problems: List[str],
                also_known: Any = None) -> List[str]:
    """Report misspelled keys of ``section`` (errors) and other unknown keys (warnings); return the suggested keys."""
    if not isinstance(section, dict):
        return []
    known = list(known)
    suggested = []
    for key in section:
        if key in known or (also_known is not None and also_known(str(key))):
            continue
        name = f'{where}.{key}' if where else str(key)
        if key in FOREIGN_KEYS:
            problems.append(f'{name}: not an option of this project; use {FOREIGN_KEYS[key]}.')
            continue
        close = _close_matches(key, [k for k in known if k not in section])
        if close:
            suggested.append(close[0])
            problems.append(f'{name}: unknown option; did you mean {close[0]}? (BasicSR ignores unknown keys, so the '
                            'default would be used silently.)')
        else:
            warnings.warn(f'{name}: unknown option, not read by this project; remove it or check its spelling '
                          f'(known: {", ".join(sorted(known))}).', OptionsWarning, stacklevel=4)
    return suggested


def _check_numbers(value: Any, where: str, problems: List[str]) -> None:
    """Report numbers written as text: quoted ('128') or an exponent without a dot (3e-4), which YAML reads as str."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key not in _TEXT_KEYS and not str(key).startswith('dataroot'):
                _check_numbers(item, f'{where}.{key}' if where else str(key), problems)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_numbers(item, f'{where}[{i}]', problems)
    elif isinstance(value, str) and _NUMBER_TEXT.match(value.strip()):
        if 'e' in value.lower() and '.' not in value:
            hint = (f'YAML reads {value} as text because it has no decimal point; write {value.replace("e", ".0e", 1)}'
                    f' or !!float {value}')
        else:
            hint = 'remove the quotes'
        problems.append(f'{where}: {value!r} is text, not a number; {hint}.')


def _registries() -> Dict[str, Any]:
    # Importing this module ran restormer_arch/__init__, so the plugin's classes are registered already.
    from basicsr.utils.registry import ARCH_REGISTRY, DATASET_REGISTRY, LOSS_REGISTRY, METRIC_REGISTRY, MODEL_REGISTRY

    return {'arch': ARCH_REGISTRY, 'dataset': DATASET_REGISTRY, 'loss': LOSS_REGISTRY, 'metric': METRIC_REGISTRY,
            'model': MODEL_REGISTRY}


def _check_type(kind: str, name: Any, where: str, problems: List[str]) -> Optional[Any]:
    registry = _registries()[kind]
    if name is None:
        problems.append(f'{where}: missing "type".')
        return None
    if name not in registry:
        problems.append(_unknown(f'{kind} type', name, registry.keys(), where))
        return None
    return registry.get(name)


def _check_network(opt: Dict[str, Any], problems: List[str]) -> None:
    net_opt = opt.get('network_g')
    if not isinstance(net_opt, dict):
        problems.append('network_g: missing (a mapping with "type" and the network\'s constructor arguments).')
        return
    kwargs = {k: v for k, v in net_opt.items() if k != 'type'}
    cls = _check_type('arch', net_opt.get('type'), 'network_g.type', problems)
    if cls is None:
        return
    try:
        inspect.signature(cls).bind(**kwargs)
    except TypeError as err:
        params = [p for p in inspect.signature(cls).parameters if p not in ('args', 'kwargs')]
        unknown = [k for k in kwargs if k not in params]
        detail = '; '.join(_unknown('argument', k, params, f'network_g.{k}') for k in unknown) or str(err)
        problems.append(f'network_g ({net_opt["type"]}): {detail}')


def _as_int_list(value: Any, where: str, problems: List[str]) -> Optional[List[int]]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, int) and v > 0 for v in value):
        problems.append(f'{where}: expected a list of positive integers (one per stage, e.g. [92000, 208000]), got '
                        f'{value!r}.')
        return None
    return list(value)


def _check_progressive(train_set: Dict[str, Any], total_iter: Optional[int], problems: List[str]) -> None:
    gt_size = train_set.get('gt_size')
    if isinstance(gt_size, (float, bool)) or isinstance(gt_size, (list, dict)):
        problems.append(f'datasets.train.gt_size: expected an integer (the patch side, a multiple of {PATCH_MULTIPLE}),'
                        f' got {gt_size!r}.')
    elif isinstance(gt_size, int) and gt_size % PATCH_MULTIPLE:
        problems.append(f'datasets.train.gt_size: {gt_size!r} must be a multiple of {PATCH_MULTIPLE} (Restormer halves '
                        f'the patch three times); e.g. {gt_size // PATCH_MULTIPLE * PATCH_MULTIPLE or PATCH_MULTIPLE}.')
    keys = ('iters', 'mini_batch_sizes', 'gt_sizes')
    present = [k for k in keys if train_set.get(k) is not None]
    if not present:
        return
    if len(present) != len(keys):
        missing = [k for k in keys if k not in present]
        problems.append(f'datasets.train: progressive training needs {", ".join(keys)} together; '
                        f'{", ".join(missing)} missing.')
        return
    lists = {k: _as_int_list(train_set[k], f'datasets.train.{k}', problems) for k in keys}
    if any(v is None for v in lists.values()):
        return
    iters, batches, sizes = lists['iters'], lists['mini_batch_sizes'], lists['gt_sizes']
    if not len(iters) == len(batches) == len(sizes):
        problems.append(f'datasets.train: iters ({len(iters)}), mini_batch_sizes ({len(batches)}) and gt_sizes '
                        f'({len(sizes)}) need one entry per stage (the same length).')
    if total_iter is not None and sum(iters) != total_iter:
        problems.append(f'datasets.train.iters sums to {sum(iters)} but train.total_iter is {total_iter}; make them '
                        'equal (the last stage would otherwise be cut short or never reached).')
    bad = [s for s in sizes if s % PATCH_MULTIPLE]
    if bad:
        problems.append(f'datasets.train.gt_sizes: {bad} are not multiples of {PATCH_MULTIPLE} (Restormer halves the '
                        f'patch three times); round them to multiples of {PATCH_MULTIPLE}.')
    if isinstance(gt_size, int) and max(sizes) > gt_size:
        problems.append(f'datasets.train.gt_sizes: {max(sizes)} exceeds gt_size {gt_size} (the loader\'s patch, '
                        'from which every stage crops); raise gt_size or lower gt_sizes.')
    batch = train_set.get('batch_size_per_gpu')
    if isinstance(batch, int) and max(batches) > batch:
        problems.append(f'datasets.train.mini_batch_sizes: {max(batches)} exceeds batch_size_per_gpu {batch} (the '
                        'loader\'s batch, from which every stage samples); raise batch_size_per_gpu.')


def _check_datasets(opt: Dict[str, Any], is_train: bool, problems: List[str]) -> None:
    datasets = opt.get('datasets')
    if not isinstance(datasets, dict) or not datasets:
        problems.append('datasets: missing (a mapping of phases such as train / val / test_1).')
        return
    for phase, dataset_opt in datasets.items():
        where = f'datasets.{phase}'
        if phase != 'train' and phase.split('_')[0] not in ('val', 'test'):
            problems.append(f'{where}: phase names must be "train", "val*" or "test*".')
        if not isinstance(dataset_opt, dict):
            problems.append(f'{where}: expected a mapping.')
            continue
        _check_type('dataset', dataset_opt.get('type'), f'{where}.type', problems)
        _check_dataset_keys(phase, dataset_opt, problems)
        _check_numbers(dataset_opt, where, problems)
    if is_train and 'train' not in datasets:
        problems.append('datasets.train: missing; training needs a train dataset.')


def _check_scheduler(train_opt: Dict[str, Any], total_iter: Optional[int], problems: List[str]) -> None:
    from restormer_arch.models.image_clean_model import SCHEDULERS

    scheduler = train_opt.get('scheduler')
    if not isinstance(scheduler, dict):
        problems.append('train.scheduler: missing (e.g. type: CosineAnnealingRestartCyclicLR).')
        return
    name = scheduler.get('type')
    if name not in SCHEDULERS:
        problems.append(_unknown('scheduler type', name, SCHEDULERS, 'train.scheduler.type'))
        return
    if name in PERIODIC_SCHEDULERS:
        periods = _as_int_list(scheduler.get('periods'), 'train.scheduler.periods', problems)
        if periods and total_iter is not None and sum(periods) != total_iter:
            problems.append(f'train.scheduler.periods sums to {sum(periods)} but train.total_iter is {total_iter}; '
                            'make them equal so the schedule covers the whole run.')
        lengths = {k: len(scheduler[k]) for k in ('periods', 'restart_weights', 'eta_mins')
                   if isinstance(scheduler.get(k), (list, tuple))}
        if len(set(lengths.values())) > 1:
            problems.append(f'train.scheduler: {", ".join(lengths)} need the same length, got {lengths}.')


def _check_train(opt: Dict[str, Any], problems: List[str]) -> None:
    train_opt = opt.get('train')
    if not isinstance(train_opt, dict):
        problems.append('train: missing (optimizer, scheduler, total_iter, losses).')
        return
    _check_keys(train_opt, TRAIN_KEYS, 'train', problems, also_known=lambda k: k.endswith('_opt'))
    _check_numbers(train_opt, 'train', problems)
    total_iter = train_opt.get('total_iter')
    if isinstance(total_iter, float) and total_iter.is_integer():
        total_iter = int(total_iter)
    if not isinstance(total_iter, int) or total_iter <= 0:
        problems.append(f'train.total_iter: expected a positive integer, got {total_iter!r}.')
        total_iter = None
    optim = (train_opt.get('optim_g') or {}).get('type')
    optimizers = [n for n, c in vars(torch.optim).items()
                  if isinstance(c, type) and issubclass(c, torch.optim.Optimizer)]
    if optim not in optimizers:
        problems.append(_unknown('optimizer', optim, optimizers, 'train.optim_g.type'))
    for key, loss_opt in train_opt.items():
        if key.endswith('_opt') and isinstance(loss_opt, dict):
            _check_type('loss', loss_opt.get('type'), f'train.{key}.type', problems)
    _check_scheduler(train_opt, total_iter, problems)
    train_set = (opt.get('datasets') or {}).get('train')
    if isinstance(train_set, dict):
        _check_progressive(train_set, total_iter, problems)


def _check_val(opt: Dict[str, Any], problems: List[str]) -> None:
    from restormer_arch.models.results_table import check_combined_rows
    from restormer_arch.models.val_utils import check_val_options

    val_opt = opt.get('val') or {}
    metrics = val_opt.get('metrics') or {}
    for name, metric_opt in metrics.items():
        _check_type('metric', (metric_opt or {}).get('type'), f'val.metrics.{name}.type', problems)
    problems.extend(check_val_options(val_opt))
    rows = val_opt.get('combined_rows')
    row_problems = check_combined_rows(rows)
    problems.extend(row_problems)
    if rows and not row_problems:
        names = {d.get('name') for d in (opt.get('datasets') or {}).values() if isinstance(d, dict)}
        for row in rows:
            unknown = [d for d in row['datasets'] if d not in names]
            if unknown:
                problems.append(f'val.combined_rows ({row["name"]}): {", ".join(unknown)} is not the name of a '
                                f'dataset of this file (names: {", ".join(sorted(map(str, names)))}).')


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


def _check_dataset_keys(phase: str, dataset_opt: Dict[str, Any], problems: List[str]) -> None:
    spec = DATASET_TYPES.get(dataset_opt.get('type'))
    if spec is None:  # a BasicSR or third-party dataset: its keys are its own business
        return
    where = f'datasets.{phase}'
    suggested = _check_keys(dataset_opt, DATASET_KEYS + spec['keys'], where, problems)
    required = spec['required']
    if phase == 'train':
        required += spec['required_train'] + ('gt_size', 'batch_size_per_gpu', 'num_worker_per_gpu')
    else:
        required += spec['required_eval']
    for key in required:
        if dataset_opt.get(key) is None and key not in suggested:
            problems.append(f'{where}.{key}: missing; add {key}: ... ({REQUIRED_HINTS[key]}).')


def _network_arg(opt: Dict[str, Any], name: str) -> Any:
    net_opt = opt.get('network_g') or {}
    if name in net_opt:
        return net_opt[name]
    cls = _registries()['arch'].get(net_opt['type']) if net_opt.get('type') in _registries()['arch'] else None
    param = inspect.signature(cls).parameters.get(name) if cls is not None else None
    return None if param is None or param.default is inspect.Parameter.empty else param.default


def _check_channels(opt: Dict[str, Any], problems: List[str]) -> None:
    """Compare what each dataset delivers (gray/RGB/dual-pixel) with the network's channels."""
    inp, out, dual = (_network_arg(opt, k) for k in ('inp_channels', 'out_channels', 'dual_pixel_task'))
    if not isinstance(inp, int):
        return  # not a network with inp_channels (or not one we know): nothing to compare
    for phase, dataset_opt in (opt.get('datasets') or {}).items():
        if not isinstance(dataset_opt, dict) or dataset_opt.get('type') not in DATASET_TYPES:
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


def _check_scale(opt: Dict[str, Any], problems: List[str]) -> None:
    scale = opt.get('scale', 1)
    uses_plugin = (opt.get('network_g') or {}).get('type') == 'Restormer' or any(
        isinstance(d, dict) and d.get('type') in DATASET_TYPES for d in (opt.get('datasets') or {}).values())
    if scale != 1 and uses_plugin and not isinstance(scale, str):
        problems.append(f'scale: {scale!r}; Restormer and its datasets restore images at their input size, so scale '
                        'must be 1; set scale: 1.')


def _check_devices(opt: Dict[str, Any], problems: List[str]) -> None:
    if 'num_gpu' not in opt:
        problems.append('num_gpu: missing; set num_gpu: auto (every visible GPU, 0 without CUDA), 0 for the CPU, or a '
                        'number of GPUs.')
        return
    num_gpu, count = opt['num_gpu'], torch.cuda.device_count()
    if num_gpu == 'auto':
        num_gpu = count
    elif not isinstance(num_gpu, int) or isinstance(num_gpu, bool) or num_gpu < 0:
        problems.append(f'num_gpu: expected auto, 0 (CPU) or a number of GPUs, got {num_gpu!r}.')
        return
    elif num_gpu > count:
        problems.append(f'num_gpu: {num_gpu}, but this machine has {count} usable CUDA GPU(s); set num_gpu: auto (the '
                        'GPUs that are there, 0 without CUDA) or num_gpu: 0 to run on the CPU.')
    for phase, dataset_opt in (opt.get('datasets') or {}).items():
        mode = dataset_opt.get('prefetch_mode') if isinstance(dataset_opt, dict) else None
        where = f'datasets.{phase}.prefetch_mode'
        if mode not in (None, 'cpu', 'cuda'):
            problems.append(f'{where}: {mode!r} is not a prefetch mode; use ~ (plain loader), cpu or cuda.')
        elif mode == 'cuda' and (count == 0 or num_gpu == 0):
            problems.append(f'{where}: cuda needs a CUDA GPU and num_gpu > 0 (this machine has {count}, num_gpu is '
                            f'{opt["num_gpu"]!r}); use prefetch_mode: ~ or cpu.')
        elif mode == 'cuda' and dataset_opt.get('pin_memory') is not True:
            problems.append(f'{where}: cuda needs pin_memory: true in datasets.{phase} (BasicSR refuses it otherwise, '
                            'after building everything).')


def _check_paths(opt: Dict[str, Any], is_train: bool, problems: List[str]) -> None:
    path_opt = opt.get('path')
    if not isinstance(path_opt, dict):
        problems.append('path: missing; add path: {pretrain_network_g: ~, strict_load_g: true, resume_state: ~}.')
        return
    _check_keys(path_opt, PATH_KEYS, 'path', problems, also_known=lambda k: k.startswith(('pretrain_network_',
                                                                                         'strict_load_', 'param_key_')))
    for key, value in path_opt.items():
        if key.startswith('pretrain_network_') and value and not os.path.isfile(os.path.expanduser(str(value))):
            problems.append(f'path.{key}: file {value} does not exist; fix the path (relative paths start in the '
                            'directory you run basicsr from), or set it to ~ to start from random weights.')
    if not is_train and not path_opt.get('pretrain_network_g') and (opt.get('network_g') or {}).get('type'):
        warnings.warn('path.pretrain_network_g: missing, so basicsr test evaluates a network with random weights; '
                      'point it at the checkpoint to test (e.g. experiments/<name>/models/net_g_latest.pth).',
                      OptionsWarning, stacklevel=3)
    resume = path_opt.get('resume_state')
    if is_train and resume:
        resume = os.path.expanduser(str(resume))
        if not os.path.isfile(resume):
            problems.append(f'path.resume_state: file {resume} does not exist; point it at an existing '
                            'experiments/<name>/training_states/<iter>.state, or use --auto_resume.')
        elif resume.endswith(('.pth', '.pt')):
            problems.append(f'path.resume_state: {resume} is a network checkpoint, not a training state; resume from '
                            'experiments/<name>/training_states/<iter>.state, or set path.pretrain_network_g to the '
                            '.pth to start a new run from these weights.')


def _positive_int(value: Any) -> bool:
    # Integral floats are fine: the official files write frequencies as !!float 4e3.
    whole = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    return whole and not isinstance(value, bool) and value > 0


def _check_logger_and_val(opt: Dict[str, Any], is_train: bool, problems: List[str]) -> None:
    val = opt.get('val')
    eval_phases = [p for p in (opt.get('datasets') or {}) if p != 'train']
    if val is not None and not isinstance(val, dict):
        problems.append('val: expected a mapping (val_freq, save_img, metrics).')
        return
    if val is not None:
        _check_keys(val, VAL_KEYS, 'val', problems)
    if not is_train:
        if val is None or 'save_img' not in val:
            problems.append('val.save_img: missing; basicsr test reads it (and val.metrics); add val: {save_img: true, '
                            'metrics: ...}.')
        return
    logger = opt.get('logger')
    if not isinstance(logger, dict):
        problems.append('logger: missing; add logger: {print_freq: 100, save_checkpoint_freq: 5000, '
                        'use_tb_logger: true}.')
    else:
        _check_keys(logger, LOGGER_KEYS, 'logger', problems)
        for key in ('print_freq', 'save_checkpoint_freq'):
            if not _positive_int(logger.get(key)):
                problems.append(f'logger.{key}: expected a positive integer (iterations), got {logger.get(key)!r}.')
        if 'use_tb_logger' not in logger:
            problems.append('logger.use_tb_logger: missing (BasicSR reads logger["use_tb_logger"] and stops with a '
                            'KeyError); set it to true or false.')
    if val is None:
        if eval_phases:
            problems.append(f'datasets.{eval_phases[0]}: never used, because there is no val section (BasicSR only '
                            'validates with one); add val: {val_freq: 5000, save_img: false, metrics: ...}, or remove '
                            'the dataset.')
        return
    if not eval_phases:
        problems.append('val: given, but datasets has no val entry, so nothing would be validated or saved; add a '
                        'datasets.val dataset, or remove the val section.')
    if not _positive_int(val.get('val_freq')):
        problems.append(f'val.val_freq: expected a positive integer (validate every N iterations), got '
                        f'{val.get("val_freq")!r}.')
    if 'save_img' not in val:
        problems.append('val.save_img: missing (BasicSR reads it at the first validation and stops with a KeyError); '
                        'set it to true or false.')


def validate_options(opt: Dict[str, Any], is_train: Optional[bool] = None, source: str = 'options') -> None:
    """Check an option dict and raise one error listing every problem.

    Args:
        opt: Options as read from YAML (before BasicSR's ``parse_options``).
        is_train: Check the training sections too; by default when the file has a ``train`` section.
        source: Name of the file, for the message.

    Raises:
        OptionsError: At least one problem was found.
    """
    if is_train is None:
        is_train = 'train' in opt
    problems: List[str] = []
    _check_keys(opt, TOP_LEVEL_KEYS, '', problems, also_known=lambda k: k.startswith('network_'))
    if not opt.get('name'):
        problems.append('name: missing (the experiment name: results go to experiments/<name>).')
    _check_type('model', opt.get('model_type'), 'model_type', problems)
    _check_numbers({k: opt.get(k) for k in ('scale', 'num_gpu', 'manual_seed') if k in opt}, '', problems)
    _check_devices(opt, problems)
    _check_network(opt, problems)
    _check_numbers(opt.get('network_g'), 'network_g', problems)
    _check_scale(opt, problems)
    _check_datasets(opt, is_train, problems)
    _check_channels(opt, problems)
    _check_paths(opt, is_train, problems)
    if is_train:
        _check_train(opt, problems)
    _check_logger_and_val(opt, is_train, problems)
    _check_numbers(opt.get('val'), 'val', problems)
    _check_numbers(opt.get('logger'), 'logger', problems)
    _check_val(opt, problems)
    if problems:
        raise OptionsError(f'{source}: {len(problems)} problem(s) in the options:\n  - ' + '\n  - '.join(problems))


def validate_options_file(path: str, is_train: Optional[bool] = None) -> Dict[str, Any]:
    """Load and check an option file (see :func:`validate_options`).

    Args:
        path: The YAML option file.
        is_train: Check the training sections too; by default when the file has a ``train`` section.

    Returns:
        The options as read from the file.
    """
    opt = load_options(path)
    validate_options(opt, is_train, source=path)
    return opt

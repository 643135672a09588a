"""Check a BasicSR option file before training starts, with messages that say which key is wrong and how to fix it.

BasicSR only finds most mistakes deep into a run (a misspelled ``type`` after the data is loaded, an LR scheduler that
runs out of periods at the last iteration, a progressive schedule that is never reached). :func:`validate_options`
finds them up front; the ``basicsr`` command calls it on every ``-opt`` file before handing over to BasicSR.
"""
import difflib
import inspect
from typing import Any, Dict, Iterable, List, Optional

import torch
import yaml

PATCH_MULTIPLE = 8  # Restormer down-samples three times, so training patches must be multiples of 8.
PERIODIC_SCHEDULERS = ('CosineAnnealingRestartLR', 'CosineAnnealingRestartCyclicLR')


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


def _unknown(kind: str, name: Any, choices: Iterable[str], where: str) -> str:
    choices = sorted(choices)
    # Case-insensitive: 'Adamw' should suggest AdamW first.
    by_lower = {c.lower(): c for c in choices}
    close = [by_lower[c] for c in difflib.get_close_matches(str(name).lower(), list(by_lower), n=3, cutoff=0.6)]
    hint = f'did you mean {", ".join(close)}?' if close else f'known {kind}s: {", ".join(choices)}.'
    return f'{where}: unknown {kind} {name!r}; {hint}'


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
        problems.append(f'{where}: expected a list of positive integers, got {value!r}.')
        return None
    return list(value)


def _check_progressive(train_set: Dict[str, Any], total_iter: Optional[int], problems: List[str]) -> None:
    gt_size = train_set.get('gt_size')
    if gt_size is not None and (not isinstance(gt_size, int) or gt_size % PATCH_MULTIPLE):
        problems.append(f'datasets.train.gt_size: {gt_size!r} must be a multiple of {PATCH_MULTIPLE}.')
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
        problems.append(f'datasets.train.gt_sizes: {bad} are not multiples of {PATCH_MULTIPLE}.')
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
    _check_type('model', opt.get('model_type'), 'model_type', problems)
    _check_network(opt, problems)
    _check_datasets(opt, is_train, problems)
    if is_train:
        _check_train(opt, problems)
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

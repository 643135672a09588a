"""Check a BasicSR option file before training starts, with messages that say which key is wrong and how to fix it.

BasicSR only finds most mistakes deep into a run (a misspelled ``type`` after the data is loaded, an LR scheduler that
runs out of periods at the last iteration, a missing package after the run folder is made). The ``basicsr`` command
calls :func:`check_command_line` first: it reads the file as BasicSR will (``--force_yml`` applied, ``num_gpu: auto``
resolved, ``path.*`` filled in, see :func:`restormer_arch.options_resolve.resolve_options`) and judges *those* options.

This module only walks the file and collects messages; it judges itself only what belongs to BasicSR (the top level,
``network_*``, ``num_gpu`` and prefetching, ``path``, ``logger``, and the ``train``/``val`` keys every model reads:
``total_iter``, optimizers, losses, metrics). The sections that belong to a component are judged by that component,
next to the code that reads them: the datasets (:mod:`restormer_arch.data.options`), ImageCleanModel's ``train``/``val``
keys (:mod:`restormer_arch.models.model_options`), the progressive schedule and mixup
(:mod:`restormer_arch.models.progressive`), the LR schedule (:mod:`restormer_arch.models.lr_scheduler`), the
per-image tables (:mod:`restormer_arch.models.results_table`), ``performance`` (:mod:`restormer_arch.perf`). The rules
they share (unknown keys, numbers written as text, registered types and their arguments) are in
:mod:`restormer_arch.option_checks`.

Errors are kept for what would crash or silently go wrong; anything else, in particular keys that BasicSR or another
plugin may read, is at most a warning (:class:`OptionsWarning`).
"""
import importlib.util
import os
import warnings
from typing import Any, Dict, Iterable, List, Optional, Sequence

import torch

from restormer_arch import perf
from restormer_arch.data.options import (
    check_channels,
    check_dataset_options,
    check_datasets,
    missing_data_paths,
    plugin_dataset,
)
from restormer_arch.models.lr_scheduler import check_scheduler_section
from restormer_arch.models.model_options import check_train_options, check_val_options, is_image_clean_model
from restormer_arch.models.progressive import PATCH_MULTIPLE
from restormer_arch.option_checks import (
    OptionsError,
    OptionsWarning,
    check_arguments,
    check_keys,
    check_numbers,
    check_type,
    is_recognised,
    note_known,
    reset_recognised,
    unknown_choice,
)
from restormer_arch.options_resolve import (
    CommandLine,
    apply_overrides,
    load_options,
    parse_command_line,
    resolve_options,
)

# Importers of this module use these names from here.
__all__ = ['OptionsError', 'OptionsWarning', 'CommandLine', 'load_options', 'parse_command_line', 'apply_overrides',
           'resolve_options', 'validate_options', 'validate_options_file', 'check_command_line', 'check_keys',
           'check_dataset_options', 'PATCH_MULTIPLE']

# Keys each section may hold. In sections of this project, a key that is not listed but close to a listed one that is
# absent (``gt_szie`` for ``gt_size``) is an error; elsewhere only a very close one is (``num_gpus``); any other unknown
# key is a warning (a plugin of yours may read it).
TOP_LEVEL_KEYS = ('name', 'model_type', 'scale', 'num_gpu', 'manual_seed', 'datasets', 'network_g', 'path', 'train',
                  'val', 'logger', 'dist_params', 'find_unused_parameters', 'performance',
                  # set by BasicSR's parse_options / the train pipeline
                  'is_train', 'dist', 'rank', 'world_size', 'auto_resume', 'root_path')
# BasicSR's train/test pipelines (and MessageLogger) read these; ``wandb`` is {project, resume_id}.
LOGGER_KEYS = ('print_freq', 'save_checkpoint_freq', 'use_tb_logger', 'wandb')
# BasicSR's own ``val`` keys, for models other than ImageCleanModel (whose keys are in models/model_options.py).
BASICSR_VAL_KEYS = ('val_freq', 'save_img', 'suffix', 'metrics', 'pbar')
PATH_KEYS = ('pretrain_network_g', 'strict_load_g', 'param_key_g', 'resume_state',
             # set by BasicSR's parse_options
             'experiments_root', 'models', 'training_states', 'log', 'visualization', 'results_root')


def _check_network(opt: Dict[str, Any], problems: List[str]) -> None:
    if not isinstance(opt.get('network_g'), dict):
        problems.append('network_g: missing (a mapping with "type" and the network\'s constructor arguments).')
    for key, net_opt in opt.items():
        if not str(key).startswith('network_') or not isinstance(net_opt, dict):
            continue
        cls = check_type('arch', net_opt.get('type'), f'{key}.type', problems)
        if cls is not None:
            kwargs = {k: v for k, v in net_opt.items() if k != 'type'}
            check_arguments(cls, kwargs, key, net_opt['type'], problems)
        check_numbers(net_opt, key, problems)


def _check_scale(opt: Dict[str, Any], problems: List[str]) -> None:
    scale = opt.get('scale', 1)
    uses_plugin = (opt.get('network_g') or {}).get('type') == 'Restormer' or any(
        plugin_dataset(d) is not None for d in (opt.get('datasets') or {}).values())
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
    check_keys(path_opt, PATH_KEYS, 'path', problems,
               also_known=lambda k: k.startswith(('pretrain_network_', 'strict_load_', 'param_key_')))
    for key, value in path_opt.items():
        if key.startswith('pretrain_network_') and value and os.path.isdir(os.path.expanduser(str(value))):
            problems.append(f'path.{key}: {value} is a folder, not a checkpoint file; name the .pth file inside it.')
        elif key.startswith('pretrain_network_') and value and not os.path.isfile(os.path.expanduser(str(value))):
            fix = ('fetch the released checkpoints with `basicsr weights` (into pretrained_models/)' if not is_train
                   else 'set it to ~ to start from random weights')
            problems.append(f'path.{key}: file {value} does not exist; fix the path (relative paths start in the '
                            f'directory you run basicsr from), or {fix}.')
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


def _total_iter(train_opt: Dict[str, Any], problems: List[str]) -> Optional[int]:
    total_iter = train_opt.get('total_iter')
    if isinstance(total_iter, float) and total_iter.is_integer():
        total_iter = int(total_iter)  # the official files write !!float 3e5
    if not isinstance(total_iter, int) or isinstance(total_iter, bool) or total_iter <= 0:
        problems.append(f'train.total_iter: expected a positive integer, got {total_iter!r}.')
        return None
    return total_iter


def _check_train(opt: Dict[str, Any], problems: List[str]) -> None:
    train_opt = opt.get('train')
    if not isinstance(train_opt, dict):
        problems.append('train: missing (optimizer, scheduler, total_iter, losses).')
        return
    check_numbers(train_opt, 'train', problems)
    total_iter = _total_iter(train_opt, problems)
    if 'optim_g' not in train_opt:
        problems.append('train.optim_g: missing (e.g. type: AdamW, lr: 3.0e-4).')
    optimizers = {n: c for n, c in vars(torch.optim).items() if isinstance(c, type) and
                  issubclass(c, torch.optim.Optimizer) and c is not torch.optim.Optimizer}
    for key, section in train_opt.items():
        if not isinstance(section, dict):
            continue
        if key.startswith('optim_'):
            optim = section.get('type')
            if optim not in optimizers:
                problems.append(unknown_choice('optimizer', optim, optimizers, f'train.{key}.type'))
            else:
                kwargs = {k: v for k, v in section.items() if k != 'type'}
                check_arguments(optimizers[optim], kwargs, f'train.{key}', optim, problems, leading=1)
        elif key.endswith('_opt'):
            loss = check_type('loss', section.get('type'), f'train.{key}.type', problems)
            if loss is not None:
                kwargs = {k: v for k, v in section.items() if k != 'type'}
                check_arguments(loss, kwargs, f'train.{key}', section['type'], problems)
    problems.extend(check_scheduler_section(opt, total_iter, is_image_clean_model(opt)))
    if is_image_clean_model(opt):
        problems.extend(check_train_options(opt, total_iter))


def _check_val(opt: Dict[str, Any], is_train: bool, problems: List[str]) -> None:
    val = opt.get('val')
    eval_phases = [p for p in (opt.get('datasets') or {}) if p != 'train']
    if val is not None and not isinstance(val, dict):
        problems.append('val: expected a mapping (val_freq, save_img, metrics).')
        return
    if val is not None:
        metrics = val.get('metrics') or {}
        for name, metric_opt in metrics.items() if isinstance(metrics, dict) else ():
            metric_opt = metric_opt if isinstance(metric_opt, dict) else {}
            metric = check_type('metric', metric_opt.get('type'), f'val.metrics.{name}.type', problems)
            if metric is not None:  # BasicSR passes the images too: only the names are judged
                kwargs = {k: v for k, v in metric_opt.items() if k != 'type'}
                check_arguments(metric, kwargs, f'val.metrics.{name}', metric_opt['type'], problems, partial=True)
        if is_image_clean_model(opt):
            problems.extend(check_val_options(opt))
        else:
            check_keys(val, BASICSR_VAL_KEYS, 'val', problems)
        check_numbers(val, 'val', problems)
    if not is_train:
        if val is None or 'save_img' not in val:
            problems.append('val.save_img: missing; basicsr test reads it (and val.metrics); add val: {save_img: true, '
                            'metrics: ...}.')
        return
    if val is None:
        if eval_phases:
            warnings.warn(f'datasets.{eval_phases[0]}: never used, because there is no val section (BasicSR only '
                          'validates with one); add val: {val_freq: 5000, save_img: false, metrics: ...}, or remove '
                          'the dataset.', OptionsWarning, stacklevel=3)
        return
    if not eval_phases:
        warnings.warn('val: given, but datasets has no val entry, so nothing will be validated or saved; add a '
                      'datasets.val dataset, or remove the val section.', OptionsWarning, stacklevel=3)
        return
    if not _positive_int(val.get('val_freq')):
        problems.append(f'val.val_freq: expected a positive integer (validate every N iterations), got '
                        f'{val.get("val_freq")!r}.')
    if 'save_img' not in val:
        problems.append('val.save_img: missing (BasicSR reads it at the first validation and stops with a KeyError); '
                        'set it to true or false.')


def _positive_int(value: Any) -> bool:
    # Integral floats are fine: the official files write frequencies as !!float 4e3.
    whole = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    return whole and not isinstance(value, bool) and value > 0


def _check_logger(opt: Dict[str, Any], problems: List[str]) -> None:
    logger = opt.get('logger')
    if not isinstance(logger, dict):
        problems.append('logger: missing; add logger: {print_freq: 100, save_checkpoint_freq: 5000, '
                        'use_tb_logger: true}.')
        return
    check_keys(logger, LOGGER_KEYS, 'logger', problems)
    check_numbers(logger, 'logger', problems)
    for key in ('print_freq', 'save_checkpoint_freq'):
        if not _positive_int(logger.get(key)):
            problems.append(f'logger.{key}: expected a positive integer (iterations), got {logger.get(key)!r}.')
    if 'use_tb_logger' not in logger:
        problems.append('logger.use_tb_logger: missing (BasicSR reads logger["use_tb_logger"] and stops with a '
                        'KeyError); set it to true or false.')
    debug = 'debug' in str(opt.get('name'))
    wandb = logger.get('wandb')
    if wandb is not None and not isinstance(wandb, dict):
        problems.append(f'logger.wandb: expected a mapping {{project, resume_id}}, got {wandb!r}.')
    elif wandb and wandb.get('project') is not None:
        note_known('logger.wandb', ('project', 'resume_id'))
        if importlib.util.find_spec('wandb') is None:
            problems.append('logger.wandb.project: Weights & Biases logging needs the wandb package, which is not '
                            'installed; pip install wandb (and wandb login), or set project: ~.')
        if logger.get('use_tb_logger') is not True:
            problems.append('logger.wandb.project: BasicSR logs to Weights & Biases through TensorBoard and stops '
                            'unless logger.use_tb_logger is true; set it to true, or set project: ~.')
    if logger.get('use_tb_logger') and not debug and importlib.util.find_spec('tensorboard') is None:
        problems.append('logger.use_tb_logger: TensorBoard logging needs the tensorboard package, which is not '
                        'installed; pip install tensorboard, or set use_tb_logger: false.')


def _validate(opt: Dict[str, Any], is_train: bool) -> List[str]:
    problems: List[str] = []
    check_keys(opt, TOP_LEVEL_KEYS, '', problems, also_known=lambda k: k.startswith('network_'))
    if not opt.get('name'):
        problems.append('name: missing (the experiment name: results go to experiments/<name>).')
    check_type('model', opt.get('model_type'), 'model_type', problems)
    check_numbers({k: opt.get(k) for k in ('scale', 'num_gpu', 'manual_seed') if k in opt}, '', problems)
    _check_devices(opt, problems)
    _check_network(opt, problems)
    _check_scale(opt, problems)
    problems.extend(check_datasets(opt, is_train))
    problems.extend(check_channels(opt))
    _check_paths(opt, is_train, problems)
    if is_train:
        _check_train(opt, problems)
        _check_logger(opt, problems)
    _check_val(opt, is_train, problems)
    problems.extend(perf.check_options(opt.get('performance'), where='performance'))
    _check_pretrained_network(opt, problems)
    return problems


def _check_pretrained_network(opt: Dict[str, Any], problems: List[str]) -> None:
    """ImageCleanModel loads ``path.pretrain_network_g`` with our loader: check now that it loads into network_g
    (built on the meta device: nothing is allocated), so that a wrong file stops before BasicSR makes any folder."""
    # The registry, not basicsr.archs.build_network: that one logs, and logging now would set BasicSR's logger up
    # without the run's log file.
    from basicsr.utils.registry import ARCH_REGISTRY

    from restormer_arch.checkpoint import CheckpointLoadError, check_checkpoint_fits

    path_opt = opt.get('path') if isinstance(opt.get('path'), dict) else {}
    load_path = os.path.expanduser(str(path_opt.get('pretrain_network_g') or ''))
    if not is_image_clean_model(opt) or not isinstance(opt.get('network_g'), dict) or not os.path.isfile(load_path):
        return
    net_opt = dict(opt['network_g'])
    try:
        with torch.device('meta'):
            network = ARCH_REGISTRY.get(net_opt.pop('type'))(**net_opt)
    except Exception:  # the network check owns construction problems; the model reports anything left
        return
    try:
        check_checkpoint_fits(network.state_dict(), load_path, path_opt.get('strict_load_g', True),
                              path_opt.get('param_key_g', 'params'), type(network).__name__, log=False)
    except CheckpointLoadError as err:
        message = str(err).replace('path.pretrain_network_*', 'path.pretrain_network_g')
        problems.append(message if message.startswith('path.') else f'path.pretrain_network_g: {message}')


def _raise(source: str, problems: List[str]) -> None:
    if problems:
        raise OptionsError(f'{source}: {len(problems)} problem(s) in the options:\n  - ' + '\n  - '.join(problems))


def validate_options(opt: Dict[str, Any], is_train: Optional[bool] = None, source: str = 'options',
                     created: Iterable[str] = ()) -> None:
    """Check an option dict and raise one error listing every problem; warn (:class:`OptionsWarning`) about the rest.

    Args:
        opt: Options as read from YAML, or as resolved by :func:`resolve_options` (what BasicSR runs).
        is_train: Check the training sections too; by default when the file has a ``train`` section.
        source: Name of the file, for the message.
        created: Dotted names of keys that ``--force_yml`` created: each must be one that some check knows.

    Raises:
        OptionsError: At least one problem was found.
    """
    if is_train is None:
        is_train = 'train' in opt
    reset_recognised()
    problems = _validate(opt, is_train)
    for key in sorted(created):
        if not is_recognised(key):
            problems.append(f'--force_yml: {key} is not in the option file and is not an option this run reads '
                            '(BasicSR would add it and nothing would use it); check the spelling, or write it in the '
                            'file.')
    _raise(source, problems)


def validate_options_file(path: str, is_train: Optional[bool] = None, cmd: Optional[CommandLine] = None,
                          root_path: Optional[str] = None) -> Dict[str, Any]:
    """Load an option file, resolve it as BasicSR will (:func:`resolve_options`) and check the result.

    Args:
        path: The YAML option file.
        is_train: Check the training sections too; by default when the file has a ``train`` section.
        cmd: BasicSR's command-line flags (``--force_yml``, ``--debug``, ...); none by default.
        root_path: Where ``experiments/`` / ``results/`` go (the current directory by default).

    Returns:
        The resolved options (what BasicSR's pipeline will receive, less its random seed and process group).

    Raises:
        OptionsError: The file cannot be read, or the options have problems (all listed).
    """
    opt = load_options(path)
    if is_train is None:
        is_train = 'train' in opt
    resolved, problems, created = resolve_options(opt, is_train, cmd, root_path)
    try:
        validate_options(resolved, is_train, source=path, created=created)
    except OptionsError as err:
        problems.extend(str(err).split('\n  - ')[1:])
    _raise(path, problems)
    return resolved


def check_command_line(command: str, argv: Sequence[str]) -> Optional[Dict[str, Any]]:
    """Check what ``basicsr train|test ARGV`` will run, before BasicSR creates anything.

    Args:
        command: ``train`` or ``test``.
        argv: The arguments after the command.

    Returns:
        The resolved options, or ``None`` when there is nothing to check (``--help``, or a command line BasicSR itself
        refuses with its usage message).

    Raises:
        OptionsError: The option file is missing or unreadable, or the options have problems.
    """
    if '-h' in argv or '--help' in argv:
        return None
    cmd = parse_command_line(argv)
    if cmd is None:
        return None
    resolved = validate_options_file(cmd.opt_path, is_train=command == 'train', cmd=cmd)
    _raise(cmd.opt_path, missing_data_paths(resolved))  # only for a real run: the option checks judge options alone
    return resolved

"""Check a BasicSR option file before training starts, with messages that say which key is wrong and how to fix it.

BasicSR only finds most mistakes deep into a run (a misspelled ``type`` after the data is loaded, an LR scheduler that
runs out of periods at the last iteration, a missing package after the run folder is made). The ``basicsr`` command
calls :func:`check_command_line` first: it reads the file as BasicSR will (``--force_yml`` applied, ``num_gpu: auto``
resolved, ``path.*`` filled in, see :func:`resolve_options`) and judges *those* options.

This module only walks the file and collects messages. The sections that belong to a component are judged by that
component, next to the code that reads them: ImageCleanModel's ``train``/``val`` keys
(:mod:`restormer_arch.models.model_options`), the progressive schedule and mixup
(:mod:`restormer_arch.models.progressive`), the LR schedule (:mod:`restormer_arch.models.lr_scheduler`), the
per-image tables (:mod:`restormer_arch.models.results_table`), ``performance`` (:mod:`restormer_arch.perf`). Network,
loss, optimizer, scheduler and metric arguments are judged against the signature of what receives them.

Errors are kept for what would crash or silently go wrong; anything else, in particular keys that BasicSR or another
plugin may read, is at most a warning (:class:`OptionsWarning`).
"""
import argparse
import copy
import difflib
import importlib.util
import inspect
import os
import re
import warnings
from typing import Any, Callable, Dict, Iterable, List, NamedTuple, Optional, Sequence, Set, Tuple

import torch
import yaml

from restormer_arch.models.progressive import PATCH_MULTIPLE, PROGRESSIVE_KEYS  # noqa: F401  (PATCH_MULTIPLE: API)

# Keys each section may hold. In sections of this project, a key that is not listed but close to a listed one that is
# absent (``gt_szie`` for ``gt_size``) is an error; elsewhere only a very close one is (``num_gpus``); any other unknown
# key is a warning (a plugin of yours may read it).
TOP_LEVEL_KEYS = ('name', 'model_type', 'scale', 'num_gpu', 'manual_seed', 'datasets', 'network_g', 'path', 'train',
                  'val', 'logger', 'dist_params', 'find_unused_parameters', 'performance',
                  # set by BasicSR's parse_options / the train pipeline
                  'is_train', 'dist', 'rank', 'world_size', 'auto_resume', 'root_path')
DATASET_KEYS = ('name', 'type', 'phase', 'scale', 'dataroot_gt', 'dataroot_lq', 'io_backend', 'meta_info_file',
                'filename_tmpl', 'use_shuffle', 'num_worker_per_gpu', 'batch_size_per_gpu', 'dataset_enlarge_ratio',
                'prefetch_mode', 'pin_memory', 'persistent_workers', 'num_prefetch_queue', 'gt_size', 'geometric_augs',
                'use_padding', 'mean', 'std', 'check_images') + PROGRESSIVE_KEYS
DUAL_PIXEL_DATASETS = ('Dataset_DefocusDeblur_DualPixel_16bit',)
# BasicSR's train/test pipelines (and MessageLogger) read these; ``wandb`` is {project, resume_id}.
LOGGER_KEYS = ('print_freq', 'save_checkpoint_freq', 'use_tb_logger', 'wandb')
# BasicSR's own ``val`` keys, for models other than ImageCleanModel (whose keys are in models/model_options.py).
BASICSR_VAL_KEYS = ('val_freq', 'save_img', 'suffix', 'metrics', 'pbar')
PATH_KEYS = ('pretrain_network_g', 'strict_load_g', 'param_key_g', 'resume_state',
             # set by BasicSR's parse_options
             'experiments_root', 'models', 'training_states', 'log', 'visualization', 'results_root')
# BasicSR's BaseModel.setup_schedulers knows only these; ImageCleanModel has its own list.
BASICSR_SCHEDULERS = ('MultiStepLR', 'MultiStepRestartLR', 'CosineAnnealingRestartLR')
PLUGIN_MODELS = ('ImageCleanModel',)
# Keys of other projects that mean something else here: the hint names ours.
FOREIGN_KEYS = {
    'use_hflip': 'geometric_augs: true (flips and rotations)', 'use_rot': 'geometric_augs: true (flips and rotations)',
    'use_flip': 'geometric_augs: true (flips and rotations)', 'meta_info': 'meta_info_file',
    'gpu_ids': 'num_gpu', 'n_gpu': 'num_gpu', 'niter': 'total_iter', 'batch_size': 'batch_size_per_gpu',
}
# Registered types that need a package this project does not depend on: (kind, type) -> (module, how to install).
EXTRA_PACKAGES = {
    ('metric', 'calculate_lpips'): ('lpips', "pip install 'restormer-basicsr[lpips]' (or: pip install lpips)"),
}
# A YAML scalar that is a number written as text: quoted, or 3e-4 (YAML 1.1 needs a dot: 3.0e-4).
_NUMBER_TEXT = re.compile(r'^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$')
# Keys whose values are names or paths and may legitimately look like numbers.
_TEXT_KEYS = ('name', 'type', 'meta_info_file', 'filename_tmpl', 'suffix', 'project', 'resume_id', 'db_paths',
              'client_keys', 'backend')
# Close-match similarity above which an unknown key is taken for a typo (an error) outside the project's own sections.
_TYPO_CUTOFF = 0.85


class OptionsError(ValueError):
    """An option file is invalid; the message lists every problem found."""


class OptionsWarning(UserWarning):
    """An option is probably unused or unintended (unknown key, odd schedule); training goes on."""


# ------------------------------------------------------------------------------------------------------ reading YAML
class _OptionLoader(yaml.SafeLoader):
    """A safe loader that refuses duplicate keys (PyYAML keeps the last one silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> Dict[Any, Any]:
        seen: Dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == 'tag:yaml.org,2002:merge':
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node)
            except TypeError:  # an unhashable key: the base class reports it
                break
            if first is not key_node:
                raise yaml.constructor.ConstructorError(
                    None, None, f'duplicate key {key!r} (first at line {first.start_mark.line + 1}); YAML would keep '
                    'only the last value, remove one of them', key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


# BasicSR reads option files with PyYAML's full loader; of its Python tags only the harmless tuple is accepted here.
_OptionLoader.add_constructor('tag:yaml.org,2002:python/tuple',
                              lambda loader, node: tuple(loader.construct_sequence(node)))


def load_options(path: str) -> Dict[str, Any]:
    """Read a YAML option file; duplicate keys are an error.

    Args:
        path: The option file.

    Returns:
        The options as a dict.

    Raises:
        OptionsError: The file is missing, not valid YAML, has a duplicate key or is not a mapping; the message is one
            line naming the file (and the line and column).
    """
    if not os.path.isfile(path):
        raise OptionsError(f'{path}: no such option file' + (' (it is a folder)' if os.path.isdir(path) else '') + '.')
    try:
        with open(path, encoding='utf-8') as f:
            opt = yaml.load(f, Loader=_OptionLoader)  # noqa: S506  (a SafeLoader subclass)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark
        where = f' at line {mark.line + 1}, column {mark.column + 1}' if mark is not None else ''
        problem = ' '.join(str(p) for p in (err.context, err.problem) if p)
        raise OptionsError(f'{path}: invalid YAML{where}: {problem}.') from None
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise OptionsError(f'{path}: invalid YAML: {str(err).splitlines()[0]}.') from None
    if not isinstance(opt, dict):
        raise OptionsError(f'{path}: expected a mapping of options at the top level, got {type(opt).__name__}.')
    return opt


# ---------------------------------------------------------------------------------------- what BasicSR will run
class CommandLine(NamedTuple):
    """The arguments of ``basicsr train`` / ``basicsr test`` that change the options (BasicSR's ``parse_options``)."""

    opt_path: str
    launcher: str = 'none'
    auto_resume: bool = False
    debug: bool = False
    overrides: Tuple[str, ...] = ()
    override_flags: int = 0  # how many times --force_yml was given (BasicSR keeps only the last)


class _ArgumentError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise _ArgumentError(message)


def parse_command_line(argv: Sequence[str]) -> Optional[CommandLine]:
    """Read BasicSR's flags as its ``parse_options`` does (same names, abbreviations and defaults).

    Args:
        argv: The arguments after ``basicsr train`` / ``basicsr test``.

    Returns:
        The parsed flags, or ``None`` when BasicSR will refuse the command line itself (it prints its usage).
    """
    parser = _Parser(add_help=False)
    parser.add_argument('-opt', type=str, required=True)
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm'], default='none')
    parser.add_argument('--auto_resume', action='store_true')
    parser.add_argument('--debug', action='store_true')
    parser.add_argument('--local_rank', type=int, default=0)
    parser.add_argument('--force_yml', nargs='+', action='append', default=None)
    try:
        args = parser.parse_args(list(argv))
    except _ArgumentError:
        return None
    flags = args.force_yml or []
    return CommandLine(args.opt, args.launcher, args.auto_resume, args.debug,
                       tuple(flags[-1]) if flags else (), len(flags))


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return 'true/false'
    if isinstance(value, (int, float)):
        return 'a number'
    if isinstance(value, (list, tuple)):
        return 'a list'
    if isinstance(value, dict):
        return 'a mapping'
    return 'text'


def apply_overrides(opt: Dict[str, Any], entries: Sequence[str]) -> Tuple[List[str], Set[str]]:
    """Apply ``--force_yml key:sub=value`` entries exactly as BasicSR does, judging each one.

    BasicSR converts the value with its own rules (``~``/``none``, ``true``/``false``, ``!!float``, numbers, ``[...]``
    lists, else text) and assigns it, creating the last key when it is absent. Here an entry is an error when BasicSR
    would stop on it (no ``=``, a missing parent key), when it replaces a value with one of another kind (``8`` with
    ``abc``), or (see :func:`validate_options`) when it creates a key that no part of the run reads.

    Args:
        opt: The options, changed in place.
        entries: The entries given after ``--force_yml``.

    Returns:
        ``(problems, created)``: messages, and the dotted names of keys the overrides created.
    """
    from basicsr.utils.options import _postprocess_yml_value  # BasicSR's own conversion: the same value it will use

    problems: List[str] = []
    created: Set[str] = set()
    for entry in entries:
        here = f'--force_yml {entry}'
        if entry.count('=') != 1:
            problems.append(f'{here}: expected key:subkey=value with exactly one "=" (BasicSR splits on it).')
            continue
        keys, text = (part.strip() for part in entry.split('='))
        path = keys.split(':')
        try:
            value = _postprocess_yml_value(text)
        except Exception as err:  # noqa: BLE001  (BasicSR evaluates "[...]" as Python)
            problems.append(f'{here}: the value {text!r} cannot be read ({type(err).__name__}: {err}).')
            continue
        section = opt
        for depth, key in enumerate(path[:-1]):
            if not isinstance(section, dict) or key not in section:
                problems.append(f'{here}: {".".join(path[:depth + 1])} does not exist in the option file; write the '
                                'section in the file first (BasicSR cannot create it and would stop).')
                break
            section = section[key]
        else:
            if not isinstance(section, dict):
                problems.append(f'{here}: {".".join(path[:-1])} is not a mapping, so it has no key {path[-1]!r}.')
                continue
            old = section.get(path[-1])
            auto_gpu = path == ['num_gpu'] and 'auto' in (old, value)  # auto and a count are both fine
            if old is not None and value is not None and _kind(old) != _kind(value) and not auto_gpu:
                problems.append(f'{here}: {".".join(path)} is {_kind(old)} in the file ({old!r}) but the override '
                                f'gives {_kind(value)} ({value!r}).')
                continue
            if path[-1] not in section:
                created.add('.'.join(path))
            section[path[-1]] = value
    return problems, created


def _check_name(name: Any) -> Optional[str]:
    if not isinstance(name, str) or not name.strip():
        return f'name: expected the experiment name (text), got {name!r}; results go to experiments/<name>.'
    separators = [s for s in (os.sep, os.altsep, '/') if s and s in name]
    if separators or name in ('.', '..') or '\0' in name:
        example = re.sub(r'[/\\\x00]+', '_', name).strip('._') or 'my_run'
        return (f'name: {name!r} cannot be a folder name (experiments/<name>, and the log file is named after it); '
                f'use e.g. {example!r}.')
    return None


def resolve_options(opt: Dict[str, Any], is_train: bool, cmd: Optional[CommandLine] = None,
                    root_path: Optional[str] = None) -> Tuple[Dict[str, Any], List[str], Set[str]]:
    """The options BasicSR's ``parse_options`` will hand to the pipeline, without its side effects.

    Applies ``--force_yml``, ``--debug`` (name prefix and frequencies), ``num_gpu: auto`` (the visible CUDA GPUs),
    each dataset's ``phase`` and ``scale``, ``~`` in paths, and fills ``path.experiments_root`` (training) or
    ``path.results_root`` (testing) under ``root_path``. Missing or malformed sections are left for the checks.

    Args:
        opt: The options as read from the file (not changed).
        is_train: ``basicsr train`` (True) or ``basicsr test`` (False).
        cmd: The command line; ``None`` for none of its flags.
        root_path: Where ``experiments/`` and ``results/`` go (the current directory by default).

    Returns:
        ``(options, problems, created)``: the resolved options, problems found on the way (overrides, name), and the
        keys the overrides created.
    """
    cmd = cmd or CommandLine('')
    root_path = os.getcwd() if root_path is None else root_path
    opt = copy.deepcopy(opt)
    problems: List[str] = []
    if cmd.override_flags > 1:
        problems.append(f'--force_yml: given {cmd.override_flags} times, but BasicSR keeps only the last one and drops '
                        'the others silently; give every override after a single --force_yml.')
    override_problems, created = apply_overrides(opt, cmd.overrides)
    problems.extend(override_problems)
    opt.update(dist=cmd.launcher != 'none', rank=0, world_size=int(os.environ.get('WORLD_SIZE', 1)),
               auto_resume=cmd.auto_resume, is_train=is_train)
    name = opt.get('name')
    if cmd.debug and isinstance(name, str) and not name.startswith('debug'):
        opt['name'] = name = 'debug_' + name
    if opt.get('num_gpu') == 'auto':
        opt['num_gpu'] = torch.cuda.device_count()
    for phase, dataset in (opt.get('datasets') or {}).items() if isinstance(opt.get('datasets'), dict) else ():
        if isinstance(dataset, dict):
            _resolve_dataset(dataset, str(phase), opt)
    paths = opt.get('path')
    if isinstance(paths, dict):
        for key, value in paths.items():
            if isinstance(value, str) and ('resume_state' in key or 'pretrain_network' in key):
                paths[key] = os.path.expanduser(value)
    name_problem = _check_name(name)
    if name_problem:
        problems.append(name_problem)
    elif isinstance(paths, dict):
        _fill_paths(opt, paths, name, is_train, root_path)
    return opt, problems, created


def _resolve_dataset(dataset: Dict[str, Any], phase: str, opt: Dict[str, Any]) -> None:
    phase = phase.split('_')[0]
    if dataset.get('phase', phase) != phase:
        warnings.warn(f'datasets.{phase}.phase: {dataset["phase"]!r} is replaced by {phase!r} (BasicSR takes the '
                      'phase from the section name); remove the key.', OptionsWarning, stacklevel=4)
    dataset['phase'] = phase
    if 'scale' in opt:
        if dataset.get('scale', opt['scale']) != opt['scale']:
            warnings.warn(f'datasets.{phase}.scale: {dataset["scale"]!r} is replaced by the top-level scale '
                          f'{opt["scale"]!r} (BasicSR copies it into every dataset); remove the key.', OptionsWarning,
                          stacklevel=4)
        dataset['scale'] = opt['scale']
    for key in ('dataroot_gt', 'dataroot_lq'):
        if isinstance(dataset.get(key), str):
            dataset[key] = os.path.expanduser(dataset[key])


def _fill_paths(opt: Dict[str, Any], paths: Dict[str, Any], name: str, is_train: bool, root_path: str) -> None:
    if is_train:
        root = os.path.join(root_path, 'experiments', name)
        paths.update(experiments_root=root, models=os.path.join(root, 'models'), log=root,
                     training_states=os.path.join(root, 'training_states'),
                     visualization=os.path.join(root, 'visualization'))
        if 'debug' in name:  # BasicSR's debug mode: frequent validation, logging and checkpoints
            if isinstance(opt.get('val'), dict):
                opt['val']['val_freq'] = 8
            if isinstance(opt.get('logger'), dict):
                opt['logger'].update(print_freq=1, save_checkpoint_freq=8)
    else:
        root = os.path.join(root_path, 'results', name)
        paths.update(results_root=root, log=root, visualization=os.path.join(root, 'visualization'))


# ---------------------------------------------------------------------------------------------------------- helpers
# Dotted names of keys some check recognised during the current validate_options call (see _note_known).
_recognised: Set[str] = set()


def _note_known(where: str, keys: Iterable[str]) -> None:
    """Record that a check knows these keys of ``where`` (an override may create them)."""
    _recognised.update(f'{where}.{k}' if where else str(k) for k in keys)


def _close_matches(name: Any, choices: Iterable[str], cutoff: float = 0.6) -> List[str]:
    # Case-insensitive: 'Adamw' should suggest AdamW first.
    by_lower = {c.lower(): c for c in choices}
    return [by_lower[c] for c in difflib.get_close_matches(str(name).lower(), list(by_lower), n=3, cutoff=cutoff)]


def _unknown(kind: str, name: Any, choices: Iterable[str], where: str) -> str:
    choices = sorted(choices)
    close = _close_matches(name, choices)
    hint = f'did you mean {", ".join(close)}?' if close else f'known {kind}s: {", ".join(choices)}.'
    return f'{where}: unknown {kind} {name!r}; {hint}'


def check_keys(section: Any, known: Iterable[str], where: str, problems: List[str],
               also_known: Optional[Callable[[str], bool]] = None, strict: bool = False) -> List[str]:
    """Report misspelled keys of ``section`` (errors) and other unknown keys (warnings).

    Args:
        section: The mapping to look at (anything else is ignored).
        known: The keys the section's reader knows.
        where: Dotted name of the section (``''`` for the top level).
        problems: Errors are appended here.
        also_known: Further keys that are fine (e.g. any ``*_opt`` loss).
        strict: The section belongs to this project: any close match is taken for a typo. Otherwise only a very
            close one is, since BasicSR or another plugin may read keys this project does not know.

    Returns:
        The keys suggested in place of misspelled ones (so "missing" is not reported twice).
    """
    if not isinstance(section, dict):
        return []
    known = list(known)
    _note_known(where, known)
    suggested = []
    for key in section:
        if key in known or (also_known is not None and also_known(str(key))):
            _note_known(where, [key])
            continue
        name = f'{where}.{key}' if where else str(key)
        if key in FOREIGN_KEYS and strict:
            problems.append(f'{name}: not an option of this project; use {FOREIGN_KEYS[key]}.')
            continue
        absent = [k for k in known if k not in section]
        close = _close_matches(key, absent, 0.6 if strict else _TYPO_CUTOFF)
        if close:
            suggested.append(close[0])
            problems.append(f'{name}: unknown option; did you mean {close[0]}? (BasicSR ignores unknown keys, so the '
                            'default would be used silently.)')
            continue
        close = _close_matches(key, absent)
        hint = f'did you mean {close[0]}?' if close else f'known here: {", ".join(sorted(known))}.'
        warnings.warn(f'{name}: unknown option, not read by this project (BasicSR or another plugin may read it); '
                      f'{hint}', OptionsWarning, stacklevel=3)
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


def _lookup(kind: str, name: Any) -> Optional[Any]:
    """The registered class/function, with BasicSR's fallback to ``<name>_basicsr`` (its renamed duplicates)."""
    registry = _registries()[kind]
    for candidate in (name, f'{name}_basicsr'):
        if isinstance(candidate, str) and candidate in registry:
            return registry.get(candidate)
    return None


def _check_type(kind: str, name: Any, where: str, problems: List[str]) -> Optional[Any]:
    if name is None:
        problems.append(f'{where}: missing "type".')
        return None
    found = _lookup(kind, name)
    if found is None:
        problems.append(_unknown(f'{kind} type', name, _registries()[kind].keys(), where))
        return None
    package = EXTRA_PACKAGES.get((kind, name))
    if package and importlib.util.find_spec(package[0]) is None:
        problems.append(f'{where}: {name} needs the {package[0]} package, which is not installed; {package[1]}.')
    return found


def _check_arguments(target: Any, kwargs: Dict[str, Any], where: str, label: str, problems: List[str],
                     leading: int = 0, partial: bool = False) -> None:
    """Bind ``kwargs`` to ``target``'s signature (after ``leading`` positional arguments the caller passes)."""
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):
        return  # a builtin without a signature: nothing to compare with
    params = [p for p in list(signature.parameters)[leading:] if p not in ('args', 'kwargs')]
    _note_known(where, params)
    bind = signature.bind_partial if partial else signature.bind
    try:
        bind(*[None] * leading, **kwargs)
    except TypeError as err:
        unknown = [k for k in kwargs if k not in signature.parameters]
        detail = '; '.join(_unknown('argument', k, params, f'{where}.{k}') for k in unknown) or str(err)
        problems.append(f'{where} ({label}): {detail}')


def _check_network(opt: Dict[str, Any], problems: List[str]) -> None:
    if not isinstance(opt.get('network_g'), dict):
        problems.append('network_g: missing (a mapping with "type" and the network\'s constructor arguments).')
    for key, net_opt in opt.items():
        if not str(key).startswith('network_') or not isinstance(net_opt, dict):
            continue
        cls = _check_type('arch', net_opt.get('type'), f'{key}.type', problems)
        if cls is not None:
            kwargs = {k: v for k, v in net_opt.items() if k != 'type'}
            _check_arguments(cls, kwargs, key, net_opt['type'], problems)
        _check_numbers(net_opt, key, problems)


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
    problems: List[str] = []
    where = f'datasets.{phase}'
    suggested = check_keys(dataset_opt, DATASET_KEYS + tuple(keys), where, problems, strict=True)
    needed = tuple(required)
    if phase == 'train':
        needed += tuple(required_train) + ('gt_size', 'batch_size_per_gpu', 'num_worker_per_gpu')
    else:
        needed += tuple(required_eval)
    for key in needed:
        if dataset_opt.get(key) is None and key not in suggested:
            problems.append(f'{where}.{key}: missing; add {key}: ... ({REQUIRED_HINTS.get(key, "see the docs")}).')
    return problems


def _plugin_dataset(dataset_opt: Any) -> Optional[type]:
    """The plugin's dataset class a section names (it has ``check_options``), else ``None``."""
    cls = _lookup('dataset', dataset_opt.get('type')) if isinstance(dataset_opt, dict) else None
    return cls if isinstance(cls, type) and hasattr(cls, 'check_options') else None


def _check_dataset_keys(phase: str, dataset_opt: Dict[str, Any], problems: List[str]) -> None:
    cls = _plugin_dataset(dataset_opt)
    if cls is not None:  # a BasicSR or third-party dataset's keys are its own business
        problems.extend(cls.check_options(dataset_opt, phase))


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
        if _plugin_dataset(dataset_opt) is None:
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
        _plugin_dataset(d) is not None for d in (opt.get('datasets') or {}).values())
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



def _total_iter(train_opt: Dict[str, Any], problems: List[str]) -> Optional[int]:
    total_iter = train_opt.get('total_iter')
    if isinstance(total_iter, float) and total_iter.is_integer():
        total_iter = int(total_iter)  # the official files write !!float 3e5
    if not isinstance(total_iter, int) or isinstance(total_iter, bool) or total_iter <= 0:
        problems.append(f'train.total_iter: expected a positive integer, got {total_iter!r}.')
        return None
    return total_iter


def _model_class(opt: Dict[str, Any]) -> Optional[type]:
    cls = _lookup('model', opt.get('model_type'))
    return cls if isinstance(cls, type) else None


def _is_plugin_model(opt: Dict[str, Any]) -> bool:
    cls = _model_class(opt)
    return cls is not None and any(base.__name__ in PLUGIN_MODELS for base in cls.__mro__)


def _check_scheduler(opt: Dict[str, Any], total_iter: Optional[int], problems: List[str]) -> None:
    from restormer_arch.models.image_clean_model import SCHEDULERS
    from restormer_arch.models.lr_scheduler import check_scheduler_options

    train_opt = opt['train']
    scheduler = train_opt.get('scheduler')
    if not isinstance(scheduler, dict):
        problems.append('train.scheduler: missing (e.g. type: CosineAnnealingRestartCyclicLR).')
        return
    name = scheduler.get('type')
    usable = list(SCHEDULERS) if _is_plugin_model(opt) else list(BASICSR_SCHEDULERS)
    if name not in usable:
        problems.append(_unknown('scheduler type', name, usable, 'train.scheduler.type')
                        + ('' if name not in SCHEDULERS else f' ({name} is only known to ImageCleanModel)'))
        return
    _note_known('train.scheduler', inspect.signature(SCHEDULERS[name]).parameters)
    base_lr = (train_opt.get('optim_g') or {}).get('lr') if isinstance(train_opt.get('optim_g'), dict) else None
    problems.extend(check_scheduler_options(scheduler, SCHEDULERS[name], total_iter, base_lr))


def _check_train(opt: Dict[str, Any], problems: List[str]) -> None:
    train_opt = opt.get('train')
    if not isinstance(train_opt, dict):
        problems.append('train: missing (optimizer, scheduler, total_iter, losses).')
        return
    _check_numbers(train_opt, 'train', problems)
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
                problems.append(_unknown('optimizer', optim, optimizers, f'train.{key}.type'))
            else:
                kwargs = {k: v for k, v in section.items() if k != 'type'}
                _check_arguments(optimizers[optim], kwargs, f'train.{key}', optim, problems, leading=1)
        elif key.endswith('_opt'):
            loss = _check_type('loss', section.get('type'), f'train.{key}.type', problems)
            if loss is not None:
                kwargs = {k: v for k, v in section.items() if k != 'type'}
                _check_arguments(loss, kwargs, f'train.{key}', section['type'], problems)
    _check_scheduler(opt, total_iter, problems)
    if _is_plugin_model(opt):
        from restormer_arch.models.model_options import check_train_options

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
            metric = _check_type('metric', metric_opt.get('type'), f'val.metrics.{name}.type', problems)
            if metric is not None:  # BasicSR passes the images too: only the names are judged
                kwargs = {k: v for k, v in metric_opt.items() if k != 'type'}
                _check_arguments(metric, kwargs, f'val.metrics.{name}', metric_opt['type'], problems, partial=True)
        if _is_plugin_model(opt):
            from restormer_arch.models.model_options import check_val_options

            problems.extend(check_val_options(opt))
        else:
            check_keys(val, BASICSR_VAL_KEYS, 'val', problems)
        _check_numbers(val, 'val', problems)
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
    _check_numbers(logger, 'logger', problems)
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
        _note_known('logger.wandb', ('project', 'resume_id'))
        if importlib.util.find_spec('wandb') is None:
            problems.append('logger.wandb.project: Weights & Biases logging needs the wandb package, which is not '
                            'installed; pip install wandb (and wandb login), or set project: ~.')
        if logger.get('use_tb_logger') is not True:
            problems.append('logger.wandb.project: BasicSR logs to Weights & Biases through TensorBoard and stops '
                            'unless logger.use_tb_logger is true; set it to true, or set project: ~.')
    if logger.get('use_tb_logger') and not debug and importlib.util.find_spec('tensorboard') is None:
        problems.append('logger.use_tb_logger: TensorBoard logging needs the tensorboard package, which is not '
                        'installed; pip install tensorboard, or set use_tb_logger: false.')


def _check_performance(opt: Dict[str, Any], problems: List[str]) -> None:
    if 'performance' not in opt:
        return
    from restormer_arch import perf

    check = getattr(perf, 'check_options', None)
    if check is not None:
        problems.extend(check(opt['performance'], where='performance'))


def _validate(opt: Dict[str, Any], is_train: bool) -> List[str]:
    problems: List[str] = []
    check_keys(opt, TOP_LEVEL_KEYS, '', problems, also_known=lambda k: k.startswith('network_'))
    if not opt.get('name'):
        problems.append('name: missing (the experiment name: results go to experiments/<name>).')
    _check_type('model', opt.get('model_type'), 'model_type', problems)
    _check_numbers({k: opt.get(k) for k in ('scale', 'num_gpu', 'manual_seed') if k in opt}, '', problems)
    _check_devices(opt, problems)
    _check_network(opt, problems)
    _check_scale(opt, problems)
    _check_datasets(opt, is_train, problems)
    _check_channels(opt, problems)
    _check_paths(opt, is_train, problems)
    if is_train:
        _check_train(opt, problems)
        _check_logger(opt, problems)
    _check_val(opt, is_train, problems)
    _check_performance(opt, problems)
    return problems


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
    _recognised.clear()
    problems = _validate(opt, is_train)
    for key in sorted(created):
        if key not in _recognised:
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
    return validate_options_file(cmd.opt_path, is_train=command == 'train', cmd=cmd)

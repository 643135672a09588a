"""The options BasicSR will run: the option file as read, BasicSR's command-line flags, and the resolved options.

:func:`resolve_options` takes the steps of BasicSR's ``parse_options`` without their side effects (``--force_yml``,
``--debug``, ``num_gpu: auto``, each dataset's ``phase`` and ``scale``, ``path.*``), so :mod:`restormer_arch.options`
judges exactly what the pipeline will receive.
"""
import argparse
import copy
import os
import re
import warnings
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Set, Tuple

import torch
import yaml

from restormer_arch.option_checks import OptionsError, OptionsWarning


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
                hint = (' (BasicSR reads --force_yml exponents as text: write 0.0001 or !!float 1e-4)'
                        if isinstance(value, str) and _kind(old) == 'a number' else '')
                problems.append(f'{here}: {".".join(path)} is {_kind(old)} in the file ({old!r}) but the override '
                                f'gives {_kind(value)} ({value!r}){hint}.')
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

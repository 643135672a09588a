"""The options as written (the YAML file, read with one-line errors) and the flags of BasicSR's command line."""
import argparse
import contextlib
import io
import os
from typing import Any, Dict, NamedTuple, Optional, Sequence, Tuple

import yaml

from restormer_arch.errors import OptionsError


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
    """Read a YAML option file as written; duplicate keys are an error.

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


class CommandLine(NamedTuple):
    """The flags of ``basicsr train|test`` that change the options (those of BasicSR's ``parse_options``)."""

    opt_path: str
    force_yml: Tuple[str, ...]


def parse_command_line(argv: Sequence[str]) -> Optional[CommandLine]:
    """BasicSR's flags, read as its ``parse_options`` reads them; ``None`` when it would print its own usage error.

    Raises:
        OptionsError: ``--force_yml`` is given more than once (BasicSR would keep the last and drop the others).
    """
    parser = argparse.ArgumentParser(add_help=False, exit_on_error=False)
    parser.add_argument('-opt', required=True)
    parser.add_argument('--force_yml', nargs='+', action='append', default=[])
    try:
        with contextlib.redirect_stderr(io.StringIO()):  # BasicSR prints its own usage error
            args, _ = parser.parse_known_args(list(argv))
    except (argparse.ArgumentError, SystemExit):
        return None
    if len(args.force_yml) > 1:
        raise OptionsError(f'--force_yml: given {len(args.force_yml)} times, but BasicSR keeps only the last one and '
                           'drops the others silently; give every override after a single --force_yml.')
    return CommandLine(args.opt, tuple(args.force_yml[0]) if args.force_yml else ())

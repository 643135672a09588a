"""One home for option files: read them (:mod:`.resolve`, BasicSR's own ``parse_options``), build every component
before anything is written (:mod:`.build`), apply the silent-wrong rules (:mod:`.rules`) and report what BasicSR
changes or ignores (:mod:`.report`).

``basicsr train|test`` run :func:`check` inside BasicSR's pipeline, right after its ``parse_options`` and before it
makes any folder (:func:`checked_pipeline`); :func:`check_file` does the same for a file in-process (tests, tools).
See docs/options.md.
"""
import contextlib
import io
import os
import sys
import warnings
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

from restormer_arch.errors import OptionsError, UserError
from restormer_arch.options.build import Built, _hint, build, build_datasets, planned_outputs
from restormer_arch.options.report import unread_keys, written_vs_used
from restormer_arch.options.resolve import CommandLine, load_options, parse_command_line
from restormer_arch.options.rules import RULES, evaluate

__all__ = ['OptionsWarning', 'OptionsError', 'CommandLine', 'load_options', 'parse_command_line', 'check', 'check_file',
           'checked_pipeline', 'build', 'RULES']


class OptionsWarning(UserWarning):
    """A value BasicSR changes or ignores, or a run that works but is probably not what was meant."""


def check(opt: Dict[str, Any], written: Dict[str, Any], force_yml: Sequence[str] = (), data: bool = True) -> Built:
    """Judge the options BasicSR resolved: build everything, apply the rules, plan the outputs, warn.

    Args:
        opt: The options from BasicSR's ``parse_options`` (with ``root_path`` when the pipeline sets it).
        written: The option file as written.
        force_yml: The ``--force_yml`` entries.
        data: Build the datasets (off: judge the options without their data).

    Returns:
        What was built.

    Raises:
        OptionsError: A component cannot be built, or a rule finds an error (the first, in one line).
        OutputError: Two outputs share one path, or an output location cannot be written.
    """
    built = build(opt)  # the options first (cheap, and a fresh clone has no data yet) ...
    errors, notes = evaluate(opt, built)
    _raise_first(errors)
    planned_outputs(opt)
    notes = _warn(opt, written_vs_used(written, opt, force_yml) + notes + unread_keys(opt, built))
    if data:  # ... then the datasets and their first samples, and the rules that need them
        build_datasets(opt, built)
        errors, data_notes = evaluate(opt, built)
        _warn(opt, [n for n in data_notes + unread_keys(opt, built) if n not in notes])
        _raise_first(errors)
    return built


def _warn(opt: Dict[str, Any], notes: List[str]) -> List[str]:
    for note in notes if opt.get('rank', 0) == 0 else ():
        warnings.warn(note, OptionsWarning, stacklevel=3)
    return notes


def _raise_first(errors: Sequence[str]) -> None:
    if errors:
        more = f' (and {len(errors) - 1} more problem(s), reported once this one is fixed)' if len(errors) > 1 else ''
        raise OptionsError(errors[0] + more)


def check_file(path: str, is_train: bool, force_yml: Sequence[str] = (), root_path: Optional[str] = None,
               data: bool = True) -> Dict[str, Any]:
    """Read ``path`` as ``basicsr train|test -opt path [--force_yml ...]`` would, and :func:`check` it.

    Args:
        path: The option file.
        is_train: ``basicsr train`` (True) or ``basicsr test``.
        force_yml: ``--force_yml`` entries (``key:sub=value``).
        root_path: Where ``experiments/``, ``results/`` and ``tb_logger/`` go (the current directory by default).
        data: Build the datasets too (off: the options alone, e.g. for files whose data is elsewhere).

    Returns:
        The options BasicSR resolved (its ``parse_options``, with ``sys.argv`` set to this command line; only for
        ``--launcher none``: another launcher starts the process group).

    Raises:
        OptionsError, OutputError: As :func:`check`.
    """
    from basicsr.utils.options import parse_options

    cmd, written = CommandLine(path, tuple(force_yml)), load_options(path)
    saved, sys.argv = sys.argv, ['basicsr', '-opt', path] + (['--force_yml', *force_yml] if force_yml else [])
    try:  # BasicSR's parse_options reads sys.argv, and prints "Disable distributed."
        with contextlib.redirect_stdout(io.StringIO()):
            opt, _ = _basicsr_options(parse_options, root_path or os.getcwd(), is_train, cmd)
    finally:
        sys.argv = saved
    check(dict(opt, root_path=root_path or os.getcwd()), written, cmd.force_yml, data)
    return opt


def _basicsr_options(parse_options: Callable[..., Any], root_path: str, is_train: bool, cmd: CommandLine) -> Any:
    """BasicSR's ``parse_options`` (``(opt, args)``); what it raises becomes one line naming the file or the
    ``--force_yml`` entry (for a key it reads that is missing: with a close key of the file)."""
    try:
        return parse_options(root_path, is_train=is_train)
    except UserError:  # already one line (e.g. a launcher without its environment, from compat)
        raise
    except Exception as err:  # noqa: BLE001  (anything parse_options raises is about the file or the flags)
        where = f'--force_yml {" ".join(cmd.force_yml)}' if cmd.force_yml else cmd.opt_path
        if isinstance(err, KeyError):  # a key it reads: perhaps misspelled in the file
            hint = _hint(repr(err.args[0]), load_options(cmd.opt_path), None)
            raise OptionsError(f'{where}: BasicSR needs the key {err.args[0]!r}, which is missing{hint}') from None
        raise OptionsError(f'{where}: BasicSR cannot read the options: {type(err).__name__}: {err}') from None


@contextlib.contextmanager
def checked_pipeline(command: str, argv: Sequence[str]) -> Iterator[None]:
    """While the block runs, BasicSR's ``train``/``test`` pipeline checks its options right after parsing them.

    The option file is read first (:func:`load_options`: one line for a YAML error) and ``dist_params.backend`` set
    before BasicSR's ``parse_options`` starts the process group. Then the pipeline's own ``parse_options`` is wrapped:
    the options it returns are :func:`check`-ed before the pipeline goes on to make folders, loggers and the model, so
    a mistake stops the command with nothing created. Nothing is wrapped for ``--help`` or a command line BasicSR
    refuses with its usage message.

    Args:
        command: ``train`` or ``test``.
        argv: The arguments after the command.

    Raises:
        OptionsError, OutputError: From :func:`load_options`, :func:`parse_command_line` and :func:`check`.
    """
    import basicsr.test
    import basicsr.train

    from restormer_arch import compat

    cmd = None if '-h' in argv or '--help' in argv else parse_command_line(argv)
    if cmd is None:
        yield
        return
    written = load_options(cmd.opt_path)
    dist_params = written.get('dist_params')
    compat.use_dist_backend(dist_params.get('backend') if isinstance(dist_params, dict) else None)
    module = basicsr.train if command == 'train' else basicsr.test
    parse_options = module.parse_options

    def parse_and_check(root_path: str, is_train: bool = True) -> Any:
        opt, args = _basicsr_options(parse_options, root_path, is_train, cmd)
        check(dict(opt, root_path=root_path), written, cmd.force_yml)
        return opt, args

    module.parse_options = parse_and_check
    try:
        yield
    finally:
        module.parse_options = parse_options

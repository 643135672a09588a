"""The ``basicsr`` console command (also ``python -m restormer_arch``).

``basicsr train -opt X.yml [BasicSR flags]`` and ``basicsr test -opt X.yml [...]`` register the plugin, then hand over
to BasicSR's own ``train_pipeline`` / ``test_pipeline`` with the *current directory* as the root, so ``experiments/``,
``results/`` and ``tb_logger/`` land where the command is run. BasicSR's flags pass through unchanged: ``-opt``,
``--launcher {none,pytorch,slurm}``, ``--auto_resume``, ``--debug``, ``--local_rank``, ``--force_yml``.
"""
import argparse
import importlib
import logging
import os
import sys
import warnings
from typing import Dict, List, Optional, Tuple

from restormer_arch.version import __version__

# The commands: the module whose main() runs each (None: BasicSR's own pipeline, checked first), and its help line.
COMMANDS: Dict[str, Tuple[Optional[str], str]] = {
    'train': (None, 'train with a BasicSR option file (basicsr.train.train_pipeline)'),
    'test': (None, 'evaluate with a BasicSR option file (basicsr.test.test_pipeline)'),
    'restore': ('restormer_arch.inference', 'restore images with a checkpoint (basicsr restore --help)'),
    'weights': ('restormer_arch.weights', 'list / fetch the released checkpoints (basicsr weights --help)'),
    'export': ('restormer_arch.export', 'export a checkpoint to ONNX (basicsr export --help)')}

EPILOG = """examples:
  basicsr train -opt options/Demo.yml
  basicsr train -opt options/Deraining.yml --auto_resume
  torchrun --nproc_per_node=4 -m restormer_arch train -opt options/Deraining.yml --launcher pytorch
  basicsr test -opt options/test/Deraining.yml
  basicsr restore -i rainy/ -o derained/ --weights deraining     (a released name, or a checkpoint file)
  basicsr weights deraining            (fetch a released checkpoint into pretrained_models/)
  basicsr export --weights deraining.pth -o deraining.onnx

Run 'basicsr train --help' for BasicSR's own flags."""


def _run_pipeline(command: str, argv: List[str]) -> int:
    # Importing this module imported the package: compat fixes and registration are done before BasicSR parses.
    from restormer_arch.options import checked_pipeline

    # The file is read now (one-line YAML errors); BasicSR's pipeline then checks what its parse_options returns.
    checked = checked_pipeline(command, argv)
    from restormer_arch.checkpoint import CheckpointError
    from restormer_arch.models import training_hooks
    from restormer_arch.models.training_hooks import RunError

    # Our additions to training (resume, signal saves, dry forward check): docs/fault_tolerance.md; for both commands
    # the checkpoint loading of every model (one rule for which parameters a checkpoint means: docs/weights.md).
    hooks = training_hooks.applied(training_hooks.TrainingRun(auto_resume='--auto_resume' in argv))
    if command == 'train':
        from basicsr.train import train_pipeline as pipeline
    else:
        from basicsr.test import test_pipeline as pipeline
    # BasicSR's parse_options reads sys.argv itself.
    sys.argv = [f'basicsr {command}'] + argv
    finished = False
    try:
        with hooks, checked:
            pipeline(os.getcwd())
        finished = True
    except (RunError, CheckpointError) as err:  # the user's run, not our code: no traceback
        print(f'basicsr {command}: error: {err}', file=sys.stderr)
        return 1
    finally:  # a UserError goes on to main(): one line, exit 2
        _teardown_distributed(synchronise=finished)
    if command == 'test':
        _print_results_tables()
    return 0


def _print_results_tables() -> None:
    # The tables are logged after every dataset, between progress bars; the complete ones again at the very end.
    from restormer_arch.models.results_table import WRITTEN_TABLES

    for path in WRITTEN_TABLES:
        with open(path, encoding='utf-8') as f:
            print(f'\nResults ({path}):\n{f.read()}', end='')


def _teardown_distributed(synchronise: bool) -> None:
    # BasicSR never destroys the process group; without this, torch warns at exit and NCCL may hang on shutdown.
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        if synchronise:
            # Rank 0 still saves and validates after the last iteration; a rank that tears gloo down meanwhile can
            # abort ("terminate called without an active exception", seen on a loaded CI machine). Leave together;
            # not after an error, where the other ranks may never arrive.
            dist.barrier()
        dist.destroy_process_group()


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='basicsr',
        description='Restormer for BasicSR: train and test with BasicSR option files.',
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--version', action='version', version=f'restormer-basicsr {__version__}')
    subparsers = parser.add_subparsers(dest='command', metavar='COMMAND')
    for name, (_, help_text) in COMMANDS.items():
        subparsers.add_parser(name, help=help_text, add_help=False)
    return parser


def _format_warning(message, category, filename, lineno, line=None) -> str:  # noqa: ANN001 (warnings' signature)
    """Our own warnings (about the user's options, files or run) as one line; others as Python prints them."""
    if category.__module__.startswith('restormer_arch') or filename.startswith(_PACKAGE_DIR):
        return f'basicsr: warning: {message}\n'
    return _PYTHON_FORMATWARNING(message, category, filename, lineno, line)


_PYTHON_FORMATWARNING = warnings.formatwarning
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of the ``basicsr`` command.

    Args:
        argv: Arguments without the program name (default: ``sys.argv[1:]``).

    Returns:
        The process exit code.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _build_parser()
    if not argv or argv[0] not in COMMANDS:
        args = parser.parse_args(argv)  # handles --help / --version / unknown commands
        parser.print_help()
        return 0 if args.command is None and not argv else 2
    from restormer_arch.perf import configure_allocator

    warnings.formatwarning = _format_warning
    # The package's own log lines (e.g. which checkpoint entry a command loaded) as one line each on stderr.
    handler, package_logger = logging.StreamHandler(), logging.getLogger('restormer_arch')
    handler.setFormatter(logging.Formatter(f'basicsr {argv[0]}: %(message)s'))
    package_logger.addHandler(handler)
    package_logger.setLevel(logging.INFO)
    # Before the network and data exist: keeps glibc from unmapping big buffers after every layer
    # (RESTORMER_ALLOCATOR=system turns it off).
    configure_allocator()
    from restormer_arch.errors import UserError

    try:
        module = COMMANDS[argv[0]][0]
        return _run_pipeline(argv[0], argv[1:]) if module is None else importlib.import_module(module).main(argv[1:])
    except UserError as err:  # a user's mistake, wherever it was found: one line, no traceback
        print(f'basicsr {argv[0]}: error: {" ".join(str(err).split())}', file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())

"""``basicsr restore``: the command line over :mod:`restormer_arch.restorer` (examples: docs/restore.md).

The network's configuration is read from the checkpoint; ``--task`` (a released task the checkpoint must be) and
``--arch-options`` (constructor arguments to force) are optional. Every option is checked, and the output folder is
checked against overwriting inputs or earlier results, before the weights are loaded and any image is read.
"""
import argparse
import json
import os
import sys
from pathlib import Path
from typing import List, Optional, Sequence, Set, Tuple

import cv2
import numpy as np

from restormer_arch import perf
from restormer_arch.archs.presets import TASK_PRESETS, check_arch_options
from restormer_arch.data.image_io import IMAGE_EXTENSIONS, ImageReadError, read_image, write_image
from restormer_arch.errors import UserError
from restormer_arch.restorer import RestoreError, Restorer, check_settings, load_restormer
from restormer_arch.tiling import fixed_tile_shape
from restormer_arch.weights import resolve

__all__ = ['RestoreError', 'IMAGE_EXTENSIONS', 'collect_inputs', 'output_paths', 'run', 'main']

# What the formats hold (restormer_arch.data.image_io.write_image): 16-bit samples, alpha.
EXTENSIONS_16BIT = ('.png', '.tif', '.tiff')
EXTENSIONS_WITHOUT_ALPHA = ('.jpg', '.jpeg', '.bmp', '.ppm', '.pgm')
SIDE_BY_SIDE = '_side_by_side'


# ---------------------------------------------------------------------------------------------------------- inputs
def _list_images(folder: Path) -> List[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def collect_inputs(path: Path, dual_pixel: bool) -> List[Tuple[str, List[Path]]]:
    """Find the images to restore: ``(output name, [input file(s)])`` pairs.

    Args:
        path: ``-i``: an image file or a folder. Dual-pixel: a folder with ``inputL/`` + ``inputR/`` (or ``L/`` +
            ``R/``) holding the same names, or ``NAME_L.EXT`` + ``NAME_R.EXT`` pairs; or one ``NAME_L.EXT`` file.
        dual_pixel: Find left/right view pairs.

    Returns:
        The jobs, sorted by name.

    Raises:
        RestoreError: Nothing to restore, or a view without its partner (a missing ``-i`` is refused before the
            weights load, by :func:`run`).
    """
    if not dual_pixel:
        files = [path] if path.is_file() else _list_images(path)
        if not files:
            raise RestoreError(f'-i {path}: no images found (extensions: {", ".join(IMAGE_EXTENSIONS)}).')
        return [(p.name, [p]) for p in files]
    pairs = []  # (output name, left view, right view)
    for left_dir, right_dir in (('inputL', 'inputR'), ('L', 'R')):
        if not pairs and path.is_dir() and (path / left_dir).is_dir() and (path / right_dir).is_dir():
            pairs = [(left.name, left, path / right_dir / left.name) for left in _list_images(path / left_dir)]
    if not pairs:  # NAME_L.EXT files, each with NAME_R.EXT beside it
        lefts = [path] if path.is_file() else [p for p in _list_images(path) if p.stem.endswith('_L')]
        pairs = [(stem + left.suffix, left, left.with_name(f'{stem}_R{left.suffix}'))
                 for left in lefts for stem in [left.stem.removesuffix('_L')]]
    if not pairs:
        raise RestoreError(f'-i {path}: no dual-pixel pairs found. Use inputL/ + inputR/ folders with the same file '
                           'names, or NAME_L.png + NAME_R.png files.')
    for _, left, right in pairs:
        if not right.is_file():
            raise RestoreError(f'{left}: the right view {right} is missing (dual-pixel input: inputL/ + inputR/ '
                               'folders with the same file names, or NAME_L.png + NAME_R.png files).')
    return [(name, [left, right]) for name, left, right in pairs]


def output_paths(name: str, out_dir: Path, suffix: str, ext: str, side_by_side: bool) -> List[Path]:
    """The files one job writes: ``NAME[_SUFFIX].EXT`` and, with ``side_by_side``, ``NAME[_SUFFIX]_side_by_side.EXT``.

    Args:
        name: Output name from :func:`collect_inputs` (the input's name).
        out_dir: ``-o``.
        suffix: ``--suffix`` ('' for none).
        ext: ``--ext`` (``auto`` keeps the input's extension).
        side_by_side: ``--side-by-side``.
    """
    stem, in_ext = os.path.splitext(name)
    stem += f'_{suffix}' if suffix else ''
    ext = in_ext if ext == 'auto' else f'.{ext}'
    paths = [out_dir / f'{stem}{ext}']
    return paths + [out_dir / f'{stem}{SIDE_BY_SIDE}{ext}'] if side_by_side else paths


def _check_output_folder(args: argparse.Namespace) -> None:
    """Refuse an ``-o`` that is a file, or the input folder without ``--suffix``, unless ``--overwrite``."""
    out_dir, inp = Path(args.output), Path(args.input)
    existing = out_dir.absolute()  # -o itself, or the folder it would be made in
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise RestoreError(f'-o {out_dir}: {existing} is not a writable folder, so no result could be saved.')
    in_dir = inp.parent if inp.is_file() else inp
    if (out_dir.exists() and in_dir.exists() and os.path.samefile(out_dir, in_dir) and not args.suffix
            and not args.overwrite):
        raise RestoreError(f'-o {out_dir} is the input folder: the results would replace the originals. Choose '
                           'another -o, add --suffix NAME (results are written as NAME_SUFFIX.EXT beside the '
                           'originals), or pass --overwrite to replace them.')


def _check_existing_outputs(jobs: List[Tuple[str, List[Path]]], args: argparse.Namespace) -> None:
    """Refuse outputs that would replace an input or an existing file (before anything is read or written), and two
    inputs that would give the same output name (``a.jpg`` and ``a.png`` with ``--ext png``) in any case."""
    planned = {}
    for name, paths in jobs:
        for path in output_paths(name, Path(args.output), args.suffix, args.ext, args.side_by_side):
            if path in planned:
                raise RestoreError(f'{planned[path]} and {paths[0]} would both be written as {path}; restore them '
                                   'into different folders, or use --ext auto.')
            planned[path] = paths[0]
    if args.overwrite:
        return
    inputs = {p.resolve() for _, paths in jobs for p in paths}
    for path in planned:
        if path.exists():  # an input, or an earlier result
            what = 'is also an input' if path.resolve() in inputs else 'exists already (from an earlier run?)'
            raise RestoreError(f'{path} {what}: restoring would replace it. Choose another -o or a --suffix, or pass '
                               '--overwrite.')


# ---------------------------------------------------------------------------------------------------------- options
def _check_inputs_readable(jobs: List[Tuple[str, List[Path]]]) -> Set[Tuple[int, int]]:
    """Decode every input once before any is restored: a folder is either restored whole or refused with every
    unreadable file named (truncated, corrupt, not an image, float samples), never left half done.

    Returns:
        The distinct ``(height, width)`` of the inputs.
    """
    problems, sizes = [], set()
    for _, paths in jobs:
        for path in paths:
            try:
                sizes.add(tuple(read_image(path).pixels.shape[:2]))
            except ImageReadError as err:
                problems.append(str(err))
    if problems:
        more = f'\n  ... and {len(problems) - 10} more' if len(problems) > 10 else ''
        raise RestoreError(f'{len(problems)} input(s) cannot be read; fix or remove them:\n  '
                           + '\n  '.join(problems[:10]) + more)
    return sizes


def _warn_recompiles(sizes: Set[Tuple[int, int]], tile: Optional[int], overlap: int) -> None:
    """Warn before any work when ``--compile`` will compile more than once: torch.compile specialises on the input
    shape, and with ``--tile`` an image smaller than the tile along a side runs at its own size along it."""
    shapes = {fixed_tile_shape(h, w, tile) for h, w in sizes}
    if len(shapes) <= 1:
        return
    if tile:
        advice = (f'images smaller than --tile {tile} along a side run at their own size there; resize or crop them '
                  'to at least the tile size, or restore them without --compile')
    else:
        # The largest tile (multiple of 8, at most 256) that every image can hold keeps one shape for all of them.
        side = min(256, min(min(size) for size in sizes) // 8 * 8)
        overlap_flag = '' if side > 2 * overlap else f' --tile-overlap {side // 4}'
        advice = (f'add --tile {side}{overlap_flag} so that one compilation serves them all' if side >= 16
                  else 'restore images of one size per run')
    print(f'basicsr restore: warning: --compile: the network will see {len(shapes)} different input shapes and each '
          f'compiles again (1-3 minutes on a CPU); {advice}.', file=sys.stderr)


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='basicsr restore', description='Restore images with a Restormer checkpoint (see docs/restore.md).',
        epilog='Released tasks: ' + '; '.join(f'{t}: {o or "defaults"}' for t, o in TASK_PRESETS.items()))
    parser.add_argument('-i', '--input', required=True, help='image file or folder (dual-pixel: see the docs)')
    parser.add_argument('-o', '--output', required=True, help='output folder (created)')
    parser.add_argument('--weights', help='checkpoint file (official, BasicSR, mmagic, bare state dict) or the name '
                        'of a released one (basicsr weights lists them)')
    parser.add_argument('--task', choices=sorted(TASK_PRESETS),
                        help='released task the checkpoint must be (optional: the configuration is read from it)')
    parser.add_argument('--param-key', help='checkpoint entry to load (default: params_ema, then params, ...)')
    parser.add_argument('--allow-random-weights', action='store_true',
                        help='run without --weights (a seeded random network; for tests and demos only)')
    parser.add_argument('--arch-options', default='{}',
                        help='JSON object of Restormer constructor arguments to force, e.g. \'{"dim": 8}\'')
    parser.add_argument('--suffix', default='', help='append _SUFFIX to the output names (default: none)')
    parser.add_argument('--ext', default='auto', choices=['auto'] + [e[1:] for e in IMAGE_EXTENSIONS],
                        help='output format (default auto: that of the input)')
    parser.add_argument('--overwrite', action='store_true',
                        help='allow replacing existing files, inputs included (default: refuse)')
    parser.add_argument('--tile', type=int, help='process in tiles of this size (pixels; multiples of 8 are best)')
    parser.add_argument('--tile-overlap', type=int, default=32, help='overlap between tiles (default 32)')
    parser.add_argument('--device', default='auto', help='auto, cpu, cuda or cuda:N (default auto)')
    parser.add_argument('--precision', default='fp32', choices=sorted(perf.PRECISIONS),
                        help='fp32 (default), bf16 (CPU/GPU, the network in bf16 end to end) or fp16 (GPU only)')
    parser.add_argument('--compile', action='store_true',
                        help='torch.compile the network (freezing): faster per image, but the first image or tile '
                             'of each size compiles for 1-3 minutes on a CPU; pays off for many same-size images/tiles')
    parser.add_argument('--side-by-side', action='store_true',
                        help='also write NAME_side_by_side.EXT: input | output')
    parser.add_argument('--max-memory', type=float, help='memory budget in GiB for the size check (default: free)')
    parser.add_argument('--no-progress', action='store_true', help='hide the progress bars')
    return parser


def _prepare(args: argparse.Namespace) -> Tuple[Restorer, List[Tuple[str, List[Path]]]]:
    # First every check that needs no weights and no pixels.
    try:
        arch_options = json.loads(args.arch_options)
    except json.JSONDecodeError as err:
        raise RestoreError(f'--arch-options is not valid JSON ({err}): {args.arch_options!r}') from None
    if not isinstance(arch_options, dict):
        raise RestoreError(f'--arch-options must be a JSON object like \'{{"dim": 8}}\', got {args.arch_options!r}.')
    check_arch_options(arch_options, '--arch-options')  # names and types (--task: argparse's choices)
    check_settings(args.device, args.precision, args.tile, args.tile_overlap)
    if args.max_memory is not None and not args.max_memory > 0:
        raise RestoreError(f'--max-memory {args.max_memory}: give the budget in GiB, a number > 0.')
    if os.sep in args.suffix or (os.altsep and os.altsep in args.suffix):
        raise RestoreError(f'--suffix {args.suffix!r}: a name part, without path separators.')
    if not args.weights and not args.allow_random_weights:
        raise RestoreError('--weights is required: a Restormer with random weights only scrambles images. Download '
                           'the released checkpoint of your task (see docs/restore.md) or pass --allow-random-weights '
                           'for tests and demos.')
    inp = Path(args.input)
    if not inp.exists():
        raise RestoreError(f'-i {args.input}: no such file or folder.')
    folders = [inp] + [inp / sub for sub in ('inputL', 'L') if (inp / sub).is_dir()] if inp.is_dir() else []
    if folders and not any(_list_images(folder) for folder in folders):
        raise RestoreError(f'-i {inp}: no images found (extensions: {", ".join(IMAGE_EXTENSIONS)}).')
    _check_output_folder(args)
    # Without --weights: the same random network in every run, so results compare.
    net = load_restormer(resolve(args.weights) if args.weights else None, args.task, arch_options, args.param_key)
    budget = int(args.max_memory * 2**30) if args.max_memory else None
    restorer = Restorer(net, args.device, args.precision, args.tile, args.tile_overlap, budget,
                        progress=not args.no_progress, compile=args.compile)
    try:
        restorer.check_image_channels()
    except RestoreError as err:
        raise RestoreError(f'--weights {args.weights}: {err}') from None
    jobs = collect_inputs(Path(args.input), restorer.dual_pixel)
    _check_existing_outputs(jobs, args)
    sizes = _check_inputs_readable(jobs)
    for height, width in sizes:  # the memory estimate too, before the output folder exists
        restorer.check_fits(height, width, f'an input of -i {args.input}')
    if args.compile:
        _warn_recompiles(sizes, args.tile, args.tile_overlap)
    try:  # once every check has passed, before the network runs (so a failure here costs no work)
        Path(args.output).mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise RestoreError(f'-o {args.output}: cannot create the output folder ({err.strerror}).') from None
    return restorer, jobs


def _restore_job(restorer: Restorer, name: str, paths: List[Path], args: argparse.Namespace) -> List[Path]:
    views = [read_image(p) for p in paths]  # decoded once already: ImageReadError only if a file changed since
    first = views[0]
    restored = restorer.restore(*[v.pixels for v in views], bgr=True, name=paths[0].name)
    targets = output_paths(name, Path(args.output), args.suffix, args.ext, args.side_by_side)
    ext, depth = targets[0].suffix.lower(), first.bit_depth
    if first.alpha is not None and ext in EXTENSIONS_WITHOUT_ALPHA:
        print(f'basicsr restore: warning: {targets[0].name}: {ext} has no alpha channel; the transparency is '
              'dropped (use --ext png to keep it).', file=sys.stderr)
    if depth == 16 and ext not in EXTENSIONS_16BIT:  # a warning rather than a failure
        print(f'basicsr restore: warning: {targets[0].name}: {ext} holds 8-bit samples only; writing the 16-bit '
              'result as 8-bit (use --ext png or tif to keep 16 bits).', file=sys.stderr)
        depth = 8
    outputs = [(restored, first.alpha)]
    if args.side_by_side:
        before = first.pixels
        if before.shape[2] != restored.shape[2]:  # a colour photo through a gray model shown gray, and vice versa
            before = cv2.cvtColor(before, cv2.COLOR_BGR2GRAY)[..., None] if restored.shape[2] == 1 else \
                cv2.cvtColor(before, cv2.COLOR_GRAY2BGR)
        alpha = None if first.alpha is None else np.concatenate([first.alpha, first.alpha], axis=1)
        outputs.append((np.concatenate([before, restored], axis=1), alpha))
    peak = np.iinfo(restored.dtype).max
    for path, (pixels, alpha) in zip(targets, outputs):
        # Atomically, with the input's alpha, ICC profile and EXIF (orientation upright) where the format holds them;
        # as floats in [0, 1], which write_image rounds to `depth` bits. A ValueError: the format cannot hold it.
        try:
            write_image(path, pixels / peak, depth, None if alpha is None else alpha / peak, first.icc_profile,
                        first.exif)
        except ValueError as err:
            raise RestoreError(str(err)) from None
    return targets


def run(args: argparse.Namespace) -> List[Path]:
    """Restore every input of ``args`` (parsed ``basicsr restore`` options) and return the written files.

    Raises:
        UserError: A user error (RestoreError, WeightsError; the message says what to change).
    """
    restorer, jobs = _prepare(args)
    from tqdm import tqdm

    written = []
    for name, paths in tqdm(jobs, desc='restore', unit='img', disable=args.no_progress):
        written += _restore_job(restorer, name, paths, args)
    return written


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``basicsr restore``.

    Args:
        argv: Arguments without the program/subcommand name (default: ``sys.argv[1:]``).

    Returns:
        The exit code (0 on success, 2 on a user error, which is printed to stderr).
    """
    args = _build_parser().parse_args(argv)
    try:
        written = run(args)
    except (UserError, ImageReadError) as err:
        print(f'basicsr restore: error: {err}', file=sys.stderr)
        return 2
    count = len([p for p in written if not p.stem.endswith(SIDE_BY_SIDE)])
    print(f'Restored {count} image(s) into {args.output}')
    return 0


if __name__ == '__main__':
    sys.exit(main())

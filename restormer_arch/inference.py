"""``basicsr restore``: restore images with a Restormer checkpoint (any size, 8/16-bit, gray/colour, tiled or not).

Examples::

    basicsr restore -i rainy/ -o derained/ --task deraining --weights deraining.pth
    basicsr restore -i big.tif -o out/ --task motion_deblurring --weights motion_deblurring.pth --tile 512
    basicsr restore -i dp_pairs/ -o out/ --task dual_pixel_defocus_deblurring \
        --weights dual_pixel_defocus_deblurring.pth

``--task`` picks the network configuration of the released checkpoints (:data:`TASKS`); ``--arch-options`` overrides
constructor arguments with a JSON object (e.g. ``'{"dim": 8, "num_blocks": [1, 1, 1, 1]}'`` for tiny test networks or
your own trained variants). ``--weights`` accepts official ``{'params': ...}`` files, BasicSR ``params_ema``/``params``
checkpoints, mmagic state dicts (``generator.`` prefix) and bare state dicts (a ``module.`` prefix is removed too).
Checkpoints are always loaded with ``torch.load(weights_only=True)``: files that contain arbitrary Python objects are
refused.

Dual-pixel input (``--task dual_pixel_defocus_deblurring``): ``-i`` is a folder with either the DPDD layout
``inputL/NAME.png`` + ``inputR/NAME.png`` (``L/`` + ``R/`` also works) or pairs ``NAME_L.png`` + ``NAME_R.png``;
a single ``NAME_L.png`` file also works (its ``NAME_R.png`` is found beside it). The output is ``NAME.png``.

The input bit depth is kept (16-bit PNG/TIFF in, 16-bit out); gray images stay gray (they go through a colour model as
three equal channels) and colour images given to the gray model are converted to gray. An alpha channel is passed
through unchanged. Any size works (the network pads to a multiple of 8 internally).

``--tile T --tile-overlap O`` runs the network on overlapping T x T crops and cross-fades them
(:func:`restormer_arch.tiling.tiled_forward`), for images too large for memory. Without ``--tile`` the peak memory
is estimated from the pixel count (about 9 kB per pixel for the full-size model in fp32) and an image that would not
fit into the free memory (or ``--max-memory``) is refused with a suggested tile size. Restormer's channel attention
sees the whole input, so tiled results differ slightly from whole-image ones; larger tiles are closer.

``--precision bf16`` (CPU or GPU) and ``fp16`` (GPU only) run under ``torch.autocast``; non-finite outputs are
reported as an error.
"""
import argparse
import inspect
import json
import math
import os
import re
import sys
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch
from torch import Tensor, nn

from restormer_arch import checkpoint
from restormer_arch.archs.restormer_arch import Restormer
from restormer_arch.tiling import tiled_forward

__all__ = ['TASKS', 'RestoreError', 'build_network', 'load_checkpoint', 'load_weights',
           'infer_arch_options', 'main']

# Constructor arguments of the released checkpoints (see the README table); everything else is Restormer's default.
TASKS: Dict[str, dict] = {
    'deraining': {},
    'motion_deblurring': {},
    'defocus_deblurring': {},
    'dual_pixel_defocus_deblurring': {'inp_channels': 6, 'dual_pixel_task': True},
    'real_denoising': {'LayerNorm_type': 'BiasFree'},
    'gaussian_color_denoising': {'LayerNorm_type': 'BiasFree'},
    'gaussian_gray_denoising': {'inp_channels': 1, 'out_channels': 1, 'LayerNorm_type': 'BiasFree'},
}
IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.tif', '.tiff', '.bmp', '.webp')
# Peak working memory of a forward pass, measured on CPU for the default model (dim 48): about 2,300 float32 values
# per pixel (shared/notes/perf.md). It scales with the width; half precision roughly halves the activations.
BYTES_PER_PIXEL_DIM48 = 9.2e3
PRECISIONS = {'fp32': None, 'fp16': torch.float16, 'bf16': torch.bfloat16}


class RestoreError(ValueError):
    """A user-facing error of ``basicsr restore`` (bad input, checkpoint or option); the message says how to fix it."""


# ----------------------------------------------------------------------------------------------------------- network
def _arch_option_names() -> List[str]:
    return [p for p in inspect.signature(Restormer.__init__).parameters if p != 'self']


def build_network(task: str, arch_options: Optional[dict] = None) -> Restormer:
    """Build the Restormer configuration of ``task``, with ``arch_options`` overriding constructor arguments.

    Args:
        task: A key of :data:`TASKS`.
        arch_options: Extra/overriding ``Restormer`` constructor arguments.

    Returns:
        The network (random weights, train mode off).
    """
    if task not in TASKS:
        raise RestoreError(f'Unknown --task {task!r}; choose one of: {", ".join(TASKS)}.')
    unknown = sorted(set(arch_options or {}) - set(_arch_option_names()))
    if unknown:
        raise RestoreError(f'--arch-options: unknown Restormer argument(s) {unknown}; valid: {_arch_option_names()}.')
    return Restormer(**{**TASKS[task], **(arch_options or {})}).eval()


def load_checkpoint(path: str, param_key: Optional[str] = None) -> Dict[str, Tensor]:
    """Read a Restormer state dict from any supported checkpoint layout, safely (:mod:`restormer_arch.checkpoint`).

    Args:
        path: Checkpoint file (``.pth``/``.pt``).
        param_key: Entry to use (``params_ema``, ``params`` ...); default: the first of
            :data:`restormer_arch.checkpoint.STATE_DICT_KEYS` present, else the file itself as a bare state dict.

    Returns:
        The state dict with ``module.``/``generator.`` prefixes removed.

    Raises:
        RestoreError: Missing file, unsafe pickle (``weights_only=True`` refused it) or no state dict inside.
    """
    try:
        return checkpoint.load_state_dict(path, param_key, '--weights')
    except (FileNotFoundError, checkpoint.CheckpointError) as err:
        raise RestoreError(str(err)) from None


def infer_arch_options(state_dict: Dict[str, Tensor]) -> dict:
    """Guess the Restormer constructor arguments a state dict was saved from (what the error messages suggest).

    Args:
        state_dict: A Restormer state dict (prefixes already stripped).

    Returns:
        The arguments that could be read from key names and shapes (empty if it does not look like a Restormer).
    """
    embed = state_dict.get('patch_embed.proj.weight')
    if embed is None:
        return {}
    options = {'inp_channels': int(embed.shape[1]), 'dim': int(embed.shape[0]),
               'dual_pixel_task': 'skip_conv.weight' in state_dict,
               'LayerNorm_type': 'WithBias' if any(k.endswith('norm1.body.bias') for k in state_dict) else 'BiasFree',
               'bias': 'output.bias' in state_dict}
    if 'output.weight' in state_dict:
        options['out_channels'] = int(state_dict['output.weight'].shape[0])

    def count(prefix: str) -> int:
        return len({m.group(1) for k in state_dict for m in [re.match(rf'{prefix}\.(\d+)\.', k)] if m})

    options['num_blocks'] = [count(p) for p in ('encoder_level1', 'encoder_level2', 'encoder_level3', 'latent')]
    options['num_refinement_blocks'] = count('refinement')
    heads = [state_dict.get(f'{p}.0.attn.temperature') for p in
             ('encoder_level1', 'encoder_level2', 'encoder_level3', 'latent')]
    if all(h is not None for h in heads):
        options['heads'] = [int(h.shape[0]) for h in heads]
    return options


def _matching_tasks(inferred: dict) -> List[str]:
    defaults = {p: v.default for p, v in inspect.signature(Restormer.__init__).parameters.items() if p != 'self'}
    keys = ('inp_channels', 'out_channels', 'LayerNorm_type', 'dual_pixel_task')
    return [task for task, preset in TASKS.items()
            if all(inferred.get(k, {**defaults, **preset}[k]) == {**defaults, **preset}[k] for k in keys)]


def _mismatch_message(net: nn.Module, state_dict: Dict[str, Tensor], task: str, path: str) -> Optional[str]:
    mismatch = checkpoint.compare_state_dicts(net.state_dict(), state_dict)
    if not mismatch:
        return None
    message = f'{path} does not match the --task {task} configuration:\n  ' + mismatch.describe(sep='\n  ')
    inferred = infer_arch_options(state_dict)
    if not inferred:
        return message + '\n  The checkpoint does not look like a Restormer state dict (no patch_embed.proj.weight).'
    tasks = [t for t in _matching_tasks(inferred) if t != task]
    if tasks:
        message += f'\n  The checkpoint looks like a {" / ".join(tasks)} model: try --task {tasks[0]}.'
    size_keys = ('dim', 'num_blocks', 'num_refinement_blocks', 'heads', 'bias')
    sizes = {k: inferred[k] for k in size_keys if k in inferred}
    message += f'\n  Its size (from key names and shapes): --arch-options \'{json.dumps(sizes)}\''
    return message


def load_weights(net: nn.Module, state_dict: Dict[str, Tensor], task: str, path: str) -> None:
    """Load ``state_dict`` strictly into ``net``, with an error that names the mismatches and the likely task.

    Args:
        net: The network built for ``task``.
        state_dict: Weights from :func:`load_checkpoint`.
        task: The ``--task`` the network was built for (for the message).
        path: The checkpoint path (for the message).
    """
    message = _mismatch_message(net, state_dict, task, path)
    if message:
        raise RestoreError(message)
    net.load_state_dict(state_dict, strict=True)


# ------------------------------------------------------------------------------------------------------- image I/O
@dataclass
class ImageData:
    """An input image as float32 RGB(-like) ``(H, W, C)`` in [0, 1] plus what is needed to write it back alike."""

    pixels: np.ndarray
    peak: int  # 255 or 65535
    gray: bool
    alpha: Optional[np.ndarray] = None


def read_image(path: Path) -> ImageData:
    """Read an 8/16-bit gray, colour or colour+alpha image (PNG, JPEG, TIFF ...) as float RGB in [0, 1]."""
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise RestoreError(f'{path}: cannot read this file as an image (supported: {", ".join(IMAGE_EXTENSIONS)}).')
    if raw.dtype not in (np.uint8, np.uint16):
        raise RestoreError(f'{path}: {raw.dtype} images are not supported; use 8- or 16-bit PNG/TIFF/JPEG.')
    peak = 255 if raw.dtype == np.uint8 else 65535
    alpha = None
    if raw.ndim == 3 and raw.shape[2] == 4:
        raw, alpha = raw[..., :3], raw[..., 3]
    if raw.ndim == 2 or raw.shape[2] == 1:
        return ImageData(raw.reshape(raw.shape[0], raw.shape[1], 1).astype(np.float32) / peak, peak, True, alpha)
    return ImageData(cv2.cvtColor(raw, cv2.COLOR_BGR2RGB).astype(np.float32) / peak, peak, False, alpha)


def write_image(path: Path, pixels: np.ndarray, peak: int, alpha: Optional[np.ndarray] = None) -> None:
    """Write float RGB / gray ``(H, W, C)`` in [0, 1] as an 8- or 16-bit image (``peak`` 255 / 65535)."""
    dtype = np.uint8 if peak == 255 else np.uint16
    img = np.round(np.clip(pixels, 0, 1) * peak).astype(dtype)
    img = img[..., 0] if img.shape[2] == 1 else cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    if alpha is not None:
        img = np.dstack([img if img.ndim == 3 else cv2.cvtColor(img, cv2.COLOR_GRAY2BGR), alpha.astype(dtype)])
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), img):
        raise RestoreError(f'{path}: OpenCV could not write this file (is the extension supported for '
                           f'{img.dtype} images?).')


def _to_model_channels(pixels: np.ndarray, channels: int) -> np.ndarray:
    if pixels.shape[2] == channels:
        return pixels
    if channels == 1:
        return cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY)[..., None]
    return np.repeat(pixels, channels, axis=2)


def _from_model_channels(pixels: np.ndarray, gray: bool) -> np.ndarray:
    if gray and pixels.shape[2] == 3:
        return cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_RGB2GRAY)[..., None]
    return pixels


def _list_images(folder: Path) -> List[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def collect_inputs(path: Path, dual_pixel: bool) -> List[Tuple[str, List[Path]]]:
    """Find the images to restore: ``(output stem + extension, [input file(s)])`` pairs.

    Args:
        path: ``-i`` argument: an image file or a folder (dual-pixel layouts: see the module docstring).
        dual_pixel: Find left/right view pairs.

    Returns:
        The jobs, sorted by name.
    """
    if not path.exists():
        raise RestoreError(f'-i {path}: no such file or folder.')
    if not dual_pixel:
        files = [path] if path.is_file() else _list_images(path)
        if not files:
            raise RestoreError(f'-i {path}: no images found (extensions: {", ".join(IMAGE_EXTENSIONS)}).')
        return [(p.name, [p]) for p in files]
    if path.is_file():
        pairs = [path]
    else:
        for left_dir, right_dir in (('inputL', 'inputR'), ('L', 'R')):
            if (path / left_dir).is_dir() and (path / right_dir).is_dir():
                jobs = []
                for left in _list_images(path / left_dir):
                    right = path / right_dir / left.name
                    if not right.is_file():
                        raise RestoreError(f'{left}: the right view {right} is missing.')
                    jobs.append((left.name, [left, right]))
                if jobs:
                    return jobs
        pairs = [p for p in _list_images(path) if p.stem.endswith('_L')]
    jobs = []
    for left in pairs:
        right = left.with_name(left.stem[:-2] + '_R' + left.suffix)
        if not left.stem.endswith('_L') or not right.is_file():
            raise RestoreError(f'{left}: dual-pixel input needs NAME_L{left.suffix} with NAME_R{left.suffix} '
                               'beside it.')
        jobs.append((left.stem[:-2] + left.suffix, [left, right]))
    if not jobs:
        raise RestoreError(f'-i {path}: no dual-pixel pairs found. Use inputL/ + inputR/ folders with the same file '
                           'names, or NAME_L.png + NAME_R.png files.')
    return jobs


# -------------------------------------------------------------------------------------------------------- execution
def _pick_device(name: str) -> torch.device:
    if name == 'auto':
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    if name.startswith('cuda') and not torch.cuda.is_available():
        raise RestoreError('--device cuda: CUDA is not available here; use --device cpu (or auto).')
    return torch.device(name)


def _autocast(device: torch.device, precision: str):
    dtype = PRECISIONS[precision]
    if dtype is None:
        return nullcontext()
    if device.type == 'cpu' and dtype == torch.float16:
        raise RestoreError('--precision fp16 is not supported on CPU; use bf16 (or fp32).')
    if device.type == 'cuda' and dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        raise RestoreError('--precision bf16: this GPU has no bfloat16 support; use fp16 or fp32.')
    return torch.autocast(device.type, dtype=dtype)


def available_memory(device: torch.device) -> int:
    """Bytes free for activations on ``device`` (CUDA: free device memory; CPU: MemAvailable)."""
    if device.type == 'cuda':
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open('/proc/meminfo', encoding='ascii') as f:
            for line in f:
                if line.startswith('MemAvailable:'):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf('SC_AVPHYS_PAGES') * os.sysconf('SC_PAGE_SIZE'))


def estimate_memory(pixels: int, dim: int, precision: str) -> float:
    """Rough peak activation memory (bytes) of one Restormer forward on ``pixels`` pixels."""
    return pixels * BYTES_PER_PIXEL_DIM48 * dim / 48 * (1.0 if precision == 'fp32' else 0.6)


def _gib(num_bytes: float) -> str:
    return f'{num_bytes / 2**30:.1f} GiB' if num_bytes >= 2**29 else f'{num_bytes / 2**20:.1f} MiB'


def _check_memory(name: str, h: int, w: int, tile: Optional[int], dim: int, precision: str, budget: int) -> None:
    window = (min(tile, h), min(tile, w)) if tile else (h, w)
    need = estimate_memory(window[0] * window[1], dim, precision)
    if need <= budget:
        return
    per_pixel = need / (window[0] * window[1])
    suggestion = max(16, int(math.sqrt(0.7 * budget / per_pixel)) // 8 * 8)
    what = f'a {window[1]}x{window[0]} tile' if tile else f'{name} ({w}x{h})'
    raise RestoreError(f'{what} likely needs about {_gib(need)} for the forward pass, but only {_gib(budget)} is '
                       f'available. Use --tile {suggestion} --tile-overlap {min(32, suggestion // 4)} (tiles are '
                       'blended smoothly), or --max-memory GB to override the estimate.')


def _tiled(net: nn.Module, x: Tensor, tile: int, overlap: int, progress: bool) -> Tensor:
    try:
        return tiled_forward(net, x, tile=tile, overlap=overlap, progress=progress)
    except ValueError as err:
        raise RestoreError(f'--tile {tile} --tile-overlap {overlap}: {err}') from None


def _restore_one(net: nn.Module, pixels: np.ndarray, device: torch.device, precision: str, tile: Optional[int],
                 overlap: int, progress: bool) -> np.ndarray:
    x = torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1))).unsqueeze(0).to(device)
    with torch.inference_mode(), _autocast(device, precision):
        y = _tiled(net, x, tile, overlap, progress) if tile else net(x)
    y = y.float()
    if not torch.isfinite(y).all():
        raise RestoreError(f'The network produced NaN/inf values in --precision {precision}; use fp32 (or bf16).')
    return y.clamp(0, 1)[0].permute(1, 2, 0).cpu().numpy()


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='basicsr restore', description='Restore images with a Restormer checkpoint.',
        epilog='Tasks and their configurations: ' + '; '.join(f'{t}: {o or "defaults"}' for t, o in TASKS.items()))
    parser.add_argument('-i', '--input', required=True, help='image file or folder (dual-pixel: see the docs)')
    parser.add_argument('-o', '--output', required=True, help='output folder (created)')
    parser.add_argument('--task', required=True, choices=sorted(TASKS), help='picks the network configuration')
    parser.add_argument('--weights', help='checkpoint (.pth): official, BasicSR, mmagic or a bare state dict')
    parser.add_argument('--param-key', help='checkpoint entry to load (default: params_ema, then params, ...)')
    parser.add_argument('--allow-random-weights', action='store_true',
                        help='run without --weights (random network; for tests and demos only)')
    parser.add_argument('--arch-options', default='{}',
                        help='JSON object overriding Restormer constructor arguments, e.g. \'{"dim": 8}\'')
    parser.add_argument('--tile', type=int, help='process in tiles of this size (pixels; multiples of 8 are best)')
    parser.add_argument('--tile-overlap', type=int, default=32, help='overlap between tiles (default 32)')
    parser.add_argument('--device', default='auto', help='auto, cpu, cuda or cuda:N (default auto)')
    parser.add_argument('--precision', default='fp32', choices=sorted(PRECISIONS),
                        help='fp32 (default), bf16 (CPU/GPU autocast) or fp16 (GPU only)')
    parser.add_argument('--side-by-side', action='store_true', help='also write NAME_side_by_side.EXT: input | output')
    parser.add_argument('--max-memory', type=float, help='memory budget in GiB for the size check (default: free)')
    parser.add_argument('--no-progress', action='store_true', help='hide the progress bars')
    return parser


def _parse_arch_options(text: str) -> dict:
    try:
        options = json.loads(text)
    except json.JSONDecodeError as err:
        raise RestoreError(f'--arch-options is not valid JSON ({err}): {text!r}') from err
    if not isinstance(options, dict):
        raise RestoreError(f'--arch-options must be a JSON object like \'{{"dim": 8}}\', got {text!r}.')
    return options


def _prepare_network(args: argparse.Namespace, device: torch.device) -> nn.Module:
    net = build_network(args.task, _parse_arch_options(args.arch_options))
    if args.weights:
        load_weights(net, load_checkpoint(args.weights, args.param_key), args.task, args.weights)
    elif not args.allow_random_weights:
        raise RestoreError('--weights is required: a Restormer with random weights only scrambles images. Download '
                           'the released checkpoint of your task (see the README) or pass --allow-random-weights for '
                           'tests and demos.')
    return net.to(device)


def run(args: argparse.Namespace) -> List[Path]:
    """Restore every input of ``args`` (parsed ``basicsr restore`` options) and return the written files."""
    device = _pick_device(args.device)
    _autocast(device, args.precision)  # validate the precision before the (slow) work starts
    # Option errors are reported before the network is built and any image is read.
    if args.tile is not None and not (args.tile > 0 and 0 <= 2 * args.tile_overlap <= args.tile):
        raise RestoreError(f'--tile {args.tile} --tile-overlap {args.tile_overlap}: need tile > 0 and '
                           '0 <= overlap <= tile / 2.')
    net = _prepare_network(args, device)
    jobs = collect_inputs(Path(args.input), net.dual_pixel_task)
    budget = int(args.max_memory * 2**30) if args.max_memory else available_memory(device)
    dim = int(net.patch_embed.proj.weight.shape[0])
    view_channels = net.inp_channels // 2 if net.dual_pixel_task else net.inp_channels
    out_dir = Path(args.output)
    written = []
    from tqdm import tqdm

    for out_name, paths in tqdm(jobs, desc='restore', unit='img', disable=args.no_progress):
        views = [read_image(p) for p in paths]
        first = views[0]
        if any(v.pixels.shape[:2] != first.pixels.shape[:2] for v in views):
            raise RestoreError(f'{paths[1]}: the left and right views differ in size.')
        h, w = first.pixels.shape[:2]
        _check_memory(paths[0].name, h, w, args.tile, dim, args.precision, budget)
        model_in = np.concatenate([_to_model_channels(v.pixels, view_channels) for v in views], axis=2)
        restored = _restore_one(net, model_in, device, args.precision, args.tile, args.tile_overlap,
                                not args.no_progress)
        restored = _from_model_channels(restored, first.gray)
        target = out_dir / out_name
        write_image(target, restored, first.peak, first.alpha)
        written.append(target)
        if args.side_by_side:
            shown = _from_model_channels(_to_model_channels(first.pixels, restored.shape[2]), first.gray)
            target = out_dir / f'{Path(out_name).stem}_side_by_side{Path(out_name).suffix}'
            write_image(target, np.concatenate([shown, restored], axis=1), first.peak)
            written.append(target)
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
    except RestoreError as err:
        print(f'basicsr restore: error: {err}', file=sys.stderr)
        return 2
    print(f'Restored {len([p for p in written if "_side_by_side" not in p.stem])} image(s) into {args.output}')
    return 0


if __name__ == '__main__':
    sys.exit(main())

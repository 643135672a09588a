"""Tiled inference: restore an image of any size with peak memory bounded by the tile size.

The grid (:func:`tile_grid`) spreads the fewest tiles evenly, so every overlap has the same width. Every tile's output
is weighted by a separable window (:func:`blend_window`, built with the grid's actual overlap) that is 0 for the first
``overlap // 4`` pixels of each overlap and then rises smoothly; the weighted outputs are summed and divided by the
summed windows, so seams are feathered.

Exactness: the zero margin means that for a network whose receptive-field radius is at most ``overlap // 4`` (a local
convolutional network), the tiled result equals the whole-image result. Restormer's channel attention uses statistics
of the whole tile, so for it tiling is an approximation that gets closer as tiles grow.
"""
import itertools
import math
from typing import Any, Callable, List, Optional, Tuple, Union

import torch
from torch import Tensor
from tqdm import tqdm

from restormer_arch.perf import autocast_context

__all__ = ['check_tile_options', 'tile_grid', 'fixed_tile_shape', 'blend_window', 'tiled_forward',
           'run_network', 'BLEND_MODES']

BLEND_MODES = ('cosine', 'linear', 'box')
# Fitted tiles are rounded up to this multiple (Restormer pads inputs to multiples of 8 otherwise).
TILE_MULTIPLE = 8


def check_tile_options(tile: object, overlap: object, blend: str = 'cosine') -> None:
    """Check a tile size and overlap (the one rule for every caller: ``basicsr restore``, ``val.tile``, the library).

    Args:
        tile: Tile size in pixels: a positive int (a multiple of 8 avoids padding inside Restormer).
        overlap: Overlap of neighbouring tiles in pixels: an int with ``0 <= overlap < tile / 2``.
        blend: Window of the overlaps, one of :data:`BLEND_MODES`.

    Raises:
        ValueError: Naming the bad value and the rule.
    """
    if not isinstance(tile, int) or isinstance(tile, bool) or tile < 1:
        raise ValueError(f'tile={tile!r}: the tile size must be a positive whole number of pixels (e.g. 256).')
    if not isinstance(overlap, int) or isinstance(overlap, bool) or overlap < 0:
        raise ValueError(f'overlap={overlap!r}: the tile overlap must be a whole number of pixels >= 0 (e.g. 32).')
    if 2 * overlap >= tile:
        raise ValueError(f'overlap={overlap} with tile={tile}: the overlap must be below half the tile size '
                         f'(at most {(tile - 1) // 2}). Try tile 256 with overlap 32.')
    if blend not in BLEND_MODES:
        raise ValueError(f'blend={blend!r}: the overlap window must be one of {", ".join(BLEND_MODES)}.')


def tile_grid(length: int, tile: int, overlap: int, fit_tile: bool = True) -> Tuple[int, List[int]]:
    """Tile size and evenly spread start offsets along one axis.

    Uses the fewest tiles of at most ``tile`` pixels whose neighbours overlap by at least ``overlap``; the first tile
    starts at 0, the last ends at ``length``, the spacing differs by at most one pixel.

    Args:
        length: Image size along the axis (pixels).
        tile: Largest tile size (clipped to ``length``).
        overlap: Smallest overlap of neighbouring tiles (``0 <= overlap < tile / 2``).
        fit_tile: Shrink the tiles to the smallest multiple of 8 (at most ``tile``) that covers ``length`` with that
            many tiles; False keeps exactly ``tile`` pixels.

    Returns:
        ``(size, starts)``: the tile size and the sorted start offsets.
    """
    if length <= tile:
        return length, [0]
    count = math.ceil((length - overlap) / (tile - overlap))
    size = tile
    if fit_tile:
        needed = math.ceil((length + (count - 1) * overlap) / count)
        size = min(tile, -(-needed // TILE_MULTIPLE) * TILE_MULTIPLE)
    return size, [i * (length - size) // (count - 1) for i in range(count)]


def fixed_tile_shape(height: int, width: int, tile: Optional[int]) -> Tuple[int, int]:
    """``(H, W)`` of the inputs a network sees for one image with tiles of exactly ``tile`` pixels (``fit_tile=False``,
    what a compiled network runs), or of the whole image when ``tile`` is None: with tiles, a side shorter than the
    tile keeps its own length. torch.compile compiles once per distinct shape."""
    return (min(height, tile), min(width, tile)) if tile else (height, width)


def blend_window(size: int, overlap: int, lead: bool, trail: bool, mode: str = 'cosine') -> Tensor:
    """1-D blending weights of a tile: zero margin, then a ramp, on each side that overlaps a neighbour.

    Args:
        size: Tile size along the axis.
        overlap: Nominal overlap with the neighbours.
        lead: The tile has a neighbour before it (ramp up at the start).
        trail: The tile has a neighbour after it (ramp down at the end).
        mode: ``'cosine'`` (raised cosine), ``'linear'`` or ``'box'`` (hard switch in the middle of the overlap).

    Returns:
        A float32 tensor of ``size`` weights in [0, 1].
    """
    margin = overlap // 4
    ramp_len = max(overlap - 2 * margin, 1)
    t = (torch.arange(ramp_len, dtype=torch.float64) + 0.5) / ramp_len
    ramp = {'cosine': 0.5 - 0.5 * torch.cos(math.pi * t), 'linear': t, 'box': (t >= 0.5).to(torch.float64)}[mode]
    profile = torch.cat([torch.zeros(margin, dtype=torch.float64), ramp])[:size]
    window = torch.ones(size, dtype=torch.float64)
    if lead:
        window[:profile.numel()] = torch.minimum(window[:profile.numel()], profile)
    if trail:
        window[size - profile.numel():] = torch.minimum(window[size - profile.numel():], profile.flip(0))
    return window.float()


def _axis_plan(length: int, tile: int, overlap: int, mode: str,
               fit_tile: bool) -> Tuple[int, List[Tuple[int, Tensor]], Tensor]:
    """Tile size, (start, window) per tile along one axis, and the sum of the windows over the axis."""
    size, starts = tile_grid(length, tile, overlap, fit_tile)
    actual = size - max((b - a for a, b in zip(starts, starts[1:])), default=size)
    plan = [(start, blend_window(size, actual, i > 0, i < len(starts) - 1, mode)) for i, start in enumerate(starts)]
    total = torch.zeros(length)
    for start, window in plan:
        total[start:start + size] += window
    return size, plan, total


def run_network(network: Callable[[Tensor], Any], image: Tensor, tile: Optional[int] = None, overlap: int = 32,
                blend: str = 'cosine', device: Union[str, torch.device, None] = None, precision: str = 'fp32',
                progress: bool = False, fit_tile: bool = True, batch_size: int = 1) -> Tensor:
    """One forward pass, whole or tile by tile with the overlaps blended, under autocast and without gradients: the
    one forward of restore and validation.

    With tiles, peak memory is that of ``batch_size`` tiles through the network plus the input and the float32 output
    accumulator; it does not grow with the image.

    Args:
        network: Maps ``(N, C, h, w)`` to ``(N, C_out, h, w)`` (same spatial size), e.g. a Restormer in eval mode; a
            multi-output network's last output is used.
        image: ``(N, C, H, W)`` float input of any size (odd sizes and images smaller than a tile included).
        tile: Largest tile size in pixels (None: the whole image; see :func:`check_tile_options`).
        overlap: Smallest overlap between neighbouring tiles; must be below ``tile / 2``.
        blend: Window of the overlaps: ``'cosine'``, ``'linear'`` or ``'box'``.
        device: Where to run the network (default: the image's device); only tiles are moved there when tiling.
        precision: ``'fp32'``, ``'bf16'`` or ``'fp16'`` (:func:`restormer_arch.perf.resolve_precision`).
        progress: Show a progress bar over the tiles.
        fit_tile: Shrink tiles to fit the image evenly (fewer recomputed pixels, :func:`tile_grid`); False keeps
            every tile at exactly ``tile`` pixels (images smaller than a tile aside), e.g. for a compiled network.
        batch_size: Tiles per network call (all tiles have the same size); more uses more memory. Results do not
            depend on it for networks that treat batch items independently, as Restormer does.

    Returns:
        ``(N, C_out, H, W)`` float32 output on the image's device, not clamped.

    Raises:
        ValueError: For bad tile/overlap/blend/batch_size values or a network that changes the spatial size.
    """
    device = image.device if device is None else torch.device(device)
    if tile is not None:
        check_tile_options(tile, overlap, blend)
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f'tiled_forward: batch_size={batch_size!r} must be a positive int.')

    def forward(x: Tensor) -> Tensor:
        out = network(x.to(device))
        return (out[-1] if isinstance(out, (list, tuple)) else out).float().to(image.device)

    # no_grad rather than inference_mode: callers get ordinary tensors they may modify in place.
    with torch.no_grad(), autocast_context(precision, device.type):
        if tile is None:
            return forward(image)
        return _tiled(forward, image, tile, overlap, blend, progress, fit_tile, batch_size)


def tiled_forward(network: Callable[[Tensor], Any], image: Tensor, tile: int = 256, overlap: int = 32,
                  **options: Any) -> Tensor:
    """:func:`run_network` in tiles of at most ``tile`` pixels (default 256); ``options`` are its other arguments."""
    return run_network(network, image, tile, overlap, **options)


def _tiled(forward: Callable[[Tensor], Tensor], image: Tensor, tile: int, overlap: int, blend: str, progress: bool,
           fit_tile: bool, batch_size: int) -> Tensor:
    n, _, height, width = image.shape
    tile_h, rows, norm_h = _axis_plan(height, tile, overlap, blend, fit_tile)
    tile_w, cols, norm_w = _axis_plan(width, tile, overlap, blend, fit_tile)
    grid = list(itertools.product(rows, cols))
    output: Optional[Tensor] = None
    bar = tqdm(total=len(grid), desc='tiles', leave=False, disable=not progress)
    for first in range(0, len(grid), batch_size):
        group = grid[first:first + batch_size]
        patches = torch.cat([image[:, :, top:top + tile_h, left:left + tile_w] for (top, _), (left, _) in group])
        results = forward(patches)
        if results.shape[0] != patches.shape[0] or results.shape[-2:] != patches.shape[-2:]:
            raise ValueError(f'tiled_forward: the network mapped tiles of shape {tuple(patches.shape)} to '
                             f'{tuple(results.shape)}; tiling needs outputs of the same spatial size.')
        if output is None:
            output = torch.zeros(n, results.shape[1], height, width, device=image.device)
        for index, ((top, win_h), (left, win_w)) in enumerate(group):
            weight = (win_h[:, None] * win_w[None, :]).to(image.device)
            output[:, :, top:top + tile_h, left:left + tile_w] += results[index * n:(index + 1) * n] * weight
        del patches, results
        bar.update(len(group))
    bar.close()
    # The windows are separable, so the normaliser is the outer product of the per-axis sums.
    return output.div_((norm_h[:, None] * norm_w[None, :]).to(image.device))

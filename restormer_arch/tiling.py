"""Tiled inference: restore an image of any size with peak memory bounded by the tile size.

The image is cut into overlapping tiles (the last tile of a row/column sits flush with the border). Every tile's output
is weighted by a separable window that is 1 in the tile's interior and, on each side that overlaps a neighbour, is 0
for the first ``overlap // 4`` pixels and then rises smoothly (raised cosine or linear ramp) over the middle half of the
overlap. The weighted outputs are summed and divided by the summed windows, so seams are feathered.

Exactness: the zero margin means that for a network whose receptive-field radius is at most ``overlap // 4`` (a local
convolutional network), the tiled result equals the whole-image result. Restormer's channel attention uses statistics
of the whole tile, so for it tiling is an approximation that gets closer as tiles grow.
"""
import itertools
import math
from typing import Callable, List, Optional

import torch
from torch import Tensor
from tqdm import tqdm

__all__ = ['tile_starts', 'blend_window', 'tiled_forward', 'BLEND_MODES']

BLEND_MODES = ('cosine', 'linear', 'box')


def tile_starts(length: int, tile: int, overlap: int) -> List[int]:
    """Start offsets of the tiles along one axis: every ``tile - overlap`` pixels, the last one flush with the end.

    Args:
        length: Image size along the axis.
        tile: Tile size (clipped to ``length``).
        overlap: Overlap of neighbouring tiles.

    Returns:
        Sorted start offsets.
    """
    tile = min(tile, length)
    if tile == length:
        return [0]
    return list(range(0, length - tile, tile - overlap)) + [length - tile]


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
    if mode == 'cosine':
        ramp = 0.5 - 0.5 * torch.cos(math.pi * t)
    elif mode == 'linear':
        ramp = t
    else:
        ramp = (t >= 0.5).to(torch.float64)
    profile = torch.cat([torch.zeros(margin, dtype=torch.float64), ramp])[:size]
    window = torch.ones(size, dtype=torch.float64)
    if lead:
        window[:profile.numel()] = torch.minimum(window[:profile.numel()], profile)
    if trail:
        window[size - profile.numel():] = torch.minimum(window[size - profile.numel():], profile.flip(0))
    return window.float()


def _axis_windows(length: int, tile: int, overlap: int, mode: str) -> List[Tensor]:
    starts = tile_starts(length, tile, overlap)
    size = min(tile, length)
    return [blend_window(size, overlap, i > 0, i < len(starts) - 1, mode) for i in range(len(starts))]


def _axis_norm(length: int, tile: int, overlap: int, mode: str) -> Tensor:
    total = torch.zeros(length)
    size = min(tile, length)
    for start, window in zip(tile_starts(length, tile, overlap), _axis_windows(length, tile, overlap, mode)):
        total[start:start + size] += window
    if bool((total <= 0).any()):  # cannot happen with overlap < tile / 2; guards future changes
        raise RuntimeError(f'tiling leaves pixels without weight (length={length}, tile={tile}, overlap={overlap})')
    return total


def tiled_forward(network: Callable[[Tensor], Tensor], image: Tensor, tile: int = 256, overlap: int = 32,
                  blend: str = 'cosine', device: Optional[torch.device] = None, progress: bool = False) -> Tensor:
    """Run an image-to-image network tile by tile and blend the overlaps.

    Peak memory is that of one tile through the network plus the input and the float32 output accumulator.

    Args:
        network: Maps ``(N, C, h, w)`` to ``(N, C_out, h, w)`` (same spatial size), e.g. a Restormer in eval mode.
        image: ``(N, C, H, W)`` input of any size (odd sizes and images smaller than a tile included).
        tile: Tile size in pixels (a multiple of 8 avoids padding inside Restormer).
        overlap: Overlap between neighbouring tiles; must be below ``tile / 2``.
        blend: Window of the overlaps: ``'cosine'``, ``'linear'`` or ``'box'``.
        device: Where to run the network (default: the image's device); only tiles are moved there.
        progress: Show a progress bar over the tiles.

    Returns:
        ``(N, C_out, H, W)`` float32 output on the image's device.

    Raises:
        ValueError: For bad tile/overlap/blend values or a network that changes the spatial size.
    """
    if image.dim() != 4:
        raise ValueError(f'tiled_forward expects an (N, C, H, W) image, got shape {tuple(image.shape)}.')
    if blend not in BLEND_MODES:
        raise ValueError(f'tiled_forward: blend must be one of {BLEND_MODES}, got {blend!r}.')
    if tile < 1 or overlap < 0 or 2 * overlap >= tile:
        raise ValueError(f'tiled_forward: need tile >= 1 and 0 <= overlap < tile / 2, got tile={tile}, '
                         f'overlap={overlap}. Try tile: 256, overlap: 32.')
    n, _, height, width = image.shape
    device = image.device if device is None else torch.device(device)
    tile_h, tile_w = min(tile, height), min(tile, width)
    rows = list(zip(tile_starts(height, tile, overlap), _axis_windows(height, tile, overlap, blend)))
    cols = list(zip(tile_starts(width, tile, overlap), _axis_windows(width, tile, overlap, blend)))
    output: Optional[Tensor] = None
    bar = tqdm(total=len(rows) * len(cols), desc='tiles', leave=False, disable=not progress)
    for (top, win_h), (left, win_w) in itertools.product(rows, cols):
        patch = image[:, :, top:top + tile_h, left:left + tile_w].to(device)
        result = network(patch)
        if result.shape[0] != n or result.shape[-2:] != patch.shape[-2:]:
            raise ValueError(f'tiled_forward: the network mapped a tile of shape {tuple(patch.shape)} to '
                             f'{tuple(result.shape)}; tiling needs outputs of the same spatial size.')
        if output is None:
            output = torch.zeros(n, result.shape[1], height, width, device=image.device)
        weight = (win_h[:, None] * win_w[None, :]).to(image.device)
        output[:, :, top:top + tile_h, left:left + tile_w] += result.float().to(image.device) * weight
        del patch, result
        bar.update()
    bar.close()
    # The windows are separable, so the normaliser is the outer product of the per-axis sums.
    norm = _axis_norm(height, tile, overlap, blend)[:, None] * _axis_norm(width, tile, overlap, blend)[None, :]
    return output.div_(norm.to(image.device))

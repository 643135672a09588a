"""How much does tiled inference change Restormer's output, and do seams show?

Restormer's channel attention (MDTA) pools statistics over the whole input, so a tile sees different statistics than
the whole image and tiled results differ slightly from whole-image ones even far from the seams. This script measures
that on a trained model (by default the demo model from ``make demo``) for several tile sizes and overlaps:

* PSNR(tiled, whole): how close the tiled output is to the whole-image output (higher is closer);
* PSNR(tiled, clean) vs PSNR(whole, clean): whether tiling costs restoration quality;
* seam ratio: mean absolute horizontal+vertical gradient of (tiled - whole) on the rows/columns where tiles meet,
  divided by the same quantity elsewhere (1.0 = seams invisible in the difference image; >> 1 = visible seams).

Usage::

    python benchmarks/tiling_quality.py --weights experiments/Demo_Restormer_GaussianDenoising/models/net_g_latest.pth
"""
import argparse
import glob
import math
import os
import sys
from typing import Dict, List, Tuple

import cv2
import numpy as np
import torch
import yaml

import restormer_arch  # noqa: F401  (compat fixes before basicsr)
from restormer_arch.archs import Restormer
from restormer_arch.checkpoint import load_file
from restormer_arch.tiling import tile_grid, tiled_forward

DEMO_WEIGHTS = 'experiments/Demo_Restormer_GaussianDenoising/models/net_g_latest.pth'


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of two images in [0, 1]."""
    mse = torch.mean((a.clamp(0, 1) - b.clamp(0, 1)) ** 2).item()
    return float('inf') if mse == 0 else 10 * math.log10(1 / mse)


def seam_ratio(diff: torch.Tensor, height: int, width: int, tile: int, overlap: int) -> float:
    """Gradient energy of ``diff`` across tile boundaries relative to the rest of the image."""
    grad_y = (diff[..., 1:, :] - diff[..., :-1, :]).abs().mean(dim=(0, 1, 3))  # per row boundary
    grad_x = (diff[..., :, 1:] - diff[..., :, :-1]).abs().mean(dim=(0, 1, 2))  # per column boundary

    def boundaries(length: int) -> List[int]:
        # Where one tile's blending window starts or ends: the places a seam could appear.
        edges = set()
        size, starts = tile_grid(length, tile, overlap)  # the grid tiled_forward uses (fitted tiles)
        actual = size - max((b - a for a, b in zip(starts, starts[1:])), default=size)
        for start in starts[1:]:
            edges.update({start + actual // 4, start + actual - actual // 4, start})
        return sorted(e - 1 for e in edges if 0 < e < length)

    rows, cols = boundaries(height), boundaries(width)
    at_seams = torch.cat([grad_y[rows], grad_x[cols]]) if rows or cols else torch.zeros(1)
    mask_y = torch.ones_like(grad_y, dtype=torch.bool)
    mask_y[rows] = False
    mask_x = torch.ones_like(grad_x, dtype=torch.bool)
    mask_x[cols] = False
    elsewhere = torch.cat([grad_y[mask_y], grad_x[mask_x]])
    return (at_seams.mean() / elsewhere.mean().clamp_min(1e-12)).item()


def load_images(folder: str, sigma: float, seed: int) -> List[Tuple[str, torch.Tensor, torch.Tensor]]:
    """Clean images of ``folder`` and noisy versions (fixed seed, unclipped, as the denoising protocol)."""
    pairs = []
    for path in sorted(glob.glob(os.path.join(folder, '*.png'))):
        clean = cv2.cvtColor(cv2.imread(path, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB).astype(np.float32) / 255
        noise = np.random.default_rng(seed).normal(0, sigma / 255, clean.shape).astype(np.float32)
        to_tensor = lambda a: torch.from_numpy(a.transpose(2, 0, 1).copy())[None]  # noqa: E731
        pairs.append((os.path.basename(path), to_tensor(clean), to_tensor(clean + noise)))
    if not pairs:
        raise SystemExit(f'no PNG images in {folder}: run `python datasets/prepare_demo.py` first')
    return pairs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--weights', default=DEMO_WEIGHTS)
    parser.add_argument('--options', default='options/Demo.yml', help='option file with the network_g of the weights')
    parser.add_argument('--images', default='datasets/Demo/val')
    parser.add_argument('--sigma', type=float, default=25)
    parser.add_argument('--tiles', default='64,96,128,192', help='comma-separated tile sizes')
    parser.add_argument('--overlaps', default='16,32', help='comma-separated overlaps')
    args = parser.parse_args()

    with open(args.options, encoding='utf-8') as f:
        net_opt = dict(yaml.safe_load(f)['network_g'])
    net_opt.pop('type')
    net = Restormer(**net_opt).eval()
    net.load_state_dict(load_file(args.weights, '--weights')['params'])
    rows: Dict[Tuple[int, int], List[Tuple[float, float, float]]] = {}
    whole_psnrs = []
    with torch.inference_mode():
        for _, clean, noisy in load_images(args.images, args.sigma, seed=0):
            whole = net(noisy)
            whole_psnrs.append(psnr(whole, clean))
            h, w = noisy.shape[-2:]
            for tile in map(int, args.tiles.split(',')):
                for overlap in map(int, args.overlaps.split(',')):
                    if 2 * overlap >= tile:
                        continue
                    tiled = tiled_forward(net, noisy, tile=tile, overlap=overlap)
                    rows.setdefault((tile, overlap), []).append(
                        (psnr(tiled, whole), psnr(tiled, clean), seam_ratio(tiled - whole, h, w, tile, overlap)))
    print(f'whole-image PSNR vs clean: {np.mean(whole_psnrs):.2f} dB ({len(whole_psnrs)} images, sigma {args.sigma})')
    print('| tile | overlap | PSNR(tiled, whole) dB | PSNR(tiled, clean) dB | seam ratio |')
    print('|---|---|---|---|---|')
    for (tile, overlap), values in sorted(rows.items()):
        to_whole, to_clean, seams = np.mean(values, axis=0)
        print(f'| {tile} | {overlap} | {to_whole:.2f} | {to_clean:.2f} | {seams:.2f} |')
    return 0


if __name__ == '__main__':
    sys.exit(main())

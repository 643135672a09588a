"""Score a folder of restored images against the ground truth with a benchmark's protocol (no MATLAB needed).

    python -m restormer_arch.evaluation --protocol deraining --restored results/Rain100H --gt test/Rain100H/target

Images are paired by file stem (``rain-001.png`` with ``rain-001.jpg`` is fine) and read with the project's one
decoder (:func:`restormer_arch.data.image_io.read_image`: EXIF orientation applied, alpha dropped, 16-bit stays
16-bit; both images of a pair must have the same bit depth). The mean of every metric is printed; ``--csv`` also
writes the per-image values. Protocols (see ``options/test/README.md``):

* ``deraining``: PSNR / SSIM on the MATLAB Y channel (``evaluate_PSNR_SSIM.m``);
* ``gopro`` / ``hide`` / ``sidd``: MATLAB ``psnr`` / ``ssim`` on RGB;
* ``realblur``: ECC-aligned, masked PSNR / SSIM;
* ``dpdd``: PSNR, scikit-image-default SSIM, MAE (and LPIPS with ``--lpips``);
* ``gaussian_denoising``: PSNR on the saved images.
"""
import argparse
import csv
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from restormer_arch.atomic import atomic_write
from restormer_arch.data.image_io import IMAGE_EXTENSIONS, ImageReadError, read_image
from restormer_arch.metrics import (
    calculate_lpips,
    calculate_mae,
    calculate_psnr_realblur,
    calculate_psnr_rgb_matlab,
    calculate_psnr_y_matlab,
    calculate_ssim_dpdd,
    calculate_ssim_realblur,
    calculate_ssim_rgb_matlab,
    calculate_ssim_y_matlab,
)

__all__ = ['PROTOCOLS', 'evaluate_folders', 'main']

_RGB = {'psnr': calculate_psnr_rgb_matlab, 'ssim': calculate_ssim_rgb_matlab}
PROTOCOLS = {
    'deraining': {'psnr': calculate_psnr_y_matlab, 'ssim': calculate_ssim_y_matlab},
    'gopro': _RGB,
    'hide': _RGB,
    'sidd': _RGB,
    'realblur': {'psnr': calculate_psnr_realblur, 'ssim': calculate_ssim_realblur},
    'dpdd': {'psnr': calculate_psnr_rgb_matlab, 'ssim': calculate_ssim_dpdd, 'mae': calculate_mae},
    'gaussian_denoising': {'psnr': calculate_psnr_rgb_matlab},
}


def _by_stem(folder: Path) -> Dict[str, Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f'{folder}: folder not found.')
    files = {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_EXTENSIONS}
    if not files:
        raise FileNotFoundError(f'{folder}: no images ({", ".join(IMAGE_EXTENSIONS)}).')
    return files


def _read(path: Path) -> np.ndarray:
    # (H, W) for gray, (H, W, 3) BGR for colour, at the file's own bit depth; alpha is not scored.
    pixels = read_image(path).pixels
    return pixels[..., 0] if pixels.shape[2] == 1 else pixels


def evaluate_folders(restored: Path, gt: Path, protocol: str, lpips: bool = False) -> List[dict]:
    """Per-image metrics of every restored image that has a ground truth of the same stem.

    Args:
        restored: Folder of restored images.
        gt: Folder of ground-truth images.
        protocol: A key of :data:`PROTOCOLS`.
        lpips: Add LPIPS (AlexNet; needs the optional ``lpips`` package).

    Returns:
        One dict per image: ``{'name': stem, <metric>: value, ...}``.

    Raises:
        KeyError: Unknown ``protocol`` (the command line offers only the known ones).
        FileNotFoundError: A folder is missing or empty, or a ground truth has no restored image.
        ValueError: A restored image and its ground truth differ in bit depth.
    """
    metrics = dict(PROTOCOLS[protocol], **({'lpips': calculate_lpips} if lpips else {}))
    outputs, targets = _by_stem(Path(restored)), _by_stem(Path(gt))
    missing = sorted(set(targets) - set(outputs))
    if missing:
        raise FileNotFoundError(f'{restored}: no restored image for {len(missing)} ground truth(s), e.g. '
                                f'{missing[:3]}.')
    rows = []
    for stem in sorted(targets):
        out, ref = _read(outputs[stem]), _read(targets[stem])
        if out.dtype != ref.dtype:
            raise ValueError(f'{outputs[stem]} is {out.dtype} but {targets[stem]} is {ref.dtype}; save the results '
                             'at the bit depth of the ground truth.')
        rows.append({'name': stem, **{name: fn(out, ref, crop_border=0) for name, fn in metrics.items()}})
    return rows


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command line: ``python -m restormer_arch.evaluation --protocol P --restored DIR --gt DIR [--csv F]``."""
    parser = argparse.ArgumentParser(prog='python -m restormer_arch.evaluation', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--protocol', required=True, choices=sorted(PROTOCOLS))
    parser.add_argument('--restored', type=Path, required=True, help='folder of restored images')
    parser.add_argument('--gt', type=Path, required=True, help='folder of ground-truth images')
    parser.add_argument('--lpips', action='store_true', help='add LPIPS (AlexNet; optional lpips package)')
    parser.add_argument('--csv', type=Path, help='also write the per-image values to this CSV file')
    args = parser.parse_args(argv)
    try:
        rows = evaluate_folders(args.restored, args.gt, args.protocol, args.lpips)
    except (FileNotFoundError, ImageReadError, ValueError, ImportError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    names = [k for k in rows[0] if k != 'name']
    if args.csv:
        args.csv.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(args.csv, 'w', encoding='utf-8', newline='') as f:
            writer = csv.DictWriter(f, fieldnames=['name', *names])
            writer.writeheader()
            writer.writerows(rows)
    means = '  '.join(f'{n.upper()} {np.mean([r[n] for r in rows]):.4f}' for n in names)
    print(f'{args.protocol}: {len(rows)} images  {means}')
    return 0

"""Score restored images with a benchmark's protocol (no MATLAB needed), and write DND benchmark submissions.

**Folders**::

    python -m restormer_arch.evaluation --protocol deraining --restored results/Rain100H --gt test/Rain100H/target

Images are paired by file stem (``rain-001.png`` with ``rain-001.jpg`` is fine) and read with the project's one
decoder (:func:`restormer_arch.data.image_io.read_image`: EXIF orientation applied, alpha dropped, 16-bit stays
16-bit; both images of a pair must have the same bit depth). The mean of every metric is printed; ``--csv`` also
writes the per-image values. The protocols: :data:`PROTOCOLS` (their metrics: options/test/README.md).

**SIDD** (real denoising, validation set): ``ValidationNoisyBlocksSrgb.mat`` and ``ValidationGtBlocksSrgb.mat`` hold
one variable each (``ValidationNoisyBlocksSrgb`` / ``ValidationGtBlocksSrgb``): a ``40 x 32 x 256 x 256 x 3`` uint8
array (40 images, 32 blocks each, RGB), read by :func:`load_sidd_blocks`. The paper's score is the mean over all 1280
blocks of MATLAB ``psnr`` and ``ssim`` on [0, 1] images (``evaluate_sidd.m``); :func:`evaluate_sidd` computes it with
:func:`~restormer_arch.metrics.calculate_psnr_rgb_matlab` / :func:`~restormer_arch.metrics.calculate_ssim_rgb_matlab`
(``ssim`` on an RGB block = MATLAB's 3-D SSIM).

**DND** (real denoising, test set, scored only by the benchmark server): 50 images with 20 boxes each. The server
expects one file per image, ``0001.mat`` ... ``0050.mat``, holding ``Idenoised`` (a 1 x 20 cell array of the
denoised ``H x W x 3`` float32 boxes in [0, 1], in the box order of ``info.mat``), ``israw`` (false for sRGB) and
``eval_version`` (``'1.0'``). Reading DND's own input files needs ``h5py`` (MATLAB v7.3) and is left to the user.
"""
import argparse
import csv
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from scipy import io as sio

from restormer_arch.atomic import atomic_write
from restormer_arch.data.image_io import IMAGE_EXTENSIONS, read_image
from restormer_arch.data.sidd_blocks_dataset import load_sidd_blocks
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

__all__ = ['PROTOCOLS', 'evaluate_folders', 'main', 'DND_BOXES_PER_IMAGE', 'load_sidd_blocks', 'evaluate_sidd',
           'write_dnd_submission', 'read_dnd_submission']

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
DND_BOXES_PER_IMAGE = 20
DND_EVAL_VERSION = '1.0'


# ---------------------------------------------------------------------------------------------------------- folders
def _by_stem(folder: Path) -> Dict[str, Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f'{folder}: folder not found.')
    files = {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_EXTENSIONS}
    if not files:
        raise FileNotFoundError(f'{folder}: no images ({", ".join(IMAGE_EXTENSIONS)}).')
    return files


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
        # (H, W, 1) gray or (H, W, 3) BGR at the file's own bit depth; alpha is not scored.
        out, ref = read_image(outputs[stem]).pixels, read_image(targets[stem]).pixels
        if out.dtype != ref.dtype:
            raise ValueError(f'{outputs[stem]} is {out.dtype} but {targets[stem]} is {ref.dtype}; save the results '
                             'at the bit depth of the ground truth.')
        rows.append({'name': stem, **{name: fn(out, ref, crop_border=0) for name, fn in metrics.items()}})
    return rows


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command line: ``python -m restormer_arch.evaluation --protocol P --restored DIR --gt DIR [--csv F]``."""
    parser = argparse.ArgumentParser(prog='python -m restormer_arch.evaluation',
                                     description='Score a folder of restored images with a benchmark protocol.')
    parser.add_argument('--protocol', required=True, choices=sorted(PROTOCOLS))
    parser.add_argument('--restored', type=Path, required=True, help='folder of restored images')
    parser.add_argument('--gt', type=Path, required=True, help='folder of ground-truth images')
    parser.add_argument('--lpips', action='store_true', help='add LPIPS (AlexNet; optional lpips package)')
    parser.add_argument('--csv', type=Path, help='also write the per-image values to this CSV file')
    args = parser.parse_args(argv)
    try:
        rows = evaluate_folders(args.restored, args.gt, args.protocol, args.lpips)
    except (FileNotFoundError, ValueError, ImportError) as err:  # ImageReadError is a ValueError
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


# ------------------------------------------------------------------------------------------------------- SIDD / DND
def _unit_range(blocks: np.ndarray) -> np.ndarray:
    if blocks.dtype in (np.uint8, np.uint16):
        return blocks.astype(np.float64) / np.iinfo(blocks.dtype).max
    return blocks.astype(np.float64)


def evaluate_sidd(denoised: np.ndarray, gt: np.ndarray) -> Tuple[float, float]:
    """Mean PSNR and SSIM over all SIDD blocks (MATLAB ``psnr``/``ssim`` on [0, 1] RGB blocks).

    Args:
        denoised: ``(images, blocks, H, W, 3)``, uint8 or float in [0, 1].
        gt: Same shape, uint8 (``ValidationGtBlocksSrgb``) or float in [0, 1].

    Returns:
        ``(mean PSNR in dB, mean SSIM)``.
    """
    if denoised.shape != gt.shape:
        raise ValueError(f'Denoised blocks {denoised.shape} and ground truth {gt.shape} differ in shape.')
    a, b = _unit_range(denoised).reshape(-1, *gt.shape[2:]), _unit_range(gt).reshape(-1, *gt.shape[2:])
    psnrs = [calculate_psnr_rgb_matlab(x, y, data_range=1.0) for x, y in zip(a, b)]
    ssims = [calculate_ssim_rgb_matlab(x, y, data_range=1.0) for x, y in zip(a, b)]
    return float(np.mean(psnrs)), float(np.mean(ssims))


def write_dnd_submission(out_dir: Union[str, Path], image_index: int, boxes: Sequence[np.ndarray]) -> Path:
    """Write one image's denoised boxes in the DND benchmark's sRGB submission format.

    Args:
        out_dir: Submission folder (created).
        image_index: 1-based image number (1-50); the file is ``%04d.mat``.
        boxes: The 20 denoised boxes, ``H x W x 3`` RGB, float in [0, 1] (uint8/uint16 are converted).

    Returns:
        The written file.
    """
    if len(boxes) != DND_BOXES_PER_IMAGE:
        raise ValueError(f'DND image {image_index}: expected {DND_BOXES_PER_IMAGE} boxes, got {len(boxes)}.')
    if not 1 <= image_index <= 50:
        raise ValueError(f'DND image_index is 1-based (1-50), got {image_index}.')
    cells = np.empty((DND_BOXES_PER_IMAGE,), dtype=object)  # saved as a 1 x 20 MATLAB cell array
    for i, box in enumerate(boxes):
        box = np.asarray(box)
        if box.ndim != 3 or box.shape[2] != 3:
            raise ValueError(f'DND image {image_index} box {i + 1}: expected H x W x 3 (sRGB), got {box.shape}.')
        cells[i] = _unit_range(box).astype(np.float32)
    path = Path(out_dir) / f'{image_index:04d}.mat'
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as f:
        sio.savemat(f, {'Idenoised': cells, 'israw': False, 'eval_version': DND_EVAL_VERSION})
    return path


def read_dnd_submission(path: Union[str, Path]) -> Tuple[List[np.ndarray], bool, str]:
    """Read back a DND submission file (to check it before uploading).

    Args:
        path: A file written by :func:`write_dnd_submission`.

    Returns:
        ``(boxes, israw, eval_version)``.
    """
    contents = sio.loadmat(str(path))
    cells = contents['Idenoised'].reshape(-1)
    return [np.asarray(c) for c in cells], bool(contents['israw'].item()), str(contents['eval_version'].item())


if __name__ == '__main__':
    sys.exit(main())

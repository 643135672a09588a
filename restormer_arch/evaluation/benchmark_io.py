"""Read SIDD validation blocks, score them, and write DND benchmark submissions.

**SIDD** (real denoising, validation set): ``ValidationNoisyBlocksSrgb.mat`` and ``ValidationGtBlocksSrgb.mat`` hold
one variable each (``ValidationNoisyBlocksSrgb`` / ``ValidationGtBlocksSrgb``): a ``40 x 32 x 256 x 256 x 3`` uint8
array (40 images, 32 blocks each, RGB). The paper's score is the mean over all 1280 blocks of MATLAB ``psnr`` and
``ssim`` on [0, 1] images (``evaluate_sidd.m``); :func:`evaluate_sidd` computes it with
:func:`~restormer_arch.metrics.calculate_psnr_rgb_matlab` / :func:`~restormer_arch.metrics.calculate_ssim_rgb_matlab`
(``ssim`` on an RGB block = MATLAB's 3-D SSIM).

**DND** (real denoising, test set, scored only by the benchmark server): 50 images with 20 boxes each. The server
expects one file per image, ``0001.mat`` ... ``0050.mat``, holding ``Idenoised`` (a 1 x 20 cell array of the
denoised ``H x W x 3`` float32 boxes in [0, 1], in the box order of ``info.mat``), ``israw`` (false for sRGB) and
``eval_version`` (``'1.0'``). Reading DND's own input files needs ``h5py`` (MATLAB v7.3) and is left to the user.
"""
from pathlib import Path
from typing import List, Sequence, Tuple, Union

import numpy as np
from scipy import io as sio

from restormer_arch.atomic import atomic_write
from restormer_arch.data.sidd_blocks_dataset import load_sidd_blocks
from restormer_arch.metrics import calculate_psnr_rgb_matlab, calculate_ssim_rgb_matlab

__all__ = ['DND_BOXES_PER_IMAGE', 'load_sidd_blocks', 'save_sidd_results', 'evaluate_sidd', 'write_dnd_submission',
           'read_dnd_submission']

DND_BOXES_PER_IMAGE = 20
DND_EVAL_VERSION = '1.0'


def save_sidd_results(path: Union[str, Path], blocks: np.ndarray) -> Path:
    """Save denoised SIDD blocks as ``Idenoised`` (the layout MATLAB's ``evaluate_sidd.m`` reads).

    Args:
        path: Output ``.mat`` file.
        blocks: ``(images, blocks, H, W, 3)`` array, float in [0, 1] or uint8.

    Returns:
        The written path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as f:
        sio.savemat(f, {'Idenoised': blocks})
    return path


def _unit_range(blocks: np.ndarray) -> np.ndarray:
    if blocks.dtype == np.uint8:
        return blocks.astype(np.float64) / 255
    if blocks.dtype == np.uint16:
        return blocks.astype(np.float64) / 65535
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

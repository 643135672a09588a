"""Training transforms shared by the datasets: size check, padding, paired random crop, flips/rotations, tensors.

Images are numpy arrays in OpenCV layout (HWC, BGR for colour, HxWx1 for gray, float32 in [0, 1]) until
:func:`to_tensor` turns them into CHW RGB tensors. Random choices use Python's :mod:`random` (crop offsets,
augmentation mode), which BasicSR's dataloader seeds per worker.
"""
import random
from typing import List, Optional, Sequence

import cv2
import numpy as np
import torch


def check_same_size(imgs: Sequence[np.ndarray], names: Sequence[str]) -> None:
    """Raise a ValueError when the images (an LQ/GT pair or triple) differ in height or width."""
    sizes = [img.shape[:2] for img in imgs]
    if any(s != sizes[0] for s in sizes):
        listing = ', '.join(f'{n}: {s[0]}x{s[1]}' for n, s in zip(names, sizes))
        raise ValueError(f'input and target images differ in size ({listing}); restoration pairs must have the same '
                         'height and width (scale 1).')


# ---------------------------------------------------------------------------------------------------------- patches
def pad_to_size(img: np.ndarray, size: int) -> np.ndarray:
    """Reflect-pad the bottom/right of an image whose height or width is below ``size`` (OpenCV BORDER_REFLECT)."""
    h, w = img.shape[:2]
    pad_h, pad_w = max(0, size - h), max(0, size - w)
    if pad_h == 0 and pad_w == 0:
        return img
    padded = cv2.copyMakeBorder(img, 0, pad_h, 0, pad_w, cv2.BORDER_REFLECT)
    return padded.reshape(padded.shape[:2] + img.shape[2:])  # OpenCV drops a trailing channel axis of size 1


def paired_random_crop(imgs: Sequence[np.ndarray], size: int, names: Sequence[str]) -> List[np.ndarray]:
    """Crop the same random ``size`` x ``size`` window from every image (all of the same height and width)."""
    h, w = imgs[0].shape[:2]
    if h < size or w < size:
        raise ValueError(f'image "{names[0]}" ({h}x{w}) is smaller than the training patch gt_size={size} and '
                         'padding is disabled (use_padding: false); lower gt_size, drop small images, or enable '
                         'use_padding to reflect-pad them.')
    top, left = random.randint(0, h - size), random.randint(0, w - size)
    return [img[top:top + size, left:left + size] for img in imgs]


def apply_dihedral(img: np.ndarray, mode: int) -> np.ndarray:
    """Apply one of the 8 flip/rot90 transforms: ``mode // 2`` quarter turns, then a vertical flip if ``mode`` odd."""
    out = np.rot90(img, k=mode // 2, axes=(0, 1))
    if mode % 2:
        out = out[::-1]
    return np.ascontiguousarray(out)


def random_augmentation(imgs: Sequence[np.ndarray]) -> List[np.ndarray]:
    """Apply one random flip/rot90 mode, the same to all images so inputs and targets stay aligned."""
    mode = random.randint(0, 7)
    return [apply_dihedral(img, mode) for img in imgs]


def make_train_patches(imgs: Sequence[np.ndarray], names: Sequence[str], gt_size: int, use_padding: bool,
                       geometric_augs: bool) -> List[np.ndarray]:
    """Training transform shared by the datasets: pad small images, paired random crop, optional augmentation.

    Args:
        imgs: Aligned images of the same size (GT last or first, order is kept).
        names: Their names, for messages.
        gt_size: Patch size.
        use_padding: Reflect-pad images smaller than ``gt_size`` (as the official code always does).
        geometric_augs: Apply one of the 8 flip/rot90 modes.

    Returns:
        The patches, in the order of ``imgs``.
    """
    if use_padding:
        imgs = [pad_to_size(img, gt_size) for img in imgs]
    imgs = paired_random_crop(imgs, gt_size, names)
    return random_augmentation(imgs) if geometric_augs else list(imgs)


# ---------------------------------------------------------------------------------------------------------- tensors
def to_tensor(img: np.ndarray, mean: Optional[Sequence[float]] = None,
              std: Optional[Sequence[float]] = None) -> torch.Tensor:
    """HWC BGR (or HxWx1) float image -> CHW RGB float32 tensor, optionally normalised ``(x - mean) / std``."""
    if img.shape[2] == 3:
        img = img[..., ::-1]  # BGR (OpenCV) -> RGB
    tensor = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32))
    if mean is not None:
        shape = (-1, 1, 1)
        tensor = (tensor - torch.tensor(mean, dtype=torch.float32).view(shape)) / torch.tensor(
            std, dtype=torch.float32).view(shape)
    return tensor

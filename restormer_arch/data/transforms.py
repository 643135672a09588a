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
def apply_dihedral(img: np.ndarray, mode: int) -> np.ndarray:
    """Apply one of the 8 flip/rot90 transforms: ``mode // 2`` quarter turns, then a vertical flip if ``mode`` odd."""
    out = np.rot90(img, k=mode // 2, axes=(0, 1))
    if mode % 2:
        out = out[::-1]
    return np.ascontiguousarray(out)


def make_train_patches(imgs: Sequence[np.ndarray], gt_size: int, use_padding: bool,
                       geometric_augs: bool) -> List[np.ndarray]:
    """Training transform shared by the datasets: pad small images, paired random crop, optional augmentation.

    Every image gets the same crop window and the same flip/rot90 mode, so inputs and targets stay aligned.

    Args:
        imgs: Aligned images of the same size (GT last or first, order is kept).
        gt_size: Patch size.
        use_padding: Reflect-pad the bottom/right of images smaller than ``gt_size`` (OpenCV BORDER_REFLECT, as the
            official code always does).
        geometric_augs: Apply one of the 8 flip/rot90 modes (:func:`apply_dihedral`).

    Returns:
        The patches, in the order of ``imgs``.

    Raises:
        ValueError: An image is smaller than ``gt_size`` and ``use_padding`` is off (the dataset's image check
            names it when the dataset is built).
    """
    h, w = imgs[0].shape[:2]
    pad_h, pad_w = max(0, gt_size - h), max(0, gt_size - w)
    if use_padding and (pad_h or pad_w):
        # OpenCV drops a trailing channel axis of size 1, hence the reshape.
        imgs = [cv2.copyMakeBorder(img, 0, pad_h, 0, pad_w, cv2.BORDER_REFLECT).reshape(
            (h + pad_h, w + pad_w) + img.shape[2:]) for img in imgs]
        h, w = h + pad_h, w + pad_w
    top, left = random.randint(0, h - gt_size), random.randint(0, w - gt_size)
    patches = [img[top:top + gt_size, left:left + gt_size] for img in imgs]
    if not geometric_augs:
        return patches
    mode = random.randint(0, 7)
    return [apply_dihedral(img, mode) for img in patches]


# ---------------------------------------------------------------------------------------------------------- tensors
def to_tensor(img: np.ndarray, mean: Optional[Sequence[float]] = None,
              std: Optional[Sequence[float]] = None) -> torch.Tensor:
    """HWC BGR (or HxWx1) float image -> CHW RGB float32 tensor, optionally normalised ``(x - mean) / std``."""
    if img.shape[2] == 3:
        img = img[..., ::-1]  # BGR (OpenCV) -> RGB
    tensor = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32))
    if mean is not None:
        tensor = (tensor - torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)) / torch.tensor(
            std, dtype=torch.float32).view(-1, 1, 1)
    return tensor

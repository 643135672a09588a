"""``Dataset_SIDDBlocks``: the SIDD validation blocks straight from the benchmark's ``.mat`` files.

The SIDD sRGB validation set is distributed as two MATLAB files, ``ValidationNoisyBlocksSrgb.mat`` and
``ValidationGtBlocksSrgb.mat``, each one ``(40, 32, 256, 256, 3)`` uint8 RGB array (40 images, 32 blocks each). The
paper's SIDD numbers are the mean PSNR/SSIM over these 1280 blocks, so ``basicsr test`` can reproduce them without
cutting the blocks into PNGs first.
"""
from typing import Any, Dict, Optional

import numpy as np
import torch
import torch.utils.data as data
from basicsr.utils.registry import DATASET_REGISTRY

from .options import get_folder, get_phase
from .sidd_mat import load_sidd_blocks


def _load(path: str, key: Optional[str], option: str) -> np.ndarray:
    try:
        blocks = load_sidd_blocks(path, key)
    except (FileNotFoundError, KeyError, ValueError) as err:
        raise type(err)(f'Dataset_SIDDBlocks {option}: {err}') from err
    if blocks.dtype != np.uint8:
        raise ValueError(f'Dataset_SIDDBlocks {option}: {path} holds {blocks.dtype} blocks; the SIDD sRGB files '
                         'hold uint8.')
    return blocks


def block_name(image: int, block: int) -> str:
    """Name of block ``block`` of image ``image`` (both 0-based), e.g. ``0003_17``: the image name in the results."""
    return f'{image:04d}_{block:02d}'


@DATASET_REGISTRY.register()
class Dataset_SIDDBlocks(data.Dataset):  # noqa: N801  (named like the other Restormer datasets)
    """SIDD validation blocks read from the ``.mat`` files: ``dataroot_lq`` (noisy) and ``dataroot_gt`` (clean).

    Evaluation only (``phase`` val/test). Blocks are yielded image by image, block by block, named
    :func:`block_name` (``0000_00`` ... ``0039_31``).

    Args:
        opt: Dataset options: ``dataroot_lq`` (``ValidationNoisyBlocksSrgb.mat``), ``dataroot_gt``
            (``ValidationGtBlocksSrgb.mat``; ``~`` for noisy blocks only, then nothing is scored), ``key_lq`` /
            ``key_gt`` (the variable in the file; default: its only variable), ``phase``.

    Returns (per item):
        dict with ``lq`` (and ``gt``): 3x256x256 float32 RGB tensors in [0, 1], ``lq_path`` = ``gt_path`` = the
        block name.
    """

    def __init__(self, opt: Dict[str, Any]) -> None:
        super().__init__()
        name = type(self).__name__
        self.opt = opt
        if get_phase(opt, name) == 'train':
            raise ValueError(f'{name}: the SIDD validation blocks are for evaluation (val/test datasets); train on '
                             'SIDD-Medium crops with Dataset_PairedImage.')
        self.noisy = _load(get_folder(opt, 'dataroot_lq', name), opt.get('key_lq'), 'dataroot_lq')
        self.gt = None
        if opt.get('dataroot_gt') is not None:
            self.gt = _load(get_folder(opt, 'dataroot_gt', name), opt.get('key_gt'), 'dataroot_gt')
            if self.gt.shape != self.noisy.shape:
                raise ValueError(f'{name}: noisy blocks {self.noisy.shape} and ground truth {self.gt.shape} differ '
                                 'in shape; pass the matching Noisy and Gt block files.')
        self.blocks_per_image = self.noisy.shape[1]

    @staticmethod
    def _tensor(block: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(block.transpose(2, 0, 1))).float().div_(255.0)

    def __getitem__(self, index: int) -> Dict[str, Any]:
        image, block = divmod(index, self.blocks_per_image)
        name = block_name(image, block)
        item = {'lq': self._tensor(self.noisy[image, block]), 'lq_path': name, 'gt_path': name}
        if self.gt is not None:
            item['gt'] = self._tensor(self.gt[image, block])
        return item

    def __len__(self) -> int:
        return self.noisy.shape[0] * self.noisy.shape[1]

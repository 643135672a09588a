"""``Dataset_SIDDBlocks``: the SIDD validation blocks straight from the benchmark's ``.mat`` files.

The SIDD sRGB validation set is distributed as two MATLAB files, ``ValidationNoisyBlocksSrgb.mat`` and
``ValidationGtBlocksSrgb.mat``, each one ``(40, 32, 256, 256, 3)`` uint8 RGB array (40 images, 32 blocks each). The
paper's SIDD numbers are the mean PSNR/SSIM over these 1280 blocks, so ``basicsr test`` can reproduce them without
cutting the blocks into PNGs first. :func:`load_sidd_blocks` also reads them for :mod:`restormer_arch.evaluation`.
"""
from pathlib import Path
from typing import Any, Dict, Optional, Union

import numpy as np
import torch
import torch.utils.data as data
from basicsr.utils.registry import DATASET_REGISTRY
from scipy import io as sio


def load_sidd_blocks(path: Union[str, Path], key: Optional[str] = None) -> np.ndarray:
    """Load a SIDD block file (``ValidationNoisyBlocksSrgb.mat``, ``ValidationGtBlocksSrgb.mat``, or a results file).

    Args:
        path: The ``.mat`` file (``~`` is expanded).
        key: Variable to read; default: the file's only variable.

    Returns:
        ``(images, blocks, H, W, 3)`` array (uint8 for the official files).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f'{path}: not found. Download the SIDD validation blocks (sRGB) from the SIDD '
                                'benchmark page and pass the path of the .mat file.')
    try:
        contents = sio.loadmat(str(path))
    except NotImplementedError as err:  # MATLAB v7.3 (HDF5) files
        raise ValueError(f'{path}: MATLAB v7.3 file; re-save it with save(..., "-v7") or read it with h5py.') from err
    variables = [k for k in contents if not k.startswith('__')]
    if key is None:
        if len(variables) != 1:
            raise ValueError(f'{path}: holds {variables}; pass key= to pick one.')
        key = variables[0]
    if key not in contents:
        raise KeyError(f'{path}: no variable {key!r} (found {variables}).')
    blocks = contents[key]
    if blocks.ndim != 5 or blocks.shape[-1] != 3:
        raise ValueError(f'{path}:{key} has shape {blocks.shape}; SIDD blocks are (images, blocks, H, W, 3).')
    return blocks


def _load(opt: Dict[str, Any], option: str) -> np.ndarray:
    path = opt[option]
    try:
        blocks = load_sidd_blocks(path, opt.get(option.replace('dataroot', 'key')))
    except (FileNotFoundError, KeyError, ValueError) as err:
        raise type(err)(f'Dataset_SIDDBlocks {option}: {err}') from err
    if blocks.dtype != np.uint8:
        raise ValueError(f'Dataset_SIDDBlocks {option}: {path} holds {blocks.dtype} blocks; the SIDD sRGB files '
                         'hold uint8.')
    return blocks


@DATASET_REGISTRY.register()
class Dataset_SIDDBlocks(data.Dataset):  # noqa: N801  (named like the other Restormer datasets)
    """SIDD validation blocks read from the ``.mat`` files: ``dataroot_lq`` (noisy) and ``dataroot_gt`` (clean).

    Evaluation only (``phase`` val/test). Blocks are yielded image by image, block by block, named
    ``<image>_<block>`` (0-based: ``0000_00`` ... ``0039_31``), the image names in the results.

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
        self.opt = opt
        if opt['phase'] == 'train':
            raise ValueError('Dataset_SIDDBlocks: the SIDD validation blocks are for evaluation (val/test datasets); '
                             'train on SIDD-Medium crops with Dataset_PairedImage.')
        self.noisy = _load(opt, 'dataroot_lq')
        self.gt = None
        if opt.get('dataroot_gt') is not None:
            self.gt = _load(opt, 'dataroot_gt')
            if self.gt.shape != self.noisy.shape:
                raise ValueError(f'Dataset_SIDDBlocks: noisy blocks {self.noisy.shape} and ground truth '
                                 f'{self.gt.shape} differ in shape; pass the matching Noisy and Gt block files.')
        self.blocks_per_image = self.noisy.shape[1]

    @staticmethod
    def _tensor(block: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(block.transpose(2, 0, 1))).float().div_(255.0)

    def __getitem__(self, index: int) -> Dict[str, Any]:
        image, block = divmod(index, self.blocks_per_image)
        name = f'{image:04d}_{block:02d}'
        item = {'lq': self._tensor(self.noisy[image, block]), 'lq_path': name, 'gt_path': name}
        if self.gt is not None:
            item['gt'] = self._tensor(self.gt[image, block])
        return item

    def __len__(self) -> int:
        return self.noisy.shape[0] * self.noisy.shape[1]

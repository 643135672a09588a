"""Reading the SIDD validation blocks (``ValidationNoisyBlocksSrgb.mat`` / ``ValidationGtBlocksSrgb.mat``).

Each file holds one variable, a ``(40, 32, 256, 256, 3)`` uint8 RGB array (40 images, 32 blocks each). Used by
:class:`~restormer_arch.data.sidd_blocks_dataset.Dataset_SIDDBlocks` and by :mod:`restormer_arch.evaluation`.
"""
from pathlib import Path
from typing import Optional, Union

import numpy as np
from scipy import io as sio

__all__ = ['load_sidd_blocks']


def load_sidd_blocks(path: Union[str, Path], key: Optional[str] = None) -> np.ndarray:
    """Load a SIDD block file (``ValidationNoisyBlocksSrgb.mat``, ``ValidationGtBlocksSrgb.mat``, or a results file).

    Args:
        path: The ``.mat`` file.
        key: Variable to read; default: the file's only variable.

    Returns:
        ``(images, blocks, H, W, 3)`` array (uint8 for the official files).
    """
    path = Path(path)
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

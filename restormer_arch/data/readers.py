"""Reading a dataset's images from disk or from BasicSR LMDBs, through the one decoder (:mod:`.image_io`).

Datasets work on float32 numpy images in OpenCV layout (HWC, BGR for colour, HxWx1 for gray, in [0, 1]) until
:func:`restormer_arch.data.transforms.to_tensor`. How a decoded file becomes such an image is
:func:`to_dataset_image` (documented in ``docs/images.md``).
"""
import os
from os import path as osp
from typing import Any, Dict, Optional, Tuple

import cv2
import lmdb
import numpy as np

from .image_io import HEAD_BYTES, TAIL_BYTES, DecodedImage, ImageReadError, read_file_bytes, read_image, to_float

# Open LMDB environments of this process, by real path. py-lmdb refuses to open one database twice in a process
# ("already open in this process"), which happens when train and val share an LMDB, when a dataset is built twice,
# and in forked DataLoader workers that inherit the parent's handle. Environments are opened read-only without the
# lock table (as BasicSR's LMDB FileClient does), so a forked worker can safely keep reading through the inherited
# handle; spawned workers start with an empty cache.
_LMDB_ENVS: Dict[str, Any] = {}


def open_lmdb(folder: str) -> Any:
    """Return the shared read-only ``lmdb.Environment`` of ``folder`` (opened on first use)."""
    real = osp.realpath(folder)
    if real not in _LMDB_ENVS:
        _LMDB_ENVS[real] = lmdb.open(real, readonly=True, lock=False, readahead=False)
    return _LMDB_ENVS[real]


def to_dataset_image(decoded: DecodedImage, name: str, flag: str = 'color', require_16bit: bool = False) -> np.ndarray:
    """A decoded file as a dataset reads it: float32 HWC in [0, 1], BGR (3 channels) or gray (1 channel).

    Args:
        decoded: From :func:`~restormer_arch.data.image_io.read_image`.
        name: File name or LMDB key, for messages.
        flag: ``'color'`` (gray replicated to 3 channels) or ``'grayscale'`` (colour converted with OpenCV's BT.601
            ``COLOR_BGR2GRAY``); the ``_8bit`` variants keep only the high byte of 16-bit samples, as OpenCV's
            default read does (the official single-image DPDD test). Alpha is dropped.
        require_16bit: Raise unless the file has 16-bit samples.

    Returns:
        The image divided by 255 (8-bit) or 65535 (16-bit).

    Raises:
        ImageReadError: An 8-bit file where 16 bits are required.
    """
    if require_16bit and decoded.bit_depth != 16:
        raise ImageReadError(f'image "{name}" is {decoded.pixels.dtype} ({decoded.bit_depth}-bit) but this dataset '
                             'expects 16-bit PNGs (values are divided by 65535); use the 16-bit DPDD data or '
                             'Dataset_PairedImage for 8-bit images.')
    pixels = decoded.pixels
    if flag.endswith('_8bit') and pixels.dtype == np.uint16:
        pixels = (pixels >> 8).astype(np.uint8)
    if flag.startswith('grayscale') and pixels.shape[2] == 3:
        pixels = cv2.cvtColor(pixels, cv2.COLOR_BGR2GRAY)[..., None]
    elif flag.startswith('color') and pixels.shape[2] == 1:
        pixels = np.repeat(pixels, 3, axis=2)
    return to_float(pixels)


class ImageReader:
    """Read a dataset's images from disk or from BasicSR LMDBs (shared environments, see :func:`open_lmdb`).

    Args:
        backend: The ``io_backend`` options (``type`` disk or lmdb).
        folders: ``{key: folder}``; in LMDB mode these are the databases, addressed by ``key``.
    """

    def __init__(self, backend: Dict[str, Any], folders: Dict[str, Any]) -> None:
        self.kind = backend['type']
        self.folders = {k: str(v) for k, v in folders.items()}

    def describe(self, path: str, key: str) -> str:
        """How an image is called in messages: the file path, or the LMDB key and its database."""
        return f'{path} (key in {self.folders[key]})' if self.kind == 'lmdb' else path

    def get_bytes(self, path: str, key: str) -> bytes:
        """The encoded image: a file's bytes, or the value of LMDB key ``path`` in the database of ``key``."""
        if self.kind == 'lmdb':
            with open_lmdb(self.folders[key]).begin(write=False) as txn:
                content = txn.get(path.encode('utf-8'))  # ASCII names give the keys BasicSR writes
            if content is None:
                raise ImageReadError(f'LMDB key "{path}" not found in "{self.folders[key]}"; rebuild the LMDB with '
                                     'datasets/make_lmdb.py.')
            return content
        return read_file_bytes(path)

    def head_tail(self, path: str, key: str) -> Tuple[bytes, bytes, int, Optional[bytes]]:
        """The first :data:`HEAD_BYTES` and last :data:`TAIL_BYTES` of an image, its size, and (LMDB) all its bytes."""
        if self.kind == 'lmdb':
            content = self.get_bytes(path, key)
            return content[:HEAD_BYTES], content[-TAIL_BYTES:], len(content), content
        with open(path, 'rb') as f:
            head = f.read(HEAD_BYTES)
            size = os.fstat(f.fileno()).st_size
            if size <= HEAD_BYTES:
                return head, head[-TAIL_BYTES:], size, head
            f.seek(size - TAIL_BYTES)
            return head, f.read(), size, None

    def read(self, path: str, key: str, flag: str = 'color', require_16bit: bool = False) -> np.ndarray:
        """Read one image as a dataset does (:func:`to_dataset_image`); ``path`` is a file (disk) or an LMDB key."""
        name = self.describe(path, key)
        return to_dataset_image(read_image(self.get_bytes(path, key), name), name, flag, require_16bit)

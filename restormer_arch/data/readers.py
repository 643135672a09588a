"""Reading a dataset's images from disk or BasicSR LMDBs through the one decoder (:mod:`.image_io`), and checking them
all when the dataset is built (:func:`check_images`).

Without the check, a corrupt, truncated or mismatched image stops training when the sampler first draws it, possibly
hours in (and again after every resume). By default it reads each file's first 4 KiB and last 64 bytes: the header
(size, channels, bit depth) and the end marker (:func:`~restormer_arch.data.image_io.check_complete`).
"""
import hashlib
import io
import os
import struct
import warnings
from os import path as osp
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

import cv2
import lmdb
import numpy as np
from PIL import Image

from .image_io import HEAD_BYTES, TAIL_BYTES, ImageReadError, check_complete, read_file_bytes, read_image

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

    def read(self, path: str, key: str, flag: str = 'color') -> np.ndarray:
        """Read one image as a dataset does: float32 HWC in [0, 1], BGR (3 channels) or gray (1 channel).

        Args:
            path: A file (disk) or an LMDB key.
            key: The folder key (``lq``, ``gt`` ...).
            flag: ``'color'`` (gray replicated to 3 channels) or ``'grayscale'`` (colour converted with OpenCV's
                BT.601 ``COLOR_BGR2GRAY``); the ``_8bit`` variants keep only the high byte of 16-bit samples, as
                OpenCV's default read does (the official single-image DPDD test). Alpha is dropped.

        Returns:
            The image (decoded by :func:`~restormer_arch.data.image_io.read_image`) divided by 255 or 65535.

        Raises:
            ImageReadError: The image cannot be read.
        """
        name = self.describe(path, key)
        pixels = read_image(self.get_bytes(path, key), name).pixels
        if flag.endswith('_8bit') and pixels.dtype == np.uint16:
            pixels = (pixels >> 8).astype(np.uint8)
        if flag.startswith('grayscale') and pixels.shape[2] == 3:
            pixels = cv2.cvtColor(pixels, cv2.COLOR_BGR2GRAY)[..., None]
        elif flag.startswith('color') and pixels.shape[2] == 1:
            pixels = np.repeat(pixels, 3, axis=2)
        return pixels.astype(np.float32) / np.float32(255.0 if pixels.dtype == np.uint8 else 65535.0)


_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
_PNG_CHANNELS = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}  # by colour type: gray, RGB, palette, gray+alpha, RGBA
_MAX_PROBLEMS = 50  # stop checking after this many: enough to see what is wrong


class _Info(NamedTuple):
    # Upright size (EXIF orientation applied, as the datasets read the image), channels stored in the file (2 and 4:
    # with alpha), bits per sample, and a digest of the bytes read (size + head + tail) to spot byte-identical pairs.
    height: int
    width: int
    channels: int
    bits: int
    digest: Optional[bytes] = None


def _pil_info(head: bytes) -> Optional[_Info]:
    try:
        with Image.open(io.BytesIO(head)) as img:  # lazy: parses the header only
            width, height = img.size
            bits = 16 if img.mode.startswith('I;16') else 32 if img.mode in ('I', 'F') else 8
            if img.format == 'TIFF':
                bits = max(img.tag_v2.get(258, (bits,)) or (bits,))
            if img.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # read upright, as the datasets do
                width, height = height, width
            channels = 3 if img.mode in ('P', 'CMYK', 'YCbCr') else len(img.getbands())
            if img.format == 'PNG':  # PIL reads 16-bit colour PNGs as 8-bit RGB: the IHDR says what is stored
                bits, channels = head[24], _PNG_CHANNELS.get(head[25], 3)
            return _Info(height, width, channels, int(bits))
    except Exception:  # noqa: BLE001  (unknown to PIL or header beyond `head`: the caller decodes the file)
        return None


def _probe(reader: ImageReader, path: str, key: str, decode: bool = False) -> _Info:
    # Check one image is complete and read its header from its first bytes (4 KiB is plenty for PNG and most JPEGs; a
    # JPEG whose EXIF block is longer, or with data after its end marker, is read whole); when they cannot tell, or
    # with decode, the image is decoded. Raises ImageReadError for an empty, truncated or undecodable file.
    name = reader.describe(path, key)
    head, tail, size, whole = reader.head_tail(path, key)
    digest = hashlib.blake2b(struct.pack('<Q', size) + head + tail, digest_size=16).digest()

    def read_all() -> bytes:
        return whole if whole is not None else reader.get_bytes(path, key)

    info = None
    if not decode:
        problem = check_complete(head, tail, size, read_all)
        if problem:
            raise ImageReadError(f'image "{name}" {problem}')
        if head.startswith(_PNG_SIGNATURE) and b'eXIf' not in head:  # the IHDR (checked by check_complete) says it all
            width, height = struct.unpack('>II', head[16:24])
            info = _Info(height, width, _PNG_CHANNELS.get(head[25], 3), head[24])
        else:
            info = _pil_info(head) or _pil_info(read_all())
    if info is None:
        decoded = read_image(read_all(), name)
        h, w, c = decoded.pixels.shape
        info = _Info(h, w, c + (decoded.alpha is not None), decoded.bit_depth)
    return info._replace(digest=digest)


def check_images(reader: ImageReader, samples: Sequence[Mapping[str, str]], keys: Sequence[str], dataset: str,
                 opt: Mapping[str, Any], flag: str = 'color', require_16bit: bool = False,
                 min_size: Optional[int] = None) -> None:
    """Check every image of a dataset before training: readable, complete, bit depth, pair sizes, patch size.

    Reads only headers and end markers unless ``opt['check_images']`` is ``'decode'``; ``false`` skips the check.
    Pairs whose files are all byte-identical (input = target) give a warning.

    Args:
        reader: The dataset's reader (disk or LMDB).
        samples: ``{'<key>_path': path}`` dicts from :func:`~restormer_arch.data.paths.collect_paths`.
        keys: The folder keys of a sample, e.g. ``('lq', 'gt')``, GT last.
        dataset: Dataset class name, for messages.
        opt: Dataset options (``name``, ``check_images``).
        flag: How the dataset reads images (a warning when all are gray but read as colour).
        require_16bit: Every image must have 16-bit samples.
        min_size: Images must be at least this high and wide (``gt_size`` when ``use_padding`` is off).

    Raises:
        ValueError: Listing the problems found (at most the first 10 are shown).
    """
    mode = opt.get('check_images', True)
    if mode not in (True, False, 'decode'):
        raise ValueError(f'{dataset} "{opt.get("name", "?")}": check_images must be true (read every image header '
                         f'before training), decode (decode every image) or false, got {mode!r}.')
    if mode is False:
        return
    problems: List[str] = []
    gray = identical = 0
    for sample in samples:
        infos = {}
        for key in keys:
            name = sample[f'{key}_path']
            try:
                info = _probe(reader, name, key, decode=mode == 'decode')
            except (OSError, ValueError) as err:
                problems.append(str(err))
                continue
            infos[key] = info
            if info.bits > 16:
                problems.append(f'image "{name}" has {info.bits}-bit samples; use 8- or 16-bit images.')
            elif require_16bit and info.bits != 16:
                problems.append(f'image "{name}" is {info.bits}-bit but {dataset} expects 16-bit PNGs (values are '
                                'divided by 65535); use the 16-bit DPDD data, or Dataset_PairedImage for 8-bit images.')
        if len(infos) == len(keys):
            sizes = {k: (i.height, i.width) for k, i in infos.items()}
            height, width = sizes[keys[-1]]
            if len(set(sizes.values())) > 1:
                listing = ', '.join(f'{k} "{sample[f"{k}_path"]}" {h}x{w}' for k, (h, w) in sizes.items())
                problems.append(f'sizes differ ({listing}); restoration pairs must have the same height and width.')
            elif min_size and min(height, width) < min_size:
                problems.append(f'image "{sample[f"{keys[-1]}_path"]}" ({height}x{width}) is smaller than the '
                                f'training patch gt_size={min_size} and use_padding is false; set use_padding: true, '
                                'lower gt_size, or remove the small images.')
            gray += infos[keys[-1]].channels <= 2
            identical += len(keys) > 1 and len({i.digest for i in infos.values()}) == 1
        if len(problems) >= _MAX_PROBLEMS:
            break
    where = f'{dataset} "{opt.get("name", "?")}"'
    if problems:
        count = f'{len(problems)}+' if len(problems) >= _MAX_PROBLEMS else str(len(problems))
        more = f'\n  ... and {len(problems) - 10} more' if len(problems) > 10 else ''
        raise ValueError(f'{where}: {count} problem(s) found in the images before training (check_images; set '
                         'check_images: false to skip the check):\n  - ' + '\n  - '.join(problems[:10]) + more)
    if identical:
        warnings.warn(f'{where}: {identical} of {len(samples)} input/target pairs are byte-identical files, e.g. '
                      f'{samples[0][f"{keys[-1]}_path"]}; on such pairs the network learns the identity. Check that '
                      f'the input folder holds the degraded images.', UserWarning, stacklevel=3)
    if flag == 'color' and samples and gray == len(samples):
        warnings.warn(f'{where}: all {len(samples)} target images are gray, but the dataset reads them as RGB '
                      '(in_ch: 3, three equal channels); for a gray model set in_ch: 1 and network_g '
                      'inp_channels/out_channels: 1.', UserWarning, stacklevel=3)

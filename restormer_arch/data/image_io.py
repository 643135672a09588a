"""The one place where image files are decoded and encoded (datasets, LMDB, pre-flight checks, restore, evaluation).

Every reader of the project calls :func:`read_image`, so one file gives the same pixels wherever it is read; every image
the project writes goes through :func:`write_image` (atomic). The conversions are documented in ``docs/images.md``.
"""
import io
import os
import struct
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Tuple, Union

import cv2
import numpy as np
from PIL import Image

from restormer_arch.atomic import atomic_write

__all__ = ['ImageReadError', 'DecodedImage', 'read_image', 'write_image', 'atomic_write', 'check_complete',
           'read_file_bytes', 'IMAGE_EXTENSIONS', 'HEAD_BYTES', 'TAIL_BYTES']

# File name extensions listed as images by the datasets, restore and the folder evaluator.
IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp', '.ppm', '.pgm')
# How much of a file the cheap integrity check reads: the head holds every header we parse, the tail the end markers.
HEAD_BYTES, TAIL_BYTES = 4096, 64

_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
_PNG_IEND = b'IEND\xaeB`\x82'  # the last chunk of every complete PNG, with its fixed CRC
_JPEG_SOI, _JPEG_EOI, _JPEG_SOS = b'\xff\xd8', b'\xff\xd9', 0xDA
_EXIF_HEADER = b'Exif\x00\x00'
_ORIENTATION_TAG = 0x0112
_ICC_JPEG_TAG = b'ICC_PROFILE\x00'
_ICC_JPEG_CHUNK = 65519 - len(_ICC_JPEG_TAG) - 2  # APP2 payload limit minus the tag and the chunk numbers


class ImageReadError(ValueError):
    """An image cannot be read; the message names the file and the problem (empty, truncated, not an image ...)."""


@dataclass
class DecodedImage:
    """A decoded image and what is needed to write a result back alike.

    Attributes:
        pixels: ``(H, W, C)`` uint8 or uint16 array, C 1 (gray) or 3 (colour, BGR order), EXIF orientation applied.
        alpha: ``(H, W)`` array of the pixels' dtype, or None when the file has no transparency.
        bit_depth: 8 or 16 (bits per sample of ``pixels``).
        icc_profile: The embedded ICC profile, or None.
        exif: The EXIF block as TIFF-structured bytes (``II*\\0`` / ``MM\\0*``, without the ``Exif\\0\\0`` header),
            its orientation reset to 1 (upright, as the pixels now are), or None.
    """

    pixels: np.ndarray
    alpha: Optional[np.ndarray] = None
    bit_depth: int = 8
    icc_profile: Optional[bytes] = None
    exif: Optional[bytes] = None

    @property
    def peak(self) -> int:
        """The largest sample value: 255 or 65535."""
        return (1 << self.bit_depth) - 1


# ---------------------------------------------------------------------------------------------------------- reading
def read_file_bytes(path: Union[str, 'os.PathLike[str]']) -> bytes:
    """The bytes of a file; raises :class:`ImageReadError` naming the file when it is missing or unreadable."""
    try:
        with open(path, 'rb') as f:
            return f.read()
    except OSError as err:  # missing, a folder, no permission ...: the system's reason
        raise ImageReadError(f'image "{path}" cannot be read: {err.strerror or err}.') from err


def read_image(source: Union[str, 'os.PathLike[str]', bytes], name: Optional[str] = None) -> DecodedImage:
    """Decode one image file (or its bytes) the way every part of the project reads images.

    Args:
        source: A file path (any characters) or the encoded bytes (e.g. an LMDB value).
        name: How to call the image in messages (default: the path; ``"<bytes>"`` for bytes).

    Returns:
        The decoded image (see :class:`DecodedImage`).

    Raises:
        ImageReadError: Missing, empty, truncated, corrupt or not an image, or samples other than 8/16-bit integers.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        name = name or '<bytes>'
    else:
        name = name or str(source)
        data = read_file_bytes(source)
    problem = check_complete(data[:HEAD_BYTES], data[-TAIL_BYTES:], len(data), lambda: data)
    if problem:
        raise ImageReadError(f'image "{name}" {problem}')
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # PIL's DecompressionBombWarning: OpenCV decodes the pixels, PIL reads tags
        mode, icc, exif = _metadata(data)
    raw = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise ImageReadError(f'image "{name}" cannot be decoded (corrupt, or not an image format OpenCV reads); '
                             'replace or remove it.')
    if raw.dtype not in (np.uint8, np.uint16):
        raise ImageReadError(f'image "{name}" has {raw.dtype} samples; use 8- or 16-bit images.')
    # PIL calls a 16-bit gray + alpha PNG 'RGBA': its IHDR colour type (0 gray, 4 gray + alpha) says it.
    gray = mode in _GRAY_MODES or (data.startswith(_PNG_SIGNATURE) and data[25] in (0, 4))
    pixels, alpha = _split_channels(raw, gray)
    orientation = _exif_orientation(exif) if exif else 1
    if orientation != 1:
        pixels = _orient(pixels, orientation)
        alpha = None if alpha is None else _orient(alpha, orientation)
        exif = _set_orientation(exif, 1)
    return DecodedImage(pixels, alpha, 8 * raw.dtype.itemsize, icc, exif)


_GRAY_MODES = ('1', 'L', 'LA', 'La', 'I', 'I;16', 'I;16B', 'I;16L', 'I;16N', 'F')


def _metadata(data: bytes) -> Tuple[Optional[str], Optional[bytes], Optional[bytes]]:
    # PIL parses the header lazily (no pixel decoding): the stored colour mode, the ICC profile, the EXIF block.
    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.mode, img.info.get('icc_profile') or None, _strip_exif_header(img.info.get('exif'))
    except Image.DecompressionBombError:
        # PIL refuses to open images above ~179 megapixels; only the header is read here, so lift its limit once.
        limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            return _metadata(data)
        finally:
            Image.MAX_IMAGE_PIXELS = limit
    except Exception:  # noqa: BLE001  (a format PIL does not know: OpenCV may still decode it, without metadata)
        return None, None, None


def _strip_exif_header(exif: Optional[bytes]) -> Optional[bytes]:
    if not exif:
        return None
    if exif.startswith(_EXIF_HEADER):
        exif = exif[len(_EXIF_HEADER):]
    return exif if exif[:4] in (b'II*\x00', b'MM\x00*') else None


def _split_channels(raw: np.ndarray, gray: bool) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    raw = raw[..., None] if raw.ndim == 2 else raw
    alpha = raw[..., -1] if raw.shape[2] in (2, 4) else None  # gray + alpha, BGRA
    colors = 1 if raw.shape[2] <= 2 or gray else 3  # OpenCV expands gray + alpha to BGRA: the three are equal
    return np.ascontiguousarray(raw[..., :colors]), None if alpha is None else np.ascontiguousarray(alpha)


def _orient(img: np.ndarray, orientation: int) -> np.ndarray:
    # EXIF orientation 2-8 -> the upright image: transpose (5-8), then reverse the rows and/or the columns.
    if orientation >= 5:
        img = img.swapaxes(0, 1)
    if orientation in (3, 4, 7, 8):
        img = img[::-1]
    if orientation in (2, 3, 6, 7):
        img = img[:, ::-1]
    return np.ascontiguousarray(img)


def _orientation_at(exif: bytes) -> Tuple[str, Optional[int]]:
    # (byte order, offset of the orientation value or None) in the first IFD of a TIFF-structured EXIF block.
    order = '<' if exif[:2] == b'II' else '>'
    try:
        (first,) = struct.unpack(order + 'I', exif[4:8])
        (count,) = struct.unpack(order + 'H', exif[first:first + 2])
        for at in range(first + 2, first + 2 + 12 * count, 12):
            tag, kind = struct.unpack(order + 'HH', exif[at:at + 4])
            if tag == _ORIENTATION_TAG and kind == 3 and len(exif) >= at + 10:  # SHORT
                return order, at + 8
    except struct.error:  # a damaged EXIF block: show the pixels as stored, as viewers do
        pass
    return order, None


def _exif_orientation(exif: bytes) -> int:
    order, at = _orientation_at(exif)
    value = 1 if at is None else struct.unpack(order + 'H', exif[at:at + 2])[0]
    return value if 1 <= value <= 8 else 1


def _set_orientation(exif: bytes, value: int) -> bytes:
    # Rewrite the orientation in place: every other tag, the maker notes and the thumbnail are kept byte for byte.
    order, at = _orientation_at(exif)
    return exif if at is None else exif[:at] + struct.pack(order + 'H', value) + exif[at + 2:]


# -------------------------------------------------------------------------------------------------------- integrity
def check_complete(head: bytes, tail: bytes, size: int,
                   read_all: Optional[Callable[[], bytes]] = None) -> Optional[str]:
    """Tell whether an image file is cut short, from its first and last bytes (no decoding).

    PNG must end with IEND; JPEG must hold its end marker (EOI) after the image data (phones may append data after
    it: then ``read_all`` is called to look for the marker in the whole file); BMP and WebP must be as long as their
    header says. Other formats are left to the decoder.

    Args:
        head: The first bytes of the file (:data:`HEAD_BYTES` is enough).
        tail: The last bytes of the file (:data:`TAIL_BYTES`).
        size: The file size in bytes.
        read_all: Returns the whole file; only called for a JPEG whose tail has no end marker.

    Returns:
        None for a complete file, else the problem, worded to follow ``image "<name>"``.
    """
    if size == 0:
        return 'is empty (0 bytes); replace or remove it.'
    cut = ' (an interrupted copy, download or disk full?); copy or regenerate it, or remove it.'
    if head.startswith(_PNG_SIGNATURE):
        if len(head) < 33 or head[12:16] != b'IHDR':
            return 'is corrupt (a PNG without its IHDR header); replace or remove it.'
        if _PNG_IEND not in tail:
            return 'is truncated (the PNG ends before its IEND chunk)' + cut
    elif head.startswith(_JPEG_SOI):
        if _JPEG_EOI not in tail and (read_all is None or not _jpeg_has_end(read_all())):
            return 'is truncated (the JPEG ends before its end-of-image marker FF D9)' + cut
    elif head.startswith(b'BM') and len(head) >= 6:
        (declared,) = struct.unpack('<I', head[2:6])
        if size < declared:
            return f'is truncated (the BMP header says {declared} bytes, the file has {size})' + cut
    elif head.startswith(b'RIFF') and head[8:12] == b'WEBP':
        (declared,) = struct.unpack('<I', head[4:8])
        if size < declared + 8:
            return f'is truncated (the WebP header says {declared + 8} bytes, the file has {size})' + cut
    return None


def _jpeg_has_end(data: bytes) -> bool:
    # Skip the header segments (an EXIF thumbnail holds its own SOI/EOI) up to the first scan; after it, an FF D9 can
    # only be the end marker (FF bytes in scan data are followed by 00 or a restart marker).
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return False
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        (length,) = struct.unpack('>H', data[pos + 2:pos + 4])
        if marker == _JPEG_SOS:
            return data.find(_JPEG_EOI, pos + 2 + length) != -1
        pos += 2 + length
    return False


# ---------------------------------------------------------------------------------------------------------- writing
def write_image(path: Union[str, 'os.PathLike[str]'], pixels: np.ndarray, bit_depth: int = 8,
                alpha: Optional[np.ndarray] = None, icc_profile: Optional[bytes] = None,
                exif: Optional[bytes] = None) -> None:
    """Encode and write an image atomically (temporary name in the same folder, fsync, ``os.replace``).

    The format follows the extension (OpenCV's encoders; JPEG quality 95, PNG compression 3). PNG and JPEG keep
    ``icc_profile`` and ``exif`` (its orientation set to 1: the pixels are upright); other formats drop them.

    Args:
        path: Output file; its folder is created. Non-ASCII characters and spaces are fine.
        pixels: ``(H, W)``, ``(H, W, 1)`` or ``(H, W, 3)`` BGR; uint8/uint16 samples are written as they are, float
            samples in [0, 1] are scaled to ``bit_depth`` (rounded, clipped).
        bit_depth: 8 or 16; 16 needs PNG or TIFF (JPEG, BMP and WebP hold 8-bit samples only).
        alpha: Optional ``(H, W)`` transparency, same dtype rules as ``pixels`` (PNG, TIFF, WebP keep it; a gray
            PNG with alpha is written as gray + alpha, other formats as colour + alpha).
        icc_profile: ICC profile bytes to embed.
        exif: EXIF block (TIFF-structured, with or without the ``Exif\\0\\0`` header).

    Raises:
        ValueError: Unsupported bit depth or shape, or a format that cannot hold the requested bit depth.
        OSError: The file cannot be written (the final name is left untouched).
    """
    path = Path(path)
    ext = path.suffix.lower()
    if bit_depth not in (8, 16):
        raise ValueError(f'{path}: bit_depth must be 8 or 16, got {bit_depth!r}.')
    if bit_depth == 16 and ext not in ('.png', '.tif', '.tiff'):
        raise ValueError(f'{path}: {ext or "this format"} cannot hold 16-bit samples; write .png or .tif.')
    img = _to_samples(pixels, bit_depth)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] != 3):
        raise ValueError(f'{path}: pixels must be (H, W), (H, W, 1) or (H, W, 3), got {pixels.shape}.')
    if alpha is not None and ext not in ('.jpg', '.jpeg', '.bmp', '.ppm', '.pgm'):
        color = img if img.ndim == 3 or ext in ('', '.png') else cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
        img = np.dstack([color, _to_samples(alpha, bit_depth).reshape(img.shape[:2])])
    params = {'.jpg': [cv2.IMWRITE_JPEG_QUALITY, 95], '.jpeg': [cv2.IMWRITE_JPEG_QUALITY, 95]}.get(ext, [])
    if img.ndim == 3 and img.shape[2] == 2:  # gray + alpha stays gray + alpha (OpenCV writes 1, 3 or 4 channels)
        data = _png_gray_alpha(img)
    else:
        ok, encoded = cv2.imencode(ext or '.png', img, params)
        if not ok:
            raise ValueError(f'{path}: OpenCV cannot write {img.dtype} images as {ext!r}.')
        data = encoded.tobytes()
    exif = _strip_exif_header(exif)
    if exif is not None:
        exif = _set_orientation(exif, 1)
    if ext == '.png':
        data = _png_with_metadata(data, icc_profile, exif)
    elif ext in ('.jpg', '.jpeg'):
        data = _jpeg_with_metadata(data, icc_profile, exif)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, 'wb') as f:
        f.write(data)


def _to_samples(pixels: np.ndarray, bit_depth: int) -> np.ndarray:
    dtype = np.uint8 if bit_depth == 8 else np.uint16
    if pixels.dtype == dtype:
        return pixels
    if pixels.dtype in (np.uint8, np.uint16):
        raise ValueError(f'{pixels.dtype} pixels given for bit_depth {bit_depth}; pass floats in [0, 1] to convert.')
    peak = (1 << bit_depth) - 1
    return np.round(np.clip(pixels, 0, 1) * peak).astype(dtype)


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack('>I', len(payload)) + kind + payload + struct.pack('>I', zlib.crc32(kind + payload))


def _png_gray_alpha(img: np.ndarray) -> bytes:
    # PNG colour type 4 (gray + alpha), 8 or 16 bits (big-endian samples), filter 0 (none) on every row.
    rows = img.astype(img.dtype.newbyteorder('>')).view(np.uint8).reshape(img.shape[0], -1)
    header = struct.pack('>IIBBBBB', img.shape[1], img.shape[0], 8 * img.dtype.itemsize, 4, 0, 0, 0)
    return (_PNG_SIGNATURE + _png_chunk(b'IHDR', header)
            + _png_chunk(b'IDAT', zlib.compress(np.pad(rows, ((0, 0), (1, 0))).tobytes())) + _png_chunk(b'IEND', b''))


def _png_with_metadata(data: bytes, icc: Optional[bytes], exif: Optional[bytes]) -> bytes:
    chunks = b''
    if icc:  # iCCP: profile name, 0, compression method 0, zlib stream
        chunks += _png_chunk(b'iCCP', b'ICC profile\x00\x00' + zlib.compress(icc))
    if exif:
        chunks += _png_chunk(b'eXIf', exif)
    end_of_ihdr = 8 + 8 + 13 + 4  # signature, IHDR length/type, IHDR data, CRC
    return data[:end_of_ihdr] + chunks + data[end_of_ihdr:]


def _jpeg_with_metadata(data: bytes, icc: Optional[bytes], exif: Optional[bytes]) -> bytes:
    segments = b''
    if exif:
        payload = _EXIF_HEADER + exif
        if len(payload) + 2 <= 0xFFFF:  # an EXIF block that does not fit one APP1 segment is dropped, as by others
            segments += b'\xff\xe1' + struct.pack('>H', len(payload) + 2) + payload
    if icc:
        parts = [icc[i:i + _ICC_JPEG_CHUNK] for i in range(0, len(icc), _ICC_JPEG_CHUNK)]
        for number, part in enumerate(parts, 1):
            payload = _ICC_JPEG_TAG + bytes([number, len(parts)]) + part
            segments += b'\xff\xe2' + struct.pack('>H', len(payload) + 2) + payload
    if not segments:
        return data
    insert = 2
    if data[2:4] == b'\xff\xe0':  # keep OpenCV's JFIF APP0 first
        insert = 4 + struct.unpack('>H', data[4:6])[0]
    return data[:insert] + segments + data[insert:]

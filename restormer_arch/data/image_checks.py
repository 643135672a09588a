"""Pre-flight image checks: every image of a dataset is looked at when the dataset is built, before training.

Without them, a corrupt, truncated or mismatched image stops training when the sampler first draws it, possibly hours
in (and again after every resume). The default check reads each file's first 4 KiB and last 64 bytes: the header
(size, channels, bit depth) and the end marker (:func:`~restormer_arch.data.image_io.check_complete`: PNG IEND, JPEG
EOI, BMP/WebP length). ``check_images: decode`` decodes every image with the datasets' own decoder instead.
"""
import hashlib
import io
import struct
import warnings
from dataclasses import dataclass, replace
from typing import Any, List, Mapping, Optional, Sequence

from PIL import Image

from .image_io import ImageReadError, check_complete, read_image
from .readers import ImageReader

CHECK_IMAGES_MODES = (True, False, 'decode')
_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
_PNG_CHANNELS = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}  # by colour type: gray, RGB, palette, gray+alpha, RGBA
_MAX_PROBLEMS = 50  # stop checking after this many: enough to see what is wrong


@dataclass(frozen=True)
class ImageInfo:
    """What :func:`probe` reads from an image header.

    Attributes:
        height: Height in pixels, upright (after the EXIF orientation, as the datasets read the image).
        width: Width in pixels.
        channels: Channels stored in the file (1 gray, 2 gray+alpha, 3 colour, 4 colour+alpha).
        bits: Bits per sample (8, 16, ...).
        digest: Size and a hash of the bytes read, to spot byte-identical input/target files (None: not computed).
    """

    height: int
    width: int
    channels: int
    bits: int
    digest: Optional[bytes] = None


def _pil_info(head: bytes) -> Optional[ImageInfo]:
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
            return ImageInfo(height, width, channels, int(bits))
    except Exception:  # noqa: BLE001  (unknown to PIL or header beyond `head`: the caller decodes the file)
        return None


def probe(reader: ImageReader, path: str, key: str, decode: bool = False) -> ImageInfo:
    """Check one image of a dataset is complete and read its size, channels and bit depth from its first bytes.

    The header comes from the first bytes (4 KiB is plenty for PNG and most JPEGs; a JPEG whose EXIF block is longer,
    or with data after its end marker, is read whole); when they cannot tell, the image is decoded.

    Args:
        reader: The dataset's reader.
        path: File path (disk) or LMDB key.
        key: The folder key (``lq``, ``gt`` ...).
        decode: Decode the whole image with the datasets' decoder instead of reading its header and end marker.

    Returns:
        The image's information, with ``digest`` set.

    Raises:
        ImageReadError: An empty, truncated or undecodable file, a PNG without its header.
    """
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
            info = ImageInfo(height, width, _PNG_CHANNELS.get(head[25], 3), head[24])
        else:
            info = _pil_info(head) or _pil_info(read_all())
    if info is None:
        decoded = read_image(read_all(), name)
        h, w, c = decoded.pixels.shape
        info = ImageInfo(h, w, c + (decoded.alpha is not None), decoded.bit_depth)
    return replace(info, digest=digest)


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
    if mode not in CHECK_IMAGES_MODES:
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
                info = probe(reader, name, key, decode=mode == 'decode')
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

"""Helpers shared by the Restormer datasets: listing paired files, reading 8/16-bit images, patches, tensors.

Everything here works on numpy images in OpenCV layout (HWC, BGR for colour, HxWx1 for grayscale, float32 in [0, 1])
until :func:`to_tensor` turns them into CHW RGB tensors. Random choices use Python's :mod:`random` (crop offsets,
augmentation mode), which BasicSR's dataloader seeds per worker.
"""
import io
import os
import random
import struct
import warnings
from dataclasses import dataclass
from os import path as osp
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import cv2
import lmdb
import numpy as np
import torch
from basicsr.utils import FileClient
from PIL import Image

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp', '.ppm', '.pgm')
# How many offending names an error message lists before it summarises the rest.
_MAX_LISTED = 5

# OpenCV read flags. ANYDEPTH keeps 16-bit samples as uint16: plain IMREAD_COLOR/GRAYSCALE (what BasicSR's
# ``imfrombytes`` uses) would silently reduce a 16-bit PNG to 8 bits.
_READ_FLAGS = {
    'color': cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH,
    'grayscale': cv2.IMREAD_GRAYSCALE | cv2.IMREAD_ANYDEPTH,
    # OpenCV's defaults: 16-bit samples reduced to their high byte, as the official single-image DPDD test reads them.
    'color_8bit': cv2.IMREAD_COLOR,
    'grayscale_8bit': cv2.IMREAD_GRAYSCALE,
}
_DTYPE_PEAK = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}

# Image checks before training (``check_images``): every header is read, PNG files must end with their IEND chunk.
CHECK_IMAGES_MODES = (True, False, 'decode')
_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
_PNG_IEND = b'IEND\xaeB`\x82'  # the last chunk of every complete PNG, with its fixed CRC
_PNG_CHANNELS = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}  # by colour type: gray, RGB, palette, gray+alpha, RGBA
_HEAD_BYTES, _TAIL_BYTES = 4096, 64
_MAX_PROBLEMS = 50  # stop checking after this many: enough to see what is wrong


def _listing(names: Sequence[str]) -> str:
    shown = ', '.join(sorted(names)[:_MAX_LISTED])
    more = len(names) - _MAX_LISTED
    return shown + (f' ... and {more} more' if more > 0 else '')


# ----------------------------------------------------------------------------------------------------------- options
def require_option(opt: Mapping[str, Any], key: str, dataset: str) -> Any:
    """Return ``opt[key]``, raising a ValueError that names the dataset and the missing key when it is absent.

    Args:
        opt: Dataset options.
        key: The required key.
        dataset: Dataset class name, for the message.

    Returns:
        The option value.
    """
    if opt.get(key) is None:
        raise ValueError(f'{dataset} "{opt.get("name", "?")}": option "{key}" is required but missing; '
                         f'add "{key}: ..." to this dataset in the YAML file.')
    return opt[key]


def get_folder(opt: Mapping[str, Any], key: str, dataset: str) -> str:
    """Return the required folder option ``key`` with ``~`` expanded (BasicSR only expands dataroot_gt/lq)."""
    return osp.expanduser(str(require_option(opt, key, dataset)))


def get_phase(opt: Mapping[str, Any], dataset: str) -> str:
    """Return ``'train'`` or the evaluation phase name; BasicSR derives ``phase`` from the ``datasets:`` key."""
    phase = opt.get('phase')
    if phase is None:
        raise ValueError(f'{dataset} "{opt.get("name", "?")}": option "phase" is missing. BasicSR sets it from the '
                         'datasets key (train / val / test_*); set "phase: train" or "phase: val" when building the '
                         'dataset by hand.')
    return str(phase)


def get_backend(opt: Mapping[str, Any], dataset: str) -> Dict[str, Any]:
    """Return a copy of ``io_backend`` after checking it is disk or lmdb."""
    backend = dict(opt.get('io_backend') or {'type': 'disk'})
    if backend.get('type') not in ('disk', 'lmdb'):
        raise ValueError(f'{dataset} "{opt.get("name", "?")}": io_backend type {backend.get("type")!r} is not '
                         "supported; use io_backend: {type: disk} or {type: lmdb}.")
    return backend


def check_train_options(opt: Mapping[str, Any], dataset: str) -> int:
    """Validate the training-phase options shared by all datasets and return ``gt_size``."""
    gt_size = require_option(opt, 'gt_size', dataset)
    if not isinstance(gt_size, int) or isinstance(gt_size, bool) or gt_size <= 0:
        raise ValueError(f'{dataset}: gt_size must be a positive integer (the training patch size), got {gt_size!r}.')
    if opt.get('scale', 1) != 1:
        raise ValueError(f'{dataset}: only scale 1 is supported (restoration, LQ and GT have the same size), '
                         f'got scale {opt["scale"]}; set "scale: 1" in the YAML file.')
    return gt_size


def get_mean_std(opt: Mapping[str, Any], dataset: str) -> Tuple[Optional[List[float]], Optional[List[float]]]:
    """Return the optional normalisation ``(mean, std)``; both or neither must be given."""
    mean, std = opt.get('mean'), opt.get('std')
    if (mean is None) != (std is None):
        raise ValueError(f'{dataset}: give both "mean" and "std" for normalisation, or neither.')
    if std is not None and any(s == 0 for s in std):
        raise ValueError(f'{dataset}: "std" must not contain 0, got {std}.')
    return mean, std


# ------------------------------------------------------------------------------------------------------------ paths
def _check_folder(folder: Any, key: str) -> str:
    folder = str(folder)
    if not osp.isdir(folder):
        raise FileNotFoundError(f'{key}: folder "{folder}" does not exist (or is not a folder); fix "{key}" in the '
                                'dataset options or prepare the data as described in datasets/README.md.')
    return folder


def list_images(folder: str) -> List[str]:
    """Sorted image file names (relative, non-recursive, no hidden files) in ``folder``."""
    names = [e.name for e in os.scandir(folder)
             if e.is_file() and not e.name.startswith('.') and e.name.lower().endswith(IMAGE_EXTENSIONS)]
    return sorted(names)


def _read_meta_info(meta_info_file: str) -> List[str]:
    # One relative GT path per line; extra columns (BasicSR writes the shape and compression level) are ignored.
    if not osp.isfile(meta_info_file):
        raise FileNotFoundError(f'meta_info_file "{meta_info_file}" does not exist; fix "meta_info_file" or remove '
                                'it to list the folder instead.')
    with open(meta_info_file, encoding='utf-8') as f:
        names = [line.split()[0] for line in f if line.strip() and not line.lstrip().startswith('#')]
    if not names:
        raise ValueError(f'meta_info_file "{meta_info_file}" lists no images.')
    return names


def read_lmdb_meta(folder: str, key: str) -> Dict[str, Optional[Tuple[int, ...]]]:
    """Read an LMDB folder's ``meta_info.txt`` (``name.png (h,w,c) level``) and check the keys exist in the database.

    Args:
        folder: The ``.lmdb`` folder.
        key: Option name of the folder, for messages.

    Returns:
        Mapping from LMDB key (name without extension) to image shape (None when the line has no shape).
    """
    folder = _check_folder(folder, key)
    meta_file = osp.join(folder, 'meta_info.txt')
    if not osp.isfile(meta_file) or not osp.isfile(osp.join(folder, 'data.mdb')):
        raise FileNotFoundError(f'{key}: "{folder}" is not a BasicSR LMDB (needs data.mdb and meta_info.txt); build '
                                'it with "python datasets/make_lmdb.py <image folder> <name>.lmdb" or use '
                                'io_backend: {type: disk}.')
    shapes: Dict[str, Optional[Tuple[int, ...]]] = {}
    with open(meta_file, encoding='utf-8') as f:
        for line in f:
            parts = line.split()
            if not parts:
                continue
            shape = tuple(int(v) for v in parts[1].strip('()').split(',')) if len(parts) > 1 else None
            shapes[osp.splitext(parts[0])[0]] = shape
    with open_lmdb(folder).begin(write=False) as txn:
        stored = {k.decode('ascii') for k in txn.cursor().iternext(keys=True, values=False)}
    missing = [k for k in shapes if k not in stored]
    if missing:
        raise ValueError(f'{key}: {len(missing)} key(s) listed in {meta_file} are missing from the LMDB: '
                         f'{_listing(missing)}. The LMDB is incomplete; rebuild it with datasets/make_lmdb.py.')
    return shapes


def collect_paths(folders: Dict[str, Any], backend: str, meta_info_file: Optional[str] = None,
                  filename_tmpl: str = '{}') -> List[Dict[str, str]]:
    """List aligned samples over several folders (LMDBs) that hold the same images under the same names.

    The last entry of ``folders`` is the reference (GT). Disk mode pairs by file name: the partner of GT
    ``dir/name.ext`` in every other folder is ``dir/<filename_tmpl.format(name)>.ext``. With ``meta_info_file``
    the GT names come from that file (first column, relative to the GT folder) instead of a folder listing. LMDB
    mode uses the keys of each database's ``meta_info.txt``; paths are then LMDB keys.

    Args:
        folders: ``{key: folder}``, e.g. ``{'lq': ..., 'gt': ...}``; the returned dicts use ``<key>_path``.
        backend: ``'disk'`` or ``'lmdb'``.
        meta_info_file: Optional list of GT names (in LMDB mode it selects keys: names without extension).
        filename_tmpl: Template for the non-GT file names (without extension).

    Returns:
        One ``{'<key>_path': path}`` dict per sample: sorted by GT name, or in ``meta_info_file`` order on disk.
    """
    keys = list(folders)
    gt_key = keys[-1]
    if backend == 'lmdb':
        return _collect_lmdb(folders, meta_info_file)
    roots = {k: _check_folder(v, f'dataroot_{k}') for k, v in folders.items()}
    gt_names = _read_meta_info(meta_info_file) if meta_info_file else list_images(roots[gt_key])
    if not gt_names:
        raise ValueError(f'dataroot_{gt_key}: no images ({", ".join(IMAGE_EXTENSIONS)}) in "{roots[gt_key]}"; check '
                         'the path, or prepare the data as described in datasets/README.md.')
    partners = {}
    for name in gt_names:
        stem, ext = osp.splitext(name)
        partners[name] = osp.join(osp.dirname(stem), filename_tmpl.format(osp.basename(stem)) + ext)
    for key in keys[:-1]:
        if meta_info_file:
            missing = [p for p in partners.values() if not osp.isfile(osp.join(roots[key], p))]
            extra: List[str] = []
        else:
            present = set(list_images(roots[key]))
            missing = [p for p in partners.values() if p not in present]
            extra = sorted(present - set(partners.values()))
        if missing or extra:
            msg = f'dataroot_{key} "{roots[key]}" does not match dataroot_{gt_key} "{roots[gt_key]}" by file name'
            if missing:
                msg += f'; {len(missing)} file(s) missing in dataroot_{key}: {_listing(missing)}'
            if extra:
                msg += f'; {len(extra)} file(s) without a {gt_key} partner: {_listing(extra)}'
            raise ValueError(msg + f'. Each {gt_key} image needs a partner with the same name (filename_tmpl '
                             f'{filename_tmpl!r}).')
    if meta_info_file:
        missing_gt = [n for n in gt_names if not osp.isfile(osp.join(roots[gt_key], n))]
        if missing_gt:
            raise FileNotFoundError(f'{len(missing_gt)} image(s) listed in meta_info_file "{meta_info_file}" are '
                                    f'missing in dataroot_{gt_key} "{roots[gt_key]}": {_listing(missing_gt)}.')
    samples = []
    for name in gt_names:
        sample = {f'{k}_path': osp.join(roots[k], partners[name]) for k in keys[:-1]}
        sample[f'{gt_key}_path'] = osp.join(roots[gt_key], name)
        samples.append(sample)
    return samples


def _collect_lmdb(folders: Dict[str, Any], meta_info_file: Optional[str] = None) -> List[Dict[str, str]]:
    keys = list(folders)
    gt_key = keys[-1]
    metas = {k: read_lmdb_meta(str(v), f'dataroot_{k}') for k, v in folders.items()}
    if meta_info_file:
        wanted = [osp.splitext(n)[0] for n in _read_meta_info(meta_info_file)]
        for key, meta in metas.items():
            missing = [n for n in wanted if n not in meta]
            if missing:
                raise ValueError(f'{len(missing)} image(s) of meta_info_file "{meta_info_file}" are not in the LMDB '
                                 f'dataroot_{key} "{folders[key]}": {_listing(missing)}.')
        metas = {k: {n: meta[n] for n in wanted} for k, meta in metas.items()}
    gt_meta = metas[gt_key]
    for key in keys[:-1]:
        missing = sorted(set(gt_meta) - set(metas[key]))
        extra = sorted(set(metas[key]) - set(gt_meta))
        if missing or extra:
            raise ValueError(f'LMDB dataroot_{key} and dataroot_{gt_key} hold different keys (missing in {key}: '
                             f'{_listing(missing) or "none"}; missing in {gt_key}: {_listing(extra) or "none"}). '
                             'Build both LMDBs from folders with identical file names.')
        # The stored shapes let us catch LQ/GT size mismatches before training starts (channels may differ).
        bad = [k for k in gt_meta if gt_meta[k] and metas[key][k] and gt_meta[k][:2] != metas[key][k][:2]]
        if bad:
            raise ValueError(f'LMDB dataroot_{key} and dataroot_{gt_key}: {len(bad)} image(s) differ in size, e.g. '
                             f'{bad[0]}: {metas[key][bad[0]]} vs {gt_meta[bad[0]]}. Restoration pairs must have equal '
                             'height and width.')
    return [{f'{k}_path': name for k in keys} for name in sorted(gt_meta)]


# ---------------------------------------------------------------------------------------------------------- reading
def decode_image(content: Optional[bytes], name: str, flag: str = 'color', require_16bit: bool = False) -> np.ndarray:
    """Decode image bytes to float32 HWC (BGR, or HxWx1 for grayscale) in [0, 1], keeping 8- or 16-bit precision.

    Args:
        content: Encoded image bytes.
        name: File name or LMDB key, for messages.
        flag: ``'color'`` (always 3 channels, alpha dropped, gray replicated) or ``'grayscale'`` (1 channel);
            ``'color_8bit'`` / ``'grayscale_8bit'`` read 16-bit files as 8-bit (OpenCV keeps the high byte).
        require_16bit: Raise a ValueError unless the image has 16-bit samples.

    Returns:
        The image, divided by 255 (8-bit) or 65535 (16-bit).
    """
    if not content:
        raise ValueError(f'image "{name}" is empty (0 bytes); replace or remove it.')
    img = cv2.imdecode(np.frombuffer(content, np.uint8), _READ_FLAGS[flag])
    if img is None:
        raise ValueError(f'image "{name}" cannot be decoded (corrupt or not an image); replace or remove it.')
    if img.dtype not in _DTYPE_PEAK:
        raise ValueError(f'image "{name}" has unsupported sample type {img.dtype}; use 8- or 16-bit images.')
    if require_16bit and img.dtype != np.uint16:
        raise ValueError(f'image "{name}" is {img.dtype} (8-bit) but this dataset expects 16-bit PNGs (values are '
                         'divided by 65535); use the 16-bit DPDD data or Dataset_PairedImage for 8-bit images.')
    peak = _DTYPE_PEAK[img.dtype]
    img = img.astype(np.float32) / np.float32(peak)
    return img[..., None] if img.ndim == 2 else img


def read_flag(opt: Mapping[str, Any], flag: str, dataset: str) -> str:
    """``flag`` (color/grayscale), or its 8-bit variant with ``bit_depth: 8`` (16-bit files read as 8-bit)."""
    depth = opt.get('bit_depth')
    if depth is None:
        return flag
    if depth != 8:
        raise ValueError(f'{dataset}: bit_depth must be 8 (read 16-bit images as 8-bit, as OpenCV does by default) or '
                         f'left out (keep every file\'s own depth), got {depth!r}.')
    return f'{flag}_8bit'


# ---------------------------------------------------------------------------------------------------- image checks
@dataclass(frozen=True)
class ImageInfo:
    """What :func:`probe_image` reads from an image header.

    Args:
        height: Height in pixels.
        width: Width in pixels.
        channels: Channels stored in the file (1 gray, 2 gray+alpha, 3 colour, 4 colour+alpha).
        bits: Bits per sample (8, 16, ...).
    """

    height: int
    width: int
    channels: int
    bits: int


def _pil_info(data: bytes) -> Optional[ImageInfo]:
    try:
        with Image.open(io.BytesIO(data)) as img:  # lazy: parses the header only
            width, height = img.size
            bits = 16 if img.mode.startswith('I;16') else 32 if img.mode in ('I', 'F') else 8
            if img.format == 'TIFF':
                bits = max(img.tag_v2.get(258, (bits,)) or (bits,))
            return ImageInfo(height, width, len(img.getbands()), int(bits))
    except Exception:  # noqa: BLE001  (unknown to PIL or header beyond `data`: the caller decodes the file)
        return None


def _decoded_info(content: bytes, name: str) -> ImageInfo:
    if not content:
        raise ValueError(f'image "{name}" is empty (0 bytes); replace or remove it.')
    img = cv2.imdecode(np.frombuffer(content, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ValueError(f'image "{name}" cannot be decoded (corrupt, truncated or not an image); replace or remove '
                         'it.')
    return ImageInfo(img.shape[0], img.shape[1], 1 if img.ndim == 2 else img.shape[2], img.dtype.itemsize * 8)


def probe_image(head: bytes, tail: bytes, name: str) -> Optional[ImageInfo]:
    """Read size, channels and bit depth from the first bytes of an image, and check a PNG is complete.

    Args:
        head: The first bytes of the file (4 KiB is plenty for PNG and most JPEGs).
        tail: The last bytes of the file.
        name: File name or LMDB key, for messages.

    Returns:
        The header information, or ``None`` when ``head`` is not enough to tell (decode the whole file then).

    Raises:
        ValueError: An empty file, a PNG without its header or without its final IEND chunk (truncated).
    """
    if not head:
        raise ValueError(f'image "{name}" is empty (0 bytes); replace or remove it.')
    if head.startswith(_PNG_SIGNATURE):
        if len(head) < 33 or head[12:16] != b'IHDR':
            raise ValueError(f'image "{name}" is corrupt (a PNG without its IHDR header); replace or remove it.')
        if _PNG_IEND not in tail:
            raise ValueError(f'image "{name}" is truncated (the PNG ends before its IEND chunk: an interrupted copy '
                             'or download?); copy or regenerate it, or remove it.')
        width, height = struct.unpack('>II', head[16:24])
        return ImageInfo(height, width, _PNG_CHANNELS.get(head[25], 3), head[24])
    return _pil_info(head)


def check_images(reader: 'ImageReader', samples: Sequence[Mapping[str, str]], keys: Sequence[str], dataset: str,
                 opt: Mapping[str, Any], flag: str = 'color', require_16bit: bool = False,
                 min_size: Optional[int] = None) -> None:
    """Check every image of a dataset before training: readable, complete, bit depth, pair sizes, patch size.

    Without this, a corrupt or mismatched image stops training when the sampler first draws it, possibly hours in.
    Reads only headers (and the last bytes of PNGs) unless ``opt['check_images']`` is ``'decode'``; ``false`` skips
    the check.

    Args:
        reader: The dataset's reader (disk or LMDB).
        samples: ``{'<key>_path': path}`` dicts from :func:`collect_paths`; ``keys`` in the same order (GT last).
        keys: The folder keys of a sample, e.g. ``('lq', 'gt')``.
        dataset: Dataset class name, for messages.
        opt: Dataset options (``name``, ``check_images``).
        flag: ``'color'`` or ``'grayscale'``: how the dataset reads images (a warning when all are gray but read as
            colour).
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
    gray = 0
    for sample in samples:
        infos = {}
        for key in keys:
            try:
                info = reader.probe(sample[f'{key}_path'], key, decode=mode == 'decode')
            except (OSError, ValueError) as err:
                problems.append(str(err))
                continue
            infos[key] = info
            name = sample[f'{key}_path']
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
                problems.append(f'image "{sample[f"{keys[-1]}_path"]}" ({height}x{width}) is smaller than the training '
                                f'patch gt_size={min_size} and use_padding is false; set use_padding: true, lower '
                                'gt_size, or remove the small images.')
            gray += infos[keys[-1]].channels <= 2
        if len(problems) >= _MAX_PROBLEMS:
            break
    where = f'{dataset} "{opt.get("name", "?")}"'
    if problems:
        count = f'{len(problems)}+' if len(problems) >= _MAX_PROBLEMS else str(len(problems))
        more = f'\n  ... and {len(problems) - 10} more' if len(problems) > 10 else ''
        raise ValueError(f'{where}: {count} problem(s) found in the images before training (check_images; set '
                         'check_images: false to skip the check):\n  - ' + '\n  - '.join(problems[:10]) + more)
    if flag == 'color' and samples and gray == len(samples):
        warnings.warn(f'{where}: all {len(samples)} target images are gray, but the dataset reads them as RGB '
                      '(in_ch: 3, three equal channels); for a gray model set in_ch: 1 and network_g '
                      'inp_channels/out_channels: 1.', UserWarning, stacklevel=3)


# Open LMDB environments of this process, by real path. py-lmdb refuses to open one database twice in a process
# ("already open in this process"), which happens when LQ and GT, or train and val, share an LMDB, when a dataset is
# built twice, and in forked DataLoader workers that inherit the parent's handle. Environments are opened read-only
# without the lock table (as BasicSR's LMDB FileClient does), so a forked worker can safely keep reading through the
# inherited handle; spawned workers start with an empty cache.
_LMDB_ENVS: Dict[str, Any] = {}


def open_lmdb(folder: str) -> Any:
    """Return the shared read-only ``lmdb.Environment`` of ``folder`` (opened on first use)."""
    real = osp.realpath(folder)
    if real not in _LMDB_ENVS:
        _LMDB_ENVS[real] = lmdb.open(real, readonly=True, lock=False, readahead=False)
    return _LMDB_ENVS[real]


class ImageReader:
    """Read images from disk (BasicSR's ``FileClient``) or from BasicSR LMDBs (shared environments, see above).

    Args:
        backend: The ``io_backend`` options (``type`` disk or lmdb).
        folders: ``{key: folder}``; in LMDB mode these are the databases, addressed by ``key``.
    """

    def __init__(self, backend: Dict[str, Any], folders: Dict[str, Any]) -> None:
        self.kind = backend['type']
        self.folders = {k: str(v) for k, v in folders.items()}
        self._disk = FileClient('disk')

    def _get_bytes(self, path: str, key: str) -> Tuple[Optional[bytes], str]:
        if self.kind == 'lmdb':
            with open_lmdb(self.folders[key]).begin(write=False) as txn:
                content = txn.get(path.encode('ascii'))
            if content is None:
                raise ValueError(f'LMDB key "{path}" not found in "{self.folders[key]}"; rebuild the LMDB with '
                                 'datasets/make_lmdb.py.')
            return content, f'{path} (key in {self.folders[key]})'
        try:
            return self._disk.get(path), path
        except FileNotFoundError as err:
            raise FileNotFoundError(f'image "{path}" does not exist (it was listed when the dataset was built; was '
                                    'it moved or deleted?).') from err

    def probe(self, path: str, key: str, decode: bool = False) -> ImageInfo:
        """Header information of one image (see :func:`probe_image`); ``decode`` decodes the whole image instead."""
        if self.kind == 'lmdb':
            with open_lmdb(self.folders[key]).begin(write=False, buffers=True) as txn:
                content = txn.get(path.encode('ascii'))
                if content is None:
                    raise ValueError(f'LMDB key "{path}" not found in "{self.folders[key]}"; rebuild the LMDB with '
                                     'datasets/make_lmdb.py.')
                name = f'{path} (key in {self.folders[key]})'
                head, tail = bytes(content[:_HEAD_BYTES]), bytes(content[-_TAIL_BYTES:])
                info = None if decode else probe_image(head, tail, name)
                return info or _decoded_info(bytes(content), name)
        with open(path, 'rb') as f:
            head = f.read(_HEAD_BYTES)
            f.seek(max(0, os.fstat(f.fileno()).st_size - _TAIL_BYTES))
            tail = f.read()
            info = None if decode else probe_image(head, tail, path)
            if info is None:
                f.seek(0)
                info = _decoded_info(f.read(), path)
        return info

    def read(self, path: str, key: str, flag: str = 'color', require_16bit: bool = False) -> np.ndarray:
        """Read one image (see :func:`decode_image`); ``path`` is a file path (disk) or an LMDB key."""
        content, name = self._get_bytes(path, key)
        return decode_image(content, name, flag, require_16bit)


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

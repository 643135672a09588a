"""Shared core of the ``generate_patches_*.py`` scripts: cut aligned images into overlapping training patches.

One *job* is one scene: a few aligned images (``roles``, e.g. ``input`` and ``target``) cut with the same grid.
Patches are PNGs named ``<key>_<index>.png`` (index = position in the row-major grid), written with the source bit
depth (16-bit stays 16-bit). The work is resumable: a file is written under a temporary name and renamed when
complete, existing patches are skipped, and a scene whose patches are all written gets a marker in
``<first output folder>/.done/`` so a rerun skips it without reading it. Scenes run in parallel
(``multiprocessing``) with a tqdm bar.
"""
import math
import os
import re
from dataclasses import dataclass, field
from functools import partial
from multiprocessing import Pool
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import cv2
import numpy as np
from tqdm import tqdm

# Words that name a split in a folder or file name (``train_c``, ``DIV2K_valid_HR``, ``ValidationGtBlocksSrgb.mat``).
SPLIT_WORDS = {'train': 'train', 'training': 'train', 'val': 'val', 'valid': 'val', 'validation': 'val',
               'test': 'test', 'testing': 'test'}
# The project's image extensions (restormer_arch.data.image_io.IMAGE_EXTENSIONS; a test keeps the two equal).
IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp', '.ppm', '.pgm')


def _image_io():
    # Deferred: importing the package loads torch and basicsr (seconds), which the option and folder errors do not
    # need. run() imports it before starting worker processes, so forked workers share the loaded modules.
    from restormer_arch.data import image_io

    return image_io


class PatchError(RuntimeError):
    """Bad input to a patch script; the message names the file or folder and what to do."""


@dataclass(frozen=True)
class Job:
    """One scene: ``sources`` maps a role (``'input'``, ``'target'`` ...) to its image file."""

    key: str
    sources: Dict[str, Path]


@dataclass(frozen=True)
class PatchConfig:
    """How to cut: grid, exceptions, sharpness selection and where the patches go (one folder per role).

    Attributes:
        out_dirs: Output folder per role.
        patch: Patch size in pixels.
        step: Distance between patch origins (``patch - overlap``).
        tile_only_if_larger: Tile only images with both sides larger than this; others are written whole.
        center_crop: Instead of a grid, write one centred crop of this size (validation sets).
        keep_sharpest: Keep only this fraction of a scene's patches, the sharpest by Sobel energy of ``sharp_role``.
        sharp_role: Role whose patch is scored for ``keep_sharpest``.
    """

    out_dirs: Dict[str, Path]
    patch: int
    step: int
    tile_only_if_larger: Optional[int] = None
    center_crop: Optional[int] = None
    keep_sharpest: Optional[float] = None
    sharp_role: str = 'target'
    extension: str = field(default='.png')


def grid_starts(length: int, patch: int, step: int) -> List[int]:
    """Patch origins along one axis: every ``step`` pixels, plus a last patch flush with the end."""
    if length <= patch:
        return [0]
    starts = list(range(0, length - patch + 1, step))
    if starts[-1] != length - patch:
        starts.append(length - patch)
    return starts


def patch_boxes(height: int, width: int, cfg: PatchConfig) -> List[Tuple[int, int, int, int]]:
    """``(top, left, h, w)`` of every patch of a ``height`` x ``width`` scene, row-major."""
    if cfg.center_crop:
        size_h, size_w = min(cfg.center_crop, height), min(cfg.center_crop, width)
        return [((height - size_h) // 2, (width - size_w) // 2, size_h, size_w)]
    if cfg.tile_only_if_larger is not None and min(height, width) <= cfg.tile_only_if_larger:
        return [(0, 0, height, width)]
    size_h, size_w = min(cfg.patch, height), min(cfg.patch, width)  # smaller images are written whole
    return [(top, left, size_h, size_w) for top in grid_starts(height, size_h, cfg.step)
            for left in grid_starts(width, size_w, cfg.step)]


def sobel_energy(img: np.ndarray) -> float:
    """Mean squared Sobel gradient magnitude of the gray image, on the [0, 1] scale (the sharpness score)."""
    peak = 65535.0 if img.dtype == np.uint16 else 255.0
    gray = img.astype(np.float32) / peak
    if gray.ndim == 3:  # gray + alpha: the gray channel; colour (+ alpha): BT.601 luma
        gray = gray[..., 0] if gray.shape[2] == 2 else cv2.cvtColor(gray[..., :3], cv2.COLOR_BGR2GRAY)
    gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3)
    return float(np.mean(gx * gx + gy * gy))


def select_sharpest(patches: Sequence[np.ndarray], fraction: float) -> List[int]:
    """Indices (ascending) of the ``fraction`` sharpest patches (at least one)."""
    keep = max(1, int(round(fraction * len(patches))))
    scores = [sobel_energy(p) for p in patches]
    order = sorted(range(len(patches)), key=lambda i: (-scores[i], i))  # ties: grid order, deterministic
    return sorted(order[:keep])


def _read(path: Path) -> np.ndarray:
    # The datasets' decoder (EXIF orientation applied, truncated files refused); alpha is kept as the last channel.
    image_io = _image_io()
    try:
        decoded = image_io.read_image(path)
    except image_io.ImageReadError as err:
        raise PatchError(str(err)) from err
    pixels = decoded.pixels[..., 0] if decoded.pixels.shape[2] == 1 else decoded.pixels
    return pixels if decoded.alpha is None else np.dstack([pixels, decoded.alpha])


def write_patch(img: np.ndarray, target: Path) -> None:
    """Write one image (gray or BGR, alpha as an extra last channel) atomically, at its own bit depth."""
    alpha = img[..., -1] if img.ndim == 3 and img.shape[2] in (2, 4) else None
    try:
        _image_io().write_image(target, img[..., :-1] if alpha is not None else img, 8 * img.dtype.itemsize, alpha)
    except (OSError, ValueError) as err:
        raise PatchError(f'{target}: could not be written ({err}).') from err


def _marker(cfg: PatchConfig, key: str) -> Path:
    return next(iter(cfg.out_dirs.values())) / '.done' / key


def process_job(job: Job, cfg: PatchConfig) -> Tuple[int, int]:
    """Cut one scene; returns ``(patch files written, patch files already present)``."""
    if _marker(cfg, job.key).exists():
        return 0, 0
    images = {role: _read(path) for role, path in job.sources.items()}
    shapes = {role: img.shape[:2] for role, img in images.items()}
    if len(set(shapes.values())) != 1:
        raise PatchError(f'Scene {job.key}: images differ in size {shapes} ({[str(p) for p in job.sources.values()]})'
                         '; paired images must be aligned.')
    height, width = next(iter(shapes.values()))
    boxes = patch_boxes(height, width, cfg)
    indices = list(range(len(boxes)))
    if cfg.keep_sharpest is not None:
        scored = images[cfg.sharp_role]
        indices = select_sharpest([scored[t:t + h, lft:lft + w] for t, lft, h, w in boxes], cfg.keep_sharpest)
    written = present = 0
    digits = max(3, len(str(len(boxes) - 1)))
    for index in indices:
        top, left, h, w = boxes[index]
        for role, img in images.items():
            target = cfg.out_dirs[role] / f'{job.key}_{index:0{digits}d}{cfg.extension}'
            if target.exists():
                present += 1
                continue
            write_patch(np.ascontiguousarray(img[top:top + h, left:left + w]), target)
            written += 1
    _marker(cfg, job.key).touch()
    return written, present


def _init_worker() -> None:
    cv2.setNumThreads(0)  # one scene per process; OpenCV's own threads would oversubscribe the CPUs


def run(jobs: Sequence[Job], cfg: PatchConfig, workers: int = 0, desc: str = 'patches') -> Tuple[int, int]:
    """Process all scenes (in parallel) and print a summary.

    Args:
        jobs: The scenes.
        cfg: Cutting configuration.
        workers: Processes; 0 = all CPUs, 1 = in this process.
        desc: Progress bar label.

    Returns:
        ``(patch files written, patch files that already existed)``.
    """
    if not jobs:
        raise PatchError('No images found to cut; check the --src folder layout (see --help).')
    for out_dir in cfg.out_dirs.values():
        out_dir.mkdir(parents=True, exist_ok=True)
    _marker(cfg, 'x').parent.mkdir(exist_ok=True)
    workers = workers or os.cpu_count() or 1
    _image_io()  # loaded once here; forked workers inherit it
    worker = partial(process_job, cfg=cfg)
    totals = np.zeros(2, dtype=np.int64)
    with tqdm(total=len(jobs), desc=desc, unit='scene') as bar:
        if workers == 1:
            results: Iterable = map(worker, jobs)
            for result in results:
                totals += result
                bar.update()
        else:
            with Pool(min(workers, len(jobs)), initializer=_init_worker) as pool:
                for result in pool.imap_unordered(worker, jobs):
                    totals += result
                    bar.update()
    written, present = int(totals[0]), int(totals[1])
    print(f'{desc}: {written} patch files written, {present} already present, into '
          f'{", ".join(str(d) for d in cfg.out_dirs.values())}')
    return written, present


def list_images(folder: Path, recursive: bool = False) -> List[Path]:
    """Image files of ``folder`` (sorted), or a clear error when the folder is missing or empty."""
    if not folder.is_dir():
        raise PatchError(f'{folder}: folder not found.')
    pattern = '**/*' if recursive else '*'
    files = sorted(p for p in folder.glob(pattern) if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
                   and '.tmp' not in p.parts and '.done' not in p.parts)
    if not files:
        raise PatchError(f'{folder}: no images ({", ".join(IMAGE_EXTENSIONS)}) found.')
    return files


def paired_jobs(folders: Dict[str, Path], key_prefix: str = '') -> List[Job]:
    """Scenes from folders of identically named images, one folder per role."""
    listings = {role: {p.name: p for p in list_images(folder)} for role, folder in folders.items()}
    roles = list(listings)
    names = sorted(listings[roles[0]])
    for role in roles[1:]:
        missing = sorted(set(names) - set(listings[role]))
        if missing:
            raise PatchError(f'{folders[role]}: missing {len(missing)} image(s) that {folders[roles[0]]} has, e.g. '
                             f'{missing[:3]}; paired folders need identical file names.')
    return [Job(key_prefix + Path(name).stem, {role: listings[role][name] for role in roles}) for name in names]


def name_words(name: str) -> List[str]:
    """Lower-case words of a file or folder name, split at non-alphanumerics and camelCase boundaries.

    ``DIV2K_train_LR_bicubic`` -> ``div2k train lr bicubic``; ``ValidationGtBlocksSrgb.mat`` -> ``validation gt blocks
    srgb mat``; ``Test100`` -> ``test100`` (a test set's name, not a split).
    """
    return [w.lower() for w in re.split(r'[^A-Za-z0-9]+', re.sub(r'([a-z])([A-Z])', r'\1 \2', name)) if w]


def split_of(name: str) -> Optional[str]:
    """The split (``train``, ``val``, ``test``) a file or folder name states, or None."""
    return next((SPLIT_WORDS[w] for w in name_words(name) if w in SPLIT_WORDS), None)


Found = Tuple[Path, Optional[str], Any]  # (where, relative to --src; the split the layout implies, or None; the item)


def find_layouts(src: Path, match: Callable[[Path], List[Found]], depth: int = 3) -> List[Found]:
    """Search ``src`` and the folders up to ``depth`` levels below it for a dataset layout.

    Args:
        src: The ``--src`` folder.
        match: ``match(folder)`` lists what it recognises in ``folder``: ``(where, relative to folder; implied split
            or None; item)``.
        depth: How many folder levels below ``src`` are searched (hidden folders are skipped).

    Returns:
        Every match, ``where`` made relative to ``src``.

    Raises:
        PatchError: ``src`` is not a folder.
    """
    if not src.is_dir():
        raise PatchError(f'{src}: folder not found.')
    found: List[Found] = []
    todo = [(src, 0)]
    while todo:
        folder, level = todo.pop(0)
        found += [(folder.relative_to(src) / where, hint, item) for where, hint, item in match(folder)]
        if level < depth:
            todo += [(d, level + 1) for d in sorted(folder.iterdir()) if not d.name.startswith('.') and d.is_dir()]
    return found


def pick_split(src: Path, found: Sequence[Found], split: Optional[str]) -> List[Found]:
    """Keep what belongs to the asked split; refuse a folder holding several splits when none is asked for.

    The split of an item is the first split word in its path below ``src`` (``train_c/source``, ``test/GOPR0384``,
    ``DIV2K_valid_HR``), else the split its layout implies (SIDD-Medium scenes are training data), else the one
    ``src``'s own name states (``GOPRO_Large/test``).

    Args:
        src: The ``--src`` folder.
        found: What :func:`find_layouts` (or a listing) found.
        split: ``--split`` (``train``, ``val`` or ``test``), or None.

    Returns:
        The items of the asked split; all items when ``split`` is None and at most one split is named.

    Raises:
        PatchError: Several splits and no ``--split`` (they are named), or none of the asked split.
    """
    own = split_of(src.resolve().name)
    groups: Dict[Optional[str], List[Found]] = {}
    for entry in found:
        stated = next((s for s in map(split_of, entry[0].parts) if s), None)
        groups.setdefault(stated or entry[1] or own, []).append(entry)
    named = sorted(s for s in groups if s)
    listing = '; '.join(f'{s}: {", ".join(sorted({(e[0].parts or (src.name,))[0] for e in groups[s]})[:3])}'
                        for s in named)
    if split is None and len(named) > 1:
        raise PatchError(f'{src} holds several splits ({listing}); choose one with --split {"/".join(named)}.')
    if split is not None and named:
        if split not in groups:
            raise PatchError(f'{src} holds no {split} split ({listing}); pass --split {"/".join(named)}, or the '
                             f'folder of the {split} split as --src.')
        return groups[split]
    if named:  # one split, read without --split: say which, so that a validation set cut from train is visible
        print(f'{src}: reading the {named[0]} split ({listing})')
    return list(found)


def jobs_of_sets(src: Path, sets: Sequence[Found]) -> List[Job]:
    """The scenes of found folder sets (item: role -> folder of identically named images).

    With several sets, keys get the set's folder path (split words left out) as prefix: scenes of different folders
    may share file names (every GoPro scene has a ``000001.png``).
    """
    def prefix(where: Path) -> str:
        return ('_'.join(p for p in where.parts if not split_of(p)) or src.name) + '_' if len(sets) > 1 else ''

    return [job for where, _, roles in sets for job in paired_jobs(roles, prefix(where))]


def step_from_overlap(patch: int, overlap: int) -> int:
    """Grid step for a patch size and overlap, validated."""
    if not 0 <= overlap < patch:
        raise PatchError(f'--overlap {overlap} must be in [0, --patch-size {patch}).')
    return patch - overlap


def positive_fraction(text: str) -> float:
    """argparse type for (0, 1] fractions."""
    value = float(text)
    if not 0 < value <= 1 or math.isnan(value):
        raise ValueError(f'{text} is not in (0, 1]')
    return value


def base_parser(description: str, patch: int, overlap: Optional[int], many_sources: bool = False):
    """The options every script shares: ``--src``, ``--dst``, ``--patch-size``, ``--overlap``, ``--workers``."""
    import argparse

    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--src', type=Path, required=True, nargs='+' if many_sources else None,
                        help='dataset folder(s) (layout: see above)')
    parser.add_argument('--dst', type=Path, required=True, help='output folder for the patch folders')
    parser.add_argument('--split', choices=('train', 'val', 'test'),
                        help='the split to read when --src holds several (e.g. the DPDD release: train_*, val_*)')
    parser.add_argument('--patch-size', type=int, default=patch, help=f'patch size (default {patch})')
    if overlap is not None:
        parser.add_argument('--overlap', type=int, default=overlap, help=f'overlap of patches (default {overlap})')
    parser.add_argument('--workers', type=int, default=0, help='processes (default: all CPUs; 1 = no pool)')
    return parser


def script_main(body, argv=None) -> int:
    """Run a script body, turning :class:`PatchError` into a one-line message and exit code 2."""
    import sys

    try:
        body(argv)
    except PatchError as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    return 0

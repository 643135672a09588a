"""Pack an image folder into a BasicSR LMDB (``data.mdb`` + ``meta_info.txt``) for ``io_backend: {type: lmdb}``.

Usage::

    python datasets/make_lmdb.py datasets/Deraining/train/Rain13K/input datasets/Deraining/train/Rain13K/input.lmdb

Keys are the image paths relative to the input folder without extension (``norain-1.png`` -> ``norain-1``), the
convention the Restormer datasets use to pair LMDBs; they are UTF-8, so ``café.png`` works. Every image is decoded by
the datasets' own decoder (EXIF orientation applied, see docs/images.md) and stored as lossless PNG at its own bit
depth (16-bit PNGs stay 16-bit; alpha, which the datasets drop, is not stored), so reading from the LMDB gives exactly
the pixels the datasets read from the folder.

The folder is one side of one split: with ``--recursive``, a folder holding several splits (``train/`` + ``test/``)
needs ``--split``, and one holding both sides of image pairs (``input/`` + ``target/``) is refused (pack each side
into its own LMDB, so that their keys pair up). Mistakes are reported in one line, exit code 2.

The LMDB is built in a hidden folder next to the output and renamed to the output name only when complete: an
interrupted or failed build never leaves a folder that looks like a finished LMDB.
"""
import argparse
import contextlib
import os
import shutil
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from os import path as osp
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

# Folder name words that mark one side of image pairs (``input``/``target``, ``blur``/``sharp``, ``GT``/``NOISY`` ...).
ROLE_WORDS = ('input', 'target', 'gt', 'lq', 'blur', 'sharp', 'noisy', 'clean', 'source', 'hr', 'lr')
# LMDB's default maximum key size; longer keys cannot be stored.
MAX_KEY_BYTES = 511
_COMMIT_EVERY = 1000  # images per write transaction


def _image_extensions() -> Tuple[str, ...]:
    from restormer_arch.data.image_io import IMAGE_EXTENSIONS  # deferred: importing the package imports basicsr

    return IMAGE_EXTENSIONS


def list_images(folder: str, recursive: bool = False) -> List[str]:
    """Sorted image paths relative to ``folder`` (hidden files skipped)."""
    extensions = _image_extensions()
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith('.')) if recursive else []
        rel = osp.relpath(root, folder)
        found += [osp.normpath(osp.join(rel, f)) for f in files
                  if not f.startswith('.') and f.lower().endswith(extensions)]
    return sorted(found)


def _patches():
    # datasets/_patches.py, also when this file is loaded by its path (tests) rather than run as a script.
    sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
    import _patches

    return _patches


def select_images(folder: str, paths: List[str], split: Optional[str] = None) -> List[str]:
    """The images of one side of one split; several splits without ``split``, or both sides of pairs, are refused.

    Args:
        folder: The input folder.
        paths: Its images, relative to it.
        split: ``train``, ``val`` or ``test``: keep the images below folders of that split.

    Returns:
        The images to pack.

    Raises:
        ValueError: The folder holds several splits and none is selected, or both sides of image pairs.
    """
    patches = _patches()
    try:
        chosen = [p for _, _, p in patches.pick_split(Path(folder), [(Path(p).parent, None, p) for p in paths], split)]
    except patches.PatchError as err:
        raise ValueError(str(err)) from err
    sides: Dict[Tuple[str, ...], Dict[str, str]] = {}
    for path in chosen:
        parts = Path(path).with_suffix('').parts  # folders and the file name: SIDD scenes hold GT and NOISY files
        for i, part in enumerate(parts):
            role = next((w for w in patches.name_words(part) if w in ROLE_WORDS), None)
            if role:
                sides.setdefault(parts[:i], {}).setdefault(role, part)
    both = next((names for names in sides.values() if len(names) > 1), None)
    if both:
        raise ValueError(f'"{folder}" holds both sides of image pairs ({", ".join(sorted(both.values()))}); pack '
                         'each side into its own LMDB (their keys then pair up).')
    return chosen


def _keys(paths: List[str]) -> List[str]:
    keys = [osp.splitext(p)[0].replace(os.sep, '/') for p in paths]
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    if duplicates:
        raise ValueError(f'images differing only in extension would share an LMDB key: {", ".join(duplicates[:5])}.')
    bad = []
    for path, key in zip(paths, keys):
        try:
            if len(key.encode('utf-8')) > MAX_KEY_BYTES:
                bad.append(f'{path} (key longer than {MAX_KEY_BYTES} bytes)')
        except UnicodeEncodeError:
            bad.append(f'{path.encode("utf-8", "replace").decode("utf-8")} (file name not valid UTF-8)')
    if bad:
        raise ValueError(f'{len(bad)} file name(s) cannot be LMDB keys: {", ".join(bad[:5])}; rename them. Nothing '
                         'was written.')
    return keys


def _encode(job: Tuple[str, int]) -> Tuple[bytes, Tuple[int, int, int]]:
    """Decode one image with the datasets' decoder and re-encode it as PNG; returns (bytes, (h, w, c))."""
    import cv2

    from restormer_arch.data.image_io import read_image

    path, level = job
    decoded = read_image(path)
    pixels = decoded.pixels
    ok, data = cv2.imencode('.png', pixels[..., 0] if pixels.shape[2] == 1 else pixels,
                            [cv2.IMWRITE_PNG_COMPRESSION, level])
    if not ok:
        raise ValueError(f'image "{path}" could not be encoded as PNG.')
    return data.tobytes(), pixels.shape


def make_lmdb(input_folder: str, lmdb_path: str, recursive: bool = False, compress_level: int = 1,
              map_size_gb: float = 1024.0, workers: int = 1, split: Optional[str] = None) -> int:
    """Write every image of ``input_folder`` into the new LMDB ``lmdb_path``, atomically.

    Args:
        input_folder: Folder with the images.
        lmdb_path: Output folder; must end with ``.lmdb`` and must not exist.
        recursive: Include sub-folders (keys then contain ``/``).
        compress_level: PNG compression level (0-9) of the stored images.
        map_size_gb: LMDB map size in GiB. It only reserves address space on Linux/macOS (the file grows as
            needed), but Windows allocates it, so lower it there.
        workers: Processes decoding and encoding images.
        split: With ``recursive``: the split to pack when the folder holds several (see :func:`select_images`).

    Returns:
        The number of images written.

    Raises:
        FileNotFoundError: The input folder does not exist.
        FileExistsError: The output exists.
        ValueError: No images, several splits or both sides of pairs, names that cannot be keys, or an image that
            cannot be read (nothing is left behind).
    """
    if not osp.isdir(input_folder):
        raise FileNotFoundError(f'input folder "{input_folder}" does not exist; pass the folder that holds the images.')
    lmdb_path = osp.normpath(lmdb_path)
    if not lmdb_path.endswith('.lmdb'):
        raise ValueError(f'output "{lmdb_path}" must end with .lmdb (BasicSR convention).')
    if osp.exists(lmdb_path):
        raise FileExistsError(f'output "{lmdb_path}" already exists; delete it or choose another name.')
    if not 0 <= compress_level <= 9:
        raise ValueError(f'--compress-level must be 0-9, got {compress_level}.')
    paths = select_images(input_folder, list_images(input_folder, recursive), split)
    if not paths:
        subfolders = sorted(d.name for d in Path(input_folder).iterdir() if d.is_dir() and not d.name.startswith('.'))
        hint = f'; it holds the folders {", ".join(subfolders[:5])}: pass one of them' if subfolders else ''
        raise ValueError(f'no images ({", ".join(_image_extensions())}) found in "{input_folder}"{hint}.')
    keys = _keys(paths)
    parent = osp.dirname(osp.abspath(lmdb_path))
    os.makedirs(parent, exist_ok=True)
    partial = tempfile.mkdtemp(prefix=f'.{osp.basename(lmdb_path)}.', suffix='.partial', dir=parent)
    try:
        _write(partial, input_folder, paths, keys, compress_level, int(map_size_gb * 1024**3), workers)
        os.replace(partial, lmdb_path)  # a folder appears under the final name only when complete
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return len(paths)


def _write(folder: str, input_folder: str, paths: List[str], keys: List[str], level: int, map_size: int,
           workers: int) -> None:
    import lmdb

    from restormer_arch.atomic import atomic_write

    env = lmdb.open(folder, map_size=map_size)
    lines = []
    jobs = [(osp.join(input_folder, p), level) for p in paths]
    with contextlib.ExitStack() as stack:
        stack.callback(env.close)
        encoded: Iterable = map(_encode, jobs)
        if workers > 1:
            encoded = stack.enter_context(ProcessPoolExecutor(workers)).map(_encode, jobs, chunksize=16)
        txn = env.begin(write=True)
        for i, (key, (data, (h, w, c))) in enumerate(zip(keys, encoded), 1):
            txn.put(key.encode('utf-8'), data)
            lines.append(f'{key}.png ({h},{w},{c}) {level}\n')
            if i % _COMMIT_EVERY == 0:
                txn.commit()
                txn = env.begin(write=True)
        txn.commit()
        env.sync()
    with atomic_write(osp.join(folder, 'meta_info.txt'), 'w', encoding='utf-8') as f:
        f.writelines(lines)


def main(argv: Optional[List[str]] = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('input_folder', help='folder with the images')
    parser.add_argument('lmdb_path', help='output folder, e.g. datasets/SIDD/train/target_crops.lmdb')
    parser.add_argument('--recursive', action='store_true', help='include sub-folders')
    parser.add_argument('--compress-level', type=int, default=1, help='PNG compression level 0-9 (default 1)')
    parser.add_argument('--map-size-gb', type=float, default=1024.0, help='LMDB map size in GiB (default 1024)')
    parser.add_argument('--workers', type=int, default=1, help='processes encoding images (default 1)')
    parser.add_argument('--split', choices=('train', 'val', 'test'),
                        help='with --recursive: the split to pack when the folder holds several')
    args = parser.parse_args(argv)
    try:
        count = make_lmdb(args.input_folder, args.lmdb_path, args.recursive, args.compress_level, args.map_size_gb,
                          args.workers, args.split)
    except (FileNotFoundError, FileExistsError, ValueError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    print(f'wrote {count} images to {args.lmdb_path} (keys listed in {osp.join(args.lmdb_path, "meta_info.txt")})')
    return 0


if __name__ == '__main__':
    sys.exit(main())

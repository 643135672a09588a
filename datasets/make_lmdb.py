"""Pack an image folder into a BasicSR LMDB (``data.mdb`` + ``meta_info.txt``) for ``io_backend: {type: lmdb}``.

Usage::

    python datasets/make_lmdb.py datasets/Deraining/train/Rain13K/input datasets/Deraining/train/Rain13K/input.lmdb

Keys are the image paths relative to the input folder without extension (``norain-1.png`` -> ``norain-1``), the
convention the Restormer datasets use to pair LMDBs. Images are stored as lossless PNG at their own bit depth (16-bit
PNGs stay 16-bit), so reading from the LMDB gives exactly the pixels of the folder.
"""
import argparse
import os
import sys
from os import path as osp
from typing import List, Optional

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp', '.ppm', '.pgm')


def list_images(folder: str, recursive: bool = False) -> List[str]:
    """Sorted image paths relative to ``folder`` (hidden files skipped)."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith('.')) if recursive else []
        rel = osp.relpath(root, folder)
        found += [osp.normpath(osp.join(rel, f)) for f in files
                  if not f.startswith('.') and f.lower().endswith(IMAGE_EXTENSIONS)]
    return sorted(found)


def make_lmdb(input_folder: str, lmdb_path: str, recursive: bool = False, compress_level: int = 1,
              map_size_gb: float = 1024.0) -> int:
    """Write every image of ``input_folder`` into the new LMDB ``lmdb_path`` with BasicSR's ``make_lmdb_from_imgs``.

    Args:
        input_folder: Folder with the images.
        lmdb_path: Output folder; must end with ``.lmdb`` and must not exist.
        recursive: Include sub-folders (keys then contain ``/``).
        compress_level: PNG compression level (0-9) of the stored images.
        map_size_gb: LMDB map size in GiB. It only reserves address space on Linux/macOS (the file grows as
            needed), but Windows allocates it, so lower it there.

    Returns:
        The number of images written.
    """
    if not osp.isdir(input_folder):
        raise FileNotFoundError(f'input folder "{input_folder}" does not exist; pass the folder that holds the images.')
    if not lmdb_path.endswith('.lmdb'):
        raise ValueError(f'output "{lmdb_path}" must end with .lmdb (BasicSR convention).')
    if osp.exists(lmdb_path):
        raise FileExistsError(f'output "{lmdb_path}" already exists; delete it or choose another name.')
    paths = list_images(input_folder, recursive)
    if not paths:
        raise ValueError(f'no images ({", ".join(IMAGE_EXTENSIONS)}) found in "{input_folder}".')
    keys = [osp.splitext(p)[0].replace(os.sep, '/') for p in paths]
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    if duplicates:
        raise ValueError(f'images differing only in extension would share an LMDB key: {", ".join(duplicates[:5])}.')
    try:
        import restormer_arch  # noqa: F401  (its compat fixes must run before basicsr is imported)
    except ImportError:
        pass
    from basicsr.utils.lmdb_util import make_lmdb_from_imgs  # deferred: importing basicsr is slow

    make_lmdb_from_imgs(input_folder, lmdb_path, paths, keys, compress_level=compress_level,
                        map_size=int(map_size_gb * 1024**3))
    return len(paths)


def main(argv: Optional[List[str]] = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('input_folder', help='folder with the images')
    parser.add_argument('lmdb_path', help='output folder, e.g. datasets/SIDD/train/target_crops.lmdb')
    parser.add_argument('--recursive', action='store_true', help='include sub-folders')
    parser.add_argument('--compress-level', type=int, default=1, help='PNG compression level 0-9 (default 1)')
    parser.add_argument('--map-size-gb', type=float, default=1024.0, help='LMDB map size in GiB (default 1024)')
    args = parser.parse_args(argv)
    try:
        count = make_lmdb(args.input_folder, args.lmdb_path, args.recursive, args.compress_level, args.map_size_gb)
    except (FileNotFoundError, FileExistsError, ValueError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    print(f'wrote {count} images to {args.lmdb_path} (keys listed in {osp.join(args.lmdb_path, "meta_info.txt")})')
    return 0


if __name__ == '__main__':
    sys.exit(main())

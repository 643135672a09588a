"""Cost of the pre-flight image check (``check_images``) per 10k files, on real small JPEG and PNG files.

    python benchmarks/check_images_cost.py [--count 2000] [--size 256]

Writes ``count`` JPEGs and ``count`` PNGs (``size`` x ``size``, smooth pictures) to a temporary folder, then times
building a dataset over each folder with the default header check (``check_images: true``: first 4 KiB, last 64
bytes, end marker) and with ``check_images: decode``, against ``check_images: false`` (listing only). Files are in
the page cache (the second read of a fresh folder); a cold network disk adds its own latency per file.
"""
import argparse
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from restormer_arch.data import Dataset_GaussianDenoising


def _write(folder: Path, ext: str, count: int, size: int) -> None:
    folder.mkdir()
    y, x = np.mgrid[0:size, 0:size]
    for i in range(count):
        img = np.stack([127 + 100 * np.sin(x / (7 + c) + y / (9 + i % 5) + i) for c in range(3)], -1)
        cv2.imwrite(str(folder / f'{i:05d}{ext}'), img.astype(np.uint8))


def _seconds(folder: Path, mode) -> float:
    opt = {'name': 'cost', 'phase': 'val', 'sigma_test': 0, 'dataroot_gt': str(folder), 'dataroot_lq': 'none',
           'io_backend': {'type': 'disk'}, 'check_images': mode}
    Dataset_GaussianDenoising(dict(opt, check_images=False))  # warm the page cache and the listing
    start = time.perf_counter()
    Dataset_GaussianDenoising(opt)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--count', type=int, default=2000)
    parser.add_argument('--size', type=int, default=256)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for ext in ('.jpg', '.png'):
            folder = Path(tmp) / ext[1:]
            _write(folder, ext, args.count, args.size)
            base = _seconds(folder, False)
            for mode in (True, 'decode'):
                spent = _seconds(folder, mode) - base
                print(f'{ext} {args.size}x{args.size}, check_images: {mode!s:6}: {spent / args.count * 1e4:6.2f} s '
                      f'per 10k files ({args.count} files)')


if __name__ == '__main__':
    main()

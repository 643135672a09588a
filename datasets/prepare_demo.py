"""Write the demo's photographs (they ship with scikit-image, no download) to ``datasets/Demo/{train,val}``.

``make demo`` runs this before ``basicsr train -opt options/Demo.yml``; it is idempotent and takes about a second.
Only clean images are written: ``Dataset_GaussianDenoising`` adds the noise (fresh noise for every training patch,
fixed per-image noise for validation).

Usage: ``python datasets/prepare_demo.py [--root datasets/Demo]``
"""
import argparse
import sys
from os import path as osp

# Training photos and held-out validation photos (different scenes, all RGB, all bundled with scikit-image).
TRAIN = ('astronaut', 'rocket', 'immunohistochemistry', 'hubble_deep_field', 'stereo_motorcycle', 'retina')
VAL = ('chelsea', 'coffee')
VAL_SIZE = 256  # central crop: keeps each validation pass to a couple of seconds on a CPU
MAX_SIDE = 640  # larger training photos are downscaled (faster to decode; retina is 1411 px)


def load_photo(name: str):
    """An RGB uint8 photo from ``skimage.data`` (the left view for the stereo pair)."""
    from skimage import data

    img = getattr(data, name)()
    return img[0] if isinstance(img, tuple) else img


def _fit(img, max_side: int):
    import cv2

    scale = max_side / max(img.shape[:2])
    if scale >= 1:
        return img
    return cv2.resize(img, (round(img.shape[1] * scale), round(img.shape[0] * scale)), interpolation=cv2.INTER_AREA)


def _center_crop(img, size: int):
    h, w = img.shape[:2]
    top, left = (h - size) // 2, (w - size) // 2
    return img[top:top + size, left:left + size]


def prepare(root: str) -> None:
    """Write ``<root>/train/*.png`` and ``<root>/val/*.png`` unless they already exist.

    Args:
        root: Destination folder (``datasets/Demo`` for ``options/Demo.yml``).
    """
    from restormer_arch.data.image_io import write_image

    jobs = [('train', name, lambda img: _fit(img, MAX_SIDE)) for name in TRAIN]
    jobs += [('val', name, lambda img: _center_crop(img, VAL_SIZE)) for name in VAL]
    for split, name, transform in jobs:
        path = osp.join(root, split, f'{name}.png')
        if osp.isfile(path):
            continue
        img = transform(load_photo(name))
        write_image(path, img[..., ::-1].copy())  # RGB -> BGR; atomic, folder created
    print(f'demo photos ready: {len(TRAIN)} in {osp.join(root, "train")}, {len(VAL)} in {osp.join(root, "val")}')


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--root', default=osp.join(osp.dirname(osp.abspath(__file__)), 'Demo'))
    args = parser.parse_args(argv)
    try:
        prepare(args.root)
    except ImportError as err:
        print(f'prepare_demo: {err}. Install scikit-image (pip install scikit-image) for the demo photos.',
              file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())

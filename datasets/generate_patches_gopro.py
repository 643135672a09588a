"""Cut GoPro (motion deblurring) into 512x512 training patches with 256 pixels overlap.

Layouts accepted for ``--src`` (searched up to three folder levels down):

* the GoPro release ``GOPRO_Large``: ``{train,test}/<scene>/{blur,blur_gamma,sharp}`` (``blur`` is the input; patch
  names get the scene prefix),
* ``{train,test}/{blur,sharp}``, or
* ``input/`` + ``target/`` with identical file names (the official download script's ``Downloads/GoPro`` and
  ``test/GoPro``).

A folder holding several splits needs ``--split``. Writes ``<dst>/input_crops`` and ``<dst>/target_crops``. For the
validation set (the official one is the centred 256x256 crop of every GoPro *test* pair) pass ``--split test
--center-crop 256``.

    python datasets/generate_patches_gopro.py --src Downloads/GOPRO_Large --split train --dst Datasets/train/GoPro
    python datasets/generate_patches_gopro.py --src Downloads/GOPRO_Large --split test --dst Datasets/val/GoPro \\
        --center-crop 256
"""
import sys
from pathlib import Path

from _patches import (
    PatchConfig,
    PatchError,
    base_parser,
    find_layouts,
    jobs_of_sets,
    pick_split,
    run,
    script_main,
    step_from_overlap,
)

PAIRS = (('input', 'target'), ('blur', 'sharp'))  # (input folder, target folder) names


def _match(folder: Path):
    return [(Path('.'), None, {'input': folder / lq, 'target': folder / gt}) for lq, gt in PAIRS
            if (folder / lq).is_dir() and (folder / gt).is_dir()]


def gopro_jobs(src: Path, split=None):
    """The scenes of the asked split of a GoPro folder in any of the layouts above."""
    sets = pick_split(src, find_layouts(src, _match), split)
    if not sets:
        raise PatchError(f'{src}: no GoPro layout found: expected input/ + target/ folders, or scenes '
                         '<scene>/blur + <scene>/sharp (GOPRO_Large/{train,test}/<scene>).')
    return jobs_of_sets(src, sets)


def main(argv=None) -> None:
    parser = base_parser(__doc__, patch=512, overlap=256)
    parser.add_argument('--center-crop', type=int, help='write only the centred crop of this size (validation)')
    args = parser.parse_args(argv)
    cfg = PatchConfig(out_dirs={'input': args.dst / 'input_crops', 'target': args.dst / 'target_crops'},
                      patch=args.patch_size, step=step_from_overlap(args.patch_size, args.overlap),
                      center_crop=args.center_crop)
    run(gopro_jobs(args.src, args.split), cfg, args.workers, desc='GoPro')


if __name__ == '__main__':
    sys.exit(script_main(main))

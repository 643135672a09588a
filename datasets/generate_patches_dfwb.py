"""Cut DFWB (DIV2K + Flickr2K + WaterlooED + BSD400, Gaussian denoising) into 512x512 patches with 96 pixels overlap.

Only images whose sides are both larger than 800 pixels are tiled; smaller ones (e.g. BSD400, most of WaterlooED)
are copied whole. ``--src`` takes one or more folders, searched recursively: the official download script's
``Downloads/{DIV2K,Flickr2K,WaterlooED,BSD400}`` or the releases' folders. Patch names get the folder name as a
prefix so the datasets cannot collide. Writes clean images only (noise is added on the fly in training) to ``<dst>``.

A folder holding several splits (the DIV2K release: ``DIV2K_train_HR``, ``DIV2K_valid_HR``) needs ``--split``, and
a folder holding low-resolution copies (``*_LR_bicubic/X2`` ...) is refused: pass its ``*_HR`` folder.

    python datasets/generate_patches_dfwb.py --src Downloads/DIV2K/DIV2K_train_HR Downloads/Flickr2K/Flickr2K_HR \\
        Downloads/WaterlooED Downloads/BSD400 --dst Datasets/train/DFWB
"""
import sys
from pathlib import Path

from _patches import (
    Job,
    PatchConfig,
    PatchError,
    base_parser,
    list_images,
    name_words,
    pick_split,
    run,
    script_main,
    step_from_overlap,
)


def dfwb_jobs(folder: Path, split=None):
    """One job per image of the asked split of ``folder`` (recursive); low-resolution copies are refused."""
    found = [(path.relative_to(folder).parent, None, path) for path in list_images(folder, recursive=True)]
    paths = [path for _, _, path in pick_split(folder, found, split)]
    low_res = sorted({part for p in paths for part in p.relative_to(folder).parent.parts if 'lr' in name_words(part)})
    if low_res:
        raise PatchError(f'{folder} holds low-resolution copies ({", ".join(low_res[:3])}); pass the folder of the '
                         'full-resolution images (e.g. DIV2K_train_HR, Flickr2K_HR) as --src.')
    return [Job(f'{folder.name}_{p.relative_to(folder).with_suffix("").as_posix().replace("/", "_")}', {'target': p})
            for p in paths]


def main(argv=None) -> None:
    parser = base_parser(__doc__, patch=512, overlap=96, many_sources=True)
    parser.add_argument('--min-side', type=int, default=800,
                        help='tile only images with both sides larger than this (default 800)')
    args = parser.parse_args(argv)
    jobs = [job for folder in args.src for job in dfwb_jobs(folder, args.split)]
    cfg = PatchConfig(out_dirs={'target': args.dst}, patch=args.patch_size,
                      step=step_from_overlap(args.patch_size, args.overlap), tile_only_if_larger=args.min_side)
    run(jobs, cfg, args.workers, desc='DFWB')


if __name__ == '__main__':
    sys.exit(script_main(main))

"""Cut DFWB (DIV2K + Flickr2K + WaterlooED + BSD400, Gaussian denoising) into 512x512 patches with 96 pixels overlap.

Only images whose sides are both larger than 800 pixels are tiled; smaller ones (e.g. BSD400, most of WaterlooED)
are copied whole. ``--src`` takes one or more folders (searched recursively); patch names get the folder name as a
prefix so the datasets cannot collide. Writes clean images only (noise is added on the fly in training) to ``<dst>``.

    python datasets/generate_patches_dfwb.py --src Downloads/DIV2K Downloads/Flickr2K Downloads/WaterlooED \\
        Downloads/BSD400 --dst Datasets/train/DFWB
"""
import sys

from _patches import Job, PatchConfig, base_parser, list_images, run, script_main, step_from_overlap


def main(argv=None) -> None:
    parser = base_parser(__doc__, patch=512, overlap=96, many_sources=True)
    parser.add_argument('--min-side', type=int, default=800,
                        help='tile only images with both sides larger than this (default 800)')
    args = parser.parse_args(argv)
    jobs = [Job(f'{folder.name}_{path.relative_to(folder).with_suffix("").as_posix().replace("/", "_")}',
                {'target': path}) for folder in args.src for path in list_images(folder, recursive=True)]
    cfg = PatchConfig(out_dirs={'target': args.dst}, patch=args.patch_size,
                      step=step_from_overlap(args.patch_size, args.overlap), tile_only_if_larger=args.min_side)
    run(jobs, cfg, args.workers, desc='DFWB')


if __name__ == '__main__':
    sys.exit(script_main(main))

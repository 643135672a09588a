"""Cut GoPro (motion deblurring) into 512x512 training patches with 256 pixels overlap.

Layouts accepted for ``--src``:

* ``input/`` + ``target/`` with identical file names (the official Restormer layout), or
* the original GoPro release: ``<scene>/blur/*.png`` + ``<scene>/sharp/*.png`` (patch names get the scene prefix).

Writes ``<dst>/input_crops`` and ``<dst>/target_crops``. For the validation set (the official one is the centred
256x256 crop of every GoPro test pair) pass ``--center-crop 256``.

    python datasets/generate_patches_gopro.py --src Datasets/Downloads/GoPro/train --dst Datasets/train/GoPro
    python datasets/generate_patches_gopro.py --src Datasets/Downloads/GoPro/test --dst Datasets/val/GoPro \\
        --center-crop 256
"""
import sys
from pathlib import Path

from _patches import PatchConfig, PatchError, base_parser, paired_jobs, run, script_main, step_from_overlap


def gopro_jobs(src: Path):
    """Scenes of a GoPro folder in either layout."""
    if (src / 'input').is_dir() and (src / 'target').is_dir():
        return paired_jobs({'input': src / 'input', 'target': src / 'target'})
    scenes = sorted(p for p in src.iterdir() if (p / 'blur').is_dir() and (p / 'sharp').is_dir()) \
        if src.is_dir() else []
    if not scenes:
        raise PatchError(f'{src}: expected input/ + target/ folders or GoPro scenes <scene>/blur + <scene>/sharp.')
    return [job for scene in scenes
            for job in paired_jobs({'input': scene / 'blur', 'target': scene / 'sharp'}, f'{scene.name}_')]


def main(argv=None) -> None:
    parser = base_parser(__doc__, patch=512, overlap=256)
    parser.add_argument('--center-crop', type=int, help='write only the centred crop of this size (validation)')
    args = parser.parse_args(argv)
    cfg = PatchConfig(out_dirs={'input': args.dst / 'input_crops', 'target': args.dst / 'target_crops'},
                      patch=args.patch_size, step=step_from_overlap(args.patch_size, args.overlap),
                      center_crop=args.center_crop)
    run(gopro_jobs(args.src), cfg, args.workers, desc='GoPro')


if __name__ == '__main__':
    sys.exit(script_main(main))

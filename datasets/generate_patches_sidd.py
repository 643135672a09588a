"""Cut SIDD-Medium sRGB (real denoising) into 512x512 training patches with 128 pixels overlap.

Layouts accepted for ``--src``:

* ``SIDD_Medium_Srgb/Data``: one folder per scene holding ``*_GT_SRGB_*.PNG`` and the matching ``*_NOISY_SRGB_*.PNG``
  (pairs by name), or
* ``input/`` + ``target/`` with identical file names.

Writes ``<dst>/input_crops`` (noisy) and ``<dst>/target_crops`` (clean).

    python datasets/generate_patches_sidd.py --src Datasets/Downloads/SIDD_Medium_Srgb/Data --dst Datasets/train/SIDD
"""
import sys
from pathlib import Path

from _patches import Job, PatchConfig, PatchError, base_parser, paired_jobs, run, script_main, step_from_overlap


def sidd_jobs(src: Path):
    """Noisy/clean pairs of a SIDD folder in either layout."""
    if (src / 'input').is_dir() and (src / 'target').is_dir():
        return paired_jobs({'input': src / 'input', 'target': src / 'target'})
    if not src.is_dir():
        raise PatchError(f'{src}: folder not found.')
    jobs = []
    for noisy in sorted(src.glob('*/*NOISY_SRGB*')):
        clean = noisy.with_name(noisy.name.replace('NOISY', 'GT'))
        if not clean.is_file():
            raise PatchError(f'{noisy}: its clean image {clean.name} is missing.')
        jobs.append(Job(f'{noisy.parent.name}_{noisy.stem.split("_")[-1]}', {'input': noisy, 'target': clean}))
    if not jobs:
        raise PatchError(f'{src}: no <scene>/*NOISY_SRGB*.PNG files and no input/ + target/ folders.')
    return jobs


def main(argv=None) -> None:
    args = base_parser(__doc__, patch=512, overlap=128).parse_args(argv)
    cfg = PatchConfig(out_dirs={'input': args.dst / 'input_crops', 'target': args.dst / 'target_crops'},
                      patch=args.patch_size, step=step_from_overlap(args.patch_size, args.overlap))
    run(sidd_jobs(args.src), cfg, args.workers, desc='SIDD')


if __name__ == '__main__':
    sys.exit(script_main(main))

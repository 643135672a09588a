"""Cut SIDD-Medium sRGB (real denoising) into 512x512 training patches with 128 pixels overlap; write the validation
blocks as images.

Layouts accepted for ``--src`` (searched up to three folder levels down):

* the SIDD-Medium release ``SIDD_Medium_Srgb/Data``: one folder per scene holding ``*_GT_SRGB_*.PNG`` and the
  matching ``*_NOISY_SRGB_*.PNG`` (the official download script's ``Downloads/SIDD`` holds the scenes directly):
  the *train* split, cut into patches;
* the SIDD validation blocks ``ValidationNoisyBlocksSrgb.mat`` + ``ValidationGtBlocksSrgb.mat`` (40 x 32 blocks of
  256x256): the *val* split, written whole as ``<image>_<block>.png`` (``0000_00.png`` ...), the validation set of
  ``options/RealDenoising.yml``;
* ``input/`` + ``target/`` with identical file names.

A folder holding several splits (the scenes and the validation files side by side) needs ``--split``. Writes
``<dst>/input_crops`` (noisy) and ``<dst>/target_crops`` (clean).

    python datasets/generate_patches_sidd.py --src Downloads/SIDD_Medium_Srgb --split train --dst Datasets/train/SIDD
    python datasets/generate_patches_sidd.py --src Downloads/SIDD --split val --dst Datasets/val/SIDD
"""
import sys
from pathlib import Path

import numpy as np
from _patches import (
    Job,
    PatchConfig,
    PatchError,
    base_parser,
    find_layouts,
    jobs_of_sets,
    pick_split,
    run,
    script_main,
    step_from_overlap,
    write_patch,
)

NOISY, CLEAN = 'NoisyBlocksSrgb.mat', 'GtBlocksSrgb.mat'


def _match(folder: Path):
    found = []
    if (folder / 'input').is_dir() and (folder / 'target').is_dir():
        found.append((Path('.'), None, ('pairs', {'input': folder / 'input', 'target': folder / 'target'})))
    if any(folder.glob('*NOISY_SRGB*')):
        found.append((Path('.'), 'train', ('scene', folder)))  # SIDD-Medium is the training set
    for noisy in sorted(folder.glob(f'*{NOISY}')):
        clean = noisy.with_name(noisy.name.replace(NOISY, CLEAN))
        if clean.is_file():  # BenchmarkNoisyBlocksSrgb.mat has no clean blocks: nothing to pair
            found.append((Path(noisy.name), None, ('blocks', (noisy, clean))))
    return found


def _scene_jobs(scene: Path):
    jobs = []
    for noisy in sorted(scene.glob('*NOISY_SRGB*')):
        clean = noisy.with_name(noisy.name.replace('NOISY', 'GT'))
        if not clean.is_file():
            raise PatchError(f'{noisy}: its clean image {clean.name} is missing.')
        jobs.append(Job(f'{scene.name}_{noisy.stem.split("_")[-1]}', {'input': noisy, 'target': clean}))
    return jobs


def write_blocks(noisy: Path, clean: Path, out_dirs) -> int:
    """Write the blocks of a SIDD block-file pair as ``<image>_<block>.png`` (existing files are kept)."""
    from restormer_arch.data.sidd_blocks_dataset import load_sidd_blocks

    try:
        blocks = {'input': load_sidd_blocks(noisy), 'target': load_sidd_blocks(clean)}
    except (OSError, ValueError, KeyError) as err:
        raise PatchError(str(err).strip('"')) from err
    if blocks['input'].shape != blocks['target'].shape:
        raise PatchError(f'{noisy} holds blocks {blocks["input"].shape}, {clean} {blocks["target"].shape}; '
                         'they must match.')
    written = 0
    for role, array in blocks.items():
        out_dirs[role].mkdir(parents=True, exist_ok=True)
        for i in range(array.shape[0]):
            for j in range(array.shape[1]):
                target = out_dirs[role] / f'{i:04d}_{j:02d}.png'
                if not target.exists():
                    write_patch(np.ascontiguousarray(array[i, j, ..., ::-1]), target)  # RGB -> BGR
                    written += 1
    return written


def main(argv=None) -> None:
    args = base_parser(__doc__, patch=512, overlap=128).parse_args(argv)
    out_dirs = {'input': args.dst / 'input_crops', 'target': args.dst / 'target_crops'}
    cfg = PatchConfig(out_dirs=out_dirs, patch=args.patch_size, step=step_from_overlap(args.patch_size, args.overlap))
    found = pick_split(args.src, find_layouts(args.src, _match), args.split)
    if not found:
        raise PatchError(f'{args.src}: no SIDD layout found: expected scene folders <scene>/*_NOISY_SRGB_*.PNG + '
                         '*_GT_SRGB_*.PNG (SIDD_Medium_Srgb/Data), ValidationNoisyBlocksSrgb.mat + '
                         'ValidationGtBlocksSrgb.mat, or input/ + target/ folders.')
    jobs = jobs_of_sets(args.src, [(w, h, roles) for w, h, (kind, roles) in found if kind == 'pairs'])
    jobs += [job for _, _, (kind, scene) in found if kind == 'scene' for job in _scene_jobs(scene)]
    for _, _, (kind, pair) in found:
        if kind == 'blocks':
            print(f'SIDD blocks: {write_blocks(*pair, out_dirs)} block files written from {pair[0].name}, '
                  f'{pair[1].name} into {", ".join(map(str, out_dirs.values()))}')
    if jobs:
        run(jobs, cfg, args.workers, desc='SIDD')


if __name__ == '__main__':
    sys.exit(script_main(main))

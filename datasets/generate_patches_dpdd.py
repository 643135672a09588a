"""Cut DPDD (defocus deblurring) into 512x512 patches, stride 204, keeping the sharpest 70% (16-bit preserved).

Layouts accepted for ``--src`` (searched up to three folder levels down):

* the DPDD release ``dd_dp_dataset_png``: ``{train,val,test}_c/{source,target}``, ``{train,val,test}_{l,r}/source``,
* the official download script's ``Downloads/DPDD``: ``{train,val}/{inputC,inputL,inputR,target}``, or
* ``inputC/``, ``inputL/``, ``inputR/``, ``target/`` with identical file names.

A folder holding several splits needs ``--split``: ``train`` for the training patches, ``val`` for the validation
set (the official one is the centred 256x256 crop of every *val* image: add ``--center-crop 256``, which writes no
sharpness selection). Writes ``<dst>/{inputC,inputL,inputR,target}_crops`` as PNGs of the source bit depth (DPDD is
16-bit). In every scene the patches are scored by the Sobel energy (mean squared gradient) of the *target* patch and
the least sharp 30% are dropped (``--keep 0.7``): flat, texture-less patches teach the network little.

    python datasets/generate_patches_dpdd.py --src Downloads/dd_dp_dataset_png --split train --dst Datasets/train/DPDD
    python datasets/generate_patches_dpdd.py --src Downloads/dd_dp_dataset_png --split val --dst Datasets/val/DPDD \\
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
    positive_fraction,
    run,
    script_main,
)

ROLES = ('inputC', 'inputL', 'inputR', 'target')


def _match(folder: Path):
    found = []
    if all((folder / role).is_dir() for role in ROLES):
        found.append((Path('.'), None, {role: folder / role for role in ROLES}))
    for centre in sorted(folder.glob('*_c')):  # the release: <split>_c/{source,target}, <split>_{l,r}/source
        prefix = centre.name[:-2]
        roles = {'inputC': centre / 'source', 'inputL': folder / f'{prefix}_l' / 'source',
                 'inputR': folder / f'{prefix}_r' / 'source', 'target': centre / 'target'}
        if all(d.is_dir() for d in roles.values()):
            found.append((Path(centre.name), None, roles))
    return found


def dpdd_jobs(src: Path, split=None):
    """The scenes of the asked split of a DPDD folder in any of the layouts above."""
    sets = pick_split(src, find_layouts(src, _match), split)
    if not sets:
        raise PatchError(f'{src}: no DPDD layout found: expected the release folders {{train,val,test}}_c/'
                         '{source,target} + _l/source + _r/source, or inputC/ inputL/ inputR/ target/.')
    return jobs_of_sets(src, sets)


def main(argv=None) -> None:
    parser = base_parser(__doc__, patch=512, overlap=None)
    parser.add_argument('--stride', type=int, default=204, help='distance between patch origins (default 204)')
    parser.add_argument('--keep', type=positive_fraction, default=0.7,
                        help='fraction of the sharpest patches kept per scene (default 0.7)')
    parser.add_argument('--center-crop', type=int, help='write only the centred crop of this size (validation)')
    args = parser.parse_args(argv)
    if args.stride <= 0:
        raise PatchError(f'--stride must be positive, got {args.stride}.')
    cfg = PatchConfig(out_dirs={role: args.dst / f'{role}_crops' for role in ROLES}, patch=args.patch_size,
                      step=args.stride, center_crop=args.center_crop,
                      keep_sharpest=None if args.center_crop else args.keep, sharp_role='target')
    run(dpdd_jobs(args.src, args.split), cfg, args.workers, desc='DPDD')


if __name__ == '__main__':
    sys.exit(script_main(main))

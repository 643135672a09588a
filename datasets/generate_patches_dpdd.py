"""Cut DPDD (defocus deblurring) into 512x512 patches, stride 204, keeping the sharpest 70% (16-bit preserved).

Layouts accepted for ``--src``:

* the DPDD release (``dd_dp_dataset_png/train``): ``train_c/source``, ``train_c/target``, ``train_l/source``,
  ``train_r/source`` (``val_*``/``test_*`` prefixes work the same), or
* ``inputC/``, ``inputL/``, ``inputR/``, ``target/`` with identical file names.

Writes ``<dst>/{inputC,inputL,inputR,target}_crops`` as PNGs of the source bit depth (DPDD is 16-bit). In every scene
the patches are scored by the Sobel energy (mean squared gradient) of the *target* patch and the least sharp 30% are
dropped (``--keep 0.7``): flat, texture-less patches teach the network little. For the validation set (the official
one is the centred 256x256 crop) pass ``--center-crop 256`` (no selection is applied then).

    python datasets/generate_patches_dpdd.py --src Downloads/dd_dp_dataset_png/train --dst Datasets/train/DPDD
"""
import sys
from pathlib import Path

from _patches import PatchConfig, PatchError, base_parser, paired_jobs, positive_fraction, run, script_main

ROLES = ('inputC', 'inputL', 'inputR', 'target')


def dpdd_folders(src: Path):
    """Role -> folder for either DPDD layout."""
    if all((src / role).is_dir() for role in ROLES):
        return {role: src / role for role in ROLES}
    for prefix in ('train', 'val', 'test'):
        folders = {'inputC': src / f'{prefix}_c' / 'source', 'inputL': src / f'{prefix}_l' / 'source',
                   'inputR': src / f'{prefix}_r' / 'source', 'target': src / f'{prefix}_c' / 'target'}
        if all(folder.is_dir() for folder in folders.values()):
            return folders
    raise PatchError(f'{src}: expected inputC/ inputL/ inputR/ target/ or the DPDD release folders '
                     'train_c/{source,target}, train_l/source, train_r/source.')


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
    run(paired_jobs(dpdd_folders(args.src)), cfg, args.workers, desc='DPDD')


if __name__ == '__main__':
    sys.exit(script_main(main))

"""Write the indoor / outdoor scene lists of the DPDD test set, for the defocus test option files.

The paper reports DPDD scores for the 37 indoor scenes, the 39 outdoor scenes and all 76 together. The official
evaluation selects them by position in the naturally sorted list of test images (its ``indoor_labels.npy`` /
``outdoor_labels.npy`` hold 1-based positions). This script writes ``meta_info_indoor.txt`` and
``meta_info_outdoor.txt`` (one target file name per line) beside the ``target/`` folder, which
``options/test/DefocusDeblurring_*.yml`` read as ``meta_info_file`` of two datasets::

    python datasets/dpdd_scene_lists.py datasets/Defocus_Deblurring/test/DPDD
    python datasets/dpdd_scene_lists.py datasets/Defocus_Deblurring/test/DPDD --labels DIR   # DIR/*_labels.npy

Without ``--labels`` the positions below are used (0-based; the same split as the official label files).
"""
import argparse
import os
import re
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.tif', '.tiff')
DPDD_TEST_IMAGES = 76
INDOOR = [8, 9, 10, 11, 12, 13, 16, 32, *range(39, 57), *range(59, 68), 74, 75]
OUTDOOR = [*range(0, 8), 14, 15, *range(17, 32), *range(33, 39), 57, 58, *range(68, 74)]


def natural_key(name: str) -> List[object]:
    """Sort key that orders embedded numbers by value (``img2`` before ``img10``), like ``natsort``."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r'(\d+)', name)]


def load_official_labels(folder: Path) -> Dict[str, List[int]]:
    """0-based positions from the official ``indoor_labels.npy`` / ``outdoor_labels.npy`` (1-based) in ``folder``."""
    import numpy as np

    labels = {}
    for scene in ('indoor', 'outdoor'):
        path = folder / f'{scene}_labels.npy'
        if not path.is_file():
            raise FileNotFoundError(f'{path} not found; pass the folder that holds indoor_labels.npy and '
                                    'outdoor_labels.npy, or leave --labels out to use the built-in split.')
        labels[scene] = [int(v) - 1 for v in np.load(path).reshape(-1)]
    return labels


def scene_lists(names: Sequence[str], labels: Optional[Dict[str, List[int]]] = None) -> Dict[str, List[str]]:
    """Split the DPDD test image names into ``{'indoor': [...], 'outdoor': [...]}``.

    Args:
        names: Target file names (any order; they are naturally sorted here).
        labels: 0-based positions per scene; default: the built-in split of the 76 test images.

    Returns:
        The file names of each scene, in sorted order.
    """
    ordered = sorted(names, key=natural_key)
    labels = labels or {'indoor': INDOOR, 'outdoor': OUTDOOR}
    positions = [p for v in labels.values() for p in v]
    if sorted(positions) != list(range(len(ordered))):
        raise ValueError(f'The scene labels cover positions {min(positions)}..{max(positions)} ({len(positions)} in '
                         f'all) but the target folder holds {len(ordered)} images; the DPDD test set has '
                         f'{DPDD_TEST_IMAGES} (37 indoor, 39 outdoor). Point the script at the DPDD test folder.')
    return {scene: [ordered[p] for p in sorted(pos)] for scene, pos in labels.items()}


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('dpdd', type=Path, help='DPDD test folder (with target/, inputC/, inputL/, inputR/)')
    parser.add_argument('--labels', type=Path, help='folder with the official indoor_labels.npy / outdoor_labels.npy')
    args = parser.parse_args(argv)
    target = args.dpdd / 'target'
    if (args.dpdd / 'test_c' / 'target').is_dir():  # the DPDD release: its test split has another layout
        print(f'{args.dpdd} is the DPDD release; the test option files read test/DPDD/{{inputC,inputL,inputR,target}}: '
              'copy test_c/source to inputC, test_l/source to inputL, test_r/source to inputR, test_c/target to '
              'target, and pass that folder.', file=sys.stderr)
        return 2
    if not target.is_dir():
        print(f'{target}: not a folder; pass the DPDD test folder (it holds target/).', file=sys.stderr)
        return 2
    names = [p.name for p in target.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS]
    try:
        lists = scene_lists(names, load_official_labels(args.labels) if args.labels else None)
    except (ValueError, FileNotFoundError) as err:
        print(f'dpdd_scene_lists: {err}', file=sys.stderr)
        return 2
    for scene, files in lists.items():
        out = args.dpdd / f'meta_info_{scene}.txt'
        partial = out.with_name(f'.{out.name}.partial')  # complete or absent, never torn
        partial.write_text(''.join(f'{name}\n' for name in files), encoding='utf-8')
        os.replace(partial, out)
        print(f'{out}: {len(files)} {scene} images')
    return 0


if __name__ == '__main__':
    sys.exit(main())

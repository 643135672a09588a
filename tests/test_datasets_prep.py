"""The datasets/generate_patches_*.py scripts, run as commands on tiny synthetic datasets."""
import subprocess
import sys

import cv2
import numpy as np
import pytest

from tests.conftest import REPO_ROOT

SCRIPTS = REPO_ROOT / 'datasets'


def _run(script, *args, ok=True):
    result = subprocess.run([sys.executable, str(SCRIPTS / f'generate_patches_{script}.py'), *map(str, args)],
                            capture_output=True, text=True, timeout=120)
    if ok:
        assert result.returncode == 0, result.stderr
    return result


def _img(shape, seed, dtype=np.uint8):
    return np.random.default_rng(seed).integers(0, np.iinfo(dtype).max, shape, dtype=dtype)


def _names(folder):
    return sorted(p.name for p in folder.iterdir() if p.is_file())


def test_gopro_scene_layout_grid_and_content(tmp_path):
    src = tmp_path / 'GoPro'
    for scene in ('GOPR0001', 'GOPR0002'):
        for sub, seed in (('blur', 1), ('sharp', 2)):
            (src / scene / sub).mkdir(parents=True)
            cv2.imwrite(str(src / scene / sub / '000001.png'), _img((40, 56, 3), seed))
    _run('gopro', '--src', src, '--dst', tmp_path / 'out', '--patch-size', 16, '--overlap', 8, '--workers', 2)
    names = _names(tmp_path / 'out' / 'input_crops')
    assert names == _names(tmp_path / 'out' / 'target_crops')
    assert len(names) == 2 * 4 * 6  # rows 0,8,16,24 and columns 0,8,...,40
    # Patch 7 = row 1, column 1 of the row-major grid: origin (8, 8).
    patch = cv2.imread(str(tmp_path / 'out' / 'input_crops' / 'GOPR0002_000001_007.png'))
    np.testing.assert_array_equal(patch, _img((40, 56, 3), 1)[8:24, 8:24])


def test_gopro_rerun_is_resumable(tmp_path):
    for sub, seed in (('input', 1), ('target', 2)):
        (tmp_path / 'src' / sub).mkdir(parents=True)
        for name in ('a.png', 'b.png'):
            cv2.imwrite(str(tmp_path / 'src' / sub / name), _img((30, 30, 3), seed))
    args = ('--src', tmp_path / 'src', '--dst', tmp_path / 'out', '--patch-size', 16, '--overlap', 4, '--workers', 1)
    first = _run('gopro', *args)
    assert '36 patch files written' in first.stdout  # 2 images x 3x3 patches x 2 roles (last patch snapped at 14)
    assert '0 patch files written' in _run('gopro', *args).stdout  # done markers: nothing re-read
    # An interrupted scene (no marker, one patch missing) is completed without rewriting the others.
    (tmp_path / 'out' / 'input_crops' / '.done' / 'a').unlink()
    (tmp_path / 'out' / 'target_crops' / 'a_004.png').unlink()
    kept = tmp_path / 'out' / 'input_crops' / 'a_004.png'
    before = kept.stat().st_mtime_ns
    third = _run('gopro', *args)
    assert '1 patch files written, 17 already present' in third.stdout
    assert kept.stat().st_mtime_ns == before


def test_gopro_center_crop_for_validation(tmp_path):
    for sub in ('input', 'target'):
        (tmp_path / 'src' / sub).mkdir(parents=True)
        cv2.imwrite(str(tmp_path / 'src' / sub / 'x.png'), _img((30, 40, 3), 3))
    _run('gopro', '--src', tmp_path / 'src', '--dst', tmp_path / 'val', '--center-crop', 16, '--workers', 1)
    crop = cv2.imread(str(tmp_path / 'val' / 'target_crops' / 'x_000.png'))
    np.testing.assert_array_equal(crop, _img((30, 40, 3), 3)[7:23, 12:28])


def test_sidd_layout(tmp_path):
    scene = tmp_path / 'Data' / '0001_001_S6_00100_00060_3200_L'
    scene.mkdir(parents=True)
    cv2.imwrite(str(scene / '0001_GT_SRGB_010.PNG'), _img((24, 24, 3), 1))
    cv2.imwrite(str(scene / '0001_NOISY_SRGB_010.PNG'), _img((24, 24, 3), 2))
    _run('sidd', '--src', tmp_path / 'Data', '--dst', tmp_path / 'out', '--patch-size', 16, '--overlap', 8,
         '--workers', 1)
    assert _names(tmp_path / 'out' / 'input_crops') == [f'{scene.name}_010_{i:03d}.png' for i in range(4)]
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / 'out' / 'target_crops' / f'{scene.name}_010_003.png')),
                                  _img((24, 24, 3), 1)[8:, 8:])


def test_dfwb_tiles_only_large_images(tmp_path):
    (tmp_path / 'DIV2K').mkdir()
    (tmp_path / 'BSD400').mkdir()
    cv2.imwrite(str(tmp_path / 'DIV2K' / 'big.png'), _img((40, 40, 3), 1))
    cv2.imwrite(str(tmp_path / 'BSD400' / 'small.png'), _img((40, 20, 3), 2))  # one side <= --min-side
    _run('dfwb', '--src', tmp_path / 'DIV2K', tmp_path / 'BSD400', '--dst', tmp_path / 'out', '--patch-size', 16,
         '--overlap', 4, '--min-side', 30, '--workers', 1)
    names = _names(tmp_path / 'out')
    assert names == ['BSD400_small_000.png'] + [f'DIV2K_big_{i:03d}.png' for i in range(9)]
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / 'out' / 'BSD400_small_000.png')), _img((40, 20, 3), 2))


def _dpdd_tree(root):
    for folder in ('train_c/source', 'train_c/target', 'train_l/source', 'train_r/source'):
        (root / folder).mkdir(parents=True)
    target = np.full((32, 64, 3), 30000, np.uint16)
    target[:, :32] = _img((32, 32, 3), 5, np.uint16)  # left half textured, right half flat
    cv2.imwrite(str(root / 'train_c/target/s.png'), target)
    for i, folder in enumerate(('train_c/source', 'train_l/source', 'train_r/source')):
        cv2.imwrite(str(root / folder / 's.png'), _img((32, 64, 3), 10 + i, np.uint16))
    return target


def test_dpdd_keeps_16_bit_and_the_sharpest_patches(tmp_path):
    target = _dpdd_tree(tmp_path / 'dpdd')
    _run('dpdd', '--src', tmp_path / 'dpdd', '--dst', tmp_path / 'out', '--patch-size', 16, '--stride', 16,
         '--keep', 0.5, '--workers', 1)
    # 2 x 4 grid; the sharpest half are the 4 patches of the textured left half: columns 0 and 1 of both rows.
    expected = [f's_{i:03d}.png' for i in (0, 1, 4, 5)]
    for role in ('inputC', 'inputL', 'inputR', 'target'):
        assert _names(tmp_path / 'out' / f'{role}_crops') == expected
    patch = cv2.imread(str(tmp_path / 'out' / 'target_crops' / 's_005.png'), cv2.IMREAD_UNCHANGED)
    assert patch.dtype == np.uint16
    np.testing.assert_array_equal(patch, target[16:32, 16:32])
    left = cv2.imread(str(tmp_path / 'out' / 'inputL_crops' / 's_001.png'), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(left, _img((32, 64, 3), 11, np.uint16)[0:16, 16:32])


def test_dpdd_default_keeps_70_percent(tmp_path):
    _dpdd_tree(tmp_path / 'dpdd')
    _run('dpdd', '--src', tmp_path / 'dpdd', '--dst', tmp_path / 'out', '--patch-size', 8, '--stride', 8,
         '--workers', 1)
    assert len(_names(tmp_path / 'out' / 'target_crops')) == round(0.7 * 4 * 8)


@pytest.mark.parametrize('script', ['gopro', 'sidd', 'dpdd'])
def test_missing_inputs_give_clear_errors(tmp_path, script):
    result = _run(script, '--src', tmp_path / 'nothing', '--dst', tmp_path / 'out', ok=False)
    assert result.returncode == 2
    assert str(tmp_path / 'nothing') in result.stderr and 'Traceback' not in result.stderr


def test_unpaired_names_and_sizes_are_reported(tmp_path):
    for sub in ('input', 'target'):
        (tmp_path / 'src' / sub).mkdir(parents=True)
    cv2.imwrite(str(tmp_path / 'src' / 'input' / 'a.png'), _img((20, 20, 3), 1))
    cv2.imwrite(str(tmp_path / 'src' / 'target' / 'b.png'), _img((20, 20, 3), 1))
    result = _run('gopro', '--src', tmp_path / 'src', '--dst', tmp_path / 'out', ok=False)
    assert 'identical file names' in result.stderr
    (tmp_path / 'src' / 'target' / 'b.png').rename(tmp_path / 'src' / 'target' / 'a.png')
    cv2.imwrite(str(tmp_path / 'src' / 'target' / 'a.png'), _img((20, 24, 3), 1))
    result = _run('gopro', '--src', tmp_path / 'src', '--dst', tmp_path / 'out', '--workers', 1, ok=False)
    assert 'differ in size' in result.stderr


def test_patch_scripts_list_the_project_image_extensions():
    sys.path.insert(0, str(SCRIPTS))
    try:
        import _patches
    finally:
        sys.path.remove(str(SCRIPTS))
    from restormer_arch.data.image_io import IMAGE_EXTENSIONS

    assert _patches.IMAGE_EXTENSIONS == IMAGE_EXTENSIONS


def test_patches_are_cut_from_upright_phone_photos(tmp_path):
    from PIL import Image

    from restormer_arch.data.image_io import read_image

    for sub, seed in (('input', 1), ('target', 2)):
        (tmp_path / 'src' / sub).mkdir(parents=True)
        exif = Image.Exif()
        exif[0x0112] = 6  # stored 30 high x 40 wide; shown (and read by the datasets) 40 high x 30 wide
        Image.fromarray(_img((30, 40, 3), seed)).save(tmp_path / 'src' / sub / 'x.jpg', exif=exif.tobytes())
    _run('gopro', '--src', tmp_path / 'src', '--dst', tmp_path / 'val', '--center-crop', 16, '--workers', 1)
    upright = read_image(tmp_path / 'src' / 'target' / 'x.jpg').pixels
    assert upright.shape == (40, 30, 3)
    crop = cv2.imread(str(tmp_path / 'val' / 'target_crops' / 'x_000.png'))
    np.testing.assert_array_equal(crop, upright[12:28, 7:23])

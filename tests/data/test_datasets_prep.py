"""The datasets/ preparation scripts, run as commands on miniatures of the benchmarks' release layouts."""
import contextlib
import importlib
import io
import subprocess
import sys
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from tests.conftest import REPO_ROOT

SCRIPTS = REPO_ROOT / 'datasets'


def _run(script, *args, ok=True):
    """Run a datasets/ script: as a command (its exit code and stderr) when a refusal is expected, else in this
    process (torch is loaded once; a command would spend seconds importing it for every call)."""
    name = script if script.endswith('.py') else f'generate_patches_{script}.py'
    argv = [str(a) for a in args]
    if not ok:
        return subprocess.run([sys.executable, str(SCRIPTS / name), *argv], capture_output=True, text=True,
                              timeout=120)
    sys.path.insert(0, str(SCRIPTS))
    try:
        module = importlib.import_module(name[:-3])
    finally:
        sys.path.remove(str(SCRIPTS))
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = module.main(argv) if name == 'make_lmdb.py' else module.script_main(module.main, argv)
    assert code == 0, err.getvalue()
    return SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())


def _refused(result, *named):
    """Exit 2 with one line naming what is given (the folder, the splits ...), no traceback."""
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and 'Traceback' not in result.stderr, result.stderr
    for text in named:
        assert str(text) in lines[0], (text, lines[0])


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


@pytest.mark.slow
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


# ---------------------------------------------------------------------------- the benchmarks' real release layouts
def _write(path, img):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), img)
    return img


def _centre(img, size):
    top, left = (img.shape[0] - size) // 2, (img.shape[1] - size) // 2
    return img[top:top + size, left:left + size]


def _dpdd_release(root):
    """dd_dp_dataset_png/{train,val,test}_{c,l,r}: 2 train scenes, 1 val scene, 1 test scene (16-bit)."""
    targets = {}
    for split, names in (('train', ('0000', '0001')), ('val', ('0100',)), ('test', ('0200',))):
        for k, name in enumerate(names):
            seed = 100 * len(split) + k
            targets[split, name] = _write(root / f'{split}_c/target/{name}.png', _img((24, 40, 3), seed, np.uint16))
            for i, folder in enumerate(('c/source', 'l/source', 'r/source')):
                _write(root / f'{split}_{folder}/{name}.png', _img((24, 40, 3), seed + 10 + i, np.uint16))
    return targets


def test_dpdd_release_needs_the_split_and_cuts_the_one_asked(tmp_path):
    root = tmp_path / 'dd_dp_dataset_png'
    targets = _dpdd_release(root)
    # The case of Restormer#53: --center-crop (the validation set) on the release took the train split silently.
    refused = _run('dpdd', '--src', root, '--dst', tmp_path / 'val', '--center-crop', 16, ok=False)
    _refused(refused, root, 'train', 'val', 'test', '--split')
    assert not (tmp_path / 'val').exists()
    _run('dpdd', '--src', root, '--split', 'val', '--dst', tmp_path / 'val', '--center-crop', 16, '--workers', 1)
    assert _names(tmp_path / 'val' / 'target_crops') == ['0100_000.png']
    crop = cv2.imread(str(tmp_path / 'val' / 'target_crops' / '0100_000.png'), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(crop, _centre(targets['val', '0100'], 16))
    _run('dpdd', '--src', root, '--split', 'train', '--dst', tmp_path / 'train', '--patch-size', 16, '--stride', 16,
         '--workers', 1)
    assert {n[:4] for n in _names(tmp_path / 'train' / 'inputL_crops')} == {'0000', '0001'}
    # The scene lists are for the test split in the test option files' layout; the release is named, not guessed.
    _refused(_run('dpdd_scene_lists.py', root, ok=False), root, 'test_c/target')
    assert not list(root.glob('meta_info_*'))


def test_dpdd_download_script_layout(tmp_path):
    # Restormer's download_data.py unpacks train.zip and val.zip into Downloads/DPDD (its patch script then reads
    # Downloads/DPDD/train/train/inputL ...: both one and two levels are found).
    root = tmp_path / 'Downloads' / 'DPDD'
    for seed, folder in ((1, 'train'), (2, 'val/val')):
        for i, role in enumerate(('inputC', 'inputL', 'inputR', 'target')):
            _write(root / folder / role / 'x.png', _img((20, 20, 3), seed * 10 + i, np.uint16))
    _refused(_run('dpdd', '--src', root, '--dst', tmp_path / 'out', ok=False), root, 'train', 'val')
    _run('dpdd', '--src', root, '--split', 'val', '--dst', tmp_path / 'out', '--center-crop', 8, '--workers', 1)
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / 'out/target_crops/x_000.png'), cv2.IMREAD_UNCHANGED),
                                  _img((20, 20, 3), 23, np.uint16)[6:14, 6:14])
    # The split's own folder needs no --split; a --split it does not hold is refused.
    one = _run('dpdd', '--src', root / 'train', '--dst', tmp_path / 'train', '--center-crop', 8, '--workers', 1)
    assert 'reading the train split' in one.stdout  # said, so that a validation set cut from train is visible
    _refused(_run('dpdd', '--src', root / 'train', '--split', 'val', '--dst', tmp_path / 'x', ok=False),
             root / 'train', 'no val split')
    assert not (tmp_path / 'x').exists()


def _gopro_large(root):
    """GOPRO_Large/{train,test}/<scene>/{blur,blur_gamma,sharp}/000001.png."""
    sharp = {}
    for split, scenes in (('train', ('GOPR0372_07_00', 'GOPR0374_11_00')), ('test', ('GOPR0384_11_00',))):
        for k, scene in enumerate(scenes):
            seed = 10 * len(split) + k
            for sub, offset in (('blur', 0), ('blur_gamma', 1), ('sharp', 2)):
                img = _write(root / split / scene / sub / '000001.png', _img((24, 32, 3), seed + offset))
                sharp[split, scene, sub] = img
    return sharp


def test_gopro_large_needs_the_split_and_cuts_the_one_asked(tmp_path):
    root = tmp_path / 'GOPRO_Large'
    images = _gopro_large(root)
    _refused(_run('gopro', '--src', root, '--dst', tmp_path / 'val', '--center-crop', 16, ok=False),
             root, 'train', 'test', '--split')
    assert not (tmp_path / 'val').exists()
    # The official validation set: centre crops of the GoPro *test* pairs; blur is the input, not blur_gamma.
    _run('gopro', '--src', root, '--split', 'test', '--dst', tmp_path / 'val', '--center-crop', 16, '--workers', 1)
    assert _names(tmp_path / 'val' / 'input_crops') == ['000001_000.png']
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / 'val/input_crops/000001_000.png')),
                                  _centre(images['test', 'GOPR0384_11_00', 'blur'], 16))
    _run('gopro', '--src', root, '--split', 'train', '--dst', tmp_path / 'train', '--patch-size', 16, '--overlap', 0,
         '--workers', 1)
    assert {n.rsplit('_', 2)[0] for n in _names(tmp_path / 'train' / 'target_crops')} == \
        {'GOPR0372_07_00', 'GOPR0374_11_00'}
    _refused(_run('gopro', '--src', root / 'test', '--split', 'train', '--dst', tmp_path / 'x', ok=False),
             root / 'test', 'no train split')


def test_gopro_download_script_layouts(tmp_path):
    # download_data.py: Downloads/GoPro/{input,target} (train) and test/GoPro/{input,target}; mmagic: GoPro/{train,
    # test}/{blur,sharp}.
    for folder in ('Downloads/GoPro', 'test/GoPro'):
        for sub, seed in (('input', 1), ('target', 2)):
            _write(tmp_path / folder / sub / 'a.png', _img((20, 20, 3), seed))
        _run('gopro', '--src', tmp_path / folder, '--dst', tmp_path / 'out' / folder, '--center-crop', 8,
             '--workers', 1)
        assert _names(tmp_path / 'out' / folder / 'input_crops') == ['a_000.png']
    for split in ('train', 'test'):
        for sub, seed in (('blur', 1), ('sharp', 2)):
            _write(tmp_path / 'GoPro' / split / sub / f'{split}.png', _img((20, 20, 3), seed))
    _refused(_run('gopro', '--src', tmp_path / 'GoPro', '--dst', tmp_path / 'x', ok=False), 'train', 'test')
    _run('gopro', '--src', tmp_path / 'GoPro', '--split', 'test', '--dst', tmp_path / 'mm', '--center-crop', 8,
         '--workers', 1)
    assert _names(tmp_path / 'mm' / 'target_crops') == ['test_000.png']


def _sidd_scene(data, scene, seed):
    for kind, offset in (('GT', 0), ('NOISY', 1)):
        for number in ('010', '011'):
            _write(data / scene / f'{scene[:4]}_{kind}_SRGB_{number}.PNG', _img((20, 20, 3), seed + offset))


def test_sidd_medium_and_validation_blocks(tmp_path):
    from scipy import io as sio

    root = tmp_path / 'SIDD'
    _sidd_scene(root / 'SIDD_Medium_Srgb' / 'Data', '0001_001_S6_00100_00060_3200_L', 1)
    _sidd_scene(root / 'SIDD_Medium_Srgb' / 'Data', '0002_001_S6_00100_00020_3200_N', 3)
    blocks = {kind: _img((2, 3, 8, 8, 3), seed) for kind, seed in (('Noisy', 5), ('Gt', 6))}
    for kind, array in blocks.items():
        sio.savemat(str(root / f'Validation{kind}BlocksSrgb.mat'), {f'Validation{kind}BlocksSrgb': array})
    _refused(_run('sidd', '--src', root, '--dst', tmp_path / 'x', ok=False), root, 'train', 'val', '--split')
    assert not (tmp_path / 'x').exists()
    _run('sidd', '--src', root, '--split', 'val', '--dst', tmp_path / 'val')
    assert _names(tmp_path / 'val' / 'input_crops') == [f'{i:04d}_{j:02d}.png' for i in range(2) for j in range(3)]
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / 'val/target_crops/0001_02.png'))[..., ::-1],
                                  blocks['Gt'][1, 2])  # RGB blocks, written as images
    _run('sidd', '--src', root, '--split', 'train', '--dst', tmp_path / 'train', '--patch-size', 16, '--overlap', 8,
         '--workers', 1)
    names = _names(tmp_path / 'train' / 'input_crops')
    assert len(names) == 2 * 2 * 4 and names[0] == '0001_001_S6_00100_00060_3200_L_010_000.png'
    # The official download script's Downloads/SIDD holds the scenes directly: training data, no --split needed.
    _run('sidd', '--src', root / 'SIDD_Medium_Srgb' / 'Data', '--dst', tmp_path / 'd', '--patch-size', 16,
         '--overlap', 8, '--workers', 1)
    assert _names(tmp_path / 'd' / 'target_crops') == names
    _refused(_run('sidd', '--src', root / 'SIDD_Medium_Srgb', '--split', 'val', '--dst', tmp_path / 'y', ok=False),
             'no val split')


def _deraining(root):
    # Restormer's download_data.py: Datasets/train/Rain13K/{input,target}, Datasets/test/Rain100L/{input,target}.
    for folder in ('train/Rain13K', 'test/Rain100L'):
        for sub, seed in (('input', 1), ('target', 2)):
            for name in ('1.png', '2.png'):
                _write(root / folder / sub / name, _img((12, 12, 3), seed))


@pytest.mark.slow
def test_make_lmdb_packs_one_side_of_one_split(tmp_path):
    root = tmp_path / 'Datasets'
    _deraining(root)
    _run('make_lmdb.py', root / 'train/Rain13K/input', tmp_path / 'input.lmdb')
    assert (tmp_path / 'input.lmdb' / 'meta_info.txt').read_text().splitlines() == ['1.png (12,12,3) 1',
                                                                                     '2.png (12,12,3) 1']
    # A folder holding both sides, or several splits, is refused; nothing is written.
    _refused(_run('make_lmdb.py', root / 'train/Rain13K', tmp_path / 'a.lmdb', ok=False), 'input', 'target')
    _refused(_run('make_lmdb.py', root / 'train/Rain13K', tmp_path / 'a.lmdb', '--recursive', ok=False),
             'input', 'target', 'own LMDB')
    _refused(_run('make_lmdb.py', root, tmp_path / 'a.lmdb', '--recursive', ok=False), root, 'train', 'test')
    _refused(_run('make_lmdb.py', root, tmp_path / 'a.lmdb', '--recursive', '--split', 'test', ok=False),
             'input', 'target')
    scene = tmp_path / 'Data' / '0001_001_S6_00100_00060_3200_L'
    _sidd_scene(tmp_path / 'Data', scene.name, 1)
    _refused(_run('make_lmdb.py', scene, tmp_path / 'a.lmdb', ok=False), 'GT', 'NOISY')
    assert sorted(p.name for p in tmp_path.iterdir()) == ['Data', 'Datasets', 'input.lmdb']


def test_dfwb_releases_need_the_split_and_full_resolution(tmp_path):
    div2k, flickr = tmp_path / 'DIV2K', tmp_path / 'Flickr2K'
    _write(div2k / 'DIV2K_train_HR' / '0001.png', _img((20, 20, 3), 1))
    _write(div2k / 'DIV2K_valid_HR' / '0801.png', _img((20, 20, 3), 2))
    _write(div2k / 'DIV2K_train_LR_bicubic' / 'X2' / '0001x2.png', _img((10, 10, 3), 3))
    _write(flickr / 'Flickr2K_HR' / '000001.png', _img((20, 20, 3), 4))
    _write(flickr / 'Flickr2K_LR_bicubic' / 'X2' / '000001x2.png', _img((10, 10, 3), 5))
    _write(tmp_path / 'WaterlooED' / '00001.bmp', _img((20, 20, 3), 6))  # download_data.py: flat folders
    _write(tmp_path / 'BSD400' / 'test_001.png', _img((20, 20, 3), 7))  # DnCNN's Train400 names: not a split
    args = ('--dst', tmp_path / 'out', '--patch-size', 16, '--overlap', 8, '--workers', 1)
    _refused(_run('dfwb', '--src', div2k, *args, ok=False), div2k, 'train', 'val', '--split')
    _refused(_run('dfwb', '--src', div2k, '--split', 'train', *args, ok=False), 'DIV2K_train_LR_bicubic', '_HR')
    _refused(_run('dfwb', '--src', flickr, *args, ok=False), 'Flickr2K_LR_bicubic')
    assert not (tmp_path / 'out').exists()
    _run('dfwb', '--src', div2k / 'DIV2K_train_HR', flickr / 'Flickr2K_HR', tmp_path / 'WaterlooED',
         tmp_path / 'BSD400', '--split', 'train', '--min-side', 10, *args)
    assert {n.rsplit('_', 1)[0] for n in _names(tmp_path / 'out')} == {
        'DIV2K_train_HR_0001', 'Flickr2K_HR_000001', 'WaterlooED_00001', 'BSD400_test_001'}


def test_gray_alpha_patches_stay_gray_alpha(tmp_path):
    from PIL import Image

    la = _img((20, 24, 2), 9)
    for sub in ('input', 'target'):
        (tmp_path / 'src' / sub).mkdir(parents=True)
        Image.fromarray(la, 'LA').save(tmp_path / 'src' / sub / 'x.png')
    _run('gopro', '--src', tmp_path / 'src', '--dst', tmp_path / 'val', '--center-crop', 8, '--workers', 1)
    with Image.open(tmp_path / 'val' / 'target_crops' / 'x_000.png') as crop:
        assert crop.mode == 'LA'
        np.testing.assert_array_equal(np.asarray(crop), la[6:14, 8:16])

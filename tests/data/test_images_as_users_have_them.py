"""Images as users have them (issue 11): one reading path, integrity checks, pairing sanity, atomic outputs.

Real files made in the tests (phone JPEGs with EXIF orientations, palette/CMYK/16-bit/gray/alpha images, truncated
files), real LMDBs from datasets/make_lmdb.py, real ``basicsr train`` processes and real kills.
"""
import importlib.util
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from PIL import Image

from restormer_arch.data import Dataset_GaussianDenoising, Dataset_PairedImage
from restormer_arch.data.image_io import ImageReadError, read_image, write_image
from restormer_arch.evaluation import evaluate_folders
from restormer_arch.models.results_table import ResultsTable
from tests.conftest import REPO_ROOT

MAKE_LMDB = REPO_ROOT / 'datasets' / 'make_lmdb.py'
ENV = dict(os.environ, PYTHONPATH=str(REPO_ROOT), OMP_NUM_THREADS='1')


def _photo(h=40, w=56, seed=0):
    """A smooth colour picture (JPEG-friendly) as RGB uint8."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    planes = [127 + 100 * np.sin(x / (5 + 3 * c) + y / (7 + c) + rng.random() * 6) for c in range(3)]
    return np.clip(np.stack(planes, axis=-1), 0, 255).astype(np.uint8)


def _save_pil(path: Path, img: Image.Image, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **kwargs)
    return path


def _exif(orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


# One file of each kind users have; the dataset reads each through the one decoder.
def _kind_phone_jpeg(path):
    return _save_pil(path.with_suffix('.jpg'), Image.fromarray(_photo()), exif=_exif(6), quality=95)


def _kind_palette(path):
    return _save_pil(path.with_suffix('.png'), Image.fromarray(_photo(seed=1)).quantize(32), transparency=3)


def _kind_cmyk_jpeg(path):
    return _save_pil(path.with_suffix('.jpg'), Image.fromarray(_photo(seed=2)).convert('CMYK'), quality=95)


def _kind_16bit(path):
    path = path.with_suffix('.png')
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), _photo(seed=3).astype(np.uint16) * 257 + 3)
    return path


def _kind_gray_alpha(path):
    return _save_pil(path.with_suffix('.png'), Image.fromarray(_photo(seed=4)[..., :2].copy(), 'LA'))


def _kind_rgba_rotated(path):
    rgba = np.dstack([_photo(seed=5), np.full((40, 56), 200, np.uint8)])
    return _save_pil(path.with_suffix('.png'), Image.fromarray(rgba, 'RGBA'), exif=_exif(8))


KINDS = {'phone_jpeg_orientation_6': _kind_phone_jpeg, 'palette_with_transparency': _kind_palette,
         'cmyk_jpeg': _kind_cmyk_jpeg, '16bit_png': _kind_16bit, 'gray_alpha_png': _kind_gray_alpha,
         'rgba_png_orientation_8': _kind_rgba_rotated}


def _make_lmdb(folder: Path, out: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(MAKE_LMDB), str(folder), str(out), *args], env=ENV,
                          capture_output=True, text=True, timeout=300)


def _build_lmdb(folder: Path, out: Path) -> None:
    """datasets/make_lmdb.py's main() in this process (the command itself is run by the tests of its exit codes)."""
    spec = importlib.util.spec_from_file_location('make_lmdb', MAKE_LMDB)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main([str(folder), str(out)]) == 0


def _val_opt(gt, lq=None, **kw):
    opt = {'name': 'kinds', 'type': 'Dataset_GaussianDenoising', 'dataroot_gt': str(gt), 'dataroot_lq': 'none',
           'phase': 'val', 'sigma_test': 0, 'io_backend': {'type': 'disk'}}
    opt.update(kw)
    return opt


# ------------------------------------------------------------------------------------------ one reading function
@pytest.mark.parametrize('kind', sorted(KINDS))
def test_same_pixels_on_every_reading_path(kind, tmp_path):
    path = KINDS[kind](tmp_path / 'gt' / 'x')
    decoded = read_image(path)
    with Image.open(path) as pil:
        from PIL import ImageOps

        shown_w, shown_h = ImageOps.exif_transpose(pil).size
    assert decoded.pixels.shape[:2] == (shown_h, shown_w)  # upright, as a viewer shows it
    in_ch = 1 if decoded.pixels.shape[2] == 1 else 3
    disk = Dataset_GaussianDenoising(_val_opt(tmp_path / 'gt', in_ch=in_ch))[0]['gt']
    assert tuple(disk.shape) == (in_ch, shown_h, shown_w)
    np.testing.assert_array_equal(np.round(disk.numpy() * decoded.peak).astype(np.int64),
                                  decoded.pixels[..., ::-1].transpose(2, 0, 1))  # RGB tensors from BGR pixels
    _build_lmdb(tmp_path / 'gt', tmp_path / 'gt.lmdb')
    lmdb = Dataset_GaussianDenoising(_val_opt(tmp_path / 'gt.lmdb', in_ch=in_ch, io_backend={'type': 'lmdb'}))[0]
    assert (lmdb['gt'] == disk).all()
    # The folder evaluator scores the same pixels: a file against an upright PNG of its pixels is a perfect match.
    (tmp_path / 'ref').mkdir()
    assert cv2.imwrite(str(tmp_path / 'ref' / 'x.png'), decoded.pixels)
    rows = evaluate_folders(tmp_path / 'gt', tmp_path / 'ref', 'gopro')
    assert rows[0]['psnr'] == float('inf') or rows[0]['psnr'] > 99


def test_check_sees_upright_sizes_like_the_datasets(tmp_path):
    # Phone JPEG target stored 40x56 with orientation 6 (shown 56 high, 40 wide), input an upright PNG of 56x40.
    _kind_phone_jpeg(tmp_path / 'gt' / 'a')
    upright = read_image(tmp_path / 'gt' / 'a.jpg').pixels
    (tmp_path / 'lq').mkdir()
    assert cv2.imwrite(str(tmp_path / 'lq' / 'a.jpg'), np.clip(upright.astype(int) + 9, 0, 255).astype(np.uint8))
    ds = Dataset_PairedImage({'name': 'p', 'type': 'Dataset_PairedImage', 'phase': 'val', 'scale': 1,
                              'dataroot_lq': str(tmp_path / 'lq'), 'dataroot_gt': str(tmp_path / 'gt'),
                              'io_backend': {'type': 'disk'}})
    assert tuple(ds[0]['gt'].shape) == (3, 56, 40) == tuple(ds[0]['lq'].shape)


# ------------------------------------------------------------------------------------------------------- integrity
@pytest.mark.parametrize('ext', ['.jpg', '.png', '.bmp', '.webp'])
def test_truncated_file_found_when_the_dataset_is_built(ext, tmp_path):
    gt = tmp_path / 'gt'
    gt.mkdir()
    for i in range(3):
        ok, data = cv2.imencode(ext, cv2.cvtColor(_photo(64, 64, i), cv2.COLOR_RGB2BGR))
        data = data.tobytes()
        (gt / f'p{i}{ext}').write_bytes(data[:len(data) // 2] if i == 1 else data)
    with pytest.raises(ValueError, match=f'p1{ext}'):
        Dataset_GaussianDenoising(_val_opt(gt))
    ds = Dataset_GaussianDenoising(_val_opt(gt, check_images=False))
    with pytest.raises(ImageReadError, match=f'p1{ext}'):  # never grey fill
        ds[1]
    assert ds[0]['gt'].shape == (3, 64, 64)


@pytest.mark.slow
def test_truncated_jpeg_stops_basicsr_train_before_training(tmp_path):
    gt, vgt = tmp_path / 'gt', tmp_path / 'vgt'
    for folder, n in ((gt, 3), (vgt, 1)):
        folder.mkdir()
        for i in range(n):
            assert cv2.imwrite(str(folder / f'p{i}.png'), _photo(64, 64, i))
    ok, data = cv2.imencode('.jpg', _photo(64, 64, 9))
    (gt / 'p1.png').unlink()
    (gt / 'p1.jpg').write_bytes(data.tobytes()[:len(data) // 2])
    opt = {'name': 'tj', 'model_type': 'ImageCleanModel', 'scale': 1, 'num_gpu': 0, 'manual_seed': 1,
           'datasets': {'train': {'name': 'tr', 'type': 'Dataset_GaussianDenoising', 'sigma_type': 'constant',
                                  'sigma_range': 25, 'dataroot_gt': 'gt', 'dataroot_lq': 'none',
                                  'io_backend': {'type': 'disk'}, 'num_worker_per_gpu': 0, 'batch_size_per_gpu': 2,
                                  'dataset_enlarge_ratio': 10, 'gt_size': 16, 'use_shuffle': True},
                        'val': {'name': 'va', 'type': 'Dataset_GaussianDenoising', 'sigma_test': 25,
                                'dataroot_gt': 'vgt', 'dataroot_lq': 'none', 'io_backend': {'type': 'disk'}}},
           'network_g': {'type': 'Restormer', 'dim': 8, 'num_blocks': [1, 1, 1, 1], 'num_refinement_blocks': 1,
                         'heads': [1, 1, 1, 1]},
           'path': {'pretrain_network_g': None, 'strict_load_g': True, 'resume_state': None},
           'train': {'total_iter': 2, 'warmup_iter': -1, 'optim_g': {'type': 'Adam', 'lr': 1e-3},
                     'scheduler': {'type': 'MultiStepLR', 'milestones': [10], 'gamma': 0.5},
                     'pixel_opt': {'type': 'L1Loss', 'loss_weight': 1, 'reduction': 'mean'}},
           'val': {'val_freq': 2, 'save_img': False, 'metrics': {'psnr': {'type': 'calculate_psnr', 'crop_border': 0}}},
           'logger': {'print_freq': 1, 'save_checkpoint_freq': 2, 'use_tb_logger': False}}
    (tmp_path / 'opt.yml').write_text(yaml.safe_dump(opt))
    done = subprocess.run([sys.executable, '-m', 'restormer_arch', 'train', '-opt', 'opt.yml'], cwd=tmp_path,
                          env=ENV, capture_output=True, text=True, timeout=300)
    log = done.stdout + done.stderr
    assert done.returncode != 0 and 'p1.jpg' in log
    assert 'Start training' not in log


# ------------------------------------------------------------------------------------------------ pairing sanity
def _pairs(root: Path, names=('a', 'b')):
    for i, name in enumerate(names):
        for sub, shift in (('lq', 40), ('gt', 0)):
            (root / sub).mkdir(parents=True, exist_ok=True)
            assert cv2.imwrite(str(root / sub / f'{name}.png'), np.clip(_photo(seed=i).astype(int) + shift, 0,
                                                                          255).astype(np.uint8))
    return root / 'lq', root / 'gt'


def _paired(lq, gt, **kw):
    opt = {'name': 'p', 'type': 'Dataset_PairedImage', 'phase': 'val', 'scale': 1, 'dataroot_lq': str(lq),
           'dataroot_gt': str(gt), 'io_backend': {'type': 'disk'}}
    opt.update(kw)
    return Dataset_PairedImage(opt)


def test_meta_info_absolute_paths_pair_lq_with_gt(tmp_path):
    lq, gt = _pairs(tmp_path)
    meta = tmp_path / 'meta.txt'
    meta.write_text(''.join(f'{gt.resolve() / n}\n' for n in ('b.png', 'a.png')))  # find $PWD/gt > meta.txt
    ds = _paired(lq, gt, meta_info_file=str(meta))
    assert [Path(p['lq_path']).parent for p in ds.paths] == [lq, lq]
    assert [Path(p['lq_path']).name for p in ds.paths] == ['b.png', 'a.png']
    assert not (ds[0]['lq'] == ds[0]['gt']).all()


@pytest.mark.parametrize('line', ['{lq}/a.png', '{elsewhere}/a.png', '../lq/a.png', 'sub/../../lq/a.png'])
def test_meta_info_names_outside_dataroot_gt_are_refused(line, tmp_path):
    lq, gt = _pairs(tmp_path)
    (tmp_path / 'elsewhere').mkdir()
    meta = tmp_path / 'meta.txt'
    meta.write_text(line.format(lq=lq.resolve(), elsewhere=tmp_path / 'elsewhere') + '\n')
    with pytest.raises(ValueError, match='meta_info_file'):
        _paired(lq, gt, meta_info_file=str(meta))


def test_meta_info_names_with_spaces(tmp_path):
    lq, gt = _pairs(tmp_path, ('my photo',))
    meta = tmp_path / 'meta.txt'
    meta.write_text('my photo.png (40,56,3) 1\n')
    assert [Path(p['gt_path']).name for p in _paired(lq, gt, meta_info_file=str(meta)).paths] == ['my photo.png']


def test_input_folder_equal_to_target_folder_is_refused(tmp_path):
    _, gt = _pairs(tmp_path)
    with pytest.raises(ValueError, match='same file'):
        _paired(gt, gt)
    (tmp_path / 'gt_link').symlink_to(gt, target_is_directory=True)
    with pytest.raises(ValueError, match='same file'):
        _paired(tmp_path / 'gt_link', gt)
    _build_lmdb(gt, tmp_path / 'gt.lmdb')
    with pytest.raises(ValueError, match='same file'):
        _paired(tmp_path / 'gt.lmdb', tmp_path / 'gt.lmdb', io_backend={'type': 'lmdb'})


def test_pairs_that_are_one_file_are_refused(tmp_path):
    lq, gt = _pairs(tmp_path)
    (lq / 'a.png').unlink()
    (lq / 'a.png').symlink_to(gt / 'a.png')
    with pytest.raises(ValueError, match='same file'):
        _paired(lq, gt)


def test_evaluation_images_sharing_a_result_name_are_refused(tmp_path):
    lq, gt = _pairs(tmp_path)
    for folder in (lq, gt):
        (folder / 'a.jpg').write_bytes((folder / 'b.png').read_bytes())  # a.png and a.jpg -> both "a_<iter>.png"
        (folder / 'b.png').unlink()
    with pytest.raises(ValueError, match='result name'):
        _paired(lq, gt)
    assert len(_paired(lq, gt, phase='train', gt_size=16)) == 2  # training saves nothing under those names


def test_byte_identical_pairs_warn(tmp_path):
    lq, gt = _pairs(tmp_path)
    for name in ('a.png', 'b.png'):
        (lq / name).write_bytes((gt / name).read_bytes())
    with pytest.warns(UserWarning, match='byte-identical'):
        _paired(lq, gt)


# ------------------------------------------------------------------------------------------------------------ LMDB
@pytest.mark.slow
def test_make_lmdb_non_ascii_and_space_names(tmp_path):
    lq, gt = _pairs(tmp_path, ('café', 'naïve', 'b', 'my photo'))
    built = _make_lmdb(gt, gt.with_suffix('.lmdb'))
    assert built.returncode == 0, built.stderr
    _build_lmdb(lq, lq.with_suffix('.lmdb'))
    assert len((gt.with_suffix('.lmdb') / 'meta_info.txt').read_text(encoding='utf-8').splitlines()) == 4
    disk = _paired(lq, gt)
    db = _paired(lq.with_suffix('.lmdb'), gt.with_suffix('.lmdb'), io_backend={'type': 'lmdb'})
    assert [p['gt_path'] for p in db.paths] == sorted(['café', 'naïve', 'b', 'my photo'])
    for i in range(4):
        assert (db[i]['lq'] == disk[i]['lq']).all() and (db[i]['gt'] == disk[i]['gt']).all()


@pytest.mark.slow
def test_failed_lmdb_build_leaves_nothing(tmp_path):
    _, gt = _pairs(tmp_path, ('a', 'b', 'c'))
    (gt / 'c.png').write_bytes((gt / 'c.png').read_bytes()[:200])  # truncated: found after a and b are stored
    failed = _make_lmdb(gt, tmp_path / 'gt.lmdb')
    assert failed.returncode == 2 and 'c.png' in failed.stderr and 'Traceback' not in failed.stderr
    assert sorted(os.listdir(tmp_path)) == ['gt', 'lq']
    (gt / 'c.png').unlink()
    _build_lmdb(gt, tmp_path / 'gt.lmdb')  # a re-run is not blocked


@pytest.mark.slow
def test_killed_lmdb_build_leaves_no_lmdb(tmp_path):
    gt = tmp_path / 'gt'
    gt.mkdir()
    big = cv2.resize(_photo(), (900, 700)).astype(np.uint16) * 257
    for i in range(40):
        assert cv2.imwrite(str(gt / f'{i:03d}.png'), big, [cv2.IMWRITE_PNG_COMPRESSION, 0])
    proc = subprocess.Popen([sys.executable, str(MAKE_LMDB), str(gt), str(tmp_path / 'gt.lmdb'),
                             '--compress-level', '9'], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not any(p.name.endswith('.partial') for p in tmp_path.iterdir()) and time.time() < deadline:
        time.sleep(0.01)
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / 'gt.lmdb').exists()  # nothing that looks complete


# ---------------------------------------------------------------------------------------------- atomic outputs
_WRITER = """
import sys
import numpy as np
from restormer_arch.data.image_io import write_image
img = (np.random.default_rng(0).random((1200, 1200, 3)) * 65535).astype(np.uint16)
print('ready', flush=True)
while True:
    write_image(sys.argv[1], img, 16)
"""


@pytest.mark.slow
def test_killed_image_write_leaves_a_complete_file_or_none(tmp_path):
    target = tmp_path / 'out put' / 'résultat.png'
    for delay in (0.05, 0.6):
        proc = subprocess.Popen([sys.executable, '-c', _WRITER, str(target)], env=ENV, stdout=subprocess.PIPE)
        assert proc.stdout.readline().strip() == b'ready'
        while not target.exists():
            time.sleep(0.005)
        time.sleep(delay)  # lands while a later write is in progress
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        data = target.read_bytes()
        assert data.endswith(b'IEND\xaeB`\x82') and read_image(target).pixels.shape == (1200, 1200, 3)
    assert all(p == target or p.name.startswith('.') for p in target.parent.iterdir())  # only hidden leftovers


def test_results_tables_and_val_images_are_written_whole(tmp_path):
    table = ResultsTable(str(tmp_path / 'rés ults'))
    table.start_dataset('set 1')
    table.add('set 1', 'img', {'psnr': 30.0})
    table.write()
    assert sorted(os.listdir(tmp_path / 'rés ults')) == ['metrics.csv', 'metrics.md']
    write_image(str(tmp_path / 'vis' / 'ä b.png'), np.full((6, 5, 3), 0.5, np.float32))  # what validation calls
    assert os.listdir(tmp_path / 'vis') == ['ä b.png']
    assert read_image(tmp_path / 'vis' / 'ä b.png').pixels.max() == 128


def test_read_image_of_bytes_names_the_source():
    with pytest.raises(ImageReadError, match='from-lmdb'):
        read_image(io.BytesIO(b'\x89PNG\r\n\x1a\n' + b'\0' * 8).getvalue(), 'from-lmdb')

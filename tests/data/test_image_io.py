"""restormer_arch.data.image_io and restormer_arch.atomic: one decoder, integrity checks, atomic writes (real files)."""
import io
import os

import cv2
import numpy as np
import pytest
from PIL import Image, ImageCms, ImageOps

from restormer_arch.atomic import atomic_write
from restormer_arch.data.image_io import DecodedImage, ImageReadError, check_complete, read_image, write_image

ORIENTATION = 0x0112


def _rgb(shape=(20, 30, 3), seed=0, dtype=np.uint8):
    peak = np.iinfo(dtype).max
    return np.random.default_rng(seed).integers(0, peak, shape, endpoint=True).astype(dtype)


def _pil_bytes(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def _exif(orientation: int, **tags) -> bytes:
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    for tag, value in tags.items():
        exif[int(tag[1:])] = value
    return exif.tobytes()


def _srgb_profile() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile('sRGB')).tobytes()


@pytest.mark.parametrize('orientation', range(1, 9))
def test_exif_orientation_applied_like_viewers(orientation, tmp_path):
    rgb = _rgb((20, 30, 3), orientation)
    png = _pil_bytes(Image.fromarray(rgb), 'PNG', exif=_exif(orientation))
    upright = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(png))))[..., ::-1]
    decoded = read_image(png)
    np.testing.assert_array_equal(decoded.pixels, upright)
    exif = Image.Exif()
    exif.load(b'Exif\x00\x00' + decoded.exif)
    assert exif[ORIENTATION] == 1  # the pixels are upright now
    # A phone JPEG: same pixels as OpenCV's own orientation-applying read, upright size as viewers show it.
    path = tmp_path / f'phone {orientation}.jpg'
    path.write_bytes(_pil_bytes(Image.fromarray(rgb), 'JPEG', exif=_exif(orientation), quality=95))
    decoded = read_image(path)
    shown = ImageOps.exif_transpose(Image.open(path)).size
    assert decoded.pixels.shape[1::-1] == shown
    np.testing.assert_array_equal(decoded.pixels, cv2.imdecode(np.fromfile(str(path), np.uint8), cv2.IMREAD_COLOR))


def test_alpha_follows_orientation():
    rgba = _rgb((10, 16, 4), 3)
    png = _pil_bytes(Image.fromarray(rgba, 'RGBA'), 'PNG', exif=_exif(6))
    decoded = read_image(png)
    assert decoded.pixels.shape == (16, 10, 3) and decoded.alpha.shape == (16, 10)
    np.testing.assert_array_equal(decoded.alpha, np.rot90(rgba[..., 3], k=-1))


def test_kinds_gray_palette_cmyk_16bit():
    rgb = _rgb()
    gray = read_image(_pil_bytes(Image.fromarray(rgb[..., 0]), 'PNG'))
    assert gray.pixels.shape == (20, 30, 1) and gray.alpha is None and gray.bit_depth == 8
    np.testing.assert_array_equal(gray.pixels[..., 0], rgb[..., 0])

    gray_alpha = read_image(_pil_bytes(Image.fromarray(rgb[..., :2].copy(), 'LA'), 'PNG'))
    assert gray_alpha.pixels.shape == (20, 30, 1)
    np.testing.assert_array_equal(gray_alpha.alpha, rgb[..., 1])

    palette = Image.fromarray(rgb).quantize(16)
    decoded = read_image(_pil_bytes(palette, 'PNG'))
    np.testing.assert_array_equal(decoded.pixels, np.asarray(palette.convert('RGB'))[..., ::-1])
    assert decoded.alpha is None
    decoded = read_image(_pil_bytes(palette, 'PNG', transparency=0))
    np.testing.assert_array_equal(decoded.alpha, np.where(np.asarray(palette) == 0, 0, 255))

    cmyk = _pil_bytes(Image.fromarray(rgb).convert('CMYK'), 'JPEG', quality=95)
    decoded = read_image(cmyk)
    assert decoded.pixels.shape == (20, 30, 3) and decoded.pixels.dtype == np.uint8
    np.testing.assert_array_equal(decoded.pixels, cv2.imdecode(np.frombuffer(cmyk, np.uint8), cv2.IMREAD_COLOR))

    deep = _rgb((12, 14, 3), 5, np.uint16)
    ok, png16 = cv2.imencode('.png', deep)
    decoded = read_image(png16.tobytes())
    assert decoded.bit_depth == 16 and decoded.peak == 65535
    np.testing.assert_array_equal(decoded.pixels, deep)


def test_truncated_and_broken_files_are_refused(tmp_path):
    rgb = _rgb((64, 64, 3))
    for ext in ('.png', '.jpg', '.bmp', '.webp'):
        ok, data = cv2.imencode(ext, rgb)
        data = data.tobytes()
        assert read_image(data).pixels.shape == (64, 64, 3)
        path = tmp_path / f'cut{ext}'
        path.write_bytes(data[:len(data) // 2])
        with pytest.raises(ImageReadError, match='cut'):
            read_image(path)
        assert check_complete(data[:4096], data[-64:], len(data), lambda d=data: d) is None
        half = data[:len(data) // 2]
        assert check_complete(half[:4096], half[-64:], len(half), lambda h=half: h) is not None
    for content in (b'', b'not an image at all'):
        with pytest.raises(ImageReadError):
            read_image(content, 'x.png')
    with pytest.raises(ImageReadError, match='missing.png'):
        read_image(tmp_path / 'missing.png')


def test_jpeg_with_data_after_the_end_marker_is_complete():
    ok, data = cv2.imencode('.jpg', _rgb())
    with_trailer = data.tobytes() + b'SEFH' * 64  # phones append their own records after FF D9
    np.testing.assert_array_equal(read_image(with_trailer).pixels, read_image(data.tobytes()).pixels)


def test_float_samples_are_refused(tmp_path):
    path = tmp_path / 'f.tiff'
    assert cv2.imwrite(str(path), np.zeros((4, 4), np.float32))
    with pytest.raises(ImageReadError, match='float32'):
        read_image(path)


@pytest.mark.parametrize('ext', ['.png', '.jpg'])
def test_write_keeps_icc_and_exif_upright(ext, tmp_path):
    icc = _srgb_profile()
    src = tmp_path / f'in{ext}'
    src.write_bytes(_pil_bytes(Image.fromarray(_rgb((16, 24, 3))), 'PNG' if ext == '.png' else 'JPEG',
                               exif=_exif(6, t271='PhoneMaker'), icc_profile=icc))
    decoded = read_image(src)
    assert decoded.icc_profile == icc and decoded.pixels.shape == (24, 16, 3)
    out = tmp_path / 'résultat final' / f'café au lait{ext}'
    write_image(out, decoded.pixels, decoded.bit_depth, icc_profile=decoded.icc_profile, exif=decoded.exif)
    with Image.open(out) as img:
        assert img.info.get('icc_profile') == icc
        assert img.getexif()[ORIENTATION] == 1 and img.getexif()[271] == 'PhoneMaker'
        assert ImageOps.exif_transpose(img).size == (16, 24)
    again = read_image(out)
    assert again.pixels.shape == (24, 16, 3) and again.icc_profile == icc
    assert os.listdir(out.parent) == [out.name]  # nothing temporary left


@pytest.mark.parametrize('bits', [8, 16])
def test_gray_alpha_png_is_written_gray_alpha(tmp_path, bits):
    dtype = np.uint8 if bits == 8 else np.uint16
    gray, alpha = _rgb((7, 9, 1), 3, dtype), _rgb((7, 9), 4, dtype)
    write_image(tmp_path / 'la.png', gray, bits, alpha=alpha, icc_profile=_srgb_profile())
    data = (tmp_path / 'la.png').read_bytes()
    assert data[24:26] == bytes([bits, 4])  # IHDR bit depth, colour type 4: gray + alpha (was 6: RGBA)
    back = read_image(tmp_path / 'la.png')
    np.testing.assert_array_equal(back.pixels, gray)
    np.testing.assert_array_equal(back.alpha, alpha)
    assert back.bit_depth == bits and back.icc_profile == _srgb_profile()
    if bits == 8:
        with Image.open(tmp_path / 'la.png') as img:
            assert img.mode == 'LA'
            np.testing.assert_array_equal(np.asarray(img), np.dstack([gray[..., 0], alpha]))


def test_restore_keeps_a_gray_alpha_png_gray_alpha(tmp_path):
    import json

    from restormer_arch.inference import main

    (tmp_path / 'in').mkdir()
    Image.fromarray(_rgb((12, 16, 2), 5), 'LA').save(tmp_path / 'in' / 'x.png')
    tiny = {'dim': 8, 'num_blocks': [1, 1, 1, 1], 'num_refinement_blocks': 1, 'heads': [1, 1, 1, 1]}
    for task in ('deraining', 'gaussian_gray_denoising'):  # a colour and a gray network
        out = tmp_path / task
        assert main(['-i', str(tmp_path / 'in'), '-o', str(out), '--task', task, '--arch-options', json.dumps(tiny),
                     '--no-progress', '--allow-random-weights']) == 0
        with Image.open(out / 'x.png') as img, Image.open(tmp_path / 'in' / 'x.png') as original:
            assert img.mode == 'LA' and img.size == (16, 12)
            np.testing.assert_array_equal(np.asarray(img)[..., 1], np.asarray(original)[..., 1])


def test_write_16bit_alpha_and_float_input(tmp_path):
    deep = _rgb((8, 9, 3), 1, np.uint16)
    alpha = _rgb((8, 9), 2, np.uint16)
    write_image(tmp_path / 'a.png', deep, 16, alpha=alpha)
    back = read_image(tmp_path / 'a.png')
    np.testing.assert_array_equal(back.pixels, deep)
    np.testing.assert_array_equal(back.alpha, alpha)
    write_image(tmp_path / 'g.png', np.full((5, 6, 1), 0.5, np.float32))
    np.testing.assert_array_equal(read_image(tmp_path / 'g.png').pixels, np.full((5, 6, 1), 128, np.uint8))
    with pytest.raises(ValueError):
        write_image(tmp_path / 'a.jpg', deep, 16)
    assert not (tmp_path / 'a.jpg').exists()


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path):
    target = tmp_path / 'metrics täble.csv'
    with atomic_write(target, 'w', encoding='utf-8') as f:
        f.write('old\n')
    with pytest.raises(RuntimeError):
        with atomic_write(target, 'w') as f:
            f.write('half of the new')
            raise RuntimeError('killed')
    assert target.read_text(encoding='utf-8') == 'old\n'
    assert os.listdir(tmp_path) == [target.name]
    plain = tmp_path / 'plain'
    plain.write_text('x')
    assert target.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777  # like open(), not mkstemp's private 0600
    plain.unlink()


def test_decoded_image_fields():
    decoded = DecodedImage(np.zeros((2, 3, 1), np.uint16), bit_depth=16)
    assert decoded.alpha is None and decoded.icc_profile is None and decoded.exif is None and decoded.peak == 65535


def test_orientation_applied_above_pils_pixel_limit(monkeypatch):
    monkeypatch.setattr(Image, 'MAX_IMAGE_PIXELS', 100)  # a 2400-pixel photo counts as "huge" for PIL now
    jpeg = _pil_bytes(Image.fromarray(_rgb((40, 60, 3))), 'JPEG', exif=_exif(6), quality=95)
    assert read_image(jpeg).pixels.shape == (60, 40, 3)
    assert Image.MAX_IMAGE_PIXELS == 100

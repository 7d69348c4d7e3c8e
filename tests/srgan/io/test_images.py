"""2D images: real Kaggle JPEGs, PNG/TIFF/JPEG round trips at each bit depth, colour handling, error paths."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from srgan.errors import InputError
from srgan.io import images
from srgan.io.images import find_images, load_image, save_image

KAGGLE = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "kaggle-brain-tumor-mri"
needs_data = pytest.mark.skipif(not KAGGLE.is_dir(), reason=f"Kaggle sample images not found at {KAGGLE}")


def levels(shape, top, seed=0):
    return np.random.default_rng(seed).integers(0, top + 1, size=shape)


@needs_data
def test_real_kaggle_jpegs():
    files = find_images(KAGGLE)
    assert len(files) == 240
    for f in files[::80]:
        img = load_image(f)
        raw = np.asarray(Image.open(f))
        assert img.data.shape == raw.shape[:2] and img.data.dtype == np.float32
        assert img.bit_depth == 8 and not img.was_rgb and img.path == f
        np.testing.assert_allclose(img.data, raw / 255.0, atol=1e-7)
        assert 0.0 <= img.data.min() and img.data.max() <= 1.0


def test_find_images_recursive_sorted_and_filtered(tmp_path):
    (tmp_path / "b" / "deep").mkdir(parents=True)
    (tmp_path / ".cache").mkdir()
    for name in ["b/deep/z.TIF", "a.png", "b/c.JPG", "b/d.jpeg", "notes.txt", "._a.png", ".cache/x.png", "e.tiff"]:
        (tmp_path / name).write_bytes(b"x")
    names = [p.relative_to(tmp_path).as_posix() for p in find_images(tmp_path)]
    assert names == ["a.png", "b/c.JPG", "b/d.jpeg", "b/deep/z.TIF", "e.tiff"]
    with pytest.raises(InputError):
        find_images(tmp_path / "nope")


ENCODERS = ["pillow"] + (["imagecodecs"] if images._imagecodecs_png() is not None else [])


@pytest.fixture(params=ENCODERS)
def png_encoder(request, monkeypatch):
    """Each PNG encoder save_image can use: imagecodecs' libpng where installed, Pillow without it."""
    if request.param == "pillow":
        monkeypatch.setattr(images, "_imagecodecs_png", lambda: None)
    return request.param


@pytest.mark.parametrize("bits", [8, 16])
def test_png_round_trip_exact_with_text(tmp_path, bits, png_encoder):
    top = 2 ** bits - 1
    data = (levels((37, 53), top) / top).astype(np.float32)
    p = save_image(tmp_path / "x.png", data, bits, {"Software": "BrainSR", "Comment": "AI-enhanced é"})
    img = load_image(p)
    assert img.bit_depth == bits and img.data.shape == (37, 53)
    np.testing.assert_array_equal(np.rint(img.data.astype(np.float64) * top), np.rint(data.astype(np.float64) * top))
    with Image.open(p) as im:  # before the pixels: in ``info`` without loading them
        assert im.info["Software"] == "BrainSR" and im.info["Comment"] == "AI-enhanced é"
    with Image.open(p) as im:
        assert im.text["Software"] == "BrainSR" and im.text["Comment"] == "AI-enhanced é"
        assert np.asarray(im).dtype == (np.uint8 if bits == 8 else np.uint16)
    with Image.open(p) as im:
        im.verify()  # every chunk's CRC, the spliced text chunks' too
    assert [q.name for q in tmp_path.iterdir()] == ["x.png"]


@pytest.mark.skipif("imagecodecs" not in ENCODERS, reason="imagecodecs (the fast extra) is not installed")
@needs_data
@pytest.mark.parametrize("bits", [8, 16])
def test_both_png_encoders_write_the_same_pixels_of_real_slices(tmp_path, bits, monkeypatch):
    """A real slice (and its 16-bit version) decodes to the same levels whichever encoder wrote it."""
    data = np.asarray(Image.open(find_images(KAGGLE)[5]).convert("L"), np.float32) / 255
    data = data if bits == 8 else np.clip(data * 1.003 - 0.001, 0, 1)
    fast = save_image(tmp_path / "fast.png", data, bits, {"Software": "BrainSR"})
    monkeypatch.setattr(images, "_imagecodecs_png", lambda: None)
    slow = save_image(tmp_path / "slow.png", data, bits, {"Software": "BrainSR"})
    assert fast.read_bytes() != slow.read_bytes()  # two encoders really ran
    with Image.open(fast) as a, Image.open(slow) as b:
        assert a.text == b.text == {"Software": "BrainSR"} and a.mode == b.mode
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("bits", [8, 16])
def test_save_clips_and_rounds(tmp_path, bits):
    data = np.array([[-0.5, 0.0, 0.5, 1.0, 7.0, np.nan, np.inf, -np.inf, 0.25]], np.float32).repeat(3, 0)
    before = data.copy()
    img = load_image(save_image(tmp_path / "c.png", data, bits))
    top = 2**bits - 1
    half, quarter = np.rint(0.5 * top) / top, np.rint(0.25 * top) / top
    np.testing.assert_allclose(img.data[0], [0, 0, half, 1, 1, 0, 1, 0, quarter], atol=1e-7)
    np.testing.assert_array_equal(data, before)  # the caller's array is not written to


def test_rgb_becomes_luminance_with_note(tmp_path):
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[..., 0] = 255
    Image.fromarray(rgb).save(tmp_path / "red.png")
    img = load_image(tmp_path / "red.png")
    assert img.was_rgb and any("grayscale" in n for n in img.notes)
    np.testing.assert_allclose(img.data, 0.2125, atol=1e-4)          # skimage rgb2gray weight of red
    gray3 = np.repeat(levels((8, 8), 255)[..., None], 3, axis=2).astype(np.uint8)
    Image.fromarray(gray3).save(tmp_path / "gray3.png")
    img = load_image(tmp_path / "gray3.png")
    assert not img.was_rgb and img.bit_depth == 8
    np.testing.assert_allclose(img.data, gray3[..., 0] / 255.0, atol=1e-7)


def test_alpha_and_palette(tmp_path):
    la = np.stack([levels((6, 6), 255), np.full((6, 6), 255)], -1).astype(np.uint8)
    Image.fromarray(la, mode="LA").save(tmp_path / "la.png")
    img = load_image(tmp_path / "la.png")
    assert not img.was_rgb and "alpha channel dropped" in img.notes
    np.testing.assert_allclose(img.data, la[..., 0] / 255.0, atol=1e-7)
    Image.fromarray(la[..., 0]).convert("P").save(tmp_path / "p.png")
    assert load_image(tmp_path / "p.png").data.shape == (6, 6)


def test_tiff_16bit_and_float(tmp_path):
    data = (levels((20, 30), 65535) / 65535).astype(np.float32)
    p = save_image(tmp_path / "x.tif", data, 16, {"provenance": "BrainSR x2"})
    img = load_image(p)
    assert img.bit_depth == 16
    np.testing.assert_allclose(img.data, data, atol=1e-7)
    with Image.open(p) as im:
        assert "BrainSR x2" in im.tag_v2[270]
    f = np.linspace(-50.0, 3000.0, 600, dtype=np.float32).reshape(20, 30)
    img = load_image(save_image(tmp_path / "f.tiff", f, 32))
    assert img.bit_depth == 32 and any("floating" in n for n in img.notes)
    np.testing.assert_array_equal(img.data, f)


def test_jpeg_8bit_only_with_comment(tmp_path):
    data = np.tile(np.linspace(0, 1, 64, dtype=np.float32), (64, 1))
    p = save_image(tmp_path / "x.jpg", data, 8, {"provenance": "AI-enhanced"})
    img = load_image(p)
    assert img.bit_depth == 8 and np.abs(img.data - data).max() < 0.03
    with Image.open(p) as im:
        assert b"AI-enhanced" in im.info["comment"]
    with pytest.raises(ValueError):
        save_image(tmp_path / "y.jpg", data, 16)
    with pytest.raises(InputError, match="extension"):
        save_image(tmp_path / "y.bmp", data, 8)


def test_error_paths(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_image(tmp_path / "missing.png")
    (tmp_path / "zero.png").write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        load_image(tmp_path / "zero.png")
    (tmp_path / "garbage.jpg").write_bytes(b"definitely not an image" * 50)
    with pytest.raises(InputError, match="not a readable") as e:
        load_image(tmp_path / "garbage.jpg")
    assert e.value.path == tmp_path / "garbage.jpg"
    with pytest.raises(InputError, match="folder"):
        load_image(tmp_path)


@pytest.mark.parametrize("ext", [".png", ".jpg", ".tif"])
def test_truncated_files(tmp_path, ext, png_encoder):
    data = np.random.default_rng(3).random((64, 64)).astype(np.float32)
    full = save_image(tmp_path / f"full{ext}", data, 8).read_bytes()
    cut = tmp_path / f"cut{ext}"
    cut.write_bytes(full[: len(full) // 2])
    with pytest.raises(InputError, match="cut"):
        load_image(cut)

"""Window/level: header parsing with fallbacks, percentile presets, right-drag mapping."""
import math

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from viewer import window_level as wl
from viewer.window_level import ImageStats, WindowLevel



def _ds(**kw) -> Dataset:
    ds = Dataset()
    for k, v in kw.items():
        setattr(ds, k, v)
    return ds


def _brain_like(rng=np.random.default_rng(0)) -> np.ndarray:
    img = np.zeros((64, 64), np.float32)
    yy, xx = np.mgrid[:64, :64]
    inside = (yy - 32) ** 2 + (xx - 32) ** 2 < 25 ** 2
    img[inside] = rng.normal(600, 80, inside.sum())
    img[30:34, 30:34] = 1800  # a small bright spot
    return img


def test_single_valued_header_window():
    assert wl.header_window(_ds(WindowCenter=816, WindowWidth=1563)) == WindowLevel(816, 1563)


def test_multi_valued_header_takes_first_valid():
    ds = _ds(WindowCenter=[40, 300], WindowWidth=[0, 1500])  # first pair has width 0 → invalid
    assert wl.header_window(ds) == WindowLevel(300, 1500)
    ds = _ds(WindowCenter=[40, 300], WindowWidth=[400, 1500])
    assert wl.header_window(ds) == WindowLevel(40, 400)


@pytest.mark.parametrize("center,width", [(100, 0), (100, -5), (float("nan"), 300), (100, float("nan")),
                                          (100, float("inf"))])
def test_invalid_header_window_falls_back_to_percentiles(center, width):
    ds = _ds()
    ds.WindowCenter, ds.WindowWidth = center, width
    assert wl.header_window(ds) is None
    img = _brain_like()
    stats = ImageStats.of(img)
    got = wl.initial_window(wl.header_window(ds), stats)
    fg = img[img > img.min()]
    assert got.lower == pytest.approx(np.percentile(fg, 1))
    assert got.upper == pytest.approx(np.percentile(fg, 99))


def test_voi_lut_window_in_modality_units():
    item = Dataset()
    item.LUTDescriptor = [1024, 100, 12]
    item.LUTData = list(range(1024))
    ds = _ds(VOILUTSequence=Sequence([item]), RescaleSlope=2.0, RescaleIntercept=-10.0)
    got = wl.header_window(ds)
    assert got.lower == pytest.approx(100 * 2 - 10)
    assert got.upper == pytest.approx((100 + 1023) * 2 - 10)


def test_header_window_beats_voi_lut_and_none_without_either():
    item = Dataset()
    item.LUTDescriptor = [256, 0, 8]
    ds = _ds(VOILUTSequence=Sequence([item]), WindowCenter=50, WindowWidth=20)
    assert wl.header_window(ds) == WindowLevel(50, 20)
    assert wl.header_window(_ds()) is None
    assert wl.header_window(None) is None


def test_unparseable_values_are_invalid():
    assert wl.first_valid("abc", 10) is None
    assert wl.first_valid(["abc", 5], [10, 20]) == WindowLevel(5, 20)


def test_frame_window_pairs():
    assert wl.first_valid_pair([(1, 0), (float("nan"), 3), (5, 7)]) == WindowLevel(5, 7)
    assert wl.first_valid_pair([]) is None


def test_real_header_window(hfs_folder):
    path = hfs_folder
    ds = pydicom.dcmread(sorted(path.glob("*.dcm"))[0], stop_before_pixels=True)
    got = wl.header_window(ds)
    assert got == WindowLevel(float(ds.WindowCenter), float(ds.WindowWidth)) and got.width > 0


def test_percentiles_ignore_air_background():
    img = _brain_like()
    stats = ImageStats.of(img)
    assert stats.p1 > 300, "the air at 0 must not drag the low percentile down"
    assert stats.minimum == 0 and stats.maximum == 1800


def test_constant_and_empty_images_give_a_usable_window():
    for img in (np.full((8, 8), 7.0), np.full((8, 8), np.nan), np.zeros((0, 0))):
        w = wl.percentile_window(ImageStats.of(img))
        assert w.width > 0 and math.isfinite(w.center)


def test_presets_are_relative_to_the_image():
    img = _brain_like()
    stats = ImageStats.of(img)
    full = wl.preset("Full range", stats)
    assert full.levels == (0, 1800)
    auto = wl.preset("Auto", stats)
    brain = wl.preset("Brain", stats)
    soft = wl.preset("Soft", stats)
    assert soft.width > auto.width
    assert brain.upper > auto.upper
    # scaling the image by 3 scales every preset window by 3
    stats3 = ImageStats.of(img * 3)
    for name in wl.PRESETS:
        a, b = wl.preset(name, stats), wl.preset(name, stats3)
        assert b.center == pytest.approx(3 * a.center, rel=1e-6)
        assert b.width == pytest.approx(3 * a.width, rel=1e-6)
    with pytest.raises(ValueError, match="unknown window preset"):
        wl.preset("Bone", stats)


def test_drag_maps_dx_to_width_and_dy_to_centre():
    start = WindowLevel(500, 1000)
    w = wl.drag_window(start, dx_px=50, dy_px=0, span=1000)
    assert w.center == 500 and w.width == pytest.approx(1100)
    w = wl.drag_window(start, dx_px=0, dy_px=-25, span=1000)
    assert w.width == 1000 and w.center == pytest.approx(450)
    w = wl.drag_window(start, dx_px=-10_000, dy_px=0, span=1000)
    assert w.width > 0, "dragging left never makes the window zero or negative"

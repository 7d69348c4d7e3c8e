"""Region statistics: mm → pixel mapping on both grids, PSNR/SSIM edge cases, the mirrored ROI tool."""
from __future__ import annotations

import math

import numpy as np
import pytest
from skimage.transform import resize

from viewer.roi import RectMM, compare_region, rect_to_slices, region_stats, ssim_window


def ramp(shape, spacing, a=3.0, b=7.0):
    """f(x, y) = a·x + b·y (mm) sampled at the pixel centres of a grid with (Δrow, Δcol) spacing."""
    rows = (np.arange(shape[0]) + 0.5) * spacing[0]
    cols = (np.arange(shape[1]) + 0.5) * spacing[1]
    return (a * cols[None, :] + b * rows[:, None]).astype(np.float64)


def test_rect_to_slices_anisotropic():
    # Δrow 2 mm, Δcol 0.5 mm: centres x = (c+½)·0.5 in [1, 3) → c = 2..5; y = (r+½)·2 in [4, 10) → r = 2..4
    rows, cols = rect_to_slices((1.0, 4.0, 2.0, 6.0), (10, 40), (2.0, 0.5))
    assert (rows, cols) == (slice(2, 5), slice(2, 6))


def test_rect_to_slices_clips_negative_size_and_origin():
    rows, cols = rect_to_slices((3.0, 10.0, -5.0, -12.0), (4, 4), (1.0, 1.0))   # corners flipped, partly outside
    assert (rows, cols) == (slice(0, 4), slice(0, 3))
    rows, cols = rect_to_slices((11.0, 21.0, 2.0, 2.0), (10, 10), (1.0, 1.0), origin_mm=(10.0, 20.0))
    assert (rows, cols) == (slice(1, 3), slice(1, 3))


def test_tiny_rect_selects_pixel_under_its_centre():
    rows, cols = rect_to_slices((2.1, 3.1, 0.2, 0.2), (10, 10), (1.0, 1.0))
    assert (rows, cols) == (slice(3, 4), slice(2, 3))


def test_region_stats_values():
    image = np.arange(10 * 40, dtype=np.float32).reshape(10, 40)
    s = region_stats(image, RectMM(1.0, 4.0, 2.0, 6.0), (2.0, 0.5))
    sub = image[2:5, 2:6].astype(np.float64)
    assert s.n_pixels == 12
    assert s.mean == pytest.approx(sub.mean())
    assert s.std == pytest.approx(sub.std())
    assert (s.min, s.max) == (sub.min(), sub.max())


def test_region_outside_image_is_empty():
    s = region_stats(np.ones((8, 8)), (100.0, 100.0, 5.0, 5.0), (1.0, 1.0))
    assert s.n_pixels == 0 and math.isnan(s.mean)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_same_rect_same_mean_on_refined_grid(scale):
    spacing = (1.2, 0.8)
    fine = (spacing[0] / scale, spacing[1] / scale)
    lr = ramp((20, 30), spacing)
    hr = ramp((20 * scale, 30 * scale), fine)
    edge_aligned = (5 * 0.8, 3 * 1.2, 7 * 0.8, 9 * 1.2)
    a, b = region_stats(lr, edge_aligned, spacing), region_stats(hr, edge_aligned, fine)
    assert b.n_pixels == a.n_pixels * scale * scale
    assert b.mean == pytest.approx(a.mean, rel=1e-12)
    # an arbitrary rectangle: both grids agree to within a fine pixel of the ramp's slope
    arbitrary = (3.3, 4.7, 9.1, 6.2)
    a, b = region_stats(lr, arbitrary, spacing), region_stats(hr, arbitrary, fine)
    assert abs(a.mean - b.mean) < 3 * 0.8 + 7 * 1.2
    const_lr, const_hr = np.full((20, 30), 5.5), np.full((20 * scale, 30 * scale), 5.5)
    assert region_stats(const_lr, arbitrary, spacing).mean == region_stats(const_hr, arbitrary, fine).mean == 5.5


def test_same_mean_on_bicubic_upsampled_smooth_image():
    spacing, scale = (1.0, 0.5), 2
    yy, xx = np.mgrid[0:48, 0:64]
    lr = 100 + 50 * np.exp(-(((xx - 30) / 12.0) ** 2 + ((yy - 22) / 9.0) ** 2))
    hr = resize(lr, (96, 128), order=3, mode="edge", anti_aliasing=False)   # pixel-centre convention, FOV kept
    rect = (8.0, 12.0, 10.0, 14.0)
    a = region_stats(lr, rect, spacing)
    b = region_stats(hr, rect, (spacing[0] / scale, spacing[1] / scale))
    assert b.mean == pytest.approx(a.mean, rel=2e-3)
    assert b.max == pytest.approx(a.max, rel=1e-2)


def test_ssim_window():
    assert ssim_window(2, 10) is None
    assert ssim_window(3, 3) == 3
    assert ssim_window(4, 10) == 3
    assert ssim_window(6, 6) == 5
    assert ssim_window(100, 50) == 7


def _pair(scale=2, seed=0):
    rng = np.random.default_rng(seed)
    original = rng.normal(100, 10, (32, 32))
    interpolated = resize(original, (32 * scale, 32 * scale), order=3, mode="edge", anti_aliasing=False)
    return original, interpolated


def test_compare_identical_is_inf_and_one():
    original, interp = _pair()
    c = compare_region(original, interp.copy(), interp, (4.0, 4.0, 10.0, 8.0), (1.0, 1.0), 2)
    assert c.psnr == math.inf
    assert c.ssim == pytest.approx(1.0)
    assert c.enhanced.mean == pytest.approx(c.interpolated.mean)
    assert c.original.n_pixels == 80 and c.enhanced.n_pixels == 320


def test_compare_different_is_finite_and_below_one():
    original, interp = _pair()
    enhanced = interp + np.random.default_rng(1).normal(0, 5, interp.shape)
    c = compare_region(original, enhanced, interp, (4.0, 4.0, 10.0, 8.0), (1.0, 1.0), 2)
    assert 0 < c.psnr < 60
    assert -1 < c.ssim < 0.99
    worse = compare_region(original, interp + np.random.default_rng(1).normal(0, 20, interp.shape), interp,
                           (4.0, 4.0, 10.0, 8.0), (1.0, 1.0), 2)
    assert worse.psnr < c.psnr and worse.ssim < c.ssim


def test_compare_small_rect_has_no_ssim():
    original, interp = _pair()
    enhanced = interp + 1.0
    c = compare_region(original, enhanced, interp, (4.0, 4.0, 0.9, 10.0), (1.0, 1.0), 2)   # 2 fine columns
    assert c.enhanced.n_pixels == 2 * 20
    assert c.ssim is None and math.isfinite(c.psnr)


def test_compare_outside_and_bad_shapes():
    original, interp = _pair()
    c = compare_region(original, interp, interp, (500.0, 500.0, 5.0, 5.0), (1.0, 1.0), 2)
    assert c.psnr is None and c.ssim is None and c.original.n_pixels == 0
    with pytest.raises(ValueError):
        compare_region(original, interp[:-1], interp, (0, 0, 5, 5), (1.0, 1.0), 2)


def test_compare_flat_region_uses_fallback_range():
    original = np.full((8, 8), 50.0)
    interp = np.full((16, 16), 50.0)
    c = compare_region(original, interp + 0.5, interp, (0.0, 0.0, 8.0, 8.0), (1.0, 1.0), 2)
    assert c.psnr == pytest.approx(10 * math.log10(50.0 ** 2 / 0.25))


# ------------------------------------------------------------------------------------------------ Qt


class FakeDrag:
    """Just enough of pyqtgraph's MouseDragEvent for DragCatcher."""

    def __init__(self, vb, p0_mm, p1_mm, start, finish, modifiers):
        from PySide6 import QtCore
        self._down = vb.mapViewToScene(QtCore.QPointF(*p0_mm))
        self._pos = vb.mapViewToScene(QtCore.QPointF(*p1_mm))
        self._start, self._finish, self._mods = start, finish, modifiers
        self.accepted = None

    def button(self):
        from PySide6 import QtCore
        return QtCore.Qt.MouseButton.LeftButton

    def isStart(self):
        return self._start

    def isFinish(self):
        return self._finish

    def modifiers(self):
        return self._mods

    def buttonDownScenePos(self):
        return self._down

    def scenePos(self):
        return self._pos

    def accept(self):
        self.accepted = True

    def ignore(self):
        self.accepted = False


@pytest.fixture
def two_views(qtbot):
    import pyqtgraph as pg
    widget = pg.GraphicsLayoutWidget()
    qtbot.addWidget(widget)
    vbs = [widget.addViewBox(row=0, col=i, invertY=True, lockAspect=True) for i in range(2)]
    for vb in vbs:
        vb.setRange(xRange=(0, 100), yRange=(0, 100), padding=0)
    widget.resize(600, 300)
    widget.show()
    qtbot.waitExposed(widget)
    return widget, vbs


def _rect_of(roi):
    return (roi.pos().x(), roi.pos().y(), roi.size().x(), roi.size().y())


def test_roi_tool_mirrors_and_emits(qtbot, two_views):
    from viewer.roi import RoiTool
    _, vbs = two_views
    tool = RoiTool(vbs)
    with qtbot.waitSignal(tool.regionChanged) as sig:
        tool.set_rect((10.0, 20.0, 30.0, 15.0))
    assert sig.args[0] == RectMM(10.0, 20.0, 30.0, 15.0)
    a, b = tool.rois()
    assert _rect_of(a) == _rect_of(b) == (10.0, 20.0, 30.0, 15.0)
    with qtbot.waitSignal(tool.regionMoving) as sig:
        b.setPos((40.0, 45.0))
    assert _rect_of(a) == (40.0, 45.0, 30.0, 15.0)
    assert sig.args[0] == RectMM(40.0, 45.0, 30.0, 15.0)
    with qtbot.waitSignal(tool.regionCleared):
        tool.clear()
    assert tool.rect() is None and all(r.scene() is None for r in (a, b))


def test_roi_drawn_by_shift_drag_only(qtbot, two_views):
    from PySide6 import QtCore

    from viewer.roi import RoiTool
    _, vbs = two_views
    tool = RoiTool(vbs)
    catcher = tool._catchers[1]
    none = QtCore.Qt.KeyboardModifier.NoModifier
    plain = FakeDrag(vbs[1], (10, 10), (30, 40), True, False, none)
    catcher.mouseDragEvent(plain)
    assert plain.accepted is False and tool.rect() is None     # the ViewBox pans instead
    shift = QtCore.Qt.KeyboardModifier.ShiftModifier
    catcher.mouseDragEvent(FakeDrag(vbs[1], (30, 40), (20, 25), True, False, shift))
    with qtbot.waitSignal(tool.regionChanged) as sig:
        end = FakeDrag(vbs[1], (30, 40), (10, 10), False, True, none)   # Shift may be released mid-drag
        catcher.mouseDragEvent(end)
    assert end.accepted
    r = sig.args[0]
    assert (r.x, r.y, r.width, r.height) == pytest.approx((10, 10, 20, 30), abs=0.5)
    assert _rect_of(tool.rois()[0]) == pytest.approx(_rect_of(tool.rois()[1]))
    tool.set_mode(True)
    tool._catchers[0].mouseDragEvent(FakeDrag(vbs[0], (50, 50), (60, 70), True, True, none))
    assert tool.rect().x == pytest.approx(50, abs=0.5)


def test_stats_panel_and_runner(qtbot):
    from viewer.roi import RegionStatsRunner, RoiStatsPanel
    original, interp = _pair()
    panel = RoiStatsPanel()
    qtbot.addWidget(panel)
    runner = RegionStatsRunner()
    args = (original, interp, interp, (4.0, 4.0, 10.0, 8.0), (1.0, 1.0), 2)
    with qtbot.waitSignal(runner.ready, timeout=5000) as sig:
        runner.request(*args)
    cmp = sig.args[0]
    assert cmp == compare_region(*args)
    panel.set_comparison(cmp)
    assert panel.cell("PSNR (dB)", "enhanced").startswith("∞ ")
    assert panel.cell("SSIM", "enhanced") == "1"
    assert float(panel.cell("mean", "original")) == pytest.approx(cmp.original.mean, rel=1e-3)
    assert panel.cell("pixels", "enhanced") == "320"
    small = compare_region(original, interp + 1, interp, (4.0, 4.0, 0.9, 10.0), (1.0, 1.0), 2)
    panel.set_comparison(small)
    assert panel.cell("SSIM", "enhanced").startswith("–") and panel.cell("PSNR (dB)", "original")[0].isdigit()
    panel.set_comparison(None)
    assert panel.cell("mean", "original") == ""
    with qtbot.waitSignal(runner.failed, timeout=5000):
        runner.request(original, interp[:-1], interp, (0, 0, 5, 5), (1.0, 1.0), 2)


def _send_drag(qtbot, widget, vb, p0_mm, p1_mm, modifiers):
    """A real press–move–release on the view's viewport (pyqtgraph drops moves closer than a frame apart)."""
    from PySide6 import QtCore, QtGui, QtWidgets
    viewport = widget.viewport()
    left, nobutton = QtCore.Qt.MouseButton.LeftButton, QtCore.Qt.MouseButton.NoButton
    a = widget.mapFromScene(vb.mapViewToScene(QtCore.QPointF(*p0_mm)))
    b = widget.mapFromScene(vb.mapViewToScene(QtCore.QPointF(*p1_mm)))
    steps = [(QtCore.QEvent.Type.MouseButtonPress, a, left, left),
             (QtCore.QEvent.Type.MouseMove, a + (b - a) * 0.5, nobutton, left),
             (QtCore.QEvent.Type.MouseMove, b, nobutton, left),
             (QtCore.QEvent.Type.MouseButtonRelease, b, left, nobutton)]
    for kind, p, button, buttons in steps:
        event = QtGui.QMouseEvent(kind, QtCore.QPointF(p), QtCore.QPointF(viewport.mapToGlobal(p)),
                                  button, buttons, modifiers)
        QtWidgets.QApplication.sendEvent(viewport, event)
        qtbot.wait(40)


def test_shift_drag_through_the_scene(qtbot, two_views):
    from PySide6 import QtCore

    from viewer.roi import RoiTool
    widget, vbs = two_views
    tool = RoiTool(vbs)
    before = vbs[0].viewRange()
    _send_drag(qtbot, widget, vbs[0], (10, 10), (40, 50), QtCore.Qt.KeyboardModifier.NoModifier)
    assert tool.rect() is None and vbs[0].viewRange() != before     # plain drag pans
    vbs[0].setRange(xRange=(0, 100), yRange=(0, 100), padding=0)
    with qtbot.waitSignal(tool.regionChanged, timeout=2000):
        _send_drag(qtbot, widget, vbs[0], (10, 10), (40, 50), QtCore.Qt.KeyboardModifier.ShiftModifier)
    r = tool.rect()
    assert (r.x, r.y, r.width, r.height) == pytest.approx((10, 10, 30, 40), abs=1.0)
    assert _rect_of(tool.rois()[1]) == pytest.approx(_rect_of(tool.rois()[0]))

"""Difference overlay: sign → colour, transparency near zero, opacity, robust scale, the Qt overlay item."""
from __future__ import annotations

import numpy as np
import pytest

from viewer.difference import DEAD_ZONE, difference_map, difference_rgba, disagreement_map, robust_scale


def test_difference_map_sign_and_type():
    e = np.array([[5, 1], [3, 3]], dtype=np.uint16)
    i = np.array([[2, 4], [3, 1]], dtype=np.float64)
    d = difference_map(e, i)
    assert d.dtype == np.float32
    np.testing.assert_array_equal(d, [[3, -3], [0, 2]])
    with pytest.raises(ValueError):
        difference_map(np.zeros((4, 4)), np.zeros((4, 5)))
    np.testing.assert_array_equal(disagreement_map(e, i), [[3, 3], [0, 2]])


def test_colours_by_sign_and_transparent_near_zero():
    d = np.array([[10.0, -10.0, 0.0, 0.5 * DEAD_ZONE * 10.0, np.nan]])
    rgba = difference_rgba(d, scale=10.0, opacity=1.0)
    assert rgba.shape == (1, 5, 4) and rgba.dtype == np.uint8
    red, blue, zero, tiny, nan = rgba[0]
    assert red[0] > 200 and red[2] < 80 and red[3] == 255
    assert blue[2] > 200 and blue[0] < 80 and blue[3] == 255
    assert zero[3] == 0 and tiny[3] == 0 and nan[3] == 0


def test_alpha_grows_with_magnitude_and_opacity():
    d = np.linspace(-20, 20, 41, dtype=np.float32)[None, :]
    alpha = difference_rgba(d, scale=20.0, opacity=0.5)[0, :, 3].astype(int)
    assert alpha[20] == 0
    assert np.all(np.diff(alpha[20:]) >= 0) and np.all(np.diff(alpha[:21]) <= 0)
    assert alpha[-1] == alpha[0] == 128
    assert np.all(difference_rgba(d, scale=20.0, opacity=0.0)[..., 3] == 0)


def test_robust_scale_ignores_outliers_and_respects_window():
    rng = np.random.default_rng(0)
    d = rng.normal(0, 1, (64, 64)).astype(np.float32)
    d[0, 0] = 1e6
    assert 2 < robust_scale(d) < 4
    # noise-level differences under a wide window stay invisible; without the window they would be coloured
    assert np.all(difference_rgba(d * 0.1, window_width=1000.0)[1:, 1:, 3] == 0)
    assert np.count_nonzero(difference_rgba(d * 0.1)[..., 3]) > 0.5 * d.size
    assert robust_scale(np.zeros((4, 4))) == 1.0


def test_sequential_map_and_bad_cmap():
    a = np.zeros((2, 2))
    b = np.array([[0.0, 1.0], [2.0, 4.0]])
    rgba = difference_rgba(disagreement_map(a, b), cmap="sequential", scale=4.0)
    assert rgba[0, 0, 3] == 0 and rgba[1, 1, 3] == 255
    assert not np.array_equal(rgba[1, 1, :3], difference_rgba(b, scale=4.0)[1, 1, :3])
    with pytest.raises(ValueError):
        difference_rgba(b, cmap="rainbow")


def test_overlay_item_and_control(qtbot):
    from PySide6 import QtCore

    from viewer.difference_overlay import DifferenceOverlay, OpacityControl
    rng = np.random.default_rng(1)
    interp = rng.normal(100, 5, (20, 30)).astype(np.float32)
    enhanced = interp.copy()
    enhanced[5:8, 10:14] += 40
    overlay = DifferenceOverlay(opacity=0.6)
    overlay.set_data(enhanced, interp, rect_mm=(0.0, 0.0, 15.0, 20.0))
    assert overlay.image.shape == (20, 30, 4)
    assert overlay.mapRectToParent(overlay.boundingRect()) == QtCore.QRectF(0, 0, 15, 20)
    alpha = overlay.image[..., 3]
    assert alpha[6, 12] == round(0.6 * 255) and alpha[0, 0] == 0
    np.testing.assert_array_equal(overlay.difference(), enhanced - interp)

    control = OpacityControl(opacity=0.6)
    qtbot.addWidget(control)
    control.connect_overlay(overlay)
    assert not overlay.isVisible()                  # check box starts off
    with qtbot.waitSignal(control.opacityChanged) as sig:
        control.slider.setValue(30)
    assert sig.args == [0.3]
    assert overlay.image[6, 12, 3] == round(0.3 * 255)
    control.check.setChecked(True)
    assert overlay.isVisible()


def test_overlay_follows_the_enhanced_image_item(qtbot):
    import pyqtgraph as pg
    from PySide6 import QtCore

    from viewer.difference_overlay import DifferenceOverlay
    vb = pg.ViewBox()
    enhanced_item = pg.ImageItem(np.zeros((40, 60), np.float32), axisOrder="row-major")
    enhanced_item.setRect(QtCore.QRectF(0, 0, 30, 20))
    vb.addItem(enhanced_item)
    overlay = DifferenceOverlay()
    vb.addItem(overlay)
    overlay.follow(enhanced_item)
    overlay.set_data(np.ones((40, 60)), np.zeros((40, 60)))
    assert overlay.zValue() > enhanced_item.zValue()
    assert overlay.mapRectToView(overlay.boundingRect()) == enhanced_item.mapRectToView(enhanced_item.boundingRect())
    overlay.clear_data()
    assert overlay.difference() is None


def test_the_viewer_spread_is_the_one_in_srgan_and_the_maps_are_qt_free():
    """One flip/rotation spread (the worker uses ``srgan.inference.tta``'s), and the colouring the Qt-free viewer
    model may use imports no Qt."""
    import subprocess
    import sys

    import srgan.inference.tta as tta
    import viewer.workers as workers
    assert workers.tta_spread is tta.tta_spread
    code = ("import sys; sys.modules['PySide6'] = None; sys.modules['pyqtgraph'] = None; "
            "import viewer.difference as d; print(d.robust_scale(__import__('numpy').ones((4, 4)), 10.0))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert float(out.stdout) > 0

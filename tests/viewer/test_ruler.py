"""Ruler: mm distances with anisotropic pixels, mirrored segment and its label."""
from __future__ import annotations

import math

import pytest

from viewer.ruler import distance_mm, format_length, pixel_distance_mm, pixel_to_mm


def test_distance_mm():
    assert distance_mm((0, 0), (3, 4)) == 5.0
    assert distance_mm((1.5, -2), (1.5, -2)) == 0.0
    assert distance_mm((3, 4), (0, 0)) == distance_mm((0, 0), (3, 4))


def test_anisotropic_pixels():
    spacing = (2.0, 0.5)        # (Δrow, Δcol) mm
    assert pixel_to_mm(0, 0, spacing) == (0.25, 1.0)
    # 3 rows down = 6 mm, 8 columns across = 4 mm
    assert pixel_distance_mm((0, 0), (3, 8), spacing) == pytest.approx(math.hypot(6, 4))
    assert pixel_distance_mm((0, 0), (0, 8), spacing) == pytest.approx(4.0)
    assert pixel_distance_mm((0, 0), (8, 0), spacing) == pytest.approx(16.0)


def test_format_length():
    assert format_length(5.0) == "5.00 mm"
    assert format_length(123.456) == "123.5 mm"


@pytest.fixture
def two_views(qtbot):
    import pyqtgraph as pg
    widget = pg.GraphicsLayoutWidget()
    qtbot.addWidget(widget)
    vbs = [widget.addViewBox(row=0, col=i, invertY=True) for i in range(2)]
    for vb in vbs:
        vb.setRange(xRange=(0, 100), yRange=(0, 100), padding=0)
    return widget, vbs


def test_ruler_mirrors_and_labels(qtbot, two_views):
    from PySide6 import QtCore

    from viewer.ruler import RulerTool
    _, vbs = two_views
    ruler = RulerTool(vbs)
    assert ruler.points() is None and ruler.label_text() == ""
    with qtbot.waitSignal(ruler.lengthChanged) as sig:
        ruler.set_points((10.0, 20.0), (13.0, 24.0))
    assert sig.args == [5.0]
    assert ruler.label_text() == "5.00 mm"
    a, b = ruler.lines()
    assert RulerTool._endpoints(b) == ((10.0, 20.0), (13.0, 24.0))
    # drag the second viewport's end handle: the first follows, the label updates
    with qtbot.waitSignal(ruler.lengthChanged) as sig:
        b.movePoint(b.handles[1]["item"], QtCore.QPointF(40.0, 60.0), coords="parent")
    (p0, p1) = RulerTool._endpoints(a)
    assert p0 + p1 == pytest.approx((10.0, 20.0, 40.0, 60.0))
    assert sig.args[0] == pytest.approx(50.0)
    assert ruler.label_text() == "50.0 mm"
    with qtbot.waitSignal(ruler.removed):
        ruler.clear()
    assert ruler.points() is None and a.scene() is None and b.scene() is None


def test_ruler_drawn_in_mode(qtbot, two_views):
    from PySide6 import QtCore

    from viewer.ruler import RulerTool
    _, vbs = two_views
    ruler = RulerTool(vbs[:1])
    none, ctrl = QtCore.Qt.KeyboardModifier.NoModifier, QtCore.Qt.KeyboardModifier.ControlModifier
    assert not ruler._wants_drag(none) and ruler._wants_drag(ctrl)
    ruler.set_mode(True)
    assert ruler._wants_drag(none)
    ruler._on_draw((0.0, 0.0), (6.0, 8.0), True)
    assert ruler.length_mm() == pytest.approx(10.0)

"""Ruler: a line segment whose length is shown in mm.

Images are placed in view coordinates equal to mm of the slice plane (x along columns, y along rows), so a
segment's end points are mm already and anisotropic pixel spacing is handled by the placement. Pixel indices
are converted with :func:`pixel_to_mm` (centre of pixel (r, c) = ((c + ½)Δc, (r + ½)Δr)).

Qt-free: :func:`distance_mm`, :func:`pixel_to_mm`, :func:`pixel_distance_mm`, :func:`format_length`.
Qt: :class:`RulerTool` (mirrored ``pg.LineSegmentROI`` + length label on each viewport).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import pyqtgraph as pg
from PySide6 import QtCore

from viewer.roi import MirroredDrawTool

Point = tuple[float, float]


def distance_mm(p0_mm: Sequence[float], p1_mm: Sequence[float]) -> float:
    """Euclidean distance (mm) between two points given in mm."""
    return math.hypot(float(p1_mm[0]) - float(p0_mm[0]), float(p1_mm[1]) - float(p0_mm[1]))


def pixel_to_mm(row: float, col: float, pixel_spacing: Sequence[float]) -> Point:
    """(x, y) mm of the centre of pixel (row, col); ``pixel_spacing`` is (Δrow, Δcol) as in DICOM."""
    return ((float(col) + 0.5) * float(pixel_spacing[1]), (float(row) + 0.5) * float(pixel_spacing[0]))


def pixel_distance_mm(rc0: Sequence[float], rc1: Sequence[float], pixel_spacing: Sequence[float]) -> float:
    """Distance (mm) between the centres of pixels ``rc0`` = (row, col) and ``rc1`` with (Δrow, Δcol) spacing."""
    return distance_mm(pixel_to_mm(*rc0, pixel_spacing), pixel_to_mm(*rc1, pixel_spacing))


def format_length(mm: float) -> str:
    """"12.3 mm" (one decimal; two below 10 mm where a pixel is often under a millimetre)."""
    return f"{mm:.2f} mm" if mm < 10 else f"{mm:.1f} mm"


class RulerTool(MirroredDrawTool):
    """One ruler mirrored on several viewports (same mm end points), drawn by Ctrl+drag or in "Ruler" mode.

    ``RulerTool([left_viewbox, right_viewbox])``; pass a single viewbox for a per-side ruler. Dragging either
    end point or the line on one viewport moves it everywhere. ``lengthChanged(float mm)`` on every change;
    ``removed()`` when cleared (also via the ROI's context menu "Remove ROI").
    """

    lengthChanged = QtCore.Signal(float)
    removed = QtCore.Signal()

    def __init__(self, viewboxes: Sequence[pg.ViewBox], parent: QtCore.QObject | None = None, pen=None,
                 draw_modifier=QtCore.Qt.KeyboardModifier.ControlModifier):
        self._lines: list[pg.LineSegmentROI] = []
        self._labels: list[pg.TextItem] = []
        super().__init__(viewboxes, parent, pen if pen is not None else pg.mkPen((0, 230, 255), width=1.5),
                         draw_modifier)

    def set_points(self, p0_mm: Point, p1_mm: Point) -> None:
        """Place the ruler from ``p0_mm`` to ``p1_mm`` (x, y mm) on every viewport."""
        if not self._lines:
            self._create(p0_mm, p1_mm)
        else:
            self._apply(p0_mm, p1_mm, source=None)
        self._update_labels()

    def points(self) -> tuple[Point, Point] | None:
        """The end points (mm) or None when there is no ruler."""
        if not self._lines:
            return None
        return self._endpoints(self._lines[0])

    def length_mm(self) -> float | None:
        pts = self.points()
        return None if pts is None else distance_mm(*pts)

    def label_text(self) -> str:
        """The text of the length label ("" without a ruler)."""
        return self._labels[0].toPlainText() if self._labels else ""

    def clear(self) -> None:
        """Remove the ruler from every viewport."""
        if not self._lines:
            return
        for vb, line, label in zip(self._viewboxes, self._lines, self._labels):
            vb.removeItem(line)
            vb.removeItem(label)
        self._lines, self._labels = [], []
        self.removed.emit()

    def lines(self) -> list[pg.LineSegmentROI]:
        return list(self._lines)

    def _on_draw(self, p0: Point, p1: Point, finished: bool) -> None:
        self.set_points(p0, p1)

    def _create(self, p0: Point, p1: Point) -> None:
        for vb in self._viewboxes:
            line = pg.LineSegmentROI([p0, p1], pen=self._pen, removable=True)
            line.setZValue(1000)
            label = pg.TextItem("", color=(0, 230, 255), anchor=(0, 1), fill=pg.mkBrush(0, 0, 0, 150))
            label.setZValue(1001)
            vb.addItem(line)
            vb.addItem(label, ignoreBounds=True)
            line.sigRegionChanged.connect(self._line_moved)
            line.sigRemoveRequested.connect(lambda *_: QtCore.QTimer.singleShot(0, self.clear))
            self._lines.append(line)
            self._labels.append(label)

    @staticmethod
    def _endpoints(line: pg.LineSegmentROI) -> tuple[Point, Point]:
        pts = [line.mapToParent(h["item"].pos()) for h in line.handles]
        return (pts[0].x(), pts[0].y()), (pts[1].x(), pts[1].y())

    def _apply(self, p0: Point, p1: Point, source) -> None:
        self._syncing = True
        try:
            for line in self._lines:
                if line is source:
                    continue
                line.setPos((0.0, 0.0), update=False)
                line.movePoint(line.handles[0]["item"], QtCore.QPointF(*p0), coords="parent", finish=False)
                line.movePoint(line.handles[1]["item"], QtCore.QPointF(*p1), coords="parent", finish=False)
        finally:
            self._syncing = False

    def _line_moved(self, line) -> None:
        if self._syncing:
            return
        p0, p1 = self._endpoints(line)
        self._apply(p0, p1, source=line)
        self._update_labels()

    def _update_labels(self) -> None:
        if not self._lines:
            return
        p0, p1 = self._endpoints(self._lines[0])
        length = distance_mm(p0, p1)
        for label in self._labels:
            label.setText(format_length(length))
            label.setPos((p0[0] + p1[0]) / 2, (p0[1] + p1[1]) / 2)
        self.lengthChanged.emit(length)

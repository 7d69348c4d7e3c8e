"""One image viewport: a pyqtgraph ViewBox in millimetres, with corner text and orientation letters.

View coordinates are the slice plane's mm (``viewer.state``): x → columns, y → rows (pointing down), from the
top-left edge of the first pixel. Every image (original, ×s interpolation, ×s enhancement) is placed with
``ImageItem.setRect`` on the same mm rectangle, so non-square PixelSpacing shows with the right aspect and
grids of different resolution line up exactly. The visible range comes from ``ViewState`` (zoom in screen
px per mm, pan centre in mm), which is how two viewports stay linked.

Mouse: left-drag pans, wheel steps slices, Ctrl+wheel zooms about the cursor, right-drag changes W/L.
The viewport writes these gestures into the shared ``ViewState``; it never decides what image to show.
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from viewer.state import ViewState
from viewer.window_level import drag_window

pg.setConfigOptions(imageAxisOrder="row-major")

TEXT_COLOR = "#cfd6de"
DIM_COLOR = "#8a96a3"
AI_COLOR = "#f0b44c"      # amber: "this image was made by a model"
ERROR_COLOR = "#e57373"
MARKER_COLOR = "#9fd0ff"
WHEEL_STEP = 120          # one mouse-wheel notch (QWheelEvent angle delta)
ZOOM_PER_NOTCH = 1.15


class SliceViewBox(pg.ViewBox):
    """A ViewBox whose mouse gestures are reported as signals instead of moving the range itself.

    ``panned(dx, dy)`` screen px since the last move (left drag);
    ``window_dragged(dx, dy, start, finish)`` screen px since the press (right drag);
    ``wheeled(steps, ctrl, x_mm, y_mm)`` whole notches, with the cursor position in mm.
    Tools (ROI, ruler) put items in the box that take left drags first when they want them.
    """

    panned = QtCore.Signal(float, float)
    window_dragged = QtCore.Signal(float, float, bool, bool)
    wheeled = QtCore.Signal(int, bool, float, float)
    hovered = QtCore.Signal(float, float)

    def __init__(self):
        super().__init__(enableMenu=False, invertY=True, lockAspect=False, defaultPadding=0.0)
        self.setMouseEnabled(False, False)
        self.disableAutoRange()
        self._wheel = 0

    def mouseDragEvent(self, ev, axis=None):
        button = ev.button()
        if button == QtCore.Qt.MouseButton.LeftButton or button == QtCore.Qt.MouseButton.MiddleButton:
            ev.accept()
            d = ev.pos() - ev.lastPos()
            self.panned.emit(float(d.x()), float(d.y()))
        elif button == QtCore.Qt.MouseButton.RightButton:
            ev.accept()
            d = ev.pos() - ev.buttonDownPos()
            self.window_dragged.emit(float(d.x()), float(d.y()), bool(ev.isStart()), bool(ev.isFinish()))
        else:
            ev.ignore()

    def mouseClickEvent(self, ev):
        ev.accept()  # no pyqtgraph context menu on right click: right button is W/L

    def wheelEvent(self, ev, axis=None):
        ev.accept()
        delta = ev.delta() if hasattr(ev, "delta") else ev.angleDelta().y()
        self._wheel += delta
        steps = int(self._wheel / WHEEL_STEP)
        if steps:
            self._wheel -= steps * WHEEL_STEP
            p = self.mapToView(ev.pos())
            ctrl = bool(ev.modifiers() & QtCore.Qt.KeyboardModifier.ControlModifier)
            self.wheeled.emit(steps, ctrl, float(p.x()), float(p.y()))

    def hoverEvent(self, ev):
        if not ev.isExit():
            p = self.mapToView(ev.pos())
            self.hovered.emit(float(p.x()), float(p.y()))


def _label(parent: QtWidgets.QWidget, align: QtCore.Qt.AlignmentFlag, color: str = TEXT_COLOR,
           point_size: float = 9.5, bold: bool = False) -> QtWidgets.QLabel:
    label = QtWidgets.QLabel(parent)
    label.setAlignment(align)
    label.setAttribute(QtCore.Qt.WidgetAttribute.WA_TransparentForMouseEvents)
    label.setTextFormat(QtCore.Qt.TextFormat.PlainText)
    font = label.font()
    font.setPointSizeF(point_size)
    font.setBold(bold)
    label.setFont(font)
    label.setStyleSheet(f"color: {color}; background: transparent;")
    shadow = QtWidgets.QGraphicsDropShadowEffect(label)
    shadow.setBlurRadius(3)
    shadow.setOffset(1, 1)
    shadow.setColor(QtGui.QColor(0, 0, 0, 230))
    label.setGraphicsEffect(shadow)
    return label


class Viewport(QtWidgets.QWidget):
    """One linked slice view. ``role`` is "original" or "enhanced" (only changes the default caption)."""

    resized = QtCore.Signal()

    CORNERS = ("top_left", "top_right", "bottom_left", "bottom_right")
    MARGIN = 8

    def __init__(self, state: ViewState, role: str = "original", parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.state = state
        self.role = role
        self.view = pg.GraphicsView(self, background=(6, 7, 9))
        self.view.setFrameShape(QtWidgets.QFrame.Shape.NoFrame)
        self.view.setHorizontalScrollBarPolicy(QtCore.Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.view.setVerticalScrollBarPolicy(QtCore.Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.vb = SliceViewBox()
        self.view.setCentralItem(self.vb)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.image.setZValue(0)
        self.vb.addItem(self.image)
        self.image_rect: tuple[float, float, float, float] | None = None
        self.image_shape: tuple[int, int] | None = None

        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.view)

        a = QtCore.Qt.AlignmentFlag
        self.corners: dict[str, QtWidgets.QLabel] = {
            "top_left": _label(self, a.AlignLeft | a.AlignTop),
            "top_right": _label(self, a.AlignRight | a.AlignTop),
            "bottom_left": _label(self, a.AlignLeft | a.AlignBottom),
            "bottom_right": _label(self, a.AlignRight | a.AlignBottom),
        }
        self.markers: dict[str, QtWidgets.QLabel] = {
            side: _label(self, a.AlignCenter, MARKER_COLOR, 11, bold=True)
            for side in ("left", "right", "top", "bottom")
        }
        self._corner_lines: dict[str, list[str]] = {}
        self.placeholder = _label(self, a.AlignCenter, DIM_COLOR, 11)
        self._drag_start = None

        self.vb.panned.connect(self._on_pan)
        self.vb.window_dragged.connect(self._on_window_drag)
        self.vb.wheeled.connect(self._on_wheel)
        self.setMinimumSize(200, 200)

    # -- content ---------------------------------------------------------------------------------
    def set_image(self, image: np.ndarray | None, rect_mm: tuple[float, float, float, float] | None = None) -> None:
        """Show ``image`` (rows, cols) stretched over ``rect_mm`` = (x, y, w, h) mm; None clears the view."""
        if image is None:
            self.image.clear()
            self.image_shape = None
            return
        lo, hi = self.state.window.levels
        self.image.setImage(image, autoLevels=False, levels=(lo, hi))
        self.image_shape = tuple(image.shape[:2])
        if rect_mm is not None:
            self.image_rect = tuple(float(v) for v in rect_mm)
            self.image.setRect(QtCore.QRectF(*self.image_rect))

    def set_levels(self) -> None:
        if self.image.image is not None:
            self.image.setLevels(self.state.window.levels)

    def set_corner(self, corner: str, lines: list[str], color: str | None = None) -> None:
        """Show ``lines`` in a corner; lines too long for the corner are elided (…) rather than cut."""
        self._corner_lines[corner] = list(lines)
        if color is not None:
            self.corners[corner].setStyleSheet(f"color: {color}; background: transparent;")
        self._render_corner(corner)

    def corner_text(self, corner: str) -> str:
        """The full (not elided) text of a corner."""
        return "\n".join(self._corner_lines.get(corner, []))

    def _render_corner(self, corner: str) -> None:
        """Elide the lines to the corner's room and shrink the label to its text (a small label keeps the
        drop shadow, which is rendered per label, cheap)."""
        label = self.corners[corner]
        m = self.MARGIN
        w, h = self.width(), self.height()
        room = max(w // 2 - 2 * m - 20, 50)  # 20 px: room for the top/bottom orientation letter
        metrics = QtGui.QFontMetrics(label.font())
        mode = QtCore.Qt.TextElideMode.ElideRight  # keep the start of a line: it says what the line is
        lines = [metrics.elidedText(line, mode, room) for line in self._corner_lines.get(corner, [])]
        label.setText("\n".join(lines))
        if not lines:
            label.setGeometry(0, 0, 0, 0)
            return
        size = label.sizeHint()
        tw, th = min(size.width() + 4, room), size.height() + 2
        x = m if corner.endswith("left") else w - m - tw
        y = m if corner.startswith("top") else h - m - th
        label.setGeometry(x, y, tw, th)

    def set_markers(self, letters: dict[str, str]) -> None:
        for side, label in self.markers.items():
            label.setText(letters.get(side, ""))
        self._place_labels()

    def set_placeholder(self, text: str) -> None:
        self.placeholder.setText(text)
        self.placeholder.setVisible(bool(text))
        self._place_labels()

    # -- linked view -----------------------------------------------------------------------------
    def viewport_px(self) -> tuple[int, int]:
        size = self.view.viewport().size()
        return max(1, size.width()), max(1, size.height())

    def apply_view(self) -> None:
        """Show the mm rectangle the shared state asks for at this viewport's pixel size."""
        w, h = self.viewport_px()
        x0, y0, x1, y1 = self.state.view_rect_mm(w, h)
        self.vb.setRange(xRange=(x0, x1), yRange=(y0, y1), padding=0.0, update=True)

    def view_range_mm(self) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) mm actually shown (from the ViewBox)."""
        (x0, x1), (y0, y1) = self.vb.viewRange()
        return (x0, y0, x1, y1)

    # -- gestures → state ------------------------------------------------------------------------
    def _on_pan(self, dx: float, dy: float) -> None:
        if self.state.plane is not None:
            self.state.pan_by_px(dx, dy)

    def _on_window_drag(self, dx: float, dy: float, start: bool, finish: bool) -> None:
        if start or self._drag_start is None:
            self._drag_start = self.state.window
        self.state.set_window(drag_window(self._drag_start, dx, dy, self.state.window_span))
        if finish:
            self._drag_start = None

    def _on_wheel(self, steps: int, ctrl: bool, x_mm: float, y_mm: float) -> None:
        if self.state.plane is None:
            return
        if ctrl:
            self.state.zoom_by(ZOOM_PER_NOTCH ** steps, anchor_mm=(x_mm, y_mm))
        else:
            self.state.step_slice(-steps)  # wheel forward = previous slice, as in most PACS

    # -- layout ----------------------------------------------------------------------------------
    def resizeEvent(self, ev: QtGui.QResizeEvent) -> None:
        super().resizeEvent(ev)
        self._place_labels()
        if self.state.plane is not None:
            self.apply_view()
        self.resized.emit()

    def showEvent(self, ev: QtGui.QShowEvent) -> None:
        super().showEvent(ev)
        self._place_labels()

    def _place_labels(self) -> None:
        m = self.MARGIN
        w, h = self.width(), self.height()
        for name, label in self.corners.items():
            self._render_corner(name)
            label.raise_()
        s = 28
        marker_geo = {
            "left": QtCore.QRect(m, h // 2 - s // 2, s + 8, s),
            "right": QtCore.QRect(w - m - s - 8, h // 2 - s // 2, s + 8, s),
            "top": QtCore.QRect(w // 2 - s, m, 2 * s, s),
            "bottom": QtCore.QRect(w // 2 - s, h - m - s, 2 * s, s),
        }
        for side, label in self.markers.items():
            label.setGeometry(marker_geo[side])
            label.raise_()
        self.placeholder.setGeometry(0, 0, w, h)
        self.placeholder.raise_()

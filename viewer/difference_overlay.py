"""The difference and disagreement overlays drawn over the enhanced viewport (Qt), over the Qt-free colouring of
``viewer.difference``: :class:`DifferenceOverlay` (a ``pg.ImageItem``) and :class:`OpacityControl` (slider widget).
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from viewer.difference import difference_map, difference_rgba

__all__ = ["DifferenceOverlay", "OpacityControl"]


class DifferenceOverlay(pg.ImageItem):
    """RGBA overlay of ``enhanced − interpolated`` over the enhanced image, in the same mm placement.

    Add it to the enhanced viewport's ViewBox; :meth:`set_data` with the (sH, sW) arrays and the image's mm
    rectangle ``(0, 0, W·Δc, H·Δr)`` (or call :meth:`follow` with the enhanced ``ImageItem`` to copy its
    rectangle/transform). Row-major: array row = y, column = x. The colouring is recomputed on
    :meth:`set_opacity` from the cached difference (cheap: one pass over sH×sW).
    """

    def __init__(self, opacity: float = 0.6, cmap: str = "diverging"):
        super().__init__(axisOrder="row-major")
        self._diff: np.ndarray | None = None
        self._opacity = float(np.clip(opacity, 0.0, 1.0))
        self._cmap = cmap
        self._window_width: float | None = None
        self._rect: tuple[float, float, float, float] | None = None
        self.setZValue(10)

    def follow(self, image_item: pg.ImageItem) -> None:
        """Sit directly above ``image_item``: same parent transform and z just above it."""
        self.setTransform(image_item.transform())
        self.setPos(image_item.pos())
        self.setZValue(image_item.zValue() + 1)

    def set_data(self, enhanced: np.ndarray, interpolated: np.ndarray, rect_mm=None,
                 window_width: float | None = None) -> None:
        """Show ``enhanced − interpolated``; ``rect_mm`` = (x, y, w, h) mm of the whole image, if not followed."""
        self._diff = difference_map(enhanced, interpolated)
        self._window_width = window_width
        if rect_mm is not None:
            self._rect = tuple(float(v) for v in rect_mm)
        self._render()

    def set_difference(self, diff: np.ndarray, rect_mm=None, window_width: float | None = None,
                       cmap: str | None = None) -> None:
        """Show a precomputed map (e.g. :func:`disagreement_map` with ``cmap="sequential"``)."""
        self._diff = np.asarray(diff, dtype=np.float32)
        self._window_width = window_width
        if cmap is not None:
            self._cmap = cmap
        if rect_mm is not None:
            self._rect = tuple(float(v) for v in rect_mm)
        self._render()

    def difference(self) -> np.ndarray | None:
        """The current difference map (sH, sW) or None."""
        return self._diff

    def opacity_value(self) -> float:
        return self._opacity

    def set_opacity(self, opacity: float) -> None:
        """Overlay strength 0..1 (0 hides it without losing the data)."""
        self._opacity = float(np.clip(opacity, 0.0, 1.0))
        self._render()

    def set_visible(self, visible: bool) -> None:
        self.setVisible(bool(visible))

    def clear_data(self) -> None:
        self._diff = None
        self.clear()

    def _render(self) -> None:
        if self._diff is None:
            return
        rgba = difference_rgba(self._diff, self._window_width, self._opacity, self._cmap)
        self.setImage(rgba, autoLevels=False, levels=None)
        if self._rect is not None:
            self.setRect(QtCore.QRectF(*self._rect))


class OpacityControl(QtWidgets.QWidget):
    """"Difference" check box and opacity slider (0–100 %); emits ``opacityChanged(float 0..1)`` and
    ``visibilityChanged(bool)``."""

    opacityChanged = QtCore.Signal(float)
    visibilityChanged = QtCore.Signal(bool)

    def __init__(self, parent: QtWidgets.QWidget | None = None, opacity: float = 0.6, label: str = "Difference"):
        super().__init__(parent)
        self.check = QtWidgets.QCheckBox(label, self)
        self.check.setToolTip("Overlay enhanced − interpolated: red brighter, blue darker, clear unchanged")
        self.slider = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal, self)
        self.slider.setRange(0, 100)
        self.slider.setValue(int(round(opacity * 100)))
        self.slider.setToolTip("Overlay opacity")
        layout = QtWidgets.QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.check)
        layout.addWidget(self.slider, 1)
        self.slider.valueChanged.connect(lambda v: self.opacityChanged.emit(v / 100.0))
        self.check.toggled.connect(self.visibilityChanged)

    def opacity(self) -> float:
        return self.slider.value() / 100.0

    def set_opacity(self, opacity: float) -> None:
        self.slider.setValue(int(round(float(np.clip(opacity, 0.0, 1.0)) * 100)))

    def connect_overlay(self, overlay: DifferenceOverlay) -> None:
        """Drive ``overlay`` from this control (opacity and visibility)."""
        self.opacityChanged.connect(overlay.set_opacity)
        self.visibilityChanged.connect(overlay.set_visible)
        overlay.set_opacity(self.opacity())
        overlay.set_visible(self.check.isChecked())

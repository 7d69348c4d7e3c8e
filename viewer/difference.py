"""Difference overlay: where, and in which direction, the model changed the interpolated original.

``enhanced − interpolated`` on the refined (sH, sW) grid is shown over the enhanced image: red where the
model brightened, blue where it darkened, transparent where it left the image alone. Transparency near zero
matters: the overlay should point at the few places the model invented or removed structure, not tint the
whole slice with noise.

The same colouring (``cmap="sequential"``) shows the model's disagreement with itself: the spread of its outputs
over the eight flips/rotations of a slice, ``srgan.inference.tta.tta_spread`` (re-exported here with ``dihedral``
for the viewer's worker).

Qt-free: :func:`difference_map`, :func:`disagreement_map`, :func:`robust_scale`, :func:`difference_rgba`.
Qt: :class:`DifferenceOverlay` (a ``pg.ImageItem``), :class:`OpacityControl` (slider widget).
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from srgan.inference.tta import TTA_VIEWS, dihedral, tta_spread

__all__ = ["DEAD_ZONE", "TTA_VIEWS", "DifferenceOverlay", "OpacityControl", "difference_map", "difference_rgba",
           "dihedral", "disagreement_map", "robust_scale", "tta_spread"]

NEGATIVE_RGB = np.array([40, 110, 255], dtype=np.float32)   # model darkened: blue
POSITIVE_RGB = np.array([255, 50, 30], dtype=np.float32)    # model brightened: red
NEUTRAL_RGB = np.array([255, 255, 255], dtype=np.float32)   # near zero (invisible anyway)
SEQUENTIAL_LOW = np.array([255, 230, 40], dtype=np.float32)  # disagreement ramp: yellow → magenta
SEQUENTIAL_HIGH = np.array([230, 20, 200], dtype=np.float32)

DEAD_ZONE = 0.08          # |diff| below this fraction of the scale is fully transparent
MIN_SCALE_OF_WINDOW = 0.05  # scale never below 5 % of the window width: noise-level differences stay faint


def difference_map(enhanced: np.ndarray, interpolated: np.ndarray) -> np.ndarray:
    """Signed difference ``enhanced − interpolated`` (sH, sW) as float32, in modality units."""
    e = np.asarray(enhanced, dtype=np.float32)
    i = np.asarray(interpolated, dtype=np.float32)
    if e.shape != i.shape or e.ndim != 2:
        raise ValueError(f"need two (sH, sW) images of one shape, got {e.shape} and {i.shape}")
    return e - i


def disagreement_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Unsigned disagreement ``|a − b|`` (sH, sW) float32, e.g. between two models; show with cmap="sequential"."""
    return np.abs(difference_map(a, b))


def robust_scale(diff: np.ndarray, window_width: float | None = None, percentile: float = 99.0) -> float:
    """The |diff| that gets full colour: the ``percentile`` of |diff|, but at least 5 % of ``window_width``.

    The percentile keeps a few outliers from washing out the rest; the window floor keeps an almost
    identical pair (pure noise differences) from being blown up to full colour. Always > 0.
    """
    a = np.abs(np.asarray(diff, dtype=np.float32))
    finite = a[np.isfinite(a)]
    scale = float(np.percentile(finite, percentile)) if finite.size else 0.0
    if window_width is not None and window_width > 0:
        scale = max(scale, MIN_SCALE_OF_WINDOW * float(window_width))
    return scale if scale > 0 else 1.0


def difference_rgba(diff: np.ndarray, window_width: float | None = None, opacity: float = 1.0,
                    cmap: str = "diverging", scale: float | None = None) -> np.ndarray:
    """Colour-map a difference (sH, sW) to RGBA uint8 (sH, sW, 4) for an overlay.

    ``cmap="diverging"``: negative → blue, positive → red; ``"sequential"``: |diff| from yellow to magenta
    (for :func:`disagreement_map`). Colour strength and alpha grow with t = |diff| / scale (``scale`` defaults
    to :func:`robust_scale`); t below ``DEAD_ZONE`` is fully transparent; alpha is multiplied by ``opacity``
    (0..1). NaNs are transparent.
    """
    d = np.asarray(diff, dtype=np.float32)
    if d.ndim != 2:
        raise ValueError(f"difference must be (sH, sW), got {d.shape}")
    if cmap not in ("diverging", "sequential"):
        raise ValueError(f"unknown colour map {cmap!r}: use 'diverging' or 'sequential'")
    s = float(scale) if scale else robust_scale(d, window_width)
    finite = np.isfinite(d)
    d0 = np.where(finite, d, 0.0)
    t = np.clip(np.abs(d0) / s, 0.0, 1.0)
    strength = np.clip((t - DEAD_ZONE) / (1.0 - DEAD_ZONE), 0.0, 1.0)
    if cmap == "diverging":
        target = np.where((d0 >= 0)[..., None], POSITIVE_RGB, NEGATIVE_RGB)
        rgb = NEUTRAL_RGB + (target - NEUTRAL_RGB) * np.sqrt(strength)[..., None]
    else:
        rgb = SEQUENTIAL_LOW + (SEQUENTIAL_HIGH - SEQUENTIAL_LOW) * strength[..., None]
    alpha = 255.0 * float(np.clip(opacity, 0.0, 1.0)) * np.sqrt(strength)
    alpha[~finite] = 0.0
    out = np.empty(d.shape + (4,), dtype=np.uint8)
    out[..., :3] = np.clip(np.rint(rgb), 0, 255)
    out[..., 3] = np.clip(np.rint(alpha), 0, 255)
    return out


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

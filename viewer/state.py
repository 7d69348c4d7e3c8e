"""What the viewer shows, without Qt: series, slice, zoom/pan in millimetres, window/level, toggles.

Both viewports (original and enhanced) render the same ``ViewState``; that is how they stay linked.
Linking is in millimetres, not pixels, because the enhanced image lies on a grid ``scale`` times finer:
the in-plane coordinates are (x, y) mm along the image's row and column directions (x → columns,
y → rows, y pointing down on screen), measured from the top-left *edge* of the first pixel (the convention
``viewer.roi`` and ``viewer.ruler`` share). Original pixel (r, c) is centred at ((c + ½)·Δcol, (r + ½)·Δrow);
the original and the ×s image both cover x ∈ [0, cols·Δcol], y ∈ [0, rows·Δrow] (LR pixel i centred on
HR i·s + (s−1)/2 keeps the field of view), so each ImageItem is simply placed on that rectangle.

Zoom is screen pixels per millimetre; the pan centre is the mm point shown at the viewport centre.
Observers are plain callables ``fn(state, changed: frozenset[str])`` called after each change.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from viewer.window_level import WindowLevel

Observer = Callable[["ViewState", frozenset], None]

MIN_ZOOM = 0.05   # screen px per mm: a 20 m field of view, far beyond any scanner
MAX_ZOOM = 200.0  # 0.005 mm per screen px


@dataclass(frozen=True)
class Plane:
    """In-plane geometry of the slices of a series: the original grid, in mm."""
    rows: int
    cols: int
    row_spacing: float  # Δrow, mm between rows (first PixelSpacing value)
    col_spacing: float  # Δcol, mm between columns (second PixelSpacing value)

    @property
    def rect_mm(self) -> tuple[float, float, float, float]:
        """(x, y, width, height) mm covered by the image, identical for the original and any ×s grid."""
        return (0.0, 0.0, self.cols * self.col_spacing, self.rows * self.row_spacing)

    @property
    def centre_mm(self) -> tuple[float, float]:
        x, y, w, h = self.rect_mm
        return (x + w / 2.0, y + h / 2.0)

    def pixel_of(self, x_mm: float, y_mm: float, scale: int = 1) -> tuple[float, float]:
        """(row, col) index (fractional) on the ×scale grid of the point (x, y) mm; scale 1 = original."""
        s = float(scale)
        return (y_mm / self.row_spacing * s - 0.5, x_mm / self.col_spacing * s - 0.5)


@dataclass
class ViewState:
    """The single source of truth for both viewports. Mutate only through the methods (they notify)."""
    series_uid: str | None = None
    n_volumes: int = 0
    n_slices: int = 0
    volume: int = 0
    slice: int = 0
    plane: Plane | None = None
    zoom: float = 1.0                          # screen px per mm
    pan: tuple[float, float] = (0.0, 0.0)      # mm at the viewport centre
    fitted: bool = True                        # zoom/pan still "fit to window": refit when the window resizes
    window: WindowLevel = WindowLevel(0.5, 1.0)
    default_window: WindowLevel = WindowLevel(0.5, 1.0)
    window_span: float = 1.0                   # robust intensity span: scales right-drag W/L steps
    enhanced: bool = True                      # right viewport: model output (True) or interpolation (False)
    difference: bool = False                   # difference overlay shown
    overlay_opacity: float = 0.5
    scale: int = 2
    model: str | None = None
    _observers: list[Observer] = field(default_factory=list, repr=False, compare=False)

    # -- observers -------------------------------------------------------------------------------
    def subscribe(self, fn: Observer) -> Callable[[], None]:
        """Call ``fn(state, changed)`` after every change; returns a function that unsubscribes."""
        self._observers.append(fn)
        return lambda: self._observers.remove(fn) if fn in self._observers else None

    def _notify(self, *changed: str) -> None:
        if not changed:
            return
        names = frozenset(changed)
        for fn in list(self._observers):
            fn(self, names)

    # -- series / slice --------------------------------------------------------------------------
    def set_series(self, uid: str, n_volumes: int, n_slices: int, plane: Plane,
                   window: WindowLevel, viewport_px: tuple[int, int] | None = None,
                   window_span: float | None = None) -> None:
        """Show a new series at its middle slice, first volume, fitted, with its initial window."""
        self.series_uid = uid
        self.n_volumes, self.n_slices = max(1, n_volumes), max(1, n_slices)
        self.volume = 0
        self.slice = self.n_slices // 2
        self.plane = plane
        self.window = self.default_window = window
        self.window_span = float(window_span) if window_span and window_span > 0 else max(window.width, 1e-6)
        self.pan = plane.centre_mm
        self.fitted = True
        if viewport_px is not None:
            self.zoom = self.fit_zoom(*viewport_px)
        self._notify("series", "slice", "volume", "zoom", "pan", "window")

    def set_slice(self, index: int) -> None:
        index = min(max(int(index), 0), max(self.n_slices - 1, 0))
        if index != self.slice:
            self.slice = index
            self._notify("slice")

    def step_slice(self, delta: int, wrap: bool = False) -> None:
        if self.n_slices <= 0:
            return
        target = self.slice + int(delta)
        self.set_slice(target % self.n_slices if wrap else target)

    def set_volume(self, index: int) -> None:
        index = min(max(int(index), 0), max(self.n_volumes - 1, 0))
        if index != self.volume:
            self.volume = index
            self._notify("volume")

    # -- zoom / pan ------------------------------------------------------------------------------
    def fit_zoom(self, width_px: int, height_px: int, margin: float = 0.98) -> float:
        """Zoom (px/mm) that fits the whole image in a viewport of ``width_px × height_px``."""
        if self.plane is None or width_px <= 0 or height_px <= 0:
            return self.zoom
        _, _, w, h = self.plane.rect_mm
        return _clamp_zoom(margin * min(width_px / w, height_px / h))

    def fit(self, width_px: int, height_px: int) -> None:
        """Fit the image into the viewport and centre it."""
        if self.plane is None:
            return
        self.zoom = self.fit_zoom(width_px, height_px)
        self.pan = self.plane.centre_mm
        self.fitted = True
        self._notify("zoom", "pan")

    def set_zoom(self, zoom: float, anchor_mm: tuple[float, float] | None = None) -> None:
        """Set zoom (px/mm) keeping the mm point ``anchor_mm`` at the same screen position (default: centre)."""
        new = _clamp_zoom(zoom)
        if new == self.zoom:
            return
        self.fitted = False
        if anchor_mm is not None:
            ax, ay = anchor_mm
            k = self.zoom / new
            self.pan = (ax + (self.pan[0] - ax) * k, ay + (self.pan[1] - ay) * k)
        self.zoom = new
        self._notify("zoom", "pan")

    def zoom_by(self, factor: float, anchor_mm: tuple[float, float] | None = None) -> None:
        self.set_zoom(self.zoom * factor, anchor_mm)

    def pan_by_px(self, dx_px: float, dy_px: float) -> None:
        """Move the image with the mouse: a drag of (dx, dy) screen px moves the content by as much."""
        self.set_pan(self.pan[0] - dx_px / self.zoom, self.pan[1] - dy_px / self.zoom)

    def set_pan(self, x_mm: float, y_mm: float) -> None:
        if (x_mm, y_mm) != self.pan:
            self.fitted = False
            self.pan = (float(x_mm), float(y_mm))
            self._notify("pan")

    def view_rect_mm(self, width_px: int, height_px: int) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) mm shown by a viewport of ``width_px × height_px`` screen pixels."""
        hw, hh = width_px / (2.0 * self.zoom), height_px / (2.0 * self.zoom)
        return (self.pan[0] - hw, self.pan[1] - hh, self.pan[0] + hw, self.pan[1] + hh)

    # -- window / toggles ------------------------------------------------------------------------
    def set_window(self, window: WindowLevel) -> None:
        if window != self.window:
            self.window = window
            self._notify("window")

    def set_default_window(self, window: WindowLevel, span: float | None = None) -> None:
        """Replace the series' initial window (e.g. once the first slice is decoded) and show it."""
        self.default_window = window
        if span and span > 0:
            self.window_span = float(span)
        self.window = window
        self._notify("window")

    def reset_window(self) -> None:
        self.set_window(self.default_window)

    def set_enhanced(self, on: bool) -> None:
        if bool(on) != self.enhanced:
            self.enhanced = bool(on)
            self._notify("enhanced")

    def toggle_enhanced(self) -> None:
        self.set_enhanced(not self.enhanced)

    def set_difference(self, on: bool) -> None:
        if bool(on) != self.difference:
            self.difference = bool(on)
            self._notify("difference")

    def set_overlay_opacity(self, opacity: float) -> None:
        opacity = min(max(float(opacity), 0.0), 1.0)
        if opacity != self.overlay_opacity:
            self.overlay_opacity = opacity
            self._notify("overlay_opacity")

    def set_model(self, model: str | None, scale: int) -> None:
        if (model, int(scale)) != (self.model, self.scale):
            self.model, self.scale = model, int(scale)
            self._notify("model")


def _clamp_zoom(zoom: float) -> float:
    return min(max(float(zoom), MIN_ZOOM), MAX_ZOOM)

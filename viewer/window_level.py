"""Window/level (display contrast) for MR slices, without Qt.

MR intensities have no absolute unit, so a window is only meaningful relative to the image: the initial
window comes from the header (WindowCenter/Width, first valid value; else a VOI LUT's input range) and
falls back to robust percentiles of the slice. Presets are expressed relative to those percentiles so they
suit any MR contrast. All values are in the modality's units (after RescaleSlope/Intercept).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Smallest width a window may shrink to, as a fraction of the image's robust span, so that
#: dragging can never produce a zero-width (all black/white) window.
MIN_WIDTH_FRACTION = 1e-3


@dataclass(frozen=True)
class WindowLevel:
    """A display window: values ``center ± width/2`` map to black..white."""
    center: float
    width: float

    @property
    def lower(self) -> float:
        return self.center - self.width / 2.0

    @property
    def upper(self) -> float:
        return self.center + self.width / 2.0

    @property
    def levels(self) -> tuple[float, float]:
        """(low, high) as pyqtgraph's ``ImageItem.setLevels`` wants them."""
        return (self.lower, self.upper)

    @classmethod
    def from_range(cls, lower: float, upper: float) -> WindowLevel:
        return cls(center=(lower + upper) / 2.0, width=upper - lower)


def is_valid(center: Any, width: Any) -> bool:
    """True when ``center``/``width`` are finite numbers and ``width > 0`` (DICOM requires width ≥ 1,
    but rescaled MR values may legitimately be fractional, so only non-positive widths are rejected)."""
    try:
        c, w = float(center), float(width)
    except (TypeError, ValueError):
        return False
    return math.isfinite(c) and math.isfinite(w) and w > 0


def _as_list(value: Any) -> list:
    if value is None:
        return []
    if isinstance(value, (str, bytes)):
        return [value]
    try:
        return list(value)
    except TypeError:
        return [value]


def first_valid(centers: Any, widths: Any) -> WindowLevel | None:
    """First valid (center, width) pair of possibly multi-valued WindowCenter/WindowWidth values."""
    for c, w in zip(_as_list(centers), _as_list(widths)):
        if is_valid(c, w):
            return WindowLevel(float(c), float(w))
    return None


def first_valid_pair(pairs: Iterable[tuple[Any, Any]] | None) -> WindowLevel | None:
    """First valid window of a list of (center, width) pairs, e.g. ``Frame.window``."""
    for c, w in pairs or []:
        if is_valid(c, w):
            return WindowLevel(float(c), float(w))
    return None


def voi_lut_window(ds: Any) -> WindowLevel | None:
    """Window spanning the input range of the first VOI LUT in ``ds`` (a pydicom Dataset), if any.

    LUTDescriptor = (entries, first mapped input value, bits); the LUT covers inputs
    ``first .. first + entries − 1``, which is the range the modality intended to be displayed.
    Inputs are stored values, so RescaleSlope/Intercept are applied to land in modality units.
    """
    seq = getattr(ds, "VOILUTSequence", None)
    if not seq:
        return None
    try:
        desc = [int(v) for v in seq[0].LUTDescriptor]
        entries = desc[0] or 65536  # 0 means 2**16 entries (PS3.3 C.11.2.1.1)
        first = desc[1]
        slope = float(getattr(ds, "RescaleSlope", 1.0) or 1.0)
        intercept = float(getattr(ds, "RescaleIntercept", 0.0) or 0.0)
    except (AttributeError, IndexError, TypeError, ValueError):
        return None
    lo = first * slope + intercept
    hi = (first + entries - 1) * slope + intercept
    lo, hi = min(lo, hi), max(lo, hi)
    return WindowLevel.from_range(lo, hi) if hi > lo else None


def header_window(ds: Any) -> WindowLevel | None:
    """Window from a DICOM header: first valid WindowCenter/Width, else the VOI LUT range, else None."""
    if ds is None:
        return None
    try:  # pydicom raises on access for values it cannot parse (e.g. DS "abc")
        centers, widths = getattr(ds, "WindowCenter", None), getattr(ds, "WindowWidth", None)
    except (TypeError, ValueError):
        centers = widths = None
    wl = first_valid(centers, widths)
    return wl if wl is not None else voi_lut_window(ds)


@dataclass(frozen=True)
class ImageStats:
    """Robust intensity summary of one slice (modality units), computed once and shared by all presets.

    Percentiles are taken over the foreground (pixels above the image minimum) when it covers at least
    1 % of the image: MR slices are mostly air at the minimum, which would otherwise pull every
    low percentile to the background value.
    """
    minimum: float
    maximum: float
    p1: float
    p5: float
    p50: float
    p95: float
    p99: float
    p99_5: float

    @classmethod
    def of(cls, image: np.ndarray) -> ImageStats:
        values = np.asarray(image, dtype=np.float64).ravel()
        values = values[np.isfinite(values)]
        if values.size == 0:
            return cls(0.0, 1.0, 0.0, 0.0, 0.5, 1.0, 1.0, 1.0)
        lo, hi = float(values.min()), float(values.max())
        fg = values[values > lo]
        sample = fg if fg.size >= 0.01 * values.size else values
        p = np.percentile(sample, [1, 5, 50, 95, 99, 99.5])
        return cls(lo, hi, *(float(v) for v in p))

    @property
    def span(self) -> float:
        """Robust intensity span (p1..p99), never zero."""
        span = self.p99 - self.p1
        if span > 0:
            return span
        return max(self.maximum - self.minimum, 1.0)


def percentile_window(stats: ImageStats) -> WindowLevel:
    """The robust fallback window: foreground percentiles 1 % .. 99 %."""
    lo, hi = stats.p1, stats.p99
    if not hi > lo:
        lo, hi = stats.minimum, stats.maximum
    if not hi > lo:
        hi = lo + 1.0
    return WindowLevel.from_range(lo, hi)


#: Presets for MR, each a function of the slice's robust statistics. "Auto" is also the fallback.
PRESETS: dict[str, Callable[[ImageStats], WindowLevel]] = {
    "Auto": percentile_window,
    "Full range": lambda s: WindowLevel.from_range(s.minimum, s.maximum if s.maximum > s.minimum else s.minimum + 1),
    # Brain: tighter window on tissue for grey/white-matter contrast (drops the darkest 5 % of tissue).
    "Brain": lambda s: WindowLevel.from_range(s.p5, s.p99_5) if s.p99_5 > s.p5 else percentile_window(s),
    # Soft: wide and low-contrast, keeps bright lesions/enhancement and fat from clipping.
    "Soft": lambda s: WindowLevel(center=s.p50, width=1.6 * s.span),
}

SHORTCUT_PRESETS = ("Auto", "Full range", "Brain", "Soft")


def preset(name: str, stats: ImageStats) -> WindowLevel:
    """Window of the preset ``name`` (one of ``PRESETS``) for a slice with ``stats``."""
    try:
        return PRESETS[name](stats)
    except KeyError:
        raise ValueError(f"unknown window preset {name!r}; choose one of {', '.join(PRESETS)}") from None


def initial_window(header: WindowLevel | None, stats: ImageStats) -> WindowLevel:
    """The window a series opens with: the header's if it has a valid one, else the robust fallback."""
    if header is not None and is_valid(header.center, header.width):
        return header
    return percentile_window(stats)


def drag_window(start: WindowLevel, dx_px: float, dy_px: float, span: float,
                pixels_per_span: float = 500.0) -> WindowLevel:
    """Window after a right-drag of (dx, dy) screen pixels from ``start``.

    Horizontal drag changes the width (right = wider = less contrast), vertical drag the centre
    (down = higher centre = darker image), the convention of most PACS viewers. Dragging
    ``pixels_per_span`` pixels changes the value by the image's robust ``span``.
    """
    step = span / pixels_per_span
    width = max(start.width + dx_px * step, span * MIN_WIDTH_FRACTION)
    center = start.center + dy_px * step
    return WindowLevel(center=center, width=width)

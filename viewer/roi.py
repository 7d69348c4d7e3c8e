"""Region of interest: one rectangle in mm of the slice plane, compared between the original and the enhanced side.

Coordinates: a rectangle ``(x, y, width, height)`` in mm, x along columns and y along rows, measured from the
top-left *edge* of the image's first pixel. Original pixel (r, c) covers [c·Δc, (c+1)·Δc) × [r·Δr, (r+1)·Δr);
the enhanced grid covers the same field of view with spacing Δ/s (the project's pixel-centre convention, so LR
pixel i is centred on HR position i·s + (s−1)/2). A pixel belongs to a rectangle when its *centre* lies inside,
so the same rectangle selects the same area on both grids and a smooth image has (nearly) the same mean on both.

The viewer places images in view coordinates equal to these mm (``ImageItem.setRect(0, 0, W·Δc, H·Δr)`` with
the y axis pointing down), so a ``pg.RectROI``'s ``pos()``/``size()`` are already mm.

Qt-free: :class:`RectMM`, :class:`RegionStats`, :class:`RegionComparison`, :func:`rect_to_slices`,
:func:`region_stats`, :func:`compare_region`. Qt: :class:`DragCatcher`, :class:`RoiTool`, :class:`RoiStatsPanel`,
:class:`RegionStatsRunner` (computes comparisons on a ``QThreadPool``, results back by signal).
"""
from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets
from skimage.metrics import structural_similarity

from srgan.evaluation.metrics import psnr as psnr_db

Point = tuple[float, float]


@dataclass(frozen=True)
class RectMM:
    """Axis-aligned rectangle in mm of the slice plane (x along columns, y along rows, from the top-left edge)."""
    x: float
    y: float
    width: float
    height: float

    @classmethod
    def of(cls, rect) -> RectMM:
        """Accept a RectMM, a 4-sequence ``(x, y, w, h)`` or a ``QRectF``; negative sizes are flipped."""
        if isinstance(rect, QtCore.QRectF):
            rect = (rect.x(), rect.y(), rect.width(), rect.height())
        elif isinstance(rect, RectMM):
            rect = rect.as_tuple()
        x, y, w, h = (float(v) for v in rect)
        if w < 0:
            x, w = x + w, -w
        if h < 0:
            y, h = y + h, -h
        return cls(x, y, w, h)

    @classmethod
    def from_corners(cls, p0: Point, p1: Point) -> RectMM:
        """The rectangle spanned by two opposite corners (mm), in any order."""
        return cls.of((p0[0], p0[1], p1[0] - p0[0], p1[1] - p0[1]))

    def as_tuple(self) -> tuple[float, float, float, float]:
        return (self.x, self.y, self.width, self.height)


@dataclass(frozen=True)
class RegionStats:
    """Intensity statistics of the pixels whose centres lie inside a rectangle (modality units).

    ``n_pixels == 0`` (rectangle outside the image) gives NaN statistics.
    """
    mean: float
    std: float
    min: float
    max: float
    n_pixels: int


@dataclass(frozen=True)
class RegionComparison:
    """The same rectangle on the original (H, W) and enhanced (sH, sW) grids.

    ``psnr``/``ssim`` compare the enhanced region with the interpolated original (sH, sW) region, i.e. how far
    the model moved away from plain interpolation there. ``psnr`` is ``inf`` for identical regions; either is
    ``None`` when it cannot be computed (empty region; SSIM also when the region is narrower than 3 pixels).
    """
    original: RegionStats
    enhanced: RegionStats
    interpolated: RegionStats
    psnr: float | None
    ssim: float | None
    rect_mm: RectMM


def rect_to_slices(rect_mm, shape: tuple[int, int], pixel_spacing: Sequence[float],
                   origin_mm: Point = (0.0, 0.0)) -> tuple[slice, slice]:
    """Row and column slices of the pixels of an (H, W) grid whose centres lie inside ``rect_mm``.

    ``pixel_spacing`` is (Δrow, Δcol) in mm as in DICOM PixelSpacing; ``origin_mm`` is the (x, y) mm of the
    grid's top-left pixel edge. Centre of pixel (r, c): ((c + ½)Δc, (r + ½)Δr). A rectangle smaller than a
    pixel that contains no centre selects the single pixel under its centre, so a tiny click-sized region
    still reads a value. Slices are clipped to the image and may be empty.
    """
    r = RectMM.of(rect_mm)
    dr, dc = float(pixel_spacing[0]), float(pixel_spacing[1])
    h, w = int(shape[0]), int(shape[1])

    def span(lo_mm: float, size_mm: float, step: float, n: int) -> slice:
        lo = math.ceil((lo_mm) / step - 0.5)
        hi = math.ceil((lo_mm + size_mm) / step - 0.5)
        if hi <= lo:
            lo = math.floor((lo_mm + size_mm / 2) / step)
            hi = lo + 1
        return slice(min(max(lo, 0), n), min(max(hi, 0), n))

    return (span(r.y - origin_mm[1], r.height, dr, h), span(r.x - origin_mm[0], r.width, dc, w))


def _stats(region: np.ndarray) -> RegionStats:
    if region.size == 0:
        nan = float("nan")
        return RegionStats(nan, nan, nan, nan, 0)
    v = region.astype(np.float64, copy=False)
    return RegionStats(float(v.mean()), float(v.std()), float(v.min()), float(v.max()), int(v.size))


def region_stats(image: np.ndarray, rect_mm, pixel_spacing: Sequence[float],
                 origin_mm: Point = (0.0, 0.0)) -> RegionStats:
    """Mean/std/min/max and pixel count of ``image`` (H, W) inside ``rect_mm`` (see :func:`rect_to_slices`)."""
    rows, cols = rect_to_slices(rect_mm, image.shape[:2], pixel_spacing, origin_mm)
    return _stats(np.asarray(image)[rows, cols])


def ssim_window(height: int, width: int, preferred: int = 7) -> int | None:
    """SSIM window for a region: odd, at most the shorter side and ``preferred``, at least 3; None below 3 px."""
    side = min(int(height), int(width), int(preferred))
    if side < 3:
        return None
    return side if side % 2 == 1 else side - 1


def compare_region(original: np.ndarray, enhanced: np.ndarray, interpolated: np.ndarray, rect_mm,
                   pixel_spacing: Sequence[float], scale: int, data_range: float | None = None) -> RegionComparison:
    """Statistics of one rectangle on both sides plus PSNR/SSIM of enhanced vs interpolated inside it.

    ``original`` (H, W) has ``pixel_spacing`` (Δrow, Δcol) mm; ``enhanced`` and ``interpolated`` are (sH, sW)
    on the refined grid (spacing Δ/s, same field of view). ``data_range`` for the metrics defaults to
    max − min of the interpolated region (pass the display window width to compare regions on one footing);
    a flat region falls back to its largest absolute value, or 1.
    """
    enhanced = np.asarray(enhanced)
    interpolated = np.asarray(interpolated)
    if enhanced.shape != interpolated.shape:
        raise ValueError(f"enhanced {enhanced.shape} and interpolated {interpolated.shape} differ in shape")
    rect = RectMM.of(rect_mm)
    fine = (float(pixel_spacing[0]) / scale, float(pixel_spacing[1]) / scale)
    rows, cols = rect_to_slices(rect, enhanced.shape, fine)
    e = enhanced[rows, cols].astype(np.float64)
    i = interpolated[rows, cols].astype(np.float64)
    psnr = ssim = None
    if e.size:
        dr = float(data_range) if data_range else float(i.max() - i.min())
        if dr <= 0:
            dr = float(np.abs(i).max()) or 1.0
        psnr = psnr_db(i, e, dr)
        win = ssim_window(*e.shape)
        if win is not None:
            ssim = float(structural_similarity(i, e, data_range=dr, win_size=win))
    return RegionComparison(original=region_stats(original, rect, pixel_spacing), enhanced=_stats(e),
                            interpolated=_stats(i), psnr=psnr, ssim=ssim, rect_mm=rect)


# ----------------------------------------------------------------------------------------------------------- Qt


class DragCatcher(pg.GraphicsObject):
    """Invisible item under everything in a ViewBox that turns a mouse drag into two mm points.

    It takes a left-button drag only when ``wants(modifiers)`` says so (e.g. Shift held or a tool mode on);
    otherwise it ignores the drag and the ViewBox pans as usual. ``on_drag(p0_mm, p1_mm, finished)`` is called
    on every move. It sits at z 500: pyqtgraph offers a drag to items by their summed z, the ViewBox itself
    included, so it must be above the ViewBox and the images; ROIs (z 1000) stay above it and get drags first.
    """

    def __init__(self, viewbox: pg.ViewBox, wants: Callable[[QtCore.Qt.KeyboardModifier], bool],
                 on_drag: Callable[[Point, Point, bool], None]):
        super().__init__()
        self._vb = viewbox
        self._wants = wants
        self._on_drag = on_drag
        self._active = False
        self.setZValue(500)
        viewbox.addItem(self, ignoreBounds=True)
        viewbox.sigRangeChanged.connect(self._range_changed)

    def _range_changed(self, *_):
        self.prepareGeometryChange()

    def boundingRect(self) -> QtCore.QRectF:
        return self._vb.viewRect()

    def paint(self, painter, option, widget=None):
        pass

    def mouseDragEvent(self, ev):
        if ev.button() != QtCore.Qt.MouseButton.LeftButton:
            ev.ignore()
            return
        if ev.isStart():
            self._active = bool(self._wants(ev.modifiers()))
        if not self._active:
            ev.ignore()
            return
        ev.accept()
        p0 = self._vb.mapSceneToView(ev.buttonDownScenePos())
        p1 = self._vb.mapSceneToView(ev.scenePos())
        finished = ev.isFinish()
        if finished:
            self._active = False
        self._on_drag((p0.x(), p0.y()), (p1.x(), p1.y()), finished)


class MirroredDrawTool(QtCore.QObject):
    """A shape drawn on several linked viewports at once (same mm coordinates on each): by a modifier+drag, or a
    plain drag while the tool's mode is on. Subclasses implement ``_on_draw(p0_mm, p1_mm, finished)``."""

    def __init__(self, viewboxes: Sequence[pg.ViewBox], parent: QtCore.QObject | None, pen,
                 draw_modifier: QtCore.Qt.KeyboardModifier):
        super().__init__(parent)
        self._viewboxes = list(viewboxes)
        self._pen = pen
        self._modifier = draw_modifier
        self._mode = False
        self._syncing = False
        self._catchers = [DragCatcher(vb, self._wants_drag, self._on_draw) for vb in self._viewboxes]

    def set_mode(self, on: bool) -> None:
        """Tool mode: while on, a plain left drag draws (otherwise modifier+drag)."""
        self._mode = bool(on)

    def mode(self) -> bool:
        return self._mode

    def _wants_drag(self, modifiers) -> bool:
        return self._mode or bool(modifiers & self._modifier)

    def _on_draw(self, p0: Point, p1: Point, finished: bool) -> None:
        raise NotImplementedError


class RoiTool(MirroredDrawTool):
    """One rectangle shown on several viewports at once (same mm region), drawn by Shift+drag or in "Region" mode.

    ``RoiTool([left_viewbox, right_viewbox])``. Moving/resizing the rectangle on one viewport mirrors it on the
    others. ``regionChanged(RectMM)`` is emitted when a change finishes (drag released, :meth:`set_rect`);
    ``regionMoving(RectMM)`` on every intermediate move; ``regionCleared()`` when removed. The ROI's context
    menu has "Remove ROI".
    """

    regionChanged = QtCore.Signal(object)
    regionMoving = QtCore.Signal(object)
    regionCleared = QtCore.Signal()

    def __init__(self, viewboxes: Sequence[pg.ViewBox], parent: QtCore.QObject | None = None,
                 pen=None, draw_modifier=QtCore.Qt.KeyboardModifier.ShiftModifier):
        self._rois: list[pg.RectROI] = []
        super().__init__(viewboxes, parent, pen if pen is not None else pg.mkPen((255, 200, 0), width=1.5),
                         draw_modifier)

    def rect(self) -> RectMM | None:
        """The current rectangle in mm, or None."""
        if not self._rois:
            return None
        roi = self._rois[0]
        pos, size = roi.pos(), roi.size()
        return RectMM.of((pos.x(), pos.y(), size.x(), size.y()))

    def set_rect(self, rect_mm, emit: bool = True) -> None:
        """Show ``rect_mm`` on every viewport (creating the ROIs if needed) and emit ``regionChanged``."""
        r = RectMM.of(rect_mm)
        if not self._rois:
            self._create(r)
        else:
            self._apply(r, source=None)
        if emit:
            self.regionChanged.emit(r)

    def clear(self) -> None:
        """Remove the rectangle from all viewports."""
        if not self._rois:
            return
        for vb, roi in zip(self._viewboxes, self._rois):
            vb.removeItem(roi)
        self._rois = []
        self.regionCleared.emit()

    def rois(self) -> list[pg.RectROI]:
        """The per-viewport ROI items (same order as the viewboxes); empty when no rectangle."""
        return list(self._rois)

    def _on_draw(self, p0: Point, p1: Point, finished: bool) -> None:
        r = RectMM.from_corners(p0, p1)
        if not self._rois:
            self._create(r)
        else:
            self._apply(r, source=None)
        (self.regionChanged if finished else self.regionMoving).emit(r)

    def _create(self, r: RectMM) -> None:
        for vb in self._viewboxes:
            roi = pg.RectROI((r.x, r.y), (r.width, r.height), pen=self._pen, removable=True,
                             rotatable=False, sideScalers=True)
            roi.setZValue(1000)
            vb.addItem(roi)
            roi.sigRegionChanged.connect(self._roi_moved)
            roi.sigRegionChangeFinished.connect(self._roi_finished)
            roi.sigRemoveRequested.connect(lambda *_: QtCore.QTimer.singleShot(0, self.clear))
            self._rois.append(roi)

    def _apply(self, r: RectMM, source) -> None:
        self._syncing = True
        try:
            for roi in self._rois:
                if roi is source:
                    continue
                roi.setPos((r.x, r.y), update=False, finish=False)
                roi.setSize((r.width, r.height), update=True, finish=False)
        finally:
            self._syncing = False

    def _rect_of(self, roi) -> RectMM:
        pos, size = roi.pos(), roi.size()
        return RectMM.of((pos.x(), pos.y(), size.x(), size.y()))

    def _roi_moved(self, roi) -> None:
        if self._syncing:
            return
        r = self._rect_of(roi)
        self._apply(r, source=roi)
        self.regionMoving.emit(r)

    def _roi_finished(self, roi) -> None:
        if self._syncing:
            return
        self.regionChanged.emit(self._rect_of(roi))


def _fmt(v: float | None, digits: int = 4) -> str:
    if v is None:
        return "–"
    if isinstance(v, float) and math.isnan(v):
        return "–"
    if isinstance(v, float) and math.isinf(v):
        return "∞"
    return f"{v:.{digits}g}"


class RoiStatsPanel(QtWidgets.QWidget):
    """Compact table: mean/std/min/max/pixels for the original and enhanced sides, then PSNR and SSIM.

    PSNR/SSIM are enhanced vs the interpolated original inside the region (how much the model changed).
    """

    ROWS = ("mean", "std", "min", "max", "pixels", "PSNR (dB)", "SSIM")
    METRIC_ROWS = ("PSNR (dB)", "SSIM")   # one value across both columns: enhanced vs interpolated original

    def __init__(self, parent: QtWidgets.QWidget | None = None, reference: str = "zero-fill"):
        super().__init__(parent)
        self.reference = reference  # how the interpolation compared with reads ("zero-fill", "bicubic")
        self.table = QtWidgets.QTableWidget(len(self.ROWS), 2, self)
        self.table.setHorizontalHeaderLabels(["original", "enhanced"])
        self.table.setVerticalHeaderLabels(list(self.ROWS))
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(QtWidgets.QHeaderView.ResizeMode.Stretch)
        self.table.verticalHeader().setSectionResizeMode(QtWidgets.QHeaderView.ResizeMode.Fixed)
        self.table.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 6)
        self.table.setSizeAdjustPolicy(QtWidgets.QAbstractScrollArea.SizeAdjustPolicy.AdjustToContents)
        self.table.setVerticalScrollBarPolicy(QtCore.Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.table.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.NoSelection)
        self.table.setFocusPolicy(QtCore.Qt.FocusPolicy.NoFocus)
        for name in self.METRIC_ROWS:
            self.table.setSpan(self.ROWS.index(name), 0, 1, 2)
        self._tooltips()
        self.caption = QtWidgets.QLabel("No region. Shift+drag on an image to draw one.", self)
        self.caption.setWordWrap(True)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.caption)
        layout.addWidget(self.table)
        layout.addStretch(1)
        self.set_comparison(None)

    def _tooltips(self) -> None:
        for name in self.METRIC_ROWS:
            self.table.verticalHeaderItem(self.ROWS.index(name)).setToolTip(
                f"Enhanced compared with the {self.reference}-interpolated original inside the region: how much the "
                "model changed it (∞ / 1 = unchanged). Not a quality measure: there is no ground truth here.")

    def set_reference(self, reference: str) -> None:
        """Name the interpolation the metrics compare with (the next ``set_comparison`` shows it)."""
        self.reference = reference
        self._tooltips()

    def set_comparison(self, cmp: RegionComparison | None) -> None:
        """Show ``cmp`` (or blank the table for None)."""
        for row in range(len(self.ROWS)):
            for col in range(2):
                self.table.setItem(row, col, QtWidgets.QTableWidgetItem(""))
        if cmp is None:
            self.caption.setText("No region. Shift+drag on an image to draw one.")
            return
        r = cmp.rect_mm
        self.caption.setText(f"Region {r.width:.1f} × {r.height:.1f} mm at ({r.x:.1f}, {r.y:.1f}) mm")
        for col, s in enumerate((cmp.original, cmp.enhanced)):
            for row, v in enumerate((s.mean, s.std, s.min, s.max)):
                self._put(row, col, _fmt(v))
            self._put(4, col, str(s.n_pixels))
        self._put(5, 0, _fmt(cmp.psnr, 4) + f"  (vs {self.reference} interpolation)")
        self._put(6, 0, _fmt(cmp.ssim, 4) + ("" if cmp.ssim is not None else "  (region < 3 px)"))

    def cell(self, row_name: str, side: str) -> str:
        """Text shown for ``row_name`` (one of ROWS) on ``side`` ("original"/"enhanced"); metric rows span both."""
        col = 0 if row_name in self.METRIC_ROWS else ("original", "enhanced").index(side)
        item = self.table.item(self.ROWS.index(row_name), col)
        return item.text() if item is not None else ""

    def _put(self, row: int, col: int, text: str) -> None:
        item = QtWidgets.QTableWidgetItem(text)
        a = QtCore.Qt.AlignmentFlag
        item.setTextAlignment((a.AlignLeft if self.ROWS[row] in self.METRIC_ROWS else a.AlignRight) | a.AlignVCenter)
        self.table.setItem(row, col, item)


class _CompareTask(QtCore.QRunnable):
    """Holds the relay itself (not the runner), so a runner deleted meanwhile only drops the result."""

    def __init__(self, relay: _Relay, generation: int, args: tuple, kwargs: dict):
        super().__init__()
        self._relay, self._gen, self._args, self._kwargs = relay, generation, args, kwargs

    def run(self) -> None:
        try:
            result = compare_region(*self._args, **self._kwargs)
        except Exception as err:  # a bad region must not kill the pool thread; the GUI shows the message
            self._relay.failed.emit(self._gen, str(err))
            return
        self._relay.done.emit(self._gen, result)


class _Relay(QtCore.QObject):
    done = QtCore.Signal(int, object)
    failed = QtCore.Signal(int, str)


class RegionStatsRunner(QtCore.QObject):
    """Runs :func:`compare_region` on a ``QThreadPool``; only the newest request's result is delivered.

    ``request(original, enhanced, interpolated, rect_mm, pixel_spacing, scale)`` returns at once;
    ``ready(RegionComparison)`` / ``failed(str)`` arrive on the GUI thread. Arrays are read, never written,
    so callers must not modify them in place while a request runs.
    """

    ready = QtCore.Signal(object)
    failed = QtCore.Signal(str)

    def __init__(self, parent: QtCore.QObject | None = None, pool: QtCore.QThreadPool | None = None):
        super().__init__(parent)
        self._pool = pool or QtCore.QThreadPool.globalInstance()
        self._gen = 0
        self._lock = threading.Lock()
        self._relay = _Relay()
        self._relay.done.connect(self._done, QtCore.Qt.ConnectionType.QueuedConnection)
        self._relay.failed.connect(self._failed, QtCore.Qt.ConnectionType.QueuedConnection)

    def request(self, *args, **kwargs) -> None:
        with self._lock:
            self._gen += 1
            gen = self._gen
        self._pool.start(_CompareTask(self._relay, gen, args, kwargs))

    def _done(self, gen: int, result) -> None:
        if gen == self._gen:
            self.ready.emit(result)

    def _failed(self, gen: int, message: str) -> None:
        if gen == self._gen:
            self.failed.emit(message)

"""Export from the viewer: a derived DICOM series of the whole series, or a PNG of what is on screen.

Series export (:func:`run_export`, Qt-free) hands the series the viewer shows (the reader's
``srgan.io.dicom_series.Series``), the viewer's plan for it and its cache of enhanced slices to
:func:`srgan.io.dicom_derived.write_derived_series`: slices already enhanced on screen are written as they are,
only the others are enhanced, with the same plan. The writer builds a new, clearly marked derived series
atomically (:func:`srgan.io.atomic.atomic_folder`: complete or absent, also on cancel). The destination is checked
before any work starts (:func:`srgan.io.atomic.check_new_folder`): never the source folder or a folder inside it
(inputs are never touched and a rescan must not mix the two series), and a new or empty folder.

Threading and the model: export runs on its own ``QThread`` (:class:`ExportWorker`) while the viewer keeps
enhancing slices on its worker. Both may share the viewer's enhancer. ``srgan.inference.engine.Enhancer`` holds a lock
in ``enhance_stack``/``enhance``, so the two threads take turns per call (a torch module in eval mode under
inference mode is safe to call from one thread at a time). For any other enhancer-like object
(``.enhance(image (H, W)) -> (sH, sW)`` without its own lock), pass the lock the viewer's worker uses as
``lock``; the stack callable built here holds it per slice, so the viewer can interleave its own slices and
stays responsive during a long export.

The PNG export (:func:`export_view_png`) burns a visible "AI-enhanced, not for primary diagnosis" label into
the picture and stores the provenance in PNG text chunks, so a screenshot cannot pass for an acquired image.
"""
from __future__ import annotations

import re
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PySide6 import QtCore, QtGui, QtWidgets

from srgan.errors import InputError
from srgan.inference.plan import Plan
from srgan.io.atomic import atomic_path, check_new_folder
from srgan.io.dicom_derived import DerivedReport, Lookup, WriteCancelled, write_derived_series
from srgan.io.dicom_series import Series
from srgan.provenance import DISCLAIMER, Provenance


class ExportCancelled(Exception):
    """The user cancelled; nothing was written."""


# --------------------------------------------------------------------------------------------- Qt-free logic


def default_folder_name(description: str, scale: int) -> str:
    """A file-system-safe folder name for a derived series, e.g. ``t1_fl2d_sag_AI_x2``."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", description or "series").strip("._-") or "series"
    return f"{base[:60]}_AI_x{int(scale)}"


def unique_child(parent: str | Path, name: str) -> Path:
    """``parent/name``, or ``parent/name_2``, ``_3``… when taken."""
    parent = Path(parent)
    candidate = parent / name
    n = 2
    while candidate.exists():
        candidate = parent / f"{name}_{n}"
        n += 1
    return candidate


class _StackEnhancer:
    """``enhance_stack(stack, plan, *, keys, cancel)`` over any enhancer-like, holding ``lock`` around each model
    call (see :func:`stack_enhancer`); also callable as ``stack -> enhanced stack``."""

    def __init__(self, target, lock: threading.Lock | None, cancel: Callable[[], bool] | None, plan: Plan | None):
        if not (hasattr(target, "enhance_stack") or hasattr(target, "enhance") or callable(target)):
            raise TypeError(f"{type(target).__name__} has neither enhance_stack nor enhance and is not callable")
        self._target, self._lock, self._cancel, self._plan = target, lock, cancel, plan

    def _guarded(self, fn, *args, **kwargs):
        if self._lock is None:
            return fn(*args, **kwargs)
        with self._lock:
            return fn(*args, **kwargs)

    def __getattr__(self, name: str):
        if name == "plan_series":   # only where the target plans (the writer asks with hasattr)
            planner = self._target.plan_series
            return lambda series, *a, **k: self._guarded(planner, series, *a, **k)
        raise AttributeError(name)

    def __call__(self, stack: np.ndarray) -> np.ndarray:
        return self.enhance_stack(stack, self._plan)

    def enhance_stack(self, stack: np.ndarray, plan: Plan | None = None, *, keys: Sequence | None = None,
                      cancel: Callable[[], bool] | None = None) -> np.ndarray:
        stack = np.asarray(stack, np.float32)
        cancel = cancel if cancel is not None else self._cancel
        target = self._target
        if hasattr(target, "enhance_stack"):
            try:
                out = self._guarded(target.enhance_stack, stack, plan, keys=keys, cancel=cancel)
            except InterruptedError as err:
                raise WriteCancelled("cancelled") from err
            return np.asarray(out, np.float32)
        if hasattr(target, "enhance"):
            images = []
            for image in stack:
                if cancel is not None and cancel():
                    raise WriteCancelled("cancelled")
                images.append(np.asarray(self._guarded(target.enhance, image), np.float32))
            return np.stack(images)
        return np.asarray(self._guarded(target, stack), np.float32)


def stack_enhancer(enhancer_like, lock: threading.Lock | None = None,
                   cancel: Callable[[], bool] | None = None, plan: Plan | None = None) -> _StackEnhancer:
    """The enhancer for :func:`write_derived_series`: ``.enhance_stack(stack, plan, *, keys, cancel)`` (N, H, W)
    float32 → (N, sH, sW) float32, also callable as ``stack -> enhanced`` (with ``plan``).

    Accepted: an object with ``enhance_stack(stack, plan, *, keys, cancel)`` (``srgan.inference.engine.Enhancer``;
    locks itself; the plan and the slices' keys reach it, so slices the plan already made are not made again), an
    object with ``enhance(image (H, W))`` (called slice by slice), or a plain stack callable. ``lock`` (optional)
    is held around each model call; ``cancel`` is checked between slices so a cancel does not wait for a whole
    mosaic or multi-frame file. The target's ``plan_series``, where it has one, is offered to the writer too.
    """
    return _StackEnhancer(enhancer_like, lock, cancel, plan)


def _scale_of(enhancer_like, scale: int | None, provenance: Provenance | None) -> int:
    if scale is not None:
        return int(scale)
    if provenance is not None:
        return int(provenance.scale)
    s = getattr(enhancer_like, "scale", None)
    if s is None:
        raise ValueError("scale unknown: pass scale= or a provenance")
    return int(s)


def run_export(series: Series, out_dir: str | Path, enhancer_like, scale: int | None = None,
               provenance: Provenance | None = None, progress: Callable[[int, int], None] | None = None,
               cancel: Callable[[], bool] | None = None, lock: threading.Lock | None = None,
               plan: Plan | None = None, lookup: Lookup | None = None) -> DerivedReport:
    """Write the derived ×``scale`` series of ``series`` (the reader's :class:`srgan.io.dicom_series.Series`)
    into the new folder ``out_dir``.

    ``plan``: the plan the viewer already has for the series (default: ``enhancer_like.plan_series(series)``, made
    on the export thread when a slice has to be enhanced). ``lookup(volume, slice)``: the viewer's cache of
    enhanced slices (None for a slice not enhanced yet); only the other slices are enhanced. ``provenance``
    defaults to ``enhancer_like.provenance`` and ``scale`` to the provenance's. ``progress(done, total)`` is called
    per source file; ``cancel()`` is polled between files and slices. Raises :class:`InputError` for a refused
    destination or unusable input, :class:`ExportCancelled` on cancel (the destination is then left as it was).
    """
    if not getattr(series, "files", None):
        raise InputError(out_dir, "the series has no files to export")
    out = check_new_folder(out_dir, sources=series.files)
    provenance = provenance if provenance is not None else getattr(enhancer_like, "provenance", None)
    if provenance is None:
        raise ValueError("no provenance: pass provenance= or an enhancer with .provenance")
    s = _scale_of(enhancer_like, scale, provenance)
    if provenance.scale != s:
        raise ValueError(f"provenance is for x{provenance.scale} but export asks for x{s}")
    enhancer = stack_enhancer(enhancer_like, lock=lock, cancel=cancel)
    try:
        return write_derived_series(series, enhancer, out, scale=s, provenance=provenance, plan=plan,
                                    lookup=lookup, progress=progress, cancel=cancel)
    except WriteCancelled as err:
        raise ExportCancelled("export cancelled; nothing was written") from err


# ------------------------------------------------------------------------------------------------------ Qt


class ExportWorker(QtCore.QObject):
    """Runs :func:`run_export` in a ``QThread``; signals carry the outcome back to the GUI thread.

    ``progress(done, total)`` per source file; exactly one of ``finished(DerivedReport)``, ``cancelled()`` or
    ``failed(str message)`` at the end. :meth:`cancel` may be called from any thread. Start with
    :func:`start_worker` (or ``moveToThread`` + ``thread.started.connect(worker.run)``).
    """

    progress = QtCore.Signal(int, int)
    finished = QtCore.Signal(object)
    cancelled = QtCore.Signal()
    failed = QtCore.Signal(str)

    def __init__(self, series: Series, out_dir: str | Path, enhancer_like, scale: int | None = None,
                 provenance: Provenance | None = None, lock: threading.Lock | None = None,
                 plan: Plan | None = None, lookup: Lookup | None = None):
        super().__init__()
        self.series = series  # planned here (off the GUI thread) when no plan is given and a slice needs it
        self.out_dir = Path(out_dir)
        self._enhancer = enhancer_like
        self._scale = scale
        self._provenance = provenance
        self._lock = lock
        self._plan = plan
        self._lookup = lookup
        self._cancel = threading.Event()

    def cancel(self) -> None:
        self._cancel.set()

    def is_cancelled(self) -> bool:
        return self._cancel.is_set()

    @QtCore.Slot()
    def run(self) -> None:
        try:
            report = run_export(self.series, self.out_dir, self._enhancer, scale=self._scale,
                                provenance=self._provenance, progress=self.progress.emit,
                                cancel=self._cancel.is_set, lock=self._lock, plan=self._plan, lookup=self._lookup)
        except ExportCancelled:
            self.cancelled.emit()
        except InputError as err:
            self.failed.emit(str(err))
        except Exception as err:  # the GUI must hear about any failure, not a dead thread
            self.failed.emit(f"Export failed: {err.__class__.__name__}: {err}")
        else:
            self.finished.emit(report)


def start_worker(worker: ExportWorker, parent: QtCore.QObject | None = None) -> QtCore.QThread:
    """Move ``worker`` to a new ``QThread``, start it, and quit the thread when the worker ends.

    Keep a reference to the returned thread (and the worker) until it has finished.
    """
    thread = QtCore.QThread(parent)
    worker.moveToThread(thread)
    thread.started.connect(worker.run)
    for signal in (worker.finished, worker.cancelled, worker.failed):
        signal.connect(thread.quit, QtCore.Qt.ConnectionType.DirectConnection)   # quit() is thread-safe
    thread.start()
    return thread


def report_message(report: DerivedReport) -> str:
    """The text shown when an export finishes: where, how many files, what was left out and why."""
    lines = [f"Wrote {len(report.files)} file{'s' if len(report.files) != 1 else ''} to {report.out_dir}."]
    lines += report.notes
    if report.skipped:
        lines.append(f"{len(report.skipped)} source file(s) skipped:")
        lines += [f"  {Path(p).name}: {why}" for p, why in report.skipped[:10]]
        if len(report.skipped) > 10:
            lines.append(f"  … and {len(report.skipped) - 10} more")
    lines.append(DISCLAIMER + ".")
    return "\n".join(lines)


_LIVE_SESSIONS: set[ExportSession] = set()


class ExportSession(QtCore.QObject):
    """A running series export with its progress dialog; keeps its thread and worker alive until the end.

    ``done(object)`` carries the :class:`DerivedReport`, or None when cancelled or failed. The progress dialog
    is not modal: the viewer stays usable while the export runs (the enhancer is shared, one call at a time).
    Running sessions are also held in a module registry, so dropping the last reference to a session (e.g.
    starting a second export) never destroys a running ``QThread``; call :func:`shutdown_exports` when the
    application closes.
    """

    done = QtCore.Signal(object)

    def __init__(self, parent: QtWidgets.QWidget | None, worker: ExportWorker, show_messages: bool = True):
        super().__init__(parent)
        self.worker = worker
        self._parent = parent
        self._show = show_messages
        self.report: DerivedReport | None = None
        self.dialog = QtWidgets.QProgressDialog("Enhancing and writing the derived series…", "Cancel",
                                                0, max(len(worker.series.files), 1), parent)
        self.dialog.setWindowTitle("Export derived series")
        self.dialog.setWindowModality(QtCore.Qt.WindowModality.NonModal)
        self.dialog.setMinimumDuration(0)
        self.dialog.setAutoClose(False)
        self.dialog.setAutoReset(False)
        self.dialog.setValue(0)
        self.dialog.canceled.connect(self.cancel)
        worker.progress.connect(self._progress)
        worker.finished.connect(self._finished)
        worker.cancelled.connect(self._cancelled)
        worker.failed.connect(self._failed)
        _LIVE_SESSIONS.add(self)
        self.thread = start_worker(worker)
        self.thread.finished.connect(self._thread_finished)
        self.dialog.show()

    def is_running(self) -> bool:
        return self.thread.isRunning()

    def cancel(self) -> None:
        """Ask the export to stop after the current slice; ``done(None)`` follows."""
        self.dialog.setLabelText("Cancelling…")
        self.worker.cancel()

    def wait(self, timeout_ms: int = 60_000) -> bool:
        """Block until the worker thread has ended (True) or ``timeout_ms`` passed (False)."""
        return self.thread.wait(timeout_ms)

    @QtCore.Slot(int, int)
    def _progress(self, done: int, total: int) -> None:
        self.dialog.setMaximum(max(total, 1))
        self.dialog.setValue(done)

    def _close(self) -> None:
        self.dialog.canceled.disconnect(self.cancel)
        self.dialog.close()

    @QtCore.Slot(object)
    def _finished(self, report) -> None:
        self._close()
        self.report = report
        if self._show:
            QtWidgets.QMessageBox.information(self._parent, "Export finished", report_message(report))
        self.done.emit(report)

    @QtCore.Slot()
    def _cancelled(self) -> None:
        self._close()
        self.done.emit(None)

    @QtCore.Slot(str)
    def _failed(self, message: str) -> None:
        self._close()
        if self._show:
            QtWidgets.QMessageBox.critical(self._parent, "Export failed", message)
        self.done.emit(None)

    @QtCore.Slot()
    def _thread_finished(self) -> None:
        _LIVE_SESSIONS.discard(self)


def running_exports() -> list[ExportSession]:
    """Exports whose thread has not ended yet."""
    return [s for s in list(_LIVE_SESSIONS) if s.is_running()]


def shutdown_exports(timeout_ms: int = 30_000) -> bool:
    """Cancel every running export and wait for their threads (call on application exit). True if all ended.

    A cancelled export removes its temporary folder, so nothing half-written is left behind.
    """
    sessions = running_exports()
    for s in sessions:
        s.worker.cancel()
    return all(s.wait(timeout_ms) for s in sessions)


def export_series_dialog(parent: QtWidgets.QWidget | None, series: Series, enhancer, scale: int | None = None,
                         provenance: Provenance | None = None, lock: threading.Lock | None = None,
                         out_dir: str | Path | None = None, start_dir: str | Path | None = None,
                         show_messages: bool = True, *, plan: Plan | None = None,
                         lookup: Lookup | None = None) -> ExportSession | None:
    """Ask for a destination, then export ``series`` in the background with a cancellable progress dialog.

    The user picks a parent folder; the series goes into a new subfolder named after it (e.g.
    ``t1_fl2d_sag_AI_x2``). The source folder (or one inside it) is refused with a message and the user asked
    again. ``out_dir`` skips the question (used as given). ``plan`` and ``lookup``: the viewer's plan for the
    series and its cache of enhanced slices, as in :func:`run_export`. Returns the running :class:`ExportSession`
    (keep it until ``done``), or None when the user gave up or the destination is refused.
    """
    files = [Path(f) for f in getattr(series, "files", [])]
    if not files:
        QtWidgets.QMessageBox.warning(parent, "Export", "This series has no files to export.")
        return None
    prov = provenance if provenance is not None else getattr(enhancer, "provenance", None)
    s = _scale_of(enhancer, scale, prov)
    if out_dir is None:
        name = default_folder_name(getattr(series, "series_description", "") or files[0].parent.name, s)
        start = str(start_dir or files[0].parent.parent)
        while True:
            chosen = QtWidgets.QFileDialog.getExistingDirectory(parent, "Folder for the derived series", start)
            if not chosen:
                return None
            target = unique_child(chosen, name)
            try:
                check_new_folder(target, sources=files)
            except InputError as err:
                if not show_messages:
                    return None
                QtWidgets.QMessageBox.warning(parent, "Choose another folder",
                                              err.problem[:1].upper() + err.problem[1:] + ".")
                start = chosen
                continue
            break
    else:
        target = Path(out_dir)
        try:
            check_new_folder(target, sources=files)
        except InputError as err:
            if show_messages:
                QtWidgets.QMessageBox.warning(parent, "Choose another folder", str(err))
            return None
    worker = ExportWorker(series, target, enhancer, scale=s, provenance=prov, lock=lock, plan=plan, lookup=lookup)
    return ExportSession(parent, worker, show_messages=show_messages)


def _grab(target) -> QtGui.QImage:
    """An ARGB image of a QWidget, a QGraphicsView, or a pyqtgraph item (ViewBox/PlotItem) as rendered."""
    if isinstance(target, QtWidgets.QWidget):
        return target.grab().toImage().convertToFormat(QtGui.QImage.Format.Format_ARGB32)
    if isinstance(target, QtWidgets.QGraphicsItem):
        scene = target.scene()
        if scene is None:
            raise ValueError("the item is not in a scene, so there is nothing to grab")
        rect = target.sceneBoundingRect()
        w, h = max(int(round(rect.width())), 1), max(int(round(rect.height())), 1)
        image = QtGui.QImage(w, h, QtGui.QImage.Format.Format_ARGB32)
        image.fill(QtGui.QColor("black"))
        painter = QtGui.QPainter(image)
        try:
            scene.render(painter, QtCore.QRectF(0, 0, w, h), rect)
        finally:
            painter.end()
        return image
    raise TypeError(f"cannot grab a {type(target).__name__}; pass a QWidget or a QGraphicsItem")


def burn_label(image: QtGui.QImage, text: str = DISCLAIMER) -> None:
    """Paint ``text`` in a dark box at the bottom-left of ``image`` (in place), sized to stay readable."""
    painter = QtGui.QPainter(image)
    try:
        font = painter.font()
        font.setPixelSize(max(11, min(image.height() // 28, 28)))
        font.setBold(True)
        painter.setFont(font)
        metrics = QtGui.QFontMetrics(font)
        pad = max(4, font.pixelSize() // 3)
        box = metrics.boundingRect(text).adjusted(-pad, -pad, pad, pad)
        box.moveBottomLeft(QtCore.QPoint(pad, image.height() - pad))
        painter.fillRect(box, QtGui.QColor(0, 0, 0, 190))
        painter.setPen(QtGui.QColor(255, 210, 0))
        painter.drawText(box, int(QtCore.Qt.AlignmentFlag.AlignCenter), text)
    finally:
        painter.end()


def export_view_png(widget_or_viewport, path: str | Path, provenance_text: str,
                    label: str = DISCLAIMER) -> Path:
    """Save what ``widget_or_viewport`` shows as a PNG with a visible disclaimer and provenance text chunks.

    Text chunks: ``Description`` = ``provenance_text`` (e.g. ``Provenance.long()``), ``Disclaimer`` = the
    label, ``Software`` = "BrainSR". Written atomically (temporary file beside ``path``, then renamed).
    Must be called on the GUI thread. Returns the written path.
    """
    path = Path(path)
    image = _grab(widget_or_viewport)
    burn_label(image, label)
    image.setText("Description", provenance_text)
    image.setText("Disclaimer", label)
    image.setText("Software", "BrainSR")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        if not image.save(str(tmp), "PNG"):
            raise InputError(path, "the PNG could not be written (check the folder's permissions and free space)")
    return path

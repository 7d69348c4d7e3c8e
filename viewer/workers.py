"""Background work of the viewer: scanning folders, decoding slices, enhancing slices.

The GUI thread never decodes pixels or runs the model: it sends requests and gets results back through
Qt signals (queued across threads, so slots always run on the GUI thread and only they touch widgets).

- :class:`FolderScanner` — one-shot thread: ``srgan.io.dicom_series.scan`` of a folder.
- :class:`SliceLoader` — long-lived thread: decodes the current slice first, then its neighbours, and
  computes the plain interpolation ×s of each (the right viewport's fallback and the "enhancement off" view).
- :class:`EnhanceWorker` — long-lived thread that owns the ``Enhancer`` (model built in that thread):
  the current slice first, then the rest of the volume, nearest first; results cached by
  (series, volume, slice, model, scale, consistency). Cancel clears the queue and is checked between slices.
  On demand it also measures the model's disagreement with itself on the current slice (8 flips/rotations,
  ``viewer.difference.tta_spread``), cached under the same key.

``torch`` and ``srgan.inference.engine`` are imported inside the threads, so starting the viewer (or ``--help``)
does not pay for them.
"""
from __future__ import annotations

import threading
import traceback
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Hashable

import numpy as np
from PySide6 import QtCore

from srgan.inference.plan import Plan
from srgan.errors import InputError
from viewer.difference import tta_spread


def series_key(series: Any) -> str:
    """Identity of a series inside one scan: SeriesInstanceUID plus the geometric part number."""
    return f"{series.uid}#{getattr(series, 'part', 0)}"


def nearest_first(current: int, n: int) -> list[int]:
    """0..n−1 ordered by distance from ``current`` (current, +1, −1, +2, −2 …): what the reader looks at next."""
    order = [current] if 0 <= current < n else []
    for d in range(1, n):
        for i in (current + d, current - d):
            if 0 <= i < n:
                order.append(i)
    return order


class ArrayCache:
    """Thread-safe LRU of numpy arrays bounded by total bytes (workers write, the GUI reads)."""

    def __init__(self, max_bytes: int):
        self.max_bytes = int(max_bytes)
        self._lock = threading.Lock()
        self._items: OrderedDict[Hashable, np.ndarray] = OrderedDict()
        self._bytes = 0

    def get(self, key: Hashable) -> np.ndarray | None:
        with self._lock:
            arr = self._items.get(key)
            if arr is not None:
                self._items.move_to_end(key)
            return arr

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._items

    def put(self, key: Hashable, arr: np.ndarray) -> None:
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old.nbytes
            self._items[key] = arr
            self._bytes += arr.nbytes
            while self._bytes > self.max_bytes and len(self._items) > 1:
                _, dropped = self._items.popitem(last=False)
                self._bytes -= dropped.nbytes

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


def _message(err: BaseException) -> str:
    """One line for the status bar / dialog; out-of-memory gets a hint the user can act on."""
    text = str(err) or type(err).__name__
    if "out of memory" in text.lower() or isinstance(err, MemoryError):
        return f"Out of memory while enhancing ({text.splitlines()[0]}). Try the CPU, a smaller scale or closing other programs."
    if isinstance(err, InputError):
        return text
    return f"{type(err).__name__}: {text.splitlines()[0] if text else ''}"


class FolderScanner(QtCore.QThread):
    """Scan one folder in the background. Emits ``scanned(folder, ScanResult)`` or ``failed(folder, message)``."""

    scanned = QtCore.Signal(str, object)
    failed = QtCore.Signal(str, str)
    progress = QtCore.Signal(int, int)

    def __init__(self, folder: str | Path, parent: QtCore.QObject | None = None):
        super().__init__(parent)
        self.folder = str(folder)

    def run(self) -> None:
        from srgan.io.dicom_series import scan

        try:
            result = scan(self.folder, progress=lambda done, total: self.progress.emit(int(done), int(total)))
            if not result.series:
                why = "; ".join(p.message for p in result.problems[:3])
                raise InputError(self.folder, "no displayable DICOM image series found" + (f" ({why})" if why else ""))
        except InputError as err:
            self.failed.emit(self.folder, str(err))
        except Exception as err:  # a crash in a scan must reach the user, not kill the thread silently
            traceback.print_exc()
            self.failed.emit(self.folder, f"{self.folder}: could not be read ({_message(err)})")
        else:
            self.scanned.emit(self.folder, result)


@dataclass(frozen=True)
class _Job:
    series: Any
    volume: int
    slice: int
    generation: int
    kind: str = "enhance"  # or "spread": the TTA disagreement map of the slice


class _QueueThread(QtCore.QThread):
    """A long-lived thread working through a replaceable queue of slice jobs."""

    def __init__(self, parent: QtCore.QObject | None = None):
        super().__init__(parent)
        self._cond = threading.Condition()
        self._queue: list[_Job] = []
        self._stop = False
        self._generation = 0
        self._busy = False

    def _replace_queue(self, series: Any, volume: int, slices: list[int]) -> None:
        with self._cond:
            self._generation += 1
            self._queue = [_Job(series, volume, s, self._generation) for s in slices]
            self._cond.notify_all()

    def clear(self) -> None:
        """Drop every queued job; the job running now finishes but its result is ignored."""
        with self._cond:
            self._generation += 1
            self._queue.clear()

    def pending(self) -> int:
        with self._cond:
            return len(self._queue)

    def stop(self, wait_ms: int = 10_000) -> None:
        with self._cond:
            self._stop = True
            self._queue.clear()
            self._cond.notify_all()
        self.wait(wait_ms)

    @property
    def busy(self) -> bool:
        """True while a job runs or jobs are queued."""
        with self._cond:
            return self._busy or bool(self._queue)

    def _next(self) -> _Job | None:
        with self._cond:
            self._busy = False
            while not self._queue and not self._stop:
                self._idle()
                self._cond.wait()
            if self._stop:
                return None
            self._busy = True
            return self._queue.pop(0)

    def _current(self, job: _Job) -> bool:
        with self._cond:
            return job.generation == self._generation and not self._stop

    def _idle(self) -> None:
        """Called (with the lock held) when the queue runs dry."""

    def run(self) -> None:
        while (job := self._next()) is not None:
            self._do(job)

    def _do(self, job: _Job) -> None:
        raise NotImplementedError


class SliceLoader(_QueueThread):
    """Decodes slices (and their plain ×scale interpolation) for display, current slice first.

    ``loaded(key, original, interpolated)`` with ``key = (series_key, volume, slice)``; ``interpolated`` is
    None when ``scale`` is 1. Results are also kept in ``originals`` / ``interpolations`` (keyed by ``key`` and
    ``(*key, scale)``) so revisiting a slice is instant.
    """

    loaded = QtCore.Signal(object, object, object)
    failed = QtCore.Signal(object, str)

    def __init__(self, parent: QtCore.QObject | None = None, cache_bytes: int = 768 * 2**20):
        super().__init__(parent)
        self.originals = ArrayCache(cache_bytes // 4)
        self.interpolations = ArrayCache(cache_bytes - cache_bytes // 4)
        self._scale = 2
        self._method = "bicubic"

    def set_scale(self, scale: int) -> None:
        with self._cond:
            self._scale = int(scale)

    @property
    def scale(self) -> int:
        with self._cond:
            return self._scale

    def request(self, series: Any, volume: int, slice_: int, prefetch: int | None = None) -> None:
        """Load ``slice_`` now, then up to ``prefetch`` neighbours (all slices when None), nearest first."""
        n = series.shape[1]
        order = nearest_first(slice_, n)
        if prefetch is not None:
            order = order[: prefetch + 1]
        self._replace_queue(series, volume, order)

    def _do(self, job: _Job) -> None:
        key = (series_key(job.series), job.volume, job.slice)
        scale = self.scale
        try:
            original = self.originals.get(key)
            if original is None:
                original = np.ascontiguousarray(job.series.pixels(job.volume, job.slice), dtype=np.float32)
                self.originals.put(key, original)
            interpolated = None
            if scale > 1:
                interpolated = self.interpolations.get((*key, scale))
                if interpolated is None:
                    from srgan.inference.engine import interpolate

                    interpolated = interpolate(original, scale, self._method)
                    self.interpolations.put((*key, scale), interpolated)
        except Exception as err:
            if self._current(job):
                self.failed.emit(key, _message(err))
            return
        self.loaded.emit(key, original, interpolated)


CONSISTENCY_DEFAULT = "model default"


@dataclass(frozen=True)
class EnhanceConfig:
    """Which model the worker runs: bundled ``model`` name (None = default fidelity) or a ``weights`` file, and
    its data-consistency projection (``srgan.options.CONSISTENCY_MODES``; None = what the model card recommends)."""
    scale: int = 2
    model: str | None = None
    weights: str | None = None
    device: str = "auto"
    consistency: str | None = None

    @property
    def model_id(self) -> str:
        return self.weights or self.model or "default"

    @property
    def consistency_id(self) -> str:
        """The consistency part of a cache key: outputs of two settings are never mixed up."""
        return self.consistency or CONSISTENCY_DEFAULT


class EnhanceWorker(_QueueThread):
    """Owns the ``Enhancer``; enhances the current slice first, then the rest of the volume in the background.

    Signals (all delivered on the GUI thread):
      ``enhanced(key, image)`` — ``key = (series_key, volume, slice, model_id, scale, consistency_id)``, image
        (s·H, s·W) float32;
      ``spread_ready(key, spread)`` — same key, the TTA spread (s·H, s·W) float32 asked for by ``request_spread``;
      ``progress(done, total)`` — slices of the current request finished (done == total: finished;
        (0, 0) after a cancel);
      ``model_ready(info)`` — dict: ``card``, ``label``, ``device``, ``provenance`` (one line), ``consistency``
        (the one in force, after the card's default), ``config``;
      ``planned(key, plan)`` — the ``srgan.inference.plan.Plan`` of a series (``key`` with volume 0, slice −1),
        made once per series and model before its first slice is enhanced (without its outputs);
      ``failed(message)`` — a model that cannot load (no weights, bad device) or an error while enhancing;
        the queue is dropped and nothing is retried until the next request.
    """

    enhanced = QtCore.Signal(object, object)
    spread_ready = QtCore.Signal(object, object)
    progress = QtCore.Signal(int, int)
    model_ready = QtCore.Signal(object)
    planned = QtCore.Signal(object, object)
    failed = QtCore.Signal(str)

    def __init__(self, config: EnhanceConfig | None = None, parent: QtCore.QObject | None = None,
                 threads: int | None = None, cache_bytes: int = 1536 * 2**20):
        super().__init__(parent)
        self.results = ArrayCache(cache_bytes)
        self._plans: dict[tuple, Plan] = {}  # per (series, model), worker thread only
        self.spreads = ArrayCache(max(cache_bytes // 8, 64 * 2**20))
        self._config = config or EnhanceConfig()
        self._threads = threads
        self._enhancer = None
        self._enhancer_config: EnhanceConfig | None = None
        self._total = 0
        self._done = 0

    # -- called from the GUI thread -------------------------------------------------------------
    @property
    def config(self) -> EnhanceConfig:
        with self._cond:
            return self._config

    def configure(self, config: EnhanceConfig) -> None:
        """Switch model/scale/device: queued work is dropped, the model is rebuilt (in the worker) on the next job."""
        with self._cond:
            self._config = config
            self._generation += 1
            self._queue.clear()

    @property
    def enhancer(self):
        """The loaded ``Enhancer`` (None before the first job): its own lock lets an export share it."""
        return self._enhancer if self._enhancer_config == self.config else None

    def key(self, series: Any, volume: int, slice_: int, config: EnhanceConfig | None = None) -> tuple:
        c = config or self.config
        return (series_key(series), int(volume), int(slice_), c.model_id, c.scale, c.consistency_id)

    def cached(self, series: Any, volume: int, slice_: int) -> np.ndarray | None:
        return self.results.get(self.key(series, volume, slice_))

    def cached_spread(self, series: Any, volume: int, slice_: int) -> np.ndarray | None:
        return self.spreads.get(self.key(series, volume, slice_))

    def request_spread(self, series: Any, volume: int, slice_: int) -> bool:
        """Queue the TTA spread of one slice (8 inferences) unless cached or queued; False when cached.

        It runs right after that slice's own enhancement (the image the user waits for), before the rest of
        the volume; the next ``request`` (another slice) drops it if it has not started.
        """
        if self.key(series, volume, slice_) in self.spreads:
            return False
        with self._cond:
            def same(j: _Job) -> bool:
                return j.series is series and (j.volume, j.slice) == (volume, slice_)

            if any(j.kind == "spread" and same(j) for j in self._queue):
                return True
            at = next((i + 1 for i, j in enumerate(self._queue) if j.kind == "enhance" and same(j)), 0)
            self._queue.insert(at, _Job(series, volume, slice_, self._generation, "spread"))
            self._cond.notify_all()
        return True

    def request(self, series: Any, volume: int, slice_: int, whole_volume: bool = True) -> None:
        """Enhance ``slice_`` first, then (``whole_volume``) every other slice of ``volume``, nearest first."""
        n = series.shape[1]
        order = nearest_first(slice_, n) if whole_volume else [slice_]
        todo = [s for s in order if self.key(series, volume, s) not in self.results]
        with self._cond:
            self._generation += 1
            self._queue = [_Job(series, volume, s, self._generation) for s in todo]
            self._total, self._done = len(order), len(order) - len(todo)
            done, total = self._done, self._total
            self._cond.notify_all()
        self.progress.emit(done, total)

    def cancel(self) -> None:
        """Stop background enhancement: the queue is cleared; the slice being enhanced now is discarded."""
        self.clear()
        with self._cond:
            self._total = self._done = 0
        self.progress.emit(0, 0)

    # -- worker thread ---------------------------------------------------------------------------
    def _ensure_enhancer(self, config: EnhanceConfig):
        if self._enhancer is not None and self._enhancer_config == config:
            return self._enhancer
        self._enhancer = None
        from srgan.inference.engine import Enhancer, default_threads

        threads = self._threads or default_threads()
        enhancer = Enhancer(scale=config.scale, model=config.model, weights=config.weights,
                            device=config.device, threads=threads, consistency=config.consistency)
        self._enhancer, self._enhancer_config = enhancer, config
        self.model_ready.emit({
            "card": dict(enhancer.card), "label": enhancer.label, "device": str(enhancer.device),
            "provenance": enhancer.provenance.long(), "consistency": enhancer.consistency, "config": config,
        })
        return enhancer

    def _do(self, job: _Job) -> None:
        if job.kind == "spread":
            self._do_spread(job)
            return
        config = self.config
        key = self.key(job.series, job.volume, job.slice, config)
        if key in self.results:
            self._advance(job)
            return
        try:
            enhancer = self._ensure_enhancer(config)
            if not self._current(job):
                return
            image = job.series.pixels(job.volume, job.slice)
            result = enhancer.enhance(image, self._plan(enhancer, job, config), key=(job.volume, job.slice))
        except Exception as err:  # InputError, RuntimeError (incl. out of memory), decode errors
            if not isinstance(err, (InputError, MemoryError)):
                traceback.print_exc()
            if self._current(job):
                self.clear()
                with self._cond:
                    self._total = self._done = 0
                self.failed.emit(_message(err))
            return
        if config != self.config:  # the model changed while this slice ran: not this model's result
            return
        self.results.put(key, result)
        if self._current(job):
            self.enhanced.emit(key, result)
            self._advance(job)

    def _do_spread(self, job: _Job) -> None:
        config = self.config
        key = self.key(job.series, job.volume, job.slice, config)
        if key in self.spreads:
            return
        try:
            enhancer = self._ensure_enhancer(config)
            if not self._current(job):
                return
            image = job.series.pixels(job.volume, job.slice)

            plan = self._plan(enhancer, job, config)

            def enhance_one(view: np.ndarray) -> np.ndarray:
                return enhancer.enhance_stack(view[None], plan, cancel=lambda: not self._current(job))[0]

            spread = tta_spread(enhance_one, image)
        except InterruptedError:  # another slice or model asked for meanwhile
            return
        except Exception as err:
            if not isinstance(err, (InputError, MemoryError)):
                traceback.print_exc()
            if self._current(job):
                self.failed.emit(_message(err))
            return
        if config != self.config:
            return
        self.spreads.put(key, spread)
        if self._current(job):
            self.spread_ready.emit(key, spread)

    def _plan(self, enhancer, job: _Job, config: EnhanceConfig) -> Plan:
        """One plan per series, from its first volume (``Enhancer.plan_series``), as ``srgan enhance`` and the
        series export make it, so every slice, the TTA spread and the export agree."""
        key = self.key(job.series, 0, -1, config)
        if key not in self._plans:
            plan = enhancer.plan_series(job.series)
            self._plans[key] = plan
            self.planned.emit(key, plan.without_outputs())
        return self._plans[key]

    def _advance(self, job: _Job) -> None:
        with self._cond:
            if job.generation != self._generation:
                return
            self._done += 1
            done, total = self._done, self._total
        self.progress.emit(done, total)

"""Background work of the viewer: scanning folders, decoding slices, enhancing slices.

The GUI thread never decodes pixels or runs the model: it sends requests and gets results back through
Qt signals (queued across threads, so slots always run on the GUI thread and only they touch widgets).
What runs next, and which results still count, is decided by the Qt-free queues of :mod:`viewer.jobs`; the
threads here only take the next job, run it and emit its result.

- :class:`FolderScanner` — one-shot thread: ``srgan.io.dicom_series.scan`` of a folder.
- :class:`SliceLoader` — long-lived thread: decodes the current slice first, then its neighbours, and
  computes the plain interpolation ×s of each (the right viewport's fallback and the "enhancement off" view).
- :class:`EnhanceWorker` — long-lived thread that owns the ``Enhancer`` (``engine``, built in that thread)
  and works through an :class:`viewer.jobs.EnhanceScheduler`: the requested slice alone, then the rest of the
  volume nearest first in batches of equal-size slices through ``Enhancer.enhance_stack``. On demand it also
  measures the model's disagreement with itself on the current slice (8 flips/rotations,
  ``srgan.inference.tta.tta_spread``).

``torch`` and ``srgan.inference.engine`` are imported inside the threads, so starting the viewer (or ``--help``)
does not pay for them.
"""
from __future__ import annotations

import traceback
from pathlib import Path
from typing import Any

import numpy as np
from PySide6 import QtCore

from srgan.errors import InputError
from srgan.inference.plan import Plan
from srgan.inference.tta import tta_spread
from viewer.jobs import (
    CONSISTENCY_DEFAULT,
    DEFAULT_INTERPOLATION,
    INTERPOLATIONS,
    ArrayCache,
    EnhanceConfig,
    EnhanceScheduler,
    Job,
    JobQueue,
    error_message,
    interpolate_slice,
    interpolation_key,
    nearest_first,
    series_key,
)

__all__ = ["CONSISTENCY_DEFAULT", "ArrayCache", "EnhanceConfig", "EnhanceWorker", "FolderScanner", "SliceLoader",
           "build_engine", "default_batch", "nearest_first", "series_key"]


def build_engine(config: EnhanceConfig, threads: int | None = None, batch: int | None = None):
    """An ``srgan.inference.engine.Enhancer`` for ``config`` (torch is imported here, not at start-up);
    ``batch``: slices per generator call (default: :func:`default_batch` for the config's device)."""
    from srgan.inference.engine import Enhancer, default_threads

    return Enhancer(scale=config.scale, model=config.model, weights=config.weights, device=config.device,
                    threads=threads or default_threads(), consistency=config.consistency,
                    runtime=config.runtime, precision=config.precision,
                    batch=batch or default_batch(config.device))


def default_batch(device: str) -> int:
    """Slices per batch for ``device``: 1 on the CPU, where one 256² slice already keeps the cores busy and a
    larger batch is slower per slice (measured on 256² slices at ×2, see docs/benchmarks.md) and would hold
    off a cancel for longer; 8 on a GPU, where a batch fills the device."""
    from srgan.options import resolve_device

    return 1 if resolve_device(device).type == "cpu" else 8


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
            self.failed.emit(self.folder, f"{self.folder}: could not be read ({error_message(err)})")
        else:
            self.scanned.emit(self.folder, result)


class _QueueThread(QtCore.QThread):
    """A long-lived thread: take the next job of ``jobs`` (a :class:`viewer.jobs.JobQueue`), run it, repeat."""

    def __init__(self, jobs: JobQueue, parent: QtCore.QObject | None = None):
        super().__init__(parent)
        self.jobs = jobs

    def clear(self) -> None:
        """Drop every queued job; the job running now finishes but its result is ignored."""
        self.jobs.clear()

    def pending(self) -> int:
        return self.jobs.pending()

    @property
    def busy(self) -> bool:
        """True while a job runs or jobs are queued."""
        return self.jobs.busy

    def stop(self, wait_ms: int = 10_000) -> None:
        self.jobs.stop()
        self.wait(wait_ms)

    def run(self) -> None:
        while (job := self.jobs.next()) is not None:
            self._do(job)

    def _do(self, job: Job) -> None:
        raise NotImplementedError


class SliceLoader(_QueueThread):
    """Decodes slices (and their plain ×scale interpolation, ``method`` one of ``viewer.jobs.INTERPOLATIONS``)
    for display, current slice first.

    ``loaded(key, original, interpolated)`` with ``key = (series_key, volume, slice)``; ``interpolated`` is
    None when ``scale`` is 1. Results are also kept in ``originals`` / ``interpolations`` (keyed by ``key`` and
    ``viewer.jobs.interpolation_key(key, scale, method)``) so revisiting a slice is instant.
    """

    loaded = QtCore.Signal(object, object, object)
    failed = QtCore.Signal(object, str)

    def __init__(self, parent: QtCore.QObject | None = None, cache_bytes: int = 768 * 2**20):
        super().__init__(JobQueue(), parent)
        self.originals = ArrayCache(cache_bytes // 4)
        self.interpolations = ArrayCache(cache_bytes - cache_bytes // 4)
        self._scale = 2
        self._method = DEFAULT_INTERPOLATION

    def set_method(self, method: str) -> None:
        """The interpolation of the slices loaded from now on (request them again to get it for these)."""
        if method not in INTERPOLATIONS:
            raise ValueError(f"unknown comparison interpolation {method!r} ({', '.join(INTERPOLATIONS)})")
        with self.jobs.cond:
            self._method = method

    @property
    def method(self) -> str:
        with self.jobs.cond:
            return self._method

    def set_scale(self, scale: int) -> None:
        with self.jobs.cond:
            self._scale = int(scale)

    @property
    def scale(self) -> int:
        with self.jobs.cond:
            return self._scale

    def request(self, series: Any, volume: int, slice_: int, prefetch: int | None = None) -> None:
        """Load ``slice_`` now, then up to ``prefetch`` neighbours (all slices when None), nearest first."""
        order = nearest_first(slice_, series.shape[1])
        if prefetch is not None:
            order = order[: prefetch + 1]
        self.jobs.replace(series, volume, order)

    def _do(self, job: Job) -> None:
        key = (series_key(job.series), job.volume, job.slice)
        scale, method = self.scale, self.method
        try:
            original = self.originals.get(key)
            if original is None:
                original = np.ascontiguousarray(job.series.pixels(job.volume, job.slice), dtype=np.float32)
                self.originals.put(key, original)
            interpolated = None
            if scale > 1:
                ikey = interpolation_key(key, scale, method)
                interpolated = self.interpolations.get(ikey)
                if interpolated is None:
                    interpolated = interpolate_slice(original, scale, method)
                    self.interpolations.put(ikey, interpolated)
        except Exception as err:
            if self.jobs.is_current(job):
                self.failed.emit(key, error_message(err))
            return
        self.loaded.emit(key, original, interpolated)


class EnhanceWorker(_QueueThread):
    """Owns the ``Enhancer`` (:attr:`engine`); enhances the current slice first, then the rest of the volume.

    The requested slice runs alone (what the reader waits for); the rest comes in batches of up to ``batch``
    slices of one size (``EnhanceScheduler.next_batch``; default :func:`default_batch` of the device), one
    ``Enhancer.enhance_stack`` call each, every slice emitted and cached as its batch finishes. A new request,
    a cancel or another model makes the batch in flight stale: ``enhance_stack``'s ``cancel`` callback abandons
    it before its next generator call, and nothing of it is emitted. The engine runs on
    ``srgan.inference.engine.default_threads()`` (all cores but one, left to the GUI) unless ``threads`` is given.

    The queue, the generations, the result keys and the caches are the :class:`viewer.jobs.EnhanceScheduler`
    ``jobs``; ``request``, ``request_spread``, ``cancel``, ``configure``, ``key``, ``cached``… are its, plus the
    signals. Signals (all delivered on the GUI thread):
      ``enhanced(key, image)`` — ``key = (series_key, volume, slice, model_id, scale, consistency_id)``, image
        (s·H, s·W) float32;
      ``spread_ready(key, spread)`` — same key, the TTA spread (s·H, s·W) float32 asked for by ``request_spread``;
      ``progress(done, total)`` — slices of the current request finished (done == total: finished;
        (0, 0) after a cancel);
      ``model_ready(info)`` — dict: ``card``, ``label``, ``device``, ``runtime``, ``precision``, ``provenance``
        (one line), ``consistency`` (the one in force, after the card's default), ``config``;
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

    jobs: EnhanceScheduler

    def __init__(self, config: EnhanceConfig | None = None, parent: QtCore.QObject | None = None,
                 threads: int | None = None, cache_bytes: int = 1536 * 2**20, batch: int | None = None):
        super().__init__(EnhanceScheduler(config, cache_bytes), parent)
        self.results = self.jobs.results
        self.spreads = self.jobs.spreads
        self._plans: dict[tuple, Plan] = {}  # per (series, model), worker thread only
        self._threads = threads
        self._batch = batch
        self._engine = None
        self._engine_config: EnhanceConfig | None = None

    # -- called from the GUI thread -------------------------------------------------------------
    @property
    def config(self) -> EnhanceConfig:
        return self.jobs.config

    def configure(self, config: EnhanceConfig) -> None:
        """Switch model/scale/device: queued work is dropped, the model is rebuilt (in the worker) on the next job."""
        self.jobs.configure(config)

    @property
    def engine(self):
        """The loaded ``srgan.inference.engine.Enhancer`` (None before the first job, or when it was built for
        another configuration): its own lock lets an export share it."""
        return self._engine if self._engine_config == self.config else None

    def key(self, series: Any, volume: int, slice_: int, config: EnhanceConfig | None = None) -> tuple:
        return self.jobs.key(series, volume, slice_, config)

    def cached(self, series: Any, volume: int, slice_: int, config: EnhanceConfig | None = None) -> np.ndarray | None:
        return self.jobs.cached(series, volume, slice_, config)

    def cached_spread(self, series: Any, volume: int, slice_: int) -> np.ndarray | None:
        return self.jobs.cached_spread(series, volume, slice_)

    def request_spread(self, series: Any, volume: int, slice_: int) -> bool:
        """Queue the TTA spread of one slice (8 inferences) unless cached or queued; False when cached."""
        return self.jobs.request_spread(series, volume, slice_)

    def request(self, series: Any, volume: int, slice_: int, whole_volume: bool = True) -> None:
        """Enhance ``slice_`` first, then (``whole_volume``) every other slice of ``volume``, nearest first."""
        self.progress.emit(*self.jobs.request(series, volume, slice_, whole_volume))

    def cancel(self) -> None:
        """Stop background enhancement: the queue is cleared; the slice being enhanced now is discarded."""
        self.jobs.cancel()
        self.progress.emit(0, 0)

    def forget(self) -> None:
        """Drop every enhanced slice, TTA spread and series plan (the next request starts from scratch, as in a
        fresh viewer; the benchmark repeats a run so). Call it while the worker is idle."""
        self.jobs.cancel()
        self.results.clear()
        self.spreads.clear()
        self._plans.clear()

    # -- worker thread ---------------------------------------------------------------------------
    def run(self) -> None:
        while batch := self.jobs.next_batch(self._batch_size()):
            if len(batch) == 1:
                self._do(batch[0])
            else:
                self._do_batch(batch)

    def _batch_size(self) -> int:
        if self._batch:
            return self._batch
        engine = self._engine
        return engine.batch if engine is not None and self._engine_config == self.config else 1

    def _ensure_engine(self, config: EnhanceConfig):
        if self._engine is not None and self._engine_config == config:
            return self._engine
        self._engine = None
        engine = build_engine(config, self._threads, self._batch)
        self._engine, self._engine_config = engine, config
        self.model_ready.emit({
            "card": dict(engine.card), "label": engine.label, "device": str(engine.device),
            "provenance": engine.provenance.long(), "consistency": engine.consistency, "config": config,
            "runtime": engine.provenance.runtime, "precision": engine.provenance.precision,
        })
        return engine

    def _do(self, job: Job) -> None:
        jobs, config = self.jobs, self.config
        if job.kind == "spread":
            self._do_spread(job, config)
            return
        if self.key(job.series, job.volume, job.slice, config) in self.results:
            self._advance(job)
            return
        try:
            engine = self._ensure_engine(config)
            if not jobs.is_current(job):
                return
            image = job.series.pixels(job.volume, job.slice)
            result = engine.enhance(image, self._plan(engine, job, config), key=(job.volume, job.slice))
        except Exception as err:  # InputError, RuntimeError (incl. out of memory), decode errors
            self._failed(job, err, drop_queue=True)
            return
        key = jobs.store(job, config, result)
        if key is not None and jobs.is_current(job):
            self.enhanced.emit(key, result)
            self._advance(job)

    def _do_batch(self, batch: list[Job]) -> None:
        """Background slices of one request, one size: one ``enhance_stack`` call (several where the decoded
        sizes differ from the headers'), abandoned as soon as the request is superseded."""
        jobs, config = self.jobs, self.config
        todo = []
        for job in batch:
            if self.key(job.series, job.volume, job.slice, config) in self.results:
                self._advance(job)
            else:
                todo.append(job)
        if not todo:
            return
        head = todo[0]
        try:
            engine = self._ensure_engine(config)
            if not jobs.is_current(head):
                return
            plan = self._plan(engine, head, config)
            images = [np.asarray(job.series.pixels(job.volume, job.slice), dtype=np.float32) for job in todo]
            groups: dict[tuple, list[int]] = {}
            for i, image in enumerate(images):
                groups.setdefault(image.shape, []).append(i)
            for rows in groups.values():
                if not jobs.is_current(head):
                    return
                out = engine.enhance_stack(np.stack([images[i] for i in rows]), plan,
                                           keys=[(todo[i].volume, todo[i].slice) for i in rows],
                                           cancel=lambda: not jobs.is_current(head))
                for i, result in zip(rows, out):
                    result = result.copy() if len(rows) > 1 else result  # a cached row must not pin the stack
                    key = jobs.store(todo[i], config, result)
                    if key is not None and jobs.is_current(todo[i]):
                        self.enhanced.emit(key, result)
                        self._advance(todo[i])
        except InterruptedError:  # another slice or model asked for meanwhile: the batch is stale
            return
        except Exception as err:  # InputError, RuntimeError (incl. out of memory), decode errors
            self._failed(head, err, drop_queue=True)

    def _do_spread(self, job: Job, config: EnhanceConfig) -> None:
        jobs = self.jobs
        if self.key(job.series, job.volume, job.slice, config) in self.spreads:
            return
        try:
            engine = self._ensure_engine(config)
            if not jobs.is_current(job):
                return
            image = job.series.pixels(job.volume, job.slice)
            plan = self._plan(engine, job, config)

            def enhance_one(view: np.ndarray) -> np.ndarray:
                return engine.enhance_stack(view[None], plan, cancel=lambda: not jobs.is_current(job))[0]

            spread = tta_spread(enhance_one, image)
        except InterruptedError:  # another slice or model asked for meanwhile
            return
        except Exception as err:
            self._failed(job, err, drop_queue=False)
            return
        key = jobs.store_spread(job, config, spread)
        if key is not None and jobs.is_current(job):
            self.spread_ready.emit(key, spread)

    def _failed(self, job: Job, err: Exception, drop_queue: bool) -> None:
        if not isinstance(err, (InputError, MemoryError)):
            traceback.print_exc()
        if self.jobs.is_current(job):
            if drop_queue:
                self.jobs.fail()
            self.failed.emit(error_message(err))

    def _plan(self, engine, job: Job, config: EnhanceConfig) -> Plan:
        """One plan per series, from its first volume (``Enhancer.plan_series``), as ``srgan enhance`` and the
        series export make it, so every slice, the TTA spread and the export agree."""
        key = self.key(job.series, 0, -1, config)
        if key not in self._plans:
            plan = engine.plan_series(job.series)
            self._plans[key] = plan
            self.planned.emit(key, plan.without_outputs())
        return self._plans[key]

    def _advance(self, job: Job) -> None:
        progress = self.jobs.advance(job)
        if progress is not None:
            self.progress.emit(*progress)

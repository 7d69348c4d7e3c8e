"""The viewer's job scheduling, without Qt: which slice is decoded or enhanced next, and which results count.

- :func:`nearest_first` — the order a reader looks at slices: the current one, then ±1, ±2 …
- :class:`ArrayCache` — thread-safe LRU of arrays bounded by bytes (workers write, the GUI reads).
- :class:`JobQueue` — a replaceable queue of slice :class:`Job` s under one lock/condition. Every replacement
  or clear starts a new *generation*; a job of an older generation is stale: it may finish, but its result is
  dropped (:meth:`JobQueue.is_current`).
- :class:`EnhanceScheduler` — the enhancement queue: the model configuration (:class:`EnhanceConfig`), the
  result keys (series, volume, slice, model, scale, consistency), the caches of enhanced slices and TTA
  spreads, the progress of the current request, and the batches the worker takes
  (:meth:`EnhanceScheduler.next_batch`: the requested slice alone, then the rest nearest first in batches of
  slices of one shape).

``viewer.workers`` wraps these in QThreads that only take the next job, run it and emit signals.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

import numpy as np

from srgan.errors import InputError

CONSISTENCY_DEFAULT = "model default"
#: the plain interpolations the right pane compares with (toggle E, the difference overlay, region statistics):
#: zero-filled k-space (sinc, what the scanner console shows) first, the default, then bicubic
INTERPOLATIONS = ("zerofill", "bicubic")
DEFAULT_INTERPOLATION = INTERPOLATIONS[0]


def interpolation_key(key: tuple, scale: int, method: str) -> tuple:
    """Cache key of a slice's plain interpolation: ``(series_key, volume, slice, scale, method)``, so images of
    two methods (or scales) are never mixed up."""
    return (*key, int(scale), str(method))


def interpolate_slice(original: np.ndarray, scale: int, method: str) -> np.ndarray:
    """The plain ×``scale`` interpolation of one decoded slice (``srgan.inference.engine.interpolate``: the same
    pixel-centre convention as the model's output; zero-fill of the whole slice)."""
    if method not in INTERPOLATIONS:
        raise ValueError(f"unknown comparison interpolation {method!r} ({', '.join(INTERPOLATIONS)})")
    from srgan.inference.engine import interpolate

    return interpolate(original, scale, method)


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


def slice_shape(series: Any, volume: int, slice_: int) -> tuple[int, int]:
    """``(rows, cols)`` of one slice from its header (``Series.frame``), without decoding it; the series'
    ``shape[2:]`` for a series without frames."""
    frame = getattr(series, "frame", None)
    if frame is not None:
        f = frame(volume, slice_)
        return int(f.rows), int(f.cols)
    return int(series.shape[2]), int(series.shape[3])


def error_message(err: BaseException) -> str:
    """One line for the status bar / dialog; out-of-memory gets a hint the user can act on."""
    text = str(err) or type(err).__name__
    if "out of memory" in text.lower() or isinstance(err, MemoryError):
        return (f"Out of memory while enhancing ({text.splitlines()[0]}). "
                "Try the CPU, a smaller scale or closing other programs.")
    if isinstance(err, InputError):
        return text
    return f"{type(err).__name__}: {text.splitlines()[0] if text else ''}"


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


@dataclass(frozen=True)
class Job:
    series: Any
    volume: int
    slice: int
    generation: int
    kind: str = "enhance"  # or "spread": the TTA disagreement map of the slice
    alone: bool = False  # the slice a request asked for: enhanced by itself, never batched (lowest latency)


class JobQueue:
    """A replaceable queue of slice jobs shared by the GUI thread (which fills it) and one worker (which
    empties it). ``cond`` is re-entrant: a caller holding it may still call every method."""

    def __init__(self) -> None:
        self.cond = threading.Condition()  # an RLock inside
        self._queue: list[Job] = []
        self._stopped = False
        self._generation = 0
        self._busy = False

    @property
    def generation(self) -> int:
        with self.cond:
            return self._generation

    def replace(self, series: Any, volume: int, slices: list[int]) -> None:
        """A new generation: the jobs ``slices`` (in that order) replace everything queued."""
        with self.cond:
            self._generation += 1
            self._queue = [Job(series, volume, s, self._generation) for s in slices]
            self.cond.notify_all()

    def clear(self) -> None:
        """Drop every queued job; the job running now finishes but its result is ignored."""
        with self.cond:
            self._generation += 1
            self._queue.clear()

    def pending(self) -> int:
        with self.cond:
            return len(self._queue)

    def jobs(self) -> list[Job]:
        """A copy of the queue, next job first."""
        with self.cond:
            return list(self._queue)

    def stop(self) -> None:
        """No more jobs: :meth:`next` returns None from now on."""
        with self.cond:
            self._stopped = True
            self._queue.clear()
            self.cond.notify_all()

    @property
    def stopped(self) -> bool:
        with self.cond:
            return self._stopped

    @property
    def busy(self) -> bool:
        """True while a job runs or jobs are queued."""
        with self.cond:
            return self._busy or bool(self._queue)

    def next(self, timeout: float | None = None) -> Job | None:
        """The next job, waiting for one (the worker's loop); None once stopped, or after ``timeout`` s."""
        with self.cond:
            self._busy = False
            if not self._queue and not self._stopped:
                self.cond.wait_for(lambda: self._queue or self._stopped, timeout)
            if self._stopped or not self._queue:
                return None
            self._busy = True
            return self._queue.pop(0)

    def is_current(self, job: Job) -> bool:
        """The job belongs to the latest request (nothing replaced or cleared the queue since)."""
        with self.cond:
            return job.generation == self._generation and not self._stopped


@dataclass(frozen=True)
class EnhanceConfig:
    """Which model the worker runs: bundled ``model`` name (None = default fidelity) or a ``weights`` file, and
    its data-consistency projection (``srgan.options.CONSISTENCY_MODES``; None = what the model card recommends)."""
    scale: int = 2
    model: str | None = None
    weights: str | None = None
    device: str = "auto"
    consistency: str | None = None
    runtime: str = "auto"  # srgan.options.RUNTIMES
    precision: str | None = None  # srgan.options.PRECISIONS; None = what the model card recommends

    @property
    def model_id(self) -> str:
        return self.weights or self.model or "default"

    @property
    def consistency_id(self) -> str:
        """The consistency part of a cache key: outputs of two settings are never mixed up."""
        return self.consistency or CONSISTENCY_DEFAULT

    @property
    def output_id(self) -> tuple:
        """What decides the pixels of an output (not the device): a model loaded for another device makes the
        same slices."""
        return (self.model_id, self.scale, self.consistency)


def result_key(series: Any, volume: int, slice_: int, config: EnhanceConfig) -> tuple:
    """Cache key of one enhanced slice: ``(series_key, volume, slice, model_id, scale, consistency_id)``;
    ``slice_`` −1 with volume 0 is the key of the series' plan."""
    return (series_key(series), int(volume), int(slice_), config.model_id, config.scale, config.consistency_id)


class EnhanceScheduler(JobQueue):
    """The enhancement queue: current slice first, then the rest of the volume nearest first, skipping cached
    slices; TTA spreads on demand right after their slice; progress of the current request.

    The GUI thread calls :meth:`request`, :meth:`request_spread`, :meth:`cancel`, :meth:`configure`; the worker
    takes :meth:`next_batch` (or :meth:`next`), checks :meth:`is_current` before and after the work (and while
    a batch runs, through the engine's ``cancel`` callback), stores with :meth:`store` / :meth:`store_spread`
    and reports :meth:`advance` per slice.
    """

    def __init__(self, config: EnhanceConfig | None = None, cache_bytes: int = 1536 * 2**20):
        super().__init__()
        self.results = ArrayCache(cache_bytes)
        self.spreads = ArrayCache(max(cache_bytes // 8, 64 * 2**20))
        self._config = config or EnhanceConfig()
        self._total = 0
        self._done = 0

    @property
    def config(self) -> EnhanceConfig:
        with self.cond:
            return self._config

    def configure(self, config: EnhanceConfig) -> None:
        """Switch model/scale/device: queued work is dropped (a new generation)."""
        with self.cond:
            self._config = config
            self._generation += 1
            self._queue.clear()

    def key(self, series: Any, volume: int, slice_: int, config: EnhanceConfig | None = None) -> tuple:
        return result_key(series, volume, slice_, config or self.config)

    def cached(self, series: Any, volume: int, slice_: int, config: EnhanceConfig | None = None) -> np.ndarray | None:
        return self.results.get(self.key(series, volume, slice_, config))

    def cached_spread(self, series: Any, volume: int, slice_: int) -> np.ndarray | None:
        return self.spreads.get(self.key(series, volume, slice_))

    def request(self, series: Any, volume: int, slice_: int, whole_volume: bool = True) -> tuple[int, int]:
        """Enhance ``slice_`` first, then (``whole_volume``) every other slice of ``volume``, nearest first.
        Returns the progress ``(done, total)``: slices already cached count as done."""
        n = series.shape[1]
        order = nearest_first(slice_, n) if whole_volume else [slice_]
        with self.cond:
            todo = [s for s in order if self.key(series, volume, s) not in self.results]
            self._generation += 1
            self._queue = [Job(series, volume, s, self._generation, alone=s == slice_) for s in todo]
            self._total, self._done = len(order), len(order) - len(todo)
            self.cond.notify_all()
            return self._done, self._total

    def next_batch(self, size: int, timeout: float | None = None) -> list[Job]:
        """The next job and, when it is background enhancement (not the requested slice, not a TTA spread), up
        to ``size`` − 1 more taken with it: the enhancement jobs queued right after it of the same series, volume,
        generation and slice shape (``slice_shape``), in queue order (nearest first). ``[]`` once stopped or
        after ``timeout`` s (as :meth:`next`)."""
        with self.cond:
            job = self.next(timeout)
            if job is None:
                return []
            batch = [job]
            if job.kind != "enhance" or job.alone or size <= 1:
                return batch
            shape = slice_shape(job.series, job.volume, job.slice)
            while len(batch) < size and self._queue:
                nxt = self._queue[0]
                if (nxt.kind != "enhance" or nxt.alone or nxt.series is not job.series or nxt.volume != job.volume
                        or nxt.generation != job.generation
                        or slice_shape(nxt.series, nxt.volume, nxt.slice) != shape):
                    break
                batch.append(self._queue.pop(0))
            return batch

    def request_spread(self, series: Any, volume: int, slice_: int) -> bool:
        """Queue the TTA spread of one slice unless cached or queued; False when cached.

        It runs right after that slice's own enhancement (the image the user waits for), before the rest of
        the volume; the next ``request`` (another slice) drops it if it has not started.
        """
        if self.key(series, volume, slice_) in self.spreads:
            return False
        with self.cond:
            def same(j: Job) -> bool:
                return j.series is series and (j.volume, j.slice) == (volume, slice_)

            if any(j.kind == "spread" and same(j) for j in self._queue):
                return True
            at = next((i + 1 for i, j in enumerate(self._queue) if j.kind == "enhance" and same(j)), 0)
            self._queue.insert(at, Job(series, volume, slice_, self._generation, "spread"))
            self.cond.notify_all()
        return True

    def cancel(self) -> None:
        """Stop background enhancement: the queue is cleared; the slice being enhanced now is discarded."""
        with self.cond:
            self.clear()
            self._total = self._done = 0

    def store(self, job: Job, config: EnhanceConfig, image: np.ndarray) -> tuple | None:
        """Keep a finished slice made with ``config``; its key, or None when the model changed meanwhile
        (not this model's result: dropped)."""
        if config != self.config:
            return None
        key = self.key(job.series, job.volume, job.slice, config)
        self.results.put(key, image)
        return key

    def store_spread(self, job: Job, config: EnhanceConfig, spread: np.ndarray) -> tuple | None:
        if config != self.config:
            return None
        key = self.key(job.series, job.volume, job.slice, config)
        self.spreads.put(key, spread)
        return key

    def advance(self, job: Job) -> tuple[int, int] | None:
        """One more slice of the current request is done: the new ``(done, total)``, None for a stale job."""
        with self.cond:
            if job.generation != self._generation:
                return None
            self._done += 1
            return self._done, self._total

    def fail(self) -> None:
        """An error: drop the queue; nothing is retried until the next request."""
        self.cancel()

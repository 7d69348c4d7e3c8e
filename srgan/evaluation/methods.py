"""The methods a benchmark compares, built from the inference engine: interpolation baselines and generators.

Baselines are ``srgan.inference.engine.interpolate`` under the names of ``srgan.options.BASELINES``. Each model
is one ``srgan.inference.engine.Enhancer`` (consistency off) whose raw output of a stack is made once
(:class:`CachedModel`) and shared by the model's rows: its main row (the projection its card recommends) and one
row per projection of ``srgan.options.PROJECTIONS``. A card recommending ``auto`` is resolved by the engine
itself: ``Enhancer.plan(stack, consistency="auto")`` and ``Enhancer.enhance_stack`` with that plan, exactly what
``srgan enhance`` outputs for the stack.

Every row records the relative residual ``‖D(SR) − LR‖ / ‖LR‖`` its projection left (``RESIDUAL_TARGET`` is what
a projection should reach) and, for the case the report shows, its outputs (:class:`Book`).
"""

from __future__ import annotations

import hashlib
import statistics
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from srgan.options import BASELINES

RESIDUAL_TARGET = 1e-3  # relative residual a projection should leave on every slice
TIMING_LR_SIDE = {2: 128, 4: 64}  # LR side for ms/slice: both give a 256×256 output

__all__ = [
    "RESIDUAL_TARGET",
    "TIMING_LR_SIDE",
    "BenchMethod",
    "Book",
    "CachedModel",
    "ModelSpec",
    "baseline_raw",
    "model_specs",
    "time_ms",
    "timing_input",
    "variant_name",
]


@dataclass
class ModelSpec:
    """A generator in the benchmark: ``role`` is seed, fidelity or gan (the card's ``kind``; arch seed → seed)."""

    name: str
    path: Path
    card: dict
    role: str
    bundled: bool


def _role(card: dict) -> str:
    if card.get("arch") == "seed":
        return "seed"
    kind = str(card.get("kind", "fidelity"))
    return "gan" if kind.startswith("gan") else "fidelity"


def model_specs(
    scale: int, weights: Sequence[str | Path] = (), *, bundled: bool = True, bundled_dir: str | Path | None = None
) -> list[ModelSpec]:
    """Models for ``scale``, seed first, then fidelity, then GAN: bundled (``srgan.models.weights.list_bundled``)
    and ``weights`` (whose cards give their scale)."""
    from srgan.models.weights import list_bundled, read_card

    specs: list[ModelSpec] = []
    names = set(BASELINES)
    cards = [(c, Path(c["path"]), True) for c in (list_bundled(bundled_dir) if bundled else [])]
    for w in weights:
        p = Path(w)
        p = p if p.suffix == ".safetensors" else p.with_name(p.name + ".safetensors")
        cards.append((read_card(p), p, False))
    for card, path, is_bundled in cards:
        s = card.get("kwargs", {}).get("scale", card.get("scale"))
        if s != scale:
            continue
        name = str(card.get("name") or path.stem)
        while name in names:
            name += "'"
        names.add(name)
        specs.append(ModelSpec(name, path, card, _role(card), is_bundled))
    order = {"seed": 0, "fidelity": 1, "gan": 2}
    specs.sort(key=lambda m: order[m.role])
    return specs


class Book:
    """What the methods saw and made for the current case: outputs of the recorded case, projection residuals."""

    def __init__(self) -> None:
        self.recording = False
        self.outputs: dict[str, np.ndarray] = {}
        self.lr: np.ndarray | None = None
        self.residuals: dict[str, list[float]] = {}

    def start(self, record: bool) -> None:
        self.recording = record
        self.outputs = {}
        self.lr = None


class CachedModel:
    """An ``Enhancer`` (consistency off) whose last stack output is reused by the rows of its model.

    ``outputs_for(lrs, model_p)`` hands that output to a plan as generator outputs already made, by stack index, when
    it was made for the same stack with the same LR-kind input."""

    def __init__(self, enhancer: Any):
        self.enhancer = enhancer
        self._key: str | None = None
        self._out: np.ndarray | None = None
        self._model_p: float | None = None

    @staticmethod
    def _key_of(lrs: np.ndarray) -> str:
        return hashlib.sha1(np.ascontiguousarray(lrs).tobytes()).hexdigest() + str(lrs.shape)

    def __call__(self, lrs: np.ndarray) -> np.ndarray:
        key = self._key_of(lrs)
        if key != self._key or self._out is None:
            plan = self.enhancer.plan(lrs)
            self._out, self._model_p, self._key = self.enhancer.enhance_stack(lrs, plan), plan.model_p, key
        return self._out

    def outputs_for(self, lrs: np.ndarray, model_p: float | None) -> dict[Hashable, np.ndarray]:
        if self._out is None or self._key != self._key_of(lrs) or self._model_p != model_p:
            return {}
        return dict(enumerate(self._out))


class BenchMethod:
    """An ``evaluate_pairs`` method over whole stacks: (N, h, w) → (N, s·h, s·w), the raw output projected onto the
    LR input (``projection`` one of ``srgan.options.CONSISTENCY_MODES``; its residual recorded), outputs of the
    recorded case kept in ``book``.

    ``projection="auto"`` needs ``raw`` to be a :class:`CachedModel`: the row is what the engine makes of the stack
    under ``auto`` (its plan, its outputs), not a projection chosen here."""

    def __init__(
        self,
        name: str,
        raw: Callable[[np.ndarray], np.ndarray],
        scale: int,
        book: Book,
        *,
        projection: str = "off",
        record: bool = True,
    ):
        if projection == "auto" and not isinstance(raw, CachedModel):
            raise ValueError(f"{name}: consistency auto needs a model, not a plain function")
        self.name, self.raw, self.scale, self.book = name, raw, int(scale), book
        self.projection, self.record = projection, record

    def __call__(self, lr: np.ndarray) -> np.ndarray:
        return self.stack(np.asarray(lr)[None])[0]

    def _auto(self, lrs: np.ndarray) -> tuple[np.ndarray, str]:
        assert isinstance(self.raw, CachedModel)
        enhancer = self.raw.enhancer
        self.raw(lrs)  # the raw output the model's other rows share: reused below where the plan allows
        plan = enhancer.plan(lrs, consistency="auto")
        made = {**self.raw.outputs_for(lrs, plan.model_p), **plan.outputs}
        sr = enhancer.enhance_stack(lrs, replace(plan, outputs=made), keys=list(range(len(lrs))))
        return sr, plan.projection

    def stack(self, lrs: np.ndarray) -> np.ndarray:
        from srgan.inference.consistency import project, relative_residual
        from srgan.inference.plan import KSPACE_STEPS

        lrs = np.asarray(lrs, np.float32)
        if self.projection == "auto":
            sr, projection = self._auto(lrs)
            sr = np.asarray(sr, np.float32)
        else:
            sr, projection = np.asarray(self.raw(lrs), np.float32), self.projection
            if projection != "off":
                steps = KSPACE_STEPS if projection == "kspace" else None
                sr = np.stack([project(o, lr, self.scale, projection, steps=steps) for o, lr in zip(sr, lrs)])
        if projection != "off":
            self.book.residuals.setdefault(self.name, []).extend(
                relative_residual(o, lr, self.scale, projection) for o, lr in zip(sr, lrs)
            )
        if self.book.recording and self.record:
            self.book.outputs[self.name] = sr
            self.book.lr = lrs
        return sr


def baseline_raw(name: str, scale: int) -> Callable[[np.ndarray], np.ndarray]:
    """Baseline ``name`` (one of ``srgan.options.BASELINES``) over a stack."""
    from srgan.inference.engine import interpolate

    return lambda lrs: np.stack([interpolate(lr, scale, name) for lr in lrs])


def variant_name(model: str, projection: str) -> str:
    return f"{model} [proj {projection}]"


def time_ms(fn: Callable[[np.ndarray], object], x: np.ndarray, runs: int = 10, warmup: int = 2) -> float:
    """Median wall time of ``fn(x)`` in ms over ``runs`` calls after ``warmup`` calls (start-up excluded)."""
    for _ in range(max(0, warmup)):
        fn(x)
    times = []
    for _ in range(max(1, runs)):
        t0 = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t0)
    return 1000.0 * statistics.median(times)


def timing_input(scale: int, seed: int = 0) -> np.ndarray:
    """A smooth random LR slice (side ``TIMING_LR_SIDE[scale]``); content does not change convolution cost."""
    from scipy import ndimage

    n = TIMING_LR_SIDE[scale]
    x = ndimage.gaussian_filter(np.random.default_rng(seed).random((n, n)), 2.0)
    return ((x - x.min()) / (np.ptp(x) or 1.0)).astype(np.float32)

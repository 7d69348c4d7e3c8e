"""The inference engine shared by ``srgan enhance``, ``srgan evaluate`` and the viewer.

Images go in and come out in their own intensity units: each image is normalised robustly
(``srgan.normalize``), enhanced, and mapped back with the same two numbers. Large images are cut into overlapping
tiles whose margins exceed the network's receptive field, so tiled and untiled outputs agree (no seams).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import numpy as np

from srgan.errors import InputError
from srgan.inference.consistency import project, residual_log_ratios
from srgan.inference.plan import Plan, decide, describe, kind_sample, needs_test, residual_test_slices
from srgan.inference.runtime import load_generator
from srgan.models.weights import bundled_weights, load_weights
from srgan.normalize import Normalizer
from srgan.options import CONSISTENCY_MODES, resolve_device
from srgan.provenance import Provenance

__all__ = [
    "BATCH_PIXELS",
    "Enhancer",
    "batch_rows",
    "default_threads",
    "for_inference",
    "interpolate",
    "kind_sample",
    "model_input",
    "resolve_device",
]


def for_inference(model, device):
    """``model`` in eval mode, laid out for the fastest convolutions on ``device``.

    On CPU, channels-last weights let oneDNN keep activations in NHWC between layers instead of reordering around
    every convolution (docs/benchmarks.md measures the difference). The benchmark times models through this same
    function."""
    import torch

    model = model.eval()
    if getattr(device, "type", str(device)) == "cpu":
        model = model.to(memory_format=torch.channels_last)
    return model


def model_input(x, device):
    """A ``(B, C, h, w)`` batch on ``device`` in the layout ``for_inference`` chose."""
    import torch

    x = x.to(device)
    return x.contiguous(memory_format=torch.channels_last) if x.device.type == "cpu" else x


def interpolate(image: np.ndarray, scale: int, method: str = "bicubic") -> np.ndarray:
    """Plain interpolation ``(H, W) → (s·H, s·W)`` float32 under the pixel-centre convention of
    ``srgan.io.geometry`` (LR pixel i centred on HR position i·s + (s−1)/2).

    ``method`` is one of ``srgan.options.BASELINES`` (or ``bilinear``). ``zerofill`` is zero-filled k-space
    (sinc) interpolation, what MR scanners and consoles show: ``srgan.degrade.zerofill_up`` of the whole slice
    in float64 (periodic, no mirrored border), unclipped so modality units survive."""
    import torch
    import torch.nn.functional as F

    if method == "zerofill":
        from srgan.degrade import zerofill_up

        return np.asarray(zerofill_up(np.asarray(image, dtype=np.float64), scale), dtype=np.float32)
    a = np.asarray(image, dtype=np.float32)
    if method == "lanczos":
        from PIL import Image

        h, w = a.shape
        return np.asarray(
            Image.fromarray(a, mode="F").resize((w * scale, h * scale), Image.Resampling.LANCZOS), dtype=np.float32
        )
    mode = {"bicubic": "bicubic", "nearest": "nearest-exact", "bilinear": "bilinear"}.get(method)
    if mode is None:
        raise ValueError(f"unknown interpolation {method!r}")
    t = torch.from_numpy(np.ascontiguousarray(a))[None, None]
    kw = {} if mode == "nearest-exact" else {"align_corners": False}
    return F.interpolate(t, scale_factor=scale, mode=mode, **kw)[0, 0].numpy()


class Enhancer:
    """A loaded generator plus everything needed to apply it to images in modality units.

    One acquisition (a stack, a NIfTI volume, a DICOM series) is first given a :class:`srgan.inference.plan.Plan`
    (``plan`` / ``plan_series``), which every slice of it is then enhanced with (``enhance_stack`` / ``enhance``).

    Thread use: build and call it from one thread (the viewer's worker owns one); its calls take a lock so a
    second thread (e.g. an export) may share it safely, one call at a time.
    """

    def __init__(
        self,
        *,
        scale: int = 2,
        model: str | None = None,
        weights: str | Path | None = None,
        device: str = "auto",
        threads: int | None = None,
        tile: int = 192,
        margin: int = 32,
        batch: int = 8,
        consistency: str | None = None,
        runtime: str = "auto",
        precision: str | None = None,
        log: Callable[[str], None] | None = None,
    ):
        """``runtime``/``precision``: where and in what arithmetic the generator runs on the CPU
        (``srgan.inference.runtime.load_generator``; precision None: the model card's recommendation, else fp32);
        ``log``: where a fallback's one line goes (default: ``logging.warning``)."""
        if scale not in (2, 4):
            raise InputError(None, f"scale must be 2 or 4, got {scale}")
        self.device = resolve_device(device)
        path = Path(weights) if weights else bundled_weights(scale, model)
        model, self.card = load_weights(path, device=self.device)
        self.model = for_inference(model, self.device)
        self.weights_path = path
        self.scale = int(self.card.get("kwargs", {}).get("scale", scale))
        if self.scale != scale:
            raise InputError(path, f"these weights are for x{self.scale}, but x{scale} was asked for")
        self.tile, self.margin, self.batch = int(tile), int(margin), int(batch)
        # None: what the model card recommends (the degradation the model was made for), else off.
        self.consistency = consistency or self.card.get("consistency", "off")
        if self.consistency not in CONSISTENCY_MODES:
            raise InputError(
                None, f"unknown consistency {self.consistency!r}; choose from {', '.join(CONSISTENCY_MODES)}"
            )
        # the generator call of ``_run``; ``self.model`` keeps the LR-kind detector and the interpolation base
        self.generator = load_generator(
            self.model, self.card, device=self.device, runtime=runtime, precision=precision, threads=threads, log=log
        )
        self.provenance = Provenance(
            model=self.card["arch"],
            weights_name=self.card.get("name", path.stem),
            weights_sha256=self.card["sha256"],
            scale=self.scale,
            consistency=describe(self.consistency),
            runtime=self.generator.name,
            precision=self.generator.precision,
        )
        self._lock = threading.Lock()

    @property
    def label(self) -> str:
        """Short human name for overlays, e.g. ``brainsr-x2-fidelity (srresnet_lite)``."""
        return f"{self.card.get('name', self.weights_path.stem)} ({self.card['arch']})"

    @property
    def has_kind_input(self) -> bool:
        """Whether the generator takes the LR-kind plane (and carries the detector that estimates it)."""
        return getattr(self.model, "kind", None) is not None

    def p_kspace(self, images: np.ndarray) -> float | None:
        """P(k-space truncated rather than bicubic-downsampled) of a ``(N, H, W)`` stack from one acquisition, one
        value for all slices (``KindDetector.pooled`` over the slices ``kind_sample`` picks); None for a model
        without the LR-kind input."""
        import torch

        if not self.has_kind_input:
            return None
        images = np.asarray(images)
        stack = torch.from_numpy(np.ascontiguousarray(images[kind_sample(len(images))], dtype=np.float32))
        return float(self.model.kind.pooled(stack.reshape(-1, 1, *stack.shape[-2:]).to(self.device))[0])

    def plan(self, images: np.ndarray, *, p_kspace: float | None = None, consistency: str | None = None) -> Plan:
        """The plan for a ``(N, H, W)`` stack from one acquisition; its ``outputs`` are keyed by stack index.

        ``p_kspace``: the detector's estimate if already made (default: ``p_kspace(images)``); ``consistency``:
        instead of this enhancer's own (the benchmark asks what ``auto`` would do). Under ``auto`` this may run
        the generator on up to ``TEST_SLICES`` slices."""
        import torch

        with self._lock, torch.inference_mode():
            return self._plan(np.asarray(images, dtype=np.float32), p_kspace, consistency)

    def plan_series(self, series: Any, volume: int = 0) -> Plan:
        """The plan for a ``srgan.io.dicom_series.Series``, from the slices ``kind_sample`` picks from ``volume``
        (decoded here only for a model with the LR-kind input); its ``outputs`` are keyed by
        ``(volume, slice)``. The viewer, its export and ``srgan enhance`` all plan a series from its first volume,
        so what is shown is what is exported: one acquisition has one k-space sampling, while e.g. high-b
        diffusion volumes are mostly noise and would read as k-space."""
        if not self.has_kind_input:
            return decide(self.consistency, None, self.scale)
        picks, planes = [], []
        for k in kind_sample(series.shape[1]):
            try:
                planes.append(series.pixels(volume, int(k)))
                picks.append(int(k))
            except Exception:  # noqa: BLE001 - a slice that cannot be decoded is reported where it is enhanced
                continue
        shapes = [p.shape for p in planes]
        if not shapes:
            raise InputError(getattr(series, "files", [None])[0], "none of the series' sample slices could be decoded")
        common = max(set(shapes), key=shapes.count)  # parts of a series may differ in size: plan from the most
        picks = [k for k, p in zip(picks, planes) if p.shape == common]
        plan = self.plan(np.stack([p for p in planes if p.shape == common]))
        outputs: dict[Hashable, np.ndarray] = {(volume, picks[cast(int, i)]): out for i, out in plan.outputs.items()}
        return replace(plan, outputs=outputs)

    def _plan(
        self,
        stack: np.ndarray,
        p_kspace: float | None,
        consistency: str | None,
        norms: Sequence[Normalizer] | None = None,
    ) -> Plan:
        consistency = consistency or self.consistency
        if p_kspace is None:
            p_kspace = self.p_kspace(stack)
        picks = residual_test_slices(len(stack))
        interpolation = _interpolation(stack[k] for k in picks)
        if not needs_test(consistency, p_kspace):
            return replace(decide(consistency, p_kspace, self.scale), **interpolation)

        fitted = {k: norms[k] for k in picks} if norms is not None else {k: Normalizer.fit(stack[k]) for k in picks}
        outputs = self._raw(stack, picks, fitted, p_kspace)
        ratios = residual_log_ratios(np.stack([outputs[k] for k in picks]), stack[picks], self.scale)
        ratio = float(np.median(ratios))
        plan = replace(decide(consistency, p_kspace, self.scale, ratio), **interpolation)
        # the test's outputs are what enhancing would compute only if the generator's input stays the same
        made: dict[Hashable, np.ndarray] = {k: v for k, v in outputs.items()}
        return replace(plan, outputs=made) if plan.model_p == p_kspace else plan

    def _raw(
        self,
        stack: np.ndarray,
        picks: Sequence[int],
        norms: Mapping[int, Normalizer] | Sequence[Normalizer],
        model_p: float | None,
    ) -> dict[int, np.ndarray]:
        """Generator outputs in modality units (no projection) of the slices ``picks``, by index (``norms``: the
        slices' normalisers, indexed the same way): ``_raw_rows`` with the acquisition's one LR-kind input."""
        return self._raw_rows(list(stack), picks, norms, [model_p] * len(stack))

    def _run(self, x: Any, model_p: float | Sequence[float] | None = None) -> Any:
        """Normalised ``(B, 1, h, w)`` tensor → ``(B, 1, s·h, s·w)``, tiled when larger than ``tile``. ``model_p``:
        the plan's LR-kind input (None for models without it), or one per row (images with plans of their own)."""
        import torch

        b, _, h, w = x.shape
        s, t, m = self.scale, self.tile, self.margin
        # a global interpolation (zero-filled k-space) and the LR-kind estimate are computed once on the whole
        # slice (stack) and handed to every tile
        if model_p is None:
            kind = None
        elif isinstance(model_p, (int, float)):
            kind = torch.full((b,), float(model_p), device=self.device)
        else:
            kind = torch.tensor([float(p) for p in model_p], dtype=torch.float32, device=self.device)
        if h <= t + 2 * m and w <= t + 2 * m:
            return self.generator(x, None, kind).cpu().contiguous()
        base = self.model.upsample(x.to(self.device)) if getattr(self.model, "base", None) == "zerofill" else None
        out = torch.empty((b, 1, h * s, w * s), dtype=x.dtype)
        for y0 in range(0, h, t):
            for x0 in range(0, w, t):
                y1, x1 = min(y0 + t, h), min(x0 + t, w)
                ya, xa = max(0, y0 - m), max(0, x0 - m)
                yb, xb = min(h, y1 + m), min(w, x1 + m)
                tile_base = None if base is None else base[:, :, ya * s : yb * s, xa * s : xb * s]
                sr = self.generator(x[:, :, ya:yb, xa:xb], tile_base, kind).cpu()
                out[:, :, y0 * s : y1 * s, x0 * s : x1 * s] = sr[
                    :, :, (y0 - ya) * s : (y1 - ya) * s, (x0 - xa) * s : (x1 - xa) * s
                ]
        return out

    def enhance_stack(
        self,
        images: np.ndarray,
        plan: Plan | None = None,
        *,
        keys: Sequence[Hashable] | None = None,
        progress: Callable[[int, int], None] | None = None,
        cancel: Callable[[], bool] | None = None,
    ) -> np.ndarray:
        """``(N, H, W)`` in any intensity units → ``(N, s·H, s·W)`` float32 in the same units.

        Each image gets its own normaliser, so images of one stack may differ in range. ``plan``: the
        acquisition's plan (e.g. ``plan_series`` of the series these slices come from), or None to plan this stack
        as one acquisition. ``keys``: each row's key into ``plan.outputs`` (outputs already made are taken, not
        computed again); with ``plan`` None, the row indices of this stack.
        """
        import torch

        stack = np.asarray(images, dtype=np.float32)
        if stack.ndim != 3:
            raise ValueError(f"expected a (N, H, W) stack, got shape {stack.shape}")
        n, h, w = stack.shape
        if keys is not None and len(keys) != n:
            raise ValueError(f"{len(keys)} keys for {n} images")
        out = np.empty((n, h * self.scale, w * self.scale), dtype=np.float32)
        norms = [Normalizer.fit(im) for im in stack]
        with self._lock, torch.inference_mode():
            if plan is None:
                plan, keys = self._plan(stack, None, None, norms), range(n)
            made = plan.outputs
            step = self.rows_per_call((h, w))  # one acquisition batches by the same pixel budget as several
            for i in range(0, n, step):
                if cancel is not None and cancel():
                    raise InterruptedError("enhancement cancelled")
                j = min(n, i + step)
                have = {k: made[keys[k]] for k in range(i, j) if keys is not None and keys[k] in made}
                todo = [k for k in range(i, j) if k not in have]
                have.update(self._raw(stack, todo, norms, plan.model_p) if todo else {})
                for k in range(i, j):
                    out[k] = have[k]
                if plan.projection != "off":
                    out[i:j] = project(out[i:j], stack[i:j], self.scale, plan.projection, steps=plan.steps)
                if progress is not None:
                    progress(j, n)
        return out

    def rows_per_call(self, shape: Sequence[int]) -> int:
        """How many LR images of ``shape`` (H, W) share one generator call (``batch_rows``: a pixel budget, at most
        ``batch``), within one acquisition and across several; the derived writer reads files ahead until they fill
        one. On the CPU a call whose activations outgrow the caches is slower per slice (docs/benchmarks.md)."""
        return batch_rows(shape, self.batch)

    def plan_images(self, images: Sequence[np.ndarray]) -> list[Plan]:
        """One plan per image, for images that are each their own acquisition: equal to ``plan(image[None])``
        image by image (outputs keyed 0), with the LR-kind estimates and the residual test's generator runs
        batched over images of equal size."""
        import torch

        stacks = [np.asarray(im, dtype=np.float32) for im in images]
        for im in stacks:
            if im.ndim != 2:
                raise ValueError(f"expected (H, W) images, got shape {im.shape}")
        p: list[float | None] = [None] * len(stacks)
        with self._lock, torch.inference_mode():
            if self.has_kind_input:
                for idx in _by_shape(stacks, range(len(stacks))):
                    p_group = _pooled_each(
                        self.model.kind, torch.from_numpy(np.stack([stacks[k] for k in idx]))[:, None].to(self.device)
                    )
                    for k, pk in zip(idx, p_group):
                        p[k] = pk
            tested = [k for k in range(len(stacks)) if needs_test(self.consistency, p[k])]
            norms = {k: Normalizer.fit(stacks[k]) for k in tested}
            outputs = self._raw_rows(stacks, tested, norms, p)
            interpolation: dict[int, dict[str, Any]] = {}
            ratios: dict[int, float] = {}  # one slice: its own test
            for idx in _by_shape(stacks, range(len(stacks))):
                interpolation.update(zip(idx, _interpolation_each(np.stack([stacks[k] for k in idx]))))
                idx = [k for k in idx if k in outputs]
                if idx:
                    srs, lrs = np.stack([outputs[k] for k in idx]), np.stack([stacks[k] for k in idx])
                    ratios.update(zip(idx, (float(r) for r in residual_log_ratios(srs, lrs, self.scale))))
            plans = []
            for k in range(len(stacks)):
                if k not in outputs:
                    plans.append(replace(decide(self.consistency, p[k], self.scale), **interpolation[k]))
                    continue
                plan = replace(decide(self.consistency, p[k], self.scale, ratios[k]), **interpolation[k])
                plans.append(replace(plan, outputs={0: outputs[k]}) if plan.model_p == p[k] else plan)
        return plans

    def _raw_rows(
        self,
        images: Sequence[np.ndarray],
        picks: Sequence[int],
        norms: Mapping[int, Normalizer] | Sequence[Normalizer],
        model_p: Sequence[float | None],
    ) -> dict[int, np.ndarray]:
        """Generator outputs in modality units (no projection) of the images ``picks`` (each its own acquisition,
        ``model_p`` its LR-kind input), batched over images of equal size."""
        import torch

        out: dict[int, np.ndarray] = {}
        for idx in _by_shape(images, picks, key=lambda k: model_p[k] is None):
            rows = batch_rows(images[idx[0]].shape, self.batch)
            for a in range(0, len(idx), rows):
                chunk = idx[a : a + rows]
                x = np.stack([norms[k].forward(images[k]) for k in chunk])[:, None]
                kinds = None if model_p[chunk[0]] is None else [cast(float, model_p[k]) for k in chunk]
                y = self._run(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), kinds).numpy()[:, 0]
                for j, k in enumerate(chunk):
                    out[k] = norms[k].inverse(y[j])
        return out

    def enhance_images(self, images: Sequence[np.ndarray], plans: Sequence[Plan]) -> list[np.ndarray]:
        """Images that are each their own acquisition, each with its own plan (``plan_images``, or
        ``plan(image[None])``: outputs keyed 0) → their enhancements, equal to ``enhance(image, plan, key=0)``
        image by image. Images of equal size share the generator's batches, each row with its plan's LR-kind input;
        outputs a plan already holds are taken; each image is projected as its own plan says (a folder of 2D
        images: ``srgan.inference.files``)."""
        import torch

        if len(images) != len(plans):
            raise ValueError(f"{len(plans)} plans for {len(images)} images")
        stacks = [np.asarray(im, dtype=np.float32) for im in images]
        for im in stacks:
            if im.ndim != 2:
                raise ValueError(f"expected (H, W) images, got shape {im.shape}")
        raw: dict[int, np.ndarray] = {i: pl.outputs[0] for i, pl in enumerate(plans) if 0 in pl.outputs}
        todo = [i for i in range(len(stacks)) if i not in raw]
        with self._lock, torch.inference_mode():
            norms = {k: Normalizer.fit(stacks[k]) for k in todo}
            raw.update(self._raw_rows(stacks, todo, norms, [pl.model_p for pl in plans]))
            out = [np.asarray(raw[i], dtype=np.float32) for i in range(len(plans))]
            # images of equal size projected alike share one batched projection
            for idx in _by_shape(stacks, range(len(plans)), key=lambda i: (plans[i].projection, plans[i].steps)):
                plan = plans[idx[0]]
                if plan.projection != "off":
                    srs = project(
                        np.stack([out[i] for i in idx]),
                        np.stack([stacks[i] for i in idx]),
                        self.scale,
                        plan.projection,
                        steps=plan.steps,
                    )
                    for i, sr in zip(idx, srs):
                        out[i] = sr
        return out

    def enhance(self, image: np.ndarray, plan: Plan | None = None, *, key: Hashable | None = None) -> np.ndarray:
        """One ``(H, W)`` image → ``(s·H, s·W)`` float32 in the same units; ``plan`` and ``key`` as in
        ``enhance_stack`` (default: the image planned alone)."""
        return self.enhance_stack(np.asarray(image)[None], plan, keys=None if key is None else [key])[0]


#: LR pixels per generator call when images are batched across acquisitions (``plan_images``/``enhance_images``,
#: the derived writer's read-ahead): on the CPU a batch whose activations outgrow the caches is slower per slice
#: than one slice at a time (docs/benchmarks.md), so large slices go one by one and small ones share a batch.
BATCH_PIXELS = 32768


def batch_rows(shape: Sequence[int], most: int) -> int:
    """How many LR images of ``shape`` (H, W) share one generator call: ``BATCH_PIXELS`` worth, 1 to ``most``."""
    return max(1, min(int(most), BATCH_PIXELS // max(1, int(shape[-2]) * int(shape[-1]))))


def _pooled_each(detector: Any, slices: Any) -> list[float]:
    """``detector.pooled`` of each ``(1, h, w)`` row of ``(N, 1, h, w)`` alone (each image its own acquisition), in
    one batch: the row's estimate, or 0.5 for a row without content."""
    import torch

    from srgan.models.kind_detector import spectral_features

    x = slices.detach().to(torch.float64)
    flat = x.flatten(1)
    has_content = (flat.amax(1) - flat.amin(1)) > 0
    p = torch.full((len(x),), 0.5, dtype=slices.dtype)
    if bool(has_content.any()):
        p[has_content] = torch.sigmoid(detector.logits(spectral_features(x[has_content]))).to(slices.dtype).cpu()
    return [float(v) for v in p]


def _interpolation(planes: Iterable[np.ndarray]) -> dict[str, Any]:
    """``Plan``'s ``outer_energy`` and ``scanner_interpolated`` of an acquisition from some of its planes."""
    from srgan.degrade import outer_kspace_fraction

    shares = [outer_kspace_fraction(p) for p in planes if np.ptp(p) > 0]  # a blank plane has no spectrum
    return _interpolation_of(shares)


def _interpolation_each(planes: np.ndarray) -> list[dict[str, Any]]:
    """``_interpolation`` of each plane of ``(B, H, W)`` alone (each its own acquisition), in one batch."""
    from srgan.degrade import outer_kspace_fractions

    flat = planes.reshape(len(planes), -1)
    shares = outer_kspace_fractions(planes)
    return [_interpolation_of([float(v)] if has else []) for v, has in zip(shares, np.ptp(flat, axis=1) > 0)]


def _interpolation_of(shares: Sequence[float]) -> dict[str, Any]:
    from srgan.degrade import ZIP_OUTER_ENERGY

    if not shares:
        return {}
    outer = float(np.median(shares))
    return {"outer_energy": outer, "scanner_interpolated": bool(outer < ZIP_OUTER_ENERGY)}


def _by_shape(images: Sequence[np.ndarray], picks: Sequence[int], key: Callable[[int], Hashable] = lambda k: 0):
    """``picks`` grouped by image shape (and ``key``), each group in the order given."""
    groups: dict[Hashable, list[int]] = {}
    for k in picks:
        groups.setdefault((images[k].shape, key(k)), []).append(k)
    return list(groups.values())


def default_threads() -> int:
    """Leave one core to the rest of the machine (the viewer's GUI thread)."""
    return max(1, (os.cpu_count() or 2) - 1)

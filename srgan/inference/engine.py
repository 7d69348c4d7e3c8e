"""The inference engine shared by ``srgan enhance``, ``srgan evaluate`` and the viewer.

Images go in and come out in their own intensity units: each image is normalised robustly
(``srgan.normalize``), enhanced, and mapped back with the same two numbers. Large images are cut into overlapping
tiles whose margins exceed the network's receptive field, so tiled and untiled outputs agree (no seams).
"""
from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from srgan.inference.consistency import (AUTO_STEPS, CHOICES, TEST_SLICES, Choice, decide, describe, needs_test, project,
                               residual_log_ratio)
from srgan.errors import InputError
from srgan.normalize import Normalizer
from srgan.provenance import Provenance
from srgan.models.weights import bundled_weights, load_weights


def resolve_device(device: str = "auto"):
    """``auto`` picks CUDA, then Apple MPS, then the CPU."""
    import torch

    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError(None, "--device cuda asked for, but no CUDA GPU is available")
    if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise InputError(None, "--device mps asked for, but Apple MPS is not available")
    if device not in ("cpu", "cuda", "mps"):
        raise InputError(None, f"unknown device {device!r} (auto, cpu, cuda or mps)")
    return torch.device(device)


def for_inference(model, device):
    """``model`` in eval mode, laid out for the fastest convolutions on ``device``.

    On CPU, channels-last weights let oneDNN keep activations in NHWC between layers instead of reordering around
    every convolution: 17 → 12 ms per 64² → 256² slice for the bundled ×4 model, 717 → 626 ms for the seed
    generator (2 threads). The benchmark times models through this same function."""
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
    ``srgan.io.geometry`` (LR pixel i centred on HR position i·s + (s−1)/2)."""
    import torch
    import torch.nn.functional as F

    a = np.asarray(image, dtype=np.float32)
    if method == "lanczos":
        from PIL import Image

        h, w = a.shape
        return np.asarray(Image.fromarray(a, mode="F").resize((w * scale, h * scale), Image.Resampling.LANCZOS),
                          dtype=np.float32)
    mode = {"bicubic": "bicubic", "nearest": "nearest-exact", "bilinear": "bilinear"}.get(method)
    if mode is None:
        raise ValueError(f"unknown interpolation {method!r}")
    t = torch.from_numpy(np.ascontiguousarray(a))[None, None]
    kw = {} if mode == "nearest-exact" else {"align_corners": False}
    return F.interpolate(t, scale_factor=scale, mode=mode, **kw)[0, 0].numpy()


class Enhancer:
    """A loaded generator plus everything needed to apply it to images in modality units.

    Thread use: build and call it from one thread (the viewer's worker owns one); ``enhance`` takes a lock so a
    second thread (e.g. an export) may share it safely, one call at a time.
    """

    def __init__(self, *, scale: int = 2, model: str | None = None, weights: str | Path | None = None,
                 device: str = "auto", threads: int | None = None, tile: int = 192, margin: int = 32,
                 batch: int = 8, consistency: str | None = None):
        import torch

        if scale not in (2, 4):
            raise InputError(None, f"scale must be 2 or 4, got {scale}")
        if threads:
            torch.set_num_threads(max(1, int(threads)))
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
        if self.consistency not in CHOICES:
            raise InputError(None, f"unknown consistency {self.consistency!r}; choose from {', '.join(CHOICES)}")
        self.provenance = Provenance(model=self.card["arch"], weights_name=self.card.get("name", path.stem),
                                     weights_sha256=self.card["sha256"], scale=self.scale,
                                     consistency=describe(self.consistency))
        self._lock = threading.Lock()
        # what the last stack was taken for (``Choice``), for logs; None before the first
        self.last_choice: Choice | None = None

    @property
    def label(self) -> str:
        """Short human name for overlays, e.g. ``brainsr-x2-fidelity (srresnet_lite)``."""
        return f"{self.card.get('name', self.weights_path.stem)} ({self.card['arch']})"

    def kind_of(self, images: np.ndarray) -> float | None:
        """P(k-space truncated rather than bicubic-downsampled) of a ``(N, H, W)`` stack from one acquisition, one
        value for all slices (``KindDetector.pooled`` over the slices ``kind_sample`` picks); None for a model
        without the LR-kind input."""
        import torch

        detector = getattr(self.model, "kind", None)
        if detector is None:
            return None
        images = np.asarray(images)
        stack = torch.from_numpy(np.ascontiguousarray(images[kind_sample(len(images))], dtype=np.float32))
        return float(detector.pooled(stack.reshape(-1, 1, *stack.shape[-2:]).to(self.device))[0])

    def assess(self, images: np.ndarray, p_kspace: float | None = None, *, consistency: str | None = None) -> Choice:
        """What a ``(N, H, W)`` stack from one acquisition is taken for and which projection it gets (the
        ``Choice`` that ``enhance_stack`` applies to every slice). ``p_kspace``: the detector's estimate if already
        made (default ``kind_of(images)``); ``consistency``: instead of this enhancer's own (the benchmark asks an
        enhancer without projection what ``auto`` would do). Under ``auto`` this may run the generator on up to
        ``TEST_SLICES`` slices (``srgan.inference.consistency``)."""
        import torch

        with self._lock, torch.inference_mode():
            return self._assess(np.asarray(images, dtype=np.float32), p_kspace, consistency=consistency)[0]

    def assess_series(self, series, volume: int = 0) -> Choice | None:
        """``assess`` for a ``srgan.io.dicom_series.Series``, from the slices ``kind_sample`` picks from ``volume``,
        decoded here (nothing decoded for models without the LR-kind input). The viewer, its export and
        ``srgan enhance`` all take a series' choice from its first volume, so what is shown is what is exported:
        one acquisition has one k-space sampling, while e.g. high-b diffusion volumes are mostly noise and would
        read as k-space. None also when no sample slice decodes: each stack then gets its own choice."""
        if getattr(self.model, "kind", None) is None:
            return None
        planes = []
        for k in kind_sample(series.shape[1]):
            try:
                planes.append(series.pixels(volume, int(k)))
            except Exception:  # noqa: BLE001 - a slice that cannot be decoded is reported where it is enhanced
                continue
        shapes = {p.shape for p in planes}
        if len(shapes) != 1:  # none decoded, or parts of different sizes: each stack gets its own choice
            return None
        return self.assess(np.stack(planes))

    def choice_note(self) -> str:
        """What the last stack was taken for and what ``auto`` made of it, for a log line ('' otherwise)."""
        if self.consistency != "auto" or self.last_choice is None:
            return ""
        return self.last_choice.note()

    def _assess(self, stack: np.ndarray, p_kspace: float | None, norms: Sequence[Normalizer] | None = None, *,
                consistency: str | None = None) -> tuple[Choice, dict[int, np.ndarray]]:
        """``assess``, plus the generator's outputs (before projection) it made on the way, by slice index, when
        they are what ``enhance_stack`` would compute anyway (made with the chosen LR-kind input)."""
        consistency = consistency or self.consistency
        if p_kspace is None:
            p_kspace = self.kind_of(stack)
        if not needs_test(consistency, p_kspace):
            return decide(consistency, p_kspace, self.scale), {}
        sample = kind_sample(len(stack))
        middle = len(sample) // 2
        picks = [int(k) for k in sample[max(0, middle - TEST_SLICES // 2):][:TEST_SLICES]]
        outputs = self._raw(stack, picks, norms or {k: Normalizer.fit(stack[k]) for k in picks}, p_kspace)
        ratio = float(np.median([residual_log_ratio(outputs[k], stack[k], self.scale) for k in picks]))
        choice = decide(consistency, p_kspace, self.scale, ratio)
        return choice, (outputs if choice.model_p == p_kspace else {})

    def _raw(self, stack: np.ndarray, picks: list[int], norms: Sequence[Normalizer] | dict[int, Normalizer],
             kind: float | None) -> dict[int, np.ndarray]:
        """Generator outputs in modality units (no projection) of the slices ``picks``, by index (``norms``: the
        slices' normalisers, indexed the same way)."""
        import torch

        out = {}
        for i in range(0, len(picks), self.batch):
            chunk = picks[i:i + self.batch]
            x = np.stack([norms[k].forward(stack[k]) for k in chunk])[:, None]
            y = self._run(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), kind).numpy()[:, 0]
            for j, k in enumerate(chunk):
                out[k] = norms[k].inverse(y[j])
        return out

    def _run(self, x, kind: float | None = None):
        """Normalised ``(B, 1, h, w)`` tensor → ``(B, 1, s·h, s·w)``, tiled when larger than ``tile``. ``kind``: the
        stack's LR-kind estimate (``kind_of``; None for models without the LR-kind input)."""
        import torch

        b, _, h, w = x.shape
        s, t, m = self.scale, self.tile, self.margin
        # a global interpolation (zero-filled k-space) and the LR-kind estimate are computed once on the whole
        # slice (stack) and handed to every tile
        extra = {} if kind is None else {"kind": torch.full((b,), float(kind), device=self.device)}
        if h <= t + 2 * m and w <= t + 2 * m:
            return self.model(model_input(x, self.device), **extra).cpu().contiguous()
        base = self.model.upsample(x.to(self.device)) if getattr(self.model, "base", None) == "zerofill" else None
        out = torch.empty((b, 1, h * s, w * s), dtype=x.dtype)
        for y0 in range(0, h, t):
            for x0 in range(0, w, t):
                y1, x1 = min(y0 + t, h), min(x0 + t, w)
                ya, xa = max(0, y0 - m), max(0, x0 - m)
                yb, xb = min(h, y1 + m), min(w, x1 + m)
                tile_x = model_input(x[:, :, ya:yb, xa:xb], self.device)
                sr = (self.model(tile_x, **extra) if base is None
                      else self.model(tile_x, base[:, :, ya * s:yb * s, xa * s:xb * s], **extra)).cpu()
                out[:, :, y0 * s:y1 * s, x0 * s:x1 * s] = sr[:, :, (y0 - ya) * s:(y1 - ya) * s, (x0 - xa) * s:(x1 - xa) * s]
        return out

    def enhance_stack(self, images: np.ndarray, *, progress: Callable[[int, int], None] | None = None,
                      cancel: Callable[[], bool] | None = None, kind: Choice | float | None = None) -> np.ndarray:
        """``(N, H, W)`` in any intensity units → ``(N, s·H, s·W)`` float32 in the same units.

        Each image gets its own normaliser, so images of one stack may differ in range. The stack is taken as one
        acquisition: a model with the LR-kind input gets one estimate for all its slices and all get the same
        projection. ``kind``: the acquisition's ``Choice`` (e.g. ``assess_series`` of the series a slice comes
        from), or the detector's estimate to decide from here, or None to ``assess`` this stack.
        """
        import torch

        stack = np.asarray(images, dtype=np.float32)
        if stack.ndim != 3:
            raise ValueError(f"expected a (N, H, W) stack, got shape {stack.shape}")
        n, h, w = stack.shape
        out = np.empty((n, h * self.scale, w * self.scale), dtype=np.float32)
        norms = [Normalizer.fit(im) for im in stack]
        with self._lock, torch.inference_mode():
            done: dict[int, np.ndarray] = {}
            if isinstance(kind, Choice):
                choice = kind
            else:
                choice, done = self._assess(stack, kind, norms)
            self.last_choice = choice
            iterations = {"steps": AUTO_STEPS} if self.consistency == "auto" else {}
            for i in range(0, n, self.batch):
                if cancel is not None and cancel():
                    raise InterruptedError("enhancement cancelled")
                j = min(n, i + self.batch)
                todo = [k for k in range(i, j) if k not in done]
                done.update(self._raw(stack, todo, norms, choice.model_p) if todo else {})
                for k in range(i, j):
                    out[k] = done.pop(k)
                    if choice.applied != "off":
                        out[k] = project(out[k], stack[k], self.scale, choice.applied, **iterations)
                if progress is not None:
                    progress(j, n)
        return out

    def enhance(self, image: np.ndarray, kind: Choice | float | None = None) -> np.ndarray:
        """One ``(H, W)`` image → ``(s·H, s·W)`` float32 in the same units; ``kind`` as in ``enhance_stack``
        (default: the image's own estimate)."""
        return self.enhance_stack(np.asarray(image)[None], kind=kind)[0]


KIND_SLICES = 16


def kind_sample(n: int) -> np.ndarray:
    """Indices of the slices (at most ``KIND_SLICES``, evenly spaced) of an ``n``-slice stack that its LR-kind
    estimate is made from: enough to pool over, and the viewer decodes only these before the first slice."""
    return np.unique(np.linspace(0, n - 1, min(n, KIND_SLICES)).round().astype(int))


def default_threads() -> int:
    """Leave one core to the rest of the machine (the viewer's GUI thread)."""
    return max(1, (os.cpu_count() or 2) - 1)

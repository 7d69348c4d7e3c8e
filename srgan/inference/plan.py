"""One plan per acquisition: what a stack, a NIfTI volume or a DICOM series is taken for and what is done to it.

Everything the inference engine decides once for an acquisition lives in one :class:`Plan`: the LR-kind
estimate (P that its slices lost their resolution by k-space truncation rather than a smooth resize), the
generator's LR-kind input, the data-consistency projection and its steps, the residual test where ``auto`` ran
it, the text a person reads, and the generator outputs already made while deciding (so no slice is generated
twice). ``Enhancer.plan`` / ``Enhancer.plan_series`` make plans; the CLI, the viewer's worker and overlay, the
export and the benchmark only read them.

How ``auto`` decides (``decide``), per acquisition:

1. The spectral detector (``srgan.models.kind_detector``) is trusted alone when it says k-space with
   P(k-space) >= ``AUTO_KSPACE``: the detector was never that sure of a bicubic LR in training.
2. Otherwise the generator's output is asked which degradation explains its input better (analysis by synthesis):
   r = log(‖K(SR) − LR‖ / ‖B(SR) − LR‖) with K the k-space truncation and B antialiased bicubic
   (``srgan.inference.consistency.residual_log_ratio``), the median over up to ``TEST_SLICES`` slices. The
   detector errs on inputs whose spectrum looks like neither toy (an image upscaled before it was degraded, a
   scanner's filtered k-space); the residuals do not care how the spectrum looks, only which forward model
   reproduces the measurement. r <= ``RATIO_KSPACE[scale]`` → k-space projection (and the generator is re-run told
   "k-space" if the detector had said otherwise); r >= ``RATIO_BICUBIC[scale]`` → bicubic projection (re-run told
   "smooth" if the detector leant k-space); in between, nothing.

The thresholds were chosen on *training* slices only; ``benchmarks/auto_consistency.py`` reproduces the study and
``docs/benchmarks.md`` ("auto consistency") gives its figures and the reasoning for each threshold.

Whatever was asked for, a k-space projection runs ``KSPACE_STEPS`` single-precision updates: one rule, so the same
decision projects the same way whether a user asked for ``kspace`` or ``auto`` chose it.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field, replace

import numpy as np

from srgan.options import CONSISTENCY_MODES, PROJECTIONS

AUTO_KSPACE = 0.8  # the detector alone decides k-space at or above this P(k-space)
RATIO_KSPACE = {2: -0.4, 4: 0.7}  # residual test, per scale: k-space at or below
RATIO_BICUBIC = {2: 0.5, 4: 1.0}  # bicubic at or above
TEST_SLICES = 4  # slices the residual test runs the generator on
KSPACE_STEPS = 1  # k-space updates per slice (``srgan.inference.consistency.project``)
KIND_SLICES = 16  # slices an acquisition's LR-kind estimate is pooled over


def kind_sample(n: int) -> np.ndarray:
    """Indices of the slices (at most ``KIND_SLICES``, evenly spaced) of an ``n``-slice stack that its LR-kind
    estimate is made from: enough to pool over, and the viewer decodes only these before the first slice."""
    return np.unique(np.linspace(0, n - 1, min(n, KIND_SLICES)).round().astype(int))


def residual_test_slices(n: int) -> list[int]:
    """The (at most ``TEST_SLICES``) middle ones of ``kind_sample(n)``: the slices the residual test generates."""
    sample = kind_sample(n)
    middle = len(sample) // 2
    return [int(k) for k in sample[max(0, middle - TEST_SLICES // 2) :][:TEST_SLICES]]


def check_mode(requested: str) -> None:
    if requested not in CONSISTENCY_MODES:
        raise ValueError(f"unknown consistency {requested!r}; choose from {', '.join(CONSISTENCY_MODES)}")


def needs_test(requested: str, p_kspace: float | None) -> bool:
    """Whether ``auto`` must look at the generator's output before it can decide (step 2 above)."""
    check_mode(requested)
    return requested == "auto" and p_kspace is not None and p_kspace < AUTO_KSPACE


@dataclass(frozen=True)
class Plan:
    """What one acquisition was taken for and what is done about it.

    ``scale``: the model's scale. ``requested``: the consistency asked for (``CONSISTENCY_MODES``: a user's
    choice, or the model card's). ``p_kspace``: the detector's pooled P(k-space LR), None for a model without
    the LR-kind input. ``model_p``: the LR-kind input the generator gets (``p_kspace`` unless the residual test
    overruled the detector). ``projection``: one of ``PROJECTIONS``. ``log_ratio``: the residual test, None where
    it was not run. ``outputs``: generator outputs (modality units, before projection) already made with
    ``model_p``, by the key of their slice (an index into the planned stack, or ``(volume, slice)`` of a series);
    they take no part in comparisons. ``outer_energy``: the share of the planned slices' spectral energy beyond
    half Nyquist (median; ``srgan.degrade.outer_kspace_fraction``), None where not measured;
    ``scanner_interpolated``: it is below ``srgan.degrade.ZIP_OUTER_ENERGY``, i.e. the input was already
    interpolated by zero-filling k-space (a scanner's ZIP), so enhancing it sharpens an interpolation and cannot
    restore detail that was never acquired — said in the log and in the viewer, never silently.
    """

    scale: int
    requested: str
    p_kspace: float | None
    model_p: float | None
    projection: str = "off"
    log_ratio: float | None = None
    outputs: Mapping[Hashable, np.ndarray] = field(default_factory=dict, compare=False, repr=False)
    outer_energy: float | None = None
    scanner_interpolated: bool = False

    @property
    def steps(self) -> int | None:
        """k-space updates per slice (None: no k-space projection)."""
        return KSPACE_STEPS if self.projection == "kspace" else None

    def without_outputs(self) -> Plan:
        return replace(self, outputs={})

    def fitting(self) -> str:
        """What the residual test found, as applied: "k-space", "bicubic" or "neither clearly" ('' if not run)."""
        if self.log_ratio is None:
            return ""
        return {"kspace": "k-space", "bicubic": "bicubic"}.get(self.projection, "neither clearly")

    def note(self) -> str:
        """One log line, e.g. ``P(k-space LR) 0.00, residual test -0.85: consistency kspace``."""
        kind = "no LR-kind estimate" if self.p_kspace is None else f"P(k-space LR) {self.p_kspace:.2f}"
        test = "" if self.log_ratio is None else f", residual test {self.log_ratio:+.2f}"
        return f"{kind}{test}: consistency {self.projection}"

    def interpolation_warning(self) -> str:
        """One sentence for a scanner-interpolated input ('' otherwise)."""
        if not self.scanner_interpolated:
            return ""
        return (
            f"the input looks interpolated by the scanner (zero-filled k-space: {self.outer_energy:.1e} of its energy "
            "beyond half Nyquist); enhancing sharpens that interpolation, it cannot restore detail never acquired"
        )

    def lines(self) -> list[str]:
        """What the viewer's enhanced pane says about the plan: short lines, since a corner elides."""
        out = []
        if self.p_kspace is not None:
            p = self.p_kspace
            word = "k-space" if p >= AUTO_KSPACE else "smooth" if p <= 0.2 else "unsure"
            out.append(f"LR kind: {word} (P k-space {p:.2f})")
        if self.log_ratio is not None:
            out.append(f"residual test {self.log_ratio:+.2f}: {self.fitting()} fits")
        shown = NAMES[self.requested]
        if self.requested == "auto":
            shown += " → " + NAMES[self.projection]
        out.append(f"data consistency: {shown}")
        if self.scanner_interpolated:
            out.append("input already interpolated by the scanner (ZIP)")
        return out


NAMES = {"off": "off", "bicubic": "bicubic", "kspace": "k-space", "auto": "auto"}


def decide(requested: str, p_kspace: float | None, scale: int, log_ratio: float | None = None) -> Plan:
    """The plan (without outputs) that ``requested`` means for an acquisition with detector estimate ``p_kspace``
    and (where ``needs_test``) residual test ``log_ratio`` of the generator's output made with ``p_kspace``."""
    check_mode(requested)
    if requested != "auto" or p_kspace is None:
        return Plan(scale, requested, p_kspace, p_kspace, requested if requested != "auto" else "off")
    if p_kspace >= AUTO_KSPACE:
        return Plan(scale, requested, p_kspace, p_kspace, "kspace")
    if log_ratio is None:
        raise ValueError("auto needs the residual test for this estimate (see needs_test)")
    if log_ratio <= RATIO_KSPACE[scale]:
        return Plan(scale, requested, p_kspace, p_kspace if p_kspace >= 0.5 else 1.0, "kspace", log_ratio)
    if log_ratio >= RATIO_BICUBIC[scale]:
        return Plan(scale, requested, p_kspace, p_kspace if p_kspace < 0.5 else 0.0, "bicubic", log_ratio)
    return Plan(scale, requested, p_kspace, p_kspace, "off", log_ratio)


def describe(requested: str) -> str:
    """``requested`` for a provenance line: ``auto`` spelled out, since what it did depends on each acquisition."""
    if requested != "auto":
        return requested
    return (
        f"auto (k-space if P(k-space LR) >= {AUTO_KSPACE}, else by which degradation reproduces the LR "
        "from the output: k-space, bicubic or off)"
    )


__all__ = [
    "AUTO_KSPACE",
    "KIND_SLICES",
    "KSPACE_STEPS",
    "PROJECTIONS",
    "RATIO_BICUBIC",
    "RATIO_KSPACE",
    "TEST_SLICES",
    "Plan",
    "decide",
    "describe",
    "kind_sample",
    "needs_test",
    "residual_test_slices",
]

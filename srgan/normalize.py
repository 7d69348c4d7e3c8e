"""Robust, exactly invertible intensity normalisation.

MR intensities have no absolute unit and often a few very bright voxels (vessels, fat, artefacts), so a plain
min–max scaling would squash the tissue range. Percentiles of the LR input map to [0, 1]; the same two numbers
invert the mapping on the SR output, so modality units survive the round trip.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Normalizer:
    low: float
    high: float

    @classmethod
    def fit(cls, x: np.ndarray, p_low: float = 0.5, p_high: float = 99.5, mask: np.ndarray | None = None) -> Normalizer:
        """Fit on an image or stack of any shape; ``mask`` limits the voxels used (e.g. foreground)."""
        v = np.asarray(x, dtype=np.float64)
        v = v[mask] if mask is not None else v.ravel()
        v = v[np.isfinite(v)]
        if v.size == 0:
            return cls(0.0, 1.0)
        low, high = np.percentile(v, [p_low, p_high])
        if not high > low:  # constant image or mostly one value: fall back to the full range
            low, high = float(v.min()), float(v.max())
            if not high > low:
                high = low + 1.0
        return cls(float(low), float(high))

    @property
    def span(self) -> float:
        return self.high - self.low

    def forward(self, x):
        return (x - self.low) / self.span

    def inverse(self, y):
        return y * self.span + self.low

    def as_dict(self) -> dict:
        return {"low": self.low, "high": self.high}

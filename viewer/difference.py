"""Difference overlay: where, and in which direction, the model changed the interpolated original.

``enhanced − interpolated`` on the refined (sH, sW) grid is shown over the enhanced image: red where the
model brightened, blue where it darkened, transparent where it left the image alone. Transparency near zero
matters: the overlay should point at the few places the model invented or removed structure, not tint the
whole slice with noise.

The same colouring (``cmap="sequential"``) shows the model's disagreement with itself: the spread of its outputs
over the eight flips/rotations of a slice, ``srgan.inference.tta.tta_spread``.

This module is Qt-free (the viewer's model uses it); the overlay item and its opacity slider are
``viewer.difference_overlay``.
"""
from __future__ import annotations

import numpy as np

__all__ = ["DEAD_ZONE", "difference_map", "difference_rgba", "disagreement_map", "robust_scale"]

NEGATIVE_RGB = np.array([40, 110, 255], dtype=np.float32)   # model darkened: blue
POSITIVE_RGB = np.array([255, 50, 30], dtype=np.float32)    # model brightened: red
NEUTRAL_RGB = np.array([255, 255, 255], dtype=np.float32)   # near zero (invisible anyway)
SEQUENTIAL_LOW = np.array([255, 230, 40], dtype=np.float32)  # disagreement ramp: yellow → magenta
SEQUENTIAL_HIGH = np.array([230, 20, 200], dtype=np.float32)

DEAD_ZONE = 0.08          # |diff| below this fraction of the scale is fully transparent
MIN_SCALE_OF_WINDOW = 0.05  # scale never below 5 % of the window width: noise-level differences stay faint


def difference_map(enhanced: np.ndarray, interpolated: np.ndarray) -> np.ndarray:
    """Signed difference ``enhanced − interpolated`` (sH, sW) as float32, in modality units."""
    e = np.asarray(enhanced, dtype=np.float32)
    i = np.asarray(interpolated, dtype=np.float32)
    if e.shape != i.shape or e.ndim != 2:
        raise ValueError(f"need two (sH, sW) images of one shape, got {e.shape} and {i.shape}")
    return e - i


def disagreement_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Unsigned disagreement ``|a − b|`` (sH, sW) float32, e.g. between two models; show with cmap="sequential"."""
    return np.abs(difference_map(a, b))


def robust_scale(diff: np.ndarray, window_width: float | None = None, percentile: float = 99.0) -> float:
    """The |diff| that gets full colour: the ``percentile`` of |diff|, but at least 5 % of ``window_width``.

    The percentile keeps a few outliers from washing out the rest; the window floor keeps an almost
    identical pair (pure noise differences) from being blown up to full colour. Always > 0.
    """
    a = np.abs(np.asarray(diff, dtype=np.float32))
    finite = a[np.isfinite(a)]
    scale = float(np.percentile(finite, percentile)) if finite.size else 0.0
    if window_width is not None and window_width > 0:
        scale = max(scale, MIN_SCALE_OF_WINDOW * float(window_width))
    return scale if scale > 0 else 1.0


def difference_rgba(diff: np.ndarray, window_width: float | None = None, opacity: float = 1.0,
                    cmap: str = "diverging", scale: float | None = None) -> np.ndarray:
    """Colour-map a difference (sH, sW) to RGBA uint8 (sH, sW, 4) for an overlay.

    ``cmap="diverging"``: negative → blue, positive → red; ``"sequential"``: |diff| from yellow to magenta
    (for :func:`disagreement_map`). Colour strength and alpha grow with t = |diff| / scale (``scale`` defaults
    to :func:`robust_scale`); t below ``DEAD_ZONE`` is fully transparent; alpha is multiplied by ``opacity``
    (0..1). NaNs are transparent.
    """
    d = np.asarray(diff, dtype=np.float32)
    if d.ndim != 2:
        raise ValueError(f"difference must be (sH, sW), got {d.shape}")
    if cmap not in ("diverging", "sequential"):
        raise ValueError(f"unknown colour map {cmap!r}: use 'diverging' or 'sequential'")
    s = float(scale) if scale else robust_scale(d, window_width)
    finite = np.isfinite(d)
    d0 = np.where(finite, d, 0.0)
    t = np.clip(np.abs(d0) / s, 0.0, 1.0)
    strength = np.clip((t - DEAD_ZONE) / (1.0 - DEAD_ZONE), 0.0, 1.0)
    if cmap == "diverging":
        target = np.where((d0 >= 0)[..., None], POSITIVE_RGB, NEGATIVE_RGB)
        rgb = NEUTRAL_RGB + (target - NEUTRAL_RGB) * np.sqrt(strength)[..., None]
    else:
        rgb = SEQUENTIAL_LOW + (SEQUENTIAL_HIGH - SEQUENTIAL_LOW) * strength[..., None]
    alpha = 255.0 * float(np.clip(opacity, 0.0, 1.0)) * np.sqrt(strength)
    alpha[~finite] = 0.0
    out = np.empty(d.shape + (4,), dtype=np.uint8)
    out[..., :3] = np.clip(np.rint(rgb), 0, 255)
    out[..., 3] = np.clip(np.rint(alpha), 0, 255)
    return out

"""Flip/rotation (dihedral test-time augmentation) spread: how much a super-resolution model disagrees with itself.

A network that had really learned the anatomy would answer the same whichever way a slice is turned. ``tta_spread``
runs it on the eight flips/quarter turns of an image (the dihedral group of the square), turns each output back
onto the original's grid and takes the per-pixel standard deviation: where the answers spread, the model's detail
is least trustworthy. Plain interpolation with a symmetric kernel commutes with these views and spreads (almost)
nowhere, so what the map shows is the model's own doing.

The viewer's disagreement overlay (``viewer.difference``) and the benchmark report's disagreement panel
(``srgan.evaluation.comparison``) both use this one implementation. Qt-free and torch-free.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

TTA_VIEWS = 8  # the dihedral group of the square: 4 rotations × optional flip

__all__ = ["TTA_VIEWS", "dihedral", "tta_spread"]


def dihedral(image: np.ndarray, k: int, inverse: bool = False) -> np.ndarray:
    """View ``k`` (0..7) of an (H, W) image: a left-right flip when k ≥ 4, then ``k % 4`` quarter turns.

    ``inverse=True`` undoes view ``k`` (so ``dihedral(dihedral(a, k), k, inverse=True) == a``); on an SR output
    of the view it maps the (s·W, s·H) or (s·H, s·W) result back onto the (s·H, s·W) grid of the original.
    """
    if not 0 <= k < TTA_VIEWS:
        raise ValueError(f"view must be 0..{TTA_VIEWS - 1}, got {k}")
    flip, turns = k >= 4, k % 4
    if inverse:
        out = np.rot90(image, -turns)
        return out[:, ::-1] if flip else out
    out = image[:, ::-1] if flip else image
    return np.rot90(out, turns)


def tta_spread(enhance_fn: Callable[[np.ndarray], np.ndarray], image: np.ndarray) -> np.ndarray:
    """Per-pixel standard deviation (s·H, s·W) float32 of ``enhance_fn`` over the 8 flips/rotations of ``image``.

    ``image`` is one (H, W) array; ``enhance_fn`` maps one (h, w) image to (s·h, s·w) in the same units (e.g.
    ``Enhancer.enhance``) and gets each view as a C-contiguous array. Each output is turned back before the spread
    is taken, so a function that commutes with flips and quarter turns (plain interpolation) gives zero
    everywhere. Costs 8 calls of ``enhance_fn``; exceptions from it propagate.
    """
    a = np.ascontiguousarray(image, dtype=np.float32)
    if a.ndim != 2:
        raise ValueError(f"expected one (H, W) image, got shape {a.shape}")
    outputs: list[np.ndarray] = []
    for k in range(TTA_VIEWS):
        view = np.ascontiguousarray(dihedral(a, k))
        out = np.asarray(dihedral(np.asarray(enhance_fn(view), dtype=np.float32), k, inverse=True))
        if outputs and out.shape != outputs[0].shape:
            raise ValueError(f"view {k} came back as {out.shape}, expected {outputs[0].shape}")
        outputs.append(out)
    return np.std(np.stack(outputs), axis=0, dtype=np.float64).astype(np.float32)

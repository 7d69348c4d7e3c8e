"""Data-consistency projection: correct an SR image so that degrading it again reproduces its LR input.

A generator may add detail the LR image cannot contain, but it should never contradict what was measured. Given the
degradation model D (antialiased bicubic or k-space truncation, ``srgan.degrade``), the projection moves SR onto
{x : D(x) = LR} along the smallest correction. Projecting with the wrong model hurts: an SR image made consistent
with a bicubic LR it never came from is pulled towards the wrong low frequencies. So it is off by default unless
a model card names the degradation the model was made for.

Shapes: ``sr`` (s·h, s·w), ``lr`` (h, w), both in the same intensity units (modality units or normalised).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

KINDS = ("off", "bicubic", "kspace")


@lru_cache(maxsize=32)
def _bicubic_matrices(n_hr: int, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """1D antialiased-bicubic downsampling matrix D (n_lr × n_hr) and its right inverse Dᵀ(DDᵀ)⁻¹.

    torch's antialiased bicubic is separable, so the 2D operator is D_rows · X · D_colsᵀ.
    """
    import torch
    import torch.nn.functional as F

    eye = torch.eye(n_hr, dtype=torch.float64)[None, None]
    d = F.interpolate(eye, size=(n_hr // scale, n_hr), mode="bicubic", antialias=True, align_corners=False)[0, 0]
    d = d.numpy()
    right_inverse = d.T @ np.linalg.inv(d @ d.T)
    return d, right_inverse


def degrade(sr: np.ndarray, scale: int, kind: str) -> np.ndarray:
    from srgan.degrade import bicubic_down, kspace_truncate

    x = np.asarray(sr, dtype=np.float64)
    return bicubic_down(x, scale) if kind == "bicubic" else kspace_truncate(x, scale)


def relative_residual(sr: np.ndarray, lr: np.ndarray, scale: int, kind: str) -> float:
    """‖D(SR) − LR‖ / ‖LR‖: 0 for a perfectly consistent image."""
    lr = np.asarray(lr, dtype=np.float64)
    return float(np.linalg.norm(degrade(sr, scale, kind) - lr) / max(np.linalg.norm(lr), 1e-12))


def _kspace_lift(r: np.ndarray, scale: int, hr_shape: tuple[int, int]) -> np.ndarray:
    """Right inverse of k-space truncation for a real residual: zero-pad its spectrum back to HR with the inverse
    of the half-pixel phase ramp that ``kspace_truncate`` applies."""
    H, W = hr_shape
    h, w = r.shape
    s = scale
    k = np.zeros((H, W), dtype=np.complex128)
    k[H // 2 - h // 2:H // 2 - h // 2 + h, W // 2 - w // 2:W // 2 - w // 2 + w] = np.fft.fftshift(np.fft.fft2(r)) * s * s
    d = (s - 1) / 2
    ramp = np.exp(2j * np.pi * d * (np.fft.fftfreq(H)[:, None] + np.fft.fftfreq(W)[None, :]))
    return np.real(np.fft.ifft2(np.fft.ifftshift(k) / ramp))


def project(sr: np.ndarray, lr: np.ndarray, scale: int, kind: str, *, tol: float = 1e-4, max_iter: int = 20) -> np.ndarray:
    """SR corrected to be consistent with ``lr`` under degradation ``kind``; float32 like the input.

    Bicubic: one exact linear projection (the operator is linear and separable). k-space: iterated lifting of the
    residual (the magnitude in k-space truncation makes it slightly non-linear), until the relative residual is
    below ``tol``.
    """
    if kind == "off":
        return np.asarray(sr, dtype=np.float32)
    if kind not in KINDS:
        raise ValueError(f"unknown consistency {kind!r}; choose from {', '.join(KINDS)}")
    x = np.asarray(sr, dtype=np.float64).copy()
    lr = np.asarray(lr, dtype=np.float64)
    H, W = x.shape
    if (H // scale, W // scale) != lr.shape or H % scale or W % scale:
        raise ValueError(f"SR shape {x.shape} is not LR shape {lr.shape} × {scale}")
    if kind == "bicubic":
        dr, ur = _bicubic_matrices(H, scale)
        dc, uc = _bicubic_matrices(W, scale)
        residual = lr - dr @ x @ dc.T
        x += ur @ residual @ uc.T
        return x.astype(np.float32)
    norm = max(np.linalg.norm(lr), 1e-12)
    best, best_err = x.copy(), np.inf
    for _ in range(max_iter):
        residual = lr - degrade(x, scale, "kspace")
        err = np.linalg.norm(residual) / norm
        if err >= best_err:  # the magnitude step can stall far from consistency (e.g. an LR that was not k-space)
            break
        best, best_err = x.copy(), err
        if err <= tol:
            break
        x += _kspace_lift(residual, scale, (H, W))
    return best.astype(np.float32)

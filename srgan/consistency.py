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


def _ramp(shape: tuple[int, int], scale: int) -> np.ndarray:
    """The half-pixel phase ramp of ``srgan.degrade.kspace_truncate`` (LR pixel i centred on HR i·s + (s−1)/2)."""
    H, W = shape
    d = (scale - 1) / 2
    return np.exp(2j * np.pi * d * (np.fft.fftfreq(H)[:, None] + np.fft.fftfreq(W)[None, :]))


def _centre(shape: tuple[int, int], scale: int) -> tuple[slice, slice]:
    H, W = shape
    h, w = H // scale, W // scale
    return slice(H // 2 - h // 2, H // 2 - h // 2 + h), slice(W // 2 - w // 2, W // 2 - w // 2 + w)


def _kspace_complex(x: np.ndarray, scale: int) -> np.ndarray:
    """k-space truncation before its final magnitude: complex (h, w)."""
    k = np.fft.fftshift(np.fft.fft2(x) * _ramp(x.shape, scale))
    return np.fft.ifft2(np.fft.ifftshift(k[_centre(x.shape, scale)])) / (scale * scale)


def _kspace_lift(r: np.ndarray, scale: int, hr_shape: tuple[int, int]) -> np.ndarray:
    """Right inverse of the complex truncation: zero-pad the residual's spectrum back to HR, undo the ramp."""
    k = np.zeros(hr_shape, dtype=np.complex128)
    k[_centre(hr_shape, scale)] = np.fft.fftshift(np.fft.fft2(r)) * scale * scale
    return np.real(np.fft.ifft2(np.fft.ifftshift(k) / _ramp(hr_shape, scale)))


def project(sr: np.ndarray, lr: np.ndarray, scale: int, kind: str, *, tol: float = 1e-5, max_iter: int = 30) -> np.ndarray:
    """SR corrected to be consistent with ``lr`` under degradation ``kind``; float32 like the input.

    Bicubic: one exact linear projection (the operator is linear and separable). k-space: alternating projection
    that keeps the current phase and imposes the measured magnitude, until the relative residual is below ``tol``.
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
    # The magnitude makes the model non-linear: each step keeps the phase of the current complex LR image and
    # moves only its magnitude onto the measured LR (a Gerchberg–Saxton-style alternating projection).
    norm = max(np.linalg.norm(lr), 1e-12)
    best, best_err = x.copy(), np.inf
    for _ in range(max_iter):
        c = _kspace_complex(x, scale)
        err = np.linalg.norm(np.abs(c) - lr) / norm
        if err < best_err:
            best, best_err = x.copy(), err
        if err <= tol:
            break
        x += _kspace_lift(lr * np.exp(1j * np.angle(c)) - c, scale, (H, W))
    return best.astype(np.float32)

"""Data-consistency projection: correct an SR image so that degrading it again reproduces its LR input.

A generator may add detail the LR image cannot contain, but it should never contradict what was measured. Given the
degradation model D (antialiased bicubic or k-space truncation, ``srgan.degrade``), the projection moves SR onto
{x : D(x) = LR} along the smallest correction. Projecting with the wrong model hurts: an SR image made consistent
with a bicubic LR it never came from is pulled towards the wrong low frequencies. So it is off unless chosen, or
``auto``: chosen per acquisition where the evidence is strong enough for the expected gain to outweigh the loss.

Which projection an acquisition gets (``auto``) is decided by ``srgan.inference.plan``.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, NamedTuple

import numpy as np

from srgan.options import PROJECTIONS


def residual_log_ratio(sr: np.ndarray, lr: np.ndarray, scale: int) -> float:
    """log(‖K(SR) − LR‖ / ‖B(SR) − LR‖) of an ``(s·h, s·w)`` SR image and its ``(h, w)`` LR input, same units:
    negative where k-space truncation reproduces the LR better than antialiased bicubic. ``residual_log_ratios``
    of one image."""
    return float(residual_log_ratios(np.asarray(sr)[None], np.asarray(lr)[None], scale)[0])


def residual_log_ratios(srs: np.ndarray, lrs: np.ndarray, scale: int) -> np.ndarray:
    """``residual_log_ratio`` of each row of ``(B, s·h, s·w)`` SR images and their ``(B, h, w)`` LR inputs, in one
    batch: single precision torch, k-space truncation by FFT, bicubic by its cached separable operator (see
    docs/benchmarks.md for their cost)."""
    import torch

    x = torch.as_tensor(np.asarray(srs, dtype=np.float32))
    y = torch.as_tensor(np.asarray(lrs, dtype=np.float32))
    _check_shapes(x, y, scale)
    H, W = x.shape[-2:]
    rows, cols = _bicubic_operators(H, scale, True), _bicubic_operators(W, scale, True)
    k = torch.linalg.norm((_kspace_complex(x, scale).abs() - y).flatten(-2), dim=-1)
    b = torch.linalg.norm((_separable(rows.down, x, cols.down_t) - y).flatten(-2), dim=-1)
    return np.log(np.maximum(k.numpy(), 1e-12) / np.maximum(b.numpy(), 1e-12)).astype(np.float64)


def _separable(left, x, right_t):
    """``left @ x @ right_t`` of images ``(..., H, W)``: the right product first, as one matrix product over all
    the rows of the batch (a broadcast ``left @ x`` over a batch ran at half that speed)."""
    t = x.reshape(-1, x.shape[-1]) @ right_t
    return left @ t.reshape(*x.shape[:-1], right_t.shape[-1])


def _check_shapes(x, y, scale: int) -> None:
    H, W = x.shape[-2:]
    if (H // scale, W // scale) != tuple(y.shape[-2:]) or H % scale or W % scale or x.shape[:-2] != y.shape[:-2]:
        raise ValueError(f"SR shape {tuple(x.shape)} is not LR shape {tuple(y.shape)} × {scale}")


@lru_cache(maxsize=32)
def _bicubic_matrices(n_hr: int, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """1D antialiased-bicubic downsampling matrix D (n_lr × n_hr) and its right inverse Dᵀ(DDᵀ)⁻¹.

    torch's antialiased bicubic is separable, so the 2D operator is D_rows · X · D_colsᵀ.
    """
    import torch
    import torch.nn.functional as F

    eye = torch.eye(n_hr, dtype=torch.float64)[None, None]
    d = F.interpolate(eye, size=(n_hr // scale, n_hr), mode="bicubic", antialias=True, align_corners=False)[0, 0]
    dm = d.numpy()
    right_inverse = dm.T @ np.linalg.inv(dm @ dm.T)
    return dm, right_inverse


def degrade(sr: np.ndarray, scale: int, kind: str) -> np.ndarray:
    from srgan.degrade import bicubic_down, kspace_truncate

    x = np.asarray(sr, dtype=np.float64)
    return bicubic_down(x, scale) if kind == "bicubic" else kspace_truncate(x, scale)


def relative_residual(sr: np.ndarray, lr: np.ndarray, scale: int, kind: str) -> float:
    """‖D(SR) − LR‖ / ‖LR‖: 0 for a perfectly consistent image."""
    lr = np.asarray(lr, dtype=np.float64)
    return float(np.linalg.norm(degrade(sr, scale, kind) - lr) / max(float(np.linalg.norm(lr)), 1e-12))


class _Bicubic(NamedTuple):
    down: Any  # (n_lr, n_hr) torch tensors
    down_t: Any
    up: Any  # right inverse, (n_hr, n_lr)
    up_t: Any


# The projections run in torch, on torch's own threads: numpy's BLAS threads, started right after the generator,
# fought torch's still-spinning ones and made each step many times slower.
@lru_cache(maxsize=32)
def _bicubic_operators(n_hr: int, scale: int, single: bool) -> _Bicubic:
    import torch

    d, u = _bicubic_matrices(n_hr, scale)
    return _Bicubic(*(torch.tensor(m, dtype=torch.float32 if single else torch.float64) for m in (d, d.T, u, u.T)))


@lru_cache(maxsize=32)
def _kspace_band(H: int, W: int, scale: int, single: bool) -> tuple[Any, Any, Any, Any]:
    """Where the LR band of an ``(H, W)`` image's spectrum lies and how it is weighted: its row frequencies as
    indices into the HR spectrum (LR order, ``fftfreq``), the same rows negated, its column frequencies (signed,
    LR order) and the ``(h, w)`` factor that turns HR spectrum samples into the LR spectrum (the half-pixel phase
    ramp of ``srgan.degrade.kspace_truncate`` and the 1/s² that keeps intensities); the lift divides by it."""
    import torch

    h, w = H // scale, W // scale
    fy = np.rint(np.fft.fftfreq(h) * h).astype(np.int64)
    fx = np.rint(np.fft.fftfreq(w) * w).astype(np.int64)
    d = (scale - 1) / 2
    ramp = np.exp(2j * np.pi * d * fy / H)[:, None] * np.exp(2j * np.pi * d * fx / W)[None, :] / scale**2
    cdt = torch.complex64 if single else torch.complex128
    return torch.from_numpy(fy % H), torch.from_numpy(-fy % H), torch.from_numpy(fx), torch.tensor(ramp, dtype=cdt)


def _kspace_complex(x, scale: int):
    """k-space truncation of real ``(..., H, W)`` images before its final magnitude: complex ``(..., h, w)``.

    The LR spectrum is the central band of the HR one, so one real FFT of the HR image and a small inverse FFT
    give it (the band's negative column frequencies are the conjugates of positive ones at negated rows)."""
    import torch

    rows, neg_rows, cols, ramp = _kspace_band(x.shape[-2], x.shape[-1], scale, x.dtype == torch.float32)
    spectrum = torch.fft.rfft2(x)  # (..., H, W//2 + 1)
    pos, neg = cols[cols >= 0], -cols[cols < 0]
    band = torch.cat([spectrum[..., rows, :][..., pos], spectrum[..., neg_rows, :][..., neg].conj()], dim=-1)
    return torch.fft.ifft2(band * ramp)


def _kspace_lift(r, scale: int, hr_shape: tuple[int, int]):
    """Right inverse of the complex truncation, real part: the smallest HR correction ``(..., H, W)`` for complex
    LR residuals ``(..., h, w)``: their spectrum placed back in the HR band, real part by a half-spectrum inverse
    FFT (Re F⁻¹Z is F⁻¹ of Z's Hermitian part, whose non-negative columns are all an inverse real FFT needs)."""
    import torch

    H, W = hr_shape
    rows, neg_rows, cols, ramp = _kspace_band(H, W, scale, r.dtype == torch.complex64)
    band = torch.fft.fft2(r) / ramp / 2
    half = torch.zeros((*r.shape[:-2], H, W // 2 + 1), dtype=r.dtype)
    nonneg, neg = cols >= 0, cols < 0
    half[..., rows[:, None], cols[nonneg][None, :]] = band[..., nonneg]
    half[..., neg_rows[:, None], -cols[neg][None, :]] += band[..., neg].conj()
    zero = int(torch.nonzero(cols == 0)[0, 0])
    half[..., neg_rows, 0] += band[..., zero].conj()
    return torch.fft.irfft2(half, s=(H, W))


def project(
    sr: np.ndarray,
    lr: np.ndarray,
    scale: int,
    kind: str,
    *,
    tol: float = 1e-5,
    max_iter: int = 30,
    steps: int | None = None,
) -> np.ndarray:
    """SR corrected to be consistent with ``lr`` under degradation ``kind``; float32 like the input. ``sr`` is
    ``(s·h, s·w)`` or a batch ``(B, s·h, s·w)`` (with ``lr`` ``(B, h, w)``), each row projected alone.

    Bicubic: one exact linear projection (the operator is linear and separable), in the precision of ``sr``
    (float32 for a generator's output: its rounding, ~1e-7 of the signal, is far below any residual). k-space:
    alternating projection that keeps the current phase and imposes the measured magnitude, until the relative
    residual is below ``tol``.
    ``steps``: instead, exactly that many k-space updates in single precision, without residual checks — what a
    plan's k-space projection runs (``srgan.inference.plan.KSPACE_STEPS``): on a generator's output, already
    close, one update gains nearly what iterating to convergence does (docs/benchmarks.md).
    """
    if kind == "off":
        return np.asarray(sr, dtype=np.float32)
    if kind not in PROJECTIONS:
        raise ValueError(f"unknown projection {kind!r}; choose from {', '.join(PROJECTIONS)}")
    import torch

    sr = np.asarray(sr)
    single = steps is not None or (kind == "bicubic" and sr.dtype == np.float32)
    x = torch.tensor(sr, dtype=torch.float32 if single else torch.float64)
    y = torch.tensor(np.asarray(lr), dtype=x.dtype)
    _check_shapes(x, y, scale)
    H, W = x.shape[-2:]
    if kind == "bicubic":
        rows, cols = _bicubic_operators(H, scale, single), _bicubic_operators(W, scale, single)
        x += _separable(rows.up, y - _separable(rows.down, x, cols.down_t), cols.up_t)
        return x.numpy().astype(np.float32, copy=False)
    # The magnitude makes the model non-linear: each step keeps the phase of the current complex LR image and
    # moves only its magnitude onto the measured LR (a Gerchberg–Saxton-style alternating projection).
    if steps is not None:
        for _ in range(steps):
            c = _kspace_complex(x, scale)
            x += _kspace_lift(torch.polar(y, torch.angle(c)) - c, scale, (H, W))
        return x.numpy()
    if x.ndim == 3:
        return np.stack([project(a.numpy(), b.numpy(), scale, kind, tol=tol, max_iter=max_iter) for a, b in zip(x, y)])
    norm = max(float(torch.linalg.norm(y)), 1e-12)
    best, best_err = x.clone(), np.inf
    for _ in range(max_iter):
        c = _kspace_complex(x, scale)
        err = float(torch.linalg.norm(c.abs() - y)) / norm
        if err < best_err:
            best, best_err = x.clone(), err
        if err <= tol:
            break
        x += _kspace_lift(torch.polar(y, torch.angle(c)) - c, scale, (H, W))
    return best.numpy().astype(np.float32)

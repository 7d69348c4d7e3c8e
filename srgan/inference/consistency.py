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
    negative where k-space truncation reproduces the LR better than antialiased bicubic. Single precision torch,
    with the projections' cached operators (see docs/benchmarks.md for its cost)."""
    import torch

    x = torch.as_tensor(np.asarray(sr, dtype=np.float32))
    y = torch.as_tensor(np.asarray(lr, dtype=np.float32))
    H, W = x.shape
    if (H // scale, W // scale) != tuple(y.shape) or H % scale or W % scale:
        raise ValueError(f"SR shape {tuple(x.shape)} is not LR shape {tuple(y.shape)} × {scale}")
    rows, cols = _bicubic_operators(H, scale, True), _bicubic_operators(W, scale, True)
    k = float(torch.linalg.norm(_kspace_complex(x, scale).abs() - y))
    b = float(torch.linalg.norm(rows.down @ x @ cols.down_t - y))
    return float(np.log(max(k, 1e-12) / max(b, 1e-12)))


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


@lru_cache(maxsize=32)
def _kspace_matrices(n_hr: int, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """1D factors of k-space truncation before its final magnitude, ``down`` (n_lr × n_hr, complex), and of its
    right inverse (zero-padding the spectrum back to HR), ``up`` (n_hr × n_lr).

    The half-pixel phase ramp of ``srgan.degrade.kspace_truncate`` (LR pixel i centred on HR i·s + (s−1)/2), the
    centre crop and the shifts are all separable, so the 2D operators are ``down_r · X · down_cᵀ`` and
    ``Re(up_r · R · up_cᵀ)``: two small matrix products instead of four FFTs and a complex ramp per step."""
    n_lr = n_hr // scale
    ramp = np.exp(2j * np.pi * (scale - 1) / 2 * np.fft.fftfreq(n_hr))
    lo = n_hr // 2 - n_lr // 2
    k = np.fft.fftshift(np.fft.fft(np.eye(n_hr), axis=0) * ramp[:, None], axes=0)[lo : lo + n_lr]
    down = np.fft.ifft(np.fft.ifftshift(k, axes=0), axis=0) / scale
    padded = np.zeros((n_hr, n_lr), dtype=np.complex128)
    padded[lo : lo + n_lr] = np.fft.fftshift(np.fft.fft(np.eye(n_lr), axis=0), axes=0) * scale
    up = np.fft.ifft(np.fft.ifftshift(padded, axes=0) / ramp[:, None], axis=0)
    return down, up


class _Bicubic(NamedTuple):
    down: Any  # (n_lr, n_hr) torch tensors
    down_t: Any
    up: Any  # right inverse, (n_hr, n_lr)
    up_t: Any


class _Kspace(NamedTuple):
    down_re: Any  # real and imaginary parts of down (n_lr, n_hr): a real image needs two real products
    down_im: Any
    down_t: Any  # complex
    up: Any  # complex, (n_hr, n_lr)
    up_t_re: Any  # only the real part of a lift is kept: two real products
    up_t_im: Any


# The projections run in torch, on torch's own threads: numpy's BLAS threads, started right after the generator,
# fought torch's still-spinning ones and made each step many times slower.
@lru_cache(maxsize=32)
def _bicubic_operators(n_hr: int, scale: int, single: bool) -> _Bicubic:
    import torch

    d, u = _bicubic_matrices(n_hr, scale)
    return _Bicubic(*(torch.tensor(m, dtype=torch.float32 if single else torch.float64) for m in (d, d.T, u, u.T)))


@lru_cache(maxsize=32)
def _kspace_operators(n_hr: int, scale: int, single: bool) -> _Kspace:
    import torch

    real, cplx = (torch.float32, torch.complex64) if single else (torch.float64, torch.complex128)
    down, up = _kspace_matrices(n_hr, scale)
    return _Kspace(
        down_re=torch.tensor(down.real, dtype=real),
        down_im=torch.tensor(down.imag, dtype=real),
        down_t=torch.tensor(down.T, dtype=cplx),
        up=torch.tensor(up, dtype=cplx),
        up_t_re=torch.tensor(up.T.real.copy(), dtype=real),
        up_t_im=torch.tensor(up.T.imag.copy(), dtype=real),
    )


def _kspace_complex(x, scale: int):
    """k-space truncation of a real ``(H, W)`` tensor before its final magnitude: complex ``(h, w)``."""
    import torch

    single = x.dtype == torch.float32
    rows, cols = _kspace_operators(x.shape[0], scale, single), _kspace_operators(x.shape[1], scale, single)
    return torch.complex(rows.down_re @ x, rows.down_im @ x) @ cols.down_t


def _kspace_lift(r, scale: int, hr_shape: tuple[int, int]):
    """Right inverse of the complex truncation, real part: the smallest HR correction for an LR residual."""
    import torch

    single = r.dtype == torch.complex64
    rows, cols = _kspace_operators(hr_shape[0], scale, single), _kspace_operators(hr_shape[1], scale, single)
    left = rows.up @ r
    return left.real @ cols.up_t_re - left.imag @ cols.up_t_im


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
    """SR corrected to be consistent with ``lr`` under degradation ``kind``; float32 like the input.

    Bicubic: one exact linear projection (the operator is linear and separable). k-space: alternating projection
    that keeps the current phase and imposes the measured magnitude, until the relative residual is below ``tol``.
    ``steps``: instead, exactly that many k-space updates in single precision, without residual checks — what a
    plan's k-space projection runs (``srgan.inference.plan.KSPACE_STEPS``): on a generator's output, already
    close, one update gains nearly what iterating to convergence does (docs/benchmarks.md).
    """
    if kind == "off":
        return np.asarray(sr, dtype=np.float32)
    if kind not in PROJECTIONS:
        raise ValueError(f"unknown projection {kind!r}; choose from {', '.join(PROJECTIONS)}")
    import torch

    single = steps is not None
    x = torch.tensor(np.asarray(sr), dtype=torch.float32 if single else torch.float64)
    y = torch.tensor(np.asarray(lr), dtype=x.dtype)
    H, W = x.shape
    if (H // scale, W // scale) != tuple(y.shape) or H % scale or W % scale:
        raise ValueError(f"SR shape {tuple(x.shape)} is not LR shape {tuple(y.shape)} × {scale}")
    if kind == "bicubic":
        rows, cols = _bicubic_operators(H, scale, single), _bicubic_operators(W, scale, single)
        x += rows.up @ (y - rows.down @ x @ cols.down_t) @ cols.up_t
        return x.numpy().astype(np.float32)
    # The magnitude makes the model non-linear: each step keeps the phase of the current complex LR image and
    # moves only its magnitude onto the measured LR (a Gerchberg–Saxton-style alternating projection).
    if steps is not None:
        for _ in range(steps):
            c = _kspace_complex(x, scale)
            x += _kspace_lift(torch.polar(y, torch.angle(c)) - c, scale, (H, W))
        return x.numpy()
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

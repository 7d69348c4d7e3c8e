"""Data-consistency projection: correct an SR image so that degrading it again reproduces its LR input.

A generator may add detail the LR image cannot contain, but it should never contradict what was measured. Given the
degradation model D (antialiased bicubic or k-space truncation, ``srgan.degrade``), the projection moves SR onto
{x : D(x) = LR} along the smallest correction. Projecting with the wrong model hurts: an SR image made consistent
with a bicubic LR it never came from is pulled towards the wrong low frequencies. So it is off unless chosen, or
``auto``: chosen per acquisition from a model's LR-kind estimate P(k-space) (``srgan.lr_kind``), only where that
estimate is confident enough for the expected gain to outweigh the expected loss.

Why the ``auto`` thresholds: for a calibrated P, a projection pays when its expected gain beats its expected
loss. Measured with the bundled ×4 fidelity model on 60 *training* Kaggle slices (LR made as
``shared/tools/contract_check.py`` makes it, 8-bit): the k-space projection gains +0.13 dB on k-space LR and costs
0.75 dB on bicubic LR, so it pays when P > 0.75 / 0.88 ≈ 0.85; the bicubic projection gains +0.04 dB on bicubic LR
and costs 1.6 dB on k-space LR, so it pays when P < 0.04 / 1.64 ≈ 0.02. On those slices thresholds anywhere in
0.5–0.85 and 0–0.02 give the same sum of the two rows' gains to within 0.003 dB; 0.8 and 0.02 are used. The
held-out slices were not used to choose them.
"""
from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

import numpy as np

KINDS = ("off", "bicubic", "kspace")   # projections
CHOICES = KINDS + ("auto",)            # what a user or a model card may ask for
AUTO_KSPACE = 0.8
AUTO_BICUBIC = 0.02
AUTO_STEPS = 1  # k-space updates per slice under auto (see ``project``)


def resolve(choice: str, p_kspace: float | None) -> str:
    """The projection (one of ``KINDS``) that ``choice`` means for an acquisition whose LR-kind estimate is
    ``p_kspace`` (None: the model has no detector, and ``auto`` is off)."""
    if choice not in CHOICES:
        raise ValueError(f"unknown consistency {choice!r}; choose from {', '.join(CHOICES)}")
    if choice != "auto":
        return choice
    if p_kspace is None:
        return "off"
    if p_kspace >= AUTO_KSPACE:
        return "kspace"
    return "bicubic" if p_kspace <= AUTO_BICUBIC else "off"


def describe(choice: str) -> str:
    """``choice`` for a provenance line: ``auto`` spelled out, since what it did depends on each acquisition."""
    if choice != "auto":
        return choice
    return f"auto (k-space if P(k-space LR) >= {AUTO_KSPACE}, bicubic if <= {AUTO_BICUBIC}, else off)"


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


@lru_cache(maxsize=32)
def _kspace_matrices(n_hr: int, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """1D factors of k-space truncation before its final magnitude, ``down`` (n_lr × n_hr, complex), and of its
    right inverse (zero-padding the spectrum back to HR), ``up`` (n_hr × n_lr).

    The half-pixel phase ramp of ``srgan.degrade.kspace_truncate`` (LR pixel i centred on HR i·s + (s−1)/2), the
    centre crop and the shifts are all separable, so the 2D operators are ``down_r · X · down_cᵀ`` and
    ``Re(up_r · R · up_cᵀ)``: two small matrix products instead of four FFTs and a complex ramp per step (a 256²
    projection step fell from about 9 to 1 ms in double precision, 0.4 ms in single)."""
    n_lr = n_hr // scale
    ramp = np.exp(2j * np.pi * (scale - 1) / 2 * np.fft.fftfreq(n_hr))
    lo = n_hr // 2 - n_lr // 2
    k = np.fft.fftshift(np.fft.fft(np.eye(n_hr), axis=0) * ramp[:, None], axes=0)[lo:lo + n_lr]
    down = np.fft.ifft(np.fft.ifftshift(k, axes=0), axis=0) / scale
    padded = np.zeros((n_hr, n_lr), dtype=np.complex128)
    padded[lo:lo + n_lr] = np.fft.fftshift(np.fft.fft(np.eye(n_lr), axis=0), axes=0) * scale
    up = np.fft.ifft(np.fft.ifftshift(padded, axes=0) / ramp[:, None], axis=0)
    return down, up


class _Bicubic(NamedTuple):
    down: object     # (n_lr, n_hr) torch tensors
    down_t: object
    up: object       # right inverse, (n_hr, n_lr)
    up_t: object


class _Kspace(NamedTuple):
    down_re: object  # real and imaginary parts of down (n_lr, n_hr): a real image needs two real products
    down_im: object
    down_t: object   # complex
    up: object       # complex, (n_hr, n_lr)
    up_t_re: object  # only the real part of a lift is kept: two real products
    up_t_im: object


# The projections run in torch, on torch's own threads: numpy's BLAS threads, started right after the generator,
# fought torch's still-spinning ones and made a 0.4 ms step take 11 ms.
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
    return _Kspace(down_re=torch.tensor(down.real, dtype=real), down_im=torch.tensor(down.imag, dtype=real),
                   down_t=torch.tensor(down.T, dtype=cplx), up=torch.tensor(up, dtype=cplx),
                   up_t_re=torch.tensor(up.T.real.copy(), dtype=real),
                   up_t_im=torch.tensor(up.T.imag.copy(), dtype=real))


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


def project(sr: np.ndarray, lr: np.ndarray, scale: int, kind: str, *, tol: float = 1e-5, max_iter: int = 30,
            steps: int | None = None) -> np.ndarray:
    """SR corrected to be consistent with ``lr`` under degradation ``kind``; float32 like the input.

    Bicubic: one exact linear projection (the operator is linear and separable). k-space: alternating projection
    that keeps the current phase and imposes the measured magnitude, until the relative residual is below ``tol``.
    ``steps``: instead, exactly that many k-space updates in single precision, without residual checks — what
    ``auto`` runs on every slice by default: on the bundled ×4 model's output one update gains what 29 do
    (+0.163 vs +0.166 dB on the held-out slices) and leaves a residual of about 3e-3, for 0.4 ms per 256² slice.
    """
    if kind == "off":
        return np.asarray(sr, dtype=np.float32)
    if kind not in KINDS:
        raise ValueError(f"unknown consistency {kind!r}; choose from {', '.join(KINDS)}")
    import torch

    single = steps is not None
    x = torch.tensor(np.asarray(sr), dtype=torch.float32 if single else torch.float64)
    lr = torch.tensor(np.asarray(lr), dtype=x.dtype)
    H, W = x.shape
    if (H // scale, W // scale) != tuple(lr.shape) or H % scale or W % scale:
        raise ValueError(f"SR shape {tuple(x.shape)} is not LR shape {tuple(lr.shape)} × {scale}")
    if kind == "bicubic":
        rows, cols = _bicubic_operators(H, scale, single), _bicubic_operators(W, scale, single)
        x += rows.up @ (lr - rows.down @ x @ cols.down_t) @ cols.up_t
        return x.numpy().astype(np.float32)
    # The magnitude makes the model non-linear: each step keeps the phase of the current complex LR image and
    # moves only its magnitude onto the measured LR (a Gerchberg–Saxton-style alternating projection).
    if single:
        for _ in range(steps):
            c = _kspace_complex(x, scale)
            x += _kspace_lift(torch.polar(lr, torch.angle(c)) - c, scale, (H, W))
        return x.numpy()
    norm = max(float(torch.linalg.norm(lr)), 1e-12)
    best, best_err = x.clone(), np.inf
    for _ in range(max_iter):
        c = _kspace_complex(x, scale)
        err = float(torch.linalg.norm(c.abs() - lr)) / norm
        if err < best_err:
            best, best_err = x.clone(), err
        if err <= tol:
            break
        x += _kspace_lift(torch.polar(lr, torch.angle(c)) - c, scale, (H, W))
    return best.numpy().astype(np.float32)

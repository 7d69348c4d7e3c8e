"""Data-consistency projection: correct an SR image so that degrading it again reproduces its LR input.

A generator may add detail the LR image cannot contain, but it should never contradict what was measured. Given the
degradation model D (antialiased bicubic or k-space truncation, ``srgan.degrade``), the projection moves SR onto
{x : D(x) = LR} along the smallest correction. Projecting with the wrong model hurts: an SR image made consistent
with a bicubic LR it never came from is pulled towards the wrong low frequencies. So it is off unless chosen, or
``auto``: chosen per acquisition from a model's LR-kind estimate P(k-space) (``srgan.models.kind_detector``), only where that
estimate is confident enough for the expected gain to outweigh the expected loss.

How ``auto`` decides, per acquisition (one stack, series or volume):

1. The spectral detector (``srgan.models.kind_detector``) is trusted alone when it says k-space with P(k-space) >= 0.8: the k-space
   projection then gains about +0.1 dB and the detector was never that sure of a bicubic LR in training.
2. Otherwise the generator's output is asked which degradation explains its input better (analysis by synthesis):
   r = log(‖K(SR) − LR‖ / ‖B(SR) − LR‖) with K the k-space truncation and B antialiased bicubic, the median over
   up to ``TEST_SLICES`` slices. The detector errs on inputs whose spectrum does not look like either toy (an image
   upscaled before it was degraded, a scanner's filtered k-space); the residuals do not care how the spectrum looks,
   only which forward model reproduces the measurement. r <= ``RATIO_KSPACE[scale]`` → k-space projection (and
   the generator is re-run told "k-space" if the detector had said otherwise); r >= ``RATIO_BICUBIC[scale]`` →
   bicubic projection; in between, nothing.

Why these thresholds: measured on 60 *training* Kaggle slices per scale made both ways (LR as
``shared/tools/contract_check.py`` makes it, 8-bit; the held-out slices were not used), with the bundled ×4 and
×2 fidelity models; ``benchmarks/auto_consistency.py`` reproduces the numbers. ×4: the detector is sure of almost
every k-space slice, and r of its pass separates the two kinds completely (k-space at most −0.29, bicubic at
least +1.16; with the generator told "smooth", k-space at most +0.25); the k-space threshold 0.7 is where
Gaussians fitted to the two classes are equally likely (missing a k-space LR and wrongly projecting a bicubic one
cost about the same, ~0.8 dB), and the bicubic projection, which gains only +0.03 dB where right and costs ~2 dB
where wrong, waits for r inside the bicubic class (1.0). ×2: the detector is less sure (k-space slices at P
0.25–0.8), and r of a pass at such a P separates less well (k-space up to −0.32, two bicubic slices at −0.37 and
−0.02), so the band where neither is applied is set where the classes overlap (−0.4 to 0.5); there the bicubic
projection is worth more (+0.1 to +1 dB on slices the detector was unsure of, once the generator is re-run told
"smooth"). On those training slices the rule gains +0.01 / +0.06 dB (×4, bicubic / k-space LR) and +0.06 / +0.08
dB (×2) over the detector-only rule before (k-space if P >= 0.8, bicubic if P <= 0.02), which took a k-space LR
for bicubic whenever the detector did.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

import numpy as np

KINDS = ("off", "bicubic", "kspace")   # projections
CHOICES = KINDS + ("auto",)            # what a user or a model card may ask for
AUTO_KSPACE = 0.8  # the detector alone decides k-space at or above this P(k-space)
RATIO_KSPACE = {2: -0.4, 4: 0.7}   # residual test, per scale (see above): k-space at or below
RATIO_BICUBIC = {2: 0.5, 4: 1.0}   # bicubic at or above
TEST_SLICES = 4
AUTO_STEPS = 1  # k-space updates per slice under auto (see ``project``)


@dataclass(frozen=True)
class Choice:
    """What one acquisition was taken for and what is done about it; shown in the viewer and logged by the CLI.

    ``p_kspace``: the detector's pooled P(k-space LR), None for a model without the LR-kind input.
    ``log_ratio``: the residual test (see the module docstring), None where it was not run.
    ``model_p``: the LR-kind input the generator gets (``p_kspace`` unless the test overruled the detector).
    ``applied``: the projection, one of ``KINDS``.
    """
    p_kspace: float | None
    applied: str = "off"
    log_ratio: float | None = None
    model_p: float | None = None

    def note(self) -> str:
        """E.g. ``P(k-space LR) 0.00, residual test -0.85: consistency kspace``."""
        kind = "no LR-kind estimate" if self.p_kspace is None else f"P(k-space LR) {self.p_kspace:.2f}"
        test = "" if self.log_ratio is None else f", residual test {self.log_ratio:+.2f}"
        return f"{kind}{test}: consistency {self.applied}"


def check_choice(choice: str) -> None:
    if choice not in CHOICES:
        raise ValueError(f"unknown consistency {choice!r}; choose from {', '.join(CHOICES)}")


def needs_test(choice: str, p_kspace: float | None) -> bool:
    """Whether ``auto`` must look at the generator's output before it can decide (step 2 above)."""
    check_choice(choice)
    return choice == "auto" and p_kspace is not None and p_kspace < AUTO_KSPACE


def decide(choice: str, p_kspace: float | None, scale: int, log_ratio: float | None = None) -> Choice:
    """The ``Choice`` that ``choice`` means for an acquisition with detector estimate ``p_kspace`` and (where
    ``needs_test``) residual test ``log_ratio`` of the generator's output made with ``p_kspace``."""
    check_choice(choice)
    if choice != "auto" or p_kspace is None:
        return Choice(p_kspace, choice if choice != "auto" else "off", None, p_kspace)
    if p_kspace >= AUTO_KSPACE:
        return Choice(p_kspace, "kspace", None, p_kspace)
    if log_ratio is None:
        raise ValueError("auto needs the residual test for this estimate (see needs_test)")
    if log_ratio <= RATIO_KSPACE[scale]:
        return Choice(p_kspace, "kspace", log_ratio, p_kspace if p_kspace >= 0.5 else 1.0)
    if log_ratio >= RATIO_BICUBIC[scale]:
        return Choice(p_kspace, "bicubic", log_ratio, p_kspace if p_kspace < 0.5 else 0.0)
    return Choice(p_kspace, "off", log_ratio, p_kspace)


def describe(choice: str) -> str:
    """``choice`` for a provenance line: ``auto`` spelled out, since what it did depends on each acquisition."""
    if choice != "auto":
        return choice
    return (f"auto (k-space if P(k-space LR) >= {AUTO_KSPACE}, else by which degradation reproduces the LR "
            "from the output: k-space, bicubic or off)")


def residual_log_ratio(sr: np.ndarray, lr: np.ndarray, scale: int) -> float:
    """log(‖K(SR) − LR‖ / ‖B(SR) − LR‖) of an ``(s·h, s·w)`` SR image and its ``(h, w)`` LR input, same units:
    negative where k-space truncation reproduces the LR better than antialiased bicubic. Single precision torch,
    with the projections' cached operators (0.3–0.6 ms for a 256² SR image on two threads)."""
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

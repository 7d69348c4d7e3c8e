"""MRI degradations that turn an HR image into the LR image a generator must learn to invert.

Three steps, kept apart so every LR image used in training can be reproduced and logged:
``DegradationConfig`` (validated ranges and probabilities) → ``sample(rng)`` (a plain ``dict`` of
parameters) → ``apply(hr, params)`` (deterministic, noise included, via a seed in ``params``).

Pixel-centre convention (see ``srgan.io.geometry``): LR pixel i is centred on HR position i·s + (s−1)/2.
Antialiased bicubic with ``align_corners=False`` satisfies it; k-space truncation gets it from a
half-pixel phase ramp, exactly as ``shared/tools/contract_check.py`` does, so training LR matches the
LR that reviewers measure with.

Images are ``(H, W)`` or batches ``(B, 1, H, W)``; numpy in → numpy out, torch in → torch out.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

KINDS = ("bicubic", "kspace")


def _as_tensor(x) -> tuple[torch.Tensor, bool]:
    """(B, 1, H, W) tensor view of ``x`` and whether ``x`` was numpy."""
    is_np = isinstance(x, np.ndarray)
    t = torch.from_numpy(np.ascontiguousarray(x)) if is_np else x
    if t.ndim == 2:
        t = t[None, None]
    if t.ndim != 4 or t.shape[1] != 1:
        raise ValueError(f"expected (H, W) or (B, 1, H, W), got {tuple(t.shape)}")
    if not t.is_floating_point():
        t = t.float()
    return t, is_np


def _like(t: torch.Tensor, ndim: int, is_np: bool):
    if ndim == 2:
        t = t[0, 0]
    return t.numpy() if is_np else t


def bicubic_down(hr, scale: int):
    """Antialiased bicubic downsampling by ``scale`` (H, W → H//s, W//s); H, W should be multiples of s."""
    t, is_np = _as_tensor(hr)
    out = F.interpolate(t, scale_factor=1 / scale, mode="bicubic", antialias=True, align_corners=False)
    return _like(out, np.ndim(hr), is_np)


def bicubic_up(lr, scale: int):
    """Plain bicubic upsampling by ``scale``: the baseline a generator has to beat."""
    t, is_np = _as_tensor(lr)
    out = F.interpolate(t, scale_factor=scale, mode="bicubic", align_corners=False)
    return _like(out, np.ndim(lr), is_np)


def zerofill_up(lr, scale: int):
    """Zero-filled k-space interpolation ("ZIP", what scanners do): the LR spectrum centred in an s× larger one.

    The exact inverse of ``kspace_truncate`` on band-limited images, with the same pixel-centre convention (a
    −(s−1)/2 px phase ramp), real part, ×s² to keep intensities. It treats the image as periodic, so it must see
    a whole slice, never a crop. ``(h, w)`` or ``(B, 1, h, w)`` → ``(s·h, s·w)`` or ``(B, 1, s·h, s·w)``.
    """
    t, is_np = _as_tensor(lr)
    h, w = t.shape[-2:]
    s = scale
    H, W = h * s, w * s
    cdt = torch.complex128 if t.dtype == torch.float64 else torch.complex64
    k = torch.fft.fftshift(torch.fft.fft2(t.to(cdt)), dim=(-2, -1))
    # the −(s−1)/2 px shift as a separable phase ramp on the kept band only (HR frequency (j − h//2)/H)
    d = (s - 1) / 2
    fy = (torch.arange(h, dtype=t.dtype, device=t.device) - h // 2) / H
    fx = (torch.arange(w, dtype=t.dtype, device=t.device) - w // 2) / W
    k = k * torch.exp((-2j * math.pi * d) * fy.to(cdt))[:, None] * torch.exp((-2j * math.pi * d) * fx.to(cdt))[None, :]
    big = torch.zeros((*t.shape[:-2], H, W), dtype=cdt, device=t.device)
    big[..., H // 2 - h // 2 : H // 2 - h // 2 + h, W // 2 - w // 2 : W // 2 - w // 2 + w] = k
    out = torch.fft.ifft2(torch.fft.ifftshift(big, dim=(-2, -1))).real * (s * s)
    return _like(out.to(t.dtype), np.ndim(lr), is_np)


ZEROFILL_PAD = 16  # LR px of mirrored border around a slice before zero-filling


def zerofill_base(lr, scale: int):
    """The zero-fill interpolation generators build on: ``zerofill_up`` of the slice mirrored by ``ZEROFILL_PAD``
    px on each side, cropped back. Real slices often have anatomy at the edge of the field of view (the neck of a
    sagittal head scan); zero-filling treats the slice as periodic and would ring that edge into the opposite
    one. Mirroring makes the periodic extension continuous; for slices with a dark border it changes nothing.
    One function for training, validation and inference, so the model always sees the same base."""
    t, is_np = _as_tensor(lr)
    h, w = t.shape[-2:]
    py, px = min(ZEROFILL_PAD, h - 1), min(ZEROFILL_PAD, w - 1)
    padded = F.pad(t, (px, px, py, py), mode="reflect") if (py or px) else t
    out = zerofill_up(padded, scale)[..., py * scale : (py + h) * scale, px * scale : (px + w) * scale]
    return _like(out, np.ndim(lr), is_np)


# Below this share of a plane's spectral energy beyond half the Nyquist frequency, the plane was interpolated by
# zero-filling k-space (a scanner's "ZIP" ×2 or more): measured 1.7e-4 on such a series, 1.5e-3–1e-2 on acquired
# planes of five scanners (docs/benchmarks.md).
ZIP_OUTER_ENERGY = 5e-4


def outer_kspace_fraction(plane: np.ndarray) -> float:
    """Share of a ``(H, W)`` plane's spectral energy outside the central half of k-space (beyond half the Nyquist
    frequency along either axis), its mean removed: below ``ZIP_OUTER_ENERGY`` the plane holds no detail at its
    own grid (it was zero-fill interpolated), so a super-resolved copy can only sharpen an interpolation."""
    return float(outer_kspace_fractions(np.asarray(plane)[None])[0])


def outer_kspace_fractions(planes: np.ndarray) -> np.ndarray:
    """``outer_kspace_fraction`` of each ``(H, W)`` plane of a ``(B, H, W)`` stack, in one batched FFT."""
    p = np.asarray(planes, dtype=np.float64)
    power = np.abs(np.fft.fftshift(np.fft.fft2(p - p.mean(axis=(-2, -1), keepdims=True)), axes=(-2, -1))) ** 2
    h, w = power.shape[-2:]
    inner = power[:, h // 4 : h - h // 4, w // 4 : w - w // 4].sum(axis=(-2, -1))
    total = power.sum(axis=(-2, -1))
    return np.where(total > 0, 1.0 - inner / np.where(total > 0, total, 1.0), 0.0)


def _centred_hamming(n: int, dtype, device) -> torch.Tensor:
    """Hamming window over n k-space samples, peaking (1.0) at the DC sample n//2 of a centred crop."""
    i = torch.arange(n, dtype=dtype, device=device)
    return 0.54 + 0.46 * torch.cos(2 * math.pi * (i - n // 2) / n)


def kspace_truncate(hr, scale: int, hamming: bool = False):
    """LR image from the central 1/s of k-space per axis, magnitude, scaled to keep intensities.

    The HR image is first shifted by (s−1)/2 px with a phase ramp so LR pixel i is centred on
    HR position i·s + (s−1)/2. ``hamming`` tapers the kept k-space (less ringing, more blur), as many
    scanners do. Output is ``(H//s, W//s)``; it is identical (to rounding) to contract_check's ``degrade``.
    """
    t, is_np = _as_tensor(hr)
    H, W = t.shape[-2:]
    s = scale
    cdt = torch.complex128 if t.dtype == torch.float64 else torch.complex64
    d = (s - 1) / 2
    fy = torch.fft.fftfreq(H, dtype=t.dtype, device=t.device)[:, None]
    fx = torch.fft.fftfreq(W, dtype=t.dtype, device=t.device)[None, :]
    ramp = torch.exp((2j * math.pi * d) * (fy + fx).to(cdt))
    k = torch.fft.fftshift(torch.fft.fft2(t.to(cdt)) * ramp, dim=(-2, -1))
    h, w = H // s, W // s
    kc = k[..., H // 2 - h // 2 : H // 2 - h // 2 + h, W // 2 - w // 2 : W // 2 - w // 2 + w]
    if hamming:
        kc = kc * (_centred_hamming(h, t.dtype, t.device)[:, None] * _centred_hamming(w, t.dtype, t.device)[None, :])
    out = torch.fft.ifft2(torch.fft.ifftshift(kc, dim=(-2, -1))).abs() / (s * s)
    return _like(out.to(t.dtype), np.ndim(hr), is_np)


def gaussian_blur(x, sigma: float):
    """Separable Gaussian blur, ``sigma`` in pixels, reflect padding (kernel radius ⌈3σ⌉)."""
    t, is_np = _as_tensor(x)
    if sigma <= 0:
        return x
    r = max(1, math.ceil(3 * sigma))
    i = torch.arange(-r, r + 1, dtype=t.dtype, device=t.device)
    g = torch.exp(-0.5 * (i / sigma) ** 2)
    g = g / g.sum()
    pad_r = min(r, t.shape[-2] - 1, t.shape[-1] - 1)
    if pad_r < r:
        g = g[r - pad_r : r + pad_r + 1]
        g = g / g.sum()
        r = pad_r
    y = F.conv2d(F.pad(t, (0, 0, r, r), mode="reflect"), g.view(1, 1, -1, 1))
    y = F.conv2d(F.pad(y, (r, r, 0, 0), mode="reflect"), g.view(1, 1, 1, -1))
    return _like(y, np.ndim(x), is_np)


def rician_noise(x, sigma: float, seed: int):
    """Magnitude of the image plus complex Gaussian noise of std ``sigma`` (in the image's units).

    MR magnitude images carry Rician, not Gaussian, noise: biased upwards in dark background.
    """
    t, is_np = _as_tensor(x)
    if sigma <= 0:
        return x
    g = torch.Generator().manual_seed(int(seed))
    n1 = torch.randn(t.shape, generator=g, dtype=t.dtype) * sigma
    n2 = torch.randn(t.shape, generator=g, dtype=t.dtype) * sigma
    y = torch.sqrt((t + n1.to(t.device)) ** 2 + n2.to(t.device) ** 2)
    return _like(y, np.ndim(x), is_np)


def slice_thickness(volume, factor: int, axis: int = 0, profile: str = "box"):
    """Thick slices from a thin-slice volume: average ``factor`` neighbours along ``axis``, then subsample.

    ``profile`` "box" is an ideal rectangular slice profile; "gaussian" a smooth one with FWHM = factor.
    Thick slice j is centred on thin slice j·f + (f−1)/2 (the same pixel-centre convention); a trailing
    remainder of fewer than ``factor`` slices is dropped. numpy or torch, any number of dimensions.
    """
    is_np = isinstance(volume, np.ndarray)
    v = torch.from_numpy(np.ascontiguousarray(volume)) if is_np else volume
    if not v.is_floating_point():
        v = v.float()
    f = int(factor)
    if f < 1:
        raise ValueError("factor must be >= 1")
    v = v.movedim(axis, -1)
    n = v.shape[-1] // f * f
    flat = v[..., :n].reshape(-1, 1, n)
    if profile == "box":
        k = torch.ones(f, dtype=v.dtype) / f
        pad = 0
    elif profile == "gaussian":
        sig = f / 2.3548
        pad = math.ceil(3 * sig)
        i = torch.arange(-pad, pad + f, dtype=v.dtype) - (f - 1) / 2
        k = torch.exp(-0.5 * (i / sig) ** 2)
        k = k / k.sum()
    else:
        raise ValueError(f"unknown slice profile {profile!r}")
    src = F.pad(flat, (pad, pad), mode="replicate") if pad else flat
    out = F.conv1d(src, k.view(1, 1, -1), stride=f)
    out = out.reshape(*v.shape[:-1], n // f).movedim(-1, axis)
    return out.numpy() if is_np else out


@dataclass
class DegradationConfig:
    """Which degradations training draws, how often, and from which ranges.

    Ranges are (low, high) drawn uniformly. ``blur_sigma`` is in HR pixels (before downsampling);
    ``noise_sigma`` is relative to the image's robust maximum (1.0 in normalised units).
    ``quantize_8bit`` rounds the LR to 256 levels of the source range for sources that are 8-bit,
    since 8-bit LR is what such users (and the contract tests) feed in.

    The defaults cover scanners that filter k-space (Hamming) or blur; the bundled models set ``p_hamming=0``
    and ``p_blur=0``: filtered patches cost quality on unfiltered test LR (docs/benchmarks.md, "Training: what
    changed in session 4"), since the network learns to sharpen every input more.
    """

    scale: int = 2
    p_kspace: float = 0.5
    p_hamming: float = 0.3
    p_blur: float = 0.1
    blur_sigma: tuple[float, float] = (0.2, 0.8)
    p_noise: float = 0.2
    noise_sigma: tuple[float, float] = (0.0, 0.02)
    quantize_8bit: bool = True

    def __post_init__(self):
        self.blur_sigma = tuple(float(v) for v in self.blur_sigma)
        self.noise_sigma = tuple(float(v) for v in self.noise_sigma)
        self.validate()

    def validate(self) -> None:
        if self.scale not in (2, 3, 4, 8):
            raise ValueError(f"scale must be 2, 3, 4 or 8, not {self.scale}")
        for name in ("p_kspace", "p_hamming", "p_blur", "p_noise"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], not {p}")
        for name in ("blur_sigma", "noise_sigma"):
            lo, hi = getattr(self, name)
            if not 0.0 <= lo <= hi:
                raise ValueError(f"{name} must be (low, high) with 0 <= low <= high, not {(lo, hi)}")

    def as_dict(self) -> dict:
        return asdict(self)

    def sample(self, rng: np.random.Generator, *, eight_bit: bool = False) -> dict:
        """One set of parameters for ``apply``; ``eight_bit`` says the source image was 8-bit."""
        kspace = bool(rng.random() < self.p_kspace)
        hamming = bool(kspace and rng.random() < self.p_hamming)
        blur = float(rng.uniform(*self.blur_sigma)) if rng.random() < self.p_blur else 0.0
        noise = float(rng.uniform(*self.noise_sigma)) if rng.random() < self.p_noise else 0.0
        return {
            "scale": self.scale,
            "kind": "kspace" if kspace else "bicubic",
            "hamming": hamming,
            "blur_sigma": blur,
            "noise_sigma": noise,
            "noise_seed": int(rng.integers(0, 2**31 - 1)),
            "quantize_levels": 255 if (self.quantize_8bit and eight_bit) else 0,
        }


def apply(hr, params: dict, *, source: tuple[float, float] = (0.0, 1.0)):
    """LR image ``(H//s, W//s)`` (or batch) from ``hr`` with the parameters from ``sample``.

    ``hr`` may be in normalised units; ``source = (low, high)`` maps them back to source units
    (value = low + y·(high − low)). Every step runs in source units, because k-space magnitude and Rician
    noise are not shift-equivariant and 8-bit clipping/rounding happen on the source grid; the result is
    returned in ``hr``'s units. Order: blur (optics/partial volume) → downsample → Rician noise → quantise.
    ``noise_sigma`` is relative to the robust maximum, i.e. to ``high − low``.
    """
    return finish(resample(hr, params, source=source), params, source=source)


def _in_source_units(fn, x, source: tuple[float, float]):
    """``fn(x in source units, span)`` mapped back to ``x``'s units; ``source = (low, high)``."""
    lo, span = float(source[0]), float(source[1]) - float(source[0])
    if (lo, span) == (0.0, 1.0):
        return fn(x, span)
    return (fn(x * span + lo, span) - lo) / span


def resample(hr, params: dict, *, source: tuple[float, float] = (0.0, 1.0)):
    """The spatial half of ``apply`` (blur → downsample), ``hr``'s units in and out.

    It must see the whole slice: k-space truncation of a crop treats the crop as periodic and rings at its
    cut edges, which a real acquisition never does. Training therefore resamples whole planes and crops LR/HR
    patches aligned on the LR grid afterwards.
    """
    s = int(params["scale"])
    kind = params.get("kind", "bicubic")
    if kind not in KINDS:
        raise ValueError(f"unknown degradation kind {kind!r}; expected one of {KINDS}")

    def spatial(x, span):
        if params.get("blur_sigma", 0.0) > 0:
            x = gaussian_blur(x, params["blur_sigma"])
        if kind == "bicubic":
            return bicubic_down(x, s)
        return kspace_truncate(x, s, hamming=bool(params.get("hamming", False)))

    return _in_source_units(spatial, hr, source)


def finish(lr, params: dict, *, source: tuple[float, float] = (0.0, 1.0)):
    """The pointwise half of ``apply`` (Rician noise → 8-bit quantisation), so it may run on a crop."""

    def pointwise(x, span):
        if params.get("noise_sigma", 0.0) > 0:
            x = rician_noise(x, params["noise_sigma"] * span, params.get("noise_seed", 0))
        levels = int(params.get("quantize_levels", 0))
        if levels:
            if isinstance(x, np.ndarray):
                x = np.round(np.clip(x, 0, 1) * levels) / levels
            else:
                x = torch.round(x.clamp(0, 1) * levels) / levels
        return x

    return _in_source_units(pointwise, lr, source)

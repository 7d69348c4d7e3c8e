"""How a low-resolution slice lost its resolution, estimated from its spectrum: k-space truncation or bicubic.

Why: one network trained on both kinds of LR compromises between them. Antialiased bicubic attenuates the top of
the LR band, so its inverse must sharpen more; k-space truncation keeps the band flat up to Nyquist and rings.
Told the kind, the bundled models gain on held-out slices of both kinds (docs/benchmarks.md). 8-bit rounding and
the variety of source images make a single slice ambiguous, so the generator is given a probability, not a label,
and is trained on the same estimate it will see at inference.

The estimate is a logistic regression on the log power of the slice's 1-D spectra (rows and columns averaged) in
``N_BANDS`` bands between 0.25 and 1.0 of Nyquist, relative to the lowest band, plus the slopes of the top bands,
and on the 2-D spectrum in a grid of (one axis, other axis) frequency cells: k-space truncation keeps a square
band whole, while separable bicubic attenuates its corners twice. All features are log power ratios, invariant to
the intensity scale and offset the normaliser applies (its accuracy on held-out slices: docs/benchmarks.md). It
must see a whole slice: a crop's spectrum leaks at its cut edges.
"""

from __future__ import annotations

from functools import lru_cache

import torch
from torch import nn

N_BANDS = 12
N_SLOPES = 4
# 2-D cells: (band of the larger, band of the smaller axis frequency), fractions of Nyquist
CELLS_MAJOR = (0.3, 0.45, 0.6, 0.75, 0.9, 1.0 + 1e-6)
CELLS_MINOR = (0.0, 0.3, 0.6, 0.9, 1.0 + 1e-6)
N_CELLS = (len(CELLS_MAJOR) - 1) * (len(CELLS_MINOR) - 1)
N_FEATURES = N_BANDS - 1 + N_SLOPES + N_CELLS - 1
LOW, HIGH = 0.25, 1.0  # band edges as fractions of Nyquist


# Band and cell means are one matrix product with averaging weights cached per spectrum size, much cheaper than
# masking band by band.
@lru_cache(maxsize=64)
def _band_weights(n: int) -> torch.Tensor:
    """``(n, N_BANDS)`` weights that average a one-sided spectrum of ``n`` bins (DC .. Nyquist) per band; a band
    with no bin (tiny images) takes the nearest one."""
    f = torch.arange(n, dtype=torch.float64) / max(n - 1, 1)
    edges = torch.linspace(LOW, HIGH, N_BANDS + 1, dtype=torch.float64)
    edges[-1] = HIGH + 1e-6
    w = torch.zeros(n, N_BANDS, dtype=torch.float64)
    for i, (a, b) in enumerate(zip(edges[:-1], edges[1:])):
        m = (f >= a) & (f < b)
        if not bool(m.any()):
            m = torch.zeros_like(m)
            m[int(torch.argmin((f - (a + b) / 2).abs()))] = True
        w[:, i] = m / m.sum()
    return w


@lru_cache(maxsize=64)
def _cell_weights(h: int, w: int) -> torch.Tensor:
    """``(h·w, N_CELLS)`` weights that average an unshifted ``(h, w)`` power spectrum per cell; an empty cell
    (tiny images) takes the mean of the whole spectrum."""
    fy = (torch.fft.fftfreq(h, dtype=torch.float64).abs() * 2)[:, None].expand(h, w)
    fx = (torch.fft.fftfreq(w, dtype=torch.float64).abs() * 2)[None, :].expand(h, w)
    major, minor = torch.maximum(fy, fx).reshape(-1), torch.minimum(fy, fx).reshape(-1)
    out = torch.zeros(h * w, N_CELLS, dtype=torch.float64)
    i = 0
    for a, b in zip(CELLS_MAJOR[:-1], CELLS_MAJOR[1:]):
        for c, d in zip(CELLS_MINOR[:-1], CELLS_MINOR[1:]):
            m = (major >= a) & (major < b) & (minor >= c) & (minor < d)
            out[:, i] = m / m.sum() if bool(m.any()) else 1.0 / (h * w)
            i += 1
    return out


def _band_log_power(power: torch.Tensor) -> torch.Tensor:
    """``(B, n)`` one-sided power spectrum (DC .. Nyquist) → ``(B, N_BANDS)`` log mean power per band."""
    return torch.log(power @ _band_weights(power.shape[-1]).to(power) + 1e-12)


def _cell_log_power(power: torch.Tensor) -> torch.Tensor:
    """``(B, h, w)`` 2-D power spectrum (unshifted) → ``(B, N_CELLS)`` log mean power per cell, relative to the
    first."""
    lc = torch.log(power.flatten(-2) @ _cell_weights(*power.shape[-2:]).to(power) + 1e-12)
    return lc[:, 1:] - lc[:, :1]


def spectral_features(lr: torch.Tensor) -> torch.Tensor:
    """``(B, 1, h, w)`` whole LR slices, any intensity units → ``(B, N_FEATURES)`` float64 features."""
    x = lr.detach().to(torch.float64)
    x = x - x.mean(dim=(-2, -1), keepdim=True)
    h, w = x.shape[-2:]
    power = torch.fft.fft2(x[:, 0]).abs() ** 2  # (B, h, w)
    # The mean 1-D power spectrum of the rows (columns) is, by Parseval along the other axis, the 2-D power summed
    # over the other frequency / that axis' length²: one FFT instead of three.
    rows = power[..., : w // 2 + 1].sum(dim=-2) / (h * h)  # (B, w//2+1)
    cols = power[..., : h // 2 + 1, :].sum(dim=-1) / (w * w)  # (B, h//2+1)
    lb = (_band_log_power(rows) + _band_log_power(cols)) / 2
    lb = lb - lb[:, :1]
    cells = _cell_log_power(power)
    return torch.cat([lb[:, 1:], torch.diff(lb, dim=-1)[:, -N_SLOPES:], cells], dim=-1)


class KindDetector(nn.Module):
    """Probability that a whole LR slice was made by k-space truncation rather than antialiased bicubic.

    Its state is buffers (feature mean/std, logistic weights), saved and hash-checked with the generator that
    owns it. Unfitted (``fitted == 0``) it answers 0.5 for every slice.
    """

    mean: torch.Tensor
    std: torch.Tensor
    weight: torch.Tensor
    bias: torch.Tensor
    fitted: torch.Tensor

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.zeros(N_FEATURES))
        self.register_buffer("std", torch.ones(N_FEATURES))
        self.register_buffer("weight", torch.zeros(N_FEATURES))
        self.register_buffer("bias", torch.zeros(1))
        self.register_buffer("fitted", torch.zeros(1))

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        z = (features - self.mean.to(features)) / self.std.to(features)
        return z @ self.weight.to(features) + self.bias.to(features)

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        """``(B, 1, h, w)`` → ``(B,)`` in [0, 1], in ``lr``'s dtype."""
        return torch.sigmoid(self.logits(spectral_features(lr))).to(lr.dtype)

    @torch.no_grad()
    def pooled(self, slices: torch.Tensor) -> torch.Tensor:
        """``(N, 1, h, w)`` slices of one acquisition → ``(1,)``: one estimate for all of them (the median logit
        over the slices that have content, so one odd slice does not decide). How a series lost its resolution is
        a property of the acquisition, and single-slice estimates of real series scatter (0–1 across the slices of
        a 64² EPI series), which would sharpen neighbouring slices differently."""
        x = slices.detach().to(torch.float64)
        flat = x.flatten(1)
        has_content = (flat.amax(1) - flat.amin(1)) > 0
        if not bool(has_content.any()):
            return torch.full((1,), 0.5, dtype=slices.dtype)
        logits = self.logits(spectral_features(x[has_content]))
        return torch.sigmoid(logits.median()).reshape(1).to(slices.dtype)

    @torch.no_grad()
    def fit(self, features: torch.Tensor, is_kspace: torch.Tensor, *, l2: float = 1e-3, steps: int = 500) -> float:
        """Fit on ``(N, N_FEATURES)`` features and ``(N,)`` 0/1 labels (L2-regularised logistic regression,
        L-BFGS); returns the training accuracy."""
        f = features.to(torch.float64)
        y = is_kspace.to(torch.float64)
        mean, std = f.mean(0), f.std(0).clamp_min(1e-6)
        z = (f - mean) / std
        w = torch.zeros(f.shape[1] + 1, dtype=torch.float64, requires_grad=True)
        opt = torch.optim.LBFGS([w], max_iter=steps, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            with torch.enable_grad():
                logit = z @ w[:-1] + w[-1]
                loss = nn.functional.binary_cross_entropy_with_logits(logit, y) + l2 * (w[:-1] ** 2).sum()
                loss.backward()
            return loss

        opt.step(closure)
        self.mean.copy_(mean)
        self.std.copy_(std)
        self.weight.copy_(w.detach()[:-1])
        self.bias.copy_(w.detach()[-1:])
        self.fitted.fill_(1)
        return self.accuracy(features, is_kspace)

    def accuracy(self, features: torch.Tensor, is_kspace: torch.Tensor) -> float:
        pred = self.logits(features.to(torch.float64)) > 0
        return float((pred == is_kspace.bool()).to(torch.float64).mean())

"""Image-quality metrics of a super-resolved image against its high-resolution ground truth.

Inputs are (H, W) images or (N, H, W) stacks of slices (each slice filtered on its own: SR is 2D) in the
same units. Every metric takes an optional boolean ``mask`` of the same shape, to measure inside the brain
or a tumour region only. PSNR and SSIM always take an explicit ``data_range`` (the intensity span a
full-scale error would have: 1 for [0, 1] images, a robust peak for MR volumes), never one guessed from dtype.

scikit-image is the reference: unmasked PSNR/SSIM/NRMSE equal ``skimage.metrics`` with the same arguments.
SSIM uses skimage's defaults (7×7 uniform window, sample covariance), as the project's contract check does.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def _pair(hr, sr, mask):
    hr = np.asarray(hr, dtype=np.float64)
    sr = np.asarray(sr, dtype=np.float64)
    if hr.shape != sr.shape:
        raise ValueError(f"shape mismatch: HR {hr.shape} vs SR {sr.shape}")
    if hr.ndim not in (2, 3):
        raise ValueError(f"expected (H, W) or (N, H, W), got {hr.shape}")
    if mask is None:
        m = np.ones(hr.shape, dtype=bool)
    else:
        m = np.asarray(mask, dtype=bool)
        if m.shape != hr.shape:
            raise ValueError(f"mask shape {m.shape} != image shape {hr.shape}")
    return hr, sr, m


def _check_range(data_range) -> float:
    r = float(data_range)
    if not np.isfinite(r) or r <= 0:
        raise ValueError(f"data_range must be a positive number, got {data_range!r}")
    return r


def _slices(x: np.ndarray):
    return x[None] if x.ndim == 2 else x


def psnr(hr, sr, data_range: float, mask=None) -> float:
    """Peak signal-to-noise ratio (dB) = 10·log10(data_range² / MSE); +inf when identical, nan on an empty mask."""
    hr, sr, m = _pair(hr, sr, mask)
    data_range = _check_range(data_range)
    if not m.any():
        return float("nan")
    mse = float(np.mean((hr[m] - sr[m]) ** 2))
    if mse == 0.0:
        return float("inf")
    return float(10.0 * np.log10(float(data_range) ** 2 / mse))


def ssim(hr, sr, data_range: float, mask=None) -> float:
    """Structural similarity: mean of skimage's SSIM map, per slice for stacks.

    Without a mask this equals ``skimage.metrics.structural_similarity`` (the map's border of half a window
    is left out as skimage does); with one, the map is averaged over the mask inside that border.
    """
    from skimage.metrics import structural_similarity

    hr, sr, m = _pair(hr, sr, mask)
    data_range = _check_range(data_range)
    win = 7
    pad = (win - 1) // 2
    total, count = 0.0, 0
    for h, s, mm in zip(_slices(hr), _slices(sr), _slices(m)):
        if min(h.shape) < win:
            raise ValueError(f"images of {h.shape} are smaller than the 7×7 SSIM window")
        _, smap = structural_similarity(h, s, data_range=float(data_range), full=True, win_size=win)
        inner = np.zeros_like(mm)
        inner[pad:-pad, pad:-pad] = mm[pad:-pad, pad:-pad]
        total += float(smap[inner].sum())
        count += int(inner.sum())
    return total / count if count else float("nan")


def nrmse(hr, sr, mask=None) -> float:
    """Normalised RMSE, ‖SR − HR‖ / ‖HR‖ (skimage's default 'euclidean' normalisation); 0 is perfect."""
    hr, sr, m = _pair(hr, sr, mask)
    denom = float(np.sqrt(np.sum(hr[m] ** 2)))
    if not m.any() or denom == 0.0:
        return float("nan")
    return float(np.sqrt(np.sum((hr[m] - sr[m]) ** 2)) / denom)


def _log(x: np.ndarray, sigma: float) -> np.ndarray:
    return np.stack([ndimage.gaussian_laplace(s, sigma, mode="reflect") for s in _slices(x)]).reshape(x.shape)


def hfen(hr, sr, mask=None, sigma: float = 1.5) -> float:
    """High-frequency error norm (Ravishankar & Bresler 2011): ‖LoG(SR − HR)‖ / ‖LoG(HR)‖, LoG σ = 1.5 px.

    It weighs errors in edges and fine texture, where interpolation and over-smoothed SR differ most; 0 is
    perfect. Filtering is in-plane; the mask selects where the filtered difference is summed.
    """
    hr, sr, m = _pair(hr, sr, mask)
    ref = _log(hr, sigma)[m]
    denom = float(np.sqrt(np.sum(ref**2)))
    if not m.any() or denom == 0.0:
        return float("nan")
    return float(np.sqrt(np.sum(_log(sr - hr, sigma)[m] ** 2)) / denom)


def _laplace(x: np.ndarray) -> np.ndarray:
    return np.stack([ndimage.laplace(s, mode="reflect") for s in _slices(x)]).reshape(x.shape)


def sharpness(hr, sr, mask=None) -> float:
    """High-frequency energy of SR relative to HR: Σ Laplacian(SR)² / Σ Laplacian(HR)².

    1.0 = as much fine detail as the ground truth; below 1 is blurrier (interpolation is well below);
    above 1 means extra high-frequency content (noise, ringing, hallucinated texture).
    """
    hr, sr, m = _pair(hr, sr, mask)
    denom = float(np.sum(_laplace(hr)[m] ** 2))
    if not m.any() or denom == 0.0:
        return float("nan")
    return float(np.sum(_laplace(sr)[m] ** 2) / denom)


def foreground_mask(hr) -> np.ndarray:
    """Boolean mask of the head/brain in an (H, W) image or (N, H, W) stack, slice by slice.

    Threshold at 10 % of the way from the background level (1st percentile) to the bright tissue level
    (99th percentile of the whole input): low enough to keep dark CSF and grey matter, high enough to drop
    JPEG noise. A small opening cuts thin bridges to background noise; components smaller than 10 % of
    the slice's largest are dropped (noise, burnt-in text) and holes (ventricles, necrosis) filled.
    """
    x = np.asarray(hr, dtype=np.float64)
    lo, hi = np.percentile(x, [1.0, 99.0])
    if hi <= lo:
        return np.zeros(x.shape, dtype=bool)
    raw = x > lo + 0.1 * (hi - lo)
    out = []
    for sl in _slices(raw):
        opened = ndimage.binary_opening(sl, structure=np.ones((3, 3), bool), iterations=1)
        labels, n = ndimage.label(opened)
        if n == 0:
            out.append(np.zeros_like(sl))
            continue
        sizes = np.bincount(labels.ravel())[1:]
        keep = np.flatnonzero(sizes >= 0.1 * sizes.max()) + 1
        out.append(ndimage.binary_fill_holes(np.isin(labels, keep)))
    return np.stack(out).reshape(x.shape)


def bootstrap_ci(values, n: int = 2000, seed: int = 0, level: float = 0.95) -> tuple[float, float, float]:
    """Mean of ``values`` and its percentile-bootstrap ``level`` interval: (mean, lo, hi).

    NaNs are dropped (a region absent from an image); ±inf (PSNR of an exact copy) make the mean inf and the
    interval uninformative, so they are dropped too. Empty input gives nans; one value gives (v, v, v).
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan"), float("nan"), float("nan")
    mean = float(v.mean())
    if v.size == 1:
        return mean, mean, mean
    rng = np.random.default_rng(seed)
    means = np.empty(n)
    chunk = max(1, 2_000_000 // v.size)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        means[start:stop] = v[rng.integers(0, v.size, size=(stop - start, v.size))].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    return mean, float(lo), float(hi)

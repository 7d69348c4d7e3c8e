"""Metrics against scikit-image on a real slice, masked variants, edge cases, bootstrap intervals."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage
from skimage import metrics as skm

from srgan.evaluation import metrics as M
from srgan.io.images import load_image

KAGGLE = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "kaggle-brain-tumor-mri"
SLICE = KAGGLE / "glioma" / "Tr-glTr_0000.jpg"


@pytest.fixture(scope="module")
def hr():
    if not SLICE.exists():
        pytest.skip(f"Kaggle sample image not found at {SLICE}")
    return load_image(SLICE).data[:256, 128:384].astype(np.float64)


@pytest.fixture(scope="module")
def sr(hr):
    return np.clip(ndimage.gaussian_filter(hr, 1.0) + np.random.default_rng(0).normal(0, 0.01, hr.shape), 0, 1)


def test_unmasked_equal_skimage(hr, sr):
    assert M.psnr(hr, sr, 1.0) == pytest.approx(skm.peak_signal_noise_ratio(hr, sr, data_range=1.0), rel=1e-9)
    assert M.psnr(hr, sr, 2.0) == pytest.approx(skm.peak_signal_noise_ratio(hr, sr, data_range=2.0), rel=1e-9)
    assert M.ssim(hr, sr, 1.0) == pytest.approx(skm.structural_similarity(hr, sr, data_range=1.0), rel=1e-9)
    assert M.nrmse(hr, sr) == pytest.approx(skm.normalized_root_mse(hr, sr), rel=1e-9)


def test_identical_images(hr):
    assert M.psnr(hr, hr, 1.0) == float("inf")
    assert M.ssim(hr, hr, 1.0) == pytest.approx(1.0)
    assert M.nrmse(hr, hr) == 0.0 and M.hfen(hr, hr) == 0.0
    assert M.sharpness(hr, hr) == pytest.approx(1.0)


def test_masked_psnr_nrmse_are_over_mask_pixels(hr, sr):
    mask = np.zeros(hr.shape, bool)
    mask[50:200, 40:220] = True
    mse = np.mean((hr[mask] - sr[mask]) ** 2)
    assert M.psnr(hr, sr, 1.0, mask) == pytest.approx(10 * np.log10(1 / mse))
    assert M.nrmse(hr, sr, mask) == pytest.approx(skm.normalized_root_mse(hr[mask], sr[mask]))
    assert M.psnr(hr, sr, 1.0, np.ones_like(mask)) == pytest.approx(M.psnr(hr, sr, 1.0))
    assert np.isnan(M.psnr(hr, sr, 1.0, np.zeros_like(mask)))


def test_masked_ssim_is_mean_of_map(hr, sr):
    _, smap = skm.structural_similarity(hr, sr, data_range=1.0, full=True)
    mask = hr > 0.3
    inner = mask.copy()
    inner[:3], inner[-3:], inner[:, :3], inner[:, -3:] = False, False, False, False
    assert M.ssim(hr, sr, 1.0, mask) == pytest.approx(smap[inner].mean())
    assert M.ssim(hr, sr, 1.0, np.ones(hr.shape, bool)) == pytest.approx(M.ssim(hr, sr, 1.0))


def test_stacks_are_measured_slice_by_slice(hr, sr):
    stack_hr, stack_sr = np.stack([hr, hr]), np.stack([sr, sr])
    assert M.ssim(stack_hr, stack_sr, 1.0) == pytest.approx(M.ssim(hr, sr, 1.0))
    assert M.hfen(stack_hr, stack_sr) == pytest.approx(M.hfen(hr, sr))
    assert M.sharpness(stack_hr, stack_sr) == pytest.approx(M.sharpness(hr, sr))
    assert M.psnr(stack_hr, stack_sr, 1.0) == pytest.approx(M.psnr(hr, sr, 1.0))


def test_hfen_and_sharpness_rank_blur(hr):
    mild, strong = ndimage.gaussian_filter(hr, 0.7), ndimage.gaussian_filter(hr, 2.0)
    assert 0 < M.hfen(hr, mild) < M.hfen(hr, strong)
    assert M.sharpness(hr, strong) < M.sharpness(hr, mild) < 1.0
    noisy = hr + np.random.default_rng(1).normal(0, 0.05, hr.shape)
    assert M.sharpness(hr, noisy) > 1.0
    log_hr = ndimage.gaussian_laplace(hr, 1.5)
    expected = np.linalg.norm(ndimage.gaussian_laplace(strong, 1.5) - log_hr) / np.linalg.norm(log_hr)
    assert M.hfen(hr, strong) == pytest.approx(expected, rel=1e-6)


def test_shape_checks(hr):
    with pytest.raises(ValueError):
        M.psnr(hr, hr[:-1], 1.0)
    with pytest.raises(ValueError):
        M.ssim(hr, hr, 1.0, mask=np.ones((3, 3), bool))
    for bad in (0.0, -1.0, np.nan):
        with pytest.raises(ValueError, match="data_range"):
            M.psnr(hr, hr, bad)
        with pytest.raises(ValueError, match="data_range"):
            M.ssim(hr, hr, bad)


def test_foreground_mask_real_slice(hr):
    full = load_image(SLICE).data
    m = M.foreground_mask(full)
    assert m.dtype == bool and m.shape == full.shape
    assert m[256, 256] and not m[:5, :5].any() and not m[-5:, -5:].any()
    assert 0.2 < m.mean() < 0.8


def test_foreground_mask_fills_holes_and_drops_specks():
    img = np.zeros((100, 100))
    yy, xx = np.mgrid[:100, :100]
    r = np.hypot(yy - 50, xx - 50)
    img[(r > 10) & (r < 35)] = 1.0            # ring: the hole (a dark ventricle) is foreground too
    img[2, 2] = 1.0                           # one bright speck in the background
    m = M.foreground_mask(img)
    assert m[50, 50] and not m[2, 2] and not m[5, 95]
    assert m.sum() == pytest.approx(np.pi * 35 ** 2, rel=0.05)
    stack = M.foreground_mask(np.stack([img, np.zeros_like(img)]))
    assert stack[0].sum() == m.sum() and not stack[1].any()
    assert not M.foreground_mask(np.zeros((10, 10))).any()


def test_bootstrap_ci():
    v = np.random.default_rng(5).normal(30, 2, size=40)
    mean, lo, hi = M.bootstrap_ci(v)
    assert mean == pytest.approx(v.mean()) and lo < mean < hi
    se = v.std(ddof=1) / np.sqrt(v.size)
    assert hi - lo == pytest.approx(2 * 1.96 * se, rel=0.2)
    assert M.bootstrap_ci(v, seed=0) == M.bootstrap_ci(v, seed=0)
    assert M.bootstrap_ci([3.0]) == (3.0, 3.0, 3.0)
    assert all(np.isnan(M.bootstrap_ci([])))
    assert M.bootstrap_ci([1.0, np.nan, np.inf, 3.0])[0] == pytest.approx(2.0)

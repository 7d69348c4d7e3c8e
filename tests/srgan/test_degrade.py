"""Degradations: the contract's LR, pixel-centre convention, determinism from logged parameters."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from srgan import degrade
from srgan.degrade import DegradationConfig

CONTRACT = Path(__file__).resolve().parents[2] / ".." / "shared" / "tools" / "contract_check.py"


@pytest.fixture(scope="module")
def contract():
    if not CONTRACT.exists():
        pytest.skip(f"contract_check.py not found at {CONTRACT}")
    spec = importlib.util.spec_from_file_location("contract_check", CONTRACT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def smooth_image(h=64, w=48, seed=0):
    rng = np.random.default_rng(seed)
    img = rng.random((h // 8, w // 8))
    up = torch.nn.functional.interpolate(torch.from_numpy(img)[None, None], size=(h, w), mode="bicubic",
                                         align_corners=False)[0, 0].numpy()
    return np.clip(up, 0, 1)


@pytest.mark.parametrize("s", [2, 4])
@pytest.mark.parametrize("shape", [(64, 48), (60, 44)])
def test_matches_contract_degrade(contract, s, shape):
    hr = smooth_image(*shape)
    hr = hr[:hr.shape[0] // s * s, :hr.shape[1] // s * s]
    ours_k = np.clip(degrade.kspace_truncate(hr, s), 0, 1)
    ours_b = np.clip(degrade.bicubic_down(hr, s), 0, 1)
    np.testing.assert_allclose(ours_k, contract.degrade(hr, s, "kspace"), atol=1e-6, rtol=0)
    np.testing.assert_allclose(ours_b, contract.degrade(hr, s, "bicubic"), atol=1e-6, rtol=0)
    via_apply = degrade.apply(hr, {"scale": s, "kind": "kspace", "quantize_levels": 0})
    np.testing.assert_allclose(np.clip(via_apply, 0, 1), contract.degrade(hr, s, "kspace"), atol=1e-6)


@pytest.mark.parametrize("s", [2, 4])
def test_pixel_centre_convention_on_a_ramp(s):
    """A linear ramp keeps its values at LR pixel centres i·s + (s−1)/2, for both degradations (interior)."""
    H = W = 64
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float64)
    hr = 0.2 + 0.004 * xx + 0.003 * yy
    i = np.arange(H // s) * s + (s - 1) / 2
    expected = 0.2 + 0.004 * i[None, :] + 0.003 * i[:, None]
    inner = slice(3, -3)
    b = degrade.bicubic_down(hr, s)
    np.testing.assert_allclose(b[inner, inner], expected[inner, inner], atol=1e-6)
    # k-space truncation of a periodic-wrapped ramp rings at the edges; compare a smooth periodic signal instead
    f = 2 * np.pi / W
    hr2 = 0.5 + 0.2 * np.cos(f * xx) + 0.1 * np.sin(2 * f * yy)
    exp2 = 0.5 + 0.2 * np.cos(f * i[None, :]) + 0.1 * np.sin(2 * f * i[:, None])
    np.testing.assert_allclose(degrade.kspace_truncate(hr2, s), exp2, atol=1e-9)
    np.testing.assert_allclose(degrade.kspace_truncate(hr2, s, hamming=True).mean(), exp2.mean(), atol=1e-9)


def test_torch_numpy_and_batch_agree():
    hr = smooth_image(32, 32).astype(np.float32)
    t = torch.from_numpy(hr)
    for fn in (lambda x: degrade.kspace_truncate(x, 2, hamming=True), lambda x: degrade.bicubic_down(x, 2),
               lambda x: degrade.gaussian_blur(x, 0.7)):
        a = fn(hr)
        assert isinstance(a, np.ndarray)
        b = fn(t)
        assert isinstance(b, torch.Tensor)
        np.testing.assert_allclose(a, b.numpy(), atol=1e-6)
        batch = fn(torch.stack([t, t.flip(0)])[:, None])
        np.testing.assert_allclose(batch[0, 0].numpy(), a, atol=1e-6)


def test_blur_preserves_mean_and_constants():
    hr = smooth_image(40, 40)
    y = degrade.gaussian_blur(hr, 1.2)
    assert y.shape == hr.shape
    assert abs(y.mean() - hr.mean()) < 5e-3
    assert y.std() < hr.std()
    np.testing.assert_allclose(degrade.gaussian_blur(np.full((9, 9), 0.3), 0.8), 0.3, atol=1e-12)


def test_rician_noise_is_seeded_and_biased_in_background():
    x = np.zeros((64, 64))
    a = degrade.rician_noise(x, 0.05, seed=3)
    np.testing.assert_array_equal(a, degrade.rician_noise(x, 0.05, seed=3))
    assert not np.array_equal(a, degrade.rician_noise(x, 0.05, seed=4))
    # Rayleigh mean sigma*sqrt(pi/2) in zero background
    assert abs(a.mean() - 0.05 * np.sqrt(np.pi / 2)) < 0.004
    assert (a >= 0).all()


def test_slice_thickness_box_and_gaussian():
    z = np.arange(20, dtype=np.float64)
    vol = np.broadcast_to(z[:, None, None], (20, 3, 4)).copy()
    thick = degrade.slice_thickness(vol, 4, axis=0)
    assert thick.shape == (5, 3, 4)
    np.testing.assert_allclose(thick[:, 0, 0], np.arange(5) * 4 + 1.5)  # centre j*f + (f-1)/2
    z40 = np.arange(40, dtype=np.float64)
    g = degrade.slice_thickness(z40, 4, axis=0, profile="gaussian")
    np.testing.assert_allclose(g[2:-2], (np.arange(10) * 4 + 1.5)[2:-2], atol=1e-9)  # away from the padded ends
    moved = degrade.slice_thickness(np.moveaxis(vol, 0, 2), 4, axis=2)
    np.testing.assert_allclose(moved, np.moveaxis(thick, 0, 2))


def test_config_sample_apply_is_reproducible_and_validated():
    cfg = DegradationConfig(scale=4, p_kspace=0.5, p_blur=0.5, p_noise=0.5)
    p1 = [cfg.sample(np.random.default_rng(7), eight_bit=True) for _ in range(2)]
    assert p1[0] == p1[1]
    params = [cfg.sample(np.random.default_rng(i), eight_bit=True) for i in range(40)]
    assert {p["kind"] for p in params} == {"bicubic", "kspace"}
    assert all(p["quantize_levels"] == 255 for p in params)
    assert cfg.sample(np.random.default_rng(0))["quantize_levels"] == 0
    hr = smooth_image(64, 64)
    for p in params[:6]:
        lr = degrade.apply(hr, p)
        assert lr.shape == (16, 16)
        np.testing.assert_array_equal(lr, degrade.apply(hr, p))
        np.testing.assert_allclose(lr * 255, np.round(lr * 255), atol=1e-9)
    with pytest.raises(ValueError):
        DegradationConfig(p_noise=1.5)
    with pytest.raises(ValueError):
        DegradationConfig(blur_sigma=(1.0, 0.5))
    with pytest.raises(ValueError):
        DegradationConfig(scale=5)


def test_quantise_in_source_units():
    """Normalised HR (y = (x − low)/(high − low)) is quantised on the 8-bit source grid, not on y's grid."""
    low, high = 0.1, 0.7
    hr = smooth_image(32, 32) * 0.5 + 0.15
    y = (hr - low) / (high - low)
    p = {"scale": 2, "kind": "bicubic", "quantize_levels": 255}
    lr_y = degrade.apply(y, p, source=(low, high))
    lr_x = degrade.apply(hr, p)
    np.testing.assert_allclose(low + lr_y * (high - low), lr_x, atol=1e-9)


@pytest.mark.parametrize("kind", ["bicubic", "kspace"])
def test_training_lr_of_8bit_source_is_the_contracts_8bit_png(contract, kind):
    """Normalised float32 HR → apply(..., quantize 255, source=normaliser) → back to source units equals the
    contract's 8-bit LR PNG (float64), except for rare values that sit on a rounding boundary."""
    from srgan.normalize import Normalizer
    kaggle = CONTRACT.parents[1] / "data" / "kaggle-brain-tumor-mri" / "glioma"
    files = sorted(kaggle.glob("*.jpg"))[:1]
    hr = contract.load_gray(files[0]) if files else smooth_image(128, 128)
    s = 2
    hr = hr[:hr.shape[0] // s * s, :hr.shape[1] // s * s]
    want = np.round(contract.degrade(hr, s, kind) * 255) / 255
    norm = Normalizer.fit(degrade.bicubic_down(hr, s))
    y = norm.forward(hr).astype(np.float32)
    lr = degrade.apply(y, {"scale": s, "kind": kind, "quantize_levels": 255}, source=(norm.low, norm.high))
    got = norm.inverse(lr.astype(np.float64))
    diff = np.abs(got - want)
    assert diff.max() <= 1 / 255 + 1e-6
    assert (diff > 1e-4).mean() < 0.01


@pytest.mark.parametrize("s", [2, 4])
@pytest.mark.parametrize("side", [64, 60])
def test_zerofill_inverts_kspace_truncation_of_band_limited_images(s, side):
    """What a scanner's zero-filled interpolation promises: a band-limited slice comes back exactly."""
    g = torch.Generator().manual_seed(s * side)
    h, c = side // s, side // 2
    k = torch.zeros(side, side, dtype=torch.complex128)
    n = 2 * (h // 2) - 1  # inside the kept band, LR Nyquist row excluded
    k[c - h // 2 + 1:c + h // 2, c - h // 2 + 1:c + h // 2] = torch.randn(n, n, dtype=torch.complex128, generator=g)
    img = torch.fft.ifft2(torch.fft.ifftshift(k)).real
    img = img - img.min() + 0.1  # magnitude images are positive: abs() changes nothing
    back = degrade.zerofill_up(degrade.kspace_truncate(img, s), s)
    assert back.shape == img.shape
    assert (back - img).abs().max() < 1e-9
    # and numpy in, numpy out, batch shape kept
    lr = np.random.default_rng(0).random((2, 1, 8, 6))
    assert degrade.zerofill_up(lr, s).shape == (2, 1, 8 * s, 6 * s)


def test_zerofill_keeps_pixel_centres_and_mean():
    """A constant stays constant; a ramp's LR samples land on HR positions i·s + (s−1)/2 in the interior."""
    s = 2
    np.testing.assert_allclose(degrade.zerofill_up(np.full((16, 16), 0.3), s), 0.3, atol=1e-12)
    x = np.arange(64, dtype=np.float64)
    hr = np.tile(np.sin(2 * np.pi * x / 64), (64, 1))  # periodic, band-limited
    lr = np.tile(np.sin(2 * np.pi * (np.arange(32) * s + (s - 1) / 2) / 64), (32, 1))
    np.testing.assert_allclose(degrade.zerofill_up(lr, s), hr, atol=1e-9)


def test_zerofill_base_does_not_wrap_anatomy_at_the_edge_into_the_opposite_edge():
    """A sagittal head slice has the neck at the bottom edge and air at the top: the generators' base must not
    ring the bright bottom into the dark top, as plain (periodic) zero-filling does."""
    lr = np.zeros((32, 32))
    lr[20:, 8:24] = 1.0  # bright anatomy running off the bottom edge
    periodic, mirrored = degrade.zerofill_up(lr, 2), degrade.zerofill_base(lr, 2)
    assert mirrored.shape == periodic.shape == (64, 64)
    assert np.abs(periodic[:4]).max() > 0.2        # the wrap this guards against
    assert np.abs(mirrored[:4]).max() < 0.02
    # where nothing touches the border, mirroring changes little (only far ringing tails differ)
    inner = np.zeros((32, 32))
    inner[10:20, 12:22] = 1.0
    np.testing.assert_allclose(degrade.zerofill_base(inner, 2)[20:40, 24:44], degrade.zerofill_up(inner, 2)[20:40, 24:44],
                               atol=0.02)

import numpy as np
import pytest
import torch

from srgan.errors import InputError
from srgan.inference.engine import Enhancer, interpolate


def test_units_survive_and_shape(tiny_weights):
    e = Enhancer(weights=tiny_weights, scale=2, device="cpu")
    rng = np.random.default_rng(0)
    img = (rng.random((20, 16)) * 3000 + 500).astype(np.float32)
    out = e.enhance(img)
    assert out.shape == (40, 32) and out.dtype == np.float32
    # a near-bicubic tiny model keeps the intensity range of the input (modality units, not [0, 1])
    assert 300 < out.mean() < 3700
    assert abs(out.mean() - img.mean()) < 0.05 * img.mean()


def test_tiling_has_no_seams(tiny_weights):
    whole = Enhancer(weights=tiny_weights, scale=2, device="cpu", tile=512)
    tiled = Enhancer(weights=tiny_weights, scale=2, device="cpu", tile=16, margin=8)
    img = np.random.default_rng(1).random((50, 45)).astype(np.float32)
    a, b = whole.enhance(img), tiled.enhance(img)
    # margin 8 exceeds the tiny model's receptive field radius (3 convs + bicubic): results agree exactly
    assert np.allclose(a, b, atol=1e-5)


def test_tiling_has_no_seams_with_a_global_zerofill_base(tmp_path):
    """The zero-filled base is an FFT of the whole slice: tiles must get it cut from the whole, not their own."""
    from tests.conftest import make_tiny_weights
    w = make_tiny_weights(tmp_path, 2, base="zerofill")
    whole = Enhancer(weights=w, scale=2, device="cpu", tile=512)
    tiled = Enhancer(weights=w, scale=2, device="cpu", tile=16, margin=8)
    img = np.random.default_rng(1).random((50, 45)).astype(np.float32)
    assert np.allclose(whole.enhance(img), tiled.enhance(img), atol=1e-5)


def test_tiling_has_no_seams_with_the_progressive_x4_upsampler(tmp_path):
    """Its convolutions on the 2× grid widen the receptive field beyond the LR trunk's: tiles still agree."""
    from tests.conftest import make_tiny_weights
    w = make_tiny_weights(tmp_path, 4, upsampler="progressive")
    whole = Enhancer(weights=w, scale=4, device="cpu", tile=512)
    tiled = Enhancer(weights=w, scale=4, device="cpu", tile=16, margin=8)
    img = np.random.default_rng(2).random((40, 37)).astype(np.float32)
    a, b = whole.enhance(img), tiled.enhance(img)
    assert a.shape == (160, 148)
    assert np.allclose(a, b, atol=1e-5)


def test_scale_mismatch_and_missing_weights(tiny_weights, tmp_path):
    with pytest.raises(InputError, match="x2"):
        Enhancer(weights=tiny_weights, scale=4, device="cpu")
    with pytest.raises(InputError):
        Enhancer(weights=tmp_path / "none.safetensors", scale=2)


def test_interpolate_keeps_pixel_centres():
    ramp = np.arange(8, dtype=np.float32)[None, :].repeat(4, 0)
    # LR pixel i centred at HR i*2 + 0.5: HR pixel j samples LR coordinate (j - 0.5) / 2 (bilinear is exact on a ramp)
    j = np.arange(2, 14)
    assert np.allclose(interpolate(ramp, 2, "bilinear")[2, j], (j - 0.5) / 2, atol=1e-5)
    for method, s in [("bicubic", 2), ("bicubic", 4), ("lanczos", 4), ("nearest", 4)]:
        delta = np.zeros((1, 9), np.float32)
        delta[0, 4] = 1
        up = interpolate(delta, s, method)[0]
        centroid = (up * np.arange(up.size)).sum() / up.sum()
        assert centroid == pytest.approx(4 * s + (s - 1) / 2, abs=1e-3), method
    assert interpolate(ramp, 4, "nearest").shape == (16, 32)


def test_cancel_and_progress(tiny_weights):
    e = Enhancer(weights=tiny_weights, scale=2, device="cpu", batch=1)
    seen = []
    e.enhance_stack(np.zeros((3, 8, 8), np.float32), progress=lambda d, n: seen.append((d, n)))
    assert seen == [(1, 3), (2, 3), (3, 3)]
    with pytest.raises(InterruptedError):
        e.enhance_stack(np.zeros((3, 8, 8), np.float32), cancel=lambda: True)


def test_device_auto_is_cpu_here():
    from srgan.inference.engine import resolve_device
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert resolve_device("auto").type in ("cpu", "mps")


def test_tiling_has_no_seams_with_the_lr_kind_input(tmp_path):
    """The LR-kind estimate is made on the whole slice and handed to every tile, like the zero-filled base."""
    from tests.conftest import make_tiny_weights
    w = make_tiny_weights(tmp_path, 4, upsampler="progressive", kind_input=True)
    whole = Enhancer(weights=w, scale=4, device="cpu", tile=512)
    tiled = Enhancer(weights=w, scale=4, device="cpu", tile=16, margin=8)
    img = np.random.default_rng(3).random((40, 37)).astype(np.float32)
    assert np.allclose(whole.enhance(img), tiled.enhance(img), atol=1e-5)


def test_a_stack_gets_one_lr_kind_estimate_for_all_its_slices(tmp_path):
    """Slices of one acquisition are enhanced with one pooled estimate, not each with its own: neighbouring
    slices are not sharpened differently, and a slice alone given that estimate comes out the same."""
    from srgan.inference.plan import KIND_SLICES, kind_sample
    from tests.conftest import make_tiny_weights
    e = Enhancer(weights=make_tiny_weights(tmp_path, 4, upsampler="progressive", kind_input=True), scale=4,
                 device="cpu")
    rng = np.random.default_rng(4)
    stack = np.stack([rng.random((20, 18)) * (1 + 3 * k) for k in range(4)]).astype(np.float32)
    stack[2] = np.kron(rng.random((10, 9)), np.ones((2, 2)))  # a slice whose own spectrum says something else
    pooled = e.p_kspace(stack)
    out = e.enhance_stack(stack)
    for k in range(4):
        np.testing.assert_allclose(out[k], e.enhance(stack[k], e.plan(stack[k][None], p_kspace=pooled)), atol=1e-5)
    alone = [e.p_kspace(stack[k:k + 1]) for k in range(4)]
    odd = int(np.argmax([abs(a - pooled) for a in alone]))
    assert abs(alone[odd] - pooled) > 0.2
    assert not np.allclose(out[odd], e.enhance(stack[odd]), atol=1e-4)
    assert list(kind_sample(3)) == [0, 1, 2] and len(kind_sample(500)) == KIND_SLICES
    assert kind_sample(500)[0] == 0 and kind_sample(500)[-1] == 499
    plain = Enhancer(weights=make_tiny_weights(tmp_path / "plain", 4), scale=4, device="cpu")
    assert plain.p_kspace(stack) is None


def test_a_dicom_series_gets_its_estimate_in_every_file_and_the_log_says_what_auto_chose(shared_data, tmp_path):
    """``write_derived_series`` enhances file by file (one slice each here): every call must still get the
    series' plan, the one the viewer shows (``plan_series``), not the file's own."""
    from srgan.inference.files import enhance_path
    from srgan.io.dicom_series import scan
    from tests.conftest import make_tiny_weights

    src = shared_data / "dicom" / "siemens_prisma_t1_sag_hfs"
    e = Enhancer(weights=make_tiny_weights(tmp_path, 2, kind_input=True), device="cpu", threads=1,
                 consistency="auto")
    expected = e.plan_series(scan(src).series[0])
    seen, original = [], e.enhance_stack

    def recording(stack, plan=None, **kw):
        seen.append((len(stack), plan))
        return original(stack, plan, **kw)

    e.enhance_stack = recording
    lines = []
    report = enhance_path(src, tmp_path / "out", e, log=lines.append)
    assert len(report.written) == 35 and {n for n, _ in seen} == {1}
    assert {k for _, k in seen} == {expected}
    assert e.p_kspace(scan(src).series[0].pixels(0, 17)[None]) != pytest.approx(expected.p_kspace, abs=1e-3), \
        "a slice's own estimate differs: the test can tell them apart"
    assert expected.note().startswith(f"P(k-space LR) {expected.p_kspace:.2f}")
    assert any(expected.note() in line for line in lines), lines


def test_a_4d_nifti_gets_the_first_volume_estimate_at_every_time_point(tmp_path):
    import nibabel as nib

    from srgan.inference.files import enhance_nifti_file
    from tests.conftest import make_tiny_weights

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:24, :20]
    smooth = (np.hypot(yy - 12, xx - 10) < 7).astype(np.float32) * 500 + 100
    data = np.stack([np.repeat(smooth[..., None], 6, axis=2),
                     rng.random((24, 20, 6)).astype(np.float32) * 600], axis=3)
    src = tmp_path / "v.nii.gz"
    nib.save(nib.Nifti1Image(data, np.diag([1.0, 1.0, 3.0, 1.0])), src)
    e = Enhancer(weights=make_tiny_weights(tmp_path, 2, kind_input=True), device="cpu", threads=1)
    seen, original = [], e.enhance_stack

    def recording(stack, plan=None, **kw):
        seen.append(plan)
        return original(stack, plan, **kw)

    e.enhance_stack = recording
    out, plan = enhance_nifti_file(src, tmp_path / "out", e, axis=None)
    assert nib.load(out).shape == (48, 40, 6, 2)
    first = e.plan(np.ascontiguousarray(np.transpose(data[..., 0], (2, 0, 1))))
    assert seen == [first] * 2
    assert plan == first
    second = e.p_kspace(np.ascontiguousarray(np.transpose(data[..., 1], (2, 0, 1))))
    assert second != pytest.approx(first.p_kspace, abs=1e-3)


def test_zerofill_interpolation_is_the_reviewers_and_beats_bicubic_on_kspace_lr(shared_data):
    """On a real slice degraded by k-space truncation, ``interpolate(..., "zerofill")`` is contract_check.py's
    ``zerofill_up`` (same pixel-centre convention, whole-slice FFT) and is closer to HR than bicubic."""
    import importlib.util

    from PIL import Image

    from srgan import degrade

    tool = shared_data.parent / "tools" / "contract_check.py"
    if not tool.is_file():
        pytest.skip(f"{tool} not found")
    spec = importlib.util.spec_from_file_location("contract_check", tool)
    cc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cc)
    jpg = sorted((shared_data / "kaggle-brain-tumor-mri" / "glioma").glob("*.jpg"))[0]
    hr = np.asarray(Image.open(jpg).convert("L"), np.float64) / 255.0
    for s in (2, 4):
        h = hr[: hr.shape[0] // s * s, : hr.shape[1] // s * s]
        lr = cc.degrade(h, s, "kspace")  # the reviewers' LR, which the project's degradation reproduces
        np.testing.assert_allclose(np.clip(degrade.kspace_truncate(h, s), 0, 1), lr, atol=1e-6)
        zf = interpolate(lr, s, "zerofill")
        assert zf.shape == h.shape and zf.dtype == np.float32
        np.testing.assert_allclose(zf, cc.zerofill_up(lr, s), atol=1e-6)
        bi = interpolate(lr, s, "bicubic")
        mse_bi, mse_zf = (float(np.mean((np.clip(x, 0, 1) - h) ** 2)) for x in (bi, zf))
        assert 10 * np.log10(mse_bi / mse_zf) > 0.3  # zero-fill ahead of bicubic by > 0.3 dB

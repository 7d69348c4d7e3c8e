import numpy as np
import pytest
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio as psnr

from srgan.inference.consistency import degrade, project, relative_residual
from srgan.inference.engine import Enhancer, interpolate


@pytest.fixture(scope="module")
def hr(shared_data):
    path = sorted((shared_data / "kaggle-brain-tumor-mri" / "meningioma").glob("*.jpg"))[0]
    a = np.asarray(Image.open(path).convert("L"), np.float64)[:256, :256] / 255
    return a


@pytest.mark.parametrize("scale", [2, 4])
@pytest.mark.parametrize("kind", ["bicubic", "kspace"])
def test_projection_reaches_consistency_and_helps_with_the_right_model(hr, scale, kind):
    lr = degrade(hr, scale, kind)
    bi = interpolate(lr.astype(np.float32), scale)
    p = project(bi, lr, scale, kind)
    assert relative_residual(bi, lr, scale, kind) > 1e-2
    assert relative_residual(p, lr, scale, kind) <= 1e-4
    assert psnr(hr, np.clip(p, 0, 1), data_range=1) > psnr(hr, np.clip(bi, 0, 1), data_range=1)


def test_wrong_model_hurts_a_perfect_image(hr):
    lr = degrade(hr, 2, "kspace")
    projected = project(hr.astype(np.float32), lr, 2, "bicubic")
    assert psnr(hr, np.clip(projected, 0, 1), data_range=1) < 60  # a perfect image is pulled away from the truth
    assert relative_residual(hr, lr, 2, "kspace") < 1e-6


def test_off_is_identity_and_shapes_checked(hr):
    x = hr.astype(np.float32)
    assert np.array_equal(project(x, x[::2, ::2], 2, "off"), x)
    with pytest.raises(ValueError):
        project(x, x[::3, ::3], 2, "bicubic")


def test_enhancer_applies_projection_in_modality_units(tiny_weights):
    e = Enhancer(weights=tiny_weights, scale=2, device="cpu", consistency="bicubic")
    assert e.provenance.consistency == "bicubic"
    lr = (np.random.default_rng(0).random((24, 20)) * 1000 + 200).astype(np.float32)
    sr = e.enhance(lr)
    assert relative_residual(sr, lr, 2, "bicubic") <= 1e-3


def _centred_band(shape, scale):
    """Reference for the operators: the HR spectrum centred (fftshift), the LR band its central h × w block,
    the half-pixel phase ramp of ``kspace_truncate`` at the HR frequencies."""
    (H, W), (h, w) = shape, (shape[0] // scale, shape[1] // scale)
    d = (scale - 1) / 2
    ramp = np.fft.fftshift(np.exp(2j * np.pi * d * np.add.outer(np.fft.fftfreq(H), np.fft.fftfreq(W))))
    block = np.s_[..., H // 2 - h // 2 : H // 2 - h // 2 + h, W // 2 - w // 2 : W // 2 - w // 2 + w]
    return ramp, block


def _reference_down(x, scale):
    ramp, block = _centred_band(x.shape[-2:], scale)
    k = (np.fft.fftshift(np.fft.fft2(x), axes=(-2, -1)) * ramp)[block]
    return np.fft.ifft2(np.fft.ifftshift(k, axes=(-2, -1))) / scale**2


def _reference_lift(r, scale, shape):
    ramp, block = _centred_band(shape, scale)
    big = np.zeros((*r.shape[:-2], *shape), dtype=complex)
    big[block] = np.fft.fftshift(np.fft.fft2(r), axes=(-2, -1)) * scale**2
    return np.fft.ifft2(np.fft.ifftshift(big / ramp, axes=(-2, -1)))


@pytest.mark.parametrize("shape, scale", [((64, 48), 4), ((30, 42), 2), ((40, 40), 4), ((36, 60), 4)])
def test_kspace_operator_matches_the_degradation_and_its_lift_is_a_right_inverse(shape, scale):
    """The FFT operators of the projection and the residual test against a plain centred-spectrum reference:
    truncation equals ``kspace_truncate`` (odd and even LR sides, batched or not); the lift is the real part of
    the zero-padding right inverse."""
    import torch

    from srgan.degrade import kspace_truncate
    from srgan.inference.consistency import _kspace_complex, _kspace_lift
    rng = np.random.default_rng(1)
    x = rng.random((3, *shape))
    down = _kspace_complex(torch.from_numpy(x), scale).numpy()
    np.testing.assert_allclose(down, _reference_down(x, scale), atol=1e-9)
    np.testing.assert_allclose(np.abs(down), np.stack([kspace_truncate(a, scale) for a in x]), atol=1e-9)
    np.testing.assert_allclose(_kspace_complex(torch.from_numpy(x[1]), scale).numpy(), down[1], atol=1e-12)
    r = rng.standard_normal((3, shape[0] // scale, shape[1] // scale, 2)) @ np.array([1, 1j])
    reference = _reference_lift(r, scale, shape)
    np.testing.assert_allclose(_reference_down(reference, scale), r, atol=1e-9)  # a right inverse
    lifted = _kspace_lift(torch.from_numpy(r), scale, shape)
    assert lifted.dtype == torch.float64
    np.testing.assert_allclose(lifted.numpy(), reference.real, atol=1e-9)


def test_a_batch_is_projected_row_by_row(hr):
    lrs = np.stack([degrade(hr, 4, "kspace"), degrade(hr[::-1].copy(), 4, "kspace")])
    srs = np.stack([interpolate(lr.astype(np.float32), 4) for lr in lrs])
    for kind, steps in (("bicubic", None), ("kspace", 1), ("kspace", None)):
        batch = project(srs, lrs, 4, kind, steps=steps)
        for k in range(2):
            np.testing.assert_allclose(batch[k], project(srs[k], lrs[k], 4, kind, steps=steps), atol=1e-6)


@pytest.mark.parametrize("scale", [2, 4])
def test_single_precision_steps_are_the_first_updates_of_the_iteration(hr, scale):
    lr = degrade(hr, scale, "kspace")
    bi = interpolate(lr.astype(np.float32), scale)
    one = project(bi, lr, scale, "kspace", steps=1)
    assert one.dtype == np.float32
    np.testing.assert_allclose(one, project(bi, lr, scale, "kspace", max_iter=2), atol=1e-5)
    assert relative_residual(one, lr, scale, "kspace") < relative_residual(bi, lr, scale, "kspace") / 3


@pytest.mark.parametrize("choice, p, ratio, applied, model_p", [
    ("auto", None, None, "off", None),
    ("auto", 0.95, None, "kspace", 0.95), ("auto", 0.8, None, "kspace", 0.8),    # the detector alone
    ("auto", 0.6, -0.5, "kspace", 0.6), ("auto", 0.0, 0.4, "kspace", 1.0),       # the test; re-run told k-space
    ("auto", 0.3, 0.9, "off", 0.3), ("auto", 0.0, 1.6, "bicubic", 0.0), ("auto", 0.7, 1.2, "bicubic", 0.0),
    ("kspace", 0.0, None, "kspace", 0.0), ("off", 1.0, None, "off", 1.0), ("bicubic", None, None, "bicubic", None),
])
def test_decide_auto_from_the_detector_then_the_residual_test(choice, p, ratio, applied, model_p):
    from srgan.inference.plan import decide, needs_test
    assert needs_test(choice, p) == (ratio is not None)
    c = decide(choice, p, 4, ratio)
    assert (c.projection, c.model_p, c.log_ratio, c.requested) == (applied, model_p, ratio, choice)
    assert c.steps == (1 if applied == "kspace" else None)  # one rule, however the projection was asked for


def test_unknown_choice_is_rejected_and_auto_asks_for_its_test():
    from srgan.inference.plan import decide
    with pytest.raises(ValueError, match="magic"):
        decide("magic", 0.5, 4)
    with pytest.raises(ValueError, match="residual test"):
        decide("auto", 0.5, 4)


@pytest.mark.parametrize("scale", [2, 4])
def test_residual_test_tells_which_degradation_made_the_lr(hr, scale):
    """On the true image the k-space residual vanishes for k-space LR and the bicubic one for bicubic LR; the
    torch single-precision ratio agrees with the float64 residuals."""
    from srgan.inference.consistency import residual_log_ratio
    for kind, sign in (("kspace", -1), ("bicubic", 1)):
        lr = degrade(hr, scale, kind)
        r = residual_log_ratio(hr, lr, scale)
        assert sign * r > 2
        # rounded LR, as stored: the ratio is finite and agrees with the float64 residuals
        lr8 = np.round(lr * 255) / 255
        blurred = interpolate(lr8.astype(np.float32), scale)
        expected = np.log(relative_residual(blurred, lr8, scale, "kspace")
                          / relative_residual(blurred, lr8, scale, "bicubic"))
        assert residual_log_ratio(blurred, lr8, scale) == pytest.approx(expected, abs=1e-3)
    with pytest.raises(ValueError, match="not LR shape"):
        residual_log_ratio(hr, hr[::3, ::3], scale)


def test_auto_overrules_a_detector_that_takes_kspace_lr_for_smooth(hr):
    """The bundled ×4 model told "smooth" (P = 0) about a k-space LR slice: its output is still reproduced
    better by k-space truncation, so auto re-runs it told "k-space" and projects in k-space; the stack's slices
    get exactly what that choice gives (the test's own outputs reused)."""
    from srgan.inference.consistency import project as proj
    from srgan.inference.plan import Plan
    auto = Enhancer(scale=4, device="cpu", consistency="auto")
    off = Enhancer(scale=4, device="cpu", consistency="off")
    lr = (degrade(hr, 4, "kspace") * 1000 + 200).astype(np.float32)
    plan = auto.plan(lr[None], p_kspace=0.0)
    assert plan.projection == "kspace" and plan.model_p == 1.0 and plan.log_ratio < 0.7
    assert plan.outputs == {}  # made told "smooth": not what the slice is enhanced with
    expected = proj(off.enhance(lr, Plan(4, "off", 0.0, 1.0)), lr, 4, "kspace", steps=1)
    np.testing.assert_allclose(auto.enhance(lr, plan), expected, rtol=0, atol=1e-3)
    assert "residual test" in plan.note() and "residual test" in " ".join(plan.lines())
    # and a bicubic LR slice of the same image, told "smooth", is left as the detector said
    lr = (degrade(hr, 4, "bicubic") * 1000 + 200).astype(np.float32)
    c = auto.plan(lr[None], p_kspace=0.0)
    assert c.projection == "bicubic" and c.model_p == 0.0 and set(c.outputs) == {0}
    np.testing.assert_allclose(auto.enhance(lr, c, key=0), auto.enhance(lr, c), rtol=0, atol=1e-5)


def test_enhancer_auto_projects_as_the_estimate_says(tmp_path, hr):
    from tests.conftest import make_tiny_weights
    w = make_tiny_weights(tmp_path, 2, kind_input=True)
    auto = Enhancer(weights=w, scale=2, device="cpu", consistency="auto")
    off = Enhancer(weights=w, scale=2, device="cpu", consistency="off")
    assert auto.provenance.consistency.startswith("auto (k-space if")
    lr = (degrade(hr, 2, "kspace") * 1000 + 200).astype(np.float32)
    before = relative_residual(off.enhance(lr, off.plan(lr[None], p_kspace=0.95)), lr, 2, "kspace")
    # a k-space plan makes one update (``KSPACE_STEPS``): most of the way on a real slice
    assert relative_residual(auto.enhance(lr, auto.plan(lr[None], p_kspace=0.95)), lr, 2, "kspace") <= before / 5
    plan = auto.plan(lr[None])
    assert plan.projection in ("off", "bicubic", "kspace") and plan.p_kspace == auto.p_kspace(lr[None])


def test_auto_is_off_for_a_model_without_the_lr_kind_input(tiny_weights):
    auto = Enhancer(weights=tiny_weights, scale=2, device="cpu", consistency="auto")
    off = Enhancer(weights=tiny_weights, scale=2, device="cpu", consistency="off")
    lr = (np.random.default_rng(0).random((24, 20)) * 1000 + 200).astype(np.float32)
    assert auto.p_kspace(lr[None]) is None and auto.plan(lr[None]).projection == "off"
    np.testing.assert_array_equal(auto.enhance(lr), off.enhance(lr))


def test_auto_consistency_benchmark_separates_the_kinds_on_training_slices(shared_data, tmp_path, capsys):
    """``benchmarks/auto_consistency.py`` (where the thresholds come from) on 3 training slices of the bundled ×4:
    bicubic LR gives r above the k-space threshold band, k-space LR below, and the rule's gains are reported."""
    import importlib.util
    import json
    from pathlib import Path

    from srgan.inference.plan import RATIO_BICUBIC, RATIO_KSPACE
    from srgan.models.weights import bundled_weights
    path = Path(__file__).resolve().parents[3] / "benchmarks" / "auto_consistency.py"
    spec = importlib.util.spec_from_file_location("auto_consistency", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "rows.json"
    assert module.main(["--weights", str(bundled_weights(4)), "--scale", "4", "--n", "3", "--threads", "1",
                        "--data", str(shared_data / "kaggle-brain-tumor-mri"), "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert len(rows) == 6
    assert all(r["detector"]["r"] >= RATIO_BICUBIC[4] for r in rows if r["kind"] == "bicubic")
    assert all(r["detector"]["r"] <= RATIO_KSPACE[4] for r in rows if r["kind"] == "kspace")
    text = capsys.readouterr().out
    assert "| now: detector, then residual test |" in text and "command: python benchmarks/auto_consistency.py" in text


def test_the_plan_says_when_the_scanner_had_zero_filled_the_input(tiny_weights):
    """``Plan.scanner_interpolated`` from the planned slices' energy beyond half Nyquist: a real slice is acquired,
    the same slice zero-filled ×2 is not, a blank stack has no spectrum to judge; the viewer's lines say it."""
    from srgan.degrade import ZIP_OUTER_ENERGY, zerofill_up
    from srgan.inference.engine import Enhancer
    from srgan.io.dicom_series import scan

    from tests.conftest import SHARED_DATA

    series = scan(SHARED_DATA / "dicom" / "siemens_prisma_t1_sag_hfs").series[0]
    real = np.stack([series.pixels(0, k) for k in (16, 17, 18)]).astype(np.float32)
    zip2 = np.stack([zerofill_up(s[::2, ::2], 2) for s in real]).astype(np.float32)
    enhancer = Enhancer(weights=tiny_weights, scale=2, device="cpu", consistency="off")
    acquired, interpolated = enhancer.plan(real), enhancer.plan(zip2)
    assert acquired.outer_energy > 10 * ZIP_OUTER_ENERGY and not acquired.scanner_interpolated
    assert interpolated.outer_energy < ZIP_OUTER_ENERGY and interpolated.scanner_interpolated
    assert "input already interpolated by the scanner (ZIP)" in interpolated.lines()
    assert not any("scanner" in line for line in acquired.lines()) and acquired.interpolation_warning() == ""
    blank = enhancer.plan(np.zeros((3, 32, 32), np.float32))
    assert blank.outer_energy is None and not blank.scanner_interpolated
    each = enhancer.plan_images([real[0], zip2[0]])
    assert [p.scanner_interpolated for p in each] == [False, True]

import numpy as np
import pytest
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio as psnr

from srgan.consistency import degrade, project, relative_residual
from srgan.enhance import Enhancer, interpolate


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


@pytest.mark.parametrize("shape, scale", [((64, 48), 4), ((30, 42), 2), ((40, 40), 4)])
def test_kspace_operator_matches_the_degradation_and_its_lift_is_a_right_inverse(shape, scale):
    import torch

    from srgan.consistency import _kspace_complex, _kspace_matrices
    from srgan.degrade import kspace_truncate
    rng = np.random.default_rng(1)
    x = rng.random(shape)
    np.testing.assert_allclose(_kspace_complex(torch.from_numpy(x), scale).abs().numpy(), kspace_truncate(x, scale),
                               atol=1e-9)
    (dr, ur), (dc, uc) = _kspace_matrices(shape[0], scale), _kspace_matrices(shape[1], scale)
    r = rng.standard_normal((shape[0] // scale, shape[1] // scale, 2)) @ np.array([1, 1j])
    np.testing.assert_allclose(dr @ (ur @ r @ uc.T) @ dc.T, r, atol=1e-9)


@pytest.mark.parametrize("scale", [2, 4])
def test_single_precision_steps_are_the_first_updates_of_the_iteration(hr, scale):
    lr = degrade(hr, scale, "kspace")
    bi = interpolate(lr.astype(np.float32), scale)
    one = project(bi, lr, scale, "kspace", steps=1)
    assert one.dtype == np.float32
    np.testing.assert_allclose(one, project(bi, lr, scale, "kspace", max_iter=2), atol=1e-5)
    assert relative_residual(one, lr, scale, "kspace") < relative_residual(bi, lr, scale, "kspace") / 3


@pytest.mark.parametrize("choice, p, expected", [
    ("auto", None, "off"), ("auto", 0.95, "kspace"), ("auto", 0.8, "kspace"), ("auto", 0.5, "off"),
    ("auto", 0.02, "bicubic"), ("auto", 0.05, "off"), ("auto", 0.0, "bicubic"), ("kspace", 0.0, "kspace"), ("off", 1.0, "off"),
    ("bicubic", None, "bicubic"),
])
def test_auto_resolves_from_the_lr_kind_estimate(choice, p, expected):
    from srgan.consistency import resolve
    assert resolve(choice, p) == expected


def test_unknown_choice_is_rejected():
    from srgan.consistency import resolve
    with pytest.raises(ValueError, match="magic"):
        resolve("magic", 0.5)


def test_enhancer_auto_projects_as_the_estimate_says(tmp_path, hr):
    from tests.conftest import make_tiny_weights
    w = make_tiny_weights(tmp_path, 2, kind_input=True)
    auto = Enhancer(weights=w, scale=2, device="cpu", consistency="auto")
    off = Enhancer(weights=w, scale=2, device="cpu", consistency="off")
    assert auto.provenance.consistency.startswith("auto (k-space if")
    for kind, p in (("kspace", 0.95), ("bicubic", 0.01)):
        lr = (degrade(hr, 2, kind) * 1000 + 200).astype(np.float32)
        before = relative_residual(off.enhance(lr, kind=p), lr, 2, kind)
        # auto makes one k-space update (``AUTO_STEPS``): most of the way on a real slice
        assert relative_residual(auto.enhance(lr, kind=p), lr, 2, kind) <= before / 5
    np.testing.assert_array_equal(auto.enhance(lr, kind=0.5), off.enhance(lr, kind=0.5))
    assert auto.consistency_for(auto.kind_of(lr[None])) in ("off", "bicubic", "kspace")


def test_auto_is_off_for_a_model_without_the_lr_kind_input(tiny_weights):
    auto = Enhancer(weights=tiny_weights, scale=2, device="cpu", consistency="auto")
    off = Enhancer(weights=tiny_weights, scale=2, device="cpu", consistency="off")
    lr = (np.random.default_rng(0).random((24, 20)) * 1000 + 200).astype(np.float32)
    assert auto.kind_of(lr[None]) is None and auto.consistency_for(None) == "off"
    np.testing.assert_array_equal(auto.enhance(lr), off.enhance(lr))

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

"""The flip/rotation spread (srgan.inference.tta): zero for an equivariant function, positive for a model that is
not, on a real slice; the eight views are distinct and undone by their inverse."""
from __future__ import annotations

import numpy as np
import pytest

from srgan.inference.engine import Enhancer, interpolate
from srgan.inference.tta import TTA_VIEWS, dihedral, tta_spread
from srgan.io.images import load_image


def _slice(shared_data) -> np.ndarray:
    img = load_image(shared_data / "kaggle-brain-tumor-mri" / "notumor" / "Tr-no_0425.jpg").data
    return np.asarray(img, np.float32)[:40, :56]  # not square: quarter turns swap the axes


def test_views_are_distinct_and_undone(shared_data):
    a = _slice(shared_data)
    views = [dihedral(a, k) for k in range(TTA_VIEWS)]
    assert len({v.tobytes() + bytes(v.shape) for v in views}) == 8
    for k, v in enumerate(views):
        np.testing.assert_array_equal(dihedral(v, k, inverse=True), a)
    with pytest.raises(ValueError):
        dihedral(a, TTA_VIEWS)


def test_spread_is_zero_for_interpolation_and_positive_for_a_model(shared_data, tiny_weights):
    a = _slice(shared_data)
    nearest = tta_spread(lambda x: np.repeat(np.repeat(x, 2, axis=0), 2, axis=1), a)
    assert nearest.shape == (80, 112) and nearest.dtype == np.float32 and np.all(nearest == 0)
    bicubic = tta_spread(lambda x: interpolate(x, 2), a)  # symmetric kernel: equivariant up to rounding
    assert float(bicubic.max()) < 1e-3 * float(a.std())
    model = tta_spread(Enhancer(scale=2, weights=tiny_weights, device="cpu", consistency="off").enhance, a)
    assert model.shape == (80, 112) and float(model.mean()) > 10 * float(bicubic.mean())
    with pytest.raises(ValueError):
        tta_spread(interpolate, np.zeros((2, 4, 4), np.float32))

"""The benchmark's methods: a card's ``auto`` row is what the engine makes of the stack (its plan, its outputs),
reusing the raw output the model's other rows share; baselines are the engine's interpolations."""
from __future__ import annotations

import numpy as np
import pytest

from srgan.degrade import kspace_truncate
from srgan.evaluation.methods import BenchMethod, Book, CachedModel, baseline_raw, variant_name
from srgan.inference.engine import Enhancer, interpolate
from srgan.io.images import load_image
from tests.conftest import make_tiny_weights


def _kaggle_lrs(shared_data) -> np.ndarray:
    """Two 96×96 HR windows of a real Kaggle slice, k-space truncated to 48×48."""
    hr = load_image(shared_data / "kaggle-brain-tumor-mri" / "notumor" / "Tr-no_0425.jpg").data.astype(np.float64)
    h, w = hr.shape
    crops = [hr[h // 2 - 96:h // 2, w // 2 - 48:w // 2 + 48], hr[h // 2:h // 2 + 96, w // 2 - 48:w // 2 + 48]]
    return np.stack([kspace_truncate(c, 2) for c in crops]).astype(np.float32)


def test_auto_row_is_the_engines_plan_and_output(shared_data, tmp_path, monkeypatch):
    w = make_tiny_weights(tmp_path, 2, kind_input=True)
    lrs = _kaggle_lrs(shared_data)
    expected = Enhancer(scale=2, weights=w, device="cpu", consistency="auto").enhance_stack(lrs)
    off = Enhancer(scale=2, weights=w, device="cpu", consistency="off")
    plans, generated = [], []
    plan, raw = off.plan, off._raw

    def spy_plan(images, **kw):
        plans.append((kw.get("consistency"), plan(images, **kw)))
        return plans[-1][1]

    def spy_raw(stack, picks, norms, model_p):
        generated.extend(picks)
        return raw(stack, picks, norms, model_p)

    monkeypatch.setattr(off, "plan", spy_plan)
    monkeypatch.setattr(off, "_raw", spy_raw)
    book = Book()
    book.start(True)
    method = BenchMethod("m", CachedModel(off), 2, book, projection="auto")
    out = method.stack(lrs)
    np.testing.assert_allclose(out, expected, atol=1e-4)
    auto = [p for c, p in plans if c == "auto"]
    assert len(auto) == 1, "the row asks the engine for its auto plan once per stack"
    np.testing.assert_array_equal(book.outputs["m"], out)
    if auto[0].projection != "off":
        assert len(book.residuals["m"]) == len(lrs)
    else:
        assert "m" not in book.residuals
    if auto[0].model_p == auto[0].p_kspace:  # nothing beyond the shared raw output and the plan's own test
        assert len(generated) <= len(lrs) + len(auto[0].outputs)


def test_projection_rows_share_one_raw_output(shared_data, tmp_path, monkeypatch):
    w = make_tiny_weights(tmp_path, 2, kind_input=True)
    lrs = _kaggle_lrs(shared_data)
    off = Enhancer(scale=2, weights=w, device="cpu", consistency="off")
    calls = []
    stack = off.enhance_stack
    monkeypatch.setattr(off, "enhance_stack", lambda *a, **k: calls.append(1) or stack(*a, **k))
    cached, book = CachedModel(off), Book()
    rows = {p: BenchMethod(variant_name("m", p), cached, 2, book, projection=p).stack(lrs)
            for p in ("off", "bicubic", "kspace")}
    assert len(calls) == 1
    np.testing.assert_array_equal(rows["off"], stack(lrs))
    assert not np.allclose(rows["bicubic"], rows["off"]) and not np.allclose(rows["kspace"], rows["off"])
    assert set(book.residuals) == {variant_name("m", "bicubic"), variant_name("m", "kspace")}
    assert max(book.residuals[variant_name("m", "bicubic")]) <= 1e-3


def test_baselines_are_the_engines_interpolations_and_auto_needs_a_model(shared_data):
    lrs = _kaggle_lrs(shared_data)
    got = BenchMethod("lanczos", baseline_raw("lanczos", 2), 2, Book()).stack(lrs)
    np.testing.assert_array_equal(got[1], interpolate(lrs[1], 2, "lanczos"))
    with pytest.raises(ValueError, match="auto"):
        BenchMethod("bicubic", baseline_raw("bicubic", 2), 2, Book(), projection="auto")

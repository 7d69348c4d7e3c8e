"""Trustworthy enhancement in the viewer: the data-consistency choice (menu, cache key, label, export, CLI) and
the model-disagreement overlay (spread over the 8 flips/rotations of the slice)."""
import numpy as np
import pydicom
import pytest
from PySide6 import QtWidgets

from srgan.inference.consistency import relative_residual
from srgan.inference.engine import interpolate
from viewer import app as viewer_app
from srgan.inference.tta import dihedral, tta_spread
from viewer.main_window import DISAGREEMENT_LABEL, MainWindow
from viewer.workers import EnhanceConfig, EnhanceWorker


def _nearest_x2(a):
    return np.repeat(np.repeat(a, 2, axis=0), 2, axis=1)


def test_dihedral_views_are_undone_by_their_inverse():
    a = np.arange(15, dtype=np.float32).reshape(3, 5)
    views = [dihedral(a, k) for k in range(8)]
    assert len({v.tobytes() + bytes(v.shape) for v in views}) == 8, "eight distinct views"
    for k, v in enumerate(views):
        np.testing.assert_array_equal(dihedral(v, k, inverse=True), a)
    with pytest.raises(ValueError):
        dihedral(a, 8)


def test_tta_spread_is_zero_for_an_equivariant_function():
    rng = np.random.default_rng(0)
    image = rng.normal(100, 30, (12, 20)).astype(np.float32)  # not square: quarter turns swap the axes
    spread = tta_spread(_nearest_x2, image)
    assert spread.shape == (24, 40) and spread.dtype == np.float32
    assert np.all(spread == 0)
    bicubic = tta_spread(lambda a: interpolate(a, 2), image)  # symmetric kernel: equivariant up to rounding
    assert float(bicubic.max()) < 1e-3 * float(image.std())


def test_tta_spread_is_positive_for_a_non_equivariant_function():
    rng = np.random.default_rng(1)
    image = rng.normal(100, 30, (16, 16)).astype(np.float32)
    spread = tta_spread(lambda a: _nearest_x2(a) + np.arange(2 * a.shape[1], dtype=np.float32), image)
    assert spread.shape == (32, 32) and float(spread.min()) > 0 and float(spread.mean()) > 5.0, \
        "a left-to-right ramp is not flip-invariant"
    shifted = tta_spread(lambda a: np.roll(_nearest_x2(a), 1, axis=1), image)
    assert float(shifted.mean()) > 1.0
    with pytest.raises(ValueError):
        tta_spread(_nearest_x2, np.zeros((2, 4, 4)))


def test_worker_computes_the_spread_of_one_slice(qtbot, hfs_series, tiny_weights):
    worker = EnhanceWorker(EnhanceConfig(weights=str(tiny_weights), device="cpu", consistency="off"), threads=1)
    worker.start()
    try:
        with qtbot.waitSignal(worker.spread_ready, timeout=120_000) as blocker:
            assert worker.request_spread(hfs_series, 0, 17)
        key, spread = blocker.args
        assert key == worker.key(hfs_series, 0, 17) and key[-1] == "off"
        assert spread.shape == (512, 512) and float(spread.max()) > 0
        assert worker.cached_spread(hfs_series, 0, 17) is spread
        assert worker.request_spread(hfs_series, 0, 17) is False, "cached: nothing queued"
        assert worker.cached(hfs_series, 0, 17) is None, "the spread alone does not enhance the slice"
    finally:
        worker.stop()


def _window(qtbot, weights, consistency=None) -> MainWindow:
    w = MainWindow(EnhanceConfig(weights=str(weights), device="cpu", consistency=consistency), enhance=True,
                   show_dialogs=False)
    qtbot.addWidget(w)
    w.resize(1300, 820)
    w.show()
    qtbot.waitExposed(w)
    return w


def _open_enhanced(qtbot, w, folder):
    with qtbot.waitSignal(w.series_shown, timeout=30_000):
        w.open_folder(folder)
    qtbot.waitUntil(lambda: w.current_images()["enhanced"] is not None, timeout=120_000)
    qtbot.waitUntil(w.is_settled, timeout=30_000)


def _choose(w, kind):
    next(a for a in w.consistency_group.actions() if a.data() == kind).trigger()


def test_consistency_menu_re_enhances_labels_and_exports(qtbot, tiny_weights, hfs_folder, tmp_path, monkeypatch):
    w = _window(qtbot, tiny_weights)
    try:
        _open_enhanced(qtbot, w, hfs_folder)
        assert [a.data() for a in w.consistency_group.actions() if a.isChecked()] == [None]
        assert "data consistency: off" in w.right.corner_text("top_right"), "tiny card names none: off"
        original = w.current_images()["original"]
        plain = w.current_images()["enhanced"]
        assert relative_residual(plain, original, 2, "bicubic") > 1e-2, "the raw model output is not consistent"

        _choose(w, "bicubic")
        assert w.worker.config.consistency == "bicubic"
        assert [a.data() for a in w.consistency_group.actions() if a.isChecked()] == ["bicubic"]
        assert w.current_images()["enhanced"] is None, "the previous setting's output is not shown for the new one"
        assert "AI enhancing…" in w.right.corner_text("top_right")
        qtbot.waitUntil(lambda: w.current_images()["enhanced"] is not None, timeout=120_000)
        sr = w.current_images()["enhanced"]
        assert w.worker.key(w.series, 0, w.state.slice)[-1] == "bicubic" and sr.shape == (512, 512)
        assert relative_residual(sr, original, 2, "bicubic") <= 1e-3
        qtbot.waitUntil(w.is_settled, timeout=30_000)
        np.testing.assert_array_equal(w.right.image.image, sr)
        label = w.right.corner_text("top_right")
        assert "data consistency: bicubic" in label and label.splitlines()[-1] == "not for primary diagnosis"
        assert "consistency bicubic" in w.model_info["provenance"]

        _choose(w, "kspace")
        qtbot.waitUntil(lambda: w.current_images()["enhanced"] is not None, timeout=120_000)
        qtbot.waitUntil(w.is_settled, timeout=30_000)
        ks = w.current_images()["enhanced"]
        assert relative_residual(ks, original, 2, "kspace") <= 1e-3
        assert "data consistency: k-space" in w.right.corner_text("top_right")

        _choose(w, "bicubic")  # back: the bicubic result is still cached and shown at once
        np.testing.assert_array_equal(w.current_images()["enhanced"], sr)
        w.cancel_enhancement()
        qtbot.waitUntil(lambda: not w.worker.busy, timeout=120_000)
        # the export uses the worker's Enhancer when it is built for this choice, else builds one with it
        monkeypatch.setattr(QtWidgets.QFileDialog, "getExistingDirectory", lambda *a, **k: str(tmp_path))
        w.act_export_series.trigger()
        with qtbot.waitSignal(w._export_session.done, timeout=180_000) as blocker:
            pass
        report = blocker.args[0]
        ds = pydicom.dcmread(report.files[0], stop_before_pixels=True)
        assert "consistency bicubic" in ds.DerivationDescription
    finally:
        w.shutdown()


def test_disagreement_overlay_follows_the_worker(qtbot, tiny_weights, hfs_folder):
    w = _window(qtbot, tiny_weights, consistency="bicubic")
    try:
        _open_enhanced(qtbot, w, hfs_folder)
        w.state.set_difference(True)
        assert w.difference_overlay.isVisible()
        assert not w.disagreement_overlay.isVisible()
        with qtbot.waitSignal(w.worker.spread_ready, timeout=120_000) as blocker:
            w.act_disagreement.trigger()
            assert w.disagreement and not w.state.difference, "one overlay at a time"
            assert not w.difference_overlay.isVisible()
            assert "computing…" in w.right.corner_text("top_left")
        key, spread = blocker.args
        assert key == w.worker.key(w.series, 0, w.state.slice) and key[-1] == "bicubic"
        assert w.disagreement_overlay.isVisible()
        data = w.disagreement_overlay.difference()
        assert data.shape == (512, 512) and float(data.max()) > 0
        np.testing.assert_array_equal(data, spread)
        text = w.right.corner_text("top_left")
        assert DISAGREEMENT_LABEL in text and "computing" not in text
        assert "data consistency: bicubic" in w.right.corner_text("top_right")

        toolbar = w.findChild(QtWidgets.QToolBar)
        assert toolbar.widgetForAction(w.act_disagreement).text() == "Disagreement", "short name survives the toggle"
        w.opacity_control.set_opacity(0.3)  # the shared slider drives it
        assert w.disagreement_overlay.opacity_value() == pytest.approx(0.3)

        w.state.step_slice(1)  # a new slice: hidden and "computing…" until its own spread arrives
        assert not w.disagreement_overlay.isVisible()
        assert "computing…" in w.right.corner_text("top_left") or "waiting" in w.right.corner_text("top_left")
        qtbot.waitUntil(lambda: w.current_spread() is not None and w.disagreement_overlay.isVisible(),
                        timeout=120_000)
        assert not np.array_equal(w.disagreement_overlay.difference(), spread)

        w.act_difference.trigger()  # the difference overlay takes over
        assert w.state.difference and not w.disagreement and not w.act_disagreement.isChecked()
        assert not w.disagreement_overlay.isVisible()
        assert DISAGREEMENT_LABEL not in w.right.corner_text("top_left")
    finally:
        w.shutdown()


def test_auto_consistency_shows_the_lr_kind_estimate_and_what_it_chose(qtbot, hfs_folder, tmp_path):
    """With an LR-kind model the enhanced pane says what the model took the series for and, under "auto",
    which projection that chose: the same ``Enhancer.plan_series`` as ``srgan enhance`` and the export."""
    from tests.conftest import make_tiny_weights
    weights = make_tiny_weights(tmp_path, 2, kind_input=True)
    w = _window(qtbot, weights, consistency="auto")
    try:
        assert [a.data() for a in w.consistency_group.actions() if a.isChecked()] == ["auto"]
        _open_enhanced(qtbot, w, hfs_folder)
        shown = w.plans[w.worker.key(w.series, 0, -1)]
        assert 0.0 <= shown.p_kspace <= 1.0
        plan = w.worker.engine.plan_series(w.series)
        assert shown == plan
        label = w.right.corner_text("top_right")
        assert f"P k-space {plan.p_kspace:.2f}" in label
        if plan.log_ratio is not None:
            assert f"residual test {plan.log_ratio:+.2f}" in label
        names = {"off": "off", "bicubic": "bicubic", "kspace": "k-space"}
        assert f"data consistency: auto → {names[plan.projection]}" in label
        assert all(line in label.splitlines() for line in plan.lines())
        assert label.splitlines()[-1] == "not for primary diagnosis"
    finally:
        w.shutdown()


def test_brainsr_help_lists_consistency(capsys):
    with pytest.raises(SystemExit):
        viewer_app.main(["--help"])
    out = capsys.readouterr().out
    assert "--consistency {off,bicubic,kspace,auto}" in out
    assert viewer_app.build_parser().parse_args(["--consistency", "kspace"]).consistency == "kspace"
    with pytest.raises(SystemExit):
        viewer_app.build_parser().parse_args(["--consistency", "magic"])

"""Main window end to end on a real series: loading, linked views in mm, W/L, enhancement toggle, errors, CLI."""
import subprocess
import sys

import numpy as np
import pytest
from PySide6 import QtCore, QtGui, QtWidgets

from srgan.inference.engine import interpolate
from viewer import app as viewer_app
from viewer.main_window import MainWindow, settings
from viewer.style import apply_dark_theme
from viewer.workers import EnhanceConfig


def _make_window(qtbot, weights, enhance=False, dialogs=False) -> MainWindow:
    apply_dark_theme(QtWidgets.QApplication.instance())
    w = MainWindow(EnhanceConfig(weights=str(weights), device="cpu"), enhance=enhance, show_dialogs=dialogs)
    qtbot.addWidget(w)
    w.resize(1300, 820)
    w.show()
    qtbot.waitExposed(w)
    return w


@pytest.fixture
def window(qtbot, tiny_weights):
    w = _make_window(qtbot, tiny_weights)
    yield w
    w.shutdown()


def _open(qtbot, window, folder):
    with qtbot.waitSignal(window.series_shown, timeout=30_000):
        window.open_folder(folder)
    qtbot.waitUntil(window.is_settled, timeout=30_000)


def test_opens_the_real_series_at_the_middle_slice(qtbot, window, hfs_folder):
    _open(qtbot, window, hfs_folder)
    s = window.state
    assert (s.n_volumes, s.n_slices, s.slice) == (1, 35, 17)
    assert window.left.image.image.shape == (256, 256)
    assert window.right.image.image.shape == (512, 512)
    # the default comparison is what the scanner shows: zero-filled k-space of the whole slice
    np.testing.assert_allclose(window.right.image.image, interpolate(window.left.image.image, 2, "zerofill"),
                               atol=1e-3)
    assert "Im 18/35" in window.left.corner_text("bottom_left")
    assert "Interpolated ×2" in window.right.corner_text("top_right"), "enhancement off: labelled interpolation"
    assert {k: m.text() for k, m in window.left.markers.items()} == dict(left="A", right="P", top="S", bottom="I")
    assert window.browser.series_items()[0].text(3) == "256×256"
    # header window (Siemens WindowCenter/Width) is valid, so it is the initial window
    assert s.window == s.default_window and s.window.width > 0
    assert str(hfs_folder.resolve()) in settings().value("recent_folders")
    window.tag_dock.show()  # the tag panel follows the slice shown
    qtbot.waitUntil(lambda: any(r[1] == "InstanceNumber" for r in window.tag_panel.visible_rows()), timeout=5_000)
    number = next(r[3] for r in window.tag_panel.visible_rows() if r[1] == "InstanceNumber")
    assert number == str(window.series.frame(0, 17).instance_number)


def test_decubitus_series_letters_come_from_iop(qtbot, window, hfdr_folder):
    _open(qtbot, window, hfdr_folder)
    assert window.series.patient_position == "HFDR"
    assert {k: m.text() for k, m in window.right.markers.items()} == dict(left="A", right="P", top="S", bottom="I")


def _image_rect_in_view(viewport):
    item = viewport.image
    r = item.mapRectToView(item.boundingRect())
    return (r.left(), r.top(), r.right(), r.bottom())


def test_viewports_are_linked_in_millimetres(qtbot, window, hfs_folder):
    _open(qtbot, window, hfs_folder)
    left, right = window.left, window.right

    def assert_linked():
        """Each viewport shows the state's mm rectangle for its own pixel size (the splitter may give them
        widths differing by a pixel): same centre and the same mm per screen pixel."""
        for vp in (left, right):
            np.testing.assert_allclose(vp.view_range_mm(), window.state.view_rect_mm(*vp.viewport_px()), rtol=1e-6)
        (lx0, ly0, lx1, ly1), (rx0, ry0, rx1, ry1) = left.view_range_mm(), right.view_range_mm()
        assert ((lx0 + lx1) / 2, (ly0 + ly1) / 2) == pytest.approx(((rx0 + rx1) / 2, (ry0 + ry1) / 2))
        assert (lx1 - lx0) / left.viewport_px()[0] == pytest.approx((rx1 - rx0) / right.viewport_px()[0])
        assert (ly1 - ly0) / left.viewport_px()[1] == pytest.approx((ry1 - ry0) / right.viewport_px()[1])

    assert_linked()
    # both images cover the same field of view although the right one has 2× the pixels
    np.testing.assert_allclose(_image_rect_in_view(left), (0, 0, 260, 260), atol=1e-6)
    np.testing.assert_allclose(_image_rect_in_view(right), _image_rect_in_view(left), atol=1e-6)
    # the centre of original pixel (10, 20) is the centre of HR pixel (10·2 + ½, 20·2 + ½) on the right
    p_lr = left.image.mapToView(QtCore.QPointF(20.5, 10.5))
    p_hr = right.image.mapToView(QtCore.QPointF(2 * 20 + 0.5 + 0.5, 2 * 10 + 0.5 + 0.5))
    assert (p_lr.x(), p_lr.y()) == pytest.approx((p_hr.x(), p_hr.y()))

    window.state.zoom_by(2.0, anchor_mm=(100.0, 60.0))
    before = window.state.pan
    left.vb.panned.emit(30.0, -12.0)      # a drag on the left viewport…
    z = window.state.zoom
    assert window.state.pan == pytest.approx((before[0] - 30.0 / z, before[1] + 12.0 / z))
    assert_linked()  # …moves the right one by the same mm

    right.vb.wheeled.emit(-2, False, 0.0, 0.0)  # wheel on the right viewport: two slices on
    assert window.state.slice == 19
    qtbot.waitUntil(window.is_settled, timeout=30_000)
    np.testing.assert_array_equal(left.image.image, window.series.pixels(0, 19))
    assert "Im 20/35" in right.corner_text("bottom_left")

    zoom = window.state.zoom
    right.vb.wheeled.emit(1, True, 50.0, 50.0)  # Ctrl+wheel zooms both
    assert window.state.zoom == pytest.approx(zoom * 1.15)
    assert_linked()


def test_real_wheel_event_steps_slices(qtbot, window, hfs_folder):
    _open(qtbot, window, hfs_folder)
    view = window.left.view.viewport()
    centre = QtCore.QPointF(view.width() / 2, view.height() / 2)
    ev = QtGui.QWheelEvent(centre, view.mapToGlobal(centre), QtCore.QPoint(0, 0), QtCore.QPoint(0, -120),
                           QtCore.Qt.MouseButton.NoButton, QtCore.Qt.KeyboardModifier.NoModifier,
                           QtCore.Qt.ScrollPhase.NoScrollPhase, False)
    QtWidgets.QApplication.sendEvent(view, ev)
    assert window.state.slice == 18


def test_window_level_drag_presets_and_reset_apply_to_both_sides(qtbot, window, hfs_folder):
    _open(qtbot, window, hfs_folder)
    start = window.state.window
    vb = window.left.vb
    vb.window_dragged.emit(0.0, 0.0, True, False)
    vb.window_dragged.emit(100.0, -50.0, False, True)
    w = window.state.window
    assert w.width > start.width and w.center < start.center
    assert tuple(window.left.image.levels) == pytest.approx(w.levels)
    assert tuple(window.right.image.levels) == pytest.approx(w.levels)
    assert f"W {w.width:.0f}" in window.right.corner_text("bottom_right")
    assert window.preset_box.currentText() == "", "a dragged window is no preset"
    window.preset_actions["Full range"].trigger()
    assert window.state.window.levels == pytest.approx((window.stats.minimum, window.stats.maximum))
    assert window.preset_box.currentText() == "Full range"
    window.act_reset_window.trigger()
    assert window.state.window == start and window.preset_box.currentText() == "Header"


def test_keyboard_shortcuts_step_slices_and_zoom(qtbot, window, hfs_folder):
    _open(qtbot, window, hfs_folder)
    window.activateWindow()
    assert window.left.view.hasFocus()
    qtbot.keyClick(window.left.view, QtCore.Qt.Key.Key_Down)
    qtbot.keyClick(window.left.view, QtCore.Qt.Key.Key_PageDown)
    assert window.state.slice == 17 + 1 + 3
    window.browser.setFocus()  # in the series list the arrows move through the list, not the slices
    qtbot.keyClick(window.browser, QtCore.Qt.Key.Key_Down)
    assert window.state.slice == 21
    window.act_prev.trigger()
    assert window.state.slice == 20
    zoom = window.state.zoom
    window.act_zoom_in.trigger()
    assert window.state.zoom == pytest.approx(zoom * 1.25)
    window.act_fit.trigger()
    assert window.state.zoom == pytest.approx(zoom)
    window.resize(window.width() + 300, window.height())  # a fitted image stays fitted
    qtbot.waitUntil(lambda: window.state.zoom != pytest.approx(zoom), timeout=5_000)
    assert window.state.zoom == pytest.approx(window.state.fit_zoom(*window.left.viewport_px()))


def test_enhancement_and_toggle(qtbot, window, hfs_folder):
    _open(qtbot, window, hfs_folder)
    # Hold the worker's queue lock (re-entrant for this thread) so the tiny model cannot finish the slice before
    # the label is read: it had, once in a fresh clone, and the label already said "AI-enhanced".
    with window.worker.jobs.cond:
        window.set_enhancing(True)
        assert "AI enhancing…" in window.right.corner_text("top_right")
    qtbot.waitUntil(lambda: window.current_images()["enhanced"] is not None, timeout=60_000)
    qtbot.waitUntil(window.is_settled, timeout=10_000)
    images = window.current_images()
    np.testing.assert_array_equal(window.right.image.image, images["enhanced"])
    assert "AI-enhanced ×2" in window.right.corner_text("top_right")
    assert "not for primary diagnosis" in window.right.corner_text("top_right")
    assert not np.allclose(images["enhanced"], images["interpolated"])

    window.act_show_enhanced.trigger()  # E: plain interpolation
    assert window.state.enhanced is False
    np.testing.assert_array_equal(window.right.image.image, images["interpolated"])
    assert "Interpolated ×2" in window.right.corner_text("top_right")
    window.act_show_enhanced.trigger()
    np.testing.assert_array_equal(window.right.image.image, images["enhanced"])

    window.act_difference.trigger()  # D: difference overlay over the enhanced image
    assert window.difference_overlay.isVisible()
    window.cancel_enhancement()
    qtbot.waitUntil(lambda: not window.worker.busy, timeout=60_000)
    assert window.worker.pending() == 0


def test_enhancement_error_goes_to_the_status_bar(qtbot, hfs_folder, tmp_path):
    w = _make_window(qtbot, tmp_path / "missing.safetensors", enhance=True)
    try:
        with qtbot.waitSignal(w.error_occurred, timeout=30_000) as blocker:
            w.open_folder(hfs_folder)
        assert "missing" in blocker.args[0]
        qtbot.waitUntil(w.is_settled, timeout=30_000)
        assert "AI enhancement failed" in w.right.corner_text("top_right")
        assert "missing" in w.statusBar().currentMessage()
    finally:
        w.shutdown()


def test_bad_folder_shows_an_error_dialog(qtbot, tiny_weights, tmp_path, monkeypatch):
    shown = []
    monkeypatch.setattr(QtWidgets.QMessageBox, "critical",
                        lambda parent, title, text, *a, **k: shown.append((title, text)))
    w = _make_window(qtbot, tiny_weights, dialogs=True)
    try:
        w.open_folder(tmp_path / "does-not-exist")
        qtbot.waitUntil(lambda: bool(shown), timeout=10_000)
        title, text = shown[0]
        assert title == "Cannot open folder" and "does-not-exist" in text
        assert w.series is None
    finally:
        w.shutdown()


def test_cine_steps_and_wraps(qtbot, window, hfs_folder):
    _open(qtbot, window, hfs_folder)
    window.state.set_slice(34)
    window.act_cine.trigger()
    assert window.cine.isActive()
    qtbot.waitUntil(lambda: window.state.slice == 0, timeout=5_000)
    window.act_cine.trigger()
    assert not window.cine.isActive()


def test_screenshot_cli_writes_a_png(qtbot, hfs_folder, tiny_weights, tmp_path):
    out = tmp_path / "shot.png"
    rc = viewer_app.main([str(hfs_folder), "--enhance", "--weights", str(tiny_weights), "--device", "cpu",
                          "--screenshot", str(out)])
    assert rc == 0 and out.is_file()
    image = QtGui.QImage(str(out))
    assert image.width() >= 1280 and image.height() >= 800
    ptr = image.convertToFormat(QtGui.QImage.Format.Format_Grayscale8)
    a = np.frombuffer(ptr.constBits(), np.uint8, ptr.sizeInBytes()).reshape(ptr.height(), ptr.bytesPerLine())
    assert a.std() > 20 and (a > 100).mean() > 0.05, "two brain images (mid-grey to white) fill the picture"


def test_screenshot_cli_fails_clearly_on_a_bad_folder(qtbot, tmp_path, capsys):
    rc = viewer_app.main([str(tmp_path / "nothing-here"), "--screenshot", str(tmp_path / "x.png")])
    assert rc != 0 and not (tmp_path / "x.png").exists()
    assert "nothing-here" in capsys.readouterr().err


def test_screenshot_cli_fails_clearly_when_the_png_cannot_be_written(qtbot, hfs_folder, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("a file, not a folder")
    out = tmp_path / "notes.txt" / "shot.png"  # its folder cannot be made (even by root, unlike a read-only one)
    rc = viewer_app.main([str(hfs_folder), "--no-enhance", "--screenshot", str(out)])
    err = capsys.readouterr().err
    assert rc == viewer_app.EXIT_ERROR and not out.exists()
    assert err.startswith(f"brainsr: {out}: the PNG could not be written") and len(err.strip().splitlines()) == 1
    assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"], "no temporary file left behind"


def test_help_does_not_import_qt_or_torch():
    code = ("import sys, viewer.app\n"
            "try:\n    viewer.app.main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('torch', 'PySide6', 'pyqtgraph', 'srgan.inference.engine') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "usage: brainsr" in out.stdout
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_second_series_from_the_browser_and_volumes(qtbot, window, shared_dicom):
    folder = shared_dicom / "ge_mr750_epi_ax_mixed_2series"
    if not folder.is_dir():
        pytest.skip(f"real DICOM test data missing: {folder}")
    _open(qtbot, window, folder)
    items = window.browser.series_items()
    assert len(items) == 2 and [i.text(2) for i in items] == ["15×10", "15×10"]
    first = window.series
    with qtbot.waitSignal(window.series_shown, timeout=10_000) as blocker:
        role = QtCore.Qt.ItemDataRole.UserRole + 1
        window.browser.setCurrentItem(next(i for i in items if i.data(0, role) is not first))
    assert blocker.args[0] is not first and window.series is blocker.args[0]
    qtbot.waitUntil(window.is_settled, timeout=30_000)
    assert (window.state.n_volumes, window.state.n_slices) == (10, 15)
    window.act_next_volume.trigger()
    assert window.state.volume == 1
    qtbot.waitUntil(window.is_settled, timeout=30_000)
    np.testing.assert_array_equal(window.left.image.image, window.series.pixels(1, window.state.slice))
    assert "Vol 2/10" in window.left.corner_text("bottom_left")
    assert {k: m.text() for k, m in window.left.markers.items()} == dict(left="R", right="L", top="A", bottom="P")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_dropping_a_folder_opens_it(qtbot, window, hfs_folder):
    mime = QtCore.QMimeData()
    mime.setUrls([QtCore.QUrl.fromLocalFile(str(sorted(hfs_folder.glob("*.dcm"))[0]))])  # a file → its folder
    pos = QtCore.QPointF(100, 100)
    enter = QtGui.QDragEnterEvent(pos.toPoint(), QtCore.Qt.DropAction.CopyAction, mime,
                                  QtCore.Qt.MouseButton.LeftButton, QtCore.Qt.KeyboardModifier.NoModifier)
    window.dragEnterEvent(enter)
    assert enter.isAccepted()
    drop = QtGui.QDropEvent(pos, QtCore.Qt.DropAction.CopyAction, mime, QtCore.Qt.MouseButton.LeftButton,
                            QtCore.Qt.KeyboardModifier.NoModifier)
    with qtbot.waitSignal(window.series_shown, timeout=30_000):
        window.dropEvent(drop)
    assert window.folder == str(hfs_folder)


def test_recent_folders_menu(qtbot, window, hfs_folder, hfdr_folder):
    _open(qtbot, window, hfs_folder)
    _open(qtbot, window, hfdr_folder)
    texts = [a.text() for a in window.recent_menu.actions()]
    assert str(hfdr_folder.resolve()) in texts[0] and str(hfs_folder.resolve()) in texts[1]
    with qtbot.waitSignal(window.series_shown, timeout=30_000):
        window.recent_menu.actions()[1].trigger()
    assert window.series.patient_position == "HFS"


def test_region_statistics_compare_both_sides(qtbot, window, hfs_folder):
    _open(qtbot, window, hfs_folder)
    window.set_enhancing(True)
    qtbot.waitUntil(lambda: window.current_images()["enhanced"] is not None, timeout=60_000)
    window.roi_tool.set_rect((100.0, 80.0, 40.0, 30.0))
    assert window.roi_dock.isVisible()
    qtbot.waitUntil(lambda: window.roi_panel.cell("pixels", "enhanced") != "", timeout=30_000)
    n_orig = int(window.roi_panel.cell("pixels", "original"))
    n_enh = int(window.roi_panel.cell("pixels", "enhanced"))
    assert n_enh == pytest.approx(4 * n_orig, rel=0.05), "the same mm region holds about s² times as many pixels"


def test_export_view_png_is_labelled(qtbot, window, hfs_folder, tmp_path, monkeypatch):
    _open(qtbot, window, hfs_folder)
    out = tmp_path / "view.png"
    monkeypatch.setattr(QtWidgets.QFileDialog, "getSaveFileName", lambda *a, **k: (str(out), "PNG image (*.png)"))
    window.act_export_png.trigger()
    image = QtGui.QImage(str(out))
    assert not image.isNull() and image.width() > 800
    assert "not for primary diagnosis" in image.text("Disclaimer")


def _choose_interpolation(window, method):
    act = next(a for a in window.interpolation_group.actions() if a.data() == method)
    act.trigger()


def test_comparison_interpolation_choice_changes_label_pixels_stats_and_provenance(qtbot, window, hfs_folder,
                                                                                  tmp_path, monkeypatch):
    """Enhance → Comparison interpolation: zero-fill by default (what the scanner shows), bicubic on request; the
    label, the right pane's pixels, the region statistics and the PNG provenance say which; the choice persists."""
    _open(qtbot, window, hfs_folder)
    left = window.left.image.image
    assert window.right.corner_text("top_right").startswith("Interpolated ×2 (zero-fill)")
    assert [a.data() for a in window.interpolation_group.actions() if a.isChecked()] == ["zerofill"]
    zerofill = window.right.image.image.copy()
    np.testing.assert_allclose(zerofill, interpolate(left, 2, "zerofill"), atol=1e-3)
    window.roi_tool.set_rect((100.0, 80.0, 40.0, 30.0))
    qtbot.waitUntil(lambda: "zero-fill interpolation" in window.roi_panel.cell("PSNR (dB)", "original"),
                    timeout=30_000)

    _choose_interpolation(window, "bicubic")
    qtbot.waitUntil(window.is_settled, timeout=30_000)
    assert window.right.corner_text("top_right").startswith("Interpolated ×2 (bicubic)")
    bicubic = window.right.image.image
    np.testing.assert_allclose(bicubic, interpolate(left, 2, "bicubic"), atol=1e-3)
    assert np.abs(bicubic - zerofill).max() > 0.01 * float(np.ptp(left)), "the pixels changed with the choice"
    qtbot.waitUntil(lambda: "bicubic interpolation" in window.roi_panel.cell("PSNR (dB)", "original"),
                    timeout=30_000)
    out = tmp_path / "view.png"
    monkeypatch.setattr(QtWidgets.QFileDialog, "getSaveFileName", lambda *a, **k: (str(out), "PNG image (*.png)"))
    window.act_export_png.trigger()
    assert "(bicubic)" in QtGui.QImage(str(out)).text("Description")
    assert settings().value("comparison_interpolation") == "bicubic"

    again = _make_window(qtbot, window.worker.config.weights)   # a new window starts with the stored choice
    try:
        assert again.model.interpolation == "bicubic" and again.loader.method == "bicubic"
        assert [a.data() for a in again.interpolation_group.actions() if a.isChecked()] == ["bicubic"]
    finally:
        again.shutdown()


def test_export_enhanced_series_runs_in_the_background(qtbot, window, hfs_folder, tmp_path, monkeypatch):
    _open(qtbot, window, hfs_folder)
    monkeypatch.setattr(QtWidgets.QFileDialog, "getExistingDirectory", lambda *a, **k: str(tmp_path))
    window.act_export_series.trigger()
    session = window._export_session
    assert session is not None
    with qtbot.waitSignal(session.done, timeout=120_000) as blocker:
        pass
    report = blocker.args[0]
    assert report is not None and len(report.files) == 35
    assert report.out_dir.parent == tmp_path
    _send_export_to_pacs(qtbot, window, report, tmp_path, monkeypatch)
    import shutil
    import subprocess

    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy (Debian package dicom3tools) not installed: export written, not validated")
    for f in report.files[:3]:  # the source files have no dciodvfy errors
        said = subprocess.run(["dciodvfy", str(f)], capture_output=True, text=True, timeout=120)
        assert not [ln for ln in (said.stdout + said.stderr).splitlines() if ln.startswith("Error")], f


def _send_export_to_pacs(qtbot, window, report, tmp_path, monkeypatch):
    """File → Send enhanced series to PACS… hands the exported folder to the PACS window, which asks before it sends
    (the dialog names patient, series and node; its own tests send to a real Orthanc). Nothing is sent before."""
    from viewer.pacs_window import PacsWindow
    for var in ("XDG_DATA_HOME", "XDG_CONFIG_HOME"):
        monkeypatch.setenv(var, str(tmp_path / var))
    sent = []
    monkeypatch.setattr(PacsWindow, "send_folder", lambda self, folder, patient, series, confirm=True:
                        sent.append((folder, patient, series)) or True)
    assert window.act_send_pacs.isEnabled() and window.pacs is None  # nothing contacted, no window yet
    window.act_send_pacs.trigger()
    assert window.pacs is not None and window.pacs.isVisible()
    assert sent == [(report.out_dir, window.series.patient_name, f"AI-enhanced {window.series.series_description}")]
    window.pacs.close()


def _drag(widget, start, end, button, modifiers=QtCore.Qt.KeyboardModifier.NoModifier, steps=5):
    """A real mouse drag (press, moves, release) sent to ``widget``, as the window system would.

    pyqtgraph drops mouse moves closer than 1/``mouseRateLimit`` s (10 ms) to the previous one, so the
    moves are spaced like a real hand's."""
    from PySide6.QtTest import QTest

    def send(kind, pos, buttons, btn):
        p = QtCore.QPointF(*pos)
        ev = QtGui.QMouseEvent(kind, p, widget.mapToGlobal(p), btn, buttons, modifiers)
        QtWidgets.QApplication.sendEvent(widget, ev)

    send(QtCore.QEvent.Type.MouseButtonPress, start, button, button)
    for i in range(1, steps + 1):
        t = i / steps
        pos = (start[0] + (end[0] - start[0]) * t, start[1] + (end[1] - start[1]) * t)
        QTest.qWait(15)
        send(QtCore.QEvent.Type.MouseMove, pos, button, QtCore.Qt.MouseButton.NoButton)
    send(QtCore.QEvent.Type.MouseButtonRelease, end, QtCore.Qt.MouseButton.NoButton, button)


def test_real_mouse_drags_pan_window_and_draw_a_region(qtbot, window, hfs_folder):
    _open(qtbot, window, hfs_folder)
    view = window.left.view.viewport()
    cx, cy = view.width() / 2, view.height() / 2
    pan, zoom = window.state.pan, window.state.zoom

    _drag(view, (cx, cy), (cx + 60, cy + 20), QtCore.Qt.MouseButton.LeftButton)
    assert window.state.pan == pytest.approx((pan[0] - 60 / zoom, pan[1] - 20 / zoom), abs=0.5 / zoom)
    assert window.right.view_range_mm()[0] == pytest.approx(window.left.view_range_mm()[0], abs=1e-6)

    start = window.state.window
    _drag(view, (cx, cy), (cx + 80, cy), QtCore.Qt.MouseButton.RightButton)
    assert window.state.window.width > start.width and window.state.window.center == pytest.approx(start.center)

    _drag(view, (cx - 50, cy - 50), (cx + 50, cy + 30), QtCore.Qt.MouseButton.LeftButton,
          QtCore.Qt.KeyboardModifier.ShiftModifier)
    rect = window.roi_tool.rect()
    assert rect is not None and rect.width == pytest.approx(100 / window.state.zoom, rel=0.05)
    assert window.state.pan == pytest.approx((pan[0] - 60 / zoom, pan[1] - 20 / zoom), abs=0.5 / zoom), \
        "a Shift+drag draws a region and does not pan"


def _write_anisotropic_series(folder, rows=64, cols=128, spacing=(1.0, 0.5), n=3):
    """A tiny axial series whose pixels are twice as tall as wide (PixelSpacing = Δrow \\ Δcol)."""
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.TransferSyntaxUID = MRImageStorage, ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.Modality = MRImageStorage, "MR"
    ds.PatientName, ds.PatientID = "Aniso^Test", "ANISO"
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = generate_uid(), generate_uid(), generate_uid()
    ds.SeriesNumber, ds.SeriesDescription = 1, "anisotropic"
    ds.Rows, ds.Columns = rows, cols
    ds.PixelSpacing = list(spacing)
    ds.SliceThickness = 2.0
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    image = (np.add.outer(np.arange(rows), np.arange(cols)) * 7 % 1000).astype(np.uint16)
    for i in range(n):
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = i + 1
        ds.ImagePositionPatient = [0.0, 0.0, 2.0 * i]
        ds.PixelData = image.tobytes()
        ds.save_as(folder / f"IM{i}.dcm", enforce_file_format=True)


def test_anisotropic_pixels_are_shown_with_the_right_aspect(qtbot, window, tmp_path):
    _write_anisotropic_series(tmp_path)
    _open(qtbot, window, tmp_path)
    # 64 rows × 1.0 mm and 128 columns × 0.5 mm: a 64 × 64 mm square on both sides
    np.testing.assert_allclose(_image_rect_in_view(window.left), (0, 0, 64, 64), atol=1e-6)
    np.testing.assert_allclose(_image_rect_in_view(window.right), (0, 0, 64, 64), atol=1e-6)
    assert window.right.image.image.shape == (128, 256)
    # one screen pixel is the same number of mm across and down: the square shows as a square
    x0, y0, x1, y1 = window.left.view_range_mm()
    w, h = window.left.viewport_px()
    assert (x1 - x0) / w == pytest.approx((y1 - y0) / h)
    assert "128×64  1 × 0.5 mm" in window.left.corner_text("bottom_right")


def test_scale_and_device_choices(qtbot, window, hfs_folder, tiny_weights_x4):
    _open(qtbot, window, hfs_folder)
    window.set_enhancing(True)
    window.configure_enhancer(scale=4, weights=str(tiny_weights_x4))
    assert [a.data() for a in window.scale_group.actions() if a.isChecked()] == [4]
    qtbot.waitUntil(window.is_settled, timeout=60_000)
    assert window.right.image.image.shape == (1024, 1024)
    assert window.right.corner_text("top_right").startswith("AI-enhanced ×4")
    assert "1024×1024  0.254 mm" in window.right.corner_text("bottom_right")
    window.act_show_enhanced.trigger()
    np.testing.assert_allclose(window.right.image.image, interpolate(window.left.image.image, 4, "zerofill"),
                               atol=1e-3)

    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the 'no GPU' message cannot be checked")
    window.act_show_enhanced.trigger()
    with qtbot.waitSignal(window.error_occurred, timeout=30_000) as blocker:
        next(a for a in window.device_group.actions() if a.data() == "cuda").trigger()
    assert "CUDA" in blocker.args[0] and "CUDA" in window.statusBar().currentMessage()
    # the slice already enhanced by these weights stays shown, still labelled with its model
    sha = window.model_info["card"]["sha256"][:8]
    assert window.right.corner_text("top_right").splitlines()[:2] == ["AI-enhanced ×4", "tiny-x4 · " + sha]


def test_scan_problems_name_the_bad_files_and_the_good_series_still_opens(qtbot, window, hfs_folder, tmp_path):
    """A folder with a series, a truncated copy of one of its files and a file with a lying transfer syntax: the
    series opens, and File → Scan problems… lists the truncated file (skipped) and the lying one (read, warned)."""
    import shutil

    import pydicom

    folder = tmp_path / "mixed"
    shutil.copytree(hfs_folder, folder)
    files = sorted(p for p in folder.iterdir() if p.is_file())
    truncated = folder / "truncated.dcm"
    truncated.write_bytes(files[0].read_bytes()[:3000])
    lying = files[1]
    ds = pydicom.dcmread(lying)
    if ds.file_meta.TransferSyntaxUID != pydicom.uid.ExplicitVRLittleEndian:
        pytest.skip("the source is not explicit VR little endian")
    raw = bytearray(lying.read_bytes())  # claim implicit VR for explicit data: same length, so patch in place
    at = raw.find(pydicom.uid.ExplicitVRLittleEndian.encode())
    raw[at:at + len(pydicom.uid.ImplicitVRLittleEndian)] = pydicom.uid.ImplicitVRLittleEndian.encode()
    n = len(pydicom.uid.ImplicitVRLittleEndian)
    raw[at + n:at + len(pydicom.uid.ExplicitVRLittleEndian)] = b"\0" * 2  # the UID value is padded with NUL
    lying.write_bytes(bytes(raw))
    assert not window.act_problems.isEnabled()
    _open(qtbot, window, folder)
    assert window.series is not None and window.series.shape[1] == len(files)
    assert window.act_problems.isEnabled()
    assert any(line.startswith("skipped: ") and "truncated.dcm" in line for line in window.scan_problems)
    assert any(line.startswith("warning: ") and lying.name in line for line in window.scan_problems)
    assert "Scan problems" in window.statusBar().currentMessage()

"""Series export through ExportWorker in a QThread (real JPEG-LS series), refusal of the source folder,
cancel leaving nothing behind, and the PNG snapshot's label and provenance text chunk."""
from __future__ import annotations

import shutil
import threading

import numpy as np
import pydicom
import pytest

from srgan.io.dicom_series import scan
from srgan.provenance import DISCLAIMER, Provenance
from viewer.export import ExportCancelled, default_folder_name, run_export, stack_enhancer, unique_child

PROV = Provenance(model="nearest", weights_name="test-nearest", weights_sha256="ab" * 32, scale=2)


class Nearest:
    """Enhancer-like: ``enhance`` (H, W) → (2H, 2W) by pixel repetition, so the source is recoverable exactly."""

    provenance = PROV
    scale = 2

    def __init__(self, on_call=None):
        self.calls = 0
        self.on_call = on_call

    def enhance(self, image):
        self.calls += 1
        if self.on_call is not None:
            self.on_call(self.calls)
        return np.repeat(np.repeat(np.asarray(image, np.float32), 2, 0), 2, 1)


@pytest.fixture
def trio_files(shared_data):
    files = sorted((shared_data / "dicom" / "trio_sag_jpegls_noisepixels").glob("*.dcm"))
    if len(files) != 4:
        pytest.skip("trio_sag_jpegls_noisepixels series incomplete")
    return files


@pytest.fixture
def local_copy(trio_files, tmp_path):
    """Two source files in a writable folder, for tests that aim at the source folder itself."""
    src = tmp_path / "src"
    src.mkdir()
    for f in trio_files[:2]:
        shutil.copy2(f, src / f.name)
    return sorted(src.iterdir())


@pytest.fixture
def trio_series(trio_files):
    (series,) = scan(trio_files[0].parent).series
    return series


@pytest.fixture
def local_series(local_copy):
    (series,) = scan(local_copy[0].parent).series
    return series


def _run_worker(qtbot, worker, signal_name):
    """Start ``worker`` in its QThread and wait for one of its end signals, received on the GUI thread.

    The relay is a QObject living on the GUI thread, so the worker's cross-thread signal is queued to it, as it
    is to the viewer's widgets (waiting on the worker's signal directly would run pytest-qt's slot in the worker
    thread).
    """
    from PySide6 import QtCore

    from viewer.export import start_worker

    class Relay(QtCore.QObject):
        got = QtCore.Signal(str, object)

        @QtCore.Slot(object)
        def on_finished(self, report):
            self.got.emit("finished", report)

        @QtCore.Slot()
        def on_cancelled(self):
            self.got.emit("cancelled", None)

        @QtCore.Slot(str)
        def on_failed(self, message):
            self.got.emit("failed", message)

    relay = Relay()
    worker.finished.connect(relay.on_finished)
    worker.cancelled.connect(relay.on_cancelled)
    worker.failed.connect(relay.on_failed)
    with qtbot.waitSignal(relay.got, timeout=60000) as sig:
        thread = start_worker(worker)
    assert thread.wait(10000)
    kind, payload = sig.args
    assert kind == signal_name, payload
    return payload


def test_naming_helpers(tmp_path):
    assert default_folder_name("t1 fl2d/sag", 2) == "t1_fl2d_sag_AI_x2"
    assert default_folder_name("", 4) == "series_AI_x4"
    (tmp_path / "a").mkdir()
    assert unique_child(tmp_path, "a") == tmp_path / "a_2"


class Plans(Nearest):
    def plan_series(self, series):
        return "plan"


def test_stack_enhancer_forms():
    stack = np.arange(2 * 3 * 3, dtype=np.float32).reshape(2, 3, 3)
    want = np.repeat(np.repeat(stack, 2, 1), 2, 2)
    lock = threading.Lock()
    per_slice = stack_enhancer(Nearest(), lock=lock)
    np.testing.assert_array_equal(per_slice(stack), want)
    assert not lock.locked()

    class Stacky:
        def enhance_stack(self, s, plan=None, *, keys=None, cancel=None):
            self.got = (plan, keys)
            return np.repeat(np.repeat(s, 2, 1), 2, 2)
    stacky = Stacky()
    np.testing.assert_array_equal(stack_enhancer(stacky)(stack), want)
    got = stack_enhancer(stacky, lock=lock).enhance_stack(stack, "plan", keys=[(0, 3), (0, 4)])
    np.testing.assert_array_equal(got, want)
    assert stacky.got == ("plan", [(0, 3), (0, 4)]) and not lock.locked()
    assert not hasattr(stack_enhancer(stacky), "plan_series") and hasattr(stack_enhancer(Plans()), "plan_series")
    np.testing.assert_array_equal(stack_enhancer(lambda s: np.repeat(np.repeat(s, 2, 1), 2, 2))(stack), want)
    with pytest.raises(TypeError):
        stack_enhancer(object())


def test_export_round_trip_in_worker_thread(qtbot, trio_files, trio_series, tmp_path):
    from viewer.export import ExportWorker
    out = tmp_path / "derived"
    worker = ExportWorker(trio_series, out, Nearest(), lock=threading.Lock())
    seen = []
    worker.progress.connect(lambda done, total: seen.append((done, total)))
    report = _run_worker(qtbot, worker, "finished")
    assert seen[-1] == (4, 4)
    assert len(report.files) == 4 and all(f.parent == out for f in report.files)
    sources = {pydicom.dcmread(f).SOPInstanceUID: pydicom.dcmread(f) for f in trio_files}
    uids = set()
    for f in report.files:
        ds = pydicom.dcmread(f)
        src = sources[ds.SourceImageSequence[0].ReferencedSOPInstanceUID]
        assert (ds.Rows, ds.Columns) == (2 * src.Rows, 2 * src.Columns)
        assert [float(v) for v in ds.PixelSpacing] == [float(v) / 2 for v in src.PixelSpacing]
        assert ds.ImageType[0] == "DERIVED"
        assert ds.SeriesInstanceUID != src.SeriesInstanceUID
        assert DISCLAIMER in ds.ImageComments and PROV.weights_sha256[:16] in ds.DerivationDescription
        np.testing.assert_array_equal(ds.pixel_array[::2, ::2], src.pixel_array)   # nearest ×2 undone
        uids.add(ds.SeriesInstanceUID)
    assert len(uids) == 1 and uids.pop() == report.series_instance_uid


def test_export_takes_the_viewers_cache_and_plan(qtbot, trio_series, tmp_path):
    """Slices the viewer already enhanced are written from its cache; the others are enhanced with the viewer's
    plan and their (volume, slice) keys; the files are the same as without the cache."""
    from viewer.export import ExportWorker

    def twice(x):
        return np.repeat(np.repeat(np.asarray(x, np.float32), 2, -2), 2, -1)

    class Stacky:
        provenance, scale = PROV, 2

        def __init__(self):
            self.calls = []

        def enhance_stack(self, stack, plan=None, *, keys=None, cancel=None):
            self.calls.append((plan, list(keys)))
            return twice(stack)

    cache = {(0, k): twice(trio_series.pixels(0, k)) for k in (0, 2)}
    stacky = Stacky()
    worker = ExportWorker(trio_series, tmp_path / "cached", stacky, plan="the viewer's plan",
                          lookup=lambda v, s: cache.get((v, s)))
    report = _run_worker(qtbot, worker, "finished")
    assert stacky.calls == [("the viewer's plan", [(0, 1)]), ("the viewer's plan", [(0, 3)])]
    plain = run_export(trio_series, tmp_path / "plain", Nearest())
    assert len(report.files) == len(plain.files) == 4
    for a, b in zip(report.files, plain.files):
        np.testing.assert_array_equal(pydicom.dcmread(a).pixel_array, pydicom.dcmread(b).pixel_array)


def test_worker_refuses_source_folder(qtbot, local_copy, local_series):
    from viewer.export import ExportWorker
    src = local_copy[0].parent
    before = sorted(p.name for p in src.iterdir())
    enhancer = Nearest()
    worker = ExportWorker(local_series, src / "derived", enhancer)
    message = _run_worker(qtbot, worker, "failed")
    assert "source" in message
    assert enhancer.calls == 0
    assert sorted(p.name for p in src.iterdir()) == before


def test_cancel_mid_export_leaves_nothing(qtbot, trio_series, tmp_path):
    from viewer.export import ExportWorker
    out = tmp_path / "derived"
    holder = {}
    enhancer = Nearest(on_call=lambda n: holder["worker"].cancel() if n == 2 else None)
    worker = ExportWorker(trio_series, out, enhancer)
    holder["worker"] = worker
    _run_worker(qtbot, worker, "cancelled")
    assert enhancer.calls == 2                         # it stopped at the next file, not at the end
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_run_export_cancel_raises(trio_series, tmp_path):
    with pytest.raises(ExportCancelled):
        run_export(trio_series, tmp_path / "d", Nearest(), cancel=lambda: True)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="x4"):
        run_export(trio_series, tmp_path / "d", Nearest(), scale=4)


def test_export_with_real_enhancer(qtbot, trio_series, tiny_weights, tmp_path):
    """The viewer's Enhancer is shared with the export thread (it locks per call)."""
    import torch

    from srgan.inference.engine import Enhancer
    from viewer.export import export_series_dialog
    torch.set_num_threads(1)
    enhancer = Enhancer(weights=tiny_weights, scale=2, device="cpu")
    session = export_series_dialog(None, trio_series, enhancer, out_dir=tmp_path / "out", show_messages=False)
    assert session is not None
    with qtbot.waitSignal(session.done, timeout=120000) as sig:
        pass
    report = sig.args[0]
    assert session.thread.wait(10000)
    assert report is not None and len(report.files) == 4
    ds = pydicom.dcmread(report.files[0])
    assert ds.Rows == 512 and enhancer.provenance.weights_sha256[:16] in ds.DerivationDescription
    # the viewer can still use the same enhancer afterwards
    assert enhancer.enhance(np.ones((8, 8), np.float32)).shape == (16, 16)


def test_export_gives_every_file_the_series_lr_kind_estimate(qtbot, hfs_series, tmp_path):
    """Exported slices are enhanced as the viewer shows them: with the series' choice, though the writer calls
    the enhancer file by file (one slice each here)."""
    import torch

    from srgan.inference.engine import Enhancer
    from tests.conftest import make_tiny_weights
    from viewer.export import export_series_dialog
    torch.set_num_threads(1)
    enhancer = Enhancer(weights=make_tiny_weights(tmp_path, 2, kind_input=True), scale=2, device="cpu")
    expected = enhancer.plan_series(hfs_series)
    seen, original = [], enhancer.enhance_stack

    def recording(stack, plan=None, **kw):
        seen.append(plan)
        return original(stack, plan, **kw)

    enhancer.enhance_stack = recording
    session = export_series_dialog(None, hfs_series, enhancer, out_dir=tmp_path / "out", show_messages=False)
    with qtbot.waitSignal(session.done, timeout=120000) as sig:
        pass
    assert session.thread.wait(10000)
    assert len(sig.args[0].files) == len(hfs_series.files) == len(seen) == 35
    assert set(seen) == {expected} and expected is not None


def test_dialog_refuses_source_folder_without_starting(qtbot, local_copy, local_series, tmp_path):
    from viewer.export import export_series_dialog
    src = local_copy[0].parent
    for out in (src, src / "derived"):
        assert export_series_dialog(None, local_series, Nearest(), out_dir=out, show_messages=False) is None
    (src / "link").symlink_to(src)
    assert export_series_dialog(None, local_series, Nearest(), out_dir=src / "link", show_messages=False) is None
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x.txt").write_text("x")
    assert export_series_dialog(None, local_series, Nearest(), out_dir=busy, show_messages=False) is None
    assert not (src / "derived").exists() and sorted(p.name for p in busy.iterdir()) == ["x.txt"]


def test_png_snapshot_has_label_and_text_chunk(qtbot, tmp_path):
    import pyqtgraph as pg
    from PIL import Image

    from viewer.export import export_view_png
    widget = pg.GraphicsLayoutWidget()
    qtbot.addWidget(widget)
    vb = widget.addViewBox()
    vb.addItem(pg.ImageItem(np.zeros((64, 64), np.float32)))
    widget.resize(320, 240)
    widget.show()
    qtbot.waitExposed(widget)
    text = PROV.long()

    path = export_view_png(widget, tmp_path / "view.png", text)
    with Image.open(path) as im:
        assert im.text["Description"] == text
        assert im.text["Disclaimer"] == DISCLAIMER
        assert im.size == (320, 240)
        rgb = np.asarray(im.convert("RGB")).astype(int)
    label_colour = (np.abs(rgb - [255, 210, 0]).sum(axis=2) < 60)
    assert label_colour[int(0.7 * 240):, : 320 // 2 + 100].sum() > 50    # burned-in label, bottom left
    assert label_colour[: 240 // 2].sum() == 0
    assert [p.name for p in tmp_path.iterdir()] == ["view.png"]          # no temporary file left

    path = export_view_png(vb, tmp_path / "vb.png", text)                  # a pyqtgraph item works too
    with Image.open(path) as im:
        assert im.text["Description"] == text


class Gate(Nearest):
    """Blocks inside ``enhance`` until released, so a test can act while an export is mid-way."""

    def __init__(self):
        super().__init__()
        self.started = threading.Event()
        self.release = threading.Event()

    def enhance(self, image):
        self.started.set()
        assert self.release.wait(30)
        return super().enhance(image)


def test_dialog_asks_again_after_source_folder(qtbot, local_copy, local_series, tmp_path, monkeypatch):
    from PySide6 import QtWidgets

    from viewer.export import export_series_dialog
    src = local_copy[0].parent
    answers = [str(src), str(tmp_path / "dest")]
    (tmp_path / "dest").mkdir()
    warnings, infos = [], []
    monkeypatch.setattr(QtWidgets.QFileDialog, "getExistingDirectory", lambda *a, **k: answers.pop(0))
    monkeypatch.setattr(QtWidgets.QMessageBox, "warning", lambda parent, title, text: warnings.append(text))
    monkeypatch.setattr(QtWidgets.QMessageBox, "information", lambda parent, title, text: infos.append(text))
    session = export_series_dialog(None, local_series, Nearest())
    with qtbot.waitSignal(session.done, timeout=60000) as sig:
        pass
    assert session.wait(10000)
    report = sig.args[0]
    assert len(warnings) == 1 and "source" in warnings[0]
    assert report.out_dir == tmp_path / "dest" / f"{src.name}_AI_x2"
    assert len(list(report.out_dir.glob("*.dcm"))) == 2
    assert infos and "Wrote 2 files" in infos[0] and DISCLAIMER in infos[0]
    assert sorted(p.name for p in src.iterdir()) == sorted(f.name for f in local_copy)


def test_progress_dialog_cancel(qtbot, trio_series, tmp_path):
    from PySide6 import QtWidgets

    from viewer.export import export_series_dialog
    gate = Gate()
    session = export_series_dialog(None, trio_series, gate, out_dir=tmp_path / "out", show_messages=False)
    assert gate.started.wait(30) and session.is_running()
    with qtbot.waitSignal(session.done, timeout=60000) as sig:
        session.dialog.findChild(QtWidgets.QPushButton).click()     # the Cancel button
        gate.release.set()
    assert sig.args == [None] and session.wait(10000)
    assert gate.calls == 1 and list(tmp_path.iterdir()) == []


def test_shutdown_exports_cancels_and_waits(qtbot, trio_series, tmp_path):
    from viewer.export import export_series_dialog, running_exports, shutdown_exports
    gate = Gate()
    session = export_series_dialog(None, trio_series, gate, out_dir=tmp_path / "out", show_messages=False)
    assert gate.started.wait(30)
    assert session in running_exports()
    gate.release.set()
    assert shutdown_exports(30000)
    assert not session.is_running() and list(tmp_path.iterdir()) == []
    qtbot.waitUntil(lambda: session not in running_exports())

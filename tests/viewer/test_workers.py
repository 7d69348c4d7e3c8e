"""Background workers: folder scan, slice decoding + interpolation, enhancement with cache and cancel."""
import numpy as np
import pytest

from srgan.inference.engine import Enhancer, interpolate
from viewer.jobs import interpolation_key
from viewer.workers import (
    ArrayCache,
    EnhanceConfig,
    EnhanceWorker,
    FolderScanner,
    SliceLoader,
    nearest_first,
    series_key,
)


@pytest.fixture
def worker(qtbot, tiny_weights):
    w = EnhanceWorker(EnhanceConfig(weights=str(tiny_weights)), threads=1)
    w.start()
    yield w
    w.stop()


def test_nearest_first_order():
    assert nearest_first(2, 5) == [2, 3, 1, 4, 0]
    assert nearest_first(0, 3) == [0, 1, 2]
    assert nearest_first(0, 1) == [0]
    assert sorted(nearest_first(7, 12)) == list(range(12))


def test_array_cache_is_bounded_by_bytes():
    cache = ArrayCache(max_bytes=3 * 400)
    for i in range(5):
        cache.put(i, np.zeros(100, np.float32))  # 400 bytes each
    assert len(cache) == 3 and cache.get(0) is None and cache.get(4) is not None
    cache.get(2)  # touch → most recent
    cache.put(5, np.zeros(100, np.float32))
    assert cache.get(2) is not None and cache.get(3) is None


def test_scanner_reports_a_missing_folder(qtbot, tmp_path):
    scanner = FolderScanner(tmp_path / "nope")
    with qtbot.waitSignal(scanner.failed, timeout=10_000) as blocker:
        scanner.start()
    scanner.wait()
    folder, message = blocker.args
    assert "nope" in message


def test_scanner_reports_a_folder_without_dicom(qtbot, tmp_path):
    (tmp_path / "notes.txt").write_text("not an image")
    scanner = FolderScanner(tmp_path)
    with qtbot.waitSignal(scanner.failed, timeout=10_000) as blocker:
        scanner.start()
    scanner.wait()
    assert str(tmp_path) in blocker.args[1]


def test_scanner_finds_the_real_series(qtbot, hfs_folder):
    scanner = FolderScanner(hfs_folder)
    with qtbot.waitSignal(scanner.scanned, timeout=30_000) as blocker:
        scanner.start()
    scanner.wait()
    result = blocker.args[1]
    assert [s.shape for s in result.series] == [(1, 35, 256, 256)]


def test_loader_decodes_current_slice_first_with_its_interpolation(qtbot, hfs_series):
    loader = SliceLoader()
    loader.set_scale(2)
    loader.start()
    got = []
    loader.loaded.connect(lambda *args: got.append(args))
    try:
        loader.request(hfs_series, 0, 17, prefetch=2)
        qtbot.waitUntil(lambda: bool(got), timeout=20_000)
        key, original, interpolated = got[0]
        assert key == (series_key(hfs_series), 0, 17), "the requested slice comes first"
        np.testing.assert_array_equal(original, hfs_series.pixels(0, 17))
        np.testing.assert_allclose(interpolated, interpolate(original, 2, "zerofill"), rtol=1e-5, atol=1e-3)
        qtbot.waitUntil(lambda: not loader.busy, timeout=20_000)
        neighbours = [(series_key(hfs_series), 0, s) for s in (16, 18)]
        assert {k[2] for k in neighbours if loader.originals.get(k) is not None} == {16, 18}
        assert loader.originals.get((series_key(hfs_series), 0, 0)) is None, "prefetch=2 loads only two neighbours"
        # another comparison interpolation is cached under its own key, beside the first
        loader.set_method("bicubic")
        got.clear()
        loader.request(hfs_series, 0, 17, prefetch=0)
        key = (series_key(hfs_series), 0, 17)
        qtbot.waitUntil(lambda: any(g[0] == key for g in got), timeout=20_000)   # neighbours' signals may trail
        again = next(g[2] for g in got if g[0] == key)
        np.testing.assert_allclose(again, interpolate(original, 2, "bicubic"), rtol=1e-5, atol=1e-3)
        both = [loader.interpolations.get(interpolation_key(key, 2, m)) for m in ("zerofill", "bicubic")]
        assert all(b is not None for b in both) and np.abs(both[0] - both[1]).max() > 1.0
        with pytest.raises(ValueError, match="zerofill"):
            loader.set_method("lanczos")
    finally:
        loader.stop()


def test_worker_enhances_the_requested_slice_first(qtbot, worker, hfs_series, tiny_weights):
    with qtbot.waitSignal(worker.enhanced, timeout=60_000) as blocker:
        worker.request(hfs_series, 0, 17, whole_volume=False)
    key, image = blocker.args
    assert key == (series_key(hfs_series), 0, 17, str(tiny_weights), 2, "model default")
    assert image.shape == (512, 512) and image.dtype == np.float32
    reference = Enhancer(weights=tiny_weights, device="cpu", threads=1).enhance(hfs_series.pixels(0, 17))
    np.testing.assert_allclose(image, reference, rtol=1e-4, atol=1e-2)
    assert worker.cached(hfs_series, 0, 17) is image
    assert worker.engine is not None and worker.engine.card["sha256"]


def test_worker_emits_model_info_and_progress(qtbot, worker, hfs_series):
    progress = []
    worker.progress.connect(lambda d, t: progress.append((d, t)))
    with qtbot.waitSignal(worker.model_ready, timeout=60_000) as blocker:
        worker.request(hfs_series, 0, 10, whole_volume=False)
    info = blocker.args[0]
    assert "not for primary diagnosis" in info["provenance"] and info["device"] == "cpu"
    assert f"runtime {info['runtime']} {info['precision']}" in info["provenance"]
    assert info["runtime"] == worker.engine.generator.name and info["precision"] in ("fp32", "bf16")
    qtbot.waitUntil(lambda: (1, 1) in progress, timeout=60_000)
    assert progress[0] == (0, 1)


def test_cancel_clears_the_queue(qtbot, worker, hfs_series):
    got = []
    worker.enhanced.connect(lambda key, image: got.append(key[2]))

    def cancel_after_first(key, image):
        worker.cancel()

    worker.enhanced.connect(cancel_after_first)
    worker.request(hfs_series, 0, 5, whole_volume=True)
    qtbot.waitUntil(lambda: bool(got), timeout=60_000)
    qtbot.waitUntil(lambda: not worker.busy, timeout=60_000)
    assert worker.pending() == 0
    assert got[0] == 5, "the current slice comes first"
    assert len(worker.results) <= 2, "at most the slice in flight at the cancel is finished"
    assert len(got) == 1, "a result finished after the cancel is not emitted"


def test_worker_reports_weights_it_cannot_load(qtbot, hfs_series, tmp_path):
    w = EnhanceWorker(EnhanceConfig(weights=str(tmp_path / "missing.safetensors")), threads=1)
    w.start()
    try:
        with qtbot.waitSignal(w.failed, timeout=30_000) as blocker:
            w.request(hfs_series, 0, 0)
        assert "missing" in blocker.args[0]
        qtbot.waitUntil(lambda: not w.busy, timeout=10_000)
        assert w.pending() == 0, "after an error nothing more is tried"
    finally:
        w.stop()


def test_reconfigure_changes_the_cache_key(qtbot, worker, hfs_series, tiny_weights_x4):
    worker.configure(EnhanceConfig(scale=4, weights=str(tiny_weights_x4)))
    with qtbot.waitSignal(worker.enhanced, timeout=60_000) as blocker:
        worker.request(hfs_series, 0, 3, whole_volume=False)
    key, image = blocker.args
    assert key[3:5] == (str(tiny_weights_x4), 4) and image.shape == (1024, 1024)


def test_many_signal_emissions_do_not_abort():
    """PySide6 6.12.0 drops a reference to True on every Python-side emit and aborts with "bool_dealloc" long
    before 100 000 emissions; pyproject.toml excludes it. This guards the installed version."""
    import subprocess
    import sys

    code = ("import viewer\n"
            "from PySide6 import QtCore\n"
            "class O(QtCore.QObject):\n    sig = QtCore.Signal(int)\n"
            "o = O()\no.sig.connect(lambda v: None)\n"
            "for i in range(100_000):\n    o.sig.emit(i)\n"
            "print('alive')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "alive" in out.stdout, out.stderr[-500:]


def test_worker_gives_every_slice_the_series_lr_kind_estimate(qtbot, hfs_series, tmp_path):
    """With an LR-kind model the viewer enhances each slice with one estimate for the volume, the one
    ``srgan enhance`` and the series export make (``Enhancer.p_kspace`` on the slices ``kind_sample`` picks)."""
    from srgan.inference.plan import kind_sample
    from tests.conftest import make_tiny_weights
    weights = make_tiny_weights(tmp_path, 2, kind_input=True)
    w = EnhanceWorker(EnhanceConfig(weights=str(weights)), threads=1)
    w.start()
    try:
        with qtbot.waitSignal(w.enhanced, timeout=60_000) as blocker:
            w.request(hfs_series, 0, 17, whole_volume=False)
        ref = Enhancer(weights=weights, device="cpu", threads=1)
        n = hfs_series.shape[1]
        sample = np.stack([hfs_series.pixels(0, int(k)) for k in kind_sample(n)])
        kind = ref.p_kspace(sample)
        own = ref.p_kspace(hfs_series.pixels(0, 17)[None])
        assert kind is not None and abs(kind - own) > 1e-3  # the test can tell the two apart
        np.testing.assert_allclose(blocker.args[1], ref.enhance(hfs_series.pixels(0, 17), ref.plan(sample)), atol=1e-4)
    finally:
        w.stop()


def _count_stacks(monkeypatch, block=None):
    """Record the size of every ``Enhancer.enhance_stack`` call (and whether it was abandoned); ``block``: a
    function called before a multi-slice call runs (the test holds the batch there)."""
    calls = []
    original = Enhancer.enhance_stack

    def counted(self, images, plan=None, **kw):
        calls.append({"n": len(images), "keys": list(kw.get("keys") or []), "cancelled": False})
        if block is not None and len(images) > 1:
            block()
        try:
            return original(self, images, plan, **kw)
        except InterruptedError:
            calls[-1]["cancelled"] = True
            raise

    monkeypatch.setattr(Enhancer, "enhance_stack", counted)
    return calls


def test_worker_enhances_the_rest_of_the_series_in_batches(qtbot, hfs_series, tiny_weights, monkeypatch):
    calls = _count_stacks(monkeypatch)
    config = EnhanceConfig(weights=str(tiny_weights), consistency="bicubic")
    w = EnhanceWorker(config, threads=1, batch=4)
    got = {}
    w.enhanced.connect(lambda key, image: got.setdefault(key[2], image))
    w.start()
    try:
        w.request(hfs_series, 0, 17)
        n = hfs_series.shape[1]
        qtbot.waitUntil(lambda: len(got) == n and not w.busy, timeout=120_000)
    finally:
        w.stop()
    assert list(got) == nearest_first(17, n), "emitted in the reading order: current slice, then nearest first"
    # the current slice alone, then the 34 others in batches of 4 (the last holds the 2 left), each slice once
    assert [c["n"] for c in calls] == [1] + [4] * 8 + [2]
    assert [k for c in calls for k in c["keys"]] == [(0, s) for s in nearest_first(17, n)]
    assert not any(c["cancelled"] for c in calls)
    monkeypatch.undo()
    ref = Enhancer(weights=tiny_weights, device="cpu", threads=1, consistency="bicubic")
    plan = ref.plan_series(hfs_series)
    for s in (17, 16, 0, 34):
        one = ref.enhance(hfs_series.pixels(0, s), plan, key=(0, s))
        scale = float(np.abs(one).max())
        assert np.abs(got[s] - one).max() <= 1e-5 * scale, f"slice {s}: batched ≠ one by one"
        assert w.cached(hfs_series, 0, s) is got[s]


def test_a_cancel_while_a_batch_runs_emits_nothing_of_it(qtbot, hfs_series, tiny_weights, monkeypatch):
    import threading

    started, release = threading.Event(), threading.Event()

    def hold() -> None:
        if not started.is_set():
            started.set()
            release.wait(30)

    calls = _count_stacks(monkeypatch, block=hold)
    w = EnhanceWorker(EnhanceConfig(weights=str(tiny_weights)), threads=1, batch=4)
    got, failed = [], []
    w.enhanced.connect(lambda key, image: got.append(key[2]))
    w.failed.connect(failed.append)
    w.start()
    try:
        w.request(hfs_series, 0, 10)
        assert started.wait(60), "the first background batch started"
        in_flight = calls[-1]["keys"]
        assert len(in_flight) == 4
        w.request(hfs_series, 0, 30, whole_volume=False)  # the reader moved on while the batch runs
        release.set()
        qtbot.waitUntil(lambda: 30 in got and not w.busy, timeout=60_000)
        qtbot.wait(200)  # any queued signal of the stale batch would have arrived by now
    finally:
        release.set()
        w.stop()
    assert calls[1]["cancelled"], "the batch in flight was abandoned through enhance_stack's cancel callback"
    assert not {s for _, s in in_flight} & set(got), "nothing of the stale batch is emitted"
    assert not any(w.cached(hfs_series, 0, s) is not None for _, s in in_flight), "nor cached"
    assert got == [10, 30] and failed == []

"""The viewer's Qt-free model and job scheduling: queue order, generations, cache keys, the right pane's state and
the corner text (the plan's text is ``Plan.lines()``). No display, no QApplication."""
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

import numpy as np
import pytest

from srgan.inference.plan import Plan, decide
from viewer.jobs import EnhanceConfig, EnhanceScheduler, JobQueue, nearest_first, result_key
from viewer.model import DISAGREEMENT_LABEL, ViewerModel, reconfigured
from viewer.state import Plane, ViewState
from viewer.window_level import WindowLevel


@dataclass(frozen=True)
class FakeSeries:
    uid: str
    shape: tuple = (1, 9, 4, 4)
    pixel_spacing: tuple = (1.0, 1.0)


def test_model_and_jobs_import_without_qt():
    code = ("import sys\n"
            "for name in ('PySide6', 'pyqtgraph'):\n    sys.modules[name] = None  # any import of them fails\n"
            "import viewer.jobs, viewer.model\n"
            "print(sorted(m for m in ('PySide6', 'pyqtgraph', 'torch') if sys.modules.get(m) is not None))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_requests_are_queued_nearest_first_skipping_cached_slices():
    s = EnhanceScheduler(EnhanceConfig(weights="w.safetensors"))
    series = FakeSeries("1.2")
    s.results.put(s.key(series, 0, 6), np.zeros((8, 8), np.float32))
    assert s.request(series, 0, 5) == (1, 9), "the cached slice counts as done"
    assert [j.slice for j in s.jobs()] == [s_ for s_ in nearest_first(5, 9) if s_ != 6] == [5, 4, 7, 3, 8, 2, 1, 0]
    assert s.request(series, 0, 2, whole_volume=False) == (0, 1)
    assert [j.slice for j in s.jobs()] == [2]


def test_a_new_request_makes_the_running_job_stale():
    s = EnhanceScheduler()
    series = FakeSeries("1.2")
    s.request(series, 0, 4)
    job = s.next(timeout=0)
    assert job.slice == 4 and s.busy and s.is_current(job)
    assert s.advance(job) == (1, 9)
    s.request(series, 0, 0)  # the reader moved on
    assert not s.is_current(job) and s.advance(job) is None, "a stale job's progress is dropped"
    assert [j.slice for j in s.jobs()][:2] == [0, 1]
    s.cancel()
    assert s.pending() == 0 and s.next(timeout=0) is None and not s.busy
    s.request(series, 0, 3)
    config = s.config
    s.configure(EnhanceConfig(scale=4))
    assert s.pending() == 0, "a new model drops the queue"
    assert s.store(job, config, np.ones((2, 2), np.float32)) is None, "another model's output is not kept"
    assert len(s.results) == 0


def test_a_worker_thread_emits_only_the_latest_generation():
    """The loop ``viewer.workers`` runs, in a plain thread: results of superseded requests never come out."""
    q = JobQueue()
    started, release, emitted = threading.Event(), threading.Event(), []

    def run():
        while (job := q.next()) is not None:
            if job.slice == 0:
                started.set()
                release.wait(10)
            if q.is_current(job):
                emitted.append((job.generation, job.slice))

    worker = threading.Thread(target=run)
    worker.start()
    series = FakeSeries("1.2", (1, 3, 4, 4))
    q.replace(series, 0, [0, 1, 2])
    assert started.wait(10)
    q.replace(series, 0, [2, 1])  # while slice 0 of the first request runs
    release.set()
    for _ in range(200):
        if len(emitted) == 2:
            break
        time.sleep(0.05)
    q.stop()
    worker.join(10)
    assert not worker.is_alive()
    assert emitted == [(2, 2), (2, 1)]


def test_spread_runs_right_after_its_slice_once():
    s = EnhanceScheduler()
    series = FakeSeries("1.2")
    s.request(series, 0, 4)
    assert s.request_spread(series, 0, 4) is True
    assert s.request_spread(series, 0, 4) is True
    kinds = [(j.slice, j.kind) for j in s.jobs()]
    assert kinds[:3] == [(4, "enhance"), (4, "spread"), (5, "enhance")]
    assert sum(k == "spread" for _, k in kinds) == 1, "asked twice, queued once"
    s.spreads.put(s.key(series, 0, 4), np.zeros((2, 2), np.float32))
    assert s.request_spread(series, 0, 4) is False, "cached: nothing queued"


def test_cache_keys_tell_models_scales_and_consistency_apart_not_devices():
    series = FakeSeries("1.2")
    base = EnhanceConfig(scale=2, weights="a.safetensors")
    key = result_key(series, 0, 3, base)
    assert key == ("1.2#0", 0, 3, "a.safetensors", 2, "model default")
    others = [EnhanceConfig(scale=4, weights="a.safetensors"), EnhanceConfig(scale=2, weights="b.safetensors"),
              EnhanceConfig(scale=2, weights="a.safetensors", consistency="kspace"), EnhanceConfig(scale=2)]
    assert len({result_key(series, 0, 3, c) for c in others} | {key}) == 5
    assert result_key(series, 0, 3, EnhanceConfig(scale=2, weights="a.safetensors", device="cpu")) == key
    s = EnhanceScheduler(base)
    s.results.put(key, np.ones((2, 2), np.float32))
    assert s.cached(series, 0, 3) is not None and s.cached(series, 0, 3, others[2]) is None


def test_reconfigured_keeps_what_is_left_out_and_drops_weights_of_another_scale():
    old = EnhanceConfig(scale=2, weights="w2.safetensors", device="cpu", consistency="bicubic")
    assert reconfigured(old, consistency="kspace") == EnhanceConfig(2, None, "w2.safetensors", "cpu", "kspace")
    assert reconfigured(old, scale=4) == EnhanceConfig(4, None, None, "cpu", "bicubic")
    assert reconfigured(old, scale=4, weights="w4.safetensors").weights == "w4.safetensors"
    assert reconfigured(old, device="cuda") == EnhanceConfig(2, None, "w2.safetensors", "cuda", "bicubic")


def _model(series=None, **config) -> ViewerModel:
    view = ViewState()
    m = ViewerModel(view, EnhanceConfig(**config))
    if series is not None:
        n_vol, n_sl, rows, cols = series.shape
        dr, dc = (float(v) for v in series.pixel_spacing)
        view.set_series("x", n_vol, n_sl, Plane(rows, cols, dr, dc), WindowLevel(300, 600), viewport_px=(500, 500))
        m.set_series(series)
    return m


def test_right_pane_state_and_settling():
    m = _model(FakeSeries("1.2"))
    changes = []
    m.subscribe(lambda model, changed: changes.append(changed))
    assert m.right_state(has_enhanced=True) == "interpolated", "enhancement off"
    m.set_enhancing(True)
    assert "enhancing" in changes[-1]
    assert m.right_state(False) == "enhancing" and m.right_state(True) == "ready"
    m.set_enhance_error("CUDA not available")
    assert m.right_state(False) == "error" and not m.wants_enhancement()
    assert m.right_state(True) == "ready", "a slice enhanced before the error is still shown"
    m.view.set_enhanced(False)  # key E
    assert m.right_state(True) == "interpolated"

    m.view.set_enhanced(True)
    m.set_enhancing(True)  # asking again forgets the error
    assert m.enhance_error is None and m.wants_enhancement()
    m.mark_shown(True, True, "enhancing")
    assert not m.is_settled(), "waiting for the model"
    m.mark_shown(True, True, "ready")
    assert m.is_settled()
    m.view.set_slice(0)
    assert not m.is_settled(), "another slice"
    m.mark_shown(True, True, "error")
    assert m.is_settled()
    m.set_enhancing(False)
    m.mark_shown(True, False, "interpolated")
    assert not m.is_settled(), "the interpolation is not drawn yet"


def test_spread_is_wanted_only_over_an_ai_image():
    m = _model(FakeSeries("1.2"))
    m.set_disagreement(True)
    assert not m.wants_spread(), "enhancement off"
    m.set_enhancing(True)
    assert m.wants_spread()
    m.view.set_enhanced(False)
    assert not m.wants_spread()


def test_enhanced_label_takes_the_plan_lines_and_keeps_the_disclaimer_last(hfs_series):
    m = _model(hfs_series, weights="tiny.safetensors", consistency="auto")
    m.set_enhancing(True)
    before = m.enhanced_label("ready")
    assert before[0] == "AI-enhanced ×2" and before[-2:] == ["data consistency: auto", "not for primary diagnosis"]
    assert m.enhanced_label("enhancing") == ["Interpolated ×2 (zero-fill)", "AI enhancing…"]
    seen = []
    m.subscribe(lambda _, changed: seen.append(changed))
    m.set_interpolation("bicubic")
    assert m.enhanced_label("enhancing") == ["Interpolated ×2 (bicubic)", "AI enhancing…"]
    assert seen[-1] == {"interpolation"} and "(bicubic)" in m.provenance_text()
    with pytest.raises(ValueError, match="lanczos"):
        m.set_interpolation("lanczos")
    m.set_interpolation("zerofill")
    assert "(zero-fill)" in m.provenance_text()

    plan = decide("auto", 0.93, 2, log_ratio=-0.8)
    assert m.add_plan(result_key(hfs_series, 0, -1, m.config), plan) is True
    assert m.add_plan(result_key(hfs_series, 0, -1, EnhanceConfig(scale=4)), Plan(4, "off", None, None)) is False
    label = m.enhanced_label("ready")
    assert label == ["AI-enhanced ×2", *plan.lines(), "not for primary diagnosis"]
    assert "data consistency: auto → k-space" in label

    m.set_config(EnhanceConfig(weights="tiny.safetensors", consistency="bicubic"))
    assert m.plan() is None, "the plan of another consistency is not shown"
    assert m.enhanced_label("ready")[-2] == "data consistency: bicubic"


def test_enhanced_label_names_the_runtime_and_precision_the_model_ran_in():
    m = _model(FakeSeries("1.2"), weights="tiny.safetensors", consistency="off")
    m.set_enhancing(True)
    assert not any(line.startswith("runtime:") for line in m.enhanced_label("ready")), "no model loaded yet"
    info = {"card": {"name": "tiny", "sha256": "abcdef0123"}, "consistency": "off", "config": m.config,
            "label": "tiny", "device": "cpu", "provenance": "p", "runtime": "openvino", "precision": "bf16"}
    m.set_model_info(info)
    label = m.enhanced_label("ready")
    assert label[:3] == ["AI-enhanced ×2", "tiny · abcdef01", "runtime: openvino bf16"]
    assert label[-1] == "not for primary diagnosis"
    assert not any(line.startswith("runtime:") for line in m.enhanced_label("enhancing"))
    m.set_model_info({**info, "device": "cuda:0", "runtime": "torch", "precision": "fp32"})
    assert "runtime: torch fp32 on cuda:0" in m.enhanced_label("ready")


def test_consistency_in_force_follows_the_loaded_model():
    m = _model(FakeSeries("1.2"), weights="tiny.safetensors")
    assert m.consistency_in_force() == "model default"
    info = {"card": {"name": "tiny", "sha256": "abcdef0123"}, "consistency": "kspace", "config": m.config,
            "label": "tiny", "device": "cpu", "provenance": "p"}
    m.set_model_info(info)
    assert m.consistency_in_force() == "k-space", "the card's default, resolved"
    assert m.model_name_version() == ("tiny", "abcdef01")
    m.set_config(EnhanceConfig(weights="tiny.safetensors", device="cuda"))
    assert m.model_info is info, "the same weights on another device make the same slices"
    m.set_config(EnhanceConfig(weights="tiny.safetensors", consistency="off"))
    assert m.model_info is None and m.consistency_in_force() == "off"


def test_corners_of_a_real_series(hfs_series):
    m = _model(hfs_series)
    m.set_enhancing(True)
    m.set_disagreement(True)
    corners = m.corners("enhancing", None)
    assert corners["left"]["top_right"] == (["Original", "MR"], "dim")
    assert corners["left"]["bottom_left"][0][0] == "Im 18/35"
    lines, tone = corners["right"]["top_right"]
    assert lines[:2] == ["Interpolated ×2 (zero-fill)", "AI enhancing…"] and tone == "ai"
    assert corners["right"]["top_left"][0][-2:] == [DISAGREEMENT_LABEL, "waiting for the enhanced slice…"]
    assert m.corners("ready", None)["right"]["top_left"][0][-1] == "computing… (8 flips/rotations)"
    assert m.corners("ready", 12.345)["right"]["top_left"][0][-1] == "yellow → magenta: s.d. 0 → 12.3"
    assert m.corners("error", None)["right"]["top_right"][1] == "error"
    assert m.corners("interpolated", None)["right"]["top_right"][1] == "text"
    assert corners["right"]["bottom_right"][0][-1].startswith("512×512")
    assert m.markers() == dict(left="A", right="P", top="S", bottom="I")
    empty = ViewerModel(ViewState())
    assert all(lines == [] for side in empty.corners("interpolated").values() for lines, _ in side.values())



@dataclass(frozen=True)
class _Frame:
    rows: int
    cols: int


@dataclass(frozen=True)
class FramedSeries:
    """A series whose slice ``odd`` has another size in its header (parts of a series may differ)."""
    uid: str
    odd: int = -1
    shape: tuple = (1, 9, 4, 4)
    pixel_spacing: tuple = (1.0, 1.0)

    def frame(self, volume: int, slice_: int) -> _Frame:
        return _Frame(8, 8) if slice_ == self.odd else _Frame(4, 4)


def _batches(s: EnhanceScheduler, size: int) -> list[list[tuple[int, str]]]:
    out = []
    while batch := s.next_batch(size, timeout=0):
        out.append([(j.slice, j.kind) for j in batch])
    return out


def test_batches_are_the_current_slice_alone_then_nearest_first_of_one_size():
    s = EnhanceScheduler()
    series = FakeSeries("1.2")
    s.request(series, 0, 4)  # nearest first: 4, 5, 3, 6, 2, 7, 1, 8, 0
    assert [[k for k, _ in b] for b in _batches(s, 3)] == [[4], [5, 3, 6], [2, 7, 1], [8, 0]]
    s.request(series, 0, 4)
    assert [[k for k, _ in b] for b in _batches(s, 1)] == [[k] for k in nearest_first(4, 9)], "size 1: one by one"
    # the TTA spread runs right after its slice, alone, and a batch never takes it in
    s.request(series, 0, 4)
    s.request_spread(series, 0, 4)
    assert _batches(s, 4)[:3] == [[(4, "enhance")], [(4, "spread")], [(5, "enhance"), (3, "enhance"),
                                                                      (6, "enhance"), (2, "enhance")]]
    # a slice of another size (from its header) ends a batch and starts its own
    odd = FramedSeries("1.3", odd=6)
    s.request(odd, 0, 4)
    assert [[k for k, _ in b] for b in _batches(s, 3)] == [[4], [5, 3], [6], [2, 7, 1], [8, 0]]
    # cached slices are not queued, so a batch is made of slices still to do
    s.request(series, 0, 4)
    s.results.put(s.key(series, 0, 3), np.zeros((8, 8), np.float32))
    s.request(series, 0, 4)
    assert [[k for k, _ in b] for b in _batches(s, 3)][:2] == [[4], [5, 6, 2]]


def test_a_new_request_makes_a_batch_in_flight_stale_and_drops_the_queued_ones():
    s = EnhanceScheduler()
    series = FakeSeries("1.2")
    s.request(series, 0, 4)
    assert [j.slice for j in s.next_batch(3, timeout=0)] == [4]
    batch = s.next_batch(3, timeout=0)
    assert [j.slice for j in batch] == [5, 3, 6] and all(s.is_current(j) for j in batch) and s.busy
    s.request(series, 0, 0)  # the reader moved on while the batch runs
    assert not any(s.is_current(j) for j in batch), "the whole batch is stale: its cancel callback fires"
    assert [s.advance(j) for j in batch] == [None] * 3, "a stale batch's progress is dropped"
    fresh = s.next_batch(3, timeout=0)
    assert [j.slice for j in fresh] == [0] and fresh[0].alone, "the new request's slice first, alone"
    assert {j.generation for j in s.next_batch(8, timeout=0)} == {fresh[0].generation}
    config = s.config
    s.configure(EnhanceConfig(scale=4))
    assert s.next_batch(3, timeout=0) == [], "another model drops every queued batch"
    assert s.store(batch[0], config, np.ones((2, 2), np.float32)) is None
    s.request(series, 0, 2)
    s.stop()
    assert s.next_batch(3, timeout=0) == []

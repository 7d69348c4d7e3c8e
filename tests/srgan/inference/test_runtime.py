"""Where the generator runs (``srgan.inference.runtime``): each installed runtime against torch on real slices,
the on-disk graph cache, ``auto``, and the fallback to torch. A runtime that is not installed is skipped."""
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from srgan.errors import InputError
from srgan.inference import runtime as rt
from srgan.inference.engine import Enhancer
from srgan.normalize import Normalizer
from srgan.options import RUNTIMES
from tests.conftest import make_tiny_weights

REPO = Path(__file__).resolve().parents[3]
GRAPH_RUNTIMES = [
    pytest.param(name, marks=pytest.mark.skipif(rt.runtime_version(name) is None, reason=f"{name} not installed"))
    for name in rt.EXPORTED
]
TOL = 1e-4  # max |difference| from torch fp32 in normalised units


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    """Every test builds its graphs in its own cache folder."""
    d = tmp_path / "runtime-cache"
    monkeypatch.setenv(rt.CACHE_ENV, str(d))
    return d


def kaggle_slice(shared_data, h=120, w=104) -> np.ndarray:
    """A real 8-bit slice cut to a non-square size (the graphs have dynamic height and width)."""
    jpg = sorted((shared_data / "kaggle-brain-tumor-mri" / "meningioma").glob("*.jpg"))[0]
    a = np.asarray(Image.open(jpg).convert("L"), dtype=np.float32)
    y0, x0 = (a.shape[0] - h) // 2, (a.shape[1] - w) // 2
    return a[y0 : y0 + h, x0 : x0 + w]


def normalised(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(Normalizer.fit(image).forward(image).astype(np.float32))[None, None]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Tiny ×2 weights without and with the LR-kind input, tiny ×4 progressive, the tiny seed generator (exported
    whole) and the bundled ×2 model."""
    from srgan.models.weights import bundled_weights

    d = tmp_path_factory.mktemp("rt-weights")
    return {
        "tiny": make_tiny_weights(d / "a", 2),
        "tiny-kind": make_tiny_weights(d / "b", 2, kind_input=True),
        "tiny-x4": make_tiny_weights(d / "c", 4, upsampler="progressive"),
        "tiny-seed-x4": make_tiny_weights(d / "d", 4, arch="seed"),
        "bundled-x2": bundled_weights(2),
    }


def scale_of(name: str) -> int:
    return 4 if "x4" in name else 2


@pytest.mark.parametrize("runtime", GRAPH_RUNTIMES)
@pytest.mark.parametrize("model", ["tiny", "tiny-kind", "tiny-x4", "tiny-seed-x4", "bundled-x2"])
def test_fp32_output_equals_torch_on_a_real_slice(runtime, model, models, shared_data):
    s = scale_of(model)
    fp32 = {"device": "cpu", "consistency": "off", "precision": "fp32"}  # the bundled cards recommend bf16
    ref = Enhancer(weights=models[model], scale=s, runtime="torch", **fp32)
    got = Enhancer(weights=models[model], scale=s, runtime=runtime, **fp32)
    assert got.generator.name == runtime and got.generator.precision == "fp32"
    assert got.provenance.runtime == runtime and got.provenance.precision == "fp32"
    x = normalised(kaggle_slice(shared_data))
    kind = torch.full((1,), 0.3) if got.has_kind_input else None
    with torch.inference_mode():
        a, b = ref.generator(x, None, kind), got.generator(x, None, kind)
        # the LR-kind estimate made from the slice itself (kind None) goes through the same path
        c, d = ref.generator(x), got.generator(x)
    assert a.shape == b.shape == (1, 1, 120 * s, 104 * s)
    assert float((a - b).abs().max()) <= TOL and float((c - d).abs().max()) <= TOL
    # and the whole engine (normalisation, plan, generator, mapped back) in units of the slice's span
    image = kaggle_slice(shared_data, 88, 72)
    span = Normalizer.fit(image).span
    assert np.abs(ref.enhance(image) - got.enhance(image)).max() / span <= TOL


@pytest.mark.parametrize("runtime", GRAPH_RUNTIMES)
def test_tiles_and_batches_run_on_the_runtime(runtime, shared_data, tmp_path):
    """Tiles (cut with their margins, handed the whole slice's zero-filled base and LR-kind input) and stacks of
    several slices give torch's untiled outputs."""
    w = make_tiny_weights(tmp_path, 2, kind_input=True, base="zerofill")
    whole = Enhancer(weights=w, scale=2, device="cpu", runtime="torch", tile=512, consistency="off")
    tiled = Enhancer(weights=w, scale=2, device="cpu", runtime=runtime, tile=24, margin=8, consistency="off")
    assert tiled.generator.name == runtime
    stack = np.stack([kaggle_slice(shared_data, 70, 61), kaggle_slice(shared_data, 70, 61)[::-1]])
    a, b = whole.enhance_stack(stack), tiled.enhance_stack(stack)
    assert a.shape == b.shape == (2, 140, 122)
    assert np.abs(a - b).max() / Normalizer.fit(stack[0]).span <= TOL


@pytest.mark.parametrize("runtime", GRAPH_RUNTIMES)
def test_the_second_build_reads_the_cache_without_exporting(runtime, models, cache, monkeypatch):
    first = Enhancer(weights=models["tiny-kind"], scale=2, device="cpu", runtime=runtime)
    assert first.generator.exported and first.generator.graph.parent == cache
    stamp = first.generator.graph.stat().st_mtime_ns

    def no_export(*a, **k):
        raise AssertionError("exported again")

    monkeypatch.setattr(rt, "export_graph", no_export)
    second = Enhancer(weights=models["tiny-kind"], scale=2, device="cpu", runtime=runtime)
    assert second.generator.name == runtime and not second.generator.exported
    assert second.generator.graph == first.generator.graph and second.generator.graph.stat().st_mtime_ns == stamp
    # another model's weights get their own graph
    other = Enhancer(weights=models["tiny"], scale=2, device="cpu", runtime="torch")
    assert other.generator.name == "torch" and len(list(cache.glob(f"{runtime}-*.onnx"))) == 1


@pytest.mark.parametrize("damage", ["truncated", "overwritten"])
@pytest.mark.parametrize("runtime", GRAPH_RUNTIMES)
def test_a_corrupt_cache_file_is_built_again(runtime, damage, models, shared_data):
    first = Enhancer(weights=models["tiny-kind"], scale=2, device="cpu", runtime=runtime)
    path = first.generator.graph
    data = bytearray(path.read_bytes())
    if damage == "truncated":
        data = data[: len(data) // 2]
    else:  # the end of the file holds the last layers' weights: still a graph, but a wrong one
        data[-600:-100] = b"\x7f" * 500
    path.write_bytes(bytes(data))
    again = Enhancer(weights=models["tiny-kind"], scale=2, device="cpu", runtime=runtime)
    assert again.generator.name == runtime and again.generator.exported
    x = normalised(kaggle_slice(shared_data))
    with torch.inference_mode():
        assert float((again.generator(x) - first.generator(x)).abs().max()) <= TOL


def test_a_graph_is_written_atomically(models, cache, monkeypatch):
    """An export that fails midway leaves neither the graph nor a temporary file behind."""
    from srgan.models.weights import load_weights

    model, _ = load_weights(models["tiny"])

    def half_then_fail(module, args, path, **kw):
        Path(path).write_bytes(b"half a graph")
        raise RuntimeError("disk full")

    monkeypatch.setattr(torch.onnx, "export", half_then_fail)
    dest = cache / "g.onnx"
    with pytest.raises(RuntimeError, match="disk full"):
        rt.export_graph(model, dest)
    assert list(cache.iterdir()) == []


@pytest.mark.skipif(rt.runtime_version("onnxruntime") is None, reason="onnxruntime not installed")
def test_several_processes_building_the_same_graph_at_once_leave_one_good_file(models, cache):
    code = (
        "import sys; from srgan.inference.engine import Enhancer; "
        "e = Enhancer(weights=sys.argv[1], scale=2, device='cpu', runtime='onnxruntime', threads=1); "
        "print(e.generator.name)"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(models["tiny"])], env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=300)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0, 0] and outs == ["onnxruntime", "onnxruntime"]
    assert [p.name for p in cache.iterdir()] == [p.name for p in cache.glob("onnxruntime-*.onnx")]
    assert len(list(cache.iterdir())) == 1
    e = Enhancer(weights=models["tiny"], scale=2, device="cpu", runtime="onnxruntime")
    assert e.generator.name == "onnxruntime" and not e.generator.exported


def _not_installed(monkeypatch, name):
    real = rt.runtime_version
    monkeypatch.setattr(rt, "runtime_version", lambda n: None if n == name else real(n))


def _import_fails(monkeypatch, name):
    monkeypatch.setitem(sys.modules, name, None)  # ``import name`` raises ImportError
    monkeypatch.setattr(rt, "runtime_version", lambda n: "0.0")


def _run_fails(monkeypatch, name):
    def broken(*a, **k):
        def run(feeds):
            raise RuntimeError("illegal instruction in a kernel")

        return run

    monkeypatch.setattr(rt, "_session", broken)
    monkeypatch.setattr(rt, "runtime_version", lambda n: "0.0")


@pytest.mark.parametrize("failure", [_not_installed, _import_fails, _run_fails])
@pytest.mark.parametrize("runtime", rt.EXPORTED)
def test_a_missing_or_failing_runtime_falls_back_to_torch_with_one_log_line(
    runtime, failure, models, shared_data, monkeypatch, caplog
):
    failure(monkeypatch, runtime)
    lines: list[str] = []
    e = Enhancer(weights=models["tiny-kind"], scale=2, device="cpu", runtime=runtime, log=lines.append)
    assert e.generator.name == "torch" and e.provenance.runtime == "torch"
    assert len(lines) == 1 and runtime in lines[0] and "torch" in lines[0]
    assert e.enhance(kaggle_slice(shared_data, 40, 36)).shape == (80, 72)
    # without a log callback the one line goes to logging
    with caplog.at_level(logging.WARNING, logger="srgan.runtime"):
        Enhancer(weights=models["tiny-kind"], scale=2, device="cpu", runtime=runtime)
    assert len(caplog.records) == 1 and "torch" in caplog.records[0].getMessage()


def test_auto_picks_a_runtime_by_measuring_and_caches_the_choice(models, cache, monkeypatch):
    first = Enhancer(weights=models["tiny-kind"], scale=2, device="cpu", runtime="auto")
    (record,) = cache.glob("auto-*.json")
    choice = json.loads(record.read_text())
    installed = {"torch"} | {n for n in rt.EXPORTED if rt.runtime_version(n) is not None}
    assert set(choice["ms"]) == installed and choice["runtime"] == min(choice["ms"], key=choice["ms"].get)
    assert first.generator.name == choice["runtime"] == first.provenance.runtime

    def no_timing(*a, **k):
        raise AssertionError("measured again")

    monkeypatch.setattr(rt, "_time", no_timing)
    again = Enhancer(weights=models["tiny-kind"], scale=2, device="cpu", runtime="auto")
    assert again.generator.name == choice["runtime"]
    # a damaged record is measured again
    record.write_text("{not json")
    monkeypatch.undo()
    monkeypatch.setenv(rt.CACHE_ENV, str(cache))
    third = Enhancer(weights=models["tiny-kind"], scale=2, device="cpu", runtime="auto")
    assert third.generator.name in installed and json.loads(record.read_text())["runtime"] in installed


def test_auto_measures_again_a_choice_made_under_load_once_the_machine_is_quiet(models, cache, monkeypatch):
    """A choice timed while the load average was high (e.g. a fresh venv first used beside a build) is used,
    and measured again the first time the load is low; a choice timed on a quiet machine stays."""
    timed = []
    real_time = rt._time

    def counting(*a, **k):
        timed.append(1)
        return real_time(*a, **k)

    monkeypatch.setattr(rt, "_time", counting)
    for load, measured in ((1.5, 1), (1.2, 0), (0.1, 1), (1.4, 0), (0.2, 0)):
        monkeypatch.setattr(rt, "_load_share", lambda load=load: load)
        before = len(timed)
        Enhancer(weights=models["tiny-kind"], scale=2, device="cpu", runtime="auto")
        assert len(timed) - before == measured, load
    (record,) = cache.glob("auto-*.json")
    assert json.loads(record.read_text())["load_share"] == 0.1
    monkeypatch.setattr(rt, "_load_share", lambda: None)  # no load average (Windows): the cached choice stays
    Enhancer(weights=models["tiny-kind"], scale=2, device="cpu", runtime="auto")
    assert len(timed) == 2


def test_auto_times_each_runtime_after_the_switch_of_torchs_threads_not_on_it(models):
    """torch's first operation after its thread count changes is slow, for an exported runtime's surrounding torch
    operations too: a runtime timed on that first call would lose to a slower one."""
    import time

    last = {"threads": None}  # torch's thread count at the previous call of any generator

    class Fake:
        def __init__(self, ms_steady, ms_after_switch):
            self.steady, self.switch = ms_steady, ms_after_switch

        def __call__(self, x, tile, kind):
            n = torch.get_num_threads()
            time.sleep((self.switch if n != last["threads"] else self.steady) / 1000)
            last["threads"] = n

    gens = {"torch": Fake(8, 8), "openvino": Fake(2, 40)}
    ms = rt._time(gens, torch.nn.Identity(), 16, 2)
    assert torch.get_num_threads() == 2
    assert ms["openvino"] < 6 < ms["torch"] and min(ms, key=ms.get) == "openvino"


def test_auto_times_an_exported_runtime_after_its_slow_calls_beside_a_busy_torch(models):
    """Right after torch ran on several threads an exported runtime's next two calls are slow (measured with
    OpenVINO); what a folder of slices gets is its steady speed, so that is what auto must compare."""
    import time

    since_torch = {"calls": 99}

    class Fake:
        def __init__(self, name, ms_steady, ms_slow=0.0):
            self.name, self.steady, self.slow = name, ms_steady, ms_slow

        def __call__(self, x, tile, kind):
            if self.name == "torch":
                since_torch["calls"] = 0
            else:
                since_torch["calls"] += 1
            slow = self.name != "torch" and since_torch["calls"] <= 2
            time.sleep((self.slow if slow else self.steady) / 1000)

    gens = {"torch": Fake("torch", 6), "openvino": Fake("openvino", 2, 12)}
    ms = rt._time(gens, torch.nn.Identity(), 16, 2)
    assert ms["openvino"] < 4 < ms["torch"] and min(ms, key=ms.get) == "openvino"


def test_fp32_unless_bf16_is_asked_for_or_the_card_recommends_it(models, tmp_path, shared_data):
    import shutil

    assert Enhancer(weights=models["tiny"], scale=2, device="cpu", runtime="torch").generator.precision == "fp32"
    for suffix in (".safetensors", ".json"):
        shutil.copy(models["tiny"].with_suffix(suffix), tmp_path / f"w{suffix}")
    card = json.loads((tmp_path / "w.json").read_text())
    card["precision"] = {"bf16_ok": True, "heldout_delta_db": -0.01}
    (tmp_path / "w.json").write_text(json.dumps(card))
    lines: list[str] = []
    rec = Enhancer(weights=tmp_path / "w.safetensors", scale=2, device="cpu", runtime="torch", log=lines.append)
    forced = Enhancer(weights=tmp_path / "w.safetensors", scale=2, device="cpu", runtime="torch", precision="fp32")
    assert forced.generator.precision == "fp32"
    if not rt.cpu_has_bf16():  # the recommendation does not apply: fp32, quietly, never emulated slowly
        assert rec.generator.precision == "fp32" and lines == []
        return
    assert rec.generator.precision == "bf16" == rec.provenance.precision and lines == []
    image = kaggle_slice(shared_data, 64, 64)
    diff = np.abs(rec.enhance(image) - forced.enhance(image)).max() / Normalizer.fit(image).span
    assert 0 < diff < 0.05  # bf16 arithmetic: close, not equal


def test_without_native_bf16_a_request_gets_one_line_and_a_recommendation_none(models, tmp_path, monkeypatch):
    import shutil

    for suffix in (".safetensors", ".json"):
        shutil.copy(models["tiny"].with_suffix(suffix), tmp_path / f"w{suffix}")
    card = json.loads((tmp_path / "w.json").read_text())
    card["precision"] = {"bf16_ok": True, "heldout_delta_db": -0.01}
    (tmp_path / "w.json").write_text(json.dumps(card))
    monkeypatch.setattr(rt, "cpu_has_bf16", lambda: False)
    for precision, expected_lines in ((None, 0), ("bf16", 1)):
        lines: list[str] = []
        e = Enhancer(
            weights=tmp_path / "w.safetensors", scale=2, device="cpu", runtime="torch", precision=precision,
            log=lines.append,
        )
        assert e.generator.precision == "fp32" == e.provenance.precision
        assert len(lines) == expected_lines and all("bf16" in line for line in lines)


@pytest.mark.skipif(not rt.cpu_has_bf16(), reason="no native bf16 on this CPU")
@pytest.mark.parametrize("runtime", ["torch", "openvino"])
def test_bf16_is_close_to_fp32_on_a_real_slice(runtime, models, shared_data):
    if rt.runtime_version(runtime) is None and runtime != "torch":
        pytest.skip(f"{runtime} not installed")
    fp32 = Enhancer(weights=models["bundled-x2"], scale=2, device="cpu", runtime="torch", consistency="off",
                    precision="fp32")
    bf16 = Enhancer(weights=models["bundled-x2"], scale=2, device="cpu", runtime=runtime, precision="bf16",
                    consistency="off")
    assert bf16.generator.name == runtime and bf16.generator.precision == "bf16"
    image = kaggle_slice(shared_data, 96, 96)
    diff = (bf16.enhance(image) - fp32.enhance(image)) / Normalizer.fit(image).span
    assert 0 < np.sqrt(np.mean(diff**2)) < 5e-3


def test_onnxruntime_bf16_runs_fp32_and_says_so(models, monkeypatch):
    monkeypatch.setattr(rt, "cpu_has_bf16", lambda: True)
    lines: list[str] = []
    e = Enhancer(weights=models["tiny"], scale=2, device="cpu", runtime="onnxruntime", precision="bf16",
                 log=lines.append)
    assert e.generator.precision == "fp32" and len(lines) == 1


def test_unknown_runtime_or_precision_is_refused(models):
    assert RUNTIMES[0] == "auto"
    with pytest.raises(InputError, match="runtime"):
        Enhancer(weights=models["tiny"], scale=2, device="cpu", runtime="tensorrt")
    with pytest.raises(InputError, match="precision"):
        Enhancer(weights=models["tiny"], scale=2, device="cpu", precision="fp8")


def test_the_cache_key_names_the_cpu_and_the_runtime_version(models, monkeypatch):
    sha = "ab" * 32
    a = rt._graph_path("onnxruntime", sha)
    monkeypatch.setattr(rt, "cpu_id", lambda: "another-cpu")
    b = rt._graph_path("onnxruntime", sha)
    monkeypatch.setattr(rt, "runtime_version", lambda n: "99.0")
    c = rt._graph_path("onnxruntime", sha)
    assert len({a, b, c}) == 3 and rt._graph_path("onnxruntime", "cd" * 32) != c


@pytest.mark.skipif(rt.runtime_version("onnxruntime") is None, reason="onnxruntime not installed")
def test_srgan_enhance_writes_the_runtime_into_the_outputs_provenance(shared_data, models, tmp_path, cache):
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(kaggle_slice(shared_data, 48, 40).astype(np.uint8)).save(src / "a.png")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    p = subprocess.run(
        [sys.executable, "-m", "srgan.cli", "enhance", str(src), "-o", str(tmp_path / "out"), "--scale", "2",
         "--weights", str(models["tiny"]), "--runtime", "onnxruntime", "--precision", "fp32"],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert p.returncode == 0, p.stderr
    assert "runtime onnxruntime fp32" in p.stderr
    text = Image.open(tmp_path / "out" / "a.png").text
    assert "runtime onnxruntime fp32" in text["Description"]
    prov = json.loads(text["BrainSR-Provenance"])
    assert prov["runtime"] == "onnxruntime" and prov["precision"] == "fp32"


@pytest.mark.parametrize("runtime", GRAPH_RUNTIMES)
def test_an_exported_runtime_takes_the_threads_and_torch_runs_single_threaded_beside_it(runtime, models):
    """torch's busy-waiting OpenMP workers would take the cores from the runtime's threads between graph calls."""
    before = torch.get_num_threads()
    try:
        graph = Enhancer(weights=models["tiny-kind"], scale=2, device="cpu", runtime=runtime, threads=2)
        assert graph.generator.name == runtime and graph.generator.threads == 2
        assert torch.get_num_threads() == 1
        # a torch generator loaded afterwards gets the threads back without being told
        plain = Enhancer(weights=models["tiny-kind"], scale=2, device="cpu", runtime="torch")
        assert plain.generator.threads == 2 and torch.get_num_threads() == 2
        one = Enhancer(weights=models["tiny"], scale=2, device="cpu", runtime="torch", threads=1)
        assert one.generator.threads == 1
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_auto_is_the_default_everywhere():
    import inspect

    from srgan.cli import _enhance_parser
    from viewer.app import build_parser as viewer_parser
    from viewer.jobs import EnhanceConfig

    assert inspect.signature(Enhancer).parameters["runtime"].default == "auto"
    assert _enhance_parser().parse_args(["x", "-o", "y", "--scale", "2"]).runtime == "auto"
    assert viewer_parser().parse_args([]).runtime == "auto"
    assert EnhanceConfig().runtime == "auto"


@pytest.mark.parametrize("runtime", GRAPH_RUNTIMES)
def test_a_build_off_the_main_thread_exports_in_a_child_process(runtime, models, shared_data, monkeypatch, cache):
    """torch's exporter holds the GIL for most of a second: the viewer's worker thread must not run it in-process
    (the GUI thread would freeze). The graph the child writes is the same model."""
    import threading

    def in_process(*a, **k):
        raise AssertionError("exported in this process")

    monkeypatch.setattr(rt, "export_graph", in_process)
    box: dict = {}

    def build():
        try:
            box["enhancer"] = Enhancer(weights=models["tiny-kind"], scale=2, device="cpu", runtime=runtime)
        except BaseException as e:  # noqa: BLE001 - reported below
            box["error"] = e

    worker = threading.Thread(target=build)
    worker.start()
    worker.join(120)
    assert "error" not in box, box.get("error")
    e = box["enhancer"]
    assert e.generator.name == runtime and e.generator.exported and e.generator.graph.is_file()
    image = kaggle_slice(shared_data, 40, 36)
    ref = Enhancer(weights=models["tiny-kind"], scale=2, device="cpu", runtime="torch", consistency="off")
    e.consistency = "off"
    assert np.abs(e.enhance(image) - ref.enhance(image)).max() <= TOL * (image.max() - image.min()) + 1e-3
    # on the main thread there is no GUI to keep responsive: no child process
    monkeypatch.undo()
    monkeypatch.setenv(rt.CACHE_ENV, str(cache / "again"))
    monkeypatch.setattr(rt, "export_graph_elsewhere", in_process)
    assert Enhancer(weights=models["tiny-kind"], scale=2, device="cpu", runtime=runtime).generator.exported

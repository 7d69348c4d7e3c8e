"""Where the generator runs: torch (channels-last), ONNX Runtime or OpenVINO, in fp32 or bf16.

:func:`load_generator` wraps a loaded generator (``srgan.models.weights.load_weights``, hash-checked) in a
:class:`Generator`, a callable ``(x, base, kind) → SR`` on normalised ``(B, 1, h, w)`` tensors that the engine
calls for every slice or tile. The weights stay the single source of truth: an exported graph is traced from the
loaded model, never downloaded, and cached on disk (:func:`cache_dir`) under a name derived from the weights'
sha256, the runtime and its version, torch's version, the graph's input layout and the CPU (:func:`cpu_id`). A
cache file is written atomically (several processes may build the same one at once; the last rename wins and
both are identical); one that cannot be loaded, or whose output disagrees with torch's on a probe input, is built
again once.

What is exported: for ``srresnet_lite`` the residual branch only (head, trunk, upsampler; inputs ``x`` and, with
the LR-kind input, ``kind`` of shape ``(B,)``); the interpolation it is added to (``model.upsample``, bicubic or
zero-filled) and the LR-kind estimate stay in torch, in fp32, since both are global operations computed on whole
slices and handed to tiles (``Enhancer._run``). Other generators are exported whole. One graph serves every
slice and tile size: batch, height and width are dynamic.

Precision: fp32 unless bf16 is asked for or the model card recommends it (``card["precision"]["bf16_ok"]``).
bf16 runs the network's convolutions in bf16 (torch autocast, OpenVINO's inference precision hint) while the
interpolation base, the LR-kind estimate and the final addition stay fp32. It needs a CPU with native bf16
(AVX-512 BF16 or AMX) and is otherwise refused with one log line; ONNX Runtime has no bf16 CPU convolutions and
runs fp32.

Threads: an exported runtime gets the thread count torch had (``Enhancer(threads=...)``), and torch itself then
runs single-threaded in this process until a torch generator is loaded again. torch's OpenMP workers busy-wait
after every parallel operation, and the small torch operations around each graph call (the interpolation base,
the LR-kind estimate, projections) would leave them spinning on the cores the runtime's own threads need.

``runtime="auto"`` (the default) times each installed runtime on a representative slice (``AUTO_SIDE``) and keeps
the fastest; the choice is cached on disk by the same key plus the thread count and precision, so a machine
measures once, or twice where the first measurement ran beside other work (the load average then at least
``AUTO_BUSY_LOAD`` of the cores): such a choice is used, and measured again the first time the machine is
quieter. CUDA and MPS stay on torch. A runtime that is missing, fails to build or disagrees with torch gives
one log line and the generator runs on torch: never a crash.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from srgan.errors import InputError
from srgan.io import atomic
from srgan.options import PRECISIONS, RUNTIMES

__all__ = [
    "CACHE_ENV",
    "Generator",
    "GraphGenerator",
    "TorchGenerator",
    "cache_dir",
    "cpu_id",
    "export_graph",
    "load_generator",
    "runtime_version",
]

LOGGER = logging.getLogger("srgan.runtime")
CACHE_ENV = "BRAINSR_RUNTIME_CACHE"  # overrides the cache folder (tests point it at a temporary one)
EXPORTED = ("onnxruntime", "openvino")  # the runtimes that run an exported graph
NO_BF16 = ("onnxruntime",)  # no bf16 convolutions on the CPU
OPSET = 17
LAYOUT = "nchw-float32-dynamic-batch-height-width"  # the exported graph's input layout (part of the cache key)
PROBE_SIDE = 24  # a probe input checks every built graph against torch
PROBE_TOL = {"fp32": 1e-3, "bf16": 5e-2}  # max |difference| from torch fp32 accepted on the probe
AUTO_SIDE = {2: 128, 3: 96, 4: 64}  # LR side of the slice ``auto`` times (within one tile: no tiling)
AUTO_RUNS = 3  # timed runs per runtime after one warm-up; the minimum counts
AUTO_CALLS = 4  # calls per generator and round in ``_time``; the last is timed
AUTO_METHOD = 3  # in the cache key: choices timed by an earlier method of ``_time`` are measured again
AUTO_BUSY_LOAD = 0.5  # 1-minute load average per core at or above which a measurement counts as taken under load
# torch's thread count before loading an exported runtime set it to 1 (see "Threads"), restored for a torch one
_LOWERED: dict[str, int] = {}


def cache_dir() -> Path:
    """``$BRAINSR_RUNTIME_CACHE``, else ``$XDG_CACHE_HOME/brainsr/runtimes`` (``~/.cache`` without it)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "brainsr" / "runtimes"


def _cpuinfo() -> tuple[str, set[str]]:
    """(model name, feature flags) of the first CPU in /proc/cpuinfo; the platform's name and no flags elsewhere."""
    name, named = f"{platform.machine()} {platform.processor()}", False
    flags: set[str] = set()
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return name, flags
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "cpu model") and not named:
            name, named = value.strip(), True
        elif key in ("flags", "features") and not flags:
            flags = set(value.split())
    return name, flags


def cpu_id() -> str:
    """A short digest of the CPU model and its feature flags: a graph compiled or timed on one CPU is not
    reused on another."""
    name, flags = _cpuinfo()
    return hashlib.sha256((name + "|" + " ".join(sorted(flags))).encode()).hexdigest()[:16]


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (x86 AVX-512 BF16 or AMX; Arm BF16)."""
    flags = _cpuinfo()[1]
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


def runtime_version(name: str) -> str | None:
    """The installed version of a runtime's distribution, or None (looked up without importing it)."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _split(model: Any) -> bool:
    """Whether the model is exported as its residual branch (base and LR-kind estimate computed in torch)."""
    from srgan.models.srresnet_lite import SRResNetLite

    return isinstance(model, SRResNetLite)


def _has_kind(model: Any) -> bool:
    return _split(model) and getattr(model, "kind", None) is not None


class Generator:
    """``(x, base, kind)`` → the generator's output ``(B, 1, s·h, s·w)``; ``x`` normalised ``(B, 1, h, w)``
    float32, ``base`` the model's interpolation of the whole slice cropped like ``x`` (None: computed from
    ``x``), ``kind`` the ``(B,)`` LR-kind input (None: estimated from ``x``). ``name``: the runtime,
    ``precision``: fp32 or bf16."""

    name = "torch"
    precision = "fp32"
    threads = 1  # CPU threads the generator runs on (set by ``load_generator``)

    def __call__(self, x: Any, base: Any = None, kind: Any = None) -> Any:
        raise NotImplementedError


class TorchGenerator(Generator):
    """The model itself, channels-last on the CPU; bf16 under autocast with base and LR-kind estimate in fp32."""

    def __init__(self, model: Any, device: Any, precision: str = "fp32"):
        self.model, self.device, self.precision = model, device, precision

    def __call__(self, x: Any, base: Any = None, kind: Any = None) -> Any:
        import torch

        x = x.to(self.device)
        if x.device.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
        kw = {} if kind is None else {"kind": kind}
        if self.precision == "fp32":
            return self.model(x, **kw) if base is None else self.model(x, base, **kw)
        if _split(self.model):  # the global, linear parts stay fp32
            base = self.model.upsample(x) if base is None else base
            if self.model.kind is not None and kind is None:
                kw = {"kind": self.model.kind(x)}
            with torch.autocast(self.device.type, dtype=torch.bfloat16):
                return self.model(x, base, **kw).float()
        with torch.autocast(self.device.type, dtype=torch.bfloat16):
            return self.model(x).float()


class GraphGenerator(Generator):
    """An exported graph run by ``name`` (``run``: feeds → numpy output); ``graph``: its cache file,
    ``exported``: whether this build traced it (False: read from the cache)."""

    def __init__(self, model: Any, run: Callable[[dict], np.ndarray], name: str, precision: str, graph: Path):
        self.model, self._run, self.name, self.precision = model, run, name, precision
        self.graph, self.exported = graph, False

    def __call__(self, x: Any, base: Any = None, kind: Any = None) -> Any:
        import torch

        x = x.detach().to("cpu", torch.float32)
        feeds = {"x": np.ascontiguousarray(x.numpy())}
        if not _split(self.model):
            return torch.from_numpy(self._run(feeds))
        if base is None:
            base = self.model.upsample(x)
        if self.model.kind is not None:
            kind = self.model.kind(x) if kind is None else kind
            feeds["kind"] = np.ascontiguousarray(kind.detach().to("cpu", torch.float32).numpy().reshape(-1))
        return base.to("cpu", torch.float32) + torch.from_numpy(self._run(feeds))


def _residual(model: Any) -> Any:
    """The part of ``srresnet_lite`` that is exported: ``SRResNetLite.forward`` without the base."""
    import torch
    from torch import nn

    class Residual(nn.Module):
        def __init__(self, g: Any):
            super().__init__()
            self.g = g

        def forward(self, x: Any, kind: Any = None) -> Any:
            g = self.g
            if kind is not None:
                plane = kind.to(x.dtype).view(-1, 1, 1, 1).expand(-1, 1, x.shape[-2], x.shape[-1])
                x = torch.cat([x, plane], dim=1)
            h = g.head(x)
            h = h + g.trunk(g.blocks(h))
            return g.shuffle(g.tail(g.up(h)))

    return Residual(model).eval()


def export_graph(model: Any, path: Path) -> None:
    """Trace ``model`` (its residual branch for ``srresnet_lite``) to an ONNX graph with dynamic batch, height
    and width, written atomically to ``path``."""
    import warnings

    import torch

    module = _residual(model) if _split(model) else model
    args: tuple = (torch.rand(1, 1, 32, 32),)
    names = ["x"]
    axes = {"x": {0: "batch", 2: "height", 3: "width"}, "y": {0: "batch", 2: "out_height", 3: "out_width"}}
    if _has_kind(model):
        args += (torch.full((1,), 0.5),)
        names.append("kind")
        axes["kind"] = {0: "batch"}
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic.atomic_path(path) as tmp, warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer warnings
        torch.onnx.export(
            module,
            args,
            str(tmp),
            input_names=names,
            output_names=["y"],
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
        )


def export_graph_elsewhere(model: Any, card: dict, path: Path) -> None:
    """``export_graph`` in a child process. torch's ONNX exporter holds the GIL for most of a second at a time,
    which would freeze a GUI thread while a worker thread builds a runtime. The child gets the weights through a
    temporary safetensors file with a card (``arch``, ``kwargs`` from ``card``; hash-checked on load), never a
    pickle."""
    import subprocess
    import sys
    import tempfile

    from srgan.models.weights import save_weights

    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    code = "import sys; from srgan.inference.runtime import _export_file; _export_file(sys.argv[1], sys.argv[2])"
    with tempfile.TemporaryDirectory(prefix="brainsr-export-") as d:
        meta = {"arch": card["arch"], "kwargs": dict(card.get("kwargs", {}))}
        src = save_weights(Path(d) / "model.safetensors", model, meta)
        done = subprocess.run(
            [sys.executable, "-c", code, str(src), str(path)], env=env, capture_output=True, text=True, timeout=600
        )
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        raise RuntimeError(f"graph export in a child process failed ({lines[-1] if lines else done.returncode})")


def _export_file(weights: str, path: str) -> None:
    from srgan.models.weights import load_weights

    model, _ = load_weights(weights)
    export_graph(model, Path(path))


def _key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _graph_path(name: str, sha256: str) -> Path:
    import torch

    return (
        cache_dir()
        / f"{name}-{_key(sha256, name, runtime_version(name), torch.__version__, LAYOUT, OPSET, cpu_id())}.onnx"
    )


def _session(name: str, path: Path, precision: str, threads: int) -> Callable[[dict], np.ndarray]:
    """A function running the graph at ``path`` on runtime ``name``."""
    if name == "onnxruntime":
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
        so.log_severity_level = 3
        # no busy-waiting between runs: the viewer's GUI thread and other processes share the cores
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        return lambda feeds: session.run(None, feeds)[0]
    if name == "openvino":
        import openvino as ov

        core = ov.Core()
        config = {
            "INFERENCE_NUM_THREADS": threads,
            # OpenVINO's default on a bf16 CPU is bf16: fp32 must be asked for
            "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
            "PERFORMANCE_HINT": "LATENCY",
        }
        compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
        request = compiled.create_infer_request()
        out = compiled.output(0)
        return lambda feeds: np.array(request.infer(feeds)[out], copy=True)
    raise ValueError(f"unknown runtime {name!r}")


def _probe(gen: Generator, model: Any) -> None:
    """Raise unless ``gen`` agrees with torch fp32 on a probe input (a corrupt or wrong graph does not)."""
    import torch

    x = torch.rand(1, 1, PROBE_SIDE, PROBE_SIDE, generator=torch.Generator().manual_seed(0))
    kind = torch.full((1,), 0.5) if _has_kind(model) else None
    with torch.inference_mode():
        ref = TorchGenerator(model, torch.device("cpu"))(x, None, kind)
        got = gen(x, None, kind)
    err = float((got.float() - ref.float()).abs().max()) if got.shape == ref.shape else float("inf")
    if not err <= PROBE_TOL[gen.precision]:
        raise RuntimeError(f"its output differs from torch's by {err:.3g} on a probe input")


def _export(model: Any, card: dict, path: Path) -> None:
    """``export_graph`` here on the main thread (nothing else to keep responsive), in a child process from any
    other (``export_graph_elsewhere``)."""
    import threading

    if threading.current_thread() is threading.main_thread():
        export_graph(model, path)
    else:
        export_graph_elsewhere(model, card, path)


def _build(name: str, model: Any, card: dict, precision: str, threads: int) -> GraphGenerator:
    """The graph of ``model`` (weights with ``card``) on runtime ``name``, from the cache or exported now; a cache
    file that fails to load or to agree with torch is exported again once."""
    if runtime_version(name) is None:
        raise RuntimeError(f"{name} is not installed")
    path = _graph_path(name, str(card.get("sha256", "")))
    exported = not path.is_file()
    if exported:
        _export(model, card, path)
    try:
        gen = GraphGenerator(model, _session(name, path, precision, threads), name, precision, path)
        _probe(gen, model)
    except Exception:
        if exported:
            raise
        path.unlink(missing_ok=True)  # corrupt or stale: build it again
        _export(model, card, path)
        exported = True
        gen = GraphGenerator(model, _session(name, path, precision, threads), name, precision, path)
        _probe(gen, model)
    gen.exported = exported
    return gen


def _time(gens: dict[str, Generator], model: Any, side: int, threads: int) -> dict[str, float]:
    """Minimum ms per generator of ``AUTO_RUNS`` rounds after one warm-up on a ``side``² slice, the generators
    taking turns round by round, so that a burst of load from other processes slows them all alike. Each runs with
    torch's threads as it would run for real: ``threads`` for torch, one beside an exported runtime. A change of
    torch's thread count makes its next operation slow (oneDNN's kernels and OpenMP's pool are set up per thread
    count), and right after torch ran on several threads an exported runtime's next two calls are slow too
    (OpenVINO bf16 at ×4: 4.1 and 3.7 ms, then 2.0 ms steady, which is what a folder of slices runs at), so every
    generator runs ``AUTO_CALLS`` times per round and the last counts (timing the first one or two made ``auto``
    pick torch where OpenVINO ran the path faster, docs/benchmarks.md)."""
    import torch

    x = torch.rand(1, 1, side, side, generator=torch.Generator().manual_seed(0))
    kind = torch.full((1,), 0.5) if _has_kind(model) else None
    times: dict[str, list[float]] = {name: [] for name in gens}
    with torch.inference_mode():
        for _ in range(AUTO_RUNS + 1):
            for name, gen in gens.items():
                torch.set_num_threads(threads if name == "torch" else 1)
                for _ in range(AUTO_CALLS):
                    t0 = time.perf_counter()
                    gen(x, None, kind)
                    dt = time.perf_counter() - t0
                times[name].append(dt)
    torch.set_num_threads(threads)
    return {name: 1000 * min(t[1:]) for name, t in times.items()}


def _auto(model: Any, card: dict, precision: str, threads: int, scale: int, warn: Callable[[str], None]) -> Generator:
    """The fastest installed runtime on this machine, from the cached choice or measured now (and cached)."""
    import torch

    cpu = torch.device("cpu")
    versions = {name: runtime_version(name) for name in EXPORTED}
    sha256 = str(card.get("sha256", ""))
    key = _key(sha256, versions, torch.__version__, cpu_id(), threads, precision, AUTO_METHOD)
    path = cache_dir() / f"auto-{key}.json"
    load = _load_share()
    try:
        record = json.loads(path.read_text())
        choice = record["runtime"]
        if _busy(record.get("load_share")) and load is not None and not _busy(load):
            choice = None  # measured beside other work (a fresh machine's first use may be under a build)
    except (OSError, ValueError, KeyError, TypeError):
        choice = None
    if choice == "torch":
        return TorchGenerator(model, cpu, precision)
    if choice in EXPORTED:
        try:
            return _build(choice, model, card, precision, threads)
        except Exception as e:  # noqa: BLE001 - any failure of a runtime falls back to torch
            warn(f"runtime {choice} (chosen by auto) failed ({_reason(e)}); running the generator on torch")
            return TorchGenerator(model, cpu, precision)
    gens: dict[str, Generator] = {"torch": TorchGenerator(model, cpu, precision)}
    for name in EXPORTED:
        if versions[name] is None or (precision == "bf16" and name in NO_BF16):
            continue
        try:
            gens[name] = _build(name, model, card, precision, threads)
        except Exception as e:  # noqa: BLE001
            warn(f"runtime {name} failed ({_reason(e)}); auto leaves it out")
    side = AUTO_SIDE.get(scale, 96)
    ms = _time(gens, model, side, threads)
    best = min(ms, key=lambda k: ms[k])
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"runtime": best, "ms": ms, "side": side, "threads": threads, "precision": precision, "load_share": load}
    atomic.write_text(path, json.dumps(record, indent=2) + "\n")
    return gens[best]


def _load_share() -> float | None:
    """The 1-minute load average per core (other programs' runnable threads as well as ours); None where the
    platform has none (Windows)."""
    try:
        return os.getloadavg()[0] / (os.cpu_count() or 1)
    except (AttributeError, OSError):
        return None


def _busy(load_share: Any) -> bool:
    return isinstance(load_share, (int, float)) and load_share >= AUTO_BUSY_LOAD


def _reason(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:160]}" if text else type(e).__name__


def load_generator(
    model: Any,
    card: dict,
    *,
    device: Any,
    runtime: str = "auto",
    precision: str | None = None,
    threads: int | None = None,
    log: Callable[[str], None] | None = None,
) -> Generator:
    """The generator ``model`` (weights with ``card``, already hash-checked) on ``runtime`` (``RUNTIMES``) in
    ``precision`` (``PRECISIONS``; None: bf16 if the card recommends it, else fp32) on ``device``, with ``threads``
    CPU threads (None: torch's, as it was before an exported runtime lowered it; see "Threads" above).

    Problems that are the machine's (a runtime not installed or failing, bf16 without CPU support, an exported
    runtime asked for on CUDA/MPS) give one line to ``log`` (default: ``logging.warning``) and the nearest
    working choice; an unknown name raises ``InputError``."""
    import torch

    warn = log or LOGGER.warning
    if runtime not in RUNTIMES:
        raise InputError(None, f"unknown runtime {runtime!r}; choose from {', '.join(RUNTIMES)}")
    if precision is not None and precision not in PRECISIONS:
        raise InputError(None, f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    asked = precision is not None
    if precision is None:
        precision = "bf16" if (card.get("precision") or {}).get("bf16_ok") is True else "fp32"
    device = torch.device(device)
    if precision == "bf16":
        ok = cpu_has_bf16() if device.type == "cpu" else device.type != "cuda" or torch.cuda.is_bf16_supported()
        if not ok:
            # the card's recommendation quietly does not apply here; a user's request gets its one line
            (warn if asked else LOGGER.debug)(
                f"bf16 is not supported natively on this {device.type}; running the generator in fp32"
            )
            precision = "fp32"
    if device.type != "cpu":
        if runtime in EXPORTED:
            warn(f"runtime {runtime} runs on the CPU only; on {device.type} the generator runs on torch")
        return TorchGenerator(model, device, precision)
    threads = max(1, int(threads or _LOWERED.get("from") or torch.get_num_threads()))
    torch.set_num_threads(threads)
    scale = int(card.get("kwargs", {}).get("scale", getattr(model, "scale", 2)))
    gen: Generator
    if runtime == "torch":
        gen = TorchGenerator(model, device, precision)
    elif runtime == "auto":
        gen = _auto(model, card, precision, threads, scale, warn)
    else:
        if precision == "bf16" and runtime in NO_BF16:
            warn(f"{runtime} has no bf16 convolutions on the CPU; running it in fp32")
            precision = "fp32"
        try:
            gen = _build(runtime, model, card, precision, threads)
        except Exception as e:  # noqa: BLE001 - any failure of a runtime falls back to torch
            warn(f"runtime {runtime} unavailable ({_reason(e)}); running the generator on torch")
            gen = TorchGenerator(model, device, precision)
    if isinstance(gen, GraphGenerator):
        _LOWERED["from"] = threads
        torch.set_num_threads(1)  # see "Threads" above
    else:
        _LOWERED.pop("from", None)
    gen.threads = threads
    return gen

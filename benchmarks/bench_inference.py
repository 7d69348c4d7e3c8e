"""CPU inference speed: the seed generator against the default ``srresnet_lite``, side by side.

Each (model, scale) runs in its own subprocess, so its peak RSS is its own and start-up (imports, building the
model) is excluded from the timing: ms/slice is the median of ``--runs`` forward passes after ``--warmup``, on one
``(1, 1, h, w)`` slice, ×4 on 64×64 → 256×256 and ×2 on 128×128 → 256×256, with ``torch.set_num_threads(--threads)``.
Weights are random: speed does not depend on them. Besides seed and the registry's default ``srresnet_lite``, each
scale's bundled fidelity model is timed in the shape its model card names (``resources/weights``), so the speed
claim is about what ships. A second table times the whole per-slice path of ``srgan enhance`` (``Enhancer.enhance``:
normalisation, LR-kind estimate, generator, data-consistency projection as the card sets it), on a real 64² / 128²
LR slice made by k-space truncation from the bundled sample series, so ``auto`` takes its costlier k-space branch;
the seed runs through the same path (random weights, no projection). A third table times the bundled fidelity
models' generator call (``Enhancer._run``: base, LR-kind input, network, tiles) on each installed runtime and
precision (``srgan.inference.runtime``), ×2 on a real 256² LR slice → 512², ×4 on 64² → 256²; each configuration
runs ``--repeats`` times in fresh subprocesses (min and median over the repeats' medians). With ``--heldout``,
it adds the held-out PSNR change of each configuration against torch fp32: the 24 held-out Kaggle slices
(``srgan.evaluation.selection``), LR made by bicubic and by k-space truncation and quantised to 8 bits as
``contract_check.py`` does, enhanced without projection and with the card's consistency. Prints markdown tables
and the command. No assertions.

    python benchmarks/bench_inference.py [--threads 2] [--runs 10] [--lite-kwargs '{"channels":32,"num_blocks":12}']
    python benchmarks/bench_inference.py --only-runtimes --heldout [--runtimes torch openvino] [--repeats 3]
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

LR_SIDE = {2: 128, 4: 64}
RUNTIME_LR_SIDE = {2: 256, 4: 64}  # the runtime table's slice sizes: 256² → 512² at ×2, 64² → 256² at ×4
KAGGLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "kaggle-brain-tumor-mri"


def measure(arch: str, kwargs: dict, scale: int, threads: int, runs: int, warmup: int) -> dict:
    """Time one model in this process (called in a fresh subprocess by ``main``)."""
    import torch

    from srgan.inference.engine import for_inference, model_input
    from srgan.models import build_generator, count_parameters

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cpu = torch.device("cpu")
    model = for_inference(build_generator(arch, **{**kwargs, "scale": scale}), cpu)  # as the Enhancer runs it
    n = LR_SIDE[scale]
    x = model_input(torch.rand(1, 1, n, n), cpu)
    times = []
    with torch.inference_mode():
        for _ in range(warmup):
            model(x)
        for _ in range(runs):
            t0 = time.perf_counter()
            y = model(x)
            times.append(time.perf_counter() - t0)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss   # KiB on Linux
    return {"arch": arch, "kwargs": kwargs, "scale": scale, "in": f"{n}x{n}", "out": "x".join(map(str, y.shape[-2:])),
            "params": count_parameters(model), "ms_median": 1000 * statistics.median(times),
            "ms_min": 1000 * min(times), "peak_rss_mib": peak_kib / 1024, "threads": threads}


def lr_slice(scale: int, kind: str = "kspace", side: int | None = None):
    """A real LR slice: the middle slice of the bundled sample series, centred in an HR field of view of
    ``side · scale`` (default ``LR_SIDE``; cropped or padded with background), k-space truncated (or
    bicubic-downsampled) to ``side``."""
    import numpy as np
    import pydicom

    from srgan.degrade import bicubic_down, kspace_truncate
    from srgan.models.weights import RESOURCES

    files = sorted((RESOURCES / "sample" / "series").glob("*.dcm"))
    hr = pydicom.dcmread(files[len(files) // 2]).pixel_array.astype(np.float64)
    n = (side or LR_SIDE[scale]) * scale
    field = np.zeros((n, n))
    h, w = min(n, hr.shape[0]), min(n, hr.shape[1])
    sy, sx = (hr.shape[0] - h) // 2, (hr.shape[1] - w) // 2
    field[(n - h) // 2:(n - h) // 2 + h, (n - w) // 2:(n - w) // 2 + w] = hr[sy:sy + h, sx:sx + w]
    return (kspace_truncate if kind == "kspace" else bicubic_down)(field, scale).astype(np.float32)


def measure_pipeline(arch: str, kwargs: dict, scale: int, threads: int, runs: int, warmup: int,
                     weights: str | None = None, lr: str = "kspace") -> dict:
    """Time ``Enhancer.enhance`` on one LR slice (called in a fresh subprocess by ``main``)."""
    import tempfile

    import torch

    from srgan.inference.engine import Enhancer
    from srgan.models import build_generator
    from srgan.models.weights import save_weights

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as d:
        if weights is None:  # random weights: speed does not depend on them
            model = build_generator(arch, **{**kwargs, "scale": scale})
            weights = str(save_weights(f"{d}/random", model, {"arch": arch, "kwargs": {**kwargs, "scale": scale},
                                                            "kind": "fidelity"}))
        en = Enhancer(scale=scale, weights=weights, device="cpu", threads=threads)
        image = lr_slice(scale, lr)
        for _ in range(warmup):
            en.enhance(image)
        times = []
        for _ in range(runs):  # the whole per-image path: plan (estimate, residual test) and enhancement
            t0 = time.perf_counter()
            en.enhance(image)
            times.append(time.perf_counter() - t0)
        plan = en.plan(image[None])
    return {"arch": arch, "kwargs": kwargs, "scale": scale, "consistency": en.consistency, "lr": lr,
            "applied": plan.projection, "p_kspace": plan.p_kspace, "log_ratio": plan.log_ratio,
            "ms_median": 1000 * statistics.median(times),
            "ms_min": 1000 * min(times), "threads": threads}


def measure_runtime(scale: int, runtime: str, precision: str, threads: int, runs: int, warmup: int) -> dict:
    """Time the bundled fidelity model's generator call on ``runtime`` in ``precision`` (in a fresh subprocess);
    the graph is built (or read from the cache) before timing."""
    import numpy as np
    import torch

    from srgan.inference.engine import Enhancer
    from srgan.normalize import Normalizer

    notes: list[str] = []
    t0 = time.perf_counter()
    en = Enhancer(scale=scale, device="cpu", threads=threads, runtime=runtime, precision=precision,
                  consistency="off", log=notes.append)
    build_s = time.perf_counter() - t0
    image = lr_slice(scale, "kspace", RUNTIME_LR_SIDE[scale])
    x = torch.from_numpy(Normalizer.fit(image).forward(image).astype(np.float32))[None, None]
    p = en.p_kspace(image[None])
    times = []
    with torch.inference_mode():
        for i in range(warmup + runs):
            t0 = time.perf_counter()
            y = en._run(x, p)
            if i >= warmup:
                times.append(time.perf_counter() - t0)
    return {"scale": scale, "asked": f"{runtime} {precision}", "runtime": en.generator.name,
            "precision": en.generator.precision, "in": "x".join(map(str, x.shape[-2:])),
            "out": "x".join(map(str, y.shape[-2:])), "ms_median": 1000 * statistics.median(times),
            "ms_min": 1000 * min(times), "build_s": build_s, "notes": notes, "threads": threads}


def measure_heldout(scale: int, runtime: str, precision: str, threads: int, consistency: str | None,
                    kaggle: str) -> dict:
    """Per-image PSNR (dB, 8-bit range) of the bundled fidelity model on ``runtime``/``precision`` over the
    held-out Kaggle slices, LR by bicubic and by k-space truncation, 8-bit quantised (in a fresh subprocess)."""
    import numpy as np
    from PIL import Image

    from srgan.degrade import bicubic_down, kspace_truncate
    from srgan.evaluation.metrics import psnr
    from srgan.evaluation.selection import heldout_images, split_config
    from srgan.inference.engine import Enhancer

    en = Enhancer(scale=scale, device="cpu", threads=threads, runtime=runtime, precision=precision,
                  consistency=consistency)
    files = [path for _, path in heldout_images(kaggle, split_config())[0]]
    out: dict = {"runtime": en.generator.name, "precision": en.generator.precision, "consistency": en.consistency,
                 "n": len(files)}
    for lr_kind, degrade in (("bicubic", bicubic_down), ("kspace", kspace_truncate)):
        values = []
        for f in files:
            hr = np.asarray(Image.open(f).convert("L"), dtype=np.float64) / 255.0
            hr = hr[: hr.shape[0] // scale * scale, : hr.shape[1] // scale * scale]
            lr = np.round(np.clip(degrade(hr, scale), 0, 1) * 255) / 255
            sr = np.clip(en.enhance(lr.astype(np.float32)), 0, 1)
            values.append(psnr(hr, sr, data_range=1.0))
        out[lr_kind] = values
    return out


def runtime_configs(names: list[str]) -> list[tuple[str, str]]:
    """(runtime, precision) pairs to measure: each runtime in fp32, and in bf16 where it has bf16 kernels."""
    from srgan.inference.runtime import NO_BF16, cpu_has_bf16

    pairs = [(r, "fp32") for r in names]
    if cpu_has_bf16():
        pairs += [(r, "bf16") for r in names if r not in NO_BF16]
    return pairs


def runtime_tables(args) -> None:
    import numpy as np

    from srgan.inference.runtime import EXPORTED, cpu_id, runtime_version

    names = args.runtimes or ["torch"] + [r for r in EXPORTED if runtime_version(r)]
    rows, quality = [], {}
    for scale in args.scales:
        for runtime, precision in runtime_configs(names):
            job = dict(scale=scale, runtime=runtime, precision=precision, threads=args.threads, runs=args.runs,
                       warmup=args.warmup)
            reps = [run_job(job, mode="--runtime-one") for _ in range(args.repeats)]
            medians = [r["ms_median"] for r in reps]
            rows.append({**reps[-1], "rep_medians": medians, "best": min(r["ms_min"] for r in reps)})
            if args.heldout:
                for consistency in ("off", None):
                    hjob = dict(scale=scale, runtime=runtime, precision=precision, threads=args.threads,
                                consistency=consistency, kaggle=str(args.kaggle))
                    quality[(scale, runtime, precision, consistency)] = run_job(hjob, mode="--heldout-one")
    versions = ", ".join(f"{r} {runtime_version(r)}" for r in EXPORTED if runtime_version(r))
    print(f"\n# Generator call per runtime and precision (bundled fidelity models, Enhancer._run on a real LR slice, "
          f"{args.threads} threads, {args.repeats} repeats × median of {args.runs} after {args.warmup} warm-up; "
          f"{versions}; CPU {cpu_id()})\n")
    print("| scale | LR → SR | asked | ran | ms/slice (min of repeats' medians) | ms/slice (median of repeats' "
          "medians) | fastest run ms | build s | vs torch fp32 |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        base = min(q["rep_medians"] for q in rows if q["scale"] == r["scale"] and q["asked"] == "torch fp32")
        ran = f"{r['runtime']} {r['precision']}" + (f" ({'; '.join(r['notes'])})" if r["notes"] else "")
        print(f"| ×{r['scale']} | {r['in']} → {r['out']} | {r['asked']} | {ran} | {min(r['rep_medians']):.1f} | "
              f"{statistics.median(r['rep_medians']):.1f} | {r['best']:.1f} | {r['build_s']:.1f} | "
              f"{min(base) / min(r['rep_medians']):.2f}× |")
    if not quality:
        return
    print("\n# Held-out PSNR change against torch fp32 (24 held-out Kaggle slices, 8-bit LR; mean and worst "
          "per-image change, dB)\n")
    print("| scale | runtime | precision | consistency | LR | n | mean PSNR dB | mean Δ dB | worst Δ dB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (scale, _, _, consistency), q in quality.items():
        ref = quality[(scale, "torch", "fp32", consistency)]
        for lr in ("bicubic", "kspace"):
            d = np.asarray(q[lr]) - np.asarray(ref[lr])
            print(f"| ×{scale} | {q['runtime']} | {q['precision']} | {q['consistency']} | {lr} | {q['n']} | "
                  f"{np.mean(q[lr]):.3f} | {d.mean():+.4f} | {d.min():+.4f} |")


def bundled(scale: int) -> list[tuple[str, dict, str]]:
    """(arch, kwargs without scale, label) of the model ``srgan enhance --scale`` uses by default, read from its
    card; [] if none is bundled (the card is plain JSON, so this needs no torch)."""
    from srgan.errors import InputError
    from srgan.models.weights import bundled_weights, read_card

    try:
        c = read_card(bundled_weights(scale))
    except InputError:
        return []
    kwargs = {k: v for k, v in c["kwargs"].items() if k != "scale"}
    return [(c["arch"], kwargs, f"{c['name']} (bundled)")]


def run_job(job: dict, pipeline: bool = False, mode: str | None = None) -> dict:
    mode = mode or ("--pipeline" if pipeline else "--one")
    out = subprocess.run([sys.executable, __file__, mode, json.dumps(job)],
                         capture_output=True, text=True)
    if out.returncode:
        print(out.stderr, file=sys.stderr)
        raise SystemExit(out.returncode)
    return json.loads(out.stdout.strip().splitlines()[-1])


def vs_seed(rows: list[dict]) -> list[str]:
    """Each row's median speed relative to the seed row of its scale."""
    seed_ms = {r["scale"]: r["ms_median"] for r in rows if r["arch"] == "seed"}
    return ["1×" if r["arch"] == "seed" else f"{seed_ms[r['scale']] / r['ms_median']:.1f}× faster" for r in rows]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--scales", type=int, nargs="+", default=[4, 2], choices=(2, 4))
    p.add_argument("--seed-kwargs", type=json.loads, default={}, metavar="JSON",
                   help="seed generator kwargs (default: its defaults)")
    p.add_argument("--lite-kwargs", type=json.loads, default=None, metavar="JSON",
                   help="also time srresnet_lite with these kwargs, e.g. '{\"channels\":32,\"num_blocks\":12}'")
    p.add_argument("--runtimes", nargs="+", choices=("torch", "onnxruntime", "openvino"),
                   help="runtimes of the runtime table (default: torch and every installed one)")
    p.add_argument("--repeats", type=int, default=3, help="subprocess repeats per runtime configuration")
    p.add_argument("--heldout", action="store_true", help="add the held-out PSNR change per runtime (slow)")
    p.add_argument("--kaggle", type=Path, default=KAGGLE, help="the Kaggle sample the held-out slices come from")
    p.add_argument("--only-runtimes", action="store_true", help="print the runtime table(s) only")
    p.add_argument("--one", help=argparse.SUPPRESS)   # internal: JSON job for a subprocess
    p.add_argument("--pipeline", help=argparse.SUPPRESS)
    p.add_argument("--runtime-one", help=argparse.SUPPRESS)
    p.add_argument("--heldout-one", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one:
        print(json.dumps(measure(**json.loads(args.one))))
        return 0
    if args.pipeline:
        print(json.dumps(measure_pipeline(**json.loads(args.pipeline))))
        return 0
    if args.runtime_one:
        print(json.dumps(measure_runtime(**json.loads(args.runtime_one))))
        return 0
    if args.heldout_one:
        print(json.dumps(measure_heldout(**json.loads(args.heldout_one))))
        return 0
    if args.only_runtimes:
        runtime_tables(args)
        print("\ncommand: " + shlex.join(["python", "benchmarks/bench_inference.py",
                                         *(argv if argv is not None else sys.argv[1:])]))
        return 0
    configs = [("seed", args.seed_kwargs, "seed"), ("srresnet_lite", {}, "srresnet_lite")]
    if args.lite_kwargs is not None:
        configs.append(("srresnet_lite", args.lite_kwargs, "srresnet_lite"))
    results, pipeline = [], []
    for scale in args.scales:
        for arch, kw, label in configs + bundled(scale):
            job = dict(arch=arch, kwargs=kw, scale=scale, threads=args.threads, runs=args.runs, warmup=args.warmup)
            results.append({**run_job(job), "label": label})
        from srgan.models.weights import bundled_weights
        # bicubic LR: where ``auto`` runs its residual test (k-space LR is decided by the detector alone)
        for (arch, kw, label), lr in [(("seed", args.seed_kwargs, "seed"), "kspace")] + [
                (b, lr) for b in bundled(scale) for lr in ("kspace", "bicubic")]:
            job = dict(arch=arch, kwargs=kw, scale=scale, threads=args.threads, runs=args.runs, warmup=args.warmup,
                       weights=None if arch == "seed" else str(bundled_weights(scale)), lr=lr)
            pipeline.append({**run_job(job, pipeline=True), "label": label})
    import torch
    print(f"# Generator inference on CPU ({platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{args.threads} threads, median of {args.runs} after {args.warmup} warm-up, random weights)\n")
    print("| model | kwargs | scale | LR → SR | params | ms/slice (median) | ms/slice (min) | peak RSS MiB | vs seed |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r, vs in zip(results, vs_seed(results)):
        print(f"| {r['label']} | {json.dumps(r['kwargs']) if r['kwargs'] else 'default'} | ×{r['scale']} | "
              f"{r['in']} → {r['out']} | {r['params']:,} | {r['ms_median']:.1f} | {r['ms_min']:.1f} | "
              f"{r['peak_rss_mib']:.0f} | {vs} |")
    print(f"\n# Whole per-slice path of `srgan enhance` (Enhancer.enhance on a real LR slice, "
          f"{args.threads} threads, median of {args.runs})\n")
    print("| model | scale | LR made by | consistency (card) | P(k-space) | residual test | applied "
          "| ms/slice (median) | ms/slice (min) | vs seed |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r, vs in zip(pipeline, vs_seed(pipeline)):
        p = "–" if r["p_kspace"] is None else f"{r['p_kspace']:.2f}"
        test = "–" if r["log_ratio"] is None else f"{r['log_ratio']:+.2f}"
        print(f"| {r['label']} | ×{r['scale']} | {r['lr']} | {r['consistency']} | {p} | {test} | {r['applied']} | "
              f"{r['ms_median']:.1f} | {r['ms_min']:.1f} | {vs} |")
    runtime_tables(args)
    print("\ncommand: " + shlex.join(["python", "benchmarks/bench_inference.py",
                                     *(argv if argv is not None else sys.argv[1:])]))
    return 0


if __name__ == "__main__":
    sys.exit(main())

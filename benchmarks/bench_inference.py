"""CPU inference speed: the seed generator against the default ``srresnet_lite``, side by side.

Each (model, scale) runs in its own subprocess, so its peak RSS is its own and start-up (imports, building the
model) is excluded from the timing: ms/slice is the median of ``--runs`` forward passes after ``--warmup``, on one
``(1, 1, h, w)`` slice, ×4 on 64×64 → 256×256 and ×2 on 128×128 → 256×256, with ``torch.set_num_threads(--threads)``.
Weights are random: speed does not depend on them. Besides seed and the registry's default ``srresnet_lite``, each
scale's bundled fidelity model is timed in the shape its model card names (``resources/weights``), so the speed
claim is about what ships. A second table times the whole per-slice path of ``srgan enhance`` (``Enhancer.enhance``:
normalisation, LR-kind estimate, generator, data-consistency projection as the card sets it), on a real 64² / 128²
LR slice made by k-space truncation from the bundled sample series, so ``auto`` takes its costlier k-space branch;
the seed runs through the same path (random weights, no projection). Prints markdown tables and the command.
No assertions.

    python benchmarks/bench_inference.py [--threads 2] [--runs 10] [--lite-kwargs '{"channels":32,"num_blocks":12}']
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

LR_SIDE = {2: 128, 4: 64}


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


def lr_slice(scale: int, kind: str = "kspace"):
    """A real LR slice: the middle slice of the bundled sample series, centred in an HR field of view of
    ``LR_SIDE · scale`` (cropped or padded with background), k-space truncated (or bicubic-downsampled) to
    ``LR_SIDE``."""
    import numpy as np
    import pydicom

    from srgan.degrade import bicubic_down, kspace_truncate
    from srgan.models.weights import RESOURCES

    files = sorted((RESOURCES / "sample" / "series").glob("*.dcm"))
    hr = pydicom.dcmread(files[len(files) // 2]).pixel_array.astype(np.float64)
    n = LR_SIDE[scale] * scale
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


def run_job(job: dict, pipeline: bool = False) -> dict:
    out = subprocess.run([sys.executable, __file__, "--pipeline" if pipeline else "--one", json.dumps(job)],
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
    p.add_argument("--seed-kwargs", type=json.loads, default={}, metavar="JSON", help="seed generator kwargs (default: its defaults)")
    p.add_argument("--lite-kwargs", type=json.loads, default=None, metavar="JSON",
                   help="also time srresnet_lite with these kwargs, e.g. '{\"channels\":32,\"num_blocks\":12}'")
    p.add_argument("--one", help=argparse.SUPPRESS)   # internal: JSON job for a subprocess
    p.add_argument("--pipeline", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one:
        print(json.dumps(measure(**json.loads(args.one))))
        return 0
    if args.pipeline:
        print(json.dumps(measure_pipeline(**json.loads(args.pipeline))))
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
    print("\ncommand: " + shlex.join(["python", "benchmarks/bench_inference.py",
                                     *(argv if argv is not None else sys.argv[1:])]))
    return 0


if __name__ == "__main__":
    sys.exit(main())

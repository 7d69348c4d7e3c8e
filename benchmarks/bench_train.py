"""Training throughput of the seed generator vs the default ``srresnet_lite`` (default kwargs each).

Each model runs in its own process so its peak resident memory (``ru_maxrss``) is its own: a few warm-up steps,
then timed stage-1 steps (generator, L1) and stage-2 steps (discriminator + generator, adversarial + content).
Prints a markdown table and the command that produced it. No assertions: numbers depend on the machine.

  python benchmarks/bench_train.py [--data DIR ...] [--steps 10] [--batch-size 16] [--patch-size 96] [--scale 2]
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KAGGLE = ROOT / ".." / "shared" / "data" / "kaggle-brain-tumor-mri"
PAIRS = (("seed", "seed"), ("srresnet_lite", "pooled"))


def synthetic_folder(root: Path) -> Path:
    import numpy as np
    from PIL import Image
    yy, xx = np.mgrid[0:256, 0:256]
    for i in range(8):
        rng = np.random.default_rng(i)
        img = np.where(np.hypot(yy - 128, xx - 128) < 110, 0.3 + 0.5 * rng.random((256, 256)), 0.0)
        Image.fromarray(np.round(img * 255).astype(np.uint8)).save(root / f"{i}.png")
    return root


def one(a) -> dict:
    """Run in a child process: time one generator/discriminator pair, report JSON on stdout.

    A short ``srgan.training.train`` run logging every step: the timed steps are those after the warm-up ones of
    each stage, timed by ``log.csv``'s ``elapsed_s`` (validation, export and checkpoint at the stage end fall in the
    next stage's warm-up)."""
    import csv

    import torch

    from srgan.models import build_discriminator, build_generator, count_parameters
    from srgan.options import resolve_device
    from srgan.training.train import TrainConfig, train
    torch.set_num_threads(a.threads)
    warm = 2
    n = warm + a.steps
    with tempfile.TemporaryDirectory() as d:
        cfg = TrainConfig.from_dict({
            "generator": a.one[0], "discriminator": a.one[1], "scale": a.scale, "patch_size": a.patch_size,
            "batch_size": a.batch_size, "stage1_steps": n, "stage2_steps": n,
            "log_every": 1, "val_every": 10**9, "ckpt_every": 10**9,
            "out": d, "device": a.device, "num_threads": a.threads,
            "data": {"sources": a.data, "max_items_per_source": 24, "val_fraction": 0.0}})
        if train(cfg):
            raise SystemExit(1)
        with open(Path(d) / "log.csv", newline="") as f:
            elapsed = {int(r["step"]): float(r["elapsed_s"]) for r in csv.DictReader(f)}
    times = {stage: a.steps * a.batch_size / (elapsed[start + n] - elapsed[start + warm])
             for stage, start in (("stage1", 0), ("stage2", n))}
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    dk = {"patch_size": a.patch_size} if a.one[1] == "seed" else {}
    return {"generator": a.one[0], "discriminator": a.one[1],
            "g_params": count_parameters(build_generator(a.one[0], scale=a.scale)),
            "d_params": count_parameters(build_discriminator(a.one[1], **dk)), **times,
            "peak_rss_mib": rss_kib / 1024, "device": str(resolve_device(a.device))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", nargs="+", help="HR sources (default: the Kaggle sample, else synthetic images)")
    ap.add_argument("--steps", type=int, default=10, help="timed steps per stage")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--patch-size", type=int, default=96)
    ap.add_argument("--scale", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.one:
        print(json.dumps(one(a)))
        return 0
    with tempfile.TemporaryDirectory() as d:
        data = a.data or ([str(KAGGLE.resolve())] if KAGGLE.exists() else [str(synthetic_folder(Path(d)))])
        rows = []
        for g, disc in PAIRS:
            cmd = [sys.executable, __file__, "--one", g, disc, "--data", *data, "--steps", str(a.steps),
                   "--batch-size", str(a.batch_size), "--patch-size", str(a.patch_size), "--scale", str(a.scale),
                   "--threads", str(a.threads), "--device", a.device]
            p = subprocess.run(cmd, capture_output=True, text=True)
            if p.returncode:
                print(p.stderr[-2000:], file=sys.stderr)
                return 1
            rows.append(json.loads(p.stdout.strip().splitlines()[-1]))
    print(f"Training throughput, x{a.scale}, HR patch {a.patch_size}, batch {a.batch_size}, {a.steps} timed steps "
          f"per stage, {a.threads} threads, {rows[0]['device']} ({platform.processor() or platform.machine()})\n")
    print("| generator | G params | discriminator | D params | stage 1 samples/s | stage 2 samples/s | peak RSS MiB |")
    print("|---|---:|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['generator']} | {r['g_params']:,} | {r['discriminator']} | {r['d_params']:,} | "
              f"{r['stage1']:.1f} | {r['stage2']:.1f} | {r['peak_rss_mib']:.0f} |")
    given = argv if argv is not None else sys.argv[1:]
    print("\ncommand: python " + " ".join([str(Path(__file__).relative_to(ROOT)), *given]))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``srgan enhance FOLDER`` of 2D images at ×4 against the seed design, as issue 17 measures it.

Two folders of 64×64 8-bit PNG slices (16 and 160) are made by bicubic downsampling (Pillow) of 8-bit Kaggle
tumour slices (``shared/data/kaggle-brain-tumor-mri``, every class, sorted, evenly spread). Each folder is
enhanced by the real command line in a fresh process (``python -m srgan.cli enhance IN -o OUT --scale 4
--threads 2 -q``, the bundled ×4 model, its card's consistency, the default runtime), timed from outside; the
marginal time per slice is ``(wall(160) − wall(16)) / 144``, so start-up (imports, loading the weights) cancels out.
The seed design is timed as its seed runs it: RGB 64×64 → 256×256, PyTorch fp32, one slice at a time
(``build_generator("seed", scale=4, in_channels=3)``, its other kwargs default, ``torch.set_num_threads(2)``,
the median of ``--seed-runs`` forward passes after one warm-up, in its own process). Each figure is measured
``--repeats`` times (the machine may be shared): min and median are printed, and the ratio seed ms/slice ÷
marginal ms/slice.

    python benchmarks/bench_folder.py [--repeats 3] [--threads 2] [--seed-runs 5] [--weights X4] [--precision P]
        [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KAGGLE = REPO.parent / "shared" / "data" / "kaggle-brain-tumor-mri"
SIZES = (16, 160)


def make_folder(dst: Path, n: int) -> Path:
    """``n`` 64² PNGs, bicubic-downsampled from 8-bit Kaggle slices spread over the sorted list."""
    from PIL import Image

    jpgs = sorted(KAGGLE.rglob("*.jpg"))
    if len(jpgs) < n:
        raise SystemExit(f"{KAGGLE} holds {len(jpgs)} slices, {n} are needed")
    dst.mkdir(parents=True)
    step = len(jpgs) / n
    for i in range(n):
        im = Image.open(jpgs[int(i * step)]).convert("L")
        im.resize((64, 64), Image.Resampling.BICUBIC).save(dst / f"slice_{i:03d}.png")
    return dst


def time_enhance(
    folder: Path, out: Path, threads: int, weights: Path | None = None, precision: str | None = None
) -> float:
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}
    cmd = [sys.executable, "-m", "srgan.cli", "enhance", str(folder), "-o", str(out), "--scale", "4"]
    cmd += ["--threads", str(threads), "-q"] + (["--weights", str(weights)] if weights else [])
    cmd += ["--precision", precision] if precision else []
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, cwd=REPO, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


SEED_CODE = """
import statistics, sys, time, torch
from srgan.models import build_generator
torch.set_num_threads({threads})
torch.manual_seed(0)
c = 3  # the seed design ran RGB slices
model = build_generator("seed", scale=4, in_channels=c).eval()
x = torch.rand(1, c, 64, 64)
times = []
with torch.inference_mode():
    model(x)
    for _ in range({runs}):
        t0 = time.perf_counter(); y = model(x); times.append(time.perf_counter() - t0)
print(statistics.median(times), c, *y.shape[-2:])
"""


def time_seed(threads: int, runs: int) -> tuple[float, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    p = subprocess.run(
        [sys.executable, "-c", SEED_CODE.format(threads=threads, runs=runs)],
        check=True,
        env=env,
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    sec, c, h, w = p.stdout.split()
    return float(sec), f"{c}×64×64 → {h}×{w}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed-runs", type=int, default=5)
    ap.add_argument("--weights", type=Path, help="a candidate ×4 .safetensors (default: the bundled ×4 fidelity)")
    ap.add_argument("--precision", help="fp32 or bf16 (default: as srgan enhance, the model card's recommendation)")
    ap.add_argument("--keep", type=Path, help="make the folders here and keep them (default: a temporary folder)")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-folder-")) if args.keep is None else args.keep
    try:
        folders = {n: make_folder(root / f"in{n}", n) for n in SIZES}
        seeds, marginals = [], []
        for r in range(args.repeats):
            walls = {
                n: time_enhance(folders[n], root / f"out{n}", args.threads, args.weights, args.precision) for n in SIZES
            }
            marginal = (walls[SIZES[1]] - walls[SIZES[0]]) / (SIZES[1] - SIZES[0])
            seed, shape = time_seed(args.threads, args.seed_runs)
            seeds.append(seed)
            marginals.append(marginal)
            print(
                f"run {r + 1}: wall {SIZES[0]} = {walls[SIZES[0]]:.2f} s, wall {SIZES[1]} = {walls[SIZES[1]]:.2f} s, "
                f"marginal {1000 * marginal:.1f} ms/slice; seed ({shape}) {1000 * seed:.0f} ms/slice; "
                f"ratio {seed / marginal:.0f}×",
                flush=True,
            )
        ratios = [s / m for s, m in zip(seeds, marginals)]
        print()
        print("| figure | min | median |")
        print("|---|---|---|")
        print(
            f"| srgan enhance marginal ms/slice (×4, 64² PNG, {args.threads} threads) "
            f"| {1000 * min(marginals):.1f} | {1000 * statistics.median(marginals):.1f} |"
        )
        print(f"| seed ms/slice | {1000 * min(seeds):.0f} | {1000 * statistics.median(seeds):.0f} |")
        print(f"| seed ÷ marginal | {min(ratios):.0f}× | {statistics.median(ratios):.0f}× |")
        print()
        print("command: python benchmarks/bench_folder.py " + " ".join(sys.argv[1:]))
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

"""``srgan enhance`` of a real DICOM series at ×2, the whole path, as issue 17 measures it.

The 35-slice 256² ``siemens_prisma_t1_sag_hfs`` series (``shared/data/dicom``) and a copy of its first 5 files are
each enhanced by the real command line in a fresh process (``python -m srgan.cli enhance IN -o OUT --scale 2
--threads 2 -q``, the bundled ×2 model, its card's consistency, the runtime given, default ``auto``), timed from
outside: decode → plan → generator → projection → derived DICOM encode and write. The per-slice figure is
``(wall(35) − wall(5)) / 30``, so start-up (imports, loading the weights, building the runtime) cancels out. Each
is measured ``--repeats`` times (min and median printed); the machine may be shared.

    python benchmarks/bench_dicom_path.py [--repeats 3] [--threads 2] [--runtime auto] [--precision P]
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
SERIES = REPO.parent / "shared" / "data" / "dicom" / "siemens_prisma_t1_sag_hfs"
FEW = 5


def time_enhance(folder: Path, out: Path, threads: int, runtime: str, precision: str | None = None) -> float:
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}
    cmd = [sys.executable, "-m", "srgan.cli", "enhance", str(folder), "-o", str(out), "--scale", "2"]
    cmd += ["--threads", str(threads), "--runtime", runtime, "-q"] + (["--precision", precision] if precision else [])
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, cwd=REPO, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runtime", default="auto", help="srgan.options.RUNTIMES (default auto, as srgan enhance)")
    ap.add_argument("--precision", help="fp32 or bf16 (default: as srgan enhance, the model card's recommendation)")
    ap.add_argument("--series", type=Path, default=SERIES, help="a folder of one DICOM series")
    args = ap.parse_args()
    files = sorted(p for p in args.series.iterdir() if p.is_file())
    root = Path(tempfile.mkdtemp(prefix="bench-dicom-"))
    try:
        few = root / f"first{FEW}"
        few.mkdir()
        for p in files[:FEW]:
            shutil.copy2(p, few / p.name)
        per_slice = []
        for r in range(args.repeats):
            w_few = time_enhance(few, root / "out-few", args.threads, args.runtime, args.precision)
            w_all = time_enhance(args.series, root / "out-all", args.threads, args.runtime, args.precision)
            per_slice.append((w_all - w_few) / (len(files) - FEW))
            print(
                f"run {r + 1}: wall {FEW} = {w_few:.2f} s, wall {len(files)} = {w_all:.2f} s, "
                f"per slice {1000 * per_slice[-1]:.0f} ms",
                flush=True,
            )
        print()
        print("| figure | min | median |")
        print("|---|---|---|")
        print(
            f"| srgan enhance ×2 ms/slice, whole DICOM path ({args.series.name}, {args.threads} threads, "
            f"runtime {args.runtime}) | {1000 * min(per_slice):.0f} | {1000 * statistics.median(per_slice):.0f} |"
        )
        print()
        print("command: python benchmarks/bench_dicom_path.py " + " ".join(sys.argv[1:]))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

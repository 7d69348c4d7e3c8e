"""Where ``auto`` data consistency should switch: the residual test and the decision rules on training slices.

For a model and scale, on ``--n`` random Kaggle slices of the model's *training* split (its card's
``data.val_groups`` are left out, so thresholds are never chosen on held-out slices), LR made both ways as
``shared/tools/contract_check.py`` makes it (antialiased bicubic or central 1/s of k-space, rounded to 8 bit):
the detector's P(k-space), the residual test r of ``srgan.inference.consistency`` on the generator's output made with that
P, and the gain over bicubic interpolation of every projection with the generator told P, 0 or 1. Prints the
distribution of r per kind and the rows' mean gains under session 6's detector-only rule, the rule in
``srgan.inference.consistency`` now, and the right kind always (an oracle).

    python benchmarks/auto_consistency.py --weights resources/weights/brainsr-x4-fidelity.safetensors --scale 4
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PROJECTIONS = ("off", "bicubic", "kspace")


def training_slices(data: Path, card: dict, n: int, seed: int) -> list[Path]:
    held_out = set(card.get("data", {}).get("val_groups") or [])
    files = sorted(f for f in data.glob("*/*.jpg") if f"{f.parent.name}/{f.name}" not in held_out)
    rng = np.random.default_rng(seed)
    return [files[i] for i in sorted(rng.choice(len(files), min(n, len(files)), replace=False))]


def measure(weights: Path, scale: int, files: list[Path]) -> list[dict]:
    """One row per (kind, slice): P, r and the gain (dB over bicubic) of each projection for each generator input."""
    from PIL import Image

    from srgan.degrade import bicubic_down, kspace_truncate
    from srgan.evaluation.metrics import psnr
    from srgan.inference.consistency import project, residual_log_ratio
    from srgan.inference.engine import Enhancer, interpolate
    from srgan.inference.plan import Plan

    en = Enhancer(scale=scale, weights=weights, device="cpu", consistency="off")
    rows = []
    for kind, degrade in (("bicubic", bicubic_down), ("kspace", kspace_truncate)):
        for f in files:
            hr = np.asarray(Image.open(f).convert("L"), dtype=np.float64) / 255
            hr = hr[:hr.shape[0] // scale * scale, :hr.shape[1] // scale * scale]
            lr = (np.round(np.clip(degrade(hr, scale), 0, 1) * 255) / 255).astype(np.float32)
            base = psnr(hr, np.clip(interpolate(lr, scale), 0, 1).astype(np.float64), data_range=1)
            p = en.p_kspace(lr[None])
            row = {"kind": kind, "file": f.name, "p_kspace": p}
            for name, given in (("detector", p), ("told 0", 0.0), ("told 1", 1.0)):
                sr = en.enhance(lr, Plan(scale, "off", p, given))
                gains = {proj: psnr(hr, np.clip(sr if proj == "off" else project(sr, lr, scale, proj, steps=1), 0, 1)
                                    .astype(np.float64), data_range=1) - base for proj in PROJECTIONS}
                row[name] = {"r": residual_log_ratio(sr, lr, scale), **gains}
            rows.append(row)
    return rows


def session6(row: dict) -> float:
    p = row["p_kspace"]
    return row["detector"]["kspace" if p >= 0.8 else "bicubic" if p <= 0.02 else "off"]


def current(row: dict, scale: int) -> float:
    """The gain of what ``srgan.inference.plan.decide`` chooses for this slice."""
    from srgan.inference.plan import decide, needs_test

    p = row["p_kspace"]
    c = decide("auto", p, scale, row["detector"]["r"] if needs_test("auto", p) else None)
    return row["detector" if c.model_p == p else f"told {c.model_p:g}"][c.projection]


def oracle(row: dict) -> float:
    return row["told 1"]["kspace"] if row["kind"] == "kspace" else row["told 0"]["bicubic"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", type=Path, required=True)
    ap.add_argument("--scale", type=int, choices=(2, 4), required=True)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "kaggle-brain-tumor-mri")
    ap.add_argument("--n", type=int, default=60, help="training slices (each made both ways)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, help="also write the per-slice rows here")
    args = ap.parse_args(argv)

    import torch

    from srgan.models.weights import read_card
    torch.set_num_threads(args.threads)
    rows = measure(args.weights, args.scale, training_slices(args.data, read_card(args.weights), args.n, args.seed))
    if args.json:
        args.json.write_text(json.dumps(rows))
    print(f"# auto consistency on {args.n} training slices, {args.weights.name}, ×{args.scale}\n")
    print("| LR | r at the detector's P: min / 5 % / median / 95 % / max | P(k-space) median |")
    print("|---|---|---|")
    for kind in ("bicubic", "kspace"):
        r = np.array([row["detector"]["r"] for row in rows if row["kind"] == kind])
        p = np.median([row["p_kspace"] for row in rows if row["kind"] == kind])
        print(f"| {kind} | {' / '.join(f'{v:+.2f}' for v in np.quantile(r, [0, .05, .5, .95, 1]))} | {p:.3f} |")
    print("\n| rule | bicubic LR gain dB | k-space LR gain dB |")
    print("|---|---|---|")
    for name, fn in (("no projection", lambda row: row["detector"]["off"]),
                     ("session 6: detector only (0.8 / 0.02)", session6),
                     ("now: detector, then residual test", lambda row: current(row, args.scale)),
                     ("right kind always, generator told it", oracle)):
        gains = [np.mean([fn(row) for row in rows if row["kind"] == k]) for k in ("bicubic", "kspace")]
        print(f"| {name} | {gains[0]:+.3f} | {gains[1]:+.3f} |")
    print("\ncommand: " + shlex.join(["python", os.path.relpath(__file__, ROOT), *(argv or sys.argv[1:])]))
    return 0


if __name__ == "__main__":
    sys.exit(main())

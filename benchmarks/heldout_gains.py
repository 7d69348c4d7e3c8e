#!/usr/bin/env python3
"""Each bundled model's held-out gains over bicubic AND zero-filled (sinc) interpolation, measured the way
``shared/tools/contract_check.py quality`` measures them, written into the models' cards (``heldout_metrics``).

For the 24 held-out Kaggle slices of the default split (``srgan.evaluation.selection.heldout_images``), for bicubic
and k-space LR: LR made by contract_check's own ``degrade`` and saved as an 8-bit PNG, SR made by ``srgan enhance``
(a subprocess, the product as users run it) with the model's weights and its card's consistency (and once more with
``--consistency off``), compared with the HR slice by PSNR/SSIM (scikit-image, data range 1) next to contract_check's
``bicubic_up`` and ``zerofill_up`` (clipped to [0, 1]) of the same LR. Re-publishing rewrites the card only: the
weights, and so their sha256, stay as they are; the card is re-read with ``srgan.models.weights.read_card``.

  PYTHONPATH=$PWD python benchmarks/heldout_gains.py [--models NAME ...] [--dry-run]
  PYTHONPATH=$PWD python benchmarks/heldout_gains.py --weights CANDIDATE.safetensors [--consistency auto]

``--weights`` measures candidates (a run's export, ``benchmarks/weights``) the same way and prints; with
``--write-card`` it also writes ``heldout_metrics`` into each candidate's own card (the ``.json`` beside it).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from srgan.io import atomic  # noqa: E402
from srgan.models.weights import list_bundled, read_card, sha256_file  # noqa: E402

SHARED = REPO.parent / "shared"
KAGGLE = SHARED / "data" / "kaggle-brain-tumor-mri"
TOOL = SHARED / "tools" / "contract_check.py"
MEASURED_WITH = (
    "benchmarks/heldout_gains.py: shared/tools/contract_check.py's degradations, bicubic_up and zerofill_up (LR "
    "saved as 8-bit PNG, SR from `srgan enhance --weights` of the weights file) on the 24 held-out Kaggle slices of "
    "the default split, with the card's consistency; gains over bicubic and over zero-filled (sinc) interpolation, "
    "headline over the better of the two"
)


def contract_check():
    spec = importlib.util.spec_from_file_location("contract_check", TOOL)
    if spec is None or spec.loader is None:
        raise SystemExit(f"{TOOL} not found")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def srgan_exe() -> str:
    exe = Path(sys.executable).with_name("srgan")
    return str(exe) if exe.exists() else "srgan"


def measure(cc, files: list[Path], card: dict, lr_kind: str, consistency: str, weights: Path | None = None) -> dict:
    """Means over ``files`` of PSNR/SSIM of the model, bicubic and zero-fill, and the gains."""
    from PIL import Image
    from skimage.metrics import peak_signal_noise_ratio as psnr
    from skimage.metrics import structural_similarity as ssim

    s = int(card["kwargs"]["scale"])
    with tempfile.TemporaryDirectory() as d:
        lr_dir, sr_dir = Path(d) / "lr", Path(d) / "sr"
        lr_dir.mkdir()
        hrs = {}
        for f in files:
            hr = cc.load_gray(str(f))
            hr = hr[: hr.shape[0] // s * s, : hr.shape[1] // s * s]
            name = f"{f.parent.name}_{f.stem}.png"
            Image.fromarray(np.round(cc.degrade(hr, s, lr_kind) * 255).astype(np.uint8)).save(lr_dir / name)
            hrs[name] = hr
        weights = weights or REPO / "resources" / "weights" / card["file"]
        cmd = [srgan_exe(), "enhance", str(lr_dir), "-o", str(sr_dir), "--scale", str(s), "--weights", str(weights),
               "--consistency", consistency, "--device", "cpu", "-q"]
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        p = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if p.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{p.stderr[-2000:]}")
        rows = []
        for name, hr in hrs.items():
            sr = cc.load_gray(str(sr_dir / name))
            lr = cc.load_gray(str(lr_dir / name))
            bi, zf = cc.bicubic_up(lr, s), np.clip(cc.zerofill_up(lr, s), 0, 1)
            rows.append([psnr(hr, x, data_range=1) for x in (sr, bi, zf)]
                        + [ssim(hr, x, data_range=1) for x in (sr, bi, zf)])
    r = np.array(rows).mean(0)
    best = "zerofill" if r[2] >= r[1] else "bicubic"
    return {
        "psnr_db": round(float(r[0]), 2),
        "ssim": round(float(r[3]), 4),
        "bicubic_psnr_db": round(float(r[1]), 2),
        "bicubic_ssim": round(float(r[4]), 4),
        "zerofill_psnr_db": round(float(r[2]), 2),
        "zerofill_ssim": round(float(r[5]), 4),
        "gain_db": round(float(r[0] - r[1]), 2),
        "gain_over_zerofill_db": round(float(r[0] - r[2]), 2),
        "best_baseline": best,
        "gain_over_best_baseline_db": round(float(r[0] - max(r[1], r[2])), 2),
        "n": len(rows),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", help="bundled model names (default: all)")
    ap.add_argument("--dry-run", action="store_true", help="print the metrics, leave the cards as they are")
    ap.add_argument("--weights", nargs="+", type=Path,
                    help="candidate .safetensors files to measure (printed; their cards written with --write-card)")
    ap.add_argument("--consistency", help="with --weights: instead of the candidate card's consistency")
    ap.add_argument("--write-card", action="store_true",
                    help="with --weights: write heldout_metrics into each candidate's card too")
    a = ap.parse_args(argv)
    if a.write_card and not a.weights:
        ap.error("--write-card needs --weights (bundled cards are written unless --dry-run)")
    from srgan.evaluation.selection import heldout_images, split_config

    cc = contract_check()
    held_out, _ = heldout_images(KAGGLE, split_config())
    files = [Path(f) for _, f in held_out]
    if not files:
        raise SystemExit(f"no held-out slices under {KAGGLE}")
    for w in a.weights or []:
        card = read_card(w)
        cons = a.consistency or str(card.get("consistency", "off"))
        held = heldout_metrics(cc, files, card, cons, str(w), weights=w)
        if a.write_card:
            write_card(w, held)
    if a.weights:
        return 0
    for card in list_bundled():
        if a.models and card["name"] not in a.models:
            continue
        held = heldout_metrics(cc, files, card, str(card.get("consistency", "off")), card["name"])
        if not a.dry_run:
            write_card(REPO / "resources" / "weights" / card["file"], held)
    return 0


def heldout_metrics(cc, files: list[Path], card: dict, consistency: str, name: str,
                    weights: Path | None = None) -> dict:
    """A card's ``heldout_metrics``: with ``consistency``, then without projection (printed as measured)."""
    held: dict = dict(card.get("heldout_metrics") or {})
    for key, cons in (("kaggle_heldout_24", consistency), ("kaggle_heldout_24_without_projection", "off")):
        if key != "kaggle_heldout_24" and consistency == "off":  # the same measurement: made once
            held[key] = held["kaggle_heldout_24"]
            continue
        held[key] = {f"{lr}_lr": measure(cc, files, card, lr, cons, weights=weights) for lr in ("bicubic", "kspace")}
        for lr, m in held[key].items():
            print(f"{name} {key} (consistency {cons}) {lr}: {m['psnr_db']:.2f} dB, SSIM {m['ssim']:.4f}, "
                  f"{m['gain_db']:+.2f} over bicubic, {m['gain_over_zerofill_db']:+.2f} over zero-fill", flush=True)
    held["consistency"], held["measured_with"] = consistency, MEASURED_WITH
    return held


def write_card(path: Path, held: dict) -> None:
    """Write ``held`` as ``heldout_metrics`` into the card beside the weights ``path``, atomically; the weights
    (and so their sha256) stay as they are."""
    card_path = path.with_suffix(".json")
    stored = json.loads(card_path.read_text())
    if sha256_file(path) != stored["sha256"]:
        raise SystemExit(f"{path}: sha256 does not match its card")
    stored["heldout_metrics"] = held
    atomic.write_text(card_path, json.dumps(stored, indent=2, sort_keys=True) + "\n")
    read_card(path)  # the card is still valid
    print(f"wrote {card_path}", flush=True)


if __name__ == "__main__":
    sys.exit(main())

"""`srgan benchmark`: the model comparison table and its report, in one command.

For each scale (×2, ×4) and LR kind (antialiased bicubic, k-space truncation) it runs the interpolation baselines
(nearest, bicubic, Lanczos, zero-filled k-space), the bundled fidelity and GAN models and any ``--weights``
(e.g. a trained ``seed``) through ``srgan.evaluation.evaluate.evaluate_pairs`` on held-out HR images and volumes
(``srgan.evaluation.selection``), with the methods of ``srgan.evaluation.methods``, and reports
(``srgan.evaluation.report``):

- PSNR, SSIM (95 % bootstrap intervals over images), HFEN, sharpness, the paired PSNR gain over the best
  classical baseline of each table (named; zero-fill on k-space LR) and over bicubic, the
  parameter count, the multiply-accumulates per LR pixel (``srgan.models.cost``, on the timing input) and the CPU
  time per slice (×4: 64×64 → 256×256, ×2: 128×128 → 256×256; model load and warm-up excluded, median of
  ``--timing-runs``, ``torch.set_num_threads(--threads)``);
- the Pareto view (``pareto.png``): each model's PSNR gain over the best classical baseline against its MACs per
  LR pixel and its ms per slice, per scale and LR kind (``pareto_points``);
- per source (``source_rows``), when the cases come from more than one: the models' and the best baseline's PSNR
  per image root and per scanner/contrast of the volumes;
- consistency: each model's PSNR with its output projected (``srgan.inference.consistency.project``) onto the LR
  input under no / bicubic / k-space degradation, and the relative residual left after projection (target ≤ 1e-3);
- tumour regions: with ``--label``, PSNR/SSIM inside tumour core (labels 1|4) and oedema (2) per volume and model,
  flagging every case where a model does worse than bicubic or zero-fill inside the tumour;
- disagreement on the example crop: |GAN − fidelity| and the spread over the 8 flips/rotations
  (``srgan.inference.tta.tta_spread``) of one model.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from srgan.errors import InputError
from srgan.evaluation.evaluate import REFERENCE, TUMOUR_REGIONS
from srgan.evaluation.figures import example_crop
from srgan.evaluation.methods import (
    TIMING_LR_SIDE,
    BenchMethod,
    Book,
    CachedModel,
    baseline_raw,
    model_specs,
    time_ms,
    timing_input,
    variant_name,
)
from srgan.evaluation.report import Outcome, check_out, markdown, write_report
from srgan.evaluation.selection import MAIN_REGION, image_cases, split_config, volume_cases
from srgan.inference.tta import tta_spread
from srgan.options import BASELINES, LR_DEGRADATIONS, PROJECTIONS, SCALES

__all__ = [
    "build_parser",
    "consistency_rows",
    "crop_spread",
    "main",
    "pareto_points",
    "run",
    "source_rows",
    "tumour_flags",
]


def tumour_flags(
    rows: list[dict],
    methods: Sequence[str] | None = None,
    *,
    reference: str = REFERENCE,
    regions: Sequence[str] = TUMOUR_REGIONS,
    tol_db: float = 0.0,
    tol_ssim: float = 0.0,
) -> list[dict]:
    """Every (image, method, tumour region) where the method's PSNR or SSIM is below the reference's (named in
    each flag's ``reference``, its values in ``psnr_reference`` / ``ssim_reference``).

    ``rows`` are ``evaluate_pairs`` rows (optionally with ``dataset``/``scale``/``lr`` keys, matched too);
    ``methods`` limits which are checked (default: all but the reference). A tolerance keeps rounding noise out.
    """

    def key(r, method):
        return (r.get("dataset"), r.get("scale"), r.get("lr"), r["image"], method, r["region"])

    ref = {key(r, r["method"]): r for r in rows if r["method"] == reference and r["region"] in regions}
    flags = []
    for r in rows:
        if r["region"] not in regions or r["method"] == reference:
            continue
        if methods is not None and r["method"] not in methods:
            continue
        b = ref.get(key(r, reference))
        if b is None:
            continue
        worse = []
        if np.isfinite(r["psnr"]) and np.isfinite(b["psnr"]) and r["psnr"] < b["psnr"] - tol_db:
            worse.append("PSNR")
        if np.isfinite(r["ssim"]) and np.isfinite(b["ssim"]) and r["ssim"] < b["ssim"] - tol_ssim:
            worse.append("SSIM")
        if worse:
            flags.append(
                {
                    "dataset": r.get("dataset"),
                    "scale": r.get("scale"),
                    "lr": r.get("lr"),
                    "image": r["image"],
                    "method": r["method"],
                    "region": r["region"],
                    "worse_in": worse,
                    "reference": reference,
                    "psnr": r["psnr"],
                    "psnr_reference": b["psnr"],
                    "dpsnr": r["psnr"] - b["psnr"],
                    "ssim": r["ssim"],
                    "ssim_reference": b["ssim"],
                    "dssim": r["ssim"] - b["ssim"],
                }
            )
    return flags


def consistency_rows(rows: list[dict], residuals: dict, models: Sequence[str]) -> list[dict]:
    """Per dataset/scale/LR kind and model: mean PSNR (main region) under each projection, and mean residuals."""
    out = []
    keys = sorted({(r["dataset"], r["scale"], r["lr"]) for r in rows}, key=str)
    for ds, s, lr in keys:
        region = MAIN_REGION[ds]
        for m in models:
            entry = {"dataset": ds, "scale": s, "lr": lr, "model": m}
            present = False
            for proj in PROJECTIONS:
                v = [
                    r["psnr"]
                    for r in rows
                    if (r["dataset"], r["scale"], r["lr"], r["region"]) == (ds, s, lr, region)
                    and r["method"] == variant_name(m, proj)
                    and np.isfinite(r["psnr"])
                ]
                entry[f"psnr_{proj}"] = float(np.mean(v)) if v else float("nan")
                present |= bool(v)
                if proj != "off":
                    res = residuals.get((ds, s, lr, variant_name(m, proj)), [])
                    entry[f"residual_{proj}"] = float(np.mean(res)) if res else float("nan")
                    entry[f"residual_{proj}_max"] = float(np.max(res)) if res else float("nan")
            if present:
                out.append(entry)
    return out


def source_rows(rows: list[dict], sources: dict, main_methods: dict) -> list[dict]:
    """Per dataset, scale, LR kind and source: the mean main-region PSNR of every method of that scale's main
    table, the best classical baseline of the source (highest mean PSNR, named) and each model's gain over it.

    ``sources`` maps ``(dataset, image name)`` to the case's source; images without one are left out."""
    out = []
    keys = dict.fromkeys((r["dataset"], r["scale"], r["lr"]) for r in rows)
    for ds, s, lr in keys:
        region = MAIN_REGION[ds]
        sel = [
            r
            for r in rows
            if (r["dataset"], r["scale"], r["lr"], r["region"]) == (ds, s, lr, region)
            and r["method"] in main_methods[s]
            and np.isfinite(r["psnr"])
            and (ds, r["image"]) in sources
        ]
        for src in dict.fromkeys(sources[(ds, r["image"])] for r in sel):
            mine = [r for r in sel if sources[(ds, r["image"])] == src]
            psnr = {
                m: float(np.mean([r["psnr"] for r in mine if r["method"] == m]))
                for m in main_methods[s]
                if any(r["method"] == m for r in mine)
            }
            base = {b: v for b, v in psnr.items() if b in BASELINES}
            best = max(base, key=lambda b: base[b]) if base else None
            models = {m: v for m, v in psnr.items() if m not in BASELINES}
            out.append(
                {
                    "dataset": ds,
                    "scale": s,
                    "lr": lr,
                    "source": src,
                    "region": region,
                    "n": len({r["image"] for r in mine}),
                    "best_baseline": best,
                    "psnr_best_baseline": base[best] if best else float("nan"),
                    "psnr": psnr,
                    "gain_best": {m: v - base[best] for m, v in models.items()} if best else {},
                }
            )
    return out


def pareto_points(results: dict, models_info: dict, timing: dict, model_names: dict) -> list[dict]:
    """One point per dataset, scale, LR kind and model: its mean main-region PSNR gain over the best classical
    baseline (``psnr_gain_best``, named in ``reference``), its MACs per LR pixel and its ms per slice (None
    without timing)."""
    out = []
    for ds, by_scale in results.items():
        region = MAIN_REGION[ds]
        for s, by_lr in by_scale.items():
            for lr, res in by_lr.items():
                for m in model_names[int(s)]:
                    e = (res.get(m) or {}).get(region, {}).get("psnr_gain_best")
                    if not e or e.get("mean") is None or not np.isfinite(e["mean"]):
                        continue
                    out.append(
                        {
                            "dataset": ds,
                            "scale": int(s),
                            "lr": lr,
                            "model": m,
                            "psnr_gain_best": float(e["mean"]),
                            "reference": e.get("reference"),
                            "macs_per_lr_px": models_info[int(s)][m].get("macs_per_lr_px"),
                            "ms_per_slice": timing.get(int(s), {}).get(m, {}).get("ms_per_slice"),
                        }
                    )
    return out


def crop_spread(enhancer: Any, lr: np.ndarray, scale: int, crop: tuple[slice, slice], margin: int = 8) -> np.ndarray:
    """The flip/rotation spread (``srgan.inference.tta.tta_spread`` of ``enhancer.enhance``) of the HR ``crop`` only:
    the model sees the LR window under it plus ``margin`` LR px."""
    ys, xs = crop
    h, w = lr.shape
    ly = slice(max(0, ys.start // scale - margin), min(h, -(-ys.stop // scale) + margin))
    lx = slice(max(0, xs.start // scale - margin), min(w, -(-xs.stop // scale) + margin))
    spread = tta_spread(enhancer.enhance, lr[ly, lx])
    y0, x0 = ys.start - ly.start * scale, xs.start - lx.start * scale
    return spread[y0 : y0 + ys.stop - ys.start, x0 : x0 + xs.stop - xs.start]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="srgan benchmark",
        description="The model comparison table and HTML report: baselines, bundled fidelity/GAN models and "
        "--weights on held-out images and volumes at x2/x4, bicubic and k-space LR; quality with 95%% "
        "bootstrap intervals, MACs per LR pixel, CPU ms/slice, a Pareto plot of quality against cost, per-source "
        "tables, consistency, tumour regions.",
        epilog="Example: srgan benchmark --images shared/data/kaggle-brain-tumor-mri --volumes "
        "shared/data/brainles-examples --label shared/data/brainles-examples/TCGA-DU-7294/mav.nii.gz "
        "--weights runs/seed/brainsr-x4-fidelity.safetensors --out benchmark-report",
    )
    p.add_argument(
        "--images", nargs="+", default=[], metavar="DIR", help="folder(s) of HR 2D images (a training source root)"
    )
    p.add_argument(
        "--split",
        choices=("heldout", "all"),
        default="heldout",
        help="heldout: only images/volumes no model was trained on, split as srgan.training.data does (default)",
    )
    p.add_argument(
        "--train-config",
        type=Path,
        metavar="JSON",
        help="a run's config.json for the split (val_fraction, seed, exclude; default: training defaults)",
    )
    p.add_argument("--volumes", nargs="+", default=[], metavar="PATH", help="NIfTI files or folders of them")
    p.add_argument(
        "--label", type=Path, help="BraTS label map (1 core, 2 oedema, 4 enhancing) of the volumes beside it"
    )
    p.add_argument(
        "--max-slices",
        type=int,
        default=16,
        metavar="N",
        help="volumes: at most N foreground slices, half over the tumour (default 16; 0 = all)",
    )
    p.add_argument("--scale", type=int, nargs="+", default=list(SCALES), choices=SCALES, help="scales (default 2 4)")
    p.add_argument(
        "--lr", nargs="+", default=list(LR_DEGRADATIONS), choices=LR_DEGRADATIONS, help="LR kinds (default both)"
    )
    p.add_argument("--weights", nargs="+", default=[], metavar="PATH", help="more model weights (.safetensors + card)")
    p.add_argument("--no-bundled", action="store_true", help="leave out the bundled models")
    p.add_argument("--max-images", type=int, default=0, metavar="N", help="at most N images per folder (default all)")
    p.add_argument(
        "--out", type=Path, default=Path("benchmark-report"), help="report folder (default benchmark-report/)"
    )
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads for the run and the timing (default 2)")
    p.add_argument(
        "--device", default="cpu", help="device for models: cpu, cuda, mps, auto (default cpu: ms/slice is CPU time)"
    )
    p.add_argument(
        "--timing-runs",
        type=int,
        default=10,
        metavar="N",
        help="timed calls per method, median (default 10; 0 = no timing)",
    )
    p.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples (default 2000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    return p


def run(args: argparse.Namespace) -> dict:
    """Benchmark as ``args`` say; writes the report folder and returns the summary."""
    import torch

    from srgan.evaluation.evaluate import degrader, evaluate_pairs, summarise
    from srgan.inference.engine import Enhancer, interpolate
    from srgan.models import count_parameters
    from srgan.models.cost import macs_per_lr_pixel

    say = lambda msg: print(msg, file=sys.stderr)
    if not args.images and not args.volumes:
        raise InputError(None, "nothing to benchmark: give --images DIR and/or --volumes PATH")
    check_out(args.out)
    split = split_config(args.train_config)
    img_cases, img_info = image_cases(args.images, split, split_mode=args.split, max_images=args.max_images, say=say)
    vol_cases, vol_info = volume_cases(
        args.volumes, split, label=args.label, split_mode=args.split, max_slices=args.max_slices, say=say
    )
    datasets = {k: v for k, v in (("images", img_cases), ("volumes", vol_cases)) if v}
    if not datasets:
        raise InputError(Path((args.images or args.volumes)[0]), "no held-out images or volumes to benchmark")
    notes: list[str] = []
    rows: list[dict] = []
    residuals: dict = {}
    models_info: dict = {}
    timing: dict = {}
    examples: dict = {}
    disagreement: dict = {}
    enhancers_by_scale: dict = {}
    for scale in args.scale:
        specs = model_specs(scale, args.weights, bundled=not args.no_bundled)
        enh = {m.name: Enhancer(scale=scale, weights=m.path, device=args.device, consistency="off") for m in specs}
        enhancers_by_scale[scale] = (specs, enh)
        info: dict[str, dict[str, Any]] = {b: {"role": "baseline", "params": 0} for b in BASELINES}
        for m in specs:
            info[m.name] = {
                "role": m.role,
                "arch": m.card.get("arch"),
                "params": count_parameters(enh[m.name].model),
                "macs_per_lr_px": macs_per_lr_pixel(enh[m.name].model, scale, lr_side=TIMING_LR_SIDE[scale]),
                "path": str(m.path),
                "bundled": m.bundled,
                "sha256": m.card.get("sha256"),
                "consistency": m.card.get("consistency", "off"),
                "kwargs": m.card.get("kwargs", {}),
                # as ``srgan enhance`` runs it: the card's recommended precision where this machine has it
                "runtime": enh[m.name].generator.name,
                "precision": enh[m.name].generator.precision,
            }
            val_groups = (m.card.get("data") or {}).get("val_groups")
            sources = [Path(s).resolve() for s in (m.card.get("data") or {}).get("sources", [])]
            for root in args.images:
                if isinstance(val_groups, list) and Path(root).resolve() in sources:
                    seen = [g for g in img_info["roots"][str(Path(root))]["images"] if g not in val_groups]
                    if seen:
                        notes.append(
                            f"{m.name}: {len(seen)} benchmarked image(s) of {root} are not in its card's "
                            f"validation groups (trained on?): {', '.join(seen[:5])}"
                        )
        models_info[scale] = info
        torch.set_num_threads(max(1, args.threads))
        if args.timing_runs:
            x = timing_input(scale)
            timing[scale] = {
                b: {"ms_per_slice": time_ms(partial(interpolate, scale=scale, method=b), x, args.timing_runs)}
                for b in BASELINES
            }
            for m in specs:  # as ``srgan enhance`` runs it: the card's projection included
                timed = Enhancer(scale=scale, weights=m.path, device=args.device)
                timing[scale][m.name] = {"ms_per_slice": time_ms(timed.enhance, x, args.timing_runs)}
            for v in timing[scale].values():
                v.update(lr_shape=list(x.shape), threads=args.threads, runs=args.timing_runs)
        for lr_kind in args.lr:
            book = Book()
            methods = {b: BenchMethod(b, baseline_raw(b, scale), scale, book) for b in BASELINES}
            for m in specs:
                cached = CachedModel(enh[m.name])
                methods[m.name] = BenchMethod(m.name, cached, scale, book, projection=info[m.name]["consistency"])
                for proj in PROJECTIONS:
                    methods[variant_name(m.name, proj)] = BenchMethod(
                        variant_name(m.name, proj), cached, scale, book, projection=proj, record=False
                    )
            for ds, cases in datasets.items():
                for ci, case in enumerate(cases):
                    record = lr_kind == args.lr[0] and (
                        (ds == "images" and ci == 0)
                        or (
                            ds == "volumes"
                            and case.label is not None
                            and not any(k[1] == "volumes" for k in examples if k[0] == scale)
                        )
                    )
                    book.start(record)
                    before = {k: len(v) for k, v in book.residuals.items()}
                    for r in evaluate_pairs([case], methods, scale, degrader(lr_kind)):
                        rows.append({"dataset": ds, "scale": scale, "lr": lr_kind, **r})
                    for name, v in book.residuals.items():
                        residuals.setdefault((ds, scale, lr_kind, name), []).extend(v[before.get(name, 0) :])
                    if record:
                        examples[(scale, ds)] = {
                            "case": case,
                            "lr": book.lr,
                            "outputs": dict(book.outputs),
                            "lr_kind": lr_kind,
                        }
                    say(f"x{scale} {lr_kind} {ds} [{ci + 1}/{len(cases)}] {case.name}")
    used = {str(m.path.resolve()) for s in args.scale for m in enhancers_by_scale[s][0]}
    for w in args.weights:
        p = Path(w)
        p = p if p.suffix == ".safetensors" else p.with_name(p.name + ".safetensors")
        if str(p.resolve()) not in used:
            notes.append(f"{w}: its scale is not among --scale {' '.join(map(str, args.scale))}; not benchmarked")
    model_names = {s: [m.name for m in enhancers_by_scale[s][0]] for s in args.scale}
    main_methods = {s: [*BASELINES, *model_names[s]] for s in args.scale}
    results: dict = {}
    for ds in datasets:
        for s in args.scale:
            for lr_kind in args.lr:
                sel = [
                    r
                    for r in rows
                    if (r["dataset"], r["scale"], r["lr"]) == (ds, s, lr_kind) and r["method"] in main_methods[s]
                ]
                results.setdefault(ds, {}).setdefault(str(s), {})[lr_kind] = summarise(
                    sel, n_boot=args.bootstrap, seed=args.seed
                )
    case_sources = {(ds, c.name): c.source for ds, cases in datasets.items() for c in cases if c.source}
    per_source = source_rows(rows, case_sources, main_methods)
    if len({(e["dataset"], e["source"]) for e in per_source}) < 2:
        per_source = []  # one source: the main tables say it all
    all_models = [m for s in args.scale for m in model_names[s]]
    cons = consistency_rows(rows, residuals, list(dict.fromkeys(all_models)))
    main_rows = [r for r in rows if r["method"] in main_methods[r["scale"]]]
    # the tumour must be no worse than bicubic nor than zero-fill (what the scanner shows)
    flags = [f for ref in (REFERENCE, "zerofill") for f in tumour_flags(main_rows, all_models, reference=ref)]
    # disagreement on the example crop: |GAN − fidelity| and the flip/rotation spread of one model
    for s in args.scale:
        ex = examples.get((s, "images")) or examples.get((s, "volumes"))
        specs, enh = enhancers_by_scale[s]
        if ex is None or not specs:
            continue
        k, (ys, xs) = example_crop(ex, s)
        fid = next((m for m in specs if m.role == "fidelity"), None)
        gan = next((m for m in specs if m.role == "gan"), None)
        d: dict[str, Any] = {"image": ex["case"].name, "slice": k}
        if fid is not None and gan is not None:
            d["gan_vs_fidelity"] = np.abs(ex["outputs"][gan.name][k][ys, xs] - ex["outputs"][fid.name][k][ys, xs])
            d["pair"] = (gan.name, fid.name)
        tta_model = fid or specs[0]
        d["tta_model"] = tta_model.name
        d["tta_std"] = crop_spread(enh[tta_model.name], ex["lr"][k], s, (ys, xs))
        disagreement[s] = d
    summary = {
        "config": {
            "images": [str(p) for p in args.images],
            "volumes": [str(p) for p in args.volumes],
            "label": str(args.label) if args.label else None,
            "split": args.split,
            "scales": args.scale,
            "lr": args.lr,
            "threads": args.threads,
            "device": args.device,
            "timing_runs": args.timing_runs,
            "bootstrap": args.bootstrap,
            "seed": args.seed,
            "max_images": args.max_images,
            "max_slices": args.max_slices,
            "main_region": MAIN_REGION,
            "timing_input": {
                str(s): f"{TIMING_LR_SIDE[s]}x{TIMING_LR_SIDE[s]} -> {TIMING_LR_SIDE[s] * s}x{TIMING_LR_SIDE[s] * s}"
                for s in args.scale
            },
            "command": "srgan benchmark " + " ".join(getattr(args, "argv", []) or []),
        },
        "split": {**asdict(split), "images": img_info, "volumes": vol_info},
        "machine": {"torch": torch.__version__, "cpu_count": os.cpu_count(), "threads": args.threads},
        "models": {str(s): v for s, v in models_info.items()},
        "timing": {str(s): v for s, v in timing.items()},
        "results": results,
        "pareto": pareto_points(results, models_info, timing, model_names),
        "per_source": per_source,
        "consistency": cons,
        "tumour_flags": flags,
        "disagreement": {
            str(s): {
                "image": d["image"],
                "tta_model": d["tta_model"],
                "tta_std_mean": float(d["tta_std"].mean()),
                **(
                    {"gan_vs_fidelity_mean": float(d["gan_vs_fidelity"].mean()), "pair": d["pair"]}
                    if "pair" in d
                    else {}
                ),
            }
            for s, d in disagreement.items()
        },
        "notes": notes,
    }
    outcome = Outcome(summary, rows, main_methods, model_names, flags, examples, disagreement)
    print(markdown(outcome))
    write_report(args.out, outcome)
    say(f"wrote {args.out}/report.html, table.md, summary.json, per_image.csv, pareto.png")
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    import torch

    threads = torch.get_num_threads()
    try:
        run(args)
    except InputError as err:
        print(f"srgan benchmark: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("srgan benchmark: interrupted; no report written", file=sys.stderr)
        return 130
    finally:
        torch.set_num_threads(threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())

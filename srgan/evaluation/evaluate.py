"""`srgan evaluate`: how much better than interpolation a model is, with uncertainty.

HR images (2D files or NIfTI volumes) are degraded to LR (antialiased bicubic or k-space truncation, from
``srgan.degrade``), brought back to HR size by each method — the interpolation baselines (nearest, bicubic,
Lanczos, zero-filled k-space) and any models — and compared with the HR image over the whole image, the
foreground (head/brain) and, given a BraTS label map, the tumour core (labels 1|4) and oedema (2). Per-image
rows go to a CSV, means with 95 % bootstrap intervals (and paired gains over the best classical baseline of
each region, and over bicubic) to a JSON summary and a markdown table.

Conventions that make the numbers comparable with the project's contract check:
- 2D images are in [0, 1] (``data_range`` 1); their LR is stored at the file's bit depth (clipped and
  rounded, as an LR file would be) and every method's output is clipped to [0, 1] (as a saved image is).
- Volumes use ``data_range`` = 99.5th percentile of the HR foreground (MR has no absolute unit), no clipping,
  and are evaluated on the slices (through-plane axis) that contain foreground, in-plane super-resolution.
- HR is cropped (bottom/right) to a multiple of the scale so LR pixel centres fall on the HR grid.
- The bootstrap resamples images: a volume (all its evaluated slices) is one unit, a 2D file another.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from srgan.errors import InputError
from srgan.evaluation import metrics as M
from srgan.io import atomic
from srgan.options import BASELINES, LR_DEGRADATIONS

METRICS = ("psnr", "ssim", "nrmse", "hfen", "sharpness")
REFERENCE = "bicubic"  # the baseline every gain is measured against
TUMOUR_REGIONS = ("tumour_core", "oedema")  # regions a BraTS label map adds (labels 1|4 and 2)

Method = Callable[[np.ndarray], np.ndarray]


# --- baselines: ``srgan.inference.engine.interpolate``, which keeps the pixel-centre convention
#     (LR pixel i centred on HR i·s + (s−1)/2): nearest-exact, bicubic (a = −0.75), Pillow Lanczos-3,
#     zero-filled k-space of the whole slice (sinc, what scanners show) ---


def baseline_methods(scale: int) -> dict[str, Method]:
    from srgan.inference.engine import interpolate

    return {name: partial(interpolate, scale=scale, method=name) for name in BASELINES}


class StackMethod:
    """A model as an evaluation method: called on one LR slice, or on a whole (N, h, w) stack at once
    (``stack``) so the engine can batch."""

    def __init__(self, enhancer):
        self.enhancer = enhancer

    def __call__(self, lr: np.ndarray) -> np.ndarray:
        return self.enhancer.enhance(lr)

    def stack(self, lrs: np.ndarray) -> np.ndarray:
        return self.enhancer.enhance_stack(lrs)


def degrader(kind: str) -> Callable[[np.ndarray, int], np.ndarray]:
    """HR (H, W) → LR (H/s, W/s) for ``kind`` in ``srgan.options.LR_DEGRADATIONS``, from ``srgan.degrade``."""
    from srgan import degrade

    if kind == "bicubic":
        return degrade.bicubic_down
    if kind == "kspace":
        return degrade.kspace_truncate
    raise ValueError(f"unknown LR kind {kind!r}; choose one of {LR_DEGRADATIONS}")


# --- cases ---


@dataclass
class Case:
    """One HR image (H, W) or slice stack (N, H, W) to evaluate, with how to measure it."""

    name: str
    hr: np.ndarray
    data_range: float = 1.0
    label: np.ndarray | None = None  # BraTS labels, same shape as hr
    clip: tuple[float, float] | None = (0.0, 1.0)  # applied to every method's output
    lr_levels: int | None = None  # quantise LR to this many steps (255: 8-bit file)
    notes: list[str] = field(default_factory=list)
    source: str = ""  # where it comes from, for per-source tables (``srgan.evaluation.selection``)


def _as_case(x, i: int) -> Case:
    if isinstance(x, Case):
        return x
    return Case(name=f"image{i:04d}", hr=np.asarray(x, np.float32))


def _regions(case: Case, hr: np.ndarray, label: np.ndarray | None) -> dict[str, np.ndarray]:
    regions = {"whole": np.ones(hr.shape, bool), "foreground": M.foreground_mask(hr)}
    if label is not None:
        core, oedema = TUMOUR_REGIONS
        regions[core] = np.isin(label, (1, 4))
        regions[oedema] = label == 2
    return {k: v for k, v in regions.items() if v.any()}


def evaluate_pairs(
    hr_list: Sequence,
    methods: Mapping[str, Method],
    scale: int,
    degrade: Callable[[np.ndarray, int], np.ndarray],
    progress: Callable[[str], None] | None = None,
) -> list[dict]:
    """Rows of metrics: one per (image, method, region).

    ``hr_list``: :class:`Case` objects or bare (H, W) arrays in [0, 1]. ``methods`` map a name to
    LR (h, w) → SR (s·h, s·w); a stack is fed one slice at a time. ``degrade(hr, s)`` makes the LR image.
    Each row: image, method, region, n_pixels, hr_shape, and the metrics of ``METRICS``.
    """
    s = int(scale)
    rows: list[dict] = []
    for i, item in enumerate(hr_list):
        case = _as_case(item, i)
        hr = np.asarray(case.hr, np.float32)
        stack = hr[None] if hr.ndim == 2 else hr
        H, W = stack.shape[1] // s * s, stack.shape[2] // s * s
        if H == 0 or W == 0:
            raise InputError(case.name, f"image {hr.shape[-2:]} is smaller than the scale {s}")
        stack = stack[:, :H, :W]
        label = None
        if case.label is not None:
            lab = np.asarray(case.label)
            label = (lab[None] if lab.ndim == 2 else lab)[:, :H, :W]
        lrs = []
        for sl in stack:
            lr = np.asarray(degrade(sl, s), np.float32)
            if case.lr_levels:
                lr = (np.rint(np.clip(lr, 0.0, 1.0) * case.lr_levels) / case.lr_levels).astype(np.float32)
            lrs.append(lr.astype(np.float32))
        out_hr = stack[0] if hr.ndim == 2 else stack
        out_label = None if label is None else (label[0] if hr.ndim == 2 else label)
        regions = _regions(case, out_hr, out_label)
        for name, method in methods.items():
            if hasattr(method, "stack"):
                sr = np.asarray(method.stack(np.stack(lrs)), np.float32)
            else:
                sr = np.stack([np.asarray(method(lr), np.float32) for lr in lrs])
            if sr.shape != (len(lrs), H, W):
                raise ValueError(f"method {name!r} returned {sr.shape[1:]} for LR {lrs[0].shape}, expected {(H, W)}")
            if case.clip is not None:
                sr = np.clip(sr, *case.clip)
            sr = sr[0] if hr.ndim == 2 else sr
            for region, mask in regions.items():
                rows.append(
                    {
                        "image": case.name,
                        "method": name,
                        "region": region,
                        "n_pixels": int(mask.sum()),
                        "hr_shape": "x".join(map(str, out_hr.shape)),
                        "psnr": M.psnr(out_hr, sr, case.data_range, mask),
                        "ssim": M.ssim(out_hr, sr, case.data_range, mask),
                        "nrmse": M.nrmse(out_hr, sr, mask),
                        "hfen": M.hfen(out_hr, sr, mask),
                        "sharpness": M.sharpness(out_hr, sr, mask),
                    }
                )
        if progress:
            progress(f"[{i + 1}/{len(hr_list)}] {case.name}")
    return rows


def best_baselines(rows: list[dict], metric: str = "psnr") -> dict[str, str]:
    """{region: the classical baseline (of ``srgan.options.BASELINES``) with the highest mean ``metric``} among
    the baselines in ``rows``: the honest reference for a gain (zero-fill usually, bicubic on some inputs)."""
    best: dict[str, tuple[float, str]] = {}
    for reg in dict.fromkeys(r["region"] for r in rows):
        for b in BASELINES:
            vals = [r[metric] for r in rows if r["method"] == b and r["region"] == reg and np.isfinite(r[metric])]
            if vals and (reg not in best or float(np.mean(vals)) > best[reg][0]):
                best[reg] = (float(np.mean(vals)), b)
    return {reg: b for reg, (_, b) in best.items()}


def summarise(rows: list[dict], n_boot: int = 2000, seed: int = 0) -> dict:
    """{method: {region: {metric: {mean, lo, hi, n}}}} with 95 % bootstrap intervals over images, plus
    ``psnr_gain`` / ``ssim_gain``: the paired per-image difference to bicubic, when bicubic was run, and
    ``psnr_gain_best`` / ``ssim_gain_best``: the paired difference to the best classical baseline of the region
    for that metric (:func:`best_baselines`; its name in ``reference``)."""
    out: dict = {}
    by_key: dict[tuple[str, str, str], dict] = {(r["method"], r["region"], r["image"]): r for r in rows}
    methods = list(dict.fromkeys(r["method"] for r in rows))
    regions = list(dict.fromkeys(r["region"] for r in rows))
    best = {metric: best_baselines(rows, metric) for metric in ("psnr", "ssim")}

    def paired(sel: list[dict], metric: str, ref: str, reg: str) -> dict[str, Any] | None:
        diffs = [r[metric] - by_key[(ref, reg, r["image"])][metric] for r in sel if (ref, reg, r["image"]) in by_key]
        if not diffs:
            return None
        mean, lo, hi = M.bootstrap_ci(diffs, n=n_boot, seed=seed)
        return {"mean": mean, "lo": lo, "hi": hi, "n": int(np.isfinite(diffs).sum()), "reference": ref}

    for m in methods:
        out[m] = {}
        for reg in regions:
            sel = [r for r in rows if r["method"] == m and r["region"] == reg]
            if not sel:
                continue
            entry: dict[str, dict[str, Any]] = {}
            for metric in METRICS:
                vals = [r[metric] for r in sel]
                mean, lo, hi = M.bootstrap_ci(vals, n=n_boot, seed=seed)
                entry[metric] = {"mean": mean, "lo": lo, "hi": hi, "n": int(np.isfinite(vals).sum())}
            for metric in ("psnr", "ssim"):
                gain = paired(sel, metric, REFERENCE, reg)
                if gain is not None:
                    entry[f"{metric}_gain"] = gain
                ref = best[metric].get(reg)
                gain = None if ref is None else paired(sel, metric, ref, reg)
                if gain is not None:
                    entry[f"{metric}_gain_best"] = gain
            out[m][reg] = entry
    return out


def markdown_table(summary: dict) -> str:
    """One markdown table per region: methods × metrics as ``mean [lo, hi]``, the PSNR gain over the best
    classical baseline of the region (named in the header) and over bicubic."""
    regions = list(dict.fromkeys(reg for m in summary.values() for reg in m))
    fmt = {
        "psnr": "{:.2f}",
        "ssim": "{:.4f}",
        "nrmse": "{:.4f}",
        "hfen": "{:.4f}",
        "sharpness": "{:.3f}",
        "psnr_gain_best": "{:+.2f}",
        "psnr_gain": "{:+.2f}",
    }
    keys = [*METRICS, "psnr_gain_best", "psnr_gain"]
    lines = []
    for reg in regions:
        n = max((e[reg]["psnr"]["n"] for e in summary.values() if reg in e), default=0)
        refs = {e[reg]["psnr_gain_best"]["reference"] for e in summary.values() if "psnr_gain_best" in e.get(reg, {})}
        best = f" ({', '.join(sorted(refs))})" if refs else ""
        heads = [
            "PSNR dB",
            "SSIM",
            "NRMSE",
            "HFEN",
            "sharpness",
            f"ΔPSNR vs best baseline{best} dB",
            f"ΔPSNR vs {REFERENCE} dB",
        ]
        lines += [
            f"### {reg} (n = {n}, mean [95% CI])",
            "",
            "| method | " + " | ".join(heads) + " |",
            "|---" * (len(heads) + 1) + "|",
        ]
        for m, e in summary.items():
            if reg not in e:
                continue
            cells = []
            for k in keys:
                v = e[reg].get(k)
                if v is None or not np.isfinite(v["mean"]):
                    cells.append("–")
                else:
                    f = fmt[k]
                    cells.append(f"{f.format(v['mean'])} [{f.format(v['lo'])}, {f.format(v['hi'])}]")
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


# --- inputs ---


def collect_inputs(inputs: Sequence[str | Path], exclude: Path | None) -> list[tuple[str, Path]]:
    """(display name, path) of every image or NIfTI file given or found under a given folder."""
    from srgan.io.images import IMAGE_SUFFIXES, find_images
    from srgan.io.nifti import is_nifti

    found: list[tuple[str, Path]] = []
    for raw in inputs:
        p = Path(raw)
        if p.is_dir():
            files = find_images(p) + sorted(
                q
                for q in p.rglob("*")
                if is_nifti(q) and q.is_file() and not any(part.startswith(".") for part in q.relative_to(p).parts)
            )
            found += [(q.relative_to(p).as_posix(), q) for q in files]
        elif p.is_file():
            if not (p.suffix.lower() in IMAGE_SUFFIXES or is_nifti(p)):
                raise InputError(p, "is neither an image (.png .jpg .tif) nor a NIfTI volume (.nii, .nii.gz)")
            found.append((p.name, p))
        else:
            raise InputError(p, "not found")
    if exclude is not None:
        found = [(n, q) for n, q in found if q.resolve() != exclude.resolve()]
    names = [n for n, _ in found]
    return [(n if names.count(n) == 1 else str(q), q) for n, q in found]


def image_case(name: str, path: Path) -> Case:
    from srgan.io.images import load_image

    img = load_image(path)
    if img.bit_depth == 32:
        lo, hi = float(img.data.min()), float(img.data.max())
        return Case(name, img.data, data_range=hi - lo or 1.0, clip=None, notes=img.notes)
    return Case(name, img.data, data_range=1.0, clip=(0.0, 1.0), lr_levels=2**img.bit_depth - 1, notes=img.notes)


def _spread(idx: np.ndarray, k: int) -> np.ndarray:
    """k entries of ``idx`` evenly spread, each the middle of its 1/k share (skips the thin ends)."""
    if k <= 0 or idx.size == 0:
        return idx[:0]
    if idx.size <= k:
        return idx
    return idx[((np.arange(k) + 0.5) * idx.size / k).astype(int)]


def volume_case(
    name: str, path: Path, label_path: Path | None = None, max_slices: int | None = None, axis: int | None = None
) -> Case:
    """The foreground slices (through-plane axis) of a NIfTI volume as an (N, H, W) case; 4D: first volume.

    ``max_slices`` spreads the slices evenly; with a label map half of them are spread over the tumour.
    """
    from srgan.io.nifti import load_nifti, through_plane_axis

    vol = load_nifti(path)
    notes = []
    data = vol.data
    if data.ndim == 4:
        notes.append(f"4D volume: evaluated time point 0 of {data.shape[3]}")
        data = data[..., 0]
    k = through_plane_axis(vol.affine, axis)
    order = (k, *(a for a in (0, 1, 2) if a != k))
    stack = np.ascontiguousarray(np.transpose(data, order))
    label = None
    if label_path is not None:
        lab = load_nifti(label_path)
        if lab.data.shape[:3] != data.shape or not np.allclose(lab.affine, vol.affine, atol=1e-3):
            notes.append(f"label map {label_path.name} does not match this volume's grid: no tumour regions")
        else:
            label = np.rint(np.transpose(lab.data[..., 0] if lab.data.ndim == 4 else lab.data, order)).astype(np.int16)
    fg = M.foreground_mask(stack)
    idx = np.flatnonzero(fg.any(axis=(1, 2)))
    if idx.size == 0:
        raise InputError(path, "has no foreground to evaluate (blank volume)")
    if max_slices and idx.size > max_slices:
        if label is not None and label.any():
            tumour = np.flatnonzero(label.any(axis=(1, 2)))
            picked = _spread(tumour, (max_slices + 1) // 2)
            idx = np.union1d(picked, _spread(np.setdiff1d(idx, picked), max_slices - picked.size))
        else:
            idx = _spread(idx, max_slices)
    peak = float(np.percentile(stack[fg], 99.5)) if fg.any() else float(stack.max() - stack.min())
    return Case(
        name,
        stack[idx],
        data_range=peak if peak > 0 else 1.0,
        label=None if label is None else label[idx],
        clip=None,
        notes=notes,
    )


def _model_methods(weights: Sequence[str], models: Sequence[str], scale: int, device: str) -> tuple[dict, dict]:
    from srgan.inference.engine import Enhancer

    methods: dict[str, Method] = {}
    info: dict[str, dict] = {}
    specs: list[tuple[str | None, dict[str, Any]]] = [(None, {"weights": w}) for w in weights]
    specs += [(m, {"model": m}) for m in models]
    for name, kw in specs:
        enh = Enhancer(scale=scale, device=device, **kw)
        if name is None:
            card = getattr(enh, "card", None) or {}
            name = str(card.get("name") or Path(kw["weights"]).name.split(".")[0])
        while name in methods or name in BASELINES:
            name += "'"
        methods[name] = StackMethod(enh)
        prov = getattr(enh, "provenance", None)
        info[name] = {
            "card": getattr(enh, "card", None),
            "provenance": prov.as_dict() if prov is not None else None,
            **{k: str(v) for k, v in kw.items()},
        }
    return methods, info


def json_safe(x):
    """nan/inf → None so the summary is strict JSON."""
    if isinstance(x, dict):
        return {k: json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    if isinstance(x, float) and not np.isfinite(x):
        return None
    return x


def rows_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(
        buf, fieldnames=["image", "method", "region", "n_pixels", "hr_shape", *METRICS], lineterminator="\n"
    )
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    return buf.getvalue()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="srgan evaluate",
        description="Compare super-resolution models with nearest/bicubic/Lanczos/zero-fill interpolation on HR images "
        "(PNG/JPG/TIFF) or NIfTI volumes degraded to LR: PSNR, SSIM, NRMSE, HFEN, sharpness "
        "with 95% bootstrap intervals.",
    )
    p.add_argument("inputs", nargs="+", help="HR image/NIfTI files or folders of them (searched recursively)")
    p.add_argument("--scale", type=int, default=2, choices=(2, 3, 4), help="upscaling factor (default 2)")
    p.add_argument(
        "--lr",
        default="bicubic",
        choices=LR_DEGRADATIONS,
        help="how LR is made from HR: antialiased bicubic or k-space truncation (default bicubic)",
    )
    p.add_argument("--weights", nargs="+", default=[], metavar="PATH", help="model weights (.safetensors) to evaluate")
    p.add_argument("--model", nargs="+", default=[], metavar="NAME", help="bundled model(s) to evaluate")
    p.add_argument("--label", type=Path, help="BraTS label map (NIfTI: 1 core, 2 oedema, 4 enhancing) for tumour ROIs")
    p.add_argument("--out", type=Path, help="folder for per_image.csv and summary.json")
    p.add_argument(
        "--max-slices",
        type=int,
        default=None,
        metavar="N",
        help="volumes: evaluate at most N evenly spaced foreground slices (default all)",
    )
    p.add_argument("--axis", type=int, choices=(0, 1, 2), help="volumes: through-plane voxel axis (default: coarsest)")
    p.add_argument("--device", default="auto", help="device for models: auto, cpu, cuda, mps (default auto)")
    p.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples (default 2000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    return p


def run(args: argparse.Namespace) -> dict:
    """Evaluate as the parsed ``args`` say; returns the summary (also written to ``args.out`` if given)."""
    from srgan.io.nifti import is_nifti

    if args.label is not None and not args.label.is_file():
        raise InputError(args.label, "label map not found")
    files = collect_inputs(args.inputs, args.label)
    if not files:
        raise InputError(Path(args.inputs[0]), "no images (.png .jpg .tif) or NIfTI volumes found")
    say = lambda msg: print(msg, file=sys.stderr)
    cases = []
    for name, path in files:
        if is_nifti(path):
            cases.append(volume_case(name, path, args.label, args.max_slices, args.axis))
        else:
            cases.append(image_case(name, path))
        for note in cases[-1].notes:
            say(f"note: {name}: {note}")
    methods = baseline_methods(args.scale)
    model_methods, model_info = _model_methods(args.weights, args.model, args.scale, args.device)
    methods.update(model_methods)
    rows = evaluate_pairs(cases, methods, args.scale, degrader(args.lr), progress=say)
    summary = {
        "config": {
            "scale": args.scale,
            "lr": args.lr,
            "inputs": [str(i) for i in args.inputs],
            "label": None if args.label is None else str(args.label),
            "n_images": len(cases),
            "methods": list(methods),
            "models": model_info,
            "bootstrap": args.bootstrap,
            "seed": args.seed,
            "conventions": "2D: data_range 1, LR stored at file bit depth, outputs clipped to [0,1]; "
            "volumes: data_range = p99.5 of HR foreground, foreground slices only; "
            "SSIM: skimage defaults (7x7 uniform); NRMSE: euclidean; HFEN: LoG sigma 1.5; "
            "sharpness: Laplacian energy SR/HR",
        },
        "results": summarise(rows, n_boot=args.bootstrap, seed=args.seed),
    }
    print(markdown_table(summary["results"]))
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        atomic.write_text(args.out / "per_image.csv", rows_csv(rows))
        atomic.write_text(args.out / "summary.json", json.dumps(json_safe(summary), indent=2, allow_nan=False) + "\n")
        say(f"wrote {args.out / 'per_image.csv'} and {args.out / 'summary.json'}")
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except InputError as err:
        print(f"srgan evaluate: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("srgan evaluate: interrupted; no report written", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

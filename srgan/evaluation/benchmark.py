"""`srgan benchmark`: the one command behind the model comparison table and its HTML report.

For each scale (×2, ×4) and LR kind (antialiased bicubic, k-space truncation) it runs the interpolation baselines
(nearest, bicubic, Lanczos), the bundled fidelity and GAN models and any ``--weights`` (e.g. a trained ``seed``)
through ``srgan.evaluation.evaluate.evaluate_pairs`` on held-out HR images and volumes, and reports:

- PSNR, SSIM (95 % bootstrap intervals over images), HFEN, sharpness, the paired PSNR gain over bicubic, the
  parameter count and the CPU time per slice (×4: 64×64 → 256×256, ×2: 128×128 → 256×256; model load and
  warm-up excluded, median of ``--timing-runs``, ``torch.set_num_threads(--threads)``);
- consistency: each model's PSNR with its output projected (``srgan.inference.consistency.project``) onto the LR input
  under no / bicubic / k-space degradation, and the relative residual left after projection (target ≤ 1e-3);
- tumour regions: with ``--label``, PSNR/SSIM inside tumour core (labels 1|4) and oedema (2) per volume and model,
  flagging every case where a model does worse than bicubic inside the tumour;
- a report folder: ``table.md``, ``summary.json``, ``per_image.csv`` and a self-contained ``report.html`` with
  example crops, |SR − HR| maps on one colour scale, tumour zooms, a disagreement panel (|GAN − fidelity| and the
  spread over the 8 flips/rotations) and plots (matplotlib, when installed).

Held-out split: ``--images`` roots are split exactly as ``srgan.training.data`` splits a training source (by image file,
``val_fraction`` and ``seed`` from ``--train-config`` or the training defaults), and only the validation share is
benchmarked; volumes are kept only when their patient was never trained on (``TCGA-DU-7294`` and ``data.exclude``)
or falls in the validation share. ``--split all`` benchmarks everything.

Main-table regions: the whole image for 2D images (as training validation and the contract check measure) and the
head foreground for volumes (their zero background would inflate PSNR).
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import html
import io
import json
import os
import shutil
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from srgan.errors import InputError

SCALES = (2, 4)
LR_KINDS = ("bicubic", "kspace")
BASELINES = ("nearest", "bicubic", "lanczos")
REFERENCE = "bicubic"
TUMOUR_REGIONS = ("tumour_core", "oedema")
PROJECTIONS = ("off", "bicubic", "kspace")
TIMING_LR_SIDE = {2: 128, 4: 64}      # LR side for ms/slice: both give a 256×256 output
RESIDUAL_TARGET = 1e-3
MAIN_REGION = {"images": "whole", "volumes": "foreground"}


# ---------------------------------------------------------------- held-out split


@dataclass
class SplitConfig:
    """What ``srgan.training.data`` needs to reproduce a training run's train/validation split of one source."""
    val_fraction: float = 0.1
    seed: int = 0
    exclude: list[str] = field(default_factory=list)
    max_items_per_source: int = 0
    min_side: int = 96                 # training's patch size: smaller images were never loaded
    sources: list[str] = field(default_factory=list)
    origin: str = "training defaults"


def split_config(train_config: str | Path | None = None) -> SplitConfig:
    """The split of a run (its ``config.json``), or of ``srgan train`` with default settings."""
    from srgan.training.train import TrainConfig
    if train_config is None:
        cfg = TrainConfig()
        origin = "training defaults (srgan.training.train.TrainConfig)"
    else:
        try:
            cfg = TrainConfig.from_dict(json.loads(Path(train_config).read_text()))
        except (OSError, json.JSONDecodeError, TypeError, ValueError) as e:
            raise InputError(train_config, f"not a readable training config ({e})") from None
        origin = str(train_config)
    d = cfg.data
    return SplitConfig(val_fraction=d.val_fraction, seed=cfg.seed, exclude=list(d.exclude),
                       max_items_per_source=d.max_items_per_source, min_side=cfg.patch_size,
                       sources=[str(s) for s in d.sources], origin=origin)


def _data_cfg(split: SplitConfig):
    from srgan.training.data import DataConfig
    return DataConfig(val_fraction=split.val_fraction, exclude=list(split.exclude),
                      max_items_per_source=split.max_items_per_source)


def _stub_item(path: Path, group: str):
    from srgan.training.data import Item
    return Item(array=np.empty(0, np.float32), path=str(path), group=group, eight_bit=False, norms=[])


def heldout_images(root: str | Path, split: SplitConfig) -> tuple[list[tuple[str, Path]], list[tuple[str, Path]]]:
    """(held-out, trained-on) images of one source root, as ``(group name, path)``.

    The same files, groups, exclusions and size filter as ``srgan.training.data.load_source``, and its ``split``, but reading
    image headers only. Excluded files and files too small for the patch (never trained on) count as held out.
    """
    from PIL import Image

    from srgan.training import data as sdata
    root = Path(root)
    if not root.exists():
        raise InputError(root, "image folder not found")
    cfg = _data_cfg(split)
    items, excluded, small, groups = [], [], [], []
    for p in sdata._find(root, sdata.IMAGE_SUFFIXES):
        if not p.name.lower().endswith(sdata.IMAGE_SUFFIXES):
            continue
        group = str(p.relative_to(root)) if root.is_dir() else p.name
        if sdata._excluded(p, group, cfg):
            excluded.append((group, p))
            continue
        try:
            with Image.open(p) as im:
                w, h = im.size
        except OSError as e:
            raise InputError(p, f"not a readable image ({e})") from None
        groups.append(group)
        if min(h, w) < split.min_side:  # never loaded, so never trained on
            small.append((group, p))
            continue
        items.append(_stub_item(p, group))
        if cfg.max_items_per_source and len(items) >= cfg.max_items_per_source:
            break
    train, val = sdata.split(items, cfg.val_fraction, split.seed, all_groups=groups)
    return ([(it.group, Path(it.path)) for it in val] + small + excluded,
            [(it.group, Path(it.path)) for it in train])


def volume_held_out(path: str | Path, root: str | Path | None, split: SplitConfig) -> bool:
    """Whether a NIfTI volume's patient was never trained on: excluded, or in the validation share of its source.

    The source's groups are its NIfTI files' first folders (``srgan.training.data``'s patients); unlike training, files are
    not opened, so a folder holding only label maps would count as a patient (it cannot make a one-group source
    split differently: such a source keeps everything in training).
    """
    from srgan.training import data as sdata
    path = Path(path)
    root = Path(root) if root is not None else path.parent.parent
    cfg = _data_cfg(split)
    group = sdata._group_of(path, root) if path.is_relative_to(root) and root.is_dir() else path.parent.name
    if sdata._excluded(path, group, cfg):
        return True
    if not root.is_dir():
        return False
    groups = sorted({sdata._group_of(p, root) for p in sdata._find(root, sdata.NIFTI_SUFFIXES)
                     if not sdata._excluded(p, sdata._group_of(p, root), cfg)})
    _, val = sdata.split([_stub_item(root / g, g) for g in groups], cfg.val_fraction, split.seed)
    return group in {it.group for it in val}


# ---------------------------------------------------------------- models and methods


@dataclass
class ModelSpec:
    """A generator in the benchmark: ``role`` is seed, fidelity or gan (the card's ``kind``; arch seed → seed)."""
    name: str
    path: Path
    card: dict
    role: str
    bundled: bool


def _role(card: dict) -> str:
    if card.get("arch") == "seed":
        return "seed"
    kind = str(card.get("kind", "fidelity"))
    return "gan" if kind.startswith("gan") else "fidelity"


def model_specs(scale: int, weights: Sequence[str | Path] = (), *, bundled: bool = True,
                bundled_dir: str | Path | None = None) -> list[ModelSpec]:
    """Models for ``scale``, seed first, then fidelity, then GAN: bundled (``srgan.models.weights.list_bundled``) and
    ``weights`` (whose cards give their scale)."""
    from srgan.models.weights import list_bundled, read_card
    specs, names = [], set(BASELINES)
    cards = [(c, Path(c["path"]), True) for c in (list_bundled(bundled_dir) if bundled else [])]
    for w in weights:
        p = Path(w)
        p = p if p.suffix == ".safetensors" else p.with_name(p.name + ".safetensors")
        cards.append((read_card(p), p, False))
    for card, path, is_bundled in cards:
        s = card.get("kwargs", {}).get("scale", card.get("scale"))
        if s != scale:
            continue
        name = str(card.get("name") or path.stem)
        while name in names:
            name += "'"
        names.add(name)
        specs.append(ModelSpec(name, path, card, _role(card), is_bundled))
    order = {"seed": 0, "fidelity": 1, "gan": 2}
    specs.sort(key=lambda m: order[m.role])
    return specs


class _Book:
    """What the methods saw and made for the current case: outputs of the recorded case, projection residuals."""

    def __init__(self):
        self.recording = False
        self.outputs: dict[str, np.ndarray] = {}
        self.lr: np.ndarray | None = None
        self.residuals: dict[str, list[float]] = {}

    def start(self, record: bool) -> None:
        self.recording = record
        self.outputs = {}
        self.lr = None


class _CachedModel:
    """An ``Enhancer`` (consistency off) whose last stack output is reused by the projection variants."""

    def __init__(self, enhancer):
        self.enhancer = enhancer
        self._key: str | None = None
        self._out: np.ndarray | None = None

    def __call__(self, lrs: np.ndarray) -> np.ndarray:
        key = hashlib.sha1(np.ascontiguousarray(lrs).tobytes()).hexdigest() + str(lrs.shape)
        if key != self._key:
            self._out, self._key = self.enhancer.enhance_stack(lrs), key
        return self._out


class BenchMethod:
    """An ``evaluate_pairs`` method over whole stacks: raw (N, h, w) → (N, s·h, s·w), then an optional projection
    onto the LR input (its residual recorded), outputs of the recorded case kept in ``book``."""

    def __init__(self, name: str, raw: Callable[[np.ndarray], np.ndarray], scale: int, book: _Book, *,
                 projection: str = "off", record: bool = True):
        self.name, self.raw, self.scale, self.book = name, raw, int(scale), book
        self.projection, self.record = projection, record

    def __call__(self, lr: np.ndarray) -> np.ndarray:
        return self.stack(np.asarray(lr)[None])[0]

    def stack(self, lrs: np.ndarray) -> np.ndarray:
        from dataclasses import replace

        from srgan.inference.consistency import project, relative_residual
        from srgan.inference.plan import KSPACE_STEPS
        lrs = np.asarray(lrs, np.float32)
        sr = np.asarray(self.raw(lrs), np.float32)
        projection = self.projection
        if projection == "auto":  # the plan ``Enhancer.enhance_stack`` would make, once for the stack
            enhancer = getattr(self.raw, "enhancer", None)
            plan = enhancer.plan(lrs, consistency="auto") if enhancer is not None else None
            projection = plan.projection if plan is not None else "off"
            if plan is not None and plan.model_p != plan.p_kspace:  # the test overruled the detector
                sr = enhancer.enhance_stack(lrs, replace(plan, projection="off"))
        steps = {"steps": KSPACE_STEPS} if projection == "kspace" else {}
        if projection != "off":
            sr = np.stack([project(o, lr, self.scale, projection, **steps) for o, lr in zip(sr, lrs)])
            self.book.residuals.setdefault(self.name, []).extend(
                relative_residual(o, lr, self.scale, projection) for o, lr in zip(sr, lrs))
        if self.book.recording and self.record:
            self.book.outputs[self.name] = sr
            self.book.lr = lrs
        return sr


def _baseline_raw(name: str, scale: int) -> Callable[[np.ndarray], np.ndarray]:
    from srgan.inference.engine import interpolate
    return lambda lrs: np.stack([interpolate(lr, scale, name) for lr in lrs])


def variant_name(model: str, projection: str) -> str:
    return f"{model} [proj {projection}]"


def time_ms(fn: Callable[[np.ndarray], object], x: np.ndarray, runs: int = 10, warmup: int = 2) -> float:
    """Median wall time of ``fn(x)`` in ms over ``runs`` calls after ``warmup`` calls (start-up excluded)."""
    for _ in range(max(0, warmup)):
        fn(x)
    times = []
    for _ in range(max(1, runs)):
        t0 = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t0)
    return 1000.0 * statistics.median(times)


def timing_input(scale: int, seed: int = 0) -> np.ndarray:
    """A smooth random LR slice (side ``TIMING_LR_SIDE[scale]``); content does not change convolution cost."""
    from scipy import ndimage
    n = TIMING_LR_SIDE[scale]
    x = ndimage.gaussian_filter(np.random.default_rng(seed).random((n, n)), 2.0)
    return ((x - x.min()) / (np.ptp(x) or 1.0)).astype(np.float32)


# ---------------------------------------------------------------- tumour flags and tables


def tumour_flags(rows: list[dict], methods: Sequence[str] | None = None, *, reference: str = REFERENCE,
                 regions: Sequence[str] = TUMOUR_REGIONS, tol_db: float = 0.0, tol_ssim: float = 0.0) -> list[dict]:
    """Every (image, method, tumour region) where the method's PSNR or SSIM is below the reference's.

    ``rows`` are ``evaluate_pairs`` rows (optionally with ``dataset``/``scale``/``lr`` keys, matched too);
    ``methods`` limits which are checked (default: all but the reference). A tolerance keeps rounding noise out.
    """
    def key(r, method):
        return (r.get("dataset"), r.get("scale"), r.get("lr"), r["image"], method, r["region"])

    ref = {key(r, r["method"]): r for r in rows if r["method"] == reference and r["region"] in regions}
    flags = []
    for r in rows:
        if r["region"] not in regions or r["method"] == reference or (methods is not None and r["method"] not in methods):
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
            flags.append({"dataset": r.get("dataset"), "scale": r.get("scale"), "lr": r.get("lr"),
                          "image": r["image"], "method": r["method"], "region": r["region"], "worse_in": worse,
                          "psnr": r["psnr"], "psnr_bicubic": b["psnr"], "dpsnr": r["psnr"] - b["psnr"],
                          "ssim": r["ssim"], "ssim_bicubic": b["ssim"], "dssim": r["ssim"] - b["ssim"]})
    return flags


def _ci(e: dict | None, fmt: str) -> str:
    if not e or e.get("mean") is None or not np.isfinite(e["mean"]):
        return "–"
    if e["lo"] == e["hi"]:
        return fmt.format(e["mean"])
    return f"{fmt.format(e['mean'])} [{fmt.format(e['lo'])}, {fmt.format(e['hi'])}]"


def _num(v, fmt: str) -> str:
    return "–" if v is None or not np.isfinite(v) else fmt.format(v)


MAIN_HEADERS = ["method", "kind", "PSNR dB [95% CI]", "SSIM [95% CI]", "HFEN", "sharpness",
                "ΔPSNR vs bicubic dB [95% CI]", "params", "ms/slice"]


def main_table(results: dict, region: str, info: dict, timing: dict) -> list[list[str]]:
    """Rows of ``MAIN_HEADERS`` from one ``summarise`` result (methods in its order)."""
    out = []
    for m, regs in results.items():
        e = regs.get(region)
        if e is None:
            continue
        i = info.get(m, {})
        t = timing.get(m, {}).get("ms_per_slice")
        out.append([m, i.get("role", "baseline"), _ci(e.get("psnr"), "{:.2f}"), _ci(e.get("ssim"), "{:.4f}"),
                    _num(e["hfen"]["mean"], "{:.4f}"), _num(e["sharpness"]["mean"], "{:.3f}"),
                    _ci(e.get("psnr_gain"), "{:+.2f}"), f"{i.get('params', 0):,}",
                    _num(t, "{:.2f}" if t is not None and t < 10 else "{:.1f}")])
    return out


def md_table(headers: list[str], rows: list[list[str]]) -> str:
    return "\n".join(["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
                     + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows])


def html_table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


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
                v = [r["psnr"] for r in rows if (r["dataset"], r["scale"], r["lr"], r["region"]) == (ds, s, lr, region)
                     and r["method"] == variant_name(m, proj) and np.isfinite(r["psnr"])]
                entry[f"psnr_{proj}"] = float(np.mean(v)) if v else float("nan")
                present |= bool(v)
                if proj != "off":
                    res = residuals.get((ds, s, lr, variant_name(m, proj)), [])
                    entry[f"residual_{proj}"] = float(np.mean(res)) if res else float("nan")
                    entry[f"residual_{proj}_max"] = float(np.max(res)) if res else float("nan")
            if present:
                out.append(entry)
    return out


CONSISTENCY_HEADERS = ["data", "scale", "LR", "model", "PSNR off", "PSNR proj bicubic", "PSNR proj k-space",
                       "residual bicubic", "residual k-space"]


def consistency_table(entries: list[dict]) -> list[list[str]]:
    """Residuals are means over slices, marked ✓ when the largest is within ``RESIDUAL_TARGET``."""
    def res(e, p):
        mean, worst = e[f"residual_{p}"], e[f"residual_{p}_max"]
        return "–" if not np.isfinite(mean) else f"{mean:.1e} {'✓' if worst <= RESIDUAL_TARGET else '✗'}"
    return [[e["dataset"], f"×{e['scale']}", e["lr"], e["model"], _num(e["psnr_off"], "{:.2f}"),
             _num(e["psnr_bicubic"], "{:.2f}"), _num(e["psnr_kspace"], "{:.2f}"), res(e, "bicubic"), res(e, "kspace")]
            for e in entries]


TUMOUR_HEADERS = ["scale", "LR", "volume", "method", "core PSNR", "core ΔPSNR", "core SSIM", "oedema PSNR",
                  "oedema ΔPSNR", "oedema SSIM", "⚠ worse than bicubic in tumour"]


def tumour_table(rows: list[dict], methods: Sequence[str], flags: list[dict]) -> list[list[str]]:
    tum = [r for r in rows if r["region"] in TUMOUR_REGIONS and r["method"] in (REFERENCE, *methods)]
    by = {(r["scale"], r["lr"], r["image"], r["method"], r["region"]): r for r in tum}
    flagged = {}
    for f in flags:
        flagged.setdefault((f["scale"], f["lr"], f["image"], f["method"]), []).append(
            f"{f['region']} ({', '.join(f['worse_in'])})")
    out = []
    for s, lr, img, m in dict.fromkeys((r["scale"], r["lr"], r["image"], r["method"]) for r in tum):
        cells = [f"×{s}", lr, img, m]
        for reg in TUMOUR_REGIONS:
            r, b = by.get((s, lr, img, m, reg)), by.get((s, lr, img, REFERENCE, reg))
            if r is None:
                cells += ["–"] * 3
                continue
            d = r["psnr"] - b["psnr"] if b is not None else float("nan")
            cells += [_num(r["psnr"], "{:.2f}"), "–" if m == REFERENCE else _num(d, "{:+.2f}"), _num(r["ssim"], "{:.4f}")]
        cells.append("⚠ " + "; ".join(flagged[(s, lr, img, m)]) if (s, lr, img, m) in flagged else "")
        out.append(cells)
    return out


# ---------------------------------------------------------------- pictures


def _u8(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return (np.clip((np.asarray(x, np.float64) - lo) / max(hi - lo, 1e-12), 0, 1) * 255).round().astype(np.uint8)


_ANCHORS = np.array([[0, 0, 4], [80, 18, 123], [182, 54, 121], [251, 136, 97], [252, 253, 191]], np.float64)


def colour(x: np.ndarray, vmax: float) -> np.ndarray:
    """(H, W) ≥ 0 → (H, W, 3) uint8 on a magma-like scale from 0 (black) to ``vmax`` (pale yellow)."""
    t = np.clip(np.asarray(x, np.float64) / max(vmax, 1e-12), 0, 1) * (len(_ANCHORS) - 1)
    i = np.minimum(t.astype(int), len(_ANCHORS) - 2)
    f = (t - i)[..., None]
    return ((1 - f) * _ANCHORS[i] + f * _ANCHORS[i + 1]).round().astype(np.uint8)


def _outline(rgb: np.ndarray, mask: np.ndarray, colour_rgb=(255, 40, 40)) -> np.ndarray:
    from scipy import ndimage
    edge = mask & ~ndimage.binary_erosion(mask)
    out = rgb.copy()
    out[edge] = colour_rgb
    return out


def best_crop(hr: np.ndarray, side: int) -> tuple[slice, slice]:
    """The ``side``×``side`` window of the most fine detail (Laplacian energy) inside the head: where methods differ."""
    from scipy import ndimage

    from srgan.evaluation.metrics import foreground_mask
    H, W = hr.shape
    side = min(side, H, W)
    energy = ndimage.laplace(np.asarray(hr, np.float64)) ** 2 * foreground_mask(hr)
    score = ndimage.uniform_filter(energy, side, mode="constant")
    h0, w0 = side // 2, side // 2
    valid = score[h0:H - side + h0 + 1, w0:W - side + w0 + 1]
    y, x = np.unravel_index(int(np.argmax(valid)), valid.shape)
    return slice(y, y + side), slice(x, x + side)


def _bbox_crop(mask: np.ndarray, margin: int, min_side: int) -> tuple[slice, slice]:
    ys, xs = np.nonzero(mask)
    H, W = mask.shape
    cy, cx = (ys.min() + ys.max()) / 2, (xs.min() + xs.max()) / 2
    side = int(min(max(np.ptp(ys) + 1, np.ptp(xs) + 1) + 2 * margin, H, W))
    side = max(side, min(min_side, H, W))
    y0 = int(np.clip(round(cy - side / 2), 0, H - side))
    x0 = int(np.clip(round(cx - side / 2), 0, W - side))
    return slice(y0, y0 + side), slice(x0, x0 + side)


def _dihedral_spread(enhancer, lr: np.ndarray) -> np.ndarray:
    """Std over the 8 flips/rot90s of the model's output, each mapped back (test-time-augmentation spread)."""
    outs = []
    for k in range(4):
        for flip in (False, True):
            x = np.rot90(lr, k)
            x = x[:, ::-1] if flip else x
            y = enhancer.enhance(np.ascontiguousarray(x))
            y = y[:, ::-1] if flip else y
            outs.append(np.rot90(y, -k))
    return np.std(np.stack(outs), axis=0)


def crop_spread(enhancer, lr: np.ndarray, scale: int, crop: tuple[slice, slice], margin: int = 8) -> np.ndarray:
    """``_dihedral_spread`` of the HR ``crop`` only: the model sees the LR window under it plus ``margin`` LR px."""
    ys, xs = crop
    h, w = lr.shape
    ly = slice(max(0, ys.start // scale - margin), min(h, -(-ys.stop // scale) + margin))
    lx = slice(max(0, xs.start // scale - margin), min(w, -(-xs.stop // scale) + margin))
    spread = _dihedral_spread(enhancer, np.ascontiguousarray(lr[ly, lx]))
    y0, x0 = ys.start - ly.start * scale, xs.start - lx.start * scale
    return spread[y0:y0 + ys.stop - ys.start, x0:x0 + xs.stop - xs.start]


def example_crop(ex: dict, scale: int) -> tuple[int, tuple[slice, slice]]:
    """(slice index, HR crop) shown for an example: the most detailed window of an image, or the tumour's box
    on the slice of a labelled volume where the tumour is largest."""
    H, W = ex["outputs"]["bicubic"].shape[1:]
    case = ex["case"]
    hr = np.asarray(case.hr, np.float32)
    stack = (hr[None] if hr.ndim == 2 else hr)[:, :H, :W]
    if case.label is not None:
        label = (case.label[None] if case.label.ndim == 2 else case.label)[:, :H, :W]
        if label.any():
            k = int(np.argmax(label.reshape(len(label), -1).sum(1)))
            return k, _bbox_crop(label[k] > 0, 8, 64)
    return 0, best_crop(stack[0], 96 if scale == 2 else 128)


class Report:
    """Figures of the HTML report: PNGs written to ``folder/img`` and HTML snippets referring to them."""

    def __init__(self, folder: Path):
        self.folder = folder
        (folder / "img").mkdir(parents=True, exist_ok=True)
        self.n = 0

    def png(self, array: np.ndarray, stem: str, zoom_to: int = 0) -> str:
        from PIL import Image
        im = Image.fromarray(array)
        if zoom_to and max(im.size) < zoom_to:
            f = max(1, zoom_to // max(im.size))
            im = im.resize((im.width * f, im.height * f), Image.Resampling.NEAREST)
        self.n += 1
        name = f"img/{self.n:03d}-{''.join(c if c.isalnum() or c in '-_' else '_' for c in stem)[:60]}.png"
        im.save(self.folder / name)
        return name

    def figure_row(self, tiles: list[tuple[str, np.ndarray]], stem: str, zoom_to: int = 256) -> str:
        figs = "".join(f'<figure><img src="{self.png(a, f"{stem}-{t}", zoom_to)}" alt="{html.escape(t)}">'
                       f"<figcaption>{html.escape(t)}</figcaption></figure>" for t, a in tiles)
        return f'<div class="row">{figs}</div>'

    def plot(self, draw: Callable, stem: str) -> str:
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            return "<p class=note>Plots need matplotlib (pip install matplotlib).</p>"
        fig = draw(plt)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
        plt.close(fig)
        self.n += 1
        name = f"img/{self.n:03d}-{stem}.png"
        (self.folder / name).write_bytes(buf.getvalue())
        return f'<div class="row"><img class="plot" src="{name}" alt="{html.escape(stem)}"></div>'


def comparison_panels(report: Report, stem: str, hr: np.ndarray, outputs: dict[str, np.ndarray],
                      crop: tuple[slice, slice], *, label: np.ndarray | None = None,
                      order: Sequence[str] = ()) -> str:
    """LR (nearest) | bicubic | models… | HR crops, and |SR − HR| on one colour scale below them."""
    ys, xs = crop
    h = hr[ys, xs]
    lo, hi = np.percentile(h, [0.5, 99.5])
    hi = hi if hi > lo else lo + 1.0
    names = [m for m in order if m in outputs]
    tiles, diffs = [], []
    errs = {m: np.abs(outputs[m][ys, xs] - h) for m in names}
    vmax = float(np.percentile(np.concatenate([e.ravel() for e in errs.values()]), 99.5)) if errs else 1.0
    for m in names:
        title = "LR (nearest)" if m == "nearest" else m
        tiles.append((title, _u8(outputs[m][ys, xs], lo, hi)))
        diffs.append((f"|{title} − HR|", colour(errs[m], vmax)))
    hr_tile = np.repeat(_u8(h, lo, hi)[..., None], 3, axis=2)
    if label is not None and label[ys, xs].any():
        hr_tile = _outline(hr_tile, np.isin(label[ys, xs], (1, 4)), (255, 40, 40))
        hr_tile = _outline(hr_tile, label[ys, xs] == 2, (40, 200, 255))
    tiles.append(("HR" + (" (core red, oedema blue)" if label is not None else ""), hr_tile))
    return (report.figure_row(tiles, stem) + report.figure_row(diffs, stem + "-diff")
            + f"<p class=note>Difference maps share one scale: black 0 → pale yellow {vmax:.3g} "
              f"(99.5th percentile of all |SR − HR| in the crop).</p>")


def _gain_plot(rows: list[dict], methods: Sequence[str], results: dict, region: str, title: str):
    ref = {r["image"]: r["psnr"] for r in rows if r["method"] == REFERENCE and r["region"] == region}
    ms = [m for m in methods if m != REFERENCE and m in results and region in results[m]]

    def draw(plt):
        fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.4))
        for i, m in enumerate(ms):
            g = [r["psnr"] - ref[r["image"]] for r in rows
                 if r["method"] == m and r["region"] == region and r["image"] in ref and np.isfinite(r["psnr"])]
            a.scatter(np.full(len(g), i) + np.linspace(-0.15, 0.15, len(g)) if g else [], g, s=10)
            e = results[m][region].get("psnr_gain", {})
            if e and e.get("mean") is not None and np.isfinite(e["mean"]):
                b.bar(i, e["mean"], yerr=[[e["mean"] - e["lo"]], [e["hi"] - e["mean"]]], capsize=4)
        for ax in (a, b):
            ax.axhline(0, color="k", lw=0.8)
            ax.set_xticks(range(len(ms)), ms, rotation=20, ha="right", fontsize=8)
        a.set_ylabel("PSNR gain over bicubic, dB")
        a.set_title(f"{title}: per image", fontsize=9)
        b.set_title(f"{title}: mean, 95% CI", fontsize=9)
        return fig
    return draw


# ---------------------------------------------------------------- the run


def check_out(out: Path) -> None:
    """Refuse an ``--out`` that holds anything but an earlier report: it would be replaced as a whole."""
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / "summary.json").is_file())):
        raise InputError(out, "exists and is not a benchmark report: choose another --out")


def _atomic_dir(out: Path, build: Callable[[Path], None]) -> None:
    """Build the report in a temporary folder beside ``out``, then swap it in (an old report is replaced)."""
    out = out.resolve()
    check_out(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        build(tmp)
        if out.exists():
            os.replace(out, old)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


def _image_cases(args, split: SplitConfig, say) -> tuple[list, dict]:
    from srgan.evaluation.evaluate import image_case
    cases, info = [], {"roots": {}}
    for root in args.images:
        root = Path(root)
        held, train = heldout_images(root, split)
        picked = held if args.split == "heldout" else sorted(held + train, key=lambda t: str(t[1]))
        picked = sorted(picked, key=lambda t: t[0])
        if args.max_images and len(picked) > args.max_images:   # evenly spread: every class, not the first one
            picked = [picked[i] for i in np.unique(np.linspace(0, len(picked) - 1, args.max_images).round().astype(int))]
        if split.sources and not any(Path(s).resolve() == root.resolve() for s in split.sources):
            say(f"note: {root} is not a source of {split.origin}: its split is reproduced as if it were")
        info["roots"][str(root)] = {"held_out": len(held), "trained_on": len(train), "benchmarked": len(picked),
                                    "images": [g for g, _ in picked]}
        for group, path in picked:
            cases.append(image_case(group, path))
    return cases, info


def _volume_cases(args, split: SplitConfig, say) -> tuple[list, dict]:
    from srgan.evaluation.evaluate import _collect, volume_case
    from srgan.io.nifti import is_nifti
    if args.label is not None and not args.label.is_file():
        raise InputError(args.label, "label map not found")
    cases, info = [], {"volumes": [], "skipped_trained_on": []}
    for raw in args.volumes:
        root = Path(raw) if Path(raw).is_dir() else None
        for name, path in _collect([raw], args.label):
            if not is_nifti(path):
                continue
            if path != args.label and _looks_like_label_map(path):
                info.setdefault("skipped_label_maps", []).append(str(path))
                continue
            if args.split == "heldout" and not volume_held_out(path, root, split):
                info["skipped_trained_on"].append(str(path))
                continue
            label = args.label if args.label is not None and args.label.parent.resolve() == path.parent.resolve() else None
            cases.append(volume_case(name, path, label, args.max_slices))
            info["volumes"].append({"name": name, "label": str(label) if label else None})
            for n in cases[-1].notes:
                say(f"note: {name}: {n}")
    if info["skipped_trained_on"]:
        say(f"note: left out {len(info['skipped_trained_on'])} volume(s) of patients trained on (--split all keeps them)")
    return cases, info


def _looks_like_label_map(path: Path) -> bool:
    """A segmentation, not an image: integer voxels with few distinct values (``srgan.training.data``'s test)."""
    import nibabel as nib

    from srgan.training import data as sdata
    try:
        img = nib.load(str(path))
        if not np.issubdtype(img.get_data_dtype(), np.integer):
            return False
        data = np.asanyarray(img.dataobj)
    except Exception as e:  # nibabel raises many types for broken files
        raise InputError(path, f"not a readable NIfTI file ({e})") from None
    return data.ndim >= 3 and sdata._is_label_map(data[..., 0] if data.ndim == 4 else data, img.get_data_dtype())


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="srgan benchmark",
        description="The model comparison table and HTML report: baselines, bundled fidelity/GAN models and "
                    "--weights on held-out images and volumes at x2/x4, bicubic and k-space LR; quality with 95%% "
                    "bootstrap intervals, CPU ms/slice, consistency, tumour regions.",
        epilog="Example: srgan benchmark --images shared/data/kaggle-brain-tumor-mri --volumes "
               "shared/data/brainles-examples --label shared/data/brainles-examples/TCGA-DU-7294/mav.nii.gz "
               "--weights runs/seed/brainsr-x4-fidelity.safetensors --out benchmark-report")
    p.add_argument("--images", nargs="+", default=[], metavar="DIR", help="folder(s) of HR 2D images (a training source root)")
    p.add_argument("--split", choices=("heldout", "all"), default="heldout",
                   help="heldout: only images/volumes no model was trained on, split as srgan.training.data does (default)")
    p.add_argument("--train-config", type=Path, metavar="JSON",
                   help="a run's config.json for the split (val_fraction, seed, exclude; default: training defaults)")
    p.add_argument("--volumes", nargs="+", default=[], metavar="PATH", help="NIfTI files or folders of them")
    p.add_argument("--label", type=Path, help="BraTS label map (1 core, 2 oedema, 4 enhancing) of the volumes beside it")
    p.add_argument("--max-slices", type=int, default=16, metavar="N",
                   help="volumes: at most N foreground slices, half over the tumour (default 16; 0 = all)")
    p.add_argument("--scale", type=int, nargs="+", default=list(SCALES), choices=SCALES, help="scales (default 2 4)")
    p.add_argument("--lr", nargs="+", default=list(LR_KINDS), choices=LR_KINDS, help="LR kinds (default both)")
    p.add_argument("--weights", nargs="+", default=[], metavar="PATH", help="more model weights (.safetensors + card)")
    p.add_argument("--no-bundled", action="store_true", help="leave out the bundled models")
    p.add_argument("--max-images", type=int, default=0, metavar="N", help="at most N images per folder (default all)")
    p.add_argument("--out", type=Path, default=Path("benchmark-report"), help="report folder (default benchmark-report/)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads for the run and the timing (default 2)")
    p.add_argument("--device", default="cpu", help="device for models: cpu, cuda, mps, auto (default cpu: ms/slice is CPU time)")
    p.add_argument("--timing-runs", type=int, default=10, metavar="N", help="timed calls per method, median (default 10; 0 = no timing)")
    p.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples (default 2000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    return p


def run(args: argparse.Namespace) -> dict:
    """Benchmark as ``args`` say; writes the report folder and returns the summary."""
    import torch

    from srgan.inference.engine import Enhancer, interpolate
    from srgan.evaluation.evaluate import _json_safe, degrader, evaluate_pairs, summarise
    from srgan.models import count_parameters

    say = (lambda msg: print(msg, file=sys.stderr))
    if not args.images and not args.volumes:
        raise InputError(None, "nothing to benchmark: give --images DIR and/or --volumes PATH")
    check_out(args.out)
    split = split_config(args.train_config)
    img_cases, img_info = _image_cases(args, split, say)
    vol_cases, vol_info = _volume_cases(args, split, say)
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
        info = {b: {"role": "baseline", "params": 0} for b in BASELINES}
        for m in specs:
            info[m.name] = {"role": m.role, "arch": m.card.get("arch"), "params": count_parameters(enh[m.name].model),
                            "path": str(m.path), "bundled": m.bundled, "sha256": m.card.get("sha256"),
                            "consistency": m.card.get("consistency", "off"), "kwargs": m.card.get("kwargs", {})}
            val_groups = (m.card.get("data") or {}).get("val_groups")
            sources = [Path(s).resolve() for s in (m.card.get("data") or {}).get("sources", [])]
            for root in args.images:
                if isinstance(val_groups, list) and Path(root).resolve() in sources:
                    seen = [g for g in img_info["roots"][str(root)]["images"] if g not in val_groups]
                    if seen:
                        notes.append(f"{m.name}: {len(seen)} benchmarked image(s) of {root} are not in its card's "
                                     f"validation groups (trained on?): {', '.join(seen[:5])}")
        models_info[scale] = info
        torch.set_num_threads(max(1, args.threads))
        if args.timing_runs:
            x = timing_input(scale)
            timing[scale] = {b: {"ms_per_slice": time_ms(lambda a, b=b: interpolate(a, scale, b), x, args.timing_runs)}
                             for b in BASELINES}
            for m in specs:  # as ``srgan enhance`` runs it: the card's projection included
                timed = Enhancer(scale=scale, weights=m.path, device=args.device)
                timing[scale][m.name] = {"ms_per_slice": time_ms(timed.enhance, x, args.timing_runs)}
            for v in timing[scale].values():
                v.update(lr_shape=list(x.shape), threads=args.threads, runs=args.timing_runs)
        for lr_kind in args.lr:
            book = _Book()
            methods = {b: BenchMethod(b, _baseline_raw(b, scale), scale, book) for b in BASELINES}
            for m in specs:
                cached = _CachedModel(enh[m.name])
                methods[m.name] = BenchMethod(m.name, cached, scale, book, projection=info[m.name]["consistency"])
                for proj in PROJECTIONS:
                    methods[variant_name(m.name, proj)] = BenchMethod(variant_name(m.name, proj), cached, scale, book,
                                                                      projection=proj, record=False)
            for ds, cases in datasets.items():
                for ci, case in enumerate(cases):
                    record = lr_kind == args.lr[0] and (
                        (ds == "images" and ci == 0) or
                        (ds == "volumes" and case.label is not None and not any(k[1] == "volumes" for k in examples
                                                                                 if k[0] == scale)))
                    book.start(record)
                    before = {k: len(v) for k, v in book.residuals.items()}
                    for r in evaluate_pairs([case], methods, scale, degrader(lr_kind)):
                        rows.append({"dataset": ds, "scale": scale, "lr": lr_kind, **r})
                    for k, v in book.residuals.items():
                        residuals.setdefault((ds, scale, lr_kind, k), []).extend(v[before.get(k, 0):])
                    if record:
                        examples[(scale, ds)] = {"case": case, "lr": book.lr, "outputs": dict(book.outputs),
                                                 "lr_kind": lr_kind}
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
                sel = [r for r in rows if (r["dataset"], r["scale"], r["lr"]) == (ds, s, lr_kind)
                       and r["method"] in main_methods[s]]
                results.setdefault(ds, {}).setdefault(str(s), {})[lr_kind] = summarise(sel, n_boot=args.bootstrap,
                                                                                       seed=args.seed)
    all_models = [m for s in args.scale for m in model_names[s]]
    cons = consistency_rows(rows, residuals, list(dict.fromkeys(all_models)))
    main_rows = [r for r in rows if r["method"] in main_methods[r["scale"]]]
    flags = tumour_flags(main_rows, all_models)
    # disagreement on the example crop: |GAN − fidelity| and the flip/rotation spread of one model
    for s in args.scale:
        ex = examples.get((s, "images")) or examples.get((s, "volumes"))
        specs, enh = enhancers_by_scale[s]
        if ex is None or not specs:
            continue
        k, (ys, xs) = example_crop(ex, s)
        fid = next((m for m in specs if m.role == "fidelity"), None)
        gan = next((m for m in specs if m.role == "gan"), None)
        d = {"image": ex["case"].name, "slice": k}
        if fid is not None and gan is not None:
            d["gan_vs_fidelity"] = np.abs(ex["outputs"][gan.name][k][ys, xs] - ex["outputs"][fid.name][k][ys, xs])
            d["pair"] = (gan.name, fid.name)
        tta_model = fid or specs[0]
        d["tta_model"] = tta_model.name
        d["tta_std"] = crop_spread(enh[tta_model.name], ex["lr"][k], s, (ys, xs))
        disagreement[s] = d
    summary = {
        "config": {"images": [str(p) for p in args.images], "volumes": [str(p) for p in args.volumes],
                   "label": str(args.label) if args.label else None, "split": args.split, "scales": args.scale,
                   "lr": args.lr, "threads": args.threads, "device": args.device, "timing_runs": args.timing_runs,
                   "bootstrap": args.bootstrap, "seed": args.seed, "max_images": args.max_images,
                   "max_slices": args.max_slices, "main_region": MAIN_REGION,
                   "timing_input": {str(s): f"{TIMING_LR_SIDE[s]}x{TIMING_LR_SIDE[s]} -> "
                                             f"{TIMING_LR_SIDE[s] * s}x{TIMING_LR_SIDE[s] * s}" for s in args.scale},
                   "command": "srgan benchmark " + " ".join(getattr(args, "argv", []) or [])},
        "split": {**asdict(split), "images": img_info, "volumes": vol_info},
        "machine": {"torch": torch.__version__, "cpu_count": os.cpu_count(), "threads": args.threads},
        "models": {str(s): v for s, v in models_info.items()},
        "timing": {str(s): v for s, v in timing.items()},
        "results": results,
        "consistency": cons,
        "tumour_flags": flags,
        "disagreement": {str(s): {"image": d["image"], "tta_model": d["tta_model"],
                                  "tta_std_mean": float(d["tta_std"].mean()),
                                  **({"gan_vs_fidelity_mean": float(d["gan_vs_fidelity"].mean()), "pair": d["pair"]}
                                     if "pair" in d else {})} for s, d in disagreement.items()},
        "notes": notes,
    }
    md = _markdown(summary, rows, main_methods, model_names, flags)
    print(md)

    def build(folder: Path) -> None:
        (folder / "summary.json").write_text(json.dumps(_json_safe(summary), indent=2, allow_nan=False) + "\n")
        (folder / "table.md").write_text(md + "\n", encoding="utf-8")
        (folder / "per_image.csv").write_text(_rows_csv(rows))
        (folder / "report.html").write_text(
            _html(folder, summary, rows, main_methods, model_names, flags, examples, disagreement, enhancers_by_scale),
            encoding="utf-8")

    _atomic_dir(args.out, build)
    say(f"wrote {args.out}/report.html, table.md, summary.json, per_image.csv")
    return summary


def _rows_csv(rows: list[dict]) -> str:
    from srgan.evaluation.evaluate import METRICS
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=["dataset", "scale", "lr", "image", "method", "region", "n_pixels", "hr_shape",
                                        *METRICS], lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    return buf.getvalue()


def _sections(summary: dict, rows: list[dict], main_methods: dict, model_names: dict, flags: list[dict]):
    """(title, headers, rows) of every table, shared by the markdown and the HTML."""
    out = []
    for ds, by_scale in summary["results"].items():
        region = MAIN_REGION[ds]
        for s, by_lr in by_scale.items():
            for lr_kind, res in by_lr.items():
                n = max((e[region]["psnr"]["n"] for e in res.values() if region in e), default=0)
                info = summary["models"][s]
                out.append((f"{ds}, ×{s}, {lr_kind} LR — region {region}, n = {n}",
                            MAIN_HEADERS, main_table(res, region, info, summary["timing"].get(s, {})),
                            (ds, int(s), lr_kind)))
    mrows = [[f"×{s}", m, i["role"], str(i["arch"]), json.dumps(i["kwargs"]), f"{i['params']:,}", i["consistency"],
              str(i["sha256"])[:12], i["path"]]
             for s, info in summary["models"].items() for m, i in info.items() if i["role"] != "baseline"]
    if mrows:
        out.append(("Models (main rows use each card's recommended consistency projection)",
                    ["scale", "name", "role", "arch", "kwargs", "params", "consistency", "sha256", "weights"], mrows,
                    None))
    if summary["consistency"]:
        out.append((f"Consistency: PSNR with the output projected onto the LR input; residual ‖D(SR) − LR‖/‖LR‖ after "
                    f"projection (✓: every slice ≤ {RESIDUAL_TARGET:g})",
                    CONSISTENCY_HEADERS, consistency_table(summary["consistency"]), None))
    tum_methods = list(dict.fromkeys(m for s in model_names.values() for m in s))
    trows = tumour_table([r for r in rows if r["dataset"] == "volumes"], tum_methods, flags)
    if trows:
        out.append(("Tumour regions (volumes with --label): PSNR/SSIM inside core (1|4) and oedema (2), Δ vs bicubic",
                    TUMOUR_HEADERS, trows, None))
    return out


def _markdown(summary, rows, main_methods, model_names, flags) -> str:
    lines = ["# BrainSR benchmark", ""]
    for title, heads, trs, _ in _sections(summary, rows, main_methods, model_names, flags):
        lines += [f"## {title}", "", md_table(heads, trs), ""]
    s_timing = summary["config"]["timing_input"]
    lines.append(f"ms/slice: median of {summary['config']['timing_runs']} calls after warm-up, "
                 f"{summary['config']['threads']} threads, model load excluded; LR → SR "
                 + ", ".join(f"×{s}: {v}" for s, v in s_timing.items()) + ".")
    if flags:
        lines += ["", f"⚠ {len(flags)} case(s) worse than bicubic inside the tumour:"]
        lines += [f"- ×{f['scale']} {f['lr']} {f['image']} {f['method']} {f['region']}: ΔPSNR {f['dpsnr']:+.2f} dB, "
                  f"ΔSSIM {f['dssim']:+.4f}" for f in flags]
    for n in summary["notes"]:
        lines.append(f"\nnote: {n}")
    return "\n".join(lines)


_CSS = """body{font-family:system-ui,sans-serif;margin:1.5em;max-width:1500px;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.2em;font-size:13px}td,th{border:1px solid #ccc;padding:3px 7px;
text-align:right}th{background:#f0f0f0}td:first-child,th:first-child{text-align:left}.row{display:flex;flex-wrap:wrap;
gap:6px}figure{margin:0}figure img{width:200px;image-rendering:pixelated}figcaption{font-size:12px;text-align:center;
max-width:200px}.note{color:#555;font-size:13px}.warn{color:#b00}img.plot{max-width:100%}"""


def _html(folder, summary, rows, main_methods, model_names, flags, examples, disagreement, enhancers_by_scale) -> str:
    rep = Report(folder)
    cfg = summary["config"]
    parts = [f"<!doctype html><html><head><meta charset=utf-8><title>BrainSR benchmark</title><style>{_CSS}</style>"
             "</head><body><h1>BrainSR benchmark</h1>",
             f"<p class=note>Split: {html.escape(cfg['split'])} ({html.escape(summary['split']['origin'])}, "
             f"val_fraction {summary['split']['val_fraction']}, seed {summary['split']['seed']}). "
             f"Images: {html.escape(', '.join(cfg['images']) or '–')}; volumes: "
             f"{html.escape(', '.join(v['name'] for v in summary['split']['volumes']['volumes']) or '–')}. "
             f"torch {summary['machine']['torch']}, {cfg['threads']} threads.</p>"]
    for n in summary["notes"]:
        parts.append(f"<p class=warn>note: {html.escape(n)}</p>")
    for title, heads, trs, key in _sections(summary, rows, main_methods, model_names, flags):
        parts += [f"<h2>{html.escape(title)}</h2>", html_table(heads, trs)]
        if key is not None:
            ds, s, lr_kind = key
            sel = [r for r in rows if (r["dataset"], r["scale"], r["lr"]) == key]
            res = summary["results"][ds][str(s)][lr_kind]
            parts.append(rep.plot(_gain_plot(sel, main_methods[s], res, MAIN_REGION[ds], f"{ds} x{s} {lr_kind}"),
                                  f"gain-{ds}-x{s}-{lr_kind}"))
    parts.append(f"<p class=note>ms/slice: median of {cfg['timing_runs']} calls after warm-up, model load excluded, "
                 + ", ".join(f"×{s}: {v}" for s, v in cfg["timing_input"].items()) + ".</p>")
    if flags:
        parts.append("<h2 class=warn>⚠ Worse than bicubic inside the tumour</h2><ul>" + "".join(
            f"<li>×{f['scale']} {html.escape(f['lr'])} {html.escape(f['image'])} <b>{html.escape(f['method'])}</b> "
            f"{f['region']}: ΔPSNR {f['dpsnr']:+.2f} dB, ΔSSIM {f['dssim']:+.4f}</li>" for f in flags) + "</ul>")
    for s in summary["config"]["scales"]:
        specs = enhancers_by_scale[s][0]
        order = ["nearest", "bicubic", *[m.name for m in specs]]
        for ds in ("images", "volumes"):
            ex = examples.get((s, ds))
            if ex is None:
                continue
            case = ex["case"]
            hr = np.asarray(case.hr, np.float32)
            stack = hr[None] if hr.ndim == 2 else hr
            H, W = ex["outputs"]["bicubic"].shape[1:]
            label = None if case.label is None else (case.label[None] if case.label.ndim == 2 else case.label)[:, :H, :W]
            outs = {m: (np.clip(o, *case.clip) if case.clip else o) for m, o in ex["outputs"].items()}
            k, crop = example_crop(ex, s)
            if label is not None and label.any():
                parts.append(f"<h2>Tumour zoom ×{s}: {html.escape(case.name)}, evaluated slice {k} "
                             f"({ex['lr_kind']} LR)</h2>")
            else:
                parts.append(f"<h2>Example ×{s}: {html.escape(case.name)}"
                             f"{f', evaluated slice {k}' if hr.ndim == 3 else ''} ({ex['lr_kind']} LR)</h2>")
            parts.append(comparison_panels(rep, f"x{s}-{ds}", stack[k, :H, :W], {m: o[k] for m, o in outs.items()},
                                           crop, label=None if label is None else label[k], order=order))
        d = disagreement.get(s)
        if d is not None:
            tiles = []
            if "gan_vs_fidelity" in d:
                g = d["gan_vs_fidelity"]
                tiles.append((f"|{d['pair'][0]} − {d['pair'][1]}| (mean {g.mean():.2g}, max {g.max():.3g})",
                              colour(g, float(np.percentile(g, 99.5)) or 1.0)))
            t = d["tta_std"]
            tiles.append((f"{d['tta_model']}: std over 8 flips/rot90 (mean {t.mean():.2g}, max {t.max():.3g})",
                          colour(t, float(np.percentile(t, 99.5)) or 1.0)))
            parts.append(f"<h2>Disagreement ×{s}: {html.escape(d['image'])}</h2>"
                         "<p class=note>Where these maps are bright the model's detail is least certain: "
                         "GAN texture that the fidelity model does not produce, or output that changes when the "
                         "input is merely flipped or rotated. Same crop as the example above; each map has its own "
                         "scale (black 0 → pale yellow at its 99.5th percentile).</p>"
                         + rep.figure_row(tiles, f"x{s}-disagree"))
    parts.append("<p class=note>AI-enhanced images are not for primary diagnosis. Tumour labels are an automatic "
                 "majority-vote segmentation, not expert ground truth.</p></body></html>")
    return "\n".join(parts)


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

"""Pictures of the benchmark report: intensity and error tiles, crops where methods differ, PNG files and plots.

:class:`Report` writes PNGs under ``folder/img`` and returns the HTML that shows them; :func:`comparison_panels` is
the LR | bicubic | models | HR row with its |SR − HR| row on one colour scale; :func:`example_crop` picks what an
example shows (the most detailed window of an image, or the tumour of a labelled volume); :func:`gain_plot` draws
the per-image and mean PSNR gains over bicubic (matplotlib, when installed); :func:`pareto_plot` the gains over the
best classical baseline against MACs per LR pixel and ms per slice, saved by :func:`save_plot`.
"""

from __future__ import annotations

import html
import io
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from srgan.evaluation.evaluate import REFERENCE

__all__ = [
    "Report",
    "best_crop",
    "colour",
    "comparison_panels",
    "example_crop",
    "gain_plot",
    "pareto_plot",
    "save_plot",
]


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
    valid = score[h0 : H - side + h0 + 1, w0 : W - side + w0 + 1]
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


def _pyplot():
    """matplotlib's pyplot on the Agg backend, or None when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def _png_bytes(plt, draw: Callable) -> bytes:
    fig = draw(plt)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def save_plot(draw: Callable, path: Path) -> bool:
    """Write the figure ``draw(plt)`` returns as a PNG at ``path`` (inside a report folder that is swapped in whole,
    like every figure here); False when matplotlib is not installed."""
    plt = _pyplot()
    if plt is None:
        return False
    Path(path).write_bytes(_png_bytes(plt, draw))
    return True


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
        figs = "".join(
            f'<figure><img src="{self.png(a, f"{stem}-{t}", zoom_to)}" alt="{html.escape(t)}">'
            f"<figcaption>{html.escape(t)}</figcaption></figure>"
            for t, a in tiles
        )
        return f'<div class="row">{figs}</div>'

    def plot(self, draw: Callable, stem: str) -> str:
        plt = _pyplot()
        if plt is None:
            return "<p class=note>Plots need matplotlib (pip install matplotlib).</p>"
        self.n += 1
        name = f"img/{self.n:03d}-{stem}.png"
        (self.folder / name).write_bytes(_png_bytes(plt, draw))
        return f'<div class="row"><img class="plot" src="{name}" alt="{html.escape(stem)}"></div>'


def comparison_panels(
    report: Report,
    stem: str,
    hr: np.ndarray,
    outputs: dict[str, np.ndarray],
    crop: tuple[slice, slice],
    *,
    label: np.ndarray | None = None,
    order: Sequence[str] = (),
) -> str:
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
    return (
        report.figure_row(tiles, stem)
        + report.figure_row(diffs, stem + "-diff")
        + f"<p class=note>Difference maps share one scale: black 0 → pale yellow {vmax:.3g} "
        f"(99.5th percentile of all |SR − HR| in the crop).</p>"
    )


def gain_plot(rows: list[dict], methods: Sequence[str], results: dict, region: str, title: str):
    """Per-image and mean PSNR gains over the best classical baseline of ``results`` (``psnr_gain_best``)."""
    best = next(
        (e[region]["psnr_gain_best"]["reference"] for e in results.values() if "psnr_gain_best" in e.get(region, {})),
        REFERENCE,
    )
    ref = {r["image"]: r["psnr"] for r in rows if r["method"] == best and r["region"] == region}
    ms = [m for m in methods if m != best and m in results and region in results[m]]

    def draw(plt):
        fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.4))
        for i, m in enumerate(ms):
            g = [
                r["psnr"] - ref[r["image"]]
                for r in rows
                if r["method"] == m and r["region"] == region and r["image"] in ref and np.isfinite(r["psnr"])
            ]
            a.scatter(np.full(len(g), i) + np.linspace(-0.15, 0.15, len(g)) if g else [], g, s=10)
            e = results[m][region].get("psnr_gain_best", {})
            if e and e.get("mean") is not None and np.isfinite(e["mean"]):
                b.bar(i, e["mean"], yerr=[[e["mean"] - e["lo"]], [e["hi"] - e["mean"]]], capsize=4)
        for ax in (a, b):
            ax.axhline(0, color="k", lw=0.8)
            ax.set_xticks(range(len(ms)), ms, rotation=20, ha="right", fontsize=8)
        a.set_ylabel(f"PSNR gain over {best}, dB")
        a.set_title(f"{title}: per image", fontsize=9)
        b.set_title(f"{title}: mean, 95% CI", fontsize=9)
        return fig

    return draw


_MARKERS = {"images": "o", "volumes": "s"}


def _short(v: float) -> str:
    """A tick label: 2, 50, 200k, 1M."""
    for unit, f in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if v >= f:
            return f"{v / f:g}{unit}"
    return f"{v:g}"


def pareto_plot(points: Sequence[dict], panels: Sequence[tuple[int, str]]):
    """Quality against cost: one column per (scale, LR kind) of ``panels``, PSNR gain over the best classical
    baseline (dB, y; ``psnr_gain_best``) against MACs per LR pixel (top row, log x) and CPU ms per slice (bottom
    row, log x), one labelled point per model and dataset (``srgan.evaluation.comparison.pareto_points``)."""
    rows = (("macs_per_lr_px", "MACs per LR pixel"), ("ms_per_slice", "CPU ms per slice"))

    def draw(plt):
        from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

        fig, axes = plt.subplots(2, max(1, len(panels)), figsize=(4.2 * max(1, len(panels)), 6.6), squeeze=False)
        for j, (scale, lr) in enumerate(panels):
            mine = [p for p in points if (p["scale"], p["lr"]) == (scale, lr)]
            refs = sorted({str(p["reference"]) for p in mine})
            for i, (key, xlabel) in enumerate(rows):
                ax = axes[i][j]
                shown = [p for p in mine if p.get(key) is not None and np.isfinite(p[key]) and p[key] > 0]
                for ds in dict.fromkeys(p["dataset"] for p in shown):
                    pts = [p for p in shown if p["dataset"] == ds]
                    ax.scatter(
                        [p[key] for p in pts],
                        [p["psnr_gain_best"] for p in pts],
                        marker=_MARKERS.get(ds, "^"),
                        label=ds,
                        zorder=3,
                    )
                    for k, p in enumerate(pts):  # staggered: twin models share a cost
                        ax.annotate(
                            p["model"],
                            (p[key], p["psnr_gain_best"]),
                            textcoords="offset points",
                            xytext=(4, 3 - 9 * (k % 2)),
                            fontsize=7,
                        )
                if shown:
                    xs = [p[key] for p in shown]
                    ax.set_xscale("log")
                    ax.set_xlim(min(xs) / 2, max(xs) * 2)  # at least a decade: no crowded minor labels
                    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
                    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: _short(v)))
                    ax.xaxis.set_minor_formatter(NullFormatter())
                    ax.legend(fontsize=7, loc="best")
                else:
                    ax.text(
                        0.5,
                        0.5,
                        "no timing" if key == "ms_per_slice" else "no models",
                        ha="center",
                        va="center",
                        transform=ax.transAxes,
                        fontsize=9,
                        color="#777",
                    )
                ax.axhline(0, color="k", lw=0.8)
                ax.grid(True, which="both", alpha=0.3)
                ax.set_xlabel(xlabel, fontsize=8)
                ax.set_ylabel(f"PSNR gain over best baseline ({', '.join(refs) or '–'}), dB", fontsize=7)
                ax.set_title(f"×{scale}, {lr} LR", fontsize=9)
        fig.tight_layout()
        return fig

    return draw

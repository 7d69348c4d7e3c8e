"""The benchmark report: its tables (markdown and HTML), ``table.md``, ``summary.json``, ``per_image.csv``,
``pareto.png`` (quality against MACs per LR pixel and ms per slice) and a self-contained ``report.html`` with
example crops, |SR − HR| maps, tumour zooms, the disagreement panel and plots.

:func:`write_report` builds the folder beside ``--out`` and swaps it in whole (``srgan.io.atomic``); an ``--out``
holding anything but an earlier report is refused first (:func:`check_out`). The numbers come from
``srgan.evaluation.comparison``; the pictures from ``srgan.evaluation.figures``.
"""

from __future__ import annotations

import csv
import html
import importlib.util
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from srgan.evaluation.evaluate import METRICS, REFERENCE, TUMOUR_REGIONS, json_safe
from srgan.evaluation.figures import (
    Report,
    colour,
    comparison_panels,
    example_crop,
    gain_plot,
    pareto_plot,
    save_plot,
)
from srgan.evaluation.methods import RESIDUAL_TARGET
from srgan.evaluation.selection import MAIN_REGION
from srgan.io import atomic

__all__ = [
    "CONSISTENCY_HEADERS",
    "MAIN_HEADERS",
    "PARETO_FILE",
    "TUMOUR_HEADERS",
    "Outcome",
    "check_out",
    "consistency_table",
    "html_page",
    "html_table",
    "main_table",
    "markdown",
    "md_table",
    "rows_csv",
    "source_tables",
    "tumour_table",
    "write_report",
]


@dataclass
class Outcome:
    """What a comparison found, as the report shows it. ``summary``: ``summary.json``; ``rows``: every
    ``evaluate_pairs`` row with its dataset, scale and LR kind; ``main_methods`` / ``model_names``: per scale, the
    methods of the main tables and the models (in table order); ``flags``: ``tumour_flags``; ``examples``: per
    (scale, dataset) the case shown, its LR and the methods' outputs; ``disagreement``: per scale the maps of the
    disagreement panel."""

    summary: dict
    rows: list[dict]
    main_methods: dict[int, list[str]]
    model_names: dict[int, list[str]]
    flags: list[dict]
    examples: dict = field(default_factory=dict)
    disagreement: dict = field(default_factory=dict)


PARETO_FILE = "pareto.png"

# ---------------------------------------------------------------- tables


def _ci(e: dict | None, fmt: str) -> str:
    if not e or e.get("mean") is None or not np.isfinite(e["mean"]):
        return "–"
    if e["lo"] == e["hi"]:
        return fmt.format(e["mean"])
    return f"{fmt.format(e['mean'])} [{fmt.format(e['lo'])}, {fmt.format(e['hi'])}]"


def _num(v, fmt: str) -> str:
    return "–" if v is None or not np.isfinite(v) else fmt.format(v)


def _macs(v) -> str:
    """MACs per LR pixel, to three significant figures: ``4.25k``, ``1.23M``."""
    if v is None or not np.isfinite(v):
        return "–"
    for unit, f in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(v) >= f:
            return f"{v / f:.3g}{unit}"
    return f"{v:.3g}"


def source_tables(entries: list[dict], model_names: dict) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, headers, rows) per scale and LR kind of ``comparison.source_rows``: each source's best classical
    baseline and its PSNR, and each model's PSNR with its gain over that baseline."""
    out = []
    for s, lr in dict.fromkeys((e["scale"], e["lr"]) for e in entries):
        models = [m for m in model_names.get(s, model_names.get(str(s), []))]
        rows = []
        for e in (e for e in entries if (e["scale"], e["lr"]) == (s, lr)):
            cells = [
                e["dataset"],
                e["source"],
                str(e["n"]),
                str(e["best_baseline"] or "–"),
                _num(e["psnr_best_baseline"], "{:.2f}"),
            ]
            for m in models:
                v, g = e["psnr"].get(m), e["gain_best"].get(m)
                cells.append("–" if v is None else f"{v:.2f} ({_num(g, '{:+.2f}')})")
            rows.append(cells)
        out.append(
            (
                f"Per source, ×{s}, {lr} LR — mean PSNR dB of the main region (images whole, volumes foreground); "
                "models: (Δ vs the source's best baseline)",
                ["data", "source", "n", "best baseline", "its PSNR", *models],
                rows,
            )
        )
    return out


MAIN_HEADERS = [
    "method",
    "kind",
    "PSNR dB [95% CI]",
    "SSIM [95% CI]",
    "HFEN",
    "sharpness",
    "ΔPSNR vs best baseline dB [95% CI]",
    "ΔPSNR vs bicubic dB [95% CI]",
    "params",
    "ms/slice",
]


def _vs_best(e: dict | None) -> str:
    """A gain over the best classical baseline, naming it: ``+1.11 [0.95, 1.27] vs zerofill``."""
    cell = _ci(e, "{:+.2f}")
    return cell if cell == "–" or not e else f"{cell} vs {e['reference']}"


def main_table(results: dict, region: str, info: dict, timing: dict) -> list[list[str]]:
    """Rows of ``MAIN_HEADERS`` from one ``summarise`` result (methods in its order); the headline gain is over
    the best classical baseline of the table (zero-fill, bicubic, …: named in the cell), bicubic's kept beside."""
    out = []
    for m, regs in results.items():
        e = regs.get(region)
        if e is None:
            continue
        i = info.get(m, {})
        t = timing.get(m, {}).get("ms_per_slice")
        out.append(
            [
                m,
                i.get("role", "baseline"),
                _ci(e.get("psnr"), "{:.2f}"),
                _ci(e.get("ssim"), "{:.4f}"),
                _num(e["hfen"]["mean"], "{:.4f}"),
                _num(e["sharpness"]["mean"], "{:.3f}"),
                _vs_best(e.get("psnr_gain_best")),
                _ci(e.get("psnr_gain"), "{:+.2f}"),
                f"{i.get('params', 0):,}",
                _num(t, "{:.2f}" if t is not None and t < 10 else "{:.1f}"),
            ]
        )
    return out


def md_table(headers: list[str], rows: list[list[str]]) -> str:
    return "\n".join(
        ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    )


def html_table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


CONSISTENCY_HEADERS = [
    "data",
    "scale",
    "LR",
    "model",
    "PSNR off",
    "PSNR proj bicubic",
    "PSNR proj k-space",
    "residual bicubic",
    "residual k-space",
]


def consistency_table(entries: list[dict]) -> list[list[str]]:
    """Residuals are means over slices, marked ✓ when the largest is within ``RESIDUAL_TARGET``."""

    def res(e, p):
        mean, worst = e[f"residual_{p}"], e[f"residual_{p}_max"]
        return "–" if not np.isfinite(mean) else f"{mean:.1e} {'✓' if worst <= RESIDUAL_TARGET else '✗'}"

    return [
        [
            e["dataset"],
            f"×{e['scale']}",
            e["lr"],
            e["model"],
            _num(e["psnr_off"], "{:.2f}"),
            _num(e["psnr_bicubic"], "{:.2f}"),
            _num(e["psnr_kspace"], "{:.2f}"),
            res(e, "bicubic"),
            res(e, "kspace"),
        ]
        for e in entries
    ]


TUMOUR_HEADERS = [
    "scale",
    "LR",
    "volume",
    "method",
    "core PSNR",
    "core ΔPSNR",
    "core SSIM",
    "oedema PSNR",
    "oedema ΔPSNR",
    "oedema SSIM",
    "⚠ worse than bicubic or zero-fill in tumour",
]


def tumour_table(rows: list[dict], methods: Sequence[str], flags: list[dict]) -> list[list[str]]:
    tum = [r for r in rows if r["region"] in TUMOUR_REGIONS and r["method"] in (REFERENCE, "zerofill", *methods)]
    by = {(r["scale"], r["lr"], r["image"], r["method"], r["region"]): r for r in tum}
    flagged: dict[tuple, list[str]] = {}
    for f in flags:
        flagged.setdefault((f["scale"], f["lr"], f["image"], f["method"]), []).append(
            f"{f['region']} ({', '.join(f['worse_in'])})"
        )
    out = []
    for s, lr, img, m in dict.fromkeys((r["scale"], r["lr"], r["image"], r["method"]) for r in tum):
        cells = [f"×{s}", lr, img, m]
        for reg in TUMOUR_REGIONS:
            r, b = by.get((s, lr, img, m, reg)), by.get((s, lr, img, REFERENCE, reg))
            if r is None:
                cells += ["–"] * 3
                continue
            d = r["psnr"] - b["psnr"] if b is not None else float("nan")
            cells += [
                _num(r["psnr"], "{:.2f}"),
                "–" if m == REFERENCE else _num(d, "{:+.2f}"),
                _num(r["ssim"], "{:.4f}"),
            ]
        cells.append("⚠ " + "; ".join(flagged[(s, lr, img, m)]) if (s, lr, img, m) in flagged else "")
        out.append(cells)
    return out


# ---------------------------------------------------------------- the files


def rows_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(
        buf,
        fieldnames=["dataset", "scale", "lr", "image", "method", "region", "n_pixels", "hr_shape", *METRICS],
        lineterminator="\n",
    )
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    return buf.getvalue()


def _sections(summary: dict, rows: list[dict], model_names: dict, flags: list[dict]) -> list[tuple]:
    """(title, headers, rows, (dataset, scale, LR kind) of a main table, else None) of every table, shared by the
    markdown and the HTML."""
    out: list[tuple] = []
    for ds, by_scale in summary["results"].items():
        region = MAIN_REGION[ds]
        for s, by_lr in by_scale.items():
            for lr_kind, res in by_lr.items():
                n = max((e[region]["psnr"]["n"] for e in res.values() if region in e), default=0)
                info = summary["models"][s]
                out.append(
                    (
                        f"{ds}, ×{s}, {lr_kind} LR — region {region}, n = {n}",
                        MAIN_HEADERS,
                        main_table(res, region, info, summary["timing"].get(s, {})),
                        (ds, int(s), lr_kind),
                    )
                )
    mrows = [
        [
            f"×{s}",
            m,
            i["role"],
            str(i["arch"]),
            json.dumps(i["kwargs"]),
            f"{i['params']:,}",
            _macs(i.get("macs_per_lr_px")),
            i["consistency"],
            f"{i.get('runtime', '?')} {i.get('precision', '?')}",
            str(i["sha256"])[:12],
            i["path"],
        ]
        for s, info in summary["models"].items()
        for m, i in info.items()
        if i["role"] != "baseline"
    ]
    if mrows:
        out.append(
            (
                "Models (main rows use each card's recommended consistency projection)",
                [
                    "scale",
                    "name",
                    "role",
                    "arch",
                    "kwargs",
                    "params",
                    "MACs/LR px",
                    "consistency",
                    "runtime, precision",
                    "sha256",
                    "weights",
                ],
                mrows,
                None,
            )
        )
    for title, heads, trs in source_tables(summary.get("per_source", []), model_names):
        out.append((title, heads, trs, None))
    if summary["consistency"]:
        out.append(
            (
                f"Consistency: PSNR with the output projected onto the LR input; residual ‖D(SR) − LR‖/‖LR‖ after "
                f"projection (✓: every slice ≤ {RESIDUAL_TARGET:g})",
                CONSISTENCY_HEADERS,
                consistency_table(summary["consistency"]),
                None,
            )
        )
    tum_methods = list(dict.fromkeys(m for s in model_names.values() for m in s))
    trows = tumour_table([r for r in rows if r["dataset"] == "volumes"], tum_methods, flags)
    if trows:
        out.append(
            (
                "Tumour regions (volumes with --label): PSNR/SSIM inside core (1|4) and oedema (2), Δ vs bicubic; "
                "⚠ where worse than bicubic or zero-fill",
                TUMOUR_HEADERS,
                trows,
                None,
            )
        )
    return out


def markdown(o: Outcome) -> str:
    """``table.md``: every table, the timing conditions, the tumour flags and the notes."""
    summary, flags = o.summary, o.flags
    lines = ["# BrainSR benchmark", ""]
    if summary.get("pareto") and importlib.util.find_spec("matplotlib") is not None:
        lines += [
            f"Quality against cost: [{PARETO_FILE}]({PARETO_FILE}) (PSNR gain over the best classical baseline "
            "against MACs per LR pixel and CPU ms per slice, per scale and LR kind).",
            "",
        ]
    for title, heads, trs, _ in _sections(summary, o.rows, o.model_names, flags):
        lines += [f"## {title}", "", md_table(heads, trs), ""]
    s_timing = summary["config"]["timing_input"]
    lines.append(
        f"ms/slice: median of {summary['config']['timing_runs']} calls after warm-up, "
        f"{summary['config']['threads']} threads, model load excluded; LR → SR "
        + ", ".join(f"×{s}: {v}" for s, v in s_timing.items())
        + "."
    )
    if flags:
        lines += ["", f"⚠ {len(flags)} case(s) worse than bicubic or zero-fill inside the tumour:"]
        lines += [
            f"- ×{f['scale']} {f['lr']} {f['image']} {f['method']} {f['region']}: ΔPSNR {f['dpsnr']:+.2f} dB, "
            f"ΔSSIM {f['dssim']:+.4f} vs {f['reference']}"
            for f in flags
        ]
    for n in summary["notes"]:
        lines.append(f"\nnote: {n}")
    return "\n".join(lines)


_CSS = """body{font-family:system-ui,sans-serif;margin:1.5em;max-width:1500px;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.2em;font-size:13px}td,th{border:1px solid #ccc;padding:3px 7px;
text-align:right}th{background:#f0f0f0}td:first-child,th:first-child{text-align:left}.row{display:flex;flex-wrap:wrap;
gap:6px}figure{margin:0}figure img{width:200px;image-rendering:pixelated}figcaption{font-size:12px;text-align:center;
max-width:200px}.note{color:#555;font-size:13px}.warn{color:#b00}img.plot{max-width:100%}"""


def html_page(folder: Path, o: Outcome) -> str:
    """``report.html``, its figures written under ``folder/img``."""
    summary, rows, main_methods, flags, examples, disagreement = (
        o.summary,
        o.rows,
        o.main_methods,
        o.flags,
        o.examples,
        o.disagreement,
    )
    rep = Report(folder)
    cfg = summary["config"]
    parts = [
        f"<!doctype html><html><head><meta charset=utf-8><title>BrainSR benchmark</title><style>{_CSS}</style>"
        "</head><body><h1>BrainSR benchmark</h1>",
        f"<p class=note>Split: {html.escape(cfg['split'])} ({html.escape(summary['split']['origin'])}, "
        f"val_fraction {summary['split']['val_fraction']}, seed {summary['split']['seed']}). "
        f"Images: {html.escape(', '.join(cfg['images']) or '–')}; volumes: "
        f"{html.escape(', '.join(v['name'] for v in summary['split']['volumes']['volumes']) or '–')}. "
        f"torch {summary['machine']['torch']}, {cfg['threads']} threads.</p>",
    ]
    for n in summary["notes"]:
        parts.append(f"<p class=warn>note: {html.escape(n)}</p>")
    if (folder / PARETO_FILE).is_file():
        parts.append(
            "<h2>Quality against cost</h2><p class=note>PSNR gain over the best classical baseline of each table "
            "against MACs per LR pixel (one forward pass, convolutions and linear layers) and CPU ms per slice.</p>"
            f'<div class="row"><img class="plot" src="{PARETO_FILE}" alt="Pareto: quality against cost"></div>'
        )
    for title, heads, trs, key in _sections(summary, rows, o.model_names, flags):
        parts += [f"<h2>{html.escape(title)}</h2>", html_table(heads, trs)]
        if key is not None:
            ds, s, lr_kind = key
            sel = [r for r in rows if (r["dataset"], r["scale"], r["lr"]) == key]
            res = summary["results"][ds][str(s)][lr_kind]
            parts.append(
                rep.plot(
                    gain_plot(sel, main_methods[s], res, MAIN_REGION[ds], f"{ds} x{s} {lr_kind}"),
                    f"gain-{ds}-x{s}-{lr_kind}",
                )
            )
    parts.append(
        f"<p class=note>ms/slice: median of {cfg['timing_runs']} calls after warm-up, model load excluded, "
        + ", ".join(f"×{s}: {v}" for s, v in cfg["timing_input"].items())
        + ".</p>"
    )
    if flags:
        parts.append(
            "<h2 class=warn>⚠ Worse than bicubic or zero-fill inside the tumour</h2><ul>"
            + "".join(
                f"<li>×{f['scale']} {html.escape(f['lr'])} {html.escape(f['image'])} <b>{html.escape(f['method'])}</b> "
                f"{f['region']}: ΔPSNR {f['dpsnr']:+.2f} dB, ΔSSIM {f['dssim']:+.4f} vs {f['reference']}</li>"
                for f in flags
            )
            + "</ul>"
        )
    for s in summary["config"]["scales"]:
        order = ["nearest", "bicubic", "zerofill", *o.model_names[s]]
        for ds in ("images", "volumes"):
            ex = examples.get((s, ds))
            if ex is None:
                continue
            case = ex["case"]
            hr = np.asarray(case.hr, np.float32)
            stack = hr[None] if hr.ndim == 2 else hr
            H, W = ex["outputs"]["bicubic"].shape[1:]
            label = None
            if case.label is not None:
                label = (case.label[None] if case.label.ndim == 2 else case.label)[:, :H, :W]
            outs = {m: (np.clip(o, *case.clip) if case.clip else o) for m, o in ex["outputs"].items()}
            k, crop = example_crop(ex, s)
            if label is not None and label.any():
                parts.append(
                    f"<h2>Tumour zoom ×{s}: {html.escape(case.name)}, evaluated slice {k} ({ex['lr_kind']} LR)</h2>"
                )
            else:
                parts.append(
                    f"<h2>Example ×{s}: {html.escape(case.name)}"
                    f"{f', evaluated slice {k}' if hr.ndim == 3 else ''} ({ex['lr_kind']} LR)</h2>"
                )
            parts.append(
                comparison_panels(
                    rep,
                    f"x{s}-{ds}",
                    stack[k, :H, :W],
                    {m: o[k] for m, o in outs.items()},
                    crop,
                    label=None if label is None else label[k],
                    order=order,
                )
            )
        d = disagreement.get(s)
        if d is not None:
            tiles = []
            if "gan_vs_fidelity" in d:
                g = d["gan_vs_fidelity"]
                tiles.append(
                    (
                        f"|{d['pair'][0]} − {d['pair'][1]}| (mean {g.mean():.2g}, max {g.max():.3g})",
                        colour(g, float(np.percentile(g, 99.5)) or 1.0),
                    )
                )
            t = d["tta_std"]
            tiles.append(
                (
                    f"{d['tta_model']}: std over 8 flips/rot90 (mean {t.mean():.2g}, max {t.max():.3g})",
                    colour(t, float(np.percentile(t, 99.5)) or 1.0),
                )
            )
            parts.append(
                f"<h2>Disagreement ×{s}: {html.escape(d['image'])}</h2>"
                "<p class=note>Where these maps are bright the model's detail is least certain: "
                "GAN texture that the fidelity model does not produce, or output that changes when the "
                "input is merely flipped or rotated. Same crop as the example above; each map has its own "
                "scale (black 0 → pale yellow at its 99.5th percentile).</p>" + rep.figure_row(tiles, f"x{s}-disagree")
            )
    parts.append(
        "<p class=note>AI-enhanced images are not for primary diagnosis. Tumour labels are an automatic "
        "majority-vote segmentation, not expert ground truth.</p></body></html>"
    )
    return "\n".join(parts)


# ---------------------------------------------------------------- the destination (one place: see srgan.io.atomic)


def check_out(out: Path) -> Path:
    """Refuse an ``--out`` that holds anything but an earlier report (it is replaced as a whole); the one
    destination check of ``srgan.io.atomic``."""
    return atomic.check_new_folder(out, accept=lambda folder: (folder / "summary.json").is_file())


def write_report(out: Path, o: Outcome) -> str:
    """Write the report folder ``out`` (replacing an earlier report as a whole); returns the markdown."""
    md = markdown(o)

    def build(folder: Path) -> None:
        (folder / "summary.json").write_text(json.dumps(json_safe(o.summary), indent=2, allow_nan=False) + "\n")
        (folder / "table.md").write_text(md + "\n", encoding="utf-8")
        (folder / "per_image.csv").write_text(rows_csv(o.rows))
        if o.summary.get("pareto"):
            cfg = o.summary["config"]
            save_plot(
                pareto_plot(o.summary["pareto"], [(s, lr) for s in cfg["scales"] for lr in cfg["lr"]]),
                folder / PARETO_FILE,
            )
        (folder / "report.html").write_text(html_page(folder, o), encoding="utf-8")

    with atomic.atomic_folder(check_out(out), replace=True) as folder:
        build(folder)
    return md

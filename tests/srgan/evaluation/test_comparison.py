"""`srgan benchmark` (srgan.evaluation.comparison): the report on real Kaggle images and a labelled BraTS volume with
tiny weights; tumour flags on a synthetic case; consistency residuals; error exits; the same tables as before."""
from __future__ import annotations

import csv
import json
import re

import numpy as np

from srgan.evaluation import comparison as C
from srgan.evaluation import report as R
from srgan.evaluation.evaluate import Case, baseline_methods, degrader, evaluate_pairs
from srgan.evaluation.methods import RESIDUAL_TARGET

SMALL = ["notumor/Tr-no_0425.jpg", "notumor/Tr-no_0403.jpg", "notumor/Tr-no_0547.jpg"]   # 150–225 px: fast


def _link_tree(src_root, dest, names):
    for n in names:
        (dest / n).parent.mkdir(parents=True, exist_ok=True)
        (dest / n).symlink_to(src_root / n)
    return dest


def test_tumour_flag_marks_a_method_worse_inside_the_tumour():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:64, :64]
    hr = (0.4 + 0.3 * np.sin(xx / 5.0) * np.cos(yy / 7.0)).astype(np.float32)
    label = np.zeros((64, 64), np.int16)
    label[20:36, 20:36] = 2
    label[24:32, 24:32] = 1
    bicubic = baseline_methods(2)["bicubic"]
    tumour = label > 0

    def noisy_in_tumour(lr):        # bicubic outside, noise inside the tumour
        out = bicubic(lr)
        out[tumour] += rng.normal(0, 0.05, int(tumour.sum()))
        return out

    def exact_in_tumour(lr):        # better than bicubic inside the tumour
        out = bicubic(lr)
        out[tumour] = hr[tumour]
        return out

    methods = {"bicubic": bicubic, "noisy": noisy_in_tumour, "exact": exact_in_tumour}
    rows = evaluate_pairs([Case("synthetic", hr, label=label, clip=None)], methods, 2, degrader("bicubic"))
    rows = [{"dataset": "volumes", "scale": 2, "lr": "bicubic", **r} for r in rows]
    flags = C.tumour_flags(rows, ["noisy", "exact"])
    assert {(f["method"], f["region"]) for f in flags} == {("noisy", "tumour_core"), ("noisy", "oedema")}
    assert all(f["dpsnr"] < 0 for f in flags)
    table = {r[3]: r[-1] for r in R.tumour_table(rows, ["noisy", "exact"], flags)}
    assert table["noisy"].startswith("⚠") and table["exact"] == "" and table["bicubic"] == ""
    assert C.tumour_flags(rows, ["noisy"], tol_db=100.0, tol_ssim=1.0) == []


def test_benchmark_report(shared_data, tmp_path, tiny_weights, tiny_weights_x4):
    root = _link_tree(shared_data / "kaggle-brain-tumor-mri", tmp_path / "kaggle", SMALL)
    tcga = shared_data / "brainles-examples" / "TCGA-DU-7294"
    out = tmp_path / "report"
    argv = ["--images", str(root), "--split", "all", "--volumes", str(tcga / "TCGA-DU-7294_t1c_bet.nii.gz"),
            "--label", str(tcga / "mav.nii.gz"), "--max-slices", "2", "--weights", str(tiny_weights),
            str(tiny_weights_x4), "--no-bundled", "--lr", "bicubic", "--timing-runs", "1", "--bootstrap", "100",
            "--threads", "1", "--out", str(out)]
    assert C.main(argv) == 0
    for name in ("report.html", "summary.json", "table.md", "per_image.csv"):
        assert (out / name).is_file(), name
    assert not list(tmp_path.glob(".report.*"))                      # temp folder renamed away
    summary = json.loads((out / "summary.json").read_text())
    for s, model in (("2", "tiny-x2"), ("4", "tiny-x4")):
        res = summary["results"]["images"][s]["bicubic"]
        assert set(res) == {"nearest", "bicubic", "lanczos", "zerofill", model}
        assert res["bicubic"]["whole"]["psnr"]["mean"] > res["nearest"]["whole"]["psnr"]["mean"]
        assert res["bicubic"]["whole"]["psnr"]["n"] == 3
        assert res[model]["whole"]["psnr_gain"]["reference"] == "bicubic"
        # the headline gain is over the best classical baseline of the table, and says which
        best = max(("nearest", "bicubic", "lanczos", "zerofill"), key=lambda b: res[b]["whole"]["psnr"]["mean"])
        assert res[model]["whole"]["psnr_gain_best"]["reference"] == best
        assert res[model]["whole"]["psnr_gain_best"]["mean"] <= res[model]["whole"]["psnr_gain"]["mean"] + 1e-9
        assert summary["models"][s][model]["params"] > 0
        assert summary["timing"][s][model]["ms_per_slice"] > 0
        assert "tumour_core" in summary["results"]["volumes"][s]["bicubic"][model]
    cons = {(c["dataset"], c["scale"], c["model"]): c for c in summary["consistency"]}
    assert set(cons) == {(d, s, m) for d in ("images", "volumes") for s, m in ((2, "tiny-x2"), (4, "tiny-x4"))}
    for c in cons.values():
        assert c["residual_bicubic_max"] <= RESIDUAL_TARGET
        assert np.isfinite(c["psnr_off"]) and np.isfinite(c["psnr_bicubic"])
    # the tiny random networks are far worse than bicubic in the tumour: every one is flagged
    assert {(f["method"], f["scale"]) for f in summary["tumour_flags"]} == {("tiny-x2", 2), ("tiny-x4", 4)}
    assert {f["reference"] for f in summary["tumour_flags"]} == {"bicubic", "zerofill"}
    table = (out / "table.md").read_text()
    assert "tiny-x4" in table and "⚠" in table and "ms/slice" in table
    assert "ΔPSNR vs best baseline dB" in table and "| zerofill |" in table
    assert re.search(r"\| tiny-x2 \|[^\n]* vs (bicubic|lanczos|zerofill) \|", table)
    with open(out / "per_image.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    # images: 3 × 2 scales × (4 baselines + model + 3 projection variants) × (whole, foreground)
    assert sum(r["dataset"] == "images" for r in rows) == 3 * 2 * 8 * 2
    page = (out / "report.html").read_text()
    imgs = re.findall(r'src="(img/[^"]+)"', page)
    assert imgs and all((out / i).is_file() for i in imgs)
    assert "Tumour zoom" in page and "Disagreement" in page and "tiny-x2" in page
    # cost: MACs per LR pixel of every model (the tiny x2 by hand: head, one block, trunk, tail of 2² phases)
    assert summary["models"]["2"]["tiny-x2"]["macs_per_lr_px"] == 1 * 8 * 9 + 3 * 8 * 8 * 9 + 8 * 4 * 9
    assert "| MACs/LR px |" in table and "| 2.09k |" in table
    # and what ran it, as ``srgan enhance`` would (the tiny cards recommend nothing: fp32)
    assert summary["models"]["2"]["tiny-x2"]["precision"] == "fp32" and "| runtime, precision |" in table
    assert re.search(r"\| tiny-x2 \|[^\n]*\| (torch|onnxruntime|openvino) fp32 \|", table)
    # the Pareto plot: one point per dataset, scale and model, from this run's own numbers
    assert (out / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "[pareto.png](pareto.png)" in table and 'src="pareto.png"' in page
    points = {(p["dataset"], p["scale"], p["model"]): p for p in summary["pareto"]}
    assert set(points) == {(d, s, m) for d in ("images", "volumes") for s, m in ((2, "tiny-x2"), (4, "tiny-x4"))}
    for (d, s, m), p in points.items():
        region = "whole" if d == "images" else "foreground"
        assert p["psnr_gain_best"] == summary["results"][d][str(s)]["bicubic"][m][region]["psnr_gain_best"]["mean"]
        assert p["macs_per_lr_px"] == summary["models"][str(s)][m]["macs_per_lr_px"]
        assert p["ms_per_slice"] == summary["timing"][str(s)][m]["ms_per_slice"]
    # two sources (the image root, the volume): a per-source table per scale and LR kind
    by_source = {(e["scale"], e["source"]): e for e in summary["per_source"]}
    assert set(by_source) == {(s, src) for s in (2, 4)
                              for src in ("kaggle (8-bit JPEG slices)", "TCGA-DU-7294, t1c, 16-bit int16")}
    img = by_source[(2, "kaggle (8-bit JPEG slices)")]
    best = summary["results"]["images"]["2"]["bicubic"]["tiny-x2"]["whole"]["psnr_gain_best"]["reference"]
    assert img["n"] == 3 and img["best_baseline"] == best
    x2 = summary["results"]["images"]["2"]["bicubic"]
    assert abs(img["psnr"]["tiny-x2"] - x2["tiny-x2"]["whole"]["psnr"]["mean"]) < 1e-9
    assert abs(img["psnr_best_baseline"] - x2[best]["whole"]["psnr"]["mean"]) < 1e-9
    assert "## Per source, ×2, bicubic LR" in table and "| volumes | TCGA-DU-7294, t1c, 16-bit int16 | 1 |" in table
    # a second run replaces the report as a whole
    assert C.main(argv[:-2] + ["--scale", "2", "--out", str(out)]) == 0
    assert set(json.loads((out / "summary.json").read_text())["results"]["images"]) == {"2"}


def test_errors_exit_2_and_leave_foreign_folders_alone(shared_data, tmp_path, capsys):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep")
    root = _link_tree(shared_data / "kaggle-brain-tumor-mri", tmp_path / "kaggle", SMALL[:1])
    assert C.main(["--images", str(root), "--split", "all", "--no-bundled", "--out", str(foreign)]) == 2
    assert "already exists and is not empty" in capsys.readouterr().err
    assert (foreign / "notes.txt").read_text() == "keep" and len(list(foreign.iterdir())) == 1
    assert C.main(["--out", str(tmp_path / "x")]) == 2
    assert C.main(["--images", str(tmp_path / "missing"), "--out", str(tmp_path / "y")]) == 2
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_images_a_model_card_says_it_trained_on_are_noted(shared_data, tmp_path):
    import torch

    from srgan.models import GENERATORS, build_generator
    from srgan.models.weights import save_weights
    root = _link_tree(shared_data / "kaggle-brain-tumor-mri", tmp_path / "kaggle", SMALL[:2])
    torch.manual_seed(0)
    kwargs = {**GENERATORS["srresnet_lite"].TINY, "scale": 2}
    weights = save_weights(tmp_path / "w" / "carded", build_generator("srresnet_lite", **kwargs),
                           {"arch": "srresnet_lite", "kwargs": kwargs, "kind": "gan", "name": "carded",
                            "data": {"sources": [str(root)], "val_groups": [SMALL[0]]}})
    out = tmp_path / "report"
    assert C.main(["--images", str(root), "--split", "all", "--weights", str(weights), "--no-bundled", "--scale", "2",
                   "--lr", "bicubic", "--timing-runs", "1", "--bootstrap", "50", "--threads", "1",
                   "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    notes = [n for n in summary["notes"] if n.startswith("carded:")]
    assert len(notes) == 1 and SMALL[1] in notes[0] and SMALL[0] not in notes[0]
    assert summary["models"]["2"]["carded"]["role"] == "gan"
    # with a GAN but no fidelity model the disagreement panel still shows the flip/rotation spread
    assert summary["disagreement"]["2"]["tta_model"] == "carded" and "pair" not in summary["disagreement"]["2"]

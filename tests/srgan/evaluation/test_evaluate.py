"""`srgan evaluate`: baselines keep pixel centres; rows, summary and files on real Kaggle slices and a
BraTS-labelled volume; models through the real engine with tiny weights; error exit."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from srgan.evaluation import evaluate as E
from srgan.evaluation.metrics import psnr


@pytest.fixture(scope="module")
def kaggle_three(shared_data):
    root = shared_data / "kaggle-brain-tumor-mri"
    # small images keep the test fast: 225×225, 350×350 and 512×512 real JPEGs
    return [root / "notumor" / "Tr-no_0547.jpg", root / "notumor" / "Tr-noTr_0000.jpg",
            root / "glioma" / "Tr-glTr_0000.jpg"]


@pytest.mark.parametrize("s", [2, 3, 4])
def test_baselines_keep_pixel_centres(s):
    # LR pixel i holds its own HR centre position i·s + (s−1)/2; an interpolator that keeps the convention
    # reproduces the HR coordinate with zero mean error (no shift) away from the borders.
    lr = np.add.outer(np.arange(16) * s + (s - 1) / 2, np.zeros(6)).astype(np.float32)
    hr = np.arange(16 * s, dtype=np.float64)
    inner = slice(4 * s, -4 * s)
    for name, up in E.baseline_methods(s).items():
        sr = up(lr)
        assert sr.shape == (16 * s, 6 * s)
        err = sr[:, 2 * s] - hr
        assert abs(err[inner].mean()) < 1e-4, name
        # zero-fill sees the ramp as periodic: it rings at the wrap (its exactness on band-limited slices is
        # tests/srgan/test_degrade.py's), but the ringing is symmetric, so the mean error above still pins the centres
        if name != "zerofill":
            assert np.abs(err[inner]).max() <= (s - 1) / 2 + 1e-4, name
        np.testing.assert_allclose(up(lr.T.copy())[2 * s], sr[:, 2 * s], atol=1e-4)   # same along columns


def test_evaluate_pairs_rows_and_oracle():
    rng = np.random.default_rng(0)
    hr = np.zeros((2, 40, 40), np.float32)
    hr[:, 8:32, 6:34] = rng.random((2, 24, 28)) * 0.5 + 0.3
    truth = {}

    def oracle(lr):            # knows the HR image whose LR it is given
        return truth[lr.tobytes()]

    def down(x, s):
        lr = x.reshape(x.shape[0] // s, s, x.shape[1] // s, s).mean(axis=(1, 3)).astype(np.float32)
        truth[lr.tobytes()] = x
        return lr
    label = np.zeros((40, 40), np.int16)
    label[10:14, 10:14], label[20:30, 20:30] = 1, 2
    cases = [E.Case("a", hr[0], label=label), hr[1][:39, :39]]          # odd size gets cropped to 38×38
    rows = E.evaluate_pairs(cases, {"oracle": oracle, **E.baseline_methods(2)}, 2, down)
    regions_a = {r["region"] for r in rows if r["image"] == "a"}
    assert regions_a == {"whole", "foreground", "tumour_core", "oedema"}
    assert {r["region"] for r in rows if r["image"] == "image0001"} == {"whole", "foreground"}
    assert len(rows) == 5 * (4 + 2)   # (oracle + 4 baselines) × (4 regions of a + 2 of the other)
    assert {r["hr_shape"] for r in rows} == {"40x40", "38x38"}
    core = [r for r in rows if r["region"] == "tumour_core" and r["method"] == "oracle"][0]
    assert core["n_pixels"] == 16 and core["psnr"] == float("inf") and core["nrmse"] == 0.0
    summary = E.summarise(rows, n_boot=200)
    assert set(summary) == {"oracle", "nearest", "bicubic", "lanczos", "zerofill"}
    assert summary["bicubic"]["whole"]["psnr_gain"]["mean"] == 0.0
    best = E.best_baselines(rows)["whole"]
    assert best != "oracle" and summary[best]["whole"]["psnr_gain_best"]["mean"] == 0.0
    assert all(summary[b]["whole"]["psnr_gain_best"]["mean"] <= 0 for b in E.BASELINES)
    assert summary["oracle"]["whole"]["psnr_gain_best"]["reference"] == best
    assert summary["bicubic"]["whole"]["psnr"]["n"] == 2
    table = E.markdown_table(summary)
    assert "### tumour_core" in table and "| lanczos |" in table


def test_wrong_output_shape_is_an_error():
    with pytest.raises(ValueError, match="expected"):
        E.evaluate_pairs([np.zeros((8, 8), np.float32)], {"bad": lambda lr: lr}, 2, lambda x, s: x[::s, ::s])


def test_cli_on_three_kaggle_slices(kaggle_three, tmp_path, capsys):
    out = tmp_path / "report"
    argv = [*map(str, kaggle_three), "--scale", "2", "--lr", "bicubic", "--out", str(out), "--bootstrap", "300"]
    assert E.main(argv) == 0
    table = capsys.readouterr().out
    assert "### whole" in table and "### foreground" in table and "| bicubic |" in table
    with open(out / "per_image.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 * 4 * 2
    by = {(r["image"], r["method"], r["region"]): float(r["psnr"]) for r in rows}
    for p in kaggle_three:
        assert by[(p.name, "bicubic", "whole")] > by[(p.name, "nearest", "whole")] + 1.0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["n_images"] == 3 and summary["config"]["lr"] == "bicubic"
    res = summary["results"]
    assert res["bicubic"]["whole"]["psnr"]["mean"] > res["nearest"]["whole"]["psnr"]["mean"]
    assert res["nearest"]["foreground"]["psnr_gain"]["hi"] < 0
    # the best baseline is named and measured against: nearest loses to it by more than to bicubic
    best = res["nearest"]["whole"]["psnr_gain_best"]
    assert best["reference"] in ("bicubic", "lanczos", "zerofill")
    assert best["mean"] <= res["nearest"]["whole"]["psnr_gain"]["mean"]
    assert f"ΔPSNR vs best baseline ({best['reference']}) dB" in table and "ΔPSNR vs bicubic dB" in table
    for m in ("nearest", "bicubic", "lanczos", "zerofill"):
        ci = res[m]["whole"]["ssim"]
        assert ci["lo"] <= ci["mean"] <= ci["hi"]
    assert sorted(p.name for p in out.iterdir()) == ["per_image.csv", "summary.json"]


def test_recomputed_psnr_matches_contract_definition(kaggle_three):
    # the numbers must equal a from-scratch computation: 8-bit LR file, bicubic up, clip, PSNR with data_range 1
    from srgan.degrade import bicubic_down
    from srgan.inference.engine import interpolate
    from srgan.io.images import load_image
    case = E.image_case("x", kaggle_three[0])
    row = E.evaluate_pairs([case], E.baseline_methods(2), 2, E.degrader("bicubic"))[2]
    assert (row["method"], row["region"]) == ("bicubic", "whole")
    hr = load_image(kaggle_three[0]).data
    hr = hr[:hr.shape[0] // 2 * 2, :hr.shape[1] // 2 * 2]
    lr = np.rint(np.clip(bicubic_down(hr, 2), 0, 1) * 255) / 255
    bicubic = np.clip(interpolate(lr.astype(np.float32), 2, "bicubic"), 0, 1)
    assert row["psnr"] == pytest.approx(psnr(hr, bicubic, 1.0), abs=1e-4)


def test_cli_volume_with_tumour_label(shared_data, tmp_path, capsys):
    case = shared_data / "brainles-examples" / "TCGA-DU-7294"
    args = [str(case / "TCGA-DU-7294_t2_bet.nii.gz"), "--label", str(case / "mav.nii.gz"), "--max-slices", "4",
            "--lr", "kspace", "--out", str(tmp_path), "--bootstrap", "100"]
    assert E.main(args) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    res = summary["results"]["bicubic"]
    assert {"whole", "foreground", "tumour_core", "oedema"} <= set(res)
    assert res["tumour_core"]["psnr"]["mean"] > summary["results"]["nearest"]["tumour_core"]["psnr"]["mean"]
    # on k-space LR the scanner's own interpolation is the best classical baseline, and is named as such
    zf = summary["results"]["zerofill"]["whole"]
    assert zf["psnr"]["mean"] > res["whole"]["psnr"]["mean"] and zf["psnr_gain_best"]["reference"] == "zerofill"
    assert res["whole"]["psnr_gain_best"]["reference"] == "zerofill" and res["whole"]["psnr_gain_best"]["mean"] < 0
    assert "### oedema" in capsys.readouterr().out


def test_models_run_through_the_engine(tiny_weights, tmp_path, capsys):
    rng = np.random.default_rng(4)
    from srgan.io.images import save_image
    for i in range(2):
        img = np.zeros((48, 48), np.float32)
        img[8:40, 8:40] = 0.4 + 0.4 * rng.random((32, 32))
        save_image(tmp_path / f"s{i}.png", img, 16)
    assert E.main([str(tmp_path), "--weights", str(tiny_weights), "--device", "cpu", "--out", str(tmp_path / "r"),
                   "--bootstrap", "50"]) == 0
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["config"]["methods"] == ["nearest", "bicubic", "lanczos", "zerofill", "tiny-x2"]
    model = summary["config"]["models"]["tiny-x2"]
    assert model["provenance"]["scale"] == 2 and len(model["card"]["sha256"]) == 64
    assert summary["results"]["tiny-x2"]["whole"]["psnr"]["n"] == 2
    assert "| tiny-x2 |" in capsys.readouterr().out


def test_error_exit(tmp_path, capsys):
    assert E.main([str(tmp_path / "missing")]) == 2
    assert "missing" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert E.main([str(tmp_path / "empty")]) == 2
    (tmp_path / "bad.png").write_bytes(b"")
    assert E.main([str(tmp_path / "bad.png")]) == 2
    assert "empty" in capsys.readouterr().err


def test_volume_case_slices_cover_the_tumour(shared_data):
    case = shared_data / "brainles-examples" / "TCGA-DU-7294"
    c = E.volume_case("t1", case / "TCGA-DU-7294_t1_bet.nii.gz", case / "mav.nii.gz", max_slices=6)
    assert c.hr.shape == (6, 240, 240) and c.label.shape == c.hr.shape and c.clip is None
    per_slice = c.label.reshape(6, -1)
    assert (per_slice > 0).any(axis=1).sum() >= 3 and np.isin(c.label, (1, 4)).any()
    assert c.data_range == pytest.approx(np.percentile(c.hr[c.hr > 0], 99.5), rel=0.1)
    full = E.volume_case("t1", case / "TCGA-DU-7294_t1_bet.nii.gz")
    assert 100 < full.hr.shape[0] <= 155 and full.label is None

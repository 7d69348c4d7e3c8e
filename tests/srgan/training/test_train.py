"""`srgan train`: a tiny two-stage run end to end, exact resume, config precedence, clean stops, errors."""
import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from srgan.models import DISCRIMINATORS, GENERATORS
from srgan.models.weights import load_weights
from srgan.training import train

KAGGLE = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "kaggle-brain-tumor-mri"


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Eight 8-bit textured discs on black (each its own 'patient')."""
    root = tmp_path_factory.mktemp("imgs")
    yy, xx = np.mgrid[0:64, 0:64]
    for i in range(8):
        rng = np.random.default_rng(i)
        tex = torch.nn.functional.interpolate(torch.from_numpy(rng.random((1, 1, 16, 16))), size=(64, 64),
                                              mode="bicubic", align_corners=False)[0, 0].numpy()
        img = np.where(np.hypot(yy - 32, xx - 32) < 26, 0.3 + 0.6 * np.clip(tex, 0, 1), 0.0)
        Image.fromarray(np.round(img * 255).astype(np.uint8)).save(root / f"{i}.png")
    return root


def tiny_args(data, out, *extra):
    return ["--data", str(data), "--out", str(out), "--scale", "2", "--patch-size", "32", "--batch-size", "4",
            "--generator-kwargs", json.dumps(GENERATORS["srresnet_lite"].TINY),
            "--discriminator-kwargs", json.dumps(DISCRIMINATORS["pooled"].TINY),
            "--stage1-steps", "4", "--stage2-steps", "4", "--log-every", "2", "--val-every", "4", "--ckpt-every", "100",
            "--set", "warmup_steps=2", "--set", "data.val_crop=48", "--set", "data.val_fraction=0.25",
            "--set", "degradation.p_noise=0.5", "--set", "degradation.p_blur=0.5", "--num-threads", "1", *extra]


def state(run: Path) -> dict:
    return torch.load(run / train.CKPT, map_location="cpu", weights_only=True)


def test_two_stage_run_writes_logs_checkpoint_and_weights_cards(images, tmp_path):
    out = tmp_path / "run"
    assert train.main(tiny_args(images, out)) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["stage1_steps"] == 4 and cfg["degradation"]["scale"] == 2 and cfg["data"]["sources"] == [str(images)]
    rows = list(csv.DictReader(open(out / "log.csv")))
    assert [int(r["step"]) for r in rows] == [2, 4, 6, 8]
    assert rows[-1]["loss_adv"] and rows[-1]["loss_d"] and not rows[0]["loss_adv"]
    assert all(0 <= float(r["deg_kspace"]) <= 1 and 0 <= float(r["deg_noise"]) <= 1 for r in rows)
    val = list(csv.DictReader(open(out / "val.csv")))
    assert {r["kind"] for r in val} == {"bicubic", "kspace"} and {int(r["step"]) for r in val} == {4, 8}
    assert any((out / "tb").iterdir())
    ck = state(out)
    assert ck["step"] == 8 and ck["config"] == cfg
    for kind in ("fidelity", "gan"):
        model, card = load_weights(out / f"brainsr-x2-{kind}.safetensors")
        assert card["arch"] == "srresnet_lite" and card["kind"] == kind and card["scale"] == 2
        assert card["kwargs"] == {**GENERATORS["srresnet_lite"].TINY, "scale": 2}
        assert card["data"]["val_items"] == 2 and "TCGA-DU-7294" in card["data"]["excluded"]
        assert card["degradation"]["p_noise"] == 0.5
        assert set(card["metrics"]["validation"]) == {"bicubic", "kspace"}
        assert card["normalisation"]["p_high"] == 99.5
    # the best stage-1 validation is kept too: exported at a validated step, its card says which
    val_gain = {}
    for r in val:
        if int(r["step"]) <= 4:
            val_gain.setdefault(int(r["step"]), []).append(float(r["gain_db"]))
    best_step = max(val_gain, key=lambda k: sum(val_gain[k]) / len(val_gain[k]))
    _, best = load_weights(out / "brainsr-x2-fidelity-best.safetensors")
    assert best["kind"] == "fidelity-best" and best["metrics"]["validated_at_step"] == best_step
    assert json.loads(ck["best"])["step"] == best_step
    # the exported gan weights are the final EMA generator
    ema = {k[len("module."):]: v for k, v in ck["ema"].items() if k.startswith("module.")}
    model, _ = load_weights(out / "brainsr-x2-gan.safetensors")
    for k, v in model.state_dict().items():
        assert torch.equal(v, ema[k])
    # and training moved the generator away from its bicubic start
    assert ck["G"]["tail.weight"].abs().sum() > 0


def test_resume_is_exact_across_the_stage_boundary(images, tmp_path):
    full, parts = tmp_path / "full", tmp_path / "parts"
    assert train.main(tiny_args(images, full)) == 0
    assert train.main(tiny_args(images, parts, "--stop-after", "3")) == 0
    assert state(parts)["step"] == 3
    assert not (parts / "brainsr-x2-gan.safetensors").exists()
    assert train.main(["--out", str(parts), "--resume", "--stop-after", "3"]) == 0  # to step 6, inside stage 2
    assert state(parts)["step"] == 6
    assert train.main(["--out", str(parts), "--resume"]) == 0
    a, b = state(full), state(parts)
    assert b["step"] == 8
    for part in ("G", "D", "ema"):
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), f"{part}.{k} differs after resume"
    assert a["opt_g"]["state"][0]["exp_avg"].equal(b["opt_g"]["state"][0]["exp_avg"])
    steps = [int(r["step"]) for r in csv.DictReader(open(parts / "log.csv"))]
    assert steps == [int(r["step"]) for r in csv.DictReader(open(full / "log.csv"))]
    ga, _ = load_weights(full / "brainsr-x2-gan.safetensors")
    gb, _ = load_weights(parts / "brainsr-x2-gan.safetensors")
    assert all(torch.equal(x, y) for x, y in zip(ga.state_dict().values(), gb.state_dict().values()))


def test_mse_pixel_loss_is_what_the_card_and_log_say(images, tmp_path):
    run = tmp_path / "mse"
    assert train.main(tiny_args(images, run, "--stage2-steps", "0", "--set", "pixel_loss=\"mse\"")) == 0
    _, card = load_weights(run / "brainsr-x2-fidelity.safetensors")
    assert card["training"]["losses"]["pixel"] == "mse"
    rows = list(csv.DictReader(open(run / "log.csv")))
    # an MSE of normalised errors well below 1 is far smaller than their L1
    l1 = list(csv.DictReader(open(_l1_run(images, tmp_path) / "log.csv")))
    assert float(rows[0]["loss_pixel"]) < 0.5 * float(l1[0]["loss_pixel"])


def _l1_run(images, tmp_path):
    run = tmp_path / "l1"
    assert train.main(tiny_args(images, run, "--stage2-steps", "0")) == 0
    return run


def test_user_errors_exit_2_with_a_message(images, tmp_path, capsys):
    assert train.main(["--out", str(tmp_path / "none"), "--resume"]) == 2
    assert "no training checkpoint" in capsys.readouterr().err
    assert train.main(["--data", str(images), "--set", "nonsense=1"]) == 2
    assert "unknown config keys: nonsense" in capsys.readouterr().err
    assert train.main(["--data", str(images), "--patch-size", "33"]) == 2
    assert train.main(["--data", str(tmp_path / "missing"), "--out", str(tmp_path / "r")]) == 2
    assert "does not exist" in capsys.readouterr().err
    out = tmp_path / "done"
    assert train.main(tiny_args(images, out, "--stage2-steps", "0", "--stage1-steps", "1")) == 0
    assert train.main(tiny_args(images, out)) == 2
    assert "--resume" in capsys.readouterr().err


def test_time_budget_stops_cleanly_with_checkpoint_and_partial_weights(images, tmp_path):
    out = tmp_path / "budget"
    assert train.main(tiny_args(images, out, "--time-budget", "0.00001")) == 0
    ck = state(out)
    assert ck["step"] == 1
    _, card = load_weights(out / "brainsr-x2-fidelity-partial.safetensors")
    assert card["training"]["steps"] == 1


def test_gan_stopped_early_still_says_it_was_adversarial(images, tmp_path):
    out = tmp_path / "gan-budget"
    assert train.main(tiny_args(images, out, "--stage1-steps", "0", "--time-budget", "0.00001")) == 0
    _, card = load_weights(out / "brainsr-x2-gan-partial.safetensors")
    losses = card["training"]["losses"]
    assert card["training"]["steps"] == 1
    assert losses["adversarial"] == "relativistic" and losses["content"] != "none"


def test_lr_schedule_warms_up_decays_and_restarts_for_stage2():
    cfg = train.TrainConfig(stage1_steps=100, stage2_steps=50, warmup_steps=10, lr_min_ratio=0.1, stage2_lr_ratio=0.5)
    f = [train.lr_factor(cfg, s) for s in range(150)]
    assert f[0] == pytest.approx(0.1 * (0.1 + 0.9 * 0.5 * (1 + np.cos(0))))
    assert max(f[:100]) == pytest.approx(f[9]) and f[99] == pytest.approx(0.1, abs=0.01)
    assert f[100] < 0.5 * 0.2 and f[109] == pytest.approx(0.5 * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * 9 / 50))))
    assert train.lr_factor_d(cfg, 0) == 1.0 and train.lr_factor_d(cfg, 50) == pytest.approx(0.1)


def test_seed_generator_and_discriminator_train(images, tmp_path):
    out = tmp_path / "seed"
    args = tiny_args(images, out, "--generator", "seed", "--discriminator", "seed", "--stage1-steps", "2",
                     "--stage2-steps", "2", "--adversarial", "bce", "--content", "gradient")
    args[args.index("--generator-kwargs") + 1] = json.dumps(GENERATORS["seed"].TINY)
    args[args.index("--discriminator-kwargs") + 1] = json.dumps({**DISCRIMINATORS["seed"].TINY, "patch_size": 32})
    assert train.main(args) == 0
    model, card = load_weights(out / "brainsr-x2-gan.safetensors")
    assert card["arch"] == "seed" and model(torch.rand(1, 1, 8, 8)).shape == (1, 1, 16, 16)


@pytest.mark.skipif(not KAGGLE.exists(), reason=f"real data not found at {KAGGLE}")
def test_stage1_on_real_kaggle_images(tmp_path):
    out = tmp_path / "kaggle"
    args = tiny_args(KAGGLE, out, "--stage2-steps", "0", "--patch-size", "64", "--set", "data.max_items_per_source=8")
    assert train.main(args) == 0
    _, card = load_weights(out / "brainsr-x2-fidelity.safetensors")
    assert card["data"]["train_items"] == [6] and card["data"]["val_items"] == 2
    v = card["metrics"]["validation"]["bicubic"]
    assert v["n"] == 2 and 20 < v["psnr_bicubic"] < 60


def test_ema_warms_up_then_follows_the_decay():
    from torch.optim.swa_utils import AveragedModel
    model = torch.nn.Linear(3, 1)
    ema = AveragedModel(model, multi_avg_fn=train.ema_update(0.999), use_buffers=True)
    ema.update_parameters(model)  # first update copies
    target = model.weight.detach().clone() + 1.0
    with torch.no_grad():
        model.weight.copy_(target)
    for _ in range(100):
        ema.update_parameters(model)
    # a fixed 0.999 would still be ~90 % the old weights after 100 steps; the warm-up has nearly caught up
    assert (ema.module.weight - target).abs().max() < 0.12


def test_sigterm_stops_at_a_step_boundary_with_checkpoint_and_weights(images, tmp_path):
    import subprocess
    import sys
    import time
    out = tmp_path / "sig"
    args = tiny_args(images, out, "--stage1-steps", "100000", "--stage2-steps", "0", "--log-every", "1")
    p = subprocess.Popen([sys.executable, "-m", "srgan.training.train", *args], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 120
    while not (out / "log.csv").exists() and time.time() < deadline and p.poll() is None:
        time.sleep(0.2)
    p.terminate()
    stdout, stderr = p.communicate(timeout=120)
    assert p.returncode == 0, stderr[-2000:]
    assert "stopped by SIGTERM" in stdout
    step = state(out)["step"]
    assert 1 <= step < 100000
    _, card = load_weights(out / "brainsr-x2-fidelity-partial.safetensors")
    assert card["training"]["steps"] == step and card["metrics"]["validated_at_step"] == step


def test_init_from_x2_weights_starts_a_x4_model(images, tmp_path, capsys):
    x2 = tmp_path / "x2"
    assert train.main(tiny_args(images, x2, "--stage1-steps", "2", "--stage2-steps", "0")) == 0
    weights = x2 / "brainsr-x2-fidelity.safetensors"
    x4 = tmp_path / "x4"
    args = tiny_args(images, x4, "--scale", "4", "--stage1-steps", "1", "--stage2-steps", "0", "--lr", "0",
                     "--init", str(weights))
    assert train.main(args) == 0
    said = capsys.readouterr().out
    src, _ = load_weights(weights)
    own = state(x4)["G"]
    n_same = sum(1 for k, v in src.state_dict().items() if own[k].shape == v.shape)
    assert f"initialised {n_same}/{len(own)} generator tensors" in said and n_same == len(own) - 2  # all but the tail
    assert torch.equal(own["head.weight"], src.state_dict()["head.weight"])  # lr 0: still the x2 trunk
    bad = tiny_args(images, tmp_path / "bad", "--generator", "seed", "--init", str(weights))
    bad[bad.index("--generator-kwargs") + 1] = json.dumps(GENERATORS["seed"].TINY)
    assert train.main(bad) == 2
    assert "no tensor fits" in capsys.readouterr().err


def test_distillation_learns_the_teachers_output_and_the_card_names_the_teacher(images, tmp_path, capsys):
    """A student started from its teacher at lr 0 matches it exactly (same LR, same kind and base told), so the
    distillation loss is zero while the pixel loss is not."""
    kind = {**GENERATORS["srresnet_lite"].TINY, "kind_input": True}
    teach = tmp_path / "teacher"
    args = tiny_args(images, teach, "--stage1-steps", "2", "--stage2-steps", "0")
    args[args.index("--generator-kwargs") + 1] = json.dumps(kind)
    assert train.main(args) == 0
    weights = teach / "brainsr-x2-fidelity.safetensors"
    same = tmp_path / "same"
    args = tiny_args(images, same, "--stage1-steps", "2", "--stage2-steps", "0", "--lr", "0", "--init", str(weights),
                     "--teacher", str(weights), "--w-teacher", "0.7")
    args[args.index("--generator-kwargs") + 1] = json.dumps(kind)
    assert train.main(args) == 0
    rows = list(csv.DictReader(open(same / "log.csv")))
    assert float(rows[-1]["loss_teacher"]) < 1e-7 < float(rows[-1]["loss_pixel"])
    _, card = load_weights(same / "brainsr-x2-fidelity.safetensors")
    t = card["training"]["teacher"]
    assert t["file"] == weights.name and t["w_teacher"] == 0.7 and len(t["sha256"]) == 64
    bad = tiny_args(images, tmp_path / "bad", "--scale", "4", "--teacher", str(weights))
    assert train.main(bad) == 2
    assert "teacher is a ×2 model; this run trains ×4" in capsys.readouterr().err


def test_a_deeper_trunk_started_from_shallower_weights_computes_what_they_compute(images, tmp_path):
    """Residual blocks the init weights lack start as the identity (net2deeper), the rest is copied."""
    shallow = tmp_path / "shallow"
    assert train.main(tiny_args(images, shallow, "--stage1-steps", "2", "--stage2-steps", "0")) == 0
    weights = shallow / "brainsr-x2-fidelity.safetensors"
    deep = tmp_path / "deep"
    args = tiny_args(images, deep, "--stage1-steps", "1", "--stage2-steps", "0", "--lr", "0", "--init", str(weights))
    args[args.index("--generator-kwargs") + 1] = json.dumps({**GENERATORS["srresnet_lite"].TINY, "num_blocks": 3})
    assert train.main(args) == 0
    src, _ = load_weights(weights)
    new, _ = load_weights(deep / "brainsr-x2-fidelity.safetensors")
    assert len(new.blocks) == 3 and len(src.blocks) == 1
    assert not new.blocks[2].conv2.weight.any() and new.blocks[2].conv1.weight.any()
    x = torch.rand(1, 1, 20, 18)
    with torch.no_grad():
        assert torch.allclose(new.eval()(x), src.eval()(x), atol=1e-6)


def test_kind_input_fits_its_detector_and_starts_from_weights_without_one(images, tmp_path, capsys):
    """A generator with the LR-kind plane, started from weights without it, computes what they compute (the new
    input channel starts at zero), fits its detector before training and says how well it does in the card."""
    plain = tmp_path / "plain"
    assert train.main(tiny_args(images, plain, "--stage1-steps", "2", "--stage2-steps", "0")) == 0
    weights = plain / "brainsr-x2-fidelity.safetensors"
    kind = tmp_path / "kind"
    args = tiny_args(images, kind, "--stage1-steps", "1", "--stage2-steps", "0", "--lr", "0", "--init", str(weights))
    args[args.index("--generator-kwargs") + 1] = json.dumps({**GENERATORS["srresnet_lite"].TINY, "kind_input": True})
    assert train.main(args) == 0
    assert "LR-kind detector" in capsys.readouterr().out
    src, _ = load_weights(weights)
    new, card = load_weights(kind / "brainsr-x2-fidelity.safetensors")
    assert bool(new.kind.fitted) and 0 <= card["kind_detector"]["train_accuracy"] <= 1
    assert card["kwargs"]["kind_input"] is True
    head = new.state_dict()["head.weight"]
    assert head.shape[1] == 2 and torch.equal(head[:, :1], src.state_dict()["head.weight"])
    assert not head[:, 1:].any()
    x = torch.rand(1, 1, 20, 18)
    with torch.no_grad():
        assert torch.allclose(new.eval()(x), src.eval()(x), atol=1e-6)  # lr 0: the plain model's function
    # a run started from these weights keeps their detector (no refit) and its card says where it was fitted
    again = tmp_path / "again"
    args[args.index("--out") + 1] = str(again)
    args[args.index("--init") + 1] = str(kind / "brainsr-x2-fidelity.safetensors")
    assert train.main(args) == 0
    newer, card2 = load_weights(again / "brainsr-x2-fidelity.safetensors")
    assert torch.equal(newer.kind.weight, new.kind.weight)
    assert card2["kind_detector"]["train_accuracy"] == card["kind_detector"]["train_accuracy"]
    assert card2["kind_detector"]["fitted_in"] == card["name"]


def test_a_reparam_run_from_plain_weights_exports_a_plain_model(images, tmp_path, capsys):
    """``reparam: true`` started from plain weights: at lr 0 the exported (fused) weights compute what the plain
    ones do; after real steps the branches have grown and the export is still the EMA model, fused."""
    from srgan.models.reparam import RepConv
    from srgan.models.srresnet_lite import SRResNetLite

    plain = tmp_path / "plain"
    assert train.main(tiny_args(images, plain, "--stage1-steps", "2", "--stage2-steps", "0")) == 0
    weights = plain / "brainsr-x2-fidelity.safetensors"
    kw = {**GENERATORS["srresnet_lite"].TINY, "kind_input": True, "reparam": True}
    src, _ = load_weights(weights)
    x = torch.rand(1, 1, 20, 18)
    for lr in ("0", "1e-2"):
        run = tmp_path / f"rep-{lr}"
        args = tiny_args(images, run, "--stage1-steps", "2", "--stage2-steps", "0", "--lr", lr, "--init", str(weights))
        args[args.index("--generator-kwargs") + 1] = json.dumps(kw)
        assert train.main(args) == 0
        new, card = load_weights(run / "brainsr-x2-fidelity.safetensors")
        assert type(new) is SRResNetLite and not new.reparam and "reparam" not in card["kwargs"]
        assert card["training"]["reparam"].startswith("fused from RepConv")
        ema = SRResNetLite(**{**kw, "scale": 2})
        ema.load_state_dict({k.removeprefix("module."): v for k, v in state(run)["ema"].items() if k != "n_averaged"})
        for m in ema.modules():
            if isinstance(m, RepConv):
                m.explicit = True
        with torch.no_grad():
            assert torch.allclose(new.eval()(x), ema.eval()(x), atol=1e-5)
            if lr == "0":
                assert torch.allclose(new(x), src.eval()(x), atol=1e-5)
        grown = state(run)["G"]["blocks.0.conv1.expand3x3.weight"].abs().amax()
        assert (grown > 0) == (lr != "0")

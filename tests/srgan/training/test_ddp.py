"""DDP: two CPU processes (gloo, launched by torchrun) over a global batch of 4 end where one process over the
same global batch ends: 3 L1 steps then an adversarial step with the (batch-coupled) relativistic loss.

Tolerances, and why: gloo sums gradients in another float32 order than one process does, so gradients agree to
about 1e-8, not bitwise. Generator and EMA weights must agree within 1e-5. The discriminator *gradient*
(Adam's first moment after its one step) must agree within 1e-7. Discriminator *weights* may differ by up to
2·lr_d: a few of its biases have an exactly zero true gradient under the relativistic loss (a constant shift of
all logits cancels), and Adam's first step turns the float noise there into ±lr steps; later D gradients are
taken at those slightly different weights, so only the first is compared. With BCE every weight agrees within
1e-7 (checked by hand).
"""
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from srgan.models import DISCRIMINATORS, GENERATORS
from srgan.training import train

LR_D = 1e-4
D_STEPS = 1


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp_imgs")
    yy, xx = np.mgrid[0:64, 0:64]
    for i in range(6):
        rng = np.random.default_rng(i)
        img = np.where(np.hypot(yy - 32, xx - 32) < 26, 0.3 + 0.6 * rng.random((64, 64)), 0.0)
        Image.fromarray(np.round(img * 255).astype(np.uint8)).save(root / f"{i}.png")
    return root


def args(data, out):
    return ["--data", str(data), "--out", str(out), "--scale", "2", "--patch-size", "32", "--batch-size", "4",
            "--generator-kwargs", json.dumps(GENERATORS["srresnet_lite"].TINY),
            "--discriminator-kwargs", json.dumps(DISCRIMINATORS["pooled"].TINY),
            "--stage1-steps", "3", "--stage2-steps", str(D_STEPS), "--adversarial", "relativistic",
            "--lr-d", str(LR_D), "--log-every", "1", "--val-every", "100", "--ckpt-every", "100",
            "--set", "warmup_steps=1", "--set", "data.val_fraction=0.2", "--set", "degradation.p_noise=0.5",
            "--device", "cpu", "--num-threads", "1"]


def max_diff(a: dict, b: dict) -> float:
    return max((a[k] - v).abs().max().item() for k, v in b.items() if v.is_floating_point())


def test_two_gloo_ranks_match_one_process(images, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[3])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "srgan.train", *args(images, tmp_path / "ddp")]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "(2 processes)" in p.stdout, p.stdout[-2000:] + p.stderr[-2000:]
    torch.set_num_threads(1)
    assert train.main(args(images, tmp_path / "single")) == 0
    a = torch.load(tmp_path / "ddp" / train.CKPT, weights_only=True)
    b = torch.load(tmp_path / "single" / train.CKPT, weights_only=True)
    assert a["step"] == b["step"] == 3 + D_STEPS
    # the differences in the messages, so a failure says by how much
    assert max_diff(a["G"], b["G"]) < 1e-5, max_diff(a["G"], b["G"])
    assert max_diff(a["ema"], b["ema"]) < 1e-5, max_diff(a["ema"], b["ema"])
    for i, st in b["opt_d"]["state"].items():
        assert (a["opt_d"]["state"][i]["exp_avg"] - st["exp_avg"]).abs().max() < 1e-7
    assert max_diff(a["D"], b["D"]) <= 2 * LR_D * D_STEPS * 1.01
    # only rank 0 writes; logged losses are global-batch means, equal to the single process's
    ddp_log = list(csv.DictReader(open(tmp_path / "ddp" / "log.csv")))
    one_log = list(csv.DictReader(open(tmp_path / "single" / "log.csv")))
    assert len(ddp_log) == len(one_log) == 3 + D_STEPS
    for x, y in zip(ddp_log, one_log):
        for k in ("loss_pixel", "loss_adv", "loss_d", "deg_kspace"):
            if y[k]:
                assert float(x[k]) == pytest.approx(float(y[k]), abs=1e-5), k

"""Checkpoints: a run saved in the pre-refactor format (``brainsr-train-1``, the committed fixture) resumes, and
ends where a run that never stopped ends."""
import shutil
import sys
from pathlib import Path

import torch

from srgan.training import train

sys.path.insert(0, str(Path(__file__).parent / "fixtures"))
import make_pre_refactor_ckpt as fixture  # noqa: E402


def test_a_pre_refactor_checkpoint_resumes_where_an_unbroken_run_ends(tmp_path):
    data = fixture.images(tmp_path / "imgs")
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copyfile(fixture.FIXTURE, resumed / "ckpt.pt")
    old = torch.load(fixture.FIXTURE, map_location="cpu", weights_only=True)
    assert old["format"] == "brainsr-train-1" and old["step"] == fixture.STOP
    assert train.main(["--out", str(resumed), "--resume", "--data", str(data)]) == 0
    full = tmp_path / "full"
    assert train.main(["--data", str(data), "--out", str(full), *fixture.ARGS]) == 0
    a = torch.load(full / "ckpt.pt", map_location="cpu", weights_only=True)
    b = torch.load(resumed / "ckpt.pt", map_location="cpu", weights_only=True)
    assert a["step"] == b["step"] == 6
    assert b["kind_info"] == old["kind_info"]  # the detector fitted before the stop is kept, not refitted
    # allclose, not equal: the fixture's first steps ran on whichever CPU made it, whose float kernels may differ
    for part in ("G", "D", "ema"):
        for k, v in a[part].items():
            assert torch.allclose(v.float(), b[part][k].float(), atol=1e-5), f"{part}.{k} differs after resume"

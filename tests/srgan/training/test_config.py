"""``TrainConfig`` and the ``srgan train`` command line generated from it."""
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from srgan.training.config import TrainConfig, build_parser, config_from_args

REPO = Path(__file__).resolve().parents[3]


def test_config_file_flags_and_set_precedence(tmp_path):
    base = TrainConfig(stage1_steps=7, lr=1e-3).as_dict()
    (tmp_path / "c.json").write_text(json.dumps(base))
    args = build_parser().parse_args(["--config", str(tmp_path / "c.json"), "--lr", "5e-4", "--data", "x",
                                      "--set", "degradation.p_kspace=1.0", "--set", "data.slice_axes=[2]"])
    cfg = config_from_args(args)
    assert cfg.stage1_steps == 7 and cfg.lr == 5e-4
    assert cfg.degradation.p_kspace == 1.0 and cfg.data.slice_axes == [2] and cfg.data.sources == ["x"]
    assert TrainConfig.from_dict(cfg.as_dict()) == cfg
    with pytest.raises(ValueError, match="pixel_loss"):
        TrainConfig(pixel_loss="l3")


def test_every_field_has_a_flag_and_unset_flags_leave_the_defaults():
    ap = build_parser()
    dests = {a.dest for a in ap._actions}
    assert {f.name for f in dataclasses.fields(TrainConfig)} - dests == {"degradation"}  # nested: --set only
    assert config_from_args(ap.parse_args([])) == TrainConfig()


def test_a_command_recorded_in_a_model_card_still_parses():
    argv = ["--data", "A", "B", "C", "--set", "data.source_weights=[0.95,0.04,0.01]", "--set",
            "data.min_foreground=0.15", "--set", "degradation.p_kspace=0.5", "--batch-size", "16", "--num-threads",
            "1", "--lr", "1e-3", "--scale", "4", "--generator-kwargs", '{"channels":32,"num_blocks":6}',
            "--patch-size", "128", "--stage1-steps", "14000", "--val-every", "2000", "--time-budget", "80",
            "--init", "W.safetensors", "--out", "runs/f4", "--stage2-steps", "0"]
    cfg = config_from_args(build_parser().parse_args(argv))
    assert cfg.data.sources == ["A", "B", "C"] and cfg.data.source_weights == [0.95, 0.04, 0.01]
    assert cfg.data.min_foreground == 0.15 and cfg.degradation.p_kspace == 0.5 and cfg.degradation.scale == 4
    assert (cfg.batch_size, cfg.num_threads, cfg.lr, cfg.scale, cfg.patch_size) == (16, 1, 1e-3, 4, 128)
    assert cfg.generator_kwargs == {"channels": 32, "num_blocks": 6}
    assert (cfg.stage1_steps, cfg.stage2_steps, cfg.val_every) == (14000, 0, 2000)
    assert (cfg.time_budget_min, cfg.init_from, cfg.out) == (80.0, "W.safetensors", "runs/f4")
    assert build_parser().parse_args(["--resume"]).resume


def test_help_gives_each_default_once_from_the_dataclass_and_imports_no_torch():
    text = " ".join(build_parser().format_help().split())
    assert "default 96" in text and "default 2000" in text and "default srresnet_lite" in text
    code = ("import sys; from srgan.training.train import build_parser; build_parser().format_help(); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, env={"PYTHONPATH": str(REPO)})

"""``TrainConfig``, everything a training run depends on, and the ``srgan train`` command line generated from it.

Every field is a flag (``--patch-size`` for ``patch_size``; a few keep older names given in the field's metadata,
e.g. ``--init`` for ``init_from``); its help text is the field's ``help`` metadata followed by the field's default,
so no default is written twice. Nested fields (``data.*``, ``degradation.*``) are set with ``--set KEY=VALUE``;
``--data`` sets ``data.sources``. Precedence: defaults < ``--config`` (or the checkpoint, on ``--resume``) < flags.

Importing this module does not import torch (``srgan train --help`` answers at once): the nested configs come
from modules that do, so they are imported when a ``TrainConfig`` is built.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from srgan.errors import InputError

if TYPE_CHECKING:
    from srgan.degrade import DegradationConfig
    from srgan.training.data import DataConfig

DEVICES = ("auto", "cpu", "cuda", "mps")


def _data_config(**kw: Any) -> DataConfig:
    from srgan.training.data import DataConfig  # imports torch: kept out of `srgan train --help`

    return DataConfig(**kw)


def _degradation_config(**kw: Any) -> DegradationConfig:
    from srgan.degrade import DegradationConfig

    return DegradationConfig(**kw)


def _help(text: str = "", **flag: Any) -> dict:
    """Field metadata: the flag's help text and any argparse keywords that differ from the generated ones
    (``flag`` for another name, ``metavar``, ``choices``)."""
    return {"help": text, **flag}


@dataclass
class TrainConfig:
    """Everything a run depends on; saved as ``config.json`` in the run folder and inside every checkpoint.

    ``batch_size`` is the global batch (split across DDP ranks); ``patch_size`` is the HR patch side in px.
    Learning rates follow a linear warm-up then cosine decay to ``lr_min_ratio`` within each stage;
    stage 2 starts the generator at ``lr * stage2_lr_ratio``.
    """

    generator: str = field(default="srresnet_lite", metadata=_help("generator name (srgan.models.GENERATORS)"))
    generator_kwargs: dict = field(
        default_factory=dict, metadata=_help('e.g. \'{"channels": 48, "num_blocks": 12}\'', metavar="JSON")
    )
    discriminator: str = field(default="pooled", metadata=_help("discriminator name (srgan.models.DISCRIMINATORS)"))
    discriminator_kwargs: dict = field(default_factory=dict, metadata=_help(metavar="JSON"))
    scale: int = field(default=2, metadata=_help(choices=(2, 3, 4)))
    data: DataConfig = field(
        default_factory=_data_config,
        metadata=_help(
            "HR sources (data.sources): image folders, NIfTI files/folders, DICOM folders", nargs="+", metavar="PATH"
        ),
    )
    degradation: DegradationConfig = field(default_factory=_degradation_config)
    patch_size: int = field(default=96, metadata=_help("HR patch side in px (multiple of the scale)"))
    batch_size: int = field(default=16, metadata=_help("global batch, split across DDP ranks"))
    lr: float = field(default=2e-4, metadata=_help("generator learning rate"))
    lr_d: float = field(default=1e-4, metadata=_help("discriminator learning rate"))
    stage2_lr_ratio: float = field(default=0.5, metadata=_help("stage 2 starts the generator at lr times this"))
    lr_min_ratio: float = field(default=0.05, metadata=_help("cosine decay ends at lr times this, in each stage"))
    warmup_steps: int = field(default=100, metadata=_help("linear lr warm-up steps at the start of each stage"))
    grad_clip: float = field(default=1.0, metadata=_help("generator gradient norm clip (0 = none)"))
    stage1_steps: int = field(default=2000, metadata=_help("L1 pre-training steps"))
    stage2_steps: int = field(default=0, metadata=_help("adversarial steps (0: fidelity model only)"))
    # "mse" fine-tunes for PSNR, which is a mean-squared error; L1 trains better from scratch (sharper, steadier)
    pixel_loss: str = field(default="l1", metadata=_help("pixel loss", choices=("l1", "mse")))
    w_pixel: float = field(default=1.0, metadata=_help("weight of the pixel loss"))
    w_content: float = field(default=0.1, metadata=_help("weight of the content loss (stage 2)"))
    w_adv: float = field(default=5e-3, metadata=_help("weight of the adversarial loss (stage 2)"))
    content: str = field(
        default="gradient+fft", metadata=_help("content loss: gradient, fft, vgg, none or a sum like gradient+fft")
    )
    adversarial: str = field(default="relativistic", metadata=_help(choices=("bce", "relativistic")))
    vgg: str | None = field(
        default=None, metadata=_help("torchvision-layout VGG19 state dict for --content vgg", metavar="PATH")
    )
    ema_decay: float = field(default=0.999, metadata=_help("decay of the generator's EMA (validated and exported)"))
    seed: int = 0
    device: str = field(default="auto", metadata=_help(choices=DEVICES))
    out: str = field(
        default="runs/train",
        metadata=_help("run folder: config.json, log.csv, val.csv, tb/, ckpt.pt, exported weights"),
    )
    name: str = field(default="", metadata=_help("weights name prefix (empty: brainsr-x<scale>)"))
    log_every: int = 10
    val_every: int = 250
    ckpt_every: int = 250
    init_from: str | None = field(
        default=None,
        metadata=_help("start the generator from saved weights (.safetensors)", flag="--init", metavar="WEIGHTS"),
    )
    teacher: str | None = field(
        default=None,
        metadata=_help(
            "distil from this trained generator (.safetensors, same scale): stage 1 adds w_teacher × the pixel loss "
            "between the student's output and the teacher's on the same LR patch",
            metavar="WEIGHTS",
        ),
    )
    w_teacher: float = field(default=0.5, metadata=_help("weight of the distillation loss (with --teacher)"))
    time_budget_min: float = field(
        default=0.0,
        metadata=_help(
            "stop cleanly (checkpoint + export) after this many minutes (0 = no limit)",
            flag="--time-budget",
            metavar="MIN",
        ),
    )
    stop_after: int = field(
        default=0, metadata=_help("stop cleanly after N steps of this invocation (0 = no limit)", metavar="N")
    )
    num_threads: int = field(default=0, metadata=_help("torch CPU threads (0 = torch's default)"))

    def __post_init__(self) -> None:
        if isinstance(self.data, dict):
            self.data = _data_config(**self.data)
        if isinstance(self.degradation, dict):
            self.degradation = _degradation_config(**self.degradation)
        self.degradation.scale = self.scale
        self.degradation.validate()
        if self.patch_size % self.scale:
            raise ValueError(f"patch_size {self.patch_size} must be a multiple of scale {self.scale}")
        if self.pixel_loss not in ("l1", "mse"):
            raise ValueError(f"pixel_loss must be l1 or mse, not {self.pixel_loss!r}")
        if self.device not in DEVICES:
            raise ValueError(f"device must be auto, cpu, cuda or mps, not {self.device!r}")

    @property
    def total_steps(self) -> int:
        return self.stage1_steps + self.stage2_steps

    @property
    def weights_name(self) -> str:
        return self.name or f"brainsr-x{self.scale}"

    def as_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown config keys: {', '.join(unknown)}")
        return cls(**d)


# ---------------------------------------------------------------- the command line

# argparse type per field annotation (annotations are strings here: ``from __future__ import annotations``)
_TYPES: dict[str, Any] = {"int": int, "float": float, "str": str, "str | None": str, "dict": json.loads}
_NOT_FLAGS = ("degradation",)  # nested: --set degradation.KEY=VALUE


def _default_text(f: dataclasses.Field) -> str:
    if f.default is dataclasses.MISSING or f.default in (None, ""):
        return ""
    return f"default {f.default}"


def build_parser(description: str | None = None) -> argparse.ArgumentParser:
    """``srgan train``'s parser: ``--config``, ``--resume``, one flag per ``TrainConfig`` field, ``--set``."""
    ap = argparse.ArgumentParser(
        prog="srgan train",
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Any config field, nested ones too: --set degradation.p_noise=0.5 "
        "--set data.slice_axes=[2]. Precedence: defaults < --config < flags.",
    )
    ap.add_argument("--config", help="JSON file of TrainConfig fields (e.g. a run's config.json)")
    ap.add_argument(
        "--resume", action="store_true", help="continue the run in --out from its checkpoint (flags given override)"
    )
    for f in dataclasses.fields(TrainConfig):
        if f.name in _NOT_FLAGS:
            continue
        meta = dict(f.metadata)
        flag = meta.pop("flag", "--" + f.name.replace("_", "-"))
        text = "; ".join(t for t in (meta.pop("help", ""), _default_text(f)) if t)
        kw: dict[str, Any] = {"dest": f.name, "help": text or None, **meta}
        if "nargs" not in kw:
            kw["type"] = _TYPES[str(f.type)]
        ap.add_argument(flag, **kw)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="set any field, JSON value")
    return ap


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def config_from_args(args: argparse.Namespace, base: dict | None = None) -> TrainConfig:
    """``base`` (a checkpoint's config on ``--resume``) < ``--config`` < flags < ``--set``."""
    d = dict(base or {})
    if args.config:
        try:
            d.update(json.loads(Path(args.config).read_text()))
        except (OSError, json.JSONDecodeError) as e:
            raise InputError(args.config, f"not a readable JSON config ({e})") from None
    flat = {k: v for k, v in vars(args).items() if v is not None and k not in ("config", "resume", "set", "data")}
    d.update(flat)
    if args.data:
        d.setdefault("data", {})
        d["data"] = {**(d["data"] if isinstance(d["data"], dict) else asdict(d["data"])), "sources": args.data}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise InputError(None, f"--set needs KEY=VALUE, got {item!r}")
        parts = key.split(".")
        target = d
        for p in parts[:-1]:
            target = target.setdefault(p, {})
        target[parts[-1]] = _parse_value(value)
    try:
        return TrainConfig.from_dict(d)
    except (TypeError, ValueError) as e:
        raise InputError(args.config, f"invalid training configuration: {e}") from None

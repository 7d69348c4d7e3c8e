"""The weights a run exports: its EMA generator as ``<out>/<name>-<kind>.safetensors`` with a model card.

Kinds: ``fidelity`` (end of stage 1), ``fidelity-best`` (the best stage-1 validation so far), ``gan`` (end of
stage 2), and ``fidelity-partial`` / ``gan-partial`` for a run stopped early in that stage.

A generator trained reparameterised (``srresnet_lite`` with ``reparam=True``) is saved fused
(``srgan.models.reparam.fuse_model``): its card's kwargs build the plain model, and ``training.reparam`` records
how the weights were trained, so every loader and runtime sees plain convolutions only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from srgan.training.config import TrainConfig
from srgan.training.licences import licences_for


def card(
    cfg: TrainConfig,
    kind: str,
    *,
    step: int,
    validated_at_step: int,
    metrics: dict,
    data_card: dict,
    kind_info: dict,
    world: int,
) -> dict:
    """The model card of weights of ``kind`` exported at ``step`` (``validated_at_step`` -1: not validated in this
    invocation). ``data.licences``: the licence notes of its sources (``srgan.training.licences``)."""
    adversarial = kind.startswith("gan")  # "gan" or "gan-partial" (stopped early in stage 2)
    reparam = bool(cfg.generator_kwargs.get("reparam"))  # exported fused: the card describes the plain model
    return {
        "arch": cfg.generator,
        "kwargs": {**{k: v for k, v in cfg.generator_kwargs.items() if k != "reparam"}, "scale": cfg.scale},
        "scale": cfg.scale,
        "kind": kind,
        "name": f"{cfg.weights_name}-{kind}",
        "data": {**data_card, "licences": licences_for(data_card.get("sources", []))},
        "degradation": cfg.degradation.as_dict(),
        "metrics": {
            "step": step,
            "validated_at_step": validated_at_step,
            "validation": metrics,
            "note": "PSNR in normalised units on held-out crops (data range 1)",
        },
        **({"kind_detector": kind_info} if kind_info else {}),
        "normalisation": {
            "method": "percentile",
            "p_low": 0.5,
            "p_high": 99.5,
            "fit_on": "each LR input image / slice, applied to input and inverted on output",
        },
        "training": {
            "steps": step,
            "stage1_steps": cfg.stage1_steps,
            "stage2_steps": cfg.stage2_steps,
            "ema_decay": cfg.ema_decay,
            "seed": cfg.seed,
            "patch_size": cfg.patch_size,
            "batch_size": cfg.batch_size,
            "world_size": world,
            "losses": {
                "pixel": cfg.pixel_loss,
                "content": cfg.content if adversarial else "none",
                "adversarial": cfg.adversarial if adversarial else "none",
                "w_pixel": cfg.w_pixel,
                "w_content": cfg.w_content,
                "w_adv": cfg.w_adv,
            },
            **({"reparam": "fused from RepConv branches (ECB-style)"} if reparam else {}),
            **({"teacher": _teacher(cfg)} if cfg.teacher else {}),
        },
    }


def _teacher(cfg: TrainConfig) -> dict:
    """What a distilled model learnt from: the teacher's file, sha256 and card name, and the loss weight."""
    from srgan.models.weights import read_card, sha256_file

    path = Path(str(cfg.teacher))
    return {
        "file": path.name,
        "sha256": sha256_file(path),
        "name": read_card(path).get("name"),
        "w_teacher": cfg.w_teacher,
        "loss": cfg.pixel_loss,
        "stage": 1,
    }


def export(model: Any, cfg: TrainConfig, kind: str, **card_fields: Any) -> Path:
    """Save ``model`` (the EMA generator; fused first when reparameterised) with ``card(cfg, kind, **card_fields)``
    into ``cfg.out``."""
    from srgan.models.reparam import fuse_model
    from srgan.models.srresnet_lite import SRResNetLite
    from srgan.models.weights import save_weights

    if isinstance(model, SRResNetLite) and model.reparam:
        model = fuse_model(model)
    path = save_weights(Path(cfg.out) / f"{cfg.weights_name}-{kind}", model, card(cfg, kind, **card_fields))
    print(f"exported {path}")
    return path

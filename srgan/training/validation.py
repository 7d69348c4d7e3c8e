"""Validation of a run: PSNR of the generator and of bicubic on the fixed held-out set
(``srgan.training.data.validation_set``), per LR kind, in normalised units (data range 1)."""

from __future__ import annotations

import math
from typing import Any

from srgan.evaluation.metrics import psnr


def validate(model: Any, val_set: list[dict], *, scale: int, device: Any) -> dict:
    """``{kind: {"psnr", "psnr_bicubic", "gain_db", "n"}}`` of ``model`` (the EMA generator) on ``val_set``."""
    import torch

    from srgan.degrade import bicubic_up

    if not val_set:
        return {}
    rows: dict[str, list] = {}
    with torch.no_grad():
        for v in val_set:
            extra = {k: v[key].to(device) for k, key in (("base", "base"), ("kind", "kind_p")) if key in v}
            sr = model(v["lr"].to(device), **extra).float().cpu()
            hr = v["hr"][0, 0].numpy()
            bic = bicubic_up(v["lr"], scale)
            rows.setdefault(v["kind"], []).append((_psnr(hr, sr), _psnr(hr, bic)))
    out = {}
    for kind, r in rows.items():
        m, b = (sum(x[i] for x in r) / len(r) for i in (0, 1))
        out[kind] = {"psnr": round(m, 4), "psnr_bicubic": round(b, 4), "gain_db": round(m - b, 4), "n": len(r)}
    return out


def _psnr(hr: Any, sr: Any) -> float:
    """PSNR (data range 1) of a ``(1, 1, H, W)`` tensor against ``(H, W)`` ``hr``; an exact match counts as 120 dB
    (an MSE of 1e-12), so means stay finite."""
    return min(psnr(hr, sr[0, 0].double().numpy(), 1.0), 120.0)


def mean_gain(metrics: dict) -> float:
    """Mean gain over bicubic (dB) across LR kinds; -inf without validation."""
    if not metrics:
        return -math.inf
    return sum(m["gain_db"] for m in metrics.values()) / len(metrics)


def kind_accuracy(val_set: list[dict]) -> float | None:
    """How often the LR-kind detector is right on the whole held-out slices (None without one)."""
    pairs = [(float(v["kind_p"][0]) > 0.5, v["kind"] == "kspace") for v in val_set if "kind_p" in v]
    return round(sum(a == b for a, b in pairs) / len(pairs), 4) if pairs else None

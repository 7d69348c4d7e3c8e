"""The choices a user, a model card or a training config may name, in one place, and the device they resolve to.

Qt-free and torch-free at import (the CLIs build their ``--help`` from these lists without importing torch).
"""

from __future__ import annotations

from typing import Any

SCALES = (2, 4)  # scales with bundled models
DEVICES = ("auto", "cpu", "cuda", "mps")
PROJECTIONS = ("off", "bicubic", "kspace")  # data-consistency projections
CONSISTENCY_MODES = PROJECTIONS + ("auto",)  # what may be asked for: a projection, or one chosen per acquisition
LR_DEGRADATIONS = ("bicubic", "kspace")  # how an evaluation's LR images are made from HR ones
BASELINES = ("nearest", "bicubic", "lanczos", "zerofill")  # classical interpolations models are compared with
BASELINE_LABELS = {"nearest": "nearest", "bicubic": "bicubic", "lanczos": "Lanczos", "zerofill": "zero-fill"}
RUNTIMES = ("auto", "torch", "onnxruntime", "openvino")  # where the generator runs on CPU (auto: measured)
PRECISIONS = ("fp32", "bf16")  # the generator's arithmetic (bf16 only when asked for or the card recommends it)


def resolve_device(device: str = "auto") -> Any:
    """A ``torch.device`` for one of ``DEVICES``: ``auto`` picks CUDA, then Apple MPS, then the CPU.

    Raises ``srgan.errors.InputError`` for an unknown name or an accelerator that is not there."""
    import torch

    from srgan.errors import InputError

    mps = getattr(torch.backends, "mps", None)
    has_mps = bool(mps is not None and mps.is_available())
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if has_mps else "cpu")
    if device not in DEVICES:
        raise InputError(None, f"unknown device {device!r} ({', '.join(DEVICES)})")
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError(None, "--device cuda asked for, but no CUDA GPU is available")
    if device == "mps" and not has_mps:
        raise InputError(None, "--device mps asked for, but Apple MPS is not available")
    return torch.device(device)

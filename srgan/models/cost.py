"""What one forward pass of a generator costs, counted rather than timed: multiply-accumulates per LR pixel.

:func:`count_macs` runs the model once on a given input with forward hooks on every ``nn.Conv2d`` and
``nn.Linear`` and adds up their multiply-accumulates: a convolution costs
``output elements × in_channels / groups × kh × kw``, a linear layer ``output elements × in_features``. Biases,
activations, normalisation, pixel shuffles, interpolation (the bicubic or zero-filled base of ``srresnet_lite``,
nearest upsampling of ``seed``), FFTs and other elementwise or parameter-free operations are ignored: the figure is
the convolution and matrix work, which dominates these networks. :func:`macs_per_lr_pixel` divides it by the LR
pixel count of a square ``lr_side`` input, so it does not depend on the slice size (up to the small global
parts, such as ``srresnet_lite``'s LR-kind detector).
"""

from __future__ import annotations

from typing import Any

__all__ = ["count_macs", "macs_per_lr_pixel"]


def count_macs(model: Any, *inputs: Any) -> int:
    """Multiply-accumulates of ``model(*inputs)`` in its ``nn.Conv2d`` and ``nn.Linear`` layers (no grad)."""
    return _run(model, *inputs)[0]


def _run(model: Any, *inputs: Any) -> tuple[int, Any]:
    import torch
    from torch import nn

    total = 0

    def conv_hook(module: nn.Conv2d, _inp: Any, out: torch.Tensor) -> None:
        nonlocal total
        kh, kw = module.kernel_size
        total += out.numel() * (module.in_channels // module.groups) * kh * kw

    def linear_hook(module: nn.Linear, _inp: Any, out: torch.Tensor) -> None:
        nonlocal total
        total += out.numel() * module.in_features

    handles = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    try:
        with torch.no_grad():
            out = model(*inputs)
    finally:
        for h in handles:
            h.remove()
    return total, out


def macs_per_lr_pixel(model: Any, scale: int, lr_side: int = 64) -> float:
    """Multiply-accumulates of one forward pass per LR pixel, on one smooth ``lr_side``×``lr_side`` LR slice
    (``(1, 1, lr_side, lr_side)`` on the model's device; ``scale`` is the model's, checked against its output).

    Works for every registered generator: ``srresnet_lite`` (with ``kind_input`` its LR-kind detector runs on the
    slice, as at inference) and ``seed``. The model's training mode is kept."""
    import torch

    param = next(iter(model.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    yy, xx = torch.meshgrid(torch.arange(lr_side), torch.arange(lr_side), indexing="ij")
    x = (0.5 + 0.25 * torch.sin(xx / 5.0) * torch.cos(yy / 7.0)).to(torch.float32, copy=True)[None, None].to(device)
    was_training = model.training
    model.eval()
    try:
        macs, out = _run(model, x)
    finally:
        model.train(was_training)
    if tuple(out.shape[-2:]) != (lr_side * scale, lr_side * scale):
        raise ValueError(f"model output {tuple(out.shape[-2:])} is not ×{scale} of a {lr_side}² input")
    return macs / float(lr_side * lr_side)

"""Starting a generator from weights of a related one (``srgan train --init``), keeping the function they compute
wherever the new architecture allows.

Tensors are copied where names and shapes agree. Where they differ:

- a convolution that gained input channels (the LR-kind plane of ``kind_input=True``) gets the old weights for the
  old channels and zeros for the new ones, so the new input starts ignored;
- residual blocks the weights do not have (a deeper ``srresnet_lite`` trunk) start as the identity, their last
  convolution zeroed (net2deeper), so the deeper model starts with the shallower one's function;
- anything else (e.g. the ×2 tail of weights used for a ×4 model) keeps the new model's initialisation.

A reparameterised model (``reparam=True``) started from PLAIN weights: each plain 3×3 conv's weight and bias go
into its ``RepConv``'s ``conv3x3`` branch and every other branch starts outputting zero (``RepConv.start_as_3x3``:
their last factor zeroed, the identity branch's learnt scale at 0), so the model starts with the plain model's
function and the training grows the other branches from there. Weights of a reparameterised model load into one
by name, branches and all.
"""

from __future__ import annotations

import torch
from torch import nn

from srgan.models.reparam import RepConv
from srgan.models.srresnet_lite import ResidualBlock


def _into_reparam(model: nn.Module, source: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], set[str]]:
    """``source`` with a plain conv's ``<name>.weight``/``.bias`` renamed to ``<name>.conv3x3.*`` wherever
    ``model`` has a ``RepConv`` at ``<name>``, and the names of those ``RepConv``s."""
    reps = {name for name, m in model.named_modules() if isinstance(m, RepConv)}
    out, hit = {}, set()
    for k, v in source.items():
        name, _, leaf = k.rpartition(".")
        if name in reps and leaf in ("weight", "bias"):
            out[f"{name}.conv3x3.{leaf}"] = v
            hit.add(name)
        else:
            out[k] = v
    return out, hit


def transfer_weights(model: nn.Module, source: dict[str, torch.Tensor]) -> int:
    """Load what fits of the state dict ``source`` into ``model`` in place; returns how many of ``model``'s tensors
    came from ``source`` (0: nothing fits, and ``model`` is left as it was)."""
    own = model.state_dict()
    source, warm = _into_reparam(model, source)
    picked = {}
    for k, v in source.items():
        if k not in own:
            continue
        o = own[k]
        if o.shape == v.shape:
            picked[k] = v
        elif (
            o.ndim == 4
            and v.ndim == 4
            and o.shape[0] == v.shape[0]
            and o.shape[2:] == v.shape[2:]
            and o.shape[1] > v.shape[1]
        ):
            picked[k] = torch.cat([v, v.new_zeros(v.shape[0], o.shape[1] - v.shape[1], *v.shape[2:])], dim=1)
    if not picked:
        return 0
    model.load_state_dict(picked, strict=False)
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, RepConv) and name in warm and f"{name}.conv3x3.weight" in picked:
                module.start_as_3x3()
            if isinstance(module, ResidualBlock) and not any(k.startswith(name + ".") for k in picked):
                if isinstance(module.conv2, RepConv):
                    module.conv2.zero_()
                    continue
                module.conv2.weight.zero_()  # type: ignore[operator]
                if module.conv2.bias is not None:
                    module.conv2.bias.zero_()  # type: ignore[operator]
    return len(picked)

"""Starting a generator from weights of a related one (``srgan train --init``), keeping the function they compute
wherever the new architecture allows.

Tensors are copied where names and shapes agree. Where they differ:

- a convolution that gained input channels (the LR-kind plane of ``kind_input=True``) gets the old weights for the
  old channels and zeros for the new ones, so the new input starts ignored;
- residual blocks the weights do not have (a deeper ``srresnet_lite`` trunk) start as the identity, their last
  convolution zeroed (net2deeper), so the deeper model starts with the shallower one's function;
- anything else (e.g. the ×2 tail of weights used for a ×4 model) keeps the new model's initialisation.
"""

from __future__ import annotations

import torch
from torch import nn

from srgan.models.srresnet_lite import ResidualBlock


def transfer_weights(model: nn.Module, source: dict[str, torch.Tensor]) -> int:
    """Load what fits of the state dict ``source`` into ``model`` in place; returns how many of ``model``'s tensors
    came from ``source`` (0: nothing fits, and ``model`` is left as it was)."""
    own = model.state_dict()
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
            if isinstance(module, ResidualBlock) and not any(k.startswith(name + ".") for k in picked):
                module.conv2.weight.zero_()
                if module.conv2.bias is not None:
                    module.conv2.bias.zero_()
    return len(picked)

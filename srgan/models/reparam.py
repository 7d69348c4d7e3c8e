"""Train-time reparameterised 3×3 convolutions (ECBSR, Zhang et al. 2021; RepSR, Wang et al. 2022), folded into
one plain 3×3 convolution for inference.

A ``RepConv`` computes the sum of several *linear* branches. A sum of linear maps is linear, and each branch is a
3×3 convolution in disguise, so after training the branches fold into one ``nn.Conv2d(3, padding=1)``: the
training sees a richer parameterisation (a different optimisation landscape), inference pays for one 3×3 conv.

Branches, each mapping ``(B, in, h, w)`` to ``(B, out, h, w)``:

- ``conv3x3``: a 3×3 conv (padding 1): the plain convolution itself;
- ``conv1x1``: a 1×1 conv, folded into the centre tap;
- ``expand``: a 1×1 conv to ``2·out`` channels, then a 3×3 conv back to ``out`` (an over-parameterised 3×3);
- ``edge``: ECB's fixed-mask branches: a 1×1 conv to ``out`` channels per mask, then a depthwise Sobel-x,
  Sobel-y or Laplacian mask times a learnt per-channel scale, plus a learnt per-channel bias;
- ``identity`` (only when ``in == out``): ``x`` times a learnt per-channel scale, initialised to 0 so the branch
  starts off (a fixed identity would double every residual block's input at initialisation and could not be
  switched off for a warm start).

Why the fold is exact at the border: the fused conv zero-pads its *input*; a 1×1 conv of a zero pixel is its bias,
so the 3×3 stage of ``expand`` and ``edge`` pads the 1×1 output with that bias value (ECBSR's rule) instead of
zeros. Every branch then equals a 3×3 conv of the zero-padded input at every pixel, the border included.

Training evaluates the sum through that fold: ``forward`` composes the branches' kernels into one (a few
``(out, in, 3, 3)`` products, differentiable in every branch's parameters) and runs one 3×3 conv. Since the sum
*is* that conv for every input, the output and the gradients with respect to every branch's parameters are those of
running the branches one by one (``explicit = True``, ``branch_outputs``), which costs several convolutions per
pixel instead of one; the over-parameterisation, not the way the sum is evaluated, is what changes the training.

``fuse_model`` turns a reparameterised ``SRResNetLite`` into a plain one holding the folded weights: what export
writes, so every loader, runtime and contract only ever sees plain convolutions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from srgan.models.srresnet_lite import SRResNetLite

BRANCHES = ("conv3x3", "conv1x1", "expand", "edge", "identity")
EXPAND = 2  # the expand branch's inner width, in multiples of ``out_channels``
# Sobel-x, Sobel-y, Laplacian: (3, 3, 3)
_MASKS = (
    ((1.0, 0.0, -1.0), (2.0, 0.0, -2.0), (1.0, 0.0, -1.0)),
    ((1.0, 2.0, 1.0), (0.0, 0.0, 0.0), (-1.0, -2.0, -1.0)),
    ((0.0, 1.0, 0.0), (1.0, -4.0, 1.0), (0.0, 1.0, 0.0)),
)


def _pad_with_bias(y: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``(B, C, h, w)`` → ``(B, C, h+2, w+2)``: a one-pixel frame holding ``bias`` ``(C,)``, what a 1×1 conv gives
    on the zero padding of its input."""
    frame = F.pad(y.new_zeros(1, 1, *y.shape[-2:]), (1, 1, 1, 1), value=1.0)
    return F.pad(y, (1, 1, 1, 1)) + frame * bias.view(1, -1, 1, 1)


def _compose(
    k0: torch.Tensor, b0: torch.Tensor, k1: torch.Tensor, b1: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The single 3×3 conv equal to the 1×1 conv ``(k0 (mid, in, 1, 1), b0 (mid,))`` followed by the 3×3 conv
    ``(k1 (out, mid, 3, 3), b1 (out,))`` on the bias-padded 1×1 output: weight ``(out, in, 3, 3)``, bias
    ``(out,)``."""
    weight = torch.einsum("omyx,mi->oiyx", k1, k0[:, :, 0, 0])
    bias = torch.einsum("omyx,m->o", k1, b0) + b1
    return weight, bias


class RepConv(nn.Module):
    """A 3×3 convolution ``(B, in_channels, h, w)`` → ``(B, out_channels, h, w)`` trained as a sum of linear
    branches (module docstring); ``fused()`` is the one ``nn.Conv2d`` it equals."""

    def __init__(self, *, in_channels: int, out_channels: int):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        n_masks = len(_MASKS)
        self.conv3x3 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.conv1x1 = nn.Conv2d(in_channels, out_channels, 1)
        self.expand = nn.Conv2d(in_channels, EXPAND * out_channels, 1)
        self.expand3x3 = nn.Conv2d(EXPAND * out_channels, out_channels, 3)  # on the bias-padded expansion
        # One 1×1 conv per mask, stacked: channel m·out + o feeds mask m of output channel o.
        self.edge = nn.Conv2d(in_channels, n_masks * out_channels, 1)
        # ECBSR's initialisation of the learnt mask scales and biases.
        self.edge_scale = nn.Parameter(1e-3 * torch.randn(n_masks, out_channels))
        self.edge_bias = nn.Parameter(1e-3 * torch.randn(n_masks, out_channels))
        self.register_buffer("edge_mask", torch.tensor(_MASKS), persistent=False)
        self.identity_scale = nn.Parameter(torch.zeros(out_channels)) if in_channels == out_channels else None
        self.explicit = False  # forward through the fold (False) or branch by branch (True): the same function

    def _edge_depthwise(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The edge branches' depthwise 3×3 stage: weight ``(masks·out, 1, 3, 3)``, bias ``(masks·out,)``."""
        mask: torch.Tensor = self.edge_mask  # type: ignore[assignment]  # a registered buffer
        weight = self.edge_scale[:, :, None, None] * mask[:, None]
        return weight.reshape(-1, 1, 3, 3), self.edge_bias.reshape(-1)

    def branch_outputs(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each branch's output ``(B, out, h, w)`` on ``x`` ``(B, in, h, w)``, by name (``BRANCHES``; no
        ``identity`` when ``in != out``), computed as the branches are defined, not through the fold."""
        out = self.out_channels
        e = self.expand(x)
        y = self.edge(x)
        w, b = self._edge_depthwise()
        edge = F.conv2d(_pad_with_bias(y, self.edge.bias), w, b, groups=w.shape[0])  # type: ignore[arg-type]
        outputs = {
            "conv3x3": self.conv3x3(x),
            "conv1x1": self.conv1x1(x),
            "expand": self.expand3x3(_pad_with_bias(e, self.expand.bias)),  # type: ignore[arg-type]
            "edge": edge.view(x.shape[0], -1, out, *x.shape[-2:]).sum(1),
        }
        if self.identity_scale is not None:
            outputs["identity"] = x * self.identity_scale.view(1, -1, 1, 1)
        return outputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The sum of the branches: evaluated through its fold (``kernel``, differentiable in every branch's
        parameters), the same function of ``x`` and of the parameters, so the same gradients, as running the
        branches one by one, at about the cost of one 3×3 conv; ``explicit = True`` runs them one by one."""
        if self.explicit:
            outputs = iter(self.branch_outputs(x).values())
            total = next(outputs)
            for y in outputs:
                total = total + y
            return total
        weight, bias = self.kernel()
        return F.conv2d(x, weight, bias, padding=1)

    def branch_kernels(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Each branch as one 3×3 conv (padding 1): weight ``(out, in, 3, 3)``, bias ``(out,)``, by name."""
        out, cin = self.out_channels, self.in_channels
        b3, b1, be, bx, bd = (c.bias for c in (self.conv3x3, self.conv1x1, self.expand, self.expand3x3, self.edge))
        assert b3 is not None and b1 is not None and be is not None and bx is not None and bd is not None
        kernels = {
            "conv3x3": (self.conv3x3.weight, b3),
            "conv1x1": (F.pad(self.conv1x1.weight, (1, 1, 1, 1)), b1),
            "expand": _compose(self.expand.weight, be, self.expand3x3.weight, bx),
        }
        # Edge: output o sums, over the masks m, scale[m, o] · mask[m] applied to 1×1 channel m·out + o.
        mask: torch.Tensor = self.edge_mask  # type: ignore[assignment]  # a registered buffer
        n_masks = mask.shape[0]
        k0, b0 = self.edge.weight[:, :, 0, 0].view(n_masks, out, cin), bd.view(n_masks, out)
        kernels["edge"] = (
            torch.einsum("mo,myx,moi->oiyx", self.edge_scale, mask, k0),
            torch.einsum("mo,myx,mo->o", self.edge_scale, mask, b0) + self.edge_bias.sum(0),
        )
        if self.identity_scale is not None:
            ident = F.pad(torch.diag(self.identity_scale)[:, :, None, None], (1, 1, 1, 1))
            kernels["identity"] = (ident, torch.zeros_like(self.identity_scale))
        return kernels

    def kernel(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The folded 3×3 conv: weight ``(out, in, 3, 3)`` and bias ``(out,)``, the sums of ``branch_kernels``."""
        kernels = iter(self.branch_kernels().values())
        weight, bias = next(kernels)
        for w, b in kernels:
            weight, bias = weight + w, bias + b
        return weight, bias

    @torch.no_grad()
    def fused(self) -> nn.Conv2d:
        """The plain ``nn.Conv2d(in, out, 3, padding=1)`` equal to this module (same device and dtype)."""
        weight, bias = self.kernel()
        conv = nn.Conv2d(self.in_channels, self.out_channels, 3, padding=1).to(device=weight.device, dtype=weight.dtype)
        conv.weight.copy_(weight)
        conv.bias.copy_(bias)  # type: ignore[union-attr]
        return conv

    @torch.no_grad()
    def start_as_3x3(self) -> None:
        """Make every branch but ``conv3x3`` output zero, so the module computes its 3×3 branch alone (a warm start
        from a plain conv). Only each branch's last factor is zeroed: the first factors keep their random
        initialisation, so the zeroed factors still get gradients (two zero factors would stay zero)."""
        for p in (self.conv1x1.weight, self.conv1x1.bias, self.expand3x3.weight, self.expand3x3.bias):
            p.zero_()  # type: ignore[union-attr]
        self.edge_scale.zero_()
        self.edge_bias.zero_()
        if self.identity_scale is not None:
            self.identity_scale.zero_()

    @torch.no_grad()
    def zero_(self) -> None:
        """Make the whole module output zero (a residual block's last conv in a block that starts as the
        identity); the expand and edge first factors keep their initialisation, as in ``start_as_3x3``."""
        self.start_as_3x3()
        self.conv3x3.weight.zero_()
        self.conv3x3.bias.zero_()  # type: ignore[union-attr]


@torch.no_grad()
def fuse_model(model: SRResNetLite) -> SRResNetLite:
    """A plain ``SRResNetLite`` (the same kwargs with ``reparam=False``), in eval mode on ``model``'s device and
    dtype, whose every conv is ``model``'s ``RepConv`` folded; every other tensor is copied."""
    from srgan.models.srresnet_lite import SRResNetLite

    reps = {name: m for name, m in model.named_modules() if isinstance(m, RepConv)}
    state = {k: v for k, v in model.state_dict().items() if not any(k.startswith(n + ".") for n in reps)}
    for name, rep in reps.items():
        conv = rep.fused()
        state[f"{name}.weight"], state[f"{name}.bias"] = conv.weight, conv.bias
    ref = next(iter(model.parameters()))
    plain = SRResNetLite(**{**model.config, "reparam": False}).to(device=ref.device, dtype=ref.dtype)
    plain.load_state_dict(state)
    return plain.eval()

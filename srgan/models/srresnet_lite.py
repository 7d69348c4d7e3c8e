"""BrainSR's default generator: a compact SRResNet without BatchNorm, its trunk on the LR grid.

Why this shape: on a CPU the cost is dominated by convolutions at HR resolution with many channels (the seed's
upsampling blocks). Here the residual trunk runs on the LR grid, sub-pixel convolutions produce the HR phases,
and the network only predicts the residual over an interpolation (``base``), so an untrained or unsure network
degrades to that interpolation rather than to noise. ``base="zerofill"`` (zero-filled k-space, what MR scanners
interpolate with) is global (an FFT of the whole slice), so training and tiled inference hand it in computed on
the whole slice (``forward(x, base)``).

``upsampler``: ``"shuffle"`` predicts all s² HR phases with one linear convolution on the LR grid (cheapest);
``"progressive"`` puts a nonlinear layer before that sub-pixel conv, and at ×4 first doubles the resolution
with a nonlinear ×2 stage (conv c→4c, pixel shuffle, ReLU), like SRResNet's upsampling blocks. At ×4 the single
linear sub-pixel conv is the bottleneck, which ``progressive`` removes; at ×2 the choice makes no measurable
difference (docs/benchmarks.md).

``up_channels`` narrows the 2× grid of the ×4 progressive upsampler: a channel there costs four LR channels.
The bundled ×4 uses it (its model card records its kwargs; timings in docs/benchmarks.md, measured with
``benchmarks/bench_inference.py``).

``base``: the zero-filled base looked better on crops but lost on whole held-out slices once the upsampler was
fixed (docs/benchmarks.md). The network learns more easily from a smooth base than from one that carries Gibbs
ringing; ``bicubic`` is the default and what the bundled models use. No BatchNorm: statistics of small MRI patches
are unstable and BN makes DDP on CPU diverge from single-process training.

``reparam=True`` trains the head, every residual block's two convs and the trunk conv as ``RepConv``s (sums of
linear branches, ``srgan.models.reparam``) that fold into plain 3×3 convs: ``reparam.fuse_model`` gives the plain
model export writes, so inference costs what ``reparam=False`` costs. These are the convs on the LR grid, where
the trunk's capacity lies; the upsampler and tail stay plain (the tail starts at zero for the bicubic start, and
the ×4 upsampler's convs run at up to 4× the LR cost in training). With ``reparam=False`` the module and its
parameter names are the plain model's.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from srgan.degrade import zerofill_base
from srgan.models.kind_detector import KindDetector
from srgan.models.reparam import RepConv

BASES = ("bicubic", "zerofill")
UPSAMPLERS = ("shuffle", "progressive")
# Up to this LR side the bicubic base is two products with cached (s·n, n) matrices, faster than interpolation for
# small slices. The matrices are F.interpolate applied to the identity, so both
# paths are the same linear map (outputs agree to 3e-7); for larger slices the dense products cost more than
# interpolation's four taps per output.
MATRIX_BASE_MAX_SIDE = 128


@lru_cache(maxsize=16)
def _bicubic_matrix(n: int, scale: int, dtype: torch.dtype, device: str) -> torch.Tensor:
    eye = torch.eye(n, dtype=dtype, device=device)[None, None]
    return F.interpolate(eye, size=(n * scale, n), mode="bicubic", align_corners=False)[0, 0]


def bicubic_base(x: torch.Tensor, scale: int) -> torch.Tensor:
    """``F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)`` of ``(B, C, h, w)``, faster
    for small slices (``MATRIX_BASE_MAX_SIDE``)."""
    h, w = x.shape[-2:]
    if max(h, w) > MATRIX_BASE_MAX_SIDE or x.dtype not in (torch.float32, torch.float64):
        return F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)
    rows = _bicubic_matrix(h, scale, x.dtype, str(x.device))
    cols = _bicubic_matrix(w, scale, x.dtype, str(x.device))
    return rows @ x @ cols.T


def conv3x3(cin: int, cout: int, reparam: bool) -> nn.Module:
    """A 3×3 conv (padding 1) ``(B, cin, h, w)`` → ``(B, cout, h, w)``; a ``RepConv`` when ``reparam``."""
    return RepConv(in_channels=cin, out_channels=cout) if reparam else nn.Conv2d(cin, cout, 3, padding=1)


class ResidualBlock(nn.Module):
    def __init__(self, *, channels: int, res_scale: float, reparam: bool = False):
        super().__init__()
        self.conv1 = conv3x3(channels, channels, reparam)
        self.conv2 = conv3x3(channels, channels, reparam)
        self.res_scale = res_scale

    def forward(self, x):
        return x + self.res_scale * self.conv2(F.relu(self.conv1(x), inplace=True))


class SRResNetLite(nn.Module):
    TINY = {"channels": 8, "num_blocks": 1}

    def __init__(
        self,
        *,
        scale: int = 2,
        in_channels: int = 1,
        channels: int = 32,
        num_blocks: int = 8,
        res_scale: float = 1.0,
        base: str = "bicubic",
        upsampler: str = "shuffle",
        up_channels: int | None = None,
        kind_input: bool = False,
        reparam: bool = False,
    ):
        super().__init__()
        if scale not in (2, 3, 4):
            raise ValueError(f"scale must be 2, 3 or 4, got {scale}")
        if base not in BASES:
            raise ValueError(f"base must be one of {BASES}, got {base!r}")
        if upsampler not in UPSAMPLERS:
            raise ValueError(f"upsampler must be one of {UPSAMPLERS}, got {upsampler!r}")
        up_channels = channels if up_channels is None else up_channels
        if up_channels != channels and not (upsampler == "progressive" and scale == 4):
            raise ValueError("up_channels sets the width on the 2× grid: only the ×4 progressive upsampler has one")
        # The constructor's kwargs, for ``reparam.fuse_model`` to build the plain twin.
        self.config: dict[str, Any] = {
            "scale": scale,
            "in_channels": in_channels,
            "channels": channels,
            "num_blocks": num_blocks,
            "res_scale": res_scale,
            "base": base,
            "upsampler": upsampler,
            "up_channels": up_channels,
            "kind_input": kind_input,
            "reparam": reparam,
        }
        self.scale = scale
        self.reparam = reparam
        self.base = base
        self.upsampler = upsampler
        # ``kind_input``: a second input plane holds P(k-space LR) from a detector that sees the whole slice
        self.kind = KindDetector() if kind_input else None
        self.head = conv3x3(in_channels + (1 if kind_input else 0), channels, reparam)
        self.blocks = nn.Sequential(
            *[ResidualBlock(channels=channels, res_scale=res_scale, reparam=reparam) for _ in range(num_blocks)]
        )
        self.trunk = conv3x3(channels, channels, reparam)
        # ×4 progressive: one nonlinear ×2 stage, then one conv and the sub-pixel conv on the 2× grid. The last
        # layer stays a sub-pixel conv rather than a 1-channel conv at HR: same function class, but oneDNN runs a
        # 1-output conv on 256² 6× slower than the 4-output conv on 128² it is equivalent to.
        # ``up_channels`` narrows the 2× grid, where each channel costs 4× what it costs on the LR grid.
        layers = []
        width = channels
        if upsampler == "progressive":
            if scale == 4:
                width = up_channels
                layers += [nn.Conv2d(channels, 4 * width, 3, padding=1), nn.PixelShuffle(2), nn.ReLU(inplace=True)]
            layers += [nn.Conv2d(width, width, 3, padding=1), nn.ReLU(inplace=True)]
        self.up = nn.Sequential(*layers)
        last = 2 if upsampler == "progressive" and scale == 4 else scale
        self.tail = nn.Conv2d(width, in_channels * last * last, 3, padding=1)
        self.shuffle = nn.PixelShuffle(last)
        # Start as exact bicubic: the residual branch outputs zero until trained.
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)  # type: ignore[arg-type]  # Conv2d has a bias by default

    def upsample(self, x):
        """The interpolation the residual is added to, ``(B, 1, h, w)`` → ``(B, 1, s·h, s·w)``."""
        if self.base == "zerofill":
            return zerofill_base(x, self.scale)
        return bicubic_base(x, self.scale)

    def forward(self, x, base=None, kind=None):
        """``base``: ``self.upsample`` of the whole slice, cropped like ``x``; ``kind``: ``(B,)``
        ``self.kind`` of the whole slice (both default to being computed from ``x``, right when ``x`` is one)."""
        if base is None:
            base = self.upsample(x)
        if self.kind is not None:
            if kind is None:
                kind = self.kind(x)
            x = torch.cat([x, kind.to(x.dtype).view(-1, 1, 1, 1).expand(-1, 1, *x.shape[-2:])], dim=1)
        h = self.head(x)
        h = h + self.trunk(self.blocks(h))
        return base + self.shuffle(self.tail(self.up(h)))

    def trunk_state_dict(self) -> dict[str, torch.Tensor]:
        """Weights that do not depend on the scale (head and residual trunk), to start ×4 from a trained ×2."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith(("tail.", "up."))}

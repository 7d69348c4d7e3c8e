"""The seed SRGAN generator, reproduced faithfully at the seed notebook's sizes for comparison.

9×9 head conv + ReLU; residual blocks conv3×3 → ReLU → BN → conv3×3 → BN added to the block input; a post-residual
conv + BN added to the head output; one upsampling block per factor 2 (nearest ×2, conv3×3 with 256 filters, ReLU);
a 9×9 output conv. Its upsampling convs run at full resolution with 256 channels, which is why it is slow on a CPU.
"""

from __future__ import annotations

import math

from torch import nn


class SeedResidualBlock(nn.Module):
    def __init__(self, *, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.BatchNorm2d(channels),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x):
        return x + self.body(x)


class SeedGenerator(nn.Module):
    TINY = {"channels": 8, "num_blocks": 1, "upsample_channels": 8}

    def __init__(
        self,
        *,
        scale: int = 4,
        in_channels: int = 1,
        channels: int = 64,
        num_blocks: int = 3,
        upsample_channels: int = 256,
    ):
        super().__init__()
        if scale not in (2, 4, 8):
            raise ValueError(f"scale must be 2, 4 or 8, got {scale}")
        self.scale = scale
        self.head = nn.Sequential(nn.Conv2d(in_channels, channels, 9, padding=4), nn.ReLU(inplace=True))
        self.blocks = nn.Sequential(*[SeedResidualBlock(channels=channels) for _ in range(num_blocks)])
        self.post = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.BatchNorm2d(channels))
        ups, c = [], channels
        for _ in range(int(math.log2(scale))):
            ups += [
                nn.Upsample(scale_factor=2, mode="nearest"),
                nn.Conv2d(c, upsample_channels, 3, padding=1),
                nn.ReLU(inplace=True),
            ]
            c = upsample_channels
        self.upsample = nn.Sequential(*ups)
        self.tail = nn.Conv2d(c, in_channels, 9, padding=4)

    def forward(self, x):
        h = self.head(x)
        h = h + self.post(self.blocks(h))
        return self.tail(self.upsample(h))

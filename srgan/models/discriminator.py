"""Discriminators. Both return logits ``(B, 1)``; ``predict`` gives the probability the seed design names."""

from __future__ import annotations

import torch
from torch import nn

_SEED_CHANNELS = (64, 64, 128, 128, 256, 256, 512, 512)


def _conv_blocks(in_channels: int, channels: tuple[int, ...], *, batch_norm: bool, spectral: bool) -> nn.Sequential:
    layers, c = [], in_channels
    for i, out in enumerate(channels):
        conv = nn.Conv2d(c, out, 3, stride=1 if i % 2 == 0 else 2, padding=1)
        layers.append(nn.utils.parametrizations.spectral_norm(conv) if spectral else conv)
        if batch_norm and i > 0:
            layers.append(nn.BatchNorm2d(out))
        layers.append(nn.LeakyReLU(0.2, inplace=True))
        c = out
    return nn.Sequential(*layers)


class _Discriminator(nn.Module):
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self(x))


class SeedDiscriminator(_Discriminator):
    """The seed's discriminator: strided conv blocks with BN, flattened into dense layers.

    Its dense layer size grows with the patch size (``patch_size`` must be divisible by 16).
    """

    TINY = {"channels": (4, 4, 8, 8), "dense": 8, "patch_size": 16}

    def __init__(
        self,
        *,
        patch_size: int = 96,
        in_channels: int = 1,
        channels: tuple[int, ...] = _SEED_CHANNELS,
        dense: int = 1024,
    ):
        super().__init__()
        channels = tuple(channels)
        down = 2 ** (len(channels) // 2)
        if patch_size % down:
            raise ValueError(f"patch_size must be divisible by {down}, got {patch_size}")
        self.features = _conv_blocks(in_channels, channels, batch_norm=True, spectral=False)
        side = patch_size // down
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(channels[-1] * side * side, dense),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(dense, 1),
        )

    def forward(self, x):
        return self.head(self.features(x))


class PooledDiscriminator(_Discriminator):
    """The default: same strided trunk with spectral norm instead of BN, then global average pooling, so the
    parameter count does not depend on the patch size and training is stable on small CPU batches."""

    TINY = {"channels": (4, 4, 8, 8), "dense": 8}

    def __init__(
        self,
        *,
        in_channels: int = 1,
        channels: tuple[int, ...] = (32, 32, 64, 64, 128, 128, 256, 256),
        dense: int = 256,
    ):
        super().__init__()
        self.features = _conv_blocks(in_channels, tuple(channels), batch_norm=False, spectral=True)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(channels[-1], dense),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(dense, 1),
        )

    def forward(self, x):
        return self.head(self.features(x))

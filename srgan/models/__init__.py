"""Model registry: explicit dicts from a stable name (stored in every weights card) to an ``nn.Module`` class.

Generators take ``(B, 1, h, w)`` intensities normalised to about [0, 1] and return ``(B, 1, s·h, s·w)``.
Discriminators take ``(B, 1, H, W)`` and return logits ``(B, 1)``. Every class has keyword-only constructor
arguments and a ``TINY`` dict of kwargs small enough for unit tests.
"""

from __future__ import annotations

from .discriminator import PooledDiscriminator, SeedDiscriminator
from .seed import SeedGenerator
from .srresnet_lite import SRResNetLite

GENERATORS: dict[str, type] = {
    "seed": SeedGenerator,
    "srresnet_lite": SRResNetLite,
}
DISCRIMINATORS: dict[str, type] = {
    "seed": SeedDiscriminator,
    "pooled": PooledDiscriminator,
}
DEFAULT_GENERATOR = "srresnet_lite"
DEFAULT_DISCRIMINATOR = "pooled"


def build_generator(name: str, **kwargs):
    try:
        cls = GENERATORS[name]
    except KeyError:
        raise ValueError(f"unknown generator {name!r}; known: {', '.join(sorted(GENERATORS))}") from None
    return cls(**kwargs)


def build_discriminator(name: str, **kwargs):
    try:
        cls = DISCRIMINATORS[name]
    except KeyError:
        raise ValueError(f"unknown discriminator {name!r}; known: {', '.join(sorted(DISCRIMINATORS))}") from None
    return cls(**kwargs)


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())

"""srgan.models.cost: multiply-accumulates per LR pixel, against a hand count and across the registered generators."""
from __future__ import annotations

import pytest

from srgan.models import GENERATORS, build_generator
from srgan.models.cost import count_macs, macs_per_lr_pixel


def test_tiny_srresnet_lite_matches_a_hand_count():
    model = build_generator("srresnet_lite", channels=8, num_blocks=1, scale=2)
    # per LR pixel: head 1→8 3×3, block 2 × (8→8 3×3), trunk 8→8 3×3, tail 8→4 (2² phases) 3×3; base, ReLU and
    # pixel shuffle cost nothing here
    hand = 1 * 8 * 9 + 2 * 8 * 8 * 9 + 8 * 8 * 9 + 8 * 4 * 9
    assert macs_per_lr_pixel(model, 2, lr_side=16) == pytest.approx(hand)
    assert macs_per_lr_pixel(model, 2, lr_side=40) == pytest.approx(hand)   # per pixel: independent of the side
    # ×4 progressive with a narrow 2× grid: conv 8→4·4 on LR, conv 4→4 and tail 4→4 on the 2× grid (4 px per LR px)
    x4 = build_generator("srresnet_lite", channels=8, num_blocks=1, scale=4, upsampler="progressive", up_channels=4)
    trunk = 1 * 8 * 9 + 3 * 8 * 8 * 9
    assert macs_per_lr_pixel(x4, 4, lr_side=16) == pytest.approx(trunk + 8 * 16 * 9 + 4 * (4 * 4 * 9 + 4 * 4 * 9))


def test_kind_input_and_seed():
    import torch

    lite = build_generator("srresnet_lite", channels=8, num_blocks=1, scale=4, kind_input=True)
    plain = build_generator("srresnet_lite", channels=8, num_blocks=1, scale=4)
    side = 32
    with_kind = macs_per_lr_pixel(lite, 4, lr_side=side)
    # the LR-kind plane adds one input channel to the head (9 MACs per pixel) and the detector's linear layer(s)
    assert with_kind >= macs_per_lr_pixel(plain, 4, lr_side=side) + 8 * 9
    assert count_macs(plain, torch.zeros(2, 1, side, side)) == 2 * macs_per_lr_pixel(plain, 4, lr_side=side) * side**2
    seed = build_generator("seed", scale=4)
    bundled_like = build_generator("srresnet_lite", scale=4)
    assert macs_per_lr_pixel(seed, 4, lr_side=side) > 10 * macs_per_lr_pixel(bundled_like, 4, lr_side=side)
    assert set(GENERATORS) == {"seed", "srresnet_lite"}   # a new generator gets a line here
    with pytest.raises(ValueError, match="not ×2"):
        macs_per_lr_pixel(seed, 2, lr_side=8)

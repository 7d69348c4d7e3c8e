import pytest
import torch

from srgan.models import (
    DEFAULT_DISCRIMINATOR,
    DEFAULT_GENERATOR,
    DISCRIMINATORS,
    GENERATORS,
    build_discriminator,
    build_generator,
    count_parameters,
)


@pytest.mark.parametrize("name", sorted(GENERATORS))
@pytest.mark.parametrize("scale", [2, 4])
def test_generator_shapes_and_gradients(name, scale):
    torch.manual_seed(0)
    g = build_generator(name, scale=scale, **GENERATORS[name].TINY)
    x = torch.rand(2, 1, 12, 10)
    y = g(x)
    assert y.shape == (2, 1, 12 * scale, 10 * scale)
    y.mean().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in g.parameters())


@pytest.mark.parametrize("upsampler", ["shuffle", "progressive"])
@pytest.mark.parametrize("base", ["bicubic", "zerofill"])
def test_untrained_lite_generator_is_its_interpolation(base, upsampler):
    """The residual branch starts at zero, so an untrained model returns exactly its base interpolation."""
    from srgan.degrade import bicubic_up, zerofill_base
    g = build_generator("srresnet_lite", scale=2, base=base, upsampler=upsampler, **GENERATORS["srresnet_lite"].TINY)
    x = torch.rand(1, 1, 12, 10)
    want = zerofill_base(x, 2) if base == "zerofill" else bicubic_up(x, 2)
    assert torch.allclose(g(x), want, atol=1e-6)
    assert torch.allclose(g(x, base=want * 0), torch.zeros_like(want))  # a given base is used as is
    with pytest.raises(ValueError, match="base"):
        build_generator("srresnet_lite", scale=2, base="lanczos")


@pytest.mark.parametrize("name", sorted(DISCRIMINATORS))
def test_discriminator_logits(name):
    d = build_discriminator(name, **DISCRIMINATORS[name].TINY)
    x = torch.rand(3, 1, 16, 16)
    logits = d(x)
    assert logits.shape == (3, 1)
    p = d.predict(x)
    assert ((p > 0) & (p < 1)).all()


def test_pooled_discriminator_size_does_not_depend_on_patch():
    d = build_discriminator("pooled", **DISCRIMINATORS["pooled"].TINY)
    assert d(torch.rand(1, 1, 32, 32)).shape == d(torch.rand(1, 1, 64, 48)).shape == (1, 1)


def test_seed_discriminator_grows_with_patch():
    kw = dict(DISCRIMINATORS["seed"].TINY)
    small = count_parameters(build_discriminator("seed", **{**kw, "patch_size": 16}))
    big = count_parameters(build_discriminator("seed", **{**kw, "patch_size": 32}))
    assert big > small


def test_seed_generator_is_faithful_at_seed_sizes():
    g = build_generator("seed", scale=4)
    assert len(g.blocks) == 3
    assert g.head[0].kernel_size == (9, 9) and g.head[0].out_channels == 64
    assert g.tail.kernel_size == (9, 9)
    ups = [m for m in g.upsample if isinstance(m, torch.nn.Conv2d)]
    assert [m.out_channels for m in ups] == [256, 256]
    block = g.blocks[0].body
    assert [type(m).__name__ for m in block] == ["Conv2d", "ReLU", "BatchNorm2d", "Conv2d", "BatchNorm2d"]


def test_default_generator_starts_as_bicubic():
    import torch.nn.functional as F

    g = build_generator(DEFAULT_GENERATOR, scale=2, **GENERATORS[DEFAULT_GENERATOR].TINY)
    x = torch.rand(1, 1, 9, 7)
    ref = F.interpolate(x, scale_factor=2, mode="bicubic", align_corners=False)
    assert torch.allclose(g(x), ref, atol=1e-6)


def test_unknown_names_are_refused():
    with pytest.raises(ValueError, match="unknown generator"):
        build_generator("nope", scale=2)
    with pytest.raises(ValueError, match="unknown discriminator"):
        build_discriminator("nope")
    assert DEFAULT_DISCRIMINATOR in DISCRIMINATORS


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_progressive_upsampler_shapes_and_trunk_transfer(scale):
    """×4 progressive upsamples in two ×2 steps (one nonlinear), other scales add one nonlinear layer before the
    sub-pixel conv; the trunk of any model fits any other of the same width, so ×4 can start from a trained ×2."""
    g = build_generator("srresnet_lite", scale=scale, upsampler="progressive", channels=8, num_blocks=1)
    x = torch.rand(2, 1, 7, 5)
    assert g(x).shape == (2, 1, 7 * scale, 5 * scale)
    shuffles = [m.upscale_factor for m in g.modules() if isinstance(m, torch.nn.PixelShuffle)]
    assert shuffles == ([2, 2] if scale == 4 else [scale])
    x2 = build_generator("srresnet_lite", scale=2, channels=8, num_blocks=1)
    own = g.state_dict()
    assert all(own[k].shape == v.shape for k, v in x2.trunk_state_dict().items())
    assert set(x2.trunk_state_dict()) == {k for k in own if not k.startswith(("up.", "tail."))}
    with pytest.raises(ValueError, match="upsampler"):
        build_generator("srresnet_lite", scale=scale, upsampler="deconv")


def test_up_channels_narrows_only_the_2x_grid():
    """``up_channels`` is the width between the two ×2 stages of ×4 progressive (where a channel costs 4× an
    LR channel); the trunk stays transferable and the other upsamplers refuse it rather than ignore it."""
    g = build_generator("srresnet_lite", scale=4, upsampler="progressive", channels=8, num_blocks=1, up_channels=4)
    x = torch.rand(2, 1, 7, 5)
    assert g(x).shape == (2, 1, 28, 20)
    sd = g.state_dict()
    assert sd["up.0.weight"].shape == (16, 8, 3, 3)   # 4 phases × 4 channels on the 2× grid
    assert sd["up.3.weight"].shape == (4, 4, 3, 3)
    assert sd["tail.weight"].shape == (4, 4, 3, 3)
    wide = build_generator("srresnet_lite", scale=4, upsampler="progressive", channels=8, num_blocks=1)
    assert sum(p.numel() for p in g.parameters()) < sum(p.numel() for p in wide.parameters())
    x2 = build_generator("srresnet_lite", scale=2, channels=8, num_blocks=1)
    assert all(sd[k].shape == v.shape for k, v in x2.trunk_state_dict().items())
    for kwargs in ({"scale": 2, "upsampler": "progressive"}, {"scale": 4, "upsampler": "shuffle"}):
        with pytest.raises(ValueError, match="up_channels"):
            build_generator("srresnet_lite", channels=8, num_blocks=1, up_channels=4, **kwargs)


def test_bad_scale_refused():
    with pytest.raises(ValueError):
        build_generator("srresnet_lite", scale=5)


def test_kind_input_takes_the_detector_estimate_or_a_given_one():
    """``kind_input`` adds a P(k-space) plane; the model computes it from the whole input unless handed it (tiles)."""
    torch.manual_seed(0)
    g = build_generator("srresnet_lite", scale=4, kind_input=True, upsampler="progressive",
                        **GENERATORS["srresnet_lite"].TINY)
    x = torch.rand(1, 1, 12, 10)
    assert torch.allclose(g(x), torch.nn.functional.interpolate(x, scale_factor=4, mode="bicubic"), atol=1e-6)
    with torch.no_grad():
        for p in g.parameters():
            p.add_(0.05 * torch.randn_like(p))
        g.kind.weight.fill_(1.0)
        g.kind.fitted.fill_(1)
    x = torch.rand(2, 1, 12, 10)
    own = g.kind(x)
    assert torch.allclose(g(x), g(x, kind=own))
    # the plane changes the output, so the network can act on it
    assert not torch.allclose(g(x, kind=torch.zeros(2)), g(x, kind=torch.ones(2)))
    assert "kind.weight" in g.state_dict()  # the detector is saved (and hash-checked) with the weights


@pytest.mark.parametrize("shape, scale", [((2, 1, 64, 48), 4), ((1, 1, 128, 128), 2), ((1, 1, 130, 64), 2),
                                          ((3, 1, 17, 29), 4)])
def test_bicubic_base_is_interpolation_on_both_paths(shape, scale):
    """The cached-matrix path for small slices and F.interpolate for large ones are the same linear map."""
    import torch.nn.functional as F

    from srgan.models.srresnet_lite import bicubic_base
    x = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    expected = F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)
    out = bicubic_base(x, scale)
    assert out.shape == expected.shape
    assert torch.allclose(out, expected, atol=1e-6)

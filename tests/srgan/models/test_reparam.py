"""``srgan.models.reparam``: a ``RepConv``'s branches fold into one 3×3 conv exactly, border included; a
reparameterised ``SRResNetLite`` equals its fused plain twin, starts from plain weights with their function, and is
exported fused."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from srgan.io.images import load_image
from srgan.models import GENERATORS, build_generator
from srgan.models.reparam import BRANCHES, RepConv, fuse_model
from srgan.models.srresnet_lite import SRResNetLite
from srgan.models.transfer import transfer_weights
from srgan.models.weights import load_weights, read_card
from srgan.training import data as sdata
from srgan.training import export
from srgan.training.config import TrainConfig

TINY = GENERATORS["srresnet_lite"].TINY
BUNDLED_X2 = Path(__file__).resolve().parents[3] / "resources" / "weights" / "brainsr-x2-fidelity.safetensors"
ATOL = 1e-5


def _randomise(module: nn.Module, std: float = 0.3, seed: int = 0) -> nn.Module:
    """Every parameter random and clearly non-zero (biases included, so a wrong border shows)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(std * torch.randn(p.shape, generator=g))
    return module


def _slice(shared_data, h: int = 36, w: int = 28) -> torch.Tensor:
    """A non-square crop of a real brain MR slice, ``(1, 1, h, w)`` in [0, 1], over the head rather than air."""
    img = load_image(shared_data / "kaggle-brain-tumor-mri" / "glioma" / "Tr-glTr_0000.jpg").data
    cy, cx = np.array(img.shape) // 2
    crop = img[cy - h // 2 : cy - h // 2 + h, cx - w // 2 : cx - w // 2 + w]
    assert crop.std() > 0.02  # structure, not background
    return torch.from_numpy(np.ascontiguousarray(crop, dtype=np.float32))[None, None]


def _explicit(model: nn.Module) -> nn.Module:
    """Every ``RepConv`` of ``model`` runs branch by branch (not through its fold), so comparing with the fused
    model checks the fold."""
    for m in model.modules():
        if isinstance(m, RepConv):
            m.explicit = True
    return model


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).detach().abs().max())


CHANNELS = [(8, 8), (1, 8), (2, 6), (8, 3), (5, 7)]


@pytest.mark.parametrize("cin,cout", CHANNELS)
def test_each_branch_alone_is_its_3x3_kernel_at_every_pixel(cin, cout):
    rep = _randomise(RepConv(in_channels=cin, out_channels=cout), seed=cin * 10 + cout)
    x = torch.randn(2, cin, 13, 9, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        outputs, kernels = rep.branch_outputs(x), rep.branch_kernels()
    expected = set(BRANCHES) - (set() if cin == cout else {"identity"})
    assert set(outputs) == set(kernels) == expected
    for name, (weight, bias) in kernels.items():
        assert weight.shape == (cout, cin, 3, 3) and bias.shape == (cout,)
        assert outputs[name].shape == (2, cout, 13, 9)
        assert outputs[name].abs().amax() > 0.1, name  # a live branch, not a zero that trivially folds
        with torch.no_grad():
            folded = F.conv2d(x, weight, bias, padding=1)
        assert _max_diff(folded, outputs[name]) < ATOL, name
        # the border on its own (a wrong padding shows only there)
        border = torch.ones(13, 9, dtype=torch.bool)
        border[1:-1, 1:-1] = False
        assert _max_diff(folded[..., border], outputs[name][..., border]) < ATOL, name


@pytest.mark.parametrize("cin,cout", CHANNELS)
def test_all_branches_fold_into_one_plain_conv(cin, cout):
    rep = _randomise(RepConv(in_channels=cin, out_channels=cout), seed=cin + cout)
    x = torch.randn(1, cin, 10, 17, generator=torch.Generator().manual_seed(2))
    conv = rep.fused()
    assert type(conv) is nn.Conv2d and conv.kernel_size == (3, 3) and conv.padding == (1, 1)
    with torch.no_grad():
        y, z = _explicit(rep)(x), conv(x)
    assert _max_diff(y, z) < ATOL
    assert _max_diff(y, rep.conv3x3(x)) > 0.1  # the other branches do contribute


@pytest.mark.parametrize("cin,cout", [(8, 8), (2, 6)])
def test_the_folded_forward_has_the_branchwise_output_and_gradients(cin, cout):
    """Training runs through the fold: it must be the same function of the input and of every branch parameter."""
    x = torch.randn(2, cin, 11, 14, generator=torch.Generator().manual_seed(5))
    target = torch.randn(2, cout, 11, 14, generator=torch.Generator().manual_seed(6))
    grads, outs = [], []
    for explicit in (False, True):
        rep = _randomise(RepConv(in_channels=cin, out_channels=cout), seed=7)
        rep.explicit = explicit
        y = rep(x)
        F.l1_loss(y, target).backward()
        outs.append(y.detach())
        grads.append({k: p.grad.clone() for k, p in rep.named_parameters()})
    assert _max_diff(*outs) < ATOL
    assert set(grads[0]) == set(grads[1])
    for k in grads[0]:
        assert grads[1][k].abs().amax() > 0, k  # every parameter learns
        assert torch.allclose(grads[0][k], grads[1][k], atol=1e-5, rtol=1e-4), k


def test_zero_padding_the_1x1_output_would_break_the_fold_at_the_border():
    """Why the expand and edge branches pad their 1×1 output with its bias: with zeros instead, the fused conv is
    wrong exactly on the one-pixel frame (so the exactness tests above would catch that mistake)."""
    rep = _randomise(RepConv(in_channels=4, out_channels=4))
    x = torch.randn(1, 4, 12, 11, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        wrong = rep.expand3x3(F.pad(rep.expand(x), (1, 1, 1, 1)))
        weight, bias = rep.branch_kernels()["expand"]
        folded = F.conv2d(x, weight, bias, padding=1)
    diff = (wrong - folded).abs().amax(dim=(0, 1))
    assert diff[1:-1, 1:-1].max() < ATOL
    assert diff[0].min() > 1e-3 and diff[-1].min() > 1e-3 and diff[:, 0].min() > 1e-3


MODELS = [
    {"scale": 2},
    {"scale": 2, "upsampler": "progressive", "kind_input": True},
    {"scale": 4, "upsampler": "progressive"},
    {"scale": 4, "upsampler": "progressive", "up_channels": 4, "kind_input": True, "num_blocks": 2},
]


def _reparam_model(kw: dict, seed: int = 0) -> SRResNetLite:
    model = build_generator("srresnet_lite", **{**TINY, **kw, "reparam": True})
    _randomise(model, std=0.1, seed=seed)
    if model.kind is not None:  # a detector whose answer depends on the input
        model.kind.fitted.fill_(1)
    return model.eval()


@pytest.mark.parametrize("kw", MODELS)
def test_a_reparam_model_equals_its_fused_plain_twin(kw, shared_data):
    model = _reparam_model(kw)
    assert any(isinstance(m, RepConv) for m in model.modules())
    fused = fuse_model(model)
    assert type(fused) is SRResNetLite and not fused.training and not fused.reparam
    assert not any(isinstance(m, RepConv) for m in fused.modules())
    plain = build_generator("srresnet_lite", **{**TINY, **kw})
    assert list(fused.state_dict()) == list(plain.state_dict())  # the plain model's names: loads like any weights
    x = _slice(shared_data)
    with torch.no_grad():
        y, z = _explicit(model)(x), fused(x)
    assert y.shape == (1, 1, 36 * kw["scale"], 28 * kw["scale"])
    assert _max_diff(y, z) < ATOL
    assert _max_diff(y, model.upsample(x)) > 1e-2  # the residual branch is live, so the comparison means something


def test_reparam_false_keeps_the_plain_parameter_names():
    plain = SRResNetLite(**TINY, kind_input=True)
    assert not any(isinstance(m, RepConv) for m in plain.modules())
    assert "blocks.0.conv1.weight" in plain.state_dict() and "head.weight" in plain.state_dict()


def test_bundled_plain_weights_warm_start_a_reparam_model_with_their_function(shared_data):
    plain, card = load_weights(BUNDLED_X2)
    rep = build_generator("srresnet_lite", **{**card["kwargs"], "reparam": True}).eval()
    n = transfer_weights(rep, plain.state_dict())
    assert n == len(plain.state_dict())
    block = rep.blocks[0].conv1
    assert torch.equal(block.conv3x3.weight, plain.blocks[0].conv1.weight)
    assert block.expand.weight.any() and block.edge.weight.any()  # first factors keep gradients flowing
    x = _slice(shared_data, 48, 40)
    with torch.no_grad():
        y, z = _explicit(rep)(x), plain(x)
    assert _max_diff(y, z) < ATOL


def test_warm_start_keeps_the_kind_plane_and_deeper_trunk_rules():
    torch.manual_seed(0)
    src = _randomise(build_generator("srresnet_lite", **{**TINY, "scale": 2}), std=0.05).eval()
    with torch.no_grad():
        src.tail.weight.mul_(4)  # a live residual, so the equality below means something
    rep = build_generator("srresnet_lite", **{**TINY, "scale": 2, "kind_input": True, "num_blocks": 3, "reparam": True})
    rep.eval()
    transfer_weights(rep, src.state_dict())
    head = rep.head.conv3x3.weight
    assert head.shape[1] == 2 and not head[:, 1:].any()
    assert not rep.blocks[2].conv2.fused().weight.any() and rep.blocks[2].conv1.conv3x3.weight.any()
    x = torch.rand(2, 1, 20, 18)
    with torch.no_grad():
        y, z = _explicit(rep)(x, kind=torch.rand(2)), src(x)
    assert _max_diff(y, src.upsample(x)) > 1e-3
    assert _max_diff(y, z) < ATOL


def test_a_trained_warm_started_model_still_folds_exactly(shared_data):
    torch.manual_seed(0)
    src = _randomise(build_generator("srresnet_lite", **{**TINY, "scale": 2}), std=0.05)
    rep = build_generator("srresnet_lite", **{**TINY, "scale": 2, "kind_input": True, "reparam": True})
    transfer_weights(rep, src.state_dict())
    rep.kind.fitted.fill_(1)
    opt = torch.optim.Adam(rep.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(4)
    rep.train()
    for _ in range(3):
        x = torch.rand(2, 1, 16, 12, generator=g)
        loss = F.l1_loss(rep(x), torch.rand(2, 1, 32, 24, generator=g))
        opt.zero_grad()
        loss.backward()
        opt.step()
    rep.eval()
    block = rep.blocks[0].conv2
    for p in (block.conv1x1.weight, block.expand3x3.weight, block.edge_scale, block.identity_scale):
        assert p.abs().amax() > 1e-3  # the branches started at zero and have grown
    x = _slice(shared_data)
    with torch.no_grad():
        y, z = _explicit(rep)(x), fuse_model(rep)(x)
    assert _max_diff(y, z) < ATOL


def test_trunk_state_dict_of_a_reparam_model_starts_a_reparam_x4():
    x2 = _reparam_model({"scale": 2})
    trunk = x2.trunk_state_dict()
    assert "head.conv3x3.weight" in trunk and not any(k.startswith(("up.", "tail.")) for k in trunk)
    x4 = build_generator("srresnet_lite", **{**TINY, "scale": 4, "reparam": True})
    assert transfer_weights(x4, trunk) == len(trunk)
    assert torch.equal(x4.blocks[0].conv1.edge_scale, x2.blocks[0].conv1.edge_scale)  # branches kept, not zeroed


def _export(tmp_path, model, gen_kwargs):
    cfg = TrainConfig.from_dict({"out": str(tmp_path / "run"), "generator_kwargs": gen_kwargs, "scale": 2})
    path = export.export(model, cfg, "fidelity", step=3, validated_at_step=-1, metrics={},
                         data_card=sdata.describe([[]], [], cfg.data), kind_info={}, world=1)
    return path, read_card(path)


def test_export_of_a_reparam_model_writes_a_plain_model(tmp_path, shared_data):
    kw = {**TINY, "upsampler": "progressive", "kind_input": True}
    model = _reparam_model({**kw, "scale": 2})
    model.train()  # export must not depend on the EMA model's mode
    path, card = _export(tmp_path, model, {**kw, "reparam": True})
    assert "reparam" not in card["kwargs"]
    assert card["training"]["reparam"] == "fused from RepConv branches (ECB-style)"
    assert card["training"]["steps"] == 3  # the rest of the card as before
    plain = build_generator(card["arch"], **card["kwargs"])
    assert not any(isinstance(m, RepConv) for m in plain.modules())
    loaded, _ = load_weights(path)
    assert type(loaded) is SRResNetLite and not loaded.reparam
    assert card["parameters"] == sum(t.numel() for t in plain.state_dict().values())
    x = _slice(shared_data)
    model.eval()
    with torch.no_grad():
        assert _max_diff(loaded(x), _explicit(model)(x)) < ATOL


def test_export_of_a_plain_model_is_unchanged(tmp_path):
    model = build_generator("srresnet_lite", **{**TINY, "scale": 2})
    path, card = _export(tmp_path, model, dict(TINY))
    assert "reparam" not in card["training"] and card["kwargs"] == {**TINY, "scale": 2}
    loaded, _ = load_weights(path)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in loaded.state_dict().items())

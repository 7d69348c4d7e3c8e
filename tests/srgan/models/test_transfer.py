"""``srgan.models.transfer``: a generator started from a related one's weights computes what they compute."""
import torch

from srgan.models import GENERATORS, build_generator
from srgan.models.transfer import transfer_weights

TINY = GENERATORS["srresnet_lite"].TINY


def _trained(**kw):
    torch.manual_seed(0)
    m = build_generator("srresnet_lite", **{**TINY, "scale": 2, **kw})
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return m.eval()


def test_x4_from_x2_takes_everything_but_the_tail():
    src = _trained()
    x4 = build_generator("srresnet_lite", **{**TINY, "scale": 4})
    own = x4.state_dict()
    n = transfer_weights(x4, src.state_dict())
    same = [k for k, v in src.state_dict().items() if own[k].shape == v.shape]
    assert n == len(same) == len(own) - 2
    assert torch.equal(x4.state_dict()["head.weight"], src.state_dict()["head.weight"])


def test_the_lr_kind_plane_starts_at_zero():
    src = _trained()
    new = build_generator("srresnet_lite", **{**TINY, "scale": 2, "kind_input": True}).eval()
    assert transfer_weights(new, src.state_dict()) > 0
    head = new.state_dict()["head.weight"]
    assert head.shape[1] == 2 and torch.equal(head[:, :1], src.state_dict()["head.weight"]) and not head[:, 1:].any()
    x = torch.rand(1, 1, 20, 18)
    with torch.no_grad():
        assert torch.allclose(new(x, kind=torch.rand(1)), src(x), atol=1e-6)


def test_a_deeper_trunk_starts_with_identity_blocks():
    src = _trained()
    deep = build_generator("srresnet_lite", **{**TINY, "scale": 2, "num_blocks": 3}).eval()
    transfer_weights(deep, src.state_dict())
    assert not deep.blocks[2].conv2.weight.any() and deep.blocks[2].conv1.weight.any()
    x = torch.rand(1, 1, 20, 18)
    with torch.no_grad():
        assert torch.allclose(deep(x), src(x), atol=1e-6)


def test_nothing_fits_leaves_the_model_alone():
    seed = build_generator("seed", **{**GENERATORS["seed"].TINY, "scale": 2})
    before = {k: v.clone() for k, v in seed.state_dict().items()}
    assert transfer_weights(seed, {"unrelated.weight": torch.zeros(3)}) == 0
    assert all(torch.equal(before[k], v) for k, v in seed.state_dict().items())

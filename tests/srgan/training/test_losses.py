"""Losses: zero at equality, sensitive to blur, adversarial gradients go where they should, VGG19 loading."""
import pytest
import torch
import torch.nn.functional as F

from srgan import degrade
from srgan.errors import InputError
from srgan.training.losses import AdversarialLoss, ContentLoss, VGG19Features, fft_loss, gradient_loss


@pytest.fixture()
def pair():
    g = torch.Generator().manual_seed(0)
    hr = torch.rand(2, 1, 32, 32, generator=g)
    return hr, degrade.gaussian_blur(hr, 1.0)


def test_content_terms_vanish_at_equality_and_see_blur(pair):
    hr, blurred = pair
    for fn in (F.l1_loss, gradient_loss, fft_loss, ContentLoss("gradient+fft")):
        assert fn(hr, hr).item() == pytest.approx(0.0, abs=1e-7)
        assert fn(blurred, hr).item() > 1e-3
    assert ContentLoss("none")(blurred, hr).item() == 0.0
    # blur removes edges: the gradient term is larger for blur than for a same-L1 constant offset
    offset = hr + F.l1_loss(blurred, hr)
    assert gradient_loss(blurred, hr) > gradient_loss(offset, hr)


@pytest.mark.parametrize("kind", AdversarialLoss.KINDS)
def test_adversarial_losses_push_the_right_way(kind):
    adv = AdversarialLoss(kind)
    real, fake = torch.full((4, 1), 3.0), torch.full((4, 1), -3.0)
    assert adv.discriminator(real, fake) < adv.discriminator(fake, real)  # D is right → low loss
    assert adv.generator(real, fake) > adv.generator(fake, real)          # G fooled nobody → high loss
    real_g = torch.zeros(4, 1, requires_grad=True)
    fake_g = torch.zeros(4, 1, requires_grad=True)
    adv.generator(real_g, fake_g).backward()
    assert (fake_g.grad < 0).all()  # raising fake logits lowers the generator's loss
    if kind == "relativistic":
        assert real_g.grad is None  # real logits are constants for G
    with pytest.raises(ValueError):
        AdversarialLoss("wgan")


def test_vgg19_layout_loads_torchvision_keys(tmp_path):
    torch.manual_seed(0)
    ref = VGG19Features(last=7)  # up to conv2_2: small enough for a test
    state = {k: v for k, v in ref.state_dict().items()}
    assert sorted(state) == [f"features.{i}.{p}" for i in (0, 2, 5, 7) for p in ("bias", "weight")]
    state["classifier.0.weight"] = torch.zeros(3, 3)  # ignored
    torch.save(state, tmp_path / "vgg.pth")
    vgg = VGG19Features.from_checkpoint(tmp_path / "vgg.pth", last=7)
    x = torch.rand(2, 1, 32, 32)
    y = vgg(x)
    assert y.shape == (2, 128, 16, 16)
    assert torch.equal(y, ref(x))
    assert not any(p.requires_grad for p in vgg.parameters())


def test_vgg19_bad_checkpoints_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        VGG19Features.from_checkpoint(tmp_path / "missing.pth")
    (tmp_path / "junk.pth").write_bytes(b"junk" * 100)
    with pytest.raises(InputError, match="junk.pth"):
        VGG19Features.from_checkpoint(tmp_path / "junk.pth")
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(InputError, match="missing features.0"):
        VGG19Features.from_checkpoint(tmp_path / "other.pth", last=2)
    with pytest.raises(InputError, match="--vgg"):
        ContentLoss("vgg")
    with pytest.raises(ValueError):
        ContentLoss("lpips")


def test_vgg_content_loss_gives_gradients_to_sr_only(tmp_path):
    torch.save(VGG19Features(last=2).state_dict(), tmp_path / "vgg.pth")
    loss_fn = ContentLoss("vgg", vgg_path=tmp_path / "vgg.pth", vgg_layer=2)
    sr = torch.rand(1, 1, 16, 16, requires_grad=True)
    loss_fn(sr, torch.rand(1, 1, 16, 16)).backward()
    assert sr.grad is not None and sr.grad.abs().sum() > 0

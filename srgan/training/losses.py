"""Training losses: adversarial and content terms, none needing a download (the pixel loss is torch's L1 or MSE,
as ``TrainConfig.pixel_loss`` says).

All take batches ``(B, 1, H, W)`` in normalised units and return a scalar tensor (mean over the batch, so
averaging over DDP ranks of equal share equals the single-process loss of the global batch).

Content losses: ``gradient`` (L1 of finite differences: edges and texture direction) and ``fft`` (L1 of the
log-magnitude spectrum: high frequencies the L1 pixel loss averages away) work with no external weights;
``vgg`` uses VGG19 features from a state dict the user supplies (torchvision's layout, loaded with
``weights_only=True``) — the classic SRGAN perceptual loss, built here in plain torch.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from srgan.errors import InputError


class AdversarialLoss:
    """``bce``: standard GAN with logits; ``relativistic``: relativistic average GAN (ESRGAN), which asks
    whether real looks more real than fake on average and gives the generator gradients from real images too."""

    KINDS = ("bce", "relativistic")

    def __init__(self, kind: str = "relativistic"):
        if kind not in self.KINDS:
            raise ValueError(f"adversarial loss must be one of {self.KINDS}, not {kind!r}")
        self.kind = kind

    @staticmethod
    def _bce(logits: torch.Tensor, target: float) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))

    def discriminator(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """Loss of D given logits (B, 1) on real HR and on (detached) SR."""
        if self.kind == "bce":
            return 0.5 * (self._bce(real, 1.0) + self._bce(fake, 0.0))
        return 0.5 * (self._bce(real - fake.mean(), 1.0) + self._bce(fake - real.mean(), 0.0))

    def generator(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """Loss of G given logits on real HR (no gradient needed) and on SR (with gradient)."""
        if self.kind == "bce":
            return self._bce(fake, 1.0)
        real = real.detach()
        return 0.5 * (self._bce(real - fake.mean(), 0.0) + self._bce(fake - real.mean(), 1.0))


def gradient_loss(sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
    """L1 between horizontal and vertical finite differences."""
    dx = lambda t: t[..., :, 1:] - t[..., :, :-1]  # noqa: E731
    dy = lambda t: t[..., 1:, :] - t[..., :-1, :]  # noqa: E731
    return 0.5 * (F.l1_loss(dx(sr), dx(hr)) + F.l1_loss(dy(sr), dy(hr)))


def fft_loss(sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
    """L1 between log(1 + |FFT|) of SR and HR: weights all frequencies comparably, ignores phase (pixel loss has it)."""
    f = lambda t: torch.log1p(torch.fft.rfft2(t.float(), norm="ortho").abs())  # noqa: E731
    return F.l1_loss(f(sr), f(hr))


# torchvision's vgg19().features layout: numbers are conv widths, "M" max-pool; index 34 is conv5_4.
_VGG19 = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M")


class VGG19Features(nn.Module):
    """VGG19 ``features`` up to layer ``last`` (default 34: conv5_4 before its ReLU, as in ESRGAN), frozen.

    Gray input in [0, 1] is repeated to RGB and ImageNet-normalised. Parameter names match torchvision's
    ``features.N.weight`` so its state dict loads directly.
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, last: int = 34):
        super().__init__()
        layers: list[nn.Module] = []
        c = 3
        for v in _VGG19:
            if isinstance(v, str):  # "M"
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(c, v, 3, padding=1), nn.ReLU(inplace=False)]
                c = v
        self.features = nn.Sequential(*layers[: last + 1])
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    @classmethod
    def from_checkpoint(cls, path: str | Path, last: int = 34) -> VGG19Features:
        """Load a torchvision-layout VGG19 state dict (``features.*`` keys; classifier keys ignored)."""
        path = Path(path)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise InputError(path, "VGG19 checkpoint not found") from None
        except Exception as e:
            raise InputError(path, f"not a loadable VGG19 state dict ({type(e).__name__}: {e})") from None
        if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
            state = state["state_dict"]
        if not isinstance(state, dict):
            raise InputError(path, "VGG19 checkpoint holds no state dict")
        model = cls(last)
        wanted = model.state_dict().keys()
        picked = {k: v for k, v in state.items() if k in wanted}
        missing = sorted(set(wanted) - set(picked))
        if missing:
            raise InputError(
                path, f"not a torchvision VGG19 state dict: missing {missing[0]} and {len(missing) - 1} more"
            )
        model.load_state_dict(picked)
        return model.requires_grad_(False).eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features((x.expand(-1, 3, -1, -1) - self.mean) / self.std)


class ContentLoss(nn.Module):
    """Sum of the named content terms, e.g. ``"gradient+fft"``; ``"vgg"`` needs ``vgg_path``; ``"none"`` is 0."""

    TERMS = ("gradient", "fft", "vgg")

    def __init__(self, kind: str = "gradient+fft", vgg_path: str | Path | None = None, vgg_layer: int = 34):
        super().__init__()
        self.terms = [t for t in kind.split("+") if t and t != "none"]
        for t in self.terms:
            if t not in self.TERMS:
                raise ValueError(f"unknown content loss {t!r}; known: {', '.join(self.TERMS)}, none")
        self.vgg: VGG19Features | None = None
        if "vgg" in self.terms:
            if not vgg_path:
                raise InputError(None, "content loss 'vgg' needs --vgg PATH (a torchvision VGG19 state dict)")
            self.vgg = VGG19Features.from_checkpoint(vgg_path, vgg_layer)

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        total = sr.new_zeros(())
        for t in self.terms:
            if t == "gradient":
                total = total + gradient_loss(sr, hr)
            elif t == "fft":
                total = total + fft_loss(sr, hr)
            else:
                assert self.vgg is not None  # built in __init__ when "vgg" is a term
                total = total + F.l1_loss(self.vgg(sr), self.vgg(hr).detach())
        return total

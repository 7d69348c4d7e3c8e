"""``srgan train``: one readable loop. Stage 1 pre-trains the generator on L1; stage 2 adds a discriminator
(pixel + content + adversarial). An EMA of the generator is what gets validated and exported.

  srgan train --data shared/data/kaggle-brain-tumor-mri shared/data/brainles-examples --scale 2 --out runs/x2
  srgan train --out runs/x2 --resume                       # continue exactly where it stopped
  torchrun --nproc_per_node 2 -m srgan.training.train --data ...    # DDP: the global batch is split across ranks

Exactness: batch ``step`` is a pure function of (seed, step) (see ``srgan.training.data.PatchSampler``), every piece of
state lives in one checkpoint loaded with ``weights_only=True``, so a run stopped and resumed ends with the same
weights as one that never stopped, and N ranks over B/N samples each match one process over B.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import os
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from srgan.io import atomic
from srgan.errors import InputError

if TYPE_CHECKING:
    from srgan.training.data import DataConfig
    from srgan.degrade import DegradationConfig

CKPT = "ckpt.pt"


def _data_config(**kw):
    from srgan.training.data import DataConfig  # imports torch: kept out of `srgan train --help`
    return DataConfig(**kw)


def _degradation_config(**kw):
    from srgan.degrade import DegradationConfig
    return DegradationConfig(**kw)


@dataclass
class TrainConfig:
    """Everything a run depends on; saved as ``config.json`` in the run folder and inside every checkpoint.

    ``batch_size`` is the global batch (split across DDP ranks); ``patch_size`` is the HR patch side in px.
    Learning rates follow a linear warm-up then cosine decay to ``lr_min_ratio`` within each stage;
    stage 2 starts the generator at ``lr * stage2_lr_ratio``.
    """
    generator: str = "srresnet_lite"
    generator_kwargs: dict = field(default_factory=dict)
    discriminator: str = "pooled"
    discriminator_kwargs: dict = field(default_factory=dict)
    scale: int = 2
    data: DataConfig = field(default_factory=_data_config)
    degradation: DegradationConfig = field(default_factory=_degradation_config)
    patch_size: int = 96
    batch_size: int = 16
    lr: float = 2e-4
    lr_d: float = 1e-4
    stage2_lr_ratio: float = 0.5
    lr_min_ratio: float = 0.05
    warmup_steps: int = 100
    grad_clip: float = 1.0
    stage1_steps: int = 2000
    stage2_steps: int = 0
    # "mse" fine-tunes for PSNR, which is a mean-squared error; L1 trains better from scratch (sharper, steadier)
    pixel_loss: str = "l1"
    w_pixel: float = 1.0
    w_content: float = 0.1
    w_adv: float = 5e-3
    content: str = "gradient+fft"
    adversarial: str = "relativistic"
    vgg: str | None = None
    ema_decay: float = 0.999
    seed: int = 0
    device: str = "auto"
    out: str = "runs/train"
    name: str = ""
    log_every: int = 10
    val_every: int = 250
    ckpt_every: int = 250
    init_from: str | None = None
    time_budget_min: float = 0.0
    stop_after: int = 0
    num_threads: int = 0

    def __post_init__(self):
        if isinstance(self.data, dict):
            self.data = _data_config(**self.data)
        if isinstance(self.degradation, dict):
            self.degradation = _degradation_config(**self.degradation)
        self.degradation.scale = self.scale
        self.degradation.validate()
        if self.patch_size % self.scale:
            raise ValueError(f"patch_size {self.patch_size} must be a multiple of scale {self.scale}")
        if self.pixel_loss not in ("l1", "mse"):
            raise ValueError(f"pixel_loss must be l1 or mse, not {self.pixel_loss!r}")
        if self.device not in ("auto", "cpu", "cuda", "mps"):
            raise ValueError(f"device must be auto, cpu, cuda or mps, not {self.device!r}")

    @property
    def total_steps(self) -> int:
        return self.stage1_steps + self.stage2_steps

    @property
    def weights_name(self) -> str:
        return self.name or f"brainsr-x{self.scale}"

    def as_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown config keys: {', '.join(unknown)}")
        return cls(**d)


# ---------------------------------------------------------------- helpers


def lr_factor(cfg: TrainConfig, step: int) -> float:
    """Multiplier of the generator's base lr at global ``step``: warm-up + cosine per stage."""
    in_stage2 = step >= cfg.stage1_steps
    t = step - cfg.stage1_steps if in_stage2 else step
    n = cfg.stage2_steps if in_stage2 else cfg.stage1_steps
    warm = min(1.0, (t + 1) / max(1, cfg.warmup_steps))
    cos = cfg.lr_min_ratio + (1 - cfg.lr_min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, t / max(1, n))))
    return warm * cos * (cfg.stage2_lr_ratio if in_stage2 else 1.0)


def lr_factor_d(cfg: TrainConfig, t: int) -> float:
    """Multiplier of the discriminator's lr after ``t`` D steps (D only trains in stage 2): cosine."""
    return cfg.lr_min_ratio + (1 - cfg.lr_min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, t / max(1, cfg.stage2_steps))))


def ema_update(decay: float):
    """EMA step for ``AveragedModel`` with the usual warm-up: decay min(decay, (1 + n)/(10 + n)) at update n,
    so short runs are not dominated by the initial (bicubic-equivalent) weights."""
    import torch

    @torch.no_grad()
    def update(ema_params, params, n_averaged):
        d = min(decay, (1.0 + float(n_averaged)) / (10.0 + float(n_averaged)))
        if torch.is_floating_point(ema_params[0]):
            torch._foreach_lerp_(ema_params, params, 1.0 - d)
        else:  # integer buffers (BatchNorm's batch count): keep the latest
            for e, p in zip(ema_params, params):
                e.copy_(p)

    return update


def pick_device(name: str):
    import torch
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError(None, "--device cuda asked for, but torch sees no CUDA GPU")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise InputError(None, "--device mps asked for, but this torch build has no MPS support")
    return torch.device(name)


def atomic_torch_save(obj, path: Path) -> None:
    import torch
    with atomic.atomic_path(path) as tmp:
        torch.save(obj, tmp)


def rng_state() -> dict:
    """RNG states as tensors / strings / ints so the checkpoint loads with ``weights_only=True``."""
    import numpy as np
    import torch
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "numpy": json.dumps([name, keys.tolist(), pos, has_gauss, gauss]),
             "python": json.dumps(random.getstate())}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    import numpy as np
    import torch
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, gauss = json.loads(state["numpy"])
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    py = json.loads(state["python"])
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def psnr(x, y) -> float:
    """PSNR in dB for normalised images (data range 1)."""
    import torch
    mse = torch.mean((x.double() - y.double()) ** 2).item()
    return 10 * math.log10(1.0 / max(mse, 1e-12))


# ---------------------------------------------------------------- distributed


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device_name: str) -> Dist:
    """Read torchrun's RANK/WORLD_SIZE/LOCAL_RANK; gloo on CPU, nccl on CUDA."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch
    import torch.distributed as dist
    d = Dist(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    cuda = device_name in ("cuda", "auto") and torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(d.local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    return d


# ---------------------------------------------------------------- the run


class Trainer:
    """Builds models, optimisers and data from a ``TrainConfig`` and runs the loop; rank 0 writes everything."""

    def __init__(self, cfg: TrainConfig, *, resume: bool = False):
        import torch
        from torch.optim.swa_utils import AveragedModel

        from srgan.training import data as sdata
        from srgan.training.losses import AdversarialLoss, ContentLoss
        from srgan.models import build_discriminator, build_generator

        self.cfg = cfg
        if cfg.num_threads:
            torch.set_num_threads(cfg.num_threads)
        self.dist = init_distributed(cfg.device)
        if cfg.batch_size % self.dist.world:
            raise InputError(None, f"batch size {cfg.batch_size} is not divisible by the {self.dist.world} DDP ranks")
        self.device = (torch.device("cuda", self.dist.local_rank)
                       if self.dist.enabled and cfg.device in ("auto", "cuda") and torch.cuda.is_available()
                       else pick_device(cfg.device))
        self.run_dir = Path(cfg.out)
        if not resume and (self.run_dir / CKPT).exists():  # every rank checks, so none waits for a dead one
            raise InputError(self.run_dir, "holds a training run already: pass --resume to continue it, "
                                           "or choose another --out")
        if self.dist.main:
            self.run_dir.mkdir(parents=True, exist_ok=True)

        torch.manual_seed(cfg.seed)
        random.seed(cfg.seed)
        gk = {**cfg.generator_kwargs, "scale": cfg.scale}
        self.G = build_generator(cfg.generator, **gk).to(self.device)
        dk = dict(cfg.discriminator_kwargs)
        if cfg.discriminator == "seed":
            dk.setdefault("patch_size", cfg.patch_size)
        self.D = build_discriminator(cfg.discriminator, **dk).to(self.device)
        self.kind_info: dict = {}  # how the LR-kind detector was fitted and how well it does, for the card
        if cfg.init_from and not resume:
            self._init_from(cfg.init_from)
        self.ema = AveragedModel(self.G, multi_avg_fn=ema_update(cfg.ema_decay), use_buffers=True)
        self.ema.eval()
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=cfg.lr, betas=(0.9, 0.99))
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=cfg.lr_d, betas=(0.9, 0.99))
        self.sched_g = torch.optim.lr_scheduler.LambdaLR(self.opt_g, lambda s: lr_factor(cfg, s))
        self.sched_d = torch.optim.lr_scheduler.LambdaLR(self.opt_d, lambda s: lr_factor_d(cfg, s))
        self.adv = AdversarialLoss(cfg.adversarial)
        self.content = ContentLoss(cfg.content if cfg.stage2_steps else "none", cfg.vgg).to(self.device)
        self.step = 0
        self.metrics: dict = {}
        self.best: dict = {}  # {"gain_db", "step"} of the best stage-1 validation so far
        self.elapsed_before = 0.0

        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.G_ddp = DDP(self.G, device_ids=ids)
            self.D_ddp = DDP(self.D, device_ids=ids)
        else:
            self.G_ddp, self.D_ddp = self.G, self.D

        self.train_items, self.val_items = sdata.load_datasets(cfg.data, scale=cfg.scale, patch_size=cfg.patch_size,
                                                               seed=cfg.seed)
        self.data_card = sdata.describe(self.train_items, self.val_items, cfg.data)
        base = getattr(self.G, "base", None)  # a global interpolation (zero-fill) must come from the whole slice
        if resume:
            self.load_checkpoint(self.run_dir / CKPT)
        detector = getattr(self.G, "kind", None)
        if detector is not None and not bool(detector.fitted):
            self._fit_kind_detector(detector)
        self.sampler = sdata.PatchSampler(self.train_items, patch_size=cfg.patch_size, degradation=cfg.degradation,
                                          seed=cfg.seed, cfg=cfg.data, base=base, kind_detector=detector)
        self.val_set = (sdata.validation_set(self.val_items, scale=cfg.scale, cfg=cfg.data, base=base,
                                             kind_detector=detector) if self.dist.main else [])
        if detector is not None and self.dist.main:
            self.kind_info["val_accuracy"] = _kind_accuracy(self.val_set)
            print(f"LR-kind detector: {self.kind_info}")

    def _fit_kind_detector(self, detector) -> None:
        """Fit the generator's LR-kind detector on whole training planes (every rank alike: same seed), before
        the sampler uses it, and copy it into the EMA model."""
        from srgan.training import data as sdata
        feats, labels = sdata.kind_examples(self.train_items, degradation=self.cfg.degradation, cfg=self.cfg.data,
                                            seed=self.cfg.seed)
        acc = detector.fit(feats, labels)
        self.ema.module.kind.load_state_dict(detector.state_dict())
        self.kind_info = {"fitted_on_planes": len(labels) // 2, "train_accuracy": round(acc, 4)}

    def _init_from(self, path: str) -> None:
        """Start G from saved weights; tensors whose shape differs (e.g. a ×2 tail for a ×4 model) are skipped,
        except convolutions that gained input channels (the LR-kind plane): zero weights there keep the function.
        Residual blocks the weights do not have (a deeper trunk) start as the identity (last convolution zeroed), so
        a deeper model starts with the shallower one's function."""
        import torch
        from srgan.models.srresnet_lite import ResidualBlock
        from srgan.models.weights import load_weights
        model, card = load_weights(path)
        own = self.G.state_dict()
        src = {}
        for k, v in model.state_dict().items():
            if k not in own:
                continue
            o = own[k]
            if o.shape == v.shape:
                src[k] = v
            elif o.ndim == 4 and v.ndim == 4 and o.shape[0] == v.shape[0] and o.shape[2:] == v.shape[2:] \
                    and o.shape[1] > v.shape[1]:
                src[k] = torch.cat([v, v.new_zeros(v.shape[0], o.shape[1] - v.shape[1], *v.shape[2:])], dim=1)
        if not src:
            raise InputError(path, f"no tensor fits generator {self.cfg.generator} (weights are {card.get('arch')})")
        self.G.load_state_dict(src, strict=False)
        with torch.no_grad():
            for name, module in self.G.named_modules():
                if isinstance(module, ResidualBlock) and not any(k.startswith(name + ".") for k in src):
                    module.conv2.weight.zero_()
                    module.conv2.bias.zero_()
        own_kind = getattr(self.G, "kind", None)
        if own_kind is not None and bool(own_kind.fitted) and "kind_detector" in card:
            self.kind_info = {**card["kind_detector"], "fitted_in": card.get("name", str(path))}
        if self.dist.main:
            print(f"initialised {len(src)}/{len(own)} generator tensors from {path}")

    # ------------------------------------------------------------ checkpoints

    def checkpoint(self) -> dict:
        return {"format": "brainsr-train-1", "config": self.cfg.as_dict(), "step": self.step,
                "G": self.G.state_dict(), "D": self.D.state_dict(), "ema": self.ema.state_dict(),
                "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
                "sched_g": self.sched_g.state_dict(), "sched_d": self.sched_d.state_dict(),
                "rng": rng_state(), "metrics": json.dumps(self.metrics), "best": json.dumps(self.best),
                "kind_info": json.dumps(self.kind_info),
                "elapsed_s": self.elapsed_before + (time.time() - self.t0 if hasattr(self, "t0") else 0.0)}

    def save_checkpoint(self) -> None:
        if self.dist.main:
            atomic_torch_save(self.checkpoint(), self.run_dir / CKPT)

    def load_checkpoint(self, path: Path) -> None:
        import torch
        if not path.is_file():
            raise InputError(path, "no training checkpoint to resume from")
        try:
            ck = torch.load(path, map_location=self.device, weights_only=True)
        except Exception as e:
            raise InputError(path, f"not a readable training checkpoint ({type(e).__name__}: {e})") from None
        self.G.load_state_dict(ck["G"])
        self.D.load_state_dict(ck["D"])
        self.ema.load_state_dict(ck["ema"])
        self.opt_g.load_state_dict(ck["opt_g"])
        self.opt_d.load_state_dict(ck["opt_d"])
        self.sched_g.load_state_dict(ck["sched_g"])
        self.sched_d.load_state_dict(ck["sched_d"])
        set_rng_state({k: (v.cpu() if k == "torch" else v) for k, v in ck["rng"].items()})
        self.step = int(ck["step"])
        self.metrics = json.loads(ck.get("metrics", "{}"))
        self.best = json.loads(ck.get("best", "{}"))
        self.kind_info = json.loads(ck.get("kind_info", "{}"))
        self.elapsed_before = float(ck.get("elapsed_s", 0.0))
        if self.dist.main:
            print(f"resumed {path} at step {self.step}")

    # ------------------------------------------------------------ validation and export

    def validate(self) -> dict:
        """PSNR (normalised units) of the EMA generator and of bicubic on the held-out pairs, per LR kind."""
        import torch

        from srgan.degrade import bicubic_up
        if not self.val_set:
            return {}
        model = self.ema.module
        rows: dict[str, list] = {}
        with torch.no_grad():
            for v in self.val_set:
                extra = {k: v[key].to(self.device) for k, key in (("base", "base"), ("kind", "kind_p")) if key in v}
                sr = model(v["lr"].to(self.device), **extra).float().cpu()
                rows.setdefault(v["kind"], []).append((psnr(sr, v["hr"]), psnr(bicubic_up(v["lr"], self.cfg.scale), v["hr"])))
        out = {}
        for kind, r in rows.items():
            m, b = (sum(x[i] for x in r) / len(r) for i in (0, 1))
            out[kind] = {"psnr": round(m, 4), "psnr_bicubic": round(b, 4), "gain_db": round(m - b, 4), "n": len(r)}
        return out

    def export(self, kind: str) -> Path | None:
        """EMA generator → ``<out>/<name>-<kind>.safetensors`` + card (rank 0 only)."""
        from srgan.models.weights import save_weights
        if not self.dist.main:
            return None
        cfg = self.cfg
        adversarial = kind.startswith("gan")  # "gan" or "gan-partial" (stopped early in stage 2)
        card = {
            "arch": cfg.generator,
            "kwargs": {**cfg.generator_kwargs, "scale": cfg.scale},
            "scale": cfg.scale,
            "kind": kind,
            "name": f"{cfg.weights_name}-{kind}",
            "data": self.data_card,
            "degradation": cfg.degradation.as_dict(),
            "metrics": {"step": self.step, "validated_at_step": getattr(self, "val_step", -1),
                        "validation": self.metrics,
                        "note": "PSNR in normalised units on held-out crops (data range 1)"},
            **({"kind_detector": self.kind_info} if self.kind_info else {}),
            "normalisation": {"method": "percentile", "p_low": 0.5, "p_high": 99.5,
                              "fit_on": "each LR input image / slice, applied to input and inverted on output"},
            "training": {"steps": self.step, "stage1_steps": cfg.stage1_steps, "stage2_steps": cfg.stage2_steps,
                         "ema_decay": cfg.ema_decay, "seed": cfg.seed, "patch_size": cfg.patch_size,
                         "batch_size": cfg.batch_size, "world_size": self.dist.world,
                         "losses": {"pixel": cfg.pixel_loss, "content": cfg.content if adversarial else "none",
                                    "adversarial": cfg.adversarial if adversarial else "none",
                                    "w_pixel": cfg.w_pixel, "w_content": cfg.w_content, "w_adv": cfg.w_adv}},
        }
        path = save_weights(self.run_dir / f"{cfg.weights_name}-{kind}", self.ema.module, card)
        print(f"exported {path}")
        return path

    # ------------------------------------------------------------ the loop

    def train_step(self) -> dict:
        """One optimisation step on global batch ``self.step``; returns this rank's loss values."""
        import torch
        cfg, d = self.cfg, self.dist
        lr, hr, params, base, kind = self.sampler.batch(self.step, range(d.rank, cfg.batch_size, d.world))
        lr, hr = lr.to(self.device), hr.to(self.device)
        stage2 = self.step >= cfg.stage1_steps
        self.G_ddp.train()
        extra = {k: t.to(self.device) for k, t in (("base", base), ("kind", kind)) if t is not None}
        sr = self.G_ddp(lr, **extra)
        logs = {}
        if stage2:
            self.D_ddp.train()
            # real and fake in one forward: one DDP reduction per step (BN, in the seed D, sees both)
            d_real, d_fake = self.D_ddp(torch.cat([hr, sr.detach()])).split(len(hr))
            d_real, d_fake = self._global(d_real), self._global(d_fake)
            loss_d = self.adv.discriminator(d_real, d_fake)
            self.opt_d.zero_grad(set_to_none=True)
            (loss_d * d.world).backward()
            self.opt_d.step()
            self.sched_d.step()
            logs.update(loss_d=loss_d.item(), d_real=d_real.mean().item(), d_fake=d_fake.mean().item())
        loss_pix = (torch.nn.functional.mse_loss if cfg.pixel_loss == "mse" else torch.nn.functional.l1_loss)(sr, hr)
        loss = cfg.w_pixel * loss_pix
        logs["loss_pixel"] = loss_pix.item()
        if stage2:
            self.D.requires_grad_(False)
            loss_c = self.content(sr, hr)
            g_real, g_fake = self.D(torch.cat([hr, sr])).split(len(hr))
            loss_a = self.adv.generator(self._global(g_real), self._global(g_fake))
            self.D.requires_grad_(True)
            loss = loss + cfg.w_content * loss_c + cfg.w_adv * d.world * loss_a
            logs.update(loss_content=loss_c.item(), loss_adv=loss_a.item())
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.G.parameters(), cfg.grad_clip)
        self.opt_g.step()
        self.sched_g.step()
        self.ema.update_parameters(self.G)
        logs["lr"] = self.opt_g.param_groups[0]["lr"]
        n = len(params)  # what the batch's degradations were (each one is reproducible from seed, step, index)
        logs["deg_kspace"] = sum(p["kind"] == "kspace" for p in params) / n
        logs["deg_blur"] = sum(p["blur_sigma"] > 0 for p in params) / n
        logs["deg_noise"] = sum(p["noise_sigma"] > 0 for p in params) / n
        return logs

    def _global(self, logits):
        """Logits of the whole global batch, gradients flowing only into this rank's part.

        The relativistic loss compares each sample with the batch mean, so it is not a sum over samples;
        computing it on the gathered batch (times the world size, since DDP averages gradients) gives every
        rank's parameters exactly the single-process gradient. For BCE it changes nothing.
        """
        if not self.dist.enabled:
            return logits
        import torch
        import torch.distributed as dist
        parts = [torch.empty_like(logits) for _ in range(self.dist.world)]
        dist.all_gather(parts, logits.detach().contiguous())
        parts[self.dist.rank] = logits
        return torch.cat(parts)

    def _all_mean(self, logs: dict) -> dict:
        if not self.dist.enabled:
            return logs
        import torch
        import torch.distributed as dist
        keys = list(logs)  # same order on every rank: same code path
        t = torch.tensor([float(logs[k]) for k in keys], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return {k: v / self.dist.world for k, v in zip(keys, t.tolist())}

    def _agree(self, flag: bool) -> bool:
        """Rank 0's decision, shared so every rank stops at the same step."""
        if not self.dist.enabled:
            return flag
        import torch
        import torch.distributed as dist
        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.broadcast(t, 0)
        return bool(t.item())

    def _keep_best(self) -> None:
        """Stage 1: export the EMA generator as ``<name>-fidelity-best`` whenever its mean validation gain over
        bicubic is the best so far; the last step is not always the best (a ×4 run peaked at step 1000 of 2200
        and lost 0.2 dB by the end)."""
        if not self.metrics or self.step > self.cfg.stage1_steps:
            return
        gain = sum(m["gain_db"] for m in self.metrics.values()) / len(self.metrics)
        if gain > self.best.get("gain_db", -math.inf):
            self.best = {"gain_db": round(gain, 4), "step": self.step}
            self.export("fidelity-best")

    def _validate_and_log(self, val_csv, tb, bar) -> None:
        self.metrics = self.validate()
        self.val_step = self.step
        self._keep_best()
        for kind, m in self.metrics.items():
            val_csv.write({"step": self.step, "kind": kind, **m})
            if tb:
                for k in ("psnr", "psnr_bicubic", "gain_db"):
                    tb.add_scalar(f"val_{kind}/{k}", m[k], self.step)
        if self.metrics:
            (bar.write if bar else print)(f"step {self.step}: " + "; ".join(
                f"{k} {m['psnr']:.2f} dB (bicubic {m['psnr_bicubic']:.2f}, gain {m['gain_db']:+.2f})"
                for k, m in self.metrics.items()))

    def _catch_signals(self) -> None:
        """First Ctrl-C / SIGTERM: finish the step, checkpoint, export, exit 0. A second Ctrl-C aborts."""
        import signal
        import threading
        self._signal = None
        self._old_handlers = {}
        if threading.current_thread() is not threading.main_thread():
            return

        def handler(signum, frame):
            if self._signal and signum == signal.SIGINT:
                raise KeyboardInterrupt
            self._signal = signal.Signals(signum).name
            print(f"\n{self._signal}: stopping after this step (Ctrl-C again to abort)", file=sys.stderr)

        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old_handlers[sig] = signal.signal(sig, handler)

    def _restore_signals(self) -> None:
        import signal
        for sig, h in self._old_handlers.items():
            signal.signal(sig, h)

    def run(self) -> int:
        from tqdm import tqdm
        cfg, main = self.cfg, self.dist.main
        self.t0 = time.time()
        self.val_step = -1
        self._catch_signals()
        start_step = self.step
        log_csv = val_csv = tb = None
        if main:
            atomic.write_text(self.run_dir / "config.json", json.dumps(cfg.as_dict(), indent=2) + "\n")
            atomic.write_text(self.run_dir / "data.json", json.dumps(self.data_card, indent=2) + "\n")
            log_csv = _CsvLog(self.run_dir / "log.csv", self.step)
            val_csv = _CsvLog(self.run_dir / "val.csv", self.step)
            try:
                from torch.utils.tensorboard import SummaryWriter
                tb = SummaryWriter(str(self.run_dir / "tb"))
            except ImportError:
                print("tensorboard not installed: logging to CSV only (pip install tensorboard)")
            print(f"training {cfg.generator} x{cfg.scale} on {self.device} "
                  f"({self.dist.world} process{'es' if self.dist.world > 1 else ''}); "
                  f"data {self.data_card['train_items']} train items, {self.data_card['val_items']} held out; "
                  f"run folder {self.run_dir}")
        bar = tqdm(total=cfg.total_steps, initial=self.step, disable=not main, mininterval=5, dynamic_ncols=True)
        reason = "finished"
        t_last, s_last = time.time(), self.step
        try:
            while self.step < cfg.total_steps:
                logs = self.train_step()
                self.step += 1
                bar.update(1)
                at_stage_end = self.step == cfg.stage1_steps or self.step == cfg.total_steps
                if self.step % cfg.log_every == 0 or at_stage_end:
                    logs = self._all_mean(logs)
                    now = time.time()
                    logs["samples_per_s"] = (self.step - s_last) * cfg.batch_size / max(1e-9, now - t_last)
                    t_last, s_last = now, self.step
                    if main:
                        row = {"step": self.step, "stage": 2 if self.step > cfg.stage1_steps else 1,
                               "elapsed_s": round(self.elapsed_before + now - self.t0, 2), **logs}
                        log_csv.write(row)
                        for k, v in logs.items():
                            tb and tb.add_scalar(f"train/{k}", v, self.step)
                        bar.set_postfix(loss=f"{logs['loss_pixel']:.4f}", sps=f"{logs['samples_per_s']:.1f}")
                if main and (self.step % cfg.val_every == 0 or at_stage_end):
                    self._validate_and_log(val_csv, tb, bar)
                if self.step == cfg.stage1_steps and cfg.stage1_steps:
                    self.export("fidelity")
                if self.step % cfg.ckpt_every == 0 or at_stage_end:
                    self.save_checkpoint()
                over_time = cfg.time_budget_min and (time.time() - self.t0) > 60 * cfg.time_budget_min
                stop_here = cfg.stop_after and self.step - start_step >= cfg.stop_after
                if self.step < cfg.total_steps and self._agree(bool(over_time or stop_here or self._signal)):
                    reason = ("time budget reached" if over_time else f"stopped after {cfg.stop_after} steps"
                              if stop_here else f"stopped by {self._signal}")
                    break
        finally:
            bar.close()
            self._restore_signals()
        if main and reason != "finished" and self.step != self.val_step:
            self._validate_and_log(val_csv, tb, None)
        self.save_checkpoint()
        if self.step == cfg.total_steps and cfg.stage2_steps:
            self.export("gan")
        elif self.step < cfg.total_steps and main:
            if self.step >= cfg.stage1_steps and self.step > 0 and cfg.stage2_steps:
                self.export("gan-partial")
            elif self.step < cfg.stage1_steps:
                self.export("fidelity-partial")
        if main:
            log_csv.close()
            val_csv.close()
            if tb:
                tb.close()
            note = "" if reason == "finished" else f"; continue with: srgan train --out {self.run_dir} --resume"
            print(f"{reason} at step {self.step}/{cfg.total_steps}{note}")
        return 0


class _CsvLog:
    """Append-only CSV whose header grows with new columns (stage 2 adds loss terms): rewrites on a new key."""

    def __init__(self, path: Path, upto_step: int):
        """Open ``path``, dropping rows after ``upto_step`` (written after the checkpoint a run resumes from)."""
        self.path = path
        self.rows: list[dict] = []
        if path.exists():
            with open(path, newline="") as f:
                rows = list(csv.DictReader(f))
            self.rows = [r for r in rows if int(r["step"]) <= upto_step]
        self.keys: list[str] = list(self.rows[0].keys()) if self.rows else []
        if path.exists():
            self._rewrite()

    def _rewrite(self) -> None:
        with open(self.path, "w", newline="") as f:
            w = csv.DictWriter(f, self.keys)
            w.writeheader()
            w.writerows(self.rows)

    def write(self, row: dict) -> None:
        row = {k: (round(v, 6) if isinstance(v, float) else v) for k, v in row.items()}
        self.rows.append(row)
        new = [k for k in row if k not in self.keys]
        if new or not self.path.exists():
            self.keys += new
            self._rewrite()
        else:
            with open(self.path, "a", newline="") as f:
                csv.DictWriter(f, self.keys).writerow(row)

    def close(self) -> None:
        pass


# ---------------------------------------------------------------- CLI


def _parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="srgan train", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="Any config field, nested ones too: --set degradation.p_noise=0.5 "
                                        "--set data.slice_axes=[2]. Precedence: defaults < --config < flags.")
    a = ap.add_argument
    a("--config", help="JSON file of TrainConfig fields (e.g. a run's config.json)")
    a("--resume", action="store_true", help="continue the run in --out from its checkpoint (flags given override)")
    a("--out", help="run folder: config.json, log.csv, val.csv, tb/, ckpt.pt, exported weights (default runs/train)")
    a("--data", nargs="+", metavar="PATH", help="HR sources: image folders, NIfTI files/folders, DICOM folders")
    a("--scale", type=int, choices=(2, 3, 4))
    a("--generator", help="generator name (srgan.models.GENERATORS; default srresnet_lite)")
    a("--generator-kwargs", type=json.loads, metavar="JSON", help='e.g. \'{"channels": 48, "num_blocks": 12}\'')
    a("--discriminator", help="discriminator name (default pooled)")
    a("--discriminator-kwargs", type=json.loads, metavar="JSON")
    a("--patch-size", type=int, help="HR patch side in px (multiple of the scale; default 96)")
    a("--batch-size", type=int, help="global batch, split across DDP ranks (default 16)")
    a("--lr", type=float, help="generator learning rate (default 2e-4)")
    a("--lr-d", type=float, help="discriminator learning rate (default 1e-4)")
    a("--stage1-steps", type=int, help="L1 pre-training steps (default 2000)")
    a("--stage2-steps", type=int, help="adversarial steps (default 0: fidelity model only)")
    a("--content", help="content loss: gradient, fft, vgg, none or a sum like gradient+fft (default)")
    a("--adversarial", choices=("bce", "relativistic"))
    a("--vgg", metavar="PATH", help="torchvision-layout VGG19 state dict for --content vgg")
    a("--ema-decay", type=float)
    a("--seed", type=int)
    a("--device", choices=("auto", "cpu", "cuda", "mps"))
    a("--name", help="weights name prefix (default brainsr-x<scale>)")
    a("--init", dest="init_from", metavar="WEIGHTS", help="start the generator from saved weights (.safetensors)")
    a("--time-budget", dest="time_budget_min", type=float, metavar="MIN",
      help="stop cleanly (checkpoint + export) after this many minutes")
    a("--stop-after", type=int, metavar="N", help="stop cleanly after N steps of this invocation")
    a("--num-threads", type=int, help="torch CPU threads (0 = torch's default)")
    a("--log-every", type=int)
    a("--val-every", type=int)
    a("--ckpt-every", type=int)
    a("--set", action="append", default=[], metavar="KEY=VALUE", help="set any field, JSON value")
    return ap


def _kind_accuracy(val_set: list[dict]) -> float | None:
    """How often the LR-kind detector is right on the whole held-out slices (None without one)."""
    pairs = [(float(v["kind_p"][0]) > 0.5, v["kind"] == "kspace") for v in val_set if "kind_p" in v]
    return round(sum(a == b for a, b in pairs) / len(pairs), 4) if pairs else None


def config_from_args(args, base: dict | None = None) -> TrainConfig:
    d = dict(base or {})
    if args.config:
        try:
            d.update(json.loads(Path(args.config).read_text()))
        except (OSError, json.JSONDecodeError) as e:
            raise InputError(args.config, f"not a readable JSON config ({e})") from None
    flat = {k: v for k, v in vars(args).items()
            if v is not None and k not in ("config", "resume", "set", "data")}
    d.update(flat)
    if args.data:
        d.setdefault("data", {})
        d["data"] = {**(d["data"] if isinstance(d["data"], dict) else asdict(d["data"])), "sources": args.data}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise InputError(None, f"--set needs KEY=VALUE, got {item!r}")
        parts = key.split(".")
        target = d
        for p in parts[:-1]:
            target = target.setdefault(p, {})
        target[parts[-1]] = _parse_value(value)
    try:
        return TrainConfig.from_dict(d)
    except (TypeError, ValueError) as e:
        raise InputError(args.config, f"invalid training configuration: {e}") from None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        base = None
        if args.resume:
            import torch
            out = Path(args.out or "runs/train")
            ck = out / CKPT
            if not ck.is_file():
                raise InputError(ck, "no training checkpoint to resume from")
            base = torch.load(ck, map_location="cpu", weights_only=True)["config"]
            base["stop_after"] = 0  # run control, not part of the run: a resumed run goes on unless told
        cfg = config_from_args(args, base)
        trainer = Trainer(cfg, resume=args.resume)
        return trainer.run()
    except InputError as e:
        print(f"srgan train: {e}", file=sys.stderr)
        return 2
    finally:
        import torch.distributed as dist
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())

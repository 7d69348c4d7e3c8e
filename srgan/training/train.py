"""``srgan train``: one readable loop. Stage 1 pre-trains the generator on L1; stage 2 adds a discriminator
(pixel + content + adversarial). An EMA of the generator is what gets validated and exported.

  srgan train --data shared/data/kaggle-brain-tumor-mri shared/data/brainles-examples --scale 2 --out runs/x2
  srgan train --out runs/x2 --resume                       # continue exactly where it stopped
  torchrun --nproc_per_node 2 -m srgan.train --data ...    # DDP: the global batch is split across ranks

Exactness: batch ``step`` is a pure function of (seed, step) (see ``srgan.training.data.PatchSampler``), every piece of
state lives in one checkpoint loaded with ``weights_only=True``, so a run stopped and resumed ends with the same
weights as one that never stopped, and N ranks over B/N samples each match one process over B.

The loop is ``train`` below; what it calls lives beside it: ``config`` (``TrainConfig`` and the command line),
``data`` (patches, validation set, the LR-kind detector's fitting), ``losses``, ``distributed`` (torchrun's
processes, device), ``checkpoint``, ``logs``, ``validation``, ``export``, ``signals``; the weight transfer of
``--init`` is ``srgan.models.transfer``.
"""

from __future__ import annotations

import json
import math
import random
import sys
import time
from pathlib import Path
from typing import Any

from srgan.errors import InputError
from srgan.io import atomic
from srgan.training.checkpoint import CKPT
from srgan.training.config import TrainConfig, build_parser, config_from_args

__all__ = [
    "CKPT",
    "TrainConfig",
    "build_parser",
    "config_from_args",
    "ema_update",
    "lr_factor",
    "lr_factor_d",
    "main",
    "train",
]


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
    cos = 0.5 * (1 + math.cos(math.pi * min(1.0, t / max(1, cfg.stage2_steps))))
    return cfg.lr_min_ratio + (1 - cfg.lr_min_ratio) * cos


def ema_update(decay: float) -> Any:
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


def start_from(G: Any, path: str, cfg: TrainConfig, *, say: bool) -> dict:
    """``--init``: load what fits of the weights at ``path`` into ``G`` (``srgan.models.transfer``); returns the
    LR-kind detector info their card gives, when ``G`` took over their fitted detector."""
    from srgan.models.transfer import transfer_weights
    from srgan.models.weights import load_weights

    model, card = load_weights(path)
    n_own = len(G.state_dict())
    n = transfer_weights(G, model.state_dict())
    if not n:
        raise InputError(path, f"no tensor fits generator {cfg.generator} (weights are {card.get('arch')})")
    if say:
        print(f"initialised {n}/{n_own} generator tensors from {path}")
    kind = getattr(G, "kind", None)
    if kind is not None and bool(kind.fitted) and "kind_detector" in card:
        return {**card["kind_detector"], "fitted_in": card.get("name", str(path))}
    return {}


def load_teacher(cfg: TrainConfig, G: Any, device: Any) -> Any:
    """``--teacher``: the hash-checked generator whose outputs the student also learns from, frozen, in eval mode.
    It is told what the student is told where it takes the same input: the LR kind (the sampler's estimate from the
    student's detector, which ``--init`` from the teacher copies) and the base when both use the same one."""
    from srgan.models.weights import load_weights

    model, card = load_weights(str(cfg.teacher), device=device)
    if int(card.get("scale", 0)) != cfg.scale:
        raise InputError(cfg.teacher, f"teacher is a ×{card.get('scale')} model; this run trains ×{cfg.scale}")
    model.eval().requires_grad_(False)
    told = set()
    if getattr(model, "kind", None) is not None and getattr(G, "kind", None) is not None:
        told.add("kind")
    if getattr(model, "base", None) is not None and getattr(model, "base", None) == getattr(G, "base", None):
        told.add("base")
    model.told = told
    return model


def train(cfg: TrainConfig, *, resume: bool = False) -> int:
    """Run (or with ``resume``, continue) the training run ``cfg`` describes; rank 0 writes everything."""
    import torch
    import torch.nn.functional as F
    from torch.optim.swa_utils import AveragedModel
    from tqdm import tqdm

    from srgan.models import build_discriminator, build_generator
    from srgan.training import checkpoint
    from srgan.training import data as sdata
    from srgan.training.distributed import agree, all_mean, global_logits, init_distributed, rank_device
    from srgan.training.export import export
    from srgan.training.logs import RunLog
    from srgan.training.losses import AdversarialLoss, ContentLoss
    from srgan.training.signals import StopSignals
    from srgan.training.validation import kind_accuracy, mean_gain, validate

    # ---------------------------------------------------------------- processes, device, run folder
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    dist = init_distributed(cfg.device)
    if cfg.batch_size % dist.world:
        raise InputError(None, f"batch size {cfg.batch_size} is not divisible by the {dist.world} DDP ranks")
    device = rank_device(dist, cfg.device)
    run_dir = Path(cfg.out)
    if not resume and (run_dir / CKPT).exists():  # every rank checks, so none waits for a dead one
        raise InputError(run_dir, "holds a training run already: pass --resume to continue it, or choose another --out")
    if dist.main:
        run_dir.mkdir(parents=True, exist_ok=True)

    # ---------------------------------------------------------------- models, optimisers, losses
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    G = build_generator(cfg.generator, **{**cfg.generator_kwargs, "scale": cfg.scale}).to(device)
    dk = dict(cfg.discriminator_kwargs)
    if cfg.discriminator == "seed":
        dk.setdefault("patch_size", cfg.patch_size)
    D = build_discriminator(cfg.discriminator, **dk).to(device)
    kind_info: dict = {}  # how the LR-kind detector was fitted and how well it does, for the card
    if cfg.init_from and not resume:
        kind_info = start_from(G, cfg.init_from, cfg, say=dist.main)
    teacher = load_teacher(cfg, G, device) if cfg.teacher else None
    ema = AveragedModel(G, multi_avg_fn=ema_update(cfg.ema_decay), use_buffers=True)
    ema.eval()
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr, betas=(0.9, 0.99))
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr_d, betas=(0.9, 0.99))
    sched_g = torch.optim.lr_scheduler.LambdaLR(opt_g, lambda s: lr_factor(cfg, s))
    sched_d = torch.optim.lr_scheduler.LambdaLR(opt_d, lambda s: lr_factor_d(cfg, s))
    adv = AdversarialLoss(cfg.adversarial)
    content_loss = ContentLoss(cfg.content if cfg.stage2_steps else "none", cfg.vgg).to(device)
    pixel_loss = F.mse_loss if cfg.pixel_loss == "mse" else F.l1_loss
    if dist.enabled:
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [device.index] if device.type == "cuda" else None
        G_ddp, D_ddp = DDP(G, device_ids=ids), DDP(D, device_ids=ids)
    else:
        G_ddp, D_ddp = G, D
    states = {"G": G, "D": D, "ema": ema, "opt_g": opt_g, "opt_d": opt_d, "sched_g": sched_g, "sched_d": sched_d}

    # ---------------------------------------------------------------- data, resume, the LR-kind detector
    train_items, val_items = sdata.load_datasets(cfg.data, scale=cfg.scale, patch_size=cfg.patch_size, seed=cfg.seed)
    data_card = sdata.describe(train_items, val_items, cfg.data)
    step, metrics, best, elapsed_before = 0, {}, {}, 0.0  # best: {"gain_db", "step"} of the best stage-1 validation
    if resume:
        ck = checkpoint.read(run_dir / CKPT, device)
        checkpoint.restore(ck, states)
        step, metrics, best, kind_info, elapsed_before = (
            int(ck["step"]),
            ck["metrics"],
            ck["best"],
            ck["kind_info"],
            ck["elapsed_s"],
        )
        if dist.main:
            print(f"resumed {run_dir / CKPT} at step {step}")
    detector = getattr(G, "kind", None)
    if detector is not None and not bool(detector.fitted):  # before the sampler uses it; every rank alike
        kind_info = sdata.fit_kind_detector(
            detector, train_items, degradation=cfg.degradation, cfg=cfg.data, seed=cfg.seed
        )
        ema.module.get_submodule("kind").load_state_dict(detector.state_dict())
    base = getattr(G, "base", None)  # a global interpolation (zero-fill) must come from the whole slice
    sampler = sdata.PatchSampler(
        train_items,
        patch_size=cfg.patch_size,
        degradation=cfg.degradation,
        seed=cfg.seed,
        cfg=cfg.data,
        base=base,
        kind_detector=detector,
    )
    val_set = (
        sdata.validation_set(val_items, scale=cfg.scale, cfg=cfg.data, base=base, kind_detector=detector)
        if dist.main
        else []
    )
    if detector is not None and dist.main:
        kind_info["val_accuracy"] = kind_accuracy(val_set)
        print(f"LR-kind detector: {kind_info}")

    # ---------------------------------------------------------------- what the loop does at intervals (rank 0)
    t0 = time.time()
    val_step = -1  # the step validated last in this invocation

    def save_checkpoint() -> None:
        if dist.main:
            checkpoint.save(
                run_dir / CKPT,
                config=cfg.as_dict(),
                step=step,
                modules=states,
                metrics=metrics,
                best=best,
                kind_info=kind_info,
                elapsed_s=elapsed_before + time.time() - t0,
            )

    def export_weights(kind: str) -> None:
        if dist.main:
            export(
                ema.module,
                cfg,
                kind,
                step=step,
                validated_at_step=val_step,
                metrics=metrics,
                data_card=data_card,
                kind_info=kind_info,
                world=dist.world,
            )

    def validate_and_log(write) -> None:
        """Validate the EMA generator; in stage 1 keep it as ``<name>-fidelity-best`` when its mean gain over
        bicubic is the best so far (the last step is not always the best)."""
        nonlocal metrics, val_step, best
        metrics, val_step = validate(ema.module, val_set, scale=cfg.scale, device=device), step
        if metrics and step <= cfg.stage1_steps and mean_gain(metrics) > best.get("gain_db", -math.inf):
            best = {"gain_db": round(mean_gain(metrics), 4), "step": step}
            export_weights("fidelity-best")
        log.validation(step, metrics, write)

    if dist.main:
        atomic.write_text(run_dir / "config.json", json.dumps(cfg.as_dict(), indent=2) + "\n")
        atomic.write_text(run_dir / "data.json", json.dumps(data_card, indent=2) + "\n")
        log = RunLog(run_dir, step)
        print(
            f"training {cfg.generator} x{cfg.scale} on {device} "
            f"({dist.world} process{'es' if dist.world > 1 else ''}); "
            f"data {data_card['train_items']} train items, {data_card['val_items']} held out; run folder {run_dir}"
        )

    # ---------------------------------------------------------------- the loop
    start_step = step
    reason = "finished"
    bar = tqdm(total=cfg.total_steps, initial=step, disable=not dist.main, mininterval=5, dynamic_ncols=True)
    t_last, s_last = time.time(), step
    with StopSignals() as stop, bar:
        while step < cfg.total_steps:
            # this rank's share of global batch `step`
            lr, hr, params, lr_base, lr_kind = sampler.batch(step, range(dist.rank, cfg.batch_size, dist.world))
            lr, hr = lr.to(device), hr.to(device)
            extra = {k: t.to(device) for k, t in (("base", lr_base), ("kind", lr_kind)) if t is not None}
            stage2 = step >= cfg.stage1_steps
            G_ddp.train()
            sr = G_ddp(lr, **extra)
            logs: dict[str, float] = {}

            # D step (stage 2): real and fake in one forward, one DDP reduction (BN, in the seed D, sees both)
            if stage2:
                D_ddp.train()
                d_real, d_fake = D_ddp(torch.cat([hr, sr.detach()])).split(len(hr))
                d_real, d_fake = global_logits(dist, d_real), global_logits(dist, d_fake)
                loss_d = adv.discriminator(d_real, d_fake)
                opt_d.zero_grad(set_to_none=True)
                (loss_d * dist.world).backward()
                opt_d.step()
                sched_d.step()
                logs.update(loss_d=loss_d.item(), d_real=d_real.mean().item(), d_fake=d_fake.mean().item())

            # G step: pixel loss, plus content and adversarial terms in stage 2
            loss_pix = pixel_loss(sr, hr)
            loss = cfg.w_pixel * loss_pix
            logs["loss_pixel"] = loss_pix.item()
            if teacher is not None and not stage2:
                with torch.no_grad():
                    target = teacher(lr, **{k: v for k, v in extra.items() if k in teacher.told})
                loss_t = pixel_loss(sr, target)
                loss = loss + cfg.w_teacher * loss_t
                logs["loss_teacher"] = loss_t.item()
            if stage2:
                D.requires_grad_(False)
                loss_c = content_loss(sr, hr)
                g_real, g_fake = D(torch.cat([hr, sr])).split(len(hr))
                loss_a = adv.generator(global_logits(dist, g_real), global_logits(dist, g_fake))
                D.requires_grad_(True)
                loss = loss + cfg.w_content * loss_c + cfg.w_adv * dist.world * loss_a
                logs.update(loss_content=loss_c.item(), loss_adv=loss_a.item())
            opt_g.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(G.parameters(), cfg.grad_clip)
            opt_g.step()
            sched_g.step()

            # EMA
            ema.update_parameters(G)
            logs["lr"] = opt_g.param_groups[0]["lr"]
            n = len(params)  # what the batch's degradations were (each one is reproducible from seed, step, index)
            logs["deg_kspace"] = sum(p["kind"] == "kspace" for p in params) / n
            logs["deg_blur"] = sum(p["blur_sigma"] > 0 for p in params) / n
            logs["deg_noise"] = sum(p["noise_sigma"] > 0 for p in params) / n
            step += 1
            bar.update(1)
            at_stage_end = step == cfg.stage1_steps or step == cfg.total_steps

            # log (global-batch means)
            if step % cfg.log_every == 0 or at_stage_end:
                logs = all_mean(dist, logs, device)
                now = time.time()
                logs["samples_per_s"] = (step - s_last) * cfg.batch_size / max(1e-9, now - t_last)
                t_last, s_last = now, step
                if dist.main:
                    log.train(
                        {
                            "step": step,
                            "stage": 2 if step > cfg.stage1_steps else 1,
                            "elapsed_s": round(elapsed_before + now - t0, 2),
                            **logs,
                        },
                        logs,
                    )
                    bar.set_postfix(loss=f"{logs['loss_pixel']:.4f}", sps=f"{logs['samples_per_s']:.1f}")

            # validate, export, checkpoint
            if dist.main and (step % cfg.val_every == 0 or at_stage_end):
                validate_and_log(bar.write)
            if step == cfg.stage1_steps and cfg.stage1_steps:
                export_weights("fidelity")
            if step % cfg.ckpt_every == 0 or at_stage_end:
                save_checkpoint()

            # stop checks: time budget, --stop-after, a signal (rank 0 decides for all)
            over_time = cfg.time_budget_min and (time.time() - t0) > 60 * cfg.time_budget_min
            stop_here = cfg.stop_after and step - start_step >= cfg.stop_after
            if step < cfg.total_steps and agree(dist, bool(over_time or stop_here or stop.name), device):
                reason = (
                    "time budget reached"
                    if over_time
                    else f"stopped after {cfg.stop_after} steps"
                    if stop_here
                    else f"stopped by {stop.name}"
                )
                break

    # ---------------------------------------------------------------- the end: checkpoint and weights
    if dist.main and reason != "finished" and step != val_step:
        validate_and_log(print)
    save_checkpoint()
    if step == cfg.total_steps and cfg.stage2_steps:
        export_weights("gan")
    elif step < cfg.total_steps:
        if step >= cfg.stage1_steps and step > 0 and cfg.stage2_steps:
            export_weights("gan-partial")
        elif step < cfg.stage1_steps:
            export_weights("fidelity-partial")
    if dist.main:
        log.close()
        note = "" if reason == "finished" else f"; continue with: srgan train --out {run_dir} --resume"
        print(f"{reason} at step {step}/{cfg.total_steps}{note}")
    if dist.enabled:  # no rank tears the process group down while another still writes (gloo aborted the early one)
        import torch.distributed

        torch.distributed.barrier()
    return 0


def main(argv: list[str] | None = None) -> int:
    """``srgan train`` / ``python -m srgan.train``: exit 0 when the run ends or stops cleanly, 2 on user errors."""
    args = build_parser(__doc__.split("\n\n")[0] if __doc__ else None).parse_args(argv)
    try:
        base = None
        if args.resume:
            from srgan.training import checkpoint

            base = checkpoint.read(Path(args.out or TrainConfig.out) / CKPT)["config"]
            base["stop_after"] = 0  # run control, not part of the run: a resumed run goes on unless told
        return train(config_from_args(args, base), resume=args.resume)
    except InputError as e:
        print(f"srgan train: {e}", file=sys.stderr)
        return 2
    finally:
        from srgan.training.distributed import close_distributed

        close_distributed()


if __name__ == "__main__":
    sys.exit(main())

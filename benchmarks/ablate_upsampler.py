"""The issue-5 quick baseline and the session-3 upsampler/base ablations, outside the trainer on purpose.

A compact residual CNN (``--blocks`` × ``--channels``, L1, Adam with cosine decay, 50/50 bicubic / k-space LR made
exactly as ``shared/tools/contract_check.py`` makes it, 8-bit) trained for ``--steps`` on the Kaggle slices that are
not held out, then measured like the contract (gain in PSNR over bicubic upsampling of the same 8-bit LR) on the
held-out folder. It exists to check the trainer against a minimal reference; docs/benchmarks.md ("Training:
session 3") has the table it produced (one thread, 1000 steps, two runs at a time).

    python benchmarks/ablate_upsampler.py --scale 4 --base bicubic --up prog1b --heldout HELDOUT_DIR
"""
from __future__ import annotations

import argparse
import glob
import math
import os
import random
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "..", "shared", "tools"))
from contract_check import bicubic_up, degrade, load_gray  # noqa: E402  the reviewers' own LR and metric

from srgan.degrade import zerofill_base  # noqa: E402


class Net(nn.Module):
    def __init__(self, s, c=32, n=8, up="prog", base="bicubic"):
        super().__init__(); self.s = s; self.base = base
        self.head = nn.Conv2d(1, c, 3, padding=1)
        self.blocks = nn.ModuleList(nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.ReLU(True), nn.Conv2d(c, c, 3, padding=1)) for _ in range(n))
        if up == "prog":
            ups = []
            for _ in range(int(math.log2(s))): ups += [nn.Conv2d(c, 4 * c, 3, padding=1), nn.PixelShuffle(2), nn.ReLU(True)]
            self.up = nn.Sequential(*ups, nn.Conv2d(c, 1, 3, padding=1))
        elif up == "wide":  # nonlinear, all at LR
            self.up = nn.Sequential(nn.Conv2d(c, 4 * c, 3, padding=1), nn.ReLU(True), nn.Conv2d(4 * c, s * s, 3, padding=1), nn.PixelShuffle(s))
        elif up == "proghalf":  # second x2 stage at half width
            self.up = nn.Sequential(nn.Conv2d(c, 4 * c, 3, padding=1), nn.PixelShuffle(2), nn.ReLU(True),
                                    nn.Conv2d(c, 2 * c, 3, padding=1), nn.PixelShuffle(2), nn.ReLU(True), nn.Conv2d(c // 2, 1, 3, padding=1))
        elif up == "prog1":  # nonlinear x2 stage, then linear sub-pixel x2
            self.up = nn.Sequential(nn.Conv2d(c, 4 * c, 3, padding=1), nn.PixelShuffle(2), nn.ReLU(True), nn.Conv2d(c, 4, 3, padding=1), nn.PixelShuffle(2))
        elif up == "prog1b":  # nonlinear x2 stage, one more conv at 2x, then linear sub-pixel x2
            self.up = nn.Sequential(nn.Conv2d(c, 4 * c, 3, padding=1), nn.PixelShuffle(2), nn.ReLU(True), nn.Conv2d(c, c, 3, padding=1), nn.ReLU(True), nn.Conv2d(c, 4, 3, padding=1), nn.PixelShuffle(2))
        else:
            self.up = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.Conv2d(c, s * s, 3, padding=1), nn.PixelShuffle(s))
    def forward(self, x, base=None):
        if base is None:
            base = zerofill_base(x, self.s) if self.base == "zerofill" else F.interpolate(x, scale_factor=self.s, mode="bicubic", align_corners=False)
        h = self.head(x); r = h
        for b in self.blocks: r = r + b(r)
        return self.up(r + h) + base


def main(argv=None) -> int:
    from srgan.evaluation.metrics import psnr
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", type=int, choices=(2, 4), default=4)
    ap.add_argument("--base", choices=("bicubic", "zerofill"), default="bicubic")
    ap.add_argument("--up", choices=("lite", "prog", "prog1", "prog1b", "proghalf", "wide"), default="prog1b")
    ap.add_argument("--channels", type=int, default=32)
    ap.add_argument("--blocks", type=int, default=8)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data", default=os.path.join(REPO, "..", "shared", "data", "kaggle-brain-tumor-mri"))
    ap.add_argument("--heldout", required=True, help="folder of held-out slices (never trained on)")
    a = ap.parse_args(argv)
    if a.scale != 4 and a.up in ("prog1", "prog1b", "proghalf"):
        ap.error(f"--up {a.up} is made of two x2 stages: it needs --scale 4")
    torch.set_num_threads(a.threads); random.seed(0); torch.manual_seed(0)
    s = a.scale; P = 128 if s == 4 else 96; p = P // s; B = 16
    held = {os.path.basename(f) for f in glob.glob(os.path.join(a.heldout, "**", "*.jpg"), recursive=True)}
    files = [f for f in sorted(glob.glob(os.path.join(a.data, "**", "*.jpg"), recursive=True)) if os.path.basename(f) not in held]
    data = []
    for f in files:
        hr = load_gray(f); hr = hr[:hr.shape[0] // s * s, :hr.shape[1] // s * s]
        lrs = [torch.from_numpy(np.round(degrade(hr, s, k) * 255) / 255).float()[None, None] for k in ("bicubic", "kspace")]
        bases = [zerofill_base(lr, s)[0, 0] if a.base == "zerofill" else None for lr in lrs]
        data.append((hr.astype(np.float32), [lr[0, 0].numpy() for lr in lrs], bases))
    net = Net(s, a.channels, a.blocks, a.up, a.base)
    opt = torch.optim.Adam(net.parameters(), a.lr)
    t0 = time.time()
    for step in range(a.steps):
        lrb, hrb, bb = [], [], []
        while len(lrb) < B:
            hr, lrs, bases = random.choice(data)
            k = int(random.random() < 0.5); lr = lrs[k]
            if lr.shape[0] < p or lr.shape[1] < p:
                continue
            for _ in range(10):
                i = random.randint(0, lr.shape[0] - p); j = random.randint(0, lr.shape[1] - p)
                if hr[i * s:i * s + P, j * s:j * s + P].mean() > 0.05:
                    break
            lrb.append(lr[i:i + p, j:j + p]); hrb.append(hr[i * s:i * s + P, j * s:j * s + P])
            if a.base == "zerofill":
                bb.append(bases[k][i * s:i * s + P, j * s:j * s + P])
        x = torch.from_numpy(np.stack(lrb))[:, None]; y = torch.from_numpy(np.stack(hrb))[:, None]
        for g in opt.param_groups:
            g["lr"] = a.lr * 0.5 * (1 + math.cos(math.pi * step / a.steps))
        loss = F.l1_loss(net(x, torch.stack(bb)[:, None] if bb else None), y)
        opt.zero_grad(); loss.backward(); opt.step()
    net.eval()
    gains = {}
    for kind in ("bicubic", "kspace"):
        g = []
        for f in sorted(glob.glob(os.path.join(a.heldout, "**", "*.jpg"), recursive=True)):
            hr = load_gray(f); hr = hr[:hr.shape[0] // s * s, :hr.shape[1] // s * s]
            lr = np.round(degrade(hr, s, kind) * 255) / 255
            with torch.no_grad():
                sr = net(torch.from_numpy(lr).float()[None, None])[0, 0].clamp(0, 1).double().numpy()
            g.append(psnr(hr, np.round(sr * 255) / 255, data_range=1) - psnr(hr, bicubic_up(lr, s), data_range=1))
        gains[kind] = float(np.mean(g))
    print(f"x{s} base={a.base} up={a.up} {a.blocks}x{a.channels} {a.steps} steps ({time.time() - t0:.0f} s): "
          f"gain over bicubic {gains['bicubic']:+.2f} / {gains['kspace']:+.2f} dB (bicubic / k-space LR)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

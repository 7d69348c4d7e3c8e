"""What a run writes as it goes (rank 0 only): ``log.csv`` (training losses every ``log_every`` steps), ``val.csv``
(validation per LR kind), TensorBoard events in ``tb/`` when tensorboard is installed, and the console lines.

On resume the CSV files drop the rows written after the checkpoint the run continues from, so they hold each step
once, as a run that never stopped would.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any


class CsvLog:
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


class RunLog:
    """``log.csv``, ``val.csv`` and TensorBoard of the run folder ``run_dir``, continued from ``step``."""

    def __init__(self, run_dir: Path, step: int):
        self.train_csv = CsvLog(run_dir / "log.csv", step)
        self.val_csv = CsvLog(run_dir / "val.csv", step)
        self.tb: Any = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(run_dir / "tb"))
        except ImportError:
            print("tensorboard not installed: logging to CSV only (pip install tensorboard)")

    def train(self, row: dict, scalars: dict) -> None:
        """One ``log.csv`` row (``row`` holds ``step``) and ``scalars`` as TensorBoard's ``train/*``."""
        self.train_csv.write(row)
        if self.tb:
            for k, v in scalars.items():
                self.tb.add_scalar(f"train/{k}", v, row["step"])

    def validation(self, step: int, metrics: dict, write=print) -> None:
        """``metrics`` (``validation.validate``'s result) as ``val.csv`` rows, TensorBoard ``val_<kind>/*`` and a
        console line through ``write`` (tqdm's, while a progress bar is shown)."""
        for kind, m in metrics.items():
            self.val_csv.write({"step": step, "kind": kind, **m})
            if self.tb:
                for k in ("psnr", "psnr_bicubic", "gain_db"):
                    self.tb.add_scalar(f"val_{kind}/{k}", m[k], step)
        if metrics:
            write(
                f"step {step}: "
                + "; ".join(
                    f"{k} {m['psnr']:.2f} dB (bicubic {m['psnr_bicubic']:.2f}, gain {m['gain_db']:+.2f})"
                    for k, m in metrics.items()
                )
            )

    def close(self) -> None:
        if self.tb:
            self.tb.close()

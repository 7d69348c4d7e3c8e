"""Longest GUI-thread stall of the viewer while the enhancement worker runs, and how soon slices arrive.

Opens a series in the real ``MainWindow`` (offscreen): a real DICOM folder (``--series``, e.g. the 35-slice
``siemens_prisma_t1_sag_hfs``) or a synthetic 30-slice 256×256 MR series (a brain-like phantom) written to a
temporary folder. It then runs a 5 ms ``QTimer`` on the GUI thread and records the gaps between its ticks. A gap
much longer than 5 ms is a moment the interface could not react (a stall). Scenarios:

- ``idle``: series open, nothing running (the floor set by the machine and Qt);
- ``enhance``: the worker enhances all slices (current first), results are drawn as they arrive; repeated
  ``--repeat`` times from scratch (no cached slice, no plan), since a shared machine makes one run misleading;
- ``enhance+cine``: the same while cine steps through the slices at 10 frames/s (decode + draw each step).

Each enhancement run also reports, as the GUI thread receives the worker's signals: the series' plan
(request → ``planned``), the first enhanced slice after the plan (``planned`` → the current slice's
``enhanced``), and the whole volume (plan → last slice, and request → last slice). The ``enhance`` runs are
summarised by their minimum and median.

Model: the bundled ×2 fidelity weights when present, else randomly initialised tiny weights (same code
path, less compute per slice). Prints markdown tables and the command. No assertions: speed is reported.

    QT_QPA_PLATFORM=offscreen python benchmarks/bench_ui_stall.py [--series FOLDER] [--repeat 3]
        [--slices 30] [--size 256] [--weights FILE] [--threads N] [--batch B] [--runtime auto] [--precision P]
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

TICK_MS = 5


def phantom(size: int, z: float, rng: np.random.Generator) -> np.ndarray:
    """A head-like slice: skull ring, brain ellipse, ventricles and some texture (uint16)."""
    yy, xx = np.mgrid[:size, :size] / size - 0.5
    r = np.hypot(xx / 0.38, yy / 0.45) * (1 + 0.2 * abs(z))
    img = np.zeros((size, size), np.float32)
    img[(r > 0.92) & (r < 1.0)] = 900
    brain = r <= 0.9
    img[brain] = 600 + 80 * np.sin(18 * xx[brain]) * np.cos(14 * yy[brain])
    img[np.hypot((xx - 0.05) / 0.05, yy / 0.15) < 1] = 200
    img[np.hypot((xx + 0.05) / 0.05, yy / 0.15) < 1] = 200
    img += rng.normal(0, 15, img.shape) * (img > 0)
    return np.clip(img, 0, 4095).astype(np.uint16)


def write_series(folder: Path, n: int, size: int) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.Modality = MRImageStorage, "MR"
    ds.PatientName, ds.PatientID = "Bench^Stall", "BENCH"
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = generate_uid(), generate_uid(), generate_uid()
    ds.SeriesNumber, ds.SeriesDescription = 1, "synthetic axial phantom"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]
    ds.Rows = ds.Columns = size
    ds.PixelSpacing = [230.0 / size, 230.0 / size]
    ds.SliceThickness = 4.0
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    rng = np.random.default_rng(0)
    for i in range(n):
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = i + 1
        ds.ImagePositionPatient = [-115.0, -115.0, 4.0 * i]
        ds.PixelData = phantom(size, (i - n / 2) / n, rng).tobytes()
        ds.save_as(folder / f"IM{i:04d}.dcm", enforce_file_format=True)


def tiny_weights(folder: Path) -> Path:
    import torch

    from srgan.models import GENERATORS, build_generator
    from srgan.models.weights import save_weights

    torch.manual_seed(0)
    kwargs = {**GENERATORS["srresnet_lite"].TINY, "scale": 2}
    model = build_generator("srresnet_lite", **kwargs)
    return save_weights(folder / "tiny-x2", model, {"arch": "srresnet_lite", "kwargs": kwargs, "kind": "fidelity",
                                                    "name": "tiny-x2"})


class GapMeter:
    """Records the intervals between ticks of a 5 ms timer on the GUI thread."""

    def __init__(self, QtCore):
        self.timer = QtCore.QTimer()
        self.timer.setTimerType(QtCore.Qt.TimerType.PreciseTimer)
        self.timer.setInterval(TICK_MS)
        self.timer.timeout.connect(self._tick)
        self.gaps: list[float] = []
        self._last = None

    def _tick(self) -> None:
        now = time.perf_counter()
        if self._last is not None:
            self.gaps.append((now - self._last) * 1000)
        self._last = now

    def start(self) -> None:
        self.gaps, self._last = [], None
        self.timer.start()

    def stop(self) -> np.ndarray:
        self.timer.stop()
        return np.asarray(self.gaps)


def run(args) -> list[dict]:
    from PySide6 import QtCore, QtWidgets

    from viewer.main_window import MainWindow
    from viewer.style import apply_dark_theme
    from viewer.workers import EnhanceConfig

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    apply_dark_theme(app)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.series:
            folder = Path(args.series)
        else:
            folder = tmp / "series"
            folder.mkdir()
            write_series(folder, args.slices, args.size)
        weights = args.weights
        model = "bundled default"
        if weights is None:
            try:
                from srgan.models.weights import bundled_weights

                weights = str(bundled_weights(2))
            except Exception:
                weights = str(tiny_weights(tmp))
                model = "tiny (random) srresnet_lite"
        else:
            model = Path(weights).name
        config = EnhanceConfig(weights=weights, device=args.device, runtime=args.runtime, precision=args.precision)
        window = MainWindow(config, enhance=False, show_dialogs=False)
        if args.threads or args.batch:  # the window's worker, not yet started on a job: set what it builds with
            window.worker._threads, window.worker._batch = args.threads, args.batch
        window.resize(1440, 900)
        window.show()

        def wait(predicate, timeout_s: float) -> bool:
            end = time.perf_counter() + timeout_s
            while time.perf_counter() < end:
                app.processEvents(QtCore.QEventLoop.ProcessEventsFlag.AllEvents, 20)
                if predicate():
                    return True
                time.sleep(0.002)
            return False

        window.open_folder(folder)
        if not wait(window.is_settled, 60):
            raise SystemExit("the series did not load within 60 s")
        meter = GapMeter(QtCore)
        loop = QtCore.QEventLoop()
        events: dict[str, float] = {}
        n = window.series.shape[1]

        def on_planned(key, plan) -> None:
            events.setdefault("planned", time.perf_counter())

        def on_enhanced(key, image) -> None:
            now = time.perf_counter()
            if key[2] == window.state.slice:
                events.setdefault("first", now)
            events["last"] = now

        window.worker.planned.connect(on_planned)
        window.worker.enhanced.connect(on_enhanced)

        def measure(name: str, start, done, timeout_s: float) -> None:
            meter.start()
            events.clear()
            t0 = time.perf_counter()
            start()
            poll = QtCore.QTimer()
            poll.timeout.connect(lambda: done() and loop.quit())
            poll.start(20)
            QtCore.QTimer.singleShot(int(timeout_s * 1000), loop.quit)
            loop.exec()
            poll.stop()
            elapsed = time.perf_counter() - t0
            gaps = meter.stop()
            rows.append({
                "scenario": name, "seconds": elapsed, "ticks": len(gaps),
                "max_ms": float(gaps.max()) if gaps.size else float("nan"),
                "p99_ms": float(np.percentile(gaps, 99)) if gaps.size else float("nan"),
                "over50": int((gaps > 50).sum()), "over100": int((gaps > 100).sum()),
                "slices": len(window.worker.results),
                "plan_s": events.get("planned", float("nan")) - t0,
                "first_s": events.get("first", float("nan")) - events.get("planned", float("nan")),
                "plan_to_last_s": events.get("last", float("nan")) - events.get("planned", float("nan")),
                "to_last_s": events.get("last", float("nan")) - t0,
            })

        def fresh() -> None:
            """Enhancement off, the worker idle, and nothing it made kept: the next run starts from scratch."""
            window.toggle_cine(False)
            window.set_enhancing(False)
            wait(lambda: not window.worker.busy, 600)
            window.worker.forget()

        measure("idle", lambda: None, lambda: False, args.idle)
        all_done = lambda: len(window.worker.results) >= n and not window.worker.busy  # noqa: E731
        for _ in range(args.repeat):
            fresh()
            measure("enhance", lambda: window.set_enhancing(True), all_done, args.timeout)
        fresh()
        measure("enhance+cine",
                lambda: (window.set_enhancing(True), window.toggle_cine(True)), all_done, args.timeout)
        window.toggle_cine(False)
        device = (window.model_info or {}).get("device", args.device)
        window.shutdown()
        window.deleteLater()
    for r in rows:
        r["model"], r["device"], r["series"], r["n"] = model, device, str(folder if args.series else "synthetic"), n
    return rows


def main() -> None:
    from srgan.options import PRECISIONS

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--series", help="a DICOM folder to open instead of the synthetic series (its first series)")
    p.add_argument("--repeat", type=int, default=3, help="runs of the enhance scenario (min and median reported)")
    p.add_argument("--threads", type=int, help="the worker's torch threads (default: all cores but one)")
    p.add_argument("--batch", type=int, help="the worker's slices per batch (default: by device)")
    p.add_argument("--runtime", default="auto", help="srgan.options.RUNTIMES (default auto, as the viewer)")
    p.add_argument("--precision", choices=PRECISIONS,
                   help="the generator's arithmetic (default: the model card's recommendation, as the viewer)")
    p.add_argument("--slices", type=int, default=30)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--weights", help="weights file (default: bundled ×2 fidelity, else tiny random weights)")
    p.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda", "mps"))
    p.add_argument("--idle", type=float, default=2.0, help="seconds of the idle scenario")
    p.add_argument("--timeout", type=float, default=600.0, help="give up on a scenario after this many seconds")
    args = p.parse_args()
    rows = run(args)
    what = rows[0]["series"] if args.series else f"synthetic {args.size}×{args.size}"
    print(f"\nUI stall while enhancing a {rows[0]['n']}-slice series ({what}; timer {TICK_MS} ms on the GUI thread; "
          f"model {rows[0]['model']}, device {rows[0]['device']})\n")
    print("| scenario | seconds | slices enhanced | ticks | longest gap (ms) | p99 gap (ms) | gaps > 50 ms "
          "| gaps > 100 ms | plan (s) | first slice after plan (s) | plan → last (s) | request → last (s) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['scenario']} | {r['seconds']:.1f} | {r['slices']} | {r['ticks']} | {r['max_ms']:.1f} | "
              f"{r['p99_ms']:.1f} | {r['over50']} | {r['over100']} | {r['plan_s']:.2f} | {r['first_s']:.2f} | "
              f"{r['plan_to_last_s']:.2f} | {r['to_last_s']:.2f} |")
    runs = [r for r in rows if r["scenario"] == "enhance"]
    if runs:
        print(f"\n`enhance`, {len(runs)} runs from scratch (a shared machine: minimum and median)\n")
        print("| figure | min | median |")
        print("|---|---:|---:|")
        for name, field in (("longest gap (ms)", "max_ms"), ("plan (s)", "plan_s"),
                            ("first slice after plan (s)", "first_s"), ("plan → last (s)", "plan_to_last_s"),
                            ("request → last (s)", "to_last_s")):
            values = np.asarray([r[field] for r in runs], float)
            print(f"| {name} | {np.nanmin(values):.2f} | {np.nanmedian(values):.2f} |")
    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"{platform.system()}")
    print("command: QT_QPA_PLATFORM=offscreen python " + " ".join([sys.argv[0], *sys.argv[1:]]))


if __name__ == "__main__":
    main()

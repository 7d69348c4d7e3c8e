"""``brainsr`` — start the viewer, or render one screenshot and exit.

    brainsr [FOLDER] [--no-enhance] [--scale 2|4] [--model NAME] [--weights FILE] [--device auto|cpu|cuda|mps]
            [--consistency off|bicubic|kspace|auto]
    brainsr FOLDER --enhance --screenshot out.png

Without FOLDER the bundled sample series opens. Qt, torch and the model are imported only after the
arguments are parsed, so ``--help`` answers at once.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from srgan.options import CONSISTENCY_MODES, DEVICES, PRECISIONS, RUNTIMES, SCALES

EXIT_OK, EXIT_ERROR, EXIT_ENHANCE_FAILED, EXIT_TIMEOUT = 0, 2, 3, 4


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 1440x900, got {text!r}") from None
    if w < 640 or h < 400:
        raise argparse.ArgumentTypeError("size must be at least 640x400")
    return w, h


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="brainsr",
        description="BrainSR viewer: DICOM MR slices beside their AI super-resolution, linked in mm. "
                    "Enhanced images are AI-generated and not for primary diagnosis.")
    p.add_argument("folder", nargs="?", help="folder of DICOM files (searched recursively); default: bundled sample")
    p.add_argument("--enhance", action=argparse.BooleanOptionalAction, default=None,
                   help="enhance at once, current slice first, then the whole series (default: on in the window, "
                        "off for --screenshot)")
    p.add_argument("--scale", type=int, choices=SCALES, default=2, help="super-resolution factor (default 2)")
    p.add_argument("--model", help="bundled model name (default: the fidelity model for the scale)")
    p.add_argument("--weights", help="a weights file (.safetensors with its .json card) instead of a bundled model")
    p.add_argument("--device", choices=DEVICES, default="auto",
                   help="where the model runs (default auto: CUDA, then MPS, then CPU)")
    p.add_argument("--consistency", choices=CONSISTENCY_MODES, default=None,
                   help="data-consistency projection of each enhanced slice, so that degrading it reproduces the "
                        "original; auto: chosen per series from the model's LR-kind estimate (default: what the "
                        "model card recommends, else off)")
    p.add_argument("--runtime", choices=RUNTIMES, default="auto",
                   help="where the model runs on the CPU (default auto: the fastest installed here, measured once "
                        "and cached)")
    p.add_argument("--precision", choices=PRECISIONS, default=None,
                   help="the model's arithmetic (default: what the model card recommends, else fp32)")
    p.add_argument("--screenshot", metavar="PNG",
                   help="render the window (first series, middle slice; with --enhance, once that slice is "
                        "enhanced) to this PNG and exit; works headless")
    p.add_argument("--size", type=_size, default=(1440, 900), metavar="WxH",
                   help="window size for --screenshot (default 1440x900)")
    p.add_argument("--timeout", type=float, default=300.0,
                   help="seconds --screenshot waits for loading and enhancement (default 300)")
    return p


def _headless() -> bool:
    return not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")) and sys.platform.startswith("linux")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.screenshot and _headless():
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

    from PySide6 import QtCore, QtWidgets

    from viewer import SAMPLE_SERIES
    from viewer.main_window import APPLICATION, ORGANISATION, MainWindow
    from viewer.style import apply_dark_theme
    from viewer.workers import EnhanceConfig

    folder = args.folder
    if folder is None:
        folder = str(SAMPLE_SERIES) if SAMPLE_SERIES.is_dir() else None

    app = QtWidgets.QApplication.instance()
    owns_app = app is None
    if owns_app:
        QtCore.QCoreApplication.setOrganizationName(ORGANISATION)
        QtCore.QCoreApplication.setApplicationName(APPLICATION)
        app = QtWidgets.QApplication([sys.argv[0] if sys.argv else "brainsr"])
    apply_dark_theme(app)

    config = EnhanceConfig(scale=args.scale, model=args.model,
                           weights=str(Path(args.weights).resolve()) if args.weights else None, device=args.device,
                           consistency=args.consistency, runtime=args.runtime, precision=args.precision)
    enhance = args.enhance if args.enhance is not None else not args.screenshot
    window = MainWindow(config, enhance=enhance, show_dialogs=not args.screenshot)
    if args.screenshot:
        try:
            return _screenshot(app, window, folder, Path(args.screenshot), args.size, args.timeout, enhance)
        finally:
            window.shutdown()
            window.deleteLater()

    window.show()
    if folder:
        QtCore.QTimer.singleShot(0, lambda: window.open_folder(folder))
    else:
        window.statusBar().showMessage("No sample series bundled: open a DICOM folder (Ctrl+O)")
    return int(app.exec()) if owns_app else 0


def _screenshot(app, window, folder: str | None, out: Path, size: tuple[int, int], timeout: float,
                enhance: bool) -> int:
    from PySide6 import QtCore

    if folder is None:
        print("brainsr: no folder given and no sample series bundled", file=sys.stderr)
        return EXIT_ERROR
    window.resize(*size)
    window.show()
    errors: list[str] = []
    outcome = {"settled": False, "scan_failed": False}
    loop = QtCore.QEventLoop()

    def on_error(message: str) -> None:
        errors.append(message)
        if window.series is None:  # the folder itself failed: nothing to show
            outcome["scan_failed"] = True
            loop.quit()

    def on_settled() -> None:
        outcome["settled"] = True
        loop.quit()

    window.error_occurred.connect(on_error)
    window.settled.connect(on_settled)
    QtCore.QTimer.singleShot(int(timeout * 1000), loop.quit)
    QtCore.QTimer.singleShot(0, lambda: window.open_folder(folder))
    loop.exec()
    if outcome["scan_failed"]:
        print(f"brainsr: {errors[-1]}", file=sys.stderr)
        return EXIT_ERROR
    if not outcome["settled"]:
        print(f"brainsr: gave up after {timeout:.0f} s waiting for the slice"
              + (" to be enhanced" if enhance else " to load"), file=sys.stderr)
        return EXIT_TIMEOUT
    for _ in range(5):  # let layout, overlays and the scene settle before grabbing
        app.processEvents()
        QtCore.QThread.msleep(10)
    image = window.grab().toImage()
    from srgan.io.atomic import atomic_path

    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(out) as tmp:
            if not image.save(str(tmp), "PNG"):
                raise OSError  # atomic_path leaves no temporary file behind
    except OSError as err:  # no folder, not a folder, no permission, disk full: one line, no traceback
        why = err.strerror or str(err)
        print(f"brainsr: {out}: the PNG could not be written" + (f" ({why})" if why else ""), file=sys.stderr)
        return EXIT_ERROR
    print(f"{out} ({image.width()}×{image.height()})")
    if errors:
        print(f"brainsr: {errors[-1]}", file=sys.stderr)
        return EXIT_ENHANCE_FAILED
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())

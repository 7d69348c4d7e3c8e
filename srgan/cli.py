"""``srgan``: the model command line. Thin: parse arguments, call library functions.

torch is imported only inside the sub-commands, so ``srgan --help`` answers at once.
"""

from __future__ import annotations

import argparse
import sys

from srgan.options import CONSISTENCY_MODES, DEVICES, PRECISIONS, RUNTIMES, SCALES

COMMANDS = {
    "enhance": "super-resolve a 2D image, a folder of images, a NIfTI volume or a DICOM folder",
    "train": "train a generator (stage 1: L1 pre-training, stage 2: adversarial); runs under torchrun for DDP",
    "evaluate": "PSNR/SSIM/NRMSE/HFEN/sharpness of models and interpolation baselines on held-out images",
    "benchmark": "the model comparison table and HTML report (quality and CPU speed)",
}


def _enhance_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="srgan enhance",
        description=COMMANDS["enhance"] + ".",
        epilog="Outputs say they are AI-enhanced and not for primary diagnosis. Exit status: 0 when every input "
        "was enhanced or left out by design (a note, e.g. a field map), 1 when any input was skipped for an error "
        "or nothing could be enhanced, 2 for a usage error, 130 when interrupted.",
    )
    p.add_argument(
        "input",
        help="image file, folder of images, volume (NIfTI-1/2 .nii/.nii.gz or .hdr/.img pair, Analyze, "
        "MGH/MGZ), or DICOM folder",
    )
    p.add_argument(
        "-o", "--output", required=True, help="output file or folder (must not lie in a DICOM source folder)"
    )
    p.add_argument("--scale", type=int, choices=SCALES, required=True)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--weights", help="a .safetensors file with its JSON model card beside it")
    g.add_argument("--model", help="name of bundled weights (default: the fidelity model for --scale)")
    p.add_argument("--device", default="auto", choices=DEVICES)
    p.add_argument(
        "--axis", type=int, choices=(0, 1, 2), help="NIfTI through-plane voxel axis (default: largest spacing)"
    )
    p.add_argument(
        "--include-non-anatomy",
        action="store_true",
        help="DICOM: also enhance phase, field-map, ADC/trace, localizer and AI-derived images",
    )
    p.add_argument(
        "--consistency",
        choices=CONSISTENCY_MODES,
        help="project the output so that degrading it reproduces the input; auto: per input, k-space if "
        "the model's LR-kind estimate is sure of it, else the degradation that reproduces the input "
        "from the output better, none where unclear (default: the model card's recommendation, else "
        "off); the wrong model lowers quality",
    )
    p.add_argument("--threads", type=int, help="CPU threads for inference (default: torch's choice)")
    p.add_argument(
        "--runtime",
        choices=RUNTIMES,
        default="auto",
        help="where the generator runs on the CPU (default auto: the fastest installed here, measured once and "
        "cached); CUDA/MPS run on torch",
    )
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        help="the generator's arithmetic (default: the model card's recommendation, else fp32)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="print only problems and the summary")
    p.add_argument(
        "--report",
        metavar="FILE",
        help="also write what was written, what failed (with the reason) and the notes to FILE as JSON",
    )
    return p


def enhance_main(argv: list[str]) -> int:
    args = _enhance_parser().parse_args(argv)
    from srgan.errors import InputError

    def log(msg: str) -> None:
        if not args.quiet:
            print(msg, file=sys.stderr)

    def write_report(report, code: int, error: str | None = None) -> int:
        if args.report:
            import json

            from srgan.inference.files import EnhanceReport
            from srgan.io.atomic import write_text

            data = (report or EnhanceReport()).as_dict(code, error)
            try:
                write_text(args.report, json.dumps(data, indent=2) + "\n")
            except OSError as e:
                print(
                    f"srgan enhance: error: {args.report}: report cannot be written ({e.strerror or e})",
                    file=sys.stderr,
                )
                return code or 1
        return code

    try:
        from srgan.inference.engine import Enhancer
        from srgan.inference.files import Shard, enhance_path

        shard = Shard.from_env()  # under torchrun: a DICOM tree's series are shared among the ranks
        if shard is not None and shard.rank != 0:
            args.quiet = True
        enhancer = Enhancer(
            scale=args.scale,
            model=args.model,
            weights=args.weights,
            device=args.device,
            threads=args.threads if shard is None else shard.threads(args.threads),
            consistency=args.consistency,
            runtime=args.runtime,
            precision=args.precision,
        )
        log(
            f"model {enhancer.label}, x{enhancer.scale}, device {enhancer.device}, consistency {enhancer.consistency}, "
            f"runtime {enhancer.generator.name} {enhancer.generator.precision}"
        )
        report = enhance_path(
            args.input,
            args.output,
            enhancer,
            axis=args.axis,
            log=log,
            include_non_anatomy=args.include_non_anatomy,
            shard=shard,
        )
    except InputError as e:
        print(f"srgan enhance: error: {e}", file=sys.stderr)
        return write_report(None, 1, str(e))
    except KeyboardInterrupt:
        print("srgan enhance: interrupted; nothing half-written was kept", file=sys.stderr)
        return write_report(None, 130, "interrupted")
    if shard is not None and shard.rank != 0:  # rank 0 prints the one summary of every rank
        return write_report(report, 0 if not report.failed else 1)
    for note in report.notes:
        print(f"note: {note}", file=sys.stderr)
    for path, why in report.failed:
        print(f"srgan enhance: skipped {path}: {why}", file=sys.stderr)
    print(f"{len(report.written)} file(s) written to {args.output}, {len(report.failed)} failed")
    return write_report(report, 0 if not report.failed else 1)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: srgan {" + ",".join(COMMANDS) + "} ...\n\nBrainSR super-resolution models.\n")
        for name, text in COMMANDS.items():
            print(f"  {name:<10} {text}")
        print("\n'srgan COMMAND --help' describes each command.")
        return 0 if argv else 2
    if argv[0] in ("-V", "--version"):
        import srgan

        print(f"srgan {srgan.__version__}")
        return 0
    cmd, rest = argv[0], argv[1:]
    if cmd == "enhance":
        return enhance_main(rest)
    if cmd == "train":
        from srgan.training.train import main as run
    elif cmd == "evaluate":
        from srgan.evaluation.evaluate import main as run
    elif cmd == "benchmark":
        from srgan.evaluation.comparison import main as run
    else:
        print(f"srgan: unknown command {cmd!r}; choose from {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    return run(rest)


if __name__ == "__main__":
    sys.exit(main())

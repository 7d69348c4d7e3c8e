"""Where the ×4 folder path of ``bench_folder.py`` spends its time, stage by stage, in one process.

The same two folders (16 and 160 64² PNG slices) are enhanced through ``srgan.inference.files.enhance_path`` with
one ``Enhancer`` (×4, 2 threads, ``--runtime``), once to warm up, then ``--repeats`` times the 160-slice folder;
the generator call and the main thread's other stages (LR-kind estimate, ZIP check, normalisation, residual test,
projection) are timed by wrappers, per slice. The PNG decoding and encoding run on the I/O threads beside them and
show up as a slower generator call (they share the two cores).

    python benchmarks/profile_folder.py [--runtime openvino] [--weights X4.safetensors] [--repeats 3] [--precision fp32]
"""

from __future__ import annotations

import argparse
import collections
import functools
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_folder import make_folder  # noqa: E402

STAGES = [
    ("srgan.inference.engine", "_pooled_each", "LR-kind estimate"),
    ("srgan.inference.engine", "_interpolation_each", "ZIP check"),
    ("srgan.inference.engine", "residual_log_ratios", "residual test"),
    ("srgan.inference.engine", "project", "projection"),
]


def main() -> None:
    from srgan.options import PRECISIONS

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runtime", default="auto")
    ap.add_argument("--weights", type=Path)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--precision", choices=PRECISIONS, help="fp32 or bf16 (default: the model card's recommendation)")
    args = ap.parse_args()
    import importlib

    from srgan.inference.engine import Enhancer
    from srgan.inference.files import enhance_path
    from srgan.normalize import Normalizer

    spent: collections.Counter[str] = collections.Counter()

    def timed(f, label):
        @functools.wraps(f)
        def g(*a, **k):
            t0 = time.perf_counter()
            try:
                return f(*a, **k)
            finally:
                if threading.current_thread() is threading.main_thread():
                    spent[label] += time.perf_counter() - t0

        return g

    for module, name, label in STAGES:
        mod = importlib.import_module(module)
        setattr(mod, name, timed(getattr(mod, name), label))
    Normalizer.fit = classmethod(timed(Normalizer.fit.__func__, "normalisation"))  # type: ignore[method-assign]
    enh = Enhancer(scale=4, weights=args.weights, threads=2, runtime=args.runtime, precision=args.precision)
    gen_type = type(enh.generator)
    gen_type.__call__ = timed(gen_type.__call__, "generator call")  # type: ignore[method-assign]
    root = Path(tempfile.mkdtemp(prefix="profile-folder-"))
    try:
        folders = [make_folder(root / f"in{n}", n) for n in (16, 160)]

        def run(folder: Path) -> float:
            out = root / f"out-{folder.name}"
            shutil.rmtree(out, ignore_errors=True)
            t0 = time.perf_counter()
            enhance_path(folder, out, enh, log=lambda *a: None)
            return time.perf_counter() - t0

        run(folders[0])
        run(folders[1])
        spent.clear()
        wall = sum(run(folders[1]) for _ in range(args.repeats))
        n = 160 * args.repeats
        print(f"model {enh.label}, runtime {enh.generator.name}: {1e3 * wall / n:.2f} ms per slice in all")
        for label, sec in spent.most_common():
            print(f"  {label:<18} {1e3 * sec / n:.3f} ms per slice")
        print(f"  {'rest':<18} {1e3 * (wall - sum(spent.values())) / n:.3f} ms per slice")
        print("command: python benchmarks/profile_folder.py " + " ".join(sys.argv[1:]))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

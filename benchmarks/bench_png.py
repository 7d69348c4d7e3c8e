"""PNG encoding settings for enhanced slices: Pillow's zlib level and strategy, and imagecodecs' libpng with one
row filter, against time and size.

``srgan enhance`` writes every enhanced 2D image as a PNG (``srgan.io.images.save_image``), on the I/O threads
beside the generator; on the ×4 folder path of issue 17 the encoder is the largest cost after the generator. This
times both encoders on 256² 8-bit slices made like the ×4 outputs of that path (64 Kaggle tumour slices, every
class, sorted, Pillow bicubic to 256²), and on 16-bit slices of a real volume (``--volume``), one thread, in
memory, then ``save_image`` itself (quantisation, text chunks, atomic write) with the settings it uses.

    python benchmarks/bench_png.py [--n 64] [--repeats 3] [--volume NIFTI]
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
KAGGLE = REPO.parent / "shared" / "data" / "kaggle-brain-tumor-mri"
VOLUME = REPO.parent / "shared" / "data" / "extra-brain-mr" / "philips_elitionx_3t_t1_mprage"
SETTINGS = [(1, zlib.Z_DEFAULT_STRATEGY), (4, zlib.Z_DEFAULT_STRATEGY), (6, zlib.Z_DEFAULT_STRATEGY)]
SETTINGS += [(4, zlib.Z_HUFFMAN_ONLY), (1, zlib.Z_RLE), (4, zlib.Z_RLE)]
NAMES = {zlib.Z_DEFAULT_STRATEGY: "default", zlib.Z_HUFFMAN_ONLY: "Huffman only", zlib.Z_RLE: "Z_RLE"}


def kaggle_slices(n: int) -> list[np.ndarray]:
    from PIL import Image

    jpgs = sorted(KAGGLE.rglob("*.jpg"))
    step = len(jpgs) / n
    return [np.asarray(Image.open(jpgs[int(i * step)]).convert("L").resize((256, 256), Image.Resampling.BICUBIC))
            for i in range(n)]


def volume_slices(path: Path, n: int) -> list[np.ndarray]:
    import nibabel as nib

    files = sorted(path.rglob("*.nii*")) if path.is_dir() else [path]
    v = np.asanyarray(nib.load(files[0]).dataobj).astype(np.float32)
    v = np.clip(v / max(float(np.percentile(v, 99.5)), 1e-6), 0, 1)
    ks = np.linspace(v.shape[2] * 0.2, v.shape[2] * 0.8, n).astype(int)
    return [np.rint(v[:, :, k] * 65535).astype(np.uint16) for k in ks]


def timed(slices: list[np.ndarray], to_png, repeats: int) -> tuple[float, float]:
    """(best ms per slice over ``repeats``, mean kB per slice) of ``to_png`` (an array → PNG bytes)."""
    best, size = float("inf"), 0
    for _ in range(repeats):
        t0, size = time.perf_counter(), 0
        for a in slices:
            size += len(to_png(a))
        best = min(best, time.perf_counter() - t0)
    return 1e3 * best / len(slices), size / len(slices) / 1024


def pillow_png(level: int, strategy: int):
    from PIL import Image

    def to_png(a: np.ndarray) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, format="PNG", compress_level=level, compress_type=strategy)
        return buf.getvalue()

    return to_png


FILTERS = {None: "adaptive filters", 0x10: "Sub filter", 0x80: "Paeth filter"}


def imagecodecs_png(png_encode, level: int, fl: int | None):
    """imagecodecs' libpng with Z_RLE (``fl``: one row filter, None: libpng's adaptive choice)."""
    return lambda a: png_encode(np.ascontiguousarray(a), level=level, strategy=zlib.Z_RLE, filter=fl)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--volume", type=Path, default=VOLUME)
    args = ap.parse_args()
    sets = {"256² 8-bit (Kaggle, ×4 size)": kaggle_slices(args.n)}
    if args.volume.exists():
        sets[f"16-bit ({args.volume.name})"] = volume_slices(args.volume, min(args.n, 32))
    from srgan.io.images import _imagecodecs_png

    ic_png = _imagecodecs_png()
    print("| slices | zlib level | strategy | ms per slice | kB per slice |\n|---|---|---|---|---|")
    for name, slices in sets.items():
        for level, strategy in SETTINGS:
            ms, kb = timed(slices, pillow_png(level, strategy), args.repeats)
            print(f"| {name} | {level} | {NAMES[strategy]} | {ms:.2f} | {kb:.1f} |")
        if ic_png is not None:
            for level, fl in [(4, None), (4, 0x10), (4, 0x80)]:
                ms, kb = timed(slices, imagecodecs_png(ic_png, level, fl), args.repeats)
                print(f"| {name} | {level} | imagecodecs libpng, Z_RLE, {FILTERS[fl]} | {ms:.2f} | {kb:.1f} |")
    from srgan.io.images import PNG_COMPRESS_LEVEL, PNG_STRATEGY, save_image

    floats = [a.astype(np.float32) / 255 for a in sets["256² 8-bit (Kaggle, ×4 size)"]]
    text = {"Software": "BrainSR", "BrainSR-Provenance": "{" + "x" * 2500 + "}"}  # about a real provenance's size
    with tempfile.TemporaryDirectory() as tmp:
        best = float("inf")
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            for i, a in enumerate(floats):
                save_image(Path(tmp) / f"{i}.png", a, bit_depth=8, text=text)
            best = min(best, time.perf_counter() - t0)
    encoder = "imagecodecs, Paeth" if ic_png is not None else "Pillow"
    settings = f"{encoder}, level {PNG_COMPRESS_LEVEL}, {NAMES[PNG_STRATEGY]}"
    print(f"\nsave_image ({settings}, 8-bit, text chunks, atomic write): "
          f"{1e3 * best / len(floats):.2f} ms per 256² slice")
    print(f"command: python benchmarks/bench_png.py --n {args.n} --repeats {args.repeats}")


if __name__ == "__main__":
    main()

"""2D images (PNG, JPEG, TIFF) and folders of them, as grayscale float32 in [0, 1].

MR slices exported as images are grayscale; an RGB file is read as its luminance and says so in
``Image2D.notes`` so a caller can warn. Integer images are scaled by their full range (8-bit /255,
16-bit /65535) so metrics with ``data_range=1`` mean the same thing for both, and writing back at the same
bit depth is exact. Float TIFFs keep their values (no [0, 1] guarantee, ``bit_depth`` 32).
"""

from __future__ import annotations

import io
import json
import zlib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, PngImagePlugin, UnidentifiedImageError

from srgan.errors import InputError
from srgan.io import atomic

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
# zlib settings of written PNGs (lossless whatever they are): Z_RLE, the strategy zlib designed for filtered
# image rows, is ~40 % faster than level 4's default strategy and no bigger on MR slices, whose backgrounds are long
# runs of zeros (docs/benchmarks.md); with Z_RLE the level hardly matters
PNG_COMPRESS_LEVEL = 4
PNG_STRATEGY = zlib.Z_RLE
# Where imagecodecs is installed (the ``fast`` extra) its libpng encoder writes PNGs with one row filter, Paeth,
# instead of trying all five per row as Pillow does: 2.5x faster, same size on MR slices (docs/benchmarks.md)
PNG_FILTER_PAETH = 0x80
_AFTER_IHDR = 8 + 4 + 4 + 13 + 4  # signature, then IHDR's length, type, 13 bytes of data and CRC


@lru_cache(maxsize=1)
def _imagecodecs_png():
    """imagecodecs' ``png_encode``, or None where imagecodecs (optional) is not installed or lacks libpng; looked up
    once, since a failed import searches the path again on every call and this runs for every PNG written."""
    try:
        import imagecodecs
    except ImportError:
        return None
    return imagecodecs.png_encode if getattr(imagecodecs.PNG, "available", False) else None


def png_bytes(levels: np.ndarray, info: PngImagePlugin.PngInfo, compress_level: int = PNG_COMPRESS_LEVEL) -> bytes:
    """(H, W) uint8/uint16 ``levels`` as a grayscale PNG with ``info``'s text chunks.

    The pixels go through imagecodecs' libpng where it is installed (Paeth filter, Z_RLE), otherwise through
    Pillow (adaptive filters, Z_RLE); either way Pillow's own chunk writer adds the text chunks right after
    IHDR, before the pixels, where readers that stop at the first IDAT (Pillow's ``info``) still find them.
    """
    encode = _imagecodecs_png()
    if encode is None:
        buf = io.BytesIO()
        Image.fromarray(levels).save(
            buf, format="PNG", pnginfo=info, compress_level=int(compress_level), compress_type=PNG_STRATEGY
        )
        return buf.getvalue()
    png = encode(
        np.ascontiguousarray(levels), level=int(compress_level), strategy=PNG_STRATEGY, filter=PNG_FILTER_PAETH
    )
    if png[12:16] != b"IHDR":
        raise RuntimeError("imagecodecs.png_encode wrote no IHDR chunk first")
    buf = io.BytesIO()
    buf.write(png[:_AFTER_IHDR])
    for cid, data, _after_idat in info.chunks:
        PngImagePlugin.putchunk(buf, cid, data)
    buf.write(png[_AFTER_IHDR:])
    return buf.getvalue()


@dataclass
class Image2D:
    """One grayscale image: ``data`` (H, W) float32 in [0, 1] (float TIFF: as stored)."""

    data: np.ndarray
    bit_depth: int  # 8 or 16 (integer files), 32 (float TIFF)
    was_rgb: bool = False
    path: Path | None = None
    notes: list[str] = field(default_factory=list)


def _check_file(p: Path) -> None:
    if not p.exists():
        raise InputError(p, "file not found")
    if p.is_dir():
        raise InputError(p, "is a folder, not an image file")
    if p.stat().st_size == 0:
        raise InputError(p, "file is empty (0 bytes)")


def load_image(path: str | Path) -> Image2D:
    """Read a PNG (8/16-bit), JPEG or TIFF as grayscale float32.

    RGB(A)/palette images become luminance (ITU-R 709 weights, skimage ``rgb2gray``) with ``was_rgb`` set,
    unless all channels are equal; alpha is dropped; a multi-page TIFF gives its first page; EXIF
    orientation is applied. Missing, empty, unreadable or truncated files raise :class:`InputError`.
    Pillow reads 16-bit-per-channel RGB PNGs as 8-bit RGB, so those lose precision (noted).
    """
    p = Path(path)
    _check_file(p)
    notes: list[str] = []
    try:
        with Image.open(p) as opened:
            n_frames = getattr(opened, "n_frames", 1)
            opened.load()
            if n_frames > 1:
                notes.append(f"multi-page file: read page 1 of {n_frames}")
            oriented = ImageOps.exif_transpose(opened)
            if oriented is not None and oriented.size != opened.size:
                notes.append("EXIF orientation applied")
            im: Image.Image = oriented if oriented is not None else opened
            mode = im.mode
            if mode == "P":
                im = im.convert("RGBA" if "transparency" in im.info else "RGB")
                mode = im.mode
            if mode in ("1", "CMYK", "YCbCr", "LAB", "HSV"):
                im = im.convert("L" if mode == "1" else "RGB")
                mode = im.mode
            arr = np.asarray(im)
    except UnidentifiedImageError as exc:
        raise InputError(p, "is not a readable PNG, JPEG or TIFF image") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InputError(p, f"image data is truncated or corrupt ({exc})") from exc

    was_rgb = False
    if mode in ("LA", "RGBA", "La", "RGBa", "PA"):
        notes.append("alpha channel dropped")
        arr = arr[..., :-1]
    if arr.ndim == 3:
        if arr.shape[2] == 1 or all(np.array_equal(arr[..., 0], arr[..., c]) for c in range(1, arr.shape[2])):
            arr = arr[..., 0]
            if arr.ndim == 2 and mode not in ("LA", "La"):
                notes.append("colour file with identical channels read as grayscale")
        else:
            from skimage.color import rgb2gray

            was_rgb = True
            notes.append("RGB image converted to grayscale (luminance)")
            depth = 16 if arr.dtype == np.uint16 else 8
            gray = rgb2gray(arr[..., :3].astype(np.float64) / (2**depth - 1)).astype(np.float32)
            if mode == "RGB" and p.suffix.lower() == ".png" and _png_bit_depth(p) == 16:
                notes.append("16-bit RGB PNG read at 8 bits per channel")
            return Image2D(gray, depth, True, p, notes)

    if arr.dtype == np.uint8 or mode == "L":
        return Image2D((arr.astype(np.float32) / 255.0), 8, was_rgb, p, notes)
    if arr.dtype in (np.uint16, np.dtype(">u2")) or mode.startswith("I;16"):
        return Image2D((arr.astype(np.float32) / 65535.0), 16, was_rgb, p, notes)
    if mode == "I" or np.issubdtype(arr.dtype, np.integer):
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi > 65535:
            raise InputError(p, f"32-bit integer image with values {lo}..{hi} outside 0..65535 is not supported")
        notes.append("32-bit integer image read as 16-bit")
        return Image2D((arr.astype(np.float32) / 65535.0), 16, was_rgb, p, notes)
    if np.issubdtype(arr.dtype, np.floating):
        notes.append("floating-point image: values kept as stored, not scaled to [0, 1]")
        return Image2D(arr.astype(np.float32), 32, was_rgb, p, notes)
    raise InputError(p, f"unsupported image mode {mode!r}")


def _png_bit_depth(p: Path) -> int | None:
    with open(p, "rb") as f:
        head = f.read(25)
    return head[24] if len(head) == 25 and head[12:16] == b"IHDR" else None


def save_image(
    path: str | Path,
    data: np.ndarray,
    bit_depth: int = 8,
    text: dict | None = None,
    *,
    compress_level: int = PNG_COMPRESS_LEVEL,
) -> Path:
    """Write (H, W) ``data`` in [0, 1] as a grayscale image, atomically; the format follows the extension.

    PNG: 8 or 16 bit, ``text`` as tEXt/iTXt chunks (provenance), zlib level ``compress_level``. JPEG: 8 bit
    only (quality 95), ``text`` as the JPEG comment. TIFF: 8, 16 or 32 (float, values written as given),
    ``text`` as JSON in ImageDescription. Integer outputs clip to [0, 1] and round to the nearest level.
    """
    out = Path(path)
    ext = out.suffix.lower()
    if ext not in IMAGE_SUFFIXES:
        raise InputError(out, f"unsupported image extension {out.suffix!r}; use .png, .jpg or .tif")
    a = np.asarray(data)
    if a.ndim != 2:
        raise ValueError(f"expected (H, W) data, got shape {a.shape}")
    if (
        bit_depth not in (8, 16, 32)
        or (bit_depth == 32 and ext not in (".tif", ".tiff"))
        or (bit_depth == 16 and ext in (".jpg", ".jpeg"))
    ):
        raise ValueError(f"bit depth {bit_depth} cannot be written as {ext}")
    if not out.parent.is_dir():
        raise InputError(out.parent, "output folder does not exist")
    text = {str(k): str(v) for k, v in (text or {}).items()}
    if bit_depth == 32:
        levels = a.astype(np.float32)
    else:
        top = 2**bit_depth - 1
        # 8 bits in single precision (a level differs from double only within 2e-5 of a half level); 16 in double.
        # In place on one scaled copy: this runs once per output slice beside the generator.
        scaled = np.multiply(a, top, dtype=np.float32 if bit_depth == 8 else np.float64)
        np.clip(scaled, 0, top, out=scaled)  # ±inf to the ends; NaN stays NaN until nan_to_num makes it 0
        np.rint(scaled, out=scaled)
        levels = np.nan_to_num(scaled, copy=False).astype(np.uint8 if bit_depth == 8 else np.uint16)
    if ext == ".png":
        info = PngImagePlugin.PngInfo()
        for k, v in text.items():
            if v.isascii():
                info.add_text(k, v)
            else:
                info.add_itxt(k, v)
        atomic.write_bytes(out, png_bytes(levels, info, compress_level))
        return out
    im = Image.fromarray(levels, mode=None)
    kwargs: dict = {}
    if ext in (".jpg", ".jpeg"):
        fmt = "JPEG"
        kwargs["quality"] = 95
        if text:
            kwargs["comment"] = "\n".join(f"{k}: {v}" for k, v in text.items()).encode("utf-8")
    else:
        fmt = "TIFF"
        if text:
            kwargs["description"] = json.dumps(text)
    with atomic.atomic_path(out) as tmp:
        im.save(tmp, format=fmt, **kwargs)
    return out


def find_images(folder: str | Path) -> list[Path]:
    """Image files under ``folder`` (recursive, by extension, case-insensitive), sorted by relative path.

    Hidden files and folders (name starting with ".", e.g. macOS ``._x.jpg`` forks) are skipped.
    """
    root = Path(folder)
    if not root.is_dir():
        raise InputError(root, "folder not found")
    found = []
    for p in root.rglob("*"):
        rel = p.relative_to(root)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file():
            found.append(p)
    return sorted(found, key=lambda q: q.relative_to(root).as_posix())

"""Deterministic corruptions of real DICOM files, shared by the robustness suite and the reader's tests.

Each function takes the bytes of an intact file (and a ``numpy.random.Generator`` where it is random) and returns
the corrupted bytes; nothing here reads a clock or global random state, so a case is the same on every run.
"""
from __future__ import annotations

import io

import numpy as np
import pydicom
from pydicom.uid import ExplicitVRBigEndian

EXPLICIT_LE = b"1.2.840.10008.1.2.1\x00"


def meta_end(data: bytes) -> int:
    """Offset of the data set: after the preamble, DICM and the file meta group (its group length)."""
    assert data[128:132] == b"DICM" and data[132:138] == b"\x02\x00\x00\x00UL"
    return 144 + int.from_bytes(data[140:144], "little")


def pixel_offset(data: bytes) -> int:
    """Offset of the pixel data's value (uncompressed files)."""
    ds = pydicom.dcmread(io.BytesIO(data), defer_size=64)
    return int(ds.get_item(0x7FE00010, keep_deferred=True).value_tell)


def flip(data: bytes, pos: int, mask: int = 0x5A) -> bytes:
    b = bytearray(data)
    b[pos] ^= mask
    return bytes(b)


def flip_in_meta(data: bytes, rng: np.random.Generator) -> bytes:
    return flip(data, int(rng.integers(132, meta_end(data))))


def flip_in_header(data: bytes, rng: np.random.Generator) -> bytes:
    return flip(data, int(rng.integers(meta_end(data), min(pixel_offset(data), meta_end(data) + 4000))))


def truncate(data: bytes, rng: np.random.Generator) -> bytes:
    return data[: int(rng.integers(1, len(data) - 1))]


def zero_pixels(data: bytes) -> bytes:
    at = pixel_offset(data)
    return data[:at] + bytes(len(data) - at)


def short_pixels(data: bytes) -> bytes:
    """The pixel data element's length kept, its value cut by half (a file cut inside its pixels)."""
    at = pixel_offset(data)
    return data[: at + (len(data) - at) // 2]


def lying_syntax(data: bytes, uid: bytes) -> bytes:
    """The transfer syntax UID of an Explicit VR Little Endian file replaced by ``uid`` (same length padded)."""
    i = data.find(EXPLICIT_LE)
    assert i > 0
    return data[:i] + uid.ljust(len(EXPLICIT_LE), b"\x00")[: len(EXPLICIT_LE)] + data[i + len(EXPLICIT_LE) :]


def rewrite(data: bytes, **attrs) -> bytes:
    """The file rewritten with attributes set (``None`` deletes one), pixel data untouched."""
    ds = pydicom.dcmread(io.BytesIO(data))
    for kw, value in attrs.items():
        if value is None:
            if kw in ds:
                del ds[kw]
        else:
            setattr(ds, kw, value)
    out = io.BytesIO()
    ds.save_as(out)
    return out.getvalue()


def big_endian(data: bytes) -> bytes:
    """An Explicit VR Little Endian 16-bit file re-encoded Explicit VR Big Endian (pixel words swapped)."""
    ds = pydicom.dcmread(io.BytesIO(data))
    for _elem in ds.iterall():  # decode every raw element with the source's syntax before writing it in another
        pass
    ds.PixelData = np.frombuffer(ds.PixelData, "<u2").astype(">u2").tobytes()
    ds["PixelData"].VR = "OW"
    ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
    out = io.BytesIO()
    pydicom.dcmwrite(out, ds, implicit_vr=False, little_endian=False, force_encoding=True)
    return out.getvalue()


def set_syntax(data: bytes, uid: str) -> bytes:
    """The file meta group rewritten to claim ``uid``, the data set's bytes untouched (any length of UID)."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_file_meta_info

    meta = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True).file_meta
    meta.TransferSyntaxUID = uid
    buf = DicomBytesIO()
    buf.is_little_endian, buf.is_implicit_VR = True, False
    write_file_meta_info(buf, meta, enforce_standard=True)
    return data[:128] + b"DICM" + buf.getvalue() + data[meta_end(data):]

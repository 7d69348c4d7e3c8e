"""One DICOM file read honestly (what its header claims is checked against what its bytes are), and written in one
encoding.

Every reader of a DICOM file in the package (the folder scan, the series' pixel cache, the derived writer) reads it
with :func:`read_dicom`, so they agree on what a file is:

- The transfer syntax the file meta group claims is checked against the encoding of the data set itself (the
  first element's tag and VR bytes show implicit/explicit VR and the byte order). An uncompressed file whose claim
  is wrong is read as what its data really are, with a warning naming the file; an encapsulated (compressed) one
  whose data set is not Explicit VR Little Endian cannot be decoded and is refused. Nothing is misread silently.
- A file meta group that cannot be parsed is read past (the data set is found by its encoding, as for a file
  without meta group) with a warning, and never stops the files beside it.
- :func:`pixel_problem` checks the pixel data's length against Rows × Columns × NumberOfFrames × SamplesPerPixel ×
  BitsAllocated before anything is decoded, and refuses headers that promise more than :data:`MAX_PIXEL_BYTES`
  (size bombs) before any allocation.
- :func:`header_problem` says "truncated" only when the file ends inside its data; a header whose bytes stop
  making sense before the end of the file is called damaged.

Every file the package writes (the derived series) is written by :func:`write_dataset`: uncompressed, Explicit VR
Little Endian, whatever the source used (big endian included), so the writer undoes what the reader accepted.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

#: Decoded pixel data larger than this (bytes, all frames) are refused before decoding: a header promising
#: gigapixels or millions of frames is damaged or hostile, and no brain MR series comes near it.
MAX_PIXEL_BYTES = 4 << 30
#: Rows or Columns above this are refused (the largest MR matrices are 1024; mosaics of 64 tiles reach 2048).
MAX_SIDE = 16384

_SYNTAX_OF = {
    (True, True): ImplicitVRLittleEndian,
    (False, True): ExplicitVRLittleEndian,
    (False, False): ExplicitVRBigEndian,
}
_VRS = {
    "AE", "AS", "AT", "CS", "DA", "DS", "DT", "FD", "FL", "IS", "LO", "LT", "OB", "OD", "OF", "OL", "OV", "OW",
    "PN", "SH", "SL", "SQ", "SS", "ST", "SV", "TM", "UC", "UI", "UL", "UN", "UR", "US", "UT", "UV",
}  # fmt: skip


def _syntax_name(uid: UID | str) -> str:
    uid = UID(str(uid))
    return f"{uid.name}" if uid.is_valid and uid.name != str(uid) else str(uid)


_LONG_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "UC", "UN", "UR", "UT", "SV", "UV"}


def _valid_run(blob: bytes, size: int, off: int, implicit: bool, little: bool, n: int = 6) -> int:
    """How many of the next ``n`` data elements at ``off`` are well formed read so: ascending tags of a data set
    (group 0004 and on) that the dictionary knows or that are private, a known VR (explicit), a length within the
    file (``size`` bytes); ``n`` when the run reaches the pixel data or, after 3 sound elements, the end of
    ``blob`` (the file's first bytes)."""
    from pydicom.datadict import dictionary_has_tag

    last, count = -1, 0
    while count < n:
        if off + 8 > len(blob):
            return n if count >= 3 or off >= size else count
        group = int.from_bytes(blob[off : off + 2], "little" if little else "big")
        elem = int.from_bytes(blob[off + 2 : off + 4], "little" if little else "big")
        tag = group << 16 | elem
        if tag <= last or group < 0x0004 or group == 0xFFFF or not (group % 2 or dictionary_has_tag(tag)):
            return count
        if implicit:
            length, head = int.from_bytes(blob[off + 4 : off + 8], "little"), 8
        else:
            vr = blob[off + 4 : off + 6].decode("latin-1")
            if vr not in _VRS:
                return count
            if vr in _LONG_VRS:
                if off + 12 > len(blob):
                    return n
                length, head = int.from_bytes(blob[off + 8 : off + 12], "little" if little else "big"), 12
            else:
                length, head = int.from_bytes(blob[off + 6 : off + 8], "little" if little else "big"), 8
        if length != 0xFFFFFFFF and off + head + length > size:
            return count
        count += 1
        if tag >= 0x7FE00000 or length == 0xFFFFFFFF:
            return n  # pixel data or a sequence of undefined length: the header so far was sound
        last, off = tag, off + head + length
    return count


#: A gzip-compressed DICOM file (``.dcm.gz``, as some archives and patient exports store them) decompressing to more
#: than this is refused (a gzip bomb).
MAX_GZIP_BYTES = 2 << 30
GZIP_SUFFIXES = (".dcm.gz", ".dicom.gz", ".ima.gz")
_GZ_SIZES: dict[Path, int] = {}


def is_gzipped_dicom(path: Path) -> bool:
    """True for a ``.dcm.gz`` (``.dicom.gz``, ``.ima.gz``) file that starts as gzip data."""
    if not path.name.lower().endswith(GZIP_SUFFIXES):
        return False
    with open(path, "rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


def _gunzip(path: Path) -> bytes:
    import zlib

    out, size = [], 0
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            try:
                part = d.decompress(chunk, MAX_GZIP_BYTES + 1 - size)
            except zlib.error as err:
                raise InvalidDicomError(f"is not valid gzip data ({err})") from err
            size += len(part)
            if size > MAX_GZIP_BYTES or d.unconsumed_tail:
                raise InvalidDicomError(f"decompresses to more than {MAX_GZIP_BYTES >> 30} GiB (a gzip bomb?); refused")
            out.append(part)
    data = b"".join(out)
    _GZ_SIZES[path] = len(data)
    return data


def data_size(path: Path) -> int:
    """Bytes of the DICOM data of ``path``: its size, or the decompressed size of a ``.dcm.gz`` already read."""
    return _GZ_SIZES.get(path) or path.stat().st_size


class _Meta:
    """What the start of a file holds: preamble, meta group (or why it is unreadable), the data set's offset and
    its actual encoding (``None`` when no reading of the bytes is sound)."""

    def __init__(self, path: Path, data: bytes | None = None):
        self.preamble: bytes | None = None
        self.meta: FileMetaDataset | None = None
        self.meta_error: str | None = None
        self.body, self.actual = 0, None
        size = path.stat().st_size if data is None else len(data)
        with open(path, "rb") if data is None else io.BytesIO(data) as fp:
            blob = fp.read(1 << 16)
            start = 132 if blob[128:132] == b"DICM" else 0
            if start:
                self.preamble = blob[:128]
            fp.seek(start)
            parsed = None
            try:
                from pydicom.filereader import _read_file_meta_info

                self.meta = _read_file_meta_info(fp)
                parsed = fp.tell()
            except Exception as err:  # noqa: BLE001 - a damaged meta group, whatever the parser says
                self.meta_error = f"{type(err).__name__}: {' '.join(str(err).split())[:200]}"
        candidates = [] if parsed is None else [parsed]
        if blob[start : start + 6] == b"\x02\x00\x00\x00UL":  # the group length says where the data set starts
            candidates.append(start + 12 + int.from_bytes(blob[start + 8 : start + 12], "little"))
        candidates += [
            i for i in range(start, min(len(blob), start + 4096), 2) if blob[i : i + 2] in (b"\x08\x00", b"\x00\x08")
        ]
        claimed = self.claimed
        prefer = (
            [(claimed.is_implicit_VR, claimed.is_little_endian)]
            if claimed is not None and claimed in _SYNTAX_OF.values()
            else []
        )
        offsets = list(dict.fromkeys(c for c in candidates if 0 <= c < len(blob)))
        for enc in dict.fromkeys([*prefer, (False, True), (True, True), (False, False)]):
            for off in offsets:
                if _valid_run(blob, size, off, *enc) >= 6:
                    self.body, self.actual = off, enc
                    if parsed is not None and off != parsed and self.meta_error is None:
                        self.meta_error = f"its group ends at byte {parsed}, the data set starts at byte {off}"
                    return
        self.body = parsed if parsed is not None else start

    @property
    def claimed(self) -> UID | None:
        ts = self.meta.get("TransferSyntaxUID") if self.meta is not None else None
        return UID(str(ts)) if ts else None


def read_dicom(
    path: str | Path, *, defer_size: int | None = None, stop_before_pixels: bool = False
) -> tuple[pydicom.Dataset, str | None]:
    """``(dataset, warning)`` for the file at ``path`` (``force=True``: a file without preamble is read too).

    ``warning`` names what was wrong and how the file was read anyway (a transfer syntax claim the data
    contradict, an unreadable meta group), else None. Raises :class:`InvalidDicomError` when the claim cannot be
    honoured (an encapsulated syntax over data that are not Explicit VR Little Endian) and whatever pydicom raises
    for a file it cannot read at all.
    """
    p = Path(path)
    data = _gunzip(p) if is_gzipped_dicom(p) else None
    if data is not None:
        defer_size = None  # a deferred value would be read again from the compressed file
    info = _Meta(p, data)
    claimed, actual = info.claimed, info.actual
    if info.meta_error is None and (actual is None or claimed is None or _claim_holds(claimed, actual)):
        source: Any = p if data is None else io.BytesIO(data)
        ds = pydicom.dcmread(source, defer_size=defer_size, stop_before_pixels=stop_before_pixels, force=True)
        if data is not None:
            ds.filename = str(p)
        return ds, _check_encapsulation(ds, claimed)
    if actual is None:
        raise InvalidDicomError(f"has a damaged file meta group ({info.meta_error}) and no readable data set after it")
    implicit, little = actual
    real = _SYNTAX_OF[actual]
    if info.meta_error is not None:
        warning = f"has a damaged file meta group ({info.meta_error}); read as {real.name}"
        meta = FileMetaDataset()
        if claimed is not None and claimed.is_transfer_syntax and claimed.is_encapsulated and actual == (False, True):
            real = claimed
    else:
        assert claimed is not None
        if claimed.is_transfer_syntax and (claimed.is_encapsulated or claimed.is_deflated):
            raise InvalidDicomError(
                f"claims the transfer syntax {_syntax_name(claimed)} but its data set is encoded {real.name}; "
                "the header is damaged and the pixel data cannot be decoded"
            )
        warning = (
            f"claims the transfer syntax {_syntax_name(claimed)} but its data are {real.name}; read as what they are"
        )
        meta = info.meta  # type: ignore[assignment]
    from pydicom.filereader import read_dataset

    def stop(tag: Any, vr: Any, length: Any) -> bool:
        return stop_before_pixels and int(tag) in (0x7FE00010, 0x7FE00008, 0x7FE00009)

    with open(p, "rb") if data is None else io.BytesIO(data) as fp:
        fp.seek(info.body)
        body = read_dataset(fp, implicit, little, stop_when=stop, defer_size=defer_size)
    ds = FileDataset(str(p), body, preamble=info.preamble, file_meta=meta, is_implicit_VR=implicit,
                     is_little_endian=little)  # fmt: skip
    ds.file_meta.TransferSyntaxUID = real
    return ds, warning


def _check_encapsulation(ds: pydicom.Dataset, claimed: UID | None) -> str | None:
    """A compressed claim over native pixel data (a defined length) is read as the native data they are."""
    if claimed is None or not claimed.is_transfer_syntax or not claimed.is_encapsulated or "PixelData" not in ds:
        return None
    raw = ds.get_item(0x7FE00010, keep_deferred=True)
    length = getattr(raw, "length", None)
    if length == 0xFFFFFFFF or getattr(raw, "is_undefined_length", False):
        return None
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return (
        f"claims the transfer syntax {_syntax_name(claimed)} but its pixel data are not compressed "
        "(not encapsulated); read as Explicit VR Little Endian"
    )


def _claim_holds(claimed: UID, actual: tuple[bool, bool]) -> bool:
    """True when the claimed syntax can describe a data set encoded ``actual`` (implicit VR, little endian)."""
    if claimed in _SYNTAX_OF.values():
        return (claimed.is_implicit_VR, claimed.is_little_endian) == actual
    if not claimed.is_transfer_syntax:
        return False  # not a transfer syntax at all (a damaged UID)
    if claimed.is_deflated:
        return True  # the data set is compressed; its bytes say nothing before inflating
    return actual == (False, True) if claimed.is_encapsulated else True


# --------------------------------------------------------------------------------------------- checks


def _as_int(ds: pydicom.Dataset, keyword: str, default: int) -> int:
    try:
        value = ds.get(keyword, default)
        return default if value in (None, "") else int(value)
    except (TypeError, ValueError):
        return -1


def pixel_problem(ds: pydicom.Dataset, path: Path) -> str | None:
    """Why the image size the header states cannot be the pixel data's (checked before any decoding), or None.

    Refused: Rows/Columns missing, zero, negative or above :data:`MAX_SIDE`; more than :data:`MAX_PIXEL_BYTES` of
    decoded pixels; uncompressed pixel data whose length is not Rows × Columns × NumberOfFrames × SamplesPerPixel ×
    BitsAllocated / 8 (padding shorter than one row accepted); a data element running past the end of the file.
    """
    rows, cols = _as_int(ds, "Rows", 0), _as_int(ds, "Columns", 0)
    if rows <= 0 or cols <= 0:
        return "has no image size (Rows/Columns); the header is incomplete or damaged"
    frames = _as_int(ds, "NumberOfFrames", 1) or 1
    samples = _as_int(ds, "SamplesPerPixel", 1) or 1
    bits = _as_int(ds, "BitsAllocated", 16) or 16
    if frames < 0 or samples < 0 or bits < 0 or bits > 64:
        return "has an unusable image header (NumberOfFrames, SamplesPerPixel or BitsAllocated is not a number)"
    if rows > MAX_SIDE or cols > MAX_SIDE:
        return f"claims an image of {rows}×{cols} pixels, more than any scanner writes; refused"
    decoded = rows * cols * frames * samples * max(bits, 8) // 8
    if decoded > MAX_PIXEL_BYTES:
        return (
            f"claims {frames} frame(s) of {rows}×{cols}×{samples} at {bits} bits ({decoded / (1 << 30):.1f} GiB "
            f"decoded, above the {MAX_PIXEL_BYTES >> 30} GiB limit); refused before decoding"
        )
    tag = next((t for t in (0x7FE00010, 0x7FE00008, 0x7FE00009) if t in ds), None)
    if tag is None:
        return None
    raw = ds.get_item(tag, keep_deferred=True)
    tell, length = getattr(raw, "value_tell", None), getattr(raw, "length", None)
    if tell is None or length is None or length == 0xFFFFFFFF:
        return None  # encapsulated: the decoder checks the fragments
    size = data_size(path)
    if tell + length > size:
        return f"is truncated: the pixel data end at byte {tell + length} but the file has {size} bytes"
    ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    syntax = UID(str(ts)) if ts is not None else None
    if tag != 0x7FE00010 or (syntax is not None and (not syntax.is_transfer_syntax or syntax.is_encapsulated)):
        return None
    expected = (rows * cols * frames * samples * bits + 7) // 8
    row_bytes = max(1, (cols * samples * bits + 7) // 8)
    if length < expected or length - expected >= max(2, row_bytes):
        return (
            f"has {length} bytes of pixel data but Rows × Columns × frames × samples × bits "
            f"({rows}×{cols}×{frames}×{samples}×{bits}) need {expected}; the header or the pixel data are damaged"
        )
    return None


def header_problem(ds: pydicom.Dataset, path: Path) -> str:
    """Why a header without any image attribute is unusable: truncated only when the file ends inside it.

    The last element read tells: if it is a known (or private) element whose value runs to or past the end of the
    file, the file was cut; if it is an unknown tag, or the elements end well before the file does, the bytes
    stopped making sense there: the header is damaged (a flipped byte), not truncated.
    """
    from pydicom.datadict import dictionary_has_tag
    from pydicom.tag import Tag

    size = data_size(path)
    last: tuple[int, int, int] | None = None  # (value offset, length, tag)
    for tag in ds.keys():
        raw = ds.get_item(tag, keep_deferred=True)
        tell, length = getattr(raw, "value_tell", None), getattr(raw, "length", None)
        if tell is not None and length is not None and (last is None or tell > last[0]):
            last = (int(tell), int(length), int(tag))
    if last is None:
        return f"is truncated: only {size} bytes, the header ends before any image attribute"
    tell, length, last_tag = last
    end = tell + (0 if length == 0xFFFFFFFF else length)
    plausible = dictionary_has_tag(last_tag) or Tag(last_tag).is_private
    if plausible and end >= size - 8:
        return f"is truncated: only {size} bytes, the header ends before any image attribute"
    at = tell - 8 if not plausible else end
    return (
        f"has a damaged header: its data elements stop making sense at about byte {at} of {size} "
        "(the file is not truncated); no image attribute could be read"
    )


def file_size_ok(path: Path) -> bool:
    """True for a regular file (not a FIFO, device or socket, which would block or never end a read)."""
    try:
        import stat

        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


# -------------------------------------------------------------------------------------------- writing


#: Binary VRs whose bytes are words of this many bytes: their byte order follows the transfer syntax.
_WORD_VRS = {"OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8}


def write_dataset(ds: pydicom.Dataset, path: Path) -> None:
    """The one writer policy: every derived file is written Explicit VR Little Endian, whatever the source used.

    A source read as big endian (Explicit VR Big Endian, retired but written by older scanners) keeps its binary
    word values (OW/OF/OL/OD/OV: overlay data, LUT data, private blobs) as big-endian bytes; they are swapped
    here, and every dataset of the copy is marked as read little endian, so that pydicom encodes it afresh.
    """
    big = ds.original_encoding[1] is False
    if big:
        for elem in ds.iterall():  # iterating converts raw (still encoded) elements with the source's syntax
            size = _WORD_VRS.get(str(elem.VR))
            if size and isinstance(elem.value, (bytes, bytearray)) and elem.tag != 0x7FE00010:
                n = len(elem.value) // size * size
                swapped = np.frombuffer(bytes(elem.value[:n]), dtype=f">u{size}").astype(f"<u{size}").tobytes()
                elem.value = swapped + bytes(elem.value[n:])

        def relabel(d: pydicom.Dataset) -> None:
            d.set_original_encoding(False, True, d.original_character_set)
            for elem in d:
                if elem.VR == "SQ":
                    for item in elem.value:
                        relabel(item)

        relabel(ds)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True)

"""Where retrieved instances land: ``ROOT/<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm``.

Each series is received into ``ROOT/<study>/.partial-<series>/`` and renamed into place only when every expected
instance is there, so an interrupted retrieve never shows a half series; the partial folder is kept and a re-run
fetches only the instances missing from it. Files are stored byte for byte as received (the DIMSE dataset with the
file meta of its presentation context, or the DICOMweb part unchanged), after checks that refuse garbage, UIDs
unsafe as file names, instances of another study or series, non-storage SOP classes and absurd sizes.
"""
from __future__ import annotations

import os
import shutil
import threading
import uuid
import warnings
from io import BytesIO
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.filewriter import write_file_meta_info

from .errors import PacsError
from .models import valid_uid
from .syntaxes import STORAGE_CLASSES

MAX_INSTANCE_BYTES = 2 * 1024**3  # a single instance larger than this is refused
MAX_PIXEL_BYTES = 4 * 1024**3  # nor may its header announce more pixel data than this
MAX_FRAMES = 100_000


class Budget:
    """A byte quota shared by the series of one retrieve (``None``: unlimited)."""

    def __init__(self, used: int = 0, limit: int | None = None) -> None:
        self.used, self.limit = used, limit
        self._lock = threading.Lock()

    def take(self, n: int) -> None:
        with self._lock:
            if self.limit is not None and self.used + n > self.limit:
                raise PacsError(f"the study cache quota ({self.limit / 1024**2:.0f} MiB) would be exceeded: "
                                "clear the cache or raise the quota")
            self.used += n


def part10(file_meta: FileMetaDataset, dataset_bytes: bytes) -> bytes:
    """The DICOM file for a dataset received over DIMSE: preamble, ``DICM``, the file meta, the bytes unchanged."""
    out = BytesIO()
    out.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(out, file_meta, enforce_standard=True)
    out.write(dataset_bytes)
    return out.getvalue()


def check_instance(data: bytes, *, study_uid: str, series_uid: str | None = None,
                   sop_uids: set[str] | None = None, sop_class: str | None = None) -> Dataset:
    """Parse the header of a received DICOM file and refuse anything a cache must not hold; returns the header."""
    if len(data) > MAX_INSTANCE_BYTES:
        raise PacsError(f"an instance of {len(data) / 1024**3:.1f} GiB was refused (limit "
                        f"{MAX_INSTANCE_BYTES / 1024**3:.0f} GiB)")
    try:
        with warnings.catch_warnings():  # what a hostile file makes pydicom say is in the refusal below
            warnings.simplefilter("ignore")
            ds = dcmread(BytesIO(data), stop_before_pixels=True)
            study, series, sop = ds.get("StudyInstanceUID"), ds.get("SeriesInstanceUID"), ds.get("SOPInstanceUID")
            klass = str(ds.get("SOPClassUID", ""))
            meta_sop = str(ds.file_meta.get("MediaStorageSOPInstanceUID", sop))
    except (InvalidDicomError, ValueError, TypeError, KeyError, EOFError, OSError, AttributeError) as exc:
        raise PacsError(f"a malformed dataset was refused ({type(exc).__name__}: {str(exc)[:120]})") from None
    if study is None and sop is None:
        raise PacsError("a malformed dataset was refused (no Study or SOP Instance UID in it)")
    for name, value in (("StudyInstanceUID", study), ("SeriesInstanceUID", series), ("SOPInstanceUID", sop)):
        if not valid_uid(value):
            raise PacsError(f"a dataset with an invalid {name} {str(value)[:70]!r} was refused")
    if study != study_uid:
        raise PacsError(f"an instance of another study ({study}) was refused")
    if series_uid is not None and series != series_uid:
        raise PacsError(f"an instance of another series ({series}) was refused")
    if sop_uids is not None and sop not in sop_uids:
        raise PacsError(f"an instance that was not asked for ({sop}) was refused")
    if meta_sop != sop:
        raise PacsError(f"instance {sop}: its file meta names another SOP instance ({meta_sop})")
    if klass not in STORAGE_CLASSES:
        raise PacsError(f"instance {sop}: SOP class {klass!r} is not a storage SOP class")
    if sop_class is not None and klass != sop_class:
        raise PacsError(f"instance {sop}: SOP class {klass} differs from the one it was sent as ({sop_class})")
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    try:
        frames = int(ds.get("NumberOfFrames", 1) or 1)
    except (TypeError, ValueError):
        raise PacsError(f"instance {sop}: NumberOfFrames {ds.get('NumberOfFrames')!r} is not a number") from None
    bits = int(ds.get("BitsAllocated", 8) or 8)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if frames < 1 or frames > MAX_FRAMES or samples > 4 or bits > 64:
        raise PacsError(f"instance {sop}: absurd image header ({frames} frames, {samples} samples, {bits} bits)")
    if rows * cols * frames * samples * bits // 8 > MAX_PIXEL_BYTES:
        raise PacsError(f"instance {sop}: absurd image size ({rows}×{cols}×{frames} frames) was refused")
    return ds


class SeriesFolder:
    """The cache folder of one series, and its partial twin while it is being received."""

    def __init__(self, root: Path, study_uid: str, series_uid: str, budget: Budget | None = None) -> None:
        if not (valid_uid(study_uid) and valid_uid(series_uid)):
            raise PacsError(f"invalid study or series UID: {study_uid!r} / {series_uid!r}")
        self.study_uid, self.series_uid = study_uid, series_uid
        self.study_dir = Path(root) / study_uid
        self.final = self.study_dir / series_uid
        self.partial = self.study_dir / f".partial-{series_uid}"
        self.budget = budget or Budget()
        self.received = 0
        self._lock = threading.Lock()

    @staticmethod
    def _uids(folder: Path) -> set[str]:
        if not folder.is_dir():
            return set()
        return {p.name[:-4] for p in folder.iterdir() if p.name.endswith(".dcm") and p.is_file()}

    def present(self) -> set[str]:
        """SOP Instance UIDs already here, complete or partial."""
        return self._uids(self.final) | self._uids(self.partial)

    def complete(self) -> set[str]:
        return self._uids(self.final)

    def begin(self) -> None:
        """Make the partial folder; where a complete copy exists, link its files in (they stay unchanged)."""
        self.study_dir.parent.mkdir(parents=True, exist_ok=True)
        for folder in (self.study_dir, self.partial):
            folder.mkdir(mode=0o700, exist_ok=True)
        if self.final.is_dir():
            for path in self.final.iterdir():
                target = self.partial / path.name
                if path.name.endswith(".dcm") and not target.exists():
                    try:
                        os.link(path, target)
                    except OSError:
                        shutil.copy2(path, target)

    def write(self, data: bytes, *, sop_uids: set[str] | None = None, sop_class: str | None = None) -> str:
        """Check one received DICOM file and store it unchanged; returns its SOP Instance UID."""
        ds = check_instance(data, study_uid=self.study_uid, series_uid=self.series_uid, sop_uids=sop_uids,
                            sop_class=sop_class)
        sop = str(ds.SOPInstanceUID)
        target = self.partial / f"{sop}.dcm"
        if target.exists() or (self.final / f"{sop}.dcm").exists():
            return sop  # a duplicate: the copy we have is kept
        self.budget.take(len(data))
        tmp = self.partial / f".{sop}.{uuid.uuid4().hex[:8]}.tmp"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, target)
        with self._lock:
            self.received += 1
        return sop

    def commit(self) -> Path:
        """Rename the partial folder into place (replacing an older, smaller complete copy)."""
        for tmp in self.partial.glob(".*.tmp"):
            tmp.unlink()
        if self.final.exists():
            old = self.study_dir / f".old-{self.series_uid}-{uuid.uuid4().hex[:8]}"
            os.rename(self.final, old)
            os.rename(self.partial, self.final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(self.partial, self.final)
        return self.final

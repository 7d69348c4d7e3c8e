"""DICOM folders as series: recursive header scan, grouping, sorting, geometry and lazy pixels.

``scan(folder)`` reads headers only and returns every image series found, plus the files it could not
use. A ``Series`` is a grid of 2D ``Frame``s, ``(n_volumes, n_slices)``: one frame per classic file,
per enhanced multi-frame frame or per Siemens mosaic tile. Slices are ordered by position along the
slice normal (LPS mm); images that share a position (fMRI time points, diffusion directions, the
Philips field map next to its magnitude) become separate volumes. Pixels are decoded only when asked.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError

from srgan.errors import InputError
from srgan.io import dicom_pixels as dp
from srgan.io.dicom_file import file_size_ok, header_problem, is_gzipped_dicom, pixel_problem, read_dicom
from srgan.io.image_type import kind_of_tokens

#: Extensions that claim to be DICOM: such a file that cannot be read is reported, not skipped.
DICOM_SUFFIXES = {".dcm", ".dicom", ".ima", ".dic"}

#: Volumes at one position are ordered magnitude first, then the other kinds in this order.
_KIND_ORDER = ["magnitude", "phase", "real", "imaginary", "field_map", "adc", "trace", "fa", "map", "localizer"]

_POSITION_TOLERANCE_MM = 0.01


@dataclass(frozen=True)
class Problem:
    """A file that looked like DICOM but could not be used (or, in ``ScanResult.warnings``, was used though
    something in it was wrong). ``message`` is one line (what a decoder says over several lines is joined)."""

    path: Path
    message: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "message", " ".join(str(self.message).split()))


@dataclass(eq=False)
class Frame:
    """One 2D image of a series: a classic file, one frame of an enhanced file, or one mosaic tile.

    ``position`` is the LPS mm centre of the first pixel (ImagePositionPatient); ``orientation`` the
    six direction cosines (row direction, then column direction); ``pixel_spacing`` is (Δrow, Δcol) mm.
    """

    path: Path
    frame_index: int | None
    tile_index: int | None
    rows: int
    cols: int
    position: np.ndarray | None
    orientation: np.ndarray | None
    pixel_spacing: tuple[float, float]
    slice_thickness: float | None
    instance_number: int | None
    sop_instance_uid: str
    image_type: tuple[str, ...]
    frame_type: tuple[str, ...] = ()
    complex_component: str | None = None
    window: list[tuple[float, float]] = field(default_factory=list)
    rescale: tuple[float, float] = (1.0, 0.0)
    acquisition_number: int | None = None
    acquisition_time: str | None = None
    temporal_position: int | None = None
    trigger_time: float | None = None
    echo_number: int | None = None
    echo_time: float | None = None
    b_value: float | None = None
    diffusion_isotropic: bool = False
    stack_position: int | None = None

    @property
    def kind(self) -> str:
        """'magnitude', 'phase', 'real', 'imaginary', 'field_map', 'adc', 'trace', 'fa', 'map' or 'localizer'."""
        kind = kind_of_tokens(list(self.frame_type[2:]) + list(self.image_type[2:]))
        if kind is not None:
            return kind
        if self.diffusion_isotropic:
            return "trace"
        component = (self.complex_component or "").upper()
        if component in ("PHASE", "REAL", "IMAGINARY"):
            return component.lower()
        return "magnitude"

    @property
    def is_derived(self) -> bool:
        types = self.frame_type or self.image_type
        return bool(types) and types[0].upper() == "DERIVED"

    @property
    def is_magnitude_anatomy(self) -> bool:
        """True for plain magnitude images (original or derived) — what super-resolution is for."""
        return self.kind == "magnitude"

    @property
    def slice_normal(self) -> np.ndarray | None:
        if self.orientation is None:
            return None
        n = np.cross(self.orientation[:3], self.orientation[3:])
        return n / np.linalg.norm(n)


_SERIES_KEYWORDS = (
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "FrameOfReferenceUID",
    "PatientName",
    "PatientID",
    "PatientPosition",
    "StudyDescription",
    "StudyDate",
    "SeriesDescription",
    "SeriesNumber",
    "Modality",
    "Manufacturer",
    "SOPClassUID",
)


def _str(value) -> str:
    return "" if value is None else str(value)


def _int(value) -> int | None:
    try:
        return None if value in (None, "") else int(value)
    except (TypeError, ValueError):
        return None


def _float(value) -> float | None:
    try:
        return None if value in (None, "") else float(value)
    except (TypeError, ValueError):
        return None


def _vec(value, n: int) -> np.ndarray | None:
    try:
        arr = np.asarray([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return arr if arr.shape == (n,) and np.all(np.isfinite(arr)) else None


def _types(value) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = value.split("\\")
    return tuple(str(v).strip().upper() for v in value)


def _windows(source) -> list[tuple[float, float]]:
    if source is None:
        return []
    centers, widths = source.get("WindowCenter"), source.get("WindowWidth")
    if centers is None or widths is None:
        return []
    centers = list(centers) if isinstance(centers, pydicom.multival.MultiValue) else [centers]
    widths = list(widths) if isinstance(widths, pydicom.multival.MultiValue) else [widths]
    out = []
    for c, w in zip(centers, widths):
        c, w = _float(c), _float(w)
        if c is not None and w is not None and w > 0:
            out.append((c, w))
    return out


def _b_value(ds) -> float | None:
    b = _float(ds.get("DiffusionBValue"))
    if b is None:
        seq = ds.get("MRDiffusionSequence")
        if seq:
            b = _float(seq[0].get("DiffusionBValue"))
    return b


def _isotropic_diffusion(ds) -> bool:
    """A trace (isotropic) diffusion image: b > 0 with no gradient direction (Philips stores it so)."""
    if _str(ds.get("DiffusionDirectionality")).upper() == "ISOTROPIC":
        return True
    b = _b_value(ds)
    gradient = _vec(ds.get("DiffusionGradientOrientation") or [], 3)
    return bool(b) and gradient is not None and not np.any(gradient)


def _first_item(ds, keyword: str):
    seq = ds.get(keyword)
    return seq[0] if seq else None


def _classic_frame(ds: pydicom.Dataset, path: Path) -> Frame:
    spacing = _vec(ds.get("PixelSpacing"), 2)
    if spacing is None:
        spacing = _vec(ds.get("ImagerPixelSpacing"), 2)
    return Frame(
        path=path,
        frame_index=None,
        tile_index=None,
        rows=int(ds.Rows),
        cols=int(ds.Columns),
        position=_vec(ds.get("ImagePositionPatient"), 3),
        orientation=_vec(ds.get("ImageOrientationPatient"), 6),
        pixel_spacing=(1.0, 1.0) if spacing is None else (float(spacing[0]), float(spacing[1])),
        slice_thickness=_float(ds.get("SliceThickness")),
        instance_number=_int(ds.get("InstanceNumber")),
        sop_instance_uid=_str(ds.get("SOPInstanceUID")),
        image_type=_types(ds.get("ImageType")),
        window=_windows(ds),
        rescale=dp.frame_rescale(ds, None),
        acquisition_number=_int(ds.get("AcquisitionNumber")),
        acquisition_time=_str(ds.get("AcquisitionTime")) or None,
        temporal_position=_int(ds.get("TemporalPositionIdentifier")),
        trigger_time=_float(ds.get("TriggerTime")),
        echo_number=_int(ds.get("EchoNumbers")),
        echo_time=_float(ds.get("EchoTime")),
        b_value=_b_value(ds),
        diffusion_isotropic=_isotropic_diffusion(ds),
        complex_component=_str(ds.get("ComplexImageComponent")) or None,
    )


def _tile_frames(ds: pydicom.Dataset, path: Path, layout: dp.TileLayout) -> list[Frame]:
    """One frame per tile of a tiled image (Siemens mosaic, UIH grid): tile size and position from the layout."""
    base = _classic_frame(ds, path)
    positions = dp.tile_positions(ds, layout)
    frames = []
    for k in range(layout.n):
        f = Frame(**{**base.__dict__})
        f.tile_index, f.rows, f.cols, f.position = k, layout.tile_rows, layout.tile_cols, positions[k]
        frames.append(f)
    return frames


def _enhanced_frames(ds: pydicom.Dataset, path: Path) -> list[Frame]:
    n = int(ds.NumberOfFrames)
    shared = _first_item(ds, "SharedFunctionalGroupsSequence")
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []

    def group(i: int, keyword: str):
        item = per_frame[i] if i < len(per_frame) else None
        for source in (item, shared):
            if source is not None:
                found = _first_item(source, keyword)
                if found is not None:
                    return found
        return None

    frames = []
    top_types = _types(ds.get("ImageType"))
    for i in range(n):
        plane = group(i, "PlanePositionSequence")
        orient = group(i, "PlaneOrientationSequence")
        measures = group(i, "PixelMeasuresSequence")
        content = group(i, "FrameContentSequence")
        ftype = group(i, "MRImageFrameTypeSequence") or group(i, "FrameTypeSequence")  # noqa: SIM222
        voi = group(i, "FrameVOILUTSequence")
        diffusion = group(i, "MRDiffusionSequence")
        echo = group(i, "MREchoSequence")
        spacing = _vec(measures.get("PixelSpacing"), 2) if measures is not None else None
        if spacing is None:
            spacing = _vec(ds.get("PixelSpacing"), 2)
        position = _vec(plane.get("ImagePositionPatient"), 3) if plane is not None else None
        orientation = _vec(orient.get("ImageOrientationPatient"), 6) if orient is not None else None
        frames.append(
            Frame(
                path=path,
                frame_index=i,
                tile_index=None,
                rows=int(ds.Rows),
                cols=int(ds.Columns),
                position=position if position is not None else _vec(ds.get("ImagePositionPatient"), 3),
                orientation=orientation if orientation is not None else _vec(ds.get("ImageOrientationPatient"), 6),
                pixel_spacing=(1.0, 1.0) if spacing is None else (float(spacing[0]), float(spacing[1])),
                slice_thickness=(
                    _float(measures.get("SliceThickness")) if measures is not None else _float(ds.get("SliceThickness"))
                ),
                instance_number=_int(ds.get("InstanceNumber")),
                sop_instance_uid=_str(ds.get("SOPInstanceUID")),
                image_type=top_types,
                frame_type=_types(ftype.get("FrameType")) if ftype is not None else (),
                complex_component=(_str(ftype.get("ComplexImageComponent")) or None) if ftype is not None else None,
                window=_windows(voi) or _windows(ds),
                rescale=dp.frame_rescale(ds, i),
                acquisition_number=_int(content.get("FrameAcquisitionNumber")) if content is not None else None,
                acquisition_time=_str(content.get("FrameAcquisitionDateTime")) or None if content is not None else None,
                temporal_position=_int(content.get("TemporalPositionIndex")) if content is not None else None,
                stack_position=_int(content.get("InStackPositionNumber")) if content is not None else None,
                echo_time=_float(echo.get("EffectiveEchoTime")) if echo is not None else None,
                b_value=_float(diffusion.get("DiffusionBValue")) if diffusion is not None else None,
                diffusion_isotropic=diffusion is not None and _isotropic_diffusion(diffusion),
            )
        )
    return frames


def frames_of(ds: pydicom.Dataset, path: Path) -> list[Frame]:
    """The 2D frames of one image dataset (header only is enough)."""
    if int(ds.get("NumberOfFrames", 1) or 1) > 1 or "PerFrameFunctionalGroupsSequence" in ds:
        return _enhanced_frames(ds, path)
    layout = dp.tile_layout(ds)
    if layout is not None:
        return _tile_frames(ds, path, layout)
    return [_classic_frame(ds, path)]


# ---------------------------------------------------------------------------------------------- scan


@dataclass
class ScanResult:
    """Series found under a folder (sorted by study, series number), the files that were unusable, and the files
    that were used though something in them was wrong (``warnings``: e.g. a transfer syntax claim their data
    contradict, read as what the data are)."""

    series: list[Series]
    problems: list[Problem]
    warnings: list[Problem] = field(default_factory=list)


def _iter_files(root: Path) -> list[Path]:
    """Regular files under ``root`` (hidden ones left out). Links to folders are not followed (no loop can hang
    the scan); FIFOs, sockets, devices and links that lead nowhere or in a circle are left out (a read of them
    would block or fail)."""
    if root.is_file():
        return [root]
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        out.extend(p for f in sorted(filenames) if not f.startswith(".") and file_size_ok(p := Path(dirpath) / f))
    return out


def _has_dicm_magic(path: Path) -> tuple[bool, bytes]:
    with open(path, "rb") as fh:
        head = fh.read(132)
    return head[128:132] == b"DICM", head


def _looks_like_raw_dataset(head: bytes) -> bool:
    """A DICOM stream without preamble starts with a group 0x0002 or 0x0008 element (little endian)."""
    return len(head) >= 8 and head[1] == 0 and head[0] in (0x02, 0x08)


def _read_header(path: Path, warnings: list[Problem] | None = None) -> pydicom.Dataset | None:
    """Header of ``path`` (no pixel data), None when the file is not DICOM; InvalidDicomError when it
    claims to be DICOM but is unreadable. What :func:`srgan.io.dicom_file.read_dicom` warns of goes into
    ``warnings``."""
    magic, head = _has_dicm_magic(path)
    claims = magic or path.suffix.lower() in DICOM_SUFFIXES or path.name.upper() == "DICOMDIR"
    gzipped = is_gzipped_dicom(path)  # a .dcm.gz: read_dicom decompresses it (with a size limit)
    claims = claims or gzipped
    if not magic and not gzipped and not _looks_like_raw_dataset(head):
        if claims:
            raise InvalidDicomError("is not a DICOM file (no DICM marker and no DICOM data elements)")
        return None
    try:
        # Large values (pixel data, CSA blobs) are deferred, not read: fast, and the pixel data's
        # offset and length stay known, which is how a truncated file is caught here.
        ds, warning = read_dicom(path, defer_size=2048)
    except Exception as err:
        if claims or magic:
            raise InvalidDicomError(f"could not be read as DICOM ({type(err).__name__}: {err})") from err
        return None
    if warning is not None and warnings is not None:
        warnings.append(Problem(path, warning))
    return ds


_PIXEL_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)


def _check_image(ds: pydicom.Dataset, path: Path) -> str | None:
    """Why an image header is unusable (truncated, no or an impossible size, no pixel data), or None."""
    if "Rows" not in ds or "Columns" not in ds or not ds.Rows or not ds.Columns:
        return "has no image size (Rows/Columns); the header is incomplete or the file is truncated"
    if not any(t in ds for t in _PIXEL_TAGS):
        return "has no pixel data; the file is probably truncated"
    return pixel_problem(ds, path)


def _dicomdir_files(path: Path, problems: list[Problem]) -> list[Path]:
    try:
        from pydicom.fileset import FileSet

        fs = FileSet(pydicom.dcmread(path))
        return [Path(inst.path) for inst in fs]
    except Exception as err:
        problems.append(Problem(path, f"DICOMDIR could not be read ({err}); the folder was scanned instead"))
        return []


def scan(folder: str | Path, progress: Callable[[int, int], None] | None = None) -> ScanResult:
    """Find every DICOM image series under ``folder`` (recursively; a single file or DICOMDIR works too).

    Files are recognised by content, not by extension. Only headers are read. Unreadable files that
    claim to be DICOM become ``Problem``s; other files are skipped silently. Raises InputError when the
    path does not exist or holds no DICOM image.
    """
    root = Path(folder)
    if not root.exists():
        raise InputError(root, "does not exist")
    candidates = _iter_files(root)
    problems: list[Problem] = []
    warnings: list[Problem] = []
    for dicomdir in [p for p in candidates if p.name.upper() == "DICOMDIR"]:
        known = {p.resolve() for p in candidates}
        candidates += [p for p in _dicomdir_files(dicomdir, problems) if p.exists() and p.resolve() not in known]

    infos: dict[tuple[str, str], dict] = {}
    frames_by_series: dict[tuple[str, str], list[Frame]] = defaultdict(list)
    total = len(candidates)
    for done, path in enumerate(candidates, 1):
        try:
            ds = _read_header(path, warnings)
        except InvalidDicomError as err:
            problems.append(Problem(path, str(err)))
            ds = None
        except OSError as err:
            problems.append(Problem(path, f"could not be opened ({err.strerror or err})"))
            ds = None
        if ds is not None and "DirectoryRecordSequence" not in ds:
            _add_file(ds, path, infos, frames_by_series, problems)
        if progress is not None:
            progress(done, total)

    series: list[Series] = []
    for key, frames in frames_by_series.items():
        series.extend(_build_series(infos[key], frames))
    if not series:
        if problems:
            raise InputError(
                root,
                f"holds no readable DICOM image ({len(problems)} unreadable file(s), "
                f"e.g. {problems[0].path.name}: {problems[0].message})",
            )
        raise InputError(root, "holds no DICOM image")
    series.sort(
        key=lambda s: (
            s.study_date,
            s.study_uid,
            s.series_number if s.series_number is not None else 1 << 30,
            s.uid,
            s.part,
        )
    )
    return ScanResult(series=series, problems=problems, warnings=warnings)


def _add_file(ds, path, infos, frames_by_series, problems) -> None:
    if "PixelData" in ds or "Rows" in ds or "NumberOfFrames" in ds:
        reason = _check_image(ds, path)
        if reason:
            problems.append(Problem(path, reason))
            return
    elif len(ds) == 0 or "SOPClassUID" not in ds or "Image" in str(getattr(ds.get("SOPClassUID"), "name", "")):
        problems.append(Problem(path, header_problem(ds, path)))
        return
    else:
        return  # a DICOM object without an image (structured report, presentation state...)
    try:
        frames = frames_of(ds, path)
    except InputError as err:
        problems.append(Problem(path, err.problem))
        return
    except Exception as err:  # a malformed header value
        problems.append(Problem(path, f"has an unusable image header ({type(err).__name__}: {err})"))
        return
    key = (_str(ds.get("StudyInstanceUID")), _str(ds.get("SeriesInstanceUID")))
    if key not in infos:
        infos[key] = {kw: ds.get(kw) for kw in _SERIES_KEYWORDS}
        infos[key]["is_mosaic"] = dp.tile_layout(ds) is not None
    frames_by_series[key].extend(frames)


# ---------------------------------------------------------------------------------------- grouping


def _geometry_key(f: Frame) -> tuple:
    iop = None if f.orientation is None else tuple(np.round(f.orientation, 3) + 0.0)
    return (f.rows, f.cols, iop, tuple(round(v, 4) for v in f.pixel_spacing))


def _describe_geometry(key: tuple) -> str:
    rows, cols, iop, spacing = key
    if iop is None:
        return f"{rows}×{cols}"
    n = np.abs(np.cross(iop[:3], iop[3:]))
    plane = ("sagittal", "coronal", "axial")[int(np.argmax(n))]
    return f"{rows}×{cols} {plane}"


def _build_series(info: dict, frames: list[Frame]) -> list[Series]:
    problems: list[str] = []
    seen: dict[tuple, Frame] = {}
    for f in frames:
        seen.setdefault((f.sop_instance_uid, f.frame_index, f.tile_index), f)
    if len(seen) < len(frames):
        problems.append(f"{len(frames) - len(seen)} duplicate image(s) (same SOPInstanceUID) ignored")
    frames = list(seen.values())

    parts: dict[tuple, list[Frame]] = defaultdict(list)
    for f in frames:
        parts[_geometry_key(f)].append(f)
    keys = sorted(parts, key=lambda k: -len(parts[k]))
    out = []
    for i, key in enumerate(keys):
        part_problems = list(problems)
        if len(keys) > 1:
            part_problems.append(
                f"the series mixes {len(keys)} image sizes/orientations; split into parts, this is part "
                f"{i + 1} of {len(keys)} ({_describe_geometry(key)}, {len(parts[key])} images)"
            )
        out.append(Series(info, parts[key], part=i if len(keys) > 1 else 0, problems=part_problems))
    return out


def _temporal_key(f: Frame) -> tuple:
    return (
        _KIND_ORDER.index(f.kind) if f.kind in _KIND_ORDER else len(_KIND_ORDER),
        f.temporal_position if f.temporal_position is not None else -1,
        f.acquisition_number if f.acquisition_number is not None else -1,
        f.instance_number if f.instance_number is not None else -1,
        f.frame_index if f.frame_index is not None else -1,
        str(f.path),
    )


# ------------------------------------------------------------------------------------------- series


class _DatasetCache:
    """Small thread-safe LRU of fully read datasets and decoded stored frames, keyed by path."""

    def __init__(self, n_datasets: int = 4, n_arrays: int = 64):
        self._lock = threading.RLock()
        self._datasets: OrderedDict[Path, pydicom.Dataset] = OrderedDict()
        self._arrays: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._n_datasets, self._n_arrays = n_datasets, n_arrays

    def dataset(self, path: Path) -> pydicom.Dataset:
        with self._lock:
            if path in self._datasets:
                self._datasets.move_to_end(path)
                return self._datasets[path]
        try:
            ds, _ = read_dicom(path)  # the scan reported the warning
        except Exception as err:
            raise InputError(path, f"could not be read ({type(err).__name__}: {' '.join(str(err).split())})") from err
        with self._lock:
            self._datasets[path] = ds
            while len(self._datasets) > self._n_datasets:
                self._datasets.popitem(last=False)
        return ds

    def stored(self, frame: Frame) -> np.ndarray:
        """Stored values (R, C) of one frame, decoding the file (or the frame) on first use."""
        key = (frame.path, frame.frame_index)
        with self._lock:
            arr = self._arrays.get(key)
            if arr is not None:
                self._arrays.move_to_end(key)
        if arr is None:
            ds = self.dataset(frame.path)
            arr = dp.decode_frames(ds, index=frame.frame_index)[0]
            with self._lock:
                self._arrays[key] = arr
                while len(self._arrays) > self._n_arrays:
                    self._arrays.popitem(last=False)
        if frame.tile_index is not None:
            ds = self.dataset(frame.path)
            layout = dp.tile_layout(ds)
            if layout is None:
                raise InputError(frame.path, "is no longer a tiled image (mosaic/grid) as it was when scanned")
            arr = dp.split_tiles(arr, layout)[frame.tile_index]
        if arr.shape != (frame.rows, frame.cols):
            raise InputError(
                frame.path, f"decoded image is {arr.shape[0]}×{arr.shape[1]}, the header says {frame.rows}×{frame.cols}"
            )
        return arr


class Series:
    """One DICOM series (or one geometric part of it) as a grid of frames (n_volumes, n_slices).

    Geometry is LPS mm; ``affine`` maps voxel (col, row, slice, 1) to LPS. ``problems`` lists what is
    wrong with the stack (gaps, uneven spacing, duplicates, mixed geometry) in plain sentences.
    """

    def __init__(self, info: dict, frames: list[Frame], part: int = 0, problems: list[str] | None = None):
        first = frames[0]
        self.study_uid: str = _str(info.get("StudyInstanceUID"))
        self.uid: str = _str(info.get("SeriesInstanceUID"))
        self.part = part
        self.frame_of_reference_uid = _str(info.get("FrameOfReferenceUID"))
        self.patient_name = _str(info.get("PatientName"))
        self.patient_id = _str(info.get("PatientID"))
        self.patient_position = _str(info.get("PatientPosition"))
        self.study_description = _str(info.get("StudyDescription"))
        self.study_date = _str(info.get("StudyDate"))
        self.series_description = _str(info.get("SeriesDescription"))
        self.series_number = _int(info.get("SeriesNumber"))
        self.modality = _str(info.get("Modality"))
        self.manufacturer = _str(info.get("Manufacturer"))
        self.sop_class_uid = _str(info.get("SOPClassUID"))
        self.is_mosaic = bool(info.get("is_mosaic"))
        self.problems: list[str] = list(problems or [])
        self.rows, self.cols = first.rows, first.cols
        self._cache = _DatasetCache()
        self._grid = self._stack(frames)
        self.frames: list[Frame] = [f for volume in self._grid for f in volume]
        self.files: list[Path] = sorted({f.path for f in self.frames})
        self._geometry()

    # -- construction -------------------------------------------------------------------------------

    def _stack(self, frames: list[Frame]) -> list[list[Frame]]:
        """Group frames by position along the normal, then split each position's frames into volumes."""
        first = frames[0]
        if first.orientation is None or any(f.position is None for f in frames):
            self.problems.append("images have no patient position/orientation; slices ordered by InstanceNumber")
            ordered = sorted(frames, key=lambda f: _temporal_key(f)[3:])
            self.n_positions = len(ordered)
            return [ordered]
        normal = first.slice_normal
        along = sorted(((float(f.position @ normal), f) for f in frames), key=lambda t: t[0])  # type: ignore[operator]
        positions: list[list[tuple[float, Frame]]] = []
        for d, f in along:
            if positions and abs(d - positions[-1][0][0]) <= _POSITION_TOLERANCE_MM:
                positions[-1].append((d, f))
            else:
                positions.append([(d, f)])
        stacks = [sorted((f for _, f in group), key=_temporal_key) for group in positions]
        counts = [len(s) for s in stacks]
        n_volumes = min(counts)
        if max(counts) != n_volumes:
            left = sum(counts) - n_volumes * len(stacks)
            self.problems.append(
                f"slice positions hold unequal numbers of images ({n_volumes} to {max(counts)}): only "
                f"{n_volumes} complete volume(s) kept, {left} image(s) left out"
            )
        self.n_positions = len(stacks)
        return [[stacks[s][v] for s in range(len(stacks))] for v in range(n_volumes)]

    def _geometry(self) -> None:
        f0 = self._grid[0][0]
        self.orientation = f0.orientation if f0.orientation is not None else np.array([1.0, 0, 0, 0, 1, 0])
        row_dir, col_dir = self.orientation[:3], self.orientation[3:]
        normal = np.cross(row_dir, col_dir)
        self.slice_normal = normal / np.linalg.norm(normal)
        self.pixel_spacing: tuple[float, float] = f0.pixel_spacing
        column = self._grid[0]
        origin = f0.position if f0.position is not None else np.zeros(3)
        thickness = f0.slice_thickness or 1.0
        if len(column) > 1 and all(f.position is not None for f in column):
            d = np.array([f.position @ self.slice_normal for f in column])
            steps = np.diff(d)
            self.slice_spacing = float(np.median(steps))
            slice_vec = (column[-1].position - column[0].position) / (len(column) - 1)  # type: ignore[operator]
            self._check_spacing(d, steps)
        else:
            self.slice_spacing = float(thickness)
            slice_vec = self.slice_normal * thickness
        affine = np.eye(4)
        affine[:3, 0] = row_dir * self.pixel_spacing[1]
        affine[:3, 1] = col_dir * self.pixel_spacing[0]
        affine[:3, 2] = slice_vec
        affine[:3, 3] = origin
        self.affine = affine
        kinds = [v[0].kind for v in self._grid]
        self.volume_kinds: list[str] = kinds
        for v, volume in enumerate(self._grid):
            if len({f.kind for f in volume}) > 1:
                self.problems.append(f"volume {v} mixes image kinds ({', '.join(sorted({f.kind for f in volume}))})")
        self.window = self._default_window()

    def _check_spacing(self, d: np.ndarray, steps: np.ndarray) -> None:
        median = float(np.median(steps))
        tol = max(0.01, 0.01 * median)
        gaps = [i for i, s in enumerate(steps) if s > 1.5 * median]
        for i in gaps:
            missing = round(steps[i] / median) - 1
            self.problems.append(
                f"gap between slices {i} and {i + 1} ({d[i]:.2f} → {d[i + 1]:.2f} mm along the normal): "
                f"about {missing} slice(s) missing"
            )
        uneven = [s for i, s in enumerate(steps) if i not in gaps and abs(s - median) > tol]
        if uneven:
            self.problems.append(
                f"uneven slice spacing: {len(uneven)} step(s) differ from {median:.3f} mm "
                f"(from {min(uneven):.3f} to {max(uneven):.3f} mm)"
            )

    def _default_window(self) -> tuple[float, float] | None:
        volume = self._grid[0]
        for f in (volume[len(volume) // 2], *volume):
            if f.window:
                return f.window[0]
        return None

    # -- public API ---------------------------------------------------------------------------------

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """(n_volumes, n_slices, rows, cols)."""
        return (len(self._grid), len(self._grid[0]), self.rows, self.cols)

    @property
    def kind(self) -> str:
        """The kind of every volume ('magnitude', 'field_map'...), or 'mixed'."""
        kinds = set(self.volume_kinds)
        return kinds.pop() if len(kinds) == 1 else "mixed"

    @property
    def anatomy_volumes(self) -> list[int]:
        """Indices of the volumes made of magnitude anatomy images."""
        return [v for v, vol in enumerate(self._grid) if all(f.is_magnitude_anatomy for f in vol)]

    @property
    def description(self) -> str:
        n_vol, n_sl, r, c = self.shape
        label = f"#{self.series_number} " if self.series_number is not None else ""
        text = f"{label}{self.series_description or '(no description)'} — {n_sl}×{r}×{c}"
        if n_vol > 1:
            text += f" ×{n_vol} volumes"
        return text + (f" (part {self.part + 1})" if self.part else "")

    def frame(self, volume: int, slice_: int) -> Frame:
        return self._grid[volume][slice_]

    def pixels(self, volume: int, slice_: int) -> np.ndarray:
        """Modality values float32 (rows, cols) of one frame, decoded on demand."""
        f = self.frame(volume, slice_)
        if f.tile_index is None and f.frame_index is None:
            ds = self._cache.dataset(f.path)
            if "ModalityLUTSequence" in ds:
                return dp.frame_pixels(ds)
        return dp.rescale(self._cache.stored(f), *f.rescale)

    def volume(self, volume: int = 0) -> np.ndarray:
        """Modality values float32 (n_slices, rows, cols) of one volume."""
        return np.stack([self.pixels(volume, s) for s in range(self.shape[1])])

    def header(self, volume: int, slice_: int) -> pydicom.Dataset:
        """The full dataset of the file holding this frame (for a tag panel)."""
        return self._cache.dataset(self.frame(volume, slice_).path)

    def __repr__(self) -> str:
        return f"Series({self.description!r}, shape={self.shape}, uid={self.uid!r})"

"""Derived (AI super-resolution) DICOM series: one new series per source series, image for image.

Input is the series as the reader (:mod:`srgan.io.dicom_series`) built it: its frames, their order (volume, then
slice; the derived files are numbered so) and their kinds are used as they are, never read, sorted or classified
again; each source file is read once, for the headers to copy and the pixels still to enhance. Enhanced pixels
come first from a lookup of slices already enhanced (the viewer's cache), then from the enhancer for the
others, with the series' plan and the slices' ``(volume, slice)`` keys so outputs the plan already holds are
reused.

Why a derived *series* and not overwritten images: PACS and viewers must always be able to tell an enhanced
image from an acquired one, go back to the source (SourceImageSequence, ReferencedSeriesSequence) and read
how it was made (DerivationDescription, ImageComments carry the provenance and the disclaimer).

What changes and what is kept
- Same SOP class as the source. Every source attribute is copied, private ones included (Siemens CSA,
  Philips and GE groups); only what the new grid and the derivation require is changed: new
  SeriesInstanceUID / SOPInstanceUIDs (file meta kept consistent), SeriesNumber + 1000, SeriesDescription
  marked ``AI super-resolution xS``, ImageType ``DERIVED\\SECONDARY`` (Enhanced MR: ``DERIVED\\PRIMARY``, the
  only value 2 that IOD allows) with values 3+ kept, DerivationDescription, DerivationCodeSequence
  (113085 DCM "Spatial resampling"), ImageComments, SourceImageSequence, ReferencedSeriesSequence,
  BurnedInAnnotation NO.
- Grid: Rows/Columns × s, PixelSpacing ÷ s, ImagePositionPatient by :func:`srgan.io.geometry.refine_position`
  (pixel-centre convention of the architecture notes); orientation, slice thickness and spacing, Study and
  FrameOfReference UIDs kept. 4D order survives because InstanceNumber, temporal and diffusion attributes
  are copied unchanged.
- Intensities go back to the source's stored type (BitsAllocated/BitsStored/PixelRepresentation). The source
  RescaleSlope/Intercept are kept when the enhanced values fit the stored range; otherwise a new slope is
  written (intercept kept) so that the maximum fits. Values below the stored range (e.g. bicubic
  undershoot under 0 for unsigned magnitude) are clipped. When the slope changes, Philips' private scale
  slope (2005,100E) and RealWorldValueSlope are changed with it so they keep meaning the same real values.
- Written uncompressed, Explicit VR Little Endian, whatever the source used (big endian included: one writer,
  :func:`write_dataset`). LossyImageCompression is kept as the source had it (set to
  01 when the source was baseline JPEG).
  Smallest/LargestImagePixelValue and IconImageSequence are dropped (they no longer hold).

Tiled images (one model, :func:`srgan.io.dicom_pixels.tile_layout`, shared with the reader: Siemens mosaics and
United Imaging VFRAME grids) are enhanced tile by tile and written back as the same grid of ×s tiles. A UIH grid
keeps each tile's position in its item of the private sequence (0065,1051) (the top level has none): every item's
ImagePositionPatient is refined on the tile's own grid, and the tile matrix (0065,1004) is scaled ×s, so dcm2niix
reads the source grid refined with the same centre. Siemens mosaics: the mosaic's
ImagePositionPatient (and Siemens' copy of it, SlicePosition_PCS (0019,1015)) is refined on the mosaic grid;
the tile positions follow, as dcm2niix and nibabel derive them from the mosaic centre, which does not move.
The CSA headers and (0019,100A) are kept (dcm2niix 1.0.2022 takes the tile count from the CSA header and the
grid from its square root). AcquisitionMatrix / AcquisitionMatrixText (0051,100B) are scaled ×s for mosaics
only, because readers such as SPM take the tile size from them; for other images they keep describing the
acquisition.

Enhanced (multi-frame) MR sources are written as Enhanced MR images again (SOP class kept): per-frame pixel
measures, plane positions and rescale are updated, non-anatomy frames are dropped from the file (with their
functional groups), and each frame carries a DerivationImageSequence whose SourceImageSequence names the source
instance and ReferencedFrameNumber; SourceImageEvidenceSequence lists the source instance. The Enhanced MR
Pulse Sequence / Bulk Motion attributes (PulseSequenceName, EchoPulseSequence, ...) are removed: the IOD
conditions them on ImageType value 1 ORIGINAL/MIXED and dciodvfy rejects them on DERIVED images (they stay in
the referenced source). Classic MR output per frame was rejected because it would change the SOP class.

Non-anatomy images (phase, real/imaginary, field maps, ADC/trace/FA maps, localizers and images already made by
an AI enhancer) are left out by default with a note in the report (``include_non_anatomy=True`` keeps them):
the frame kinds the reader gave (ImageType / FrameType tokens of :mod:`srgan.io.image_type`,
ComplexImageComponent, isotropic diffusion; so the writer and the viewer agree), and for single-frame files
Philips' private trace marker and an AI enhancer's derivation text.

Parts of several series are refused (InputError): one call writes one derived series (the parts the reader split
one SeriesInstanceUID into go together). Only the frames the reader put into the series are written (a frame it
left out, e.g. of an incomplete volume, is not). Multi-frame files of a single-frame SOP class are skipped (not
supported).

Failure policy: the destination is checked first (:func:`srgan.io.atomic.check_new_folder`). A source file that
cannot be read or decoded is skipped and listed in ``DerivedReport.skipped`` (the CLI then exits non-zero); if
no image is left, :class:`InputError` is raised and nothing is written. The series is built in a hidden folder
beside the destination (:func:`srgan.io.atomic.atomic_folder`): any other failure (e.g. in the enhancer) or a
cancel removes it, so the output folder appears complete or not at all. A cancel raises
:class:`WriteCancelled`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pydicom.valuerep import format_number_as_ds

from srgan.errors import InputError
from srgan.io import dicom_pixels
from srgan.io.atomic import atomic_folder, check_new_folder
from srgan.io.dicom_file import read_dicom
from srgan.io.dicom_series import Frame, Series
from srgan.io.geometry import refine_position
from srgan.io.image_type import reason_of_kind
from srgan.provenance import DISCLAIMER, Provenance

if TYPE_CHECKING:
    from srgan.inference.plan import Plan

#: A slice's key: ``(volume, slice)`` in the first (or only) part of the series, ``(part, volume, slice)`` after.
Key = tuple[int, ...]
#: The viewer's cache of enhanced slices: ``lookup(volume, slice)`` is that slice enhanced, (s·H, s·W) float32 in
#: modality units, or None when it has not been enhanced yet.
Lookup = Callable[[int, int], "np.ndarray | None"]
_Ident = tuple[Path, "int | None", "int | None"]  # (file, frame index, mosaic tile index) as the reader has them

ENHANCED_SOP_CLASSES = {"1.2.840.10008.5.1.4.1.1.4.1", "1.2.840.10008.5.1.4.1.1.4.3", "1.2.840.10008.5.1.4.1.1.2.1"}

_AI_MARKERS = ("super-resolution", "brainsr", DISCLAIMER.lower())

DERIVATION_CODE = ("113085", "DCM", "Spatial resampling")
SOURCE_PURPOSE_CODE = ("121322", "DCM", "Source image for image processing operation")
SERIES_NUMBER_OFFSET = 1000
#: At most this many source files are read ahead to fill the enhancer's batches (memory stays bounded).
LOOKAHEAD = 16
_LOSSY_SYNTAXES = {"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51"}  # JPEG baseline / extended: always lossy
# Enhanced MR Pulse Sequence / Bulk Motion Synchronization attributes: the IOD conditions them on ImageType
# value 1 ORIGINAL or MIXED and dciodvfy rejects them on DERIVED images; the source still holds them
_ORIGINAL_ONLY = (
    "PulseSequenceName",
    "MRAcquisitionType",
    "EchoPulseSequence",
    "MultipleSpinEcho",
    "MultiPlanarExcitation",
    "PhaseContrast",
    "VelocityEncodingAcquisitionSequence",
    "TimeOfFlightContrast",
    "ArterialSpinLabelingContrast",
    "SteadyStatePulseSequence",
    "EchoPlanarPulseSequence",
    "SaturationRecovery",
    "SpectrallySelectedSuppression",
    "OversamplingPhase",
    "GeometryOfKSpaceTraversal",
    "RectilinearPhaseEncodeReordering",
    "SegmentedKSpaceTraversal",
    "CoverageOfKSpace",
    "NumberOfKSpaceTrajectories",
    "BulkMotionCompensationTechnique",
    "BulkMotionSignalSource",
)


class NothingToEnhance(InputError):
    """The series holds no image to enhance by design (every image is a field map, phase, ADC... left out): a note
    for the report, not an error."""


class WriteCancelled(Exception):
    """The caller's ``cancel()`` returned True; nothing was left on disk."""


@dataclass
class DerivedReport:
    out_dir: Path
    files: list[Path] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # (source file, reason)
    notes: list[str] = field(default_factory=list)
    series_instance_uid: str = ""


def _philips_isotropic(ds: Dataset) -> bool:
    """Philips classic DTI writes its trace ("isotropic") image with the acquired ImageType; it is marked only by
    the private diffusion direction (2001,1004) ``I`` with b > 0 (b = 0 images also carry ``I``)."""
    try:
        direction = str(ds.get_private_item(0x2001, 0x04, "Philips Imaging DD 001").value).strip().upper()
    except (KeyError, ValueError):
        return False
    try:
        b = float(ds.get("DiffusionBValue", 0) or 0)
    except (TypeError, ValueError):
        b = 0.0
    return direction == "I" and b > 0


def _int(value) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _stored_range(ds: Dataset) -> tuple[int, int, np.dtype]:
    bits_stored = int(ds.BitsStored)
    signed = int(ds.PixelRepresentation) == 1
    lo, hi = (-(1 << (bits_stored - 1)), (1 << (bits_stored - 1)) - 1) if signed else (0, (1 << bits_stored) - 1)
    alloc = int(ds.BitsAllocated)
    dtype = np.dtype(f"{'i' if signed else 'u'}{alloc // 8}").newbyteorder("<")
    return lo, hi, dtype


def _choose_rescale(values: np.ndarray, slope: float, intercept: float, hi: int) -> float:
    """Keep ``slope`` when the largest value fits the stored range, else the smallest DS slope that makes it fit."""
    vmax = float(np.max(values)) if values.size else 0.0
    if (vmax - intercept) / slope <= hi + 0.5:
        return slope
    new = (vmax - intercept) / hi
    text = format_number_as_ds(new)
    while float(text) * hi < vmax - intercept:
        new *= 1 + 1e-9
        text = format_number_as_ds(new)
    return float(text)


def _quantise(values: np.ndarray, slope: float, intercept: float, lo: int, hi: int, dtype) -> np.ndarray:
    stored = np.rint((values.astype(np.float64) - intercept) / slope)
    return np.clip(stored, lo, hi).astype(dtype)


def _code_item(code: tuple[str, str, str]) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = code
    return item


def _source_item(src: Dataset, frame_number: int | None) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = src.SOPClassUID
    item.ReferencedSOPInstanceUID = src.SOPInstanceUID
    if frame_number is not None:
        item.ReferencedFrameNumber = frame_number
    item.PurposeOfReferenceCodeSequence = DicomSequence([_code_item(SOURCE_PURPOSE_CODE)])
    return item


def _refine_in(item: Dataset, iop, spacing, scale: int) -> None:
    """Refine IPP and PixelSpacing held directly in ``item`` (top level, functional group or private item)."""
    if "ImagePositionPatient" in item and iop is not None and spacing is not None:
        ipp = refine_position(item.ImagePositionPatient, iop[:3], iop[3:], spacing, scale)
        item.ImagePositionPatient = [format_number_as_ds(float(v)) for v in ipp]
    if "PixelSpacing" in item:
        item.PixelSpacing = [format_number_as_ds(float(v) / scale) for v in item.PixelSpacing]


def _refine_siemens_pcs(ds: Dataset, iop, spacing, scale: int) -> None:
    """Siemens (0019,1015) SlicePosition_PCS repeats ImagePositionPatient (of the mosaic corner for mosaics)."""
    try:
        elem = ds.get_private_item(0x0019, 0x15, "SIEMENS MR HEADER")
    except (KeyError, ValueError):
        return
    if elem.VR == "FD" and iop is not None and spacing is not None and len(elem.value) == 3:
        elem.value = [float(v) for v in refine_position(elem.value, iop[:3], iop[3:], spacing, scale)]


def _set_rescale(item: Dataset, old_slope: float, new_slope: float) -> None:
    if new_slope == old_slope:
        return
    if "RescaleSlope" in item or "RescaleIntercept" in item:
        item.RescaleSlope = format_number_as_ds(new_slope)
    if "RealWorldValueMappingSequence" in item:
        for rw in item.RealWorldValueMappingSequence:
            if "RealWorldValueSlope" in rw:
                rw.RealWorldValueSlope = float(rw.RealWorldValueSlope) * new_slope / old_slope
    philips = item.get((0x2005, 0x100E))
    if philips is not None and philips.VR == "FL" and philips.value:
        philips.value = float(philips.value) * old_slope / new_slope


def _dataset_reason(ds: Dataset) -> str | None:
    """Why a single-frame image is not to be enhanced though its ImageType says magnitude: Philips' private trace
    marker, or the derivation text of an image this (or another) AI enhancer made."""
    if _philips_isotropic(ds):
        return "diffusion map (ADC/trace/FA)"
    text = f"{ds.get('DerivationDescription', '')} {ds.get('ImageComments', '')}".lower()
    if any(m in text for m in _AI_MARKERS):
        return "already AI-enhanced"
    return None


def _parts(series: Series | Sequence[Series]) -> list[Series]:
    parts: list[Series] = [series] if isinstance(series, Series) else list(series)
    if not parts:
        raise InputError(None, "no series given to write")
    uids = {p.uid for p in parts}
    if len(uids) > 1:
        raise InputError(
            parts[0].files[0].parent, f"the series parts belong to {len(uids)} series; write one series at a time"
        )
    return parts


def _frames_by_file(parts: list[Series]) -> tuple[dict[Path, list[Frame]], dict[_Ident, Key]]:
    """The reader's frames grouped by source file, in the reader's order (volume, then slice; part after part),
    and the key of each frame: ``(volume, slice)`` in the first part, ``(part, volume, slice)`` in later ones."""
    keys: dict[_Ident, Key] = {}
    by_file: dict[Path, list[Frame]] = {}
    for p, part in enumerate(parts):
        n_volumes, n_slices = part.shape[:2]
        for v in range(n_volumes):
            for sl in range(n_slices):
                fr = part.frame(v, sl)
                ident = (fr.path, fr.frame_index, fr.tile_index)
                if ident not in keys:
                    keys[ident] = (v, sl) if p == 0 else (p, v, sl)
                    by_file.setdefault(fr.path, []).append(fr)
    return by_file, keys


class _Skip(Exception):
    """This source file cannot be derived; the message says why (it goes into ``DerivedReport.skipped``)."""


def _read(path: Path) -> Dataset:
    try:
        src, _ = read_dicom(path)  # the reader's scan reported any warning
    except Exception as e:  # noqa: BLE001 - a truncated or corrupt file, whatever the reader says
        raise _Skip(f"cannot be read ({e.__class__.__name__}: {_one_line(e)})") from e
    missing = [
        kw
        for kw in (
            "SOPClassUID",
            "SOPInstanceUID",
            "SeriesInstanceUID",
            "Rows",
            "Columns",
            "BitsAllocated",
            "BitsStored",
            "PixelRepresentation",
        )
        if kw not in src
    ]
    if missing:
        raise _Skip(f"not a DICOM image (no {', '.join(missing)})")
    photometric = str(src.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    if int(src.get("SamplesPerPixel", 1) or 1) != 1 or not photometric.startswith("MONOCHROME"):
        raise _Skip(f"is a colour image ({photometric}); the models enhance grey-level MR only, so it is not enhanced")
    tag = None
    try:
        for elem in src.iterall():  # every element must decode, or the copy cannot be written
            tag = elem.tag
    except Exception as e:  # noqa: BLE001 - a damaged value (e.g. a flipped VR byte), whatever pydicom says
        raise _Skip(f"has a damaged data element after {tag} ({type(e).__name__}: {_one_line(e)})") from e
    return src


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())[:300]


def _decoded(read: Callable[[], np.ndarray]) -> np.ndarray:
    """Source pixels, or :class:`_Skip` when they cannot be decoded (nothing of the file is written then)."""
    try:
        return read()
    except InputError as e:
        raise _Skip(e.problem) from e
    except Exception as e:  # noqa: BLE001 - a truncated or corrupt file, whatever the decoder says
        raise _Skip(f"cannot be read ({e.__class__.__name__}: {_one_line(e)})") from e


@dataclass
class _Want:
    """One file's enhanced slices in the making: ``out`` (N, s·H, s·W), its rows ``todo`` still to enhance from the
    decoded ``stack`` with their ``keys`` (``stack`` None once filled)."""

    out: np.ndarray
    todo: list[int]
    stack: np.ndarray | None
    keys: list[Key | None]


class _Slices:
    """Enhanced slices for the writer: the viewer's ``lookup`` first, the enhancer for the rest (with the series'
    plan and the slices' keys, so the plan's outputs are reused)."""

    def __init__(
        self,
        enhancer: Any,
        plan: Plan | None,
        lookup: Lookup | None,
        first: Series,
        scale: int,
        cancel: Callable[[], bool] | None,
    ):
        self.enhancer, self.plan, self.lookup, self.first = enhancer, plan, lookup, first
        self.scale, self.cancel = scale, cancel

    def _plan(self) -> Plan | None:
        if self.plan is None and hasattr(self.enhancer, "plan_series"):
            self.plan = self.enhancer.plan_series(self.first)
        return self.plan

    def _cached(self, key: Key | None, shape: tuple[int, int]) -> np.ndarray | None:
        if self.lookup is None or key is None or len(key) != 2:
            return None
        got = self.lookup(key[0], key[1])
        if got is None:
            return None
        arr = np.asarray(got, dtype=np.float32)
        return arr if arr.shape == (shape[0] * self.scale, shape[1] * self.scale) else None

    def want(self, keys: list[Key | None], shape: tuple[int, int], source: Callable[[list[int]], np.ndarray]) -> _Want:
        """The N slices ``keys`` of one file: those the lookup has are filled in, the others decoded
        (``source(rows)``) and left for :meth:`fill`."""
        out = np.empty((len(keys), shape[0] * self.scale, shape[1] * self.scale), dtype=np.float32)
        todo = []
        for k, key in enumerate(keys):
            cached = self._cached(key, shape)
            if cached is None:
                todo.append(k)
            else:
                out[k] = cached
        stack = np.ascontiguousarray(_decoded(lambda: source(todo)), dtype=np.float32) if todo else None
        return _Want(out, todo, stack, [keys[k] for k in todo])

    def fill(self, wants: Sequence[_Want]) -> None:
        """Enhance what ``wants`` still lack: one enhancer call per slice size for all of them together (rows of
        several files share the generator's batches), each row with its key."""
        groups: dict[tuple[int, ...], list[_Want]] = {}
        for w in wants:
            if w.stack is not None:
                groups.setdefault(w.stack.shape[1:], []).append(w)
        for group in groups.values():
            stack = group[0].stack if len(group) == 1 else np.concatenate([w.stack for w in group])
            hr = self._enhance(cast(np.ndarray, stack), [k for w in group for k in w.keys])
            start = 0
            for w in group:
                w.out[w.todo] = hr[start : start + len(w.todo)]
                start += len(w.todo)
                w.stack = None

    def _enhance(self, stack: np.ndarray, keys: list[Key | None]) -> np.ndarray:
        if hasattr(self.enhancer, "enhance_stack"):
            try:
                hr = self.enhancer.enhance_stack(stack, self._plan(), keys=keys, cancel=self.cancel)
            except InterruptedError as err:
                raise WriteCancelled("cancelled") from err
        else:
            hr = self.enhancer(stack)
        hr = np.asarray(hr, dtype=np.float32)
        want = (stack.shape[0], stack.shape[1] * self.scale, stack.shape[2] * self.scale)
        if hr.shape != want:
            raise ValueError(f"enhance returned shape {hr.shape}, expected {want}")
        return hr


def write_derived_series(
    series: Series | Sequence[Series],
    enhancer: Any,
    out_dir: str | Path,
    *,
    scale: int,
    provenance: Provenance,
    plan: Plan | None = None,
    lookup: Lookup | None = None,
    include_non_anatomy: bool = False,
    progress: Callable[[int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> DerivedReport:
    """Write the ×``scale`` derived series of one source series into the new folder ``out_dir``.

    ``series``: the :class:`srgan.io.dicom_series.Series` the reader built, or the list of parts the reader split
    one SeriesInstanceUID into (every part is written into the one derived series); its frames, their order and
    their kinds are used as the reader made them. ``lookup(volume, slice)``: enhanced slices already made (the
    viewer's cache; None for a slice not enhanced yet); ``plan`` and ``lookup`` address the slices of the first
    part. ``enhancer``: an object with ``enhance_stack(stack, plan, *, keys, cancel)``
    (``srgan.inference.engine.Enhancer``), called with the slices the lookup lacks, once per slice size for a
    window of files read ahead until their slices fill one generator batch (its ``rows_per_call``; at most
    ``LOOKAHEAD`` files, so memory stays bounded; a file with more slices is one call), with the series'
    ``plan`` (default: ``enhancer.plan_series(series)``, made on first need) and their keys ``(volume, slice)``, so
    outputs the plan already holds are not generated again; or a plain callable ``stack (N, H, W) -> (N, sH, sW)``
    in modality units. ``progress(done, total)`` is called per file, ``cancel()`` polled between files (and passed
    to ``enhance_stack``).
    """
    parts = _parts(series)
    by_file, keys = _frames_by_file(parts)
    out = check_new_folder(out_dir, sources=list(by_file))
    report = DerivedReport(out_dir=out)
    s = int(scale)

    excluded: dict[str, int] = {}
    work: list[tuple[Path, list[int] | None]] = []  # (file, kept frame indices for multi-frame else None)
    for path, frames in by_file.items():
        indexed = sorted((fr for fr in frames if fr.frame_index is not None), key=lambda fr: fr.frame_index or 0)
        if indexed:  # the reader read the file frame by frame
            kept = []
            for fr in indexed:
                reason = None if include_non_anatomy else reason_of_kind(fr.kind)
                if reason is None:
                    kept.append(int(fr.frame_index or 0))
                else:
                    excluded[f"{reason} frames"] = excluded.get(f"{reason} frames", 0) + 1
            if kept:
                work.append((path, kept))
            continue
        reason = None if include_non_anatomy else reason_of_kind(frames[0].kind)  # mosaic tiles share one kind
        if reason is not None:
            excluded[f"{reason} images"] = excluded.get(f"{reason} images", 0) + 1
            continue
        work.append((path, None))

    def notes() -> list[str]:
        return [f"{n} {what} left out: not magnitude anatomy" for what, n in excluded.items()]

    first_folder = next(iter(by_file)).parent
    if not work:
        raise NothingToEnhance(
            first_folder,
            "no magnitude anatomy image to enhance in this series" + (f" ({'; '.join(notes())})" if excluded else ""),
        )

    modality = parts[0].modality.upper()
    if modality and modality != "MR":
        raise InputError(
            first_folder,
            f"is a {modality} series; the models were trained on brain MR and cannot enhance other modalities honestly",
        )
    slices = _Slices(enhancer, plan, lookup, parts[0], s, cancel)
    uid_map: dict = {"series": generate_uid()}
    report.series_instance_uid = uid_map["series"]
    # Files are read ahead until their slices still to enhance fill one generator batch (``rows_per_call``: small
    # slices share one, large ones go alone; at most LOOKAHEAD files), so small slices of several files share
    # the generator's calls; then each is derived and written in order. A plain callable is called once per file.
    rows_per_call = getattr(enhancer, "rows_per_call", None) if hasattr(enhancer, "enhance_stack") else None
    with atomic_folder(out) as tmp:
        written: list[str] = []
        window: list[tuple[Path, list[int] | None, Dataset | None, _Want | None, Exception | None]] = []
        done = 0

        def flush() -> None:
            nonlocal done
            slices.fill([w for _, _, _, w, _ in window if w is not None])
            for f, frame_ids, src, want, err in window:
                ds = None
                try:
                    if err is not None:
                        raise err
                    ds = _finish(cast(Dataset, src), frame_ids, cast(_Want, want).out, s, provenance, uid_map)
                except _Skip as e:
                    report.skipped.append((f, str(e)))
                except _Excluded as e:
                    excluded[f"{e} images"] = excluded.get(f"{e} images", 0) + 1
                if ds is not None:
                    name = tmp / f"IM{len(written) + 1:05d}.dcm"
                    try:
                        write_dataset(ds, name)
                    except (ValueError, TypeError, NotImplementedError, OverflowError) as e:  # this file's header
                        name.unlink(missing_ok=True)
                        report.skipped.append((f, f"cannot be written ({type(e).__name__}: {_one_line(e)})"))
                    else:
                        written.append(name.name)
                done += 1
                if progress is not None:
                    progress(done, len(work))
            window.clear()

        for f, frame_ids in work:
            if cancel is not None and cancel():
                raise WriteCancelled("cancelled")
            try:
                src, want = _prepare(f, frame_ids, keys, slices, include_non_anatomy)
                window.append((f, frame_ids, src, want, None))
            except (_Skip, _Excluded) as e:
                window.append((f, frame_ids, None, None, e))
            stacks = [w.stack for _, _, _, w, _ in window if w is not None and w.stack is not None]
            if (
                rows_per_call is None
                or len(window) >= LOOKAHEAD
                or (stacks and sum(len(st) for st in stacks) >= rows_per_call(stacks[-1].shape[1:]))
            ):
                flush()
        flush()
        report.notes = notes() + sorted(uid_map.get("notes", ()))
        if not written:
            if report.skipped:
                bad, why = report.skipped[0]
                raise InputError(bad, f"none of the series' images could be used: {why}")
            raise NothingToEnhance(
                first_folder,
                "no magnitude anatomy image to enhance in this series"
                + (f" ({'; '.join(report.notes)})" if report.notes else ""),
            )
    report.files = [out / w for w in written]
    return report


#: Binary VRs whose bytes are words of this many bytes: their byte order follows the transfer syntax.
_WORD_VRS = {"OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8}


def write_dataset(ds: Dataset, path: Path) -> None:
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

        def relabel(d: Dataset) -> None:
            d.set_original_encoding(False, True, d.original_character_set)
            for elem in d:
                if elem.VR == "SQ":
                    for item in elem.value:
                        relabel(item)

        relabel(ds)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True)


class _Excluded(Exception):
    """This single-frame file is not magnitude anatomy though its ImageType says so; the message says what."""


def _prepare(
    path: Path,
    frame_ids: list[int] | None,
    keys: dict[_Ident, Key],
    slices: _Slices,
    include_non_anatomy: bool,
) -> tuple[Dataset, _Want]:
    """One source file read, and what its derived dataset needs: its kept frames, its mosaic tiles or its only
    image, taken from the lookup or decoded for the enhancer."""
    src = _read(path)
    multi = str(src.get("SOPClassUID", "")) in ENHANCED_SOP_CLASSES and "PerFrameFunctionalGroupsSequence" in src
    if frame_ids is not None and not multi:
        raise _Skip("multi-frame file of a single-frame SOP class; not supported")
    if frame_ids is None and not include_non_anatomy:
        reason = _dataset_reason(src)
        if reason is not None:
            raise _Excluded(reason)
    rows, cols = int(src.Rows), int(src.Columns)
    try:
        if frame_ids is not None:
            ids = frame_ids
            return src, slices.want(
                [keys.get((path, i, None)) for i in ids],
                (rows, cols),
                lambda todo: np.stack([dicom_pixels.frame_pixels(src, ids[k]) for k in todo]),
            )
        if (layout := dicom_pixels.tile_layout(src)) is not None:
            try:
                dicom_pixels.split_tiles(np.zeros((rows, cols), np.uint8), layout)
            except ValueError as e:
                raise _Skip(f"tiled image (mosaic/grid) cannot be split into tiles: {e}") from e
            return src, slices.want(
                [keys.get((path, None, k)) for k in range(layout.n)],
                (layout.tile_rows, layout.tile_cols),
                lambda todo: dicom_pixels.split_tiles(dicom_pixels.frame_pixels(src), layout)[todo],
            )
        return src, slices.want(
            [keys.get((path, None, None))], (rows, cols), lambda todo: dicom_pixels.frame_pixels(src)[None]
        )
    except InputError as e:  # this file's own problem (e.g. a mosaic without tile count)
        raise _Skip(e.problem) from e


def _finish(
    src: Dataset, frame_ids: list[int] | None, hr: np.ndarray, s: int, provenance: Provenance, uid_map: dict
) -> Dataset:
    try:
        return _derive(src, frame_ids, hr, s, provenance, uid_map)
    except InputError as e:  # this file's own problem
        raise _Skip(e.problem) from e


def _derive(
    src: Dataset, frames: list[int] | None, hr: np.ndarray, scale: int, provenance: Provenance, uid_map: dict
) -> Dataset:
    """``src`` derived: ``hr`` holds the enhanced slices (its kept frames, its mosaic tiles or its only image)."""
    ds = copy.deepcopy(src)
    lo, hi, dtype = _stored_range(src)
    s = int(scale)

    if frames is None:
        layout = dicom_pixels.tile_layout(src)
        if layout is not None:
            image = dicom_pixels.join_tiles(hr, layout)
            _scale_acquisition_matrix(ds, s)
            if layout.vendor == "uih":
                _refine_uih_tiles(ds, src, s)
        else:
            image = hr[0]
        slope, intercept = dicom_pixels.frame_rescale(src, None)
        new_slope = _choose_rescale(image, slope, intercept, hi)
        pixels = _quantise(image, new_slope, intercept, lo, hi, dtype)
        if "ModalityLUTSequence" in ds:  # the LUT was applied on reading: the output is in modality units
            del ds["ModalityLUTSequence"]
            ds.RescaleIntercept = format_number_as_ds(intercept)
            ds.RescaleSlope = format_number_as_ds(new_slope)
            ds.RescaleType = "US"
            uid_map.setdefault("notes", set()).add("Modality LUT Sequence replaced by a linear rescale")
        elif new_slope != slope:
            if "RescaleSlope" not in ds:
                ds.RescaleIntercept = format_number_as_ds(intercept)
                ds.RescaleSlope = format_number_as_ds(slope)
            _set_rescale(ds, slope, new_slope)
        iop = [float(v) for v in src.ImageOrientationPatient] if "ImageOrientationPatient" in src else None
        _refine_in(ds, iop, src.get("PixelSpacing"), s)
        _refine_siemens_pcs(ds, iop, src.get("PixelSpacing"), s)
        if _valid_uid(src.SOPInstanceUID):
            ds.SourceImageSequence = DicomSequence([_source_item(src, None)])
        else:  # a reference would repeat the source's invalid UID (and its dciodvfy error) into the copy
            if "SourceImageSequence" in ds:
                del ds["SourceImageSequence"]
            uid_map.setdefault("notes", set()).add(
                "a source SOP Instance UID is not a valid UID; its images are not referenced (DerivationDescription "
                "still says what they were made from)"
            )
    else:
        rescales = [dicom_pixels.frame_rescale(src, i) for i in frames]
        slopes = [_choose_rescale(hr[k], m, b, hi) for k, (m, b) in enumerate(rescales)]
        if any(new != m for new, (m, _) in zip(slopes, rescales)) and not _per_frame_rescale(src):
            slopes = [max(slopes)] * len(frames)  # one shared (or implicit) rescale for every frame
        pixels = np.stack([_quantise(hr[k], slopes[k], rescales[k][1], lo, hi, dtype) for k in range(len(frames))])
        _derive_frames(ds, src, frames, rescales, slopes, s, provenance.long()[:1024])
        ds.NumberOfFrames = len(frames)

    ds.Rows, ds.Columns = int(pixels.shape[-2]), int(pixels.shape[-1])
    _refine_overlays(ds, src, s, frames is not None, uid_map.setdefault("notes", set()))
    _mark_derived(ds, src, provenance, uid_map)
    for kw in (
        "SmallestImagePixelValue",
        "LargestImagePixelValue",
        "IconImageSequence",
        "ExtendedOffsetTable",
        "ExtendedOffsetTableLengths",
    ):
        if kw in ds:
            del ds[kw]
    if str(src.file_meta.get("TransferSyntaxUID", "")) in _LOSSY_SYNTAXES:
        ds.LossyImageCompression = "01"  # the source's pixels were already lossy; uncompressed output keeps that known
    ds.PixelData = pixels.tobytes()
    ds["PixelData"].VR = "OW" if dtype.itemsize > 1 else "OB"
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def _refine_overlays(ds: Dataset, src: Dataset, s: int, multi_frame: bool, notes: set[str]) -> None:
    """Overlay planes (60xx: graphics such as Siemens MedCom annotations) refined with the image: the bitmap ×s
    (nearest, so a line stays a line), OverlayRows/Columns ×s, OverlayOrigin on the new grid. A plane that cannot
    be refined (multi-frame overlays, a multi-frame image, damaged data) is dropped, with a note."""
    groups = sorted({e.tag.group for e in src if 0x6000 <= e.tag.group <= 0x601E and e.tag.group % 2 == 0})
    for g in groups:
        try:
            if multi_frame or int(src.get((g, 0x0015), None).value if (g, 0x0015) in src else 1) != 1:
                raise ValueError("a multi-frame overlay")
            bitmap = np.asarray(src.overlay_array(g), dtype=np.uint8)
            if bitmap.ndim != 2:
                raise ValueError("a multi-frame overlay")
            big = np.kron(bitmap, np.ones((s, s), np.uint8))
            ds[g, 0x0010].value, ds[g, 0x0011].value = int(big.shape[0]), int(big.shape[1])
            if (g, 0x0050) in ds:
                ds[g, 0x0050].value = [(int(v) - 1) * s + 1 for v in ds[g, 0x0050].value]
            packed = np.packbits(big.ravel(), bitorder="little").tobytes()
            ds[g, 0x3000].value = packed + b"\0" * (len(packed) % 2)
        except Exception as e:  # noqa: BLE001 - whatever is wrong with the plane, it must not stay misplaced
            for elem in [e2 for e2 in ds if e2.tag.group == g]:
                del ds[elem.tag]
            why = str(e) if isinstance(e, ValueError) else type(e).__name__
            notes.add(f"overlay plane {g:04X} dropped ({why}): it cannot be refined with the image")


def _refine_uih_tiles(ds: Dataset, src: Dataset, s: int) -> None:
    """UIH grid: each tile's ImagePositionPatient (its item of (0065,1051), where the reader took it from) refined
    on the tile's own grid, like any image's; the tile matrix (0065,1004) ×s."""
    iop = [float(v) for v in src.ImageOrientationPatient] if "ImageOrientationPatient" in src else None
    spacing = src.get("PixelSpacing")
    for item in ds[0x0065, 0x1051].value:
        _refine_in(item, iop, spacing, s)
    text = ds.get((0x0065, 0x1004))
    if text is not None and isinstance(text.value, str) and "*" in text.value:
        try:
            text.value = "*".join(str(int(v) * s) for v in text.value.split("*"))
        except ValueError:
            pass


def _scale_acquisition_matrix(ds: Dataset, s: int) -> None:
    if "AcquisitionMatrix" in ds:
        ds.AcquisitionMatrix = [int(v) * s for v in ds.AcquisitionMatrix]
    text = ds.get((0x0051, 0x100B))
    if text is not None and isinstance(text.value, str) and "*" in text.value:
        parts = text.value.split("*")
        scaled = []
        for p in parts:
            digits = "".join(c for c in p if c.isdigit())
            scaled.append(p.replace(digits, str(int(digits) * s)) if digits else p)
        text.value = "*".join(scaled)


def _per_frame_rescale(src: Dataset) -> bool:
    groups = src.get("PerFrameFunctionalGroupsSequence", [])
    return bool(groups) and "PixelValueTransformationSequence" in groups[0]


def _derive_frames(
    ds: Dataset,
    src: Dataset,
    frames: list[int],
    rescales: list[tuple[float, float]],
    slopes: list[float],
    s: int,
    description: str,
) -> None:
    """Enhanced MR: keep the chosen frames' functional groups, refine their geometry, rescale, derivation."""
    shared = ds.get("SharedFunctionalGroupsSequence", [Dataset()])[0]
    src_shared = src.get("SharedFunctionalGroupsSequence", [Dataset()])[0]
    per_frame = [copy.deepcopy(src.PerFrameFunctionalGroupsSequence[i]) for i in frames]

    def find(group, key):
        for g in (group, src_shared):
            if key in g and len(g[key].value):
                return g[key].value[0]
        return None

    for k, (i, group) in enumerate(zip(frames, per_frame)):
        orient = find(src.PerFrameFunctionalGroupsSequence[i], "PlaneOrientationSequence")
        measures = find(src.PerFrameFunctionalGroupsSequence[i], "PixelMeasuresSequence")
        iop = [float(v) for v in orient.ImageOrientationPatient] if orient is not None else None
        spacing = list(measures.PixelSpacing) if measures is not None and "PixelSpacing" in measures else None
        if "PlanePositionSequence" in group:
            for item in group.PlanePositionSequence:
                _refine_in(item, iop, spacing, s)
        if "PixelMeasuresSequence" in group:
            for item in group.PixelMeasuresSequence:
                _refine_in(item, None, None, s)
        for elem in list(group):
            if elem.tag.is_private and elem.VR == "SQ":
                for item in elem.value:
                    _refine_in(item, iop, item.get("PixelSpacing", spacing), s)
                    _set_rescale(item, rescales[k][0], slopes[k])
        for item in group.get("PixelValueTransformationSequence", []):
            _set_rescale(item, rescales[k][0], slopes[k])
        _set_rescale(group, rescales[k][0], slopes[k])
        for key in ("MRImageFrameTypeSequence", "CTImageFrameTypeSequence"):
            for item in group.get(key, []):
                if "FrameType" in item:
                    item.FrameType = ["DERIVED", "PRIMARY"] + list(item.FrameType)[2:]
        deriv = Dataset()
        deriv.DerivationDescription = description
        deriv.DerivationCodeSequence = DicomSequence([_code_item(DERIVATION_CODE)])
        deriv.SourceImageSequence = DicomSequence([_source_item(src, i + 1)])
        group.DerivationImageSequence = DicomSequence([deriv])
    ds.PerFrameFunctionalGroupsSequence = DicomSequence(per_frame)

    for key in ("PixelMeasuresSequence",):
        for item in shared.get(key, []):
            _refine_in(item, None, None, s)
    for key in ("MRImageFrameTypeSequence", "CTImageFrameTypeSequence"):
        for item in shared.get(key, []):
            if "FrameType" in item:
                item.FrameType = ["DERIVED", "PRIMARY"] + list(item.FrameType)[2:]
    if not _per_frame_rescale(src) and slopes[0] != rescales[0][0]:
        if "PixelValueTransformationSequence" in shared:
            for item in shared.PixelValueTransformationSequence:
                _set_rescale(item, rescales[0][0], slopes[0])
        else:
            pvt = Dataset()
            pvt.RescaleIntercept = format_number_as_ds(rescales[0][1])
            pvt.RescaleSlope = format_number_as_ds(slopes[0])
            pvt.RescaleType = "US"
            shared.PixelValueTransformationSequence = DicomSequence([pvt])
    # top-level SourceImageSequence is not part of the Enhanced MR IOD; the per-frame derivation items carry it,
    # and the instance-level evidence lists the source instance
    evidence = Dataset()
    evidence.StudyInstanceUID = src.StudyInstanceUID
    series = Dataset()
    series.SeriesInstanceUID = src.SeriesInstanceUID
    ref = Dataset()
    ref.ReferencedSOPClassUID = src.SOPClassUID
    ref.ReferencedSOPInstanceUID = src.SOPInstanceUID
    series.ReferencedSOPSequence = DicomSequence([ref])
    evidence.ReferencedSeriesSequence = DicomSequence([series])
    ds.SourceImageEvidenceSequence = DicomSequence([evidence])
    for kw in _ORIGINAL_ONLY:
        if kw in ds:
            del ds[kw]


def _mark_derived(ds: Dataset, src: Dataset, provenance: Provenance, uid_map: dict) -> None:
    enhanced = "PerFrameFunctionalGroupsSequence" in ds
    ds.SeriesInstanceUID = uid_map["series"]
    ds.SOPInstanceUID = generate_uid()
    if "ConcatenationUID" in ds:
        ds.ConcatenationUID = uid_map.setdefault(("concat", str(src.ConcatenationUID)), generate_uid())
    meta = getattr(ds, "file_meta", None)
    if meta is None:
        meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta

    try:
        number = int(src.get("SeriesNumber", 0) or 0) + SERIES_NUMBER_OFFSET
    except (TypeError, ValueError):
        number = SERIES_NUMBER_OFFSET
    ds.SeriesNumber = number if number < 2**31 - 1 else SERIES_NUMBER_OFFSET
    mark = f"AI super-resolution x{provenance.scale}"
    base = str(src.get("SeriesDescription", "") or "").strip()
    ds.SeriesDescription = f"{base[: 64 - len(mark) - 1]} {mark}" if base else mark

    values = [str(v) for v in src.get("ImageType", [])]
    ds.ImageType = ["DERIVED", "PRIMARY" if enhanced else "SECONDARY"] + values[2:]
    ds.DerivationDescription = provenance.long()[:1024]
    if not enhanced:  # Enhanced MR carries the code in each frame's DerivationImageSequence only
        ds.DerivationCodeSequence = DicomSequence([_code_item(DERIVATION_CODE)])
    ds.ImageComments = provenance.long()[:10240]
    ds.BurnedInAnnotation = "NO"

    ref_series = Dataset()
    ref_series.SeriesInstanceUID = src.SeriesInstanceUID
    inst = Dataset()
    inst.ReferencedSOPClassUID = src.SOPClassUID
    inst.ReferencedSOPInstanceUID = src.SOPInstanceUID
    ref_series.ReferencedInstanceSequence = DicomSequence([inst])
    if enhanced or (_valid_uid(src.SOPInstanceUID) and _valid_uid(src.SeriesInstanceUID)):
        ds.ReferencedSeriesSequence = DicomSequence([ref_series])
    elif "ReferencedSeriesSequence" in ds:
        del ds["ReferencedSeriesSequence"]


def _valid_uid(uid) -> bool:
    from pydicom.uid import UID

    return UID(str(uid)).is_valid

"""Derived (AI super-resolution) DICOM series: one new series per source series, image for image.

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
- Written uncompressed, Explicit VR Little Endian. LossyImageCompression is kept as the source had it (set to
  01 when the source was baseline JPEG).
  Smallest/LargestImagePixelValue and IconImageSequence are dropped (they no longer hold).

Siemens mosaics are enhanced tile by tile and written back as mosaics whose tiles are ×s: the mosaic's
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
an AI enhancer), judged by ImageType / FrameType / ComplexImageComponent, by the frame kinds that
:mod:`srgan.io.dicom_series` reports (so the writer and the viewer agree) and by Philips' private trace marker,
are left out by default with a note in the report (``include_non_anatomy=True`` keeps them).

Files of several series are refused (InputError): one call writes one derived series. Multi-frame files of a
single-frame SOP class are skipped (not supported).

Failure policy: a source file that cannot be read or decoded is skipped and listed in
``DerivedReport.skipped`` (the CLI then exits non-zero); if no image is left, :class:`InputError` is raised and
nothing is written. Any other failure (e.g. in ``enhance``) or a cancel removes the temporary folder: the
output folder appears complete or not at all. A cancel raises :class:`WriteCancelled`.
"""
from __future__ import annotations

import copy
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pydicom.valuerep import format_number_as_ds

from srgan.errors import InputError
from srgan.io import dicom_pixels
from srgan.io.geometry import refine_position
from srgan.provenance import DISCLAIMER, Provenance

ENHANCED_SOP_CLASSES = {"1.2.840.10008.5.1.4.1.1.4.1", "1.2.840.10008.5.1.4.1.1.4.3", "1.2.840.10008.5.1.4.1.1.2.1"}

# ImageType / FrameType values (3 and on) that mark images that are not magnitude anatomy
_NON_ANATOMY = {
    "phase": {"P", "PHASE", "PHASE MAP", "PHASE_MAP", "PHA"},
    "real/imaginary": {"R", "I", "REAL", "IMAGINARY"},
    "field map": {"FIELD_MAP", "FIELDMAP", "B0", "B0_MAP", "B0MAP", "B1", "B1_MAP", "FM"},
    "diffusion map (ADC/trace/FA)": {"ADC", "EADC", "TRACE", "TRACEW", "FA", "ISOTROPIC", "COLFA", "DIFFUSION_ANISO"},
    "localizer": {"LOCALIZER", "SCOUT", "SURVEY"},
}
_AI_MARKERS = ("super-resolution", "brainsr", DISCLAIMER.lower())

DERIVATION_CODE = ("113085", "DCM", "Spatial resampling")
SOURCE_PURPOSE_CODE = ("121322", "DCM", "Source image for image processing operation")
SERIES_NUMBER_OFFSET = 1000
_LOSSY_SYNTAXES = {"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51"}  # JPEG baseline / extended: always lossy
# Enhanced MR Pulse Sequence / Bulk Motion Synchronization attributes: the IOD conditions them on ImageType
# value 1 ORIGINAL or MIXED and dciodvfy rejects them on DERIVED images; the source still holds them
_ORIGINAL_ONLY = ("PulseSequenceName", "MRAcquisitionType", "EchoPulseSequence", "MultipleSpinEcho",
                  "MultiPlanarExcitation", "PhaseContrast", "VelocityEncodingAcquisitionSequence",
                  "TimeOfFlightContrast", "ArterialSpinLabelingContrast", "SteadyStatePulseSequence",
                  "EchoPlanarPulseSequence", "SaturationRecovery", "SpectrallySelectedSuppression",
                  "OversamplingPhase", "GeometryOfKSpaceTraversal", "RectilinearPhaseEncodeReordering",
                  "SegmentedKSpaceTraversal", "CoverageOfKSpace", "NumberOfKSpaceTrajectories",
                  "BulkMotionCompensationTechnique", "BulkMotionSignalSource")


class WriteCancelled(Exception):
    """The caller's ``cancel()`` returned True; nothing was left on disk."""


@dataclass
class DerivedReport:
    out_dir: Path
    files: list[Path] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)   # (source file, reason)
    notes: list[str] = field(default_factory=list)
    series_instance_uid: str = ""


def non_anatomy_reason(image_type: Sequence[str], ds: Dataset | None = None) -> str | None:
    """Why an image with this ImageType/FrameType is not magnitude anatomy, or None when it is.

    Values 3+ are vendor-defined; Philips writes e.g. ``P_SE`` for phase, hence the prefix test.
    """
    values = [str(v).strip().upper() for v in image_type]
    tail = values[2:]
    for reason, tokens in _NON_ANATOMY.items():
        if any(v in tokens for v in tail):
            return reason
    if any(v.startswith("P_") for v in tail):
        return "phase"
    if ds is not None:
        if _philips_isotropic(ds):
            return "diffusion map (ADC/trace/FA)"
        text = f"{ds.get('DerivationDescription', '')} {ds.get('ImageComments', '')}".lower()
        if any(m in text for m in _AI_MARKERS):
            return "already AI-enhanced"
    return None


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


def _scanner_kinds(ds: Dataset, path: Path) -> dict[int | None, str]:
    """Non-magnitude kinds that :mod:`srgan.io.dicom_series` (what the viewer shows) sees, by frame index,
    so the writer never enhances an image the viewer calls a phase, map or trace image."""
    from srgan.io.dicom_series import frames_of

    try:
        frames = frames_of(ds, path)
    except Exception:  # noqa: BLE001 - unusual headers: the ImageType rules below still apply
        return {}
    return {fr.frame_index: fr.kind.replace("_", " ") for fr in frames if fr.kind != "magnitude"}


def _frame_reason(ds: Dataset, i: int) -> str | None:
    groups = [ds.PerFrameFunctionalGroupsSequence[i]] + list(ds.get("SharedFunctionalGroupsSequence", []))
    for g in groups:
        for key in ("MRImageFrameTypeSequence", "CTImageFrameTypeSequence"):
            if key in g and len(g[key].value):
                item = g[key].value[0]
                reason = non_anatomy_reason(item.get("FrameType", []))
                comp = str(item.get("ComplexImageComponent", "")).upper()
                if reason is None and comp in ("PHASE", "REAL", "IMAGINARY"):
                    reason = "phase" if comp == "PHASE" else "real/imaginary"
                return reason
    return None


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


def _check_destination(source_files: Sequence[Path], out_dir: Path) -> Path:
    out = Path(os.path.abspath(out_dir))
    real = Path(os.path.realpath(out))
    for folder in {Path(os.path.realpath(Path(f).parent)) for f in source_files}:
        if real == folder or folder in real.parents:
            raise InputError(out_dir, "the output folder is inside the source folder; choose a folder elsewhere")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(out_dir, "the output folder already exists and is not empty")
    return out


def write_derived_series(source_files: Sequence[Path], enhance: Callable[[np.ndarray], np.ndarray], out_dir: Path, *,
                         scale: int, provenance: Provenance, include_non_anatomy: bool = False,
                         progress: Callable[[int, int], None] | None = None,
                         cancel: Callable[[], bool] | None = None) -> DerivedReport:
    """Write the ×``scale`` derived series of one source series into the new folder ``out_dir``.

    ``enhance`` maps a float32 stack (N, H, W) in modality units to (N, H·s, W·s); it is called once per source
    file with all kept frames (or mosaic tiles) of that file. ``progress(done, total)`` is called per file.
    """
    source_files = [Path(f) for f in source_files]
    if not source_files:
        raise InputError(out_dir, "no source files given")
    out = _check_destination(source_files, out_dir)
    report = DerivedReport(out_dir=out)

    headers: list[tuple[Path, Dataset]] = []
    for f in source_files:
        try:
            headers.append((f, pydicom.dcmread(f, stop_before_pixels=True)))
        except Exception as e:  # noqa: BLE001 - any reader failure means the same to the user
            report.skipped.append((f, f"not a readable DICOM file ({e.__class__.__name__}: {e})"))
    series_uids = {str(h.SeriesInstanceUID) for _, h in headers if "SeriesInstanceUID" in h}
    if len(series_uids) > 1:
        raise InputError(source_files[0].parent,
                         f"the files belong to {len(series_uids)} series; write one series at a time")
    headers.sort(key=lambda fh: (_int(fh[1].get("InstanceNumber")), str(fh[0])))

    excluded: dict[str, int] = {}
    work: list[tuple[Path, list[int] | None]] = []   # (file, kept frame indices for multi-frame else None)
    for f, h in headers:
        missing = [kw for kw in ("SOPClassUID", "SOPInstanceUID", "SeriesInstanceUID", "Rows", "Columns",
                                 "BitsAllocated", "BitsStored", "PixelRepresentation") if kw not in h]
        if missing:
            report.skipped.append((f, f"not a DICOM image (no {', '.join(missing)})"))
            continue
        if int(h.get("SamplesPerPixel", 1)) != 1:
            report.skipped.append((f, "not a grey-level image"))
            continue
        kinds = _scanner_kinds(h, f)
        if str(h.get("SOPClassUID", "")) in ENHANCED_SOP_CLASSES and "PerFrameFunctionalGroupsSequence" in h:
            kept = []
            for i in range(int(h.get("NumberOfFrames", 1))):
                reason = None if include_non_anatomy else (_frame_reason(h, i) or kinds.get(i))
                if reason is None:
                    kept.append(i)
                else:
                    excluded[f"{reason} frames"] = excluded.get(f"{reason} frames", 0) + 1
            if kept:
                work.append((f, kept))
            continue
        if _int(h.get("NumberOfFrames", 1)) > 1:
            report.skipped.append((f, "multi-frame file of a single-frame SOP class; not supported"))
            continue
        reason = None if include_non_anatomy else (non_anatomy_reason(h.get("ImageType", []), h)
                                                   or next(iter(kinds.values()), None))
        if reason is not None:
            excluded[f"{reason} images"] = excluded.get(f"{reason} images", 0) + 1
            continue
        work.append((f, None))
    if not work and not excluded:
        bad = report.skipped[0] if report.skipped else (source_files[0], "no image")
        raise InputError(bad[0], f"no readable DICOM image among the source files: {bad[1]}")
    for what, n in excluded.items():
        report.notes.append(f"{n} {what} left out: not magnitude anatomy")
    if not work:
        raise InputError(source_files[0].parent, "no magnitude anatomy image to enhance in this series"
                         + (f" ({'; '.join(report.notes)})" if report.notes else ""))

    uid_map = {"series": generate_uid()}
    report.series_instance_uid = uid_map["series"]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.partial-{uuid.uuid4().hex[:12]}"
    tmp.mkdir()
    try:
        written = []
        for n, (f, frames) in enumerate(work):
            if cancel is not None and cancel():
                raise WriteCancelled("cancelled")
            try:
                src = pydicom.dcmread(f)
                dicom_pixels.decode_frames(src)  # decode now: a broken file is skipped, not half-written
            except InputError as e:
                report.skipped.append((f, e.problem))
                src = None
            except Exception as e:  # noqa: BLE001 - a truncated or corrupt file, whatever the reader says
                report.skipped.append((f, f"cannot be read ({e.__class__.__name__}: {e})"))
                src = None
            if src is not None:
                try:
                    ds = _derive(src, frames, enhance, scale, provenance, uid_map)
                except InputError as e:  # this file's own problem (e.g. a mosaic without tile count)
                    report.skipped.append((f, e.problem))
                    ds = None
            if src is not None and ds is not None:
                name = tmp / f"IM{len(written) + 1:05d}.dcm"
                ds.save_as(name, enforce_file_format=True)
                written.append(name.name)
            if progress is not None:
                progress(n + 1, len(work))
        if not written:
            raise InputError(source_files[0].parent, "none of the source images could be decoded")
        if out.exists():
            out.rmdir()
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    report.files = [out / w for w in written]
    return report


def _derive(src: Dataset, frames: list[int] | None, enhance, scale: int, provenance: Provenance,
            uid_map: dict) -> Dataset:
    ds = copy.deepcopy(src)
    lo, hi, dtype = _stored_range(src)
    s = int(scale)

    if frames is None:
        if dicom_pixels.is_mosaic(src):
            n = dicom_pixels.mosaic_tile_count(src)
            try:
                stack = dicom_pixels.split_mosaic(dicom_pixels.frame_pixels(src), n)
            except ValueError as e:
                raise InputError(getattr(src, "filename", None),
                                 f"Siemens mosaic cannot be split into tiles: {e}") from e
            hr = _enhanced(enhance, stack, s)
            image = dicom_pixels.join_mosaic(hr, dicom_pixels.mosaic_grid(src))
            _scale_acquisition_matrix(ds, s)
        else:
            image = _enhanced(enhance, dicom_pixels.frame_pixels(src)[None], s)[0]
        slope, intercept = dicom_pixels.frame_rescale(src, None)
        new_slope = _choose_rescale(image, slope, intercept, hi)
        pixels = _quantise(image, new_slope, intercept, lo, hi, dtype)
        if new_slope != slope:
            if "RescaleSlope" not in ds:
                ds.RescaleIntercept = format_number_as_ds(intercept)
                ds.RescaleSlope = format_number_as_ds(slope)
            _set_rescale(ds, slope, new_slope)
        iop = [float(v) for v in src.ImageOrientationPatient] if "ImageOrientationPatient" in src else None
        _refine_in(ds, iop, src.get("PixelSpacing"), s)
        _refine_siemens_pcs(ds, iop, src.get("PixelSpacing"), s)
        ds.SourceImageSequence = DicomSequence([_source_item(src, None)])
    else:
        stack = np.stack([dicom_pixels.frame_pixels(src, i) for i in frames])
        hr = _enhanced(enhance, stack, s)
        rescales = [dicom_pixels.frame_rescale(src, i) for i in frames]
        slopes = [_choose_rescale(hr[k], m, b, hi) for k, (m, b) in enumerate(rescales)]
        if any(new != m for new, (m, _) in zip(slopes, rescales)) and not _per_frame_rescale(src):
            slopes = [max(slopes)] * len(frames)   # one shared (or implicit) rescale for every frame
        pixels = np.stack([_quantise(hr[k], slopes[k], rescales[k][1], lo, hi, dtype) for k in range(len(frames))])
        _derive_frames(ds, src, frames, rescales, slopes, s, provenance.long()[:1024])
        ds.NumberOfFrames = len(frames)

    ds.Rows, ds.Columns = int(pixels.shape[-2]), int(pixels.shape[-1])
    _mark_derived(ds, src, provenance, uid_map)
    for kw in ("SmallestImagePixelValue", "LargestImagePixelValue", "IconImageSequence",
               "ExtendedOffsetTable", "ExtendedOffsetTableLengths"):
        if kw in ds:
            del ds[kw]
    if str(src.file_meta.get("TransferSyntaxUID", "")) in _LOSSY_SYNTAXES:
        ds.LossyImageCompression = "01"  # the source's pixels were already lossy; uncompressed output keeps that known
    ds.PixelData = pixels.tobytes()
    ds["PixelData"].VR = "OW" if dtype.itemsize > 1 else "OB"
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def _enhanced(enhance, stack: np.ndarray, s: int) -> np.ndarray:
    stack = np.ascontiguousarray(stack, dtype=np.float32)
    hr = np.asarray(enhance(stack), dtype=np.float32)
    want = (stack.shape[0], stack.shape[1] * s, stack.shape[2] * s)
    if hr.shape != want:
        raise ValueError(f"enhance returned shape {hr.shape}, expected {want}")
    return hr


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


def _derive_frames(ds: Dataset, src: Dataset, frames: list[int], rescales: list[tuple[float, float]],
                   slopes: list[float], s: int, description: str) -> None:
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
    ds.SeriesDescription = f"{base[:64 - len(mark) - 1]} {mark}" if base else mark

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
    ds.ReferencedSeriesSequence = DicomSequence([ref_series])

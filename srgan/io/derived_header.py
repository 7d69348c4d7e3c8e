"""The derived image of one source file: the header a derived (AI super-resolution) image carries, on the new grid.

:func:`derive` turns one source dataset and its enhanced slices into the derived dataset; the writer
(:mod:`srgan.io.dicom_derived`) decides which files and slices, and this module what each derived file says.
Kept apart because it is DICOM knowledge (IOD rules, vendor private fields, dciodvfy findings) rather than
control flow; the stored values themselves come from :mod:`srgan.io.derived_pixels`.

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
- Rescale: see :mod:`srgan.io.derived_pixels`; a Modality LUT (applied on reading) is replaced by a linear
  rescale.
- LossyImageCompression is kept as the source had it (set to 01 when the source was baseline JPEG).
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
"""

from __future__ import annotations

import copy

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pydicom.valuerep import format_number_as_ds

from srgan.io import dicom_pixels
from srgan.io.derived_pixels import choose_rescale, per_frame_rescale, quantise, set_rescale, stored_range
from srgan.io.geometry import refine_position
from srgan.provenance import Provenance

DERIVATION_CODE = ("113085", "DCM", "Spatial resampling")
SOURCE_PURPOSE_CODE = ("121322", "DCM", "Source image for image processing operation")
SERIES_NUMBER_OFFSET = 1000
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


def derive(
    src: Dataset, frames: list[int] | None, hr: np.ndarray, scale: int, provenance: Provenance, uid_map: dict
) -> Dataset:
    """``src`` derived: ``hr`` holds the enhanced slices (its kept frames, its mosaic tiles or its only image).

    ``uid_map`` is shared by the files of one derived series: ``"series"`` holds its SeriesInstanceUID, new
    ConcatenationUIDs are kept there by source UID, and notes for the report are added to its ``"notes"`` set.
    """
    ds = copy.deepcopy(src)
    lo, hi, dtype = stored_range(src)
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
        new_slope = choose_rescale(image, slope, intercept, hi)
        pixels = quantise(image, new_slope, intercept, lo, hi, dtype)
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
            set_rescale(ds, slope, new_slope)
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
        slopes = [choose_rescale(hr[k], m, b, hi) for k, (m, b) in enumerate(rescales)]
        if any(new != m for new, (m, _) in zip(slopes, rescales)) and not per_frame_rescale(src):
            slopes = [max(slopes)] * len(frames)  # one shared (or implicit) rescale for every frame
        pixels = np.stack([quantise(hr[k], slopes[k], rescales[k][1], lo, hi, dtype) for k in range(len(frames))])
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


def _code_item(code: tuple[str, str, str]) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = code
    return item


def _series_reference(src: Dataset, sequence: str) -> Dataset:
    """A series item referencing ``src``: its SeriesInstanceUID and, under ``sequence`` (the keyword its macro uses:
    ReferencedSOPSequence in SourceImageEvidenceSequence, ReferencedInstanceSequence in ReferencedSeriesSequence),
    one item with its SOP class and instance UIDs."""
    instance = Dataset()
    instance.ReferencedSOPClassUID = src.SOPClassUID
    instance.ReferencedSOPInstanceUID = src.SOPInstanceUID
    series = Dataset()
    series.SeriesInstanceUID = src.SeriesInstanceUID
    setattr(series, sequence, DicomSequence([instance]))
    return series


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
                    set_rescale(item, rescales[k][0], slopes[k])
        for item in group.get("PixelValueTransformationSequence", []):
            set_rescale(item, rescales[k][0], slopes[k])
        set_rescale(group, rescales[k][0], slopes[k])
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
    if not per_frame_rescale(src) and slopes[0] != rescales[0][0]:
        if "PixelValueTransformationSequence" in shared:
            for item in shared.PixelValueTransformationSequence:
                set_rescale(item, rescales[0][0], slopes[0])
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
    evidence.ReferencedSeriesSequence = DicomSequence([_series_reference(src, "ReferencedSOPSequence")])
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

    ref_series = _series_reference(src, "ReferencedInstanceSequence")
    if enhanced or (_valid_uid(src.SOPInstanceUID) and _valid_uid(src.SeriesInstanceUID)):
        ds.ReferencedSeriesSequence = DicomSequence([ref_series])
    elif "ReferencedSeriesSequence" in ds:
        del ds["ReferencedSeriesSequence"]


def _valid_uid(uid) -> bool:
    from pydicom.uid import UID

    return UID(str(uid)).is_valid

"""Derived ×2 series from the real scanner series: dciodvfy adds no errors, dcm2niix reads the source grid
refined ×2 in-plane with the same centre and 4th dimension, the header says what was done, pixels round-trip,
and nothing half-written is ever left."""
from __future__ import annotations

import functools
import glob
import os
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pydicom
import pytest

from srgan.errors import InputError
from srgan.io import dicom_pixels
from srgan.io.dicom_derived import DerivedReport, WriteCancelled, write_derived_series
from srgan.io.dicom_series import scan
from srgan.io.geometry import refine_position
from srgan.provenance import DISCLAIMER, Provenance

DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "dicom"
SCALE = 2
PROV = Provenance(model="nearest", weights_name="test-weights", weights_sha256="ab" * 32, scale=SCALE)
HAVE_DCIODVFY = shutil.which("dciodvfy") is not None
# the venv's dcm2niix (pip, recent) and the system one (Debian, 2022) may both be there: check with each
DCM2NIIX = list(dict.fromkeys(str(Path(p).resolve()) for p in (
    shutil.which("dcm2niix", path=str(Path(sys.executable).parent)), shutil.which("dcm2niix")) if p))
HAVE_DCM2NIIX = bool(DCM2NIIX)

pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason=f"real DICOM test data not found at {DATA}")


def nearest(stack: np.ndarray) -> np.ndarray:
    return np.kron(stack, np.ones((1, SCALE, SCALE), np.float32))


def _files(folder: str) -> list[Path]:
    return sorted(p for p in (DATA / folder).iterdir() if p.is_file() and not p.name.endswith((".md", "SUMS")))


def _series(files: list[Path], folder: Path) -> list:
    """The reader's series (parts) of exactly ``files``: linked into ``folder``, which is scanned."""
    folder.mkdir(parents=True, exist_ok=True)
    for f in files:
        (folder / f.name).symlink_to(f)
    return scan(folder).series


@functools.cache
def _philips_dti_subset() -> list[Path]:
    """At each of the 40 slice positions: b = 0, the first direction and the trace image (120 of 680 files)."""
    by_pos = defaultdict(list)
    for f in _files("philips_achieva_dti_ax"):
        h = pydicom.dcmread(f, stop_before_pixels=True)
        by_pos[tuple(round(float(v), 2) for v in h.ImagePositionPatient)].append((int(h.InstanceNumber), f))
    out = []
    for items in by_pos.values():
        items.sort()
        out += [items[0][1], items[1][1], items[-1][1]]
    return sorted(out)


@functools.cache
def _ge_subset(series_number: int) -> list[Path]:
    """First 3 time points (45 of 150 files) of one of the two GE series sharing the folder."""
    hs = [(f, pydicom.dcmread(f, stop_before_pixels=True)) for f in _files("ge_mr750_epi_ax_mixed_2series")]
    mine = sorted((int(h.InstanceNumber), f) for f, h in hs if int(h.SeriesNumber) == series_number)
    return [f for _, f in mine[:45]]


CASES = {
    "siemens_prisma_t1_sag_hfs": lambda: _files("siemens_prisma_t1_sag_hfs"),
    "ge_mr750_series4": lambda: _ge_subset(4),
    "ge_mr750_series5": lambda: _ge_subset(5),
    "philips_achieva_dti_ax": _philips_dti_subset,
    "philips_achieva_enhanced_b0map_phantom": lambda: _files("philips_achieva_enhanced_b0map_phantom"),
    "siemens_vida_xa10_enhanced_fmri_phantom": lambda: _files("siemens_vida_xa10_enhanced_fmri_phantom"),
    "siemens_trio_epi_mosaic_cor": lambda: _files("siemens_trio_epi_mosaic_cor"),
    "siemens_trio_fmri_mosaic_ax_jpeg2000": lambda: _files("siemens_trio_fmri_mosaic_ax_jpeg2000"),
    "trio_sag_jpegls_noisepixels": lambda: _files("trio_sag_jpegls_noisepixels"),
    # a UIH grid (VFRAME): each file one volume of 20 tiles; its first 4 volumes
    "uih_umr770_dti_ax_vframe": lambda: _files("../dicom-more/uih_umr770_dti_ax_vframe")[:4],
}


class Case:
    def __init__(self, name: str, sources: list[Path], parts: list, report: DerivedReport, work: Path):
        self.name, self.sources, self.parts, self.report, self.work = name, sources, parts, report, work
        self.src_by_uid = {}
        for f in sources:
            h = pydicom.dcmread(f, stop_before_pixels=True)
            self.src_by_uid[str(h.SOPInstanceUID)] = f

    def source_of(self, derived: pydicom.Dataset) -> Path:
        uid = derived.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID
        return self.src_by_uid[str(uid)]


@pytest.fixture(scope="session")
def derived(tmp_path_factory):
    cache: dict[str, Case] = {}

    def get(name: str) -> Case:
        if name not in cache:
            work = tmp_path_factory.mktemp(name)
            sources = CASES[name]()
            parts = _series(sources, work / "links")
            report = write_derived_series(parts, nearest, work / "out", scale=SCALE, provenance=PROV)
            cache[name] = Case(name, sources, parts, report, work)
        return cache[name]

    return get


def _dcm2niix(folder: Path, out: Path, exe: str):
    import nibabel as nib

    out.mkdir(parents=True, exist_ok=True)
    subprocess.run([exe, "-z", "n", "-b", "n", "-f", "%s_%d", "-o", str(out), str(folder)],
                   capture_output=True, text=True, timeout=300)
    return [nib.load(f) for f in sorted(glob.glob(str(out / "*.nii")))]


def _source_folder_for_dcm2niix(case: Case) -> Path:
    """The case's source files in one folder, uncompressed (this dcm2niix build may lack a JPEG-LS decoder)."""
    folder = case.work / "src"
    if folder.exists():
        return folder
    folder.mkdir()
    for f in case.sources:
        ds = pydicom.dcmread(f)
        if ds.file_meta.TransferSyntaxUID.is_compressed and "JPEG-LS" in ds.file_meta.TransferSyntaxUID.name:
            ds.decompress()
            ds.save_as(folder / f.name)
        else:
            os.symlink(f, folder / f.name)
    return folder


def _dciodvfy_errors(path: Path) -> set[str]:
    p = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=120)
    return {line.strip() for line in (p.stdout + p.stderr).splitlines() if line.startswith("Error")}


# ---------------------------------------------------------------------------------------- standards


@pytest.mark.skipif(not HAVE_DCIODVFY, reason="dciodvfy (dicom3tools) not on PATH")
@pytest.mark.parametrize("name", CASES)
def test_dciodvfy_adds_no_errors(derived, name):
    case = derived(name)
    for out in case.report.files[:3]:
        src = case.source_of(pydicom.dcmread(out, stop_before_pixels=True))
        added = _dciodvfy_errors(out) - _dciodvfy_errors(src)
        assert not added, f"{out.name} (from {src.name}) adds dciodvfy errors: {sorted(added)}"


@pytest.mark.skipif(not HAVE_DCM2NIIX, reason="dcm2niix not on PATH")
@pytest.mark.parametrize("exe", DCM2NIIX or ["dcm2niix"])
@pytest.mark.parametrize("name", CASES)
def test_dcm2niix_reads_the_refined_grid(derived, name, exe):
    case = derived(name)
    tag = f"{abs(hash(exe))}"
    a = _dcm2niix(_source_folder_for_dcm2niix(case), case.work / f"nii_src_{tag}", exe)
    b = _dcm2niix(case.report.out_dir, case.work / f"nii_derived_{tag}", exe)
    assert a and b, f"dcm2niix made {len(a)} source and {len(b)} derived volumes"
    assert len(b) <= len(a)
    tol = 1e-3  # mm; the contract allows 0.25 voxel, the mosaic and classic positions are exact
    for B in b:
        cb = B.affine @ np.r_[(np.array(B.shape[:3]) - 1) / 2, 1]
        ok = []
        for A in a:
            ca = A.affine @ np.r_[(np.array(A.shape[:3]) - 1) / 2, 1]
            ratio = np.array(B.shape[:3]) / np.array(A.shape[:3])  # dcm2niix may put the slice axis first
            same_axes = np.allclose(B.affine[:3, :3] * ratio, A.affine[:3, :3], atol=1e-4)
            ok.append(sorted(ratio) == [1, SCALE, SCALE] and same_axes and B.shape[3:] == A.shape[3:]
                      and np.linalg.norm(ca[:3] - cb[:3]) < tol)
        assert any(ok), f"derived volume {B.shape} {B.affine.round(3).tolist()} matches no source volume " \
                        f"{[(A.shape, A.affine.round(3).tolist()) for A in a]}"


# ---------------------------------------------------------------------------------------- attributes


@pytest.mark.parametrize("name", CASES)
def test_header_and_pixels(derived, name):
    case = derived(name)
    report = case.report
    assert report.files and not report.skipped
    uids = set()
    for out in report.files[:4] + report.files[-2:]:
        ds = pydicom.dcmread(out)
        src = pydicom.dcmread(case.source_of(ds))
        enhanced = "PerFrameFunctionalGroupsSequence" in src
        # identity and provenance
        assert ds.SOPClassUID == src.SOPClassUID
        assert ds.SeriesInstanceUID == report.series_instance_uid != src.SeriesInstanceUID
        assert ds.SOPInstanceUID != src.SOPInstanceUID and ds.SOPInstanceUID == ds.file_meta.MediaStorageSOPInstanceUID
        assert ds.file_meta.MediaStorageSOPClassUID == ds.SOPClassUID
        assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
        uids.add(ds.SOPInstanceUID)
        assert ds.StudyInstanceUID == src.StudyInstanceUID
        assert ds.get("FrameOfReferenceUID") == src.get("FrameOfReferenceUID")
        assert int(ds.SeriesNumber) == int(src.get("SeriesNumber") or 0) + 1000
        assert ds.SeriesDescription.endswith("AI super-resolution x2") and len(ds.SeriesDescription) <= 64
        assert list(ds.ImageType[:2]) == ["DERIVED", "PRIMARY" if enhanced else "SECONDARY"]
        assert list(ds.ImageType[2:]) == list(src.ImageType[2:])
        assert ds.DerivationDescription == PROV.long() and DISCLAIMER in ds.ImageComments
        assert ds.BurnedInAnnotation == "NO"
        assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == src.SeriesInstanceUID
        assert ds.get("InstanceNumber") == src.get("InstanceNumber")
        assert "SmallestImagePixelValue" not in ds and "LargestImagePixelValue" not in ds
        for kw in ("BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation", "WindowCenter", "WindowWidth",
                   "ImageOrientationPatient", "SliceThickness", "LossyImageCompression", "(0029,1010)"):
            tag = kw if not kw.startswith("(") else pydicom.tag.Tag(0x0029, 0x1010)
            assert (tag in ds) == (tag in src)
            if tag in src:
                assert ds[tag].value == src[tag].value, kw
        # grid
        assert (ds.Rows, ds.Columns) == (src.Rows * SCALE, src.Columns * SCALE)
        if enhanced:
            _check_enhanced(ds, src)
        else:
            ref = ds.SourceImageSequence[0]
            assert ref.ReferencedSOPInstanceUID == src.SOPInstanceUID
            assert ref.PurposeOfReferenceCodeSequence[0].CodeValue == "121322"
            assert np.allclose(ds.PixelSpacing, np.array(src.PixelSpacing, float) / SCALE)
            layout = dicom_pixels.tile_layout(src)
            if layout is not None and layout.vendor == "uih":  # every tile's own position, refined on its grid
                got_tiles = dicom_pixels.tile_positions(ds, dicom_pixels.tile_layout(ds))
                for k, ipp in enumerate(dicom_pixels.tile_positions(src, layout)):
                    want = refine_position(ipp, src.ImageOrientationPatient[:3], src.ImageOrientationPatient[3:],
                                           src.PixelSpacing, SCALE)
                    assert np.allclose(got_tiles[k], want, atol=1e-4)
                assert dicom_pixels.tile_layout(ds).tile_rows == layout.tile_rows * SCALE
            else:
                want = refine_position(src.ImagePositionPatient, src.ImageOrientationPatient[:3],
                                       src.ImageOrientationPatient[3:], src.PixelSpacing, SCALE)
                assert np.allclose(np.array(ds.ImagePositionPatient, float), want, atol=1e-4)
            expect = _expected_pixels(src)
            slope = dicom_pixels.frame_rescale(ds)[0]
            got = dicom_pixels.frame_pixels(ds)
            lo = dicom_pixels.frame_rescale(src)[1]
            assert np.abs(got - np.maximum(expect, lo)).max() <= slope / 2 + 1e-3
    assert len(uids) == min(len(report.files), 6)


def _expected_pixels(src: pydicom.Dataset) -> np.ndarray:
    layout = dicom_pixels.tile_layout(src)
    if layout is not None:
        tiles = dicom_pixels.split_tiles(dicom_pixels.frame_pixels(src), layout)
        return dicom_pixels.join_tiles(nearest(tiles), layout)
    return nearest(dicom_pixels.frame_pixels(src)[None])[0]


def _check_enhanced(ds, src):
    shared, src_shared = ds.SharedFunctionalGroupsSequence[0], src.SharedFunctionalGroupsSequence[0]
    assert int(ds.NumberOfFrames) == len(ds.PerFrameFunctionalGroupsSequence)
    for k, group in enumerate(ds.PerFrameFunctionalGroupsSequence):
        assert group.DerivationImageSequence[0].DerivationDescription == PROV.long()
        assert group.DerivationImageSequence[0].DerivationCodeSequence[0].CodeValue == "113085"
        ref = group.DerivationImageSequence[0].SourceImageSequence[0]
        assert ref.ReferencedSOPInstanceUID == src.SOPInstanceUID
        assert ref.PurposeOfReferenceCodeSequence[0].CodeValue == "121322"
        i = int(ref.ReferencedFrameNumber) - 1
        sgroup = src.PerFrameFunctionalGroupsSequence[i]
        pm = (group if "PixelMeasuresSequence" in group else shared).PixelMeasuresSequence[0]
        spm = (sgroup if "PixelMeasuresSequence" in sgroup else src_shared).PixelMeasuresSequence[0]
        assert np.allclose(pm.PixelSpacing, np.array(spm.PixelSpacing, float) / SCALE)
        orient = (sgroup if "PlaneOrientationSequence" in sgroup else src_shared).PlaneOrientationSequence[0]
        iop = np.array(orient.ImageOrientationPatient, float)
        want = refine_position(sgroup.PlanePositionSequence[0].ImagePositionPatient, iop[:3], iop[3:],
                               spm.PixelSpacing, SCALE)
        assert np.allclose(np.array(group.PlanePositionSequence[0].ImagePositionPatient, float), want, atol=1e-4)
        if k < 3:
            expect = nearest(dicom_pixels.frame_pixels(src, i)[None])[0]
            slope = dicom_pixels.frame_rescale(ds, k)[0]
            assert np.abs(dicom_pixels.frame_pixels(ds, k) - expect).max() <= slope / 2 + 1e-3


def test_signed_ge_stays_signed_and_philips_slope_kept(derived):
    ge = pydicom.dcmread(derived("ge_mr750_series4").report.files[0])
    assert ge.PixelRepresentation == 1 and ge.pixel_array.dtype == np.int16
    ph = pydicom.dcmread(derived("philips_achieva_dti_ax").report.files[0])
    src = pydicom.dcmread(_philips_dti_subset()[0], stop_before_pixels=True)
    assert float(ph.RescaleSlope) == float(src.RescaleSlope)
    assert float(ph.RescaleIntercept) == float(src.RescaleIntercept)


def test_two_ge_series_get_two_derived_series(derived):
    a, b = derived("ge_mr750_series4").report, derived("ge_mr750_series5").report
    assert a.series_instance_uid != b.series_instance_uid
    assert int(pydicom.dcmread(a.files[0]).SeriesNumber) == 1004
    assert int(pydicom.dcmread(b.files[0]).SeriesNumber) == 1005


def test_philips_trace_images_left_out_with_a_note(derived):
    report = derived("philips_achieva_dti_ax").report
    assert len(report.files) == 80
    assert any("40" in n and "trace" in n.lower() for n in report.notes), report.notes


def test_field_map_frames_left_out_by_default(derived, tmp_path):
    case = derived("philips_achieva_enhanced_b0map_phantom")
    assert any(n.startswith("32 field map frames") for n in case.report.notes), case.report.notes
    ds = pydicom.dcmread(case.report.files[0], stop_before_pixels=True)
    assert int(ds.NumberOfFrames) == 32
    types = {g.MRImageFrameTypeSequence[0].FrameType[3] for g in ds.PerFrameFunctionalGroupsSequence}
    assert types == {"M"}
    everything = write_derived_series(case.parts, nearest, tmp_path / "all", scale=SCALE, provenance=PROV,
                                      include_non_anatomy=True)
    assert not everything.notes
    assert int(pydicom.dcmread(everything.files[0], stop_before_pixels=True).NumberOfFrames) == 64


def test_mosaic_keeps_its_tiles_and_csa(derived):
    case = derived("siemens_trio_epi_mosaic_cor")
    ds = pydicom.dcmread(case.report.files[0])
    src = pydicom.dcmread(case.source_of(ds))
    assert dicom_pixels.is_mosaic(ds)
    assert dicom_pixels.mosaic_tile_count(ds) == dicom_pixels.mosaic_tile_count(src) == 35
    assert dicom_pixels.mosaic_grid(ds) == 6 and ds.Rows == 768
    assert list(ds.AcquisitionMatrix) == [v * SCALE for v in src.AcquisitionMatrix]
    assert ds[0x0051, 0x100B].value == "128*128"
    pcs = ds.get_private_item(0x0019, 0x15, "SIEMENS MR HEADER").value
    assert np.allclose(pcs, np.array(ds.ImagePositionPatient, float), atol=1e-4)
    tiles = dicom_pixels.split_mosaic(dicom_pixels.frame_pixels(ds), 35)
    assert tiles.shape == (35, 128, 128)


# ---------------------------------------------------------------------------------------- rescale


def test_values_beyond_the_stored_range_get_a_new_slope(tmp_path):
    sources = _files("siemens_prisma_t1_sag_hfs")[15:17]
    louder = lambda x: nearest(x) * 5.0  # noqa: E731 - 1948 × 5 does not fit 12 stored bits
    report = write_derived_series(_series(sources, tmp_path / "src"), louder, tmp_path / "out", scale=SCALE,
                                  provenance=PROV)
    by_uid = {pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID: f for f in sources}
    assert len(report.files) == 2
    for out in report.files:
        ds = pydicom.dcmread(out)
        src = pydicom.dcmread(by_uid[ds.SourceImageSequence[0].ReferencedSOPInstanceUID])
        slope, intercept = dicom_pixels.frame_rescale(ds)
        assert slope > 1 and intercept == 0 and int(ds.pixel_array.max()) <= 4095
        want = louder(dicom_pixels.frame_pixels(src)[None])[0]
        assert np.abs(dicom_pixels.frame_pixels(ds) - want).max() <= slope / 2 + 1e-3
    assert HAVE_DCIODVFY is False or not (_dciodvfy_errors(report.files[0]) - _dciodvfy_errors(sources[0]))


@pytest.mark.parametrize("name", ["philips_achieva_enhanced_b0map_phantom", "siemens_vida_xa10_enhanced_fmri_phantom"])
def test_enhanced_frames_get_a_valid_new_rescale(tmp_path, name):
    """Philips keeps a per-frame rescale (and RealWorldValueSlope follows); Siemens XA10 has none, so one is added."""
    f = _files(name)[0]
    src = pydicom.dcmread(f)
    report = write_derived_series(_series([f], tmp_path / "src"), lambda x: nearest(x) * 40.0, tmp_path / "out",
                                  scale=SCALE, provenance=PROV)
    ds = pydicom.dcmread(report.files[0])
    for k, group in enumerate(ds.PerFrameFunctionalGroupsSequence[:4]):
        i = int(group.DerivationImageSequence[0].SourceImageSequence[0].ReferencedFrameNumber) - 1
        slope, intercept = dicom_pixels.frame_rescale(ds, k)
        assert slope > dicom_pixels.frame_rescale(src, i)[0] and intercept == dicom_pixels.frame_rescale(src, i)[1]
        want = nearest(dicom_pixels.frame_pixels(src, i)[None])[0] * 40.0
        assert np.abs(dicom_pixels.frame_pixels(ds, k) - np.maximum(want, intercept)).max() <= slope / 2 + 1e-3
        for rw in group.get("RealWorldValueMappingSequence", []):
            assert float(rw.RealWorldValueSlope) == pytest.approx(slope)
    assert int(ds.pixel_array.max()) <= 4095
    if HAVE_DCIODVFY:
        assert not (_dciodvfy_errors(report.files[0]) - _dciodvfy_errors(f))


def test_philips_slope_change_keeps_private_scale_consistent(tmp_path):
    f = _philips_dti_subset()[0]
    src = pydicom.dcmread(f)
    assert src.pixel_array.max() > 200
    report = write_derived_series(_series([f], tmp_path / "src"), lambda x: nearest(x) * 40.0, tmp_path / "out",
                                  scale=SCALE, provenance=PROV)
    ds = pydicom.dcmread(report.files[0])
    rs, rs2 = float(src.RescaleSlope), float(ds.RescaleSlope)
    assert rs2 > rs
    ss, ss2 = float(src[0x2005, 0x100E].value), float(ds[0x2005, 0x100E].value)
    assert rs2 * ss2 == pytest.approx(rs * ss, rel=1e-5)  # Philips' floating value of a stored value's meaning kept


# ---------------------------------------------------------------------------------------- safety


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_failing_enhance_leaves_nothing(tmp_path):
    sources = _series(_files("siemens_prisma_t1_sag_hfs")[:4], tmp_path / "src")
    calls = []

    def flaky(x):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("model crashed")
        return nearest(x)

    with pytest.raises(RuntimeError, match="model crashed"):
        write_derived_series(sources, flaky, tmp_path / "out", scale=SCALE, provenance=PROV)
    assert _leftovers(tmp_path) == ["src"]


def test_cancel_leaves_nothing(tmp_path):
    sources = _series(_files("siemens_prisma_t1_sag_hfs")[:4], tmp_path / "src")
    seen = []
    with pytest.raises(WriteCancelled):
        write_derived_series(sources, nearest, tmp_path / "out", scale=SCALE, provenance=PROV,
                             progress=lambda d, n: seen.append((d, n)), cancel=lambda: len(seen) >= 2)
    assert seen == [(1, 4), (2, 4)] and _leftovers(tmp_path) == ["src"]


def test_refuses_to_write_into_the_source_folder(tmp_path):
    folder = tmp_path / "src"
    folder.mkdir()
    for f in _files("siemens_prisma_t1_sag_hfs")[:2]:
        shutil.copy(f, folder / f.name)
    files = sorted(folder.iterdir())
    sources = scan(folder).series
    for out in (folder, folder / "derived", folder / "a" / "b"):
        with pytest.raises(InputError, match="inside the source folder"):
            write_derived_series(sources, nearest, out, scale=SCALE, provenance=PROV)
    assert _leftovers(folder) == [f.name for f in files]


def test_refuses_a_non_empty_output_folder_but_fills_an_empty_one(tmp_path):
    sources = _series(_files("siemens_prisma_t1_sag_hfs")[:2], tmp_path / "src")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    with pytest.raises(InputError, match="not empty"):
        write_derived_series(sources, nearest, busy, scale=SCALE, provenance=PROV)
    assert _leftovers(busy) == ["keep.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    report = write_derived_series(sources, nearest, empty, scale=SCALE, provenance=PROV)
    assert _leftovers(empty) == sorted(p.name for p in report.files) and len(report.files) == 2
    assert _leftovers(tmp_path) == ["busy", "empty", "src"]


def test_file_damaged_after_the_scan_is_skipped_and_named(tmp_path):
    """The reader saw good headers; what the writer cannot read or decode later is skipped and named."""
    folder = tmp_path / "src"
    folder.mkdir()
    good = _files("siemens_prisma_t1_sag_hfs")[:3]
    for f in good:
        shutil.copy(f, folder / f.name)
    parts = scan(folder).series
    (folder / good[1].name).write_bytes(good[1].read_bytes()[:-5000])    # pixel data cut short
    (folder / good[2].name).write_bytes(good[2].read_bytes()[:300])      # header cut short
    report = write_derived_series(parts, nearest, tmp_path / "out", scale=SCALE, provenance=PROV)
    assert len(report.files) == 1
    assert sorted(p.name for p, _ in report.skipped) == sorted(f.name for f in good[1:])
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(good[0], alone / good[0].name)
    parts = scan(alone).series
    (alone / good[0].name).write_bytes(good[0].read_bytes()[:-5000])
    with pytest.raises(InputError, match=good[0].name):
        write_derived_series(parts, nearest, tmp_path / "out2", scale=SCALE, provenance=PROV)
    assert not (tmp_path / "out2").exists()


def test_parts_of_two_series_are_refused(tmp_path):
    mixed = _series(_ge_subset(4)[:1] + _ge_subset(5)[:1], tmp_path / "src")
    assert len(mixed) == 2
    with pytest.raises(InputError, match="2 series"):
        write_derived_series(mixed, nearest, tmp_path / "out", scale=SCALE, provenance=PROV)
    assert _leftovers(tmp_path) == ["src"]


def test_mosaic_that_does_not_split_is_skipped_and_named(tmp_path):
    folder = tmp_path / "src"
    folder.mkdir()
    good, other = _files("siemens_trio_epi_mosaic_cor")
    shutil.copy(good, folder / "good")
    ds = pydicom.dcmread(other)
    ds.get_private_item(0x0019, 0x0A, "SIEMENS MR HEADER").value = 49   # a 7×7 grid does not divide 384
    ds.save_as(folder / "bad_count")
    parts = scan(folder).series   # one UID, split by the reader: 64×64 tiles and 54×54 tiles
    report = write_derived_series(parts, nearest, tmp_path / "out", scale=SCALE, provenance=PROV)
    assert len(report.files) == 1
    assert [(p.name, "mosaic" in why) for p, why in report.skipped] == [("bad_count", True)]


# ---------------------------------------------------------------------------------------- from the viewer


class Recording:
    """Enhancer-like with ``enhance_stack``: nearest ×2, recording the plan and keys of every call."""

    def __init__(self):
        self.calls: list[tuple[object, list]] = []
        self.planned = 0

    def plan_series(self, series):
        self.planned += 1
        return "the series' plan"

    def enhance_stack(self, stack, plan=None, *, keys=None, cancel=None):
        self.calls.append((plan, list(keys)))
        return nearest(stack)


def _pixels(report: DerivedReport) -> list[np.ndarray]:
    return [pydicom.dcmread(f).pixel_array for f in report.files]


@pytest.mark.parametrize("name", ["siemens_prisma_t1_sag_hfs", "siemens_trio_epi_mosaic_cor",
                                  "siemens_vida_xa10_enhanced_fmri_phantom"])
def test_lookup_supplies_slices_and_the_enhancer_makes_only_the_others(derived, tmp_path, name):
    """Slices the viewer already enhanced are taken from its cache; the enhancer gets the others only, with the
    series' plan and their (volume, slice) keys; the files are the same as without the cache."""
    case = derived(name)
    (series,) = case.parts
    n_volumes, n_slices = series.shape[:2]
    have = {(v, s) for v in range(n_volumes) for s in range(n_slices) if (v + s) % 3}
    asked = []

    def lookup(v, s):
        asked.append((v, s))
        return nearest(series.pixels(v, s)[None])[0] if (v, s) in have else None

    enhancer = Recording()
    report = write_derived_series(series, enhancer, tmp_path / "out", scale=SCALE, provenance=PROV,
                                  plan="given plan", lookup=lookup)
    assert sorted(asked) == sorted((v, s) for v in range(n_volumes) for s in range(n_slices))
    made = [k for _, keys in enhancer.calls for k in keys]
    assert sorted(made) == sorted(set(asked) - have) and made
    assert {plan for plan, _ in enhancer.calls} == {"given plan"} and enhancer.planned == 0
    assert len(enhancer.calls) <= len(series.files)            # at most one call per file
    assert len(report.files) == len(case.report.files)
    for a, b in zip(_pixels(report), _pixels(case.report)):
        np.testing.assert_array_equal(a, b)


def test_everything_in_the_cache_needs_no_model_and_no_plan(derived, tmp_path):
    (series,) = derived("siemens_trio_epi_mosaic_cor").parts
    enhancer = Recording()
    report = write_derived_series(series, enhancer, tmp_path / "out", scale=SCALE, provenance=PROV,
                                  lookup=lambda v, s: nearest(series.pixels(v, s)[None])[0])
    assert enhancer.calls == [] and enhancer.planned == 0 and len(report.files) == 2
    # without a lookup and a plan, the enhancer plans the series once and gets every tile with its key
    enhancer = Recording()
    write_derived_series(series, enhancer, tmp_path / "out2", scale=SCALE, provenance=PROV)
    assert enhancer.planned == 1 and [len(keys) for _, keys in enhancer.calls] == [35, 35]
    assert enhancer.calls[1] == ("the series' plan", [(1, s) for s in range(35)])


def test_a_cached_slice_of_the_wrong_size_is_made_again(derived, tmp_path):
    (series,) = derived("trio_sag_jpegls_noisepixels").parts
    enhancer = Recording()
    write_derived_series(series, enhancer, tmp_path / "out", scale=SCALE, provenance=PROV,
                         lookup=lambda v, s: np.zeros((4, 4), np.float32) if s == 2 else nearest(
                             series.pixels(v, s)[None])[0])
    assert [keys for _, keys in enhancer.calls] == [[(0, 2)]]


def test_the_series_is_used_as_the_reader_built_it(derived, tmp_path, monkeypatch):
    """No second scan or classification: the files come in the reader's order (volume, then slice), and the
    parts of a split series keep keys of their own, never the first part's."""
    import srgan.io.dicom_series as dicom_series

    def refuse(*a, **k):
        raise AssertionError("the writer must not scan or classify again")

    case = derived("philips_achieva_dti_ax")
    monkeypatch.setattr(dicom_series, "scan", refuse)
    monkeypatch.setattr(dicom_series, "frames_of", refuse)
    (series,) = case.parts
    report = write_derived_series(series, nearest, tmp_path / "out", scale=SCALE, provenance=PROV)
    anatomy = [series.frame(v, s).path for v in series.anatomy_volumes for s in range(series.shape[1])]
    assert len(report.files) == len(anatomy) == 80
    for out, src in zip(report.files, anatomy):
        uid = pydicom.dcmread(out, stop_before_pixels=True).SourceImageSequence[0].ReferencedSOPInstanceUID
        assert uid == pydicom.dcmread(src, stop_before_pixels=True).SOPInstanceUID
    assert any("40" in n and "trace" in n for n in report.notes), report.notes

    folder = tmp_path / "mixed"
    folder.mkdir()
    good, other = _files("siemens_trio_epi_mosaic_cor")
    shutil.copy(good, folder / "a")
    ds = pydicom.dcmread(other)
    half = ds.pixel_array[::2, ::2].tobytes()
    ds.Rows, ds.Columns = 192, 192        # a second geometry in the same series: the reader splits it off
    ds.PixelData = half
    ds.save_as(folder / "b")
    monkeypatch.undo()
    parts = scan(folder).series
    assert len(parts) == 2 and parts[0].uid == parts[1].uid
    enhancer = Recording()
    seen = []
    report = write_derived_series(parts, enhancer, tmp_path / "out2", scale=SCALE, provenance=PROV,
                                  plan="p", lookup=lambda v, s: seen.append((v, s)))
    assert len(report.files) == 2 and len(seen) == 35                 # the lookup serves the first part only
    assert [keys[0] for _, keys in enhancer.calls] == [(0, 0), (1, 0, 0)]


def _big_endian_copy(src: Path, dst: Path) -> None:
    """``src`` re-encoded Explicit VR Big Endian (pixel words byte-swapped), as older scanners wrote it."""
    from pydicom.uid import ExplicitVRBigEndian

    ds = pydicom.dcmread(src)
    assert int(ds.BitsAllocated) == 16 and not ds.file_meta.TransferSyntaxUID.is_compressed
    for _elem in ds.iterall():  # decode every raw element with the source's syntax before writing it in another
        pass
    ds.PixelData = np.frombuffer(ds.PixelData, "<u2").astype(">u2").tobytes()
    ds["PixelData"].VR = "OW"
    ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
    pydicom.dcmwrite(dst, ds, implicit_vr=False, little_endian=False, force_encoding=True)


@pytest.mark.parametrize("name", ["siemens_prisma_t1_sag_hfs", "siemens_vida_xa10_enhanced_fmri_phantom", "pydicom"])
def test_big_endian_source_is_written_little_endian_with_the_same_pixels(name, tmp_path):
    """One writer policy: a derived file is Explicit VR Little Endian whatever the source's syntax; a big-endian
    source gives exactly what its little-endian twin gives."""
    from pydicom.data import get_testdata_file

    if name == "pydicom":  # pydicom's own big-endian test file and its little-endian twin
        little = [Path(get_testdata_file("MR_small.dcm"))]
        big = [Path(get_testdata_file("MR_small_bigendian.dcm"))]
    else:
        little = _files(name)[:2]
        (tmp_path / "be").mkdir()
        big = [tmp_path / "be" / f"{k}.dcm" for k in range(len(little))]
        for f, b in zip(little, big):
            _big_endian_copy(f, b)
    assert all(pydicom.dcmread(b, stop_before_pixels=True).file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.2"
               for b in big)
    out = {}
    for label, files in (("le", little), ("be", big)):
        report = write_derived_series(_series(files, tmp_path / f"src_{label}"), nearest, tmp_path / f"out_{label}",
                                      scale=SCALE, provenance=PROV)
        assert not report.skipped
        out[label] = [pydicom.dcmread(f) for f in report.files]
    assert len(out["le"]) == len(out["be"]) == len(little)
    for a, b in zip(out["le"], out["be"]):
        assert b.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
        assert np.array_equal(a.pixel_array, b.pixel_array)
        assert (b.Rows, b.Columns) == (a.Rows, a.Columns)
        for kw in ("ImagePositionPatient", "PixelSpacing", "ImageOrientationPatient", "WindowCenter"):
            if kw in a:
                assert [float(v) for v in np.ravel(a[kw].value)] == [float(v) for v in np.ravel(b[kw].value)], kw
        if "PerFrameFunctionalGroupsSequence" in a:
            pa = a.PerFrameFunctionalGroupsSequence[0].PlanePositionSequence[0].ImagePositionPatient
            pb = b.PerFrameFunctionalGroupsSequence[0].PlanePositionSequence[0].ImagePositionPatient
            assert list(pa) == list(pb)


def _pydicom_file(name: str) -> Path:
    return Path(pydicom.__file__).parent / "data" / "test_files" / name


def test_overlay_planes_are_refined_with_the_image(tmp_path):
    """A Siemens MedCom overlay (pydicom's examples_overlay.dcm, MR): bitmap ×2 (nearest), size ×2, origin on the
    new grid, so the graphics land where they were; dciodvfy adds nothing."""
    src = _pydicom_file("examples_overlay.dcm")
    report = write_derived_series(_series([src], tmp_path / "src"), nearest, tmp_path / "out", scale=SCALE,
                                  provenance=PROV)
    a, b = pydicom.dcmread(src), pydicom.dcmread(report.files[0])
    assert (int(b[0x6000, 0x0010].value), int(b[0x6000, 0x0011].value)) == (
        int(a[0x6000, 0x0010].value) * SCALE, int(a[0x6000, 0x0011].value) * SCALE)
    assert np.array_equal(b.overlay_array(0x6000), np.kron(a.overlay_array(0x6000), np.ones((SCALE, SCALE))))
    assert [int(v) for v in b[0x6000, 0x0050].value] == [(int(v) - 1) * SCALE + 1 for v in a[0x6000, 0x0050].value]
    assert b.overlay_array(0x6000).shape == b.pixel_array.shape
    if HAVE_DCIODVFY:
        added = _dciodvfy_errors(report.files[0]) - _dciodvfy_errors(src)
        assert not added, sorted(added)


@pytest.mark.parametrize("name, words", [("examples_palette.dcm", "US series"),
                                         ("examples_palette.dcm MR", "colour image (PALETTE COLOR)"),
                                         ("SC_rgb_small_odd.dcm MR", "colour image (RGB)"),
                                         ("CT_small.dcm", "CT series")])
def test_images_the_model_cannot_honestly_enhance_are_refused_clearly(tmp_path, name, words):
    """Palette/RGB colour and non-MR images are refused with one clear sentence, nothing written. (``MR``: the
    file relabelled as MR, so that the colour check, not the modality, refuses it.)"""
    f = _pydicom_file(name.split()[0])
    if name.endswith(" MR"):
        ds = pydicom.dcmread(f)
        ds.Modality = "MR"
        f = tmp_path / f.name
        ds.save_as(f)
    with pytest.raises(InputError) as err:
        write_derived_series(_series([f], tmp_path / "src"), nearest, tmp_path / "out",
                             scale=SCALE, provenance=PROV)
    assert words in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(not HAVE_DCIODVFY, reason="dciodvfy (dicom3tools) not on PATH")
def test_an_invalid_source_uid_is_not_repeated_into_the_references(tmp_path):
    """A source whose SOP Instance UID is invalid: the copy does not reference it (a reference would repeat the
    invalid UID, and dciodvfy's error, in new places); a note says so."""
    src = tmp_path / "in"
    src.mkdir()
    ds = pydicom.dcmread(_files("siemens_prisma_t1_sag_hfs")[0])
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = "1.2.840.0123.5"
    with __import__("warnings").catch_warnings():
        __import__("warnings").simplefilter("ignore")
        ds.save_as(src / "a.dcm")
    report = write_derived_series(scan(src).series, nearest, tmp_path / "out", scale=SCALE, provenance=PROV)
    added = _dciodvfy_errors(report.files[0]) - _dciodvfy_errors(src / "a.dcm")
    assert not added, sorted(added)
    assert any("not a valid UID" in n for n in report.notes)


def test_a_modality_lut_becomes_a_linear_rescale(tmp_path):
    """A source with a Modality LUT Sequence: the copy holds modality values with a rescale and no LUT beside it
    (a LUT next to an added rescale is an IOD error); the values are the enhanced modality values."""
    from pydicom.dataset import Dataset as Ds

    src_dir = tmp_path / "in"
    src_dir.mkdir()
    ds = pydicom.dcmread(_files("siemens_prisma_t1_sag_hfs")[0])
    lut = Ds()
    lut.LUTDescriptor = [4096, 0, 16]
    lut.ModalityLUTType = "US"
    lut.add_new("LUTData", "OW", (2 * np.arange(4096)).astype("<u2").tobytes())   # modality = 2 × stored
    ds.ModalityLUTSequence = pydicom.sequence.Sequence([lut])
    for kw in ("RescaleSlope", "RescaleIntercept", "RescaleType"):
        if kw in ds:
            del ds[kw]
    ds.save_as(src_dir / "a.dcm")
    report = write_derived_series(scan(src_dir).series, nearest, tmp_path / "out", scale=SCALE, provenance=PROV)
    out = pydicom.dcmread(report.files[0])
    assert "ModalityLUTSequence" not in out and out.RescaleType == "US"
    want = nearest((2.0 * pydicom.dcmread(src_dir / "a.dcm").pixel_array.astype(np.float32))[None])[0]
    got = dicom_pixels.frame_pixels(out)
    assert np.abs(got - want).max() <= float(out.RescaleSlope) / 2 + 1e-3
    assert any("Modality LUT" in n for n in report.notes)
    if HAVE_DCIODVFY:
        added = _dciodvfy_errors(report.files[0]) - _dciodvfy_errors(src_dir / "a.dcm")
        assert not added, sorted(added)

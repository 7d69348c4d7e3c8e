"""The bundled sample series: valid DICOM, the documented LPS geometry, read the same by dcm2niix and by our
scanner, reproducible byte for byte by make_sample.py, and its truth on the project's pixel-centre grid."""
from __future__ import annotations

import glob
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest

from srgan.io.geometry import refine_affine

REPO = Path(__file__).resolve().parents[3]
SAMPLE = REPO / "resources" / "sample"
SERIES = SAMPLE / "series"
FILES = sorted(SERIES.glob("*.dcm"))


def _geometry(files):
    out = []
    for f in files:
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        out.append((ds.Rows, ds.Columns, tuple(map(float, ds.ImagePositionPatient)),
                    tuple(map(float, ds.ImageOrientationPatient)), tuple(map(float, ds.PixelSpacing)),
                    float(ds.SliceThickness), float(ds.SpacingBetweenSlices)))
    return out


def test_committed_series_has_the_documented_geometry():
    assert len(FILES) == 28
    assert sum(f.stat().st_size for f in FILES) < 2_000_000
    geo = _geometry(FILES)
    assert {g[:2] for g in geo} == {(112, 96)}
    assert {g[3] for g in geo} == {(1.0, 0.0, 0.0, 0.0, 1.0, 0.0)}
    assert {g[4] for g in geo} == {(2.0, 2.0)} and {g[5:] for g in geo} == {(4.0, 4.0)}
    z = np.array([g[2][2] for g in geo])
    assert np.allclose(np.diff(z), 4.0) and z[0] == -36.0 and {g[2][:2] for g in geo} == {(-95.0, -93.0)}
    ds = pydicom.dcmread(FILES[14])
    assert str(ds.PatientName) == "BrainSR^Sample" and "MNI152 2009a" in ds.SeriesDescription
    assert ds.SOPClassUID == pydicom.uid.MRImageStorage and ds.BitsStored == 12
    px = ds.pixel_array
    assert px.dtype == np.uint16 and px.max() <= 4095
    # brain in the middle, noise floor at the border
    assert px[40:70, 30:66].mean() > 1000 and px[:5, :5].mean() < 60
    assert len({pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in FILES}) == 28


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy (dicom3tools) not on PATH")
def test_dciodvfy_finds_no_errors():
    for f in FILES[::3]:
        p = subprocess.run(["dciodvfy", str(f)], capture_output=True, text=True, timeout=60)
        errors = [line for line in (p.stdout + p.stderr).splitlines() if line.startswith("Error")]
        assert not errors, f"{f.name}: {errors}"


DCM2NIIX = shutil.which("dcm2niix", path=str(Path(sys.executable).parent)) or shutil.which("dcm2niix")


@pytest.mark.skipif(DCM2NIIX is None, reason="dcm2niix not found")
def test_dcm2niix_reads_the_geometry(tmp_path):
    import nibabel as nib

    subprocess.run([DCM2NIIX, "-z", "n", "-b", "n", "-o", str(tmp_path), str(SERIES)],
                   capture_output=True, text=True, timeout=120)
    (nii,) = [nib.load(f) for f in glob.glob(str(tmp_path / "*.nii"))]
    assert nii.shape == (96, 112, 28)
    assert np.allclose(nii.header.get_zooms(), (2, 2, 4))
    centre_lps = np.array([-95.0, -93.0, -36.0]) + np.array([95 * 2, 111 * 2, 27 * 4]) / 2
    centre_ras = nii.affine @ np.r_[(np.array(nii.shape) - 1) / 2, 1]
    assert np.allclose(centre_ras[:3], centre_lps * [-1, -1, 1], atol=1e-3)
    assert nib.aff2axcodes(nii.affine)[2] == "S"


def test_our_scanner_reads_one_series_with_the_same_affine():
    from srgan.io.dicom_series import scan

    result = scan(SERIES)
    (series,) = result.series
    assert series.shape == (1, 28, 112, 96)
    want = np.array([[2, 0, 0, -95], [0, 2, 0, -93], [0, 0, 4, -36], [0, 0, 0, 1]], float)
    assert np.allclose(series.affine, want, atol=1e-6)


def test_rerun_is_byte_identical_and_truth_sits_on_the_refined_grid(tmp_path):
    pytest.importorskip("nilearn")
    pytest.importorskip("scipy")
    import nibabel as nib

    out, truth = tmp_path / "series", tmp_path / "truth.nii.gz"
    p = subprocess.run([sys.executable, str(SAMPLE / "make_sample.py"), "--out", str(out), "--truth", str(truth)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    rebuilt = sorted(out.glob("*.dcm"))
    assert [f.name for f in rebuilt] == [f.name for f in FILES]
    for a, b in zip(FILES, rebuilt):
        assert a.read_bytes() == b.read_bytes(), f"{a.name} differs when rebuilt"

    t = nib.load(truth)
    lr_affine_lps = np.array([[2, 0, 0, -95], [0, 2, 0, -93], [0, 0, 4, -36], [0, 0, 0, 1]], float)
    assert t.shape == (192, 224, 28)
    assert np.allclose(np.diag([-1, -1, 1, 1]) @ refine_affine(lr_affine_lps, 2), t.affine, atol=1e-6)
    hr = np.asarray(t.dataobj, np.float64).transpose(2, 1, 0)            # (slice, row, col)
    block = hr.reshape(28, 112, 2, 96, 2).mean(axis=(2, 4))
    lr = np.stack([pydicom.dcmread(f).pixel_array for f in FILES]).astype(np.float64)
    brain = block > 600
    assert np.abs(lr - block)[brain].mean() < 15            # only the σ = 12 noise between them
    assert np.corrcoef(lr[brain], block[brain])[0, 1] > 0.99


def _series_of(files, folder: Path):
    """The scanned series of exactly ``files`` (linked into ``folder``)."""
    from srgan.io.dicom_series import scan

    folder.mkdir()
    for f in files:
        (folder / f.name).symlink_to(f)
    (series,) = scan(folder).series
    return series


def test_derived_series_of_the_sample_is_valid(tmp_path):
    from srgan.io.dicom_derived import write_derived_series
    from srgan.provenance import Provenance

    prov = Provenance(model="nearest", weights_name="none", weights_sha256="0" * 64, scale=2)
    report = write_derived_series(_series_of(FILES[12:15], tmp_path / "src"),
                                  lambda x: np.kron(x, np.ones((1, 2, 2), np.float32)),
                                  tmp_path / "out", scale=2, provenance=prov)
    assert len(report.files) == 3 and not report.notes and not report.skipped
    ds = pydicom.dcmread(report.files[0])
    assert (ds.Rows, ds.Columns) == (224, 192)
    assert np.allclose(np.array(ds.ImagePositionPatient, float), [-95.5, -93.5, 12.0])
    if shutil.which("dciodvfy"):
        p = subprocess.run(["dciodvfy", str(report.files[0])], capture_output=True, text=True, timeout=60)
        assert not [line for line in (p.stdout + p.stderr).splitlines() if line.startswith("Error")]

    from srgan.io.dicom_series import scan

    (src,) = scan(SERIES).series
    (out,) = scan(tmp_path / "out").series
    want = refine_affine(src.affine, 2)
    want[:3, 3] += src.affine[:3, 2] * 12                  # the derived stack starts at source slice 12
    assert out.shape == (1, 3, 224, 192) and np.allclose(out.affine, want, atol=1e-6)

    # an AI-enhanced series is not enhanced again (by default), and the refusal says why
    from srgan.errors import InputError

    with pytest.raises(InputError, match="already AI-enhanced"):
        write_derived_series(out, lambda x: x, tmp_path / "again", scale=2, provenance=prov)
    assert not (tmp_path / "again").exists()


def test_enhance_returning_the_wrong_shape_leaves_nothing(tmp_path):
    from srgan.io.dicom_derived import write_derived_series
    from srgan.provenance import Provenance

    prov = Provenance(model="nearest", weights_name="none", weights_sha256="0" * 64, scale=2)
    with pytest.raises(ValueError, match="expected"):
        write_derived_series(_series_of(FILES[:2], tmp_path / "src"), lambda x: x, tmp_path / "out", scale=2,
                             provenance=prov)
    assert [p.name for p in tmp_path.iterdir()] == ["src"]

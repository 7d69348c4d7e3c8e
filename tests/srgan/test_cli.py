"""The ``srgan enhance`` contract, end to end through the real command line (subprocess, tiny weights)."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from srgan.io.geometry import refine_affine

REPO = Path(__file__).resolve().parents[2]


def srgan(*args, check_rc=None, cwd=None):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}
    p = subprocess.run([sys.executable, "-m", "srgan.cli", *map(str, args)], capture_output=True, text=True,
                       timeout=300, cwd=cwd, env=env)
    if check_rc is not None:
        assert p.returncode == check_rc, p.stderr
    return p


def test_help_is_instant_and_does_not_import_torch():
    code = "import sys; from srgan.cli import main; main(['--help']); print('torch' in sys.modules)"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and p.stdout.strip().endswith("False")
    assert "enhance" in p.stdout


def test_image_folder_keeps_names_sizes_and_depth(shared_data, tiny_weights, tmp_path):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    jpg = sorted((shared_data / "kaggle-brain-tumor-mri" / "glioma").glob("*.jpg"))[0]
    Image.open(jpg).convert("L").crop((0, 0, 61, 47)).save(src / "sub" / "a.jpg")
    Image.fromarray((np.arange(40 * 30).reshape(30, 40) * 50).astype(np.uint16)).save(src / "b16.png")
    srgan("enhance", src, "-o", tmp_path / "out", "--scale", 2, "--weights", tiny_weights, check_rc=0)
    a = Image.open(tmp_path / "out" / "sub" / "a.png")
    b = Image.open(tmp_path / "out" / "b16.png")
    assert a.size == (122, 94) and a.mode == "L"
    assert b.size == (80, 60) and b.mode.startswith("I")
    assert "AI-enhanced" in a.info.get("Description", "")


def test_bad_file_in_folder_is_named_and_skipped(shared_data, tiny_weights, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    jpg = sorted((shared_data / "kaggle-brain-tumor-mri" / "meningioma").glob("*.jpg"))[0]
    Image.open(jpg).convert("L").resize((64, 64)).save(src / "good.png")
    (src / "bad.jpg").write_bytes(np.random.default_rng(0).bytes(3000))
    p = srgan("enhance", src, "-o", tmp_path / "out", "--scale", 2, "--weights", tiny_weights)
    assert p.returncode == 1
    assert "bad.jpg" in p.stderr and "Traceback" not in p.stderr
    assert sorted(f.name for f in (tmp_path / "out").iterdir()) == ["good.png"]


@pytest.mark.parametrize("case", ["missing", "empty", "garbage.png", "notes"])
def test_bad_input_exits_non_zero_without_traceback_or_output(tiny_weights, tmp_path, case):
    path = tmp_path / case
    if case == "empty":
        path.mkdir()
    elif case == "garbage.png":
        path.write_bytes(b"\x89PNG not really" * 40)
    elif case == "notes":
        path.mkdir()
        (path / "README.txt").write_text("scan notes\n")
    out = tmp_path / "out"
    p = srgan("enhance", path, "-o", out, "--scale", 2, "--weights", tiny_weights)
    assert p.returncode != 0 and "Traceback" not in p.stderr and p.stderr.strip()
    assert str(path.name) in p.stderr
    assert not out.exists() or not any(out.rglob("*"))


def test_nifti_affine_refined_with_field_of_view_kept(shared_data, tiny_weights, tmp_path):
    img = nib.load(shared_data / "brainles-examples" / "BraTS-GLI-00001-000" / "BraTS-GLI-00001-000-t1n.nii.gz")
    data = np.asanyarray(img.dataobj)[::2, ::2, 70:150:10].astype(np.float32)   # 2 mm in-plane, 10 mm slices
    aff = img.affine @ np.diag([2, 2, 10, 1])
    aff[:3, 3] = img.affine[:3, :3] @ [0, 0, 70] + img.affine[:3, 3]
    nib.save(nib.Nifti1Image(data, aff), tmp_path / "lr.nii.gz")
    srgan("enhance", tmp_path / "lr.nii.gz", "-o", tmp_path / "sr.nii.gz", "--scale", 2, "--weights", tiny_weights,
          check_rc=0)
    out = nib.load(tmp_path / "sr.nii.gz")
    assert out.shape == (data.shape[0] * 2, data.shape[1] * 2, data.shape[2])
    assert np.allclose(out.affine, refine_affine(aff, 2, axes=(0, 1)), atol=1e-5)
    assert "AI-enhanced" in out.header["descrip"].item().decode()
    assert (tmp_path / "sr.json").is_file()


def test_dicom_folder_becomes_a_derived_series(shared_data, tiny_weights, tmp_path):
    import pydicom

    src = shared_data / "dicom" / "trio_sag_jpegls_noisepixels"
    srgan("enhance", src, "-o", tmp_path / "out", "--scale", 2, "--weights", tiny_weights, check_rc=0)
    files = sorted((tmp_path / "out").iterdir())
    assert len(files) == 4
    ds = pydicom.dcmread(files[0])
    assert (ds.Rows, ds.Columns) == (512, 512)
    assert list(ds.ImageType[:2]) == ["DERIVED", "SECONDARY"]
    assert "not for primary diagnosis" in ds.DerivationDescription


@pytest.mark.parametrize("n_series", [1, 2])
def test_dicom_folder_with_a_relative_output_run_beside_it(shared_data, tiny_weights, tmp_path, n_series):
    """``srgan enhance src -o out`` run from the folder holding ``src``: relative paths throughout."""
    dicom = shared_data / "dicom"
    shutil.copytree(dicom / "trio_sag_jpegls_noisepixels", tmp_path / "src")
    if n_series == 2:
        for f in sorted((dicom / "siemens_prisma_t1_sag_hfs").glob("*.dcm"))[:2]:
            shutil.copy(f, tmp_path / "src" / f.name)
    p = srgan("enhance", "src", "-o", "out", "--scale", 2, "--weights", tiny_weights, cwd=tmp_path)
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr
    written = sorted(f.relative_to(tmp_path / "out") for f in (tmp_path / "out").rglob("*.dcm"))
    if n_series == 1:
        assert [str(f) for f in written] == [f"IM{k:05d}.dcm" for k in range(1, 5)]
    else:
        assert len(written) == 6 and len({f.parent for f in written}) == 2
    assert sorted(f.name for f in tmp_path.iterdir()) == ["out", "src"]     # no temporary folder left


def test_output_inside_dicom_source_is_refused(shared_data, tiny_weights, tmp_path):
    import shutil

    src = tmp_path / "src"
    shutil.copytree(shared_data / "dicom" / "trio_sag_jpegls_noisepixels", src)
    before = sorted(p.name for p in src.iterdir())
    p = srgan("enhance", src, "-o", src / "out", "--scale", 2, "--weights", tiny_weights)
    assert p.returncode == 1 and "source folder" in p.stderr
    assert sorted(p.name for p in src.iterdir()) == before


def test_missing_bundled_weights_are_explained(tmp_path, monkeypatch):
    env_dir = tmp_path / "res"
    (env_dir / "weights").mkdir(parents=True)
    img = tmp_path / "a.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(img)
    p = subprocess.run([sys.executable, "-m", "srgan.cli", "enhance", str(img), "-o", str(tmp_path / "o.png"),
                        "--scale", "4"], capture_output=True, text=True, timeout=120,
                       env={**__import__("os").environ, "BRAINSR_RESOURCES": str(env_dir)})
    assert p.returncode == 1 and "no bundled x4 weights" in p.stderr


def _phase_copy(src_files, dest: Path):
    """Real images relabelled as a phase series of their own: a series left out by design."""
    import pydicom
    from pydicom.uid import generate_uid

    uid = generate_uid()
    for f in src_files:
        ds = pydicom.dcmread(f)
        ds.ImageType = ["ORIGINAL", "PRIMARY", "P", "ND"]
        ds.SeriesInstanceUID, ds.SOPInstanceUID = uid, generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.SeriesNumber = 77
        ds.save_as(dest / f"phase_{f.name}")


def test_report_exit_codes_and_stale_partials(shared_data, tiny_weights, tmp_path):
    """A series left out by design is a note (exit 0); a broken file is a failure (exit 1); --report says both as
    JSON; stale partial folders of an interrupted run into the same output are removed, and the run says so."""
    import json

    dicom = shared_data / "dicom"
    src = tmp_path / "src"
    shutil.copytree(dicom / "trio_sag_jpegls_noisepixels", src)
    _phase_copy(sorted((dicom / "siemens_prisma_t1_sag_hfs").glob("*.dcm"))[:2], src)
    stale = [tmp_path / ".out.0123456789ab.partial", tmp_path / ".out.4194999-0123456789ab.partial"]
    for d in stale:
        (d / "S0001").mkdir(parents=True)
    keep = tmp_path / ".other.0123456789ab.partial"   # not this output's: untouched
    keep.mkdir()
    p = srgan("enhance", src, "-o", tmp_path / "out", "--scale", 2, "--weights", tiny_weights,
              "--report", tmp_path / "r.json")
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr
    assert "stale partial" in p.stderr and not any(d.exists() for d in stale) and keep.is_dir()
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["exit_code"] == 0 and report["failed"] == [] and len(report["written"]) == 4
    assert any("left out" in n and "phase" in n for n in report["notes"])

    (src / "broken.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00UI\x04\x00junk")
    p = srgan("enhance", src, "-o", tmp_path / "out2", "--scale", 2, "--weights", tiny_weights,
              "--report", tmp_path / "r2.json")
    assert p.returncode == 1 and "broken.dcm" in p.stderr and "Traceback" not in p.stderr
    report = json.loads((tmp_path / "r2.json").read_text())
    assert report["exit_code"] == 1 and [Path(f["path"]).name for f in report["failed"]] == ["broken.dcm"]
    assert len(report["written"]) == 4


def test_report_of_a_run_that_enhances_nothing(tiny_weights, tmp_path):
    import json

    p = srgan("enhance", tmp_path / "missing", "-o", tmp_path / "out", "--scale", 2, "--weights", tiny_weights,
              "--report", tmp_path / "r.json")
    assert p.returncode == 1
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["exit_code"] == 1 and "does not exist" in report["error"] and report["written"] == []


def test_nothing_to_enhance_names_the_series_reason_not_a_file_beside_it(shared_data, tiny_weights, tmp_path):
    """Only a series left out by design, beside a file that is no image: the error gives the series' reason."""
    src = tmp_path / "src"
    src.mkdir()
    _phase_copy(sorted((shared_data / "dicom" / "siemens_prisma_t1_sag_hfs").glob("*.dcm"))[:2], src)
    (src / "raw.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00UI\x04\x00junk")
    p = srgan("enhance", src, "-o", tmp_path / "out", "--scale", 2, "--weights", tiny_weights)
    assert p.returncode == 1 and "Traceback" not in p.stderr
    error = [line for line in p.stderr.splitlines() if line.startswith("srgan enhance: error")]
    assert len(error) == 1 and "phase" in error[0] and "raw.dcm" not in error[0], p.stderr
    assert not (tmp_path / "out").exists()


def test_an_input_the_scanner_already_interpolated_is_said_so(shared_data, tiny_weights, tmp_path):
    """The Aera T2* GRE of extra-brain-mr was zero-filled ×2 by the scanner (its outer half of k-space is empty):
    enhancing it is allowed but the run says it sharpens an interpolation; an acquired series gets no such note."""
    aera = shared_data / "extra-brain-mr" / "siemens_aera_1p5t_clinical"
    for name, zip_made in (("T2_GRE_TRA", True), ("T2_FLAIR_TRA", False)):
        img = nib.load(aera / f"{name}.nii.gz")
        k = img.shape[2] // 2
        nib.save(nib.Nifti1Image(np.asanyarray(img.dataobj)[:, :, k - 1 : k + 2], img.affine), tmp_path / f"{name}.nii.gz")
        p = srgan("enhance", tmp_path / f"{name}.nii.gz", "-o", tmp_path / f"{name}-sr.nii.gz", "--scale", 2,
                  "--weights", tiny_weights, check_rc=0)
        said = [line for line in p.stderr.splitlines() if "interpolated by the scanner" in line]
        assert len(said) == (1 if zip_made else 0), p.stderr
        if zip_made:
            assert said[0].startswith(f"note: {name}.nii.gz: the input looks interpolated by the scanner (zero-filled")
            assert "cannot restore detail never acquired" in said[0]
        assert (tmp_path / f"{name}-sr.nii.gz").is_file()

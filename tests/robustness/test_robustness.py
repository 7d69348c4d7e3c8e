"""Robustness suite: real series corrupted deterministically, the bundled test files of pydicom and nibabel, odd
paths. Each case runs the real ``enhance_path`` (tiny weights) and asserts: correct output or one clear message
(an InputError or a named failure; never another exception), nothing partial under the final name, no hidden
temporary folder left, inputs unchanged (checksums).

A fixed sample runs in the normal suite; every case runs with ``-m robustness_full``.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest

from srgan.errors import InputError
from srgan.inference.files import enhance_path
from tests.robustness import corrupt

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
DICOM = SHARED / "dicom"
pytestmark = pytest.mark.skipif(not DICOM.is_dir(), reason=f"real DICOM test data not found at {DICOM}")

#: (series folder, files taken): small, uncompressed, classic files of three vendors' layouts
SOURCES = {
    "prisma": ("siemens_prisma_t1_sag_hfs", 2),
    "ge": ("ge_mr750_epi_ax_mixed_2series", 2),
    "mosaic": ("siemens_trio_epi_mosaic_cor", 2),
}


def _rng(name: str) -> np.random.Generator:
    return np.random.default_rng(int(hashlib.sha256(name.encode()).hexdigest()[:8], 16))


def _corruptions() -> dict:
    """name → function(bytes of the first file, rng) → corrupted bytes (or a list for every file)."""
    c: dict = {}
    for k in range(8):
        c[f"meta_flip_{k}"] = corrupt.flip_in_meta
        c[f"header_flip_{k}"] = corrupt.flip_in_header
        c[f"truncate_{k}"] = corrupt.truncate
    c["zero_pixels"] = lambda d, r: corrupt.zero_pixels(d)
    c["short_pixels"] = lambda d, r: corrupt.short_pixels(d)
    for label, uid in (("implicit", b"1.2.840.10008.1.2"), ("big", b"1.2.840.10008.1.2.2"),
                       ("garbage", b"1.2.840.10008.9.9.9"), ("rle", b"1.2.840.10008.1.2.5"),
                       ("jpeg", b"1.2.840.10008.1.2.4.50")):
        c[f"lying_syntax_{label}"] = lambda d, r, uid=uid: corrupt.lying_syntax(d, uid)
    c["big_endian"] = lambda d, r: corrupt.big_endian(d)
    for kw in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"):
        c[f"missing_{kw}"] = lambda d, r, kw=kw: corrupt.rewrite(d, **{kw: None})
    c["rows_half"] = lambda d, r: corrupt.rewrite(
        d, Rows=int(pydicom.dcmread(_io(d), stop_before_pixels=True).Rows) // 2)
    c["columns_plus_one"] = lambda d, r: corrupt.rewrite(
        d, Columns=int(pydicom.dcmread(_io(d), stop_before_pixels=True).Columns) + 1)
    c["frames_three"] = lambda d, r: corrupt.rewrite(d, NumberOfFrames=3)
    c["size_bomb"] = lambda d, r: corrupt.rewrite(d, Rows=16000, Columns=16000, NumberOfFrames=1000000)
    c["non_ascii"] = lambda d, r: corrupt.rewrite(d, PatientName="Müller^Zoë", InstitutionName="Klinik Göttingen",
                                                  SpecificCharacterSet="ISO_IR 100")
    c["very_long_values"] = lambda d, r: corrupt.rewrite(d, SeriesDescription="x" * 5000, ImageComments="y" * 20000)
    c["no_charset_latin1"] = lambda d, r: corrupt.rewrite(d, PatientName="M\xfcller", SpecificCharacterSet=None)
    return c


def _io(data: bytes):
    import io

    return io.BytesIO(data)


CORRUPTIONS = _corruptions()
SAMPLE = ["meta_flip_0", "meta_flip_1", "header_flip_0", "truncate_0", "short_pixels", "lying_syntax_implicit",
          "lying_syntax_big", "lying_syntax_rle", "big_endian", "missing_ImagePositionPatient", "rows_half",
          "size_bomb", "non_ascii", "very_long_values"]


def _params(sample: list[str]):
    out = []
    for name in CORRUPTIONS:
        for src in SOURCES:
            full = name not in sample or (src != "prisma" and name not in ("big_endian", "meta_flip_0"))
            out.append(pytest.param(src, name, id=f"{src}-{name}",
                                    marks=[pytest.mark.robustness_full] if full else []))
    return out


def _checksums(folder: Path) -> dict:
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def enhancer(tiny_weights):
    from srgan.inference.engine import Enhancer

    return Enhancer(scale=2, weights=tiny_weights, device="cpu", consistency="off")


def _run(src: Path, out: Path, enhancer) -> tuple[object | None, InputError | None]:
    """enhance_path: the report, or the one InputError; any other exception fails the test (a traceback)."""
    before = _checksums(src) if src.is_dir() else {src: hashlib.sha256(src.read_bytes()).hexdigest()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            report, error = enhance_path(src, out, enhancer), None
        except InputError as e:
            report, error = None, e
    after = _checksums(src) if src.is_dir() else {src: hashlib.sha256(src.read_bytes()).hexdigest()}
    assert after == before, "an input was changed"
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".") and p.name.endswith((".partial", ".tmp"))]
    if error is not None:
        assert str(error).strip() and "\n" not in str(error) and "Traceback" not in str(error)
        assert not out.exists() or not any(out.iterdir()), "nothing may be written under the final name on error"
    else:
        for f in report.written:  # every file under the final name is complete
            assert f.is_file() and f.stat().st_size > 0
            if f.suffix == ".dcm":
                pydicom.dcmread(f).pixel_array  # noqa: B018 - decodes: not half-written
        for _path, why in report.failed:
            assert why.strip() and "\n" not in why
    return report, error


@pytest.mark.parametrize("src_key, name", _params(SAMPLE))
def test_corrupted_real_series(tmp_path, enhancer, src_key, name):
    folder, n = SOURCES[src_key]
    files = sorted(p for p in (DICOM / folder).iterdir() if p.is_file() and not p.name.endswith((".md", "SUMS")))[:n]
    src = tmp_path / "in"
    src.mkdir()
    data = files[0].read_bytes()
    try:
        bad = CORRUPTIONS[name](data, _rng(f"{src_key}-{name}"))
    except (AssertionError, ValueError, TypeError) as e:  # the corruption does not apply to this file's layout
        pytest.skip(f"{name} does not apply to {folder}: {e}")
    (src / "bad.dcm").write_bytes(bad)
    for f in files[1:]:
        shutil.copy(f, src / f.name)
    report, error = _run(src, tmp_path / "out", enhancer)
    # the intact file beside the damaged one is always enhanced
    assert report is not None, f"the intact files were not enhanced: {error}"
    assert len(report.written) >= len(files) - 1
    named = {Path(p).name for p, _ in report.failed}
    if len(report.written) < len(files):  # the damaged file was not enhanced: it is named with its reason
        assert "bad.dcm" in named or any("bad.dcm" in note for note in report.notes), (report.failed, report.notes)


def test_duplicate_sop_instance_uids_are_one_image(tmp_path, enhancer):
    files = sorted((DICOM / "siemens_prisma_t1_sag_hfs").glob("*.dcm"))[:2]
    src = tmp_path / "in"
    src.mkdir()
    for k, f in enumerate(files):
        shutil.copy(f, src / f"{k}.dcm")
    shutil.copy(files[0], src / "copy.dcm")
    report, error = _run(src, tmp_path / "out", enhancer)
    assert error is None and len(report.written) == 2


def _pydicom_files(sample: bool) -> list[str]:
    """pydicom's test files that ship in its wheel (never the ones it would download)."""
    folder = Path(pydicom.__file__).parent / "data" / "test_files"
    files = sorted(str(p) for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in (".dcm", ""))
    if sample:
        names = {"MR_small.dcm", "MR_small_bigendian.dcm", "MR_small_implicit.dcm", "MR_small_deflate.dcm",
                 "MR_truncated.dcm", "CT_small.dcm", "rtplan.dcm", "SC_rgb_small_odd.dcm",
                 "no_meta.dcm", "MR_small_RLE.dcm", "image_dfl.dcm", "ExplVR_BigEndNoMeta.dcm", "examples_palette.dcm",
                 "examples_overlay.dcm", "meta_missing_tsyntax.dcm", "MR_small_padded.dcm"}
        files = [f for f in files if Path(f).name in names]
    return files


@pytest.mark.parametrize("path", [pytest.param(p, id=Path(p).name) for p in _pydicom_files(True)]
                         + [pytest.param(p, id=f"full-{Path(p).name}", marks=pytest.mark.robustness_full)
                            for p in _pydicom_files(False)])
def test_pydicom_bundled_files(tmp_path, enhancer, path):
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(path, src / Path(path).name)
    _run(src, tmp_path / "out", enhancer)


def _nibabel_files(sample: bool) -> list[str]:
    from nibabel.testing import data_path

    names = sorted(n for n in os.listdir(data_path) if n.endswith((".nii", ".nii.gz", ".mgz", ".hdr")))
    if sample:
        names = [n for n in names if n in ("anatomical.nii", "example_nifti2.nii.gz", "test.mgz", "analyze.hdr",
                                           "row_major.dconn.nii", "standard.nii.gz")]
    return [os.path.join(data_path, n) for n in names]


@pytest.mark.parametrize("path", [pytest.param(p, id=Path(p).name) for p in _nibabel_files(True)]
                         + [pytest.param(p, id=f"full-{Path(p).name}", marks=pytest.mark.robustness_full)
                            for p in _nibabel_files(False)])
def test_nibabel_bundled_files(tmp_path, enhancer, path):
    src = tmp_path / Path(path).name
    shutil.copy(path, src)
    _run(src, tmp_path / "out", enhancer)


@pytest.mark.parametrize("where", ["with space/and ü", "a/../b c"])
def test_odd_paths(tmp_path, enhancer, where):
    src = tmp_path / "src" / where
    src.mkdir(parents=True)
    for f in sorted((DICOM / "trio_sag_jpegls_noisepixels").iterdir())[:2]:
        shutil.copy(f, src / f.name)
    out = tmp_path / "out dir ü" / "../out ø"
    (tmp_path / "out dir ü").mkdir()
    report, error = _run(src, out, enhancer)
    assert error is None and len(report.written) == 2 and (tmp_path / "out ø").is_dir()


def test_fifo_and_link_loop_do_not_hang_the_scan(tmp_path, enhancer):
    src = tmp_path / "in"
    src.mkdir()
    for f in sorted((DICOM / "trio_sag_jpegls_noisepixels").iterdir())[:2]:
        shutil.copy(f, src / f.name)
    os.mkfifo(src / "pipe.dcm")
    (src / "loop").symlink_to(src)          # a folder link into itself
    (src / "a.dcm.lnk").symlink_to(src / "b.lnk")
    (src / "b.lnk").symlink_to(src / "a.dcm.lnk")   # a file link loop
    report, error = _run(src, tmp_path / "out", enhancer)
    assert error is None and len(report.written) == 2


@pytest.mark.parametrize("kind", ["dicom", "nifti"])
@pytest.mark.parametrize("where", ["under_a_file", "unwritable"])
def test_output_that_cannot_be_written_is_one_clear_message(tmp_path, enhancer, kind, where):
    """An output below a regular file, or where no folder can be made (/proc refuses even root): one InputError
    naming the output, nothing left behind."""
    if kind == "dicom":
        src = tmp_path / "in"
        src.mkdir()
        for f in sorted((DICOM / "trio_sag_jpegls_noisepixels").iterdir())[:2]:
            shutil.copy(f, src / f.name)
    else:
        from nibabel.testing import data_path

        src = tmp_path / "anatomical.nii"
        shutil.copy(Path(data_path) / "anatomical.nii", src)
    (tmp_path / "a_file").write_text("x")
    out = tmp_path / "a_file" / "out" if where == "under_a_file" else Path("/proc") / f"srgan-out-{os.getpid()}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(InputError) as err:
            enhance_path(src, out, enhancer)
    assert str(out) in str(err.value) and "cannot be written" in str(err.value)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_output_folder(tmp_path, enhancer):
    src = tmp_path / "in"
    src.mkdir()
    for f in sorted((DICOM / "trio_sag_jpegls_noisepixels").iterdir())[:2]:
        shutil.copy(f, src / f.name)
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        report, error = _run(src, ro / "out", enhancer)
        assert error is not None and "ro" in str(error)
    finally:
        ro.chmod(0o755)

"""Corrupted or lying headers on real files: what the reader makes of them (srgan.io.dicom_file via scan).

Each case puts one corrupted copy beside an intact file of the same series: the intact one must always be read,
the corrupted one either read correctly (with a warning naming it when its header lied) or named with one clear
reason; never misread silently, never a traceback."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest

from srgan.io.dicom_series import scan
from tests.robustness import corrupt

DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "dicom"
pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason=f"real DICOM test data not found at {DATA}")


def _pair() -> tuple[Path, Path]:
    a, b = sorted((DATA / "siemens_prisma_t1_sag_hfs").glob("*.dcm"))[:2]
    return a, b


def _scan_with(tmp_path: Path, damaged: bytes):
    a, b = _pair()
    (tmp_path / "bad.dcm").write_bytes(damaged)
    (tmp_path / "good.dcm").write_bytes(b.read_bytes())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom's own warnings about the damaged file
        result = scan(tmp_path)
    files = {f.path.name for s in result.series for f in s.frames}
    assert "good.dcm" in files, "the intact file beside the damaged one must be read"
    return result, files


def _pixels(result, name: str) -> np.ndarray:
    for s in result.series:
        for v in range(s.shape[0]):
            for k in range(s.shape[1]):
                if s.frame(v, k).path.name == name:
                    return s.pixels(v, k)
    raise AssertionError(f"{name} not in any series")


@pytest.mark.parametrize("uid", [b"1.2.840.10008.1.2", b"1.2.840.10008.1.2.2", b"1.2.840.10008.1.2.x"])
def test_a_lying_transfer_syntax_is_read_as_what_the_data_are_with_a_warning(tmp_path, uid):
    a, _ = _pair()
    result, files = _scan_with(tmp_path, corrupt.lying_syntax(a.read_bytes(), uid))
    assert "bad.dcm" in files and not result.problems
    assert [w.path.name for w in result.warnings] == ["bad.dcm"]
    assert "Explicit VR Little Endian" in result.warnings[0].message and "claims" in result.warnings[0].message
    assert np.array_equal(_pixels(result, "bad.dcm"), pydicom.dcmread(a).pixel_array.astype(np.float32))


def test_an_encapsulated_claim_over_implicit_vr_data_is_refused_clearly(tmp_path):
    """An RLE claim on implicit-VR data cannot be honoured (encapsulated data are always explicit little endian)."""
    import io

    a, _ = _pair()
    ds = pydicom.dcmread(a)
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2"
    buf = io.BytesIO()
    ds.save_as(buf, implicit_vr=True, little_endian=True)
    result, files = _scan_with(tmp_path, corrupt.set_syntax(buf.getvalue(), "1.2.840.10008.1.2.5"))
    assert "bad.dcm" not in files
    (problem,) = result.problems
    assert problem.path.name == "bad.dcm" and "cannot be decoded" in problem.message and "RLE" in problem.message


def test_a_compressed_claim_over_uncompressed_pixels_is_read_as_what_they_are(tmp_path):
    a, _ = _pair()
    result, files = _scan_with(tmp_path, corrupt.lying_syntax(a.read_bytes(), b"1.2.840.10008.1.2.5"))
    assert "bad.dcm" in files and not result.problems
    assert [w.path.name for w in result.warnings] == ["bad.dcm"] and "RLE" in result.warnings[0].message
    assert np.array_equal(_pixels(result, "bad.dcm"), pydicom.dcmread(a).pixel_array.astype(np.float32))


@pytest.mark.parametrize("attr", ["Rows", "Columns"])
def test_image_size_against_pixel_data_length_is_checked_before_decoding(tmp_path, attr):
    a, _ = _pair()
    ds = pydicom.dcmread(a, stop_before_pixels=True)
    result, files = _scan_with(tmp_path, corrupt.rewrite(a.read_bytes(), **{attr: int(ds[attr].value) // 2}))
    assert "bad.dcm" not in files
    (problem,) = result.problems
    assert "bytes of pixel data but Rows × Columns × frames × samples × bits" in problem.message


def test_a_size_bomb_is_refused_before_allocation(tmp_path):
    a, _ = _pair()
    result, files = _scan_with(tmp_path, corrupt.rewrite(a.read_bytes(), Rows=16000, Columns=16000,
                                                         NumberOfFrames=100000))
    assert "bad.dcm" not in files
    assert "refused before decoding" in result.problems[0].message


@pytest.mark.parametrize("seed", range(12))
def test_a_damaged_meta_group_never_stops_the_file_beside_it(tmp_path, seed):
    a, _ = _pair()
    result, files = _scan_with(tmp_path, corrupt.flip_in_meta(a.read_bytes(), np.random.default_rng(seed)))
    if "bad.dcm" in files:   # read past the damage: its pixels are the intact ones
        assert np.array_equal(_pixels(result, "bad.dcm"), pydicom.dcmread(a).pixel_array.astype(np.float32))
    else:
        assert [p.path.name for p in result.problems] == ["bad.dcm"]


def test_flipped_header_bytes_in_a_full_length_file_are_not_called_truncated(tmp_path):
    a, _ = _pair()
    data = a.read_bytes()
    i = data.find(b"\x08\x00\x60\x00CS")  # the Modality element's length byte
    result, files = _scan_with(tmp_path, corrupt.flip(data, i + 6, 0xFF))
    (problem,) = result.problems
    assert "damaged header" in problem.message and "truncated" not in problem.message.replace("not truncated", "")


@pytest.mark.parametrize("cut", [1000, 3000, -1000])
def test_a_truncated_file_is_called_truncated(tmp_path, cut):
    a, _ = _pair()
    data = a.read_bytes()
    result, files = _scan_with(tmp_path, data[:cut])
    assert "bad.dcm" not in files
    (problem,) = result.problems
    assert "truncated" in problem.message and "not truncated" not in problem.message


def test_gzipped_dicom_files_are_read_and_enhanced(tmp_path):
    """``.dcm.gz`` (archives, some patient exports): read through the same reader, pixels as the plain file's."""
    import gzip

    from srgan.io.dicom_derived import write_derived_series
    from srgan.provenance import Provenance

    a, b = _pair()
    src = tmp_path / "in"
    src.mkdir()
    for f in (a, b):
        (src / (f.name + ".gz")).write_bytes(gzip.compress(f.read_bytes()))
    result = scan(src)
    assert not result.problems and [s.shape[1] for s in result.series] == [2]
    (series,) = result.series
    assert np.array_equal(_pixels(result, a.name + ".gz"), pydicom.dcmread(a).pixel_array.astype(np.float32))
    report = write_derived_series(series, lambda x: np.kron(x, np.ones((1, 2, 2), np.float32)), tmp_path / "out",
                                  scale=2, provenance=Provenance(model="n", weights_name="t",
                                                                 weights_sha256="ab" * 32, scale=2))
    assert len(report.files) == 2 and not report.skipped


def test_a_gzip_bomb_is_refused(tmp_path, monkeypatch):
    import gzip

    from srgan.io import dicom_file

    monkeypatch.setattr(dicom_file, "MAX_GZIP_BYTES", 1 << 20)  # the same rule, a smaller bomb
    a, _ = _pair()
    (tmp_path / "bomb.dcm.gz").write_bytes(gzip.compress(a.read_bytes() + bytes(4 << 20)))
    (tmp_path / "good.dcm").write_bytes(a.read_bytes())
    result = scan(tmp_path)
    assert [p.path.name for p in result.problems] == ["bomb.dcm.gz"]
    assert "gzip bomb" in result.problems[0].message

"""Every volume nibabel reads goes through the one volume path (srgan.inference.files.enhance_volume_file): formats
kept where they can be written atomically, affine refined, header codes passed through, NaN/Inf masked and
restored, complex data as magnitude. Inputs: nibabel's own bundled test files."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from nibabel.testing import data_path

from srgan.inference.files import enhance_volume_file
from srgan.inference.plan import Plan
from srgan.io.geometry import refine_affine
from srgan.io.nifti import through_plane_axis
from srgan.provenance import Provenance

SCALE = 2


class Nearest:
    """The enhancer interface the volume path uses; nearest-neighbour ×2, NaN-poisoning like a real network."""

    scale = SCALE
    provenance = Provenance(model="nearest", weights_name="t", weights_sha256="ab" * 32, scale=SCALE)

    def plan(self, stack):
        return Plan(scale=SCALE, requested="off", p_kspace=None, model_p=None)

    def enhance_stack(self, stack, plan, keys=None):
        out = np.kron(stack, np.ones((1, SCALE, SCALE), np.float32))
        if not np.all(np.isfinite(stack)):  # a convolution spreads one NaN over the whole slice
            out[:] = np.nan
        return out


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _pair(folder: Path, name: str) -> Path:
    """The wheel ships only the headers of its pairs: the pair rebuilt with that header and data of its shape."""
    hdr = nib.load(os.path.join(data_path, name)).header
    klass = {"nifti1.hdr": nib.Nifti1Pair, "nifti2.hdr": nib.Nifti2Pair, "analyze.hdr": nib.AnalyzeImage}[name]
    shape = hdr.get_data_shape()[:3]
    data = (np.arange(int(np.prod(shape))).reshape(shape) % 251).astype(np.int16)
    img = klass(data, None if klass is nib.AnalyzeImage else nib.load(os.path.join(data_path, name)).affine,
                header=hdr)
    img.set_data_dtype(np.int16)
    folder.mkdir()
    nib.save(img, folder / name)
    return folder / name


@pytest.mark.parametrize("name, out_suffix, note", [
    ("anatomical.nii", ".nii.gz", None),
    ("example_nifti2.nii.gz", ".nii.gz", None),
    ("nifti1.hdr", ".nii.gz", "NIfTI pair"),
    ("nifti2.hdr", ".nii.gz", "NIfTI pair"),
    ("analyze.hdr", ".nii.gz", "Analyze 7.5"),
    ("test.mgz", ".mgz", None),
])
def test_every_format_nibabel_reads_goes_through_the_volume_path(tmp_path, name, out_suffix, note):
    src = Path(data_path) / name if not name.endswith(".hdr") else _pair(tmp_path / "in", name)
    before = _sha(src)
    written, _, notes = enhance_volume_file(src, tmp_path / "out", Nearest(), None)
    assert written.name.endswith(out_suffix) and written.parent == tmp_path / "out"
    assert (note is None) == (not any("written as NIfTI" in n for n in notes))
    if note:
        assert any(note in n for n in notes)
    a, b = nib.load(str(src)), nib.load(str(written))
    k = through_plane_axis(a.affine)
    inplane = tuple(ax for ax in (0, 1, 2) if ax != k)
    assert np.allclose(b.affine, refine_affine(a.affine, SCALE, inplane), atol=1e-4)
    shape = list(a.shape[:3])
    for ax in inplane:
        shape[ax] *= SCALE
    assert list(b.shape[:3]) == shape
    if name.startswith("example_nifti2"):
        assert isinstance(b, nib.Nifti2Image)
    assert written.with_name(written.name.split(".")[0] + ".json").is_file()   # provenance beside it
    assert _sha(src) == before


@pytest.mark.parametrize("codes", [(0, 0), (2, 0), (0, 1), (4, 2)])
def test_qform_and_sform_codes_pass_through_unchanged(tmp_path, codes):
    img = nib.load(os.path.join(data_path, "anatomical.nii"))
    img = nib.Nifti1Image(np.asanyarray(img.dataobj), img.affine, img.header)
    img.set_sform(img.affine, code=codes[0])
    img.set_qform(img.affine, code=codes[1])
    nib.save(img, tmp_path / "in.nii")
    written, _, _ = enhance_volume_file(tmp_path / "in.nii", tmp_path / "out", Nearest(), None)
    h = nib.load(str(written)).header
    assert (int(h["sform_code"]), int(h["qform_code"])) == codes


def test_nan_and_inf_are_masked_through_the_model_and_restored_where_they_were(tmp_path):
    data = np.asanyarray(nib.load(os.path.join(data_path, "anatomical.nii")).dataobj).astype(np.float32)
    data[:5] = np.nan          # NaN background
    data[-1, -1, :] = np.inf
    nib.save(nib.Nifti1Image(data, np.diag([3.0, 3.0, 3.0, 1.0])), tmp_path / "in.nii")
    written, _, notes = enhance_volume_file(tmp_path / "in.nii", tmp_path / "out", Nearest(), None)
    out = np.asanyarray(nib.load(str(written)).dataobj)
    want = np.kron(data, np.ones((SCALE, SCALE, 1), np.float32))
    assert np.array_equal(np.isnan(out), np.isnan(want)) and np.array_equal(np.isposinf(out), np.isposinf(want))
    finite = np.isfinite(want)
    assert np.allclose(out[finite], want[finite])
    assert any("NaN/Inf" in n for n in notes)


def test_complex_data_are_enhanced_as_their_magnitude_with_a_note(tmp_path):
    rng = np.random.default_rng(0)
    data = (rng.normal(size=(8, 6, 3)) + 1j * rng.normal(size=(8, 6, 3))).astype(np.complex64)
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "c.nii")
    written, _, notes = enhance_volume_file(tmp_path / "c.nii", tmp_path / "out", Nearest(), None)
    out = np.asanyarray(nib.load(str(written)).dataobj)
    k = through_plane_axis(np.eye(4))
    assert k == 2
    assert np.allclose(out, np.kron(np.abs(data), np.ones((SCALE, SCALE, 1))), atol=1e-5)
    assert any("magnitude" in n for n in notes)


def test_a_volume_header_promising_gigavoxels_is_refused_before_reading(tmp_path):
    from srgan.errors import InputError

    img = nib.Nifti1Image(np.zeros((4, 4, 4), np.int16), np.eye(4))
    img.header.set_data_shape((30000, 30000, 3000))
    raw = img.header.binaryblock + b"\0" * 4 + bytes(128)   # header, extension flag, a few data bytes
    (tmp_path / "bomb.nii").write_bytes(raw)
    with pytest.raises(InputError) as err:
        enhance_volume_file(tmp_path / "bomb.nii", tmp_path / "out", Nearest(), None)
    assert "limit" in str(err.value) and "bomb.nii" in str(err.value)
    assert not (tmp_path / "out").exists()

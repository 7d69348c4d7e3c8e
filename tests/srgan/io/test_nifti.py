"""NIfTI volumes: real BraTS/TCGA files, round trips, geometry of in-plane enhancement, error paths."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from srgan.errors import InputError
from srgan.io.geometry import refine_affine
from srgan.io.nifti import Volume, enhance_volume, load_nifti, save_nifti, through_plane_axis
from srgan.provenance import Provenance

DATA = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "brainles-examples"
T1 = DATA / "TCGA-DU-7294" / "TCGA-DU-7294_t1_bet.nii.gz"
needs_data = pytest.mark.skipif(not T1.exists(), reason=f"real NIfTI sample data not found at {DATA}")

PROV = Provenance(model="rcan_lite", weights_name="test-weights", weights_sha256="0123456789abcdef" * 4, scale=2)


def nearest(scale):
    def up(stack):
        assert stack.dtype == np.float32 and stack.ndim == 3
        return stack.repeat(scale, axis=1).repeat(scale, axis=2)
    return up


def centre_world(affine, shape):
    return affine @ np.array([(n - 1) / 2 for n in shape[:3]] + [1.0])


@needs_data
def test_load_real_volume_keeps_values_and_geometry():
    vol = load_nifti(T1)
    raw = nib.load(str(T1))
    assert vol.data.shape == (240, 240, 155) and vol.data.dtype == np.float32
    assert vol.source_dtype == "int16"
    np.testing.assert_array_equal(vol.data, np.asanyarray(raw.dataobj).astype(np.float32))
    np.testing.assert_allclose(vol.affine, raw.affine)
    assert vol.zooms == pytest.approx((1.0, 1.0, 1.0))
    assert through_plane_axis(vol.affine) == 2


@needs_data
def test_enhance_and_save_round_trip(tmp_path):
    src = load_nifti(T1)
    small = Volume(src.data[:, :, 70:73].copy(), src.affine, src.header, src.path, src.source_dtype)
    out = enhance_volume(small, nearest(2), 2)
    assert out.data.shape == (480, 480, 3)
    np.testing.assert_array_equal(out.data[::2, ::2], small.data)
    np.testing.assert_allclose(out.affine, refine_affine(small.affine, 2, (0, 1)))
    np.testing.assert_allclose(centre_world(out.affine, out.data.shape), centre_world(small.affine, small.data.shape))

    path = save_nifti(out, tmp_path / "sr.nii.gz", PROV)
    img = nib.load(str(path))
    assert img.shape == (480, 480, 3) and img.get_data_dtype() == np.float32
    np.testing.assert_allclose(img.affine, out.affine, atol=1e-6)
    np.testing.assert_allclose(img.get_qform(), img.get_sform(), atol=1e-6)
    assert int(img.header["sform_code"]) == int(src.header["sform_code"])
    assert int(img.header["qform_code"]) == int(src.header["qform_code"])
    assert img.header.get_zooms() == pytest.approx((0.5, 0.5, 1.0))
    assert img.header["descrip"].item().decode() == PROV.short()
    np.testing.assert_array_equal(np.asanyarray(img.dataobj), out.data)  # unscaled: raw data are the values
    side = json.loads((tmp_path / "sr.json").read_text())
    assert side["weights_sha256"] == PROV.weights_sha256 and side["source"] == str(T1)
    assert side["disclaimer"] and side["output_dtype"] == "float32" and side["source_dtype"] == "int16"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sr.json", "sr.nii.gz"]  # no temp files left
    again = load_nifti(path)
    np.testing.assert_array_equal(again.data, out.data)


def test_anisotropic_oblique_volume_enhanced_in_plane(tmp_path):
    rot = np.array([[np.cos(0.3), -np.sin(0.3), 0], [np.sin(0.3), np.cos(0.3), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag([0.9, 0.9, 5.5])
    affine[:3, 3] = (-100, 20, 7)
    data = np.random.default_rng(0).random((6, 8, 5)).astype(np.float32)
    vol = Volume(data, affine)
    out = enhance_volume(vol, nearest(3), 3)
    assert out.data.shape == (18, 24, 5)
    np.testing.assert_allclose(out.affine, refine_affine(affine, 3, (0, 1)))
    np.testing.assert_allclose(centre_world(out.affine, out.data.shape), centre_world(affine, data.shape))
    np.testing.assert_allclose(out.zooms, (0.3, 0.3, 5.5))
    img = nib.load(str(save_nifti(out, tmp_path / "o.nii", None)))
    np.testing.assert_allclose(img.get_qform(), img.get_sform(), atol=1e-5)
    assert int(img.header["sform_code"]) == 1 and int(img.header["qform_code"]) == 1
    assert not (tmp_path / "o.json").exists()


def test_slice_axis_first_and_override():
    affine = np.diag([5.0, 1.0, 1.0, 1.0])
    data = np.arange(3 * 4 * 5, dtype=np.float32).reshape(3, 4, 5)
    seen = []

    def up(stack):
        seen.append(stack.shape)
        return nearest(2)(stack)
    out = enhance_volume(Volume(data, affine), up, 2)
    assert seen == [(3, 4, 5)]                               # N = axis 0, H = axis 1, W = axis 2
    assert out.data.shape == (3, 8, 10)
    np.testing.assert_array_equal(out.data[:, 1::2, ::2], data)
    np.testing.assert_allclose(out.affine, refine_affine(affine, 2, (1, 2)))
    out = enhance_volume(Volume(data, affine), up, 2, axis=1)
    assert seen[-1] == (4, 3, 5) and out.data.shape == (6, 4, 10)


def test_4d_every_time_point():
    data = np.random.default_rng(1).random((4, 6, 3, 2)).astype(np.float32)
    calls = []

    def up(stack):
        calls.append(stack.shape)
        return nearest(2)(stack)
    out = enhance_volume(Volume(data, np.diag([1.0, 1.0, 3.0, 1.0])), up, 2)
    assert calls == [(3, 4, 6), (3, 4, 6)]
    assert out.data.shape == (8, 12, 3, 2)
    np.testing.assert_array_equal(out.data[::2, ::2], data)


def test_enhance_stack_wrong_shape_is_an_error():
    with pytest.raises(ValueError, match="expected"):
        enhance_volume(Volume(np.zeros((4, 4, 2), np.float32), np.eye(4)), lambda s: s, 2)


@pytest.mark.parametrize("zooms, expected", [((0.9, 0.9, 5.5), 2), ((1, 1, 1), 2), ((5, 1, 1), 0),
                                             ((1, 4, 1), 1), ((3, 3, 1), 1), ((1.0, 1.0, 0.9995), 2)])
def test_through_plane_rule(zooms, expected):
    assert through_plane_axis(zooms) == expected
    assert through_plane_axis(np.diag([*zooms, 1.0])) == expected


def test_through_plane_override():
    assert through_plane_axis((0.9, 0.9, 5.5), override=0) == 0
    with pytest.raises(ValueError):
        through_plane_axis((1, 1, 1), override=3)


def test_shear_affine_keeps_sform_and_drops_qform(tmp_path):
    affine = np.eye(4)
    affine[0, 1] = 0.4
    p = save_nifti(Volume(np.ones((4, 4, 2), np.float32), affine), tmp_path / "s.nii.gz")
    img = nib.load(str(p))
    np.testing.assert_allclose(img.get_sform(), affine)
    assert int(img.header["qform_code"]) == 0
    np.testing.assert_allclose(img.affine, affine)


def test_load_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_nifti(tmp_path / "missing.nii.gz")
    (tmp_path / "empty.nii").write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        load_nifti(tmp_path / "empty.nii")
    (tmp_path / "junk.nii").write_bytes(b"this is not a nifti file at all" * 20)
    with pytest.raises(InputError) as e:
        load_nifti(tmp_path / "junk.nii")
    assert e.value.path == tmp_path / "junk.nii"
    (tmp_path / "junk.nii.gz").write_bytes(gzip.compress(b"garbage" * 100))
    with pytest.raises(InputError):
        load_nifti(tmp_path / "junk.nii.gz")


def test_truncated_files(tmp_path):
    vol = Volume(np.random.default_rng(2).random((20, 20, 10)).astype(np.float32), np.eye(4))
    for name in ("t.nii", "t.nii.gz"):
        full = save_nifti(vol, tmp_path / name).read_bytes()
        cut = tmp_path / f"cut_{name}"
        cut.write_bytes(full[: len(full) // 2])
        with pytest.raises(InputError, match="cut_"):
            load_nifti(cut)


def test_save_refuses_bad_name_and_overwriting_source(tmp_path):
    vol = Volume(np.zeros((2, 2, 2), np.float32), np.eye(4))
    with pytest.raises(InputError, match=r"\.nii"):
        save_nifti(vol, tmp_path / "out.img")
    src = save_nifti(vol, tmp_path / "src.nii")
    loaded = load_nifti(src)
    with pytest.raises(InputError, match="overwrite"):
        save_nifti(loaded, src)


def test_4d_round_trip_keeps_tr_and_2d_file_gets_a_slice_axis(tmp_path):
    data = np.random.default_rng(4).random((6, 4, 3, 2)).astype(np.float32)
    img = nib.Nifti1Image(data, np.diag([2.0, 2.0, 4.0, 1.0]))
    img.header.set_xyzt_units("mm", "sec")
    img.header["pixdim"][4] = 2.5
    nib.save(img, str(tmp_path / "bold.nii.gz"))
    vol = load_nifti(tmp_path / "bold.nii.gz")
    assert vol.data.shape == (6, 4, 3, 2) and vol.zooms == pytest.approx((2.0, 2.0, 4.0))
    out = load_nifti(save_nifti(enhance_volume(vol, nearest(2), 2), tmp_path / "sr.nii.gz", PROV))
    assert out.data.shape == (12, 8, 3, 2)
    assert out.header.get_zooms() == pytest.approx((1.0, 1.0, 4.0, 2.5))
    assert out.header.get_xyzt_units() == ("mm", "sec")
    nib.save(nib.Nifti1Image(np.ones((5, 7), np.int16), np.eye(4)), str(tmp_path / "flat.nii"))
    assert load_nifti(tmp_path / "flat.nii").data.shape == (5, 7, 1)

"""Pixel decoding, rescale and Siemens mosaics on the shared real DICOM files."""
from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.encaps import encapsulate

from srgan.errors import InputError
from srgan.io import dicom_pixels as dp

COR_MOSAIC = "siemens_trio_epi_mosaic_cor"
AX_MOSAIC_J2K = "siemens_trio_fmri_mosaic_ax_jpeg2000/jp2k1.dcm"
PHILIPS_ENH = "philips_achieva_enhanced_b0map_phantom/IM_0027_fMAP.dcm"
PHILIPS_DTI = "philips_achieva_dti_ax/0016.dcm"
GE = "ge_mr750_epi_ax_mixed_2series/axial_epi_fmri_interleaved_i_to_s-00001.dcm"
JPEGLS = "trio_sag_jpegls_noisepixels/IM-0001-0001-0001.dcm"
PRISMA = "siemens_prisma_t1_sag_hfs"


def _read(dicom_dir, rel, **kw):
    path = dicom_dir / rel
    if path.is_dir():
        path = sorted(path.iterdir())[0]
    return pydicom.dcmread(path, **kw)


def test_split_join_round_trip_and_empty_tiles_are_zero():
    tiles = np.arange(35 * 4 * 5, dtype=np.int16).reshape(35, 4, 5) + 1
    mosaic = dp.join_mosaic(tiles, 6)
    assert mosaic.shape == (24, 30)
    assert np.array_equal(mosaic[4:8, 5:10], tiles[7])  # row-major: tile 7 is grid row 1, column 1
    assert not mosaic[20:, 25:].any() and mosaic[20:, 20:25].all()  # only the 36th cell is empty
    assert np.array_equal(dp.split_mosaic(mosaic, 35), tiles)


def test_split_rejects_a_mosaic_that_does_not_divide():
    with pytest.raises(ValueError):
        dp.split_mosaic(np.zeros((385, 384)), 35)


@pytest.mark.parametrize("rel, n, grid, tile", [(COR_MOSAIC, 35, 6, 64), (AX_MOSAIC_J2K, 36, 6, 86)])
def test_real_mosaics_are_detected_and_split(dicom_dir, rel, n, grid, tile):
    ds = _read(dicom_dir, rel)
    assert dp.is_mosaic(ds)
    assert dp.mosaic_tile_count(ds) == n and dp.mosaic_grid(ds) == grid
    stored = dp.decode_frames(ds)
    assert stored.shape == (1, grid * tile, grid * tile)
    tiles = dp.split_mosaic(stored[0], n)
    assert tiles.shape == (n, tile, tile)
    assert all(t.any() for t in tiles[: n // 2])  # brain slices, not empty padding
    positions = dp.mosaic_tile_positions(ds)
    steps = np.linalg.norm(np.diff(positions, axis=0), axis=1)
    assert positions.shape == (n, 3) and np.allclose(steps, float(ds.SpacingBetweenSlices))


def test_tile_count_falls_back_to_the_csa_header(dicom_dir):
    ds = _read(dicom_dir, COR_MOSAIC, stop_before_pixels=True)
    del ds[0x0019, 0x100A]
    assert dp.mosaic_tile_count(ds) == 35 and dp.is_mosaic(ds)
    del ds[0x0029, 0x1010]
    assert not dp.is_mosaic(ds)
    with pytest.raises(InputError, match="NumberOfImagesInMosaic"):
        dp.mosaic_tile_count(ds)


def test_classic_images_are_not_mosaics(dicom_dir):
    assert not dp.is_mosaic(_read(dicom_dir, PHILIPS_DTI, stop_before_pixels=True))


def test_rescale_per_frame_shared_and_top_level(dicom_dir):
    enh = _read(dicom_dir, PHILIPS_ENH)
    slopes = {dp.frame_rescale(enh, i) for i in range(int(enh.NumberOfFrames))}
    assert {(round(s, 5), i) for s, i in slopes} == {(1.27985, 0.0), (0.2442, -500.0)}
    header = _read(dicom_dir, PHILIPS_DTI, stop_before_pixels=True)
    assert dp.frame_rescale(header) == pytest.approx((1.08205, 0), abs=1e-5)
    assert dp.frame_rescale(_read(dicom_dir, PRISMA, stop_before_pixels=True)) == (1.0, 0.0)
    shared = pydicom.Dataset()
    shared.PixelValueTransformationSequence = [pydicom.Dataset()]
    shared.PixelValueTransformationSequence[0].RescaleSlope = 2
    shared.PixelValueTransformationSequence[0].RescaleIntercept = -3
    ds = pydicom.Dataset()
    ds.SharedFunctionalGroupsSequence = [shared]
    ds.PerFrameFunctionalGroupsSequence = [pydicom.Dataset()]
    assert dp.frame_rescale(ds, 0) == (2.0, -3.0)


def test_enhanced_frames_decode_with_their_own_rescale(dicom_dir):
    ds = _read(dicom_dir, PHILIPS_ENH)
    stored = dp.decode_frames(ds)
    assert stored.shape == (64, 64, 64)
    for i in (0, 40):
        slope, intercept = dp.frame_rescale(ds, i)
        px = dp.frame_pixels(ds, i)
        assert px.dtype == np.float32
        np.testing.assert_allclose(px, stored[i] * slope + intercept, rtol=1e-6)
    assert dp.frame_pixels(ds, 40).min() < 0  # the field map is signed after its -500 intercept


def test_classic_decode_signed_and_rescaled(dicom_dir):
    ge = _read(dicom_dir, GE)
    stored = dp.decode_frames(ge)
    assert stored.shape == (1, 64, 64) and stored.dtype == np.int16
    philips = _read(dicom_dir, PHILIPS_DTI)
    np.testing.assert_allclose(dp.frame_pixels(philips), philips.pixel_array * 1.08205128205128, rtol=1e-6)


@pytest.mark.parametrize("rel, shape", [(AX_MOSAIC_J2K, (1, 516, 516)), (JPEGLS, (1, 256, 256))])
def test_compressed_transfer_syntaxes_decode(dicom_dir, rel, shape):
    ds = _read(dicom_dir, rel)
    stored = dp.decode_frames(ds)
    assert stored.shape == shape and stored.max() > 0


def test_undecodable_pixels_raise_input_error_naming_file_and_syntax(dicom_dir, tmp_path):
    ds = _read(dicom_dir, JPEGLS)
    ds.PixelData = encapsulate([b"\xff\xd8 this is not a JPEG-LS stream"])
    path = tmp_path / "broken.dcm"
    ds.save_as(path)
    broken = pydicom.dcmread(path)
    with pytest.raises(InputError) as err:
        dp.decode_frames(broken)
    assert "broken.dcm" in str(err.value) and "JPEG-LS" in str(err.value)

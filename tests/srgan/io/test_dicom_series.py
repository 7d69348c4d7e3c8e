"""Scanning, grouping, sorting and geometry of DICOM series: the shared real series, dcm2niix as the
geometry reference, and broken folders built in tmp_path."""
from __future__ import annotations

import shutil
from itertools import product
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.encaps import encapsulate

from srgan.errors import InputError
from srgan.io import dicom_pixels as dp
from srgan.io.dicom_series import scan

# folder → [(series number, (n_volumes, n_slices, rows, cols))], from the data README.
EXPECTED = {
    "siemens_prisma_t1_sag_hfs": [(3, (1, 35, 256, 256))],
    "siemens_prisma_t1_sag_hfdr": [(2, (1, 35, 256, 256))],
    "ge_mr750_epi_ax_mixed_2series": [(4, (10, 15, 64, 64)), (5, (10, 15, 64, 64))],
    "philips_achieva_dti_ax": [(601, (17, 40, 80, 80))],
    "philips_achieva_enhanced_b0map_phantom": [(801, (2, 32, 64, 64))],
    "siemens_vida_xa10_enhanced_fmri_phantom": [(6, (4, 6, 64, 64))],
    "siemens_trio_epi_mosaic_cor": [(16, (2, 35, 64, 64))],
    "siemens_trio_fmri_mosaic_ax_jpeg2000": [(26, (2, 36, 86, 86))],
    "trio_sag_jpegls_noisepixels": [(4, (1, 4, 256, 256))],
}


def _one(scanned, folder):
    series = scanned[0][folder]
    assert len(series) == 1
    return series[0]


# ------------------------------------------------------------------------------------ real series


def test_every_shared_series_is_found_without_problems(scanned):
    by_folder, result = scanned
    assert result.problems == []
    assert {f: [(s.series_number, s.shape) for s in ss] for f, ss in by_folder.items()} == EXPECTED
    for ss in by_folder.values():
        for s in ss:
            assert s.problems == [], (s, s.problems)
            assert len(s.frames) == s.shape[0] * s.shape[1]


@pytest.mark.parametrize("folder", sorted(EXPECTED))
def test_geometry_matches_dcm2niix(scanned, dcm2niix_dir, folder):
    """Voxel-centre corners of each volume (LPS mm) agree with dcm2niix's NIfTI (RAS) within 1e-3 mm."""
    out = dcm2niix_dir(folder)
    for s in scanned[0][folder]:
        niftis = sorted(out.glob(f"{s.series_number}*.nii"))
        assert niftis, f"dcm2niix wrote nothing for series {s.series_number} of {folder}"
        img = nib.load(niftis[0])
        shape3 = img.shape[:3]
        n_vol, n_sl, rows, cols = s.shape
        assert sorted(shape3) == sorted((cols, rows, n_sl))
        assert sorted(np.round(img.header.get_zooms()[:3], 4)) == pytest.approx(
            sorted(np.round([*s.pixel_spacing, s.slice_spacing], 4)), abs=1e-3)
        ras_to_lps = np.diag([-1.0, -1.0, 1.0, 1.0])
        corners = [ras_to_lps @ img.affine @ [i * (shape3[0] - 1), j * (shape3[1] - 1), k * (shape3[2] - 1), 1]
                   for i, j, k in product((0, 1), repeat=3)]
        mine = [s.affine @ [i * (cols - 1), j * (rows - 1), k * (n_sl - 1), 1] for i, j, k in product((0, 1), repeat=3)]
        for corner in mine:
            nearest = min(np.abs(np.asarray(c[:3]) - corner[:3]).max() for c in corners)
            assert nearest < 1e-3, (folder, corner)
        if len(niftis) == 1 and img.ndim == 4:
            assert img.shape[3] == n_vol


def test_affine_reproduces_every_frame_position(scanned):
    for ss in scanned[0].values():
        for s in ss:
            for v, k in [(0, 0), (s.shape[0] - 1, s.shape[1] - 1)]:
                np.testing.assert_allclose(s.affine @ [0, 0, k, 1], [*s.frame(v, k).position, 1], atol=1e-3)


def test_mosaic_tiles_become_slices(scanned, dicom_dir):
    s = _one(scanned, "siemens_trio_fmri_mosaic_ax_jpeg2000")
    assert s.is_mosaic and s.frame(1, 5).tile_index == 5
    ds = pydicom.dcmread(s.frame(1, 5).path)
    expected = dp.split_mosaic(ds.pixel_array, 36)[5]
    np.testing.assert_array_equal(s.pixels(1, 5), expected.astype(np.float32))
    assert s.frame(0, 0).path.name == "jp2k1.dcm" and s.frame(1, 0).path.name == "jp2k2.dcm"


def test_philips_rescale_applied(scanned):
    s = _one(scanned, "philips_achieva_dti_ax")
    ds = s.header(3, 20)
    np.testing.assert_allclose(s.pixels(3, 20), ds.pixel_array * float(ds.RescaleSlope), rtol=1e-6)
    assert float(ds.RescaleSlope) == pytest.approx(1.08205, abs=1e-5)
    for v in range(s.shape[0]):  # each volume is one diffusion direction, never mixed across slices
        assert len({s.frame(v, k).b_value for k in range(s.shape[1])}) == 1
    assert s.volume_kinds[0] == "magnitude" and s.volume_kinds[-1] == "trace"


def test_philips_enhanced_field_map_is_its_own_flagged_volume(scanned):
    s = _one(scanned, "philips_achieva_enhanced_b0map_phantom")
    assert s.volume_kinds == ["magnitude", "field_map"] and s.anatomy_volumes == [0]
    assert s.frame(0, 3).is_magnitude_anatomy and not s.frame(1, 3).is_magnitude_anatomy
    assert s.frame(0, 3).rescale[0] == pytest.approx(1.27985, abs=1e-5)
    assert s.frame(1, 3).rescale == pytest.approx((0.2442, -500), abs=1e-4)
    assert s.pixels(1, 16).min() < 0 <= s.pixels(0, 16).min()
    np.testing.assert_allclose(s.frame(0, 3).position, s.frame(1, 3).position, atol=1e-3)


def test_ge_series_split_and_time_ordered(scanned):
    a, b = scanned[0]["ge_mr750_epi_ax_mixed_2series"]
    assert a.uid != b.uid and a.study_uid == b.study_uid and a.series_description != b.series_description
    assert a.files[0].name.startswith("axial_epi_fmri_interleaved") and len(a.files) == 150
    numbers = [a.frame(v, 0).instance_number for v in range(10)]
    assert numbers == sorted(numbers)
    assert a.header(0, 0).PixelRepresentation == 1
    np.testing.assert_array_equal(a.pixels(2, 7), a.header(2, 7).pixel_array.astype(np.float32))


def test_xa10_volumes_follow_the_files(scanned):
    s = _one(scanned, "siemens_vida_xa10_enhanced_fmri_phantom")
    assert [s.frame(v, 0).path.name for v in range(4)] == ["6_1.dcm", "6_2.dcm", "6_3.dcm", "6_4.dcm"]
    assert s.volume(2).shape == (6, 64, 64)


def test_jpegls_noise_series_decodes(scanned):
    s = _one(scanned, "trio_sag_jpegls_noisepixels")
    px = s.volume(0)
    assert px.shape == (4, 256, 256) and 0 <= px.min() and px.max() <= 254
    assert s.window is None


def test_series_metadata(scanned):
    s = _one(scanned, "siemens_prisma_t1_sag_hfdr")
    assert s.patient_position == "HFDR" and s.modality == "MR" and s.manufacturer.upper().startswith("SIEMENS")
    assert s.window == (706.0, 1382.0)  # the middle slice's first window
    assert s.slice_spacing == pytest.approx(4.8, abs=1e-3) and s.pixel_spacing == pytest.approx((1.015625, 1.015625))
    assert abs(abs(s.slice_normal[0]) - 1) < 1e-6  # sagittal
    assert "PixelData" in s.header(0, 0)


# --------------------------------------------------------------------------------- synthetic cases


@pytest.fixture
def prisma_copy(dicom_dir, tmp_path):
    """A tmp folder with copies of the first n files of a real sagittal series."""

    def make(n: int = 8, names=None) -> tuple[Path, list[Path]]:
        src = sorted((dicom_dir / "siemens_prisma_t1_sag_hfs").iterdir())[:n]
        out = tmp_path / "series"
        out.mkdir(exist_ok=True)
        copies = []
        for i, f in enumerate(src):
            (out / (names(i) if names else f.name)).parent.mkdir(parents=True, exist_ok=True)
            copies.append(Path(shutil.copy(f, out / (names(i) if names else f.name))))
        return out, copies

    return make


def test_missing_slice_is_reported(prisma_copy):
    folder, files = prisma_copy(8)
    files[4].unlink()
    s = scan(folder).series[0]
    assert s.shape == (1, 7, 256, 256)
    assert any("gap" in p and "1 slice(s) missing" in p for p in s.problems)


def test_broken_files_are_reported_and_good_files_still_load(prisma_copy):
    folder, files = prisma_copy(6)
    data = files[2].read_bytes()
    files[2].write_bytes(data[: len(data) // 2])
    (folder / "notes.dcm").write_text("this is not an image\n")
    (folder / "README.txt").write_text("not DICOM, skipped silently\n")
    result = scan(folder)
    assert [s.shape for s in result.series] == [(1, 5, 256, 256)]
    assert sorted(p.path.name for p in result.problems) == sorted([files[2].name, "notes.dcm"])
    assert all(p.message for p in result.problems)


def test_empty_or_missing_folder_raises(tmp_path):
    with pytest.raises(InputError, match="no DICOM"):
        scan(tmp_path)
    (tmp_path / "a.txt").write_text("hello")
    with pytest.raises(InputError, match="no DICOM"):
        scan(tmp_path)
    with pytest.raises(InputError, match="does not exist"):
        scan(tmp_path / "nowhere")


def test_only_broken_dicom_raises_naming_a_file(tmp_path):
    (tmp_path / "x.dcm").write_bytes(b"\0" * 50)
    with pytest.raises(InputError, match="x.dcm"):
        scan(tmp_path)


@pytest.mark.parametrize("keep", [300, 2000])
def test_file_cut_inside_its_header_is_named_as_truncated(prisma_copy, keep):
    folder, files = prisma_copy(3)
    files[1].write_bytes(files[1].read_bytes()[:keep])
    result = scan(folder)
    assert [s.shape for s in result.series] == [(1, 2, 256, 256)]
    assert [p.path.name for p in result.problems] == [files[1].name]
    assert "truncated" in result.problems[0].message
    with pytest.raises(InputError, match=f"{files[1].name}.*truncated"):
        scan(files[1])


def test_extensionless_files_in_subfolders_are_found(prisma_copy, tmp_path):
    folder, files = prisma_copy(4, names=lambda i: f"deep/er/IM{i}")
    progress = []
    result = scan(folder, progress=lambda done, total: progress.append((done, total)))
    assert result.series[0].shape == (1, 4, 256, 256)
    assert progress[-1] == (4, 4)


def test_single_file_path(prisma_copy):
    _, files = prisma_copy(2)
    assert scan(files[1]).series[0].shape == (1, 1, 256, 256)


def test_dicomdir_is_read(prisma_copy, tmp_path):
    from pydicom.fileset import FileSet

    _, files = prisma_copy(5)
    fs = FileSet()
    for f in files:
        fs.add(pydicom.dcmread(f))
    fs.write(tmp_path / "media")
    result = scan(tmp_path / "media")
    assert result.problems == []
    assert [s.shape for s in result.series] == [(1, 5, 256, 256)]
    assert scan(tmp_path / "media" / "DICOMDIR").series[0].shape == (1, 5, 256, 256)


def test_unreadable_compressed_frame_fails_only_that_slice(dicom_dir, tmp_path):
    for f in sorted((dicom_dir / "trio_sag_jpegls_noisepixels").iterdir()):
        shutil.copy(f, tmp_path / f.name)
    bad = sorted(tmp_path.iterdir())[1]
    ds = pydicom.dcmread(bad)
    ds.PixelData = encapsulate([b"\xff\xd8 garbage"])
    ds.save_as(bad)
    s = scan(tmp_path).series[0]
    assert s.shape == (1, 4, 256, 256)
    bad_slice = next(k for k in range(4) if s.frame(0, k).path == bad)
    with pytest.raises(InputError) as err:
        s.pixels(0, bad_slice)
    assert bad.name in str(err.value)
    assert s.pixels(0, (bad_slice + 1) % 4).shape == (256, 256)


def test_duplicates_uneven_spacing_and_mixed_sizes(prisma_copy):
    folder, files = prisma_copy(6)
    shutil.copy(files[0], folder / "copy_of_first.dcm")
    ds = pydicom.dcmread(files[3])
    ds.ImagePositionPatient = [float(v) + (1.0 if i == 0 else 0.0) for i, v in enumerate(ds.ImagePositionPatient)]
    ds.save_as(files[3])
    small = pydicom.dcmread(files[5])
    small.PixelData = small.pixel_array[::2, ::2].copy().tobytes()
    small.Rows, small.Columns = 128, 128
    small.PixelSpacing = [2.03125, 2.03125]
    small.save_as(files[5])
    result = scan(folder)
    main, part = result.series
    assert main.shape == (1, 5, 256, 256) and part.shape == (1, 1, 128, 128)
    assert any("duplicate" in p for p in main.problems)
    assert any("uneven slice spacing" in p for p in main.problems)
    assert any("split into parts" in p for p in main.problems + part.problems)
    assert main.uid == part.uid and main.part != part.part


def test_unequal_images_per_position_is_reported(dicom_dir, tmp_path):
    src = dicom_dir / "ge_mr750_epi_ax_mixed_2series"
    for f in sorted(src.glob("axial_epi_fmri_sequential*"))[:45]:  # 15 positions × 3 times
        shutil.copy(f, tmp_path / f.name)
    sorted(tmp_path.iterdir())[-1].unlink()
    s = scan(tmp_path).series[0]
    assert s.shape[:2] == (2, 15)
    assert any("unequal numbers of images" in p for p in s.problems)


def test_file_without_preamble_in_implicit_vr_is_found(prisma_copy, tmp_path):
    _, files = prisma_copy(1)
    ds = pydicom.dcmread(files[0])
    raw = tmp_path / "raw"
    raw.mkdir()
    ds.preamble = None
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.save_as(raw / "IMG1", implicit_vr=True, little_endian=True)
    assert (raw / "IMG1").read_bytes()[128:132] != b"DICM"
    s = scan(raw).series[0]
    assert s.shape == (1, 1, 256, 256) and s.pixels(0, 0).max() > 0


@pytest.mark.parametrize("image_type, kind", [
    (["ORIGINAL", "PRIMARY", "P", "ND"], "phase"),
    (["ORIGINAL", "PRIMARY", "LOCALIZER"], "localizer"),
    (["DERIVED", "PRIMARY", "DIFFUSION", "ADC", "ND"], "adc"),
    (["DERIVED", "SECONDARY", "M", "ND"], "magnitude"),
])
def test_image_kinds_from_image_type(prisma_copy, image_type, kind):
    folder, files = prisma_copy(2)
    for f in files:
        ds = pydicom.dcmread(f)
        ds.ImageType = image_type
        ds.save_as(f)
    s = scan(folder).series[0]
    assert s.kind == kind and s.frame(0, 0).is_magnitude_anatomy == (kind == "magnitude")
    assert s.anatomy_volumes == ([0] if kind == "magnitude" else [])


def test_images_without_geometry_are_ordered_by_instance_number(prisma_copy):
    folder, files = prisma_copy(3)
    for i, f in enumerate(files):
        ds = pydicom.dcmread(f)
        del ds.ImagePositionPatient
        ds.InstanceNumber = 3 - i
        ds.save_as(f)
    s = scan(folder).series[0]
    assert [s.frame(0, k).instance_number for k in range(3)] == [1, 2, 3]
    assert any("InstanceNumber" in p for p in s.problems)


@pytest.mark.parametrize("image_type, kind", [
    ("ORIGINAL\\PRIMARY\\PERFUSION\\NONE", "magnitude"),    # Siemens DSC raw EPI magnitude
    ("ORIGINAL\\PRIMARY\\ASL\\NONE", "magnitude"),          # raw ASL label/control
    ("ORIGINAL\\PRIMARY\\DIFFUSION\\NONE", "magnitude"),    # diffusion-weighted images
    ("ORIGINAL\\PRIMARY\\FMRI\\NONE", "magnitude"),
    ("DERIVED\\PRIMARY\\PERFUSION\\RCBV", "map"),           # the maps computed from them
    ("DERIVED\\PRIMARY\\ASL\\RELCBF", "map"),
    ("DERIVED\\PRIMARY\\PERFUSION\\TTP", "map"),
    ("DERIVED\\PRIMARY\\DIFFUSION\\ADC", "adc"),
    ("DERIVED\\PRIMARY\\DIFFUSION\\TRACEW", "trace"),
    ("ORIGINAL\\PRIMARY\\B0 MAP", "field_map"),
    ("ORIGINAL\\PRIMARY\\P\\ND", "phase"),
])
def test_acquisition_tokens_are_magnitude_and_parameter_maps_are_not(image_type, kind):
    from srgan.io.image_type import kind_of_tokens

    assert (kind_of_tokens(image_type.split("\\")[2:]) or "magnitude") == kind


def test_a_dsc_perfusion_time_series_is_anatomy_to_enhance(dicom_dir, tmp_path):
    """Real raw EPI magnitude time series (GE fMRI, 150 frames) labelled as Siemens labels DSC perfusion: one
    series of magnitude volumes, every volume enhanced (the viewer's rule), none left out as a map."""
    from srgan.io.dicom_derived import write_derived_series
    from srgan.provenance import Provenance

    files = sorted((dicom_dir / "ge_mr750_epi_ax_mixed_2series").glob("*.dcm"))
    mine = [f for f in files if int(pydicom.dcmread(f, stop_before_pixels=True).SeriesNumber) == 4][:30]
    for f in mine:
        ds = pydicom.dcmread(f)
        ds.ImageType = ["ORIGINAL", "PRIMARY", "PERFUSION", "NONE"]
        (tmp_path / "src").mkdir(exist_ok=True)
        ds.save_as(tmp_path / "src" / f.name)
    (series,) = scan(tmp_path / "src").series
    assert series.kind == "magnitude" and series.anatomy_volumes == list(range(series.shape[0]))
    assert series.shape[0] > 1
    report = write_derived_series(series, lambda x: np.kron(x, np.ones((1, 2, 2), np.float32)), tmp_path / "out",
                                  scale=2, provenance=Provenance(model="n", weights_name="t",
                                                                 weights_sha256="ab" * 32, scale=2))
    assert len(report.files) == len(mine) and not report.notes


def test_uih_vframe_grid_is_read_as_tiles(dicom_dir):
    """United Imaging VFRAME: each file one volume of 20 tiles of 64×64 in a 256×320 image (4×5 grid), each tile's
    position in its item of (0065,1051): 17 volumes × 20 slices, as dcm2niix reads it."""
    folder = dicom_dir.parent / "dicom-more" / "uih_umr770_dti_ax_vframe"
    if not folder.is_dir():
        pytest.skip("dicom-more not found")
    (series,) = scan(folder).series
    assert series.shape == (17, 20, 64, 64) and not series.problems
    f = series.frame(0, 0)
    ds = pydicom.dcmread(f.path)
    items = ds[0x0065, 0x1051].value
    k = f.tile_index
    assert np.allclose(f.position, [float(v) for v in items[k].ImagePositionPatient])
    tiles = dp.split_tiles(ds.pixel_array, dp.tile_layout(ds))
    assert np.array_equal(series.pixels(0, 0), tiles[k].astype(np.float32))
    assert abs(series.slice_spacing - float(ds.SpacingBetweenSlices)) < 0.05


def test_not_anatomy_classification_on_the_real_diffusion_field_map_and_fmri_series(dicom_dir):
    """The one table (srgan.io.image_type) against every real series: diffusion-weighted volumes (Philips, UIH),
    fMRI and EPI time series are magnitude anatomy to enhance; only the Philips trace volume and the field-map
    frames are left out."""
    from collections import Counter

    want = {
        "philips_achieva_dti_ax": {"magnitude": 16, "trace": 1},
        "philips_achieva_enhanced_b0map_phantom": {"magnitude": 1, "field_map": 1},
        "ge_mr750_epi_ax_mixed_2series": {"magnitude": 10},
        "siemens_vida_xa10_enhanced_fmri_phantom": {"magnitude": 4},
        "siemens_trio_epi_mosaic_cor": {"magnitude": 2},
        "siemens_trio_fmri_mosaic_ax_jpeg2000": {"magnitude": 2},
        "uih_umr770_dti_ax_vframe": {"magnitude": 17},
    }
    found = {}
    for root in (dicom_dir, dicom_dir.parent / "dicom-more"):
        for s in scan(root).series:
            found.setdefault(s.files[0].parent.name, Counter(s.volume_kinds))
    for folder, kinds in want.items():
        assert found[folder] == Counter(kinds), folder

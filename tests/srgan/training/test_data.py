"""Training data: loading, patient-level splits, exclusion of the evaluation case, deterministic patch batches."""
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image

from srgan import degrade
from srgan.degrade import DegradationConfig
from srgan.errors import InputError
from srgan.training import data as sdata
from srgan.training.data import DataConfig, PatchSampler

SHARED = Path(__file__).resolve().parents[3] / ".." / "shared" / "data"
KAGGLE = SHARED / "kaggle-brain-tumor-mri"
BRAINLES = SHARED / "brainles-examples"
DICOM_T1 = SHARED / "dicom" / "siemens_prisma_t1_sag_hfs"


def disc_image(size=(80, 96), radius=0.3, seed=0):
    """A bright textured disc on black: mostly background, like a brain slice."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size[0], 0:size[1]]
    r = np.hypot((yy - size[0] / 2) / size[0], (xx - size[1] / 2) / size[1])
    return np.where(r < radius, 0.5 + 0.3 * rng.random(size), 0.0)


@pytest.fixture()
def image_folder(tmp_path):
    root = tmp_path / "imgs"
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(3):
            img = disc_image(seed=i + (10 if cls == "b" else 0))
            Image.fromarray(np.round(img * 255).astype(np.uint8)).save(root / cls / f"{i}.png")
    (root / "notes.txt").write_text("not an image")
    return root


@pytest.fixture()
def nifti_folder(tmp_path):
    root = tmp_path / "vols"
    rng = np.random.default_rng(0)
    for patient in ("P1", "P2", "TCGA-DU-7294"):
        (root / patient).mkdir(parents=True)
        vol = np.zeros((48, 40, 12), np.int16)
        vol[8:40, 6:34, 2:10] = rng.integers(300, 900, (32, 28, 8))
        img = nib.Nifti1Image(vol, np.diag([1.0, 1.0, 5.0, 1.0]))  # 5 mm slices: only axial planes usable
        nib.save(img, root / patient / f"{patient}_t1.nii.gz")
        nib.save(nib.Nifti1Image((vol > 600).astype(np.uint8), img.affine), root / patient / "seg.nii.gz")
    return root


def test_image_folder_loads_8bit_normalised_per_image(image_folder):
    cfg = DataConfig(sources=[str(image_folder)])
    items = sdata.load_source(image_folder, cfg, scale=2, min_side=32)
    assert len(items) == 6
    assert {it.group for it in items} == {f"{c}/{i}.png" for c in "ab" for i in range(3)}
    for it in items:
        assert it.eight_bit and it.slices is None and len(it.norms) == 1
        plane, norm = it.plane()
        lr = degrade.bicubic_down(it.array[:80, :96], 2)
        # the normaliser is the one inference fits on the LR image
        assert norm.low == pytest.approx(np.percentile(lr, 0.5), abs=1e-6)
        assert norm.high == pytest.approx(np.percentile(lr, 99.5), abs=1e-6)
        np.testing.assert_allclose(plane, (it.array - norm.low) / (norm.high - norm.low), atol=1e-6)


def test_16bit_images_are_not_eight_bit(tmp_path):
    a = (disc_image() * 40000).astype(np.uint16)
    Image.fromarray(a).save(tmp_path / "x.png")
    hr, eight = sdata.load_gray(tmp_path / "x.png")
    assert not eight
    np.testing.assert_allclose(hr, a / 65535.0, atol=1e-6)


def test_nifti_skips_labels_anisotropic_planes_and_the_evaluation_case(nifti_folder):
    cfg = DataConfig(sources=[str(nifti_folder)], min_foreground=0.2)
    items = sdata.load_source(nifti_folder, cfg, scale=2, min_side=16)
    assert sorted(it.group for it in items) == ["P1", "P2"]  # TCGA-DU-7294 and the seg maps left out
    for it in items:
        assert it.array.shape == (48, 40, 12)
        assert {ax for ax, _ in it.slices} == {2}  # 1×5 mm planes never used
        assert {i for _, i in it.slices} <= set(range(2, 10))  # empty slices dropped
        assert len(it.norms) == len(it.slices)
    with pytest.raises(InputError, match="no usable"):
        sdata.load_source(nifti_folder / "TCGA-DU-7294", cfg, scale=2, min_side=16)


def test_split_is_by_group_seeded_and_keeps_single_group_in_training(nifti_folder, image_folder):
    cfg = DataConfig(sources=[str(image_folder)])
    items = sdata.load_source(image_folder, cfg, scale=2, min_side=32)
    tr, va = sdata.split(items, 0.34, seed=1)
    assert len(va) == 2 and len(tr) == 4
    assert not {it.group for it in tr} & {it.group for it in va}
    assert [it.path for it in sdata.split(items, 0.34, seed=1)[1]] == [it.path for it in va]
    one = sdata.load_source(nifti_folder / "P1", DataConfig(), scale=2, min_side=16)
    assert sdata.split(one, 0.5, seed=0) == (one, [])
    # two files of one patient always land on the same side
    vols = sdata.load_source(nifti_folder, DataConfig(min_foreground=0.2), scale=2, min_side=16)
    vols += [sdata.Item(v.array, v.path + ".copy", v.group, False, v.norms, v.slices) for v in vols]
    for seed in range(5):
        tr, va = sdata.split(vols, 0.5, seed)
        assert len(tr) == len(va) == 2 and tr[0].group == tr[1].group


def test_patch_batches_are_pure_functions_of_seed_step_index(image_folder):
    cfg = DataConfig(sources=[str(image_folder)], min_foreground=0.5)
    items = sdata.load_source(image_folder, cfg, scale=2, min_side=32)
    deg = DegradationConfig(scale=2, p_noise=0.5, p_blur=0.5)
    s = PatchSampler([items], patch_size=32, degradation=deg, seed=3, cfg=cfg)
    lr, hr, params, *_ = s.batch(7, range(6))
    assert lr.shape == (6, 1, 16, 16) and hr.shape == (6, 1, 32, 32)
    lr2, hr2, params2, *_ = PatchSampler([items], patch_size=32, degradation=deg, seed=3, cfg=cfg).batch(7, range(6))
    assert torch.equal(lr, lr2) and torch.equal(hr, hr2) and params == params2
    assert not torch.equal(hr, s.batch(8, range(6))[1])
    # DDP shards: rank r takes indices r::world of the same global batch
    even, odd = s.batch(7, range(0, 6, 2)), s.batch(7, range(1, 6, 2))
    assert torch.equal(even[1], hr[0::2]) and torch.equal(odd[0], lr[1::2])
    # mostly foreground (the disc covers ~28 % of each image)
    fg = (hr > cfg.foreground_level).float().mean(dim=(1, 2, 3))
    assert (fg >= 0.5).all()
    # LR is the logged degradation of the whole plane, cut on the LR grid where the HR patch lies, then
    # oriented like it: no k-space ringing from the patch's own edges
    for i in range(6):
        plane, norm, y, x, k, flip = _locate_patch(items, hr[i])
        assert y % 2 == 0 and x % 2 == 0
        assert params[i]["quantize_levels"] == 255
        p = dict(params[i], noise_sigma=0.0)
        whole = torch.from_numpy(plane[:plane.shape[0] // 2 * 2, :plane.shape[1] // 2 * 2].copy())[None, None]
        cut = degrade.resample(whole, p, source=(norm.low, norm.high))[0, 0, y // 2:y // 2 + 16, x // 2:x // 2 + 16]
        cut = degrade.finish(cut, p, source=(norm.low, norm.high)).numpy()
        cut = np.rot90(cut, k)
        cut = cut[:, ::-1] if flip else cut
        if params[i]["noise_sigma"] == 0:
            np.testing.assert_allclose(lr[i, 0].numpy(), cut, atol=1e-6)
        else:  # Rician noise only adds: same image, different draws
            assert np.abs(lr[i, 0].numpy() - cut).mean() < 0.1


def _locate_patch(items, patch):
    """(plane, normaliser, y, x, rotation k, flip) of a patch: patches are exact crops, possibly rotated."""
    p = patch[0].numpy()
    for it in items:
        plane, norm = it.plane()
        for k in range(4):
            for flip in (False, True):
                q = np.rot90(p, -k) if not flip else np.rot90(p[:, ::-1], -k)
                h, w = q.shape
                for y in range(plane.shape[0] - h + 1):
                    for x in range(plane.shape[1] - w + 1):
                        if plane[y, x] == q[0, 0] and np.array_equal(plane[y:y + h, x:x + w], q):
                            return plane, norm, y, x, k, flip
    raise AssertionError("patch not found in any image")


def test_kspace_lr_is_cut_from_the_whole_plane(image_folder):
    """A k-space LR patch equals the crop of the whole slice's k-space LR, not the k-space LR of the crop."""
    cfg = DataConfig(sources=[str(image_folder)], min_foreground=0.5)
    items = sdata.load_source(image_folder, cfg, scale=2, min_side=32)
    deg = DegradationConfig(scale=2, p_kspace=1.0, p_hamming=0.0, p_noise=0.0, p_blur=0.0, quantize_8bit=False)
    lr, hr, params, *_ = PatchSampler([items], patch_size=32, degradation=deg, seed=1, cfg=cfg).batch(0, range(4))
    patch_only = degrade.apply(hr, params[0])
    assert (lr - patch_only).abs().max() > 1e-3  # they differ: the patch's cut edges would ring


def test_zerofill_base_is_cut_from_the_whole_plane(image_folder):
    """The base handed to a zero-fill model is the whole slice's zero-filled LR at the patch, plus the patch's own
    noise zero-filled: what inference computes on the whole noisy slice, up to the noise's periodic wrap."""
    cfg = DataConfig(sources=[str(image_folder)], min_foreground=0.5)
    items = sdata.load_source(image_folder, cfg, scale=2, min_side=32)
    deg = DegradationConfig(scale=2, p_kspace=0.5, p_noise=0.0, p_blur=0.0, quantize_8bit=False)
    lr, hr, params, base, _ = PatchSampler([items], patch_size=32, degradation=deg, seed=2, cfg=cfg,
                                        base="zerofill").batch(0, range(4))
    assert base.shape == hr.shape
    for i in range(4):
        plane, norm, y, x, k, flip = _locate_patch(items, hr[i])
        whole = torch.from_numpy(plane[:plane.shape[0] // 2 * 2, :plane.shape[1] // 2 * 2].copy())[None, None]
        want = degrade.zerofill_base(degrade.apply(whole, params[i], source=(norm.low, norm.high)), 2)
        want = np.rot90(want[0, 0, y:y + 32, x:x + 32].numpy(), k)
        np.testing.assert_allclose(base[i, 0].numpy(), want[:, ::-1] if flip else want, atol=1e-5)
        # and not the zero-fill of the patch alone, which wraps around its cut edges
        assert (degrade.zerofill_base(lr[i:i + 1], 2) - base[i:i + 1]).abs().max() > 1e-3
    v = sdata.validation_set(items[:1], scale=2, cfg=DataConfig(val_crop=32), base="zerofill")
    assert all(e["base"].shape == e["hr"].shape for e in v)
    assert PatchSampler([items], patch_size=32, degradation=deg, seed=2, cfg=cfg).batch(0, range(2)).base is None


def test_kind_estimate_comes_from_the_whole_finished_plane(image_folder):
    """With a detector, each sample carries P(k-space) of its whole LR plane with the patch's noise and rounding,
    the estimate inference makes on the whole slice, not one made on the patch."""
    from srgan.models.kind_detector import KindDetector
    cfg = DataConfig(sources=[str(image_folder)], min_foreground=0.5)
    items = sdata.load_source(image_folder, cfg, scale=2, min_side=32)
    det = KindDetector()
    det.weight.copy_(torch.linspace(-1, 1, len(det.weight), dtype=det.weight.dtype))
    det.fitted.fill_(1)
    deg = DegradationConfig(scale=2, p_kspace=0.5, p_noise=0.5, p_blur=0.0)
    b = PatchSampler([items], patch_size=32, degradation=deg, seed=4, cfg=cfg, kind_detector=det).batch(0, range(6))
    assert b.kind.shape == (6,)
    for i in range(6):
        plane, norm, *_ = _locate_patch(items, b.hr[i])
        whole = torch.from_numpy(plane[:plane.shape[0] // 2 * 2, :plane.shape[1] // 2 * 2].copy())[None, None]
        want = det(degrade.apply(whole, b.params[i], source=(norm.low, norm.high)))
        assert torch.allclose(b.kind[i:i + 1], want.float(), atol=1e-5)
        assert not torch.allclose(b.kind[i:i + 1], det(b.lr[i:i + 1]).float(), atol=1e-3)
    v = sdata.validation_set(items[:1], scale=2, cfg=DataConfig(val_crop=32), kind_detector=det)
    assert all(e["kind_p"].shape == (1,) for e in v)
    assert PatchSampler([items], patch_size=32, degradation=deg, seed=4, cfg=cfg).batch(0, range(2)).kind is None


def test_validation_set_is_fixed_and_contract_like(image_folder):
    cfg = DataConfig(sources=[str(image_folder)], val_crop=48)
    items = sdata.load_source(image_folder, cfg, scale=2, min_side=32)
    v = sdata.validation_set(items[:2], scale=2, cfg=cfg)
    assert [e["kind"] for e in v] == ["bicubic", "kspace"] * 2
    for e in v:
        assert e["hr"].shape == (1, 1, 48, 48) and e["lr"].shape == (1, 1, 24, 24)
    norm = items[0].norms[0]
    src = norm.low + v[0]["lr"].numpy() * (norm.high - norm.low)
    np.testing.assert_allclose(src * 255, np.round(src * 255), atol=1e-3)  # 8-bit LR, as contract tests feed


def test_bad_sources_raise_input_errors(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        sdata.load_source(tmp_path / "nope", DataConfig(), scale=2, min_side=32)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no usable training images"):
        sdata.load_source(tmp_path / "empty", DataConfig(), scale=2, min_side=32)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.png").write_bytes(b"garbage" * 10)
    with pytest.raises(InputError, match="x.png"):
        sdata.load_source(tmp_path / "bad", DataConfig(), scale=2, min_side=32)
    with pytest.raises(InputError, match="no data sources"):
        sdata.load_datasets(DataConfig(), scale=2, patch_size=32, seed=0)


@pytest.mark.skipif(not KAGGLE.exists(), reason=f"real data not found at {KAGGLE}")
def test_real_kaggle_images_patches_have_tissue():
    cfg = DataConfig(sources=[str(KAGGLE)], max_items_per_source=6)
    items = sdata.load_source(KAGGLE, cfg, scale=4, min_side=96)
    assert len(items) == 6 and all(it.eight_bit for it in items)
    s = PatchSampler([items], patch_size=96, degradation=DegradationConfig(scale=4), seed=0, cfg=cfg)
    lr, hr, *_ = s.batch(0, range(8))
    assert lr.shape == (8, 1, 24, 24)
    assert ((hr > cfg.foreground_level).float().mean(dim=(1, 2, 3)) >= cfg.min_foreground).float().mean() >= 0.75


@pytest.mark.skipif(not BRAINLES.exists(), reason=f"real data not found at {BRAINLES}")
def test_real_nifti_volume_slices_along_all_axes_and_eval_case_excluded():
    cfg = DataConfig(sources=[str(BRAINLES)], max_items_per_source=1)
    items = sdata.load_source(BRAINLES, cfg, scale=2, min_side=96)
    assert len(items) == 1 and items[0].group == "BraTS-GLI-00001-000"
    assert {ax for ax, _ in items[0].slices} == {0, 1, 2}
    with pytest.raises(InputError):
        sdata.load_source(BRAINLES / "TCGA-DU-7294", cfg, scale=2, min_side=96)


@pytest.mark.skipif(not DICOM_T1.exists(), reason=f"real DICOM not found at {DICOM_T1}")
def test_real_dicom_series_loads_as_a_patient_volume():
    cfg = DataConfig(sources=[str(DICOM_T1)])
    items = sdata.load_source(DICOM_T1, cfg, scale=2, min_side=64)
    assert len(items) == 1
    it = items[0]
    assert it.array.shape == (35, 256, 256) and {ax for ax, _ in it.slices} == {0}
    assert it.group  # PatientID
    lr, hr, *_ = PatchSampler([items], patch_size=64, degradation=DegradationConfig(scale=2), seed=0,
                             cfg=cfg).batch(0, range(2))
    assert hr.shape == (2, 1, 64, 64) and torch.isfinite(lr).all()


def test_a_volume_the_scanner_interpolated_by_zero_filling_is_not_trained_on(shared_data, caplog):
    """The Aera T2* GRE (448×512) was zero-filled ×2 by the scanner: no detail at its own grid to learn from;
    the T1 SE and FLAIR of the same exam, and the ×2 of a real slice, are kept."""
    import logging

    from srgan.training.data import ZIP_OUTER_ENERGY, DataConfig, load_source, outer_kspace_fraction

    aera = shared_data / "extra-brain-mr" / "siemens_aera_1p5t_clinical"
    with caplog.at_level(logging.WARNING, logger="srgan.training.data"):
        items = load_source(aera, DataConfig(), scale=2, min_side=96)
    assert sorted(Path(it.path).name for it in items) == ["T1_SE_SAG.nii.gz", "T2_FLAIR_TRA.nii.gz"]
    (line,) = [r.getMessage() for r in caplog.records if "interpolated by the scanner" in r.getMessage()]
    assert "T2_GRE_TRA.nii.gz" in line
    # the measure itself: a real slice is above the line, its own zero-filled ×2 far below
    from srgan.degrade import zerofill_base

    plane = np.asarray(items[0].array, dtype=np.float32)
    plane = np.moveaxis(plane, items[0].slices[0][0], 0)[items[0].slices[0][1]]
    plane = plane[: plane.shape[0] // 2 * 2, : plane.shape[1] // 2 * 2]
    assert outer_kspace_fraction(plane) > ZIP_OUTER_ENERGY
    up = zerofill_base(torch.from_numpy(np.ascontiguousarray(plane))[None, None], 2)[0, 0].numpy()
    assert outer_kspace_fraction(up) < ZIP_OUTER_ENERGY

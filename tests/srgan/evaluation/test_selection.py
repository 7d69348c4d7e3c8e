"""Held-out selection: the held-out split is training's validation split; volumes of patients trained on are left
out; label maps are not images."""
from __future__ import annotations

import json

from srgan.evaluation import selection as S


def _link_tree(src_root, dest, names):
    for n in names:
        (dest / n).parent.mkdir(parents=True, exist_ok=True)
        (dest / n).symlink_to(src_root / n)
    return dest


def test_heldout_split_is_the_training_validation_split(shared_data, tmp_path):
    from srgan.training import data as sdata
    kaggle = shared_data / "kaggle-brain-tumor-mri"
    names = sorted(p.relative_to(kaggle).as_posix() for p in kaggle.rglob("*.jpg"))[::24]   # 10 files, 4 classes
    root = _link_tree(kaggle, tmp_path / "src", names)
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"seed": 3, "data": {"val_fraction": 0.3}}))
    for split in (S.split_config(), S.split_config(config)):
        cfg = sdata.DataConfig(val_fraction=split.val_fraction)
        groups = []
        items = sdata.load_source(root, cfg, scale=2, min_side=split.min_side, groups_out=groups)
        train_items, val_items = sdata.split(items, split.val_fraction, split.seed, all_groups=groups)
        held, trained = S.heldout_images(root, split)
        assert sorted(g for g, _ in held) == sorted(it.group for it in val_items)
        assert sorted(g for g, _ in trained) == sorted(it.group for it in train_items)
        assert not {p for _, p in held} & {p for _, p in trained}
    held_by_config = S.heldout_images(root, S.split_config(config))[0]
    assert len(held_by_config) == 3 != len(S.heldout_images(root, S.split_config())[0])


def test_held_out_images_do_not_depend_on_the_patch_size(shared_data):
    """A larger patch skips small images; that must not reshuffle which images are held out."""
    import dataclasses
    kaggle = shared_data / "kaggle-brain-tumor-mri"
    small, large = S.split_config(), dataclasses.replace(S.split_config(), min_side=400)
    held_small, trained_small = (set(p for _, p in x) for x in S.heldout_images(kaggle, small))
    held_large, trained_large = (set(p for _, p in x) for x in S.heldout_images(kaggle, large))
    assert held_small <= held_large and not held_small & trained_large
    assert len(held_large) > len(held_small)  # images under 400 px were never loaded: held out too


def test_volumes_held_out_only_if_never_trained_on(shared_data):
    split = S.split_config()
    root = shared_data / "brainles-examples"
    assert S.volume_held_out(root / "TCGA-DU-7294" / "TCGA-DU-7294_t1c_bet.nii.gz", root, split)
    assert S.volume_held_out(root / "TCGA-DU-7294" / "TCGA-DU-7294_t1c_bet.nii.gz", None, split)
    # the only other patient: a one-patient source stays in training (srgan.training.data.split)
    assert not S.volume_held_out(root / "BraTS-GLI-00001-000" / "BraTS-GLI-00001-000-t1c.nii.gz", root, split)
    # a folder of volumes may hold the label map: it is not an image to super-resolve
    assert S.looks_like_label_map(root / "TCGA-DU-7294" / "mav.nii.gz")
    assert not S.looks_like_label_map(root / "TCGA-DU-7294" / "TCGA-DU-7294_t1c_bet.nii.gz")


EXTRA = "extra-brain-mr"
UIH = "uih_umr770_3t_t1_gre_sag"


def test_volume_sources_from_bids_sidecars_else_folder_names(shared_data):
    root = shared_data / EXTRA
    uih = S.volume_source(root / UIH / "t1_gre_fsp_3d_sag_i041-120.nii.gz")
    assert uih == {"scanner": "UIH uMR 770 3T", "contrast": "t1_gre_fsp_3d_sag", "bits": "16-bit uint16",
                   "label": "UIH uMR 770 3T, t1_gre_fsp_3d_sag, 16-bit uint16",
                   "from": "t1_gre_fsp_3d_sag_i041-120.json"}
    aera = [S.volume_source(root / "siemens_aera_1p5t_clinical" / f"{n}.nii.gz")
            for n in ("T1_SE_SAG", "T2_FLAIR_TRA", "T2_GRE_TRA")]
    assert {a["scanner"] for a in aera} == {"Siemens Aera 1.5T"}           # one scanner, three contrasts
    assert [a["contrast"] for a in aera] == ["T1 SE SAG", "T2 FLAIR TRA", "T2 EG TRA"]
    assert S.volume_source(root / "philips_elitionx_3t_t1_mprage" / "ADNI_Sag3D_MPRAGE.nii.gz")["scanner"] == \
        "Philips Ingenia Elition X 3T"
    # no sidecar: the folder is the scanner, the file name's token the contrast; the dtype says 8 bits
    stroke = S.volume_source(root / "cstar_stroke_3t_8bit" / "FLAIR.nii.gz")
    assert stroke["label"] == "cstar_stroke_3t_8bit, FLAIR, 8-bit uint8" and stroke["from"] == "folder and file name"
    tcga = S.volume_source(shared_data / "brainles-examples" / "TCGA-DU-7294" / "TCGA-DU-7294_t1c_bet.nii.gz")
    assert (tcga["scanner"], tcga["contrast"]) == ("TCGA-DU-7294", "t1c")


def test_a_volume_the_run_excluded_is_held_out_and_benchmarked(shared_data, tmp_path):
    """--volumes extra-brain-mr --train-config run/config.json measures exactly what that run never trained on:
    its data.exclude and its validation share of the source."""
    from srgan.training import data as sdata
    root = shared_data / EXTRA
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"data": {"sources": [str(root)], "exclude": [UIH]}}))
    split = S.split_config(config)
    cfg = sdata.DataConfig(val_fraction=split.val_fraction, exclude=split.exclude)
    vols = sorted(root.rglob("*.nii.gz"))
    groups = sorted({sdata.group_of(p, root) for p in vols} - {UIH})
    _, val = sdata.split([S._stub_item(root / g, g) for g in groups], cfg.val_fraction, split.seed)
    never_trained = {p for p in vols if sdata.is_excluded(p, sdata.group_of(p, root), cfg)
                     or sdata.group_of(p, root) in {it.group for it in val}}
    assert UIH in {p.parent.name for p in never_trained} and len(never_trained) < len(vols)
    assert {p for p in vols if S.volume_held_out(p, root, split)} == never_trained
    # without the exclusion the UIH volume is a training volume of that source
    assert not S.volume_held_out(root / UIH / "t1_gre_fsp_3d_sag_i041-120.nii.gz", root, S.split_config())
    cases, info = S.volume_cases([root], split, max_slices=1, say=lambda _: None)
    assert {root / c.name for c in cases} == never_trained
    assert len(info["skipped_trained_on"]) == len(vols) - len(never_trained)
    uih = next(c for c in cases if c.name.startswith(UIH))
    assert uih.source == "UIH uMR 770 3T, t1_gre_fsp_3d_sag, 16-bit uint16" and len(uih.hr) == 1

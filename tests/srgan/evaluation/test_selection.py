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

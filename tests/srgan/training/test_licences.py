"""Model cards name the licence and attribution of each training source (srgan.training.licences), the extra
real brain-MR volumes of shared/data/extra-brain-mr included, as that folder's README states them."""
from __future__ import annotations

import re

from srgan.models import GENERATORS, build_generator
from srgan.models.weights import read_card
from srgan.training import data as sdata
from srgan.training import export
from srgan.training.config import TrainConfig
from srgan.training.licences import CC_BY_SA_WEIGHTS


def _card(tmp_path, sources):
    cfg = TrainConfig.from_dict({"out": str(tmp_path / "run"), "data": {"sources": [str(s) for s in sources]}})
    model = build_generator("srresnet_lite", **{**GENERATORS["srresnet_lite"].TINY, "scale": 2})
    path = export.export(model, cfg, "fidelity", step=0, validated_at_step=-1, metrics={},
                         data_card=sdata.describe([[]], [], cfg.data), kind_info={}, world=1)
    return read_card(path)


def test_a_card_of_a_run_on_extra_brain_mr_carries_its_licences(shared_data, tmp_path):
    extra = shared_data / "extra-brain-mr"
    card = _card(tmp_path, [shared_data / "kaggle-brain-tumor-mri", extra])
    lic = card["data"]["licences"]
    assert set(lic) == {"kaggle-brain-tumor-mri", "extra-brain-mr"}
    note = lic["extra-brain-mr"]
    readme = " ".join((extra / "README.md").read_text().split())   # its lines wrap inside citations
    # every licence, copyright notice and credit of the README's "Sources, licences and credits"
    for licence in ("BSD-2-Clause", "CC BY 4.0", "CC BY-SA 4.0", "MIT"):
        assert licence in readme and licence in note, licence
    for year in re.findall(r"© (\d{4} Chris Rorden)", readme):
        assert f"Copyright (c) {year}" in note
    assert len(re.findall(r"Copyright \(c\) \d{4} Chris Rorden", note)) == 3
    for credit in ("Geoffrey Bachelet", "doi:10.7937/TCIA.9YTJ-5Q73", "Sci Data 8:286", "J Digit Imaging 26:1045",
                   "Sandeep Ganji", "Shan C Young", "NIH P50 DC014664"):
        assert credit in readme and credit in note, credit
    assert note.endswith(CC_BY_SA_WEIGHTS) and "ShareAlike does not bind the weights" in note


def test_a_card_names_only_the_sources_it_was_trained_on(shared_data, tmp_path):
    card = _card(tmp_path, [shared_data / "kaggle-brain-tumor-mri"])
    assert set(card["data"]["licences"]) == {"kaggle-brain-tumor-mri"}
    assert "ShareAlike" not in str(card["data"]["licences"])

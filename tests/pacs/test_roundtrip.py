"""The issue's "done when": find a study on the PACS, retrieve it, enhance it, send the derived series, and find it
on the server again as a new DERIVED series beside the original."""
from __future__ import annotations

from pydicom import dcmread
from pydicom.dataset import Dataset

from viewer.pacs import Query, service
from viewer.pacs.dimse import DimseClient

from .conftest import uid_of

HFDR = uid_of("siemens_prisma_t1_sag_hfdr", "StudyInstanceUID")


def test_find_retrieve_enhance_send_find_derived(node, tmp_path, tiny_weights):
    from srgan.inference.engine import Enhancer
    from srgan.inference.files import enhance_path

    (study,) = [s for s in service.find(node, Query(patient_id="crlab", study_date="20220407")).studies
                if s.study_uid == HFDR]
    (original,) = study.series
    report = service.retrieve(node, study.study_uid, tmp_path / "pulled")
    assert report.done == original.n_instances == 35

    enhancer = Enhancer(scale=2, weights=tiny_weights, device="cpu", consistency="off")
    derived_dir = tmp_path / "enhanced"
    enhanced = enhance_path(tmp_path / "pulled" / study.study_uid / original.series_uid, derived_dir, enhancer)
    assert len(enhanced.written) == 35

    sent = service.send(node, derived_dir)
    assert sent.done == sent.expected == 35

    after = service.find(node, Query(study_uid=study.study_uid)).studies[0]
    assert len(after.series) == 2 and original.series_uid in {s.series_uid for s in after.series}
    (new,) = [s for s in after.series if s.series_uid != original.series_uid]
    assert new.n_instances == 35 and new.modality == "MR"
    # Ask the server (C-FIND at image level) what the new series' images are
    ident = Dataset()
    ident.QueryRetrieveLevel = "IMAGE"
    ident.StudyInstanceUID, ident.SeriesInstanceUID = study.study_uid, new.series_uid
    ident.SOPInstanceUID, ident.ImageType = "", ""
    ident.add_new(0x00280010, "US", None)  # Rows
    answers, _ = DimseClient(node)._find(ident)
    assert len(answers) == 35
    assert all(a.ImageType[0] == "DERIVED" and int(a.Rows) == 512 for a in answers)
    # and the original series is untouched beside it
    first = dcmread(sorted((tmp_path / "pulled" / study.study_uid / original.series_uid).glob("*.dcm"))[0])
    assert first.ImageType[0] == "ORIGINAL" and first.Rows == 256

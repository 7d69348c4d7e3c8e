"""The licence and attribution notes of the training data, by source folder: a model card's ``data.licences``.

:func:`licences_for` picks the entries whose folder name appears in a run's sources; ``srgan.training.export``
puts them in every exported card (``resources/weights/publish.py`` keeps them when it publishes). The notes follow
each data folder's README under ``shared/data``.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["CC_BY_SA_WEIGHTS", "DATA_LICENCES", "licences_for"]

CC_BY_SA_WEIGHTS = (
    "Weights trained on CC BY-SA images: our understanding is that trained weights are not an adaptation of the "
    "images (they do not reproduce them), so ShareAlike does not bind the weights, but we credit the source and "
    "would retrain without it if a licensor disagrees; not legal advice."
)

DATA_LICENCES: dict[str, str] = {
    "kaggle-brain-tumor-mri": "Kaggle 'Brain Tumor MRI Dataset' (Nickparvar): CC0 compilation; figshare part CC BY "
    "4.0 (Cheng et al., PLoS ONE 2015); SARTAJ and Br35H parts of unclear licence. Research use.",
    "brainles-examples": "BrainLesion tutorials (Apache-2.0 repository): BraTS-GLI-00001-000 (BraTS challenge terms; "
    "licence uncertain). TCGA-DU-7294 (TCIA TCGA-LGG, CC BY 3.0) was never trained on: it is the tumour-region "
    "evaluation case.",
    "dicom": "Public scanner DICOM from neurolabusc/dcm_qa* repositories (BSD-2-Clause).",
    "extra-brain-mr": "Nine real brain MR volumes, each set under its own licence. "
    "Philips Ingenia Elition X 3T MPRAGE (neurolabusc/dcm_qa_philips_enh; data provided by Sandeep Ganji): "
    "BSD-2-Clause, Copyright (c) 2021 Chris Rorden. "
    "UIH uMR 770 3T T1 GRE (neurolabusc/dcm_qa_uih; acquired by Shan C Young, United Imaging Healthcare): "
    "BSD-2-Clause, Copyright (c) 2018 Chris Rorden. "
    "VS-SEG-001 Siemens Avanto 1.5T T1 + gadolinium (TCIA Vestibular-Schwannoma-SEG, via niivue/niivue-demo-images; "
    "slices 17-72 kept, converted to NIfTI): CC BY 4.0; cite Shapey J, Kujawa A, Dorent R, et al. (2021) "
    "Segmentation of Vestibular Schwannoma from MRI: An Open Annotated Dataset and Baseline Algorithm [Data set], "
    "The Cancer Imaging Archive, doi:10.7937/TCIA.9YTJ-5Q73; Shapey et al., Sci Data 8:286 (2021); Clark K et al., "
    "J Digit Imaging 26:1045 (2013). "
    "Siemens Aera 1.5T clinical exam (ubermuda/mri-data): CC BY-SA 4.0, credit Geoffrey Bachelet (GitHub ubermuda). "
    "C-STAR stroke T1/T2/FLAIR (neurolabusc/VolumeRenderingData; Center for the Study of Aphasia Recovery, "
    "NIH P50 DC014664): MIT, Copyright (c) 2020 Chris Rorden. " + CC_BY_SA_WEIGHTS,
}


def licences_for(sources: Iterable[str]) -> dict[str, str]:
    """The ``DATA_LICENCES`` entries whose folder name appears in one of ``sources`` (paths as a run gives them)."""
    sources = [str(s) for s in sources]
    return {k: v for k, v in DATA_LICENCES.items() if any(k in s for s in sources)}

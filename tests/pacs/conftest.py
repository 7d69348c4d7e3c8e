"""A real Orthanc for the PACS tests: started once per session on free loopback ports with a temporary
configuration and storage, loaded with small series from ``shared/data/dicom``, stopped at the end.

It knows the calling AE title BRAINSR (and MOVESCP, the C-MOVE destination these tests start); every other calling
AE title may only echo and store. DICOMweb needs basic authentication (user ``brainsr``)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid

from viewer.pacs.orthanc import LocalOrthanc, dicomweb_plugin, free_port, orthanc_executable

REPO = Path(__file__).resolve().parents[2]
DICOM = REPO.parent / "shared" / "data" / "dicom"
SAMPLE = REPO / "resources" / "sample" / "series"
WEB_USER, WEB_PASSWORD = "brainsr", "s3cret-for-tests"

# Series uploaded at the start: folder -> number of instances
UPLOADS = {
    "siemens_prisma_t1_sag_hfs": 35,  # PatientName HFS, PatientID crlab, StudyDate 20220407
    "siemens_prisma_t1_sag_hfdr": 35,  # another study of the same volunteer
    "trio_sag_jpegls_noisepixels": 4,  # JPEG-LS lossless
    "siemens_trio_fmri_mosaic_ax_jpeg2000": 2,  # JPEG 2000 lossless
    "ge_mr750_epi_ax_mixed_2series": 300,  # one study, two series of 150
}
CHARSET_NAME = "Müller^Jörg"


def require_orthanc() -> str:
    exe = orthanc_executable()
    if exe is None:
        pytest.skip("Orthanc is not installed (apt-get install orthanc orthanc-dicomweb): PACS tests skipped")
    if not DICOM.is_dir():
        pytest.skip(f"real DICOM test data missing: {DICOM}")
    return exe


def files_of(folder: str) -> list[Path]:
    return sorted(p for p in (DICOM / folder).iterdir() if p.is_file())


def uid_of(folder: str, keyword: str) -> str:
    return str(dcmread(files_of(folder)[0], stop_before_pixels=True).get(keyword))


def make_charset_study(out: Path, patient_id: str = "CHARSET-1", accession: str = "ACC-4711",
                       description: str = "Kopf nativ", n: int = 2) -> list[Path]:
    """The first ``n`` sample files re-labelled as a Latin-1 patient with an accession number (new UIDs; the pixel
    data and everything else unchanged): for the character-set, accession and send tests."""
    out.mkdir(parents=True, exist_ok=True)
    study, series = generate_uid(), generate_uid()
    paths = []
    for src in sorted(SAMPLE.glob("*.dcm"))[:n]:
        ds = dcmread(src)
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.PatientName = CHARSET_NAME
        ds.PatientID = patient_id
        ds.AccessionNumber = accession
        ds.StudyDescription = description
        ds.StudyDate = "20190102"
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        path = out / f"{ds.SOPInstanceUID}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


@pytest.fixture(scope="session")
def move_port() -> int:
    return free_port()


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory, move_port) -> LocalOrthanc:
    require_orthanc()
    if dicomweb_plugin() is None:
        pytest.skip("the Orthanc DICOMweb plugin is not installed (apt-get install orthanc-dicomweb)")
    folder = tmp_path_factory.mktemp("orthanc")
    server = LocalOrthanc(folder, modalities={"BRAINSR": ("127.0.0.1", 11112), "MOVESCP": ("127.0.0.1", move_port)},
                          users={WEB_USER: WEB_PASSWORD})
    server.start()
    try:
        for name in UPLOADS:
            server.upload(files_of(name))
        server.upload(make_charset_study(folder / "charset"))
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def node(orthanc):
    from viewer.pacs import Node

    return Node(host="127.0.0.1", port=orthanc.dicom_port, aet=orthanc.aet, timeout=10)


@pytest.fixture(scope="session")
def web_node(orthanc):
    from viewer.pacs import Node

    return Node(url=orthanc.dicomweb_url, username=WEB_USER, password=WEB_PASSWORD, timeout=10)


@pytest.fixture(autouse=True)
def _private_cache_and_audit(tmp_path, monkeypatch):
    """Cache, audit log and node list of each test in its own temporary folder, never the user's."""
    monkeypatch.setenv("BRAINSR_PACS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("BRAINSR_PACS_AUDIT", str(tmp_path / "audit.log"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("BRAINSR_PACS_CACHE_QUOTA_MB", raising=False)
    os.environ.pop("BRAINSR_PACS_PASSWORD", None)

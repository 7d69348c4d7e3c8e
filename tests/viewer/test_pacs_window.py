"""The PACS window against a real Orthanc: Verify, search, the study's series, Retrieve into the cache, Send."""
from __future__ import annotations

import pytest

from viewer.pacs import Node
from viewer.pacs.orthanc import LocalOrthanc, orthanc_executable


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory, shared_dicom_module):
    if orthanc_executable() is None:
        pytest.skip("Orthanc is not installed (apt-get install orthanc orthanc-dicomweb): PACS window test skipped")
    server = LocalOrthanc(tmp_path_factory.mktemp("orthanc"), modalities={"BRAINSR": ("127.0.0.1", 11112)}).start()
    try:
        server.upload(sorted((shared_dicom_module / "siemens_prisma_t1_sag_hfs").glob("*.dcm")))
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def shared_dicom_module():
    from pathlib import Path

    folder = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "dicom"
    if not folder.is_dir():
        pytest.skip(f"real DICOM test data missing: {folder}")
    return folder


def test_verify_search_retrieve_send(qtbot, orthanc, tmp_path, monkeypatch):
    monkeypatch.setenv("BRAINSR_PACS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("BRAINSR_PACS_AUDIT", str(tmp_path / "audit.log"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    from viewer.pacs_window import PacsWindow

    window = PacsWindow()
    qtbot.addWidget(window)
    window.set_node(Node(name="local", host="127.0.0.1", port=orthanc.dicom_port, aet=orthanc.aet))
    with qtbot.waitSignal(window.busyChanged, check_params_cb=lambda b: not b, timeout=20000):
        window.verify_button.click()
    assert window.status.text().startswith(f"ORTHANC@127.0.0.1:{orthanc.dicom_port}: OK")
    window.q_id.setText("crlab")
    with qtbot.waitSignal(window.busyChanged, check_params_cb=lambda b: not b, timeout=20000):
        window.search_button.click()
    assert window.study_table.rowCount() == 1
    assert [window.study_table.item(0, c).text() for c in (0, 1, 3, 5, 7)] == ["HFS", "crlab", "20220407", "MR", "35"]
    assert window.series_table.rowCount() == 1 and window.series_table.item(0, 2).text() == "t1_fl2d_sag"
    with qtbot.waitSignal(window.studyRetrieved, timeout=60000) as got:
        window.retrieve_button.click()
    study_dir = got.args[0]
    assert len(list(study_dir.rglob("*.dcm"))) == 35 and window.progress.value() == 35
    assert window.status.text() == "35 images received, 0 already in the cache"
    window.save_node()
    assert (tmp_path / "config" / "brainsr" / "pacs-nodes.json").stat().st_mode & 0o077 == 0
    with qtbot.waitSignal(window.sent, timeout=60000) as sent:
        assert window.send_folder(study_dir, "HFS", "t1_fl2d_sag", confirm=False)
    assert sent.args[0].done == 35
    window.set_node(Node(name="wrong", host="127.0.0.1", port=orthanc.dicom_port, aet="NOPE"))
    with qtbot.waitSignal(window.busyChanged, check_params_cb=lambda b: not b, timeout=20000):
        window.verify_button.click()
    assert "association rejected" in window.status.text()

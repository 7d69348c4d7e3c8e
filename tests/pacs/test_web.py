"""DICOMweb against the real Orthanc (QIDO-RS, WADO-RS, STOW-RS with basic auth), and against small fake servers on
loopback for bearer tokens and malformed answers."""
from __future__ import annotations

import http.server
import json
import threading

import pytest
from pydicom import dcmread

from viewer.pacs import Node, PacsError, Query, service

from .conftest import WEB_PASSWORD, files_of, make_charset_study, uid_of

HFS = uid_of("siemens_prisma_t1_sag_hfs", "StudyInstanceUID")
GE = uid_of("ge_mr750_epi_ax_mixed_2series", "StudyInstanceUID")


def test_web_find_with_filters(web_node):
    found = service.find(web_node, Query(patient_id="crlab", study_date="20220101-20221231"))
    hfs = next(s for s in found.studies if s.study_uid == HFS)
    assert hfs.patient_name == "HFS" and hfs.modalities == ["MR"]
    assert [(s.series_uid, s.n_instances) for s in hfs.series] == [
        (uid_of("siemens_prisma_t1_sag_hfs", "SeriesInstanceUID"), 35)]
    assert GE not in {s.study_uid for s in found.studies}
    assert {s.study_uid for s in service.find(web_node, Query(patient_name="Test*")).studies} == {GE}
    capped = service.find(web_node, Query(limit=1), with_series=False)
    assert len(capped.studies) == 1 and capped.truncated


def test_web_get_stores_files_as_served(web_node, tmp_path):
    report = service.retrieve(web_node, HFS, tmp_path)
    got = sorted((tmp_path / HFS).rglob("*.dcm"))
    originals = {str(dcmread(p, stop_before_pixels=True).SOPInstanceUID): p for p in
                 files_of("siemens_prisma_t1_sag_hfs")}
    assert report.done == 35 and len(got) == 35
    assert all(f.read_bytes() == originals[f.stem].read_bytes() for f in got)  # Orthanc serves what it was given
    for f in got[:3]:
        f.unlink()
    again = service.retrieve(web_node, HFS, tmp_path)  # only the 3 missing, one WADO-RS request each
    assert (again.done, again.skipped) == (3, 32)


def test_web_send_and_read_back(orthanc, web_node, node, tmp_path):
    files = make_charset_study(tmp_path / "new", "WEB-SENT", "ACC-WEB", "sent by STOW-RS")
    study = str(dcmread(files[0]).StudyInstanceUID)
    before = orthanc.instance_count()
    assert service.send(web_node, tmp_path / "new").done == 2
    assert service.send(web_node, tmp_path / "new").done == 2  # twice: no crash, no duplicate
    assert orthanc.instance_count() == before + 2
    assert [s.n_instances for s in service.find(node, Query(study_uid=study)).studies[0].series] == [2]


def test_web_wrong_password_and_dead_server(orthanc, tmp_path):
    bad = Node(url=orthanc.dicomweb_url, username="brainsr", password=WEB_PASSWORD + "x")
    with pytest.raises(PacsError, match=r"authentication failed \(HTTP 401\)"):
        service.echo(bad)
    from viewer.pacs.orthanc import free_port

    with pytest.raises(PacsError, match="connection refused"):
        service.echo(Node(url=f"http://127.0.0.1:{free_port()}/dicom-web", timeout=2))


class _Fake(http.server.BaseHTTPRequestHandler):
    seen: list[str] = []
    body = b"[]"
    content_type = "application/dicom+json"

    def do_GET(self):  # noqa: N802 - http.server's name
        type(self).seen.append(self.headers.get("Authorization", ""))
        self.send_response(200)
        self.send_header("Content-Type", self.content_type)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


@pytest.fixture
def fake():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Fake)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Fake.seen, _Fake.body, _Fake.content_type = [], b"[]", "application/dicom+json"
    yield f"http://127.0.0.1:{server.server_address[1]}/dicom-web", _Fake
    server.shutdown()


def test_bearer_token_is_sent(fake):
    url, handler = fake
    service.echo(Node(url=url, token="tok-123"))
    assert handler.seen == ["Bearer tok-123"]


def test_malformed_and_hostile_answers_are_refused(fake, tmp_path):
    url, handler = fake
    handler.body = b"{not json"
    with pytest.raises(PacsError, match="malformed"):
        service.find(Node(url=url), Query())
    handler.body = json.dumps({"a": 1}).encode()
    with pytest.raises(PacsError, match="malformed"):
        service.find(Node(url=url), Query())
    # A series listing that points at a WADO-RS answer of garbage: refused, no series folder appears
    series = [{"0020000E": {"vr": "UI", "Value": ["1.2.3.4"]}}]
    instances = [{"00080018": {"vr": "UI", "Value": ["1.2.3.4.5"]}}]

    class Hostile(_Fake):
        def do_GET(self):  # noqa: N802
            if "/instances" in self.path and self.path.endswith("/instances") is False and "?" not in self.path:
                payload, ctype = b"--b\r\nContent-Type: application/dicom\r\n\r\nGARBAGE\r\n--b--\r\n", \
                    'multipart/related; type="application/dicom"; boundary=b'
            elif "/instances" in self.path:
                payload, ctype = json.dumps(instances).encode(), "application/dicom+json"
            elif self.path.split("?")[0].endswith("/series"):
                payload, ctype = json.dumps(series).encode(), "application/dicom+json"
            else:
                payload, ctype = b"--b\r\nContent-Type: application/dicom\r\n\r\nGARBAGE\r\n--b--\r\n", \
                    'multipart/related; type="application/dicom"; boundary=b'
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hostile)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        hostile = Node(url=f"http://127.0.0.1:{server.server_address[1]}/dicom-web")
        with pytest.raises(PacsError, match="1 of 1 images failed: a malformed dataset was refused"):
            service.retrieve(hostile, "1.2.3", tmp_path)
    finally:
        server.shutdown()
    assert not (tmp_path / "1.2.3" / "1.2.3.4").exists()

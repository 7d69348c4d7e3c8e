"""Faults: a server stopped in the middle of a retrieve, DICOM TLS with certificates made here, hostile datasets."""
from __future__ import annotations

import shutil
import subprocess
from io import BytesIO

import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid

from viewer.pacs import Node, PacsError, Query, service
from viewer.pacs.orthanc import LocalOrthanc
from viewer.pacs.receive import SeriesFolder, check_instance

from .conftest import SAMPLE, files_of, require_orthanc, uid_of

GE = uid_of("ge_mr750_epi_ax_mixed_2series", "StudyInstanceUID")


def test_server_stopped_mid_retrieve_leaves_no_half_series_and_rerun_completes(tmp_path):
    require_orthanc()
    server = LocalOrthanc(tmp_path / "orthanc", modalities={"BRAINSR": ("127.0.0.1", 11112)}).start()
    try:
        server.upload(files_of("ge_mr750_epi_ax_mixed_2series")[:150])  # one series of 150
        node = Node(host="127.0.0.1", port=server.dicom_port, aet=server.aet, timeout=5)
        series = service.find(node, Query(study_uid=GE)).studies[0].series[0].series_uid
        seen = []

        def kill_after_40(done, total):
            seen.append(done)
            if done == 40:
                server.stop(kill=True)

        with pytest.raises(PacsError, match=r"C-GET broken off|150 images failed|connection") as caught:
            service.retrieve(node, GE, tmp_path / "out", progress=kill_after_40)
        assert "Traceback" not in str(caught.value)
        final, partial = tmp_path / "out" / GE / series, tmp_path / "out" / GE / f".partial-{series}"
        assert not final.exists()  # nothing half-done is visible
        kept = len(list(partial.glob("*.dcm")))
        assert 40 <= kept < 150
        server.start()
        report = service.retrieve(node, GE, tmp_path / "out")
        assert report.done == 150 - kept and report.skipped == kept  # only what was missing
        assert len(list(final.glob("*.dcm"))) == 150 and not partial.exists()
    finally:
        server.stop()


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_certificates(folder):
    """A CA, a server certificate for 127.0.0.1 and a client certificate, all signed by the CA."""
    folder.mkdir()
    ca_key, ca = folder / "ca.key", folder / "ca.pem"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca), "-days", "2",
             "-subj", "/CN=BrainSR test CA")
    out = {"ca": str(ca)}
    for name, ext in (("server", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth"),
                      ("client", "extendedKeyUsage=clientAuth")):
        key, csr, pem, extfile = (folder / f"{name}.{s}" for s in ("key", "csr", "pem", "ext"))
        extfile.write_text(ext + "\n")
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr),
                 "-subj", f"/CN=brainsr-{name}")
        _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
                 "-out", str(pem), "-days", "2", "-extfile", str(extfile))
        out[name], out[f"{name}_key"] = str(pem), str(key)
    return out


def test_dicom_tls(tmp_path):
    require_orthanc()
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make the test certificates")
    certs = make_certificates(tmp_path / "certs")
    tls = {"certificate": certs["server"], "key": certs["server_key"], "trusted": certs["ca"], "require_client": "1"}
    server = LocalOrthanc(tmp_path / "orthanc", modalities={"BRAINSR": ("127.0.0.1", 11112)}, tls=tls).start()
    try:
        node = Node(host="127.0.0.1", port=server.dicom_port, aet=server.aet, timeout=5, tls=True,
                    tls_ca=certs["ca"], tls_cert=certs["client"], tls_key=certs["client_key"])
        assert service.echo(node) > 0
        assert service.send(node, SAMPLE).done == 28
        study = service.find(node, Query(patient_id="BRAINSR-SAMPLE")).studies[0]
        assert service.retrieve(node, study.study_uid, tmp_path / "out").done == 28
        plain = Node(host="127.0.0.1", port=server.dicom_port, aet=server.aet, timeout=3)
        with pytest.raises(PacsError, match="ORTHANC@127.0.0.1"):
            service.echo(plain)
        untrusted = Node(host="127.0.0.1", port=server.dicom_port, aet=server.aet, timeout=3, tls=True)
        with pytest.raises(PacsError, match="TLS"):  # the system CAs do not know our test CA
            service.echo(untrusted)
    finally:
        server.stop()


def _sample_bytes(**changes) -> bytes:
    ds = dcmread(sorted(SAMPLE.glob("*.dcm"))[0])
    for key, value in changes.items():
        setattr(ds, key, value)
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def test_hostile_datasets_are_refused(tmp_path):
    ds = dcmread(sorted(SAMPLE.glob("*.dcm"))[0], stop_before_pixels=True)
    study, series = str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID)
    good = _sample_bytes()
    assert str(check_instance(good, study_uid=study, series_uid=series).SOPInstanceUID) == str(ds.SOPInstanceUID)
    cases = {
        b"\x00" * 128 + b"DICM" + b"\xff" * 300: "malformed",
        b"not dicom at all": "malformed",
        _sample_bytes(StudyInstanceUID=generate_uid()): "another study",
        _sample_bytes(SeriesInstanceUID=generate_uid()): "another series",
        _sample_bytes(SOPClassUID="1.2.840.10008.1.1"): "not a storage SOP class",
        _sample_bytes(NumberOfFrames=99999, Rows=65535, Columns=65535): "absurd",
    }
    for data, why in cases.items():
        with pytest.raises(PacsError, match=why):
            check_instance(data, study_uid=study, series_uid=series)
    with pytest.raises(PacsError, match="not asked for"):
        check_instance(good, study_uid=study, sop_uids={"1.2.3"})
    bad_uid = _sample_bytes()
    bad_uid = bad_uid.replace(str(ds.SOPInstanceUID).encode(), b"../../../etc/pas"[:len(str(ds.SOPInstanceUID))]
                              .ljust(len(str(ds.SOPInstanceUID)), b"x"))
    with pytest.raises(PacsError, match="invalid SOPInstanceUID"):
        check_instance(bad_uid, study_uid=study, series_uid=series)
    folder = SeriesFolder(tmp_path, study, series)
    folder.begin()
    with pytest.raises(PacsError):
        folder.write(b"garbage")
    assert folder.write(good) == str(ds.SOPInstanceUID)
    assert (folder.partial / f"{ds.SOPInstanceUID}.dcm").read_bytes() == good  # stored unchanged
    assert not folder.final.exists()

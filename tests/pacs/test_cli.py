"""The ``brainsr-pacs`` contract against the real Orthanc: echo, find --json, get (C-GET and --move), send; one
line and a non-zero exit on failure, never a traceback."""
from __future__ import annotations

import json
import subprocess
import sys

from viewer.pacs.cli import main
from viewer.pacs.orthanc import free_port

from .conftest import REPO, SAMPLE, WEB_PASSWORD, uid_of

HFS = uid_of("siemens_prisma_t1_sag_hfs", "StudyInstanceUID")
HFS_SERIES = uid_of("siemens_prisma_t1_sag_hfs", "SeriesInstanceUID")
JLS = uid_of("trio_sag_jpegls_noisepixels", "StudyInstanceUID")


def dimse(orthanc) -> list[str]:
    return ["--node", f"127.0.0.1:{orthanc.dicom_port}", "--aet", orthanc.aet]


def test_echo_and_find_json(orthanc, capsys):
    assert main(["echo", *dimse(orthanc)]) == 0
    assert "OK" in capsys.readouterr().out
    assert main(["find", *dimse(orthanc), "--patient-id", "crlab", "--study-date", "20220407", "--modality", "MR",
                 "--json"]) == 0
    studies = json.loads(capsys.readouterr().out)
    assert {s["StudyInstanceUID"] for s in studies} == {HFS, uid_of("siemens_prisma_t1_sag_hfdr", "StudyInstanceUID")}
    hfs = next(s for s in studies if s["StudyInstanceUID"] == HFS)
    assert (hfs["PatientID"], hfs["StudyDate"], hfs["StudyDescription"], hfs["ModalitiesInStudy"]) == (
        "crlab", "20220407", "Rorden^Rorden_Prisma", ["MR"])
    assert hfs["series"] == [{"SeriesInstanceUID": HFS_SERIES, "Modality": "MR", "SeriesDescription": "t1_fl2d_sag",
                              "SeriesNumber": 3, "NumberOfSeriesRelatedInstances": 35}]
    assert main(["find", *dimse(orthanc), "--accession", "ACC-4711", "--patient-name", "M*", "--json"]) == 0
    assert [s["PatientName"] for s in json.loads(capsys.readouterr().out)] == ["Müller^Jörg"]


def test_get_layout_rerun_and_move(orthanc, move_port, tmp_path, capsys):
    out = tmp_path / "pulled"
    assert main(["get", *dimse(orthanc), "--study", HFS, "--series", HFS_SERIES, "-o", str(out)]) == 0
    assert "35 images received" in capsys.readouterr().out
    files = sorted((out / HFS / HFS_SERIES).glob("*.dcm"))
    assert len(files) == 35 and all(f.stem.startswith("1.") for f in files)
    files[0].unlink()
    assert main(["get", *dimse(orthanc), "--study", HFS, "-o", str(out)]) == 0
    assert "1 images received, 34 already present" in capsys.readouterr().out
    assert main(["get", *dimse(orthanc), "--study", JLS, "-o", str(out), "--move", "--listen", str(move_port),
                 "--local-aet", "MOVESCP", "--listen-host", "127.0.0.1"]) == 0
    assert len(list((out / JLS).rglob("*.dcm"))) == 4


def test_send_and_dicomweb(orthanc, tmp_path, capsys, monkeypatch):
    assert main(["send", *dimse(orthanc), str(SAMPLE)]) == 0
    assert "28 of 28 images sent" in capsys.readouterr().out
    monkeypatch.setenv("BRAINSR_PACS_PASSWORD", WEB_PASSWORD)
    web = ["--url", orthanc.dicomweb_url, "--user", "brainsr"]
    assert main(["find", *web, "--patient-id", "BRAINSR-SAMPLE", "--json"]) == 0
    (study,) = json.loads(capsys.readouterr().out)
    assert study["series"][0]["NumberOfSeriesRelatedInstances"] == 28
    assert main(["get", *web, "--study", study["StudyInstanceUID"], "-o", str(tmp_path)]) == 0
    assert len(list((tmp_path / study["StudyInstanceUID"]).rglob("*.dcm"))) == 28
    assert main(["send", *web, str(tmp_path / study["StudyInstanceUID"])]) == 0  # sent back again: no crash


def test_failures_are_one_line(orthanc, capsys, tmp_path):
    dead = free_port()
    assert main(["echo", "--node", f"127.0.0.1:{dead}", "--aet", "X", "--timeout", "2"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"brainsr-pacs: X@127.0.0.1:{dead}: connection refused (is the PACS running, is the port right?)"]
    assert main(["echo", "--node", f"127.0.0.1:{orthanc.dicom_port}", "--aet", "WRONG"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "association rejected" in err[0] and "Called AE title not recognised" in err[0]
    assert main(["find", "--node", f"127.0.0.1:{orthanc.dicom_port}", "--aet", orthanc.aet,
                 "--calling-aet", "STRANGER"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "STRANGER" in err[0]
    assert main(["get", *dimse(orthanc), "--study", "1.2.3.999", "-o", str(tmp_path / "out")]) == 1
    assert "not found" in capsys.readouterr().err and not (tmp_path / "out").exists()
    assert main(["echo"]) == 2 and "which node" in capsys.readouterr().err


def test_no_traceback_from_the_command(tmp_path):
    result = subprocess.run([sys.executable, "-m", "viewer.pacs.cli", "find", "--node", "127.0.0.1:1", "--aet", "A",
                             "--study-date", "2022"], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "brainsr-pacs: study date '2022': expected YYYYMMDD or YYYYMMDD-YYYYMMDD"]

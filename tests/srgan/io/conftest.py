"""Fixtures for the DICOM reader tests: the shared real series, one scan of them, dcm2niix references."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DICOM_DIR = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "dicom"


@pytest.fixture(scope="session")
def dicom_dir() -> Path:
    if not DICOM_DIR.is_dir():
        pytest.skip(f"real DICOM sample data not found at {DICOM_DIR.resolve()}")
    return DICOM_DIR.resolve()


@pytest.fixture(scope="session")
def scanned(dicom_dir):
    """One scan of all shared series: {folder name: [Series, ...]} plus the ScanResult."""
    from srgan.io.dicom_series import scan

    result = scan(dicom_dir)
    by_folder: dict[str, list] = {}
    for s in result.series:
        by_folder.setdefault(s.files[0].parent.name, []).append(s)
    return by_folder, result


def _dcm2niix() -> str | None:
    beside_python = Path(sys.executable).parent / "dcm2niix"
    if beside_python.exists() and os.access(beside_python, os.X_OK):
        return str(beside_python)  # the pip build decodes JPEG-LS; older system builds do not
    return shutil.which("dcm2niix")


@pytest.fixture(scope="session")
def dcm2niix_dir(tmp_path_factory, dicom_dir):
    """Folder → dcm2niix output folder (NIfTI named by series number), converted once per session."""
    exe = _dcm2niix()
    if exe is None:
        pytest.skip("dcm2niix is not installed; geometry cannot be compared against it")
    done: dict[str, Path] = {}

    def convert(folder: str) -> Path:
        if folder not in done:
            out = tmp_path_factory.mktemp(f"dcm2niix_{folder}")
            subprocess.run([exe, "-z", "n", "-b", "n", "-f", "%s", "-o", str(out), str(dicom_dir / folder)],
                           check=True, capture_output=True, timeout=120)
            done[folder] = out
        return done[folder]

    return convert

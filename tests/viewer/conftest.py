"""Viewer test fixtures: offscreen Qt, QSettings in a temp folder, the real series from shared/data."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data"
HFS = DATA / "dicom" / "siemens_prisma_t1_sag_hfs"
HFDR = DATA / "dicom" / "siemens_prisma_t1_sag_hfdr"


@pytest.fixture
def hfs_folder() -> Path:
    if not HFS.is_dir():
        pytest.skip(f"real DICOM test data missing: {HFS}")
    return HFS


@pytest.fixture
def hfdr_folder() -> Path:
    if not HFDR.is_dir():
        pytest.skip(f"real DICOM test data missing: {HFDR}")
    return HFDR


@pytest.fixture
def shared_dicom() -> Path:
    folder = DATA / "dicom"
    if not folder.is_dir():
        pytest.skip(f"real DICOM test data missing: {folder}")
    return folder


@pytest.fixture(scope="session")
def hfs_series():
    """The scanned HFS sagittal T1 series (35 × 256×256), shared by the tests of one session."""
    if not HFS.is_dir():
        pytest.skip(f"real DICOM test data missing: {HFS}")
    from srgan.io.dicom_series import scan

    return scan(HFS).series[0]


@pytest.fixture(autouse=True)
def _isolated_settings(tmp_path_factory, monkeypatch):
    """Keep QSettings (recent folders) out of the user's real settings."""
    try:
        from PySide6.QtCore import QSettings
    except ImportError:  # Qt-free tests still run
        yield
        return
    folder = tmp_path_factory.mktemp("qsettings")
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(folder))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(folder))
    yield

"""The viewer on the robustness suite's corrupted folders: opening one never raises an unhandled exception, the
intact file beside the damaged one is shown, and the damaged file is either shown or named in the scan problems.

The scan runs on the viewer's own scanner thread and every slice of the result is decoded as the viewer's slice
loader decodes it, so a file the scan accepted but cannot be decoded must fail with a message, not a traceback.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from srgan.errors import InputError
from tests.robustness.test_robustness import CORRUPTIONS, DICOM, SAMPLE, SOURCES, _rng

pytest.importorskip("pytestqt")


def _cases(sample: list[str]):
    return [pytest.param(name, id=name, marks=[] if name in sample else [pytest.mark.robustness_full])
            for name in CORRUPTIONS]


@pytest.mark.parametrize("name", _cases(SAMPLE))
def test_viewer_opens_a_corrupted_folder_and_names_the_bad_file(qtbot, tmp_path, name):
    from viewer.model import problem_lines
    from viewer.workers import FolderScanner

    folder, n = SOURCES["prisma"]
    files = sorted(p for p in (DICOM / folder).iterdir() if p.is_file() and not p.name.endswith((".md", "SUMS")))[:n]
    src = tmp_path / "in"
    src.mkdir()
    try:
        bad = CORRUPTIONS[name](files[0].read_bytes(), _rng(f"prisma-{name}"))
    except (AssertionError, ValueError, TypeError) as e:
        pytest.skip(f"{name} does not apply to {folder}: {e}")
    (src / "bad.dcm").write_bytes(bad)
    for f in files[1:]:
        shutil.copy(f, src / f.name)
    scanner = FolderScanner(src)
    results, failures = [], []
    scanner.scanned.connect(lambda _folder, result: results.append(result))
    scanner.failed.connect(lambda _folder, message: failures.append(message))
    with qtbot.waitSignal(scanner.finished, timeout=60_000):
        scanner.start()
    assert not failures, failures  # the intact file makes the folder openable
    (result,) = results
    shown = [Path(f).name for s in result.series for f in s.files]
    assert files[1].name in shown
    lines = problem_lines(result)
    assert all("\n" not in line and "Traceback" not in line for line in lines)
    if "bad.dcm" not in shown:
        assert any("bad.dcm" in line for line in lines), lines
    for s in result.series:  # the slice loader's decode: an image or one clear InputError
        for v in range(s.shape[0]):
            for k in range(s.shape[1]):
                try:
                    image = s.pixels(v, k)
                except InputError as e:
                    assert "\n" not in str(e)
                else:
                    assert image.ndim == 2

"""The derived writer's read-ahead: slices of several files share one enhancer call when the enhancer says they
fit one batch (``rows_per_call``), and the files written are the same as one call per file; on the real bundled
×2 model too."""

from pathlib import Path

import numpy as np
import pydicom
import pytest

from srgan.io.dicom_derived import LOOKAHEAD, write_derived_series
from srgan.io.dicom_series import scan
from srgan.provenance import Provenance

DATA = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "dicom"
SERIES = DATA / "siemens_prisma_t1_sag_hfs"
PROV = Provenance(model="nearest", weights_name="test-weights", weights_sha256="ab" * 32, scale=2)


def nearest(stack: np.ndarray) -> np.ndarray:
    return np.kron(stack, np.ones((1, 2, 2), np.float32))


class Batching:
    """Enhancer-like: nearest ×2, ``rows`` slices per call, recording each call's keys."""

    def __init__(self, rows: int | None):
        self.rows, self.calls = rows, []

    def plan_series(self, series):
        return "plan"

    def rows_per_call(self, shape):
        assert tuple(shape) == (256, 256)
        return self.rows

    def enhance_stack(self, stack, plan=None, *, keys=None, cancel=None):
        assert plan == "plan" and len(keys) == len(stack)
        self.calls.append(list(keys))
        return nearest(stack)


def _pixels(report) -> list[np.ndarray]:
    return [pydicom.dcmread(f).pixel_array for f in report.files]


@pytest.fixture(scope="module")
def series():
    if not SERIES.is_dir():
        pytest.skip(f"real DICOM data not found at {SERIES}")
    (s,) = scan(SERIES).series
    return s


@pytest.mark.parametrize("rows", [4, 64])
def test_files_share_calls_and_write_the_same(series, tmp_path, rows):
    one = write_derived_series(series, nearest, tmp_path / "one", scale=2, provenance=PROV)
    enhancer = Batching(rows)
    seen = []
    report = write_derived_series(
        series, enhancer, tmp_path / "many", scale=2, provenance=PROV, progress=lambda d, n: seen.append(d)
    )
    per_call = min(rows, LOOKAHEAD)
    sizes = [per_call] * (35 // per_call) + ([35 % per_call] if 35 % per_call else [])
    assert [len(keys) for keys in enhancer.calls] == sizes
    assert [k for keys in enhancer.calls for k in keys] == [(0, s) for s in range(35)]
    assert seen == list(range(1, 36))
    assert len(report.files) == len(one.files) == 35
    for a, b in zip(_pixels(report), _pixels(one)):
        np.testing.assert_array_equal(a, b)


def test_real_model_batched_across_files_writes_the_same(series, tmp_path, monkeypatch):
    from srgan.inference.engine import Enhancer

    files = sorted(series.files)[10:16]
    folder = tmp_path / "src"
    folder.mkdir()
    for f in files:
        (folder / f.name).symlink_to(f)
    (part,) = scan(folder).series
    enhancer = Enhancer(scale=2, device="cpu", consistency="off")
    assert enhancer.rows_per_call((256, 256)) == 1  # a large slice goes alone
    alone = write_derived_series(part, enhancer, tmp_path / "alone", scale=2, provenance=enhancer.provenance)
    monkeypatch.setattr(enhancer, "rows_per_call", lambda shape: 3)
    calls = []
    real = enhancer.enhance_stack

    def counting(stack, plan=None, **kw):
        calls.append(len(stack))
        return real(stack, plan, **kw)

    monkeypatch.setattr(enhancer, "enhance_stack", counting)
    together = write_derived_series(part, enhancer, tmp_path / "together", scale=2, provenance=enhancer.provenance)
    assert calls == [3, 3]
    for a, b in zip(_pixels(together), _pixels(alone)):
        np.testing.assert_array_equal(a, b)

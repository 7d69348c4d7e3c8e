"""``srgan enhance`` of a DICOM folder tree under ``torchrun`` (2 ranks, CPU, gloo): the ranks share the series,
the outputs are those of one process, rank 0 prints the one summary, and a re-run skips the finished series."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest

from srgan.inference.files import Shard

REPO = Path(__file__).resolve().parents[2]
SERIES = ["trio_sag_jpegls_noisepixels", "siemens_trio_epi_mosaic_cor", "siemens_vida_xa10_enhanced_fmri_phantom"]


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}
    for k in ("RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=REPO)


def _images(root: Path) -> dict[str, np.ndarray]:
    return {
        str(p.relative_to(root)): pydicom.dcmread(p).pixel_array
        for p in sorted(root.rglob("*.dcm"))
        if not any(part.startswith(".") for part in p.relative_to(root).parts)
    }


def test_shard_from_env():
    assert Shard.from_env({}) is None
    shard = Shard.from_env({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2"})
    assert shard == Shard(1, 2, 2) and shard.threads(3) == 3 and shard.threads(None) >= 1


def test_two_ranks_write_what_one_process_writes(shared_data, tiny_weights, tmp_path):
    torchrun = Path(sys.executable).parent / "torchrun"
    if not torchrun.exists():
        pytest.skip("torchrun is not installed beside this Python")
    tree = tmp_path / "archive"
    for i, name in enumerate(SERIES):
        (tree / f"patient{i}").mkdir(parents=True)
        shutil.copytree(shared_data / "dicom" / name, tree / f"patient{i}" / name)
    args = ["enhance", str(tree), "--scale", "2", "--weights", str(tiny_weights), "--threads", "1"]
    one = _run([sys.executable, "-m", "srgan.cli", *args, "-o", str(tmp_path / "one")])
    assert one.returncode == 0, one.stderr
    cmd = [str(torchrun), "--standalone", "--nproc-per-node", "2", "-m", "srgan.cli", *args]
    cmd += ["-o", str(tmp_path / "two")]
    two = _run(cmd)
    assert two.returncode == 0, two.stderr
    assert two.stdout.count("file(s) written to") == 1, two.stdout  # one summary, by rank 0
    a, b = _images(tmp_path / "one"), _images(tmp_path / "two")
    assert a.keys() == b.keys() and len({k.split("/")[0] for k in a}) == len(SERIES)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    n = len(b)
    assert f"{n} file(s) written" in two.stdout
    # both ranks did a share: every other series of the sorted list
    reports = sorted((tmp_path / "two").glob(".srgan-enhance-rank*.json"))
    assert [p.name for p in reports] == [".srgan-enhance-rank0.json", ".srgan-enhance-rank1.json"]
    shares = [{Path(f).relative_to(tmp_path / "two").parts[0] for f in json.loads(p.read_text())["written"]}
              for p in reports]
    names = sorted({k.split("/")[0] for k in a})
    assert shares == [set(names[0::2]), set(names[1::2])]

    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "two").rglob("*.dcm")}
    again = _run(cmd)
    assert again.returncode == 0, again.stderr
    assert again.stderr.count("already finished, skipped") == len(SERIES), again.stderr
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "two").rglob("*.dcm")} == before

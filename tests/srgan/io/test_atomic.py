import pytest

from srgan.errors import InputError
from srgan.io import atomic


def test_failure_leaves_old_file_and_no_temporary(tmp_path):
    dest = tmp_path / "out.nii.gz"
    dest.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic.atomic_path(dest) as tmp:
            assert tmp.parent == tmp_path and tmp.name.endswith(".nii.gz")
            tmp.write_text("half")
            raise RuntimeError("disk full")
    assert dest.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.nii.gz"]


def test_success_replaces(tmp_path):
    atomic.write_text(tmp_path / "a.json", "{}")
    atomic.write_bytes(tmp_path / "b.bin", b"\x00\x01")
    assert (tmp_path / "a.json").read_text() == "{}" and (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert len(list(tmp_path.iterdir())) == 2


def test_output_gets_ordinary_permissions(tmp_path):
    import os
    import stat

    old = os.umask(0o022)
    try:
        atomic.write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o644


# ------------------------------------------------------------------------------------------------ folders


def test_check_new_folder_refuses_busy_outputs_and_the_source(tmp_path, monkeypatch):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.dcm").write_bytes(b"x")
    for out in (src, src / "derived", src / "a" / "b"):
        with pytest.raises(InputError, match="inside the source folder"):
            atomic.check_new_folder(out, sources=[src])
        with pytest.raises(InputError, match="inside the source folder"):
            atomic.check_new_folder(out, sources=[src / "a.dcm"])   # a source file stands for its folder
    (tmp_path / "link").symlink_to(src)
    with pytest.raises(InputError, match="inside the source folder"):
        atomic.check_new_folder(tmp_path / "link" / "out", sources=[src])
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    with pytest.raises(InputError, match="not empty"):
        atomic.check_new_folder(busy, sources=[src])
    assert atomic.check_new_folder(busy, accept=lambda p: (p / "keep.txt").is_file()) == busy
    with pytest.raises(InputError, match="file"):
        atomic.check_new_folder(busy / "keep.txt")
    (tmp_path / "empty").mkdir()
    assert atomic.check_new_folder(tmp_path / "empty", sources=[src]) == tmp_path / "empty"
    monkeypatch.chdir(tmp_path)
    assert atomic.check_new_folder("new", sources=["src"]) == tmp_path / "new"      # relative in, absolute out
    with pytest.raises(InputError, match="inside the source folder"):
        atomic.check_new_folder("src/out", sources=[src])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busy", "empty", "link", "src"]


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_interrupted_folder_build_leaves_nothing(tmp_path, error):
    with pytest.raises(error):
        with atomic.atomic_folder(tmp_path / "out") as tmp:
            assert tmp.parent == tmp_path and tmp.name.startswith(".out.") and tmp.name.endswith(".partial")
            (tmp / "sub").mkdir()
            (tmp / "sub" / "half.dcm").write_bytes(b"half")
            raise error()
    assert list(tmp_path.iterdir()) == []


def test_folder_appears_complete(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with atomic.atomic_folder("deep/out") as tmp:         # relative: the yielded folder is absolute
        assert tmp.is_absolute() and not (tmp_path / "deep" / "out").exists()
        (tmp / "a.txt").write_text("a")
    assert [p.name for p in (tmp_path / "deep").iterdir()] == ["out"]
    assert (tmp_path / "deep" / "out" / "a.txt").read_text() == "a"
    (tmp_path / "empty").mkdir()
    with atomic.atomic_folder(tmp_path / "empty") as tmp:
        (tmp / "b.txt").write_text("b")
    assert [p.name for p in (tmp_path / "empty").iterdir()] == ["b.txt"]


def test_a_busy_folder_is_replaced_only_when_asked(tmp_path):
    out = tmp_path / "report"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(InputError, match="not empty"):
        with atomic.atomic_folder(out) as tmp:
            (tmp / "new.txt").write_text("new")
    assert [p.name for p in out.iterdir()] == ["old.txt"] and [p.name for p in tmp_path.iterdir()] == ["report"]
    with atomic.atomic_folder(out, replace=True) as tmp:
        (tmp / "new.txt").write_text("new")
    assert [p.name for p in out.iterdir()] == ["new.txt"] and [p.name for p in tmp_path.iterdir()] == ["report"]

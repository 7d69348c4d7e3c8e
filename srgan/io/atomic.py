"""Atomic output: write to a temporary name beside the destination, rename over it when complete.

A crash, a full disk or an exception mid-write then leaves either the old file or none, never half a file.
The temporary name keeps the destination's suffix, because writers such as nibabel and Pillow pick the format
from it. Folders (a derived DICOM series, a report) are built the same way in a hidden sibling folder
(:func:`atomic_folder`), after :func:`check_new_folder` has said the destination may receive them.

Paths are made absolute once, here, so a relative destination and the absolute paths of what is written in it
never meet (``Path.relative_to`` refuses to mix them).
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from srgan.errors import InputError


def _suffix(dest: Path) -> str:
    return ".nii.gz" if dest.name.lower().endswith(".nii.gz") else dest.suffix


@contextmanager
def atomic_path(dest: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; on leaving the block without an exception it replaces ``dest``,
    otherwise it is deleted."""
    dest = Path(dest)
    # Not mkstemp: the writer creates the file, so it gets the user's usual permissions (umask), not 0600.
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:12]}.tmp{_suffix(dest)}")
    try:
        yield tmp
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(dest: str | Path, data: bytes) -> None:
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)


def write_text(dest: str | Path, text: str) -> None:
    with atomic_path(dest) as tmp:
        tmp.write_text(text, encoding="utf-8")


def check_new_folder(
    output: str | Path, sources: Iterable[str | Path] = (), *, accept: Callable[[Path], bool] | None = None
) -> Path:
    """``output`` as an absolute path if a new folder may be built there, else :class:`InputError` naming it.

    Refused: an existing file; an existing folder that is not empty (unless ``accept(folder)`` says it may be
    replaced as a whole, e.g. an earlier report); the folder of any of ``sources`` or a folder inside it (a source
    file stands for its folder; compared on resolved paths, so links do not get around it): inputs are never
    touched, and a rescan of the source must not find the output in it.
    """
    out = Path(os.path.abspath(output))
    real = Path(os.path.realpath(out))
    folders = set()
    for src in sources:
        p = Path(src)
        folders.add(Path(os.path.realpath(p if p.is_dir() else p.parent)))
    for folder in folders:
        if real == folder or folder in real.parents:
            raise InputError(
                output,
                "refusing to write inside the source folder (or into it); choose another "
                "folder so the original images stay untouched",
            )
    if out.is_file() or (out.exists() and not out.is_dir()):
        raise InputError(output, "exists and is a file, not a folder; choose a new or empty folder")
    if out.is_dir() and any(out.iterdir()) and not (accept is not None and accept(out)):
        raise InputError(output, "the output folder already exists and is not empty; choose a new or empty one")
    return out


_PARTIAL = re.compile(r"^\.(?P<name>.+)\.(?:(?P<pid>\d+)-)?[0-9a-f]{12}\.partial$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, another user's
        return True
    return True


def clean_stale_partials(output: str | Path) -> list[Path]:
    """Remove the hidden ``.NAME.<pid>-<random>.partial`` folders an interrupted (killed) run into ``output`` left
    beside it, and return them: those whose process is gone (and those of the format before the process id was in
    the name). A run still in progress, this one included, keeps its own. Nothing else is touched."""
    out = Path(os.path.abspath(output))
    removed: list[Path] = []
    if not out.parent.is_dir():
        return removed
    for entry in out.parent.iterdir():
        m = _PARTIAL.match(entry.name)
        if m is None or m["name"] != out.name or not entry.is_dir() or entry.is_symlink():
            continue
        pid = m["pid"]
        if pid is not None and (int(pid) == os.getpid() or _alive(int(pid))):
            continue
        shutil.rmtree(entry, ignore_errors=True)
        if not entry.exists():
            removed.append(entry)
    return removed


@contextmanager
def atomic_folder(output: str | Path, *, replace: bool = False) -> Iterator[Path]:
    """Yield a new hidden folder beside ``output`` (``.NAME.<pid>-<random>.partial``) to build in; on leaving the block
    without an exception it is renamed to ``output``, otherwise it is deleted with everything in it (also on
    KeyboardInterrupt or a cancel): ``output`` then appears complete or not at all.

    ``output`` may be missing or an empty folder; an existing non-empty folder is replaced only with ``replace``
    (moved aside, the new one renamed in, the old one deleted; if the rename fails the old one is put back).
    Parent folders are created. The temporary folder gets the user's usual permissions (umask), not 0700. Stale
    partial folders of an interrupted earlier run into ``output`` are removed first (:func:`clean_stale_partials`).
    """
    out = Path(os.path.abspath(output))
    out.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_partials(out)
    tmp = out.parent / f".{out.name}.{os.getpid()}-{uuid.uuid4().hex[:12]}.partial"
    tmp.mkdir()
    try:
        yield tmp
        _swap_in(tmp, out, replace)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _swap_in(tmp: Path, out: Path, replace: bool) -> None:
    if not (out.is_dir() and not out.is_symlink()):
        os.replace(tmp, out)  # a missing output (a file there is refused by os.replace: IsADirectoryError)
        return
    if not any(out.iterdir()):
        out.rmdir()  # not os.replace over it: Windows refuses to replace a folder
        os.replace(tmp, out)
        return
    if not replace:
        raise InputError(out, "the output folder already exists and is not empty; choose a new or empty one")
    old = out.parent / f".{out.name}.{uuid.uuid4().hex[:12]}.old"
    os.replace(out, old)
    try:
        os.replace(tmp, out)
    except BaseException:
        os.replace(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)

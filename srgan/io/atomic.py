"""Atomic file output: write to a temporary name beside the destination, rename over it when complete.

A crash, a full disk or an exception mid-write then leaves either the old file or none, never half a file.
The temporary name keeps the destination's suffix, because writers such as nibabel and Pillow pick the format
from it.
"""
from __future__ import annotations

import os
import uuid
from contextlib import contextmanager
from pathlib import Path


def _suffix(dest: Path) -> str:
    return ".nii.gz" if dest.name.lower().endswith(".nii.gz") else dest.suffix


@contextmanager
def atomic_path(dest: str | Path):
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

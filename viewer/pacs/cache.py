"""The study cache: retrieved studies under the user's data folder, one folder per study, readable by the user
only (0700), within a size quota. Series appear only when complete (see ``receive.SeriesFolder``)."""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

DEFAULT_QUOTA = 20 * 1024**3


def data_home() -> Path:
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")


def cache_root() -> Path:
    """``$BRAINSR_PACS_CACHE``, else ``$XDG_DATA_HOME/brainsr/pacs-cache`` (``~/.local/share/…``)."""
    override = os.environ.get("BRAINSR_PACS_CACHE")
    return Path(override) if override else data_home() / "brainsr" / "pacs-cache"


def folder_size(folder: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total


@dataclass
class CachedStudy:
    study_uid: str
    path: Path
    series: dict[str, int]  # complete series UID -> number of files
    partial: int  # series still incomplete
    size: int


class StudyCache:
    def __init__(self, root: Path | None = None, quota: int | None = None) -> None:
        self.root = Path(root) if root else cache_root()
        env_quota = os.environ.get("BRAINSR_PACS_CACHE_QUOTA_MB")
        self.quota = quota if quota is not None else (int(env_quota) * 1024**2 if env_quota else DEFAULT_QUOTA)

    def ensure(self) -> Path:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.root, 0o700)
        return self.root

    def size(self) -> int:
        return folder_size(self.root) if self.root.is_dir() else 0

    def studies(self) -> list[CachedStudy]:
        if not self.root.is_dir():
            return []
        out = []
        for study in sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            series = {s.name: sum(1 for f in s.iterdir() if f.name.endswith(".dcm"))
                      for s in study.iterdir() if s.is_dir() and not s.name.startswith(".")}
            partial = sum(1 for s in study.iterdir() if s.name.startswith(".partial-"))
            out.append(CachedStudy(study.name, study, series, partial, folder_size(study)))
        return out

    def study_path(self, study_uid: str) -> Path:
        return self.root / study_uid

    def clear(self, study_uid: str | None = None) -> None:
        """Remove one study, or everything."""
        if study_uid is not None:
            shutil.rmtree(self.root / study_uid, ignore_errors=True)
        elif self.root.is_dir():
            for child in self.root.iterdir():
                if child.is_dir():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    child.unlink()

"""The audit log: one JSON line per retrieve or send — when, which node, what (UIDs and counts), the outcome.
Patient names and other demographics are never written."""
from __future__ import annotations

import json
import os
import threading
from datetime import datetime, timezone
from pathlib import Path

from .cache import data_home

_LOCK = threading.Lock()


def audit_path() -> Path:
    """``$BRAINSR_PACS_AUDIT``, else ``<data folder>/brainsr/pacs-audit.log``."""
    override = os.environ.get("BRAINSR_PACS_AUDIT")
    return Path(override) if override else data_home() / "brainsr" / "pacs-audit.log"


def audit(action: str, node: str, *, outcome: str = "ok", **details: object) -> None:
    """Append one record. ``details`` are UIDs, counts and folders; a failure to write the log never breaks the
    transfer it records."""
    record = {"time": datetime.now(timezone.utc).isoformat(timespec="seconds"), "action": action, "node": node,
              "outcome": outcome, **details}
    path = audit_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with _LOCK:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(fd, "a") as f:
                f.write(json.dumps(record, sort_keys=True) + "\n")
    except OSError:
        pass


def read_audit(path: Path | None = None) -> list[dict[str, object]]:
    try:
        return [json.loads(line) for line in (path or audit_path()).read_text().splitlines() if line.strip()]
    except (OSError, ValueError):
        return []

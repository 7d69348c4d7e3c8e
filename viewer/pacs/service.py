"""What the CLI and the viewer call: verify, find, retrieve (into a folder or the study cache) and send, the same
over DIMSE and DICOMweb. Retrieval asks the node which instances each series holds, fetches only those missing from
the destination, and renames each series into place when complete; every retrieve and send is audited."""
from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from pydicom import dcmread
from pydicom.errors import InvalidDicomError

from .audit import audit
from .cache import StudyCache
from .dimse import DimseClient
from .errors import Cancelled, PacsError
from .models import FindResult, Query, TransferReport, valid_uid
from .nodes import Node
from .receive import Budget, SeriesFolder
from .web import WebClient

# progress(done, total) — called from the transfer's own threads
Progress = Callable[[int, int], None]
Client = DimseClient | WebClient


def client_for(node: Node) -> Client:
    return WebClient(node) if node.is_web else DimseClient(node)


def echo(node: Node) -> float:
    return client_for(node).echo()


def find(node: Node, query: Query, with_series: bool = True) -> FindResult:
    return client_for(node).find(query, with_series=with_series)


class _Counter:
    def __init__(self, total: int, progress: Progress | None) -> None:
        self.done, self.total, self.progress = 0, total, progress
        self._lock = threading.Lock()

    def __call__(self, n: int) -> None:
        with self._lock:
            self.done += n
            done = self.done
        if self.progress is not None:
            self.progress(done, self.total)


def retrieve(node: Node, study_uid: str, dest: Path, *, series_uids: list[str] | None = None,
             move: tuple[str, int, str] | None = None, progress: Progress | None = None,
             cancel: threading.Event | None = None, budget: Budget | None = None) -> TransferReport:
    """Fetch a study (or some of its series) into ``dest/<study>/<series>/<sop>.dcm``.

    ``move=(local AE title, port, bind host)`` uses C-MOVE to a storage SCP started here; otherwise C-GET (DIMSE) or
    WADO-RS (DICOMweb). Raises ``PacsError`` naming the node when anything failed (``.report`` holds the counts)."""
    if not valid_uid(study_uid) or any(not valid_uid(s) for s in series_uids or []):
        raise PacsError("invalid study or series UID")
    if move is not None and node.is_web:
        raise PacsError("C-MOVE needs a DIMSE node (--node/--aet), not a DICOMweb URL")
    client = client_for(node)
    action = "web-get" if node.is_web else ("move" if move else "get")
    report = TransferReport(node.label, action, study_uids=[study_uid])
    try:
        series = client.find_series(study_uid)
        if series_uids:
            series = [s for s in series if s.series_uid in series_uids]
            unknown = set(series_uids) - {s.series_uid for s in series}
            if unknown:
                raise PacsError(f"{node.label}: series {sorted(unknown)[0]} not found in study {study_uid}")
        if not series:
            raise PacsError(f"{node.label}: study {study_uid} not found (or it holds no series)")
        budget = budget or Budget()
        plans = []
        for s in series:
            expected = set(client.find_instances(study_uid, s.series_uid))
            folder = SeriesFolder(Path(dest), study_uid, s.series_uid, budget)
            have = folder.present() & expected
            plans.append((folder, expected, have))
            report.series_uids.append(s.series_uid)
            report.expected += len(expected)
            report.skipped += len(have)
        counter = _Counter(report.expected - report.skipped, progress)
        errors: list[str] = []
        for folder, expected, have in plans:
            if not expected:
                report.warnings.append(f"series {folder.series_uid} has no instances on the node")
                continue
            if have == expected:
                if not folder.complete() >= expected:
                    folder.begin()
                    folder.commit()
                report.folders.append(str(folder.final))
                continue
            folder.begin()
            missing = expected - folder.present()
            errors += client.fetch(folder, None if not have else missing, expected, progress=counter,
                                   cancel=cancel, move=move)
            report.done += folder.received
            got = folder.present() & expected
            if got >= expected:
                folder.commit()
                report.folders.append(str(folder.final))
            else:
                report.failed += len(expected - got)
        if report.failed:
            detail = f": {errors[0]}" if errors else ""
            raise PacsError(f"{node.label}: {report.failed} of {report.expected - report.skipped} images failed"
                            f"{detail} (run it again to fetch only what is missing)")
    except PacsError as exc:
        report.warnings.append(str(exc))
        audit(action, node.label, outcome="cancelled" if isinstance(exc, Cancelled) else "failed",
              study=study_uid, series=report.series_uids, expected=report.expected, received=report.done,
              already_present=report.skipped, failed=report.failed, destination=str(dest))
        exc.report = report  # type: ignore[attr-defined]
        raise
    audit(action, node.label, study=study_uid, series=report.series_uids, expected=report.expected,
          received=report.done, already_present=report.skipped, failed=0, destination=str(dest))
    return report


def retrieve_to_cache(node: Node, study_uid: str, cache: StudyCache | None = None, **kwargs: object) -> TransferReport:
    """``retrieve`` into the study cache (0700, within its quota)."""
    cache = cache or StudyCache()
    root = cache.ensure()
    return retrieve(node, study_uid, root, budget=Budget(cache.size(), cache.quota), **kwargs)  # type: ignore[arg-type]


def scan_files(folder: Path) -> tuple[list[tuple[Path, str, str, str, str]], int]:
    """Every DICOM file under ``folder``: ``(path, SOP class, transfer syntax, study UID, series UID)``, plus the
    number of other files skipped."""
    items, skipped = [], 0
    paths = [folder] if folder.is_file() else sorted(p for p in folder.rglob("*") if p.is_file())
    for path in paths:
        if path.name.startswith(".") or any(part.startswith(".partial-") for part in path.parts):
            skipped += 1
            continue
        try:
            ds = dcmread(path, stop_before_pixels=True)
            sop, ts = str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID)
            items.append((path, sop, ts, str(ds.get("StudyInstanceUID", "")), str(ds.get("SeriesInstanceUID", ""))))
        except (InvalidDicomError, AttributeError, KeyError, ValueError, TypeError, OSError, EOFError):
            skipped += 1
    return items, skipped


def send(node: Node, path: Path, *, progress: Progress | None = None,
         cancel: threading.Event | None = None) -> TransferReport:
    """Send every DICOM file under ``path`` as stored (C-STORE or STOW-RS)."""
    path = Path(path)
    if not path.exists():
        raise PacsError(f"{path}: no such file or folder")
    items, skipped = scan_files(path)
    if not items:
        raise PacsError(f"{path}: no DICOM files to send")
    report = TransferReport(node.label, "send", study_uids=sorted({i[3] for i in items}),
                            series_uids=sorted({i[4] for i in items}), expected=len(items))
    if skipped:
        report.warnings.append(f"{skipped} non-DICOM file(s) skipped")
    counter = _Counter(len(items), progress)
    try:
        failures = client_for(node).send([(p, sop, ts) for p, sop, ts, _st, _se in items], progress=counter,
                                         cancel=cancel)
        report.failed = len(failures)
        report.done = len(items) - report.failed
        if failures:
            raise PacsError(f"{node.label}: {len(failures)} of {len(items)} images failed to send ({failures[0]})")
    except PacsError as exc:
        report.warnings.append(str(exc))
        audit("send", node.label, outcome="cancelled" if isinstance(exc, Cancelled) else "failed",
              studies=report.study_uids, series=report.series_uids, files=len(items), sent=report.done,
              failed=report.failed, source=str(path))
        exc.report = report  # type: ignore[attr-defined]
        raise
    audit("send", node.label, studies=report.study_uids, series=report.series_uids, files=len(items),
          sent=report.done, failed=0, source=str(path))
    return report

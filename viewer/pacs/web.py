"""The DICOMweb transport: QIDO-RS queries (dicomweb-client), WADO-RS retrieval and STOW-RS storage over the same
``requests`` session, so files travel byte for byte (any transfer syntax the server stores, ``transfer-syntax=*``).
Basic (username/password) or bearer-token authentication; HTTPS verifies the server against the configured CA."""
from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import requests
from dicomweb_client.api import DICOMwebClient
from pydicom.datadict import tag_for_keyword

from .errors import Cancelled, PacsError
from .models import FindResult, Query, SeriesInfo, StudyInfo
from .nodes import Node
from .receive import MAX_INSTANCE_BYTES, SeriesFolder

Progress = Callable[[int], None]
ACCEPT_DICOM = 'multipart/related; type="application/dicom"; transfer-syntax=*'
STOW_BATCH_BYTES = 64 * 1024**2
QIDO_PAGE = 1000
MAX_SERIES_INSTANCES = 200_000


def _tag(keyword: str) -> str:
    tag = tag_for_keyword(keyword)
    assert tag is not None, keyword
    return f"{tag:08X}"


def _value(item: dict, keyword: str) -> object:
    values = item.get(_tag(keyword), {}).get("Value") if isinstance(item, dict) else None
    if not values:
        return None
    first = values[0]
    if isinstance(first, dict):  # person name
        return str(first.get("Alphabetic", ""))
    return values if len(values) > 1 else first


def _text(item: dict, keyword: str) -> str:
    value = _value(item, keyword)
    return "" if value is None else str(value)


def _int(item: dict, keyword: str) -> int | None:
    try:
        value = _value(item, keyword)
        return int(value) if value is not None else None  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None


def _list(item: dict, keyword: str) -> list[str]:
    value = _value(item, keyword)
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def iter_parts(response: requests.Response, limit: int = MAX_INSTANCE_BYTES) -> Iterator[bytes]:
    """The bodies of a ``multipart/related`` response, streamed; a part above ``limit`` bytes is refused."""
    content_type = response.headers.get("Content-Type", "")
    media, *params = [p.strip() for p in content_type.split(";")]
    if media.lower() == "application/dicom":
        yield response.content
        return
    boundary = next((p.partition("=")[2].strip('"') for p in params if p.lower().startswith("boundary=")), "")
    if media.lower() != "multipart/related" or not boundary:
        raise PacsError(f"malformed WADO-RS response (Content-Type {content_type[:80]!r})")
    delimiter = b"\r\n--" + boundary.encode()
    buffer = bytearray(b"\r\n")  # so that the first boundary is found like the others
    started = False
    for chunk in response.iter_content(chunk_size=1 << 20):
        buffer += chunk
        while True:
            at = buffer.find(delimiter)
            if at < 0:
                if len(buffer) > limit + 4096:
                    raise PacsError(f"a WADO-RS part above {limit / 1024**3:.0f} GiB was refused")
                break
            part = bytes(buffer[:at])
            del buffer[:at + len(delimiter)]
            if started:
                head, sep, body = part.partition(b"\r\n\r\n")
                if not sep:
                    raise PacsError("malformed WADO-RS response (a part without headers)")
                yield body
            started = True
            if buffer.startswith(b"--"):
                return
    if started:
        raise PacsError("malformed WADO-RS response (truncated: no closing boundary)")
    raise PacsError("malformed WADO-RS response (no multipart boundary found)")


class _Session(requests.Session):
    """Keeps QIDO wildcards literal in the query string: ``*`` is a legal query character (RFC 3986) and some
    servers (Orthanc 1.10) do not decode ``%2A`` back into a wildcard."""

    def send(self, request: requests.PreparedRequest, **kwargs: object) -> requests.Response:  # type: ignore[override]
        if request.url and "?" in request.url:
            path, _, query = request.url.partition("?")
            request.url = f"{path}?{query.replace('%2A', '*').replace('%3F', '?')}"
        return super().send(request, **kwargs)


def _valid_dataset_json(item: object) -> bool:
    return isinstance(item, dict) and all(
        isinstance(k, str) and len(k) == 8 and all(c in "0123456789ABCDEFabcdef" for c in k)
        and isinstance(v, dict) for k, v in item.items())


class WebClient:
    def __init__(self, node: Node) -> None:
        if not node.is_web:
            raise ValueError("a DIMSE node needs the DIMSE client")
        self.node = node
        session = _Session()
        session.trust_env = False  # no proxy from the environment: contact only the configured node
        if node.token:
            session.headers["Authorization"] = f"Bearer {node.token}"
        elif node.username:
            session.auth = (node.username, node.password)
        if node.url.startswith("https://"):
            session.verify = node.tls_ca or True
            if node.tls_cert:
                session.cert = (node.tls_cert, node.tls_key) if node.tls_key else node.tls_cert
        self.session = session
        self.client = DICOMwebClient(node.url, session=session, timeout=node.timeout)
        self.client.set_http_retry_params(retry=False)

    # -- errors -----------------------------------------------------------------------------------------------------

    def _fail(self, exc: BaseException, what: str) -> PacsError:
        label, t = self.node.label, self.node.timeout
        if isinstance(exc, PacsError):
            return exc
        if isinstance(exc, requests.exceptions.SSLError):
            return PacsError(f"{label}: HTTPS certificate check failed ({str(exc)[:120]})")
        if isinstance(exc, requests.exceptions.ConnectTimeout | requests.exceptions.ReadTimeout):
            return PacsError(f"{label}: timed out after {t:g} s (no answer)")
        if isinstance(exc, requests.exceptions.ConnectionError):
            text = str(exc)
            if "Connection refused" in text or "Errno 111" in text:
                return PacsError(f"{label}: connection refused (is the server running, is the URL right?)")
            return PacsError(f"{label}: cannot connect ({text[:120]})")
        if isinstance(exc, requests.exceptions.HTTPError) and exc.response is not None:
            code = exc.response.status_code
            if code in (401, 403):
                return PacsError(f"{label}: {what} refused: authentication failed (HTTP {code})")
            return PacsError(f"{label}: {what} failed (HTTP {code} {exc.response.reason})")
        if isinstance(exc, ValueError | KeyError | TypeError | json.JSONDecodeError):
            return PacsError(f"{label}: malformed {what} response ({type(exc).__name__})")
        if isinstance(exc, requests.exceptions.RequestException):
            return PacsError(f"{label}: {what} failed ({str(exc)[:120]})")
        raise exc

    def _qido(self, what: str, fn: Callable[[], object]) -> list[dict]:
        try:
            result = fn()
        except Exception as exc:  # noqa: BLE001 - mapped to one message (or re-raised when unknown)
            raise self._fail(exc, what) from None
        if not isinstance(result, list) or not all(_valid_dataset_json(r) for r in result):
            raise PacsError(f"{self.node.label}: malformed {what} response (not a list of datasets)")
        return result

    # -- verify / find ----------------------------------------------------------------------------------------------

    def echo(self) -> float:
        t0 = time.perf_counter()
        self._qido("QIDO-RS", lambda: self.client.search_for_studies(limit=1))
        return time.perf_counter() - t0

    def find(self, query: Query, with_series: bool = True) -> FindResult:
        filters = {k: v for k, v in {"PatientID": query.patient_id, "PatientName": query.patient_name,
                                     "StudyDate": query.study_date, "ModalitiesInStudy": query.modality,
                                     "AccessionNumber": query.accession, "StudyDescription": query.description,
                                     "StudyInstanceUID": query.study_uid}.items() if v}
        fields = ["PatientName", "PatientID", "PatientBirthDate", "StudyDate", "StudyDescription", "AccessionNumber",
                  "ModalitiesInStudy", "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances"]
        items = self._qido("QIDO-RS study query", lambda: self.client.search_for_studies(
            search_filters=filters, fields=fields, limit=query.limit + 1))
        truncated = len(items) > query.limit
        studies = [StudyInfo(study_uid=_text(i, "StudyInstanceUID"), patient_id=_text(i, "PatientID"),
                             patient_name=_text(i, "PatientName"), birth_date=_text(i, "PatientBirthDate"),
                             study_date=_text(i, "StudyDate"), description=_text(i, "StudyDescription"),
                             accession=_text(i, "AccessionNumber"), modalities=_list(i, "ModalitiesInStudy"),
                             n_series=_int(i, "NumberOfStudyRelatedSeries"),
                             n_instances=_int(i, "NumberOfStudyRelatedInstances"))
                   for i in items[:query.limit] if _text(i, "StudyInstanceUID")]
        if with_series:
            for study in studies:
                study.series = self.find_series(study.study_uid)
        return FindResult(studies, truncated)

    def find_series(self, study_uid: str) -> list[SeriesInfo]:
        items = self._qido("QIDO-RS series query", lambda: self.client.search_for_series(
            study_instance_uid=study_uid, fields=["SeriesDescription", "SeriesNumber", "Modality",
                                                  "NumberOfSeriesRelatedInstances"]))
        out = [SeriesInfo(series_uid=_text(i, "SeriesInstanceUID"), modality=_text(i, "Modality"),
                          description=_text(i, "SeriesDescription"), number=_int(i, "SeriesNumber"),
                          n_instances=_int(i, "NumberOfSeriesRelatedInstances"))
               for i in items if _text(i, "SeriesInstanceUID")]
        return sorted(out, key=lambda s: (s.number is None, s.number or 0, s.series_uid))

    def find_instances(self, study_uid: str, series_uid: str) -> list[str]:
        uids: list[str] = []
        seen: set[str] = set()
        while len(uids) < MAX_SERIES_INSTANCES:  # pages until a short one (a page seen before ends it too)
            offset = len(uids)
            page = self._qido("QIDO-RS instance query", lambda o=offset: self.client.search_for_instances(
                study_instance_uid=study_uid, series_instance_uid=series_uid, limit=QIDO_PAGE, offset=o))
            new = [u for u in (_text(i, "SOPInstanceUID") for i in page) if u and u not in seen]
            seen.update(new)
            uids += new
            if len(page) < QIDO_PAGE or not new:
                break
        return uids

    # -- retrieve ---------------------------------------------------------------------------------------------------

    def fetch(self, folder: SeriesFolder, wanted: set[str] | None, expected: set[str], *,
              progress: Progress | None = None, cancel: threading.Event | None = None,
              move: object = None) -> list[str]:
        """WADO-RS: the whole series in one multipart response, or the wanted instances one by one."""
        base = f"{self.node.url}/studies/{folder.study_uid}/series/{folder.series_uid}"
        urls = [base] if wanted is None else [f"{base}/instances/{sop}" for sop in sorted(wanted)]
        errors: list[str] = []
        for url in urls:
            try:
                with self.session.get(url, headers={"Accept": ACCEPT_DICOM}, stream=True,
                                      timeout=self.node.timeout) as response:
                    response.raise_for_status()
                    for part in iter_parts(response):
                        if cancel is not None and cancel.is_set():
                            raise Cancelled(f"{self.node.label}: WADO-RS retrieve cancelled")
                        try:
                            folder.write(part, sop_uids=expected)
                        except PacsError as exc:
                            if "quota" in str(exc):
                                raise
                            errors.append(str(exc))
                            continue
                        if progress is not None:
                            progress(1)
            except Exception as exc:  # noqa: BLE001 - mapped to one message
                raise self._fail(exc, "WADO-RS retrieve") from None
        return errors

    # -- send -------------------------------------------------------------------------------------------------------

    def send(self, items: list[tuple[Path, str, str]], *, progress: Progress | None = None,
             cancel: threading.Event | None = None) -> list[str]:
        """STOW-RS the files as stored, in batches; returns one message per instance the server failed."""
        failures: list[str] = []
        batch: list[Path] = []
        size = 0
        for k, (path, _sop, _ts) in enumerate(items):
            batch.append(path)
            size += path.stat().st_size
            if size >= STOW_BATCH_BYTES or k == len(items) - 1 or len(batch) >= 200:
                if cancel is not None and cancel.is_set():
                    raise Cancelled(f"{self.node.label}: send cancelled")
                failures += self._stow(batch)
                if progress is not None:
                    progress(len(batch))
                batch, size = [], 0
        return failures

    def _stow(self, paths: list[Path]) -> list[str]:
        boundary = uuid.uuid4().hex
        body = bytearray()
        for path in paths:
            body += f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
            body += path.read_bytes() + b"\r\n"
        body += f"--{boundary}--\r\n".encode()
        headers = {"Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
                   "Accept": "application/dicom+json"}
        try:
            response = self.session.post(f"{self.node.url}/studies", data=bytes(body), headers=headers,
                                         timeout=max(self.node.timeout, 60))
            if response.status_code not in (200, 202, 409):
                response.raise_for_status()
            answer = response.json() if response.content else {}
        except Exception as exc:  # noqa: BLE001 - mapped to one message
            raise self._fail(exc, "STOW-RS") from None
        failed = answer.get(_tag("FailedSOPSequence"), {}).get("Value", []) if isinstance(answer, dict) else []
        out = []
        for item in failed:
            sop = _text(item, "ReferencedSOPInstanceUID")
            reason = _int(item, "FailureReason")
            out.append(f"{sop}: STOW-RS failure reason {reason if reason is None else hex(reason)}")
        if response.status_code == 409 and not out:
            out.append(f"STOW-RS refused {len(paths)} instance(s) (HTTP 409)")
        return out

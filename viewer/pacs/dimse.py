"""The DIMSE transport (pynetdicom): C-ECHO, C-FIND (study, series and image level), C-GET, C-MOVE with a local
storage SCP, C-STORE; plain TCP or TLS. Every failure becomes a ``PacsError`` whose message names the node."""
from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.association import Association
from pynetdicom.pdu import A_ASSOCIATE_RJ
from pynetdicom.sop_class import (
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from .errors import Cancelled, PacsError
from .models import FindResult, Query, SeriesInfo, StudyInfo
from .nodes import Node
from .receive import SeriesFolder
from .syntaxes import scp_contexts, send_contexts, storage_contexts, storage_roles

Progress = Callable[[int], None]  # called with 1 for each instance stored

PENDING = (0xFF00, 0xFF01)
STORE_WARNINGS = (0xB000, 0xB006, 0xB007)
MAX_FIND_RESULTS = 200_000


def _text(value: object) -> str:
    return "" if value is None else str(value)


def _int(value: object) -> int | None:
    try:
        return int(str(value)) if value not in (None, "") else None
    except ValueError:
        return None


def _multi(value: object) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [v for v in value.split("\\") if v]
    return [str(v) for v in value]  # type: ignore[attr-defined]


def _status(status: Dataset) -> int:
    return int(status.Status) if "Status" in status else -1


def _prompt(sock: object) -> object:
    """Make an association socket send at once (TCP_NODELAY) and acknowledge at once (TCP_QUICKACK, Linux, re-armed
    after every read): otherwise each C-STORE of a small image waits some 40 ms for a delayed ACK."""
    raw = getattr(sock, "socket", None)
    if raw is None:
        return sock
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    quickack = getattr(socket, "TCP_QUICKACK", None)
    if quickack is not None:
        recv = sock.recv  # type: ignore[attr-defined]

        def recv_quick(nr_bytes: int) -> bytearray:
            data = recv(nr_bytes)
            try:
                raw.setsockopt(socket.IPPROTO_TCP, quickack, 1)
            except OSError:
                pass
            return data

        sock.recv = recv_quick  # type: ignore[attr-defined]
    return sock


def _on_open(event: evt.Event) -> None:
    _prompt(event.assoc.dul.socket)


class _AE(AE):
    def _create_socket(self, assoc, address, tls_args):  # type: ignore[no-untyped-def]
        return _prompt(super()._create_socket(assoc, address, tls_args))


class DimseClient:
    def __init__(self, node: Node) -> None:
        if node.is_web:
            raise ValueError("a DICOMweb node needs the DICOMweb client")
        self.node = node

    # -- association ----------------------------------------------------------------------------------------------

    def _ae(self, aet: str | None = None) -> AE:
        ae = _AE(ae_title=aet or self.node.calling_aet)
        t = self.node.timeout
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = t
        ae.connection_timeout = t
        ae.maximum_pdu_size = 0  # no limit on what we accept
        return ae

    def _reach(self) -> None:
        """A plain TCP connect first, so that 'refused', 'timed out' and 'unknown host' are told apart."""
        label, t = self.node.label, self.node.timeout
        try:
            with socket.create_connection((self.node.host, self.node.port), timeout=t):
                pass
        except ConnectionRefusedError:
            raise PacsError(f"{label}: connection refused (is the PACS running, is the port right?)") from None
        except TimeoutError:
            raise PacsError(f"{label}: timed out after {t:g} s (no answer)") from None
        except socket.gaierror as exc:
            raise PacsError(f"{label}: unknown host ({exc.strerror})") from None
        except OSError as exc:
            raise PacsError(f"{label}: cannot connect ({exc.strerror or exc})") from None

    def _associate(self, ae: AE, *, roles: list | None = None, handlers: list | None = None) -> Association:
        self._reach()
        label = self.node.label
        # pynetdicom races when the node closes the connection right behind its A-ASSOCIATE-RJ: the requestor then
        # sees a closed socket and reports an abort, though the reject was received. Keep the reject to report it.
        rejects: list[A_ASSOCIATE_RJ] = []

        def _on_pdu(event: evt.Event) -> None:
            if isinstance(event.pdu, A_ASSOCIATE_RJ):
                rejects.append(event.pdu)

        kwargs: dict[str, object] = {"ae_title": self.node.aet, "ext_neg": roles or None,
                                     "evt_handlers": [*(handlers or []), (evt.EVT_PDU_RECV, _on_pdu)]}
        if self.node.tls:
            try:
                kwargs["tls_args"] = (self.node.ssl_context(), self.node.host)
            except (OSError, ssl.SSLError) as exc:
                raise PacsError(f"{label}: TLS set-up failed ({exc})") from None
        assoc = ae.associate(self.node.host, self.node.port, **kwargs)  # type: ignore[arg-type]
        if assoc.is_established:
            return assoc
        p = assoc.acceptor.primitive if assoc.is_rejected else None
        if p is None and rejects:
            p = rejects[-1].to_primitive()
        if p is not None:
            raise PacsError(f"{label}: association rejected ({p.result_str}, {p.source_str}: {p.reason_str})")
        if assoc.is_aborted:
            hint = " — TLS handshake refused?" if self.node.tls else ""
            raise PacsError(f"{label}: association aborted by the node{hint}")
        if self.node.tls:
            raise PacsError(f"{label}: no association over TLS (certificate not trusted, or the node does not "
                            "speak TLS on this port)")
        raise PacsError(f"{label}: no association (timed out after {self.node.timeout:g} s or the node does not "
                        "speak DICOM on this port)")

    def _with(self, contexts: list, **kwargs: object) -> Association:
        ae = self._ae()
        for context in contexts:
            ae.add_requested_context(context.abstract_syntax, context.transfer_syntax)
        return self._associate(ae, **kwargs)  # type: ignore[arg-type]

    def _lost(self, assoc: Association, what: str, verb: str, since: float) -> PacsError:
        """The message for a request that got no status back: a timeout, or the node closed the association."""
        if time.monotonic() - since < 0.9 * self.node.timeout:
            return PacsError(f"{self.node.label}: {what} broken off: the node closed the association (lost "
                             f"connection, or the calling AE title {self.node.calling_aet} is not allowed to {verb})")
        return PacsError(f"{self.node.label}: {what} broken off: no answer within {self.node.timeout:g} s")

    @staticmethod
    def _cancel(assoc: Association, model: str, msg_id: int = 1) -> None:
        for context in assoc.accepted_contexts:
            if context.abstract_syntax == model:
                assoc.send_c_cancel(msg_id, context.context_id)
                return

    # -- verify -----------------------------------------------------------------------------------------------------

    def echo(self) -> float:
        """C-ECHO; returns the round trip in seconds."""
        from pynetdicom import build_context

        t0 = time.perf_counter()
        assoc = self._with([build_context(Verification)])
        try:
            status = assoc.send_c_echo()
        finally:
            assoc.release()
        code = _status(status)
        if code != 0:
            raise PacsError(f"{self.node.label}: C-ECHO failed" + (f" (status 0x{code:04X})" if code >= 0 else
                                                                     " (no answer)"))
        return time.perf_counter() - t0

    # -- find -------------------------------------------------------------------------------------------------------

    def _find(self, identifier: Dataset, limit: int | None = None) -> tuple[list[Dataset], bool]:
        from pynetdicom import build_context

        model = StudyRootQueryRetrieveInformationModelFind
        assoc = self._with([build_context(model)])
        found: list[Dataset] = []
        truncated = False
        try:
            since = time.monotonic()
            for status, ident in assoc.send_c_find(identifier, model):
                code = _status(status)
                if code in PENDING:
                    since = time.monotonic()
                    if ident is None:
                        continue
                    if limit is not None and len(found) >= limit:
                        truncated = True
                        self._cancel(assoc, model)
                        break
                    if len(found) >= MAX_FIND_RESULTS:
                        raise PacsError(f"{self.node.label}: more than {MAX_FIND_RESULTS} C-FIND answers: refused")
                    found.append(ident)
                elif code in (0x0000, 0xFE00):
                    break
                elif code < 0:
                    raise self._lost(assoc, "C-FIND", "query", since)
                else:
                    comment = f": {status.ErrorComment}" if "ErrorComment" in status else ""
                    raise PacsError(f"{self.node.label}: C-FIND refused (status 0x{code:04X}{comment}; is the "
                                    f"calling AE title {self.node.calling_aet} allowed to query?)")
        finally:
            if assoc.is_established:
                assoc.release()
        return found, truncated

    @staticmethod
    def _charset(ds: Dataset, values: list[str]) -> None:
        if any(not v.isascii() for v in values):
            ds.SpecificCharacterSet = "ISO_IR 192"

    def find(self, query: Query, with_series: bool = True) -> FindResult:
        ds = Dataset()
        ds.QueryRetrieveLevel = "STUDY"
        ds.PatientName = query.patient_name
        ds.PatientID = query.patient_id
        ds.PatientBirthDate = ""
        ds.StudyDate = query.study_date
        ds.StudyTime = ""
        ds.StudyDescription = query.description
        ds.AccessionNumber = query.accession
        ds.ModalitiesInStudy = query.modality
        ds.StudyInstanceUID = query.study_uid
        ds.NumberOfStudyRelatedSeries = ""
        ds.NumberOfStudyRelatedInstances = ""
        self._charset(ds, [query.patient_name, query.patient_id, query.description, query.accession])
        idents, truncated = self._find(ds, query.limit)
        studies = []
        for ident in idents:
            uid = _text(ident.get("StudyInstanceUID"))
            if not uid:
                continue
            studies.append(StudyInfo(
                study_uid=uid, patient_id=_text(ident.get("PatientID")), patient_name=_text(ident.get("PatientName")),
                birth_date=_text(ident.get("PatientBirthDate")), study_date=_text(ident.get("StudyDate")),
                description=_text(ident.get("StudyDescription")), accession=_text(ident.get("AccessionNumber")),
                modalities=_multi(ident.get("ModalitiesInStudy")),
                n_series=_int(ident.get("NumberOfStudyRelatedSeries")),
                n_instances=_int(ident.get("NumberOfStudyRelatedInstances"))))
        if with_series:
            for study in studies:
                study.series = self.find_series(study.study_uid)
        return FindResult(studies, truncated)

    def find_series(self, study_uid: str) -> list[SeriesInfo]:
        ds = Dataset()
        ds.QueryRetrieveLevel = "SERIES"
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = ""
        ds.Modality = ""
        ds.SeriesDescription = ""
        ds.SeriesNumber = ""
        ds.NumberOfSeriesRelatedInstances = ""
        idents, _ = self._find(ds)
        out = [SeriesInfo(series_uid=_text(i.get("SeriesInstanceUID")), modality=_text(i.get("Modality")),
                          description=_text(i.get("SeriesDescription")), number=_int(i.get("SeriesNumber")),
                          n_instances=_int(i.get("NumberOfSeriesRelatedInstances")))
               for i in idents if i.get("SeriesInstanceUID")]
        return sorted(out, key=lambda s: (s.number is None, s.number or 0, s.series_uid))

    def find_instances(self, study_uid: str, series_uid: str) -> list[str]:
        ds = Dataset()
        ds.QueryRetrieveLevel = "IMAGE"
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = ""
        idents, _ = self._find(ds)
        return [str(i.SOPInstanceUID) for i in idents if i.get("SOPInstanceUID")]

    # -- retrieve ---------------------------------------------------------------------------------------------------

    @staticmethod
    def _identifier(folder: SeriesFolder, wanted: set[str] | None) -> Dataset:
        ds = Dataset()
        ds.StudyInstanceUID = folder.study_uid
        ds.SeriesInstanceUID = folder.series_uid
        if wanted is None:
            ds.QueryRetrieveLevel = "SERIES"
        else:
            ds.QueryRetrieveLevel = "IMAGE"
            ds.SOPInstanceUID = sorted(wanted)
        return ds

    def _store_handler(self, folder: SeriesFolder, expected: set[str], errors: list[str],
                       progress: Progress | None) -> Callable[[evt.Event], int]:
        from .receive import part10

        def on_store(event: evt.Event) -> int:
            try:
                data = part10(event.file_meta, event.request.DataSet.getvalue())
                folder.write(data, sop_uids=expected, sop_class=str(event.context.abstract_syntax))
            except PacsError as exc:
                errors.append(str(exc))
                return 0xA700 if "quota" in str(exc) else 0xC000
            except OSError as exc:
                errors.append(f"cannot write to the cache: {exc}")
                return 0xA700
            if progress is not None:
                progress(1)
            return 0x0000

        return on_store

    def _drive(self, assoc: Association, responses: Iterator[tuple[Dataset, Dataset | None]], model: str,
               cancel: threading.Event | None, what: str, move_aet: str = "") -> list[str]:
        """Consume C-GET/C-MOVE responses; returns the problems the node reported."""
        problems: list[str] = []
        since = time.monotonic()
        for status, _ident in responses:
            code = _status(status)
            if cancel is not None and cancel.is_set():
                self._cancel(assoc, model)
                assoc.abort()
                raise Cancelled(f"{self.node.label}: {what} cancelled")
            if code in PENDING:
                since = time.monotonic()
                continue
            if code == 0x0000:
                break
            if code < 0:
                raise self._lost(assoc, what, "retrieve", since)
            failed = int(status.get("NumberOfFailedSuboperations", 0) or 0)
            comment = f", {status.ErrorComment}" if "ErrorComment" in status else ""
            if code == 0xB000:
                problems.append(f"{failed} sub-operation(s) failed")
            elif code == 0xA801:
                raise PacsError(f"{self.node.label}: {what} refused: move destination unknown to the node "
                                f"(configure our AE title and port on the PACS{comment})")
            else:
                hint = f"is the calling AE title {self.node.calling_aet} allowed to retrieve"
                if move_aet:
                    hint += f", and does the node know the move destination {move_aet} (its host and port)"
                raise PacsError(f"{self.node.label}: {what} refused (status 0x{code:04X}{comment}; {hint}?)")
        return problems

    def fetch(self, folder: SeriesFolder, wanted: set[str] | None, expected: set[str], *,
              progress: Progress | None = None, cancel: threading.Event | None = None,
              move: tuple[str, int, str] | None = None) -> list[str]:
        """Receive the series (``wanted is None``) or those of its instances into ``folder.partial``. ``move`` is
        ``(local AE title, port, bind host)`` for C-MOVE to a storage SCP started here, else C-GET."""
        errors: list[str] = []
        handler = self._store_handler(folder, expected, errors, progress)
        identifier = self._identifier(folder, wanted)
        if move is None:
            from pynetdicom import build_context

            model = StudyRootQueryRetrieveInformationModelGet
            assoc = self._with([build_context(model)] + storage_contexts(), roles=storage_roles(),
                               handlers=[(evt.EVT_C_STORE, handler)])
            try:
                problems = self._drive(assoc, assoc.send_c_get(identifier, model), model, cancel, "C-GET")
            finally:
                if assoc.is_established:
                    assoc.release()
        else:
            local_aet, port, bind = move
            scp = self._ae(local_aet)
            scp.supported_contexts = scp_contexts()
            try:
                server = scp.start_server((bind, port), block=False,
                                          evt_handlers=[(evt.EVT_C_STORE, handler), (evt.EVT_CONN_OPEN, _on_open)])
            except OSError as exc:
                raise PacsError(f"cannot listen on port {port} for C-MOVE ({exc.strerror or exc})") from None
            try:
                from pynetdicom import build_context

                model = StudyRootQueryRetrieveInformationModelMove
                assoc = self._with([build_context(model)])
                try:
                    problems = self._drive(assoc, assoc.send_c_move(identifier, local_aet, model), model, cancel,
                                           "C-MOVE", local_aet)
                finally:
                    if assoc.is_established:
                        assoc.release()
            finally:
                server.shutdown()
        return errors + problems

    # -- send -------------------------------------------------------------------------------------------------------

    def send(self, items: list[tuple[Path, str, str]], *, progress: Progress | None = None,
             cancel: threading.Event | None = None) -> list[str]:
        """C-STORE each ``(path, SOP class, transfer syntax)`` as stored; returns one message per failed file."""
        failures: list[str] = []
        pairs = sorted({(sop, ts) for _p, sop, ts in items})
        for start in range(0, len(pairs), 120):  # at most 128 presentation contexts per association
            chunk = set(pairs[start:start + 120])
            assoc = self._with(send_contexts(chunk))
            accepted = {(c.abstract_syntax, c.transfer_syntax[0]) for c in assoc.accepted_contexts}
            try:
                for path, sop, ts in items:
                    if (sop, ts) not in chunk:
                        continue
                    if cancel is not None and cancel.is_set():
                        raise Cancelled(f"{self.node.label}: send cancelled")
                    if (sop, ts) not in accepted:
                        failures.append(f"{path.name}: the node does not accept SOP class {sop} in {ts}")
                        continue
                    since = time.monotonic()
                    status = assoc.send_c_store(str(path))
                    code = _status(status)
                    if code == 0x0000 or code in STORE_WARNINGS:
                        if progress is not None:
                            progress(1)
                    elif code < 0:
                        raise self._lost(assoc, "C-STORE", "store", since)
                    else:
                        failures.append(f"{path.name}: C-STORE status 0x{code:04X}")
            finally:
                if assoc.is_established:
                    assoc.release()
        return failures

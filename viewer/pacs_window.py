"""The PACS window (PySide6) over the Qt-free ``viewer.pacs``: configured nodes with Verify, a search form, the
studies found with the series of the selected one, Retrieve into the study cache with progress and Cancel, and
``send_folder`` (after a confirmation that names the patient, the series and the destination).

Network work runs on a plain worker thread; it reports through Qt signals (queued to the GUI thread), and only the GUI
thread touches widgets. The window contacts only the node selected in it, and sends nothing unless the user confirms.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from viewer.pacs import Cancelled, Node, PacsError, Query, service
from viewer.pacs.cache import StudyCache
from viewer.pacs.nodes import load_nodes, save_nodes

STUDY_COLUMNS = ["Patient", "ID", "Birth date", "Study date", "Description", "Modalities", "Series", "Images"]
SERIES_COLUMNS = ["#", "Modality", "Description", "Images", "Series UID"]


class _Signals(QObject):
    done = Signal(object)
    failed = Signal(str)
    progress = Signal(int, int)


class PacsWindow(QWidget):
    """``studyRetrieved(path)`` fires with the cached study folder when a retrieve completes; ``sent(report)`` after
    a send."""

    studyRetrieved = Signal(Path)
    sent = Signal(object)
    busyChanged = Signal(bool)

    def __init__(self, parent: QWidget | None = None, cache: StudyCache | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("PACS")
        self.cache = cache or StudyCache()
        self.nodes = load_nodes()
        self.studies: list = []
        self._cancel: threading.Event | None = None
        self._signals = _Signals()
        self._on_done: Callable[[object], None] = lambda r: None
        self._signals.done.connect(lambda r: self._finish(r, None))
        self._signals.failed.connect(lambda m: self._finish(None, m))
        self._signals.progress.connect(self._show_progress)
        self._build()
        self._fill_nodes()

    # -- layout ---------------------------------------------------------------------------------------------------

    def _build(self) -> None:
        nodes = QGroupBox("Node")
        form = QFormLayout(nodes)
        self.node_box = QComboBox()
        self.node_box.currentIndexChanged.connect(self._node_selected)
        form.addRow("Configured", self.node_box)
        self.name, self.host, self.aet = QLineEdit(), QLineEdit(), QLineEdit()
        self.port = QSpinBox()
        self.port.setRange(1, 65535)
        self.port.setValue(104)
        self.calling = QLineEdit("BRAINSR")
        self.timeout = QDoubleSpinBox()
        self.timeout.setRange(1, 600)
        self.timeout.setValue(10)
        self.tls = QCheckBox("DICOM over TLS")
        self.ca, self.cert, self.key = QLineEdit(), QLineEdit(), QLineEdit()
        self.url, self.user, self.password = QLineEdit(), QLineEdit(), QLineEdit()
        self.password.setEchoMode(QLineEdit.EchoMode.Password)
        self.url.setPlaceholderText("DICOMweb: http(s)://host:port/dicom-web (then host/port/AE are not used)")
        for label, widget in (("Name", self.name), ("Host", self.host), ("Port", self.port),
                              ("Called AE", self.aet), ("Calling AE", self.calling), ("Timeout (s)", self.timeout),
                              ("", self.tls), ("CA certificate", self.ca), ("Client certificate", self.cert),
                              ("Client key", self.key), ("DICOMweb URL", self.url), ("User", self.user),
                              ("Password / token", self.password)):
            form.addRow(label, widget)
        row = QHBoxLayout()
        self.save_button, self.verify_button = QPushButton("Save node"), QPushButton("Verify")
        self.save_button.clicked.connect(self.save_node)
        self.verify_button.clicked.connect(self.verify)
        row.addWidget(self.save_button)
        row.addWidget(self.verify_button)
        form.addRow(row)

        search = QGroupBox("Search")
        sform = QFormLayout(search)
        self.q_id, self.q_name, self.q_date = QLineEdit(), QLineEdit(), QLineEdit()
        self.q_modality, self.q_accession = QLineEdit(), QLineEdit()
        self.q_name.setPlaceholderText("wildcards * and ?")
        self.q_date.setPlaceholderText("YYYYMMDD or YYYYMMDD-YYYYMMDD")
        for label, widget in (("Patient ID", self.q_id), ("Patient name", self.q_name), ("Study date", self.q_date),
                              ("Modality", self.q_modality), ("Accession", self.q_accession)):
            sform.addRow(label, widget)
            widget.returnPressed.connect(self.search)
        self.search_button = QPushButton("Search")
        self.search_button.clicked.connect(self.search)
        sform.addRow(self.search_button)

        self.study_table = self._table(STUDY_COLUMNS)
        self.study_table.itemSelectionChanged.connect(self._study_selected)
        self.series_table = self._table(SERIES_COLUMNS)
        self.retrieve_button, self.cancel_button = QPushButton("Retrieve"), QPushButton("Cancel")
        self.retrieve_button.clicked.connect(self.retrieve)
        self.cancel_button.clicked.connect(self.cancel)
        self.cancel_button.setEnabled(False)
        self.progress = QProgressBar()
        self.status = QLabel("")
        self.status.setWordWrap(True)

        left = QVBoxLayout()
        left.addWidget(nodes)
        left.addWidget(search)
        left.addStretch(1)
        right = QVBoxLayout()
        right.addWidget(QLabel("Studies"))
        right.addWidget(self.study_table, 2)
        right.addWidget(QLabel("Series of the selected study"))
        right.addWidget(self.series_table, 1)
        actions = QHBoxLayout()
        actions.addWidget(self.retrieve_button)
        actions.addWidget(self.cancel_button)
        actions.addWidget(self.progress, 1)
        right.addLayout(actions)
        right.addWidget(self.status)
        layout = QHBoxLayout(self)
        layout.addLayout(left, 1)
        layout.addLayout(right, 2)
        self.resize(1200, 700)

    @staticmethod
    def _table(columns: list[str]) -> QTableWidget:
        table = QTableWidget(0, len(columns))
        table.setHorizontalHeaderLabels(columns)
        table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        table.horizontalHeader().setStretchLastSection(True)
        return table

    # -- nodes ----------------------------------------------------------------------------------------------------

    def _fill_nodes(self) -> None:
        self.node_box.blockSignals(True)
        self.node_box.clear()
        self.node_box.addItems([n.name for n in self.nodes])
        self.node_box.blockSignals(False)
        if self.nodes:
            self._node_selected(0)

    def _node_selected(self, index: int) -> None:
        if not 0 <= index < len(self.nodes):
            return
        n = self.nodes[index]
        self.name.setText(n.name)
        self.host.setText(n.host)
        self.port.setValue(n.port)
        self.aet.setText(n.aet)
        self.calling.setText(n.calling_aet)
        self.timeout.setValue(n.timeout)
        self.tls.setChecked(n.tls)
        self.ca.setText(n.tls_ca)
        self.cert.setText(n.tls_cert)
        self.key.setText(n.tls_key)
        self.url.setText(n.url)
        self.user.setText(n.username)
        self.password.setText(n.token or n.password)

    def current_node(self) -> Node:
        """The node described by the form (raises ``ValueError`` with a message when incomplete)."""
        url = self.url.text().strip()
        secret = self.password.text()
        web = {"username": self.user.text().strip(), "password": secret if self.user.text().strip() else "",
               "token": secret if not self.user.text().strip() else ""} if url else {}
        return Node(name=self.name.text().strip(), host=self.host.text().strip(), port=self.port.value(),
                    aet=self.aet.text().strip(), calling_aet=self.calling.text().strip() or "BRAINSR",
                    timeout=self.timeout.value(), tls=self.tls.isChecked(), tls_ca=self.ca.text().strip(),
                    tls_cert=self.cert.text().strip(), tls_key=self.key.text().strip(), url=url, **web)

    def set_node(self, node: Node) -> None:
        """Put a node in the form (and the list) without saving it."""
        self.nodes = [n for n in self.nodes if n.name != node.name] + [node]
        self._fill_nodes()
        self.node_box.setCurrentIndex(len(self.nodes) - 1)

    def save_node(self) -> None:
        try:
            node = self.current_node()
        except ValueError as exc:
            self.status.setText(str(exc))
            return
        self.nodes = [n for n in self.nodes if n.name != node.name] + [node]
        save_nodes(self.nodes)
        self._fill_nodes()
        self.node_box.setCurrentIndex(len(self.nodes) - 1)
        self.status.setText(f"saved {node.name}")

    # -- work off the GUI thread ----------------------------------------------------------------------------------

    def busy(self) -> bool:
        return self._cancel is not None

    def _run(self, what: str, job: Callable[[threading.Event], object], on_done: Callable[[object], None]) -> None:
        if self.busy():
            return
        self._cancel = threading.Event()
        self._on_done = on_done
        cancel = self._cancel
        for button in (self.verify_button, self.search_button, self.retrieve_button):
            button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.status.setText(what + "…")
        self.busyChanged.emit(True)

        def work() -> None:
            try:
                result = job(cancel)
            except Cancelled as exc:
                self._signals.failed.emit(str(exc))
            except PacsError as exc:
                self._signals.failed.emit(str(exc))
            except Exception as exc:  # noqa: BLE001 - shown, never raised into Qt
                self._signals.failed.emit(f"unexpected error: {type(exc).__name__}: {exc}")
            else:
                self._signals.done.emit(result)

        threading.Thread(target=work, name="pacs", daemon=True).start()

    def _finish(self, result: object, error: str | None) -> None:
        self._cancel = None
        for button in (self.verify_button, self.search_button, self.retrieve_button):
            button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        if error is not None:
            self.status.setText(error)
        else:
            self._on_done(result)
        self.busyChanged.emit(False)

    def _show_progress(self, done: int, total: int) -> None:
        self.progress.setMaximum(max(total, 1))
        self.progress.setValue(done)

    def cancel(self) -> None:
        if self._cancel is not None:
            self._cancel.set()

    def _node_or_say(self) -> Node | None:
        try:
            return self.current_node()
        except ValueError as exc:
            self.status.setText(str(exc))
            return None

    # -- actions --------------------------------------------------------------------------------------------------

    def verify(self) -> None:
        node = self._node_or_say()
        if node is not None:
            self._run(f"verifying {node.label}", lambda _c: service.echo(node),
                      lambda s: self.status.setText(f"{node.label}: OK ({float(s) * 1000:.0f} ms)"))  # type: ignore[arg-type]

    def search(self) -> None:
        node = self._node_or_say()
        if node is None:
            return
        try:
            query = Query(patient_id=self.q_id.text().strip(), patient_name=self.q_name.text().strip(),
                          study_date=self.q_date.text().strip(), modality=self.q_modality.text().strip(),
                          accession=self.q_accession.text().strip())
        except ValueError as exc:
            self.status.setText(str(exc))
            return
        self._run(f"searching {node.label}", lambda _c: service.find(node, query), self._show_studies)

    def _show_studies(self, result: object) -> None:
        self.studies = list(result.studies)  # type: ignore[attr-defined]
        self.study_table.setRowCount(len(self.studies))
        for row, s in enumerate(self.studies):
            n_images = s.n_instances if s.n_instances is not None else sum(x.n_instances or 0 for x in s.series)
            values = [s.patient_name, s.patient_id, s.birth_date, s.study_date, s.description,
                      "/".join(s.modalities), str(s.n_series if s.n_series is not None else len(s.series)),
                      str(n_images)]
            for col, value in enumerate(values):
                self.study_table.setItem(row, col, QTableWidgetItem(value))
        self.series_table.setRowCount(0)
        more = " (more matched: narrow the search)" if result.truncated else ""  # type: ignore[attr-defined]
        self.status.setText(f"{len(self.studies)} studies{more}")
        if self.studies:
            self.study_table.selectRow(0)

    def selected_study(self):  # -> StudyInfo | None
        rows = self.study_table.selectionModel().selectedRows() if self.study_table.selectionModel() else []
        return self.studies[rows[0].row()] if rows and rows[0].row() < len(self.studies) else None

    def _study_selected(self) -> None:
        study = self.selected_study()
        series = study.series if study else []
        self.series_table.setRowCount(len(series))
        for row, s in enumerate(series):
            for col, value in enumerate([str(s.number or ""), s.modality, s.description, str(s.n_instances or ""),
                                         s.series_uid]):
                item = QTableWidgetItem(value)
                item.setData(Qt.ItemDataRole.UserRole, s.series_uid)
                self.series_table.setItem(row, col, item)

    def retrieve(self) -> None:
        """Retrieve the selected study (or only the selected series) into the study cache."""
        node, study = self._node_or_say(), self.selected_study()
        if node is None or study is None:
            if study is None:
                self.status.setText("select a study first")
            return
        rows = self.series_table.selectionModel().selectedRows() if self.series_table.selectionModel() else []
        series = [study.series[r.row()].series_uid for r in rows] or None
        self.progress.setValue(0)

        def job(cancel: threading.Event) -> object:
            return service.retrieve_to_cache(node, study.study_uid, self.cache, series_uids=series,
                                             progress=self._signals.progress.emit, cancel=cancel)

        def done(report: object) -> None:
            self.status.setText(f"{report.done} images received, {report.skipped} already in the cache")  # type: ignore[attr-defined]
            self.studyRetrieved.emit(self.cache.study_path(study.study_uid))

        self._run(f"retrieving from {node.label}", job, done)

    def send_folder(self, folder: Path, patient: str, series: str, confirm: bool = True) -> bool:
        """Send a (derived) series to the selected node after the user confirms; returns whether it started."""
        node = self._node_or_say()
        if node is None:
            return False
        if confirm:
            answer = QMessageBox.question(
                self, "Send to PACS",
                f"Send series “{series}” of patient {patient} ({folder}) to {node.name} ({node.label})?",
                QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, QMessageBox.StandardButton.No)
            if answer != QMessageBox.StandardButton.Yes:
                return False

        def done(report: object) -> None:
            self.status.setText(f"{report.done} of {report.expected} images sent to {node.label}")  # type: ignore[attr-defined]
            self.sent.emit(report)

        self._run(f"sending to {node.label}", lambda c: service.send(node, folder, progress=self._signals.progress.emit,
                                                                     cancel=c), done)
        return True


def demo(argv: list[str] | None = None) -> int:
    """``make pacs-demo``: a throwaway local Orthanc loaded with the bundled sample series, and the viewer with its
    PACS window connected to it; a retrieved study opens in the viewer's series tree. ``--screenshot PNG`` searches,
    retrieves the first study, waits until the viewer shows it enhanced, saves the viewer to PNG and the PACS window
    beside it (``…-pacs.png``) and exits."""
    import argparse
    import sys
    import tempfile
    import time

    from PySide6.QtWidgets import QApplication

    from viewer import SAMPLE_SERIES
    from viewer.main_window import MainWindow
    from viewer.pacs.orthanc import LocalOrthanc

    parser = argparse.ArgumentParser(prog="pacs-demo", description=demo.__doc__.split("\n")[0] if demo.__doc__ else "")
    parser.add_argument("--screenshot", metavar="PNG")
    args = parser.parse_args(argv)
    from viewer.style import apply_dark_theme

    app = QApplication.instance() or QApplication(sys.argv[:1])
    apply_dark_theme(app)  # as `brainsr` looks
    with tempfile.TemporaryDirectory(prefix="brainsr-pacs-demo-") as tmp:
        server = LocalOrthanc(Path(tmp) / "orthanc", modalities={"BRAINSR": ("127.0.0.1", 11112)}).start()
        try:
            server.upload(sorted(SAMPLE_SERIES.glob("*.dcm")))
            viewer = MainWindow(enhance=True, show_dialogs=not args.screenshot)
            viewer.resize(1440, 900)
            window = PacsWindow(cache=StudyCache(Path(tmp) / "cache"))
            window.set_node(Node(name="local demo Orthanc", host="127.0.0.1", port=server.dicom_port,
                                 aet=server.aet))
            window.studyRetrieved.connect(lambda folder: viewer.open_folder(folder))
            viewer.pacs = window  # File → PACS… shows this window
            viewer.show()
            viewer.open_pacs()
            window.search()
            if not args.screenshot:
                return int(app.exec())

            def wait(done, timeout: float = 120.0) -> bool:
                end = time.monotonic() + timeout
                while not done() and time.monotonic() < end:
                    app.processEvents()
                    time.sleep(0.01)
                return bool(done())

            wait(lambda: not window.busy() and window.study_table.rowCount() > 0)
            window.study_table.selectRow(0)
            window.retrieve()
            ok = wait(lambda: viewer.series is not None and viewer.is_settled())
            out = Path(args.screenshot)
            viewer.grab().save(str(out))
            window.grab().save(str(out.with_name(out.stem + "-pacs.png")))
            viewer.shutdown()
            return 0 if ok else 1
        finally:
            server.stop()


if __name__ == "__main__":
    raise SystemExit(demo())

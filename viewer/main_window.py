"""The viewer's main window: two linked viewports (original | enhanced), series browser, tags, menus.

Thin wiring. The view lives in one ``ViewState`` (``viewer.state``) and the rest of the app's state — series,
enhancement on/off, disagreement on/off, the right pane's state, model info, plans, errors — in one
``ViewerModel`` (``viewer.model``), which also decides every corner's text; both are Qt-free. Menus and actions
are built by ``viewer.menus``, docks, overlays and tools by ``viewer.docks``. Pixels come from the
``SliceLoader`` thread and model output from the ``EnhanceWorker`` thread (``self.worker``; its
``srgan.inference.engine.Enhancer`` is ``self.worker.engine``), both by signal, so the GUI thread only places
arrays into ImageItems. The right viewport shows the model's output for the slice when it is ready; until then
(or with enhancement off, key E) it shows the plain ×s interpolation of the original, labelled as such, so an
enhanced image can never be mistaken for an acquired or interpolated one.

Two views help judge how far to trust the model: the data-consistency projection in force (Enhance → Data
consistency; shown in the label and carried into exports) and the model's disagreement with itself (View →
Model disagreement): the spread of its outputs over the 8 flips/rotations of the slice, computed on the worker
for the current slice only and drawn over the enhanced image in the difference overlay's sequential colours.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PySide6 import QtCore, QtGui, QtWidgets

from srgan.inference.plan import Plan
from viewer import docks, menus
from viewer import window_level as wl
from viewer.difference import robust_scale
from viewer.export import export_series_dialog, running_exports, shutdown_exports
from viewer.jobs import interpolation_key
from viewer.menus import APPLICATION, HEADER_PRESET, ORGANISATION, settings
from viewer.model import DISAGREEMENT_LABEL, KEEP, ViewerModel, first_anatomy, problem_lines, reconfigured
from viewer.state import Plane, ViewState
from viewer.viewport import AI_COLOR, DIM_COLOR, ERROR_COLOR, TEXT_COLOR, Viewport
from viewer.workers import EnhanceConfig, EnhanceWorker, FolderScanner, SliceLoader, build_engine, series_key

__all__ = ["APPLICATION", "DISAGREEMENT_LABEL", "HEADER_PRESET", "ORGANISATION", "MainWindow", "settings"]

CINE_INTERVAL_MS = 100  # 10 frames per second
_TONES = {"text": TEXT_COLOR, "dim": DIM_COLOR, "ai": AI_COLOR, "error": ERROR_COLOR, None: None}


class MainWindow(QtWidgets.QMainWindow):
    """``MainWindow(config, enhance=False)``; ``open_folder(path)`` starts a background scan.

    Signals: ``series_shown(series)``; ``error_occurred(message)`` for every error shown to the user;
    ``settled()`` whenever the current slice is fully displayed (original loaded and, with enhancement on,
    the model's output or its error arrived) — ``app --screenshot`` waits for it.
    """

    series_shown = QtCore.Signal(object)
    error_occurred = QtCore.Signal(str)
    settled = QtCore.Signal()

    def __init__(self, config: EnhanceConfig | None = None, enhance: bool = False,
                 show_dialogs: bool = True, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("BrainSR")
        self.setAcceptDrops(True)
        self.show_dialogs = show_dialogs
        self.state = ViewState()
        self.loader = SliceLoader(self)
        self.worker = EnhanceWorker(config or EnhanceConfig(), self)
        self.model = ViewerModel(self.state, self.worker.config, enhancing=enhance)
        self.loader.set_scale(self.worker.config.scale)
        self.model.set_interpolation(menus.stored_interpolation())
        self.loader.set_method(self.model.interpolation)
        self.state.scale = self.worker.config.scale
        self.stats: wl.ImageStats | None = None  # of the slice first decoded: window presets
        self._header_window: wl.WindowLevel | None = None
        self._scanner: FolderScanner | None = None  # the scan whose result will be shown
        self._scanners: set[FolderScanner] = set()   # every scan thread still running
        self._export_session = None
        self.scan_problems: list[str] = []  # the last scan's skipped files and warnings, one line each
        self.last_export: tuple[Path, Any] | None = None  # (folder, source series) of the last finished export
        self.pacs: Any = None  # the PACS window, made when first opened

        self.left = Viewport(self.state, "original")
        self.right = Viewport(self.state, "enhanced")
        self.splitter = QtWidgets.QSplitter(QtCore.Qt.Orientation.Horizontal)
        for vp in (self.left, self.right):
            self.splitter.addWidget(vp)
        self.splitter.setHandleWidth(2)
        self.splitter.setChildrenCollapsible(False)
        self.splitter.setStretchFactor(0, 1)
        self.splitter.setStretchFactor(1, 1)
        self.setCentralWidget(self.splitter)

        self.cine = QtCore.QTimer(self)
        self.cine.setInterval(CINE_INTERVAL_MS)
        self.cine.timeout.connect(lambda: self.state.step_slice(1, wrap=True))
        self.tag_timer = QtCore.QTimer(self, singleShot=True, interval=150)
        self.tag_timer.timeout.connect(lambda: docks.update_tags(self))
        docks.build(self)
        self.roi_panel.set_reference(self.model.interpolation_name())
        menus.build(self)

        self.loader.loaded.connect(self._on_loaded)
        self.loader.failed.connect(self._on_load_failed)
        self.worker.enhanced.connect(self._on_enhanced)
        self.worker.spread_ready.connect(self._on_spread_ready)
        self.worker.progress.connect(lambda done, total: menus.show_progress(self, done, total))
        self.worker.failed.connect(self._on_enhance_failed)
        self.worker.model_ready.connect(self._on_model_ready)
        self.worker.planned.connect(self._on_planned)
        self.left.resized.connect(self._on_viewport_resized)
        self.left.vb.hovered.connect(lambda x, y: self._on_hover(x, y, False))
        self.right.vb.hovered.connect(lambda x, y: self._on_hover(x, y, True))
        self.state.subscribe(self._on_state)
        self.model.subscribe(self._on_model)
        self.loader.start()
        self.worker.start()

        self.left.set_placeholder("Open a DICOM folder (Ctrl+O) or drop it here")
        self.right.set_placeholder("The enhanced slice appears here")
        self.resize(1440, 900)
        menus.rebuild_recent_menu(self)
        self._update_overlays()

    # the app state, read through the model
    series = property(lambda self: self.model.series)
    folder = property(lambda self: self.model.folder)
    scan_result = property(lambda self: self.model.scan_result)
    enhancing = property(lambda self: self.model.enhancing)
    disagreement = property(lambda self: self.model.disagreement)
    model_info = property(lambda self: self.model.model_info)
    plans = property(lambda self: self.model.plans)
    last_error = property(lambda self: self.model.last_error)

    def showEvent(self, ev: QtGui.QShowEvent) -> None:
        super().showEvent(ev)
        if not getattr(self, "_docks_sized", False):
            self._docks_sized = True
            self.resizeDocks([self.browser_dock], [max(300, min(360, int(self.width() / 4.5)))],
                             QtCore.Qt.Orientation.Horizontal)
            half = max(self.splitter.width() // 2, 1)
            self.splitter.setSizes([half, half])

    # ------------------------------------------------------------------------------------ folders
    def open_folder(self, folder: str | Path) -> None:
        """Scan ``folder`` in the background; the first series is shown when the scan finishes.

        A scan still running for an earlier folder is left to finish, but its result is ignored.
        """
        folder = str(folder)
        if self._scanner is not None:
            self._scanner.scanned.disconnect(self._on_scanned)
            self._scanner.failed.disconnect(self._on_scan_failed)
        self.statusBar().showMessage(f"Scanning {folder} …")
        scanner = FolderScanner(folder, self)
        scanner.scanned.connect(self._on_scanned)
        scanner.failed.connect(self._on_scan_failed)
        scanner.progress.connect(
            lambda done, total: self.statusBar().showMessage(f"Scanning {folder} … {done}/{total} files"))
        scanner.finished.connect(lambda s=scanner: self._scan_finished(s))
        self._scanners.add(scanner)
        self._scanner = scanner
        scanner.start()

    def _scan_finished(self, scanner: FolderScanner) -> None:
        self._scanners.discard(scanner)
        if self._scanner is scanner:
            self._scanner = None
        scanner.deleteLater()

    def _on_scanned(self, folder: str, result: Any) -> None:
        self.model.set_scanned(folder, result)
        menus.add_recent(self, folder)
        self.browser.set_series(result.series)
        self.scan_problems = problem_lines(result)
        self.act_problems.setEnabled(bool(self.scan_problems))
        skipped = f" · {len(result.problems)} file(s) skipped" if result.problems else ""
        warnings = getattr(result, "warnings", [])
        warned = f" · {len(warnings)} read with a warning" if warnings else ""
        more = " (File → Scan problems…)" if self.scan_problems else ""
        self.statusBar().showMessage(f"{len(result.series)} series in {folder}{skipped}{warned}{more}", 8000)
        self.show_series(first_anatomy(result.series))
        self.left.view.setFocus()  # arrows/PgUp/PgDn go to the images straight away

    def show_problems(self) -> None:
        """Every file of the last scan that was skipped, or read despite something wrong in it, with its reason."""
        text = "\n".join(self.scan_problems) or "No problems in the last scan."
        if self.show_dialogs:
            box = QtWidgets.QMessageBox(QtWidgets.QMessageBox.Icon.Information, "Scan problems",
                                        f"{len(self.scan_problems)} file(s) with problems", parent=self)
            box.setDetailedText(text)
            box.exec()

    def _on_scan_failed(self, folder: str, message: str) -> None:
        self.report_error("Cannot open folder", message)

    def report_error(self, title: str, message: str) -> None:
        """Status bar + ``error_occurred``; a dialog too when interactive."""
        self.model.set_error(message)
        self.statusBar().showMessage(message, 15000)
        self.error_occurred.emit(message)
        if self.show_dialogs:
            QtWidgets.QMessageBox.critical(self, title, message)

    def dragEnterEvent(self, ev: QtGui.QDragEnterEvent) -> None:
        if menus.dropped_folder(ev.mimeData()) is not None:
            ev.acceptProposedAction()

    def dropEvent(self, ev: QtGui.QDropEvent) -> None:
        folder = menus.dropped_folder(ev.mimeData())
        if folder is not None:
            ev.acceptProposedAction()
            self.open_folder(folder)

    # ------------------------------------------------------------------------------------ series
    def show_series(self, series: Any) -> None:
        """Show ``series`` at its middle slice, fitted, with the header window (or a robust one)."""
        if series is None:
            return
        self.cine_stop()
        self.model.set_series(series)
        self.stats = None
        self.worker.cancel()
        n_vol, n_sl, rows, cols = series.shape
        dr, dc = (float(v) for v in series.pixel_spacing)
        plane = Plane(rows=rows, cols=cols, row_spacing=dr, col_spacing=dc)
        header = series.window if getattr(series, "window", None) else None
        self._header_window = wl.first_valid_pair([header]) if header else None
        window = self._header_window or wl.WindowLevel(0.0, 1.0)
        docks.clear_tools(self)
        for vp in (self.left, self.right):
            vp.set_placeholder("")
            vp.set_image(None)
        self.browser.select(series)
        self.state.set_series(series_key(series), n_vol, n_sl, plane, window, viewport_px=self.left.viewport_px())
        self.setWindowTitle(self.model.window_title())
        if getattr(series, "problems", None):
            self.statusBar().showMessage("Note: " + "; ".join(series.problems), 15000)
        self.series_shown.emit(series)

    def page(self) -> int:
        """Slices one Page key moves: a tenth of the series."""
        return max(1, self.state.n_slices // 10)

    def current_key(self) -> tuple | None:
        return self.model.current_key()

    def current_images(self) -> dict[str, np.ndarray | None]:
        """The arrays for the current slice: original, interpolated, enhanced (None when not ready)."""
        key = self.current_key()
        if key is None:
            return {"original": None, "interpolated": None, "enhanced": None}
        return {
            "original": self.loader.originals.get(key),
            "interpolated": self.loader.interpolations.get(
                interpolation_key(key, self.state.scale, self.model.interpolation)),
            "enhanced": self.worker.cached(self.series, self.state.volume, self.state.slice),
        }

    def current_spread(self) -> np.ndarray | None:
        """The current slice's TTA spread (s·H, s·W) for the current model, or None until computed."""
        if self.series is None:
            return None
        return self.worker.cached_spread(self.series, self.state.volume, self.state.slice)

    def is_settled(self) -> bool:
        return self.model.is_settled()

    # ------------------------------------------------------------------------------------ state → view
    def _on_state(self, state: ViewState, changed: frozenset) -> None:
        if changed & {"series", "slice", "volume"}:
            self._request_current()
            self._refresh_images()
            self.tag_timer.start()
        if "difference" in changed and state.difference and self.disagreement:
            self.set_disagreement(False)  # one overlay at a time: they share the opacity slider
        if "enhanced" in changed:
            self._request_spread()
        if changed & {"enhanced", "difference", "overlay_opacity", "model"}:
            self._refresh_images()
            self.act_show_enhanced.setChecked(state.enhanced)
            self.act_difference.setChecked(state.difference)
            docks.sync_opacity_check(self)
        if changed & {"zoom", "pan", "series"}:
            self.left.apply_view()
            self.right.apply_view()
        if "window" in changed:
            menus.sync_preset_box(self)
            self.left.set_levels()
            self.right.set_levels()
            self._refresh_difference()
        self._update_overlays()

    def _on_model(self, model: ViewerModel, changed: frozenset) -> None:
        if "enhancing" in changed:
            self.act_enhance.setChecked(model.enhancing)
        if "disagreement" in changed:
            self.act_disagreement.setChecked(model.disagreement)
        if "model_info" in changed and model.model_info:
            info = model.model_info
            self.device_label.setText(f"{info.get('label', '')} on {info.get('device', '')}")

    def _request_current(self) -> None:
        if self.series is None:
            return
        v, s = self.state.volume, self.state.slice
        self.loader.request(self.series, v, s)
        if self.model.wants_enhancement():
            self.worker.request(self.series, v, s)
        self._request_spread()

    def _request_spread(self) -> None:
        """Ask the worker for the current slice's TTA spread when the overlay is on over an AI image."""
        if self.model.wants_spread():
            self.worker.request_spread(self.series, self.state.volume, self.state.slice)

    def _right_state(self, images: dict) -> str:
        return self.model.right_state(images["enhanced"] is not None)

    def _right_image(self, images: dict) -> np.ndarray | None:
        return images["enhanced"] if self._right_state(images) == "ready" else images["interpolated"]

    def _refresh_images(self) -> None:
        if self.series is None or self.state.plane is None:
            return
        rect = self.state.plane.rect_mm
        images = self.current_images()
        self.left.set_image(images["original"], rect)
        self.right.set_image(self._right_image(images), rect)
        self._refresh_difference(images)
        self.model.mark_shown(images["original"] is not None, images["interpolated"] is not None,
                              self._right_state(images))
        if self.is_settled():
            self.settled.emit()

    def _refresh_difference(self, images: dict | None = None) -> None:
        images = images or self.current_images()
        docks.refresh_difference(self, images, self._right_state(images))
        self._refresh_disagreement(images)

    def _refresh_disagreement(self, images: dict | None = None) -> None:
        images = images or self.current_images()
        docks.refresh_disagreement(self, self.current_spread(), self._right_state(images))

    def _update_overlays(self) -> None:
        """Every corner's text from the model; the spread's colour scale when the disagreement overlay is on."""
        state = self._right_state(self.current_images())
        spread = self.current_spread() if self.disagreement and state == "ready" else None
        scale = robust_scale(spread, self.state.window.width) if spread is not None else None
        corners, markers = self.model.corners(state, scale), self.model.markers()
        for side, vp in (("left", self.left), ("right", self.right)):
            for corner, (lines, tone) in corners[side].items():
                vp.set_corner(corner, lines, _TONES[tone])
            vp.set_markers(markers)

    def _on_hover(self, x: float, y: float, enhanced_side: bool) -> None:
        images = self.current_images()
        image = self._right_image(images) if enhanced_side else images["original"]
        self.cursor_label.setText(self.model.hover_text(x, y, image, enhanced_side))

    def _on_viewport_resized(self) -> None:
        """Keep a fitted image fitted when the window or the splitter changes size."""
        if self.state.plane is not None and self.state.fitted:
            self.fit()

    # ------------------------------------------------------------------------------------ workers → view
    def _on_loaded(self, key: tuple, original: np.ndarray, interpolated: np.ndarray | None) -> None:
        if key != self.current_key():
            return
        if self.stats is None:
            self.stats = wl.ImageStats.of(original)
            window = wl.initial_window(self._header_window, self.stats)
            self.state.set_default_window(window, self.stats.span)
        self._refresh_images()
        self._update_overlays()
        if self.roi_tool.rect() is not None:  # e.g. the interpolation compared with has just changed
            docks.update_region_stats(self, self.roi_tool.rect())

    def _on_load_failed(self, key: tuple, message: str) -> None:
        if key == self.current_key():
            self.report_error("Cannot read slice", message)

    def _on_enhanced(self, key: tuple, image: np.ndarray) -> None:
        cur = self.current_key()
        if cur is not None and key[:3] == cur:
            self._refresh_images()
            self._update_overlays()
            if self.roi_tool.rect() is not None:
                docks.update_region_stats(self, self.roi_tool.rect())

    def _on_planned(self, key: tuple, plan: Plan) -> None:
        if self.model.add_plan(key, plan):
            self._update_overlays()

    def _on_spread_ready(self, key: tuple, spread: np.ndarray) -> None:
        if self.series is not None and key == self.worker.key(self.series, self.state.volume, self.state.slice):
            self._refresh_disagreement()
            self._update_overlays()

    def _on_enhance_failed(self, message: str) -> None:
        self.model.set_enhance_error(message)
        self.progress.hide()
        self.cancel_button.hide()
        self._refresh_images()
        self._update_overlays()
        self.report_error("Enhancement failed", message)
        if self.is_settled():
            self.settled.emit()

    def _on_model_ready(self, info: dict) -> None:
        self.model.set_model_info(info)
        self._update_overlays()

    # ------------------------------------------------------------------------------------ commands
    def fit(self) -> None:
        self.state.fit(*self.left.viewport_px())

    def set_enhancing(self, on: bool) -> None:
        """Start (current slice first, then the whole volume) or stop background enhancement."""
        self.model.set_enhancing(on)
        if self.model.enhancing:
            self._request_current()
        else:
            self.worker.cancel()
        self._refresh_images()
        self._update_overlays()

    def set_disagreement(self, on: bool) -> None:
        """Show (computing it on demand) or hide the model-disagreement overlay; it replaces the difference one."""
        self.model.set_disagreement(on)
        if self.disagreement:
            self.state.set_difference(False)
            self._request_spread()
        self._refresh_disagreement()
        self._update_overlays()

    def cancel_enhancement(self) -> None:
        self.worker.cancel()
        self.progress.hide()
        self.cancel_button.hide()
        self.statusBar().showMessage("Enhancement cancelled; slices already enhanced stay available", 6000)

    def configure_enhancer(self, scale: int | None = None, model: Any = KEEP, device: str | None = None,
                           weights: Any = KEEP, consistency: Any = KEEP) -> None:
        """Change model/scale/device/data consistency: queued slices are dropped and the model is rebuilt in the
        worker; a new model, scale or consistency means new cache keys, so the slice is enhanced again.

        ``model``/``weights``/``consistency`` left out keep the current choice; None selects the default fidelity
        model / the model card's consistency.
        """
        new = reconfigured(self.worker.config, scale, model, device, weights, consistency)
        if new == self.worker.config:
            return
        self.worker.configure(new)
        self.model.set_config(new)
        self.loader.set_scale(new.scale)
        self.state.set_model(new.model, new.scale)
        menus.sync_enhance_menus(self)
        self._request_current()
        self._refresh_images()
        self._update_overlays()

    def set_interpolation(self, method: str) -> None:
        """Enhance → Comparison interpolation: the plain image the right pane, the difference overlay and the
        region statistics compare with (kept in the settings); the current slice is interpolated again."""
        if method == self.model.interpolation:
            return
        self.model.set_interpolation(method)
        self.loader.set_method(method)
        menus.store_interpolation(method)
        menus.sync_enhance_menus(self)
        self.roi_panel.set_reference(self.model.interpolation_name())
        self._request_current()
        self._refresh_images()
        self._update_overlays()
        if self.roi_tool.rect() is not None:
            docks.update_region_stats(self, self.roi_tool.rect())

    def toggle_cine(self, on: bool | None = None) -> None:
        on = (not self.cine.isActive()) if on is None or not isinstance(on, bool) else on
        if on and self.series is not None and self.state.n_slices > 1:
            self.cine.start()
        else:
            self.cine.stop()
        self.act_cine.setChecked(self.cine.isActive())

    def cine_stop(self) -> None:
        self.toggle_cine(False)

    def export_series(self) -> None:
        """Export the series with the worker's engine (built now when it is not loaded yet), the plan the
        worker made for it, and the slices it has already enhanced with this configuration."""
        series = self.series
        if series is None:
            return
        try:
            config, engine = self.worker.config, self.worker.engine
            if engine is None:  # not built yet: build one for the export now
                QtWidgets.QApplication.setOverrideCursor(QtCore.Qt.CursorShape.WaitCursor)
                try:
                    engine = build_engine(config)
                finally:
                    QtWidgets.QApplication.restoreOverrideCursor()

            def lookup(volume: int, slice_: int) -> np.ndarray | None:
                return self.worker.cached(series, volume, slice_, config)

            self._export_session = export_series_dialog(self, series, engine, start_dir=self.folder,
                                                        show_messages=self.show_dialogs, plan=self.model.plan(),
                                                        lookup=lookup)
            if self._export_session is not None:
                self._export_session.done.connect(lambda report, s=series: self._exported(s, report))
        except Exception as err:
            self.report_error("Export failed", str(err))

    def _exported(self, series: Any, report: Any) -> None:
        """Remember the last exported series, for "Send enhanced series to PACS…" (never sent automatically)."""
        if report is not None and report.files:
            self.last_export = (Path(report.out_dir), series)
            self.act_send_pacs.setEnabled(True)

    # ------------------------------------------------------------------------------------ PACS
    def open_pacs(self) -> Any:
        """The PACS window (``viewer.pacs_window``): only nodes the user configured are contacted; a retrieved
        study opens here at once."""
        if self.pacs is None:
            from viewer.pacs_window import PacsWindow

            self.pacs = PacsWindow()
            self.pacs.studyRetrieved.connect(lambda folder: self.open_folder(folder))
        self.pacs.show()
        self.pacs.raise_()
        return self.pacs

    def send_export_to_pacs(self) -> None:
        """Send the last exported enhanced series to the node selected in the PACS window, after the user confirms
        a dialog naming the patient, the series and the destination."""
        if self.last_export is None:
            return
        folder, series = self.last_export
        pacs = self.open_pacs()
        description = series.series_description or "(no description)"
        pacs.send_folder(folder, series.patient_name or "(no name)", f"AI-enhanced {description}",
                         confirm=self.show_dialogs)

    # ------------------------------------------------------------------------------------ shutdown
    def closeEvent(self, ev: QtGui.QCloseEvent) -> None:
        if self.show_dialogs and running_exports():
            answer = QtWidgets.QMessageBox.question(
                self, "Export running", "A series export is still running. Cancel it and quit?")
            if answer != QtWidgets.QMessageBox.StandardButton.Yes:
                ev.ignore()
                return
        self.shutdown()
        super().closeEvent(ev)

    def shutdown(self) -> None:
        """Stop timers, running exports (cancelled: they leave nothing half-written) and worker threads."""
        self.cine.stop()
        if self.pacs is not None:  # a transfer stops at its next file; nothing half-written is shown
            self.pacs.cancel()
            self.pacs.close()
        if running_exports():
            shutdown_exports()
        for scanner in list(self._scanners):
            scanner.wait(60_000)
        self.loader.stop()
        self.worker.stop(wait_ms=60_000)


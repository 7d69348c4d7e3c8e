"""The viewer's main window: two linked viewports (original | enhanced), series browser, tags, menus.

All view state lives in one ``ViewState``; the window subscribes to it and redraws. Pixels come from the
``SliceLoader`` thread and model output from the ``EnhanceWorker`` thread, both by signal, so the GUI thread
only places arrays into ImageItems. The right viewport shows the model's output for the slice when it is
ready; until then (or with enhancement off, key E) it shows the plain ×s interpolation of the original,
labelled as such, so an enhanced image can never be mistaken for an acquired or interpolated one.

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
from viewer import SAMPLE_SERIES, overlays
from viewer import window_level as wl
from viewer.series_browser import SeriesBrowser
from viewer.state import Plane, ViewState
from viewer.viewport import AI_COLOR, DIM_COLOR, ERROR_COLOR, TEXT_COLOR, Viewport
from viewer.workers import CONSISTENCY_DEFAULT, EnhanceConfig, EnhanceWorker, FolderScanner, SliceLoader, series_key

ORGANISATION = "BrainSR"
APPLICATION = "BrainSR Viewer"
MAX_RECENT = 8
CINE_INTERVAL_MS = 100  # 10 frames per second
_KEEP = object()
HEADER_PRESET = "Header"  # the series' own window (DICOM WindowCenter/Width), or the robust one if it has none
DISAGREEMENT_LABEL = "Model disagreement (TTA spread)"
CONSISTENCY_CHOICES = ((None, "Model &default"), ("off", "&Off"), ("bicubic", "&Bicubic"), ("kspace", "&k-space"),
                       ("auto", "&Automatic (LR-kind estimate and residual test)"))
CONSISTENCY_NAMES = {"off": "off", "bicubic": "bicubic", "kspace": "k-space", "auto": "auto",
                     None: CONSISTENCY_DEFAULT}


def settings() -> QtCore.QSettings:
    """The viewer's settings file (INI, user scope): tests redirect it with ``QSettings.setPath``."""
    return QtCore.QSettings(QtCore.QSettings.Format.IniFormat, QtCore.QSettings.Scope.UserScope,
                            ORGANISATION, APPLICATION)


def _scale_of_card(card: dict) -> int | None:
    return card.get("kwargs", {}).get("scale", card.get("scale"))


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
        self.series: Any = None
        self.scan_result: Any = None
        self.folder: str | None = None
        self.last_error: str | None = None
        self.model_info: dict | None = None
        self.plans: dict[tuple, Plan] = {}  # the worker's plan per (series, model…) key
        self._enhance_error: str | None = None
        self._stats: wl.ImageStats | None = None
        self._header_window: wl.WindowLevel | None = None
        self._scanner: FolderScanner | None = None  # the scan whose result will be shown
        self._scanners: set[FolderScanner] = set()   # every scan thread still running
        self._export_session = None
        self._shown: tuple | None = None  # (key, original drawn, interpolation drawn, right-side state)
        self.disagreement = False  # the TTA-spread overlay is asked for (shown once computed, over the AI image)

        self.loader = SliceLoader(self)
        self.enhancer = EnhanceWorker(config or EnhanceConfig(), self)
        self.loader.set_scale(self.enhancer.config.scale)
        self.state.scale = self.enhancer.config.scale
        self.enhancing = bool(enhance)

        self.left = Viewport(self.state, "original")
        self.right = Viewport(self.state, "enhanced")
        splitter = QtWidgets.QSplitter(QtCore.Qt.Orientation.Horizontal)
        splitter.addWidget(self.left)
        splitter.addWidget(self.right)
        splitter.setHandleWidth(2)
        splitter.setChildrenCollapsible(False)
        splitter.setStretchFactor(0, 1)
        splitter.setStretchFactor(1, 1)
        self.setCentralWidget(splitter)
        self.splitter = splitter

        self._build_difference()
        self._build_docks()
        self._build_tools()
        self._build_actions()
        self._build_menus()
        self._build_toolbar()
        self._build_status_bar()

        self.cine = QtCore.QTimer(self)
        self.cine.setInterval(CINE_INTERVAL_MS)
        self.cine.timeout.connect(lambda: self.state.step_slice(1, wrap=True))
        self._tag_timer = QtCore.QTimer(self, singleShot=True, interval=150)
        self._tag_timer.timeout.connect(self._update_tags)

        self.loader.loaded.connect(self._on_loaded)
        self.loader.failed.connect(self._on_load_failed)
        self.enhancer.enhanced.connect(self._on_enhanced)
        self.enhancer.spread_ready.connect(self._on_spread_ready)
        self.enhancer.progress.connect(self._on_enhance_progress)
        self.enhancer.failed.connect(self._on_enhance_failed)
        self.enhancer.model_ready.connect(self._on_model_ready)
        self.enhancer.planned.connect(self._on_planned)
        self.left.resized.connect(self._on_viewport_resized)
        self.left.vb.hovered.connect(lambda x, y: self._on_hover(x, y, False))
        self.right.vb.hovered.connect(lambda x, y: self._on_hover(x, y, True))
        self.state.subscribe(self._on_state)
        self.loader.start()
        self.enhancer.start()

        self.left.set_placeholder("Open a DICOM folder (Ctrl+O) or drop it here")
        self.right.set_placeholder("The enhanced slice appears here")
        self.resize(1440, 900)
        self._restore_settings()
        self._update_overlays()

    # ------------------------------------------------------------------------------------ building
    def _build_difference(self) -> None:
        self.difference_overlay = self.disagreement_overlay = None
        self.opacity_control = None
        try:
            from viewer.difference import DifferenceOverlay, OpacityControl
        except ImportError:
            return
        self.difference_overlay = DifferenceOverlay(opacity=self.state.overlay_opacity)
        self.right.vb.addItem(self.difference_overlay)
        self.difference_overlay.setVisible(False)
        self.disagreement_overlay = DifferenceOverlay(opacity=self.state.overlay_opacity, cmap="sequential")
        self.right.vb.addItem(self.disagreement_overlay)
        self.disagreement_overlay.setVisible(False)
        self.opacity_control = OpacityControl(self, opacity=self.state.overlay_opacity)
        self.opacity_control.setMaximumWidth(220)
        self.opacity_control.opacityChanged.connect(self.state.set_overlay_opacity)
        self.opacity_control.visibilityChanged.connect(self.state.set_difference)

    def _build_docks(self) -> None:
        self.browser = SeriesBrowser()
        self.browser.series_selected.connect(self.show_series)
        self.browser_dock = QtWidgets.QDockWidget("Series", self)
        self.browser_dock.setObjectName("series_dock")
        self.browser_dock.setWidget(self.browser)
        self.browser_dock.setFeatures(QtWidgets.QDockWidget.DockWidgetFeature.DockWidgetMovable
                                      | QtWidgets.QDockWidget.DockWidgetFeature.DockWidgetClosable)
        self.addDockWidget(QtCore.Qt.DockWidgetArea.LeftDockWidgetArea, self.browser_dock)

        self.tag_panel = None
        self.tag_dock = QtWidgets.QDockWidget("DICOM tags", self)
        self.tag_dock.setObjectName("tag_dock")
        try:
            from viewer.tag_panel import TagPanel

            self.tag_panel = TagPanel()
            self.tag_dock.setWidget(self.tag_panel)
        except ImportError:
            self.tag_dock.setWidget(QtWidgets.QLabel("Tag panel unavailable"))
        self.addDockWidget(QtCore.Qt.DockWidgetArea.RightDockWidgetArea, self.tag_dock)
        self.tag_dock.visibilityChanged.connect(self._tag_dock_visibility)
        self.tag_dock.hide()

        self.roi_panel = None
        self.roi_dock = QtWidgets.QDockWidget("Region statistics", self)
        self.roi_dock.setObjectName("roi_dock")
        try:
            from viewer.roi import RoiStatsPanel

            self.roi_panel = RoiStatsPanel()
            self.roi_dock.setWidget(self.roi_panel)
        except ImportError:
            self.roi_dock.setWidget(QtWidgets.QLabel("Region statistics unavailable"))
        self.addDockWidget(QtCore.Qt.DockWidgetArea.RightDockWidgetArea, self.roi_dock)
        self.roi_dock.hide()

    def _build_tools(self) -> None:
        """Region (ROI) and ruler tools from ``viewer.roi`` / ``viewer.ruler``, on both viewports."""
        self.roi_tool = self.ruler_tool = self.roi_runner = None
        try:
            from viewer.roi import RegionStatsRunner, RoiTool
            from viewer.ruler import RulerTool
        except ImportError:
            return
        boxes = [self.left.vb, self.right.vb]
        self.roi_tool = RoiTool(boxes, self)
        self.ruler_tool = RulerTool(boxes, self)
        self.roi_runner = RegionStatsRunner(self)
        self.roi_tool.regionChanged.connect(self._update_region_stats)
        self.roi_tool.regionCleared.connect(lambda: self._show_region_comparison(None))
        self.roi_runner.ready.connect(self._show_region_comparison)
        self.roi_runner.failed.connect(lambda msg: self.statusBar().showMessage(f"Region statistics: {msg}", 6000))
        self.ruler_tool.lengthChanged.connect(
            lambda mm: self.statusBar().showMessage(f"Ruler: {self.ruler_tool.label_text()}", 6000))

    def _action(self, text: str, slot, shortcut=None, checkable: bool = False, tip: str | None = None,
                images_only: bool = False) -> QtGui.QAction:
        """A menu/toolbar action. ``images_only``: its keys act only while the images have the focus, so
        arrows and Page keys still move through the series list and the tag table."""
        act = QtGui.QAction(text, self)
        if shortcut is not None:
            shortcuts = shortcut if isinstance(shortcut, (list, tuple)) else [shortcut]
            act.setShortcuts([QtGui.QKeySequence(s) for s in shortcuts])
            act.setShortcutContext(QtCore.Qt.ShortcutContext.WidgetWithChildrenShortcut if images_only
                                   else QtCore.Qt.ShortcutContext.WindowShortcut)
        act.setCheckable(checkable)
        if tip:
            act.setStatusTip(tip)
            act.setToolTip(f"{tip} ({act.shortcut().toString()})" if shortcut else tip)
        act.triggered.connect(slot)
        # added to a widget so the keys work even when the menu bar is hidden
        (self.splitter if images_only else self).addAction(act)
        return act

    def _build_actions(self) -> None:
        K = QtGui.QKeySequence.StandardKey
        self.act_open = self._action("&Open folder…", self.choose_folder, K.Open, tip="Open a folder of DICOM files")
        self.act_sample = self._action("Open &sample series", lambda: self.open_folder(SAMPLE_SERIES),
                                       tip="Open the bundled sample brain series")
        self.act_export_series = self._action("&Export enhanced series…", self.export_series, "Ctrl+Shift+E",
                                              tip="Write the enhanced series as a new derived DICOM series")
        self.act_export_png = self._action("Export view as &PNG…", self.export_png, "Ctrl+Shift+S",
                                           tip="Save both viewports as a labelled PNG")
        self.act_quit = self._action("&Quit", self.close, K.Quit)

        self.act_zoom_in = self._action("Zoom &in", lambda: self.state.zoom_by(1.25), ["+", "=", "Ctrl++"])
        self.act_zoom_out = self._action("Zoom &out", lambda: self.state.zoom_by(0.8), ["-", "Ctrl+-"])
        self.act_fit = self._action("&Fit to window", self.fit, ["F", "Ctrl+0"], tip="Fit the image into the view")
        self.act_reset_window = self._action("&Reset window/level", self.state.reset_window, "R",
                                             tip="Back to the series' own window/level")
        self.preset_actions = {}
        for i, name in enumerate([HEADER_PRESET, *wl.PRESETS]):
            self.preset_actions[name] = self._action(name, lambda _=False, n=name: self.apply_preset(n), str(i))
        self.act_show_enhanced = self._action("Show &enhanced", self.state.toggle_enhanced, "E", checkable=True,
                                              tip="Right view: AI-enhanced (on) or plain interpolation (off)")
        self.act_show_enhanced.setChecked(self.state.enhanced)
        self.act_difference = self._action("&Difference overlay", lambda on: self.state.set_difference(on), "D",
                                           checkable=True, tip="Overlay enhanced − interpolated on the right view")
        self.act_disagreement = self._action(
            "Model dis&agreement (TTA spread)", self.set_disagreement, "U", checkable=True,
            tip="Overlay where the model's output changes when the slice is flipped or rotated (8 runs per slice)")
        self.act_cine = self._action("&Cine play/pause", self.toggle_cine, "Space", checkable=True,
                                     tip="Step through the slices")
        step = self.state.step_slice
        self.act_next = self._action("Next slice", lambda: step(1), ["Down", "Right"], images_only=True)
        self.act_prev = self._action("Previous slice", lambda: step(-1), ["Up", "Left"], images_only=True)
        self.act_page_down = self._action("Page forward (a tenth of the slices)", lambda: step(self._page()),
                                          "PgDown", images_only=True)
        self.act_page_up = self._action("Page back", lambda: step(-self._page()), "PgUp", images_only=True)
        self.act_first = self._action("First slice", lambda: self.state.set_slice(0), "Home", images_only=True)
        self.act_last = self._action("Last slice", lambda: self.state.set_slice(self.state.n_slices - 1), "End",
                                     images_only=True)
        self.act_next_volume = self._action("Next volume", lambda: self.state.set_volume(self.state.volume + 1), "]")
        self.act_prev_volume = self._action("Previous volume", lambda: self.state.set_volume(self.state.volume - 1), "[")

        self.act_enhance = self._action("&Enhance series", self.set_enhancing, "Ctrl+E", checkable=True,
                                        tip="Run the model on this slice, then the rest of the series in the background")
        self.act_enhance.setChecked(self.enhancing)
        self.act_cancel = self._action("&Cancel enhancement", self.cancel_enhancement, "Esc",
                                       tip="Stop enhancing the rest of the series")
        self.act_model_info = self._action("Model &information…", self.show_model_info)

        self.act_region = self._action("&Region statistics", self._set_region_mode, "G", checkable=True,
                                       tip="Drag a rectangle (or Shift+drag any time) to compare the two sides")
        self.act_ruler = self._action("&Ruler", self._set_ruler_mode, "M", checkable=True,
                                      tip="Drag to measure in mm (or Ctrl+drag any time)")
        self.act_clear_tools = self._action("Clear measurements", self._clear_tools, "Backspace")
        for act in (self.act_region, self.act_ruler, self.act_clear_tools):
            act.setEnabled(self.roi_tool is not None)

    def _build_menus(self) -> None:
        bar = self.menuBar()
        m = bar.addMenu("&File")
        m.addActions([self.act_open, self.act_sample])
        self.recent_menu = m.addMenu("&Recent folders")
        m.addSeparator()
        m.addActions([self.act_export_series, self.act_export_png])
        m.addSeparator()
        m.addAction(self.act_quit)

        m = bar.addMenu("&View")
        m.addActions([self.act_zoom_in, self.act_zoom_out, self.act_fit])
        m.addSeparator()
        presets = m.addMenu("Window &presets")
        presets.addActions(list(self.preset_actions.values()))
        m.addAction(self.act_reset_window)
        m.addSeparator()
        m.addActions([self.act_show_enhanced, self.act_difference, self.act_disagreement])
        m.addSeparator()
        m.addActions([self.act_cine, self.act_next, self.act_prev, self.act_page_down, self.act_page_up,
                      self.act_first, self.act_last, self.act_next_volume, self.act_prev_volume])
        m.addSeparator()
        for dock, key in ((self.browser_dock, "Ctrl+1"), (self.tag_dock, "Ctrl+2"), (self.roi_dock, "Ctrl+3")):
            act = dock.toggleViewAction()
            act.setShortcut(QtGui.QKeySequence(key))
            m.addAction(act)

        m = bar.addMenu("&Tools")
        m.addActions([self.act_region, self.act_ruler, self.act_clear_tools])

        m = bar.addMenu("&Enhance")
        m.addActions([self.act_enhance, self.act_cancel])
        m.addSeparator()
        self.model_menu = m.addMenu("&Model")
        self.scale_menu = m.addMenu("&Scale")
        self.device_menu = m.addMenu("&Device")
        self.scale_group = QtGui.QActionGroup(self)
        for s in (2, 4):
            act = self.scale_menu.addAction(f"×{s}")
            act.setCheckable(True)
            act.setData(s)
            self.scale_group.addAction(act)
        self.scale_group.triggered.connect(lambda act: self.configure_enhancer(scale=int(act.data())))
        self.device_group = QtGui.QActionGroup(self)
        for d in ("auto", "cpu", "cuda", "mps"):
            act = self.device_menu.addAction(d)
            act.setCheckable(True)
            act.setData(d)
            self.device_group.addAction(act)
        self.device_group.triggered.connect(lambda act: self.configure_enhancer(device=str(act.data())))
        self.consistency_menu = m.addMenu("Data &consistency")
        self.consistency_menu.setToolTipsVisible(True)
        self.consistency_group = QtGui.QActionGroup(self)
        for kind, text in CONSISTENCY_CHOICES:
            act = self.consistency_menu.addAction(text)
            act.setCheckable(True)
            act.setData(kind)
            act.setToolTip("Per series: k-space when the model is confident the series was k-space truncated, "
                           "bicubic when confident it was downsampled, else off" if kind == "auto" else
                           "Correct each enhanced slice so that degrading it reproduces the original"
                           if kind not in (None, "off") else
                           "What the model card recommends (off when it names none)" if kind is None else
                           "The model's output as it is")
            self.consistency_group.addAction(act)
        self.consistency_group.triggered.connect(self._consistency_chosen)
        self.model_group = QtGui.QActionGroup(self)
        self.model_group.triggered.connect(self._model_chosen)
        m.addSeparator()
        m.addAction(self.act_model_info)
        self._sync_enhance_menus()

        m = bar.addMenu("&Help")
        m.addAction(self._action("&Keyboard and mouse", self.show_help, "F1"))
        m.addAction(self._action("&About BrainSR", self.show_about))

    def _build_toolbar(self) -> None:
        tb = self.addToolBar("Main")
        tb.setObjectName("main_toolbar")
        tb.setMovable(False)
        tb.setToolButtonStyle(QtCore.Qt.ToolButtonStyle.ToolButtonTextOnly)
        tb.addAction(self.act_open)
        tb.addSeparator()
        tb.addAction(self.act_enhance)
        tb.addAction(self.act_show_enhanced)
        tb.addSeparator()
        self.preset_box = QtWidgets.QComboBox(tb)
        self.preset_box.addItems([HEADER_PRESET, *wl.PRESETS])
        self.preset_box.setMinimumContentsLength(10)
        self.preset_box.setToolTip("Window/level preset (keys 0–4; right-drag on an image to adjust)")
        self.preset_box.textActivated.connect(self.apply_preset)
        tb.addWidget(QtWidgets.QLabel("  W/L ", tb))
        tb.addWidget(self.preset_box)
        tb.addAction(self.act_reset_window)
        tb.addSeparator()
        tb.addAction(self.act_fit)
        tb.addAction(self.act_cine)
        tb.addSeparator()
        tb.addAction(self.act_region)
        tb.addAction(self.act_ruler)
        if self.opacity_control is not None:
            tb.addSeparator()
            tb.addWidget(self.opacity_control)
        tb.addAction(self.act_disagreement)
        for act, text in ((self.act_open, "Open"), (self.act_enhance, "Enhance"), (self.act_show_enhanced, "AI / bicubic"),
                          (self.act_reset_window, "Reset"), (self.act_fit, "Fit"), (self.act_cine, "Cine"),
                          (self.act_region, "Region"), (self.act_ruler, "Ruler"),
                          (self.act_disagreement, "Disagreement")):
            act.setIconText(text)  # the toolbar's short name; a button's own text would revert when the action toggles

    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        self.cursor_label = QtWidgets.QLabel("")
        self.cursor_label.setMinimumWidth(260)
        self.device_label = QtWidgets.QLabel("")
        self.progress = QtWidgets.QProgressBar()
        self.progress.setMaximumWidth(220)
        self.progress.setFormat("Enhancing %v/%m")
        self.progress.hide()
        self.cancel_button = QtWidgets.QToolButton()
        self.cancel_button.setDefaultAction(self.act_cancel)
        self.cancel_button.setText("Cancel")
        self.cancel_button.hide()
        bar.addPermanentWidget(self.cursor_label)
        bar.addPermanentWidget(self.device_label)
        bar.addPermanentWidget(self.progress)
        bar.addPermanentWidget(self.cancel_button)

    def showEvent(self, ev: QtGui.QShowEvent) -> None:
        super().showEvent(ev)
        if not getattr(self, "_docks_sized", False):
            self._docks_sized = True
            self.resizeDocks([self.browser_dock], [max(300, min(360, int(self.width() / 4.5)))], QtCore.Qt.Orientation.Horizontal)
            half = max(self.splitter.width() // 2, 1)
            self.splitter.setSizes([half, half])

    # ------------------------------------------------------------------------------------ folders
    def choose_folder(self) -> None:
        recent = self._recent()
        start = self.folder or (recent[0] if recent else str(Path.home()))
        folder = QtWidgets.QFileDialog.getExistingDirectory(self, "Open DICOM folder", start)
        if folder:
            self.open_folder(folder)

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
        scanner.progress.connect(lambda done, total: self.statusBar().showMessage(f"Scanning {folder} … {done}/{total} files"))
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
        self.folder = folder
        self.scan_result = result
        self._add_recent(folder)
        self.browser.set_series(result.series)
        skipped = f" · {len(result.problems)} file(s) skipped" if result.problems else ""
        self.statusBar().showMessage(f"{len(result.series)} series in {folder}{skipped}", 8000)
        self.show_series(_first_anatomy(result.series))
        self.left.view.setFocus()  # arrows/PgUp/PgDn go to the images straight away

    def _on_scan_failed(self, folder: str, message: str) -> None:
        self.report_error("Cannot open folder", message)

    def report_error(self, title: str, message: str) -> None:
        """Status bar + ``error_occurred``; a dialog too when interactive."""
        self.last_error = message
        self.statusBar().showMessage(message, 15000)
        self.error_occurred.emit(message)
        if self.show_dialogs:
            QtWidgets.QMessageBox.critical(self, title, message)

    def _recent(self) -> list[str]:
        value = settings().value("recent_folders", [])
        if isinstance(value, str):
            value = [value]
        return [str(v) for v in (value or [])]

    def _add_recent(self, folder: str) -> None:
        folder = str(Path(folder).resolve())
        if Path(folder) == SAMPLE_SERIES.resolve():
            return
        recent = [folder] + [f for f in self._recent() if f != folder]
        settings().setValue("recent_folders", recent[:MAX_RECENT])
        self._rebuild_recent_menu()

    def _rebuild_recent_menu(self) -> None:
        self.recent_menu.clear()
        recent = self._recent()
        for i, folder in enumerate(recent):
            act = self.recent_menu.addAction(f"&{i + 1}  {folder}")
            act.triggered.connect(lambda _=False, f=folder: self.open_folder(f))
        self.recent_menu.setEnabled(bool(recent))

    def _restore_settings(self) -> None:
        self._rebuild_recent_menu()

    # ------------------------------------------------------------------------------------ drag & drop
    def dragEnterEvent(self, ev: QtGui.QDragEnterEvent) -> None:
        if _dropped_folder(ev.mimeData()) is not None:
            ev.acceptProposedAction()

    def dropEvent(self, ev: QtGui.QDropEvent) -> None:
        folder = _dropped_folder(ev.mimeData())
        if folder is not None:
            ev.acceptProposedAction()
            self.open_folder(folder)

    # ------------------------------------------------------------------------------------ series
    def show_series(self, series: Any) -> None:
        """Show ``series`` at its middle slice, fitted, with the header window (or a robust one)."""
        if series is None:
            return
        self.cine_stop()
        self.series = series
        self._stats = None
        self._enhance_error = None
        self.enhancer.cancel()
        n_vol, n_sl, rows, cols = series.shape
        dr, dc = (float(v) for v in series.pixel_spacing)
        plane = Plane(rows=rows, cols=cols, row_spacing=dr, col_spacing=dc)
        header = series.window if getattr(series, "window", None) else None
        self._header_window = wl.first_valid_pair([header]) if header else None
        window = self._header_window or wl.WindowLevel(0.0, 1.0)
        if self.roi_tool is not None:
            self._clear_tools()
        for vp in (self.left, self.right):
            vp.set_placeholder("")
            vp.set_image(None)
        self.browser.select(series)
        self.state.set_series(series_key(series), n_vol, n_sl, plane, window, viewport_px=self.left.viewport_px())
        title = " — ".join(x for x in (overlays.format_person_name(series.patient_name), series.series_description) if x)
        self.setWindowTitle(f"BrainSR — {title}" if title else "BrainSR")
        if getattr(series, "problems", None):
            self.statusBar().showMessage("Note: " + "; ".join(series.problems), 15000)
        self.series_shown.emit(series)

    def _page(self) -> int:
        return max(1, self.state.n_slices // 10)

    def current_key(self) -> tuple | None:
        if self.series is None:
            return None
        return (series_key(self.series), self.state.volume, self.state.slice)

    def current_images(self) -> dict[str, np.ndarray | None]:
        """The arrays for the current slice: original, interpolated, enhanced (None when not ready)."""
        key = self.current_key()
        if key is None:
            return {"original": None, "interpolated": None, "enhanced": None}
        return {
            "original": self.loader.originals.get(key),
            "interpolated": self.loader.interpolations.get((*key, self.state.scale)),
            "enhanced": self.enhancer.cached(self.series, self.state.volume, self.state.slice),
        }

    def is_settled(self) -> bool:
        """The current slice is on screen: original and interpolation drawn, and with enhancement on, the
        model's output (or its error) drawn too."""
        shown = self._shown
        if shown is None or shown[0] != self.current_key() or not (shown[1] and shown[2]):
            return False
        if self.enhancing and self.state.enhanced:
            return shown[3] in ("ready", "error")
        return True

    # ------------------------------------------------------------------------------------ state → view
    def _on_state(self, state: ViewState, changed: frozenset) -> None:
        if changed & {"series", "slice", "volume"}:
            self._request_current()
            self._refresh_images()
            self._tag_timer.start()
        if "difference" in changed and state.difference and self.disagreement:
            self.set_disagreement(False)  # one overlay at a time: they share the opacity slider
        if "enhanced" in changed:
            self._request_spread()
        if changed & {"enhanced", "difference", "overlay_opacity", "model"}:
            self._refresh_images()
            self.act_show_enhanced.setChecked(state.enhanced)
            self.act_difference.setChecked(state.difference)
            if self.opacity_control is not None:
                self.opacity_control.check.blockSignals(True)
                self.opacity_control.check.setChecked(state.difference)
                self.opacity_control.check.blockSignals(False)
        if changed & {"zoom", "pan", "series"}:
            self.left.apply_view()
            self.right.apply_view()
        if "window" in changed:
            self._sync_preset_box()
            self.left.set_levels()
            self.right.set_levels()
            self._refresh_difference()
        self._update_overlays()

    def _request_current(self) -> None:
        if self.series is None:
            return
        v, s = self.state.volume, self.state.slice
        self.loader.request(self.series, v, s)
        if self.enhancing and self._enhance_error is None:
            self.enhancer.request(self.series, v, s)
        self._request_spread()

    def _request_spread(self) -> None:
        """Ask the worker for the current slice's TTA spread when the overlay is on over an AI image."""
        if (self.series is None or not self.disagreement or not self.enhancing or not self.state.enhanced
                or self._enhance_error is not None):
            return
        self.enhancer.request_spread(self.series, self.state.volume, self.state.slice)

    def _refresh_images(self) -> None:
        if self.series is None or self.state.plane is None:
            return
        rect = self.state.plane.rect_mm
        images = self.current_images()
        self.left.set_image(images["original"], rect)
        right = self._right_image(images)
        self.right.set_image(right, rect)
        self._refresh_difference(images)
        self._shown = (self.current_key(), images["original"] is not None, images["interpolated"] is not None,
                       self._right_state(images))
        if self.is_settled():
            self.settled.emit()

    def _right_state(self, images: dict) -> str:
        if not (self.enhancing and self.state.enhanced):
            return "interpolated"
        if images["enhanced"] is not None:
            return "ready"
        return "error" if self._enhance_error else "enhancing"

    def _right_image(self, images: dict) -> np.ndarray | None:
        if self._right_state(images) == "ready":
            return images["enhanced"]
        return images["interpolated"]

    def _refresh_difference(self, images: dict | None = None) -> None:
        overlay = self.difference_overlay
        if overlay is None:
            return
        images = images or self.current_images()
        show = (self.state.difference and images["enhanced"] is not None and images["interpolated"] is not None
                and self._right_state(images) == "ready")
        if show:
            overlay.set_data(images["enhanced"], images["interpolated"], rect_mm=self.state.plane.rect_mm,
                             window_width=self.state.window.width)
            overlay.set_opacity(self.state.overlay_opacity)
        overlay.setVisible(bool(show))
        self._refresh_disagreement(images)

    def _refresh_disagreement(self, images: dict | None = None) -> None:
        overlay = self.disagreement_overlay
        if overlay is None:
            return
        images = images or self.current_images()
        spread = self.current_spread()
        show = self.disagreement and spread is not None and self._right_state(images) == "ready"
        if show:
            overlay.set_difference(spread, rect_mm=self.state.plane.rect_mm, window_width=self.state.window.width,
                                   cmap="sequential")
            overlay.set_opacity(self.state.overlay_opacity)
        overlay.setVisible(bool(show))

    def current_spread(self) -> np.ndarray | None:
        """The current slice's TTA spread (s·H, s·W) for the current model, or None until computed."""
        if self.series is None:
            return None
        return self.enhancer.cached_spread(self.series, self.state.volume, self.state.slice)

    def _disagreement_lines(self, state: str) -> list[str]:
        if not self.disagreement:
            return []
        if state != "ready":
            why = {"interpolated": "shown over the AI-enhanced image only", "error": "unavailable: enhancement failed"}
            return [DISAGREEMENT_LABEL, why.get(state, "waiting for the enhanced slice…")]
        spread = self.current_spread()
        if spread is None:
            return [DISAGREEMENT_LABEL, "computing… (8 flips/rotations)"]
        from viewer.difference import robust_scale

        full = robust_scale(spread, self.state.window.width)
        return [DISAGREEMENT_LABEL, f"yellow → magenta: s.d. 0 → {full:.3g}"]

    def consistency_in_force(self) -> str:
        """What the enhanced image on the right was projected with: the loaded model's (card default resolved),
        or the configured choice before the model is loaded."""
        cfg, info = self.enhancer.config, self.model_info or {}
        loaded = info.get("config")
        if loaded is not None and (loaded.model_id, loaded.scale, loaded.consistency) == (
                cfg.model_id, cfg.scale, cfg.consistency) and info.get("consistency"):
            return CONSISTENCY_NAMES.get(info["consistency"], info["consistency"])
        return CONSISTENCY_NAMES.get(cfg.consistency, str(cfg.consistency))

    def _update_overlays(self) -> None:
        s, series = self.state, self.series
        if series is None or s.plane is None:
            for vp in (self.left, self.right):
                for corner in vp.CORNERS:
                    vp.set_corner(corner, [])
                vp.set_markers({})
            return
        frame = series.frame(s.volume, s.slice)
        orientation = frame.orientation if frame.orientation is not None else series.orientation
        markers = overlays.orientation_markers(orientation)
        position = overlays.slice_position_mm(frame.position, orientation)
        sl = overlays.slice_lines(s.slice, s.n_slices, s.volume, s.n_volumes, position, frame.slice_thickness)
        plane, k = s.plane, s.scale
        images = self.current_images()
        state = self._right_state(images)

        self.left.set_corner("top_left", overlays.patient_lines(series))
        self.left.set_corner("top_right", ["Original", series.modality or ""], DIM_COLOR)
        self.left.set_corner("bottom_left", sl)
        self.left.set_corner("bottom_right", overlays.display_lines(
            s.window.center, s.window.width, s.zoom, (plane.row_spacing, plane.col_spacing), (plane.rows, plane.cols)))
        self.left.set_markers(markers)

        info = self.model_info or {}
        card = info.get("card", {})
        model = card.get("name") or (self.enhancer.config.model or None)
        version = card.get("version") or (card.get("sha256", "")[:8] or None)
        head = [series.series_description] if series.series_description else []
        self.right.set_corner("top_left", head + self._disagreement_lines(state))
        color = {"ready": AI_COLOR, "enhancing": AI_COLOR, "error": ERROR_COLOR}.get(state, TEXT_COLOR)
        label = overlays.enhanced_label(k, model, version, state)
        if state == "ready":  # before the disclaimer, which stays last
            plan = self.plans.get(self.enhancer.key(series, 0, -1))
            extra = plan.lines() if plan is not None else [f"data consistency: {self.consistency_in_force()}"]
            label[len(label) - 1:len(label) - 1] = extra
        self.right.set_corner("top_right", label, color)
        self.right.set_corner("bottom_left", sl)
        self.right.set_corner("bottom_right", overlays.display_lines(
            s.window.center, s.window.width, s.zoom, (plane.row_spacing / k, plane.col_spacing / k),
            (plane.rows * k, plane.cols * k)))
        self.right.set_markers(markers)

    def _tag_dock_visibility(self, visible: bool) -> None:
        if visible:
            self._tag_timer.start()

    def _show_region_comparison(self, comparison) -> None:
        if self.roi_panel is not None:
            self.roi_panel.set_comparison(comparison)

    def _update_tags(self) -> None:
        if self.tag_panel is None or self.series is None or not self.tag_dock.isVisible():
            return
        try:
            self.tag_panel.set_dataset(self.series.header(self.state.volume, self.state.slice))
        except Exception as err:  # an unreadable header must not break slice stepping
            self.statusBar().showMessage(f"Tags: {err}", 6000)

    def _on_hover(self, x: float, y: float, enhanced_side: bool) -> None:
        plane = self.state.plane
        if plane is None:
            return
        images = self.current_images()
        k = self.state.scale if enhanced_side else 1
        image = self._right_image(images) if enhanced_side else images["original"]
        r, c = plane.pixel_of(x, y, k)
        text = f"x {x:.1f}  y {y:.1f} mm"
        if image is not None:
            ri, ci = int(round(r)), int(round(c))
            if 0 <= ri < image.shape[0] and 0 <= ci < image.shape[1]:
                text += f"   value {image[ri, ci]:.0f}"
        self.cursor_label.setText(text)

    def _on_viewport_resized(self) -> None:
        """Keep a fitted image fitted when the window or the splitter changes size."""
        if self.state.plane is not None and self.state.fitted:
            self.fit()

    # ------------------------------------------------------------------------------------ workers → view
    def _on_loaded(self, key: tuple, original: np.ndarray, interpolated: np.ndarray | None) -> None:
        if key != self.current_key():
            return
        if self._stats is None:
            self._stats = wl.ImageStats.of(original)
            window = wl.initial_window(self._header_window, self._stats)
            self.state.set_default_window(window, self._stats.span)
        self._refresh_images()
        self._update_overlays()

    def _on_load_failed(self, key: tuple, message: str) -> None:
        if key == self.current_key():
            self.report_error("Cannot read slice", message)

    def _on_enhanced(self, key: tuple, image: np.ndarray) -> None:
        cur = self.current_key()
        if cur is not None and key[:3] == cur:
            self._refresh_images()
            self._update_overlays()
            if self.roi_tool is not None and self.roi_tool.rect() is not None:
                self._update_region_stats(self.roi_tool.rect())

    def _on_planned(self, key: tuple, plan: Plan) -> None:
        self.plans[key] = plan
        if self.series is not None and key == self.enhancer.key(self.series, 0, -1):
            self._update_overlays()

    def _on_spread_ready(self, key: tuple, spread: np.ndarray) -> None:
        if self.series is not None and key == self.enhancer.key(self.series, self.state.volume, self.state.slice):
            self._refresh_disagreement()
            self._update_overlays()

    def _on_enhance_progress(self, done: int, total: int) -> None:
        busy = total > 0 and done < total
        self.progress.setVisible(busy)
        self.cancel_button.setVisible(busy)
        if busy:
            self.progress.setRange(0, total)
            self.progress.setValue(done)
        elif total > 0:
            self.statusBar().showMessage(f"Enhanced all {total} slices", 5000)

    def _on_enhance_failed(self, message: str) -> None:
        self._enhance_error = message
        self.progress.hide()
        self.cancel_button.hide()
        self._refresh_images()
        self._update_overlays()
        self.report_error("Enhancement failed", message)
        if self.is_settled():
            self.settled.emit()

    def _on_model_ready(self, info: dict) -> None:
        self.model_info = info
        self.device_label.setText(f"{info.get('label', '')} on {info.get('device', '')}")
        self._update_overlays()

    # ------------------------------------------------------------------------------------ commands
    def fit(self) -> None:
        self.state.fit(*self.left.viewport_px())

    def apply_preset(self, name: str) -> None:
        """Window preset by name: ``HEADER_PRESET`` (the series' own window) or one of ``wl.PRESETS``."""
        if name == HEADER_PRESET:
            self.state.reset_window()
        elif self._stats is not None:
            self.state.set_window(wl.preset(name, self._stats))
        self._sync_preset_box()

    def _sync_preset_box(self) -> None:
        """Show which preset the current window is; blank after a manual (right-drag) change."""
        window = self.state.window
        name = None
        if window == self.state.default_window:
            name = HEADER_PRESET
        elif self._stats is not None:
            name = next((n for n in wl.PRESETS if wl.preset(n, self._stats) == window), None)
        self.preset_box.setCurrentIndex(self.preset_box.findText(name) if name else -1)

    def set_enhancing(self, on: bool) -> None:
        """Start (current slice first, then the whole volume) or stop background enhancement."""
        self.enhancing = bool(on)
        self.act_enhance.setChecked(self.enhancing)
        self._enhance_error = None
        if self.enhancing:
            self._request_current()
        else:
            self.enhancer.cancel()
        self._refresh_images()
        self._update_overlays()

    def set_disagreement(self, on: bool) -> None:
        """Show (computing it on demand) or hide the model-disagreement overlay; it replaces the difference one."""
        self.disagreement = bool(on)
        self.act_disagreement.setChecked(self.disagreement)
        if self.disagreement:
            self.state.set_difference(False)
            self._request_spread()
        self._refresh_disagreement()
        self._update_overlays()

    def cancel_enhancement(self) -> None:
        self.enhancer.cancel()
        self.progress.hide()
        self.cancel_button.hide()
        self.statusBar().showMessage("Enhancement cancelled; slices already enhanced stay available", 6000)

    def configure_enhancer(self, scale: int | None = None, model: Any = _KEEP, device: str | None = None,
                           weights: Any = _KEEP, consistency: Any = _KEEP) -> None:
        """Change model/scale/device/data consistency: queued slices are dropped and the model is rebuilt in the
        worker; a new model, scale or consistency means new cache keys, so the slice is enhanced again.

        ``model``/``weights``/``consistency`` left out keep the current choice; None selects the default fidelity
        model / the model card's consistency.
        """
        old = self.enhancer.config
        new = EnhanceConfig(scale=old.scale if scale is None else int(scale),
                            model=old.model if model is _KEEP else model,
                            weights=old.weights if weights is _KEEP else weights,
                            device=old.device if device is None else device,
                            consistency=old.consistency if consistency is _KEEP else consistency)
        if new.scale != old.scale and weights is _KEEP and old.weights:  # a weights file fits one scale only
            new = EnhanceConfig(scale=new.scale, model=None, weights=None, device=new.device,
                                consistency=new.consistency)
        if new == old:
            return
        self.enhancer.configure(new)
        if (new.model_id, new.scale, new.consistency) != (old.model_id, old.scale, old.consistency):
            self.model_info = None  # slices already enhanced by the same weights stay valid on another device
        self._enhance_error = None
        self.loader.set_scale(new.scale)
        self.state.set_model(new.model, new.scale)
        self._sync_enhance_menus()
        self._request_current()
        self._refresh_images()
        self._update_overlays()

    def _model_chosen(self, act: QtGui.QAction) -> None:
        data = act.data()
        self.configure_enhancer(model=data or None, weights=None)

    def _consistency_chosen(self, act: QtGui.QAction) -> None:
        self.configure_enhancer(consistency=act.data() or None)

    def _sync_enhance_menus(self) -> None:
        cfg = self.enhancer.config
        for act in self.scale_group.actions():
            act.setChecked(act.data() == cfg.scale)
        for act in self.device_group.actions():
            act.setChecked(act.data() == cfg.device)
        for act in self.consistency_group.actions():
            act.setChecked((act.data() or None) == cfg.consistency)
        self.model_menu.clear()
        for act in self.model_group.actions():
            self.model_group.removeAction(act)
        try:
            from srgan.models.weights import list_bundled

            cards = [c for c in list_bundled() if _scale_of_card(c) == cfg.scale]
        except Exception:
            cards = []
        entries = [(f"Default ×{cfg.scale} (fidelity)", None)] + [
            (f"{c.get('name')} ({c.get('kind', 'fidelity')})", c.get("name")) for c in cards]
        if cfg.weights:
            entries.append((f"File: {Path(cfg.weights).name}", "__file__"))
        for text, name in entries:
            act = self.model_menu.addAction(text)
            act.setCheckable(True)
            act.setData(name)
            act.setChecked((cfg.weights is not None and name == "__file__")
                           or (cfg.weights is None and name == cfg.model))
            if name == "__file__":
                act.setEnabled(False)
            self.model_group.addAction(act)

    def toggle_cine(self, on: bool | None = None) -> None:
        on = (not self.cine.isActive()) if on is None or not isinstance(on, bool) else on
        if on and self.series is not None and self.state.n_slices > 1:
            self.cine.start()
        else:
            self.cine.stop()
        self.act_cine.setChecked(self.cine.isActive())

    def cine_stop(self) -> None:
        self.toggle_cine(False)

    def _set_region_mode(self, on: bool) -> None:
        if self.roi_tool is None:
            return
        if on and self.ruler_tool is not None:
            self.ruler_tool.set_mode(False)
            self.act_ruler.setChecked(False)
        self.roi_tool.set_mode(on)
        if on:
            self.roi_dock.show()

    def _set_ruler_mode(self, on: bool) -> None:
        if self.ruler_tool is None:
            return
        if on and self.roi_tool is not None:
            self.roi_tool.set_mode(False)
            self.act_region.setChecked(False)
        self.ruler_tool.set_mode(on)

    def _clear_tools(self) -> None:
        if self.roi_tool is not None:
            self.roi_tool.clear()
        if self.ruler_tool is not None:
            self.ruler_tool.clear()

    def _update_region_stats(self, rect) -> None:
        if self.roi_runner is None or self.state.plane is None:
            return
        images = self.current_images()
        if images["original"] is None or images["interpolated"] is None:
            return
        enhanced = images["enhanced"] if images["enhanced"] is not None else images["interpolated"]
        p = self.state.plane
        self.roi_dock.show()
        self.roi_runner.request(images["original"], enhanced, images["interpolated"], rect,
                                (p.row_spacing, p.col_spacing), self.state.scale)

    def _provenance_text(self) -> str:
        if self.model_info:
            return self.model_info.get("provenance", "")
        from srgan.provenance import DISCLAIMER

        return f"BrainSR viewer: interpolated ×{self.state.scale}, no model output shown. {DISCLAIMER}."

    def export_png(self) -> None:
        if self.series is None:
            return
        path, _ = QtWidgets.QFileDialog.getSaveFileName(self, "Export view as PNG",
                                                        str(Path.home() / "brainsr_view.png"), "PNG image (*.png)")
        if not path:
            return
        try:
            from viewer.export import export_view_png

            out = export_view_png(self.splitter, path, self._provenance_text())
        except Exception as err:
            self.report_error("Export failed", str(err))
            return
        self.statusBar().showMessage(f"Saved {out}", 6000)

    def export_series(self) -> None:
        if self.series is None:
            return
        try:
            from viewer.export import export_series_dialog

            enhancer = self.enhancer.enhancer
            if enhancer is None:  # not built yet: build it now (the worker will reuse its own)
                QtWidgets.QApplication.setOverrideCursor(QtCore.Qt.CursorShape.WaitCursor)
                try:
                    from srgan.inference.engine import Enhancer, default_threads

                    cfg = self.enhancer.config
                    enhancer = Enhancer(scale=cfg.scale, model=cfg.model, weights=cfg.weights,
                                        device=cfg.device, threads=default_threads(), consistency=cfg.consistency)
                finally:
                    QtWidgets.QApplication.restoreOverrideCursor()
            self._export_session = export_series_dialog(self, self.series, enhancer,
                                                        start_dir=self.folder, show_messages=self.show_dialogs)
        except Exception as err:
            self.report_error("Export failed", str(err))

    def show_model_info(self) -> None:
        info = self.model_info
        if not info:
            text = "No model loaded yet. Press Enhance (Ctrl+E) to load it."
        else:
            card = info.get("card", {})
            rows = "".join(f"<tr><td>{k}</td><td>{v}</td></tr>" for k, v in card.items()
                           if k not in ("kwargs", "path") and not isinstance(v, (dict, list)))
            text = (f"<b>{info.get('label', '')}</b> on {info.get('device', '')}<br><table>{rows}</table>"
                    f"<p>{info.get('provenance', '')}</p>")
        QtWidgets.QMessageBox.information(self, "Model", text)

    def show_help(self) -> None:
        QtWidgets.QMessageBox.information(self, "Keyboard and mouse", (
            "<table>"
            "<tr><td>Wheel, ↑/↓, PgUp/PgDn</td><td>slice</td></tr>"
            "<tr><td>Ctrl+wheel, +/−, F</td><td>zoom, fit</td></tr>"
            "<tr><td>Left drag</td><td>pan (both views)</td></tr>"
            "<tr><td>Right drag</td><td>window/level (→ width, ↓ centre); R or 0 reset; 1–4 presets</td></tr>"
            "<tr><td>Shift+drag / Ctrl+drag</td><td>region statistics / ruler</td></tr>"
            "<tr><td>Ctrl+E</td><td>enhance the series</td></tr>"
            "<tr><td>E</td><td>right view: AI-enhanced ↔ plain interpolation</td></tr>"
            "<tr><td>D</td><td>difference overlay</td></tr>"
            "<tr><td>U</td><td>model disagreement overlay (spread over 8 flips/rotations)</td></tr>"
            "<tr><td>Space</td><td>cine</td></tr>"
            "</table>"))

    def show_about(self) -> None:
        import srgan
        from srgan.provenance import DISCLAIMER

        QtWidgets.QMessageBox.about(self, "About BrainSR", (
            f"<b>BrainSR</b> {srgan.__version__}<br>Brain MRI viewer with super-resolution.<br><br>"
            f"Enhanced images are {DISCLAIMER}."))

    # ------------------------------------------------------------------------------------ shutdown
    def closeEvent(self, ev: QtGui.QCloseEvent) -> None:
        if self.show_dialogs and self._exports_running():
            answer = QtWidgets.QMessageBox.question(
                self, "Export running", "A series export is still running. Cancel it and quit?")
            if answer != QtWidgets.QMessageBox.StandardButton.Yes:
                ev.ignore()
                return
        self.shutdown()
        super().closeEvent(ev)

    @staticmethod
    def _exports_running() -> bool:
        try:
            from viewer.export import running_exports
        except ImportError:
            return False
        return bool(running_exports())

    def shutdown(self) -> None:
        """Stop timers, running exports (cancelled: they leave nothing half-written) and worker threads."""
        self.cine.stop()
        if self._exports_running():
            from viewer.export import shutdown_exports

            shutdown_exports()
        for scanner in list(self._scanners):
            scanner.wait(60_000)
        self.loader.stop()
        self.enhancer.stop(wait_ms=60_000)


def _first_anatomy(series_list: list) -> Any:
    """The series to show first: the first one whose images are magnitude anatomy, else the first."""
    for s in series_list:
        if getattr(s, "anatomy_volumes", [0]):
            return s
    return series_list[0] if series_list else None


def _dropped_folder(mime: QtCore.QMimeData) -> str | None:
    for url in mime.urls() if mime.hasUrls() else []:
        if url.isLocalFile():
            path = Path(url.toLocalFile())
            if path.is_dir():
                return str(path)
            if path.is_file():
                return str(path.parent)
    return None

"""The main window's actions, menus, toolbar, status bar and small dialogs.

``build(win)`` makes every ``win.act_*`` action (with its keyboard shortcut), the File/View/Tools/Enhance/Help
menus, the toolbar and the status bar widgets, and connects them to the window's commands; the attribute names
are the window's public surface (tests trigger them). ``sync_enhance_menus(win)`` ticks the scale, device,
consistency and model entries of the configuration in force, and the comparison interpolation (kept in the
settings: ``stored_interpolation`` / ``store_interpolation``).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PySide6 import QtCore, QtGui, QtWidgets

from srgan.options import CONSISTENCY_MODES, DEVICES, SCALES
from viewer import SAMPLE_SERIES, docks
from viewer import window_level as wl
from viewer.export import export_view_png
from viewer.jobs import DEFAULT_INTERPOLATION, INTERPOLATIONS
from viewer.model import scale_of_card

if TYPE_CHECKING:
    from viewer.main_window import MainWindow

ORGANISATION = "BrainSR"
APPLICATION = "BrainSR Viewer"
MAX_RECENT = 8
HEADER_PRESET = "Header"  # the series' own window (DICOM WindowCenter/Width), or the robust one if it has none
#: menu text of each data-consistency choice (None: what the model card recommends)
CONSISTENCY_TEXT = {None: "Model &default", "off": "&Off", "bicubic": "&Bicubic", "kspace": "&k-space",
                    "auto": "&Automatic (LR-kind estimate and residual test)"}
CONSISTENCY_CHOICES = tuple((kind, CONSISTENCY_TEXT[kind]) for kind in (None, *CONSISTENCY_MODES))
CONSISTENCY_TIPS = {
    None: "What the model card recommends (off when it names none)",
    "off": "The model's output as it is",
    "auto": "Per series: k-space when the model is confident the series was k-space truncated, "
            "bicubic when confident it was downsampled, else off",
}
PROJECTION_TIP = "Correct each enhanced slice so that degrading it reproduces the original"
#: menu text of each comparison interpolation (``viewer.jobs.INTERPOLATIONS``) and the settings key it is kept under
INTERPOLATION_TEXT = {"zerofill": "&Zero-fill (sinc, as the scanner shows)", "bicubic": "&Bicubic"}
INTERPOLATION_SETTING = "comparison_interpolation"

HELP_HTML = (
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
    "</table>")


def action(win: MainWindow, text: str, slot, shortcut=None, checkable: bool = False, tip: str | None = None,
           images_only: bool = False) -> QtGui.QAction:
    """A menu/toolbar action. ``images_only``: its keys act only while the images have the focus, so
    arrows and Page keys still move through the series list and the tag table."""
    act = QtGui.QAction(text, win)
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
    (win.splitter if images_only else win).addAction(act)
    return act


def build(win: MainWindow) -> None:
    """Actions, menus, toolbar and status bar of ``win``."""
    _build_actions(win)
    _build_menus(win)
    _build_toolbar(win)
    _build_status_bar(win)


def _build_actions(win: MainWindow) -> None:
    K = QtGui.QKeySequence.StandardKey
    state = win.state
    win.act_open = action(win, "&Open folder…", lambda: choose_folder(win), K.Open, tip="Open a folder of DICOM files")
    win.act_sample = action(win, "Open &sample series", lambda: win.open_folder(SAMPLE_SERIES),
                            tip="Open the bundled sample brain series")
    win.act_export_series = action(win, "&Export enhanced series…", win.export_series, "Ctrl+Shift+E",
                                   tip="Write the enhanced series as a new derived DICOM series")
    win.act_export_png = action(win, "Export view as &PNG…", lambda: export_png(win), "Ctrl+Shift+S",
                                tip="Save both viewports as a labelled PNG")
    win.act_pacs = action(win, "&PACS…", win.open_pacs, "Ctrl+Shift+P",
                          tip="Query a configured PACS, retrieve studies into the local cache, send series")
    win.act_send_pacs = action(win, "Send enhanced series to PACS…", win.send_export_to_pacs,
                               tip="Send the last exported enhanced series to a configured PACS node (asks first)")
    win.act_send_pacs.setEnabled(False)
    win.act_problems = action(win, "Scan &problems…", win.show_problems,
                              tip="Files of the last scan that were skipped or read with a warning, and why")
    win.act_problems.setEnabled(False)
    win.act_quit = action(win, "&Quit", win.close, K.Quit)

    win.act_zoom_in = action(win, "Zoom &in", lambda: state.zoom_by(1.25), ["+", "=", "Ctrl++"])
    win.act_zoom_out = action(win, "Zoom &out", lambda: state.zoom_by(0.8), ["-", "Ctrl+-"])
    win.act_fit = action(win, "&Fit to window", win.fit, ["F", "Ctrl+0"], tip="Fit the image into the view")
    win.act_reset_window = action(win, "&Reset window/level", state.reset_window, "R",
                                  tip="Back to the series' own window/level")
    win.preset_actions = {}
    for i, name in enumerate([HEADER_PRESET, *wl.PRESETS]):
        win.preset_actions[name] = action(win, name, lambda _=False, n=name: apply_preset(win, n), str(i))
    win.act_show_enhanced = action(win, "Show &enhanced", state.toggle_enhanced, "E", checkable=True,
                                   tip="Right view: AI-enhanced (on) or plain interpolation (off)")
    win.act_show_enhanced.setChecked(state.enhanced)
    win.act_difference = action(win, "&Difference overlay", lambda on: state.set_difference(on), "D",
                                checkable=True, tip="Overlay enhanced − interpolated on the right view")
    win.act_disagreement = action(
        win, "Model dis&agreement (TTA spread)", win.set_disagreement, "U", checkable=True,
        tip="Overlay where the model's output changes when the slice is flipped or rotated (8 runs per slice)")
    win.act_cine = action(win, "&Cine play/pause", win.toggle_cine, "Space", checkable=True,
                          tip="Step through the slices")
    step = state.step_slice
    win.act_next = action(win, "Next slice", lambda: step(1), ["Down", "Right"], images_only=True)
    win.act_prev = action(win, "Previous slice", lambda: step(-1), ["Up", "Left"], images_only=True)
    win.act_page_down = action(win, "Page forward (a tenth of the slices)", lambda: step(win.page()),
                               "PgDown", images_only=True)
    win.act_page_up = action(win, "Page back", lambda: step(-win.page()), "PgUp", images_only=True)
    win.act_first = action(win, "First slice", lambda: state.set_slice(0), "Home", images_only=True)
    win.act_last = action(win, "Last slice", lambda: state.set_slice(state.n_slices - 1), "End", images_only=True)
    win.act_next_volume = action(win, "Next volume", lambda: state.set_volume(state.volume + 1), "]")
    win.act_prev_volume = action(win, "Previous volume", lambda: state.set_volume(state.volume - 1), "[")

    win.act_enhance = action(win, "&Enhance series", win.set_enhancing, "Ctrl+E", checkable=True,
                             tip="Run the model on this slice, then the rest of the series in the background")
    win.act_enhance.setChecked(win.model.enhancing)
    win.act_cancel = action(win, "&Cancel enhancement", win.cancel_enhancement, "Esc",
                            tip="Stop enhancing the rest of the series")
    win.act_model_info = action(win, "Model &information…", lambda: QtWidgets.QMessageBox.information(
        win, "Model", win.model.model_info_html()))

    win.act_region = action(win, "&Region statistics", lambda on: docks.set_region_mode(win, on), "G",
                            checkable=True, tip="Drag a rectangle (or Shift+drag any time) to compare the two sides")
    win.act_ruler = action(win, "&Ruler", lambda on: docks.set_ruler_mode(win, on), "M", checkable=True,
                           tip="Drag to measure in mm (or Ctrl+drag any time)")
    win.act_clear_tools = action(win, "Clear measurements", lambda: docks.clear_tools(win), "Backspace")


def _choice_group(win: MainWindow, menu: QtWidgets.QMenu, choices, slot) -> QtGui.QActionGroup:
    """A group of checkable ``(text, data)`` entries in ``menu``; ``slot(action)`` when one is chosen."""
    group = QtGui.QActionGroup(win)
    for text, data in choices:
        act = menu.addAction(text)
        act.setCheckable(True)
        act.setData(data)
        group.addAction(act)
    group.triggered.connect(slot)
    return group


def _build_menus(win: MainWindow) -> None:
    bar = win.menuBar()
    m = bar.addMenu("&File")
    m.addActions([win.act_open, win.act_sample])
    win.recent_menu = m.addMenu("&Recent folders")
    m.addSeparator()
    m.addActions([win.act_pacs, win.act_problems])
    m.addSeparator()
    m.addActions([win.act_export_series, win.act_send_pacs, win.act_export_png])
    m.addSeparator()
    m.addAction(win.act_quit)

    m = bar.addMenu("&View")
    m.addActions([win.act_zoom_in, win.act_zoom_out, win.act_fit])
    m.addSeparator()
    presets = m.addMenu("Window &presets")
    presets.addActions(list(win.preset_actions.values()))
    m.addAction(win.act_reset_window)
    m.addSeparator()
    m.addActions([win.act_show_enhanced, win.act_difference, win.act_disagreement])
    m.addSeparator()
    m.addActions([win.act_cine, win.act_next, win.act_prev, win.act_page_down, win.act_page_up,
                  win.act_first, win.act_last, win.act_next_volume, win.act_prev_volume])
    m.addSeparator()
    for dock, key in ((win.browser_dock, "Ctrl+1"), (win.tag_dock, "Ctrl+2"), (win.roi_dock, "Ctrl+3")):
        act = dock.toggleViewAction()
        act.setShortcut(QtGui.QKeySequence(key))
        m.addAction(act)

    m = bar.addMenu("&Tools")
    m.addActions([win.act_region, win.act_ruler, win.act_clear_tools])

    m = bar.addMenu("&Enhance")
    m.addActions([win.act_enhance, win.act_cancel])
    m.addSeparator()
    win.model_menu = m.addMenu("&Model")
    win.scale_menu = m.addMenu("&Scale")
    win.device_menu = m.addMenu("&Device")
    win.scale_group = _choice_group(win, win.scale_menu, [(f"×{s}", s) for s in SCALES],
                                    lambda act: win.configure_enhancer(scale=int(act.data())))
    win.device_group = _choice_group(win, win.device_menu, [(d, d) for d in DEVICES],
                                     lambda act: win.configure_enhancer(device=str(act.data())))
    win.consistency_menu = m.addMenu("Data &consistency")
    win.consistency_menu.setToolTipsVisible(True)
    win.consistency_group = _choice_group(win, win.consistency_menu, [(t, k) for k, t in CONSISTENCY_CHOICES],
                                          lambda act: win.configure_enhancer(consistency=act.data() or None))
    for act in win.consistency_group.actions():
        act.setToolTip(CONSISTENCY_TIPS.get(act.data(), PROJECTION_TIP))
    win.interpolation_menu = m.addMenu("Comparison &interpolation")
    win.interpolation_menu.setToolTipsVisible(True)
    win.interpolation_group = _choice_group(win, win.interpolation_menu,
                                            [(INTERPOLATION_TEXT[k], k) for k in INTERPOLATIONS],
                                            lambda act: win.set_interpolation(str(act.data())))
    for act in win.interpolation_group.actions():
        act.setToolTip("The plain interpolation the right view shows when not enhanced (E), and the difference "
                       "overlay and region statistics compare with")
    win.model_group = QtGui.QActionGroup(win)
    win.model_group.triggered.connect(lambda act: win.configure_enhancer(model=act.data() or None, weights=None))
    m.addSeparator()
    m.addAction(win.act_model_info)
    sync_enhance_menus(win)

    m = bar.addMenu("&Help")
    m.addAction(action(win, "&Keyboard and mouse", lambda: show_help(win), "F1"))
    m.addAction(action(win, "&About BrainSR", lambda: show_about(win)))


def _build_toolbar(win: MainWindow) -> None:
    tb = win.addToolBar("Main")
    tb.setObjectName("main_toolbar")
    tb.setMovable(False)
    tb.setToolButtonStyle(QtCore.Qt.ToolButtonStyle.ToolButtonTextOnly)
    tb.addAction(win.act_open)
    tb.addSeparator()
    tb.addAction(win.act_enhance)
    tb.addAction(win.act_show_enhanced)
    tb.addSeparator()
    win.preset_box = QtWidgets.QComboBox(tb)
    win.preset_box.addItems([HEADER_PRESET, *wl.PRESETS])
    win.preset_box.setMinimumContentsLength(10)
    win.preset_box.setToolTip("Window/level preset (keys 0–4; right-drag on an image to adjust)")
    win.preset_box.textActivated.connect(lambda name: apply_preset(win, name))
    tb.addWidget(QtWidgets.QLabel("  W/L ", tb))
    tb.addWidget(win.preset_box)
    tb.addAction(win.act_reset_window)
    tb.addSeparator()
    tb.addAction(win.act_fit)
    tb.addAction(win.act_cine)
    tb.addSeparator()
    tb.addAction(win.act_region)
    tb.addAction(win.act_ruler)
    tb.addSeparator()
    tb.addWidget(win.opacity_control)
    tb.addAction(win.act_disagreement)
    for act, text in ((win.act_open, "Open"), (win.act_enhance, "Enhance"), (win.act_show_enhanced, "AI / plain"),
                      (win.act_reset_window, "Reset"), (win.act_fit, "Fit"), (win.act_cine, "Cine"),
                      (win.act_region, "Region"), (win.act_ruler, "Ruler"), (win.act_disagreement, "Disagreement")):
        act.setIconText(text)  # the toolbar's short name; a button's own text would revert when the action toggles


def _build_status_bar(win: MainWindow) -> None:
    bar = win.statusBar()
    win.cursor_label = QtWidgets.QLabel("")
    win.cursor_label.setMinimumWidth(260)
    win.device_label = QtWidgets.QLabel("")
    win.progress = QtWidgets.QProgressBar()
    win.progress.setMaximumWidth(220)
    win.progress.setFormat("Enhancing %v/%m")
    win.progress.hide()
    win.cancel_button = QtWidgets.QToolButton()
    win.cancel_button.setDefaultAction(win.act_cancel)
    win.cancel_button.setText("Cancel")
    win.cancel_button.hide()
    for widget in (win.cursor_label, win.device_label, win.progress, win.cancel_button):
        bar.addPermanentWidget(widget)


def sync_enhance_menus(win: MainWindow) -> None:
    """Tick the configuration in force; the model menu lists the bundled models of its scale."""
    cfg = win.worker.config
    for act in win.scale_group.actions():
        act.setChecked(act.data() == cfg.scale)
    for act in win.device_group.actions():
        act.setChecked(act.data() == cfg.device)
    for act in win.consistency_group.actions():
        act.setChecked((act.data() or None) == cfg.consistency)
    for act in win.interpolation_group.actions():
        act.setChecked(act.data() == win.model.interpolation)
    win.model_menu.clear()
    for act in win.model_group.actions():
        win.model_group.removeAction(act)
    try:
        from srgan.models.weights import list_bundled

        cards = [c for c in list_bundled() if scale_of_card(c) == cfg.scale]
    except Exception:
        cards = []
    entries = [(f"Default ×{cfg.scale} (fidelity)", None)] + [
        (f"{c.get('name')} ({c.get('kind', 'fidelity')})", c.get("name")) for c in cards]
    if cfg.weights:
        entries.append((f"File: {Path(cfg.weights).name}", "__file__"))
    for text, name in entries:
        act = win.model_menu.addAction(text)
        act.setCheckable(True)
        act.setData(name)
        act.setChecked((cfg.weights is not None and name == "__file__")
                       or (cfg.weights is None and name == cfg.model))
        if name == "__file__":
            act.setEnabled(False)
        win.model_group.addAction(act)


def settings() -> QtCore.QSettings:
    """The viewer's settings file (INI, user scope): tests redirect it with ``QSettings.setPath``."""
    return QtCore.QSettings(QtCore.QSettings.Format.IniFormat, QtCore.QSettings.Scope.UserScope,
                            ORGANISATION, APPLICATION)


def stored_interpolation() -> str:
    """The comparison interpolation chosen last (settings), else the default: zero-fill."""
    value = settings().value(INTERPOLATION_SETTING, DEFAULT_INTERPOLATION)
    return value if value in INTERPOLATIONS else DEFAULT_INTERPOLATION


def store_interpolation(method: str) -> None:
    settings().setValue(INTERPOLATION_SETTING, method)


def recent_folders() -> list[str]:
    value = settings().value("recent_folders", [])
    if isinstance(value, str):
        value = [value]
    return [str(v) for v in (value or [])]


def add_recent(win: MainWindow, folder: str) -> None:
    """``folder`` first in File → Recent folders (the bundled sample is not listed)."""
    folder = str(Path(folder).resolve())
    if Path(folder) == SAMPLE_SERIES.resolve():
        return
    recent = [folder] + [f for f in recent_folders() if f != folder]
    settings().setValue("recent_folders", recent[:MAX_RECENT])
    rebuild_recent_menu(win)


def rebuild_recent_menu(win: MainWindow) -> None:
    win.recent_menu.clear()
    recent = recent_folders()
    for i, folder in enumerate(recent):
        act = win.recent_menu.addAction(f"&{i + 1}  {folder}")
        act.triggered.connect(lambda _=False, f=folder: win.open_folder(f))
    win.recent_menu.setEnabled(bool(recent))


def choose_folder(win: MainWindow) -> None:
    """File → Open folder: a folder dialog starting at the folder shown, else the last one opened."""
    recent = recent_folders()
    start = win.folder or (recent[0] if recent else str(Path.home()))
    folder = QtWidgets.QFileDialog.getExistingDirectory(win, "Open DICOM folder", start)
    if folder:
        win.open_folder(folder)


def dropped_folder(mime: QtCore.QMimeData) -> str | None:
    """The folder a drag and drop brings: a dropped folder, or the folder of a dropped file."""
    for url in mime.urls() if mime.hasUrls() else []:
        if url.isLocalFile():
            path = Path(url.toLocalFile())
            if path.is_dir():
                return str(path)
            if path.is_file():
                return str(path.parent)
    return None


def apply_preset(win: MainWindow, name: str) -> None:
    """Window preset by name: ``HEADER_PRESET`` (the series' own window) or one of ``wl.PRESETS``."""
    if name == HEADER_PRESET:
        win.state.reset_window()
    elif win.stats is not None:
        win.state.set_window(wl.preset(name, win.stats))
    sync_preset_box(win)


def sync_preset_box(win: MainWindow) -> None:
    """Show which preset the current window is; blank after a manual (right-drag) change."""
    window, stats = win.state.window, win.stats
    name = None
    if window == win.state.default_window:
        name = HEADER_PRESET
    elif stats is not None:
        name = next((n for n in wl.PRESETS if wl.preset(n, stats) == window), None)
    win.preset_box.setCurrentIndex(win.preset_box.findText(name) if name else -1)


def show_progress(win: MainWindow, done: int, total: int) -> None:
    """The status bar's progress bar and Cancel button while a request is being enhanced."""
    busy = total > 0 and done < total
    win.progress.setVisible(busy)
    win.cancel_button.setVisible(busy)
    if busy:
        win.progress.setRange(0, total)
        win.progress.setValue(done)
    elif total > 0:
        win.statusBar().showMessage(f"Enhanced all {total} slices", 5000)


def export_png(win: MainWindow) -> None:
    """File → Export view as PNG: both viewports with their labels and the provenance text."""
    if win.series is None:
        return
    path, _ = QtWidgets.QFileDialog.getSaveFileName(win, "Export view as PNG",
                                                    str(Path.home() / "brainsr_view.png"), "PNG image (*.png)")
    if not path:
        return
    try:
        out = export_view_png(win.splitter, path, win.model.provenance_text())
    except Exception as err:
        win.report_error("Export failed", str(err))
        return
    win.statusBar().showMessage(f"Saved {out}", 6000)


def show_help(parent: QtWidgets.QWidget) -> None:
    QtWidgets.QMessageBox.information(parent, "Keyboard and mouse", HELP_HTML)


def show_about(parent: QtWidgets.QWidget) -> None:
    import srgan
    from srgan.provenance import DISCLAIMER

    QtWidgets.QMessageBox.about(parent, "About BrainSR", (
        f"<b>BrainSR</b> {srgan.__version__}<br>Brain MRI viewer with super-resolution.<br><br>"
        f"Enhanced images are {DISCLAIMER}."))

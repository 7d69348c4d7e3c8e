"""The main window's docks and tools: series browser, DICOM tags, region statistics, the difference and
disagreement overlays with their opacity control, and the region (ROI) and ruler tools on both viewports.

``build(win)`` makes them as attributes of ``win`` (``browser``/``browser_dock``, ``tag_panel``/``tag_dock``,
``roi_panel``/``roi_dock``, ``difference_overlay``, ``disagreement_overlay``, ``opacity_control``, ``roi_tool``,
``ruler_tool``, ``roi_runner``) and connects them to the window and its ``ViewState``; the functions below keep
them up to date (tools, tags, overlays).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6 import QtCore, QtWidgets

from viewer.difference_overlay import DifferenceOverlay, OpacityControl
from viewer.roi import RegionStatsRunner, RoiStatsPanel, RoiTool
from viewer.ruler import RulerTool
from viewer.series_browser import SeriesBrowser
from viewer.tag_panel import TagPanel

if TYPE_CHECKING:
    from viewer.main_window import MainWindow

_MOVABLE_CLOSABLE = (QtWidgets.QDockWidget.DockWidgetFeature.DockWidgetMovable
                     | QtWidgets.QDockWidget.DockWidgetFeature.DockWidgetClosable)


def build(win: MainWindow) -> None:
    _build_overlays(win)
    _build_docks(win)
    _build_tools(win)


def _build_overlays(win: MainWindow) -> None:
    opacity = win.state.overlay_opacity
    win.difference_overlay = DifferenceOverlay(opacity=opacity)
    win.disagreement_overlay = DifferenceOverlay(opacity=opacity, cmap="sequential")
    for overlay in (win.difference_overlay, win.disagreement_overlay):
        win.right.vb.addItem(overlay)
        overlay.setVisible(False)
    win.opacity_control = OpacityControl(win, opacity=opacity)
    win.opacity_control.setMaximumWidth(220)
    win.opacity_control.opacityChanged.connect(win.state.set_overlay_opacity)
    win.opacity_control.visibilityChanged.connect(win.state.set_difference)


def _dock(win: MainWindow, title: str, name: str, widget: QtWidgets.QWidget,
          area: QtCore.Qt.DockWidgetArea) -> QtWidgets.QDockWidget:
    dock = QtWidgets.QDockWidget(title, win)
    dock.setObjectName(name)
    dock.setWidget(widget)
    win.addDockWidget(area, dock)
    return dock


def _build_docks(win: MainWindow) -> None:
    left, right = QtCore.Qt.DockWidgetArea.LeftDockWidgetArea, QtCore.Qt.DockWidgetArea.RightDockWidgetArea
    win.browser = SeriesBrowser()
    win.browser.series_selected.connect(win.show_series)
    win.browser_dock = _dock(win, "Series", "series_dock", win.browser, left)
    win.browser_dock.setFeatures(_MOVABLE_CLOSABLE)

    win.tag_panel = TagPanel()
    win.tag_dock = _dock(win, "DICOM tags", "tag_dock", win.tag_panel, right)
    win.tag_dock.visibilityChanged.connect(lambda visible: visible and win.tag_timer.start())
    win.tag_dock.hide()

    win.roi_panel = RoiStatsPanel()
    win.roi_dock = _dock(win, "Region statistics", "roi_dock", win.roi_panel, right)
    win.roi_dock.hide()


def _build_tools(win: MainWindow) -> None:
    """Region (ROI) and ruler tools from ``viewer.roi`` / ``viewer.ruler``, on both viewports."""
    boxes = [win.left.vb, win.right.vb]
    win.roi_tool = RoiTool(boxes, win)
    win.ruler_tool = RulerTool(boxes, win)
    win.roi_runner = RegionStatsRunner(win)
    status = win.statusBar()
    win.roi_tool.regionChanged.connect(lambda rect: update_region_stats(win, rect))
    win.roi_tool.regionCleared.connect(lambda: win.roi_panel.set_comparison(None))
    win.roi_runner.ready.connect(win.roi_panel.set_comparison)
    win.roi_runner.failed.connect(lambda msg: status.showMessage(f"Region statistics: {msg}", 6000))
    win.ruler_tool.lengthChanged.connect(
        lambda mm: status.showMessage(f"Ruler: {win.ruler_tool.label_text()}", 6000))


# -- tools -----------------------------------------------------------------------------------------
def set_region_mode(win: MainWindow, on: bool) -> None:
    """Region tool on (the ruler off, the statistics dock shown) or off."""
    if on:
        win.ruler_tool.set_mode(False)
        win.act_ruler.setChecked(False)
    win.roi_tool.set_mode(on)
    if on:
        win.roi_dock.show()


def set_ruler_mode(win: MainWindow, on: bool) -> None:
    if on:
        win.roi_tool.set_mode(False)
        win.act_region.setChecked(False)
    win.ruler_tool.set_mode(on)


def clear_tools(win: MainWindow) -> None:
    win.roi_tool.clear()
    win.ruler_tool.clear()


def update_region_stats(win: MainWindow, rect) -> None:
    """Compare the region on both sides (in the background); the interpolation stands in for a missing AI image."""
    plane = win.state.plane
    if plane is None:
        return
    images = win.current_images()
    if images["original"] is None or images["interpolated"] is None:
        return
    enhanced = images["enhanced"] if images["enhanced"] is not None else images["interpolated"]
    win.roi_dock.show()
    win.roi_runner.request(images["original"], enhanced, images["interpolated"], rect,
                           (plane.row_spacing, plane.col_spacing), win.state.scale)


def update_tags(win: MainWindow) -> None:
    """The tag panel shows the header of the slice on screen (only while its dock is visible)."""
    if win.series is None or not win.tag_dock.isVisible():
        return
    try:
        win.tag_panel.set_dataset(win.series.header(win.state.volume, win.state.slice))
    except Exception as err:  # an unreadable header must not break slice stepping
        win.statusBar().showMessage(f"Tags: {err}", 6000)


# -- overlays --------------------------------------------------------------------------------------
def refresh_difference(win: MainWindow, images: dict, right_state: str) -> None:
    """The difference overlay (enhanced − interpolated) over a model output, when asked for."""
    state, overlay = win.state, win.difference_overlay
    show = (state.difference and images["enhanced"] is not None and images["interpolated"] is not None
            and right_state == "ready")
    if show:
        overlay.set_data(images["enhanced"], images["interpolated"], rect_mm=state.plane.rect_mm,
                         window_width=state.window.width)
        overlay.set_opacity(state.overlay_opacity)
    overlay.setVisible(bool(show))


def refresh_disagreement(win: MainWindow, spread, right_state: str) -> None:
    """The disagreement overlay (TTA spread) over a model output, once its spread is computed."""
    state, overlay = win.state, win.disagreement_overlay
    show = win.disagreement and spread is not None and right_state == "ready"
    if show:
        overlay.set_difference(spread, rect_mm=state.plane.rect_mm, window_width=state.window.width,
                               cmap="sequential")
        overlay.set_opacity(state.overlay_opacity)
    overlay.setVisible(bool(show))


def sync_opacity_check(win: MainWindow) -> None:
    """The opacity control's check box follows the difference toggle (without echoing it back)."""
    check = win.opacity_control.check
    check.blockSignals(True)
    check.setChecked(win.state.difference)
    check.blockSignals(False)

"""Dark, calm look for reading rooms: Fusion style, a low-glare grey palette and one accent colour.

Radiologists read in dim rooms; bright chrome around the images changes perceived contrast, so every
surface is a near-black grey and only selection and the AI label use colour.
"""
from __future__ import annotations

from PySide6 import QtGui, QtWidgets

ACCENT = "#3d7fbf"

_STYLESHEET = f"""
QMainWindow, QDockWidget {{ background: #16191d; }}
QDockWidget::title {{ background: #1d2126; padding: 4px 8px; color: #aab4bf; }}
QToolBar {{ background: #1a1d21; border: none; border-bottom: 1px solid #262b31; spacing: 4px; padding: 2px; }}
QToolButton {{ color: #c9d1d9; padding: 3px 8px; border-radius: 3px; }}
QToolButton:hover {{ background: #262c33; }}
QToolButton:checked {{ background: #24384d; color: #e6edf3; }}
QStatusBar {{ background: #1a1d21; color: #aab4bf; border-top: 1px solid #262b31; }}
QStatusBar QLabel {{ color: #aab4bf; }}
QTreeView, QTableView {{ background: #121417; alternate-background-color: #15181b; border: none; }}
QHeaderView::section {{ background: #1d2126; color: #9aa5b1; border: none; border-right: 1px solid #262b31; padding: 3px 6px; }}
QSplitter::handle {{ background: #262b31; }}
QProgressBar {{ background: #121417; border: 1px solid #2c323a; border-radius: 3px; color: #c9d1d9; text-align: center; max-height: 14px; }}
QProgressBar::chunk {{ background: {ACCENT}; border-radius: 2px; }}
QMenu {{ background: #1d2126; color: #d0d7de; border: 1px solid #2c323a; }}
QMenu::item:selected {{ background: #24384d; }}
QMenuBar {{ background: #16191d; color: #c9d1d9; }}
QMenuBar::item:selected {{ background: #24384d; }}
QLineEdit {{ background: #121417; border: 1px solid #2c323a; border-radius: 3px; padding: 3px; color: #d0d7de; }}
"""


def dark_palette() -> QtGui.QPalette:
    p = QtGui.QPalette()
    c = QtGui.QColor
    role, group = QtGui.QPalette.ColorRole, QtGui.QPalette.ColorGroup
    p.setColor(role.Window, c("#16191d"))
    p.setColor(role.WindowText, c("#d0d7de"))
    p.setColor(role.Base, c("#121417"))
    p.setColor(role.AlternateBase, c("#15181b"))
    p.setColor(role.ToolTipBase, c("#1d2126"))
    p.setColor(role.ToolTipText, c("#d0d7de"))
    p.setColor(role.Text, c("#d0d7de"))
    p.setColor(role.Button, c("#1d2126"))
    p.setColor(role.ButtonText, c("#d0d7de"))
    p.setColor(role.BrightText, c("#ff6b6b"))
    p.setColor(role.Highlight, c("#24384d"))
    p.setColor(role.HighlightedText, c("#e6edf3"))
    p.setColor(role.Link, c(ACCENT))
    p.setColor(role.PlaceholderText, c("#6b7580"))
    for r in (role.WindowText, role.Text, role.ButtonText):
        p.setColor(group.Disabled, r, c("#5c656f"))
    return p


def apply_dark_theme(app: QtWidgets.QApplication) -> None:
    """Fusion + the dark palette + a small stylesheet (docks, toolbar, status bar)."""
    app.setStyle("Fusion")
    app.setPalette(dark_palette())
    app.setStyleSheet(_STYLESHEET)

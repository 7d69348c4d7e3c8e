"""Series browser: the scanned folder as patient → study → series, one click to show a series."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from PySide6 import QtCore, QtWidgets

from viewer.overlays import format_date, format_person_name

SERIES_ROLE = QtCore.Qt.ItemDataRole.UserRole + 1


def series_row(series: Any) -> list[str]:
    """Cells of one series: description, modality, image count, matrix."""
    n_vol, n_sl, rows, cols = series.shape
    number = f"{series.series_number} · " if getattr(series, "series_number", None) is not None else ""
    desc = series.series_description or "(no description)"
    part = f" (part {series.part + 1})" if getattr(series, "part", 0) else ""
    images = f"{n_sl}" if n_vol == 1 else f"{n_sl}×{n_vol}"
    return [f"{number}{desc}{part}", series.modality or "", images, f"{cols}×{rows}"]


class SeriesBrowser(QtWidgets.QTreeWidget):
    """Tree of the scan's series. Emits ``series_selected(series)`` when the user picks one."""

    series_selected = QtCore.Signal(object)
    HEADERS = ("Series", "Mod", "Images", "Matrix")

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.setHeaderLabels(list(self.HEADERS))
        self.setRootIsDecorated(True)
        self.setIndentation(12)
        self.setUniformRowHeights(True)
        self.setAlternatingRowColors(True)
        self.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.SingleSelection)
        header = self.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(0, QtWidgets.QHeaderView.ResizeMode.Stretch)
        for col in (1, 2, 3):
            header.setSectionResizeMode(col, QtWidgets.QHeaderView.ResizeMode.ResizeToContents)
        self.itemSelectionChanged.connect(self._selection_changed)
        self._items: dict[int, QtWidgets.QTreeWidgetItem] = {}
        self._quiet = False

    def set_series(self, series_list: Iterable[Any]) -> None:
        """Replace the tree with ``series_list`` grouped by patient and study (order kept)."""
        self._quiet = True
        try:
            self.clear()
            self._items.clear()
            patients: dict[tuple, QtWidgets.QTreeWidgetItem] = {}
            studies: dict[tuple, QtWidgets.QTreeWidgetItem] = {}
            for s in series_list:
                pkey = (s.patient_id, s.patient_name)
                if pkey not in patients:
                    name = format_person_name(s.patient_name) or "(no name)"
                    label = f"{name}  [{s.patient_id}]" if s.patient_id else name
                    item = QtWidgets.QTreeWidgetItem([label, "", "", ""])
                    item.setFlags(item.flags() & ~QtCore.Qt.ItemFlag.ItemIsSelectable)
                    item.setToolTip(0, label)
                    self.addTopLevelItem(item)
                    item.setFirstColumnSpanned(True)
                    patients[pkey] = item
                skey = (*pkey, getattr(s, "study_uid", ""), s.study_date, s.study_description)
                if skey not in studies:
                    text = " · ".join(x for x in (s.study_description, format_date(s.study_date)) if x) or "(study)"
                    item = QtWidgets.QTreeWidgetItem([text, "", "", ""])
                    item.setFlags(item.flags() & ~QtCore.Qt.ItemFlag.ItemIsSelectable)
                    item.setToolTip(0, text)
                    patients[pkey].addChild(item)
                    item.setFirstColumnSpanned(True)
                    studies[skey] = item
                item = QtWidgets.QTreeWidgetItem(series_row(s))
                item.setData(0, SERIES_ROLE, s)
                item.setToolTip(0, "\n".join([s.description, *getattr(s, "problems", [])]))
                right = QtCore.Qt.AlignmentFlag.AlignRight | QtCore.Qt.AlignmentFlag.AlignVCenter
                for col in (2, 3):
                    item.setTextAlignment(col, right)
                studies[skey].addChild(item)
                self._items[id(s)] = item
            self.expandAll()
        finally:
            self._quiet = False

    def select(self, series: Any) -> None:
        """Highlight ``series`` without emitting ``series_selected``."""
        item = self._items.get(id(series))
        if item is None:
            return
        self._quiet = True
        try:
            self.setCurrentItem(item)
        finally:
            self._quiet = False

    def series_items(self) -> list[QtWidgets.QTreeWidgetItem]:
        return list(self._items.values())

    def _selection_changed(self) -> None:
        if self._quiet:
            return
        items = self.selectedItems()
        if items:
            series = items[0].data(0, SERIES_ROLE)
            if series is not None:
                self.series_selected.emit(series)

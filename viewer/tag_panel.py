"""DICOM tag browser: every header element of the current file as one filterable table.

Qt-free: :func:`tag_rows` flattens a ``pydicom.Dataset`` (file meta first, sequences indented, private tags
marked "Private", pixel data left out, long/binary values shortened). Qt: :class:`TagPanel`.
"""
from __future__ import annotations

from typing import NamedTuple

import pydicom
from pydicom.dataelem import DataElement
from PySide6 import QtCore, QtGui, QtWidgets

PIXEL_KEYWORDS = {"PixelData", "FloatPixelData", "DoubleFloatPixelData"}
BINARY_VRS = {"OB", "OW", "OD", "OF", "OL", "OV", "UN"}
INDENT = "    "


class TagRow(NamedTuple):
    """One table row: tag "(gggg,eeee)", keyword (indented inside sequences; "Private" for private tags,
    "Private Creator" for their creator elements), VR, and the value as shown."""
    tag: str
    keyword: str
    vr: str
    value: str


def _shorten(text: str, max_len: int) -> str:
    return text if len(text) <= max_len else text[: max(max_len - 1, 0)] + "…"


def format_value(elem: DataElement, max_value_len: int = 120) -> str:
    """The value of a non-sequence element as one line: binary as "<N bytes>", multi-values joined by "\\"."""
    value = elem.value
    if value is None or value == "":
        return ""
    if elem.VR in BINARY_VRS or isinstance(value, (bytes, bytearray)):
        n = len(value) if hasattr(value, "__len__") else 0
        return f"<{n} bytes>"
    if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
        text = "\\".join(str(v) for v in value)
    else:
        text = str(value)
    return _shorten(text.replace("\r", " ").replace("\n", " ").replace("\x00", ""), max_value_len)


def _keyword(elem: DataElement) -> str:
    if elem.tag.is_private:
        return "Private Creator" if elem.tag.is_private_creator else "Private"
    return elem.keyword or elem.name


def _rows(ds: pydicom.Dataset, depth: int, max_value_len: int, out: list[TagRow]) -> None:
    for elem in ds:
        if elem.keyword in PIXEL_KEYWORDS:
            continue
        tag = f"({elem.tag.group:04X},{elem.tag.element:04X})"
        kw = INDENT * depth + _keyword(elem)
        if elem.VR == "SQ":
            items = elem.value or []
            out.append(TagRow(tag, kw, "SQ", f"{len(items)} item{'s' if len(items) != 1 else ''}"))
            for n, item in enumerate(items, 1):
                out.append(TagRow("", INDENT * (depth + 1) + f"Item {n}", "", ""))
                _rows(item, depth + 2, max_value_len, out)
        else:
            try:
                value = format_value(elem, max_value_len)
            except Exception as err:  # a malformed value must not hide the rest of the header
                value = f"<unreadable: {err.__class__.__name__}>"
            out.append(TagRow(tag, kw, str(elem.VR), value))


def tag_rows(ds: pydicom.Dataset, max_value_len: int = 120) -> list[TagRow]:
    """All elements of ``ds`` (and its ``file_meta``) as rows, in file order, pixel data skipped.

    Sequence items follow their sequence as "Item n" rows with their elements indented one step deeper, so
    the table reads like a tree while staying one flat, filterable list.
    """
    out: list[TagRow] = []
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        _rows(meta, 0, max_value_len, out)
    _rows(ds, 0, max_value_len, out)
    return out


class TagPanel(QtWidgets.QWidget):
    """Filter box plus a table of :func:`tag_rows`; the filter matches tag, keyword, VR or value (any case)."""

    HEADERS = ("Tag", "Keyword", "VR", "Value")

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.filter_edit = QtWidgets.QLineEdit(self)
        self.filter_edit.setPlaceholderText("Filter tags (e.g. 0010, Spacing, SIEMENS)")
        self.filter_edit.setClearButtonEnabled(True)
        self.model = QtGui.QStandardItemModel(0, len(self.HEADERS), self)
        self.model.setHorizontalHeaderLabels(list(self.HEADERS))
        self.proxy = QtCore.QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.setFilterKeyColumn(-1)
        self.proxy.setFilterCaseSensitivity(QtCore.Qt.CaseSensitivity.CaseInsensitive)
        self.view = QtWidgets.QTableView(self)
        self.view.setModel(self.proxy)
        self.view.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.view.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectionBehavior.SelectRows)
        self.view.verticalHeader().setVisible(False)
        self.view.verticalHeader().setDefaultSectionSize(20)
        self.view.horizontalHeader().setStretchLastSection(True)
        self.view.setWordWrap(False)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.filter_edit)
        layout.addWidget(self.view)
        self.filter_edit.textChanged.connect(self.proxy.setFilterFixedString)

    def set_dataset(self, ds: pydicom.Dataset | None, max_value_len: int = 120) -> None:
        """Show the elements of ``ds`` (None clears the table). The filter text is kept."""
        self.model.removeRows(0, self.model.rowCount())
        if ds is None:
            return
        mono = QtGui.QFontDatabase.systemFont(QtGui.QFontDatabase.SystemFont.FixedFont)
        for row in tag_rows(ds, max_value_len):
            items = [QtGui.QStandardItem(text) for text in row]
            items[0].setFont(mono)
            items[1].setFont(mono)
            if len(row.value) >= max_value_len:
                items[3].setToolTip("Value shortened for display")
            self.model.appendRow(items)
        self.view.resizeColumnsToContents()

    def set_filter(self, text: str) -> None:
        self.filter_edit.setText(text)

    def visible_rows(self) -> list[tuple[str, str, str, str]]:
        """Rows that pass the filter, as shown (for tests and copying)."""
        return [tuple(self.proxy.index(r, c).data() for c in range(len(self.HEADERS)))
                for r in range(self.proxy.rowCount())]

"""Tag rows from a real Siemens file (file meta, sequences, private tags, no pixel data) and the filter box."""
from __future__ import annotations

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from viewer.tag_panel import INDENT, tag_rows


@pytest.fixture
def siemens_ds(hfs_folder) -> pydicom.Dataset:
    return pydicom.dcmread(sorted(hfs_folder.glob("*.dcm"))[0])


def test_rows_of_real_file(siemens_ds):
    rows = tag_rows(siemens_ds)
    by_tag = {r.tag: r for r in rows}
    assert by_tag["(0010,0010)"].keyword == "PatientName"
    assert by_tag["(0010,0010)"].value == str(siemens_ds.PatientName) != ""
    assert by_tag["(0002,0010)"].value == "1.2.840.10008.1.2.1"            # file meta first
    assert rows[0].tag.startswith("(0002,")
    assert "(7FE0,0010)" not in by_tag and all(r.keyword != "PixelData" for r in rows)
    csa = by_tag["(0029,1010)"]                                          # Siemens CSA image header
    assert csa.keyword == "Private" and csa.vr == "OB" and csa.value.endswith(" bytes>")
    assert by_tag["(0029,0010)"].keyword == "Private Creator" and by_tag["(0029,0010)"].value == "SIEMENS CSA HEADER"
    assert by_tag["(0028,0030)"].value == "\\".join(str(v) for v in siemens_ds.PixelSpacing)
    assert all(len(r) == 4 for r in rows)


def test_sequence_items_are_indented(siemens_ds):
    rows = tag_rows(siemens_ds)
    i = next(k for k, r in enumerate(rows) if r.keyword == "ReferencedImageSequence")
    n = len(siemens_ds.ReferencedImageSequence)
    assert rows[i].vr == "SQ" and rows[i].value == f"{n} items"
    assert rows[i + 1].keyword == INDENT + "Item 1"
    assert rows[i + 2].keyword == 2 * INDENT + "ReferencedSOPClassUID"


def test_nested_sequences_and_long_values():
    inner = Dataset()
    inner.CodeValue = "113085"
    item = Dataset()
    item.DerivationCodeSequence = Sequence([inner])
    ds = Dataset()
    ds.SourceImageSequence = Sequence([item])
    ds.ImageComments = "x" * 500
    ds.PixelData = b"\0" * 8
    rows = tag_rows(ds, max_value_len=40)
    assert [r.keyword for r in rows] == ["SourceImageSequence", INDENT + "Item 1",
                                         2 * INDENT + "DerivationCodeSequence", 3 * INDENT + "Item 1",
                                         4 * INDENT + "CodeValue", "ImageComments"]   # (0008,2112) < (0020,4000)
    assert len(rows[-1].value) == 40 and rows[-1].value.endswith("…")
    assert rows[0].value == "1 item"


def test_panel_filter(qtbot, siemens_ds):
    from viewer.tag_panel import TagPanel
    panel = TagPanel()
    qtbot.addWidget(panel)
    panel.set_dataset(siemens_ds)
    total = len(panel.visible_rows())
    assert total == len(tag_rows(siemens_ds))
    qtbot.keyClicks(panel.filter_edit, "patientname")
    shown = panel.visible_rows()
    assert ("(0010,0010)", "PatientName", "PN", str(siemens_ds.PatientName)) in shown
    assert 0 < len(shown) < 5
    panel.filter_edit.clear()
    qtbot.keyClicks(panel.filter_edit, "0029,10")
    assert {r[0] for r in panel.visible_rows()} >= {"(0029,1010)", "(0029,1020)"}
    panel.set_filter("SIEMENS CSA")                                      # matches values too
    assert [r[0] for r in panel.visible_rows()] == ["(0029,0010)"]
    panel.set_filter("")
    assert len(panel.visible_rows()) == total
    panel.set_dataset(None)
    assert panel.visible_rows() == []

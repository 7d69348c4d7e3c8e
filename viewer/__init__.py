"""BrainSR desktop viewer (PySide6 + pyqtgraph): original and AI-enhanced slices side by side, linked in mm.

``state``, ``window_level`` and ``overlays`` are Qt-free; everything else needs PySide6. Start it with
``brainsr [FOLDER]`` (``viewer.app:main``).
"""
import sys
from pathlib import Path

RESOURCES = Path(__file__).resolve().parent.parent / "resources"
SAMPLE_SERIES = RESOURCES / "sample" / "series"


def _make_bools_immortal() -> None:
    """Work around a PySide6 reference-count bug that otherwise aborts the viewer after a while.

    With PySide6 6.12.0 on CPython 3.11, every ``SignalInstance.emit()`` made from Python gives back ``True``
    without taking a reference, so each emission (ours and pyqtgraph's, thousands per minute of panning)
    drops one reference to ``True``; when the count reaches zero the interpreter aborts with "Fatal Python
    error: bool_dealloc". ``True``/``False`` are never freed in a running program (from CPython 3.12 on they
    are immortal and the bug is harmless), so on older CPython they get a huge reference count once. Nothing
    else changes. Regression test: ``tests/viewer/test_workers.py::test_many_signal_emissions_do_not_abort``.
    """
    if sys.implementation.name != "cpython" or sys.version_info >= (3, 12) or hasattr(sys, "getobjects"):
        return  # immortal bools (3.12+), or a debug build with a different object header
    import ctypes

    for obj in (True, False):
        ctypes.c_ssize_t.from_address(id(obj)).value += 1 << 40


_make_bools_immortal()

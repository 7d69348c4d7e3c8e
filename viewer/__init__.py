"""BrainSR desktop viewer (PySide6 + pyqtgraph): original and AI-enhanced slices side by side, linked in mm.

``state``, ``window_level`` and ``overlays`` are Qt-free; everything else needs PySide6. Start it with
``brainsr [FOLDER]`` (``viewer.app:main``).
"""
from pathlib import Path

RESOURCES = Path(__file__).resolve().parent.parent / "resources"
SAMPLE_SERIES = RESOURCES / "sample" / "series"

"""Text of the viewport's corner overlays and orientation markers, without Qt.

Orientation letters come from ImageOrientationPatient only. IOP is relative to the *patient* (LPS:
+x = patient Left, +y = Posterior, +z = Superior/head), so the letters are right for any patient
position (HFS, FFS, decubitus …) without looking at PatientPosition.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

#: (positive, negative) letters of the LPS axes x, y, z.
_AXIS_LETTERS = (("L", "R"), ("P", "A"), ("S", "I"))

#: A direction's component contributes a letter when it is at least this large (|cos| ≥ 0.2,
#: i.e. ≈ 11.5° off the main axis); a 10° oblique axial still reads plain "L"/"A".
OBLIQUE_THRESHOLD = 0.2


def direction_letters(vector: Sequence[float], threshold: float = OBLIQUE_THRESHOLD) -> str:
    """Letters of an LPS direction, strongest component first, e.g. (0.9, −0.4, 0) → "LA"."""
    v = np.asarray(vector, dtype=float)
    n = np.linalg.norm(v)
    if not np.isfinite(n) or n == 0:
        return ""
    v = v / n
    letters = []
    for axis in np.argsort(-np.abs(v), kind="stable"):
        if abs(v[axis]) >= threshold:
            pos, neg = _AXIS_LETTERS[axis]
            letters.append(pos if v[axis] > 0 else neg)
    return "".join(letters)


def orientation_markers(iop: Sequence[float] | None) -> dict[str, str]:
    """Letters at the four edges of a slice shown with row 0 at the top and column 0 at the left.

    ``iop`` is ImageOrientationPatient: the first triplet points along increasing column index
    (screen right), the second along increasing row index (screen down). Returns
    ``{"left", "right", "top", "bottom"}``; empty strings when ``iop`` is missing or degenerate.
    """
    empty = {"left": "", "right": "", "top": "", "bottom": ""}
    if iop is None:
        return empty
    try:
        v = np.asarray([float(x) for x in iop], dtype=float)
    except (TypeError, ValueError):
        return empty
    if v.shape != (6,) or not np.all(np.isfinite(v)):
        return empty
    row_dir, col_dir = v[:3], v[3:]
    return {
        "right": direction_letters(row_dir),
        "left": direction_letters(-row_dir),
        "bottom": direction_letters(col_dir),
        "top": direction_letters(-col_dir),
    }


def plane_name(iop: Sequence[float] | None) -> str:
    """"axial", "coronal", "sagittal" (by the slice normal's main axis), "oblique" when > 30° off; "" if unknown."""
    if iop is None:
        return ""
    try:
        v = np.asarray([float(x) for x in iop], dtype=float)
        normal = np.cross(v[:3], v[3:])
    except (TypeError, ValueError):
        return ""
    n = np.linalg.norm(normal)
    if not np.isfinite(n) or n == 0:
        return ""
    normal = np.abs(normal / n)
    axis = int(np.argmax(normal))
    if normal[axis] < np.cos(np.radians(30)):
        return "oblique"
    return ("sagittal", "coronal", "axial")[axis]


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def format_person_name(name: Any) -> str:
    """DICOM PN "Family^Given^Middle" → "FAMILY, Given Middle"."""
    text = _text(name)
    if "^" not in text:
        return text
    parts = [p for p in text.split("^")]
    family = parts[0].upper()
    given = " ".join(p for p in parts[1:3] if p)
    return f"{family}, {given}" if given else family


def format_date(value: Any) -> str:
    """DICOM DA "YYYYMMDD" → "YYYY-MM-DD" (anything else unchanged)."""
    text = _text(value)
    if len(text) == 8 and text.isdigit():
        return f"{text[:4]}-{text[4:6]}-{text[6:]}"
    return text


def patient_lines(series: Any) -> list[str]:
    """Top-left block: patient, ID, study (date), series number + description."""
    lines = [format_person_name(getattr(series, "patient_name", "")) or "(no name)"]
    pid = _text(getattr(series, "patient_id", ""))
    if pid:
        lines.append(f"ID {pid}")
    study = " · ".join(x for x in (_text(getattr(series, "study_description", "")),
                                     format_date(getattr(series, "study_date", ""))) if x)
    if study:
        lines.append(study)
    number = _text(getattr(series, "series_number", ""))
    desc = _text(getattr(series, "series_description", ""))
    series_line = " ".join(x for x in (f"Se {number}" if number else "", desc) if x)
    if series_line:
        lines.append(series_line)
    return lines


def slice_lines(slice_index: int, n_slices: int, volume: int, n_volumes: int,
                position_mm: float | None, thickness_mm: float | None = None) -> list[str]:
    """Bottom-left block: "Im 18/35", volume when 4D, slice location in mm."""
    lines = [f"Im {slice_index + 1}/{n_slices}"]
    if n_volumes > 1:
        lines[0] += f"   Vol {volume + 1}/{n_volumes}"
    if position_mm is not None and np.isfinite(position_mm):
        loc = f"Loc {position_mm:.1f} mm"
        if thickness_mm:
            loc += f"   Th {thickness_mm:g} mm"
        lines.append(loc)
    return lines


def display_lines(center: float, width: float, zoom_px_per_mm: float, pixel_spacing: Sequence[float],
                  matrix: tuple[int, int]) -> list[str]:
    """Bottom-right block: W/L, zoom, pixel spacing and matrix of the image shown."""
    dr, dc = float(pixel_spacing[0]), float(pixel_spacing[1])
    spacing = f"{dr:.3g} mm" if abs(dr - dc) < 1e-6 else f"{dr:.3g} × {dc:.3g} mm"
    return [
        f"W {width:.0f}  L {center:.0f}" if abs(width) >= 10 else f"W {width:.3g}  L {center:.3g}",
        f"Zoom {zoom_px_per_mm:.2f} px/mm",
        f"{matrix[1]}×{matrix[0]}  {spacing}",
    ]


def interpolation_name(method: str) -> str:
    """How a comparison interpolation reads on screen: ``zerofill`` → "zero-fill", ``bicubic`` → "bicubic"."""
    from srgan.options import BASELINE_LABELS

    return BASELINE_LABELS.get(method, method)


def enhanced_label(scale: int, model: str | None, version: str | None, state: str = "ready",
                   interpolation: str = "zerofill") -> list[str]:
    """Top-right block of the enhanced viewport. ``state``: "ready", "enhancing", "interpolated", "error";
    ``interpolation``: the plain interpolation shown when it is not the model's output (``viewer.jobs``).

    The first line always says what the image is ("AI-enhanced ×s" or "Interpolated ×s (zero-fill)"), so even
    a narrow viewport that elides the rest keeps that.
    """
    plain = f"Interpolated ×{scale} ({interpolation_name(interpolation)})"
    if state == "interpolated":
        return [plain, "not AI-enhanced"]
    if state == "enhancing":
        return [plain, "AI enhancing…"]
    if state == "error":
        return [plain, "AI enhancement failed"]
    lines = [f"AI-enhanced ×{scale}"]
    if model:
        lines.append(model + (f" · {version}" if version else ""))
    lines.append("not for primary diagnosis")
    return lines


def runtime_line(model_info: dict | None) -> str | None:
    """Where the generator ran and in what arithmetic, e.g. ``runtime: openvino bf16`` (``… on cuda:0`` off the
    CPU); None before a model is loaded (``model_info`` is the worker's ``model_ready`` dict)."""
    if not model_info or not model_info.get("runtime"):
        return None
    device = str(model_info.get("device", "cpu"))
    where = "" if device == "cpu" else f" on {device}"
    return f"runtime: {model_info['runtime']} {model_info.get('precision', 'fp32')}{where}"


def slice_position_mm(position: Sequence[float] | None, orientation: Sequence[float] | None) -> float | None:
    """Signed slice location: ImagePositionPatient projected on the slice normal (mm)."""
    if position is None or orientation is None:
        return None
    try:
        p = np.asarray(position, dtype=float)
        o = np.asarray(orientation, dtype=float)
        normal = np.cross(o[:3], o[3:])
    except (TypeError, ValueError):
        return None
    n = np.linalg.norm(normal)
    if p.shape != (3,) or n == 0:
        return None
    return float(p @ (normal / n))

"""Pixel policy of a derived image: enhanced values (float, modality units) back into the source's stored type.

Intensities go back to the source's stored type (BitsAllocated/BitsStored/PixelRepresentation). The source
RescaleSlope/Intercept are kept when the enhanced values fit the stored range; otherwise a new slope is
written (intercept kept) so that the maximum fits. Values below the stored range (e.g. bicubic
undershoot under 0 for unsigned magnitude) are clipped. When the slope changes, Philips' private scale
slope (2005,100E) and RealWorldValueSlope are changed with it so they keep meaning the same real values.

Separate from the header (:mod:`srgan.io.derived_header`, which calls these for each file and each frame) because
this is arithmetic on values and slopes, the one place where a derived image's intensities could go wrong.
"""

from __future__ import annotations

import numpy as np
from pydicom.dataset import Dataset
from pydicom.valuerep import format_number_as_ds


def stored_range(ds: Dataset) -> tuple[int, int, np.dtype]:
    """``(lo, hi, dtype)`` of the source's stored values (BitsStored, PixelRepresentation, BitsAllocated; little
    endian)."""
    bits_stored = int(ds.BitsStored)
    signed = int(ds.PixelRepresentation) == 1
    lo, hi = (-(1 << (bits_stored - 1)), (1 << (bits_stored - 1)) - 1) if signed else (0, (1 << bits_stored) - 1)
    alloc = int(ds.BitsAllocated)
    dtype = np.dtype(f"{'i' if signed else 'u'}{alloc // 8}").newbyteorder("<")
    return lo, hi, dtype


def choose_rescale(values: np.ndarray, slope: float, intercept: float, hi: int) -> float:
    """Keep ``slope`` when the largest value fits the stored range, else the smallest DS slope that makes it fit."""
    vmax = float(np.max(values)) if values.size else 0.0
    if (vmax - intercept) / slope <= hi + 0.5:
        return slope
    new = (vmax - intercept) / hi
    text = format_number_as_ds(new)
    while float(text) * hi < vmax - intercept:
        new *= 1 + 1e-9
        text = format_number_as_ds(new)
    return float(text)


def quantise(values: np.ndarray, slope: float, intercept: float, lo: int, hi: int, dtype) -> np.ndarray:
    """``values`` (modality units) as stored values: ``(value - intercept) / slope`` rounded, clipped to
    ``[lo, hi]``."""
    stored = np.rint((values.astype(np.float64) - intercept) / slope)
    return np.clip(stored, lo, hi).astype(dtype)


def set_rescale(item: Dataset, old_slope: float, new_slope: float) -> None:
    """The rescale ``item`` holds (top level, functional group or private item) changed from ``old_slope`` to
    ``new_slope``: RescaleSlope where it has one, RealWorldValueSlope with it, Philips' (2005,100E) inversely."""
    if new_slope == old_slope:
        return
    if "RescaleSlope" in item or "RescaleIntercept" in item:
        item.RescaleSlope = format_number_as_ds(new_slope)
    if "RealWorldValueMappingSequence" in item:
        for rw in item.RealWorldValueMappingSequence:
            if "RealWorldValueSlope" in rw:
                rw.RealWorldValueSlope = float(rw.RealWorldValueSlope) * new_slope / old_slope
    philips = item.get((0x2005, 0x100E))
    if philips is not None and philips.VR == "FL" and philips.value:
        philips.value = float(philips.value) * old_slope / new_slope


def per_frame_rescale(src: Dataset) -> bool:
    """True when an Enhanced MR source carries its rescale per frame (PixelValueTransformationSequence)."""
    groups = src.get("PerFrameFunctionalGroupsSequence", [])
    return bool(groups) and "PixelValueTransformationSequence" in groups[0]

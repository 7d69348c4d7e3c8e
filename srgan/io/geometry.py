"""Grid refinement for scale s with the field of view kept.

One convention everywhere (bicubic degradation, k-space truncation, DICOM positions, NIfTI affines):
LR pixel i is centred on HR position i·s + (s−1)/2. So the HR pixel 0 centre lies (s−1)/(2s) LR pixels
before the LR pixel 0 centre.
"""

from __future__ import annotations

import numpy as np


def refine_affine(affine: np.ndarray, scale: int, axes: tuple[int, int] = (0, 1)) -> np.ndarray:
    """Affine (4, 4) of a grid refined ×scale along the two voxel ``axes``, same field of view.

    ``affine`` maps voxel indices (i, j, k, 1) to world mm. The columns of the refined axes shrink by
    ``scale`` and the origin moves back by (s−1)/(2s) of an LR voxel along each of them.
    """
    a = np.array(affine, dtype=np.float64, copy=True)
    s = float(scale)
    for ax in axes:
        a[:3, 3] -= (s - 1) / (2 * s) * a[:3, ax]
        a[:3, ax] /= s
    return a


def refine_position(ipp, row_dir, col_dir, pixel_spacing, scale: int) -> np.ndarray:
    """DICOM ImagePositionPatient (mm) of the first pixel of a slice refined ×scale in-plane.

    ``row_dir``/``col_dir`` are the first/second triplets of ImageOrientationPatient (direction of
    increasing column index / increasing row index); ``pixel_spacing`` is (Δrow, Δcol) as in
    PixelSpacing. IPP′ = IPP − (s−1)/(2s)·(Δcol·row_dir + Δrow·col_dir).
    """
    dr, dc = float(pixel_spacing[0]), float(pixel_spacing[1])
    s = float(scale)
    return np.asarray(ipp, float) - (s - 1) / (2 * s) * (
        dc * np.asarray(row_dir, float) + dr * np.asarray(col_dir, float)
    )

"""NIfTI volumes: read, enhance slice by slice in the acquisition plane, write with consistent geometry.

Super-resolution is 2D: it refines the two in-plane axes of each slice. The slice (through-plane) axis is the
voxel axis with the coarsest spacing, so a 0.9×0.9×5.5 mm axial scan is enhanced axial slice by axial slice
and stays 5.5 mm thick. The refined affine comes from ``srgan.io.geometry.refine_affine`` (field of view kept).

Output data type: always float32 (no ``scl_slope`` scaling). A super-resolved volume is continuous and can
overshoot the source range (ringing), so writing it back into int16 would clip and quantise it; float32 keeps
what the model produced at twice the size of an int16 file. The sidecar JSON records the source data type.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

from srgan.errors import InputError
from srgan.io import atomic
from srgan.io.geometry import refine_affine
from srgan.provenance import Provenance

NIFTI_SUFFIXES = (".nii.gz", ".nii")


@dataclass
class Volume:
    """A NIfTI volume as stored.

    ``data`` is float32 with axes (X, Y, Z) or (X, Y, Z, T) in voxel order (nibabel's, not transposed);
    ``affine`` (4, 4) maps voxel (i, j, k, 1) to world mm (RAS+ as nibabel reports it); ``header`` is the
    source nibabel header (None for a volume built in memory); ``path`` the file it came from.
    """

    data: np.ndarray
    affine: np.ndarray
    header: nib.Nifti1Header | None = None
    path: Path | None = None
    source_dtype: str | None = field(default=None)

    @property
    def zooms(self) -> tuple[float, float, float]:
        """Voxel spacing (mm) along the three spatial axes, from the affine's column lengths."""
        x, y, z = (float(v) for v in np.linalg.norm(np.asarray(self.affine)[:3, :3], axis=0))
        return x, y, z


def nifti_stem(path: str | Path) -> str:
    """File name without ``.nii`` / ``.nii.gz``."""
    name = Path(path).name
    for suf in NIFTI_SUFFIXES:
        if name.lower().endswith(suf):
            return name[: -len(suf)]
    return Path(name).stem


def is_nifti(path: str | Path) -> bool:
    return Path(path).name.lower().endswith(NIFTI_SUFFIXES)


def load_nifti(path: str | Path) -> Volume:
    """Read a ``.nii`` / ``.nii.gz`` file into a float32 :class:`Volume` (scl_slope/inter applied).

    A 2D file becomes (X, Y, 1). Any reading failure (missing, empty, not NIfTI, truncated gzip, short data)
    raises :class:`InputError` naming the file; nibabel raises many exception types for these.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(p, "file not found")
    if p.is_dir():
        raise InputError(p, "is a folder, not a NIfTI file")
    if p.stat().st_size == 0:
        raise InputError(p, "file is empty (0 bytes)")
    try:
        img = nib.load(str(p))
        if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
            raise InputError(p, f"is a {type(img).__name__}, not a NIfTI-1/2 volume")
        data = img.get_fdata(dtype=np.float32)
    except InputError:
        raise
    except MemoryError:
        raise
    except Exception as exc:  # nibabel: ImageFileError, EOFError, OSError, zlib.error, ValueError, ...
        raise InputError(p, f"cannot be read as NIfTI (missing, corrupt or truncated): {exc}") from exc
    if data.ndim == 2:
        data = data[:, :, None]
    if data.ndim == 5 and data.shape[3] == 1:
        data = data[:, :, :, 0]
    if data.ndim not in (3, 4):
        raise InputError(p, f"has {data.ndim} dimensions {data.shape}; expected a 3D or 4D volume")
    if not np.all(np.isfinite(img.affine)):
        raise InputError(p, "has no valid affine (non-finite values in qform/sform)")
    return Volume(
        data=np.ascontiguousarray(data),
        affine=np.asarray(img.affine, dtype=np.float64),
        header=img.header,
        path=p,
        source_dtype=str(img.get_data_dtype()),
    )


def through_plane_axis(affine_or_zooms, override: int | None = None) -> int:
    """Voxel axis (0, 1 or 2) with the largest spacing: the slice axis of a 2D acquisition.

    ``affine_or_zooms``: a (4, 4) affine or the three voxel sizes (mm). Spacings within 0.1 % of the
    largest count as tied and the last tied axis wins, so an isotropic volume is sliced along axis 2
    (axial for the usual RAS/LPS storage). ``override`` (0, 1, 2) wins over the rule.
    """
    if override is not None:
        if int(override) not in (0, 1, 2):
            raise ValueError(f"through-plane axis must be 0, 1 or 2, got {override}")
        return int(override)
    a = np.asarray(affine_or_zooms, dtype=np.float64)
    zooms = np.linalg.norm(a[:3, :3], axis=0) if a.shape == (4, 4) else a.ravel()[:3]
    if zooms.size != 3:
        raise ValueError(f"need a (4, 4) affine or three voxel sizes, got shape {a.shape}")
    top = zooms.max()
    return int(np.nonzero(zooms >= top * (1 - 1e-3))[0][-1])


def enhance_volume(
    vol: Volume, enhance_stack: Callable[[np.ndarray], np.ndarray], scale: int, axis: int | None = None
) -> Volume:
    """Super-resolve every slice of ``vol`` in-plane by ``scale``.

    The through-plane axis (:func:`through_plane_axis`, or ``axis``) is taken as the stack axis:
    ``enhance_stack`` gets (N, H, W) float32, H and W being the lower and the higher remaining voxel
    axis, and must return (N, s·H, s·W). A 4D volume is enhanced one time point at a time. The affine is
    refined along the two in-plane axes with the pixel-centre convention (field of view kept).
    """
    s = int(scale)
    k = through_plane_axis(vol.affine, axis)
    a, b = (ax for ax in (0, 1, 2) if ax != k)
    inplane = (a, b)
    data = vol.data if vol.data.ndim == 4 else vol.data[..., None]
    order = (k, *inplane)
    back = tuple(np.argsort(order))
    frames = []
    for t in range(data.shape[3]):
        stack = np.ascontiguousarray(np.transpose(data[..., t], order), dtype=np.float32)
        n, h, w = stack.shape
        out = np.asarray(enhance_stack(stack), dtype=np.float32)
        if out.shape != (n, s * h, s * w):
            raise ValueError(f"enhance_stack returned {out.shape}, expected {(n, s * h, s * w)}")
        frames.append(np.transpose(out, back))
    new = np.stack(frames, axis=3) if vol.data.ndim == 4 else frames[0]
    return Volume(
        data=np.ascontiguousarray(new),
        affine=refine_affine(vol.affine, s, inplane),
        header=vol.header,
        path=vol.path,
        source_dtype=vol.source_dtype,
    )


def _xform_codes(header) -> tuple[int, int]:
    """(sform_code, qform_code) for the output: the source's where set, else each other's, else 1 (scanner)."""
    if header is None:
        return 1, 1
    s, q = int(header["sform_code"]), int(header["qform_code"])
    s = s or q or 1
    q = q or s
    return s, q


def save_nifti(vol: Volume, path: str | Path, provenance: Provenance | None = None) -> Path:
    """Write ``vol`` as float32 NIfTI-1 to ``path`` (``.nii`` or ``.nii.gz``) atomically.

    Both qform and sform are set to ``vol.affine`` (codes kept from the source header, else 1), so every
    reader agrees on the geometry; an affine with shear, which a qform cannot hold, gets qform code 0.
    Other header fields (units, TR, intent) are kept from the source header. With ``provenance`` the
    header ``descrip`` gets ``provenance.short()`` and ``<name>.json`` beside the file gets
    ``provenance.as_dict()`` plus the source path and data type. Refuses to overwrite the source file.
    """
    out = Path(path)
    if not is_nifti(out):
        raise InputError(out, "output name must end in .nii or .nii.gz")
    if vol.path is not None and out.exists() and out.resolve() == Path(vol.path).resolve():
        raise InputError(out, "would overwrite the input volume; choose another output name")
    if not out.parent.is_dir():
        raise InputError(out.parent, "output folder does not exist")
    data = np.asarray(vol.data, dtype=np.float32)
    hdr = vol.header.copy() if vol.header is not None else nib.Nifti1Header()
    if not isinstance(hdr, nib.Nifti1Header) or isinstance(hdr, nib.Nifti2Header):
        hdr = nib.Nifti1Header.from_header(hdr)
    hdr.set_data_dtype(np.float32)
    img = nib.Nifti1Image(data, vol.affine, header=hdr)
    scode, qcode = _xform_codes(vol.header)
    img.set_sform(vol.affine, code=scode)
    img.set_qform(vol.affine, code=qcode)
    if not np.allclose(img.get_qform(), vol.affine, atol=1e-4):
        img.set_qform(vol.affine, code=0)
    h = img.header
    h.set_slope_inter(1.0, 0.0)
    h["cal_min"], h["cal_max"] = 0.0, 0.0
    h["glmin"], h["glmax"] = 0, 0
    if provenance is not None:
        h["descrip"] = provenance.short().encode("ascii", "replace")[:80]
    with atomic.atomic_path(out) as tmp:
        nib.save(img, str(tmp))
    if provenance is not None:
        side = out.with_name(nifti_stem(out) + ".json")
        record = {
            **provenance.as_dict(),
            "source": None if vol.path is None else str(vol.path),
            "source_dtype": vol.source_dtype,
            "output_dtype": "float32",
            "shape": list(data.shape),
            "zooms_mm": list(vol.zooms),
        }
        atomic.write_text(side, json.dumps(record, indent=2) + "\n")
    return out

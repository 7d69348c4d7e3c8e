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
from typing import TYPE_CHECKING

import numpy as np

from srgan.errors import InputError
from srgan.io import atomic
from srgan.io.geometry import refine_affine
from srgan.provenance import Provenance

if TYPE_CHECKING:
    import nibabel as nib

NIFTI_SUFFIXES = (".nii.gz", ".nii")
#: Every volume format nibabel reads that the volume path takes: NIfTI-1/2 single files and pairs (.hdr/.img),
#: Analyze 7.5 (.hdr/.img), FreeSurfer MGH/MGZ.
VOLUME_SUFFIXES = (*NIFTI_SUFFIXES, ".hdr", ".img", ".hdr.gz", ".img.gz", ".mgh", ".mgz")
#: Decoded volumes above this (float32 bytes) are refused before their data are read (a header promising more
#: voxels than any scan holds is damaged or hostile).
MAX_VOLUME_BYTES = 8 << 30


@dataclass
class Volume:
    """A NIfTI volume as stored.

    ``data`` is float32 with axes (X, Y, Z) or (X, Y, Z, T) in voxel order (nibabel's, not transposed);
    ``affine`` (4, 4) maps voxel (i, j, k, 1) to world mm (RAS+ as nibabel reports it); ``header`` is the
    source nibabel header (None for a volume built in memory); ``path`` the file it came from.
    """

    data: np.ndarray
    affine: np.ndarray
    header: nib.spatialimages.SpatialHeader | None = None
    path: Path | None = None
    source_dtype: str | None = field(default=None)
    #: ``nifti1``, ``nifti2``, ``nifti1-pair``, ``nifti2-pair``, ``analyze`` or ``mgh`` (None: built in memory)
    source_format: str | None = None
    #: what was done to the values on reading (complex data taken as magnitude), one sentence each
    notes: list[str] = field(default_factory=list)

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


def is_volume(path: str | Path) -> bool:
    """True for a file name of a volume format :func:`load_volume` reads (NIfTI, pairs, Analyze, MGH/MGZ)."""
    return Path(path).name.lower().endswith(VOLUME_SUFFIXES)


def volume_stem(path: str | Path) -> str:
    """File name without its volume suffix (``.nii.gz``, ``.hdr``, ``.mgz``...)."""
    name = Path(path).name
    for suf in sorted(VOLUME_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suf):
            return name[: -len(suf)]
    return Path(name).stem


def _format_of(img) -> str:
    import nibabel as nib  # where used: a PNG or DICOM run does not import it (0.18 s)

    if isinstance(img, nib.Nifti2Image):
        return "nifti2"
    if isinstance(img, nib.Nifti1Image):
        return "nifti1"
    if isinstance(img, nib.Nifti2Pair):
        return "nifti2-pair"
    if isinstance(img, nib.Nifti1Pair):
        return "nifti1-pair"
    if isinstance(img, nib.MGHImage):
        return "mgh"
    return "analyze"


def load_volume(path: str | Path) -> Volume:
    """Read any volume :func:`is_volume` names into a float32 :class:`Volume`, affine as nibabel gives it.

    Complex data become their magnitude (with a note in ``Volume.notes``); NaN and Inf are kept (the enhancer
    masks them). A header promising more than :data:`MAX_VOLUME_BYTES` is refused before its data are read.
    """
    return _load(Path(path), nifti_only=False)


def load_nifti(path: str | Path) -> Volume:
    return _load(Path(path), nifti_only=True)


def _load(p: Path, nifti_only: bool) -> Volume:
    """Read a ``.nii`` / ``.nii.gz`` file into a float32 :class:`Volume` (scl_slope/inter applied).

    A 2D file becomes (X, Y, 1). Any reading failure (missing, empty, not NIfTI, truncated gzip, short data)
    raises :class:`InputError` naming the file; nibabel raises many exception types for these.
    """
    import nibabel as nib

    if not p.exists():
        raise InputError(p, "file not found")
    if p.is_dir():
        raise InputError(p, "is a folder, not a NIfTI file")
    if p.stat().st_size == 0:
        raise InputError(p, "file is empty (0 bytes)")
    notes: list[str] = []
    what = "NIfTI" if nifti_only else "a volume (NIfTI, Analyze or MGH)"
    try:
        img = nib.load(str(p))
        if nifti_only and not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
            raise InputError(p, f"is a {type(img).__name__}, not a NIfTI-1/2 volume")
        if not isinstance(img, nib.spatialimages.SpatialImage) or not hasattr(img, "dataobj"):
            raise InputError(p, f"is a {type(img).__name__}, not a volume")
        n_bytes = 4 * int(np.prod([int(v) for v in img.shape], dtype=np.float64))
        if n_bytes > MAX_VOLUME_BYTES:
            raise InputError(
                p,
                f"its header promises a {'×'.join(str(int(v)) for v in img.shape)} volume "
                f"({n_bytes / (1 << 30):.1f} GiB as float32, above the {MAX_VOLUME_BYTES >> 30} GiB limit); refused",
            )
        if np.issubdtype(img.get_data_dtype(), np.complexfloating):
            data = np.abs(np.asanyarray(img.dataobj)).astype(np.float32)
            notes.append(f"{p.name}: complex data, enhanced as their magnitude")
        else:
            data = img.get_fdata(dtype=np.float32)
    except InputError:
        raise
    except MemoryError:
        raise
    except Exception as exc:  # nibabel: ImageFileError, EOFError, OSError, zlib.error, ValueError, ...
        raise InputError(p, f"cannot be read as {what} (missing, corrupt or truncated): {exc}") from exc
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
        source_format=_format_of(img),
        notes=notes,
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
        bad = ~np.isfinite(stack)
        if bad.any():  # NaN/Inf masked through the model (as 0, background) and put back where they were
            kept = stack[bad]
            stack[bad] = 0.0
        out = np.asarray(enhance_stack(stack), dtype=np.float32)
        if out.shape != (n, s * h, s * w):
            raise ValueError(f"enhance_stack returned {out.shape}, expected {(n, s * h, s * w)}")
        if bad.any():
            values = np.zeros_like(stack)
            values[bad] = kept
            up = np.kron(bad, np.ones((1, s, s), dtype=bool))
            out = np.where(up, np.kron(values, np.ones((1, s, s), np.float32)), out)
        frames.append(np.transpose(out, back))
    new = np.stack(frames, axis=3) if vol.data.ndim == 4 else frames[0]
    return Volume(
        data=np.ascontiguousarray(new),
        affine=refine_affine(vol.affine, s, inplane),
        header=vol.header,
        path=vol.path,
        source_dtype=vol.source_dtype,
        source_format=vol.source_format,
        notes=list(vol.notes),
    )


def _xform_codes(header) -> tuple[int, int]:
    """(sform_code, qform_code) for the output: the source's, unchanged (a code 0 stays 0: the output claims no
    orientation its input did not); 1 (scanner) for a volume built in memory or read from a format without
    codes (Analyze, MGH), whose affine nibabel gives as scanner space."""
    if header is None or "sform_code" not in header or "qform_code" not in header:
        return 1, 1
    return int(header["sform_code"]), int(header["qform_code"])


def save_nifti(vol: Volume, path: str | Path, provenance: Provenance | None = None) -> Path:
    """Write ``vol`` as float32 NIfTI-1 to ``path`` (``.nii`` or ``.nii.gz``) atomically.

    Both qform and sform are set to ``vol.affine`` (codes passed through from the source header unchanged, 1 for
    a source without codes), so every reader agrees on the geometry; an affine with shear, which a qform cannot
    hold, gets qform code 0. A NIfTI-2 source gives NIfTI-2. ``path`` may also end in ``.mgz``/``.mgh`` (a
    FreeSurfer source is written as FreeSurfer: float32, affine kept, provenance in the sidecar JSON).
    Other header fields (units, TR, intent) are kept from the source header. With ``provenance`` the
    header ``descrip`` gets ``provenance.short()`` and ``<name>.json`` beside the file gets
    ``provenance.as_dict()`` plus the source path and data type. Refuses to overwrite the source file.
    """
    import nibabel as nib

    out = Path(path)
    mgh = out.suffix.lower() in (".mgz", ".mgh")
    if not is_nifti(out) and not mgh:
        raise InputError(out, "output name must end in .nii, .nii.gz, .mgz or .mgh")
    if vol.path is not None and out.exists() and out.resolve() == Path(vol.path).resolve():
        raise InputError(out, "would overwrite the input volume; choose another output name")
    if not out.parent.is_dir():
        raise InputError(out.parent, "output folder does not exist")
    data = np.asarray(vol.data, dtype=np.float32)
    if mgh:
        with atomic.atomic_path(out) as tmp:
            nib.save(nib.MGHImage(data, vol.affine), str(tmp))
        _sidecar(vol, out, data, provenance)
        return out
    two = vol.source_format in ("nifti2", "nifti2-pair")
    klass, hdr_class = (nib.Nifti2Image, nib.Nifti2Header) if two else (nib.Nifti1Image, nib.Nifti1Header)
    hdr = vol.header.copy() if vol.header is not None else hdr_class()
    if type(hdr) is not hdr_class:
        try:
            hdr = hdr_class.from_header(hdr)
        except Exception:  # noqa: BLE001 - a header of another family (MGH): start afresh
            hdr = hdr_class()
    hdr.set_data_dtype(np.float32)
    img = klass(data, vol.affine, header=hdr)
    scode, qcode = _xform_codes(vol.header)
    img.set_sform(vol.affine, code=scode)
    img.set_qform(vol.affine, code=qcode)
    if qcode and not np.allclose(img.get_qform(), vol.affine, atol=1e-4):
        img.set_qform(vol.affine, code=0)
    h = img.header
    h.set_slope_inter(1.0, 0.0)
    h["cal_min"], h["cal_max"] = 0.0, 0.0
    for key in ("glmin", "glmax"):  # NIfTI-1 only
        if key in h:
            h[key] = 0
    if provenance is not None:
        h["descrip"] = provenance.short().encode("ascii", "replace")[:80]
    with atomic.atomic_path(out) as tmp:
        nib.save(img, str(tmp))
    _sidecar(vol, out, data, provenance)
    return out


def _sidecar(vol: Volume, out: Path, data: np.ndarray, provenance: Provenance | None) -> None:
    if provenance is not None:
        side = out.with_name(volume_stem(out) + ".json")
        record = {
            **provenance.as_dict(),
            "source": None if vol.path is None else str(vol.path),
            "source_dtype": vol.source_dtype,
            "source_format": vol.source_format,
            "output_dtype": "float32",
            "shape": list(data.shape),
            "zooms_mm": list(vol.zooms),
        }
        atomic.write_text(side, json.dumps(record, indent=2) + "\n")

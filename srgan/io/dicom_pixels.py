"""Pixels of one DICOM dataset: decoding, modality rescale and Siemens mosaic tiles.

Everything here works on an already read ``pydicom.Dataset``; finding, grouping and sorting files is
``srgan.io.dicom_series``. Stored values become float32 modality values (after RescaleSlope/Intercept,
per frame for enhanced MR, because Philips stores magnitude and field-map frames with different
rescales in one file). A Siemens mosaic holds a whole volume as a ``g × g`` grid of tiles in one 2D
image; its ImagePositionPatient refers to the corner of the whole mosaic, not to the first tile.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pydicom
from pydicom.tag import Tag

from srgan.errors import InputError

#: Siemens private (0019,100A) NumberOfImagesInMosaic, under creator "SIEMENS MR HEADER".
_SIEMENS_MR_CREATOR = "SIEMENS MR HEADER"


def _csa_image_header(ds: pydicom.Dataset) -> dict[str, Any] | None:
    """Parsed Siemens CSA image header (0029,xx10), or None when absent or unreadable."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nibabel.nicom warns that its readers are experimental
        from nibabel.nicom import csareader
    try:
        return csareader.get_csa_header(ds, "image")
    except Exception:  # a damaged private header just means "not known"
        return None


def _csa_value(csa: dict[str, Any] | None, name: str) -> list | None:
    if not csa:
        return None
    tag = csa.get("tags", {}).get(name)
    if not tag or not tag.get("items"):
        return None
    return list(tag["items"])


def _private_mosaic_count(ds: pydicom.Dataset) -> int | None:
    try:
        block = ds.private_block(0x0019, _SIEMENS_MR_CREATOR)
        elem = block[0x0A]
    except KeyError:
        elem = ds.get(Tag(0x0019, 0x100A))
        if elem is None:
            return None
    value = elem.value
    if isinstance(value, (bytes, bytearray)):  # read as UN (implicit VR without a private dictionary)
        if len(value) < 2:
            return None
        value = int.from_bytes(bytes(value[:2]), "little")
    try:
        n = int(value)
    except (TypeError, ValueError):
        return None
    return n if n > 0 else None


def _image_type(ds: pydicom.Dataset) -> tuple[str, ...]:
    value = ds.get("ImageType", ())
    if isinstance(value, str):
        value = value.split("\\")
    return tuple(str(v).upper() for v in value)


def is_mosaic(ds: pydicom.Dataset) -> bool:
    """True for a Siemens mosaic: ImageType contains MOSAIC and the number of tiles is known."""
    if "MOSAIC" not in _image_type(ds):
        return False
    try:
        mosaic_tile_count(ds)
    except InputError:
        return False
    return True


def mosaic_tile_count(ds: pydicom.Dataset) -> int:
    """Number of real tiles (slices) in a mosaic: (0019,100A), else the CSA NumberOfImagesInMosaic."""
    n = _private_mosaic_count(ds)
    if n is None:
        items = _csa_value(_csa_image_header(ds), "NumberOfImagesInMosaic")
        n = int(items[0]) if items else None
    if not n:
        raise InputError(
            getattr(ds, "filename", None),
            "is a Siemens MOSAIC but gives no NumberOfImagesInMosaic (0019,100A or CSA header)",
        )
    return n


def mosaic_grid(ds: pydicom.Dataset) -> int:
    """Tiles per side of the mosaic grid: ceil(sqrt(n_tiles))."""
    return math.ceil(math.sqrt(mosaic_tile_count(ds)))


def split_mosaic(image: np.ndarray, n_tiles: int) -> np.ndarray:
    """Tiles (n_tiles, R//g, C//g) of a mosaic image (R, C), row-major order, g = ceil(sqrt(n_tiles))."""
    image = np.asarray(image)
    g = math.ceil(math.sqrt(n_tiles))
    rows, cols = image.shape[:2]
    if rows % g or cols % g:
        raise ValueError(f"mosaic of {rows}×{cols} does not split into a {g}×{g} grid")
    h, w = rows // g, cols // g
    tiles = image.reshape(g, h, g, w).swapaxes(1, 2).reshape(g * g, h, w)
    return np.ascontiguousarray(tiles[:n_tiles])


def join_mosaic(tiles: np.ndarray, grid: int) -> np.ndarray:
    """Mosaic image (grid·h, grid·w) from tiles (n, h, w), row-major; the unused tiles are zero."""
    tiles = np.asarray(tiles)
    n, h, w = tiles.shape
    if n > grid * grid:
        raise ValueError(f"{n} tiles do not fit a {grid}×{grid} grid")
    full = np.zeros((grid * grid, h, w), dtype=tiles.dtype)
    full[:n] = tiles
    return full.reshape(grid, grid, h, w).swapaxes(1, 2).reshape(grid * h, grid * w)


def mosaic_slice_normal(ds: pydicom.Dataset) -> np.ndarray:
    """Unit vector (3,) LPS along which successive mosaic tiles lie.

    The CSA SliceNormalVector gives it with its sign (tiles may run against row × column); without a
    CSA header the cross product of ImageOrientationPatient is the best guess.
    """
    items = _csa_value(_csa_image_header(ds), "SliceNormalVector")
    if items and len(items) == 3:
        n = np.asarray(items, dtype=np.float64)
        if np.linalg.norm(n) > 0.5:
            return n / np.linalg.norm(n)
    iop = np.asarray(ds.ImageOrientationPatient, dtype=np.float64)
    n = np.cross(iop[:3], iop[3:])
    return n / np.linalg.norm(n)


def mosaic_tile_positions(ds: pydicom.Dataset) -> np.ndarray:
    """ImagePositionPatient (n_tiles, 3), LPS mm, of the first pixel centre of each mosaic tile.

    The mosaic's IPP is where the first pixel of a tile-sized image centred on the mosaic would be, so
    tile 0 lies ((C_mosaic − C_tile)/2, (R_mosaic − R_tile)/2) pixels further along the row/column
    directions (the dcm2niix/nibabel correction); tile k then lies k · spacing along the slice normal.
    """
    n = mosaic_tile_count(ds)
    g = math.ceil(math.sqrt(n))
    rows, cols = int(ds.Rows), int(ds.Columns)
    h, w = rows // g, cols // g
    iop = np.asarray(ds.ImageOrientationPatient, dtype=np.float64)
    row_dir, col_dir = iop[:3], iop[3:]
    d_row, d_col = (float(v) for v in ds.PixelSpacing)
    ipp = np.asarray(ds.ImagePositionPatient, dtype=np.float64)
    first = ipp + (cols - w) / 2 * d_col * row_dir + (rows - h) / 2 * d_row * col_dir
    spacing = ds.get("SpacingBetweenSlices") or ds.get("SliceThickness") or 1.0
    normal = mosaic_slice_normal(ds)
    return first + np.arange(n)[:, None] * float(spacing) * normal


# ------------------------------------------------------------------------------------- tiled images


@dataclass(frozen=True)
class TileLayout:
    """A volume stored as a grid of 2D tiles in one image: a Siemens MOSAIC (``g × g``, tile positions derived from
    the mosaic centre) or a United Imaging VFRAME grid (``Rows/h × Columns/w``, each tile's position in its item of
    the private sequence (0065,1051)). Tiles are in row-major order; ``n`` of the ``grid_rows · grid_cols`` places
    hold a slice, the rest are blank."""

    vendor: str  # "siemens" or "uih"
    n: int
    grid_rows: int
    grid_cols: int
    tile_rows: int
    tile_cols: int


#: United Imaging: (0065,1051) per-tile items (ImagePositionPatient each), (0065,1004) tile matrix ``"64*64"``,
#: (0065,1050) number of tiles.
_UIH_TILES, _UIH_MATRIX, _UIH_COUNT = (0x0065, 0x1051), (0x0065, 0x1004), (0x0065, 0x1050)


def _uih_layout(ds: pydicom.Dataset) -> TileLayout | None:
    if "VFRAME" not in _image_type(ds) or _UIH_TILES not in ds:
        return None
    items = ds[_UIH_TILES].value
    if not items or not all("ImagePositionPatient" in it for it in items):
        return None
    rows, cols = int(ds.Rows), int(ds.Columns)
    sizes = []
    text = ds.get(_UIH_MATRIX)
    if text is not None and isinstance(text.value, str) and "*" in text.value:
        try:
            a, b = (int(v) for v in text.value.split("*")[:2])
            sizes += [(a, b), (b, a)]
        except ValueError:
            pass
    matrix = [int(v) for v in ds.get("AcquisitionMatrix", []) or [] if int(v)]
    if len(matrix) == 2:
        sizes += [(matrix[0], matrix[1]), (matrix[1], matrix[0])]
    n = len(items)
    for h, w in sizes:
        if h > 0 and w > 0 and rows % h == 0 and cols % w == 0 and (rows // h) * (cols // w) >= n:
            return TileLayout("uih", n, rows // h, cols // w, h, w)
    return None


def tile_layout(ds: pydicom.Dataset) -> TileLayout | None:
    """The tile layout of a tiled image (Siemens mosaic, UIH grid), None for an ordinary image. The one model of
    tiles that the reader (frames, positions) and the derived writer (joining, geometry) share."""
    uih = _uih_layout(ds)
    if uih is not None:
        return uih
    if not is_mosaic(ds):
        return None
    n = mosaic_tile_count(ds)
    g = math.ceil(math.sqrt(n))
    return TileLayout("siemens", n, g, g, int(ds.Rows) // g, int(ds.Columns) // g)


def split_tiles(image: np.ndarray, layout: TileLayout) -> np.ndarray:
    """Tiles (n, h, w) of a tiled image (R, C), row-major order."""
    image = np.asarray(image)
    gr, gc, h, w = layout.grid_rows, layout.grid_cols, layout.tile_rows, layout.tile_cols
    if image.shape[:2] != (gr * h, gc * w):
        raise ValueError(f"image of {image.shape[0]}×{image.shape[1]} does not split into {gr}×{gc} tiles of {h}×{w}")
    tiles = image.reshape(gr, h, gc, w).swapaxes(1, 2).reshape(gr * gc, h, w)
    return np.ascontiguousarray(tiles[: layout.n])


def join_tiles(tiles: np.ndarray, layout: TileLayout) -> np.ndarray:
    """Tiled image (grid_rows·h, grid_cols·w) from tiles (n, h, w) of any size, row-major; blank places are 0."""
    tiles = np.asarray(tiles)
    n, h, w = tiles.shape
    gr, gc = layout.grid_rows, layout.grid_cols
    if n > gr * gc:
        raise ValueError(f"{n} tiles do not fit a {gr}×{gc} grid")
    full = np.zeros((gr * gc, h, w), dtype=tiles.dtype)
    full[:n] = tiles
    return full.reshape(gr, gc, h, w).swapaxes(1, 2).reshape(gr * h, gc * w)


def tile_positions(ds: pydicom.Dataset, layout: TileLayout) -> np.ndarray:
    """ImagePositionPatient (n, 3), LPS mm, of each tile's first pixel centre."""
    if layout.vendor == "uih":
        return np.asarray([[float(v) for v in it.ImagePositionPatient] for it in ds[_UIH_TILES].value])
    return mosaic_tile_positions(ds)


def _functional_group_item(ds: pydicom.Dataset, frame_index: int | None, sequence: str) -> pydicom.Dataset | None:
    """First item of ``sequence`` in the frame's per-frame group, else in the shared group."""
    if frame_index is not None:
        per_frame = ds.get("PerFrameFunctionalGroupsSequence")
        if per_frame is not None and 0 <= frame_index < len(per_frame):
            seq = per_frame[frame_index].get(sequence)
            if seq:
                return seq[0]
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared:
        seq = shared[0].get(sequence)
        if seq:
            return seq[0]
    return None


def frame_rescale(ds: pydicom.Dataset, frame_index: int | None = None) -> tuple[float, float]:
    """(slope, intercept) for one frame: per-frame PixelValueTransformationSequence, then shared, then
    top-level RescaleSlope/Intercept, default (1, 0)."""
    for source in (_functional_group_item(ds, frame_index, "PixelValueTransformationSequence"), ds):
        if source is None:
            continue
        slope, intercept = source.get("RescaleSlope"), source.get("RescaleIntercept")
        if slope is not None or intercept is not None:
            slope = 1.0 if slope in (None, "") else float(slope)
            intercept = 0.0 if intercept in (None, "") else float(intercept)
            return (slope if slope != 0 else 1.0), intercept
    return 1.0, 0.0


def _transfer_syntax(ds: pydicom.Dataset) -> str:
    meta = getattr(ds, "file_meta", None)
    uid = meta.get("TransferSyntaxUID") if meta is not None else None
    return f"{uid.name} ({uid})" if uid is not None else "an unknown transfer syntax"


def _as_frames(ds: pydicom.Dataset, arr: np.ndarray, several: bool) -> np.ndarray:
    if int(ds.get("SamplesPerPixel", 1) or 1) > 1 and arr.ndim >= 3 and arr.shape[-1] in (3, 4):
        arr = arr[..., :3].mean(axis=-1)  # a colour image: grey for the viewer and the networks
    if not several:
        arr = arr[None]
    return arr


def _ensure_transfer_syntax(ds: pydicom.Dataset) -> None:
    """A file without meta header (no preamble, read with force=True) gets the transfer syntax it was
    actually read with, so that the pixel decoders know how the data are encoded."""
    meta = getattr(ds, "file_meta", None)
    if meta is not None and "TransferSyntaxUID" in meta:
        return
    implicit, little = ds.original_encoding
    if implicit is None:
        return
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    if meta is None:
        ds.file_meta = meta = FileMetaDataset()
    meta.TransferSyntaxUID = (
        ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian if little else ExplicitVRBigEndian
    )


def decode_frames(ds: pydicom.Dataset, index: int | None = None) -> np.ndarray:
    """Stored values (F, R, C) of every frame (or only frame ``index``, F = 1), no rescale.

    Raises InputError naming the file and its transfer syntax when the pixel data cannot be decoded
    (missing plugin, truncated or corrupt data).
    """
    filename = getattr(ds, "filename", None)
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise InputError(filename if isinstance(filename, str) else None, "has no pixel data")
    _ensure_transfer_syntax(ds)
    try:
        if index is None:
            arr = ds.pixel_array
            several = int(ds.get("NumberOfFrames", 1) or 1) > 1
        else:
            from pydicom.pixels import pixel_array

            arr = pixel_array(ds, index=index)
            several = False
    except Exception as err:
        raise InputError(
            filename if isinstance(filename, str) else None,
            f"pixel data could not be decoded ({_transfer_syntax(ds)}): {' '.join(str(err).split())}",
        ) from err
    return _as_frames(ds, np.asarray(arr), several)


def rescale(stored: np.ndarray, slope: float, intercept: float) -> np.ndarray:
    """Modality values float32 = stored · slope + intercept (computed in float64, then rounded once)."""
    if slope == 1.0 and intercept == 0.0:
        return np.asarray(stored, dtype=np.float32)
    return (np.asarray(stored, dtype=np.float64) * slope + intercept).astype(np.float32)


def frame_pixels(ds: pydicom.Dataset, frame_index: int | None = None) -> np.ndarray:
    """Modality values float32 (R, C) of one frame (``None`` = the only frame of a single-frame file)."""
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frame_index is None or n_frames == 1:
        stored = decode_frames(ds)[0 if frame_index is None else frame_index]
    else:
        stored = decode_frames(ds, index=frame_index)[0]
    if "ModalityLUTSequence" in ds:
        from pydicom.pixels import apply_modality_lut

        return np.asarray(apply_modality_lut(stored, ds), dtype=np.float32)
    return rescale(stored, *frame_rescale(ds, frame_index))

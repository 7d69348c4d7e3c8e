"""Derived (AI super-resolution) DICOM series: one new series per source series, image for image.

Input is the series as the reader (:mod:`srgan.io.dicom_series`) built it: its frames, their order (volume, then
slice; the derived files are numbered so) and their kinds are used as they are, never read, sorted or classified
again; each source file is read once, for the headers to copy and the pixels still to enhance. Enhanced pixels
come first from a lookup of slices already enhanced (the viewer's cache), then from the enhancer for the
others, with the series' plan and the slices' ``(volume, slice)`` keys so outputs the plan already holds are
reused.

Why a derived *series* and not overwritten images: PACS and viewers must always be able to tell an enhanced
image from an acquired one, go back to the source (SourceImageSequence, ReferencedSeriesSequence) and read
how it was made (DerivationDescription, ImageComments carry the provenance and the disclaimer).

What each derived file says (header, grid, tiled and Enhanced MR images) is :mod:`srgan.io.derived_header`; how
the enhanced values are stored (rescale, clipping) is :mod:`srgan.io.derived_pixels`; every file is written
uncompressed, Explicit VR Little Endian, by :func:`srgan.io.dicom_file.write_dataset`. This module decides which
files and slices are written, gets the enhanced slices and writes the series.

Non-anatomy images (phase, real/imaginary, field maps, ADC/trace/FA maps, localizers and images already made by
an AI enhancer) are left out by default with a note in the report (``include_non_anatomy=True`` keeps them):
the frame kinds the reader gave (ImageType / FrameType tokens of :mod:`srgan.io.image_type`,
ComplexImageComponent, isotropic diffusion; so the writer and the viewer agree), and for single-frame files
Philips' private trace marker and an AI enhancer's derivation text.

Parts of several series are refused (InputError): one call writes one derived series (the parts the reader split
one SeriesInstanceUID into go together). Only the frames the reader put into the series are written (a frame it
left out, e.g. of an incomplete volume, is not). Multi-frame files of a single-frame SOP class are skipped (not
supported).

Failure policy: the destination is checked first (:func:`srgan.io.atomic.check_new_folder`). A source file that
cannot be read or decoded is skipped and listed in ``DerivedReport.skipped`` (the CLI then exits non-zero); if
no image is left, :class:`InputError` is raised and nothing is written. The series is built in a hidden folder
beside the destination (:func:`srgan.io.atomic.atomic_folder`): any other failure (e.g. in the enhancer) or a
cancel removes it, so the output folder appears complete or not at all. A cancel raises
:class:`WriteCancelled`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from srgan.errors import InputError
from srgan.io import dicom_pixels
from srgan.io.atomic import atomic_folder, check_new_folder
from srgan.io.derived_header import derive
from srgan.io.dicom_file import read_dicom, write_dataset
from srgan.io.dicom_series import Frame, Series
from srgan.io.image_type import reason_of_kind
from srgan.provenance import DISCLAIMER, Provenance

if TYPE_CHECKING:
    from srgan.inference.plan import Plan

#: A slice's key: ``(volume, slice)`` in the first (or only) part of the series, ``(part, volume, slice)`` after.
Key = tuple[int, ...]
#: The viewer's cache of enhanced slices: ``lookup(volume, slice)`` is that slice enhanced, (s·H, s·W) float32 in
#: modality units, or None when it has not been enhanced yet.
Lookup = Callable[[int, int], "np.ndarray | None"]
_Ident = tuple[Path, "int | None", "int | None"]  # (file, frame index, mosaic tile index) as the reader has them

ENHANCED_SOP_CLASSES = {"1.2.840.10008.5.1.4.1.1.4.1", "1.2.840.10008.5.1.4.1.1.4.3", "1.2.840.10008.5.1.4.1.1.2.1"}

_AI_MARKERS = ("super-resolution", "brainsr", DISCLAIMER.lower())

#: At most this many source files are read ahead to fill the enhancer's batches (memory stays bounded).
LOOKAHEAD = 16


class NothingToEnhance(InputError):
    """The series holds no image to enhance by design (every image is a field map, phase, ADC... left out): a note
    for the report, not an error."""


class WriteCancelled(Exception):
    """The caller's ``cancel()`` returned True; nothing was left on disk."""


@dataclass
class DerivedReport:
    out_dir: Path
    files: list[Path] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # (source file, reason)
    notes: list[str] = field(default_factory=list)
    series_instance_uid: str = ""


def _philips_isotropic(ds: Dataset) -> bool:
    """Philips classic DTI writes its trace ("isotropic") image with the acquired ImageType; it is marked only by
    the private diffusion direction (2001,1004) ``I`` with b > 0 (b = 0 images also carry ``I``)."""
    try:
        direction = str(ds.get_private_item(0x2001, 0x04, "Philips Imaging DD 001").value).strip().upper()
    except (KeyError, ValueError):
        return False
    try:
        b = float(ds.get("DiffusionBValue", 0) or 0)
    except (TypeError, ValueError):
        b = 0.0
    return direction == "I" and b > 0


def _dataset_reason(ds: Dataset) -> str | None:
    """Why a single-frame image is not to be enhanced though its ImageType says magnitude: Philips' private trace
    marker, or the derivation text of an image this (or another) AI enhancer made."""
    if _philips_isotropic(ds):
        return "diffusion map (ADC/trace/FA)"
    text = f"{ds.get('DerivationDescription', '')} {ds.get('ImageComments', '')}".lower()
    if any(m in text for m in _AI_MARKERS):
        return "already AI-enhanced"
    return None


def _parts(series: Series | Sequence[Series]) -> list[Series]:
    parts: list[Series] = [series] if isinstance(series, Series) else list(series)
    if not parts:
        raise InputError(None, "no series given to write")
    uids = {p.uid for p in parts}
    if len(uids) > 1:
        raise InputError(
            parts[0].files[0].parent, f"the series parts belong to {len(uids)} series; write one series at a time"
        )
    return parts


def _frames_by_file(parts: list[Series]) -> tuple[dict[Path, list[Frame]], dict[_Ident, Key]]:
    """The reader's frames grouped by source file, in the reader's order (volume, then slice; part after part),
    and the key of each frame: ``(volume, slice)`` in the first part, ``(part, volume, slice)`` in later ones."""
    keys: dict[_Ident, Key] = {}
    by_file: dict[Path, list[Frame]] = {}
    for p, part in enumerate(parts):
        n_volumes, n_slices = part.shape[:2]
        for v in range(n_volumes):
            for sl in range(n_slices):
                fr = part.frame(v, sl)
                ident = (fr.path, fr.frame_index, fr.tile_index)
                if ident not in keys:
                    keys[ident] = (v, sl) if p == 0 else (p, v, sl)
                    by_file.setdefault(fr.path, []).append(fr)
    return by_file, keys


class _Skip(Exception):
    """This source file cannot be derived; the message says why (it goes into ``DerivedReport.skipped``)."""


def _read(path: Path) -> Dataset:
    try:
        src, _ = read_dicom(path)  # the reader's scan reported any warning
    except Exception as e:  # noqa: BLE001 - a truncated or corrupt file, whatever the reader says
        raise _Skip(f"cannot be read ({e.__class__.__name__}: {_one_line(e)})") from e
    missing = [
        kw
        for kw in (
            "SOPClassUID",
            "SOPInstanceUID",
            "SeriesInstanceUID",
            "Rows",
            "Columns",
            "BitsAllocated",
            "BitsStored",
            "PixelRepresentation",
        )
        if kw not in src
    ]
    if missing:
        raise _Skip(f"not a DICOM image (no {', '.join(missing)})")
    photometric = str(src.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    if int(src.get("SamplesPerPixel", 1) or 1) != 1 or not photometric.startswith("MONOCHROME"):
        raise _Skip(f"is a colour image ({photometric}); the models enhance grey-level MR only, so it is not enhanced")
    tag = None
    try:
        for elem in src.iterall():  # every element must decode, or the copy cannot be written
            tag = elem.tag
    except Exception as e:  # noqa: BLE001 - a damaged value (e.g. a flipped VR byte), whatever pydicom says
        raise _Skip(f"has a damaged data element after {tag} ({type(e).__name__}: {_one_line(e)})") from e
    return src


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())[:300]


def _decoded(read: Callable[[], np.ndarray]) -> np.ndarray:
    """Source pixels, or :class:`_Skip` when they cannot be decoded (nothing of the file is written then)."""
    try:
        return read()
    except InputError as e:
        raise _Skip(e.problem) from e
    except Exception as e:  # noqa: BLE001 - a truncated or corrupt file, whatever the decoder says
        raise _Skip(f"cannot be read ({e.__class__.__name__}: {_one_line(e)})") from e


@dataclass
class _Want:
    """One file's enhanced slices in the making: ``out`` (N, s·H, s·W), its rows ``todo`` still to enhance from the
    decoded ``stack`` with their ``keys`` (``stack`` None once filled)."""

    out: np.ndarray
    todo: list[int]
    stack: np.ndarray | None
    keys: list[Key | None]


class _Slices:
    """Enhanced slices for the writer: the viewer's ``lookup`` first, the enhancer for the rest (with the series'
    plan and the slices' keys, so the plan's outputs are reused)."""

    def __init__(
        self,
        enhancer: Any,
        plan: Plan | None,
        lookup: Lookup | None,
        first: Series,
        scale: int,
        cancel: Callable[[], bool] | None,
    ):
        self.enhancer, self.plan, self.lookup, self.first = enhancer, plan, lookup, first
        self.scale, self.cancel = scale, cancel

    def _plan(self) -> Plan | None:
        if self.plan is None and hasattr(self.enhancer, "plan_series"):
            self.plan = self.enhancer.plan_series(self.first)
        return self.plan

    def _cached(self, key: Key | None, shape: tuple[int, int]) -> np.ndarray | None:
        if self.lookup is None or key is None or len(key) != 2:
            return None
        got = self.lookup(key[0], key[1])
        if got is None:
            return None
        arr = np.asarray(got, dtype=np.float32)
        return arr if arr.shape == (shape[0] * self.scale, shape[1] * self.scale) else None

    def want(self, keys: list[Key | None], shape: tuple[int, int], source: Callable[[list[int]], np.ndarray]) -> _Want:
        """The N slices ``keys`` of one file: those the lookup has are filled in, the others decoded
        (``source(rows)``) and left for :meth:`fill`."""
        out = np.empty((len(keys), shape[0] * self.scale, shape[1] * self.scale), dtype=np.float32)
        todo = []
        for k, key in enumerate(keys):
            cached = self._cached(key, shape)
            if cached is None:
                todo.append(k)
            else:
                out[k] = cached
        stack = np.ascontiguousarray(_decoded(lambda: source(todo)), dtype=np.float32) if todo else None
        return _Want(out, todo, stack, [keys[k] for k in todo])

    def fill(self, wants: Sequence[_Want]) -> None:
        """Enhance what ``wants`` still lack: one enhancer call per slice size for all of them together (rows of
        several files share the generator's batches), each row with its key."""
        groups: dict[tuple[int, ...], list[_Want]] = {}
        for w in wants:
            if w.stack is not None:
                groups.setdefault(w.stack.shape[1:], []).append(w)
        for group in groups.values():
            stack = group[0].stack if len(group) == 1 else np.concatenate([w.stack for w in group])
            hr = self._enhance(cast(np.ndarray, stack), [k for w in group for k in w.keys])
            start = 0
            for w in group:
                w.out[w.todo] = hr[start : start + len(w.todo)]
                start += len(w.todo)
                w.stack = None

    def _enhance(self, stack: np.ndarray, keys: list[Key | None]) -> np.ndarray:
        if hasattr(self.enhancer, "enhance_stack"):
            try:
                hr = self.enhancer.enhance_stack(stack, self._plan(), keys=keys, cancel=self.cancel)
            except InterruptedError as err:
                raise WriteCancelled("cancelled") from err
        else:
            hr = self.enhancer(stack)
        hr = np.asarray(hr, dtype=np.float32)
        want = (stack.shape[0], stack.shape[1] * self.scale, stack.shape[2] * self.scale)
        if hr.shape != want:
            raise ValueError(f"enhance returned shape {hr.shape}, expected {want}")
        return hr


def write_derived_series(
    series: Series | Sequence[Series],
    enhancer: Any,
    out_dir: str | Path,
    *,
    scale: int,
    provenance: Provenance,
    plan: Plan | None = None,
    lookup: Lookup | None = None,
    include_non_anatomy: bool = False,
    progress: Callable[[int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> DerivedReport:
    """Write the ×``scale`` derived series of one source series into the new folder ``out_dir``.

    ``series``: the :class:`srgan.io.dicom_series.Series` the reader built, or the list of parts the reader split
    one SeriesInstanceUID into (every part is written into the one derived series); its frames, their order and
    their kinds are used as the reader made them. ``lookup(volume, slice)``: enhanced slices already made (the
    viewer's cache; None for a slice not enhanced yet); ``plan`` and ``lookup`` address the slices of the first
    part. ``enhancer``: an object with ``enhance_stack(stack, plan, *, keys, cancel)``
    (``srgan.inference.engine.Enhancer``), called with the slices the lookup lacks, once per slice size for a
    window of files read ahead until their slices fill one generator batch (its ``rows_per_call``; at most
    ``LOOKAHEAD`` files, so memory stays bounded; a file with more slices is one call), with the series'
    ``plan`` (default: ``enhancer.plan_series(series)``, made on first need) and their keys ``(volume, slice)``, so
    outputs the plan already holds are not generated again; or a plain callable ``stack (N, H, W) -> (N, sH, sW)``
    in modality units. ``progress(done, total)`` is called per file, ``cancel()`` polled between files (and passed
    to ``enhance_stack``).
    """
    parts = _parts(series)
    by_file, keys = _frames_by_file(parts)
    out = check_new_folder(out_dir, sources=list(by_file))
    report = DerivedReport(out_dir=out)
    s = int(scale)

    excluded: dict[str, int] = {}
    work: list[tuple[Path, list[int] | None]] = []  # (file, kept frame indices for multi-frame else None)
    for path, frames in by_file.items():
        indexed = sorted((fr for fr in frames if fr.frame_index is not None), key=lambda fr: fr.frame_index or 0)
        if indexed:  # the reader read the file frame by frame
            kept = []
            for fr in indexed:
                reason = None if include_non_anatomy else reason_of_kind(fr.kind)
                if reason is None:
                    kept.append(int(fr.frame_index or 0))
                else:
                    excluded[f"{reason} frames"] = excluded.get(f"{reason} frames", 0) + 1
            if kept:
                work.append((path, kept))
            continue
        reason = None if include_non_anatomy else reason_of_kind(frames[0].kind)  # mosaic tiles share one kind
        if reason is not None:
            excluded[f"{reason} images"] = excluded.get(f"{reason} images", 0) + 1
            continue
        work.append((path, None))

    def notes() -> list[str]:
        return [f"{n} {what} left out: not magnitude anatomy" for what, n in excluded.items()]

    first_folder = next(iter(by_file)).parent
    if not work:
        raise NothingToEnhance(
            first_folder,
            "no magnitude anatomy image to enhance in this series" + (f" ({'; '.join(notes())})" if excluded else ""),
        )

    modality = parts[0].modality.upper()
    if modality and modality != "MR":
        raise InputError(
            first_folder,
            f"is a {modality} series; the models were trained on brain MR and cannot enhance other modalities honestly",
        )
    slices = _Slices(enhancer, plan, lookup, parts[0], s, cancel)
    uid_map: dict = {"series": generate_uid()}
    report.series_instance_uid = uid_map["series"]
    # Files are read ahead until their slices still to enhance fill one generator batch (``rows_per_call``: small
    # slices share one, large ones go alone; at most LOOKAHEAD files), so small slices of several files share
    # the generator's calls; then each is derived and written in order. A plain callable is called once per file.
    rows_per_call = getattr(enhancer, "rows_per_call", None) if hasattr(enhancer, "enhance_stack") else None
    with atomic_folder(out) as tmp:
        written: list[str] = []
        window: list[tuple[Path, list[int] | None, Dataset | None, _Want | None, Exception | None]] = []
        done = 0

        def flush() -> None:
            nonlocal done
            slices.fill([w for _, _, _, w, _ in window if w is not None])
            for f, frame_ids, src, want, err in window:
                ds = None
                try:
                    if err is not None:
                        raise err
                    ds = _finish(cast(Dataset, src), frame_ids, cast(_Want, want).out, s, provenance, uid_map)
                except _Skip as e:
                    report.skipped.append((f, str(e)))
                except _Excluded as e:
                    excluded[f"{e} images"] = excluded.get(f"{e} images", 0) + 1
                if ds is not None:
                    name = tmp / f"IM{len(written) + 1:05d}.dcm"
                    try:
                        write_dataset(ds, name)
                    except (ValueError, TypeError, NotImplementedError, OverflowError) as e:  # this file's header
                        name.unlink(missing_ok=True)
                        report.skipped.append((f, f"cannot be written ({type(e).__name__}: {_one_line(e)})"))
                    else:
                        written.append(name.name)
                done += 1
                if progress is not None:
                    progress(done, len(work))
            window.clear()

        for f, frame_ids in work:
            if cancel is not None and cancel():
                raise WriteCancelled("cancelled")
            try:
                src, want = _prepare(f, frame_ids, keys, slices, include_non_anatomy)
                window.append((f, frame_ids, src, want, None))
            except (_Skip, _Excluded) as e:
                window.append((f, frame_ids, None, None, e))
            stacks = [w.stack for _, _, _, w, _ in window if w is not None and w.stack is not None]
            if (
                rows_per_call is None
                or len(window) >= LOOKAHEAD
                or (stacks and sum(len(st) for st in stacks) >= rows_per_call(stacks[-1].shape[1:]))
            ):
                flush()
        flush()
        report.notes = notes() + sorted(uid_map.get("notes", ()))
        if not written:
            if report.skipped:
                bad, why = report.skipped[0]
                raise InputError(bad, f"none of the series' images could be used: {why}")
            raise NothingToEnhance(
                first_folder,
                "no magnitude anatomy image to enhance in this series"
                + (f" ({'; '.join(report.notes)})" if report.notes else ""),
            )
    report.files = [out / w for w in written]
    return report


class _Excluded(Exception):
    """This single-frame file is not magnitude anatomy though its ImageType says so; the message says what."""


def _prepare(
    path: Path,
    frame_ids: list[int] | None,
    keys: dict[_Ident, Key],
    slices: _Slices,
    include_non_anatomy: bool,
) -> tuple[Dataset, _Want]:
    """One source file read, and what its derived dataset needs: its kept frames, its mosaic tiles or its only
    image, taken from the lookup or decoded for the enhancer."""
    src = _read(path)
    multi = str(src.get("SOPClassUID", "")) in ENHANCED_SOP_CLASSES and "PerFrameFunctionalGroupsSequence" in src
    if frame_ids is not None and not multi:
        raise _Skip("multi-frame file of a single-frame SOP class; not supported")
    if frame_ids is None and not include_non_anatomy:
        reason = _dataset_reason(src)
        if reason is not None:
            raise _Excluded(reason)
    rows, cols = int(src.Rows), int(src.Columns)
    try:
        if frame_ids is not None:
            ids = frame_ids
            return src, slices.want(
                [keys.get((path, i, None)) for i in ids],
                (rows, cols),
                lambda todo: np.stack([dicom_pixels.frame_pixels(src, ids[k]) for k in todo]),
            )
        if (layout := dicom_pixels.tile_layout(src)) is not None:
            try:
                dicom_pixels.split_tiles(np.zeros((rows, cols), np.uint8), layout)
            except ValueError as e:
                raise _Skip(f"tiled image (mosaic/grid) cannot be split into tiles: {e}") from e
            return src, slices.want(
                [keys.get((path, None, k)) for k in range(layout.n)],
                (layout.tile_rows, layout.tile_cols),
                lambda todo: dicom_pixels.split_tiles(dicom_pixels.frame_pixels(src), layout)[todo],
            )
        return src, slices.want(
            [keys.get((path, None, None))], (rows, cols), lambda todo: dicom_pixels.frame_pixels(src)[None]
        )
    except InputError as e:  # this file's own problem (e.g. a mosaic without tile count)
        raise _Skip(e.problem) from e


def _finish(
    src: Dataset, frame_ids: list[int] | None, hr: np.ndarray, s: int, provenance: Provenance, uid_map: dict
) -> Dataset:
    try:
        return derive(src, frame_ids, hr, s, provenance, uid_map)
    except InputError as e:  # this file's own problem
        raise _Skip(e.problem) from e

"""Enhance files of every kind the ``srgan enhance`` contract accepts: one 2D image, a folder of 2D images, a NIfTI
volume, a DICOM folder. Qt-free; the CLI only parses arguments and calls :func:`enhance_path`.

Failure rules: a bad file is named in one sentence; in a folder it is skipped while the rest are enhanced; nothing
is written for an input that fails; every file or series is written atomically (temporary name, then rename).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np

from srgan.errors import InputError
from srgan.inference.plan import Plan
from srgan.io.atomic import atomic_folder, check_new_folder, clean_stale_partials

Log = Callable[[str], None]


@dataclass
class EnhanceReport:
    """What a run did: files written, inputs skipped for an error (path, reason), and notes (what was left out by
    design, how a damaged file was read anyway, format changes)."""

    written: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed and bool(self.written)

    def as_dict(self, exit_code: int | None = None, error: str | None = None) -> dict:
        """The report as JSON-ready data (``srgan enhance --report``)."""
        return {
            "written": [str(p) for p in self.written],
            "failed": [{"path": str(p), "reason": why} for p, why in self.failed],
            "notes": list(self.notes),
            "error": error,
            "exit_code": exit_code,
        }


def _noted(line: str, enhancer, plan: Plan) -> str:
    """A log line with what ``auto`` consistency chose for the input just enhanced, if it was used."""
    return f"{line} ({plan.note()})" if enhancer.consistency == "auto" else line


def _png_text(enhancer) -> dict:
    p = enhancer.provenance
    return {"Software": f"BrainSR {p.software_version}", "Description": p.long(), "BrainSR-Provenance": p.to_json()}


def _image_bit_depth(img, dst: Path) -> int:
    """The output's bit depth: the input's (8 or 16), 32 only for a float TIFF written as TIFF, else 16."""
    if dst.suffix.lower() in (".tif", ".tiff") and img.bit_depth == 32:
        return 32
    return img.bit_depth if img.bit_depth in (8, 16) else 16


def _save_enhanced(dst: Path, sr: np.ndarray, bit_depth: int, text: dict) -> None:
    from srgan.io.images import save_image

    save_image(dst, sr if bit_depth == 32 else np.clip(sr, 0.0, 1.0), bit_depth=bit_depth, text=text)


def enhance_image_file(src: Path, dst: Path, enhancer) -> tuple[list[str], Plan]:
    """One 2D image → ``dst`` at s× width and height; 16-bit output where the input was 16-bit. Each image is its
    own acquisition (a folder of 2D images may mix sources). Returns notes and the image's plan."""
    from srgan.io.images import load_image

    img = load_image(src)
    plan = enhancer.plan(img.data[None])
    sr = enhancer.enhance(img.data, plan, key=0)
    _save_enhanced(dst, sr, _image_bit_depth(img, dst), _png_text(enhancer))
    return [f"{src.name}: {n}" for n in img.notes], plan


def _image_output_path(src: Path, output: Path) -> Path:
    if output.suffix.lower() in (".png", ".tif", ".tiff", ".jpg", ".jpeg"):
        return output
    return output / (src.stem + ".png")


def enhance_image_folder(
    folder: Path, output: Path, enhancer, images: list[Path], log: Log, *, io_threads: int = 2
) -> EnhanceReport:
    """Every image under ``folder`` → ``output``/same relative name, saved as PNG.

    How a folder of 2D images is planned: each image is its own acquisition (a folder may mix sources, sizes and
    ways of losing resolution), so each gets its own plan, its own LR-kind estimate and projection, exactly as
    :func:`enhance_image_file` plans it alone (``Enhancer.plan(image[None])``); what is shared is the work, never
    the decision: ``Enhancer.plan_images`` batches the LR-kind estimates and the residual tests of ``auto`` over
    images of equal size, and ``Enhancer.enhance_images`` takes each test's generator output from its plan and
    batches the rest through the generator (each row with its own plan's LR-kind input), then projects each image
    as its plan says, so every output equals the one-image path's and no slice goes through the generator twice.
    Decoding (read ahead) and PNG encoding (write behind) run on ``io_threads`` threads overlapped with the
    generator (Pillow releases the GIL while it decodes, compresses and writes). Results are logged in order.
    """
    from concurrent.futures import Future, ThreadPoolExecutor

    from srgan.io.images import load_image

    report = EnhanceReport()
    n = len(images)
    text = _png_text(enhancer)
    batch = max(1, int(getattr(enhancer, "batch", 8)))
    lookahead = 2 * batch
    pending: list[tuple[int, Path, Path, Plan, list[str], Future]] = []  # written behind, logged in order

    def finish(block: bool) -> None:
        while pending and (block or pending[0][5].done()):
            i, src, dst, plan, notes, fut = pending.pop(0)
            try:
                fut.result()
            except InputError as e:
                report.failed.append((src, e.problem))
                log(f"[{i}/{n}] skipped {src}: {e.problem}")
                continue
            report.notes += notes
            report.written.append(dst)
            log(_noted(f"[{i}/{n}] {src.relative_to(folder)} -> {dst}", enhancer, plan))

    with ThreadPoolExecutor(max(1, io_threads), thread_name_prefix="srgan-io") as pool:
        reads: list[Future | None] = [pool.submit(load_image, src) for src in images[:lookahead]]
        chunk: list[tuple[int, Path, Path, Any]] = []  # (index, source, destination, Image2D or its InputError)

        def compute() -> None:
            ok = [c for c in chunk if not isinstance(c[3], InputError)]
            plans = enhancer.plan_images([c[3].data for c in ok]) if ok else []
            srs = iter(enhancer.enhance_images([c[3].data for c in ok], plans) if ok else [])
            by_index = {c[0]: plan for c, plan in zip(ok, plans)}
            for i, src, dst, img in chunk:
                fut: Future = Future()
                if isinstance(img, InputError):  # logged in its place among the others
                    fut.set_exception(img)
                    pending.append((i, src, dst, cast(Plan, None), [], fut))
                    continue
                notes = [f"{src.name}: {m}" for m in img.notes]
                fut = pool.submit(_save_enhanced, dst, next(srs), _image_bit_depth(img, dst), text)
                pending.append((i, src, dst, by_index[i], notes, fut))
            chunk.clear()
            finish(block=len(pending) > lookahead)

        for i, src in enumerate(images, 1):
            if i - 1 + lookahead < n:
                reads.append(pool.submit(load_image, images[i - 1 + lookahead]))
            dst = output / src.relative_to(folder).with_suffix(".png")
            read, reads[i - 1] = reads[i - 1], None
            try:
                img = cast(Future, read).result()
            except InputError as e:
                chunk.append((i, src, dst, e))
                continue
            dst.parent.mkdir(parents=True, exist_ok=True)
            chunk.append((i, src, dst, img))
            if len(chunk) >= batch:
                compute()
        compute()
        finish(block=True)
    _remove_empty_dirs(output)
    return report


def _remove_empty_dirs(root: Path) -> None:
    if not root.is_dir():
        return
    for d in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        if not any(d.iterdir()):
            d.rmdir()
    if not any(root.iterdir()):
        root.rmdir()


def volume_output(src: Path, output: Path, source_format: str | None) -> tuple[Path, str | None]:
    """Where the enhanced volume of ``src`` goes and, when it cannot keep its format, the log line saying so.

    NIfTI single files and MGH/MGZ are written in their own format (one file: atomic, provenance in the header
    or the sidecar); a pair (.hdr/.img, two files that cannot be renamed in together) and Analyze 7.5 (no room
    for the orientation or the provenance) become ``.nii.gz``. ``output`` naming a file wins.
    """
    from srgan.io.nifti import is_nifti, volume_stem

    if is_nifti(output) or output.suffix.lower() in (".mgz", ".mgh"):
        return output, None
    stem = volume_stem(src)
    if source_format in ("nifti1", "nifti2"):
        return output / (src.name if src.name.lower().endswith(".nii.gz") else f"{stem}.nii.gz"), None
    if source_format == "mgh":
        return output / f"{stem}{src.suffix.lower()}", None
    what = {"analyze": "Analyze 7.5"}.get(source_format or "", "a NIfTI pair (.hdr/.img)")
    return output / f"{stem}.nii.gz", f"{src.name}: {what} written as NIfTI ({stem}.nii.gz): one file, atomic"


def enhance_nifti_file(src: Path, output: Path, enhancer, axis: int | None) -> tuple[Path, Plan]:
    """:func:`enhance_volume_file` without its notes: the written path and the plan."""
    written, plan, _ = enhance_volume_file(src, output, enhancer, axis)
    return written, plan


def enhance_volume_file(src: Path, output: Path, enhancer, axis: int | None) -> tuple[Path, Plan, list[str]]:
    """A volume nibabel reads (NIfTI-1/2, pair, Analyze, MGH/MGZ) → the same format where it can be written
    atomically, else NIfTI, refined in-plane (through-plane axis = largest spacing, or ``axis``). A 4D volume is
    enhanced time point by time point, all with the first one's plan (the rule of ``Enhancer.plan_series``).
    NaN/Inf are masked through the model and put back where they were. Returns the written path, the plan and
    notes."""
    from srgan.io.nifti import enhance_volume, load_volume, save_nifti

    vol = load_volume(src)
    dst, line = volume_output(src, output, vol.source_format)
    notes = list(vol.notes) + ([line] if line else [])
    n_bad = int(np.count_nonzero(~np.isfinite(vol.data)))
    if n_bad:
        notes.append(f"{src.name}: {n_bad} NaN/Inf voxel(s) masked through the model and kept where they were")
    plans: list[Plan] = []

    def enhance_stack(stack: np.ndarray) -> np.ndarray:
        if plans:
            return enhancer.enhance_stack(stack, plans[0])
        plans.append(enhancer.plan(stack))
        return enhancer.enhance_stack(stack, plans[0], keys=range(len(stack)))

    out = enhance_volume(vol, enhance_stack, enhancer.scale, axis=axis)
    dst.parent.mkdir(parents=True, exist_ok=True)
    return save_nifti(out, dst, enhancer.provenance), plans[0], notes


def _series_folder_name(series) -> str:
    desc = "".join(c if c.isalnum() or c in "-_" else "_" for c in (series.series_description or "series"))[:40]
    return f"S{int(series.series_number or 0):04d}_{desc}"


def enhance_dicom_folder(
    folder: Path, output: Path, enhancer, log: Log, *, include_non_anatomy: bool = False, scan_result=None
) -> EnhanceReport:
    """Every series under ``folder`` → a derived series. One series is written into ``output`` itself; several go
    into one sub-folder each, assembled in a temporary folder beside ``output`` and renamed at the end.
    """
    from srgan.io.dicom_derived import NothingToEnhance, write_derived_series
    from srgan.io.dicom_series import Series, scan

    result = scan_result or scan(folder)
    report = EnhanceReport()
    for p in result.problems:
        report.failed.append((Path(p.path), p.message))
        log(f"skipped {p.path}: {p.message}")
    for w in getattr(result, "warnings", []):
        report.notes.append(f"{w.path}: {w.message}")
    output = check_new_folder(output, sources=[folder])
    stale = clean_stale_partials(output)
    if stale:
        line = f"removed {len(stale)} stale partial folder(s) of an interrupted earlier run: " + ", ".join(
            p.name for p in stale
        )
        report.notes.append(line)
        log(line)
    # The reader may split one series into geometric parts (mixed sizes or orientations); the writer derives
    # image for image, so it gets every part of a SeriesInstanceUID at once.
    by_uid: dict[str, list[Series]] = {}
    for series in result.series:
        by_uid.setdefault(series.uid, []).append(series)

    def write(parts: list[Series], dest: Path) -> list[Path]:
        first = parts[0]
        label = f"series {first.series_number} {first.series_description!r}"
        try:
            plan = enhancer.plan_series(first)
            derived = write_derived_series(
                parts,
                enhancer,
                dest,
                scale=enhancer.scale,
                plan=plan,
                provenance=enhancer.provenance,
                include_non_anatomy=include_non_anatomy,
                progress=lambda d, n: log(f"{label}: {d}/{n} files"),
            )
        except NothingToEnhance as e:  # left out by design (a field map, ADC...): a note, not an error
            report.notes.append(f"{label} left out: {e.problem}")
            log(f"left out {label}: {e.problem}")
            return []
        except InputError as e:
            report.failed.append((e.path or folder, e.problem))
            series_errors.append(f"{label}: {e.problem}")
            log(f"skipped {label}: {e}")
            return []
        if enhancer.consistency == "auto":
            log(f"{label}: {plan.note()}")
        report.notes += [f"{label}: {n}" for n in derived.notes]
        report.failed += [(Path(path), reason) for path, reason in derived.skipped]
        return derived.files

    series_errors: list[str] = []

    def nothing_written() -> InputError:
        """Why nothing was written: each series' own reason first (not a file beside it that was not an image)."""
        reasons = series_errors + [n for n in report.notes if " left out: " in n]
        if not reasons and report.failed:
            reasons = [f"{report.failed[0][0]}: {report.failed[0][1]}"]
        return InputError(folder, "no derived image could be written" + (f" ({'; '.join(reasons)})" if reasons else ""))

    if len(by_uid) == 1:  # the writer builds its folder atomically itself
        (parts,) = by_uid.values()
        report.written = write(parts, output)
        if not report.written:
            raise nothing_written()
        return report
    with atomic_folder(output) as staging:
        for parts in by_uid.values():
            written = write(parts, staging / _series_folder_name(parts[0]))
            report.written += [output / f.relative_to(staging) for f in written]
        if not report.written:
            raise nothing_written()
    return report


def enhance_path(
    input_path: str | Path,
    output: str | Path,
    enhancer,
    *,
    axis: int | None = None,
    log: Log = lambda s: None,
    include_non_anatomy: bool = False,
) -> EnhanceReport:
    """Dispatch on what ``input_path`` is. Raises :class:`InputError` when nothing can be enhanced, also when the
    output cannot be written (read-only or full disk, a file where a folder must go): one sentence naming the path,
    and nothing partial is left (every write is atomic)."""
    try:
        return _enhance_path(input_path, output, enhancer, axis=axis, log=log, include_non_anatomy=include_non_anatomy)
    except OSError as e:
        why = e.strerror or type(e).__name__
        name = Path(str(e.filename)) if e.filename is not None else None
        if name is not None and name != Path(output) and not name.name.startswith("."):  # not our temporary name
            why += f": {name}"
        raise InputError(output, f"cannot be written ({why}); choose another output") from e


def _enhance_path(
    input_path: str | Path,
    output: str | Path,
    enhancer,
    *,
    axis: int | None,
    log: Log,
    include_non_anatomy: bool,
) -> EnhanceReport:
    from srgan.io.images import IMAGE_SUFFIXES, find_images
    from srgan.io.nifti import is_volume

    src, out = Path(input_path), Path(output)
    if not src.exists():
        raise InputError(src, "does not exist")
    if src.is_file():
        if is_volume(src):
            written, plan, notes = enhance_volume_file(src, out, enhancer, axis)
            log(_noted(f"{src.name} -> {written}", enhancer, plan))
            return EnhanceReport(written=[written], notes=notes)
        if src.suffix.lower() in IMAGE_SUFFIXES:
            dst = _image_output_path(src, out)
            if dst.parent != out and not out.suffix:
                out.mkdir(parents=True, exist_ok=True)
            notes, plan = enhance_image_file(src, dst, enhancer)
            log(_noted(f"{src.name} -> {dst}", enhancer, plan))
            return EnhanceReport(written=[dst], notes=notes)
        return enhance_dicom_folder(src, out, enhancer, log, include_non_anatomy=include_non_anatomy)
    images = find_images(src)
    if images:
        report = enhance_image_folder(src, out, enhancer, images, log)
        if not report.written:
            raise InputError(
                src,
                "none of its images could be enhanced: "
                + "; ".join(f"{p.name}: {why}" for p, why in report.failed[:5]),
            )
        return report
    from srgan.io.dicom_series import scan

    try:
        result = scan(src)
    except InputError as e:
        if e.problem == "holds no DICOM image":
            raise InputError(
                src, "holds no DICOM image and no 2D image (.png, .jpg, .tif); nothing to enhance"
            ) from None
        raise
    return enhance_dicom_folder(src, out, enhancer, log, include_non_anatomy=include_non_anatomy, scan_result=result)

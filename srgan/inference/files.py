"""Enhance files of every kind the ``srgan enhance`` contract accepts: one 2D image, a folder of 2D images, a NIfTI
volume, a DICOM folder. Qt-free; the CLI only parses arguments and calls :func:`enhance_path`.

Failure rules: a bad file is named in one sentence; in a folder it is skipped while the rest are enhanced; nothing
is written for an input that fails; every file or series is written atomically (temporary name, then rename).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
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


def _interpolated(name: str, plan: Plan | None) -> list[str]:
    """The note for an input the scanner had already interpolated (``Plan.scanner_interpolated``), if it was."""
    return [f"{name}: {plan.interpolation_warning()}"] if plan is not None and plan.scanner_interpolated else []


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

    save_image(dst, sr, bit_depth=bit_depth, text=text)  # integer depths clip there


def enhance_image_file(src: Path, dst: Path, enhancer) -> tuple[list[str], Plan]:
    """One 2D image → ``dst`` at s× width and height; 16-bit output where the input was 16-bit. Each image is its
    own acquisition (a folder of 2D images may mix sources). Returns notes and the image's plan."""
    from srgan.io.images import load_image

    img = load_image(src)
    plan = enhancer.plan(img.data[None])
    sr = enhancer.enhance(img.data, plan, key=0)
    _save_enhanced(dst, sr, _image_bit_depth(img, dst), _png_text(enhancer))
    return [f"{src.name}: {n}" for n in img.notes] + _interpolated(src.name, plan), plan


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
    generator (Pillow and imagecodecs release the GIL while they decode, compress and write). Results are logged
    in order.
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
                notes = [f"{src.name}: {m}" for m in img.notes] + _interpolated(src.name, by_index[i])
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
    return save_nifti(out, dst, enhancer.provenance), plans[0], notes + _interpolated(src.name, plans[0])


def _series_folder_name(series) -> str:
    desc = "".join(c if c.isalnum() or c in "-_" else "_" for c in (series.series_description or "series"))[:40]
    return f"S{int(series.series_number or 0):04d}_{desc}"


def _write_series(
    parts: list,
    dest: Path,
    enhancer,
    log: Log,
    report: EnhanceReport,
    series_errors: list[str],
    folder: Path,
    include_non_anatomy: bool,
) -> list[Path]:
    """One series (every part of a SeriesInstanceUID) → the derived series ``dest`` (built atomically); the
    written files, or [] with the reason in ``report``."""
    from srgan.io.dicom_derived import NothingToEnhance, write_derived_series

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
    report.notes += [f"{label}: {n}" for n in derived.notes] + _interpolated(label, plan)
    report.failed += [(Path(path), reason) for path, reason in derived.skipped]
    return derived.files


def _scan_report(result, report: EnhanceReport, log: Log) -> None:
    for p in result.problems:
        report.failed.append((Path(p.path), p.message))
        log(f"skipped {p.path}: {p.message}")
    for w in getattr(result, "warnings", []):
        report.notes.append(f"{w.path}: {w.message}")


def _by_uid(result) -> dict[str, list]:
    # The reader may split one series into geometric parts (mixed sizes or orientations); the writer derives
    # image for image, so it gets every part of a SeriesInstanceUID at once.
    by_uid: dict[str, list] = {}
    for series in result.series:
        by_uid.setdefault(series.uid, []).append(series)
    return by_uid


def enhance_dicom_folder(
    folder: Path, output: Path, enhancer, log: Log, *, include_non_anatomy: bool = False, scan_result=None
) -> EnhanceReport:
    """Every series under ``folder`` → a derived series. One series is written into ``output`` itself; several go
    into one sub-folder each, assembled in a temporary folder beside ``output`` and renamed at the end.
    """
    from srgan.io.dicom_series import scan

    result = scan_result or scan(folder)
    report = EnhanceReport()
    _scan_report(result, report, log)
    output = check_new_folder(output, sources=[folder])
    stale = clean_stale_partials(output)
    if stale:
        line = f"removed {len(stale)} stale partial folder(s) of an interrupted earlier run: " + ", ".join(
            p.name for p in stale
        )
        report.notes.append(line)
        log(line)
    by_uid = _by_uid(result)
    series_errors: list[str] = []

    def write(parts: list, dest: Path) -> list[Path]:
        return _write_series(parts, dest, enhancer, log, report, series_errors, folder, include_non_anatomy)

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


@dataclass(frozen=True)
class Shard:
    """This process' place among the processes ``torchrun`` started: ``rank`` of ``world``, ``local`` of them on
    this machine (their share of its cores)."""

    rank: int
    world: int
    local: int = 1

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Shard | None:
        """The shard ``torchrun`` set in the environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_WORLD_SIZE``), or None
        outside ``torchrun``."""
        env = os.environ if env is None else env
        if "RANK" not in env or "WORLD_SIZE" not in env:
            return None
        world = max(1, int(env["WORLD_SIZE"]))
        rank = int(env["RANK"])
        if not 0 <= rank < world:
            raise InputError(None, f"RANK {rank} is outside WORLD_SIZE {world}")
        return cls(rank, world, max(1, int(env.get("LOCAL_WORLD_SIZE", world))))

    def threads(self, asked: int | None) -> int:
        """CPU threads for this rank: ``asked``, else its share of this machine's cores."""
        return int(asked) if asked else max(1, (os.cpu_count() or 1) // self.local)


def _rank_report_path(output: Path, rank: int) -> Path:
    return output / f".srgan-enhance-rank{rank}.json"


def _barrier(shard: Shard) -> None:
    """Wait for every rank (gloo: works on CPU and beside CUDA); one process needs none."""
    if shard.world == 1:
        return
    import torch.distributed as dist

    made = not dist.is_initialized()
    if made:
        dist.init_process_group("gloo", rank=shard.rank, world_size=shard.world)
    try:
        dist.barrier()
    finally:
        if made:
            dist.destroy_process_group()


def enhance_dicom_tree(
    folder: Path, output: Path, enhancer, log: Log, shard: Shard, *, include_non_anatomy: bool = False
) -> EnhanceReport:
    """A folder tree of many DICOM series, shared among the processes of ``torchrun``: every series (all parts of a
    SeriesInstanceUID) goes to ``output``/``S<number>_<description>``, the series sorted by that name (then UID)
    and rank r taking every ``world``-th from the r-th. Each series is built in a temporary folder and renamed
    into place, so a series folder that exists is finished: a re-run skips it (and removes the partial folders
    an interrupted run left). Each rank writes its report as ``output``/.srgan-enhance-rank<r>.json (atomically);
    after a barrier, rank 0 returns the merged report of every rank (the one summary), the others their own."""
    import json

    from srgan.io.atomic import write_text
    from srgan.io.dicom_series import scan

    report = EnhanceReport()
    if output.resolve().is_relative_to(folder.resolve()):
        raise InputError(output, f"is inside the source folder {folder}; choose an output outside it")
    result = scan(folder)
    if shard.rank == 0:
        _scan_report(result, report, log)
    output.mkdir(parents=True, exist_ok=True)
    if shard.rank == 0:
        stale = clean_stale_partials(output)
        if stale:
            report.notes.append(f"removed {len(stale)} stale partial folder(s) of an interrupted earlier run")
    items = sorted(((_series_folder_name(parts[0]), uid), parts) for uid, parts in _by_uid(result).items())
    names = [name for (name, _), _ in items]
    series_errors: list[str] = []
    for (name, uid), parts in items[shard.rank :: shard.world]:
        dest = output / (name if names.count(name) == 1 else f"{name}_{uid[-12:]}")
        if dest.is_dir() and any(dest.iterdir()):
            report.notes.append(f"{dest.name}: already finished, skipped")
            log(f"{dest.name}: already finished by an earlier run, skipped")
            continue
        report.written += _write_series(parts, dest, enhancer, log, report, series_errors, folder, include_non_anatomy)
    write_text(_rank_report_path(output, shard.rank), json.dumps(report.as_dict()) + "\n")
    _barrier(shard)
    if shard.rank != 0:
        return report
    merged = EnhanceReport(notes=[f"{len(items)} series shared by {shard.world} process(es)"])
    for r in range(shard.world):
        data = json.loads(_rank_report_path(output, r).read_text())
        merged.written += [Path(p) for p in data["written"]]
        merged.failed += [(Path(f["path"]), f["reason"]) for f in data["failed"]]
        merged.notes += data["notes"]
    if not merged.written and not any("already finished" in n for n in merged.notes):
        raise InputError(
            folder, "no derived image could be written" + (f" ({'; '.join(series_errors)})" if series_errors else "")
        )
    return merged


def enhance_path(
    input_path: str | Path,
    output: str | Path,
    enhancer,
    *,
    axis: int | None = None,
    log: Log = lambda s: None,
    include_non_anatomy: bool = False,
    shard: Shard | None = None,
) -> EnhanceReport:
    """Dispatch on what ``input_path`` is. Raises :class:`InputError` when nothing can be enhanced, also when the
    output cannot be written (read-only or full disk, a file where a folder must go): one sentence naming the path,
    and nothing partial is left (every write is atomic). ``shard`` (under ``torchrun``: ``Shard.from_env()``): a
    DICOM folder tree is shared among the ranks (:func:`enhance_dicom_tree`); any other input is enhanced by
    rank 0 alone."""
    try:
        if shard is not None:
            return _enhance_sharded(Path(input_path), Path(output), enhancer, log, shard, include_non_anatomy)
        return _enhance_path(input_path, output, enhancer, axis=axis, log=log, include_non_anatomy=include_non_anatomy)
    except OSError as e:
        why = e.strerror or type(e).__name__
        name = Path(str(e.filename)) if e.filename is not None else None
        if name is not None and name != Path(output) and not name.name.startswith("."):  # not our temporary name
            why += f": {name}"
        raise InputError(output, f"cannot be written ({why}); choose another output") from e


def _enhance_sharded(
    src: Path, out: Path, enhancer, log: Log, shard: Shard, include_non_anatomy: bool
) -> EnhanceReport:
    from srgan.io.images import find_images

    if src.is_dir() and not find_images(src):
        return enhance_dicom_tree(src, out, enhancer, log, shard, include_non_anatomy=include_non_anatomy)
    if shard.rank != 0:
        return EnhanceReport(notes=[f"{src}: not a DICOM folder tree; enhanced by rank 0 alone"])
    return _enhance_path(src, out, enhancer, axis=None, log=log, include_non_anatomy=include_non_anatomy)


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

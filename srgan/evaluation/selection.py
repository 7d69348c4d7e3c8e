"""Which images and volumes a benchmark measures: those a training run held out, split exactly as training splits.

``--images`` roots are split as ``srgan.training.data`` splits a training source (by image file, ``val_fraction``
and ``seed`` of a run's ``config.json`` or the training defaults) and only the validation share is measured; a
volume is measured only when its patient was never trained on (``TCGA-DU-7294`` and ``data.exclude``) or falls
in the validation share of its source. ``--split all`` measures everything.

Each case carries its source (``Case.source``) for the per-source tables: an image root is named with what its
files are (``image_source``: "kaggle-brain-tumor-mri (8-bit JPEG slices)"), a volume by scanner, contrast and bit
depth (``volume_source``: from the BIDS JSON sidecar beside the NIfTI when there is one, else from its folder and
file name), so volumes of one scanner and contrast form one source.

Each dataset has its main-table region (``MAIN_REGION``): the whole image for 2D images (as training validation and
the contract check measure) and the head foreground for volumes (their zero background would inflate PSNR).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from srgan.errors import InputError
from srgan.evaluation.evaluate import Case, collect_inputs, image_case, volume_case

MAIN_REGION = {"images": "whole", "volumes": "foreground"}

__all__ = [
    "MAIN_REGION",
    "SplitConfig",
    "heldout_images",
    "image_cases",
    "image_source",
    "looks_like_label_map",
    "split_config",
    "volume_cases",
    "volume_held_out",
    "volume_source",
]


# ---- the split


@dataclass
class SplitConfig:
    """What ``srgan.training.data`` needs to reproduce a training run's train/validation split of one source."""

    val_fraction: float = 0.1
    seed: int = 0
    exclude: list[str] = field(default_factory=list)
    max_items_per_source: int = 0
    min_side: int = 96  # training's patch size: smaller images were never loaded
    sources: list[str] = field(default_factory=list)
    origin: str = "training defaults"


def split_config(train_config: str | Path | None = None) -> SplitConfig:
    """The split of a run (its ``config.json``), or of ``srgan train`` with default settings."""
    from srgan.training.train import TrainConfig

    if train_config is None:
        cfg = TrainConfig()
        origin = "training defaults (srgan.training.train.TrainConfig)"
    else:
        try:
            cfg = TrainConfig.from_dict(json.loads(Path(train_config).read_text()))
        except (OSError, json.JSONDecodeError, TypeError, ValueError) as e:
            raise InputError(train_config, f"not a readable training config ({e})") from None
        origin = str(train_config)
    d = cfg.data
    return SplitConfig(
        val_fraction=d.val_fraction,
        seed=cfg.seed,
        exclude=list(d.exclude),
        max_items_per_source=d.max_items_per_source,
        min_side=cfg.patch_size,
        sources=[str(s) for s in d.sources],
        origin=origin,
    )


def _data_cfg(split: SplitConfig) -> Any:
    from srgan.training.data import DataConfig

    return DataConfig(
        val_fraction=split.val_fraction, exclude=list(split.exclude), max_items_per_source=split.max_items_per_source
    )


def _stub_item(path: Path, group: str) -> Any:
    from srgan.training.data import Item

    return Item(array=np.empty(0, np.float32), path=str(path), group=group, eight_bit=False, norms=[])


def heldout_images(root: str | Path, split: SplitConfig) -> tuple[list[tuple[str, Path]], list[tuple[str, Path]]]:
    """(held-out, trained-on) images of one source root, as ``(group name, path)``.

    The same files, groups, exclusions and size filter as ``srgan.training.data.load_source``, and its ``split``, but
    reading image headers only. Excluded files and files too small for the patch (never trained on) count as held
    out.
    """
    from PIL import Image

    from srgan.training import data as sdata  # imports torch
    from srgan.training.data import IMAGE_SUFFIXES
    from srgan.training.data import split as split_items

    root = Path(root)
    if not root.exists():
        raise InputError(root, "image folder not found")
    cfg = _data_cfg(split)
    items: list[Any] = []
    excluded: list[tuple[str, Path]] = []
    small: list[tuple[str, Path]] = []
    groups: list[str] = []
    for p in sdata.find_files(root, IMAGE_SUFFIXES):
        if not p.name.lower().endswith(IMAGE_SUFFIXES):
            continue
        group = str(p.relative_to(root)) if root.is_dir() else p.name
        if sdata.is_excluded(p, group, cfg):
            excluded.append((group, p))
            continue
        try:
            with Image.open(p) as im:
                w, h = im.size
        except OSError as e:
            raise InputError(p, f"not a readable image ({e})") from None
        groups.append(group)
        if min(h, w) < split.min_side:  # never loaded, so never trained on
            small.append((group, p))
            continue
        items.append(_stub_item(p, group))
        if cfg.max_items_per_source and len(items) >= cfg.max_items_per_source:
            break
    train, val = split_items(items, cfg.val_fraction, split.seed, all_groups=groups)
    return ([(it.group, Path(it.path)) for it in val] + small + excluded, [(it.group, Path(it.path)) for it in train])


def volume_held_out(path: str | Path, root: str | Path | None, split: SplitConfig) -> bool:
    """Whether a NIfTI volume's patient was never trained on: excluded, or in the validation share of its source.

    The source's groups are its NIfTI files' first folders (``srgan.training.data``'s patients); unlike training,
    files are not opened, so a folder holding only label maps would count as a patient (it cannot make a one-group
    source split differently: such a source keeps everything in training).
    """
    from srgan.training import data as sdata  # imports torch
    from srgan.training.data import NIFTI_SUFFIXES
    from srgan.training.data import split as split_items

    path = Path(path)
    root = Path(root) if root is not None else path.parent.parent
    cfg = _data_cfg(split)
    group = sdata.group_of(path, root) if path.is_relative_to(root) and root.is_dir() else path.parent.name
    if sdata.is_excluded(path, group, cfg):
        return True
    if not root.is_dir():
        return False
    groups = sorted(
        {
            sdata.group_of(p, root)
            for p in sdata.find_files(root, NIFTI_SUFFIXES)
            if not sdata.is_excluded(p, sdata.group_of(p, root), cfg)
        }
    )
    _, val = split_items([_stub_item(root / g, g) for g in groups], cfg.val_fraction, split.seed)
    return group in {it.group for it in val}


def looks_like_label_map(path: Path) -> bool:
    """A segmentation, not an image: integer voxels with few distinct values (``srgan.training.data``'s test)."""
    import nibabel as nib

    from srgan.training import data as sdata  # imports torch

    try:
        img: Any = nib.load(str(path))
        if not np.issubdtype(img.get_data_dtype(), np.integer):
            return False
        data = np.asanyarray(img.dataobj)
    except Exception as e:  # nibabel raises many types for broken files
        raise InputError(path, f"not a readable NIfTI file ({e})") from None
    return data.ndim >= 3 and sdata.is_label_map(data[..., 0] if data.ndim == 4 else data, img.get_data_dtype())


# ---- sources


def image_source(root: str | Path, paths: Sequence[Path]) -> str:
    """An image root named with what its files are: ``"kaggle-brain-tumor-mri (8-bit JPEG slices)"``."""
    from PIL import Image

    kinds: dict[str, None] = {}
    for p in paths:
        try:
            with Image.open(p) as im:
                bits = {"I;16": 16, "I;16B": 16, "I;16L": 16, "I": 32, "F": 32, "1": 1}.get(im.mode, 8)
                kinds[f"{bits}-bit {im.format or p.suffix.lstrip('.').upper()}"] = None
        except OSError as e:
            raise InputError(p, f"not a readable image ({e})") from None
    name = Path(root).name or str(root)
    return f"{name} ({', '.join(kinds)} slices)" if kinds else name


_CONTRASTS = ("t1ce", "t1gd", "t1c", "t1", "t2star", "t2", "flair", "pd", "swi", "dwi", "mprage", "gre")


def _sidecar(path: Path) -> Path:
    from srgan.io.nifti import volume_stem

    return path.with_name(volume_stem(path) + ".json")


def volume_source(path: str | Path) -> dict[str, str]:
    """Scanner, contrast and bit depth of a NIfTI volume, and its source ``label`` (the three joined).

    From the BIDS JSON sidecar beside it (``NAME.json`` for ``NAME.nii[.gz]``, as dcm2niix writes it) when there is
    one: ``Manufacturer`` ``ManufacturersModelName`` ``MagneticFieldStrength`` T, ``SeriesDescription`` (else
    ``ProtocolName``); otherwise the scanner is the folder's name and the contrast the file name's contrast token
    (t1c, T2, FLAIR, …; else its stem). The bit depth is the NIfTI's stored dtype (before scaling)."""
    import nibabel as nib

    from srgan.io.nifti import volume_stem

    path = Path(path)
    try:
        img: Any = nib.load(str(path))  # a NIfTI image (nibabel types it as any image file)
        dtype = np.dtype(img.get_data_dtype())
    except Exception as e:  # nibabel raises many types for broken files
        raise InputError(path, f"not a readable NIfTI file ({e})") from None
    bits = f"{dtype.itemsize * 8}-bit {dtype.name}"
    stem = volume_stem(path)
    side = _sidecar(path)
    meta: dict[str, Any] = {}
    if side.is_file():
        try:
            meta = json.loads(side.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise InputError(side, f"not a readable JSON sidecar ({e})") from None
        if not isinstance(meta, dict):
            raise InputError(side, "not a JSON object (a BIDS sidecar)")
    if meta:
        field_t = meta.get("MagneticFieldStrength")
        tesla = f"{float(field_t):g}T" if isinstance(field_t, (int, float)) else ""
        parts = [str(meta.get(k, "")).strip() for k in ("Manufacturer", "ManufacturersModelName")]
        scanner = " ".join(p for p in [*parts, tesla] if p) or path.parent.name
        contrast = str(meta.get("SeriesDescription") or meta.get("ProtocolName") or stem).strip()
        origin = side.name
    else:
        tokens = [t for t in re.split(r"[_\-. ]+", stem) if t]
        contrast = next((t for c in _CONTRASTS for t in tokens if t.lower() == c), stem)
        scanner = path.parent.name or stem
        origin = "folder and file name"
    return {
        "scanner": scanner,
        "contrast": contrast,
        "bits": bits,
        "label": f"{scanner}, {contrast}, {bits}",
        "from": origin,
    }


# ---- the cases


def image_cases(
    roots: Sequence[str | Path],
    split: SplitConfig,
    *,
    split_mode: str = "heldout",
    max_images: int = 0,
    say: Callable[[str], None] = print,
) -> tuple[list[Case], dict]:
    """The image cases of ``roots`` (held out, or all with ``split_mode="all"``), at most ``max_images`` per root
    spread evenly over the sorted names (every class, not the first one), and what was picked per root."""
    cases: list[Case] = []
    info: dict = {"roots": {}}
    for raw in roots:
        root = Path(raw)
        held, train = heldout_images(root, split)
        picked = held if split_mode == "heldout" else sorted(held + train, key=lambda t: str(t[1]))
        picked = sorted(picked, key=lambda t: t[0])
        if max_images and len(picked) > max_images:
            picked = [picked[i] for i in np.unique(np.linspace(0, len(picked) - 1, max_images).round().astype(int))]
        if split.sources and not any(Path(s).resolve() == root.resolve() for s in split.sources):
            say(f"note: {root} is not a source of {split.origin}: its split is reproduced as if it were")
        info["roots"][str(root)] = {
            "held_out": len(held),
            "trained_on": len(train),
            "benchmarked": len(picked),
            "images": [g for g, _ in picked],
        }
        source = image_source(root, [p for _, p in picked])
        info["roots"][str(root)]["source"] = source
        for group, path in picked:
            case = image_case(group, path)
            case.source = source
            cases.append(case)
    return cases, info


def volume_cases(
    inputs: Sequence[str | Path],
    split: SplitConfig,
    *,
    label: Path | None = None,
    split_mode: str = "heldout",
    max_slices: int = 16,
    say: Callable[[str], None] = print,
) -> tuple[list[Case], dict]:
    """The volume cases of ``inputs`` (NIfTI files or folders), label maps and patients trained on left out
    (unless ``split_mode="all"``); ``label`` goes with the volumes in its own folder."""
    from srgan.io.nifti import is_nifti

    if label is not None and not label.is_file():
        raise InputError(label, "label map not found")
    cases: list[Case] = []
    info: dict = {"volumes": [], "skipped_trained_on": []}
    for raw in inputs:
        root = Path(raw) if Path(raw).is_dir() else None
        for name, path in collect_inputs([raw], label):
            if not is_nifti(path):
                continue
            if path != label and looks_like_label_map(path):
                info.setdefault("skipped_label_maps", []).append(str(path))
                continue
            if split_mode == "heldout" and not volume_held_out(path, root, split):
                info["skipped_trained_on"].append(str(path))
                continue
            own = label if label is not None and label.parent.resolve() == path.parent.resolve() else None
            src = volume_source(path)
            cases.append(volume_case(name, path, own, max_slices))
            cases[-1].source = src["label"]
            info["volumes"].append({"name": name, "label": str(own) if own else None, "source": src})
            for n in cases[-1].notes:
                say(f"note: {name}: {n}")
    if info["skipped_trained_on"]:
        say(
            f"note: left out {len(info['skipped_trained_on'])} volume(s) of patients trained on "
            "(--split all keeps them)"
        )
    return cases, info

"""Training data: HR images and volumes held in memory, split by patient, cut into patches, degraded on the fly.

Why this shape: on a CPU the model step is the cost, so everything is loaded once (normalised float32), and a
batch is a pure function of ``(seed, step, sample index)``. That makes resume exact without saving any sampler
state, and lets DDP ranks each build only their own share of the same global batch.

Sources: a folder of 2D images (PNG/JPEG/TIFF, any depth), NIfTI files or folders of them, DICOM folders.
Splits are by group — the patient (a NIfTI's first folder under the source root, a DICOM PatientID) or, with no
patient id (Kaggle images), the image file — never by slice, so no validation slice has a neighbour in training.

The generator's LR-kind detector is fitted here (``fit_kind_detector``), not in ``srgan.models.kind_detector``: it
is fitted on whole training planes drawn and degraded exactly as the patches are (``kind_examples``), which only
this module knows how to do, while the detector itself stays a model that knows nothing of training data.
"""

from __future__ import annotations

import logging
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from srgan import degrade
from srgan.degrade import ZIP_OUTER_ENERGY, DegradationConfig, outer_kspace_fraction
from srgan.errors import InputError
from srgan.normalize import Normalizer

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
NIFTI_SUFFIXES = (".nii", ".nii.gz")
ALWAYS_EXCLUDED = ("TCGA-DU-7294",)  # the tumour-ROI evaluation case: never trained on


@dataclass
class DataConfig:
    """Where HR data come from and how patches are drawn.

    ``foreground_level`` is in normalised units (0 = LR 0.5th percentile, 1 = 99.5th); a patch is kept when at
    least ``min_foreground`` of its pixels are above it (retrying up to ``max_tries`` positions).
    ``slice_axes`` are the volume axes slices are cut across; an axis is used only where the two in-plane
    spacings agree within 10 %, so anisotropic slices never enter training.
    """

    sources: list[str] = field(default_factory=list)
    val_fraction: float = 0.1
    exclude: list[str] = field(default_factory=lambda: list(ALWAYS_EXCLUDED))
    slice_axes: list[int] = field(default_factory=lambda: [0, 1, 2])
    min_foreground: float = 0.3
    foreground_level: float = 0.08
    max_tries: int = 10
    source_weights: list[float] | None = None
    max_items_per_source: int = 0  # 0 = all; tests use a few
    val_crop: int = 192  # HR validation crops (centre), px
    val_slices_per_volume: int = 4

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Item:
    """One HR image ``(H, W)`` or volume ``(X, Y, Z)`` in source units (float32), with where it came from.

    Each plane has its own ``Normalizer`` fitted on its bicubic LR, because that is what inference does
    (``srgan.inference.engine`` fits one per image/slice); ``norms[j]`` belongs to ``slices[j]`` (one entry for 2D).
    """

    array: np.ndarray
    path: str
    group: str
    eight_bit: bool
    norms: list[Normalizer]
    slices: list[tuple[int, int]] | None = None  # (axis, index) of usable slices, volumes only

    def plane(self, j: int = 0) -> tuple[np.ndarray, Normalizer]:
        """Plane j (normalised float32) and its normaliser."""
        raw = self.array if self.slices is None else np.take(self.array, self.slices[j][1], axis=self.slices[j][0])
        norm = self.norms[j]
        return norm.forward(raw).astype(np.float32), norm

    def __len__(self) -> int:
        return 1 if self.slices is None else len(self.slices)


# ---------------------------------------------------------------- loading


def load_gray(path: str | Path) -> tuple[np.ndarray, bool]:
    """A 2D image as float32 in [0, 1] and whether it was 8-bit (16-bit scaled by 65535, like contract_check)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            a = np.asarray(im)
            if a.ndim == 3:
                a = np.asarray(im.convert("L"))
            sixteen = im.mode.startswith("I;16") or im.mode in ("I", "F") or a.dtype == np.uint16
    except (UnidentifiedImageError, OSError) as e:
        raise InputError(path, f"not a readable image ({e})") from None
    if a.dtype == np.float32 or a.dtype == np.float64:
        return a.astype(np.float32), False
    return (a.astype(np.float32) / (65535.0 if sixteen else 255.0)), not sixteen


def is_label_map(data: np.ndarray, dtype) -> bool:
    if not np.issubdtype(dtype, np.integer):
        return False
    return np.unique(data[::4, ::4, ::4]).size <= 16


def _lr_norms(planes: np.ndarray, scale: int) -> list[Normalizer]:
    """The normaliser inference fits for each plane of ``(N, H, W)``: on its (bicubic) LR image."""
    h, w = planes.shape[-2] // scale * scale, planes.shape[-1] // scale * scale
    t = torch.from_numpy(np.ascontiguousarray(planes[:, :h, :w], dtype=np.float32))[:, None]
    lr = torch.cat([degrade.bicubic_down(c, scale) for c in t.split(64)])[:, 0].numpy()
    return [Normalizer.fit(p) for p in lr]


def _usable_slices(vol: np.ndarray, zooms, axes, cfg: DataConfig, *, scale: int, min_side: int, name: str = ""):
    """(slices, norms): planes whose in-plane pixels are square and with enough foreground to draw patches.

    An orientation whose middle plane keeps less than ``ZIP_OUTER_ENERGY`` of its energy outside the central half
    of k-space was interpolated by the scanner (zero-filled k-space, "ZIP"): it holds no detail at its own grid,
    so it would teach the generator to add none; it is left out with one log line naming ``name``."""
    slices, norms = [], []
    for ax in axes:
        inplane = [z for i, z in enumerate(zooms[:3]) if i != ax]
        if abs(inplane[0] - inplane[1]) > 0.1 * max(inplane):
            continue
        planes = np.moveaxis(vol, ax, 0)
        if min(planes.shape[1:]) < min_side:
            continue
        outer = outer_kspace_fraction(planes[len(planes) // 2])
        if outer < ZIP_OUTER_ENERGY:
            log.warning(
                "skipping %s across axis %d: interpolated by the scanner (%.1e of its energy beyond half "
                "the Nyquist frequency)",
                name or "a volume",
                ax,
                outer,
            )
            continue
        for i, norm in enumerate(_lr_norms(planes, scale)):
            if (norm.forward(planes[i]) > cfg.foreground_level).mean() >= cfg.min_foreground / 2:
                slices.append((ax, i))
                norms.append(norm)
    return slices, norms


def find_files(root: Path, suffixes) -> list[Path]:
    if root.is_file():
        return [root]
    return sorted(
        p
        for p in root.rglob("*")
        if p.is_file()
        and p.name.lower().endswith(suffixes)
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )


def group_of(path: Path, root: Path) -> str:
    """Patient of a file: its first folder under the source root, else the file's stem."""
    if root.is_file():
        return path.parent.name or path.name
    rel = path.relative_to(root)
    return rel.parts[0] if len(rel.parts) > 1 else re.sub(r"\.(nii(\.gz)?|dcm)$", "", path.name, flags=re.I)


def is_excluded(path: Path, group: str, cfg: DataConfig) -> bool:
    names = set(cfg.exclude) | set(ALWAYS_EXCLUDED)
    return any(n and (n in group or n in str(path)) for n in names)


def load_source(
    source: str | Path, cfg: DataConfig, *, scale: int, min_side: int, groups_out: list[str] | None = None
) -> list[Item]:
    """Every usable HR image/volume under ``source`` (a file or folder), normalised; excluded patients left out.

    ``groups_out`` receives the groups of every candidate image, too small ones included, so that ``split`` can
    draw the same held-out patients whatever the patch size (a 192 px patch must not move images of a 96 px run's
    validation share into training)."""
    root = Path(source)
    if not root.exists():
        raise InputError(root, "data source does not exist")
    items: list[Item] = []
    nifti = [p for p in find_files(root, NIFTI_SUFFIXES) if p.name.lower().endswith(NIFTI_SUFFIXES)]
    images = [p for p in find_files(root, IMAGE_SUFFIXES) if p.name.lower().endswith(IMAGE_SUFFIXES)]
    if nifti:
        import nibabel as nib

        for p in nifti:
            group = group_of(p, root)
            if is_excluded(p, group, cfg):
                continue
            try:
                img: Any = nib.load(str(p))  # a NIfTI image (nibabel types it as any image file)
                data = np.asanyarray(img.dataobj)
            except Exception as e:  # nibabel raises many types for broken files
                raise InputError(p, f"not a readable NIfTI file ({e})") from None
            if data.ndim == 4:
                data = data[..., 0]
            if data.ndim != 3 or is_label_map(data, img.get_data_dtype()):
                continue
            vol = np.nan_to_num(data.astype(np.float32))
            slices, norms = _usable_slices(
                vol, img.header.get_zooms(), cfg.slice_axes, cfg, scale=scale, min_side=min_side, name=str(p)
            )
            if slices:
                items.append(Item(vol, str(p), group, False, norms, slices))
            if cfg.max_items_per_source and len(items) >= cfg.max_items_per_source:
                break
    if images:
        for p in images:
            group = str(p.relative_to(root)) if root.is_dir() else p.name
            if is_excluded(p, group, cfg):
                continue
            if groups_out is not None:
                groups_out.append(group)
            hr, eight = load_gray(p)
            if min(hr.shape) < min_side:
                continue
            items.append(Item(hr, str(p), group, eight, _lr_norms(hr[None], scale)))
            if cfg.max_items_per_source and len(items) >= cfg.max_items_per_source:
                break
    if not nifti and not images:
        items = _load_dicom(root, cfg, scale=scale, min_side=min_side)
    if not items:
        raise InputError(root, "no usable training images or volumes found (PNG/JPEG/TIFF, NIfTI or DICOM)")
    return items


def _load_dicom(root: Path, cfg: DataConfig, *, scale: int, min_side: int) -> list[Item]:
    """DICOM series under ``root`` via ``srgan.io.dicom_series``: the first magnitude-anatomy volume of each
    series (an fMRI run's hundreds of repeats would swamp the rest), slices in its acquisition plane, grouped
    by PatientID. Series with non-square pixels or too small for a patch are skipped."""
    from srgan.io import dicom_series

    try:
        result = dicom_series.scan(root)
    except InputError:
        return []
    items = []
    for series in result.series:
        group = series.patient_id or series.study_uid or series.uid or root.name
        if is_excluded(root, group, cfg) or not series.anatomy_volumes:
            continue
        dr, dc = series.pixel_spacing
        if abs(dr - dc) > 0.1 * max(dr, dc) or min(series.rows, series.cols) < min_side:
            continue
        try:
            vol = np.nan_to_num(series.volume(series.anatomy_volumes[0]).astype(np.float32))  # (slices, rows, cols)
        except InputError as e:
            log.warning("skipping DICOM series %s: %s", series.description, e)
            continue
        slices, norms = _usable_slices(
            vol, (1.0, 1.0, 1.0), [0], cfg, scale=scale, min_side=min_side, name=f"{root} ({series.description})"
        )
        if slices:
            items.append(Item(vol, f"{root}#{series.uid}", group, False, norms, slices))
        if cfg.max_items_per_source and len(items) >= cfg.max_items_per_source:
            break
    return items


def split(
    items: list[Item], val_fraction: float, seed: int, all_groups: list[str] | None = None
) -> tuple[list[Item], list[Item]]:
    """(train, val) by group with a seeded shuffle; a source with one group keeps it in training.

    ``all_groups``: every group of the source (``load_source``'s ``groups_out``), when some were not loaded."""
    groups = sorted({it.group for it in items} | set(all_groups or ()))
    n_val = 0
    if len(groups) > 1 and val_fraction > 0:
        n_val = min(len(groups) - 1, max(1, round(val_fraction * len(groups))))
    order = np.random.default_rng(seed).permutation(len(groups))
    val_groups = {groups[i] for i in order[:n_val]}
    return [it for it in items if it.group not in val_groups], [it for it in items if it.group in val_groups]


# ---------------------------------------------------------------- sampling


def source_probabilities(sources: list[list[Item]], cfg: DataConfig) -> np.ndarray:
    """How often each non-empty source is drawn: ``cfg.source_weights`` (equal by default), normalised over the
    sources that have items."""
    w = np.asarray(cfg.source_weights if cfg.source_weights else [1.0] * len(sources), dtype=np.float64)
    w = np.asarray([wi for wi, s in zip(w, sources) if s])
    return w / w.sum()


class PatchSampler:
    """Global batch ``step`` = patches i = 0..B−1, each drawn from ``default_rng([seed, step, i])``.

    Sources are drawn by ``source_weights`` (equal by default), then an item, slice and position uniformly,
    rejecting mostly-background patches, then a random dihedral transform and a degradation from ``degradation``.
    The degradation's spatial part runs on the whole plane and the LR patch is cut from it (see
    ``degrade.resample``); noise and 8-bit rounding then act on the patch.

    ``kind_detector`` (a generator's ``srgan.models.kind_detector.KindDetector``) adds to every sample its estimate of
    P(k-space LR), made as at inference: on the whole LR plane with its noise and rounding.
    """

    def __init__(
        self,
        sources: list[list[Item]],
        *,
        patch_size: int,
        degradation: DegradationConfig,
        seed: int,
        cfg: DataConfig,
        base: str | None = None,
        kind_detector=None,
    ):
        self.sources = [s for s in sources if s]
        if not self.sources:
            raise ValueError("no training items")
        self.patch = patch_size
        self.deg = degradation
        self.scale = degradation.scale
        if patch_size % self.scale:
            raise ValueError(f"patch size {patch_size} is not a multiple of scale {self.scale}")
        self.seed = seed
        self.cfg = cfg
        if base not in (None, "bicubic", "zerofill"):
            raise ValueError(f"unknown base {base!r}")
        self.base = "zerofill" if base == "zerofill" else None  # bicubic is local: the model makes it itself
        self.weights = source_probabilities(sources, cfg)
        self._cache: dict[tuple, tuple[torch.Tensor, torch.Tensor | None]] = {}
        self.kind_detector = kind_detector
        self._kind_cache: dict[tuple, torch.Tensor] = {}  # noise-free planes' detector output, keyed like _cache

    def _crop(self, rng: np.random.Generator, item: Item) -> tuple[int, int, int, np.ndarray]:
        """(plane j, y, x, normalised HR crop (p, p)) of a random plane of ``item``, mostly foreground.

        ``y, x`` are multiples of the scale, so the crop sits exactly on the LR grid of the whole plane."""
        p, s = self.patch, self.scale
        best, best_fg = None, -1.0
        for _ in range(max(1, self.cfg.max_tries)):
            j = int(rng.integers(len(item)))
            raw = item.array if item.slices is None else np.take(item.array, item.slices[j][1], axis=item.slices[j][0])
            H, W = raw.shape[0] // s * s, raw.shape[1] // s * s
            y, x = s * int(rng.integers((H - p) // s + 1)), s * int(rng.integers((W - p) // s + 1))
            crop = item.norms[j].forward(raw[y : y + p, x : x + p])
            fg = float((crop > self.cfg.foreground_level).mean())
            if fg > best_fg:
                best, best_fg = (j, y, x, crop), fg
            if fg >= self.cfg.min_foreground:
                break
        assert best is not None  # max_tries >= 1
        return best

    def _lr_plane(self, key: tuple, item: Item, j: int, params: dict) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Whole plane j resampled by ``params`` (no noise, no rounding) ``(1, 1, H//s, W//s)``, normalised, and
        its zero-filled upsampling ``(1, 1, H', W')`` when the model wants that base (else None).

        Blur-free planes are cached: there are only a few (kind, window) combinations per plane, and the FFT of a
        512² slice would otherwise cost more than the patch it is cut for."""
        blur = params.get("blur_sigma", 0.0) > 0
        ckey = (*key, j, params["kind"], bool(params.get("hamming")))
        if not blur and ckey in self._cache:
            return self._cache[ckey]
        plane, norm = item.plane(j)
        s = self.scale
        hr = torch.from_numpy(np.ascontiguousarray(plane[: plane.shape[0] // s * s, : plane.shape[1] // s * s]))
        lr = degrade.resample(hr[None, None], params, source=(norm.low, norm.high))
        out = (lr, degrade.zerofill_base(lr, s) if self.base else None)
        if not blur:
            self._cache[ckey] = out
        return out

    def _kind(self, key: tuple, j: int, lr_plane: torch.Tensor, params: dict, source: tuple[float, float]):
        """The detector's P(k-space) ``(1,)`` for the whole finished LR plane, or None without a detector."""
        if self.kind_detector is None:
            return None
        cacheable = params.get("blur_sigma", 0.0) <= 0 and params.get("noise_sigma", 0.0) <= 0
        ckey = (*key, j, params["kind"], bool(params.get("hamming")))
        if cacheable and ckey in self._kind_cache:
            return self._kind_cache[ckey]
        with torch.no_grad():
            p = self.kind_detector(degrade.finish(lr_plane, params, source=source)).float()
        if cacheable:
            self._kind_cache[ckey] = p
        return p

    def sample(self, step: int, index: int) -> tuple:
        """(lr (1, p/s, p/s), hr (1, p, p), degradation params, base (1, p, p) or None, P(k-space) (1,) or None)
        of sample ``index`` of batch ``step``."""
        rng = np.random.default_rng([self.seed, step, index])
        si = int(rng.choice(len(self.sources), p=self.weights))
        src = self.sources[si]
        ii = int(rng.integers(len(src)))
        item = src[ii]
        j, y, x, crop = self._crop(rng, item)
        k, flip = int(rng.integers(4)), bool(rng.integers(2))
        params = self.deg.sample(rng, eight_bit=item.eight_bit)
        s, p, q = self.scale, self.patch, self.patch // self.scale
        norm = item.norms[j]
        lr_plane, base_plane = self._lr_plane((si, ii), item, j, params)
        clean = lr_plane[:, :, y // s : y // s + q, x // s : x // s + q]
        lr = degrade.finish(clean, params, source=(norm.low, norm.high))
        kind = self._kind((si, ii), j, lr_plane, params, (norm.low, norm.high))
        base = None
        if base_plane is not None:
            # zero-filling is linear: the whole clean slice's base, plus the patch's noise/rounding zero-filled
            # on its own (white, so the crop's periodic wrap does not matter)
            base = base_plane[:, :, y : y + p, x : x + p] + degrade.zerofill_base(lr - clean, s)

        def orient(a):  # the pixel-centre convention is symmetric, so resampling commutes with the dihedral group
            a = np.rot90(np.asarray(a), k)
            return torch.from_numpy(np.ascontiguousarray(a[:, ::-1] if flip else a, dtype=np.float32))[None]

        return (
            orient(lr[0, 0].numpy()),
            orient(crop),
            params,
            None if base is None else orient(base[0, 0].numpy()),
            kind,
        )

    def batch(self, step: int, indices) -> Batch:
        """lr (n, 1, p/s, p/s), hr (n, 1, p, p), params, base (n, 1, p, p) or None, kind (n,) or None, for the
        given sample indices of global batch ``step``."""
        out = [self.sample(step, int(i)) for i in indices]
        base = None if out[0][3] is None else torch.stack([o[3] for o in out])
        kind = None if out[0][4] is None else torch.cat([o[4] for o in out])
        return Batch(
            torch.stack([o[0] for o in out]), torch.stack([o[1] for o in out]), [o[2] for o in out], base, kind
        )


class Batch(NamedTuple):
    lr: torch.Tensor
    hr: torch.Tensor
    params: list[dict]
    base: torch.Tensor | None
    kind: torch.Tensor | None = None


def validation_set(
    items: list[Item],
    *,
    scale: int,
    cfg: DataConfig,
    kinds=("bicubic", "kspace"),
    max_images: int = 32,
    base: str | None = None,
    kind_detector=None,
) -> list[dict]:
    """Fixed held-out pairs: centre crops of images and a few evenly spaced slices of volumes.

    Each entry: ``{"name", "kind", "lr" (1, 1, h, w), "hr" (1, 1, s·h, s·w)}`` in normalised units; LR made as
    the contract does (antialiased bicubic or k-space of the whole plane, 8-bit rounding for 8-bit sources, no
    noise or blur), then cropped on the LR grid. With ``base="zerofill"`` entries also hold ``"base"``, the
    whole slice's zero-filled upsampling cropped like ``hr``; with ``kind_detector``, ``"kind_p"``, its P(k-space)
    ``(1,)`` of the whole LR slice.
    """
    planes = []
    for it in items:
        if it.slices:
            axial = [j for j, sl in enumerate(it.slices) if sl[0] == 2] or list(range(len(it.slices)))
            pick = np.linspace(0, len(axial) - 1, min(cfg.val_slices_per_volume, len(axial))).round().astype(int)
            planes += [
                (
                    f"{Path(it.path).name}[axis {it.slices[axial[i]][0]}, {it.slices[axial[i]][1]}]",
                    *it.plane(axial[i]),
                    it,
                )
                for i in pick
            ]
        else:
            planes.append((Path(it.path).name, *it.plane(), it))
    planes = planes[:max_images]
    out = []
    for name, plane, norm, it in planes:
        H, W = plane.shape[0] // scale * scale, plane.shape[1] // scale * scale
        c = min(cfg.val_crop, H, W) // scale * scale
        y, x = (H - c) // 2 // scale * scale, (W - c) // 2 // scale * scale
        whole = torch.from_numpy(np.ascontiguousarray(plane[:H, :W], dtype=np.float32))[None, None]
        hr = whole[..., y : y + c, x : x + c]
        for kind in kinds:
            params = {"scale": scale, "kind": kind, "quantize_levels": 255 if it.eight_bit else 0}
            lr = degrade.apply(whole, params, source=(norm.low, norm.high))
            entry = {
                "name": name,
                "kind": kind,
                "hr": hr,
                "lr": lr[..., y // scale : (y + c) // scale, x // scale : (x + c) // scale],
            }
            if base == "zerofill":
                entry["base"] = degrade.zerofill_base(lr, scale)[..., y : y + c, x : x + c]
            if kind_detector is not None:
                with torch.no_grad():
                    entry["kind_p"] = kind_detector(lr).float()
            out.append(entry)
    return out


def load_datasets(cfg: DataConfig, *, scale: int, patch_size: int, seed: int) -> tuple[list[list[Item]], list[Item]]:
    """Per-source training items and the pooled validation items."""
    if not cfg.sources:
        raise InputError(None, "no data sources given: pass --data FOLDER (images, NIfTI or DICOM)")
    train, val = [], []
    for src in cfg.sources:
        groups: list[str] = []
        items = load_source(src, cfg, scale=scale, min_side=patch_size, groups_out=groups)
        tr, va = split(items, cfg.val_fraction, seed, all_groups=groups)
        train.append(tr)
        val += va
    return train, val


def describe(train: list[list[Item]], val: list[Item], cfg: DataConfig) -> dict:
    """What a model was trained on, for the run log and the weights card."""
    return {
        "sources": [str(s) for s in cfg.sources],
        "train_items": [len(t) for t in train],
        "train_groups": [len({it.group for it in t}) for t in train],
        "val_items": len(val),
        "val_groups": sorted({it.group for it in val}) if len(val) <= 50 else len({it.group for it in val}),
        "excluded": sorted(set(cfg.exclude) | set(ALWAYS_EXCLUDED)),
        "split": "by patient (volume folder / DICOM PatientID) or by image file, seeded",
    }


def kind_examples(
    sources: list[list[Item]], *, degradation: DegradationConfig, cfg: DataConfig, seed: int, n_planes: int = 300
) -> tuple[torch.Tensor, torch.Tensor]:
    """Spectral features ``(2·n, F)`` and labels ``(2·n,)`` (1 = k-space) to fit a generator's LR-kind detector.

    Whole training planes, drawn by ``source_weights`` like the patches, each degraded both ways with the run's
    Hamming, blur, noise and 8-bit rounding drawn as for a patch: the detector is fitted on the LR it will judge.
    """
    from srgan.models.kind_detector import spectral_features

    w = source_probabilities(sources, cfg)
    sources = [s for s in sources if s]
    rng = np.random.default_rng([seed, 7919])
    s = degradation.scale
    feats, labels = [], []
    for _ in range(n_planes):
        src = sources[int(rng.choice(len(sources), p=w))]
        item = src[int(rng.integers(len(src)))]
        plane, norm = item.plane(int(rng.integers(len(item))))
        hr = torch.from_numpy(np.ascontiguousarray(plane[: plane.shape[0] // s * s, : plane.shape[1] // s * s]))
        for kind in degrade.KINDS:
            params = {**degradation.sample(rng, eight_bit=item.eight_bit), "kind": kind}
            params["hamming"] = params["hamming"] and kind == "kspace"
            lr = degrade.apply(hr[None, None], params, source=(norm.low, norm.high))
            feats.append(spectral_features(lr))
            labels.append(float(kind == "kspace"))
    return torch.cat(feats), torch.tensor(labels, dtype=torch.float64)


def fit_kind_detector(
    detector, sources: list[list[Item]], *, degradation: DegradationConfig, cfg: DataConfig, seed: int
) -> dict:
    """Fit ``detector`` (a generator's ``KindDetector``) in place on ``kind_examples`` of the training ``sources``
    (the same on every DDP rank: same seed); returns what the weights card says of it."""
    feats, labels = kind_examples(sources, degradation=degradation, cfg=cfg, seed=seed)
    acc = detector.fit(feats, labels)
    return {"fitted_on_planes": len(labels) // 2, "train_accuracy": round(acc, 4)}

"""Generator weights on disk: ``<name>.safetensors`` plus a JSON model card ``<name>.json``.

safetensors holds tensors only, so loading weights can never execute code (no pickles from users). The card names
the architecture and its kwargs, so the model is rebuilt from the registry, and carries the file's sha256, which is
checked on every load: a truncated or swapped file is refused rather than silently producing wrong images.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from pathlib import Path

from srgan.errors import InputError
from srgan.io import atomic

RESOURCES = Path(os.environ.get("BRAINSR_RESOURCES", Path(__file__).resolve().parents[2] / "resources"))
BUNDLED_DIR = RESOURCES / "weights"


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _paths(path: str | Path) -> tuple[Path, Path]:
    p = Path(path)
    stem = p.with_suffix("") if p.suffix in (".safetensors", ".json") else p
    return stem.with_name(stem.name + ".safetensors"), stem.with_name(stem.name + ".json")


def save_weights(path: str | Path, model, card: dict) -> Path:
    """Write the model's state dict and its card; returns the .safetensors path.

    ``card`` must hold ``arch`` (a ``srgan.models.GENERATORS`` key) and ``kwargs`` (its constructor kwargs,
    ``scale`` included). ``sha256`` and package versions are filled in here.
    """
    import numpy as np
    import torch
    from safetensors.torch import save

    import srgan
    from srgan.models import GENERATORS

    if card.get("arch") not in GENERATORS:
        raise ValueError(f"card arch {card.get('arch')!r} is not a registered generator")
    st_path, json_path = _paths(path)
    st_path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    data = save(tensors, metadata={"arch": card["arch"], "format": "brainsr-generator-1"})
    atomic.write_bytes(st_path, data)
    card = dict(card)
    card.setdefault("name", st_path.stem)
    card["file"] = st_path.name
    card["sha256"] = hashlib.sha256(data).hexdigest()
    card["size_bytes"] = len(data)
    card["parameters"] = int(sum(t.numel() for t in tensors.values()))
    card.setdefault(
        "versions",
        {
            "brainsr": srgan.__version__,
            "torch": torch.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
    )
    atomic.write_bytes(json_path, (json.dumps(card, indent=2, sort_keys=True) + "\n").encode())
    return st_path


def read_card(path: str | Path) -> dict:
    _, json_path = _paths(path)
    try:
        return json.loads(json_path.read_text())
    except FileNotFoundError:
        raise InputError(json_path, "model card missing: weights need their JSON card beside them") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(json_path, f"model card is not valid JSON ({e})") from None


def load_weights(path: str | Path, *, device="cpu"):
    """Build the generator named by the card and load its weights after checking the sha256.

    Returns ``(model in eval mode on device, card)``.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from srgan.models import GENERATORS, build_generator

    st_path, _ = _paths(path)
    if not st_path.is_file():
        raise InputError(st_path, "weights file not found")
    card = read_card(st_path)
    digest = sha256_file(st_path)
    if card.get("sha256") != digest:
        raise InputError(
            st_path,
            f"sha256 {digest[:16]}… does not match the model card "
            f"({str(card.get('sha256'))[:16]}…): the file is corrupt or not the one described",
        )
    if card.get("arch") not in GENERATORS:
        raise InputError(st_path, f"unknown architecture {card.get('arch')!r} in the model card")
    try:
        state = load_file(str(st_path), device="cpu")
    except (SafetensorError, OSError) as e:
        raise InputError(st_path, f"not a readable safetensors file ({e})") from None
    model = build_generator(card["arch"], **card.get("kwargs", {}))
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).splitlines()[0]
        raise InputError(st_path, f"weights do not fit architecture {card['arch']} ({first})") from None
    return model.eval().to(device), card


def list_bundled(directory: str | Path | None = None) -> list[dict]:
    """Cards of the weights shipped in ``resources/weights`` (sorted by scale, then name)."""
    d = Path(directory) if directory else BUNDLED_DIR
    cards = []
    for j in sorted(d.glob("*.json")):
        try:
            card = json.loads(j.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if (j.with_suffix(".safetensors")).is_file():
            card["path"] = str(j.with_suffix(".safetensors"))
            cards.append(card)
    return sorted(cards, key=lambda c: (c.get("kwargs", {}).get("scale", 0), c.get("name", "")))


def bundled_weights(scale: int, name: str | None = None, directory: str | Path | None = None) -> Path:
    """Path of bundled weights: by ``name`` (card name, e.g. ``brainsr-x2-gan``) or the fidelity model for ``scale``."""
    cards = list_bundled(directory)
    if name:
        hits = [c for c in cards if c.get("name") == name]
        if not hits:
            known = ", ".join(c.get("name", "?") for c in cards) or "none"
            raise InputError(None, f"no bundled model named {name!r} (bundled: {known})")
        if hits[0].get("kwargs", {}).get("scale") != scale:
            raise InputError(None, f"bundled model {name!r} is for x{hits[0]['kwargs'].get('scale')}, not x{scale}")
        return Path(hits[0]["path"])
    hits = [c for c in cards if c.get("kwargs", {}).get("scale") == scale and c.get("kind", "fidelity") == "fidelity"]
    if not hits:
        raise InputError(
            None,
            f"no bundled x{scale} weights in {BUNDLED_DIR if directory is None else directory}: "
            "pass --weights PATH (see README: training)",
        )
    return Path(hits[0]["path"])

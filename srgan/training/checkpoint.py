"""The training checkpoint ``<run>/ckpt.pt``: every piece of a run's state in one file, format ``brainsr-train-1``.

Keys: ``format``, ``config`` (``TrainConfig.as_dict()``), ``step``, the state dicts ``G``, ``D``, ``ema``,
``opt_g``, ``opt_d``, ``sched_g``, ``sched_d``, ``rng`` (``rng_state()``), the JSON strings ``metrics`` (last
validation), ``best`` (best stage-1 validation: ``gain_db``, ``step``) and ``kind_info`` (how the LR-kind detector
was fitted), and ``elapsed_s`` (training seconds over all invocations). Only tensors, strings and numbers, so it
loads with ``weights_only=True``; it is written atomically, so a run killed mid-save keeps its previous one.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, cast

from srgan.errors import InputError
from srgan.io import atomic

CKPT = "ckpt.pt"
FORMAT = "brainsr-train-1"


def rng_state() -> dict:
    """RNG states as tensors / strings / ints so the checkpoint loads with ``weights_only=True``."""
    import numpy as np
    import torch

    name, keys, pos, has_gauss, gauss = cast(tuple, np.random.get_state())
    state = {
        "torch": torch.get_rng_state(),
        "numpy": json.dumps([name, keys.tolist(), pos, has_gauss, gauss]),
        "python": json.dumps(random.getstate()),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    import numpy as np
    import torch

    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, gauss = json.loads(state["numpy"])
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    py = json.loads(state["python"])
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(
    path: Path,
    *,
    config: dict,
    step: int,
    modules: dict[str, Any],
    metrics: dict,
    best: dict,
    kind_info: dict,
    elapsed_s: float,
) -> None:
    """Write the checkpoint; ``modules`` maps the state-dict keys above to objects with ``state_dict()``."""
    import torch

    ck = {
        "format": FORMAT,
        "config": config,
        "step": step,
        **{k: m.state_dict() for k, m in modules.items()},
        "rng": rng_state(),
        "metrics": json.dumps(metrics),
        "best": json.dumps(best),
        "kind_info": json.dumps(kind_info),
        "elapsed_s": elapsed_s,
    }
    with atomic.atomic_path(path) as tmp:
        torch.save(ck, tmp)


def read(path: Path, device: Any = "cpu") -> dict:
    """The checkpoint's contents, its JSON strings decoded; ``InputError`` when missing or unreadable."""
    import torch

    if not path.is_file():
        raise InputError(path, "no training checkpoint to resume from")
    try:
        ck = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:
        raise InputError(path, f"not a readable training checkpoint ({type(e).__name__}: {e})") from None
    for key in ("metrics", "best", "kind_info"):
        ck[key] = json.loads(ck.get(key, "{}"))
    ck["elapsed_s"] = float(ck.get("elapsed_s", 0.0))
    return ck


def restore(ck: dict, modules: dict[str, Any]) -> None:
    """Load the state dicts of ``ck`` into ``modules`` (same keys as for ``save``) and set the RNG states."""
    for k, m in modules.items():
        m.load_state_dict(ck[k])
    set_rng_state({k: (v.cpu() if k == "torch" else v) for k, v in ck["rng"].items()})

#!/usr/bin/env python3
"""Copy a training run's exported generator into resources/weights as a bundled model, completing its card.

The training export already records architecture, kwargs, data split, degradation and validation metrics. This adds
what a shipped model needs: its product name and kind, the exact training command and wall time, held-out metrics
measured outside training (e.g. by shared/tools/contract_check.py), and the licence notes of the training data.
Source paths are made relative to the shared data folder so the card holds no machine-specific paths.

  python resources/weights/publish.py runs/x2/brainsr-x2-fidelity.safetensors --name brainsr-x2-fidelity \
      --kind fidelity --command "srgan train ..." --wall-min 55 --heldout heldout-x2.json
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

from srgan.io import atomic  # noqa: E402
from srgan.options import CONSISTENCY_MODES  # noqa: E402
from srgan.models.weights import load_weights, read_card, sha256_file  # noqa: E402
from srgan.training.licences import licences_for  # noqa: E402

def relative_source(path: str) -> str:
    """A source path relative to the shared data folder; already relative (a re-published card) stays as it is."""
    parts = Path(path).parts
    if "data" in parts:
        return "/".join(parts[parts.index("data") + 1:])
    return path if not Path(path).is_absolute() else Path(path).name


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("weights", type=Path)
    ap.add_argument("--name", required=True)
    ap.add_argument("--kind", choices=("fidelity", "gan"), required=True)
    ap.add_argument("--command", required=True, help="the training command(s) that produced the weights")
    ap.add_argument("--wall-min", type=float, required=True, help="training wall time in minutes on this machine")
    ap.add_argument("--heldout", type=Path, help="JSON of held-out metrics measured after training")
    ap.add_argument("--note", default="", help="anything a user should know (e.g. trained for a short time)")
    ap.add_argument("--consistency", choices=CONSISTENCY_MODES,
                    help="the data-consistency projection srgan enhance and the viewer apply by default (the card's "
                         "'consistency'; absent: off)")
    ap.add_argument("--dest", type=Path, default=HERE,
                    help="folder to publish into (default: the bundled weights; benchmarks/weights for comparison models)")
    a = ap.parse_args(argv)

    card = read_card(a.weights)
    if sha256_file(a.weights) != card["sha256"]:
        raise SystemExit(f"{a.weights}: sha256 does not match its card")
    card["name"], card["kind"], card["file"] = a.name, a.kind, f"{a.name}.safetensors"
    sources = card.get("data", {}).get("sources", [])
    card.setdefault("data", {})["sources"] = [relative_source(s) for s in sources]
    card["data"]["licences"] = licences_for(sources)
    card["training"] = {**card.get("training", {}), "command": a.command, "wall_time_min": a.wall_min,
                        "machine": "2 CPU cores, no GPU"}
    if a.heldout:
        card["heldout_metrics"] = json.loads(a.heldout.read_text())
    if a.note:
        card["note"] = a.note
    if a.consistency:
        card["consistency"] = a.consistency
    card["intended_use"] = ("Research and visual comparison of brain MRI super-resolution. AI-enhanced, not for primary "
                            "diagnosis; not a substitute for acquiring at higher resolution.")
    dest = a.dest / card["file"]
    if dest.resolve() != a.weights.resolve():  # re-publishing a bundled model rewrites its card only
        with atomic.atomic_path(dest) as tmp:
            shutil.copyfile(a.weights, tmp)
    atomic.write_text(dest.with_suffix(".json"), json.dumps(card, indent=2, sort_keys=True) + "\n")
    load_weights(dest)  # refuses a copy whose hash does not match
    print(f"published {dest} ({dest.stat().st_size / 1e6:.2f} MB, sha256 {card['sha256'][:16]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

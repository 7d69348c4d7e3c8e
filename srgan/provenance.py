"""What produced an enhanced image, in the forms each output format can carry.

Every derived image, volume and series must say it is AI-enhanced and not for primary diagnosis, and which
model, version, weights and scale made it, so a reader can always tell an enhanced image from an acquired one.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import srgan

DISCLAIMER = "AI-enhanced, not for primary diagnosis"


@dataclass(frozen=True)
class Provenance:
    model: str  # registry name of the generator architecture, e.g. "rcan_lite"
    weights_name: str  # bundled weights id or file name, e.g. "brainsr-x2-fidelity"
    weights_sha256: str  # full hex digest of the safetensors file
    scale: int
    consistency: str = "off"  # data-consistency projection: off | bicubic | kspace
    runtime: str = "torch"  # where the generator ran: srgan.options.RUNTIMES less auto
    precision: str = "fp32"  # its arithmetic: srgan.options.PRECISIONS
    software_version: str = srgan.__version__

    def long(self) -> str:
        """One line for DICOM DerivationDescription / ImageComments, PNG text chunks, reports."""
        return (
            f"BrainSR {self.software_version} super-resolution x{self.scale}, model {self.model}, "
            f"weights {self.weights_name} sha256 {self.weights_sha256}, consistency {self.consistency}, "
            f"runtime {self.runtime} {self.precision}. "
            f"{DISCLAIMER}."
        )

    def short(self) -> str:
        """At most 80 characters: the NIfTI header ``descrip`` field."""
        text = f"BrainSR x{self.scale} {self.model} {self.weights_sha256[:8]} AI-enhanced not for diagnosis"
        return text[:80]

    def as_dict(self) -> dict:
        return {**asdict(self), "disclaimer": DISCLAIMER}

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2)

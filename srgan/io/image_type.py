"""What a DICOM image is, from its ImageType / FrameType values: magnitude anatomy or something else.

One table for the reader (:mod:`srgan.io.dicom_series`, what the viewer shows and how volumes are ordered) and
the derived-series writer (:mod:`srgan.io.dicom_derived`, what is left out of an export), so the two always agree.
Values 1 and 2 (ORIGINAL/DERIVED, PRIMARY/SECONDARY) say nothing about the content; the tokens looked up here
are values 3 and on, which are vendor-defined. Acquisition tokens such as PERFUSION, ASL, DIFFUSION, FMRI, MOCO
or MOSAIC name how magnitude images were acquired and are not in the table: a DSC perfusion series (raw EPI
magnitude, many frames), raw ASL label/control pairs or diffusion-weighted images are enhanced like any
magnitude time series, as the viewer does; only the parameter maps computed from them are left out.
"""

from __future__ import annotations

from collections.abc import Iterable

#: ImageType / FrameType values (3 and on) that mark an image as something other than magnitude anatomy, and
#: the kind each one names.
KIND_TOKENS: dict[str, str] = {
    "LOCALIZER": "localizer",
    "SCOUT": "localizer",
    "SURVEY": "localizer",
    "FIELD_MAP": "field_map",
    "FIELDMAP": "field_map",
    "B0": "field_map",
    "B0_MAP": "field_map",
    "B0MAP": "field_map",
    "B0 MAP": "field_map",
    "B1": "field_map",
    "B1_MAP": "field_map",
    "FM": "field_map",
    "P": "phase",
    "PHASE": "phase",
    "PHA": "phase",
    "PHASE MAP": "phase",
    "PHASE_MAP": "phase",
    "R": "real",
    "REAL": "real",
    "I": "imaginary",
    "IMAGINARY": "imaginary",
    "ADC": "adc",
    "EADC": "adc",
    "TRACEW": "trace",
    "TRACE": "trace",
    "ISOTROPIC": "trace",
    "FA": "fa",
    "COLFA": "fa",
    "DIFFUSION_ANISO": "fa",
    "T1_MAP": "map",
    "T2_MAP": "map",
    "T2_STAR_MAP": "map",
    "R2_STAR_MAP": "map",
    "T1MAP": "map",
    "T2MAP": "map",
    "T2STAR_MAP": "map",
    # perfusion and ASL *parameter maps* (the raw DSC/DCE/ASL series are magnitude time series: Siemens writes
    # ORIGINAL\PRIMARY\PERFUSION\NONE or ...\ASL\NONE on raw EPI magnitude, which is anatomy to enhance)
    "RCBV": "map",
    "RCBF": "map",
    "CBV": "map",
    "CBF": "map",
    "RELCBF": "map",
    "RELCBV": "map",
    "MTT": "map",
    "TTP": "map",
    "TMAX": "map",
    "KTRANS": "map",
    "VE": "map",
    "PBP": "map",
}

#: Philips writes e.g. ``P_SE`` (phase, spin echo): a value starting so marks a phase image.
PHASE_PREFIX = "P_"

#: How the writer's report names each non-magnitude kind ("32 field map frames left out: ...").
KIND_REASONS: dict[str, str] = {
    "phase": "phase",
    "real": "real/imaginary",
    "imaginary": "real/imaginary",
    "field_map": "field map",
    "adc": "diffusion map (ADC/trace/FA)",
    "trace": "diffusion map (ADC/trace/FA)",
    "fa": "diffusion map (ADC/trace/FA)",
    "map": "map",
    "localizer": "localizer",
}


def kind_of_tokens(tokens: Iterable[str]) -> str | None:
    """The non-magnitude kind named by the first of ``tokens`` (values 3 and on) that names one, else None."""
    values = [str(t).strip().upper() for t in tokens]
    for v in values:
        kind = KIND_TOKENS.get(v)
        if kind is not None:
            return kind
    if any(v.startswith(PHASE_PREFIX) for v in values):
        return "phase"
    return None


def reason_of_kind(kind: str) -> str | None:
    """Why an image of this kind is not enhanced (the report's words), or None for magnitude anatomy."""
    if kind == "magnitude":
        return None
    return KIND_REASONS.get(kind, kind.replace("_", " "))

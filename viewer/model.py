"""What the viewer app knows and shows beyond the view geometry, without Qt.

``ViewState`` (``viewer.state``) is the view: slice, zoom/pan, window, toggles. :class:`ViewerModel` holds the
rest of the app's state: the series shown, enhancement and the disagreement overlay on or off, the last
enhancement error, the loaded model's info, the plan the worker made per series, the last error shown, and what
the right pane is ("ready", "enhancing", "interpolated" or "error"). From these it decides the text of the
viewports' corners (the plan's text is ``Plan.lines()``, nothing else), so all of it is tested without a
display. Observers are plain callables ``fn(model, changed: frozenset[str])``, as for ``ViewState``.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from srgan.inference.plan import Plan
from viewer import overlays
from viewer.jobs import (
    CONSISTENCY_DEFAULT,
    DEFAULT_INTERPOLATION,
    INTERPOLATIONS,
    EnhanceConfig,
    result_key,
    series_key,
)
from viewer.state import ViewState

Observer = Callable[["ViewerModel", frozenset], None]
Corner = tuple[list[str], "str | None"]  # a corner's lines and tone

DISAGREEMENT_LABEL = "Model disagreement (TTA spread)"
#: how each data-consistency choice reads in the enhanced pane (None: the model card's default)
CONSISTENCY_NAMES: dict[str | None, str] = {"off": "off", "bicubic": "bicubic", "kspace": "k-space", "auto": "auto",
                                            None: CONSISTENCY_DEFAULT}
RIGHT_STATES = ("ready", "enhancing", "interpolated", "error")
KEEP: Any = object()  # "leave this choice as it is" for :func:`reconfigured`

#: corner tones; the window maps them to colours
TONE_TEXT, TONE_DIM, TONE_AI, TONE_ERROR = "text", "dim", "ai", "error"


def scale_of_card(card: dict) -> int | None:
    return card.get("kwargs", {}).get("scale", card.get("scale"))


def problem_lines(result: Any) -> list[str]:
    """One line per file a scan skipped ("skipped: PATH: reason") or read with a warning ("warning: PATH: …")."""
    return [f"skipped: {p.path}: {p.message}" for p in result.problems] + [
        f"warning: {p.path}: {p.message}" for p in getattr(result, "warnings", [])
    ]


def first_anatomy(series_list: list) -> Any:
    """The series to show first: the first one whose images are magnitude anatomy, else the first."""
    for s in series_list:
        if getattr(s, "anatomy_volumes", [0]):
            return s
    return series_list[0] if series_list else None


def reconfigured(old: EnhanceConfig, scale: int | None = None, model: Any = KEEP, device: str | None = None,
                 weights: Any = KEEP, consistency: Any = KEEP) -> EnhanceConfig:
    """The configuration after a menu choice: ``model``/``weights``/``consistency`` left out (``KEEP``) keep the
    current choice, None selects the default fidelity model / the card's consistency. A weights file fits one
    scale only: another scale drops it (and its model) unless new weights are given."""
    new = EnhanceConfig(scale=old.scale if scale is None else int(scale),
                        model=old.model if model is KEEP else model,
                        weights=old.weights if weights is KEEP else weights,
                        device=old.device if device is None else device,
                        consistency=old.consistency if consistency is KEEP else consistency)
    if new.scale != old.scale and weights is KEEP and old.weights:
        new = EnhanceConfig(scale=new.scale, model=None, weights=None, device=new.device,
                            consistency=new.consistency)
    return new


class ViewerModel:
    """The app's state beyond ``view``; mutate through the methods (they notify observers)."""

    def __init__(self, view: ViewState, config: EnhanceConfig | None = None, enhancing: bool = False):
        self.view = view
        self.config = config or EnhanceConfig()
        self.series: Any = None
        self.folder: str | None = None
        self.scan_result: Any = None
        self.enhancing = bool(enhancing)
        self.disagreement = False  # the TTA-spread overlay is asked for (shown once computed, over the AI image)
        self.enhance_error: str | None = None
        self.model_info: dict | None = None
        self.plans: dict[tuple, Plan] = {}  # the worker's plan per (series, volume 0, slice −1, model…) key
        self.last_error: str | None = None
        self.shown: tuple | None = None  # (key, original drawn, interpolation drawn, right-pane state)
        self.interpolation = DEFAULT_INTERPOLATION  # the plain interpolation compared with (viewer.jobs)
        self._observers: list[Observer] = []

    # -- observers -------------------------------------------------------------------------------
    def subscribe(self, fn: Observer) -> Callable[[], None]:
        """Call ``fn(model, changed)`` after every change; returns a function that unsubscribes."""
        self._observers.append(fn)
        return lambda: self._observers.remove(fn) if fn in self._observers else None

    def _notify(self, *changed: str) -> None:
        names = frozenset(changed)
        for fn in list(self._observers):
            fn(self, names)

    # -- changes ---------------------------------------------------------------------------------
    def set_series(self, series: Any) -> None:
        """A new series: its enhancement starts afresh (a previous error is forgotten)."""
        self.series = series
        self.enhance_error = None
        self._notify("series", "enhance_error")

    def set_scanned(self, folder: str, result: Any) -> None:
        self.folder, self.scan_result = folder, result
        self._notify("folder")

    def set_enhancing(self, on: bool) -> None:
        self.enhancing = bool(on)
        self.enhance_error = None
        self._notify("enhancing", "enhance_error")

    def set_interpolation(self, method: str) -> None:
        """The comparison interpolation: what toggle E, the difference overlay and region statistics show."""
        if method not in INTERPOLATIONS:
            raise ValueError(f"unknown comparison interpolation {method!r} ({', '.join(INTERPOLATIONS)})")
        if method != self.interpolation:
            self.interpolation = method
            self._notify("interpolation")

    def interpolation_name(self) -> str:
        return overlays.interpolation_name(self.interpolation)

    def set_disagreement(self, on: bool) -> None:
        self.disagreement = bool(on)
        self._notify("disagreement")

    def set_enhance_error(self, message: str | None) -> None:
        self.enhance_error = message
        self._notify("enhance_error")

    def set_config(self, config: EnhanceConfig) -> None:
        """A new model configuration; a new model, scale or consistency makes the model info stale (the same
        weights on another device make the same slices)."""
        if config.output_id != self.config.output_id:
            self.model_info = None
        self.config = config
        self.enhance_error = None
        self._notify("config", "model_info", "enhance_error")

    def set_model_info(self, info: dict) -> None:
        self.model_info = info
        self._notify("model_info")

    def add_plan(self, key: tuple, plan: Plan) -> bool:
        """Keep the worker's plan; True when it is the current series' plan (the overlay changes)."""
        self.plans[key] = plan
        self._notify("plans")
        return self.series is not None and key == self.plan_key()

    def set_error(self, message: str) -> None:
        self.last_error = message
        self._notify("last_error")

    # -- what is current -------------------------------------------------------------------------
    def current_key(self) -> tuple | None:
        """(series_key, volume, slice) of the slice on screen; None without a series."""
        if self.series is None:
            return None
        return (series_key(self.series), self.view.volume, self.view.slice)

    def plan_key(self) -> tuple:
        return result_key(self.series, 0, -1, self.config)

    def plan(self) -> Plan | None:
        """The plan the worker made for the current series and configuration (None until it is made)."""
        return self.plans.get(self.plan_key()) if self.series is not None else None

    def wants_enhancement(self) -> bool:
        """Enhancement is on and has not failed since it was last asked for."""
        return self.series is not None and self.enhancing and self.enhance_error is None

    def wants_spread(self) -> bool:
        """The current slice's TTA spread is needed: the overlay is on, over an AI image."""
        return self.wants_enhancement() and self.disagreement and self.view.enhanced

    def right_state(self, has_enhanced: bool) -> str:
        """What the right pane shows: "ready" (the model's output), "enhancing" (waiting for it), "error"
        (it failed) or "interpolated" (enhancement off, or the view switched to plain interpolation, key E)."""
        if not (self.enhancing and self.view.enhanced):
            return "interpolated"
        if has_enhanced:
            return "ready"
        return "error" if self.enhance_error else "enhancing"

    def mark_shown(self, original: bool, interpolated: bool, right_state: str) -> None:
        self.shown = (self.current_key(), bool(original), bool(interpolated), right_state)

    def is_settled(self) -> bool:
        """The current slice is on screen: original and interpolation drawn, and with enhancement on, the
        model's output (or its error) drawn too."""
        shown = self.shown
        if shown is None or shown[0] != self.current_key() or not (shown[1] and shown[2]):
            return False
        if self.enhancing and self.view.enhanced:
            return shown[3] in ("ready", "error")
        return True

    # -- text ------------------------------------------------------------------------------------
    def consistency_in_force(self) -> str:
        """What the enhanced image on the right was projected with: the loaded model's (card default resolved),
        or the configured choice before the model is loaded."""
        cfg, info = self.config, self.model_info or {}
        loaded = info.get("config")
        if loaded is not None and loaded.output_id == cfg.output_id and info.get("consistency"):
            return CONSISTENCY_NAMES.get(info["consistency"], info["consistency"])
        return CONSISTENCY_NAMES.get(cfg.consistency, str(cfg.consistency))

    def disagreement_lines(self, state: str, spread_scale: float | None) -> list[str]:
        """The disagreement overlay's caption; ``spread_scale``: the s.d. its full colour stands for, None
        while the spread is being computed."""
        if not self.disagreement:
            return []
        if state != "ready":
            why = {"interpolated": "shown over the AI-enhanced image only", "error": "unavailable: enhancement failed"}
            return [DISAGREEMENT_LABEL, why.get(state, "waiting for the enhanced slice…")]
        if spread_scale is None:
            return [DISAGREEMENT_LABEL, "computing… (8 flips/rotations)"]
        return [DISAGREEMENT_LABEL, f"yellow → magenta: s.d. 0 → {spread_scale:.3g}"]

    def model_name_version(self) -> tuple[str | None, str | None]:
        card = (self.model_info or {}).get("card", {})
        model = card.get("name") or (self.config.model or None)
        version = card.get("version") or (card.get("sha256", "")[:8] or None)
        return model, version

    def enhanced_label(self, state: str) -> list[str]:
        """Top-right text of the enhanced pane: what the image is, and for a model output its model, where and in
        what arithmetic it ran (a card may recommend bf16), the plan (``Plan.lines()``; the configured consistency
        before the plan is known) and the disclaimer, last."""
        model, version = self.model_name_version()
        label = overlays.enhanced_label(self.view.scale, model, version, state, self.interpolation)
        if state == "ready":
            plan = self.plan()
            extra = plan.lines() if plan is not None else [f"data consistency: {self.consistency_in_force()}"]
            runtime = overlays.runtime_line(self.model_info)
            label[len(label) - 1:len(label) - 1] = ([runtime] if runtime else []) + extra
        return label

    def corners(self, state: str, spread_scale: float | None = None) -> dict[str, dict[str, Corner]]:
        """Every corner's text and tone of both viewports: ``{"left"|"right": {corner: (lines, tone)}}``; tone
        None keeps the corner's colour. Empty corners without a series."""
        names = ("top_left", "top_right", "bottom_left", "bottom_right")
        s, series = self.view, self.series
        if series is None or s.plane is None:
            return {side: {c: ([], None) for c in names} for side in ("left", "right")}
        frame = series.frame(s.volume, s.slice)
        orientation = frame.orientation if frame.orientation is not None else series.orientation
        position = overlays.slice_position_mm(frame.position, orientation)
        sl = overlays.slice_lines(s.slice, s.n_slices, s.volume, s.n_volumes, position, frame.slice_thickness)
        plane, k = s.plane, s.scale
        head = [series.series_description] if series.series_description else []
        tone = {"ready": TONE_AI, "enhancing": TONE_AI, "error": TONE_ERROR}.get(state, TONE_TEXT)
        return {
            "left": {
                "top_left": (overlays.patient_lines(series), None),
                "top_right": (["Original", series.modality or ""], TONE_DIM),
                "bottom_left": (sl, None),
                "bottom_right": (overlays.display_lines(s.window.center, s.window.width, s.zoom,
                                                        (plane.row_spacing, plane.col_spacing),
                                                        (plane.rows, plane.cols)), None),
            },
            "right": {
                "top_left": (head + self.disagreement_lines(state, spread_scale), None),
                "top_right": (self.enhanced_label(state), tone),
                "bottom_left": (sl, None),
                "bottom_right": (overlays.display_lines(s.window.center, s.window.width, s.zoom,
                                                        (plane.row_spacing / k, plane.col_spacing / k),
                                                        (plane.rows * k, plane.cols * k)), None),
            },
        }

    def markers(self) -> dict[str, str]:
        """Orientation letters at the edges (the same on both sides); empty without a series."""
        s, series = self.view, self.series
        if series is None or s.plane is None:
            return {}
        frame = series.frame(s.volume, s.slice)
        return overlays.orientation_markers(frame.orientation if frame.orientation is not None else series.orientation)

    def provenance_text(self) -> str:
        """The provenance line written into an exported view; it names the comparison interpolation."""
        name = self.interpolation_name()
        if self.model_info:
            return f"{self.model_info.get('provenance', '')} Comparison interpolation: {name}.".lstrip()
        from srgan.provenance import DISCLAIMER

        return f"BrainSR viewer: interpolated ×{self.view.scale} ({name}), no model output shown. {DISCLAIMER}."

    def model_info_html(self) -> str:
        info = self.model_info
        if not info:
            return "No model loaded yet. Press Enhance (Ctrl+E) to load it."
        card = info.get("card", {})
        rows = "".join(f"<tr><td>{k}</td><td>{v}</td></tr>" for k, v in card.items()
                       if k not in ("kwargs", "path") and not isinstance(v, (dict, list)))
        return (f"<b>{info.get('label', '')}</b> on {info.get('device', '')}<br><table>{rows}</table>"
                f"<p>{info.get('provenance', '')}</p>")

    def hover_text(self, x: float, y: float, image: Any, enhanced_side: bool) -> str:
        """The status bar's cursor read-out: position in mm and the value of the pixel under it in ``image``
        (the original, or the right pane's image on the ×scale grid)."""
        plane = self.view.plane
        text = f"x {x:.1f}  y {y:.1f} mm"
        if plane is None or image is None:
            return text
        r, c = plane.pixel_of(x, y, self.view.scale if enhanced_side else 1)
        ri, ci = int(round(r)), int(round(c))
        if 0 <= ri < image.shape[0] and 0 <= ci < image.shape[1]:
            text += f"   value {image[ri, ci]:.0f}"
        return text

    def window_title(self) -> str:
        series = self.series
        if series is None:
            return "BrainSR"
        title = " — ".join(x for x in (overlays.format_person_name(series.patient_name), series.series_description)
                           if x)
        return f"BrainSR — {title}" if title else "BrainSR"

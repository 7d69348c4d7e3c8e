"""Qt-free view state (slice, zoom/pan in mm, W/L, toggles) and the overlay/orientation text."""
import numpy as np
import pydicom
import pytest

from viewer import overlays
from viewer.state import Plane, ViewState
from viewer.window_level import WindowLevel

PLANE = Plane(rows=256, cols=200, row_spacing=1.0, col_spacing=0.5)


def _state(**kw) -> ViewState:
    s = ViewState(**kw)
    s.set_series("1.2.3", 1, 35, PLANE, WindowLevel(100, 200), viewport_px=(400, 300))
    return s


def test_opening_a_series_shows_the_middle_slice_fitted_and_centred():
    s = _state()
    assert s.slice == 17 and s.volume == 0
    assert s.pan == pytest.approx((50, 128))
    x0, y0, x1, y1 = s.view_rect_mm(400, 300)
    img_x, img_y, w, h = PLANE.rect_mm
    assert x0 <= img_x and x1 >= img_x + w and y0 <= img_y and y1 >= img_y + h
    assert min(x1 - x0 - w, y1 - y0 - h) < 0.05 * h, "fitted: one axis nearly fills the viewport"


def test_rect_covers_the_same_field_for_any_grid():
    # Original pixel 0 covers [0, Δ]; on the ×2 grid pixel 0 covers [0, Δ/2] — same field of view.
    assert PLANE.rect_mm == (0, 0, 100.0, 256.0)
    centre = (0.25, 0.5)  # centre of original pixel (0, 0) in mm
    assert PLANE.pixel_of(*centre, scale=1) == (0, 0)
    assert PLANE.pixel_of(*centre, scale=2) == (0.5, 0.5)  # LR pixel 0 centre = HR 0·2 + (2−1)/2
    assert PLANE.pixel_of(*centre, scale=4) == (1.5, 1.5)
    assert PLANE.pixel_of(0.75, 1.5, scale=4) == (5.5, 5.5)  # LR pixel 1 → HR 1·4 + 1.5


def test_slice_is_clamped_and_can_wrap_for_cine():
    s = _state()
    s.set_slice(99)
    assert s.slice == 34
    s.step_slice(1)
    assert s.slice == 34
    s.step_slice(1, wrap=True)
    assert s.slice == 0
    s.step_slice(-3)
    assert s.slice == 0


def test_zoom_keeps_the_anchor_point_fixed_on_screen():
    s = _state()
    w, h = 400, 300
    anchor = (30.0, 100.0)
    # screen position of the anchor before zooming
    x0, y0, *_ = s.view_rect_mm(w, h)
    before = ((anchor[0] - x0) * s.zoom, (anchor[1] - y0) * s.zoom)
    s.zoom_by(2.5, anchor_mm=anchor)
    x0, y0, *_ = s.view_rect_mm(w, h)
    after = ((anchor[0] - x0) * s.zoom, (anchor[1] - y0) * s.zoom)
    assert after == pytest.approx(before)


def test_fitted_until_the_user_zooms_or_pans():
    s = _state()
    assert s.fitted
    s.zoom_by(1.5)
    assert not s.fitted
    s.fit(400, 300)
    assert s.fitted
    s.pan_by_px(3, 4)
    assert not s.fitted


def test_zoom_is_bounded_and_pan_follows_the_mouse():
    s = _state()
    s.set_zoom(1e9)
    assert s.zoom == 200.0
    s.set_zoom(2.0)
    pan = s.pan
    s.pan_by_px(20, -10)  # drag right/up → content moves right/up → centre moves left/down in mm
    assert s.pan == pytest.approx((pan[0] - 10, pan[1] + 5))


def test_observers_get_the_changed_fields_and_can_unsubscribe():
    s = _state()
    seen = []
    off = s.subscribe(lambda st, changed: seen.append(changed))
    s.set_slice(3)
    s.set_slice(3)  # no change → no notification
    s.set_window(WindowLevel(1, 2))
    s.reset_window()
    s.toggle_enhanced()
    s.set_overlay_opacity(7)
    off()
    s.set_slice(4)
    assert seen == [{"slice"}, {"window"}, {"window"}, {"enhanced"}, {"overlay_opacity"}]
    assert s.window == WindowLevel(100, 200) and s.enhanced is False and s.overlay_opacity == 1.0


# -- orientation markers ------------------------------------------------------------------------

@pytest.mark.parametrize("iop,expected", [
    ((1, 0, 0, 0, 1, 0), dict(left="R", right="L", top="A", bottom="P")),       # axial
    ((1, 0, 0, 0, 0, -1), dict(left="R", right="L", top="S", bottom="I")),      # coronal
    ((0, 1, 0, 0, 0, -1), dict(left="A", right="P", top="S", bottom="I")),      # sagittal
])
def test_orientation_letters_of_main_planes(iop, expected):
    assert overlays.orientation_markers(iop) == expected


def test_orientation_letters_of_an_oblique_plane():
    a = np.radians(30)  # axial tilted 30° about the S axis: rows run left and a bit posterior
    iop = (np.cos(a), np.sin(a), 0, -np.sin(a), np.cos(a), 0)
    m = overlays.orientation_markers(iop)
    assert m == dict(right="LP", left="RA", bottom="PR", top="AL")
    a = np.radians(10)  # a 10° oblique (like the Philips DTI) keeps single letters
    iop = (np.cos(a), np.sin(a), 0, -np.sin(a), np.cos(a), 0)
    assert overlays.orientation_markers(iop) == dict(right="L", left="R", bottom="P", top="A")


def test_orientation_letters_degenerate_input():
    blank = dict(left="", right="", top="", bottom="")
    assert overlays.orientation_markers(None) == blank
    assert overlays.orientation_markers((1, 0, 0)) == blank
    assert overlays.orientation_markers((float("nan"),) * 6) == blank


def test_decubitus_series_gets_patient_relative_letters(hfs_folder, hfdr_folder):
    """HFDR: the patient lies on the right side, but IOP is patient-relative, so the letters match HFS."""
    letters = []
    for folder in (hfs_folder, hfdr_folder):
        ds = pydicom.dcmread(sorted(folder.glob("*.dcm"))[0], stop_before_pixels=True)
        letters.append(overlays.orientation_markers(ds.ImageOrientationPatient))
        assert overlays.plane_name(ds.ImageOrientationPatient) == "sagittal"
    assert str(pydicom.dcmread(sorted(hfdr_folder.glob("*.dcm"))[0], stop_before_pixels=True).PatientPosition) == "HFDR"
    assert letters[0] == letters[1] == dict(left="A", right="P", top="S", bottom="I")


def test_overlay_text():
    class S:
        patient_name = "Doe^Jane^Q"
        patient_id = "123"
        study_description = "MR Brain"
        study_date = "20220407"
        series_number = 3
        series_description = "t1_fl2d_sag"
    assert overlays.patient_lines(S()) == ["DOE, Jane Q", "ID 123", "MR Brain · 2022-04-07", "Se 3 t1_fl2d_sag"]
    assert overlays.slice_lines(17, 35, 0, 1, -12.345) == ["Im 18/35", "Loc -12.3 mm"]
    assert overlays.slice_lines(0, 15, 2, 10, None) == ["Im 1/15   Vol 3/10"]
    lines = overlays.display_lines(816, 1563, 2.0, (1.015625, 0.5), (256, 200))
    assert lines == ["W 1563  L 816", "Zoom 2.00 px/mm", "200×256  1.02 × 0.5 mm"]
    assert overlays.enhanced_label(2, "tiny", "v1", "ready") == ["AI-enhanced ×2", "tiny · v1",
                                                                 "not for primary diagnosis"]
    assert overlays.enhanced_label(4, "m", None, "enhancing") == ["Interpolated ×4 (zero-fill)", "AI enhancing…"]
    assert overlays.enhanced_label(2, None, None, "error") == ["Interpolated ×2 (zero-fill)", "AI enhancement failed"]
    assert overlays.enhanced_label(2, "m", "v", "interpolated")[0] == "Interpolated ×2 (zero-fill)"
    assert overlays.enhanced_label(2, "m", "v", "interpolated", "bicubic")[0] == "Interpolated ×2 (bicubic)"
    assert overlays.slice_position_mm((10, 20, 30), (0, 1, 0, 0, 0, -1)) == pytest.approx(-10)


def test_plan_lines_stay_short_and_name_the_fit_that_is_applied():
    """The enhanced pane's text comes from the plan alone, so it never names a fit that is not applied: inside the
    x2 do-nothing band (-0.4..0.5) and at x4 for 0 <= r <= 0.7 (k-space applied), the old overlay rule
    ('k-space' if r < 0 else 'bicubic') said otherwise."""
    from srgan.inference.plan import decide
    assert decide("off", None, 2).lines() == ["data consistency: off"]
    assert decide("auto", 0.97, 4).lines() == ["LR kind: k-space (P k-space 0.97)", "data consistency: auto → k-space"]
    lines = decide("auto", 0.0, 4, -0.34).lines()
    assert lines == ["LR kind: smooth (P k-space 0.00)", "residual test -0.34: k-space fits",
                     "data consistency: auto → k-space"]
    assert decide("auto", 0.55, 4, 1.41).lines()[1] == "residual test +1.41: bicubic fits"
    assert decide("auto", 0.0, 4, 0.3).lines()[1:] == ["residual test +0.30: k-space fits",
                                                     "data consistency: auto → k-space"]
    assert decide("auto", 0.3, 2, -0.2).lines()[1:] == ["residual test -0.20: neither clearly fits",
                                                      "data consistency: auto → off"]
    assert decide("auto", 0.3, 2, 0.3).lines()[1] == "residual test +0.30: neither clearly fits"
    assert decide("kspace", 0.3, 2).lines()[-1] == "data consistency: k-space"
    assert max(len(line) for line in lines) <= 34  # the corner elides longer lines in a half-width pane

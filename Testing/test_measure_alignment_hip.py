"""Lower-limb alignment and hip measures against construction values; sphere fits."""

from __future__ import annotations

import numpy as np
import pytest

from MSKPlannerLib.calibration import pixels_to_ras_mm
from MSKPlannerLib.landmarks import LandmarkError
from MSKPlannerLib.measure_alignment import measure_alignment
from MSKPlannerLib.measure_hip import measure_hip
from MSKPlannerLib.measurement_phantoms import alignment_landmarks, hip_landmarks
from MSKPlannerLib.measurement_table import UNCALIBRATED, VOLUME_GEOMETRY, Calibration
from MSKPlannerLib.sphere_fit import fit_sphere, fit_sphere_to_mask, hip_center_from_surface_points


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize(
    ("mldfa", "mpta", "jlca"), [(87.5, 87.5, 0.0), (91.0, 84.0, 2.5), (84.0, 90.0, -1.5)]
)
def test_alignment_matches_the_construction_angles(
    side: str, mldfa: float, mpta: float, jlca: float
) -> None:
    points, expected = alignment_landmarks(side, mldfa, mpta, jlca, anterior_jitter_mm=8.0)
    table = measure_alignment(points, side, VOLUME_GEOMETRY, "phantom")
    values = table.values()

    for key in ("hka_deg", "mldfa_deg", "mpta_deg", "jlca_deg", "mad_mm"):
        assert values[key] == pytest.approx(expected[key], abs=2e-3), key
    # The angles are tied: 180 - HKA = mLDFA - MPTA + JLCA.
    assert 180.0 - values["hka_deg"] == pytest.approx(
        values["mldfa_deg"] - values["mpta_deg"] + values["jlca_deg"], abs=2e-3
    )
    row = table.by_key("hka_deg")[0]
    assert row.calibration == VOLUME_GEOMETRY and row.method == "manual"
    assert 0 < row.uncertainty < 2.0


def test_varus_knee_gives_hka_below_180_and_positive_mad() -> None:
    # A right leg in RAS: hip above ankle on one vertical line, the knee 20 mm lateral (+x).
    hip, ankle = np.array([100.0, 0, 0]), np.array([100.0, 0, -800])
    knee = np.array([120.0, 0, -420])
    points = {
        "hip_center": hip,
        "ankle_center": ankle,
        "knee_center_femur": knee,
        "knee_center_tibia": knee,
        "femoral_condyle_medial": knee + np.array([-35, 0, 0]),
        "femoral_condyle_lateral": knee + np.array([35, 0, 0]),
        "tibial_plateau_medial": knee + np.array([-35, 0, -5]),
        "tibial_plateau_lateral": knee + np.array([35, 0, -5]),
    }
    values = measure_alignment(points, "right", VOLUME_GEOMETRY, "hand-made").values()
    expected_hka = 180.0 - np.degrees(np.arctan2(20, 420) + np.arctan2(20, 380))

    assert values["hka_deg"] == pytest.approx(expected_hka, abs=1e-3)
    assert values["hka_deg"] < 180.0
    assert values["mad_mm"] == pytest.approx(20.0, abs=1e-3)
    # The same knee measured as a left leg contradicts the condyle labels: refused.
    with pytest.raises(LandmarkError, match="side or the labels are wrong"):
        measure_alignment(points, "left", VOLUME_GEOMETRY, "hand-made")


def test_uncalibrated_alignment_keeps_angles_and_refuses_mad() -> None:
    points, expected = alignment_landmarks("left", 88.0, 86.0)
    table = measure_alignment(points, "left", UNCALIBRATED, "RG3_JPLL.dcm")
    assert table.values()["hka_deg"] == pytest.approx(expected["hka_deg"], abs=2e-3)
    assert "mad_mm" not in table.values()
    assert "RG3_JPLL.dcm is not calibrated" in table.not_measured["mad_mm"]


def test_missing_landmarks_leave_out_only_the_values_that_need_them() -> None:
    points, expected = alignment_landmarks("right", 88.0, 86.0)
    incomplete = {k: v for k, v in points.items() if k != "ankle_center"}
    table = measure_alignment(incomplete, "right", VOLUME_GEOMETRY, "1.2.840.99")
    values = table.values()
    assert set(values) == {"mldfa_deg", "jlca_deg"}
    assert values["mldfa_deg"] == pytest.approx(expected["mldfa_deg"], abs=2e-3)
    for key in ("hka_deg", "mpta_deg", "mad_mm"):
        assert table.not_measured[key] == "missing landmark(s) ankle_center", key


def test_the_four_centres_alone_give_hka_and_mad() -> None:
    points, expected = alignment_landmarks("left", 91.0, 84.0, 2.5)
    centres = ("hip_center", "knee_center_femur", "knee_center_tibia", "ankle_center")
    table = measure_alignment({k: points[k] for k in centres}, "left", VOLUME_GEOMETRY, "ct")
    values = table.values()
    assert set(values) == {"hka_deg", "mad_mm"}
    assert values["hka_deg"] == pytest.approx(expected["hka_deg"], abs=2e-3)
    assert values["mad_mm"] == pytest.approx(expected["mad_mm"], abs=2e-3)
    assert table.not_measured == {
        "mldfa_deg": "missing landmark(s) femoral_condyle_medial, femoral_condyle_lateral",
        "mpta_deg": "missing landmark(s) tibial_plateau_medial, tibial_plateau_lateral",
        "jlca_deg": "missing landmark(s) femoral_condyle_medial, femoral_condyle_lateral, "
        "tibial_plateau_medial, tibial_plateau_lateral",
    }
    # The full set gives the same HKA and MAD, with the same uncertainty.
    full = measure_alignment(points, "left", VOLUME_GEOMETRY, "ct")
    assert full.by_key("hka_deg")[0].uncertainty == table.by_key("hka_deg")[0].uncertainty


def test_off_plane_sets_are_refused() -> None:
    points, _ = alignment_landmarks("right", 88.0, 86.0)
    # Points of a radiograph loaded in the axial plane: the leg runs along y.
    axial = {k: np.array([v[0], v[2], 0.0]) for k, v in points.items()}
    with pytest.raises(LandmarkError, match="frontal plane"):
        measure_alignment(axial, "right", VOLUME_GEOMETRY, "case.mrk.json")


def test_alignment_on_non_square_radiograph_pixels() -> None:
    # Landmarks built in mm, then expressed as pixels of a 0.15 x 0.2 mm grid (AP, L/F).
    points, expected = alignment_landmarks("right", 90.0, 85.0, 1.0)
    spacing = (0.15, 0.2)
    pixels = {k: np.array([-v[2] / spacing[0], -v[0] / spacing[1]]) for k, v in points.items()}
    calibration = Calibration("pixel_spacing", spacing)
    ras = {k: pixels_to_ras_mm(v, calibration, ["L", "F"]) for k, v in pixels.items()}
    values = measure_alignment(ras, "right", calibration, "dx").values()
    assert values["hka_deg"] == pytest.approx(expected["hka_deg"], abs=2e-3)
    assert values["mad_mm"] == pytest.approx(expected["mad_mm"], abs=2e-3)
    # Uncalibrated, the pixel aspect alone still gives the right angles.
    detector_only = Calibration("uncalibrated", detector_mm_per_pixel=spacing)
    ras = {k: pixels_to_ras_mm(v, detector_only, ["L", "F"]) for k, v in pixels.items()}
    assert measure_alignment(ras, "right", detector_only, "dx").values()[
        "mpta_deg"
    ] == pytest.approx(85.0, abs=2e-3)


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("tilt", [0.0, 7.0])
def test_hip_matches_the_construction_values(side: str, tilt: float) -> None:
    points, expected = hip_landmarks(side, 128.0, 41.0, 43.0, -7.5, pelvic_tilt_deg=tilt)
    table = measure_hip(points, side, VOLUME_GEOMETRY, "pelvis")
    values = table.values()
    assert values["ccd_deg"] == pytest.approx(expected["ccd_deg"], abs=1e-3)
    assert values["femoral_offset_mm"] == pytest.approx(expected["femoral_offset_mm"], abs=1e-3)
    assert values["cup_inclination_deg"] == pytest.approx(expected["cup_inclination_deg"], abs=1e-3)
    assert values["lld_mm"] == pytest.approx(expected["lld_mm"], abs=1e-3)
    assert not table.not_measured


def test_hip_partial_landmarks_and_uncalibrated_lengths() -> None:
    points, _ = hip_landmarks("right", 130.0, 40.0, 40.0, 5.0)
    del points["teardrop_left"]
    table = measure_hip(points, "right", UNCALIBRATED, "RG1_J2KI.dcm")
    assert set(table.values()) == {"ccd_deg"}
    assert "teardrop_left" in table.not_measured["cup_inclination_deg"]
    assert "not calibrated" in table.not_measured["femoral_offset_mm"]


def test_hip_with_head_and_neck_only_names_what_each_value_lacks() -> None:
    points, _ = hip_landmarks("right", 130.0, 40.0, 40.0, 5.0)
    placed = {k: points[k] for k in ("femoral_head_center", "femoral_neck_center")}
    table = measure_hip(placed, "right", VOLUME_GEOMETRY, "1.2.840.99")
    assert table.rows == []
    assert table.not_measured == {
        "femoral_offset_mm": "missing landmark(s) femoral_shaft_proximal, femoral_shaft_distal",
        "cup_inclination_deg": "missing landmark(s) acetabulum_lateral_edge, "
        "acetabulum_inferior_edge, teardrop_left, teardrop_right",
        "ccd_deg": "missing landmark(s) femoral_shaft_proximal, femoral_shaft_distal",
        "lld_mm": "missing landmark(s) teardrop_left, teardrop_right, lesser_trochanter_left, "
        "lesser_trochanter_right",
    }
    # With the shaft axis added, the CCD angle and the offset are measured.
    placed.update({k: points[k] for k in ("femoral_shaft_proximal", "femoral_shaft_distal")})
    assert set(measure_hip(placed, "right", VOLUME_GEOMETRY, "ct").values()) == {
        "femoral_offset_mm",
        "ccd_deg",
    }


def test_head_centre_from_surface_points_replaces_the_landmark() -> None:
    points, expected = hip_landmarks("left", 132.0, 38.0, 45.0, 0.0)
    center = points.pop("femoral_head_center")
    rng = np.random.default_rng(3)
    angles = rng.uniform(0.3, 2.6, 12)
    # Points on the head's outline in the frontal plane (a radiograph): a circle fit.
    for i, a in enumerate(angles):
        points[f"femoral_head_surface_{i}"] = center + 24.0 * np.array([np.cos(a), 0, np.sin(a)])
    values = measure_hip(points, "left", VOLUME_GEOMETRY, "x").values()
    assert values["femoral_offset_mm"] == pytest.approx(expected["femoral_offset_mm"], abs=1e-3)


def test_sphere_fit_to_noisy_cap_points_and_to_a_mask() -> None:
    rng = np.random.default_rng(0)
    center, radius = np.array([12.0, -40.0, 95.0]), 23.5
    directions = rng.normal(size=(300, 3))
    directions[:, 2] = np.abs(directions[:, 2])  # only the upper half, as on a real head
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    points = center + radius * directions + rng.normal(0, 0.3, (300, 3))
    fit = fit_sphere(points)
    assert np.linalg.norm(fit.center_ras_mm - center) < 0.15
    assert fit.radius_mm == pytest.approx(radius, abs=0.1)
    assert fit.rms_residual_mm == pytest.approx(0.3, abs=0.06)
    assert hip_center_from_surface_points(points).radius_mm == pytest.approx(fit.radius_mm)

    spacing = np.array([0.8, 0.8, 1.2])
    k, j, i = np.mgrid[0:60, 0:80, 0:80]
    ijk_to_ras = np.diag([*spacing, 1.0])
    ijk_to_ras[:3, 3] = [-30.0, 10.0, -20.0]
    ras = np.stack([i, j, k], -1) * spacing + ijk_to_ras[:3, 3]
    true_center = np.array([1.3, 42.1, 14.7])
    mask = np.linalg.norm(ras - true_center, axis=-1) <= 22.0
    fit = fit_sphere_to_mask(mask, ijk_to_ras)
    assert np.linalg.norm(fit.center_ras_mm - true_center) < 0.1
    assert fit.radius_mm == pytest.approx(22.0, abs=0.8)
    with pytest.raises(ValueError, match="coplanar"):
        fit_sphere(np.c_[rng.normal(size=(10, 2)), np.zeros(10)])


def test_hip_center_fitted_from_head_surface_points_in_ct() -> None:
    points, expected = alignment_landmarks("left", 88.0, 86.0, 0.5)
    center = points.pop("hip_center")
    rng = np.random.default_rng(8)
    directions = rng.normal(size=(40, 3))
    directions[:, 2] = np.abs(directions[:, 2])
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    for i, direction in enumerate(directions):
        points[f"femoral_head_surface_{i}"] = center + 23.0 * direction
    values = measure_alignment(points, "left", VOLUME_GEOMETRY, "ct").values()
    assert values["hka_deg"] == pytest.approx(expected["hka_deg"], abs=2e-3)

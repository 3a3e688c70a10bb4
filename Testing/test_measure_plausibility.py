"""Anatomically impossible landmark sets are refused with the reason, never reported."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from MSKPlannerLib.calibration import pixels_to_ras_mm
from MSKPlannerLib.case_measures import ALIGNMENT_KEYS, _measure_from_landmarks
from MSKPlannerLib.landmarks import LandmarkError, LandmarkSet, write_markups_json
from MSKPlannerLib.measure_alignment import measure_alignment
from MSKPlannerLib.measure_hip import measure_hip
from MSKPlannerLib.measurement_nodes import LiveMeasurement, load_landmark_file, measure_landmarks
from MSKPlannerLib.measurement_phantoms import alignment_landmarks, hip_landmarks
from MSKPlannerLib.measurement_table import UNCALIBRATED, VOLUME_GEOMETRY, MeasurementTable
from MSKPriorsLib.app_context import AppContext
from mskworkbench.cli import main
from mskworkbench.web.measurements import LiveLandmarks


def _swapped(points: dict, first: str, second: str) -> dict:
    swapped = dict(points)
    swapped[first], swapped[second] = points[second], points[first]
    return swapped


@pytest.mark.parametrize("side", ["left", "right"])
def test_hip_and_ankle_swapped_are_refused_naming_them_and_the_image(side: str) -> None:
    points, _ = alignment_landmarks(side, 88.0, 86.0, 1.0)
    swapped = _swapped(points, "hip_center", "ankle_center")
    with pytest.raises(LandmarkError) as refusal:
        measure_alignment(swapped, side, VOLUME_GEOMETRY, "long_leg.dcm")
    message = str(refusal.value)
    assert "long_leg.dcm" in message
    assert "hip_center" in message and "must be proximal (superior)" in message


def test_a_knee_centre_below_the_ankle_is_refused() -> None:
    points, _ = alignment_landmarks("right", 88.0, 86.0)
    swapped = _swapped(points, "knee_center_tibia", "ankle_center")
    with pytest.raises(LandmarkError, match=r"knee_center_tibia lies .* distal to ankle_center"):
        measure_alignment(swapped, "right", VOLUME_GEOMETRY, "ct")


def test_swapped_plateau_labels_are_refused_like_swapped_condyles() -> None:
    points, _ = alignment_landmarks("left", 88.0, 86.0)
    swapped = _swapped(points, "tibial_plateau_medial", "tibial_plateau_lateral")
    with pytest.raises(LandmarkError, match="tibial_plateau_medial lies lateral"):
        measure_alignment(swapped, "left", VOLUME_GEOMETRY, "ct")


def test_an_angle_no_limb_has_is_listed_as_not_measured_with_its_landmarks() -> None:
    points, _ = alignment_landmarks("right", 88.0, 86.0)
    bent = dict(points)
    # Both knee centres 400 mm lateral (+x for a right leg): the order along the limb holds,
    # but the angle at the knee cannot occur.
    for label in ("knee_center_femur", "knee_center_tibia"):
        bent[label] = points[label] + np.array([400.0, 0.0, 0.0])
    table = measure_alignment(bent, "right", VOLUME_GEOMETRY, "ct-series")
    assert "hka_deg" not in table.values()
    reason = table.not_measured["hka_deg"]
    assert "cannot occur" in reason and "hip_center" in reason and "ct-series" in reason


def test_the_superior_axis_of_each_radiograph_frame_is_respected() -> None:
    points, expected = alignment_landmarks("right", 89.0, 85.0, 1.0)
    calibration = VOLUME_GEOMETRY
    # A radiograph hung upside down (rows toward the head): its pixel rows run the other way.
    rows_cols = {k: (v[2] / 1.0, -v[0] / 1.0) for k, v in points.items()}
    upside_down = {k: pixels_to_ras_mm(rc, calibration, ["L", "H"]) for k, rc in rows_cols.items()}
    values = measure_alignment(upside_down, "right", calibration, "rg").values()
    assert values["hka_deg"] == pytest.approx(expected["hka_deg"], abs=2e-3)

    # A radiograph loaded into the axial plane: superior is anterior (+y) there.
    axial = {k: np.array([v[0], v[2], 0.0]) for k, v in points.items()}
    table = measure_landmarks(
        "alignment", LandmarkSet(axial, side="right"), None, UNCALIBRATED, "dx"
    )
    assert table.values()["hka_deg"] == pytest.approx(expected["hka_deg"], abs=2e-3)
    swapped = _swapped(axial, "hip_center", "ankle_center")
    with pytest.raises(LandmarkError, match="hip_center lies"):
        measure_landmarks("alignment", LandmarkSet(swapped, side="right"), None, UNCALIBRATED, "dx")


@pytest.mark.parametrize("side", ["left", "right"])
def test_swapped_shaft_points_refuse_offset_and_ccd_but_not_the_pelvis(side: str) -> None:
    points, expected = hip_landmarks(side, 128.0, 41.0, 43.0, -7.5)
    swapped = _swapped(points, "femoral_shaft_proximal", "femoral_shaft_distal")
    table = measure_hip(swapped, side, VOLUME_GEOMETRY, "pelvis.dcm")
    values = table.values()
    assert "ccd_deg" not in values and "femoral_offset_mm" not in values
    for key in ("ccd_deg", "femoral_offset_mm"):
        assert "femoral_shaft_proximal" in table.not_measured[key]
        assert "pelvis.dcm" in table.not_measured[key]
    assert values["cup_inclination_deg"] == pytest.approx(expected["cup_inclination_deg"], abs=1e-3)
    assert values["lld_mm"] == pytest.approx(expected["lld_mm"], abs=1e-3)


def test_a_neck_centre_beyond_the_head_refuses_the_ccd_angle() -> None:
    points, expected = hip_landmarks("right", 128.0, 41.0, 43.0, 0.0)
    moved = dict(points)
    # Past the head centre, medially (-x for a right hip).
    moved["femoral_neck_center"] = points["femoral_head_center"] + np.array([-15.0, 0.0, 5.0])
    table = measure_hip(moved, "right", VOLUME_GEOMETRY, "pelvis")
    assert "ccd_deg" not in table.values()
    assert "femoral_neck_center does not lie between" in table.not_measured["ccd_deg"]
    assert table.values()["femoral_offset_mm"] == pytest.approx(
        expected["femoral_offset_mm"], abs=1e-3
    )


def test_a_hip_measured_as_the_other_side_is_refused() -> None:
    points, _ = hip_landmarks("right", 128.0, 41.0, 43.0, 0.0)
    table = measure_hip(points, "left", VOLUME_GEOMETRY, "pelvis")
    assert "lateral to the femoral shaft axis" in table.not_measured["ccd_deg"]
    assert "femoral_offset_mm" in table.not_measured


@pytest.mark.parametrize("ccd", [80.0, 175.0])
def test_a_ccd_angle_outside_the_possible_range_is_not_reported(ccd: float) -> None:
    points, _ = hip_landmarks("left", 130.0, 41.0, 43.0, 0.0)
    head = points["femoral_head_center"][[0, 2]]
    shaft = (points["femoral_shaft_distal"] - points["femoral_shaft_proximal"])[[0, 2]]
    shaft /= np.linalg.norm(shaft)
    # The neck axis (neck centre to head centre) at ``ccd`` degrees from the shaft, pointing
    # medially (+x for a left hip); the neck centre 20 mm from the head along it.
    turned = []
    for sign in (1.0, -1.0):
        angle = np.radians(sign * ccd)
        rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        turned.append(rotation @ shaft)
    neck_axis = max(turned, key=lambda axis: axis[0])
    neck = head - 20.0 * neck_axis
    candidate = dict(points, femoral_neck_center=np.array([neck[0], 0.0, neck[1]]))
    table = measure_hip(candidate, "left", VOLUME_GEOMETRY, "pelvis")
    assert "ccd_deg" not in table.values()
    assert f"{ccd:.1f} deg" in table.not_measured["ccd_deg"]
    assert "cannot occur" in table.not_measured["ccd_deg"]


def test_the_plan_lists_refused_alignment_values_as_not_measured() -> None:
    points, _ = alignment_landmarks("left", 88.0, 86.0)
    landmarks = LandmarkSet(_swapped(points, "hip_center", "ankle_center"), side="left")
    state = SimpleNamespace(table=MeasurementTable())
    _measure_from_landmarks(state, landmarks, VOLUME_GEOMETRY, "1.2.3.4")  # type: ignore[arg-type]
    for key in ALIGNMENT_KEYS:
        assert not state.table.by_key(key)
        assert "hip_center" in state.table.not_measured[key]
        assert "1.2.3.4" in state.table.not_measured[key]


def test_live_tables_and_the_viewer_show_the_reason(
    app_context: AppContext, tmp_path: Path
) -> None:
    points, _ = alignment_landmarks("right", 88.0, 86.0)
    swapped = _swapped(points, "hip_center", "ankle_center")
    path = tmp_path / "knee.mrk.json"
    write_markups_json(path, swapped, name="Right leg")
    nodes = load_landmark_file(app_context.markups_logic, app_context.scene, path)
    live = LiveMeasurement(app_context.scene, "alignment", nodes, VOLUME_GEOMETRY, "1.2.3")
    assert "hip_center" in (live.error or "")
    definitions = live.table_node.GetTable().GetColumnByName("definition")
    assert "must be proximal" in definitions.GetValue(0)
    live.stop()

    viewer = LiveLandmarks(app_context)
    viewer.attach("1.2.3", VOLUME_GEOMETRY, side="right")
    viewer.set_kind("alignment")
    for label, position in swapped.items():
        viewer.set_position(label, position)
    shown = viewer.table_rows()
    assert shown["rows"] == []
    assert any("hip_center" in reason for reason in shown["not_measured"])
    viewer.detach()


def test_the_command_refuses_swapped_landmarks_with_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    points, _ = alignment_landmarks("left", 88.0, 86.0)
    path = tmp_path / "long_leg_left.mrk.json"
    write_markups_json(path, _swapped(points, "hip_center", "ankle_center"))
    status = main(["measure", "alignment", "--landmarks", str(path), "--volume"])
    error = capsys.readouterr().err.strip()
    assert status != 0
    assert len(error.splitlines()) == 1 and "hip_center" in error

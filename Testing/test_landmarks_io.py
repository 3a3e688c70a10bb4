"""Landmark files: Slicer's markups JSON in LPS and RAS, sides, and loading into real MRML."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from MSKPlannerLib.landmarks import (
    LandmarkError,
    frontal_plane_mm,
    landmarks_from_nodes,
    medial_direction_frontal,
    read_landmark_files,
    read_markups_json,
    side_from_text,
    write_markups_json,
)
from MSKPlannerLib.measurement_nodes import load_landmark_file
from MSKPriorsLib.app_context import AppContext


def _write_with_slicer(context: AppContext, node: object, path: Path) -> None:
    storage = node.CreateDefaultStorageNode()
    context.scene.AddNode(storage)
    node.SetAndObserveStorageNodeID(storage.GetID())
    storage.SetFileName(str(path))
    assert storage.WriteData(node) == 1


def test_a_file_written_by_slicer_reads_back_in_ras(
    app_context: AppContext, tmp_path: Path
) -> None:
    node = app_context.scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "leg")
    node.AddControlPoint(10.0, -20.0, 30.0, "hip_center")
    node.AddControlPoint(-4.0, 5.0, -600.0, "ankle_center")
    path = tmp_path / "right_leg.mrk.json"
    _write_with_slicer(app_context, node, path)

    document = json.loads(path.read_text())
    assert document["markups"][0]["coordinateSystem"] == "LPS"  # Slicer writes LPS
    landmarks = read_markups_json(path)

    np.testing.assert_allclose(landmarks.points_ras_mm["hip_center"], [10.0, -20.0, 30.0])
    np.testing.assert_allclose(landmarks.points_ras_mm["ankle_center"], [-4.0, 5.0, -600.0])
    assert landmarks.side == "right"  # from the file name, as Slicer names the node after it


@pytest.mark.parametrize("system", ["LPS", "RAS"])
def test_our_files_load_into_slicer_at_the_same_place(
    app_context: AppContext, tmp_path: Path, system: str
) -> None:
    points = {"hip_center": np.array([12.5, -3.0, 40.0]), "ankle_center": np.array([1.0, 2, -700])}
    lines = {"L1-superior": np.array([[0.0, 0.0, 0.0], [40.0, 0.0, 3.0]])}
    path = tmp_path / "case.mrk.json"
    write_markups_json(path, points, lines, name="left leg", coordinate_system=system)

    nodes = load_landmark_file(app_context.markups_logic, app_context.scene, path)
    from_scene = landmarks_from_nodes(nodes)

    assert [n.GetName() for n in nodes] == ["left leg", "L1-superior"]
    for label, position in points.items():
        np.testing.assert_allclose(from_scene.points_ras_mm[label], position, atol=1e-9)
    np.testing.assert_allclose(from_scene.lines_ras_mm["L1-superior"], lines["L1-superior"])
    assert from_scene.side == "left"
    again = read_markups_json(path)
    np.testing.assert_allclose(again.points_ras_mm["hip_center"], points["hip_center"])


def test_micrometre_units_and_undefined_points(tmp_path: Path) -> None:
    path = tmp_path / "knee.mrk.json"
    path.write_text(
        json.dumps(
            {
                "@schema": "x",
                "markups": [
                    {
                        "type": "Fiducial",
                        "coordinateSystem": "RAS",
                        "coordinateUnits": "um",
                        "description": "Right knee",
                        "controlPoints": [
                            {"label": "knee_center_femur", "position": [1000.0, 0.0, -2000.0]},
                            {
                                "label": "ankle_center",
                                "position": [0.0, 0.0, 0.0],
                                "positionStatus": "undefined",
                            },
                        ],
                    }
                ],
            }
        )
    )
    landmarks = read_markups_json(path)
    np.testing.assert_allclose(landmarks.points_ras_mm["knee_center_femur"], [1.0, 0.0, -2.0])
    assert "ankle_center" not in landmarks.points_ras_mm
    assert landmarks.side == "right"


def test_bad_files_are_refused_with_their_name(tmp_path: Path) -> None:
    broken = tmp_path / "broken.mrk.json"
    broken.write_text("{not json")
    with pytest.raises(LandmarkError, match=r"broken\.mrk\.json"):
        read_markups_json(broken)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"points": []}))
    with pytest.raises(LandmarkError, match="no 'markups' list"):
        read_markups_json(other)
    odd = tmp_path / "odd.mrk.json"
    odd.write_text(json.dumps({"markups": [{"type": "Fiducial", "coordinateSystem": "XYZ"}]}))
    with pytest.raises(LandmarkError, match="XYZ"):
        read_markups_json(odd)


def test_side_words_and_conflicts(tmp_path: Path) -> None:
    assert side_from_text("Left leg") == "left"
    assert side_from_text("knee_R") == "right"
    assert side_from_text("L1-superior", "T12-inferior") is None
    assert side_from_text("bright light") is None
    with pytest.raises(LandmarkError, match="both sides"):
        side_from_text("left", "right knee")
    write_markups_json(tmp_path / "a_left.mrk.json", {"hip_center": np.zeros(3)})
    write_markups_json(tmp_path / "b_right.mrk.json", {"ankle_center": np.zeros(3)})
    with pytest.raises(LandmarkError, match="marked"):
        read_landmark_files([tmp_path / "a_left.mrk.json", tmp_path / "b_right.mrk.json"])


def test_a_right_limbs_medial_side_points_to_the_midline(tmp_path: Path) -> None:
    # In RAS, +x is the patient's right: a right knee lies at x > 0 and its medial side
    # (toward the midline, x = 0) is toward -x; for a left knee it is +x.
    right_knee = frontal_plane_mm([80.0, 0.0, -450.0])
    left_knee = frontal_plane_mm([-80.0, 0.0, -450.0])
    midline = np.array([0.0, -450.0])
    assert (midline - right_knee) @ medial_direction_frontal("right") > 0
    assert (midline - left_knee) @ medial_direction_frontal("left") > 0

    # An LPS file (DICOM convention, +x toward the patient's left) holds the right knee at x < 0.
    path = tmp_path / "right.mrk.json"
    write_markups_json(path, {"knee_center_femur": np.array([80.0, 0.0, -450.0])})
    stored = json.loads(path.read_text())["markups"][0]["controlPoints"][0]["position"]
    assert stored[0] == -80.0
    assert read_markups_json(path).points_ras_mm["knee_center_femur"][0] == 80.0

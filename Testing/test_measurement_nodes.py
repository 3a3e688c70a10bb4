"""Live measurements on real slicer-core MRML: moving a markups point updates the table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from MSKPlannerLib.landmarks import write_markups_json
from MSKPlannerLib.measurement_nodes import LiveMeasurement, load_landmark_file, write_table_node
from MSKPlannerLib.measurement_phantoms import alignment_landmarks, endplate_lines, spine_phantom
from MSKPlannerLib.measurement_table import UNCALIBRATED, VOLUME_GEOMETRY, MeasurementTable
from MSKPriorsLib.app_context import AppContext


def _table_rows(table_node: object) -> dict[str, tuple[float, str]]:
    table = table_node.GetTable()
    keys = table.GetColumnByName("key")
    values = table.GetColumnByName("value")
    definitions = table.GetColumnByName("definition")
    return {
        keys.GetValue(i): (values.GetValue(i), definitions.GetValue(i))
        for i in range(table.GetNumberOfRows())
    }


def test_moving_a_point_updates_the_alignment_table(
    app_context: AppContext, tmp_path: Path
) -> None:
    points, expected = alignment_landmarks("right", 88.0, 86.0, 1.0)
    path = tmp_path / "knee.mrk.json"
    write_markups_json(path, points, name="Right leg")
    nodes = load_landmark_file(app_context.markups_logic, app_context.scene, path)
    updates: list[MeasurementTable] = []
    live = LiveMeasurement(
        app_context.scene,
        "alignment",
        nodes,
        VOLUME_GEOMETRY,
        "knee.mrk.json",
        json_path=tmp_path / "table.json",
        on_update=updates.append,
    )

    rows = _table_rows(live.table_node)
    assert rows["hka_deg"][0] == pytest.approx(expected["hka_deg"], abs=1e-3)
    assert app_context.scene.GetNodeByID(live.table_node.GetID()) is live.table_node

    # Move the ankle 30 mm medially (toward -x, the midline, for a right leg): the knee then
    # lies further lateral of the hip-ankle line, so the leg turns more varus.
    fiducials = nodes[0]
    index = fiducials.GetControlPointIndexByLabel("ankle_center")
    position = np.array(fiducials.GetNthControlPointPosition(index))
    fiducials.SetNthControlPointPosition(index, *(position + np.array([-30.0, 0.0, 0.0])))

    moved = _table_rows(live.table_node)["hka_deg"][0]
    assert moved < expected["hka_deg"] - 3.0
    assert len(updates) >= 2
    on_disk = MeasurementTable.read_json(tmp_path / "table.json")
    assert on_disk.values()["hka_deg"] == pytest.approx(moved, abs=1e-9)
    assert on_disk.by_key("hka_deg")[0].calibration == VOLUME_GEOMETRY

    # Removing a landmark leaves out the values that need it, with the reason; the others stay.
    fiducials.RemoveNthControlPoint(fiducials.GetControlPointIndexByLabel("hip_center"))
    assert live.error is None
    assert live.table.not_measured["hka_deg"] == "missing landmark(s) hip_center"
    assert set(live.table.values()) == {"mpta_deg", "jlca_deg"}
    assert (
        _table_rows(live.table_node)["mldfa_deg"][1]
        == "not measured: missing landmark(s) hip_center"
    )
    live.stop()
    count = len(updates)
    fiducials.SetNthControlPointPosition(0, 0.0, 0.0, 0.0)
    assert len(updates) == count


def test_cobb_follows_endplate_lines(app_context: AppContext, tmp_path: Path) -> None:
    phantom = spine_phantom([0.0, 6.0, -6.0])
    path = tmp_path / "spine.mrk.json"
    write_markups_json(path, lines_ras_mm=endplate_lines(phantom))
    nodes = load_landmark_file(app_context.markups_logic, app_context.scene, path)
    live = LiveMeasurement(app_context.scene, "cobb", nodes, UNCALIBRATED, "spine")
    assert live.table.values()["cobb_deg"] == pytest.approx(12.0, abs=1e-3)

    line = next(n for n in nodes if n.GetName() == "T12-inferior")
    start = np.array(line.GetNthControlPointPosition(0))
    line.SetNthControlPointPosition(
        0, *(start + np.array([0.0, 0.0, 4.0]))
    )  # tilt the lowest endplate
    assert live.table.values()["cobb_deg"] > 14.0
    live.stop()


def test_table_node_lists_rows_and_refusals(app_context: AppContext) -> None:
    points, _ = alignment_landmarks("left", 87.0, 87.0)
    from MSKPlannerLib.measure_alignment import measure_alignment

    table = measure_alignment(points, "left", UNCALIBRATED, "RG3_JPLL.dcm")
    node = write_table_node(app_context.scene, table)
    rows = _table_rows(node)
    assert set(rows) == {"hka_deg", "mldfa_deg", "mpta_deg", "jlca_deg", "mad_mm"}
    assert np.isnan(rows["mad_mm"][0])
    assert rows["mad_mm"][1].startswith("not measured: RG3_JPLL.dcm is not calibrated")
    assert json.loads(json.dumps(table.to_dict()))["not_measured"]["mad_mm"]


def test_landmarks_on_a_radiograph_as_slicer_loads_it(
    app_context: AppContext, shared_data: Path
) -> None:
    import vtk

    from MSKPlannerLib.calibration import read_radiograph
    from MSKPlannerLib.landmarks import LandmarkSet
    from MSKPlannerLib.measurement_nodes import measure_landmarks

    path = shared_data / "highdicom" / "dx_image.dcm"
    node = app_context.volumes_logic.AddArchetypeVolume(str(path), "dx")
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    ijk_to_ras = np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])
    # Slicer puts a radiograph without orientation in an axial plane: columns toward the
    # patient's left (-x), rows toward -y, with the detector spacing (row 1.2, column 1.2012).
    np.testing.assert_allclose(np.diag(ijk_to_ras)[:3], [-1.2012, -1.2, 1.0], atol=1e-6)

    points, expected = alignment_landmarks("right", 89.0, 85.0, 1.0)
    spacing = (1.2, 1.2012)
    rows_cols = {k: (-v[2] / spacing[0], -v[0] / spacing[1]) for k, v in points.items()}
    placed = {k: (ijk_to_ras @ [c, r, 0.0, 1.0])[:3] for k, (r, c) in rows_cols.items()}
    calibration = read_radiograph(path).calibration
    table = measure_landmarks(
        "alignment", LandmarkSet(points_ras_mm=placed, side="right"), None, calibration, "dx"
    )
    assert table.values()["hka_deg"] == pytest.approx(expected["hka_deg"], abs=2e-3)
    assert table.values()["mpta_deg"] == pytest.approx(expected["mpta_deg"], abs=2e-3)
    assert "not calibrated" in table.not_measured["mad_mm"]

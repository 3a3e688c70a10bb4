"""The MSK Planner panel's logic, run headless on real slicer-core MRML and real radiographs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import vtk

from MSKPlannerLib.landmarks import write_markups_json
from MSKPlannerLib.measurement_nodes import load_landmark_file
from MSKPlannerLib.measurement_phantoms import alignment_landmarks
from MSKPlannerLib.planner_logic import PlannerLogic
from MSKPriorsLib import mrml_volumes
from MSKPriorsLib.app_context import AppContext
from MSKPriorsLib.series_loader import load_series

#: Points on the acetabular outline of the real hip radiograph RG2 (column, row).
RG2_RIM_PX = [(975, 718), (900, 727), (820, 747), (770, 800), (760, 880), (780, 960)]


def _cylinder_ct(context: AppContext) -> object:
    """A 40 mm long bone cylinder of radius 8 mm (1000 HU) in soft tissue (40 HU), 1 mm voxels."""
    k, j, i = np.mgrid[0:50, 0:40, 0:40]
    inside = ((i - 20) ** 2 + (j - 20) ** 2 < 8**2) & (k >= 5) & (k < 45)
    hounsfield = np.where(inside, 1000, 40).astype(np.int16)
    ijk_to_ras = np.diag([-1.0, -1.0, 1.0, 1.0])
    return mrml_volumes.add_volume_from_array(context.scene, hounsfield, ijk_to_ras, "CT")


def _leg_landmarks_node(context: AppContext, folder: Path, mldfa_deg: float, mpta_deg: float):
    points, expected = alignment_landmarks("left", mldfa_deg, mpta_deg)
    path = folder / "leg_left.mrk.json"
    write_markups_json(path, points, name="leg left")
    return load_landmark_file(context.markups_logic, context.scene, path)[0], expected


def _rows_by_key(rows: list[tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    return {row[0]: row for row in rows}


def test_reconstruct_a_generated_bone(app_context: AppContext) -> None:
    logic = PlannerLogic(app_context)
    volume = _cylinder_ct(app_context)

    rows = logic.reconstruct(volume, "cortical")

    assert len(rows) == 1
    _name, volume_ml, area_cm2, closed = rows[0]
    assert closed
    assert volume_ml == pytest.approx(np.pi * 8**2 * 40 / 1000, rel=0.05)
    assert area_cm2 > 0


def test_alignment_is_live_when_a_landmark_moves(app_context: AppContext, tmp_path: Path) -> None:
    logic = PlannerLogic(app_context)
    node, expected = _leg_landmarks_node(app_context, tmp_path, mldfa_deg=87.0, mpta_deg=87.0)
    updates: list[float] = []

    rows = _rows_by_key(
        logic.measure("alignment", node, "left", on_update=lambda t: updates.append(1))
    )
    hka_before = float(rows["hka_deg"][1])
    index = node.GetControlPointIndexByLabel("ankle_center")
    position = vtk.vtkVector3d()
    node.GetNthControlPointPosition(index, position)
    node.SetNthControlPointPosition(index, position[0] + 30.0, position[1], position[2])
    hka_after = logic.tables["alignment"].by_key("hka_deg")[0].value

    assert hka_before == pytest.approx(expected["hka_deg"], abs=0.1)
    assert updates, "moving a point must recompute the table"
    assert abs(hka_after - hka_before) > 1.0


def test_radiograph_lengths_need_a_calibration(
    app_context: AppContext, shared_data: Path, tmp_path: Path
) -> None:
    logic = PlannerLogic(app_context)
    uncalibrated = load_series(app_context, shared_data / "wg04" / "RG3_JPLL.dcm").volume_node
    node, _ = _leg_landmarks_node(app_context, tmp_path, mldfa_deg=87.0, mpta_deg=85.0)

    rows = _rows_by_key(logic.measure("alignment", node, "left", image_node=uncalibrated))

    assert rows["hka_deg"][4] == "uncalibrated"
    assert rows["mad_mm"][1] == "not measured"
    assert "calibrat" in rows["mad_mm"][3]


def test_known_length_points_off_the_radiograph_are_refused(
    app_context: AppContext, shared_data: Path
) -> None:
    logic = PlannerLogic(app_context)
    radiograph = load_series(app_context, shared_data / "wg04" / "RG3_JPLL.dcm").volume_node
    ijk_to_ras = mrml_volumes.ijk_to_ras_of(radiograph)
    on_image = (ijk_to_ras @ np.array([10.0, 10.0, 0.0, 1.0]))[:3]
    off_image = (ijk_to_ras @ np.array([10.0, 99999.0, 0.0, 1.0]))[:3]

    with pytest.raises(ValueError, match=r"second point .* lies outside the image of 1760 rows"):
        logic.calibrate(
            radiograph,
            "known_length",
            known_length_mm=50.0,
            known_points_ras_mm=np.stack([on_image, off_image]),
        )
    assert radiograph.GetID() not in logic.calibrations


def test_tag_calibration_and_cup_template_on_the_real_hip_radiograph(
    app_context: AppContext, shared_data: Path, tmp_path: Path
) -> None:
    path = shared_data / "wg04" / "RG2_JPLL.dcm"
    logic = PlannerLogic(app_context)
    radiograph = load_series(app_context, path).volume_node
    ijk_to_ras = mrml_volumes.ijk_to_ras_of(radiograph)
    rim_ras = {
        f"acetabulum_rim_{n}": (ijk_to_ras @ np.array([c, r, 0.0, 1.0]))[:3]
        for n, (c, r) in enumerate(RG2_RIM_PX)
    }
    write_markups_json(tmp_path / "hip_left.mrk.json", rim_ras, name="hip left")
    rim_node = load_landmark_file(
        app_context.markups_logic, app_context.scene, tmp_path / "hip_left.mrk.json"
    )[0]

    with pytest.raises(Exception, match=r"(?i)calibrat"):
        logic.template(radiograph, rim_node, "cup")
    text = logic.calibrate(radiograph, "tags", dicom_file=path)
    suggestion = logic.template(radiograph, rim_node, "cup", side="left")

    assert text.startswith("pixel_spacing")
    assert "size" in suggestion
    outline = app_context.scene.GetFirstNodeByClass("vtkMRMLMarkupsClosedCurveNode")
    assert outline is not None and outline.GetNumberOfControlPoints() > 10


def test_automatic_cobb_from_real_vertebra_labels(
    app_context: AppContext, shared_data: Path
) -> None:
    import SimpleITK as sitk

    folder = shared_data / "totalsegmentator"
    names = {int(k): v for k, v in json.loads((folder / "label_names.json").read_text()).items()}
    labels = sitk.ReadImage(str(folder / "ct_volume_vertebrae_labels.nii.gz"))
    labelmap = mrml_volumes.add_volume_from_sitk(
        app_context.scene, labels, "vertebrae", "vtkMRMLLabelMapVolumeNode"
    )
    segmentation = app_context.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "vertebrae")
    app_context.segmentations_logic.ImportLabelmapToSegmentationNode(labelmap, segmentation)
    values = sorted(int(v) for v in np.unique(sitk.GetArrayFromImage(labels)) if v)
    for index, value in enumerate(values):
        segment_id = segmentation.GetSegmentation().GetNthSegmentID(index)
        segmentation.GetSegmentation().GetSegment(segment_id).SetName(names[value])

    rows = _rows_by_key(
        PlannerLogic(app_context).measure("cobb", None, vertebra_labels=segmentation)
    )

    assert float(rows["cobb_deg"][1]) < 10.0
    assert rows["cobb_deg"][3] == "automatic"

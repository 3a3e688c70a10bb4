"""Hip and Cobb landmarks in the viewer, their calibration, and click placement: headless.

Landmarks are real markups nodes in a real slicer-core scene; the expected values come from
the measurement library called directly on the same points. Click placement is checked on a
real trame-slicer slice view, with the events a browser click becomes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
import vtk
from trame_slicer.core import SlicerApp
from trame_slicer.views import SliceView

from MSKPlannerLib.measure_alignment import ALIGNMENT_LABELS
from MSKPlannerLib.measure_cobb import cobb_from_endplates, parse_endplate_name
from MSKPlannerLib.measure_hip import HIP_LABELS, PELVIS_LABELS, measure_hip
from MSKPlannerLib.measurement_table import VOLUME_GEOMETRY
from MSKPriorsLib.app_context import AppContext
from MSKPriorsLib.pixel_data_series import DicomSeriesVolume, read_dicom_series
from mskworkbench.web.landmark_sets import (
    ENDPLATES,
    MEASUREMENT_SETS,
    VERTEBRAE,
    calibration_of,
    endplate_line_name,
    set_of_label,
)
from mskworkbench.web.measurements import LiveLandmarks
from mskworkbench.web.placement import ClickPlacement, PlacementStatus

#: Right hip landmarks on a radiograph in the frontal plane (RAS mm, A constant).
HIP_RAS_MM = {
    "femoral_head_center": (95.0, 0.0, 40.0),
    "femoral_neck_center": (110.0, 0.0, 25.0),
    "femoral_shaft_proximal": (128.0, 0.0, -20.0),
    "femoral_shaft_distal": (132.0, 0.0, -140.0),
    "acetabulum_lateral_edge": (120.0, 0.0, 62.0),
    "acetabulum_inferior_edge": (85.0, 0.0, 15.0),
    "teardrop_right": (55.0, 0.0, 10.0),
    "teardrop_left": (-55.0, 0.0, 12.0),
    "lesser_trochanter_right": (55.0, 0.0, -35.0),
    "lesser_trochanter_left": (-55.0, 0.0, -30.0),
}

#: Endplate lines of a lumbar curve in the frontal plane (RAS mm).
ENDPLATES_RAS_MM = {
    "T12-inferior": ((-20.0, 0.0, 60.0), (20.0, 0.0, 66.0)),
    "L2-superior": ((-10.0, 0.0, 20.0), (30.0, 0.0, 21.0)),
    "L4-inferior": ((-20.0, 0.0, -40.0), (20.0, 0.0, -48.0)),
}


def _values(live: LiveLandmarks) -> dict[str, float]:
    return {row.key: row.value for row in live.table().rows}


def test_measurement_sets_use_exactly_the_labels_of_the_measurement_library() -> None:
    assert MEASUREMENT_SETS["alignment"].point_labels == ALIGNMENT_LABELS
    assert MEASUREMENT_SETS["hip"].point_labels == HIP_LABELS + PELVIS_LABELS
    assert MEASUREMENT_SETS["cobb"].uses_lines and not MEASUREMENT_SETS["cobb"].needs_side
    for vertebra in VERTEBRAE:
        for endplate in ENDPLATES:
            name = endplate_line_name(vertebra, endplate)
            assert parse_endplate_name(name) == (vertebra, endplate)
            assert set_of_label(name) == "cobb"
    assert endplate_line_name(" l1", "Superior") == "L1-superior"
    assert set_of_label("femoral_head_center") == "hip"
    assert set_of_label("hip_center") == "alignment"
    assert set_of_label("hip_centre") == ""
    with pytest.raises(ValueError, match="X1"):
        endplate_line_name("X1", "superior")
    with pytest.raises(ValueError):
        endplate_line_name("L1", "middle")


def _read(path: Path) -> DicomSeriesVolume:
    header = pydicom.dcmread(path, stop_before_pixels=True)
    return read_dicom_series([path], header.SeriesInstanceUID)


def test_lengths_are_calibrated_only_on_a_trustworthy_scale(
    shared_data: Path, tmp_path: Path
) -> None:
    hip = calibration_of(_read(shared_data / "wg04" / "RG2_JPLL.dcm"))
    no_spacing = calibration_of(_read(shared_data / "wg04" / "RG3_JPLL.dcm"))
    detector_only = calibration_of(_read(shared_data / "highdicom" / "dx_image.dcm"))
    ct_files = sorted((shared_data / "totalsegmentator" / "ct_dicom").iterdir())
    ct = read_dicom_series(ct_files, "")
    # A magnification factor makes the DX calibrated, but not at the scale it is shown at.
    magnified = pydicom.dcmread(shared_data / "highdicom" / "dx_image.dcm")
    magnified.EstimatedRadiographicMagnificationFactor = 1.15
    magnified.save_as(tmp_path / "dx_magnified.dcm")
    other_scale = calibration_of(_read(tmp_path / "dx_magnified.dcm"))

    assert hip.method == "pixel_spacing" and hip.mm_per_pixel == (0.2, 0.2)
    assert not no_spacing.is_calibrated and "no pixel spacing" in no_spacing.detail
    assert not detector_only.is_calibrated and "detector spacing" in detector_only.detail
    assert calibration_of(ct) == VOLUME_GEOMETRY
    assert not other_scale.is_calibrated
    assert "magnification 1.15" in other_scale.detail and "shows the image at" in other_scale.detail


def test_hip_landmarks_measure_live_and_lengths_need_a_calibration(
    app_context: AppContext, shared_data: Path
) -> None:
    calibration = calibration_of(_read(shared_data / "wg04" / "RG2_JPLL.dcm"))
    live = LiveLandmarks(app_context)
    live.attach("1.2.3", calibration, side="right")
    live.set_kind("hip")
    for label, position in HIP_RAS_MM.items():
        live.set_position(label, position)

    before = _values(live)
    expected = measure_hip(HIP_RAS_MM, "right", calibration, "1.2.3")
    live.move("femoral_head_center", 0, 5.0)
    after = _values(live)
    moved = dict(HIP_RAS_MM, femoral_head_center=(100.0, 0.0, 40.0))
    expected_after = measure_hip(moved, "right", calibration, "1.2.3")

    assert set(before) == {"femoral_offset_mm", "cup_inclination_deg", "ccd_deg", "lld_mm"}
    for row in expected.rows:
        assert before[row.key] == pytest.approx(row.value, abs=1e-3)
    for row in expected_after.rows:
        assert after[row.key] == pytest.approx(row.value, abs=1e-3)
    assert after["femoral_offset_mm"] != pytest.approx(before["femoral_offset_mm"], abs=0.5)
    assert [row["label"] for row in live.rows()] == list(HIP_LABELS + PELVIS_LABELS)

    # On a radiograph without a trustworthy scale the angles stay and lengths are refused.
    uncalibrated = calibration_of(_read(shared_data / "wg04" / "RG3_JPLL.dcm"))
    live.attach("1.2.4", uncalibrated, side="right")
    live.set_kind("hip")
    for label, position in HIP_RAS_MM.items():
        live.set_position(label, position)
    refused = live.table_rows()

    assert {row["key"] for row in refused["rows"]} == {"cup_inclination_deg", "ccd_deg"}
    lengths = [r for r in refused["not_measured"] if r.startswith(("femoral_offset", "lld"))]
    assert len(lengths) == 2
    assert all("not calibrated" in r and "lengths in mm are refused" in r for r in lengths)


def test_cobb_endplate_lines_measure_live(app_context: AppContext) -> None:
    live = LiveLandmarks(app_context)
    live.attach("1.2.3")
    live.set_kind("cobb")
    for name, ends in ENDPLATES_RAS_MM.items():
        live.set_points(name, ends)

    before = live.table_rows()
    expected = cobb_from_endplates(ENDPLATES_RAS_MM, VOLUME_GEOMETRY, "1.2.3")
    live.move("L4-inferior", 2, 5.0, point_index=1)
    after = _values(live)
    tilted = dict(ENDPLATES_RAS_MM, **{"L4-inferior": ((-20.0, 0.0, -40.0), (20.0, 0.0, -43.0))})
    expected_after = cobb_from_endplates(tilted, VOLUME_GEOMETRY, "1.2.3")

    assert [row["label"] for row in live.rows()] == ["T12-inferior", "L2-superior", "L4-inferior"]
    assert before["rows"][0]["key"] == "cobb_deg"
    assert float(before["rows"][0]["value"].split()[0].rstrip("°")) == pytest.approx(
        expected.rows[0].value, abs=0.05
    )
    assert before["rows"][0]["note"] == "T12 to L4, apex L2"
    assert after["cobb_deg"] == pytest.approx(expected_after.rows[0].value, abs=1e-3)
    assert after["cobb_deg"] != pytest.approx(expected.rows[0].value, abs=1.0)
    # Another set's landmarks are kept, hidden, and measured again when it is chosen again.
    live.set_kind("alignment")
    assert live.table().rows == [] and "L4-inferior" in live.nodes
    assert not live.nodes["L4-inferior"].GetDisplayNode().GetVisibility()
    live.set_kind("cobb")
    assert _values(live)["cobb_deg"] == pytest.approx(after["cobb_deg"])


@pytest.fixture
def slice_view_app() -> Iterator[tuple[SlicerApp, SliceView]]:
    """A real trame-slicer slice view (400 x 300 pixels) showing a 100 x 120 x 20 mm volume."""
    app = SlicerApp()
    view = SliceView(app.scene, app.app_logic, "Red")
    view.render_window().SetSize(400, 300)
    view.interactor().UpdateSize(400, 300)
    image = vtk.vtkImageData()
    image.SetDimensions(50, 60, 10)
    image.AllocateScalars(vtk.VTK_SHORT, 1)
    image.GetPointData().GetScalars().Fill(100)
    volume = app.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "volume")
    volume.SetAndObserveImageData(image)
    volume.SetSpacing(2.0, 2.0, 2.0)
    volume.CreateDefaultDisplayNodes()
    volume.GetDisplayNode().SetAndObserveColorNodeID("vtkMRMLColorTableNodeGrey")
    view.set_background_volume_id(volume.GetID())
    view.fit_view_to_content()
    view.render()
    yield app, view
    view.set_background_volume_id(None)
    app.scene.Clear(0)


def _press_and_release(view: SliceView, x_px: int, y_px: int) -> None:
    interactor = view.interactor()
    interactor.SetEventInformation(x_px, y_px, 0, 0, "\0", 0, None)
    interactor.InvokeEvent(vtk.vtkCommand.LeftButtonPressEvent)
    interactor.InvokeEvent(vtk.vtkCommand.LeftButtonReleaseEvent)


def _xy_to_ras(view: SliceView, x_px: int, y_px: int) -> list[float]:
    return list(view.get_view_node().GetXYToRAS().MultiplyPoint([x_px, y_px, 0.0, 1.0])[:3])


def test_a_press_without_a_move_places_where_it_is_made_once_the_view_is_guarded(
    slice_view_app: tuple[SlicerApp, SliceView],
) -> None:
    app, view = slice_view_app
    statuses: list[PlacementStatus] = []
    placement = ClickPlacement(app.scene, app.markups_logic, statuses.append)
    point = app.scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "hip_center")
    point.SetMaximumNumberOfControlPoints(1)
    point.CreateDefaultDisplayNodes()

    # Slicer's markups widget alone ignores a press that no mouse move preceded.
    placement.start(point, "hip_center")
    _press_and_release(view, 100, 150)
    missed = point.GetNumberOfDefinedControlPoints()
    placement.guard_view("Red", view.interactor())
    placement.guard_view("Red", view.interactor())  # guarding twice adds nothing
    _press_and_release(view, 100, 150)
    position = [0.0, 0.0, 0.0]
    point.GetNthControlPointPositionWorld(0, position)

    assert missed == 0
    assert point.GetNumberOfDefinedControlPoints() == 1
    assert position == pytest.approx(_xy_to_ras(view, 100, 150), abs=1e-6)
    assert statuses[0] == PlacementStatus("hip_center", 0, 1, True)
    assert statuses[-1] == PlacementStatus()
    assert placement.interaction_node.GetCurrentInteractionMode() != (
        placement.interaction_node.Place
    )

    # A line takes two presses, one per end, and placement then ends by itself.
    line = app.scene.AddNewNodeByClass("vtkMRMLMarkupsLineNode", "L1-superior")
    line.CreateDefaultDisplayNodes()
    statuses.clear()
    placement.start(line, "L1-superior")
    _press_and_release(view, 120, 100)
    _press_and_release(view, 260, 140)
    ends = np.zeros((2, 3))
    for index in range(2):
        line.GetNthControlPointPositionWorld(index, ends[index])

    assert [(s.points_placed, s.ready) for s in statuses] == [
        (0, True),
        (1, True),
        (2, True),
        (0, False),
    ]
    assert ends[0] == pytest.approx(_xy_to_ras(view, 120, 100), abs=1e-6)
    assert ends[1] == pytest.approx(_xy_to_ras(view, 260, 140), abs=1e-6)


def test_landmarks_are_drawn_only_in_the_views_of_the_measured_series(
    app_context: AppContext,
) -> None:
    live = LiveLandmarks(app_context)
    live.attach("1.2.3", side="right")
    live.set_points("femoral_head_center", [HIP_RAS_MM["femoral_head_center"]])
    live.show_in_views(["vtkMRMLSliceNodeRed"])
    live.set_points("femoral_neck_center", [HIP_RAS_MM["femoral_neck_center"]])
    live.set_kind("hip")

    # Placed before and after the views were chosen, every node is drawn in Red alone.
    for label in ("femoral_head_center", "femoral_neck_center"):
        display = live.nodes[label].GetDisplayNode()
        assert display.GetViewNodeIDs() == ("vtkMRMLSliceNodeRed",)
        assert display.GetVisibility()

    live.show_in_views([])  # no view shows the measured series: draw nothing anywhere
    live.set_kind("hip")
    assert not live.nodes["femoral_head_center"].GetDisplayNode().GetVisibility()
    live.show_in_views(None)
    display = live.nodes["femoral_head_center"].GetDisplayNode()
    assert display.GetViewNodeIDs() == () and display.GetVisibility()

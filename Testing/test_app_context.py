"""The headless application context runs real slicer-core MRML: markups, surfaces, scenes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import slicer
import vtk

from MSKPriorsLib import mrml_volumes
from MSKPriorsLib.app_context import AppContext

RAS_FROM_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _add_line(context: AppContext, start_ras: tuple[float, ...], end_ras: tuple[float, ...]):
    line = context.scene.AddNewNodeByClass("vtkMRMLMarkupsLineNode", "femur-length")
    line.AddControlPoint(vtk.vtkVector3d(*start_ras))
    line.AddControlPoint(vtk.vtkVector3d(*end_ras))
    return line


def _sphere_labelmap(radius_vox: int = 15, size: int = 40) -> np.ndarray:
    k, j, i = np.mgrid[0:size, 0:size, 0:size]
    centre = size / 2
    inside = (i - centre) ** 2 + (j - centre) ** 2 + (k - centre) ** 2 < radius_vox**2
    return inside.astype(np.uint8)


def test_markups_line_gives_its_length_in_mm(app_context: AppContext) -> None:
    line = _add_line(app_context, (0, 0, 0), (30, 40, 0))

    assert line.GetLineLengthWorld() == np.float64(50.0)
    assert line.GetDisplayNode() is not None


def test_markups_angle_gives_its_angle_in_degrees(app_context: AppContext) -> None:
    angle = app_context.scene.AddNewNodeByClass("vtkMRMLMarkupsAngleNode", "ccd")
    for point_ras in [(10, 0, 0), (0, 0, 0), (10, 10 * np.sqrt(3), 0)]:
        angle.AddControlPoint(vtk.vtkVector3d(*point_ras))

    assert abs(angle.GetAngleDegrees() - 60.0) < 1e-9


def test_labelmap_becomes_a_closed_surface_of_the_right_volume(app_context: AppContext) -> None:
    labels = _sphere_labelmap()
    labelmap = mrml_volumes.add_volume_from_array(
        app_context.scene, labels, RAS_FROM_LPS, "sphere", "vtkMRMLLabelMapVolumeNode"
    )
    segmentation = app_context.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "bone")
    imported = app_context.segmentations_logic.ImportLabelmapToSegmentationNode(
        labelmap, segmentation
    )
    segmentation.CreateClosedSurfaceRepresentation()
    surface = vtk.vtkPolyData()
    segment_id = segmentation.GetSegmentation().GetNthSegmentID(0)
    segmentation.GetClosedSurfaceRepresentation(segment_id, surface)
    properties = vtk.vtkMassProperties()
    properties.SetInputData(surface)
    properties.Update()

    assert imported
    assert surface.GetNumberOfPoints() > 100
    assert abs(properties.GetVolume() - labels.sum()) / labels.sum() < 0.02


def test_volume_node_keeps_lps_geometry_as_ras(app_context: AppContext) -> None:
    import SimpleITK as sitk

    image = sitk.Image(4, 5, 6, sitk.sitkInt16)
    image.SetOrigin((10.0, 20.0, 30.0))
    image.SetSpacing((0.5, 0.75, 2.0))
    node = mrml_volumes.add_volume_from_sitk(app_context.scene, image, "ct")

    matrix = mrml_volumes.ijk_to_ras_of(node)
    back = mrml_volumes.sitk_from_volume(node)

    assert np.allclose(matrix[:3, 3], [-10.0, -20.0, 30.0])
    assert np.allclose(np.diag(matrix)[:3], [-0.5, -0.75, 2.0])
    assert np.allclose(back.GetOrigin(), image.GetOrigin())
    assert np.allclose(back.GetSpacing(), image.GetSpacing())


def test_scene_survives_an_mrb_round_trip(app_context: AppContext, tmp_path: Path) -> None:
    labels = _sphere_labelmap()
    volume = mrml_volumes.add_volume_from_array(
        app_context.scene, labels.astype(np.int16) * 1000, RAS_FROM_LPS, "CT"
    )
    labelmap = mrml_volumes.add_volume_from_array(
        app_context.scene, labels, RAS_FROM_LPS, "labels", "vtkMRMLLabelMapVolumeNode"
    )
    segmentation = app_context.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "bones")
    app_context.segmentations_logic.ImportLabelmapToSegmentationNode(labelmap, segmentation)
    _add_line(app_context, (0, 0, 0), (3, 4, 0))
    patient = mrml_volumes.new_subject_hierarchy_parent(app_context.scene, "Patient A", "Patient")
    study = mrml_volumes.new_subject_hierarchy_parent(
        app_context.scene, "CT 2026", "Study", patient
    )
    mrml_volumes.place_under(app_context.scene, volume, study)

    app_context.save_mrb(tmp_path / "case.mrb")
    restored = AppContext.create_headless()
    restored.load_mrb(tmp_path / "case.mrb")

    volume_back = restored.scene.GetFirstNodeByName("CT")
    assert np.array_equal(
        mrml_volumes.array_from_volume(volume_back), labels.astype(np.int16) * 1000
    )
    assert np.allclose(mrml_volumes.ijk_to_ras_of(volume_back), RAS_FROM_LPS)
    segmentation_back = restored.scene.GetFirstNodeByClass("vtkMRMLSegmentationNode")
    assert segmentation_back.GetSegmentation().GetNumberOfSegments() == 1
    line_back = restored.scene.GetFirstNodeByClass("vtkMRMLMarkupsLineNode")
    assert abs(line_back.GetLineLengthWorld() - 5.0) < 1e-9
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.ResolveSubjectHierarchy(restored.scene)
    study_item = hierarchy.GetItemParent(hierarchy.GetItemByDataNode(volume_back))
    assert hierarchy.GetItemName(study_item) == "CT 2026"
    assert hierarchy.GetItemName(hierarchy.GetItemParent(study_item)) == "Patient A"


def test_loading_a_missing_scene_names_the_file(app_context: AppContext, tmp_path: Path) -> None:
    import pytest

    with pytest.raises(OSError, match=r"no-such\.mrb"):
        app_context.load_mrb(tmp_path / "no-such.mrb")

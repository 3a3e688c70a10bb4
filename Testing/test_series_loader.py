"""Loading series into real slicer-core MRML: volume nodes, attributes, subject hierarchy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
import slicer
import vtk

from MSKPriorsLib.app_context import AppContext
from MSKPriorsLib.dicom_geometry import SeriesLoadError
from MSKPriorsLib.mrml_volumes import array_from_volume, ijk_to_ras_of
from MSKPriorsLib.series_loader import (
    INSTANCE_UIDS_ATTRIBUTE,
    load_series,
    series_uid_of,
    warnings_of,
)

UID = slicer.vtkMRMLSubjectHierarchyConstants.GetDICOMUIDName()


def _patient_items(context: AppContext) -> list[int]:
    hierarchy = context.subject_hierarchy
    ids = vtk.vtkIdList()
    hierarchy.GetItemChildren(hierarchy.GetSceneItemID(), ids, False)
    return [
        ids.GetId(i)
        for i in range(ids.GetNumberOfIds())
        if hierarchy.GetItemLevel(ids.GetId(i)) == "Patient"
    ]


def test_series_node_geometry_attributes_and_hierarchy(
    app_context: AppContext, shared_data: Path
) -> None:
    folder = shared_data / "pacsman" / "mr_head"
    header = pydicom.dcmread(folder / "slice0.dcm", stop_before_pixels=True)
    loaded = load_series(app_context, folder)
    node = loaded.volume_node

    assert node.IsA("vtkMRMLScalarVolumeNode")
    np.testing.assert_allclose(ijk_to_ras_of(node), loaded.geometry.ijk_to_ras_mm(), atol=1e-9)
    # IOP rows (0,-1,0) LPS = +A in RAS; columns (1,0,0) LPS = -R (towards L) in RAS.
    np.testing.assert_allclose(ijk_to_ras_of(node)[:3, 0], [0, 1, 0], atol=1e-9)
    np.testing.assert_allclose(ijk_to_ras_of(node)[:3, 1], [-1, 0, 0], atol=1e-9)
    np.testing.assert_allclose(ijk_to_ras_of(node)[:3, 3], [63, 0, 0], atol=1e-9)
    first = pydicom.dcmread(folder / "slice0.dcm").pixel_array
    np.testing.assert_array_equal(array_from_volume(node)[0], first)

    assert series_uid_of(node) == header.SeriesInstanceUID == loaded.series_uid
    assert warnings_of(node) == []
    assert len(node.GetAttribute(INSTANCE_UIDS_ATTRIBUTE).split()) == 128

    hierarchy = app_context.subject_hierarchy
    assert hierarchy.GetItemByDataNode(node) == loaded.series_item
    assert hierarchy.GetItemUID(loaded.series_item, UID) == header.SeriesInstanceUID
    assert hierarchy.GetItemParent(loaded.series_item) == loaded.study_item
    assert hierarchy.GetItemUID(loaded.study_item, UID) == header.StudyInstanceUID
    assert hierarchy.GetItemLevel(loaded.study_item) == "Study"
    assert hierarchy.GetItemParent(loaded.study_item) == loaded.patient_item
    assert hierarchy.GetItemUID(loaded.patient_item, UID) == header.PatientID
    assert hierarchy.GetItemAttribute(loaded.patient_item, "DICOM.PatientID") == header.PatientID

    again = load_series(app_context, sorted(folder.glob("slice1*.dcm")))
    assert (again.patient_item, again.study_item) == (loaded.patient_item, loaded.study_item)
    assert _patient_items(app_context) == [loaded.patient_item]


def test_same_id_different_name_is_not_merged(
    app_context: AppContext, shared_data: Path, tmp_path: Path
) -> None:
    folder = shared_data / "pacsman" / "mr_head"
    first = load_series(app_context, [folder / f"slice{n}.dcm" for n in range(3)])
    for n in range(3):
        dataset = pydicom.dcmread(folder / f"slice{n}.dcm")
        dataset.PatientName = "Someone^Else"
        dataset.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.99"
        dataset.save_as(tmp_path / f"other{n}.dcm")
    other = load_series(app_context, tmp_path)
    assert "patient_mismatch" in other.warning_codes
    assert other.patient_item != first.patient_item
    assert sorted(_patient_items(app_context)) == sorted([first.patient_item, other.patient_item])


def test_series_without_patient_id_is_never_matched(
    app_context: AppContext, shared_data: Path
) -> None:
    folder = shared_data / "totalsegmentator" / "ct_dicom"
    one = load_series(app_context, folder)
    two = load_series(app_context, folder)
    assert "no_patient_id" in one.warning_codes
    assert one.patient_item != two.patient_item
    assert app_context.subject_hierarchy.GetItemUID(one.patient_item, UID) == ""


def test_monochrome1_radiograph_node_and_window(app_context: AppContext, shared_data: Path) -> None:
    loaded = load_series(app_context, shared_data / "wg04" / "RG3_JPLL.dcm")
    codes = [w.code for w in warnings_of(loaded.volume_node)]
    assert codes[:2] == ["no_position", "no_spacing"]
    display = loaded.volume_node.GetScalarVolumeDisplayNode()
    assert display.GetWindow() == pytest.approx(1024)
    assert display.GetLevel() == pytest.approx(1023 - 550)


def test_volume_file_goes_through_the_volumes_logic(
    app_context: AppContext, shared_data: Path
) -> None:
    path = shared_data / "totalsegmentator" / "ct_volume.nii.gz"
    loaded = load_series(app_context, path)
    image = sitk.ReadImage(str(path))
    origin_lps = np.array(image.GetOrigin())
    np.testing.assert_allclose(
        loaded.geometry.origin_ras_mm, [-origin_lps[0], -origin_lps[1], origin_lps[2]], atol=1e-4
    )
    assert loaded.geometry.dimensions == image.GetSize()
    assert loaded.volume_node.GetStorageNode() is not None
    np.testing.assert_array_equal(
        array_from_volume(loaded.volume_node), sitk.GetArrayFromImage(image)
    )


def test_failed_load_leaves_the_scene_alone(app_context: AppContext, tmp_path: Path) -> None:
    (tmp_path / "note.txt").write_text("no images here")
    before = app_context.scene.GetNumberOfNodes()
    with pytest.raises(SeriesLoadError) as refused:
        load_series(app_context, tmp_path)
    assert refused.value.code == "no_images"
    assert app_context.scene.GetNumberOfNodes() == before

"""Bone label maps become DICOM SEG on the real CT series grid, coded with SNOMED CT."""

from __future__ import annotations

import json
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from dicom_factory import new_instance
from pydicom.uid import CTImageStorage, generate_uid

from MSKPlannerLib.dicom_seg import (
    SegmentationExportError,
    build_segmentation,
    frames_on_sources,
    label_map_from_segmentation_node,
    read_segment_names,
)
from MSKPlannerLib.label_maps import read_label_map, select_bone_labels
from MSKPriorsLib.mrml_volumes import add_volume_from_sitk, ijk_to_ras_from_sitk

#: Slices of the shared CT volume written as the source series (lumbar vertebrae L2..L5).
SLICES = range(60, 90)


def write_ct_series(shared_data: Path, folder: Path, patient_id: str = "MSKWB-SEG-1") -> list[Path]:
    """Wrap slices of the real shared CT volume into a CT series with full geometry tags."""
    image = sitk.ReadImage(str(shared_data / "totalsegmentator" / "ct_volume.nii.gz"))
    voxels = sitk.GetArrayFromImage(image).astype(np.int16)
    direction = np.array(image.GetDirection()).reshape(3, 3)
    study_uid, series_uid, frame_uid = generate_uid(), generate_uid(), generate_uid()
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for number, k in enumerate(SLICES, start=1):
        ds = new_instance(CTImageStorage)
        ds.PatientID, ds.PatientName, ds.PatientBirthDate, ds.PatientSex = (
            patient_id,
            "Test^Seg",
            "19600101",
            "F",
        )
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = (
            study_uid,
            series_uid,
            frame_uid,
        )
        ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20240102", "101010", "1", "A1"
        ds.ReferringPhysicianName = ""
        ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "CT", 3, number
        ds.Manufacturer = "test"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.ImagePositionPatient = [float(v) for v in image.TransformIndexToPhysicalPoint((0, 0, k))]
        ds.ImageOrientationPatient = [float(v) for v in (*direction[:, 0], *direction[:, 1])]
        ds.PixelSpacing = [image.GetSpacing()[1], image.GetSpacing()[0]]
        ds.SliceThickness = image.GetSpacing()[2]
        ds.Rows, ds.Columns = voxels.shape[1], voxels.shape[2]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope = 0, 1
        ds.PixelData = voxels[k].tobytes()
        path = folder / f"ct_{number:03d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def vertebra_labels(shared_data: Path):
    folder = shared_data / "totalsegmentator"
    return read_label_map(folder / "ct_volume_vertebrae_labels.nii.gz", folder / "label_names.json")


@pytest.fixture
def ct_series(shared_data: Path, tmp_path: Path) -> list[pydicom.Dataset]:
    return [pydicom.dcmread(p) for p in write_ct_series(shared_data, tmp_path / "ct")]


def test_seg_has_one_coded_segment_per_bone_on_the_source_frames(
    shared_data, ct_series, tmp_path
) -> None:
    labels = vertebra_labels(shared_data)
    label_kji = sitk.GetArrayFromImage(labels.image)
    names = select_bone_labels(labels.names)
    shuffled = ct_series[::-1]  # any order in, sorted frames out

    seg = build_segmentation(
        shuffled,
        label_kji,
        ijk_to_ras_from_sitk(labels.image),
        names,
        generate_uid(),
        generate_uid(),
    )
    seg.save_as(tmp_path / "seg.dcm")
    reread = hd.seg.segread(tmp_path / "seg.dcm")
    segments = read_segment_names(pydicom.dcmread(tmp_path / "seg.dcm"))

    present = sorted(int(v) for v in np.unique(label_kji[SLICES.start : SLICES.stop]) if v)
    assert [label for label, _ in segments.values()] == [names[v] for v in present]
    assert {code for _, code in segments.values()} == {"51282000"}  # SCT Vertebra
    assert reread.SeriesInstanceUID != ct_series[0].SeriesInstanceUID
    referenced = {
        item.ReferencedSOPInstanceUID
        for series in reread.ReferencedSeriesSequence
        for item in series.ReferencedInstanceSequence
    }
    assert referenced == {ds.SOPInstanceUID for ds in ct_series}
    # Every frame matches the label map on the matching source slice.
    number = 1 + present.index(29)
    for ds in ct_series[::7]:
        pixels = reread.get_pixels_by_source_instance(
            source_sop_instance_uids=[ds.SOPInstanceUID], segment_numbers=[number]
        )[0, :, :, 0]
        k = SLICES.start + int(ds.InstanceNumber) - 1
        assert np.array_equal(pixels.astype(bool), label_kji[k] == 29)


def test_a_label_map_off_the_source_grid_is_refused(shared_data, ct_series) -> None:
    labels = vertebra_labels(shared_data)
    shifted = ijk_to_ras_from_sitk(labels.image)
    shifted[:3, 3] += [1.5, 0.0, 0.0]  # half a voxel sideways

    with pytest.raises(SegmentationExportError, match=ct_series[0].SeriesInstanceUID):
        frames_on_sources(sitk.GetArrayFromImage(labels.image), shifted, ct_series)


def test_names_without_bones_give_a_clear_error(shared_data, ct_series) -> None:
    labels = vertebra_labels(shared_data)

    with pytest.raises(SegmentationExportError, match="none of the named labels"):
        build_segmentation(
            ct_series,
            sitk.GetArrayFromImage(labels.image),
            ijk_to_ras_from_sitk(labels.image),
            {99: "femur_left"},
            generate_uid(),
            generate_uid(),
        )


def test_names_table_is_the_shared_one(shared_data) -> None:
    names = json.loads((shared_data / "totalsegmentator" / "label_names.json").read_text())

    assert names["29"] == "vertebrae_L3"


def test_a_segmentation_node_exports_onto_the_source_grid(
    shared_data, ct_series, app_context, tmp_path
) -> None:
    labels = vertebra_labels(shared_data)
    ct = add_volume_from_sitk(
        app_context.scene,
        sitk.ReadImage(str(shared_data / "totalsegmentator" / "ct_volume.nii.gz")),
        "CT",
    )
    only_l3 = sitk.Cast(labels.image == 29, sitk.sitkUInt8) * 29
    labelmap = add_volume_from_sitk(
        app_context.scene, only_l3, "labels", "vtkMRMLLabelMapVolumeNode"
    )
    segmentation = app_context.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "bones")
    assert app_context.segmentations_logic.ImportLabelmapToSegmentationNode(labelmap, segmentation)
    segmentation.GetSegmentation().GetNthSegment(0).SetName("vertebrae_L3")

    label_kji, ijk_to_ras, names = label_map_from_segmentation_node(
        app_context.segmentations_logic, segmentation, ct
    )
    seg = build_segmentation(
        ct_series, label_kji, ijk_to_ras, names, generate_uid(), generate_uid()
    )

    assert names == {1: "vertebrae_L3"}
    assert np.array_equal(label_kji > 0, sitk.GetArrayFromImage(labels.image) == 29)
    assert [item.SegmentLabel for item in seg.SegmentSequence] == ["vertebrae_L3"]
    assert app_context.scene.GetNodesByClass("vtkMRMLLabelMapVolumeNode").GetNumberOfItems() == 1


def test_sources_without_a_sop_class_are_refused_by_name(shared_data, ct_series) -> None:
    labels = vertebra_labels(shared_data)
    ct_series[3].SOPClassUID = ""  # as in the shared TotalSegmentator slices

    with pytest.raises(SegmentationExportError, match="no SOPClassUID"):
        build_segmentation(
            ct_series,
            sitk.GetArrayFromImage(labels.image),
            ijk_to_ras_from_sitk(labels.image),
            {26: "vertebrae_S1"},
            generate_uid(),
            generate_uid(),
        )

"""Label maps: TotalSegmentator names, resampling onto the CT, bones of real CT as surfaces."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import SimpleITK as sitk

from MSKPlannerLib.bone_segmentation import BoneSegmentationOptions
from MSKPlannerLib.label_maps import (
    LabelMap,
    LabelMapError,
    is_bone_name,
    read_label_map,
    read_names_table,
    resample_to_reference,
    select_bone_labels,
)
from MSKPlannerLib.surface_reconstruction import ReconstructionOptions, reconstruct_bones
from MSKPriorsLib.app_context import AppContext
from MSKPriorsLib.mrml_volumes import add_volume_from_array, add_volume_from_sitk, sitk_from_volume
from mskworkbench.commands.reconstruct import load_ct

VERTEBRAE = [f"vertebrae_{name}" for name in ("S1", "L5", "L4", "L3", "L2", "L1", "T12", "T11")]


@pytest.fixture
def totalsegmentator(shared_data: Path) -> Path:
    return shared_data / "totalsegmentator"


def test_names_come_from_the_nifti_label_table(totalsegmentator: Path) -> None:
    label_map = read_label_map(totalsegmentator / "ct_volume_vertebrae_labels.nii.gz")

    assert [label_map.names[value] for value in range(26, 34)] == VERTEBRAE
    assert set(label_map.names) == set(range(26, 34))


def test_a_names_table_overrides_and_completes_names(
    totalsegmentator: Path, tmp_path: Path
) -> None:
    table = tmp_path / "names.json"
    table.write_text(json.dumps({"26": "my_sacral_vertebra"}), encoding="utf-8")

    label_map = read_label_map(totalsegmentator / "ct_volume_vertebrae_labels.nii.gz", table)

    assert label_map.names[26] == "my_sacral_vertebra"
    assert label_map.names[27] == "vertebrae_L5"


def test_bone_names_are_recognised() -> None:
    names = {
        25: "sacrum",
        31: "vertebrae_L1",
        75: "femur_left",
        77: "hip_left",
        92: "rib_left_1",
        91: "skull",
        5: "liver",
        117: "costal_cartilages",
        79: "spinal_cord",
    }

    bones = select_bone_labels(names)

    assert set(bones) == {25, 31, 75, 77, 92, 91}
    assert select_bone_labels(names, ["Liver"]) == {5: "liver"}
    assert is_bone_name("clavicula_right") and not is_bone_name("kidney_left")


def test_resampling_onto_a_finer_grid_keeps_labels_in_place() -> None:
    labels = np.zeros((10, 10, 10), dtype=np.uint16)
    labels[2:8, 3:7, 4:6] = 7
    coarse = sitk.GetImageFromArray(labels)
    coarse.SetSpacing((2.0, 2.0, 2.0))
    fine = sitk.Image(20, 20, 20, sitk.sitkInt16)
    fine.SetOrigin((-0.5, -0.5, -0.5))

    moved = resample_to_reference(LabelMap(coarse, {7: "femur_left"}), fine)

    array = sitk.GetArrayFromImage(moved.image)
    assert moved.image.GetSize() == (20, 20, 20)
    assert (array == 7).sum() == pytest.approx(8 * (labels == 7).sum(), rel=0.1)
    assert moved.names == {7: "femur_left"}


def test_missing_and_wrong_files_give_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(LabelMapError, match="does not exist"):
        read_label_map(tmp_path / "absent.nii.gz")
    text = tmp_path / "labels.txt"
    text.write_text("not a label map", encoding="utf-8")
    with pytest.raises(LabelMapError, match=r"expected \.seg\.nrrd"):
        read_label_map(text)
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"\x1f\x8b garbage")
    with pytest.raises(LabelMapError, match=r"broken\.nii\.gz"):
        read_label_map(broken)


@pytest.mark.slow
def test_real_ct_vertebrae_become_separate_closed_surfaces(
    app_context: AppContext, totalsegmentator: Path
) -> None:
    ct = sitk.ReadImage(str(totalsegmentator / "ct_volume.nii.gz"))
    volume = add_volume_from_sitk(app_context.scene, ct, "ct_volume")
    labels_path = totalsegmentator / "ct_volume_vertebrae_labels.nii.gz"
    source = sitk.GetArrayFromImage(sitk.ReadImage(str(labels_path)))

    result = reconstruct_bones(app_context, volume, labels_path, ReconstructionOptions())

    assert [bone.name for bone in result.bones] == VERTEBRAE
    for bone in result.bones:
        assert bone.closed, bone.name
        if bone.labelmap_volume_ml > 10:
            assert bone.volume_ml == pytest.approx(bone.labelmap_volume_ml, rel=0.02)
        elif abs(bone.volume_ml / bone.labelmap_volume_ml - 1) > 0.02:
            # A sliver cut by the field of view shrinks when smoothed: it must be said, as a
            # small fragment judged against the voxel size, not as a failed surface.
            assert any("small fragment" in note for note in bone.notes + bone.warnings)
            assert bone.cut_by_volume_edge == ("superior",)
        expected_ml = (source == bone.label_value).sum() * 27 / 1000
        metal_cut_ml = expected_ml - bone.labelmap_volume_ml
        assert 0 <= metal_cut_ml < 0.02 * expected_ml
        assert bone.volume_ml > 1.0, bone.name
    # Adult lumbar vertebrae, wholly in the field of view: tens of millilitres each.
    lumbar = [bone for bone in result.bones if bone.name[-2] == "L"]
    assert len(lumbar) == 5
    assert all(30 < bone.volume_ml < 120 for bone in lumbar)
    centres_z = [bone.polydata.GetCenter()[2] for bone in result.bones]
    assert centres_z == sorted(centres_z)


@pytest.mark.slow
def test_dicom_series_with_label_map_on_another_grid(
    app_context: AppContext, totalsegmentator: Path
) -> None:
    volume, _ = load_ct(app_context, str(totalsegmentator / "ct_dicom"), None)
    ct = sitk_from_volume(volume)
    labels = read_label_map(
        totalsegmentator / "ct_dicom_labels.nii.gz", totalsegmentator / "label_names.json"
    )
    assert ct.GetSize() == (512, 512, 20)
    assert not np.allclose(ct.GetDirection(), labels.image.GetDirection())

    result = reconstruct_bones(app_context, volume, labels, ReconstructionOptions())

    names = [bone.name for bone in result.bones]
    assert {"vertebrae_T12", "vertebrae_T11", "humerus_left", "humerus_right"} <= set(names)
    assert all(is_bone_name(name) for name in names)
    assert not {"liver", "aorta", "spinal_cord", "costal_cartilages"} & set(names)
    source = sitk.GetArrayFromImage(labels.image)
    voxel_ml = float(np.prod(ct.GetSpacing())) / 1000
    for bone in result.bones:
        assert bone.closed, bone.name
        # The label grid is the CT grid mirrored in y: resampling moves no voxel in or out.
        assert bone.labelmap_volume_ml == pytest.approx(
            (source == bone.label_value).sum() * voxel_ml, rel=1e-6
        )
    t12 = next(bone for bone in result.bones if bone.name == "vertebrae_T12")
    left = next(bone for bone in result.bones if bone.name == "humerus_left")
    # RAS x grows towards the patient's right: the left humerus lies at smaller x.
    assert left.polydata.GetCenter()[0] < t12.polydata.GetCenter()[0] - 100


def pelvis_phantom(
    context: AppContext, names_table: Path
) -> tuple[Any, LabelMap, dict[str, float]]:
    """Touching sacrum, hips and L5 as blocks of bone, with a TotalSegmentator label map."""
    names = read_names_table(names_table)
    value_of = {name: value for value, name in names.items()}
    labels = np.zeros((40, 40, 60), dtype=np.uint16)
    labels[5:20, 12:28, 22:38] = value_of["sacrum"]
    labels[5:25, 10:30, 4:22] = value_of["hip_right"]
    labels[5:25, 10:30, 38:56] = value_of["hip_left"]
    labels[20:35, 14:26, 24:36] = value_of["vertebrae_L5"]
    ct = np.where(labels > 0, 700, 30).astype(np.int16)
    volume = add_volume_from_array(context.scene, ct, np.eye(4), "pelvis")
    image = sitk.GetImageFromArray(labels)
    image.CopyInformation(sitk_from_volume(volume))
    voxel_counts = {names[v]: float((labels == v).sum()) / 1000 for v in np.unique(labels) if v}
    return volume, LabelMap(image, {}), voxel_counts


def test_touching_sacrum_hips_and_vertebra_become_separate_surfaces(
    app_context: AppContext, totalsegmentator: Path
) -> None:
    volume, label_map, expected_ml = pelvis_phantom(
        app_context, totalsegmentator / "label_names.json"
    )
    label_map = LabelMap(label_map.image, read_names_table(totalsegmentator / "label_names.json"))

    result = reconstruct_bones(app_context, volume, label_map, ReconstructionOptions())

    assert sorted(bone.name for bone in result.bones) == sorted(expected_ml)
    for bone in result.bones:
        assert bone.closed, bone.name
        assert bone.labelmap_volume_ml == pytest.approx(expected_ml[bone.name])
        assert bone.volume_ml == pytest.approx(bone.labelmap_volume_ml, rel=0.02)


def test_a_label_map_node_and_refinement_by_threshold(app_context: AppContext) -> None:
    labels = np.zeros((30, 30, 30), dtype=np.uint8)
    labels[5:25, 5:25, 5:25] = 3
    ct = np.full(labels.shape, 30, dtype=np.int16)
    ct[10:20, 10:20, 10:20] = 900
    volume = add_volume_from_array(app_context.scene, ct, np.eye(4), "ct")
    label_node = add_volume_from_array(
        app_context.scene, labels, np.eye(4), "labels", "vtkMRMLLabelMapVolumeNode"
    )

    loose = reconstruct_bones(
        app_context, volume, label_node, ReconstructionOptions(names={3: "patella_left"})
    )
    refined = reconstruct_bones(
        app_context,
        volume,
        label_node,
        ReconstructionOptions(
            names={3: "patella_left"},
            segmentation=BoneSegmentationOptions(refine_label_map=True, min_island_ml=0.1),
        ),
    )

    assert [bone.name for bone in loose.bones] == ["patella_left"]
    assert loose.bones[0].labelmap_volume_ml == pytest.approx(8.0)
    assert refined.bones[0].labelmap_volume_ml == pytest.approx(1.0)
    assert refined.bones[0].closed


def test_a_user_label_map_without_bone_names_takes_every_label(app_context: AppContext) -> None:
    labels = np.zeros((30, 30, 30), dtype=np.uint8)
    labels[3:13, 3:13, 3:13] = 1
    labels[16:26, 16:26, 16:26] = 2
    ct = np.where(labels > 0, 800, 30).astype(np.int16)
    volume = add_volume_from_array(app_context.scene, ct, np.eye(4), "ct")
    label_node = add_volume_from_array(
        app_context.scene, labels, np.eye(4), "my labels", "vtkMRMLLabelMapVolumeNode"
    )

    result = reconstruct_bones(app_context, volume, label_node, ReconstructionOptions())

    assert len(result.bones) == 2
    assert all(bone.labelmap_volume_ml == pytest.approx(1.0) for bone in result.bones)
    assert any("names no known bone" in warning for warning in result.warnings)

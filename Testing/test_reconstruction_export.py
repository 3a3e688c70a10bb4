"""Export of bones: STL and OBJ in RAS or LPS, the .seg.nrrd round trip, the CLI end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import vtk
from test_reconstruction import ct_phantom, sphere
from vtk.util import numpy_support

from MSKPlannerLib.label_maps import read_label_map
from MSKPlannerLib.surface_export import read_segmentation, write_segmentation
from MSKPlannerLib.surface_reconstruction import (
    ReconstructionOptions,
    ReconstructionResult,
    reconstruct_bones,
)
from MSKPriorsLib.app_context import AppContext
from MSKPriorsLib.archive import LocalArchive
from MSKPriorsLib.mrml_volumes import add_volume_from_array
from mskworkbench import cli


def two_bones(context: AppContext, out_dir: Path, frame: str) -> ReconstructionResult:
    left, right = sphere(8.0, (-12.0, 3.0, 2.0)), sphere(6.0, (12.0, -4.0, -2.0))
    array, matrix = ct_phantom(
        (30, 30, 50), 1.0, lambda x, y, z: np.maximum(left(x, y, z), right(x, y, z))
    )
    volume = add_volume_from_array(context.scene, array, matrix, "two bones")
    options = ReconstructionOptions(
        seeds_ras_mm={"femur_left": (-12.0, 3.0, 2.0), "patella_left": (12.0, -4.0, -2.0)},
        output_dir=out_dir,
        frame=frame,
    )
    return reconstruct_bones(context, volume, None, options)


def stl_points(path: Path) -> np.ndarray:
    reader = vtk.vtkSTLReader()
    reader.SetFileName(str(path))
    reader.Update()
    return numpy_support.vtk_to_numpy(reader.GetOutput().GetPoints().GetData())


def obj_points(path: Path) -> np.ndarray:
    reader = vtk.vtkOBJReader()
    reader.SetFileName(str(path))
    reader.Update()
    return numpy_support.vtk_to_numpy(reader.GetOutput().GetPoints().GetData())


def test_ras_and_lps_meshes_differ_by_the_x_y_flip(app_context: AppContext, tmp_path: Path) -> None:
    ras = two_bones(app_context, tmp_path / "ras", "RAS")
    lps = two_bones(app_context, tmp_path / "lps", "LPS")

    femur_ras = next(bone for bone in ras.bones if bone.name == "femur_left")
    femur_lps = next(bone for bone in lps.bones if bone.name == "femur_left")
    assert femur_ras.files["stl"].name == "femur_left_RAS.stl"
    assert femur_lps.files["obj"].name == "femur_left_LPS.obj"
    points_ras = stl_points(femur_ras.files["stl"])
    points_lps = stl_points(femur_lps.files["stl"])
    assert np.allclose(points_lps, points_ras * [-1, -1, 1], atol=1e-4)
    assert np.allclose(points_ras.mean(axis=0), (-12.0, 3.0, 2.0), atol=0.3)
    assert np.allclose(obj_points(femur_lps.files["obj"]).mean(axis=0), (12.0, -3.0, 2.0), atol=0.3)
    assert b"frame=RAS" in femur_ras.files["stl"].read_bytes()[:80]
    assert b"frame=LPS" in femur_lps.files["stl"].read_bytes()[:80]
    assert femur_lps.files["obj"].read_text().splitlines()[1] == "# frame=LPS units=mm"


def test_lps_stl_keeps_outward_normals(app_context: AppContext, tmp_path: Path) -> None:
    result = two_bones(app_context, tmp_path, "LPS")

    reader = vtk.vtkSTLReader()
    reader.SetFileName(str(result.bones[0].files["stl"]))
    reader.Update()
    mass = vtk.vtkMassProperties()
    mass.SetInputData(reader.GetOutput())
    mass.Update()
    points = numpy_support.vtk_to_numpy(reader.GetOutput().GetPoints().GetData())
    cells = numpy_support.vtk_to_numpy(reader.GetOutput().GetPolys().GetConnectivityArray())
    corners = points[cells.reshape(-1, 3)]
    signed = np.einsum("ij,ij->i", corners[:, 0], np.cross(corners[:, 1], corners[:, 2])).sum()
    assert signed > 0
    assert mass.GetVolume() / 1000 == pytest.approx(result.bones[0].volume_ml, rel=0.01)


def test_segmentation_round_trip_through_seg_nrrd(app_context: AppContext, tmp_path: Path) -> None:
    result = two_bones(app_context, tmp_path, "RAS")
    path = result.files["seg.nrrd"]
    assert path.name == "bones.seg.nrrd"

    loaded = read_segmentation(app_context, path)
    label_map = read_label_map(path)

    segmentation = loaded.GetSegmentation()
    names = sorted(
        segmentation.GetNthSegment(index).GetName()
        for index in range(segmentation.GetNumberOfSegments())
    )
    assert names == ["femur_left", "patella_left"]
    assert sorted(label_map.names.values()) == ["femur_left", "patella_left"]
    voxel_ml = float(np.prod(label_map.image.GetSpacing())) / 1000
    array = sitk.GetArrayFromImage(label_map.image)
    for bone in result.bones:
        value = next(v for v, name in label_map.names.items() if name == bone.name)
        assert (array == value).sum() * voxel_ml == pytest.approx(bone.labelmap_volume_ml)
    # Geometry survives: the femur centre read back (LPS) is the RAS centre with x, y negated.
    femur_value = next(v for v, name in label_map.names.items() if name == "femur_left")
    centre_kji = np.argwhere(array == femur_value).mean(axis=0)
    centre_lps = label_map.image.TransformContinuousIndexToPhysicalPoint(
        [float(v) for v in centre_kji[::-1]]
    )
    assert np.allclose(centre_lps, (12.0, -3.0, 2.0), atol=0.3)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).parent / "mskwb"), "reconstruct", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).resolve().parent.parent,
    )


@pytest.mark.slow
def test_cli_reconstructs_a_volume_file_with_labels_as_json(
    shared_data: Path, tmp_path: Path
) -> None:
    data = shared_data / "totalsegmentator"

    completed = run_cli(
        str(data / "ct_volume.nii.gz"),
        "--labels",
        str(data / "ct_volume_vertebrae_labels.nii.gz"),
        "--out",
        str(tmp_path),
        "--frame",
        "LPS",
        "--json",
    )

    assert completed.returncode == 0, completed.stderr
    summary = json.loads(completed.stdout)
    assert summary["frame"] == "LPS"
    assert len(summary["bones"]) == 8
    for bone in summary["bones"]:
        assert bone["closed"] is True
        assert bone["volume_ml"] > 0 and bone["area_cm2"] > 0
        assert Path(bone["files"]["stl"]).is_file()
        assert Path(bone["files"]["obj"]).is_file()
        assert bone["files"]["stl"].endswith(f"{bone['name']}_LPS.stl")
    assert Path(summary["files"]["seg.nrrd"]).is_file()
    assert json.loads((tmp_path / "reconstruction.json").read_text())["bones"] == summary["bones"]


@pytest.mark.slow
def test_cli_thresholds_a_dicom_folder(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = cli.main(
        [
            "reconstruct",
            str(shared_data / "totalsegmentator" / "ct_dicom"),
            "--out",
            str(tmp_path),
            "--threshold-preset",
            "cancellous",
            "--decimate",
            "0.5",
            "--json",
        ]
    )

    assert status == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["thresholds_hu"][0] == 150.0
    assert summary["bones"] and all(bone["closed"] for bone in summary["bones"])
    assert summary["bones"][0]["name"] == "bone_1"
    volumes = [bone["labelmap_volume_ml"] for bone in summary["bones"]]
    assert volumes == sorted(volumes, reverse=True)


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (["{tmp}/nowhere.nii.gz"], "nowhere.nii.gz"),
        (["1.2.840.99999.1"], "--archive"),
        (["{tmp}", "--decimate", "1.5"], "--decimate"),
        (["{tmp}", "--labels", "{tmp}/absent.nii.gz"], "absent.nii.gz"),
    ],
)
def test_cli_names_the_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], arguments: list[str], expected: str
) -> None:
    given = [argument.format(tmp=tmp_path) for argument in arguments]

    status = cli.main(["reconstruct", *given, "--out", str(tmp_path / "out")])

    assert status == 2
    assert expected in capsys.readouterr().err


@pytest.mark.slow
def test_cli_reads_a_series_from_the_local_archive(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A CT phantom with dense inserts; the TotalSegmentator slices carry no UIDs to archive.
    with LocalArchive(tmp_path / "archive") as archive:
        archive.import_folder(shared_data / "dcm_qa_ct" / "Philips_untilted")
        (study,) = archive.search_studies()
        (series,) = archive.search_series(study.study_uid)

    status = cli.main(
        [
            "reconstruct",
            series.series_uid,
            "--archive",
            str(tmp_path / "archive"),
            "--out",
            str(tmp_path / "out"),
            "--json",
        ]
    )

    assert status == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["input"] == series.series_uid
    assert summary["bones"] and all(bone["closed"] for bone in summary["bones"])
    assert all(Path(bone["files"]["stl"]).is_file() for bone in summary["bones"])


def test_a_written_segmentation_serves_as_the_label_map(
    app_context: AppContext, tmp_path: Path
) -> None:
    first = two_bones(app_context, tmp_path / "first", "RAS")
    volume = first.segmentation_node.GetNodeReference("referenceImageGeometryRef")
    volume = volume or app_context.scene.GetFirstNodeByName("two bones")

    again = reconstruct_bones(
        app_context, volume, first.files["seg.nrrd"], ReconstructionOptions(add_models=False)
    )

    assert [bone.name for bone in again.bones] == [bone.name for bone in first.bones]
    for before, after in zip(first.bones, again.bones, strict=True):
        assert after.labelmap_volume_ml == pytest.approx(before.labelmap_volume_ml)


def test_overlapping_segments_in_layers_are_merged(app_context: AppContext, tmp_path: Path) -> None:
    labels = np.zeros((20, 20, 20), dtype=np.uint8)
    labels[2:12, 2:12, 2:12] = 1
    volume = add_volume_from_array(app_context.scene, labels, np.eye(4), "grid")
    node = app_context.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "overlap")
    node.SetReferenceImageGeometryParameterFromVolumeNode(volume)
    for name, (start, stop) in {"femur_left": (2, 12), "tibia_left": (8, 18)}.items():
        mask = np.zeros(labels.shape, dtype=np.uint8)
        mask[start:stop, start:stop, start:stop] = 1
        label_node = add_volume_from_array(
            app_context.scene, mask, np.eye(4), name, "vtkMRMLLabelMapVolumeNode"
        )
        app_context.segmentations_logic.ImportLabelmapToSegmentationNode(label_node, node)
        segmentation = node.GetSegmentation()
        segmentation.GetNthSegment(segmentation.GetNumberOfSegments() - 1).SetName(name)
    path = write_segmentation(app_context, node, tmp_path / "overlap.seg.nrrd")

    label_map = read_label_map(path)

    array = sitk.GetArrayFromImage(label_map.image)
    assert sorted(label_map.names.values()) == ["femur_left", "tibia_left"]
    femur = next(v for v, n in label_map.names.items() if n == "femur_left")
    tibia = next(v for v, n in label_map.names.items() if n == "tibia_left")
    assert femur != tibia
    assert (array == tibia).sum() == 1000
    assert (array == femur).sum() == 1000 - 4**3

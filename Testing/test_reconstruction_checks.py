"""Which bone surfaces fail their checks: broken ones do, small fragments and cut bones do not."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import SimpleITK as sitk
import vtk
from test_reconstruction import capsule, ct_phantom, reconstruct

from MSKPlannerLib.bone_segmentation import BoneSegmentationOptions
from MSKPlannerLib.surface_meshes import (
    SMALL_PIECE_VOXELS,
    VOLUME_TOLERANCE,
    SurfaceCheck,
    check_surface,
    judge_surface,
    sides_cut_by_volume_edge,
)
from MSKPlannerLib.surface_reconstruction import ReconstructionOptions, reconstruct_bones
from MSKPriorsLib.app_context import AppContext
from MSKPriorsLib.mrml_volumes import add_volume_from_sitk

SPACING_MM = 3.0


@pytest.fixture
def a_sphere_check() -> SurfaceCheck:
    """The check of a closed, outward triangulated sphere of radius 10 mm."""
    source = vtk.vtkSphereSource()
    source.SetRadius(10.0)
    source.SetThetaResolution(48)
    source.SetPhiResolution(48)
    source.Update()
    return check_surface(source.GetOutput())


def _labelmap_mm3_at(check: SurfaceCheck, mean_distance_mm: float) -> float:
    """A labelmap volume whose outline lies ``mean_distance_mm`` outside the surface."""
    return check.volume_mm3 + mean_distance_mm * check.area_mm2


def test_a_sound_surface_passes(a_sphere_check: SurfaceCheck) -> None:
    problems, notes = judge_surface(a_sphere_check, a_sphere_check.volume_mm3, 5000, SPACING_MM)
    assert (problems, notes) == ([], [])


def test_a_large_piece_off_by_more_than_the_tolerance_fails(a_sphere_check: SurfaceCheck) -> None:
    labelmap_mm3 = a_sphere_check.volume_mm3 * (1 + 2.5 * VOLUME_TOLERANCE)

    problems, _ = judge_surface(a_sphere_check, labelmap_mm3, SMALL_PIECE_VOXELS, SPACING_MM)

    assert len(problems) == 1 and "differs from the labelmap volume" in problems[0]


def test_a_small_fragment_within_half_a_voxel_is_noted_not_failed(
    a_sphere_check: SurfaceCheck,
) -> None:
    labelmap_mm3 = _labelmap_mm3_at(a_sphere_check, 0.4 * SPACING_MM)
    assert labelmap_mm3 > a_sphere_check.volume_mm3 * (1 + VOLUME_TOLERANCE)  # old rule: failed

    problems, notes = judge_surface(a_sphere_check, labelmap_mm3, 120, SPACING_MM)

    assert problems == []
    assert len(notes) == 1 and "small fragment (120 voxels" in notes[0]
    assert "1.20 mm from the voxel outline, within half a voxel (1.50 mm)" in notes[0]


def test_a_collapsed_small_fragment_still_fails(a_sphere_check: SurfaceCheck) -> None:
    labelmap_mm3 = _labelmap_mm3_at(a_sphere_check, 0.7 * SPACING_MM)

    problems, notes = judge_surface(a_sphere_check, labelmap_mm3, 120, SPACING_MM)

    assert notes == []
    assert len(problems) == 1 and "more than half a voxel (1.50 mm)" in problems[0]


def test_an_open_or_inside_out_surface_fails_whatever_its_size() -> None:
    source = vtk.vtkSphereSource()
    source.SetThetaResolution(24)
    source.SetPhiResolution(24)
    clipped = vtk.vtkClipPolyData()
    plane = vtk.vtkPlane()
    plane.SetNormal(0, 0, 1)
    plane.SetOrigin(0, 0, 0.4)
    clipped.SetClipFunction(plane)
    clipped.InsideOutOn()
    clipped.SetInputConnection(source.GetOutputPort())
    triangles = vtk.vtkTriangleFilter()
    triangles.SetInputConnection(clipped.GetOutputPort())
    reverse = vtk.vtkReverseSense()
    reverse.SetInputConnection(source.GetOutputPort())
    triangles.Update()
    reverse.Update()
    opened = check_surface(triangles.GetOutput())
    inside_out = check_surface(reverse.GetOutput())

    for voxels in (50, 50_000):
        problems, _ = judge_surface(opened, opened.volume_mm3, voxels, SPACING_MM)
        assert any("not closed" in p for p in problems)
        problems, _ = judge_surface(inside_out, inside_out.volume_mm3, voxels, SPACING_MM)
        assert problems == ["surface normals are not consistently outward"]


def test_a_rod_too_thin_for_the_voxels_is_flagged(app_context: AppContext) -> None:
    # Under two voxels across: the contoured surface keeps a fraction of the voxels' volume.
    array, matrix = ct_phantom((20, 20, 20), SPACING_MM, capsule(2.5, 12.0))
    options = BoneSegmentationOptions(min_island_ml=0.01)

    result = reconstruct(app_context, array, matrix, segmentation=options)

    (bone,) = result.bones
    assert bone.closed
    assert len(bone.warnings) == 1 and "more than half a voxel" in bone.warnings[0]
    assert any(warning.startswith("bone_1: small fragment") for warning in result.warnings)


def test_a_bone_through_the_scan_is_marked_cut_not_failed(app_context: AppContext) -> None:
    # An 80 mm shaft in a 60 mm tall volume leaves it at the top and the bottom.
    array, matrix = ct_phantom((30, 24, 24), 2.0, capsule(10.0, 40.0))

    result = reconstruct(app_context, array, matrix)

    (bone,) = result.bones
    assert bone.cut_by_volume_edge == ("inferior", "superior")
    assert bone.closed and bone.warnings == []
    assert bone.volume_ml == pytest.approx(bone.labelmap_volume_ml, rel=VOLUME_TOLERANCE)
    assert bone.to_dict()["cut_by_volume_edge"] == ["inferior", "superior"]
    (sentence,) = result.warnings
    assert sentence.startswith("1 of 1 thresholded bone pieces run out of the scan: bone_1")


def test_sides_follow_the_patient_axes_of_a_flipped_grid() -> None:
    lps_like = np.diag([-1.0, -1.0, 2.0, 1.0])  # i toward the left, j toward posterior
    box = (slice(3, 10), slice(0, 5), slice(4, 20))

    assert sides_cut_by_volume_edge(box, (10, 8, 20), lps_like) == ("superior", "anterior", "left")
    assert sides_cut_by_volume_edge((slice(1, 9),) * 3, (10, 10, 10), lps_like) == ()


@pytest.mark.slow
def test_rib_ends_of_the_real_ct_are_not_reported_as_failures(
    app_context: AppContext, shared_data: Path
) -> None:
    ct = sitk.ReadImage(str(shared_data / "totalsegmentator" / "ct_volume.nii.gz"))
    volume = add_volume_from_sitk(app_context.scene, ct, "ct_volume")
    segmentation = BoneSegmentationOptions(preset="cancellous", min_island_ml=2.0)

    result = reconstruct_bones(
        app_context, volume, None, ReconstructionOptions(segmentation=segmentation)
    )

    small: list[Any] = [bone for bone in result.bones if bone.notes]
    assert len(result.bones) >= 5 and len(small) >= 4
    for bone in result.bones:
        assert bone.closed and bone.warnings == [], (bone.name, bone.warnings)
    # The pieces at the top of the scan are rib ends: their surfaces say so.
    assert sum("superior" in bone.cut_by_volume_edge for bone in result.bones) >= 4
    big = max(result.bones, key=lambda bone: bone.labelmap_volume_ml)
    assert big.notes == []
    assert big.volume_ml == pytest.approx(big.labelmap_volume_ml, rel=VOLUME_TOLERANCE)

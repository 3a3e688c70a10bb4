"""Bone surfaces on synthetic CT phantoms with analytic volumes, areas and surfaces."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import vtk
from vtk.util import numpy_support

from MSKPlannerLib.bone_segmentation import BoneSegmentationOptions
from MSKPlannerLib.surface_reconstruction import (
    ReconstructionOptions,
    ReconstructionResult,
    check_surface,
    reconstruct_bones,
)
from MSKPriorsLib.app_context import AppContext
from MSKPriorsLib.mrml_volumes import add_volume_from_array

SOFT_TISSUE_HU = 40.0
MARROW_HU = 20.0
CORTEX_HU = 1200.0
NOISE_HU = 15.0
HALFWAY_HU = (SOFT_TISSUE_HU + CORTEX_HU) / 2


def ct_phantom(
    shape_kji: tuple[int, int, int],
    spacing_mm: float,
    inside: Callable[..., npt.NDArray[np.float64]],
    cavity: Callable[..., npt.NDArray[np.float64]] | None = None,
    seed: int = 0,
) -> tuple[npt.NDArray[np.int16], npt.NDArray[np.float64]]:
    """CT-like volume: soft tissue, bone where ``inside(x, y, z) > 0`` (RAS mm), marrow cavity.

    Bone edges carry partial-volume values (linear in the analytic signed distance, sampled
    at voxel centres), so thresholding halfway recovers the analytic surface; the IJK-to-RAS
    matrix is a plain scaling, centred on the volume.
    """
    k, j, i = np.indices(shape_kji, dtype=np.float64)
    x = (i - (shape_kji[2] - 1) / 2) * spacing_mm
    y = (j - (shape_kji[1] - 1) / 2) * spacing_mm
    z = (k - (shape_kji[0] - 1) / 2) * spacing_mm
    fraction = np.clip(inside(x, y, z) / spacing_mm + 0.5, 0.0, 1.0)
    values = SOFT_TISSUE_HU + fraction * (CORTEX_HU - SOFT_TISSUE_HU)
    if cavity is not None:
        hollow = np.clip(cavity(x, y, z) / spacing_mm + 0.5, 0.0, 1.0)
        values = values - hollow * (CORTEX_HU - MARROW_HU)
    values += np.random.default_rng(seed).normal(0.0, NOISE_HU, shape_kji)
    matrix = np.diag([spacing_mm, spacing_mm, spacing_mm, 1.0])
    matrix[:3, 3] = [-(n - 1) / 2 * spacing_mm for n in shape_kji[::-1]]
    return values.round().astype(np.int16), matrix


def sphere(radius_mm: float, centre: tuple[float, float, float] = (0, 0, 0)) -> Callable[..., Any]:
    """Signed distance inside a sphere (positive inside), RAS mm."""

    def inside(x: Any, y: Any, z: Any) -> Any:
        return radius_mm - np.sqrt(
            (x - centre[0]) ** 2 + (y - centre[1]) ** 2 + (z - centre[2]) ** 2
        )

    return inside


def capsule(radius_mm: float, half_length_mm: float) -> Callable[..., Any]:
    """Signed distance inside a capsule along z (a long bone with round ends), RAS mm."""

    def inside(x: Any, y: Any, z: Any) -> Any:
        along = np.clip(z, -half_length_mm, half_length_mm)
        return radius_mm - np.sqrt(x**2 + y**2 + (z - along) ** 2)

    return inside


def cylinder(radius_mm: float, half_length_mm: float) -> Callable[..., Any]:
    """Signed distance inside a finite cylinder along z (flat ends), RAS mm."""

    def inside(x: Any, y: Any, z: Any) -> Any:
        return np.minimum(radius_mm - np.sqrt(x**2 + y**2), half_length_mm - np.abs(z))

    return inside


def surface_points(polydata: Any) -> npt.NDArray[np.float64]:
    return np.asarray(numpy_support.vtk_to_numpy(polydata.GetPoints().GetData()), dtype=float)


def reconstruct(
    context: AppContext, array: Any, matrix: Any, **options: Any
) -> ReconstructionResult:
    volume = add_volume_from_array(context.scene, array, matrix, "phantom")
    # Thresholding halfway between soft tissue and cortex puts the iso-surface on the
    # analytic surface.
    options.setdefault("segmentation", BoneSegmentationOptions())
    options["segmentation"].lower_hu = HALFWAY_HU
    return reconstruct_bones(context, volume, None, ReconstructionOptions(**options))


def test_sphere_volume_area_and_distance_match_the_analytic_sphere(app_context: AppContext) -> None:
    radius_mm = 18.0
    array, matrix = ct_phantom((56, 56, 56), 1.0, sphere(radius_mm))

    result = reconstruct(app_context, array, matrix)

    assert [bone.name for bone in result.bones] == ["bone_1"]
    bone = result.bones[0]
    analytic_ml = 4 / 3 * np.pi * radius_mm**3 / 1000
    analytic_cm2 = 4 * np.pi * radius_mm**2 / 100
    assert bone.volume_ml == pytest.approx(analytic_ml, rel=0.02)
    assert bone.volume_ml == pytest.approx(bone.labelmap_volume_ml, rel=0.02)
    assert bone.area_cm2 == pytest.approx(analytic_cm2, rel=0.05)
    distance_mm = np.abs(np.linalg.norm(surface_points(bone.polydata), axis=1) - radius_mm)
    assert distance_mm.mean() < 0.25
    assert distance_mm.max() < 0.8
    assert bone.closed and bone.check.boundary_edges == 0 and bone.check.non_manifold_edges == 0


def test_normals_point_outwards_on_the_sphere(app_context: AppContext) -> None:
    array, matrix = ct_phantom((40, 40, 40), 1.0, sphere(12.0))

    bone = reconstruct(app_context, array, matrix).bones[0]

    points = surface_points(bone.polydata)
    normals = numpy_support.vtk_to_numpy(bone.polydata.GetPointData().GetNormals())
    radial = points / np.linalg.norm(points, axis=1, keepdims=True)
    assert np.einsum("ij,ij->i", normals, radial).min() > 0.5
    assert bone.check.consistent and bone.check.outward


def test_a_mirrored_voxel_grid_still_gives_outward_normals(app_context: AppContext) -> None:
    array, matrix = ct_phantom((40, 40, 40), 1.0, sphere(12.0))
    matrix[0, 0] = -matrix[0, 0]

    bone = reconstruct(app_context, array, matrix).bones[0]

    assert bone.closed
    assert bone.volume_ml == pytest.approx(4 / 3 * np.pi * 12.0**3 / 1000, rel=0.02)


def test_cylinder_volume_and_area_match_the_analytic_cylinder(app_context: AppContext) -> None:
    radius_mm, half_mm = 10.0, 25.0
    array, matrix = ct_phantom((64, 30, 30), 1.0, cylinder(radius_mm, half_mm))

    bone = reconstruct(app_context, array, matrix).bones[0]

    analytic_ml = np.pi * radius_mm**2 * 2 * half_mm / 1000
    analytic_cm2 = (2 * np.pi * radius_mm * 2 * half_mm + 2 * np.pi * radius_mm**2) / 100
    assert bone.volume_ml == pytest.approx(analytic_ml, rel=0.02)
    # Smoothing rounds the rims of the flat ends a little, which takes some area away.
    assert bone.area_cm2 == pytest.approx(analytic_cm2, rel=0.05)
    assert bone.closed


def test_hollow_bone_cavity_is_filled_and_the_outer_surface_kept(app_context: AppContext) -> None:
    outer_mm, inner_mm, half_mm = 12.0, 8.0, 25.0
    array, matrix = ct_phantom(
        (80, 34, 34), 1.0, capsule(outer_mm, half_mm), cavity=capsule(inner_mm, half_mm)
    )

    result = reconstruct(app_context, array, matrix)

    assert len(result.bones) == 1
    bone = result.bones[0]
    analytic_ml = (np.pi * outer_mm**2 * 2 * half_mm + 4 / 3 * np.pi * outer_mm**3) / 1000
    assert bone.volume_ml == pytest.approx(analytic_ml, rel=0.02)
    points = surface_points(bone.polydata)
    along = np.clip(points[:, 2], -half_mm, half_mm)
    radial_mm = np.sqrt(points[:, 0] ** 2 + points[:, 1] ** 2 + (points[:, 2] - along) ** 2)
    # One outer surface only: no vertex lies on the cavity wall.
    assert np.abs(radial_mm - outer_mm).mean() < 0.25
    assert radial_mm.min() > outer_mm - 1.0
    assert bone.closed


def test_without_filling_the_cavity_stays_hollow(app_context: AppContext) -> None:
    outer_mm, inner_mm, half_mm = 12.0, 8.0, 25.0
    # Half-millimetre voxels: at 1 mm the voxel count of an 8 mm canal is already 3% off.
    array, matrix = ct_phantom(
        (160, 68, 68), 0.5, capsule(outer_mm, half_mm), cavity=capsule(inner_mm, half_mm)
    )

    bone = reconstruct(
        app_context, array, matrix, segmentation=BoneSegmentationOptions(fill_cavities="none")
    ).bones[0]

    shell_ml = (
        np.pi * (outer_mm**2 - inner_mm**2) * 2 * half_mm
        + 4 / 3 * np.pi * (outer_mm**3 - inner_mm**3)
    ) / 1000
    assert bone.volume_ml == pytest.approx(shell_ml, rel=0.02)
    assert bone.closed


def test_open_medullary_canal_is_filled_slice_by_slice(app_context: AppContext) -> None:
    outer_mm, inner_mm = 12.0, 8.0
    long = cylinder(outer_mm, 1000.0)
    canal = cylinder(inner_mm, 1000.0)
    array, matrix = ct_phantom((40, 34, 34), 1.0, long, cavity=canal)

    three_d = reconstruct(app_context, array, matrix).bones[0]
    slices = reconstruct(
        app_context, array, matrix, segmentation=BoneSegmentationOptions(fill_cavities="slices")
    ).bones[0]

    length_mm = 40.0
    assert slices.labelmap_volume_ml == pytest.approx(
        np.pi * outer_mm**2 * length_mm / 1000, rel=0.03
    )
    # A canal open at both ends is not a closed 3D cavity, so 3D filling leaves it.
    assert three_d.labelmap_volume_ml < 0.7 * slices.labelmap_volume_ml
    assert slices.closed and three_d.closed


def test_metal_insert_is_kept_out_of_the_bone_and_reported(app_context: AppContext) -> None:
    outer_mm, inner_mm, half_mm, stem_mm = 12.0, 8.0, 25.0, 3.0
    array, matrix = ct_phantom(
        (80, 34, 34), 1.0, capsule(outer_mm, half_mm), cavity=capsule(inner_mm, half_mm)
    )
    k, j, i = np.indices(array.shape)
    stem = ((i - 16.5) ** 2 + (j - 16.5) ** 2 <= stem_mm**2) & (k >= 20) & (k < 60)
    array[stem] = 6000

    result = reconstruct(app_context, array, matrix)

    assert len(result.metal) == 1
    metal = result.metal[0]
    assert metal.volume_ml == pytest.approx(stem.sum() / 1000, rel=0.01)
    assert metal.max_hu == 6000
    assert np.allclose(metal.centroid_lps_mm, (0.0, 0.0, 0.0), atol=1.0)
    assert any("metal" in warning for warning in result.warnings)
    bone = result.bones[0]
    labels = np.asarray(
        numpy_support.vtk_to_numpy(
            result.segmentation_node.GetSegmentation()
            .GetSegment(bone.segment_id)
            .GetRepresentation("Binary labelmap")
            .GetPointData()
            .GetScalars()
        )
    ).reshape(array.shape)
    assert not np.any(labels[stem])
    assert bone.closed
    filled_ml = (np.pi * outer_mm**2 * 2 * half_mm + 4 / 3 * np.pi * outer_mm**3) / 1000
    assert bone.labelmap_volume_ml < filled_ml - stem.sum() / 1000


def test_seeds_split_two_touching_bones(app_context: AppContext) -> None:
    left, right = sphere(10.0, (-9.0, 0.0, 0.0)), sphere(10.0, (9.0, 0.0, 0.0))
    array, matrix = ct_phantom(
        (30, 30, 50), 1.0, lambda x, y, z: np.maximum(left(x, y, z), right(x, y, z))
    )

    unseeded = reconstruct(app_context, array, matrix)
    seeded = reconstruct(
        app_context,
        array,
        matrix,
        seeds_ras_mm={"femur_left": (12.0, 0.0, 0.0), "hip_left": (-12.0, 0.0, 0.0)},
    )

    assert len(unseeded.bones) == 1
    assert sorted(bone.name for bone in seeded.bones) == ["femur_left", "hip_left"]
    volumes = [bone.volume_ml for bone in seeded.bones]
    assert volumes[0] == pytest.approx(volumes[1], rel=0.05)
    assert sum(volumes) == pytest.approx(unseeded.bones[0].volume_ml, rel=0.02)
    femur = next(bone for bone in seeded.bones if bone.name == "femur_left")
    assert surface_points(femur.polydata)[:, 0].mean() > 5.0
    assert all(bone.closed for bone in seeded.bones)


def test_small_islands_are_removed(app_context: AppContext) -> None:
    array, matrix = ct_phantom((40, 40, 40), 1.0, sphere(10.0))
    array[2:4, 2:4, 2:4] = 1200

    result = reconstruct(app_context, array, matrix)

    assert len(result.bones) == 1


def test_decimation_keeps_the_surface_closed_and_the_volume(app_context: AppContext) -> None:
    array, matrix = ct_phantom((48, 48, 48), 1.0, sphere(15.0))

    full = reconstruct(app_context, array, matrix).bones[0]
    light = reconstruct(app_context, array, matrix, decimate=0.8).bones[0]

    assert light.polydata.GetNumberOfPolys() < 0.3 * full.polydata.GetNumberOfPolys()
    assert light.closed
    assert light.volume_ml == pytest.approx(full.volume_ml, rel=0.02)


def test_models_go_into_a_subject_hierarchy_folder(app_context: AppContext) -> None:
    array, matrix = ct_phantom((40, 40, 40), 1.0, sphere(10.0))

    result = reconstruct(app_context, array, matrix, folder_name="Bones")

    model = result.bones[0].model_node
    assert model is not None and model.GetPolyData().GetNumberOfPoints() > 0
    hierarchy = app_context.subject_hierarchy
    parent = hierarchy.GetItemParent(hierarchy.GetItemByDataNode(model))
    assert hierarchy.GetItemName(parent) == "Bones"
    segment = result.segmentation_node.GetSegmentation().GetSegment(result.bones[0].segment_id)
    assert segment.GetRepresentation("Closed surface") is not None


def test_check_surface_finds_a_hole() -> None:
    source = vtk.vtkSphereSource()
    source.SetThetaResolution(24)
    source.SetPhiResolution(24)
    source.Update()
    closed = check_surface(source.GetOutput())
    clipped = vtk.vtkClipPolyData()
    clip_plane = vtk.vtkPlane()
    clip_plane.SetNormal(0, 0, 1)
    clip_plane.SetOrigin(0, 0, 0.4)
    clipped.SetClipFunction(clip_plane)
    clipped.InsideOutOn()
    clipped.SetInputConnection(source.GetOutputPort())
    triangles = vtk.vtkTriangleFilter()
    triangles.SetInputConnection(clipped.GetOutputPort())
    triangles.Update()

    opened = check_surface(triangles.GetOutput())

    assert closed.closed and closed.outward
    assert not opened.closed and opened.boundary_edges > 0
    assert opened.boundary_edges == feature_edges(triangles.GetOutput())


def feature_edges(polydata: Any) -> int:
    """Boundary plus non-manifold edges as vtkFeatureEdges counts them."""
    edges = vtk.vtkFeatureEdges()
    edges.SetInputData(polydata)
    edges.BoundaryEdgesOn()
    edges.NonManifoldEdgesOn()
    edges.FeatureEdgesOff()
    edges.ManifoldEdgesOff()
    edges.Update()
    return int(edges.GetOutput().GetNumberOfCells())


def test_reconstructed_surfaces_have_no_feature_edges(app_context: AppContext) -> None:
    outer_mm, inner_mm, half_mm = 12.0, 8.0, 25.0
    array, matrix = ct_phantom(
        (80, 34, 34), 1.0, capsule(outer_mm, half_mm), cavity=capsule(inner_mm, half_mm)
    )

    bone = reconstruct(app_context, array, matrix, decimate=0.5).bones[0]

    assert feature_edges(bone.polydata) == 0
    assert bone.closed


def test_an_empty_volume_gives_no_bones_and_says_so(
    app_context: AppContext, tmp_path: Path
) -> None:
    array = np.zeros((20, 20, 20), dtype=np.int16)

    result = reconstruct(app_context, array, np.eye(4), output_dir=tmp_path)

    assert result.bones == []
    assert any("no bone" in warning for warning in result.warnings)

"""Rigid registration recovers a known transform of a real CT, and the MRML transform node maps
prior points onto the current study in RAS."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import SimpleITK as sitk

from MSKPriorsLib.app_context import AppContext
from MSKPriorsLib.mrml_volumes import add_volume_from_sitk
from MSKPriorsLib.registration import (
    LPS_TO_RAS_4X4,
    euler_to_matrix,
    register_prior_volume,
    register_rigid,
    transform_to_parent_ras,
)


@pytest.fixture(scope="module")
def real_ct(shared_data: Path) -> sitk.Image:
    """The real 3 mm abdomen/pelvis CT (geometry in LPS)."""
    return sitk.ReadImage(str(shared_data / "totalsegmentator" / "ct_volume.nii.gz"))


def known_transform(
    image: sitk.Image, angles_deg: tuple[float, float, float], shift_mm: tuple[float, float, float]
) -> sitk.Euler3DTransform:
    """A rigid transform about the image centre: current LPS point -> prior LPS point."""
    transform = sitk.Euler3DTransform()
    transform.SetCenter(
        image.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2 for s in image.GetSize()])
    )
    transform.SetRotation(*(math.radians(a) for a in angles_deg))
    transform.SetTranslation(shift_mm)
    return transform


def make_prior(
    current: sitk.Image, truth: sitk.Euler3DTransform, grid_shift_mm: float
) -> sitk.Image:
    """Resample the current image so that prior(truth(x)) = current(x), on a shifted grid."""
    grid = sitk.Image(current.GetSize(), current.GetPixelID())
    grid.CopyInformation(current)
    grid.SetOrigin(tuple(o + grid_shift_mm for o in current.GetOrigin()))
    return sitk.Resample(current, grid, truth.GetInverse(), sitk.sitkLinear, -1024.0)


def sample_points_lps(image: sitk.Image) -> list[npt.NDArray[np.float64]]:
    size = image.GetSize()
    fractions = [
        (0.25, 0.25, 0.25),
        (0.75, 0.25, 0.5),
        (0.5, 0.75, 0.75),
        (0.25, 0.75, 0.25),
        (0.5, 0.5, 0.5),
    ]
    return [
        np.array(
            image.TransformContinuousIndexToPhysicalPoint(
                [f * (s - 1) for f, s in zip(fr, size, strict=True)]
            )
        )
        for fr in fractions
    ]


def rotation_error_deg(
    matrix_a: npt.NDArray[np.float64], matrix_b: npt.NDArray[np.float64]
) -> float:
    relative = matrix_a[:3, :3].T @ matrix_b[:3, :3]
    return math.degrees(math.acos(max(-1.0, min(1.0, (np.trace(relative) - 1) / 2))))


def test_recovers_a_known_rigid_transform_within_1_mm_and_1_degree(real_ct: sitk.Image) -> None:
    truth = known_transform(real_ct, (5.0, -3.0, 7.0), (8.0, -5.0, 10.0))
    prior = make_prior(real_ct, truth, grid_shift_mm=4.5)

    result = register_rigid(real_ct, prior)

    recovered, expected = euler_to_matrix(result.transform_lps), euler_to_matrix(truth)
    for point in sample_points_lps(real_ct):
        error_mm = np.linalg.norm((recovered @ np.r_[point, 1] - expected @ np.r_[point, 1])[:3])
        assert error_mm < 1.0
    assert rotation_error_deg(recovered, expected) < 1.0
    assert result.rotation_deg == pytest.approx((5.0, -3.0, 7.0), abs=1.0)
    assert result.final_metric < -0.5
    assert result.to_dict()["matrix_ras"][3] == [0.0, 0.0, 0.0, 1.0]


def test_transform_node_maps_prior_points_onto_the_current_study_in_ras(
    app_context: AppContext, real_ct: sitk.Image
) -> None:
    truth = known_transform(real_ct, (-4.0, 2.0, -6.0), (-7.0, 6.0, -9.0))
    scene = app_context.scene
    current = add_volume_from_sitk(scene, real_ct, "current")
    prior = add_volume_from_sitk(scene, make_prior(real_ct, truth, grid_shift_mm=-3.0), "prior")

    registration = register_prior_volume(scene, current, prior)

    node = registration.transform_node
    assert prior.GetParentTransformNode() is node
    assert node.IsA("vtkMRMLLinearTransformNode")
    to_parent_ras = transform_to_parent_ras(node)
    truth_lps = euler_to_matrix(truth)
    for point_lps in sample_points_lps(real_ct):
        current_ras = LPS_TO_RAS_4X4 @ np.r_[point_lps, 1]
        prior_ras = LPS_TO_RAS_4X4 @ truth_lps @ np.r_[point_lps, 1]
        shown_at = to_parent_ras @ prior_ras
        assert np.linalg.norm((shown_at - current_ras)[:3]) < 1.0
        # The node's own VTK transform agrees with the matrix.
        world = node.GetTransformToParent().TransformPoint(prior_ras[:3].tolist())
        assert np.allclose(world, shown_at[:3], atol=1e-6)
    assert registration.result.final_metric < -0.5


def test_refuses_a_transformed_current_volume(app_context: AppContext, real_ct: sitk.Image) -> None:
    scene = app_context.scene
    current = add_volume_from_sitk(scene, real_ct, "current")
    prior = add_volume_from_sitk(scene, real_ct, "prior")
    moved = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "moved")
    current.SetAndObserveTransformNodeID(moved.GetID())

    with pytest.raises(ValueError, match="'current' is under a transform"):
        register_prior_volume(scene, current, prior)


def test_refuses_an_image_that_is_not_3d(real_ct: sitk.Image) -> None:
    flat = sitk.Image([64, 64, 1], sitk.sitkInt16)

    with pytest.raises(ValueError, match="prior image must be 3D"):
        register_rigid(real_ct, flat)

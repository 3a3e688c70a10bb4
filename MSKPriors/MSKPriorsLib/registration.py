"""Rigid registration of a prior series to the current one, so linked views show the same anatomy.

Frames, stated once:

- SimpleITK images and transforms live in **LPS** millimetres. :func:`register_rigid` returns
  an ``Euler3DTransform`` ``T`` that maps a point of the *current* (fixed) image to the same
  anatomy in the *prior* (moving) image: ``x_prior_lps = T(x_current_lps)``. This is ITK's
  resampling direction.
- Slicer's world is **RAS** millimetres. The same mapping in RAS is ``F @ M_lps @ F`` with
  ``F = diag(-1, -1, 1, 1)``. In a ``vtkMRMLLinearTransformNode`` it is the transform *from
  parent*: world (current) coordinates to the prior volume's own coordinates. Its inverse, the
  transform *to parent*, moves the prior onto the current study, which is what observing the
  node does to the prior volume.

Method: Mattes mutual information (works across CT and MR), regular-step gradient descent
with scales from physical shift, a centred geometry initialiser, three resolution levels (blocks
of 4, 2 and 1 voxels averaged, then smoothed by 1, 0.5 and 0 voxels of the level; each level
starts from the previous level's result) and random sampling of a few percent of the
voxels (at most :attr:`RigidSettings.max_samples` per level) with a fixed seed, so results
repeat.

:func:`register_rigid` is pure core; :func:`register_prior_volume` is MRML logic.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk
import vtk

from MSKPriorsLib.frames import numpy_from_vtk_matrix, vtk_matrix_from_numpy
from MSKPriorsLib.mrml_volumes import sitk_from_volume

logger = logging.getLogger(__name__)

#: Flips the first two axes: LPS <-> RAS, for 4x4 homogeneous matrices (its own inverse).
LPS_TO_RAS_4X4 = np.diag([-1.0, -1.0, 1.0, 1.0])

#: Transform-node attribute holding the final metric; it marks nodes made by registration.
METRIC_ATTRIBUTE = "MSKWB.RegistrationMetric"


@dataclass(frozen=True)
class RigidSettings:
    """Parameters of :func:`register_rigid` (defaults tuned for CT/MR of 1-3 mm voxels).

    Attributes
    ----------
    shrink_factors, smoothing_sigmas_vox
        Resolution pyramid: block-averaging factor and Gaussian sigma (in voxels of the
        shrunk image) per level; both tuples have one entry per level.
    sampling_percentage
        Fraction (0..1) of fixed-image voxels sampled for the metric at each level...
    max_samples
        ...but never more than this many voxels per level, so large images stay fast.
    histogram_bins
        Mattes mutual information histogram bins.
    learning_rate, min_step, iterations
        Regular-step gradient descent: first step, smallest step, iterations per level.
    initializer
        ``geometry`` (centres of the two image grids) or ``moments`` (centres of intensity mass).
    seed
        Random seed of the metric sampling.
    """

    shrink_factors: tuple[int, ...] = (4, 2, 1)
    smoothing_sigmas_vox: tuple[float, ...] = (1.0, 0.5, 0.0)
    sampling_percentage: float = 0.2
    max_samples: int = 20_000
    histogram_bins: int = 50
    learning_rate: float = 2.0
    min_step: float = 1e-3
    iterations: int = 200
    initializer: str = "geometry"
    seed: int = 20240611


@dataclass(frozen=True)
class RigidResult:
    """Result of a rigid registration.

    Attributes
    ----------
    transform_lps
        ``Euler3DTransform`` mapping current (fixed) LPS points to prior (moving) LPS points.
    final_metric
        Mattes mutual information at the end (negative; lower is better aligned).
    iterations
        Iterations at the last (finest) resolution level.
    stop_condition
        The optimiser's stop description.
    rotation_deg
        Euler angles (about LPS x, y, z, applied in ITK's Z-X-Y order) in degrees.
    translation_lps_mm
        Translation of the transform in LPS millimetres.
    elapsed_s
        Wall time of the registration.
    """

    transform_lps: sitk.Euler3DTransform
    final_metric: float
    iterations: int
    stop_condition: str
    rotation_deg: tuple[float, float, float]
    translation_lps_mm: tuple[float, float, float]
    elapsed_s: float

    def matrix_lps(self) -> npt.NDArray[np.float64]:
        """Return the transform as a 4x4 homogeneous matrix in LPS millimetres."""
        return euler_to_matrix(self.transform_lps)

    def matrix_ras(self) -> npt.NDArray[np.float64]:
        """Return the transform (current -> prior) as a 4x4 matrix in RAS millimetres."""
        return LPS_TO_RAS_4X4 @ self.matrix_lps() @ LPS_TO_RAS_4X4

    def to_dict(self) -> dict[str, Any]:
        """Return the quality figures and parameters as JSON-ready values."""
        return {
            "final_metric": self.final_metric,
            "iterations": self.iterations,
            "stop_condition": self.stop_condition,
            "rotation_deg": list(self.rotation_deg),
            "translation_lps_mm": list(self.translation_lps_mm),
            "matrix_ras": self.matrix_ras().tolist(),
            "elapsed_s": self.elapsed_s,
        }


@dataclass(frozen=True)
class VolumeRegistration:
    """A prior volume registered in a scene: its transform node and the registration result."""

    transform_node: Any
    result: RigidResult


def euler_to_matrix(transform: sitk.Euler3DTransform) -> npt.NDArray[np.float64]:
    """Return a rigid SimpleITK transform as a 4x4 homogeneous matrix in its own frame (LPS mm).

    ``T(x) = R (x - c) + c + t``, so the matrix holds ``R`` and the offset ``c + t - R c``.
    """
    rotation = np.array(transform.GetMatrix(), dtype=float).reshape(3, 3)
    centre = np.array(transform.GetCenter(), dtype=float)
    translation = np.array(transform.GetTranslation(), dtype=float)
    matrix = np.eye(4)
    matrix[:3, :3] = rotation
    matrix[:3, 3] = centre + translation - rotation @ centre
    return matrix


def register_rigid(
    fixed: sitk.Image, moving: sitk.Image, settings: RigidSettings | None = None
) -> RigidResult:
    """Rigidly register ``moving`` (a prior) to ``fixed`` (the current image).

    Parameters
    ----------
    fixed
        Current image, 3D, geometry in LPS mm.
    moving
        Prior image, 3D, geometry in LPS mm; any modality (mutual information).
    settings
        Registration parameters; :class:`RigidSettings` defaults when None.

    Returns
    -------
    RigidResult
        The transform mapping fixed LPS points to moving LPS points, with the final metric.

    Raises
    ------
    ValueError
        When an image is not 3D or has fewer than 4 voxels along an axis.
    """
    settings = settings or RigidSettings()
    for label, image in (("current", fixed), ("prior", moving)):
        if image.GetDimension() != 3 or min(image.GetSize()) < 4:
            raise ValueError(
                f"the {label} image must be 3D with at least 4 voxels per axis for rigid "
                f"registration; it has size {image.GetSize()}"
            )
    if len(settings.shrink_factors) != len(settings.smoothing_sigmas_vox):
        raise ValueError("registration settings need one smoothing sigma per shrink factor")
    started = time.perf_counter()
    fixed_float = sitk.Cast(fixed, sitk.sitkFloat32)
    moving_float = sitk.Cast(moving, sitk.sitkFloat32)
    mode = (
        sitk.CenteredTransformInitializerFilter.MOMENTS
        if settings.initializer == "moments"
        else sitk.CenteredTransformInitializerFilter.GEOMETRY
    )
    initial = sitk.CenteredTransformInitializer(
        fixed_float, moving_float, sitk.Euler3DTransform(), mode
    )

    euler = sitk.Euler3DTransform(initial)
    fractions = _sampling_per_level(fixed, settings)
    method = sitk.ImageRegistrationMethod()
    for level, shrink in enumerate(settings.shrink_factors):
        fixed_level = _pyramid_level(fixed_float, shrink, settings.smoothing_sigmas_vox[level])
        moving_level = _pyramid_level(moving_float, shrink, settings.smoothing_sigmas_vox[level])
        method = _level_method(settings, fractions[level])
        method.SetInitialTransform(euler, inPlace=False)
        euler = _as_euler(method.Execute(fixed_level, moving_level))
        logger.debug(
            "level %d (shrink %d): metric %.4f after %d iterations",
            level,
            shrink,
            method.GetMetricValue(),
            method.GetOptimizerIteration(),
        )

    angles = euler.GetAngleX(), euler.GetAngleY(), euler.GetAngleZ()
    result = RigidResult(
        transform_lps=euler,
        final_metric=float(method.GetMetricValue()),
        iterations=int(method.GetOptimizerIteration()),
        stop_condition=method.GetOptimizerStopConditionDescription(),
        rotation_deg=(
            math.degrees(angles[0]),
            math.degrees(angles[1]),
            math.degrees(angles[2]),
        ),
        translation_lps_mm=tuple(float(v) for v in euler.GetTranslation()),  # type: ignore[arg-type]
        elapsed_s=time.perf_counter() - started,
    )
    logger.info(
        "rigid registration: metric %.4f after %d iterations in %.2f s",
        result.final_metric,
        result.iterations,
        result.elapsed_s,
    )
    return result


def register_prior_volume(
    scene: Any,
    current_volume: Any,
    prior_volume: Any,
    settings: RigidSettings | None = None,
    transform_node: Any | None = None,
) -> VolumeRegistration:
    """Register a prior volume node to the current one and apply the result in the scene.

    Parameters
    ----------
    scene
        The ``vtkMRMLScene`` holding both volumes.
    current_volume
        The current study's ``vtkMRMLScalarVolumeNode``; it must not be under a transform.
    prior_volume
        The prior's volume node; it is set to observe the resulting transform (any transform
        it observed before is replaced).
    settings
        Registration parameters.
    transform_node
        A ``vtkMRMLLinearTransformNode`` to reuse. When None, the transform of an earlier
        registration of this prior is reused, else a new node named after the prior is added.

    Returns
    -------
    VolumeRegistration
        The transform node (from parent = current RAS -> prior RAS) and the quality figures.

    Raises
    ------
    ValueError
        When the current volume is itself transformed (register to its hardened copy instead).
    """
    if current_volume.GetParentTransformNode() is not None:
        raise ValueError(
            f"current volume {current_volume.GetName()!r} is under a transform; harden or remove "
            "it before registering priors to it"
        )
    result = register_rigid(
        sitk_from_volume(current_volume), sitk_from_volume(prior_volume), settings
    )
    previous = prior_volume.GetParentTransformNode()
    if transform_node is None and previous is not None and previous.GetAttribute(METRIC_ATTRIBUTE):
        transform_node = previous
    if transform_node is None:
        transform_node = scene.AddNewNodeByClass(
            "vtkMRMLLinearTransformNode", f"{prior_volume.GetName()} registered"
        )
    transform_node.SetMatrixTransformFromParent(vtk_matrix_from_numpy(result.matrix_ras()))
    transform_node.SetAttribute(METRIC_ATTRIBUTE, f"{result.final_metric:.6f}")
    prior_volume.SetAndObserveTransformNodeID(transform_node.GetID())
    return VolumeRegistration(transform_node, result)


def transform_to_parent_ras(transform_node: Any) -> npt.NDArray[np.float64]:
    """Return a linear transform node's to-parent matrix (prior RAS -> world RAS), 4x4."""
    matrix = vtk.vtkMatrix4x4()
    transform_node.GetMatrixTransformToParent(matrix)
    return numpy_from_vtk_matrix(matrix)


def _level_method(
    settings: RigidSettings, sampling_fraction: float
) -> sitk.ImageRegistrationMethod:
    """One resolution level: Mattes MI, random sampling, regular-step gradient descent."""
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=settings.histogram_bins)
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentage(sampling_fraction, settings.seed)
    # Image gradients at the sampled points only, not a gradient image of every voxel.
    method.SetMetricUseFixedImageGradientFilter(False)
    method.SetMetricUseMovingImageGradientFilter(False)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(
        learningRate=settings.learning_rate,
        minStep=settings.min_step,
        numberOfIterations=settings.iterations,
        relaxationFactor=0.5,
    )
    method.SetOptimizerScalesFromPhysicalShift()
    return method


def _pyramid_level(image: sitk.Image, shrink: int, sigma_vox: float) -> sitk.Image:
    """Average ``shrink``^3 blocks of voxels, then smooth by ``sigma_vox`` voxels of the result.

    Block averaging is the anti-aliasing; smoothing the small image is cheap, unlike smoothing
    the full-resolution image before subsampling.
    """
    size = image.GetSize()
    factors = [max(1, min(shrink, n // 4)) for n in size]
    level = sitk.BinShrink(image, factors) if max(factors) > 1 else image
    if sigma_vox > 0:
        level = sitk.SmoothingRecursiveGaussian(level, [sigma_vox * s for s in level.GetSpacing()])
    return level


def _sampling_per_level(fixed: sitk.Image, settings: RigidSettings) -> list[float]:
    """Sampling fraction per pyramid level: the set fraction, capped at ``max_samples`` voxels."""
    voxels = float(np.prod(fixed.GetSize()))
    fractions = []
    for shrink in settings.shrink_factors:
        level_voxels = max(voxels / float(shrink) ** 3, 1.0)
        fractions.append(min(settings.sampling_percentage, settings.max_samples / level_voxels))
    return fractions


def _as_euler(transform: sitk.Transform) -> sitk.Euler3DTransform:
    """Unwrap the registration output (a composite holding one Euler transform)."""
    if isinstance(transform, sitk.CompositeTransform):
        transform = transform.GetBackTransform()
    return sitk.Euler3DTransform(transform)

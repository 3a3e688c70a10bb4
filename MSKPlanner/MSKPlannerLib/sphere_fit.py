"""Least-squares sphere fit: the hip (femoral head) centre from surface points or a segment.

Public API
----------
- :class:`SphereFit`: centre (RAS mm), radius (mm) and RMS residual (mm).
- :func:`fit_sphere`: algebraic fit refined by geometric least squares, for N >= 4 points.
- :func:`fit_sphere_to_mask`: fit to the boundary voxels of a binary mask (for example a
  femoral head segment), given its IJK-to-RAS matrix.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage, optimize

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SphereFit:
    """A fitted sphere.

    Attributes
    ----------
    center_ras_mm
        Shape (3,), RAS mm.
    radius_mm
        Radius in mm.
    rms_residual_mm
        Root mean square of the point distances to the sphere, in mm.
    n_points
        Number of points used.
    """

    center_ras_mm: npt.NDArray[np.float64]
    radius_mm: float
    rms_residual_mm: float
    n_points: int


def fit_sphere(points_ras_mm: npt.ArrayLike) -> SphereFit:
    """Fit a sphere to points on its surface.

    Parameters
    ----------
    points_ras_mm
        Shape (N, 3), N >= 4, RAS mm (any frame works; the centre is in the same frame).

    Returns
    -------
    SphereFit

    Raises
    ------
    ValueError
        Fewer than 4 points, or points that do not span 3D (coplanar or collinear).
    """
    points = np.asarray(points_ras_mm, dtype=float).reshape(-1, 3)
    if len(points) < 4:
        raise ValueError(f"a sphere fit needs at least 4 points, got {len(points)}")
    centred = points - points.mean(axis=0)
    if np.linalg.matrix_rank(centred, tol=1e-6 * max(1.0, np.abs(centred).max())) < 3:
        raise ValueError("the points are coplanar or collinear; no unique sphere fits them")

    # Algebraic (linear) fit: |p|^2 = 2 c.p + (r^2 - |c|^2).
    design = np.column_stack([2.0 * centred, np.ones(len(points))])
    target = (centred**2).sum(axis=1)
    solution, *_ = np.linalg.lstsq(design, target, rcond=None)
    center0 = solution[:3]
    radius0 = float(np.sqrt(max(solution[3] + center0 @ center0, 1e-12)))

    def residuals(params: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return np.linalg.norm(centred - params[:3], axis=1) - params[3]

    refined = optimize.least_squares(residuals, np.append(center0, radius0), method="lm")
    center = refined.x[:3] + points.mean(axis=0)
    radius = float(abs(refined.x[3]))
    rms = float(np.sqrt(np.mean(residuals(refined.x) ** 2)))
    return SphereFit(
        center_ras_mm=center, radius_mm=radius, rms_residual_mm=rms, n_points=len(points)
    )


def fit_sphere_to_mask(mask_kji: npt.ArrayLike, ijk_to_ras_mm: npt.ArrayLike) -> SphereFit:
    """Fit a sphere to the surface voxels of a binary mask.

    Parameters
    ----------
    mask_kji
        Binary array indexed ``[k, j, i]`` (slice, row, column), as Slicer's array views.
    ijk_to_ras_mm
        4x4 matrix from voxel index ``(i, j, k, 1)`` to RAS mm.

    Returns
    -------
    SphereFit
        Fitted to the centres of the mask's boundary voxels. The centre is unbiased; the
        radius is about half a voxel smaller than the segmented head's.
    """
    mask = np.asarray(mask_kji).astype(bool)
    if not mask.any():
        raise ValueError("the mask is empty; no sphere can be fitted")
    boundary = mask & ~ndimage.binary_erosion(mask)
    kji = np.argwhere(boundary).astype(float)
    ijk1 = np.column_stack([kji[:, ::-1], np.ones(len(kji))])
    ras = (np.asarray(ijk_to_ras_mm, dtype=float) @ ijk1.T).T[:, :3]
    return fit_sphere(ras)


def fit_circle_2d(points_mm: npt.ArrayLike) -> tuple[npt.NDArray[np.float64], float, float]:
    """Fit a circle to points in a plane (least squares, geometric refinement).

    Parameters
    ----------
    points_mm
        Shape (N, 2), N >= 3, in any in-plane frame in mm.

    Returns
    -------
    tuple
        Centre (2,), radius and RMS residual, in the input frame and unit.
    """
    points = np.asarray(points_mm, dtype=float).reshape(-1, 2)
    if len(points) < 3:
        raise ValueError(f"a circle fit needs at least 3 points, got {len(points)}")
    mean = points.mean(axis=0)
    centred = points - mean
    design = np.column_stack([2.0 * centred, np.ones(len(points))])
    target = (centred**2).sum(axis=1)
    solution, _, rank, _ = np.linalg.lstsq(design, target, rcond=None)
    if rank < 3:
        raise ValueError("the points are collinear; no unique circle fits them")
    center0 = solution[:2]
    radius0 = float(np.sqrt(max(solution[2] + center0 @ center0, 1e-12)))

    def residuals(params: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return np.linalg.norm(centred - params[:2], axis=1) - params[2]

    refined = optimize.least_squares(residuals, np.append(center0, radius0), method="lm")
    rms = float(np.sqrt(np.mean(residuals(refined.x) ** 2)))
    return refined.x[:2] + mean, float(abs(refined.x[2])), rms


def hip_center_from_surface_points(points_ras_mm: npt.ArrayLike) -> SphereFit:
    """Femoral head centre from points placed on the head's surface.

    Parameters
    ----------
    points_ras_mm
        Shape (N, 3), RAS mm. Points spread in 3D (CT) are fitted with a sphere; points that
        lie in one plane (a radiograph) with a circle in that plane.

    Returns
    -------
    SphereFit
        Centre in RAS mm and radius in mm.
    """
    points = np.asarray(points_ras_mm, dtype=float).reshape(-1, 3)
    mean = points.mean(axis=0)
    _, singular, vt = np.linalg.svd(points - mean)
    if len(points) >= 4 and singular[-1] > 1e-3 * singular[0]:
        return fit_sphere(points)
    in_plane = (points - mean) @ vt[:2].T
    center_2d, radius, rms = fit_circle_2d(in_plane)
    center = mean + center_2d @ vt[:2]
    return SphereFit(
        center_ras_mm=center, radius_mm=radius, rms_residual_mm=rms, n_points=len(points)
    )

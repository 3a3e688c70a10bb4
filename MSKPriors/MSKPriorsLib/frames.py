"""Patient frames and 4x4 matrices: LPS (DICOM, ITK) against RAS (Slicer), numpy against VTK.

Pure core: numpy, SimpleITK and vtk only. Every matrix here is a 4x4 homogeneous transform in
millimetres unless a name says otherwise; arrays of voxels are indexed ``[k, j, i]``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk
import vtk

#: Diagonal that flips the first two axes: LPS <-> RAS (its own inverse).
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


def ijk_to_ras_from_sitk(image: sitk.Image) -> npt.NDArray[np.float64]:
    """Return the 4x4 IJK-to-RAS matrix (mm) of a SimpleITK image whose geometry is in LPS.

    Parameters
    ----------
    image
        A 3D SimpleITK image; its origin and direction are in LPS millimetres.
    """
    direction_lps = np.array(image.GetDirection(), dtype=float).reshape(3, 3)
    spacing_mm = np.array(image.GetSpacing(), dtype=float)
    origin_lps_mm = np.array(image.GetOrigin(), dtype=float)
    matrix = np.eye(4)
    matrix[:3, :3] = LPS_TO_RAS @ direction_lps @ np.diag(spacing_mm)
    matrix[:3, 3] = LPS_TO_RAS @ origin_lps_mm
    return matrix


def lps_grid_from_ijk_to_ras(
    ijk_to_ras_mm: npt.ArrayLike,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Split an IJK-to-RAS matrix into the LPS grid description ITK and DICOM use.

    Parameters
    ----------
    ijk_to_ras_mm
        4x4 matrix from voxel index ``(i, j, k, 1)`` to RAS millimetres.

    Returns
    -------
    spacing_mm
        Shape (3,), voxel size along i, j, k in millimetres.
    origin_lps_mm
        Shape (3,), centre of voxel (0, 0, 0) in LPS millimetres.
    direction_lps
        Shape (3, 3); column n is the LPS unit direction of voxel axis n.
    """
    matrix = np.asarray(ijk_to_ras_mm, dtype=float)
    spacing_mm = np.linalg.norm(matrix[:3, :3], axis=0)
    direction_lps = LPS_TO_RAS @ (matrix[:3, :3] / spacing_mm)
    origin_lps_mm = LPS_TO_RAS @ matrix[:3, 3]
    return spacing_mm, origin_lps_mm, direction_lps


def sitk_from_array(array_kji: npt.NDArray[Any], ijk_to_ras_mm: npt.ArrayLike) -> sitk.Image:
    """Return a SimpleITK image (geometry in LPS) holding a copy of ``array_kji``.

    Parameters
    ----------
    array_kji
        Voxels indexed ``[k, j, i]``; the image keeps their dtype.
    ijk_to_ras_mm
        4x4 matrix from voxel index ``(i, j, k, 1)`` to RAS millimetres.
    """
    spacing_mm, origin_lps_mm, direction_lps = lps_grid_from_ijk_to_ras(ijk_to_ras_mm)
    image = sitk.GetImageFromArray(array_kji)
    image.SetSpacing(tuple(float(s) for s in spacing_mm))
    image.SetOrigin(tuple(float(v) for v in origin_lps_mm))
    image.SetDirection(tuple(float(v) for v in direction_lps.ravel()))
    return image


def vtk_matrix_from_numpy(matrix: npt.ArrayLike) -> vtk.vtkMatrix4x4:
    """Return a ``vtkMatrix4x4`` copy of a 4x4 numpy matrix."""
    values = np.asarray(matrix, dtype=float)
    result = vtk.vtkMatrix4x4()
    for row in range(4):
        for column in range(4):
            result.SetElement(row, column, float(values[row, column]))
    return result


def numpy_from_vtk_matrix(matrix: vtk.vtkMatrix4x4) -> npt.NDArray[np.float64]:
    """Return a 4x4 numpy copy of a ``vtkMatrix4x4``."""
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])

"""Volume nodes to and from numpy arrays and SimpleITK images, with the LPS/RAS flip stated.

MRML volume nodes hold voxels in IJK order with an IJK-to-RAS matrix (millimetres). numpy
arrays taken from them are indexed ``[k, j, i]``. SimpleITK images carry origin and direction
in LPS millimetres. Everything here is explicit about which is which.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk
import slicer
import vtk
from vtk.util import numpy_support

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


def _vtk_matrix(matrix: npt.NDArray[np.float64]) -> vtk.vtkMatrix4x4:
    result = vtk.vtkMatrix4x4()
    for row in range(4):
        for column in range(4):
            result.SetElement(row, column, float(matrix[row, column]))
    return result


def numpy_from_vtk_matrix(matrix: vtk.vtkMatrix4x4) -> npt.NDArray[np.float64]:
    """Return a 4x4 numpy copy of a ``vtkMatrix4x4``."""
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def add_volume_from_array(
    scene: Any,
    array_kji: npt.NDArray[Any],
    ijk_to_ras_mm: npt.NDArray[np.float64],
    name: str,
    class_name: str = "vtkMRMLScalarVolumeNode",
) -> Any:
    """Add a volume node holding a copy of ``array_kji`` to ``scene``.

    Parameters
    ----------
    scene
        The ``vtkMRMLScene`` to add to.
    array_kji
        Voxels indexed ``[k, j, i]`` (slice, row, column).
    ijk_to_ras_mm
        4x4 matrix from voxel index to RAS millimetres.
    name
        Node name.
    class_name
        ``vtkMRMLScalarVolumeNode`` or ``vtkMRMLLabelMapVolumeNode``.
    """
    array_kji = np.ascontiguousarray(array_kji)
    if array_kji.ndim != 3:
        raise ValueError(f"volume {name!r}: expected a 3D array, got shape {array_kji.shape}")
    image = vtk.vtkImageData()
    image.SetDimensions(array_kji.shape[2], array_kji.shape[1], array_kji.shape[0])
    scalars = numpy_support.numpy_to_vtk(array_kji.ravel(), deep=True)
    image.GetPointData().SetScalars(scalars)

    node = scene.AddNewNodeByClass(class_name, name)
    node.SetIJKToRASMatrix(_vtk_matrix(np.asarray(ijk_to_ras_mm, dtype=float)))
    node.SetAndObserveImageData(image)
    node.CreateDefaultDisplayNodes()
    return node


def add_volume_from_sitk(
    scene: Any, image: sitk.Image, name: str, class_name: str = "vtkMRMLScalarVolumeNode"
) -> Any:
    """Add a SimpleITK image (geometry in LPS) to ``scene`` as a volume node (geometry in RAS)."""
    return add_volume_from_array(
        scene, sitk.GetArrayFromImage(image), ijk_to_ras_from_sitk(image), name, class_name
    )


def array_from_volume(node: Any) -> npt.NDArray[Any]:
    """Return a copy of a volume node's voxels indexed ``[k, j, i]``."""
    image = node.GetImageData()
    if image is None:
        raise ValueError(f"volume {node.GetName()!r} has no image data")
    dims_ijk = image.GetDimensions()
    flat = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())
    return np.array(flat).reshape(dims_ijk[2], dims_ijk[1], dims_ijk[0])


def ijk_to_ras_of(node: Any) -> npt.NDArray[np.float64]:
    """Return the 4x4 IJK-to-RAS matrix (mm) of a volume node."""
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return numpy_from_vtk_matrix(matrix)


def sitk_from_volume(node: Any) -> sitk.Image:
    """Return a SimpleITK image (geometry in LPS) copied from a volume node (geometry in RAS)."""
    matrix = ijk_to_ras_of(node)
    spacing_mm = np.linalg.norm(matrix[:3, :3], axis=0)
    direction_lps = LPS_TO_RAS @ (matrix[:3, :3] / spacing_mm)
    image = sitk.GetImageFromArray(array_from_volume(node))
    image.SetSpacing(tuple(float(s) for s in spacing_mm))
    image.SetOrigin(tuple(float(v) for v in LPS_TO_RAS @ matrix[:3, 3]))
    image.SetDirection(tuple(float(v) for v in direction_lps.ravel()))
    return image


def new_subject_hierarchy_parent(scene: Any, name: str, level: str, parent_item: int = 0) -> int:
    """Create a subject-hierarchy folder item such as a patient or study and return its ID.

    Parameters
    ----------
    level
        ``"Patient"``, ``"Study"`` or ``"Folder"``, as Slicer's subject hierarchy names them.
    parent_item
        Item to put it under; the scene item when 0.
    """
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.ResolveSubjectHierarchy(scene)
    parent = parent_item or hierarchy.GetSceneItemID()
    creators = {
        "Patient": hierarchy.CreateSubjectItem,
        "Study": hierarchy.CreateStudyItem,
        "Folder": hierarchy.CreateFolderItem,
    }
    if level not in creators:
        raise ValueError(f"unknown subject-hierarchy level {level!r} for item {name!r}")
    return int(creators[level](parent, name))


def place_under(scene: Any, node: Any, parent_item: int) -> int:
    """Put a data node under a subject-hierarchy item (creating its own item) and return it."""
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.ResolveSubjectHierarchy(scene)
    item = hierarchy.GetItemByDataNode(node)
    if not item:
        item = hierarchy.CreateItem(parent_item, node)
    else:
        hierarchy.SetItemParent(item, parent_item)
    return int(item)

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

from MSKPriorsLib.frames import (
    ijk_to_ras_from_sitk,
    numpy_from_vtk_matrix,
    sitk_from_array,
    vtk_matrix_from_numpy,
)


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
    node.SetIJKToRASMatrix(vtk_matrix_from_numpy(ijk_to_ras_mm))
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
    return sitk_from_array(array_from_volume(node), ijk_to_ras_of(node))


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

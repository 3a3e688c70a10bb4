"""Templates in the MRML scene: implant outlines on radiographs, implant models on CT.

2D: the implant outline is a closed-curve markups node whose control points are in the
implant frame (mm); its parent linear transform node carries implant frame -> radiograph
pixels -> RAS, so moving or rotating the template changes only the transform.

3D: the implant model is a model node in the implant frame under a linear transform node
(implant frame -> RAS mm); its fit against a bone surface model is the signed distance from
the implant surface to the bone (see :func:`MSKPlannerLib.implant_geometry.surface_fit`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import vtk

from MSKPlannerLib import implant_geometry
from MSKPlannerLib.implant_catalogue import CatalogueError, ImplantFamily, ImplantSize
from MSKPlannerLib.measurement_table import Calibration
from MSKPlannerLib.sphere_fit import fit_sphere
from MSKPlannerLib.templating import (
    TemplatePose,
    TemplatingError,
    implant_to_image_mm,
    spacing_of,
)
from MSKPriorsLib.frames import numpy_from_vtk_matrix, vtk_matrix_from_numpy
from MSKPriorsLib.mrml_volumes import ijk_to_ras_of

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]


@dataclass
class TemplateNodes:
    """The nodes of one template in the scene."""

    outline: Any
    transform: Any
    size: ImplantSize


def implant_to_ras(
    pose: TemplatePose, calibration: Calibration, image_name: str, ijk_to_ras_mm: npt.ArrayLike
) -> FloatArray:
    """Return the 4x4 matrix from the implant frame (mm) to RAS on a radiograph's plane.

    Parameters
    ----------
    pose
        Where the implant sits on the radiograph.
    calibration
        The radiograph's calibration (mm per pixel); refused when uncalibrated.
    image_name
        For error messages.
    ijk_to_ras_mm
        4x4 IJK-to-RAS matrix of the radiograph volume node (I = column, J = row).

    Returns
    -------
    numpy.ndarray
        Shape (4, 4). The implant's ``z`` is mapped to the image normal in mm.
    """
    row_mm, column_mm = spacing_of(calibration, image_name)
    implant_to_mm = implant_to_image_mm(pose, calibration, image_name)
    mm_to_pixels = np.array([[1.0 / column_mm, 0.0, 0.0], [0.0, -1.0 / row_mm, 0.0], [0, 0, 1]])
    to_pixels = mm_to_pixels @ implant_to_mm
    ijk_to_ras = np.asarray(ijk_to_ras_mm, dtype=float)
    normal = ijk_to_ras[:3, 2] / max(float(np.linalg.norm(ijk_to_ras[:3, 2])), 1e-12)
    matrix = np.eye(4)
    matrix[:3, 0] = ijk_to_ras[:3, :2] @ to_pixels[:2, 0]
    matrix[:3, 1] = ijk_to_ras[:3, :2] @ to_pixels[:2, 1]
    matrix[:3, 2] = normal
    matrix[:3, 3] = ijk_to_ras[:3, :2] @ to_pixels[:2, 2] + ijk_to_ras[:3, 3]
    return matrix


def place_outline(
    scene: Any,
    size: ImplantSize,
    radiograph_node: Any,
    calibration: Calibration,
    pose: TemplatePose,
    name: str | None = None,
) -> TemplateNodes:
    """Add an implant outline on a radiograph to the scene.

    Parameters
    ----------
    scene
        The ``vtkMRMLScene``.
    size
        The catalogue size to draw.
    radiograph_node
        The radiograph's scalar volume node (one slice).
    calibration
        Its calibration; refused when uncalibrated (the error names the node).
    pose
        Where to put the implant.
    name
        Node name; ``Template <family> <size>`` when None.

    Returns
    -------
    TemplateNodes
        A closed-curve markups node (control points in the implant frame, mm) under a linear
        transform node; move or rotate it with :func:`move_outline`.
    """
    image_name = radiograph_node.GetName()
    spacing_of(calibration, image_name)
    label = name or f"Template {size.family_id} {size.label}"
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", f"{label} transform")
    curve = scene.AddNewNodeByClass("vtkMRMLMarkupsClosedCurveNode", label)
    curve.SetCurveTypeToLinear()
    curve.SetLocked(True)
    for x_mm, y_mm in size.outline_mm():
        curve.AddControlPoint(float(x_mm), float(y_mm), 0.0)
    curve.SetAttribute("MSKWB.ImplantFamily", size.family_id)
    curve.SetAttribute("MSKWB.ImplantSize", size.size)
    curve.SetAttribute("MSKWB.ImplantVariant", size.variant or "")
    curve.SetAndObserveTransformNodeID(transform.GetID())
    nodes = TemplateNodes(outline=curve, transform=transform, size=size)
    move_outline(nodes, radiograph_node, calibration, pose)
    return nodes


def move_outline(
    nodes: TemplateNodes, radiograph_node: Any, calibration: Calibration, pose: TemplatePose
) -> None:
    """Move and rotate a template to ``pose`` on its radiograph (changes the transform only)."""
    matrix = implant_to_ras(
        pose, calibration, radiograph_node.GetName(), ijk_to_ras_of(radiograph_node)
    )
    nodes.transform.SetMatrixTransformToParent(vtk_matrix_from_numpy(matrix))
    nodes.outline.SetAttribute(
        "MSKWB.TemplatePose",
        f"{pose.center_px[0]:.2f},{pose.center_px[1]:.2f},{pose.angle_deg:.2f},{int(pose.mirror)}",
    )


def outline_points_ras(nodes: TemplateNodes) -> FloatArray:
    """World (RAS mm) positions of the template outline's points, shape (N, 3)."""
    position = [0.0, 0.0, 0.0]
    points = []
    for index in range(nodes.outline.GetNumberOfControlPoints()):
        nodes.outline.GetNthControlPointPositionWorld(index, position)
        points.append(list(position))
    return np.asarray(points, dtype=float)


def _world_matrix(node: Any) -> FloatArray:
    transform_node = node.GetParentTransformNode()
    if transform_node is None:
        return np.eye(4)
    matrix = vtk.vtkMatrix4x4()
    transform_node.GetMatrixTransformToWorld(matrix)
    return numpy_from_vtk_matrix(matrix)


def cup_pose_ras(
    center_ras_mm: npt.ArrayLike,
    side: str,
    inclination_deg: float = 40.0,
    anteversion_deg: float = 15.0,
) -> FloatArray:
    """Implant-frame-to-RAS matrix of a cup at radiographic inclination and anteversion.

    Parameters
    ----------
    center_ras_mm
        Centre of rotation, shape (3,), RAS mm.
    side
        ``left`` or ``right`` hip (RAS +x is the patient's right).
    inclination_deg, anteversion_deg
        Radiographic (Murray) definitions: the opening axis makes ``inclination_deg`` with the
        longitudinal axis in the frontal plane and ``anteversion_deg`` with the frontal plane.

    Returns
    -------
    numpy.ndarray
        Shape (4, 4); the cup's pole (implant ``+y``) points into the acetabulum.
    """
    if side not in ("left", "right"):
        raise TemplatingError(f"side must be 'left' or 'right', not {side!r}")
    lateral = 1.0 if side == "right" else -1.0
    inclination = math.radians(inclination_deg)
    anteversion = math.radians(anteversion_deg)
    opening = np.array(
        [
            lateral * math.cos(anteversion) * math.sin(inclination),
            math.sin(anteversion),
            -math.cos(anteversion) * math.cos(inclination),
        ]
    )
    pole = -opening
    helper = np.array([0.0, 1.0, 0.0]) if abs(pole[1]) < 0.9 else np.array([1.0, 0.0, 0.0])
    x_axis = np.cross(helper, pole)
    x_axis /= np.linalg.norm(x_axis)
    z_axis = np.cross(x_axis, pole)
    matrix = np.eye(4)
    matrix[:3, 0], matrix[:3, 1], matrix[:3, 2] = x_axis, pole, z_axis
    matrix[:3, 3] = np.asarray(center_ras_mm, dtype=float)
    return matrix


def suggest_cup_3d(
    acetabulum_points_ras_mm: npt.ArrayLike, family: ImplantFamily, source_name: str
) -> tuple[ImplantSize, FloatArray, float]:
    """Suggest a cup from points on the acetabular surface of a CT.

    Parameters
    ----------
    acetabulum_points_ras_mm
        Shape (N, 3), N >= 4, RAS mm, on the acetabular (subchondral) surface.
    family
        A ``cup`` family.
    source_name
        Series UID or file, for messages.

    Returns
    -------
    tuple
        The size, the fitted centre (3,) in RAS mm and the fitted diameter in mm.
    """
    try:
        sphere = fit_sphere(acetabulum_points_ras_mm)
    except ValueError as error:
        raise TemplatingError(f"{source_name}: acetabular sphere fit failed: {error}") from error
    diameter_mm = 2.0 * sphere.radius_mm
    try:
        size = family.choose_size(diameter_mm)
    except CatalogueError as error:
        raise TemplatingError(f"{source_name}: {error}") from error
    return size, np.asarray(sphere.center_ras_mm, dtype=float), diameter_mm


def place_model(
    scene: Any, size: ImplantSize, implant_to_ras_mm: npt.ArrayLike, name: str | None = None
) -> TemplateNodes:
    """Add an implant's 3D model under a linear transform node (implant frame -> RAS mm).

    Returns
    -------
    TemplateNodes
        ``outline`` holds the model node here; move it by changing the transform.
    """
    label = name or f"Implant {size.family_id} {size.label}"
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", f"{label} transform")
    transform.SetMatrixTransformToParent(vtk_matrix_from_numpy(implant_to_ras_mm))
    model = scene.AddNewNodeByClass("vtkMRMLModelNode", label)
    model.SetAndObservePolyData(size.model_polydata())
    model.CreateDefaultDisplayNodes()
    model.SetAttribute("MSKWB.ImplantFamily", size.family_id)
    model.SetAttribute("MSKWB.ImplantSize", size.size)
    model.SetAndObserveTransformNodeID(transform.GetID())
    return TemplateNodes(outline=model, transform=transform, size=size)


def model_fit(
    implant_model_node: Any, bone_model_node: Any, contact_tolerance_mm: float = 1.0
) -> dict[str, float]:
    """Fit of a placed implant model against a bone surface model, both in world RAS mm.

    Returns
    -------
    dict
        As :func:`MSKPlannerLib.implant_geometry.surface_fit`, with both nodes' parent
        transforms applied.
    """
    implant = implant_geometry.transform_polydata(
        implant_model_node.GetPolyData(), _world_matrix(implant_model_node)
    )
    bone = implant_geometry.transform_polydata(
        bone_model_node.GetPolyData(), _world_matrix(bone_model_node)
    )
    return implant_geometry.surface_fit(implant, bone, contact_tolerance_mm)

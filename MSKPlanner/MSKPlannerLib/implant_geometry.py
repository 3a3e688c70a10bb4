"""Generic implant shapes generated from their catalogue parameters.

Every shape here is a schematic, parametric stand-in for planning practice; none reproduces
a manufacturer's design. Each implant kind has one frame, shared by its 2D outline and its
3D model (millimetres):

- ``+x``: medial-lateral (for stems: toward the femoral head, that is medial),
- ``+y``: superior (proximal),
- ``+z``: anterior.

The 2D outline is the implant's silhouette in the frontal (x, y) plane, as it appears on an
anteroposterior radiograph; the 3D model projects onto that outline.

Origins:

- cup: the centre of rotation (centre of the hemisphere), pole toward ``+y``;
- stem: the stem axis at the level of the lesser trochanter reference (``y = 0``); the head
  centre lies at ``(offset_mm, head_height_mm)``;
- knee femoral: the centre of the distal condylar surface; the component extends to ``+y``;
- knee tibial: the centre of the tray's upper surface; the keel extends to ``-y``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping

import numpy as np
import numpy.typing as npt
import vtk
from vtk.util import numpy_support

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]

#: Implant kinds this module can draw and build.
KINDS = ("cup", "stem", "knee_femoral", "knee_tibial")


class ImplantGeometryError(ValueError):
    """The parameters of an implant size cannot describe its shape."""


def _require(parameters: Mapping[str, float], names: tuple[str, ...], kind: str) -> list[float]:
    missing = [name for name in names if name not in parameters]
    if missing:
        raise ImplantGeometryError(f"a {kind} size needs the parameter(s) {', '.join(missing)}")
    values = [float(parameters[name]) for name in names]
    if any(not math.isfinite(v) or v <= 0 for v in values):
        raise ImplantGeometryError(f"{kind} parameters {names} must be positive, got {values}")
    return values


def _arc(
    center: tuple[float, float], radius: float, start_deg: float, stop_deg: float, count: int
) -> FloatArray:
    angles = np.radians(np.linspace(start_deg, stop_deg, count))
    return np.column_stack(
        [center[0] + radius * np.cos(angles), center[1] + radius * np.sin(angles)]
    )


def stem_neck_geometry(parameters: Mapping[str, float]) -> dict[str, float]:
    """Return the derived neck geometry of a stem size.

    Parameters
    ----------
    parameters
        ``offset_mm`` (horizontal distance from the stem axis to the head centre),
        ``head_height_mm`` (height of the head centre above the reference level) and
        ``neck_shaft_angle_deg`` (angle between the neck axis and the distal shaft axis).

    Returns
    -------
    dict
        ``neck_length_mm`` (from the stem axis to the head centre along the neck axis) and
        ``neck_base_y_mm`` (where the neck axis meets the stem axis), in the stem frame.
    """
    offset_mm, head_height_mm, angle_deg = _require(
        parameters, ("offset_mm", "head_height_mm", "neck_shaft_angle_deg"), "stem"
    )
    if not 90.0 < angle_deg < 180.0:
        raise ImplantGeometryError(f"neck-shaft angle must be between 90 and 180, not {angle_deg}")
    angle = math.radians(angle_deg)
    neck_length_mm = offset_mm / math.sin(angle)
    rise_mm = -neck_length_mm * math.cos(angle)
    return {"neck_length_mm": neck_length_mm, "neck_base_y_mm": head_height_mm - rise_mm}


def stem_width_at_mm(parameters: Mapping[str, float], depth_below_reference_mm: float) -> float:
    """Return the stem's medial-lateral width at a depth below the reference level.

    Parameters
    ----------
    parameters
        ``proximal_width_mm`` (width at the reference level), ``distal_width_mm`` (width at
        the tip) and ``length_mm`` (from the reference level to the tip).
    depth_below_reference_mm
        Distance below the reference level along the stem axis (mm, positive distally).

    Returns
    -------
    float
        Width in mm (linear taper); 0 beyond the tip.
    """
    proximal, distal, length = _require(
        parameters, ("proximal_width_mm", "distal_width_mm", "length_mm"), "stem"
    )
    depth = float(depth_below_reference_mm)
    if depth > length:
        return 0.0
    fraction = min(max(depth / length, 0.0), 1.0)
    return proximal + (distal - proximal) * fraction


def outline_mm(kind: str, parameters: Mapping[str, float]) -> FloatArray:
    """Return the closed 2D outline of an implant size in its frame.

    Parameters
    ----------
    kind
        One of :data:`KINDS`.
    parameters
        The size's parameters (see the catalogue files).

    Returns
    -------
    numpy.ndarray
        Shape (N, 2), ``(x, y)`` in mm in the implant frame, counter-clockwise; the last
        point is not repeated.
    """
    if kind == "cup":
        (diameter,) = _require(parameters, ("outer_diameter_mm",), kind)
        return _arc((0.0, 0.0), diameter / 2.0, 0.0, 180.0, 61)
    if kind == "stem":
        return _stem_outline(parameters)
    if kind == "knee_femoral":
        return _femoral_outline(parameters)
    if kind == "knee_tibial":
        return _tibial_outline(parameters)
    raise ImplantGeometryError(f"unknown implant kind {kind!r}; expected one of {KINDS}")


def _stem_outline(parameters: Mapping[str, float]) -> FloatArray:
    proximal, distal, length = _require(
        parameters, ("proximal_width_mm", "distal_width_mm", "length_mm"), "stem"
    )
    neck = stem_neck_geometry(parameters)
    offset_mm = float(parameters["offset_mm"])
    head_y = float(parameters["head_height_mm"])
    neck_width = max(0.45 * proximal, 8.0)
    direction = np.array([offset_mm, head_y - neck["neck_base_y_mm"]])
    direction /= np.linalg.norm(direction)
    normal = np.array([-direction[1], direction[0]])
    head = np.array([offset_mm, head_y])
    trunnion = head - 0.35 * neck["neck_length_mm"] * direction
    shoulder_y = max(neck["neck_base_y_mm"] + 0.5 * neck_width, 0.3 * head_y)

    tip = _arc((0.0, -length + distal / 2.0), distal / 2.0, 180.0, 360.0, 13)
    medial_side = [(proximal / 2.0, 0.0)]
    neck_lower = trunnion - 0.5 * neck_width * normal
    neck_upper = trunnion + 0.5 * neck_width * normal
    # The calcar curve: a quadratic Bezier from the medial edge up and over to the neck.
    start = np.array([proximal / 2.0, 0.0])
    control = np.array([proximal / 2.0, float(neck_lower[1])])
    t = np.linspace(0.0, 1.0, 9)[1:, None]
    calcar = ((1 - t) ** 2 * start + 2 * (1 - t) * t * control + t**2 * neck_lower).tolist()
    top = [tuple(neck_upper), (0.0, shoulder_y), (-proximal / 2.0, shoulder_y)]
    lateral_side = [(-proximal / 2.0, 0.0)]
    points = [
        *tip.tolist(),
        *medial_side,
        *calcar,
        *top,
        *lateral_side,
    ]
    return np.asarray(points, dtype=float)


def _femoral_outline(parameters: Mapping[str, float]) -> FloatArray:
    ml, ap = _require(parameters, ("ml_mm", "ap_mm"), "knee_femoral")
    height = 0.75 * ap
    condyle_radius = ml / 4.0
    lateral = _arc((-ml / 4.0, condyle_radius), condyle_radius, 180.0, 270.0, 10)
    medial = _arc((ml / 4.0, condyle_radius), condyle_radius, 270.0, 360.0, 10)
    notch = [(-0.08 * ml, 0.0), (0.0, 0.12 * ap), (0.08 * ml, 0.0)]
    top = [(ml / 2.0, height), (-ml / 2.0, height)]
    return np.asarray([*lateral.tolist(), *notch, *medial.tolist(), *top], dtype=float)


def _tibial_outline(parameters: Mapping[str, float]) -> FloatArray:
    ml, thickness, keel_length = _require(
        parameters, ("ml_mm", "tray_thickness_mm", "keel_length_mm"), "knee_tibial"
    )
    keel_width = float(parameters.get("keel_width_mm", 0.25 * ml))
    points = [
        (-ml / 2.0, 0.0),
        (-ml / 2.0, -thickness),
        (-keel_width / 2.0, -thickness),
        (-0.3 * keel_width, -thickness - keel_length),
        (0.3 * keel_width, -thickness - keel_length),
        (keel_width / 2.0, -thickness),
        (ml / 2.0, -thickness),
        (ml / 2.0, 0.0),
    ]
    return np.asarray(points, dtype=float)


def _polygon_polydata(points_xy: FloatArray, plane: str = "xy") -> vtk.vtkPolyData:
    points = vtk.vtkPoints()
    for x, y in points_xy:
        if plane == "xy":
            points.InsertNextPoint(float(x), float(y), 0.0)
        else:  # "zy": the polygon's first coordinate runs along z (anterior)
            points.InsertNextPoint(0.0, float(y), float(x))
    polygon = vtk.vtkPolygon()
    polygon.GetPointIds().SetNumberOfIds(len(points_xy))
    for index in range(len(points_xy)):
        polygon.GetPointIds().SetId(index, index)
    cells = vtk.vtkCellArray()
    cells.InsertNextCell(polygon)
    polydata = vtk.vtkPolyData()
    polydata.SetPoints(points)
    polydata.SetPolys(cells)
    return polydata


def _output_of(algorithm: vtk.vtkPolyDataAlgorithm) -> vtk.vtkPolyData:
    """Run a filter and return a standalone copy of its output."""
    algorithm.Update()
    result = vtk.vtkPolyData()
    result.DeepCopy(algorithm.GetOutput())
    return result


def _extrude(points_xy: FloatArray, thickness_mm: float, plane: str = "xy") -> vtk.vtkPolyData:
    """Extrude a planar polygon symmetrically about its plane into a closed solid."""
    polydata = _polygon_polydata(points_xy, plane)
    shift = vtk.vtkTransform()
    if plane == "xy":
        shift.Translate(0.0, 0.0, -thickness_mm / 2.0)
        vector = (0.0, 0.0, thickness_mm)
    else:
        shift.Translate(-thickness_mm / 2.0, 0.0, 0.0)
        vector = (thickness_mm, 0.0, 0.0)
    shifted = vtk.vtkTransformPolyDataFilter()
    shifted.SetInputData(polydata)
    shifted.SetTransform(shift)
    triangles = vtk.vtkTriangleFilter()
    triangles.SetInputConnection(shifted.GetOutputPort())
    extrusion = vtk.vtkLinearExtrusionFilter()
    extrusion.SetInputConnection(triangles.GetOutputPort())
    extrusion.SetExtrusionTypeToVectorExtrusion()
    extrusion.SetVector(*vector)
    extrusion.CappingOn()
    result = vtk.vtkTriangleFilter()
    result.SetInputConnection(extrusion.GetOutputPort())
    return _output_of(result)


def _finish(*parts: vtk.vtkPolyData) -> vtk.vtkPolyData:
    append = vtk.vtkAppendPolyData()
    for part in parts:
        append.AddInputData(part)
    clean = vtk.vtkCleanPolyData()
    clean.SetInputConnection(append.GetOutputPort())
    normals = vtk.vtkPolyDataNormals()
    normals.SetInputConnection(clean.GetOutputPort())
    normals.ConsistencyOn()
    normals.AutoOrientNormalsOn()
    normals.SplittingOff()
    return _output_of(normals)


def model_polydata(kind: str, parameters: Mapping[str, float]) -> vtk.vtkPolyData:
    """Build the 3D surface of an implant size from its parameters.

    Parameters
    ----------
    kind
        One of :data:`KINDS`.
    parameters
        The size's parameters (see the catalogue files).

    Returns
    -------
    vtk.vtkPolyData
        Triangle surface in the implant frame (mm) with point normals. The cup is its outer
        hemispherical bearing surface (open at the face); the other kinds are closed solids.
    """
    if kind == "cup":
        (diameter,) = _require(parameters, ("outer_diameter_mm",), kind)
        sphere = vtk.vtkSphereSource()
        sphere.SetRadius(diameter / 2.0)
        sphere.SetThetaResolution(72)
        sphere.SetPhiResolution(36)
        sphere.SetStartPhi(0.0)
        sphere.SetEndPhi(90.0)
        pole_up = vtk.vtkTransform()
        pole_up.RotateX(-90.0)  # the sphere source's pole is +z; the cup's pole is +y
        turned = vtk.vtkTransformPolyDataFilter()
        turned.SetInputConnection(sphere.GetOutputPort())
        turned.SetTransform(pole_up)
        return _finish(_output_of(turned))
    if kind == "stem":
        depth = float(parameters.get("depth_mm", 0.8 * float(parameters["proximal_width_mm"])))
        body = _extrude(_stem_outline(parameters), depth)
        head = vtk.vtkSphereSource()
        head.SetRadius(float(parameters.get("head_diameter_mm", 32.0)) / 2.0)
        head.SetCenter(float(parameters["offset_mm"]), float(parameters["head_height_mm"]), 0.0)
        head.SetThetaResolution(32)
        head.SetPhiResolution(16)
        return _finish(body, _output_of(head))
    if kind == "knee_femoral":
        ml, ap = _require(parameters, ("ml_mm", "ap_mm"), kind)
        return _finish(_extrude(_femoral_sagittal_profile(ap), ml, plane="zy"))
    if kind == "knee_tibial":
        return _tibial_model(parameters)
    raise ImplantGeometryError(f"unknown implant kind {kind!r}; expected one of {KINDS}")


def _femoral_sagittal_profile(ap_mm: float) -> FloatArray:
    """Sagittal section of a femoral component: (anterior, superior) in mm, a C shape."""
    thickness = 0.15 * ap_mm
    radius = ap_mm / 2.0
    flange_top = 0.75 * ap_mm
    posterior_top = 0.55 * ap_mm
    outer = _arc((0.0, radius), radius, 0.0, -180.0, 25)  # anterior -> distal -> posterior
    inner_radius = radius - thickness
    inner = _arc((0.0, radius), inner_radius, -180.0, 0.0, 25)  # posterior -> anterior
    points = [
        (radius, flange_top),
        *outer.tolist(),
        (-radius, posterior_top),
        (-inner_radius, posterior_top),
        *inner.tolist(),
        (inner_radius, flange_top),
    ]
    return np.asarray(points, dtype=float)[::-1]


def _tibial_model(parameters: Mapping[str, float]) -> vtk.vtkPolyData:
    ml, thickness, keel_length = _require(
        parameters, ("ml_mm", "tray_thickness_mm", "keel_length_mm"), "knee_tibial"
    )
    ap = float(parameters.get("ap_mm", 0.68 * ml))
    keel_width = float(parameters.get("keel_width_mm", 0.25 * ml))
    tray_xz = _arc((0.0, 0.0), 1.0, 0.0, 360.0, 49)[:-1] * np.array([ml / 2.0, ap / 2.0])
    tray = _polygon_polydata(tray_xz)
    to_horizontal = vtk.vtkTransform()
    to_horizontal.Translate(0.0, -thickness, 0.0)
    to_horizontal.RotateX(-90.0)  # the (x, y) ellipse becomes an (x, z) ellipse at the tray's base
    placed = vtk.vtkTransformPolyDataFilter()
    placed.SetInputData(tray)
    placed.SetTransform(to_horizontal)
    triangles = vtk.vtkTriangleFilter()
    triangles.SetInputConnection(placed.GetOutputPort())
    extrusion = vtk.vtkLinearExtrusionFilter()
    extrusion.SetInputConnection(triangles.GetOutputPort())
    extrusion.SetExtrusionTypeToVectorExtrusion()
    extrusion.SetVector(0.0, thickness, 0.0)
    extrusion.CappingOn()
    tray_solid = vtk.vtkTriangleFilter()
    tray_solid.SetInputConnection(extrusion.GetOutputPort())
    tray_surface = _output_of(tray_solid)
    keel = vtk.vtkCylinderSource()
    keel.SetRadius(keel_width / 2.0)
    keel.SetHeight(keel_length)
    keel.SetCenter(0.0, -thickness - keel_length / 2.0, 0.0)
    keel.SetResolution(24)
    keel.CappingOn()
    keel_triangles = vtk.vtkTriangleFilter()
    keel_triangles.SetInputConnection(keel.GetOutputPort())
    return _finish(tray_surface, _output_of(keel_triangles))


def read_stl(path: str) -> vtk.vtkPolyData:
    """Read an STL surface (mm, implant frame) given for a catalogue size.

    Raises
    ------
    ImplantGeometryError
        When the file holds no triangles.
    """
    reader = vtk.vtkSTLReader()
    reader.SetFileName(str(path))
    reader.Update()
    output = reader.GetOutput()
    if output is None or output.GetNumberOfCells() == 0:
        raise ImplantGeometryError(f"the implant surface {path} holds no triangles")
    result = vtk.vtkPolyData()
    result.DeepCopy(output)
    return result


def points_of(polydata: vtk.vtkPolyData) -> FloatArray:
    """Return the point coordinates of a surface, shape (N, 3), in its own frame (mm)."""
    data = polydata.GetPoints().GetData()
    return np.array(numpy_support.vtk_to_numpy(data), dtype=float)


def transform_polydata(polydata: vtk.vtkPolyData, matrix_4x4: FloatArray) -> vtk.vtkPolyData:
    """Return a copy of a surface moved by a 4x4 homogeneous matrix (mm)."""
    transform = vtk.vtkTransform()
    transform.SetMatrix([float(v) for v in np.asarray(matrix_4x4, dtype=float).ravel()])
    moved = vtk.vtkTransformPolyDataFilter()
    moved.SetInputData(polydata)
    moved.SetTransform(transform)
    moved.Update()
    result = vtk.vtkPolyData()
    result.DeepCopy(moved.GetOutput())
    return result


def surface_fit(
    implant_surface: vtk.vtkPolyData,
    bone_surface: vtk.vtkPolyData,
    contact_tolerance_mm: float = 1.0,
) -> dict[str, float]:
    """Signed distances from an implant's surface to a bone surface, area weighted.

    Parameters
    ----------
    implant_surface
        Triangle surface of the placed implant, in the same frame as the bone (RAS mm).
    bone_surface
        Closed triangle surface of the bone (its cortex), RAS mm; outward normals.
    contact_tolerance_mm
        A surface element is in contact when its distance is at most this (including
        elements inside the bone, which need bone removal).

    Returns
    -------
    dict
        ``min_mm`` (most negative: deepest into the bone), ``max_mm`` (largest gap),
        ``mean_mm`` and ``mean_abs_mm`` (area-weighted), ``percent_in_contact`` (of the
        implant area), ``area_mm2`` and ``elements``. Distances are positive outside the
        bone (a gap) and negative inside it.
    """
    centers_filter = vtk.vtkCellCenters()
    centers_filter.SetInputData(implant_surface)
    centers_filter.Update()
    centers = points_of(centers_filter.GetOutput())
    sizes = vtk.vtkCellSizeFilter()
    sizes.SetInputData(implant_surface)
    sizes.ComputeAreaOn()
    sizes.Update()
    area = np.array(
        numpy_support.vtk_to_numpy(sizes.GetOutput().GetCellData().GetArray("Area")), dtype=float
    )
    if len(centers) == 0 or area.sum() <= 0:
        raise ImplantGeometryError("the implant surface has no area")
    distance = vtk.vtkImplicitPolyDataDistance()
    distance.SetInput(bone_surface)
    signed = np.array([distance.EvaluateFunction(*point) for point in centers])
    weights = area / area.sum()
    return {
        "min_mm": float(signed.min()),
        "max_mm": float(signed.max()),
        "mean_mm": float(weights @ signed),
        "mean_abs_mm": float(weights @ np.abs(signed)),
        "percent_in_contact": float(100.0 * weights[signed <= contact_tolerance_mm].sum()),
        "area_mm2": float(area.sum()),
        "elements": float(len(centers)),
    }

"""Hip measures in the frontal plane: femoral offset, cup inclination, CCD angle, leg length.

Public API
----------
- :data:`HIP_LABELS`: landmark labels of the measured hip; :data:`PELVIS_LABELS`: the
  landmarks of both sides used as reference.
- :func:`resolve_femoral_head_center`: the head centre from ``femoral_head_center`` or from
  a sphere (CT) or circle (radiograph) fitted to ``femoral_head_surface*`` points.
- :func:`missing_hip_landmarks`: which landmarks each hip value still lacks.
- :func:`measure_hip`: points in RAS mm + side + calibration + source ->
  :class:`~MSKPlannerLib.measurement_table.MeasurementTable` with rows
  ``femoral_offset_mm``, ``cup_inclination_deg``, ``ccd_deg`` and ``lld_mm`` (each made
  when its landmarks are present; lengths refused on an uncalibrated image).

Landmarks (markups control point labels):

- ``femoral_head_center`` (or three or more ``femoral_head_surface*`` points),
  ``femoral_neck_center`` (middle of the narrowest part of the neck), ``femoral_shaft_proximal``
  and ``femoral_shaft_distal`` (two points on the femoral shaft axis), ``acetabulum_lateral_edge``
  and ``acetabulum_inferior_edge`` (ends of the acetabular opening or of the cup's face), all on
  the measured side;
- ``teardrop_left``, ``teardrop_right`` (lowest points of the teardrops),
  ``lesser_trochanter_left``, ``lesser_trochanter_right`` (most prominent points).

Definitions (frontal plane; see docs/measurements.md):

- ``femoral_offset_mm``: perpendicular distance from the head centre to the shaft axis.
- ``cup_inclination_deg``: acute angle between the acetabular opening line and the
  inter-teardrop line.
- ``ccd_deg``: angle between the neck axis (neck centre to head centre) and the shaft axis
  (proximal to distal), opening medially-inferiorly.
- ``lld_mm``: distance of the measured side's lesser trochanter below the inter-teardrop line
  minus that of the other side; positive when the measured leg is longer.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from functools import partial

import numpy as np
import numpy.typing as npt

from MSKPlannerLib.landmark_checks import order_along_limb_error, out_of_range_error
from MSKPlannerLib.landmarks import (
    LandmarkError,
    check_frontal_extent,
    frontal_plane_mm,
    medial_direction_frontal,
    propagate_uncertainty,
)
from MSKPlannerLib.measurement_table import (
    Calibration,
    MeasurementTable,
    frontal_landmark_row,
    length_refused_reason,
    missing_landmarks_reason,
)
from MSKPlannerLib.sphere_fit import hip_center_from_surface_points

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]

HIP_LABELS = (
    "femoral_head_center",
    "femoral_neck_center",
    "femoral_shaft_proximal",
    "femoral_shaft_distal",
    "acetabulum_lateral_edge",
    "acetabulum_inferior_edge",
)
PELVIS_LABELS = (
    "teardrop_left",
    "teardrop_right",
    "lesser_trochanter_left",
    "lesser_trochanter_right",
)
HEAD_SURFACE_PREFIX = "femoral_head_surface"

DEFAULT_PLACEMENT_SIGMA_MM = 1.0

_NEEDS: dict[str, tuple[str, ...]] = {
    "femoral_offset_mm": ("femoral_head_center", "femoral_shaft_proximal", "femoral_shaft_distal"),
    "cup_inclination_deg": (
        "acetabulum_lateral_edge",
        "acetabulum_inferior_edge",
        "teardrop_left",
        "teardrop_right",
    ),
    "ccd_deg": (
        "femoral_head_center",
        "femoral_neck_center",
        "femoral_shaft_proximal",
        "femoral_shaft_distal",
    ),
    "lld_mm": PELVIS_LABELS,
}

_DEFINITIONS = {
    "femoral_offset_mm": (
        "Femoral offset",
        "Perpendicular distance from the femoral head centre to the femoral shaft axis "
        "(femoral_shaft_proximal to femoral_shaft_distal) in the frontal plane.",
    ),
    "cup_inclination_deg": (
        "Acetabular (cup) inclination",
        "Acute angle between the line through acetabulum_lateral_edge and "
        "acetabulum_inferior_edge and the inter-teardrop line, in the frontal plane.",
    ),
    "ccd_deg": (
        "Neck-shaft (CCD) angle",
        "Angle between the femoral neck axis (femoral_neck_center to femoral_head_center) and "
        "the femoral shaft axis (proximal to distal) in the frontal plane.",
    ),
    "lld_mm": (
        "Leg-length difference",
        "Distance of the measured side's lesser trochanter below the inter-teardrop line minus "
        "the other side's, in the frontal plane; positive when the measured leg is longer.",
    ),
}


def _angle_between_deg(a: FloatArray, b: FloatArray) -> float:
    cosine = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
    return float(np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0))))


def _distance_to_line_mm(point: FloatArray, start: FloatArray, end: FloatArray) -> float:
    """Unsigned distance of a frontal-plane point to the line through start and end."""
    direction = end - start
    length = float(np.linalg.norm(direction))
    if length == 0.0:
        raise LandmarkError("the two points defining a line coincide in the frontal plane")
    offset = point - start
    return float(abs(direction[0] * offset[1] - direction[1] * offset[0]) / length)


def _below_line_mm(point: FloatArray, left: FloatArray, right: FloatArray) -> float:
    """Signed distance of a point below (inferior to) the line through left and right."""
    direction = right - left
    normal = np.array([-direction[1], direction[0]]) / np.linalg.norm(direction)
    if normal[1] > 0:  # make the normal point inferior (-z)
        normal = -normal
    return float((point - left) @ normal)


def hip_values(points_ras_mm: Mapping[str, npt.ArrayLike], side: str) -> dict[str, float]:
    """Compute every hip value whose landmarks are present.

    Parameters
    ----------
    points_ras_mm
        Label -> position (3,), RAS mm (see :data:`HIP_LABELS`, :data:`PELVIS_LABELS`).
    side
        ``"left"`` or ``"right"``: the measured hip.

    Returns
    -------
    dict
        Subset of ``femoral_offset_mm``, ``cup_inclination_deg``, ``ccd_deg``, ``lld_mm``;
        lengths in the unit of the input coordinates.
    """
    p = {k: frontal_plane_mm(v) for k, v in points_ras_mm.items()}
    values: dict[str, float] = {}
    if all(k in p for k in _NEEDS["femoral_offset_mm"]):
        values["femoral_offset_mm"] = _distance_to_line_mm(
            p["femoral_head_center"], p["femoral_shaft_proximal"], p["femoral_shaft_distal"]
        )
    if all(k in p for k in _NEEDS["cup_inclination_deg"]):
        angle = _angle_between_deg(
            p["acetabulum_lateral_edge"] - p["acetabulum_inferior_edge"],
            p["teardrop_left"] - p["teardrop_right"],
        )
        values["cup_inclination_deg"] = min(angle, 180.0 - angle)
    if all(k in p for k in _NEEDS["ccd_deg"]):
        values["ccd_deg"] = _angle_between_deg(
            p["femoral_head_center"] - p["femoral_neck_center"],
            p["femoral_shaft_distal"] - p["femoral_shaft_proximal"],
        )
    if all(k in p for k in _NEEDS["lld_mm"]):
        other = "left" if side == "right" else "right"
        below = {
            s: _below_line_mm(p[f"lesser_trochanter_{s}"], p["teardrop_left"], p["teardrop_right"])
            for s in (side, other)
        }
        values["lld_mm"] = below[side] - below[other]
    return values


def _medial_of_shaft_axis_mm(
    point: FloatArray, proximal: FloatArray, distal: FloatArray, side: str
) -> float:
    """Signed frontal-plane distance of a point medial to the shaft axis line, in mm."""
    direction = (distal - proximal) / np.linalg.norm(distal - proximal)
    normal = np.array([-direction[1], direction[0]])
    if normal @ medial_direction_frontal(side) < 0:
        normal = -normal
    return float((point - proximal) @ normal)


def femur_refusals(
    points_ras_mm: Mapping[str, npt.ArrayLike], side: str, source: str
) -> dict[str, str]:
    """Femoral values that the landmarks cannot give, with the reason.

    Parameters
    ----------
    points_ras_mm
        Label -> position (3,), RAS mm, +z superior (see :mod:`MSKPlannerLib.landmark_checks`).
    side
        ``left`` or ``right``: where medial is.
    source
        The image the landmarks were placed on, named in the reasons.

    Returns
    -------
    dict
        Key (``femoral_offset_mm``, ``ccd_deg``) -> reason, for: ``femoral_shaft_proximal``
        not proximal (superior) to ``femoral_shaft_distal``; ``femoral_head_center`` not
        medial to the shaft axis; ``femoral_neck_center`` not between the head centre and
        the shaft axis.
    """
    where = source or "the landmark set"
    shaft = ("femoral_shaft_proximal", "femoral_shaft_distal")
    if not all(label in points_ras_mm for label in shaft):
        return {}
    reason = order_along_limb_error(points_ras_mm, shaft[0], shaft[1:], source)
    if reason is not None:
        return {"femoral_offset_mm": reason, "ccd_deg": reason}
    p = {k: frontal_plane_mm(v) for k, v in points_ras_mm.items()}
    if "femoral_head_center" not in p:
        return {}
    head_mm = _medial_of_shaft_axis_mm(p["femoral_head_center"], p[shaft[0]], p[shaft[1]], side)
    if head_mm <= 0.0:
        reason = (
            f"in {where} femoral_head_center lies {abs(head_mm):.1f} mm lateral to the femoral "
            f"shaft axis for a {side} hip: the side or the labels are wrong"
        )
        return {"femoral_offset_mm": reason, "ccd_deg": reason}
    if "femoral_neck_center" not in p:
        return {}
    neck_mm = _medial_of_shaft_axis_mm(p["femoral_neck_center"], p[shaft[0]], p[shaft[1]], side)
    if not 0.0 < neck_mm < head_mm:
        return {
            "ccd_deg": (
                f"in {where} femoral_neck_center does not lie between femoral_head_center and "
                f"the femoral shaft axis ({neck_mm:.1f} mm medial to the axis, the head "
                f"{head_mm:.1f} mm): the labels are swapped or misplaced"
            )
        }
    return {}


def _hip_value(points_ras_mm: dict[str, FloatArray], side: str, key: str) -> float:
    return hip_values(points_ras_mm, side)[key]


def resolve_femoral_head_center(
    points_ras_mm: Mapping[str, npt.ArrayLike],
) -> dict[str, FloatArray]:
    """Return the points with ``femoral_head_center`` added from surface points if needed.

    Parameters
    ----------
    points_ras_mm
        Label -> position (3,), RAS mm. When ``femoral_head_center`` is absent and three or
        more labels start with ``femoral_head_surface``, the centre is fitted to them (sphere
        for points spread in 3D, circle for points in one plane).

    Returns
    -------
    dict
        A new mapping; the input is not changed.
    """
    points = {k: np.asarray(v, dtype=float) for k, v in points_ras_mm.items()}
    surface = [v for k, v in points.items() if k.startswith(HEAD_SURFACE_PREFIX)]
    if "femoral_head_center" not in points and len(surface) >= 3:
        fit = hip_center_from_surface_points(np.stack(surface))
        points["femoral_head_center"] = fit.center_ras_mm
        logger.debug("femoral head centre fitted to %d points, r=%.1f", len(surface), fit.radius_mm)
    return points


def missing_hip_landmarks(points_ras_mm: Mapping[str, npt.ArrayLike]) -> dict[str, list[str]]:
    """Which landmarks each hip value lacks.

    Parameters
    ----------
    points_ras_mm
        Label -> position (3,), RAS mm; ``femoral_head_center`` counts as placed when it can
        be fitted to ``femoral_head_surface*`` points.

    Returns
    -------
    dict
        ``femoral_offset_mm``, ``cup_inclination_deg``, ``ccd_deg``, ``lld_mm`` -> the labels
        it needs that are absent (empty when the value can be computed).
    """
    points = resolve_femoral_head_center(points_ras_mm)
    return {key: [label for label in needs if label not in points] for key, needs in _NEEDS.items()}


def measure_hip(
    points_ras_mm: Mapping[str, npt.ArrayLike],
    side: str,
    calibration: Calibration,
    source_image: str,
    method: str = "manual",
    placement_sigma_mm: float = DEFAULT_PLACEMENT_SIGMA_MM,
) -> MeasurementTable:
    """Measure the hip from landmarks.

    Parameters
    ----------
    points_ras_mm
        Label -> position (3,), RAS mm (see the module documentation for the labels).
    side
        ``"left"`` or ``"right"``: the measured hip.
    calibration
        Lengths (``femoral_offset_mm``, ``lld_mm``) are refused when it is not calibrated.
    source_image
        Series Instance UID or file the landmarks were placed on.
    method
        ``manual`` or ``automatic``.
    placement_sigma_mm
        Standard deviation of a landmark coordinate, for the uncertainty (95 % half-width).

    Returns
    -------
    MeasurementTable
        A row per value whose landmarks are present; ``not_measured`` names, for each of the
        others, the landmarks it lacks (:func:`missing_hip_landmarks`; all of them when no hip
        landmark is placed) or the missing calibration, and gives the reason of values
        refused as anatomically impossible (see :func:`femur_refusals`, and a CCD angle outside
        :data:`~MSKPlannerLib.landmark_checks.PLAUSIBLE_RANGES`).
    """
    if side not in ("left", "right"):
        raise LandmarkError(f"side must be 'left' or 'right', not {side!r}")
    points = resolve_femoral_head_center(points_ras_mm)
    known = [v for k, v in points.items() if k in HIP_LABELS or k in PELVIS_LABELS]
    if len(known) >= 2:
        check_frontal_extent(np.stack(known), "hip", source_image)

    values = hip_values(points, side)
    refused = femur_refusals(points, side, source_image)
    table = MeasurementTable()
    missing = missing_hip_landmarks(points)
    for key, needs in _NEEDS.items():
        if missing[key]:
            table.not_measured[key] = missing_landmarks_reason(missing[key])
            continue
        reason = refused.get(key) or out_of_range_error(key, values[key], needs, source_image)
        if reason is not None:
            table.not_measured[key] = reason
            continue
        unit = "mm" if key.endswith("_mm") else "deg"
        if unit == "mm" and not calibration.is_calibrated:
            table.not_measured[key] = length_refused_reason(calibration, source_image)
            continue
        uncertainty = propagate_uncertainty(
            partial(_hip_value, side=side, key=key), points, needs, placement_sigma_mm
        )
        table.add(
            frontal_landmark_row(
                key,
                _DEFINITIONS[key],
                values[key],
                uncertainty,
                side=side,
                calibration=calibration,
                source_image=source_image,
                method=method,
            )
        )
    return table

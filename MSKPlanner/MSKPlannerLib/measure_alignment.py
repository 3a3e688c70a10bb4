"""Lower-limb alignment in the frontal plane: HKA, mLDFA, MPTA, JLCA and MAD.

Public API
----------
- :data:`ALIGNMENT_LABELS`: the landmark labels used (markups control point labels).
- :func:`measure_alignment`: points in RAS mm + side + calibration + source ->
  :class:`~MSKPlannerLib.measurement_table.MeasurementTable` with rows ``hka_deg``,
  ``mldfa_deg``, ``mpta_deg``, ``jlca_deg`` and ``mad_mm``, each made when its landmarks
  are present (:data:`ALIGNMENT_NEEDS`); the others are listed in ``not_measured`` with the
  landmarks they lack (``mad_mm`` also when the image is not calibrated).
- :func:`missing_alignment_landmarks`: which landmarks each alignment value still lacks.
- :func:`alignment_angles_deg`: the bare angle values, for benchmarks and tests.

Every value is measured in the frontal (coronal) plane: the RAS points are projected on the
x (patient right) and z (superior) axes. Conventions (see docs/measurements.md):

- ``hka_deg``: angle at the knee between the femoral mechanical axis (hip centre to femoral
  knee centre) and the tibial mechanical axis (tibial knee centre to ankle centre), on the
  medial side; 180 is neutral, below 180 is varus, above 180 valgus.
- ``mldfa_deg``: lateral angle between the femoral mechanical axis and the distal femoral
  joint line (through the two condyles), measured proximally.
- ``mpta_deg``: medial angle between the tibial mechanical axis and the tibial plateau line,
  measured distally.
- ``jlca_deg``: angle between the femoral and tibial joint lines, positive when they
  converge medially (lateral side open); 180 - HKA = mLDFA - MPTA + JLCA.
- ``mad_mm``: distance from the knee centre (midpoint of the femoral and tibial knee centres)
  to the hip-ankle line, positive when the line passes medial to the knee centre (varus).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from functools import partial

import numpy as np
import numpy.typing as npt

from MSKPlannerLib.landmark_checks import (
    medial_of_error,
    order_along_limb_error,
    out_of_range_error,
)
from MSKPlannerLib.landmarks import (
    LandmarkError,
    check_frontal_extent,
    frontal_plane_mm,
    medial_direction_frontal,
    propagate_uncertainty,
)
from MSKPlannerLib.measure_hip import resolve_femoral_head_center
from MSKPlannerLib.measurement_table import (
    Calibration,
    Measurement,
    MeasurementTable,
    frontal_landmark_row,
    length_refused_reason,
    missing_landmarks_reason,
)

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]

ALIGNMENT_LABELS = (
    "hip_center",
    "knee_center_femur",
    "knee_center_tibia",
    "ankle_center",
    "femoral_condyle_medial",
    "femoral_condyle_lateral",
    "tibial_plateau_medial",
    "tibial_plateau_lateral",
)

#: The landmarks each alignment value needs, in the order of the table.
ALIGNMENT_NEEDS: dict[str, tuple[str, ...]] = {
    "hka_deg": ("hip_center", "knee_center_femur", "knee_center_tibia", "ankle_center"),
    "mldfa_deg": (
        "hip_center",
        "knee_center_femur",
        "femoral_condyle_medial",
        "femoral_condyle_lateral",
    ),
    "mpta_deg": (
        "knee_center_tibia",
        "ankle_center",
        "tibial_plateau_medial",
        "tibial_plateau_lateral",
    ),
    "jlca_deg": (
        "femoral_condyle_medial",
        "femoral_condyle_lateral",
        "tibial_plateau_medial",
        "tibial_plateau_lateral",
    ),
    "mad_mm": ("hip_center", "knee_center_femur", "knee_center_tibia", "ankle_center"),
}

#: Default standard deviation of one landmark coordinate placed by hand, in mm.
DEFAULT_PLACEMENT_SIGMA_MM = 1.0

_DEFINITIONS = {
    "hka_deg": (
        "Hip-knee-ankle angle",
        "Medial angle between the femoral mechanical axis (hip_center to knee_center_femur) and "
        "the tibial mechanical axis (knee_center_tibia to ankle_center) in the frontal plane; "
        "180 neutral, below 180 varus.",
    ),
    "mldfa_deg": (
        "Mechanical lateral distal femoral angle",
        "Lateral angle between the femoral mechanical axis and the line through the medial and "
        "lateral femoral condyles, in the frontal plane.",
    ),
    "mpta_deg": (
        "Medial proximal tibial angle",
        "Medial angle between the tibial mechanical axis and the line through the medial and "
        "lateral tibial plateau points, in the frontal plane.",
    ),
    "jlca_deg": (
        "Joint line convergence angle",
        "Angle between the distal femoral and the tibial plateau joint lines in the frontal "
        "plane, positive when they converge medially (lateral side open).",
    ),
    "mad_mm": (
        "Mechanical axis deviation",
        "Distance from the knee centre to the hip-ankle line in the frontal plane, positive "
        "when the line passes medial to the knee centre (varus).",
    ),
}


def _wrap_deg(angle_deg: float) -> float:
    """Wrap an angle to (-180, 180] degrees."""
    wrapped = (angle_deg + 180.0) % 360.0 - 180.0
    return 180.0 if wrapped == -180.0 else wrapped


def _direction_deg(vector_2d: FloatArray, medial_2d: FloatArray) -> float:
    """Angle of a frontal-plane vector from the medial direction toward superior, in degrees."""
    superior = np.array([0.0, 1.0])
    return float(np.degrees(np.arctan2(vector_2d @ superior, vector_2d @ medial_2d)))


def _frontal_directions_deg(p: Mapping[str, FloatArray], side: str) -> dict[str, float]:
    """Directions (degrees from medial toward superior) of the axes and joint lines present."""
    medial = medial_direction_frontal(side)
    vectors = {
        "femoral_down": ("hip_center", "knee_center_femur"),
        "tibial_down": ("knee_center_tibia", "ankle_center"),
        "femoral_line_lateral": ("femoral_condyle_medial", "femoral_condyle_lateral"),
        "tibial_line_lateral": ("tibial_plateau_medial", "tibial_plateau_lateral"),
    }
    return {
        name: _direction_deg(p[end] - p[start], medial)
        for name, (start, end) in vectors.items()
        if start in p and end in p
    }


def _angle_deg(directions: Mapping[str, float], key: str) -> float:
    """One alignment angle from the frontal-plane directions of :func:`_frontal_directions_deg`."""
    d = directions
    if key == "hka_deg":
        return 180.0 - _wrap_deg(d["tibial_down"] - d["femoral_down"])
    if key == "mldfa_deg":
        return _wrap_deg(d["femoral_line_lateral"] - (d["femoral_down"] + 180.0))
    if key == "mpta_deg":
        return _wrap_deg((d["tibial_line_lateral"] + 180.0) - d["tibial_down"])
    if key == "jlca_deg":
        return _wrap_deg(d["tibial_line_lateral"] - d["femoral_line_lateral"])
    raise ValueError(f"unknown alignment angle {key!r}")


def alignment_angles_deg(points_ras_mm: Mapping[str, npt.ArrayLike], side: str) -> dict[str, float]:
    """Compute the alignment angles from landmarks.

    Parameters
    ----------
    points_ras_mm
        Label -> position (3,), RAS mm, holding every label of :data:`ALIGNMENT_LABELS`.
    side
        ``"left"`` or ``"right"``: which limb, to know where medial is.

    Returns
    -------
    dict
        ``hka_deg``, ``mldfa_deg``, ``mpta_deg``, ``jlca_deg`` in degrees.
    """
    p = {label: frontal_plane_mm(points_ras_mm[label]) for label in ALIGNMENT_LABELS}
    directions = _frontal_directions_deg(p, side)
    return {key: _angle_deg(directions, key) for key in ANGLE_KEYS}


def _angle_value(points_ras_mm: dict[str, FloatArray], side: str, key: str) -> float:
    p = {label: frontal_plane_mm(v) for label, v in points_ras_mm.items()}
    return _angle_deg(_frontal_directions_deg(p, side), key)


def mechanical_axis_deviation_mm(points_ras_mm: Mapping[str, npt.ArrayLike], side: str) -> float:
    """Signed distance from the knee centre to the hip-ankle line, frontal plane, in mm.

    Positive when the line passes medial to the knee centre (varus). The knee centre is the
    midpoint of ``knee_center_femur`` and ``knee_center_tibia``.
    """
    hip = frontal_plane_mm(points_ras_mm["hip_center"])
    ankle = frontal_plane_mm(points_ras_mm["ankle_center"])
    knee = 0.5 * (
        frontal_plane_mm(points_ras_mm["knee_center_femur"])
        + frontal_plane_mm(points_ras_mm["knee_center_tibia"])
    )
    axis = ankle - hip
    length = float(np.linalg.norm(axis))
    if length == 0.0:
        raise LandmarkError("hip_center and ankle_center coincide in the frontal plane")
    normal = np.array([-axis[1], axis[0]]) / length
    medial = medial_direction_frontal(side)
    if normal @ medial < 0:
        normal = -normal
    # The knee lying on the lateral side of the line means the line passes medial to it.
    return float(-(knee - hip) @ normal)


#: The angles, in the order of the table.
ANGLE_KEYS = ("hka_deg", "mldfa_deg", "mpta_deg", "jlca_deg")

#: The landmarks each angle is computed from (named when a value is refused).
_ANGLE_LABELS = {key: ALIGNMENT_NEEDS[key] for key in ANGLE_KEYS}


def _pair_error(
    points: Mapping[str, npt.ArrayLike], medial: str, lateral: str, side: str, source: str
) -> str | None:
    """:func:`medial_of_error` for a pair of which both points are placed; None otherwise."""
    if medial not in points or lateral not in points:
        return None
    return medial_of_error(points, medial, lateral, side, source)


def check_alignment_landmarks(points: Mapping[str, npt.ArrayLike], side: str, source: str) -> None:
    """Refuse landmark sets that no limb can produce.

    Parameters
    ----------
    points
        Label -> position (3,), RAS mm, +z superior (see :mod:`MSKPlannerLib.landmark_checks`).
    side
        ``left`` or ``right``.
    source
        The image the landmarks were placed on, named in the message.

    Raises
    ------
    LandmarkError
        When ``hip_center`` is not proximal (superior) to both knee centres, a knee centre not
        proximal to ``ankle_center``, or a medial condyle or plateau point lies lateral to its
        lateral partner. Landmarks that are not placed are not checked.
    """
    reasons = (
        order_along_limb_error(
            points, "hip_center", ("knee_center_femur", "knee_center_tibia", "ankle_center"), source
        ),
        order_along_limb_error(points, "knee_center_femur", ("ankle_center",), source),
        order_along_limb_error(points, "knee_center_tibia", ("ankle_center",), source),
        _pair_error(points, "femoral_condyle_medial", "femoral_condyle_lateral", side, source),
        _pair_error(points, "tibial_plateau_medial", "tibial_plateau_lateral", side, source),
    )
    for reason in reasons:
        if reason is not None:
            raise LandmarkError(reason)


def _with_hip_center(points_ras_mm: Mapping[str, npt.ArrayLike]) -> Mapping[str, npt.ArrayLike]:
    """Add ``hip_center`` fitted to ``femoral_head_surface*`` points when it is not placed."""
    if "hip_center" in points_ras_mm:
        return points_ras_mm
    resolved = resolve_femoral_head_center(points_ras_mm)
    if "femoral_head_center" not in resolved:
        return points_ras_mm
    completed = dict(points_ras_mm)
    completed["hip_center"] = resolved["femoral_head_center"]
    return completed


def missing_alignment_landmarks(points_ras_mm: Mapping[str, npt.ArrayLike]) -> dict[str, list[str]]:
    """Which landmarks each alignment value lacks.

    Parameters
    ----------
    points_ras_mm
        Label -> position (3,), RAS mm; ``hip_center`` counts as placed when it can be taken
        from ``femoral_head_center`` or fitted to ``femoral_head_surface*`` points.

    Returns
    -------
    dict
        Key of :data:`ALIGNMENT_NEEDS` -> the labels it needs that are absent (empty when the
        value can be computed), in the order of :data:`ALIGNMENT_NEEDS`.
    """
    points = _with_hip_center(points_ras_mm)
    return {
        key: [label for label in needs if label not in points]
        for key, needs in ALIGNMENT_NEEDS.items()
    }


def _angle_rows(
    points: dict[str, FloatArray],
    keys: list[str],
    side: str,
    calibration: Calibration,
    source_image: str,
    method: str,
    placement_sigma_mm: float,
) -> MeasurementTable:
    """Rows of the angles in ``keys`` (all of whose landmarks are in ``points``)."""
    table = MeasurementTable()
    for key in keys:
        value = _angle_value(points, side, key)
        implausible = out_of_range_error(key, value, _ANGLE_LABELS[key], source_image)
        if implausible is not None:
            table.not_measured[key] = implausible
            continue
        uncertainty = propagate_uncertainty(
            partial(_angle_value, side=side, key=key),
            points,
            _ANGLE_LABELS[key],
            placement_sigma_mm,
        )
        table.add(
            frontal_landmark_row(
                key,
                _DEFINITIONS[key],
                value,
                uncertainty,
                side=side,
                calibration=calibration,
                source_image=source_image,
                method=method,
            )
        )
    return table


def _mad_row(
    points: dict[str, FloatArray],
    side: str,
    calibration: Calibration,
    source_image: str,
    method: str,
    placement_sigma_mm: float,
) -> Measurement:
    """The ``mad_mm`` row (its four centre landmarks are in ``points``)."""
    uncertainty = propagate_uncertainty(
        lambda pts: mechanical_axis_deviation_mm(pts, side),
        points,
        ALIGNMENT_NEEDS["mad_mm"],
        placement_sigma_mm,
    )
    return frontal_landmark_row(
        "mad_mm",
        _DEFINITIONS["mad_mm"],
        mechanical_axis_deviation_mm(points, side),
        uncertainty,
        side=side,
        calibration=calibration,
        source_image=source_image,
        method=method,
    )


def measure_alignment(
    points_ras_mm: Mapping[str, npt.ArrayLike],
    side: str,
    calibration: Calibration,
    source_image: str,
    method: str = "manual",
    placement_sigma_mm: float = DEFAULT_PLACEMENT_SIGMA_MM,
) -> MeasurementTable:
    """Measure lower-limb alignment from landmarks.

    Parameters
    ----------
    points_ras_mm
        Label -> position (3,), RAS mm, with labels of :data:`ALIGNMENT_LABELS`;
        ``hip_center`` may instead be given as three or more ``femoral_head_surface*``
        points (sphere or circle fit). Each value is made when the landmarks it needs
        (:data:`ALIGNMENT_NEEDS`) are present: the four centres give ``hka_deg`` and
        ``mad_mm``, the condyles and plateau points add ``mldfa_deg``, ``mpta_deg`` and
        ``jlca_deg``.
    side
        ``"left"`` or ``"right"``.
    calibration
        How the image's distances became mm; ``mad_mm`` is refused when uncalibrated.
    source_image
        Series Instance UID or file the landmarks were placed on.
    method
        ``manual`` or ``automatic``.
    placement_sigma_mm
        Standard deviation of a landmark coordinate, for the uncertainty (95 % half-width).

    Returns
    -------
    MeasurementTable
        A row per value whose landmarks are present, and ``mad_mm`` only when the image is
        calibrated. ``not_measured`` names, for every other value, the landmarks it lacks or
        the missing calibration; an angle outside the values a patient can have
        (:data:`~MSKPlannerLib.landmark_checks.PLAUSIBLE_RANGES`) is not a row either, its
        reason naming its landmarks.

    Raises
    ------
    LandmarkError
        Landmarks out of order along the limb (``hip_center`` must be superior to the knee
        centres and they to ``ankle_center``), a side that contradicts the condyle or
        plateau labels, or landmarks that do not lie near a frontal plane.
    """
    points_ras_mm = _with_hip_center(points_ras_mm)
    points = {
        label: np.asarray(points_ras_mm[label], dtype=float)
        for label in ALIGNMENT_LABELS
        if label in points_ras_mm
    }
    missing = missing_alignment_landmarks(points)
    table = MeasurementTable()
    for key, labels in missing.items():
        if labels:
            table.not_measured[key] = missing_landmarks_reason(labels)
    if len(points) >= 2:
        check_frontal_extent(np.stack(list(points.values())), "alignment", source_image)
    check_alignment_landmarks(points, side, source_image)

    angle_keys = [key for key in ANGLE_KEYS if not missing[key]]
    angles = _angle_rows(
        points, angle_keys, side, calibration, source_image, method, placement_sigma_mm
    )
    for row in angles.rows:
        table.add(row)
    table.not_measured.update(angles.not_measured)

    if not missing["mad_mm"] and not calibration.is_calibrated:
        table.not_measured["mad_mm"] = length_refused_reason(calibration, source_image)
    elif not missing["mad_mm"]:
        table.add(_mad_row(points, side, calibration, source_image, method, placement_sigma_mm))
    logger.debug("alignment of %s (%s): %s", source_image, side, table.values())
    return table

"""The generated long-leg radiograph of the demo patient: landmarks with known angles.

:func:`leg_geometry` places the lower-limb alignment landmarks of one leg in the frontal plane
from construction angles, so hka_deg, mldfa_deg, mpta_deg, jlca_deg and mad_mm are known
exactly; :func:`long_leg_radiograph` draws the bones around them. Pure core (numpy).

Frames: landmarks are RAS millimetres in the coronal plane ``y = 0``; the radiograph's columns
run toward the patient's left and its rows toward the feet (PatientOrientation ``L``, ``F``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

#: Construction angles of the long-leg radiograph (left leg, mild varus).
HIP_ANGLE_DEG = 2.5  # hip lies medial of the knee by this angle from vertical
ANKLE_ANGLE_DEG = 1.5  # ankle lies medial of the knee by this angle from vertical
MLDFA_DEG = 88.0
MPTA_DEG = 85.0
FEMUR_LENGTH_MM = 440.0
TIBIA_LENGTH_MM = 380.0
JOINT_GAP_MM = 6.0
CONDYLE_HALF_WIDTH_MM = 38.0
RADIOGRAPH_SPACING_MM = 0.4
NECK_LATERAL_MM = 42.0  # top of the femoral shaft, lateral of the head centre
NECK_DROP_MM = 30.0  # and below it
SHAFT_END_ABOVE_KNEE_MM = 30.0


def _distance_to_line(point: FloatArray, start: FloatArray, end: FloatArray) -> float:
    """Distance (mm) from a 2D point to the line through two 2D points."""
    direction = (end - start) / np.linalg.norm(end - start)
    offset = point - start
    return float(abs(offset[0] * direction[1] - offset[1] * direction[0]))


def _angle_deg(a: FloatArray, b: FloatArray) -> float:
    """Angle (degrees, 0..180) between two 2D vectors."""
    cosine = float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))
    return math.degrees(math.acos(max(-1.0, min(1.0, cosine))))


@dataclass(frozen=True)
class LegGeometry:
    """Landmarks of the generated long-leg radiograph (RAS mm) and their known angles."""

    points_ras_mm: dict[str, FloatArray]
    expected: dict[str, float]


def leg_geometry(side: str = "left") -> LegGeometry:
    """Construct lower-limb landmarks with known alignment angles, in the frontal plane.

    The knee sits at the origin; the hip and ankle lie medial of it by
    :data:`HIP_ANGLE_DEG` and :data:`ANKLE_ANGLE_DEG`, which gives a varus knee with
    ``hka_deg = 180 - HIP_ANGLE_DEG - ANKLE_ANGLE_DEG``. The joint lines make the angles
    :data:`MLDFA_DEG` and :data:`MPTA_DEG` with the mechanical axes. Positions are RAS mm in
    the coronal plane ``y = 0``.
    """
    medial = 1.0 if side == "left" else -1.0

    def rotate(vector: FloatArray, angle_deg: float) -> FloatArray:
        angle = math.radians(angle_deg)
        c, s = math.cos(angle), math.sin(angle)
        return np.array([c * vector[0] - s * vector[1], s * vector[0] + c * vector[1]])

    hip_angle = math.radians(HIP_ANGLE_DEG)
    ankle_angle = math.radians(ANKLE_ANGLE_DEG)
    knee_femur = np.array([0.0, JOINT_GAP_MM / 2])
    knee_tibia = np.array([0.0, -JOINT_GAP_MM / 2])
    femur_up = np.array([medial * math.sin(hip_angle), math.cos(hip_angle)])
    tibia_down = np.array([medial * math.sin(ankle_angle), -math.cos(ankle_angle)])
    hip = knee_femur + FEMUR_LENGTH_MM * femur_up
    ankle = knee_tibia + TIBIA_LENGTH_MM * tibia_down
    # Rotating the axis toward the lateral side (femur) or the medial side (tibia).
    femoral_line_lateral = rotate(femur_up, medial * MLDFA_DEG)
    tibial_line_medial = rotate(tibia_down, medial * MPTA_DEG)
    condyle_medial = knee_femur - CONDYLE_HALF_WIDTH_MM * femoral_line_lateral
    condyle_lateral = knee_femur + CONDYLE_HALF_WIDTH_MM * femoral_line_lateral
    plateau_medial = knee_tibia + CONDYLE_HALF_WIDTH_MM * tibial_line_medial
    plateau_lateral = knee_tibia - CONDYLE_HALF_WIDTH_MM * tibial_line_medial

    # Proximal femur: the neck runs from the head laterally and down to the top of the shaft.
    shaft_proximal = hip + np.array([-medial * NECK_LATERAL_MM, -NECK_DROP_MM])
    shaft_distal = knee_femur + np.array([0.0, SHAFT_END_ABOVE_KNEE_MM])
    neck_center = (hip + shaft_proximal) / 2.0

    points_2d = {
        "hip_center": hip,
        "femoral_head_center": hip,
        "femoral_neck_center": neck_center,
        "femoral_shaft_proximal": shaft_proximal,
        "femoral_shaft_distal": shaft_distal,
        "knee_center_femur": knee_femur,
        "knee_center_tibia": knee_tibia,
        "ankle_center": ankle,
        "femoral_condyle_medial": condyle_medial,
        "femoral_condyle_lateral": condyle_lateral,
        "tibial_plateau_medial": plateau_medial,
        "tibial_plateau_lateral": plateau_lateral,
    }
    points = {label: np.array([p[0], 0.0, p[1]]) for label, p in points_2d.items()}

    joint_lines_deg = math.degrees(
        math.acos(
            abs(float(np.dot(femoral_line_lateral, tibial_line_medial)))
            / (np.linalg.norm(femoral_line_lateral) * np.linalg.norm(tibial_line_medial))
        )
    )
    knee_centre = (knee_femur + knee_tibia) / 2
    line = ankle - hip
    cross = line[0] * (knee_centre - hip)[1] - line[1] * (knee_centre - hip)[0]
    mad_mm = abs(cross) / float(np.linalg.norm(line))
    expected = {
        "hka_deg": 180.0 - HIP_ANGLE_DEG - ANKLE_ANGLE_DEG,
        "mldfa_deg": MLDFA_DEG,
        "mpta_deg": MPTA_DEG,
        "jlca_deg": joint_lines_deg,
        "mad_mm": float(mad_mm),
        "femoral_offset_mm": _distance_to_line(hip, shaft_proximal, shaft_distal),
        "ccd_deg": _angle_deg(hip - neck_center, shaft_distal - shaft_proximal),
    }
    return LegGeometry(points, expected)


def radiograph_ijk_to_ras(
    spacing_mm: Sequence[float], origin_ras_mm: Sequence[float]
) -> FloatArray:
    """IJK-to-RAS matrix of an anteroposterior radiograph shown in the coronal plane.

    Columns run toward the patient's left (RAS -x), rows toward the feet (RAS -z), as the
    picture is read; ``spacing_mm`` is ``(row_spacing, column_spacing)``.
    """
    matrix = np.eye(4)
    matrix[:3, 0] = [-float(spacing_mm[1]), 0.0, 0.0]
    matrix[:3, 1] = [0.0, 0.0, -float(spacing_mm[0])]
    matrix[:3, 2] = [0.0, 1.0, 0.0]
    matrix[:3, 3] = origin_ras_mm
    return matrix


def _distance_to_segment(
    x_mm: FloatArray, z_mm: FloatArray, start: FloatArray, end: FloatArray
) -> FloatArray:
    direction = end - start
    length_sq = float(direction @ direction)
    t = ((x_mm - start[0]) * direction[0] + (z_mm - start[1]) * direction[1]) / length_sq
    t = np.clip(t, 0.0, 1.0)
    return np.hypot(x_mm - (start[0] + t * direction[0]), z_mm - (start[1] + t * direction[1]))


def long_leg_radiograph(
    geometry: LegGeometry, spacing_mm: float = RADIOGRAPH_SPACING_MM
) -> tuple[npt.NDArray[np.uint16], FloatArray]:
    """Draw a long-leg radiograph of the constructed leg.

    Returns
    -------
    pixels, ijk_to_ras_mm
        12-bit pixels ``(rows, columns)`` (bone bright) and the picture's IJK-to-RAS matrix
        (:func:`radiograph_ijk_to_ras`) that puts the landmarks on their anatomy.
    """
    frontal = {k: np.array([p[0], p[2]]) for k, p in geometry.points_ras_mm.items()}
    stacked = np.array(list(frontal.values()))
    margin_mm = 70.0
    x_max, z_max = stacked.max(axis=0) + margin_mm
    x_min, z_min = stacked.min(axis=0) - margin_mm
    columns = math.ceil((x_max - x_min) / spacing_mm)
    rows = math.ceil((z_max - z_min) / spacing_mm)
    ijk_to_ras = radiograph_ijk_to_ras((spacing_mm, spacing_mm), (x_max, 0.0, z_max))
    row_index, column_index = np.indices((rows, columns), dtype=np.float64)
    x_mm = x_max - column_index * spacing_mm
    z_mm = z_max - row_index * spacing_mm

    hip, ankle = frontal["hip_center"], frontal["ankle_center"]
    knee_t = frontal["knee_center_tibia"]
    attenuation = np.full((rows, columns), 0.05)
    limb = _distance_to_segment(
        x_mm, z_mm, hip + np.array([0.0, 40.0]), ankle - np.array([0.0, 20.0])
    )
    attenuation += 0.25 * np.clip((75.0 - limb) / 75.0, 0.0, 1.0) ** 0.5
    neck_end = frontal["femoral_shaft_proximal"]
    bones = [
        (_distance_to_segment(x_mm, z_mm, neck_end, frontal["femoral_shaft_distal"]), 14.0),
        (_distance_to_segment(x_mm, z_mm, hip, neck_end), 16.0),
        (np.hypot(x_mm - hip[0], z_mm - hip[1]), 24.0),
        (
            _distance_to_segment(
                x_mm, z_mm, frontal["femoral_condyle_medial"], frontal["femoral_condyle_lateral"]
            ),
            16.0,
        ),
        (
            _distance_to_segment(
                x_mm, z_mm, knee_t - np.array([0.0, 28.0]), ankle + np.array([0.0, 20.0])
            ),
            13.0,
        ),
        (
            _distance_to_segment(
                x_mm, z_mm, frontal["tibial_plateau_medial"], frontal["tibial_plateau_lateral"]
            ),
            12.0,
        ),
        (np.hypot(x_mm - ankle[0], z_mm - ankle[1] + 8.0), 16.0),
    ]
    bone = np.zeros((rows, columns))
    for distance, radius in bones:
        cortex = np.clip(1.0 - np.abs(distance - radius * 0.85) / (radius * 0.25), 0.0, 1.0)
        inside = np.clip((radius - distance) / 2.0, 0.0, 1.0)
        bone = np.maximum(bone, 0.35 * inside + 0.6 * cortex * inside)
    attenuation += bone
    rng = np.random.default_rng(11)
    attenuation += rng.normal(0.0, 0.01, size=attenuation.shape)
    pixels = np.clip(attenuation * 3000.0, 0, 4095).astype(np.uint16)
    return pixels, ijk_to_ras

"""Templating frames: pixels, the image mm frame and an implant's pose; results and errors.

Frames
------
- Pixel coordinates are ``(column, row)``, zero-based, row downwards, as in the DICOM pixel
  array.
- The *image mm frame* is the radiograph's plane in calibrated millimetres:
  ``x = column * column_spacing_mm`` (to the right of the displayed image) and
  ``y = -row * row_spacing_mm`` (upwards on the displayed image).
- The implant frame is that of :mod:`MSKPlannerLib.implant_geometry` (``+y`` superior).

A :class:`TemplatePose` puts the implant frame into the image mm frame: a centre, a rotation
counter-clockwise on the displayed image, and a mirror flag that flips the implant's ``x``.
Every conversion refuses an uncalibrated image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from MSKPlannerLib.implant_catalogue import ImplantSize
from MSKPlannerLib.measurement_table import Calibration, Measurement

FloatArray = npt.NDArray[np.float64]


class TemplatingError(ValueError):
    """Templating cannot run on this image or with these landmarks; the message says why."""


@dataclass(frozen=True)
class TemplatePose:
    """Where an implant sits on a radiograph.

    Attributes
    ----------
    center_px
        ``(column, row)`` of the implant frame's origin, in pixels.
    angle_deg
        Rotation of the implant frame, counter-clockwise on the displayed image, degrees.
    mirror
        Whether the implant's ``x`` axis is flipped (neck toward the displayed left).
    """

    center_px: tuple[float, float]
    angle_deg: float = 0.0
    mirror: bool = False


@dataclass
class TemplateResult:
    """A size suggestion with the anatomy it came from.

    Attributes
    ----------
    size
        The suggested catalogue size.
    based_on
        The measurement the size came from (a table row, calibrated mm).
    pose
        Where the implant is drawn on the radiograph.
    predicted
        ``offset_change_mm`` and ``leg_length_change_mm`` when they can be predicted
        (positive: more offset, longer leg).
    measurements
        Every row made on the way (anatomy and predictions), for the measurement table.
    notes
        Plain sentences about what was assumed or could not be predicted.
    """

    size: ImplantSize
    based_on: Measurement
    pose: TemplatePose
    predicted: dict[str, float] = field(default_factory=dict)
    measurements: list[Measurement] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (``suggested_size``, ``based_on`` with key, value and unit)."""
        return {
            "family": self.size.family_id,
            "kind": self.size.kind,
            "suggested_size": self.size.size,
            "variant": self.size.variant,
            "based_on": {
                "key": self.based_on.key,
                "value": self.based_on.value,
                "unit": self.based_on.unit,
                "label": self.based_on.label,
            },
            "predicted": dict(self.predicted),
            "pose": {
                "center_px": list(self.pose.center_px),
                "angle_deg": self.pose.angle_deg,
                "mirror": self.pose.mirror,
            },
            "calibration": {
                "method": self.based_on.calibration.method,
                "mm_per_pixel": list(self.based_on.calibration.mm_per_pixel or []),
                "detail": self.based_on.calibration.detail,
            },
            "measurements": [row.to_dict() for row in self.measurements],
            "notes": list(self.notes),
        }


def spacing_of(calibration: Calibration, image_name: str) -> tuple[float, float]:
    """Return ``(row_spacing_mm, column_spacing_mm)``, refusing an uncalibrated image.

    Raises
    ------
    TemplatingError
        When the calibration is missing, uncalibrated or has a non-positive spacing.
    """
    spacing = calibration.mm_per_pixel
    if not calibration.is_calibrated or spacing is None:
        raise TemplatingError(
            f"{image_name} is not calibrated ({calibration.detail or calibration.method}): "
            "templating needs millimetres; calibrate the radiograph first"
        )
    row_mm, column_mm = (float(v) for v in spacing)
    if not (math.isfinite(row_mm) and math.isfinite(column_mm) and row_mm > 0 and column_mm > 0):
        raise TemplatingError(f"{image_name} has an unusable calibration spacing {spacing}")
    return row_mm, column_mm


def pixels_to_image_mm(
    points_px: npt.ArrayLike, calibration: Calibration, image_name: str
) -> FloatArray:
    """Convert ``(column, row)`` pixels, shape (N, 2) or (2,), to the image mm frame."""
    row_mm, column_mm = spacing_of(calibration, image_name)
    points = np.asarray(points_px, dtype=float)
    return np.stack([points[..., 0] * column_mm, -points[..., 1] * row_mm], axis=-1)


def image_mm_to_pixels(
    points_mm: npt.ArrayLike, calibration: Calibration, image_name: str
) -> FloatArray:
    """Convert image mm frame points, shape (N, 2) or (2,), to ``(column, row)`` pixels."""
    row_mm, column_mm = spacing_of(calibration, image_name)
    points = np.asarray(points_mm, dtype=float)
    return np.stack([points[..., 0] / column_mm, -points[..., 1] / row_mm], axis=-1)


def implant_to_image_mm(
    pose: TemplatePose, calibration: Calibration, image_name: str
) -> FloatArray:
    """Return the 3x3 homogeneous matrix from the implant frame to the image mm frame."""
    center_mm = pixels_to_image_mm(pose.center_px, calibration, image_name)
    angle = math.radians(pose.angle_deg)
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    matrix = np.eye(3)
    matrix[:2, :2] = rotation @ np.diag([-1.0 if pose.mirror else 1.0, 1.0])
    matrix[:2, 2] = center_mm
    return matrix


def implant_points_px(
    points_implant_mm: npt.ArrayLike,
    pose: TemplatePose,
    calibration: Calibration,
    image_name: str,
) -> FloatArray:
    """Map implant frame points, shape (N, 2), to ``(column, row)`` pixels under a pose."""
    points = np.asarray(points_implant_mm, dtype=float).reshape(-1, 2)
    matrix = implant_to_image_mm(pose, calibration, image_name)
    image_mm = points @ matrix[:2, :2].T + matrix[:2, 2]
    return image_mm_to_pixels(image_mm, calibration, image_name)


def ras_to_pixels(points_ras_mm: npt.ArrayLike, ijk_to_ras_mm: npt.ArrayLike) -> FloatArray:
    """Convert RAS points on a radiograph to ``(column, row)`` pixels.

    Parameters
    ----------
    points_ras_mm
        Shape (N, 3) or (3,), RAS mm (landmarks placed on the radiograph's volume node).
    ijk_to_ras_mm
        4x4 IJK-to-RAS matrix of that volume node (I = column, J = row).

    Returns
    -------
    numpy.ndarray
        Shape (N, 2) or (2,): ``(column, row)``; the out-of-plane index is dropped.
    """
    points = np.asarray(points_ras_mm, dtype=float)
    inverse = np.linalg.inv(np.asarray(ijk_to_ras_mm, dtype=float))
    homogeneous = np.concatenate(
        [points.reshape(-1, 3), np.ones((points.reshape(-1, 3).shape[0], 1))], axis=1
    )
    ijk = homogeneous @ inverse.T
    result = ijk[:, :2]
    return result.reshape(2) if points.ndim == 1 else result

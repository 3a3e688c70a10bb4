"""Implant templating on a calibrated radiograph: size suggestion, placement, predicted change.

Frames
------
- Pixel coordinates are ``(column, row)``, zero-based, row downwards, as in the DICOM pixel
  array.
- The *image mm frame* is the radiograph's plane in calibrated millimetres:
  ``x = column * column_spacing_mm`` (to the right of the displayed image) and
  ``y = -row * row_spacing_mm`` (upwards on the displayed image).
- The implant frame is that of :mod:`MSKPlannerLib.implant_geometry` (``+y`` superior).

A :class:`TemplatePose` puts the implant frame into the image mm frame: a centre, a rotation
counter-clockwise on the displayed image, and a mirror flag that flips the implant's ``x``
(stems point their neck medially, which is to the displayed left or right depending on the
side and the view).

Landmark labels (points on the radiograph):

- cup: three or more points on the acetabular outline, labelled ``acetabulum_rim*``
  (``acetabulum_lateral_edge`` and ``acetabulum_inferior_edge`` are used too when present);
  optional ``femoral_head_center`` (or ``femoral_head_surface*``) for the predicted change.
- stem: ``lesser_trochanter`` (or ``lesser_trochanter_<side>``) as the reference level and
  two or more pairs ``canal_medial_<n>`` / ``canal_lateral_<n>`` on the inner cortex at the
  levels to fit; optional ``femoral_head_center`` for the predicted change.
- knee_femoral: ``femoral_condyle_medial`` and ``femoral_condyle_lateral`` (the widest
  points of the distal femur).
- knee_tibial: ``tibial_plateau_medial`` and ``tibial_plateau_lateral``.

Templating refuses an uncalibrated image: every size depends on millimetres.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from MSKPlannerLib import implant_geometry
from MSKPlannerLib.implant_catalogue import CatalogueError, ImplantFamily, ImplantSize
from MSKPlannerLib.measurement_table import Calibration, Measurement
from MSKPlannerLib.sphere_fit import fit_circle_2d

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]

#: Landmark prefix of points on the acetabular outline.
RIM_PREFIX = "acetabulum_rim"
_CANAL = re.compile(r"^canal_(medial|lateral)_(\w+)$")


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


def _row(
    key: str,
    label: str,
    value: float,
    unit: str,
    definition: str,
    calibration: Calibration,
    image_name: str,
    **details: Any,
) -> Measurement:
    return Measurement(
        key=key,
        label=label,
        value=round(float(value), 2),
        unit=unit,
        definition=definition,
        method="manual",
        calibration=calibration,
        source_image=image_name,
        details=details,
    )


def _points(
    landmarks_px: Mapping[str, npt.ArrayLike], calibration: Calibration, image_name: str
) -> dict[str, FloatArray]:
    return {
        label: pixels_to_image_mm(np.asarray(p, dtype=float)[:2], calibration, image_name)
        for label, p in landmarks_px.items()
    }


def _region(landmarks_px: Mapping[str, npt.ArrayLike], labels: list[str]) -> list[list[float]]:
    """``(column, row)`` pixels of the landmarks a row came from (its image region)."""
    return [
        [round(float(v), 2) for v in np.asarray(landmarks_px[label], dtype=float)[:2]]
        for label in labels
    ]


def _head_center(points_mm: Mapping[str, FloatArray]) -> FloatArray | None:
    if "femoral_head_center" in points_mm:
        return points_mm["femoral_head_center"]
    surface = [p for k, p in points_mm.items() if k.startswith("femoral_head_surface")]
    if len(surface) >= 3:
        center, _, _ = fit_circle_2d(np.stack(surface))
        return np.asarray(center, dtype=float)
    return None


def _medial_sign(side: str | None) -> float | None:
    """+1 when medial is toward the displayed right (standard AP view of a right limb)."""
    if side == "right":
        return 1.0
    if side == "left":
        return -1.0
    return None


def _choose_size_in_range(
    family: ImplantFamily, value_mm: float, label: str, image_name: str
) -> ImplantSize:
    """The family's size for an anatomy value, refusing a value far outside its range.

    A value more than one size step (the median spacing of the sizing parameter) below the
    smallest or above the largest size is refused rather than clamped: it points to a wrong
    calibration or misplaced landmarks, not to an unusual patient.

    Parameters
    ----------
    family
        A family sized by one value (``nearest`` or ``largest_not_exceeding``).
    value_mm
        The measured anatomy in mm (the unit of the family's sizing parameter).
    label
        What was measured, such as ``acetabular diameter``, for the message.
    image_name
        The radiograph, for the message.
    """
    values = np.unique(
        [float(s.parameters[family.sizing_parameter]) for s in family.sizes_of_variant()]
    )
    if values.size > 1:
        step = float(np.median(np.diff(values)))
        low, high = float(values[0]), float(values[-1])
        if not (low - step <= value_mm <= high + step):
            raise TemplatingError(
                f"{image_name}: the {label} of {value_mm:.1f} mm lies outside the range of "
                f"{family.family_id} ({family.sizing_parameter} {low:g} to {high:g} mm, steps "
                f"of {step:g} mm); check the calibration and the landmarks, no size is suggested"
            )
    try:
        return family.choose_size(value_mm)
    except CatalogueError as error:
        raise TemplatingError(f"{image_name}: {error}") from error


def suggest_cup(
    landmarks_px: Mapping[str, npt.ArrayLike],
    calibration: Calibration,
    image_name: str,
    family: ImplantFamily,
    side: str | None = None,
    inclination_deg: float = 40.0,
) -> TemplateResult:
    """Suggest an acetabular cup from a circle fitted to the acetabular outline.

    Parameters
    ----------
    landmarks_px
        Label -> ``(column, row)`` pixels (labels in the module docstring).
    calibration
        The radiograph's calibration; refused when uncalibrated.
    image_name
        File or SOP Instance UID of the radiograph, for messages and the table.
    family
        A ``cup`` family; its sizing rule is applied to the fitted diameter.
    side
        ``left``/``right`` (standard AP display) for the pose and the predicted change.
    inclination_deg
        Inclination at which the cup outline is drawn.

    Returns
    -------
    TemplateResult
        ``based_on`` is ``acetabular_diameter_mm``; the predicted change of the centre of
        rotation is given when the femoral head centre and the side are known.
    """
    spacing_of(calibration, image_name)
    points = _points(landmarks_px, calibration, image_name)
    rim_labels = [k for k in points if k.startswith(RIM_PREFIX)]
    rim_labels += [
        k for k in ("acetabulum_lateral_edge", "acetabulum_inferior_edge") if k in points
    ]
    if len(rim_labels) < 3:
        raise TemplatingError(
            f"cup templating on {image_name} needs three or more '{RIM_PREFIX}*' points on the "
            f"acetabular outline; found {len(rim_labels)}"
        )
    center_mm, radius_mm, rms_mm = fit_circle_2d(np.stack([points[k] for k in rim_labels]))
    diameter_mm = 2.0 * radius_mm
    anatomy = _row(
        "acetabular_diameter_mm",
        "Acetabular diameter",
        diameter_mm,
        "mm",
        "Diameter of the circle fitted to points on the acetabular outline, in the image plane.",
        calibration,
        image_name,
        points=len(rim_labels),
        fit_rms_mm=round(rms_mm, 2),
        region_px=_region(landmarks_px, rim_labels),
    )
    size = _choose_size_in_range(family, diameter_mm, "acetabular diameter", image_name)

    medial = _medial_sign(side)
    # Turning the cup counter-clockwise swings its opening toward +x (lateral when medial is -x).
    angle = -inclination_deg if medial is not None and medial > 0 else inclination_deg
    center_px = image_mm_to_pixels(np.asarray(center_mm), calibration, image_name)
    pose = TemplatePose((float(center_px[0]), float(center_px[1])), angle)
    result = TemplateResult(size=size, based_on=anatomy, pose=pose, measurements=[anatomy])

    head = _head_center(points)
    if head is None or medial is None:
        result.notes.append(
            "offset and leg-length change not predicted: they need femoral_head_center and the side"
        )
        return result
    shift = np.asarray(center_mm) - head
    lateral = -medial
    result.predicted = {
        "offset_change_mm": round(float(shift[0] * lateral), 2),
        "leg_length_change_mm": round(float(-shift[1]), 2),
    }
    result.notes.append(
        "predicted change from moving the centre of rotation from the femoral head centre to "
        "the cup centre, femur unchanged"
    )
    _add_prediction_rows(result, calibration, image_name)
    return result


def _add_prediction_rows(result: TemplateResult, calibration: Calibration, name: str) -> None:
    texts = {
        "offset_change_mm": (
            "Predicted change in offset",
            "Planned minus native hip centre, along the medial-lateral direction of the image; "
            "positive when the offset increases.",
        ),
        "leg_length_change_mm": (
            "Predicted change in leg length",
            "Planned minus native hip centre, along the limb axis; positive when the leg "
            "lengthens.",
        ),
    }
    for key, value in result.predicted.items():
        label, definition = texts[key]
        result.measurements.append(
            _row(key, label, value, "mm", definition, calibration, name, size=result.size.label)
        )


def _canal_levels(
    points: Mapping[str, FloatArray], image_name: str
) -> list[tuple[str, FloatArray, FloatArray]]:
    pairs: dict[str, dict[str, FloatArray]] = {}
    for label, position in points.items():
        match = _CANAL.match(label)
        if match:
            pairs.setdefault(match.group(2), {})[match.group(1)] = position
    complete = [(n, p["medial"], p["lateral"]) for n, p in pairs.items() if len(p) == 2]
    if len(complete) < 2:
        raise TemplatingError(
            f"stem templating on {image_name} needs two or more canal_medial_<n>/"
            f"canal_lateral_<n> pairs; found {len(complete)}"
        )
    return sorted(complete, key=lambda item: item[0])


def suggest_stem(
    landmarks_px: Mapping[str, npt.ArrayLike],
    calibration: Calibration,
    image_name: str,
    family: ImplantFamily,
    variant: str | None = None,
    side: str | None = None,
) -> TemplateResult:
    """Suggest a femoral stem that fills the canal at the stated levels.

    The femoral axis is the line through the canal midpoints; each level's depth is measured
    along it below the lesser trochanter, and the canal width across it. The suggested size
    is the largest stem (of ``variant``) whose width at every level fits the canal. The stem
    is seated with its reference level at the lesser trochanter.

    Parameters
    ----------
    landmarks_px
        Label -> ``(column, row)`` pixels (labels in the module docstring).
    calibration, image_name
        As for :func:`suggest_cup`.
    family
        A ``stem`` family.
    variant
        Neck-shaft angle and offset variant; the family's default when None.
    side
        Used for the medial direction only when ``femoral_head_center`` is absent.

    Returns
    -------
    TemplateResult
        ``based_on`` is ``canal_width_mm`` at the level that limits the size.
    """
    spacing_of(calibration, image_name)
    points = _points(landmarks_px, calibration, image_name)
    reference_label = next(
        (k for k in ("lesser_trochanter", f"lesser_trochanter_{side}") if k in points), None
    )
    if reference_label is None:
        raise TemplatingError(f"stem templating on {image_name} needs the lesser_trochanter point")
    levels = _canal_levels(points, image_name)
    midpoints = np.stack([(m + lat) / 2.0 for _, m, lat in levels])
    centred = midpoints - midpoints.mean(axis=0)
    axis = np.linalg.svd(centred)[2][0]
    reference = points[reference_label]
    if (reference - midpoints.mean(axis=0)) @ axis < 0:
        axis = -axis  # points proximally, toward the lesser trochanter
    across = np.array([-axis[1], axis[0]])
    head = _head_center(points)
    if head is not None:
        medial = across if (head - midpoints.mean(axis=0)) @ across > 0 else -across
    elif _medial_sign(side) is not None:
        medial = across if across[0] * float(_medial_sign(side) or 1.0) > 0 else -across
    else:
        raise TemplatingError(
            f"stem templating on {image_name} needs femoral_head_center or the side to know "
            "which way is medial"
        )
    axis_origin = midpoints.mean(axis=0) + ((reference - midpoints.mean(axis=0)) @ axis) * axis

    canal: list[tuple[float, float, str]] = []
    for name, medial_point, lateral_point in levels:
        depth = float((axis_origin - (medial_point + lateral_point) / 2.0) @ axis)
        width = float(abs((medial_point - lateral_point) @ across))
        canal.append((depth, width, name))
    sizes = family.sizes_of_variant(variant)
    fitting = [
        s
        for s in sizes
        if all(implant_geometry.stem_width_at_mm(s.parameters, d) <= w for d, w, _ in canal)
    ]
    if not fitting:
        raise TemplatingError(
            f"{image_name}: the canal is narrower than the smallest stem of {family.family_id}"
        )
    size = max(fitting, key=lambda s: implant_geometry.stem_width_at_mm(s.parameters, 0.0))
    margins = [
        (w - implant_geometry.stem_width_at_mm(size.parameters, d), d, w, n) for d, w, n in canal
    ]
    _, depth, width, level_name = min(margins)
    anatomy = _row(
        "canal_width_mm",
        "Femoral canal width",
        width,
        "mm",
        "Width of the medullary canal across the femoral axis at the stated level below the "
        "lesser trochanter (the level that limits the stem size).",
        calibration,
        image_name,
        level=level_name,
        level_below_lesser_trochanter_mm=round(depth, 1),
        levels={n: {"depth_mm": round(d, 1), "width_mm": round(w, 2)} for d, w, n in canal},
        region_px=_region(
            landmarks_px, [f"canal_medial_{level_name}", f"canal_lateral_{level_name}"]
        ),
    )
    angle = math.degrees(math.atan2(-axis[0], axis[1]))  # implant +y along the femoral axis
    implant_x = np.array([math.cos(math.radians(angle)), math.sin(math.radians(angle))])
    mirror = bool(medial @ implant_x < 0)
    center_px = image_mm_to_pixels(axis_origin, calibration, image_name)
    pose = TemplatePose((float(center_px[0]), float(center_px[1])), angle, mirror)
    result = TemplateResult(size=size, based_on=anatomy, pose=pose, measurements=[anatomy])
    if head is None:
        result.notes.append("offset and leg-length change not predicted: no femoral_head_center")
        return result
    new_head = (
        axis_origin
        + float(size.parameters["head_height_mm"]) * axis
        + float(size.parameters["offset_mm"]) * medial
    )
    shift = new_head - head
    result.predicted = {
        "offset_change_mm": round(float(shift @ medial), 2),
        "leg_length_change_mm": round(float(shift @ axis), 2),
    }
    result.notes.append(
        "stem seated with its reference level at the lesser trochanter; change measured from "
        "the native femoral head centre to the stem's head centre"
    )
    _add_prediction_rows(result, calibration, image_name)
    return result


def suggest_knee(
    landmarks_px: Mapping[str, npt.ArrayLike],
    calibration: Calibration,
    image_name: str,
    family: ImplantFamily,
) -> TemplateResult:
    """Suggest a total-knee femoral or tibial component from the condylar or plateau width.

    Parameters
    ----------
    landmarks_px
        ``femoral_condyle_medial``/``femoral_condyle_lateral`` for a ``knee_femoral``
        family, ``tibial_plateau_medial``/``tibial_plateau_lateral`` for ``knee_tibial``.
    calibration, image_name
        As for :func:`suggest_cup`.
    family
        The component family; its sizing rule is applied to the width.
    """
    spacing_of(calibration, image_name)
    points = _points(landmarks_px, calibration, image_name)
    if family.kind == "knee_femoral":
        labels = ("femoral_condyle_medial", "femoral_condyle_lateral")
        key, label = "femoral_condylar_width_mm", "Distal femoral condylar width"
    elif family.kind == "knee_tibial":
        labels = ("tibial_plateau_medial", "tibial_plateau_lateral")
        key, label = "tibial_plateau_width_mm", "Tibial plateau width"
    else:
        raise TemplatingError(f"family {family.family_id!r} is not a knee component")
    missing = [name for name in labels if name not in points]
    if missing:
        raise TemplatingError(f"knee templating on {image_name} needs {', '.join(missing)}")
    medial_point, lateral_point = points[labels[0]], points[labels[1]]
    width = float(np.linalg.norm(medial_point - lateral_point))
    anatomy = _row(
        key,
        label,
        width,
        "mm",
        f"Distance between {labels[0]} and {labels[1]} in the image plane.",
        calibration,
        image_name,
        region_px=_region(landmarks_px, list(labels)),
    )
    size = _choose_size_in_range(family, width, label[0].lower() + label[1:], image_name)
    direction = medial_point - lateral_point
    angle = math.degrees(math.atan2(direction[1], direction[0]))
    mirror = False
    if abs(angle) > 90.0:
        angle = angle - 180.0 if angle > 0 else angle + 180.0
        mirror = True
    center_px = image_mm_to_pixels((medial_point + lateral_point) / 2.0, calibration, image_name)
    pose = TemplatePose((float(center_px[0]), float(center_px[1])), angle, mirror)
    result = TemplateResult(size=size, based_on=anatomy, pose=pose, measurements=[anatomy])
    result.notes.append("offset and leg length are not predicted for knee components")
    return result


def suggest_size(
    kind: str,
    landmarks_px: Mapping[str, npt.ArrayLike],
    calibration: Calibration,
    image_name: str,
    family: ImplantFamily,
    variant: str | None = None,
    side: str | None = None,
) -> TemplateResult:
    """Dispatch to :func:`suggest_cup`, :func:`suggest_stem` or :func:`suggest_knee`."""
    if family.kind != kind:
        raise TemplatingError(f"family {family.family_id!r} is a {family.kind}, not a {kind}")
    if kind == "cup":
        return suggest_cup(landmarks_px, calibration, image_name, family, side)
    if kind == "stem":
        return suggest_stem(landmarks_px, calibration, image_name, family, variant, side)
    return suggest_knee(landmarks_px, calibration, image_name, family)


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

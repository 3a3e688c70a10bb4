"""Implant templating on a calibrated radiograph: size suggestion, placement, predicted change.

Pixels, the image mm frame, the implant frame and :class:`TemplatePose` are defined in
:mod:`MSKPlannerLib.templating_frames`; stem sizing lives in :mod:`MSKPlannerLib.templating_stem`.

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

import math
from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from MSKPlannerLib.implant_catalogue import ImplantFamily
from MSKPlannerLib.measurement_table import Calibration
from MSKPlannerLib.sphere_fit import fit_circle_2d
from MSKPlannerLib.templating_frames import (
    TemplatePose,
    TemplateResult,
    TemplatingError,
    image_mm_to_pixels,
    implant_points_px,
    implant_to_image_mm,
    pixels_to_image_mm,
    ras_to_pixels,
    spacing_of,
)
from MSKPlannerLib.templating_rows import (
    add_prediction_rows,
    choose_size_in_range,
    head_center_mm,
    measurement_row,
    medial_sign,
    points_mm,
    region_px,
)
from MSKPlannerLib.templating_stem import suggest_stem

__all__ = [
    "RIM_PREFIX",
    "TemplatePose",
    "TemplateResult",
    "TemplatingError",
    "image_mm_to_pixels",
    "implant_points_px",
    "implant_to_image_mm",
    "pixels_to_image_mm",
    "ras_to_pixels",
    "spacing_of",
    "suggest_cup",
    "suggest_knee",
    "suggest_size",
    "suggest_stem",
]

#: Landmark prefix of points on the acetabular outline.
RIM_PREFIX = "acetabulum_rim"


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
    points = points_mm(landmarks_px, calibration, image_name)
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
    anatomy = measurement_row(
        "acetabular_diameter_mm",
        "Acetabular diameter",
        diameter_mm,
        "mm",
        "Diameter of the circle fitted to points on the acetabular outline, in the image plane.",
        calibration,
        image_name,
        points=len(rim_labels),
        fit_rms_mm=round(rms_mm, 2),
        region_px=region_px(landmarks_px, rim_labels),
    )
    size = choose_size_in_range(family, diameter_mm, "acetabular diameter", image_name)

    medial = medial_sign(side)
    # Turning the cup counter-clockwise swings its opening toward +x (lateral when medial is -x).
    angle = -inclination_deg if medial is not None and medial > 0 else inclination_deg
    center_px = image_mm_to_pixels(np.asarray(center_mm), calibration, image_name)
    pose = TemplatePose((float(center_px[0]), float(center_px[1])), angle)
    result = TemplateResult(size=size, based_on=anatomy, pose=pose, measurements=[anatomy])

    head = head_center_mm(points)
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
    add_prediction_rows(result, calibration, image_name)
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
    points = points_mm(landmarks_px, calibration, image_name)
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
    anatomy = measurement_row(
        key,
        label,
        width,
        "mm",
        f"Distance between {labels[0]} and {labels[1]} in the image plane.",
        calibration,
        image_name,
        region_px=region_px(landmarks_px, list(labels)),
    )
    size = choose_size_in_range(family, width, label[0].lower() + label[1:], image_name)
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

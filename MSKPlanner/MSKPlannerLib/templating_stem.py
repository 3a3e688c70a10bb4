"""Femoral stem templating: canal width at stated levels below the lesser trochanter.

Landmarks (pixels, ``(column, row)``): ``lesser_trochanter`` (or ``lesser_trochanter_<side>``)
as the reference level, two or more pairs ``canal_medial_<n>`` / ``canal_lateral_<n>`` on the
inner cortex, and optionally ``femoral_head_center`` for the predicted offset and leg-length
change. Frames as in :mod:`MSKPlannerLib.templating_frames`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from MSKPlannerLib import implant_geometry
from MSKPlannerLib.implant_catalogue import ImplantFamily, ImplantSize
from MSKPlannerLib.measurement_table import Calibration
from MSKPlannerLib.templating_frames import (
    FloatArray,
    TemplatePose,
    TemplateResult,
    TemplatingError,
    image_mm_to_pixels,
    spacing_of,
)
from MSKPlannerLib.templating_rows import (
    add_prediction_rows,
    head_center_mm,
    measurement_row,
    medial_sign,
    points_mm,
    region_px,
)

_CANAL = re.compile(r"^canal_(medial|lateral)_(\w+)$")


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


def _refuse_canal_beyond_largest(
    sizes: list[ImplantSize],
    size: ImplantSize,
    margin_mm: float,
    depth_mm: float,
    width_mm: float,
    family: ImplantFamily,
    image_name: str,
) -> None:
    """Refuse a canal wider than the largest stem by more than one size step.

    The largest stem would "fit" any wide canal, so without this check a wrong calibration
    or misplaced canal points would quietly suggest the largest size.
    """
    widths_mm = np.unique(
        [implant_geometry.stem_width_at_mm(s.parameters, depth_mm) for s in sizes]
    )
    if size is not max(sizes, key=lambda s: implant_geometry.stem_width_at_mm(s.parameters, 0.0)):
        return
    if widths_mm.size < 2:
        return
    step_mm = float(np.median(np.diff(widths_mm)))
    if margin_mm > step_mm:
        raise TemplatingError(
            f"{image_name}: the canal width of {width_mm:.1f} mm, {depth_mm:.0f} mm below the "
            f"lesser trochanter, exceeds the largest stem of {family.family_id} "
            f"({widths_mm[-1]:.1f} mm there) by more than one size step ({step_mm:.1f} mm); "
            "check the calibration and the canal points, no size is suggested"
        )


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
    points = points_mm(landmarks_px, calibration, image_name)
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
    head = head_center_mm(points)
    if head is not None:
        medial = across if (head - midpoints.mean(axis=0)) @ across > 0 else -across
    elif medial_sign(side) is not None:
        medial = across if across[0] * float(medial_sign(side) or 1.0) > 0 else -across
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
    margin, depth, width, level_name = min(margins)
    _refuse_canal_beyond_largest(sizes, size, margin, depth, width, family, image_name)
    anatomy = measurement_row(
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
        region_px=region_px(
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
    add_prediction_rows(result, calibration, image_name)
    return result

"""Measurement rows and anatomy helpers shared by the cup, stem and knee templating.

Points are in the image mm frame of :mod:`MSKPlannerLib.templating_frames`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from MSKPlannerLib.implant_catalogue import CatalogueError, ImplantFamily, ImplantSize
from MSKPlannerLib.measurement_table import Calibration, Measurement
from MSKPlannerLib.sphere_fit import fit_circle_2d
from MSKPlannerLib.templating_frames import (
    FloatArray,
    TemplateResult,
    TemplatingError,
    pixels_to_image_mm,
)


def measurement_row(
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


def points_mm(
    landmarks_px: Mapping[str, npt.ArrayLike], calibration: Calibration, image_name: str
) -> dict[str, FloatArray]:
    return {
        label: pixels_to_image_mm(np.asarray(p, dtype=float)[:2], calibration, image_name)
        for label, p in landmarks_px.items()
    }


def region_px(landmarks_px: Mapping[str, npt.ArrayLike], labels: list[str]) -> list[list[float]]:
    """``(column, row)`` pixels of the landmarks a row came from (its image region)."""
    return [
        [round(float(v), 2) for v in np.asarray(landmarks_px[label], dtype=float)[:2]]
        for label in labels
    ]


def head_center_mm(points_mm: Mapping[str, FloatArray]) -> FloatArray | None:
    if "femoral_head_center" in points_mm:
        return points_mm["femoral_head_center"]
    surface = [p for k, p in points_mm.items() if k.startswith("femoral_head_surface")]
    if len(surface) >= 3:
        center, _, _ = fit_circle_2d(np.stack(surface))
        return np.asarray(center, dtype=float)
    return None


def medial_sign(side: str | None) -> float | None:
    """+1 when medial is toward the displayed right (standard AP view of a right limb)."""
    if side == "right":
        return 1.0
    if side == "left":
        return -1.0
    return None


def choose_size_in_range(
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


def add_prediction_rows(result: TemplateResult, calibration: Calibration, name: str) -> None:
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
            measurement_row(
                key, label, value, "mm", definition, calibration, name, size=result.size.label
            )
        )

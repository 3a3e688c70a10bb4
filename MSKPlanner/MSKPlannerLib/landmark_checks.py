"""Anatomical plausibility of landmarks and of the values measured from them.

A landmark placed on the wrong structure, or two labels swapped, still gives numbers; some of
them look like angles a report could carry (an HKA of 184 degrees, a CCD angle of 58). The
measurement families call these checks so that such sets are refused with a sentence naming
the landmarks and the image, never reported.

Public API
----------
- :func:`superior_mm`: height of a point along the superior axis, mm.
- :func:`order_along_limb_error`: the reason a landmark lies distal to one it must be proximal
  to, or None.
- :func:`medial_of_error`: the reason a medial landmark lies lateral to its lateral partner, or
  None.
- :data:`PLAUSIBLE_RANGES` and :func:`out_of_range_error`: the values that can occur in a
  patient, and the reason a value outside them is refused.

Frame: every point is in RAS mm **after** the measurement's own frame handling (a radiograph
loaded by the workbench follows its PatientOrientation, so +z is superior; landmarks placed
on a radiograph loaded into the axial plane are unfolded first, see
:func:`~MSKPlannerLib.landmarks.unfold_axial_radiograph`). Superior is therefore +z and medial
is given by :func:`~MSKPlannerLib.landmarks.medial_direction_frontal`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from MSKPlannerLib.landmarks import frontal_plane_mm, medial_direction_frontal

#: Values that can occur in a patient, (low, high) in the unit of the key. They are generous
#: on purpose: a severe deformity must still be measured, a swapped or misplaced label not.
PLAUSIBLE_RANGES: dict[str, tuple[float, float]] = {
    "hka_deg": (130.0, 230.0),
    "mldfa_deg": (45.0, 135.0),
    "mpta_deg": (45.0, 135.0),
    "jlca_deg": (-30.0, 30.0),
    "ccd_deg": (90.0, 170.0),
}


def _where(source: str) -> str:
    return source or "the landmark set"


def superior_mm(point_ras_mm: npt.ArrayLike) -> float:
    """Height of a point along the patient's superior axis (RAS +z), in mm."""
    return float(frontal_plane_mm(np.asarray(point_ras_mm, dtype=float))[1])


def order_along_limb_error(
    points_ras_mm: Mapping[str, npt.ArrayLike],
    proximal: str,
    distal: Sequence[str],
    source: str,
) -> str | None:
    """Why ``proximal`` does not lie superior to every landmark of ``distal``, or None.

    Parameters
    ----------
    points_ras_mm
        Label -> position (3,), RAS mm, +z superior.
    proximal
        The label that must lie proximal (superior) along the limb.
    distal
        Labels that must lie distal (inferior) to it; those absent are skipped.
    source
        The image (or file) the landmarks were placed on, named in the reason.

    Returns
    -------
    str or None
        A sentence naming both landmarks, their heights and the image; None when in order.
    """
    if proximal not in points_ras_mm:
        return None
    top_mm = superior_mm(points_ras_mm[proximal])
    for label in distal:
        if label not in points_ras_mm:
            continue
        below_mm = top_mm - superior_mm(points_ras_mm[label])
        if below_mm <= 0.0:
            return (
                f"in {_where(source)} {proximal} lies {abs(below_mm):.1f} mm distal to {label}; "
                f"{proximal} must be proximal (superior) to {label}: the labels are swapped or "
                "misplaced"
            )
    return None


def medial_of_error(
    points_ras_mm: Mapping[str, npt.ArrayLike],
    medial: str,
    lateral: str,
    side: str,
    source: str,
) -> str | None:
    """Why ``medial`` lies lateral to ``lateral`` on a ``side`` limb, or None.

    Parameters
    ----------
    points_ras_mm
        Label -> position (3,), RAS mm.
    medial, lateral
        The labels of the medial and of the lateral point of a pair (condyles, plateau ends).
    side
        ``left`` or ``right``: where medial is.
    source
        The image (or file) the landmarks were placed on, named in the reason.
    """
    offset = frontal_plane_mm(points_ras_mm[medial]) - frontal_plane_mm(points_ras_mm[lateral])
    if offset @ medial_direction_frontal(side) < 0:
        return (
            f"in {_where(source)} {medial} lies lateral to {lateral} for a {side} limb: the "
            "side or the labels are wrong"
        )
    return None


def out_of_range_error(key: str, value: float, labels: Sequence[str], source: str) -> str | None:
    """Why a measured value cannot occur in a patient, or None when it can.

    Parameters
    ----------
    key
        Measurement key (see :data:`PLAUSIBLE_RANGES`; keys without a range always pass).
    value
        The value measured, in the unit of the key.
    labels
        The landmarks the value was computed from, named in the reason.
    source
        The image (or file) the landmarks were placed on.
    """
    if key not in PLAUSIBLE_RANGES:
        return None
    low, high = PLAUSIBLE_RANGES[key]
    if low <= value <= high:
        return None
    unit = "deg" if key.endswith("_deg") else "mm"
    return (
        f"{value:.1f} {unit} from {', '.join(labels)} in {_where(source)} cannot occur "
        f"(possible {low:g} to {high:g} {unit}); check the placement of these landmarks"
    )

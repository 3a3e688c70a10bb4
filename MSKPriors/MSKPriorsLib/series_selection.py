"""Pick one series of a study for a view: by modality, description, orientation and size.

A selector keeps the series of its modalities that do not match its exclusion pattern (scouts,
localisers, dose reports by default) and have enough instances, then prefers series whose
description matches its pattern, then series in its orientation, then its ``prefer`` order.
Pure core, used by :mod:`MSKPriorsLib.hanging_protocols`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from MSKPriorsLib.records import SeriesRecord

#: Slice orientations, as Slicer names them.
ORIENTATIONS = ("Axial", "Coronal", "Sagittal")
#: Tie-break orders of a selector.
PREFERENCES = (
    "most_instances",
    "fewest_instances",
    "lowest_series_number",
    "highest_series_number",
)
_ORIENTATION_WORDS = {
    "AX": "Axial",
    "AXIAL": "Axial",
    "TRA": "Axial",
    "TRANS": "Axial",
    "TRANSVERSE": "Axial",
    "COR": "Coronal",
    "CORONAL": "Coronal",
    "SAG": "Sagittal",
    "SAGITTAL": "Sagittal",
}


@dataclass(frozen=True)
class SeriesSelector:
    """How a view picks one series of a study.

    Attributes
    ----------
    modalities
        Allowed modalities (upper case); empty allows any.
    description_regex
        Series whose description matches are preferred.
    exclude_description_regex
        Series whose description matches are never picked.
    orientation
        Preferred orientation (``Axial``, ``Coronal``, ``Sagittal``) or empty.
    min_instances
        Fewest instances a series must have.
    prefer
        Tie-break order, one of :data:`PREFERENCES`.
    """

    modalities: tuple[str, ...] = ()
    description_regex: str = ""
    exclude_description_regex: str = r"(?i)scout|localizer|localiser|topogram|survey|dose"
    orientation: str = ""
    min_instances: int = 1
    prefer: str = "most_instances"


def series_orientation(series: SeriesRecord) -> str:
    """Return ``Axial``, ``Coronal``, ``Sagittal`` or ``""`` for a series.

    Uses ``extra["orientation"]``, else the normal of ``extra["image_orientation_patient"]``
    (six direction cosines, LPS), else words in the series description.
    """
    named = str(series.extra.get("orientation", "")).capitalize()
    if named in ORIENTATIONS:
        return named
    cosines = series.extra.get("image_orientation_patient")
    if isinstance(cosines, (list, tuple)) and len(cosines) == 6:
        row = [float(v) for v in cosines[:3]]
        column = [float(v) for v in cosines[3:]]
        normal = [
            row[1] * column[2] - row[2] * column[1],
            row[2] * column[0] - row[0] * column[2],
            row[0] * column[1] - row[1] * column[0],
        ]
        axis = max(range(3), key=lambda index: abs(normal[index]))
        return ("Sagittal", "Coronal", "Axial")[axis]
    for word in re.findall(r"[A-Z]+", series.description.upper()):
        if word in _ORIENTATION_WORDS:
            return _ORIENTATION_WORDS[word]
    return ""


def select_series(series: Sequence[SeriesRecord], selector: SeriesSelector) -> SeriesRecord | None:
    """Return the series a selector picks, or None when no series passes its filters."""
    exclude = (
        re.compile(selector.exclude_description_regex)
        if selector.exclude_description_regex
        else None
    )
    wanted = set(selector.modalities)
    candidates = [
        s
        for s in series
        if (not wanted or s.modality.upper() in wanted)
        and not (exclude and exclude.search(s.description))
        and s.number_of_instances >= selector.min_instances
    ]
    if not candidates:
        return None
    pattern = re.compile(selector.description_regex) if selector.description_regex else None

    def key(s: SeriesRecord) -> tuple[int, int, int]:
        described = int(bool(pattern and pattern.search(s.description)))
        oriented = int(bool(selector.orientation) and series_orientation(s) == selector.orientation)
        if selector.prefer == "most_instances":
            tie = s.number_of_instances
        elif selector.prefer == "fewest_instances":
            tie = -s.number_of_instances
        elif selector.prefer == "highest_series_number":
            tie = s.series_number
        else:
            tie = -s.series_number
        return described, oriented, tie

    return max(candidates, key=key)

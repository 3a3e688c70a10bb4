"""The measurement table of a case: every value with its unit, definition, method and calibration.

This is the one record that measurements produce and that the report, the DICOM SR and the
viewers read. Lengths carry the calibration they were made with; angles may be uncalibrated.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Calibration:
    """How image distances became millimetres for one image.

    Attributes
    ----------
    method
        ``volume_geometry`` (CT/MR voxel geometry), ``pixel_spacing`` (PixelSpacing tag),
        ``imager_spacing_magnification`` (ImagerPixelSpacing divided by the estimated
        magnification), ``calibration_ball``, ``known_length``, ``fixed_magnification``, or
        ``uncalibrated``.
    mm_per_pixel
        ``(row_spacing_mm, column_spacing_mm)`` for radiographs; None for volumes and when
        uncalibrated.
    detail
        Plain words for the report, such as the ball diameter or the tag values used.
    detector_mm_per_pixel
        ``(row, column)`` spacing at the detector (ImagerPixelSpacing) when known. It is not a
        patient calibration; it gives the pixel aspect ratio for angles and the base for a
        magnification factor.
    """

    method: str
    mm_per_pixel: tuple[float, float] | None = None
    detail: str = ""
    detector_mm_per_pixel: tuple[float, float] | None = None

    @property
    def is_calibrated(self) -> bool:
        """Whether lengths in millimetres may be measured with it."""
        return self.method != "uncalibrated"


UNCALIBRATED = Calibration(method="uncalibrated", detail="no trustworthy pixel spacing")

#: Calibration of landmarks placed on a CT or MR volume, whose voxel geometry is in mm.
VOLUME_GEOMETRY = Calibration(method="volume_geometry", detail="CT/MR voxel geometry in mm")


def missing_landmarks_reason(labels: list[str]) -> str:
    """The sentence that says which landmarks a value lacks (its ``not_measured`` reason)."""
    return f"missing landmark(s) {', '.join(labels)}"


def length_refused_reason(calibration: Calibration, source_image: str) -> str:
    """The sentence that explains why a length in mm is not measured on an uncalibrated image."""
    detail = calibration.detail
    if source_image:
        # The detail often names the file already; say it once.
        detail = detail.replace(f"{source_image}: ", "").replace(f" ({source_image})", "")
    detail = f" ({detail})" if detail else ""
    return (
        f"{source_image or 'the image'} is not calibrated{detail}: lengths in mm are refused "
        "until it is calibrated (calibration ball, known length or magnification factor)"
    )


@dataclass
class Measurement:
    """One row of the measurement table.

    Attributes
    ----------
    key
        Stable machine name, such as ``hka_deg`` or ``cobb_deg``.
    label
        Name a clinician reads, such as ``Hip-knee-ankle angle``.
    value
        The measured value in ``unit``.
    unit
        ``deg``, ``mm``, ``ml`` or ``cm2``.
    definition
        One sentence saying what is measured, between which landmarks, in which plane.
    method
        ``manual`` (from landmarks a user placed) or ``automatic`` (from labels or detection).
    calibration
        The calibration the value depends on.
    source_image
        Series Instance UID or file the landmarks or labels were placed on.
    uncertainty
        Half-width of the uncertainty in ``unit`` where one can be given.
    details
        Extra named values, such as the end vertebrae of a Cobb angle or the side.
    """

    key: str
    label: str
    value: float
    unit: str
    definition: str
    method: str
    calibration: Calibration
    source_image: str
    uncertainty: float | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Return the row as plain JSON-ready values."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Measurement:
        """Build a row from :meth:`to_dict` output."""
        values = dict(data)
        calibration = dict(values.pop("calibration"))
        for name in ("mm_per_pixel", "detector_mm_per_pixel"):
            spacing = calibration.get(name)
            calibration[name] = tuple(spacing) if spacing is not None else None
        return cls(calibration=Calibration(**calibration), **values)


def frontal_landmark_row(
    key: str,
    label_and_definition: tuple[str, str],
    value: float,
    uncertainty: float,
    *,
    side: str,
    calibration: Calibration,
    source_image: str,
    method: str,
) -> Measurement:
    """A row measured from landmarks of one side in the frontal plane (value and uncertainty
    in the unit its key ends with: ``_mm`` for mm, degrees otherwise; rounded to 0.001)."""
    label, definition = label_and_definition
    return Measurement(
        key=key,
        label=label,
        value=round(value, 3),
        unit="mm" if key.endswith("_mm") else "deg",
        definition=definition,
        method=method,
        calibration=calibration,
        source_image=source_image,
        uncertainty=round(uncertainty, 3),
        details={"side": side, "plane": "frontal"},
    )


@dataclass
class MeasurementTable:
    """All measurements of one case, and those that could not be made with the reason."""

    rows: list[Measurement] = field(default_factory=list)
    not_measured: dict[str, str] = field(default_factory=dict)

    def add(self, row: Measurement) -> None:
        """Add a row, replacing an earlier one with the same key and source image."""
        self.rows = [
            r for r in self.rows if not (r.key == row.key and r.source_image == row.source_image)
        ]
        self.rows.append(row)

    def extend(self, other: MeasurementTable) -> None:
        """Add every row and every not-measured reason of ``other``."""
        for row in other.rows:
            self.add(row)
        self.not_measured.update(other.not_measured)

    def values(self) -> dict[str, Any]:
        """Key -> value of every row (the last row wins when a key repeats)."""
        return {row.key: row.value for row in self.rows}

    def by_key(self, key: str) -> list[Measurement]:
        """Rows with this key (one per source image)."""
        return [row for row in self.rows if row.key == key]

    def to_dict(self) -> dict[str, Any]:
        """Return the table as JSON-ready values."""
        return {
            "rows": [row.to_dict() for row in self.rows],
            "not_measured": dict(self.not_measured),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MeasurementTable:
        """Build a table from :meth:`to_dict` output."""
        return cls(
            rows=[Measurement.from_dict(row) for row in data.get("rows", [])],
            not_measured=dict(data.get("not_measured", {})),
        )

    def write_json(self, path: Path) -> None:
        """Write the table as indented JSON."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2))

    @classmethod
    def read_json(cls, path: Path) -> MeasurementTable:
        """Read a table written by :meth:`write_json`."""
        return cls.from_dict(json.loads(Path(path).read_text()))

"""The measurement sets a reader can place in the viewer, and the calibration they measure with.

Every label here is one the measurement library reads: the alignment and hip control point
labels are the library's own tuples, and a Cobb endplate line is named
``<vertebra>-superior`` or ``<vertebra>-inferior`` and checked with the library's own parser,
so the viewer never makes up a label the library would ignore.

Lengths are measured only with a calibration the reader can trust: a CT or MR volume measures
with its voxel geometry; a radiograph with the calibration its DICOM tags give
(:func:`~MSKPlannerLib.calibration.calibration_from_dataset`), and only when the viewer shows
it at that same scale. Anything else is uncalibrated, and the library then refuses lengths
with a sentence the page shows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from MSKPlannerLib.calibration import calibration_from_dataset
from MSKPlannerLib.measure_alignment import ALIGNMENT_LABELS
from MSKPlannerLib.measure_cobb import CobbError, parse_endplate_name, vertebra_order
from MSKPlannerLib.measure_hip import HIP_LABELS, PELVIS_LABELS
from MSKPlannerLib.measurement_table import VOLUME_GEOMETRY, Calibration
from MSKPriorsLib.pixel_data_series import DicomSeriesVolume

logger = logging.getLogger(__name__)

#: Modalities whose volumes measure with their voxel geometry (mm).
VOLUME_MODALITIES = ("CT", "MR", "PT", "NM")

#: Vertebrae offered for endplate lines, cranial to caudal (names the Cobb library orders).
VERTEBRAE = (
    *(f"C{n}" for n in range(1, 8)),
    *(f"T{n}" for n in range(1, 13)),
    *(f"L{n}" for n in range(1, 6)),
    "S1",
)
ENDPLATES = ("superior", "inferior")


@dataclass(frozen=True)
class MeasurementSet:
    """One family of measurements and the landmarks a reader places for it.

    Attributes
    ----------
    kind
        The measurement kind of :class:`~MSKPlannerLib.measurement_nodes.LiveMeasurement`.
    title
        Name shown in the page.
    point_labels
        Control point labels, in the order the page lists them (empty for Cobb).
    uses_lines
        Whether the landmarks are endplate lines (Cobb) rather than points.
    needs_side
        Whether the measurement needs the side (left or right) of the body.
    """

    kind: str
    title: str
    point_labels: tuple[str, ...]
    uses_lines: bool
    needs_side: bool


MEASUREMENT_SETS = {
    "alignment": MeasurementSet("alignment", "Alignment", ALIGNMENT_LABELS, False, True),
    "hip": MeasurementSet("hip", "Hip", HIP_LABELS + PELVIS_LABELS, False, True),
    "cobb": MeasurementSet("cobb", "Cobb", (), True, False),
}


def measurement_set(kind: str) -> MeasurementSet:
    """The measurement set named ``kind``.

    Raises
    ------
    KeyError
        For a name that is not a measurement set.
    """
    if kind not in MEASUREMENT_SETS:
        raise KeyError(f"unknown measurement set {kind!r} (known: {', '.join(MEASUREMENT_SETS)})")
    return MEASUREMENT_SETS[kind]


def endplate_line_name(vertebra: str, endplate: str) -> str:
    """The name of an endplate line as the Cobb measurement reads it (``L1-superior``).

    Raises
    ------
    ValueError
        When the vertebra or endplate is not one the Cobb measurement knows.
    """
    name = f"{vertebra.strip().upper()}-{endplate.strip().lower()}"
    try:
        parse_endplate_name(name)
        vertebra_order(name.split("-")[0])
    except CobbError as error:
        raise ValueError(str(error)) from error
    return name


def is_endplate_line(name: str) -> bool:
    """Whether ``name`` names an endplate line the Cobb measurement reads."""
    try:
        parse_endplate_name(name)
    except CobbError:
        return False
    return True


def endplate_order(name: str) -> tuple[int, int, int]:
    """Sort key of an endplate line name: cranial vertebra first, superior before inferior."""
    vertebra, endplate = parse_endplate_name(name)
    return (*vertebra_order(vertebra), ENDPLATES.index(endplate))


def set_of_label(label: str) -> str:
    """The measurement set a landmark label or line name belongs to; empty when none."""
    if is_endplate_line(label):
        return "cobb"
    for kind, measures in MEASUREMENT_SETS.items():
        if label in measures.point_labels:
            return kind
    return ""


def _loaded_spacing_mm(volume: DicomSeriesVolume) -> tuple[float, float]:
    """``(row, column)`` spacing in mm at which the viewer shows a single image."""
    column_mm, row_mm = volume.image.GetSpacing()[:2]
    return float(row_mm), float(column_mm)


def calibration_of(volume: DicomSeriesVolume) -> Calibration:
    """The calibration lengths measured on a shown volume are made with.

    Parameters
    ----------
    volume
        The current series as the viewer read it.

    Returns
    -------
    Calibration
        :data:`~MSKPlannerLib.measurement_table.VOLUME_GEOMETRY` for a CT, MR or other
        cross-sectional volume of more than one slice; for a radiograph, the calibration of
        its DICOM tags when the viewer shows the image at that scale, and an uncalibrated
        one (saying why) otherwise, so that lengths are refused rather than wrong.
    """
    size = volume.image.GetSize()
    if volume.modality.upper() in VOLUME_MODALITIES or (len(size) > 2 and size[2] > 1):
        return VOLUME_GEOMETRY
    if volume.header is None:
        return Calibration(method="uncalibrated", detail=f"{volume.series_uid}: no DICOM header")
    source = volume.series_uid or (volume.files[0].name if volume.files else "")
    tags = calibration_from_dataset(volume.header, source)
    if not tags.is_calibrated or tags.mm_per_pixel is None:
        return tags
    shown_mm = _loaded_spacing_mm(volume)
    if not np.allclose(shown_mm, tags.mm_per_pixel, rtol=1e-6):
        logger.info("radiograph %s is shown at another scale than its calibration", source)
        return Calibration(
            method="uncalibrated",
            detail=(
                f"{tags.detail}; the viewer shows the image at {shown_mm[0]:g} x "
                f"{shown_mm[1]:g} mm per pixel, not at this calibration (measure lengths with "
                "mskwb measure --calibration)"
            ),
            detector_mm_per_pixel=tags.detector_mm_per_pixel,
        )
    return tags


def calibration_text(calibration: Calibration) -> str:
    """The calibration in words for the page: what lengths rest on, or why they are refused."""
    if calibration.method == "volume_geometry":
        return calibration.detail or "volume geometry in mm"
    if not calibration.is_calibrated:
        return f"none, angles only ({calibration.detail})"
    return f"{calibration.method.replace('_', ' ')}: {calibration.detail}"

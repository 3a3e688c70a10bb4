"""The measurement table as a DICOM Comprehensive 3D SR (TID 1500 Measurement Report), and back.

Each table row becomes one measurement group (TID 1501, or TID 1410 when the row states an
image region) holding:

- the tracking identifier: the row's ``key``, with a tracking UID;
- the value (NUM) with its UCUM unit (``deg``, ``mm``, ``mL``, ``cm2``) under a concept code:
  SNOMED CT where a well-known code exists (Cobb angle, diameter, width), otherwise a code of
  the private scheme ``99MSKWB`` whose value is the key (see :data:`PRIVATE_SCHEME`);
- the measurement method (SCT ``Manual``, or ``99MSKWB automatic``);
- TEXT items (scheme ``99MSKWB``) for the label, definition, calibration method, calibration
  spacing and detail, source image, uncertainty and details (JSON), so that
  :func:`read_measurement_table` rebuilds the same table;
- the image region: an SCOORD on the source image when ``details["region_px"]`` lists
  ``(column, row)`` pixels, or an SCOORD3D in the source frame of reference when
  ``details["region_ras_mm"]`` lists RAS points (written as LPS, as DICOM requires);
- the source image reference (group-level) when a source dataset is known.

Rows that were not measured (``not_measured``) are written as TEXT items with the reason.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

import highdicom as hd
import numpy as np
import pydicom
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import generate_uid

from MSKPlannerLib.measurement_table import Measurement, MeasurementTable

logger = logging.getLogger(__name__)

#: Coding scheme designator of the concepts MSK Workbench defines itself.
PRIVATE_SCHEME = "99MSKWB"
MANUFACTURER = "MSK Workbench"

#: Well-known concept codes for table keys.
KNOWN_CONCEPTS: dict[str, Code] = {
    "cobb_deg": codes.SCT.CobbAngle,
}
#: Table unit -> UCUM code and meaning.
UCUM_UNITS: dict[str, tuple[str, str]] = {
    "deg": ("deg", "degree"),
    "mm": ("mm", "millimeter"),
    "ml": ("mL", "milliliter"),
    "cm2": ("cm2", "square centimeter"),
    "%": ("%", "percent"),
}
_UNIT_FROM_UCUM = {code: unit for unit, (code, _) in UCUM_UNITS.items()}


def _private(value: str, meaning: str) -> Code:
    return Code(value, PRIVATE_SCHEME, meaning)


TEXT_CONCEPTS: dict[str, Code] = {
    "label": _private("label", "Measurement label"),
    "definition": _private("definition", "Measurement definition"),
    "calibration_method": _private("calibration_method", "Calibration method"),
    "calibration_detail": _private("calibration_detail", "Calibration detail"),
    "calibration": _private("calibration", "Calibration (JSON)"),
    "source_image": _private("source_image", "Source image"),
    "uncertainty": _private("uncertainty", "Uncertainty half-width"),
    "details": _private("details", "Measurement details (JSON)"),
}
NOT_MEASURED = _private("not_measured", "Not measured")
METHOD_CODES: dict[str, Code] = {
    "manual": codes.SCT.Manual,
    "automatic": _private("automatic", "Automatic"),
}
PROCEDURE = _private("msk_planning", "Musculoskeletal imaging measurements and planning")


class SRError(ValueError):
    """A table cannot be written as SR, or an SR cannot be read as a table."""


def concept_for(row: Measurement) -> Code:
    """Concept name code of a row: a well-known code, else ``(99MSKWB, key, label)``."""
    known = KNOWN_CONCEPTS.get(row.key)
    if known is not None:
        return known
    if row.key.endswith("diameter_mm"):
        return codes.SCT.Diameter
    if row.key.endswith("width_mm"):
        return codes.SCT.Width
    return _private(row.key, row.label[:64] or row.key)


def unit_code(unit: str) -> Code:
    """UCUM code of a table unit (``deg``, ``mm``, ``ml``, ``cm2``, ``%``)."""
    code, meaning = UCUM_UNITS.get(unit, (unit, unit))
    return Code(code, "UCUM", meaning)


def _lps_from_ras(points_ras_mm: Any) -> np.ndarray:
    points = np.asarray(points_ras_mm, dtype=float).reshape(-1, 3)
    return points * np.array([-1.0, -1.0, 1.0])


def _region(row: Measurement, source: pydicom.Dataset | None) -> Any:
    if "region_px" in row.details and source is not None:
        points = np.asarray(row.details["region_px"], dtype=float).reshape(-1, 2)
        kind = "POINT" if len(points) == 1 else "POLYLINE"
        return hd.sr.ImageRegion(
            graphic_type=kind,
            graphic_data=points,
            source_image=hd.sr.SourceImageForRegion.from_source_image(source),
        )
    if "region_ras_mm" in row.details and source is not None and "FrameOfReferenceUID" in source:
        points = _lps_from_ras(row.details["region_ras_mm"])
        kind = "POINT" if len(points) == 1 else "POLYLINE"
        return hd.sr.ImageRegion3D(
            graphic_type=kind,
            graphic_data=points,
            frame_of_reference_uid=source.FrameOfReferenceUID,
        )
    return None


#: A DICOM UID: digits in dot-separated components.
_UID_PATTERN = re.compile(r"^[0-9]+(\.[0-9]+)+$")

#: A local file path inside free text: from the root, home or a relative start, or a token
#: with at least two folder separators. Quotes, brackets, commas and colons end it.
_PATH_PATTERN = re.compile(
    r"(?<![\w.~/-])(?:(?:~|\.{1,2})?/[^\s\"'(),;:]+|[\w.~-]+(?:/[\w.~-]+){2,})"
)


def without_local_paths(text: str) -> str:
    """``text`` with every local file path in it cut to the file's base name.

    An SR leaves the site: folder names of the workstation must not travel with it.
    """
    return _PATH_PATTERN.sub(lambda match: match.group(0).rstrip("/").rsplit("/", 1)[-1], text)


def cited_source(source_image: str, source: pydicom.Dataset | None) -> str:
    """How the SR names a row's source image: a UID, or a file's base name when none is known.

    A UID (Series or SOP Instance) is kept; a file that was found among the sources is
    cited by its SOP Instance UID; any other file by its base name only.
    """
    if _UID_PATTERN.match(source_image):
        return source_image
    if source is not None and source.get("SOPInstanceUID"):
        return str(source.SOPInstanceUID)
    return source_image.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]


def _text_items(row: Measurement, source: pydicom.Dataset | None) -> list[hd.sr.TextContentItem]:
    values = {
        "label": row.label,
        "definition": row.definition,
        "calibration_method": row.calibration.method,
        "calibration_detail": row.calibration.detail,
        "calibration": json.dumps(asdict(row.calibration), sort_keys=True),
        "source_image": cited_source(row.source_image, source),
        "uncertainty": "" if row.uncertainty is None else repr(float(row.uncertainty)),
        "details": json.dumps(row.details, sort_keys=True) if row.details else "",
    }
    return [
        hd.sr.TextContentItem(
            name=TEXT_CONCEPTS[name],
            value=without_local_paths(value),
            relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
        )
        for name, value in values.items()
        if value
    ]


def _group(row: Measurement, index: int, source: pydicom.Dataset | None, tracking_root: str) -> Any:
    # Derived from the SR's UID, so a rewritten report keeps its tracking UIDs.
    tracking_uid = generate_uid(prefix=None, entropy_srcs=[tracking_root, str(index), row.key])
    tracking = hd.sr.TrackingIdentifier(uid=tracking_uid, identifier=row.key)
    method = METHOD_CODES.get(row.method, _private(row.method, row.method))
    measurement = hd.sr.Measurement(
        name=concept_for(row), value=float(row.value), unit=unit_code(row.unit), method=method
    )
    region = _region(row, source)
    if region is not None:
        group: Any = hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=tracking, referenced_region=region, measurements=[measurement]
        )
    else:
        sources = (
            [hd.sr.SourceImageForMeasurementGroup.from_source_image(source)]
            if source is not None and "Rows" in source
            else None
        )
        group = hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=tracking, measurements=[measurement], source_images=sources
        )
    group[0].ContentSequence.extend(_text_items(row, source))
    return group


def build_measurement_report(
    table: MeasurementTable,
    evidence: Sequence[pydicom.Dataset],
    series_instance_uid: str,
    sop_instance_uid: str,
    source_by_image: Mapping[str, pydicom.Dataset] | None = None,
    series_number: int = 9901,
    instance_number: int = 1,
    series_description: str = "MSK Workbench measurements",
) -> hd.sr.Comprehensive3DSR:
    """Write a measurement table as a TID 1500 Comprehensive 3D SR.

    Parameters
    ----------
    table
        The rows to report; every row becomes one measurement group.
    evidence
        The source instances (at least one); the SR joins the first one's patient and study
        and lists them all as evidence.
    series_instance_uid, sop_instance_uid
        UIDs of the SR, kept by the caller so that a rewrite stores the same object.
    source_by_image
        ``Measurement.source_image`` -> the dataset it names, for image references and
        regions; rows whose source is not found refer to no image.
    series_number, instance_number, series_description
        Identification of the SR series.

    Returns
    -------
    highdicom.sr.Comprehensive3DSR
        A complete, unverified SR document.
    """
    if not evidence:
        raise SRError("a measurement report needs at least one source instance as evidence")
    if not table.rows and not table.not_measured:
        raise SRError("the measurement table is empty; there is nothing to report")
    sources = dict(source_by_image or {})
    observer = hd.sr.ObserverContext(
        observer_type=codes.cid270.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=hd.UID(), name="MSK Workbench", manufacturer_name=MANUFACTURER
        ),
    )
    groups = [
        _group(row, index, sources.get(row.source_image), sop_instance_uid)
        for index, row in enumerate(table.rows)
    ]
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=PROCEDURE,
        imaging_measurements=groups or None,
    )
    for key, reason in table.not_measured.items():
        report[0].ContentSequence.append(
            hd.sr.TextContentItem(
                name=NOT_MEASURED,
                value=f"{key}: {reason}",
                relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
            )
        )
    document = hd.sr.Comprehensive3DSR(
        evidence=list(evidence),
        content=report[0],
        series_instance_uid=series_instance_uid,
        series_number=series_number,
        sop_instance_uid=sop_instance_uid,
        instance_number=instance_number,
        manufacturer=MANUFACTURER,
        is_complete=True,
        series_description=series_description,
    )
    logger.info("measurement report %s holds %d rows", sop_instance_uid, len(table.rows))
    return document


def _code_value(code: pydicom.Dataset) -> str:
    for keyword in ("CodeValue", "LongCodeValue", "URNCodeValue"):
        if keyword in code:
            return str(code.get(keyword))
    return ""


def _concept(item: pydicom.Dataset) -> tuple[str, str]:
    name = item.ConceptNameCodeSequence[0]
    return str(name.CodingSchemeDesignator), _code_value(name)


def _walk(items: Sequence[pydicom.Dataset]) -> list[pydicom.Dataset]:
    found: list[pydicom.Dataset] = []
    for item in items:
        found.append(item)
        found.extend(_walk(item.get("ContentSequence", [])))
    return found


def _row_from_group(group: pydicom.Dataset, sr_uid: str) -> Measurement:
    texts: dict[str, str] = {}
    key = ""
    number: pydicom.Dataset | None = None
    method = "manual"
    for item in group.get("ContentSequence", []):
        scheme, value = _concept(item)
        if item.ValueType == "TEXT" and scheme == PRIVATE_SCHEME:
            texts[value] = str(item.TextValue)
        elif item.ValueType == "TEXT" and (scheme, value) == ("DCM", "112039"):
            key = str(item.TextValue)
        elif item.ValueType == "NUM" and number is None:
            number = item
    if number is None:
        raise SRError(f"SR {sr_uid}: measurement group {key or '?'} holds no numeric value")
    for item in number.get("ContentSequence", []):
        if _concept(item) == ("SCT", "370129005"):
            code = item.ConceptCodeSequence[0]
            value = _code_value(code)
            method = "manual" if value == codes.SCT.Manual.value else value
    measured = number.MeasuredValueSequence[0]
    ucum = _code_value(measured.MeasurementUnitsCodeSequence[0])
    concept = number.ConceptNameCodeSequence[0]
    calibration = (
        json.loads(texts["calibration"])
        if texts.get("calibration")
        else {
            "method": texts.get("calibration_method", "uncalibrated"),
            "detail": texts.get("calibration_detail", ""),
        }
    )
    uncertainty = texts.get("uncertainty", "")
    return Measurement.from_dict(
        {
            "key": key or _code_value(concept),
            "label": texts.get("label", str(concept.CodeMeaning)),
            "value": float(measured.NumericValue),
            "unit": _UNIT_FROM_UCUM.get(ucum, ucum),
            "definition": texts.get("definition", ""),
            "method": method,
            "calibration": calibration,
            "source_image": texts.get("source_image", ""),
            "uncertainty": float(uncertainty) if uncertainty else None,
            "details": json.loads(texts["details"]) if texts.get("details") else {},
        }
    )


def read_measurement_table(sr_dataset: pydicom.Dataset) -> MeasurementTable:
    """Rebuild the measurement table from an SR written by :func:`build_measurement_report`.

    Parameters
    ----------
    sr_dataset
        The SR document (as read by pydicom, or the highdicom object).

    Returns
    -------
    MeasurementTable
        Rows in report order with key, label, value, unit, definition, method, calibration,
        source image, uncertainty and details; ``not_measured`` with the reasons. Groups of
        other producers are read from their codes (key = concept code value).

    Raises
    ------
    SRError
        When the document is not a measurement report.
    """
    uid = str(sr_dataset.get("SOPInstanceUID", "?"))
    root = sr_dataset.get("ConceptNameCodeSequence")
    if not root or _code_value(root[0]) != "126000":
        raise SRError(f"SR {uid} is not a TID 1500 measurement report")
    table = MeasurementTable()
    for item in _walk(sr_dataset.get("ContentSequence", [])):
        if item.ValueType == "CONTAINER" and _concept(item) == ("DCM", "125007"):
            row = _row_from_group(item, uid)
            table.rows.append(row)
        elif item.ValueType == "TEXT" and _concept(item) == (PRIVATE_SCHEME, "not_measured"):
            key, _, reason = str(item.TextValue).partition(": ")
            table.not_measured[key] = reason
    return table


def region_of_group(group: pydicom.Dataset) -> dict[str, Any] | None:
    """Return the image region of a measurement group, if it has one.

    Returns
    -------
    dict or None
        ``{"type": "SCOORD", "graphic_type", "points", "referenced_sop_instance_uid"}`` with
        ``(column, row)`` points, or ``{"type": "SCOORD3D", "graphic_type", "points",
        "frame_of_reference_uid"}`` with LPS mm points.
    """
    for item in group.get("ContentSequence", []):
        if item.ValueType == "SCOORD":
            reference = item.ContentSequence[0].ReferencedSOPSequence[0]
            return {
                "type": "SCOORD",
                "graphic_type": str(item.GraphicType),
                "points": np.asarray(item.GraphicData, dtype=float).reshape(-1, 2),
                "referenced_sop_instance_uid": str(reference.ReferencedSOPInstanceUID),
            }
        if item.ValueType == "SCOORD3D":
            return {
                "type": "SCOORD3D",
                "graphic_type": str(item.GraphicType),
                "points": np.asarray(item.GraphicData, dtype=float).reshape(-1, 3),
                "frame_of_reference_uid": str(item.ReferencedFrameOfReferenceUID),
            }
    return None


def measurement_groups(sr_dataset: pydicom.Dataset) -> list[pydicom.Dataset]:
    """The measurement group containers of an SR, in document order."""
    return [
        item
        for item in _walk(sr_dataset.get("ContentSequence", []))
        if item.ValueType == "CONTAINER" and _concept(item) == ("DCM", "125007")
    ]

"""Searches of the local archive's index, answering like QIDO-RS study and series searches.

How to use (through :class:`MSKPriorsLib.archive.LocalArchive`, which passes its reader)::

    studies = archive.search_studies(patient_id="12345", modality="CT")
    series = archive.search_series(studies[0].study_uid)
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from MSKPriorsLib.records import PatientIdentity, SeriesRecord, StudyRecord

logger = logging.getLogger(__name__)

SOURCE_NAME = "archive"

RowReader = Callable[[str, tuple[object, ...]], list[tuple[object, ...]]]
"""Runs one SELECT with its parameters and returns every row (under the archive's lock)."""


def search_studies(
    rows: RowReader,
    patient_id: str | None = None,
    study_uid: str | None = None,
    issuer: str | None = None,
    accession_number: str | None = None,
    study_date: str | None = None,
    modality: str | None = None,
) -> list[StudyRecord]:
    """Find archived studies; see :meth:`MSKPriorsLib.archive.LocalArchive.search_studies`."""
    conditions: list[str] = []
    parameters: list[str] = []
    for column, value, wildcards in (
        ("p.patient_id", patient_id, True),
        ("s.study_uid", study_uid, False),
        ("p.issuer", issuer, False),
        ("s.accession_number", accession_number, True),
    ):
        if value is None:
            continue
        if wildcards and ("*" in value or "?" in value):
            conditions.append(f"{column} GLOB ?")
            parameters.append(value.replace("[", "[[]"))
        else:
            conditions.append(f"{column} = ?")
            parameters.append(value)
    if study_date:
        first, _, last = study_date.partition("-")
        if "-" not in study_date:
            last = first
        if first:
            conditions.append("s.study_date >= ?")
            parameters.append(first)
        if last:
            conditions.append("s.study_date <= ? AND s.study_date != ''")
            parameters.append(last)
    if modality:
        conditions.append(
            "EXISTS (SELECT 1 FROM series se WHERE se.study_uid = s.study_uid AND se.modality = ?)"
        )
        parameters.append(modality)
    where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
    found = rows(
        "SELECT s.study_uid, p.patient_id, p.issuer, p.name, p.birth_date, s.study_date, "
        "s.study_time, s.description, s.accession_number FROM studies s "
        f"JOIN patients p ON p.pk = s.patient_pk {where} "
        "ORDER BY s.study_date DESC, s.study_time DESC, s.study_uid",
        tuple(parameters),
    )
    return [_study_record(rows, row) for row in found]


def _study_record(rows: RowReader, row: tuple[object, ...]) -> StudyRecord:
    study_uid = str(row[0])
    series = search_series(rows, study_uid)
    instances = rows("SELECT COUNT(*) FROM instances WHERE study_uid = ?", (study_uid,))
    return StudyRecord(
        study_uid=study_uid,
        patient=PatientIdentity(str(row[1]), str(row[2]), str(row[3]), str(row[4])),
        study_date=str(row[5]),
        study_time=str(row[6]),
        description=str(row[7]),
        accession_number=str(row[8]),
        modalities=tuple(sorted({s.modality for s in series if s.modality})),
        body_parts=tuple(sorted({s.body_part for s in series if s.body_part})),
        lateralities=tuple(sorted({s.laterality for s in series if s.laterality})),
        number_of_series=len(series),
        number_of_instances=int(str(instances[0][0])),
        source=SOURCE_NAME,
    )


def search_series(rows: RowReader, study_uid: str) -> list[SeriesRecord]:
    """Archived series of a study, by SeriesNumber, with ``source`` ``"archive"``."""
    found = rows(
        "SELECT se.series_uid, se.study_uid, se.modality, se.series_number, se.description, "
        "se.body_part, se.laterality, COUNT(i.sop_uid), se.orientation FROM series se "
        "LEFT JOIN instances i ON i.series_uid = se.series_uid WHERE se.study_uid = ? "
        "GROUP BY se.series_uid ORDER BY se.series_number, se.series_uid",
        (study_uid,),
    )
    return [
        SeriesRecord(
            series_uid=str(r[0]),
            study_uid=str(r[1]),
            modality=str(r[2]),
            series_number=int(str(r[3])),
            description=str(r[4]),
            body_part=str(r[5]),
            laterality=str(r[6]),
            number_of_instances=int(str(r[7])),
            source=SOURCE_NAME,
            extra=_orientation_extra(str(r[8])),
        )
        for r in found
    ]


def _orientation_extra(orientation: str) -> dict[str, Any]:
    """``{"image_orientation_patient": [six floats, LPS]}``, or empty when not stored."""
    try:
        cosines = [float(v) for v in orientation.split("\\")] if orientation else []
    except ValueError:
        return {}
    return {"image_orientation_patient": cosines} if len(cosines) == 6 else {}

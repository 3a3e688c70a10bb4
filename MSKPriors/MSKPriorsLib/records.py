"""Plain records of studies and series, as a PACS search or the local archive returns them.

Both sources (a DICOMweb server and the local archive) answer with these records, so prior
discovery, the command line and the viewers work the same on either.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any


def shown_date(dicom_date: str, missing: str = "no date") -> str:
    """A DICOM date (DA, ``YYYYMMDD``) as ``YYYY-MM-DD`` for people to read.

    Parameters
    ----------
    dicom_date
        The date text, such as :attr:`StudyRecord.study_date`.
    missing
        Shown when the date is empty; other text that is not eight digits is shown unchanged.
    """
    if len(dicom_date) == 8 and dicom_date.isdigit():
        return f"{dicom_date[:4]}-{dicom_date[4:6]}-{dicom_date[6:]}"
    return dicom_date or missing


@dataclass(frozen=True)
class PatientIdentity:
    """Who a study belongs to, as far as its DICOM header says.

    Attributes
    ----------
    patient_id
        PatientID (0010,0020); empty when the header has none.
    issuer
        IssuerOfPatientID (0010,0021); empty when absent.
    name
        PatientName (0010,0010) as DICOM text (``FAMILY^GIVEN``); used only to cross-check.
    birth_date
        PatientBirthDate (0010,0030) as ``YYYYMMDD``; used only to cross-check.
    """

    patient_id: str
    issuer: str = ""
    name: str = ""
    birth_date: str = ""

    @property
    def is_identifiable(self) -> bool:
        """Whether this identity can be matched at all: an empty PatientID matches nothing."""
        return bool(self.patient_id.strip())


@dataclass(frozen=True)
class StudyRecord:
    """One study, with the attributes that prior ranking and display need.

    Attributes
    ----------
    study_uid
        StudyInstanceUID.
    patient
        The patient the header names.
    study_date
        StudyDate as ``YYYYMMDD`` (empty when unknown).
    study_time
        StudyTime as ``HHMMSS`` (may be empty).
    description
        StudyDescription.
    accession_number
        AccessionNumber.
    modalities
        ModalitiesInStudy, sorted.
    body_parts
        BodyPartExamined values of its series, upper case, sorted.
    lateralities
        Laterality / ImageLaterality values of its series (``L``, ``R``, ``B``), sorted.
    number_of_series, number_of_instances
        Counts as the source reports them (0 when unknown).
    source
        Where the record came from: a server name, or ``archive``.
    """

    study_uid: str
    patient: PatientIdentity
    study_date: str = ""
    study_time: str = ""
    description: str = ""
    accession_number: str = ""
    modalities: tuple[str, ...] = ()
    body_parts: tuple[str, ...] = ()
    lateralities: tuple[str, ...] = ()
    number_of_series: int = 0
    number_of_instances: int = 0
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Return the record as JSON-ready values."""
        return asdict(self)


@dataclass(frozen=True)
class SeriesRecord:
    """One series of a study.

    Attributes
    ----------
    series_uid, study_uid
        SeriesInstanceUID and its StudyInstanceUID.
    modality
        Modality (CT, MR, CR, DX, SEG, SR, ...).
    series_number
        SeriesNumber (0 when absent).
    description
        SeriesDescription.
    body_part
        BodyPartExamined, upper case.
    laterality
        Laterality of the series (``L``, ``R``, ``B`` or empty).
    number_of_instances
        Instances in the series as the source reports them.
    source
        A server name, or ``archive``.
    """

    series_uid: str
    study_uid: str
    modality: str = ""
    series_number: int = 0
    description: str = ""
    body_part: str = ""
    laterality: str = ""
    number_of_instances: int = 0
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """Return the record as JSON-ready values."""
        return asdict(self)


def newest_first(studies: Iterable[StudyRecord]) -> list[StudyRecord]:
    """Studies without repeats (by StudyInstanceUID), in the archive's order.

    Newest StudyDate and StudyTime first, then by StudyInstanceUID; studies without a date
    come last. A PACS returns its studies in any order.
    """
    unique = {study.study_uid: study for study in reversed(list(studies))}
    by_uid = sorted(unique.values(), key=lambda study: study.study_uid)
    return sorted(by_uid, key=lambda study: (study.study_date, study.study_time), reverse=True)

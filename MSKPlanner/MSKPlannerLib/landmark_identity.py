"""The patient, study and series a landmark (Slicer markups JSON) file names, and its check.

Slicer's markups schema has no identity fields, but other tools add ``PatientID``,
``PatientName``, ``PatientBirthDate``, ``StudyInstanceUID`` or ``SeriesInstanceUID`` at the top
level, in a markup or deeper. Every value found anywhere in the file counts:

- :func:`identity_values`: every distinct value of each attribute;
- :func:`identity_in_markups`: the one value of each attribute, refusing a file that names two;
- :func:`identity_mismatches`: how that identity differs from the study measured on;
- :func:`check_markups_identity`: all of it for a file's bytes, raising
  :class:`LandmarkIdentityError` with the file's name.

The plan, ``mskwb measure`` and the viewer all use these, so a file of another patient is
refused the same way everywhere.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from MSKPlannerLib.landmarks import LandmarkError

logger = logging.getLogger(__name__)

#: Identity attributes a markups file may carry (keys compared without case, ``_`` or ``-``).
IDENTITY_KEYS = {
    "patientid": "PatientID",
    "patientname": "PatientName",
    "patientbirthdate": "PatientBirthDate",
    "studyinstanceuid": "StudyInstanceUID",
    "seriesinstanceuid": "SeriesInstanceUID",
}

#: What two different values of an attribute mean, for the refusal.
_TWO_OF = {
    "PatientID": "two patients",
    "PatientName": "two patients",
    "PatientBirthDate": "two patients",
    "StudyInstanceUID": "two studies",
    "SeriesInstanceUID": "two series",
}


class LandmarkIdentityError(LandmarkError):
    """A landmark file names two patients, studies or series, or not the expected ones."""


@dataclass(frozen=True)
class ExpectedIdentity:
    """Who and what the landmarks are measured on: the current study.

    Attributes
    ----------
    patient_id, patient_name, birth_date
        The current study's PatientID, PatientName (DICOM ``^`` form) and PatientBirthDate
        (``YYYYMMDD``).
    study_uid
        Its StudyInstanceUID.
    series_uids
        SeriesInstanceUIDs of its series.
    """

    patient_id: str
    patient_name: str = ""
    birth_date: str = ""
    study_uid: str = ""
    series_uids: Collection[str] = ()


def _name_parts(name: str) -> list[str]:
    return [part.strip().upper() for part in name.replace(",", "^").split("^") if part.strip()]


def _same_name(a: str, b: str) -> bool:
    return _name_parts(a) == _name_parts(b)


def _comparable(keyword: str, value: str) -> str:
    """The form in which two values of one attribute are the same person, study or series."""
    if keyword == "PatientName":
        return "^".join(_name_parts(value))
    if keyword == "PatientBirthDate":
        return value.replace("-", "")
    return value


def _walk(node: object, found: dict[str, list[str]]) -> None:
    if isinstance(node, list):
        for item in node:
            _walk(item, found)
        return
    if not isinstance(node, dict):
        return
    inner = []
    for key, value in node.items():
        keyword = IDENTITY_KEYS.get(str(key).lower().replace("_", "").replace("-", ""))
        is_text = isinstance(value, str | int) and not isinstance(value, bool)
        if keyword and is_text and str(value).strip():
            text = str(value).strip()
            known = [_comparable(keyword, v) for v in found.setdefault(keyword, [])]
            if _comparable(keyword, text) not in known:
                found[keyword].append(text)
        elif isinstance(value, dict | list):
            inner.append(value)
    # A level's own values come before those of the markups and points it holds.
    for value in inner:
        _walk(value, found)


def identity_values(document: object) -> dict[str, list[str]]:
    """Every distinct identity value a markups JSON document names, wherever it is named.

    Parameters
    ----------
    document
        The parsed JSON document.

    Returns
    -------
    dict
        DICOM keyword (``PatientID``, ``PatientName``, ``PatientBirthDate``,
        ``StudyInstanceUID``, ``SeriesInstanceUID``) -> its distinct non-empty values, those of
        the top level first (names compared without case or spacing, dates without ``-``);
        empty when none is named.
    """
    found: dict[str, list[str]] = {}
    _walk(document, found)
    return found


def identity_conflicts(values: dict[str, list[str]]) -> list[str]:
    """Sentences naming each attribute a file gives two or more different values of.

    Parameters
    ----------
    values
        As returned by :func:`identity_values`.
    """
    return [
        f"it names {_TWO_OF[keyword]}: {keyword} {' and '.join(found)}"
        for keyword, found in values.items()
        if len(found) > 1
    ]


def identity_in_markups(document: object) -> dict[str, str]:
    """The patient, study and series identity a markups JSON document names, if any.

    Parameters
    ----------
    document
        The parsed JSON document.

    Returns
    -------
    dict
        DICOM keyword -> value (see :func:`identity_values`); empty when none is named.

    Raises
    ------
    LandmarkIdentityError
        When the document names two different values of one attribute (two patients, studies
        or series); the message does not name the file.
    """
    values = identity_values(document)
    conflicts = identity_conflicts(values)
    if conflicts:
        raise LandmarkIdentityError("; ".join(conflicts))
    return {keyword: found[0] for keyword, found in values.items()}


def identity_mismatches(named: dict[str, str], expected: ExpectedIdentity) -> list[str]:
    """Sentences naming each identity attribute of a file that differs from the current study.

    An attribute the current study lacks cannot be compared and counts as a mismatch for a
    PatientID (an empty PatientID matches nothing).

    Parameters
    ----------
    named
        As returned by :func:`identity_in_markups`.
    expected
        The study the landmarks are to be measured on.
    """
    problems = []
    patient_id = named.get("PatientID")
    if patient_id is not None and patient_id != expected.patient_id.strip():
        shown = expected.patient_id.strip() or "no PatientID"
        problems.append(f"it names PatientID {patient_id}, the current study has {shown}")
    name = named.get("PatientName")
    if name is not None and not _same_name(name, expected.patient_name):
        problems.append("it names another patient name than the current study's")
    birth = named.get("PatientBirthDate")
    if birth is not None and birth.replace("-", "") != expected.birth_date:
        problems.append("it names another birth date than the current study's")
    study = named.get("StudyInstanceUID")
    if study is not None and study != expected.study_uid:
        problems.append("it names another study than the current one")
    series = named.get("SeriesInstanceUID")
    if series is not None and series not in expected.series_uids:
        problems.append("it names a series that is not of the current study")
    return problems


def check_markups_identity(
    file_name: str, content: bytes, expected: ExpectedIdentity | None
) -> dict[str, str]:
    """The identity a markups file names, refused when it names two or not ``expected``'s.

    Parameters
    ----------
    file_name
        How messages name the file.
    content
        The file's bytes. Bytes that are not JSON name nothing here; the markups reader says
        what is wrong with them.
    expected
        The study measured on; None checks only that the file names one patient, study and
        series.

    Returns
    -------
    dict
        DICOM keyword -> value the file names (all matching ``expected``).

    Raises
    ------
    LandmarkIdentityError
        When the file names two patients, studies or series, or another than ``expected``.
    """
    try:
        document = json.loads(content)
    except (UnicodeDecodeError, ValueError):
        return {}
    try:
        named = identity_in_markups(document)
    except LandmarkIdentityError as error:
        raise LandmarkIdentityError(f"{file_name} {str(error).removeprefix('it ')}") from error
    if expected is not None:
        problems = identity_mismatches(named, expected)
        if problems:
            raise LandmarkIdentityError(
                f"{file_name} is not of the current study: {'; '.join(problems)}"
            )
    logger.debug("%s names %s", file_name, ", ".join(sorted(named)) or "no identity")
    return named


def check_landmark_files(
    paths: Collection[Path], expected: ExpectedIdentity | None
) -> dict[Path, dict[str, str]]:
    """Check the identity each landmark file names (see :func:`check_markups_identity`).

    Parameters
    ----------
    paths
        Slicer markups JSON files; a file that cannot be read is left to the markups reader.
    expected
        The study measured on.

    Returns
    -------
    dict
        Each readable file -> the identity it names.

    Raises
    ------
    LandmarkIdentityError
        For the first file that names two patients, studies or series, or another than
        ``expected``; the message names the file and the attribute.
    """
    named: dict[Path, dict[str, str]] = {}
    for path in paths:
        try:
            content = Path(path).read_bytes()
        except OSError:
            continue
        named[Path(path)] = check_markups_identity(str(path), content, expected)
    return named

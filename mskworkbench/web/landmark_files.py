"""Landmarks loaded from a Slicer markups JSON file chosen in the viewer's page."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk

from MSKPlannerLib.case_measures import points_outside_extent
from MSKPlannerLib.landmarks import read_markups_json
from MSKPriorsLib.frames import ijk_to_ras_from_sitk
from mskworkbench.web.landmark_sets import set_of_label
from mskworkbench.web.measurements import LiveLandmarks


@dataclass
class ImportedLandmarks:
    """What loading a landmark file did.

    Attributes
    ----------
    center_ras_mm
        The mean of the positions taken (3,), RAS mm, for the views to go to.
    replaced
        Labels (or endplate line names) that were placed before and now hold the file's
        positions, in the file's order.
    named_identity
        The identity attributes the file names (all matched the current study); empty when
        it names none, as Slicer's own markups files do.
    """

    center_ras_mm: npt.NDArray[np.float64]
    replaced: list[str] = field(default_factory=list)
    named_identity: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ExpectedIdentity:
    """Who and what the landmarks are measured on: the current study.

    Attributes
    ----------
    patient_id, patient_name, birth_date
        The current study's PatientID, PatientName (DICOM ``^`` form) and PatientBirthDate.
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


#: Identity attributes a markups file may carry (keys compared without case, ``_`` or ``-``).
IDENTITY_KEYS = {
    "patientid": "PatientID",
    "patientname": "PatientName",
    "patientbirthdate": "PatientBirthDate",
    "studyinstanceuid": "StudyInstanceUID",
    "seriesinstanceuid": "SeriesInstanceUID",
}


def identity_in_markups(document: object) -> dict[str, str]:
    """The patient, study and series identity a markups JSON document names, if any.

    Slicer's markups schema has no such fields, but other tools add them at the top level
    or in a markup. The first non-empty value of each attribute is taken.

    Parameters
    ----------
    document
        The parsed JSON document.

    Returns
    -------
    dict
        DICOM keyword (``PatientID``, ``PatientName``, ``PatientBirthDate``,
        ``StudyInstanceUID``, ``SeriesInstanceUID``) -> value; empty when none is named.
    """
    places: list[dict[str, object]] = []
    if isinstance(document, dict):
        places.append(document)
        markups = document.get("markups")
        if isinstance(markups, list):
            places += [markup for markup in markups if isinstance(markup, dict)]
    found: dict[str, str] = {}
    for place in places:
        for key, value in place.items():
            keyword = IDENTITY_KEYS.get(key.lower().replace("_", "").replace("-", ""))
            if keyword and isinstance(value, str | int) and str(value).strip():
                found.setdefault(keyword, str(value).strip())
    return found


def _same_name(a: str, b: str) -> bool:
    def parts(name: str) -> list[str]:
        return [part.strip().upper() for part in name.replace(",", "^").split("^") if part.strip()]

    return parts(a) == parts(b)


def identity_mismatches(named: dict[str, str], expected: ExpectedIdentity) -> list[str]:
    """Sentences naming each identity attribute of a file that differs from the current study.

    An attribute the current study lacks cannot be compared and counts as a mismatch for a
    PatientID (an empty PatientID matches nothing).
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


def points_outside_image(points_ras_mm: npt.ArrayLike, image: sitk.Image) -> int:
    """How many points lie outside an image's extent, beyond the plan's tolerance.

    The extent and tolerance are those the plan uses to find the image landmarks belong to
    (:data:`~MSKPlannerLib.case_measures.EXTENT_TOLERANCE_MM`).

    Parameters
    ----------
    points_ras_mm
        Positions (N, 3), world RAS mm.
    image
        The image the landmarks are to be measured on (geometry in LPS mm).
    """
    size = image.GetSize()
    shape_kji = (size[2] if len(size) > 2 else 1, size[1], size[0])
    return points_outside_extent(points_ras_mm, shape_kji, ijk_to_ras_from_sitk(image))


def import_markups(
    landmarks: LiveLandmarks,
    file_name: str,
    content: bytes,
    image: sitk.Image | None = None,
    image_name: str = "the image",
    expected: ExpectedIdentity | None = None,
) -> ImportedLandmarks:
    """Place the landmarks of a Slicer markups JSON file into the case's live landmarks.

    Points whose label belongs to a measurement set, and endplate lines, are taken; positions
    are world RAS mm. When the file holds none of the chosen set's landmarks, the set it holds
    most of is chosen. The landmarks' side becomes the file's (empty when the file names none,
    so the reader must choose it before sided measurements are made).

    Parameters
    ----------
    landmarks
        The case's live landmarks.
    file_name
        The file's name as the reader chose it (named in error messages).
    content
        The file's bytes.
    image
        The image the landmarks are measured on; landmarks outside it are refused.
    image_name
        How error messages name that image.
    expected
        The current study's identity; a file naming another patient, study or series is
        refused (see :func:`identity_in_markups`).

    Returns
    -------
    ImportedLandmarks
        Where the views should go, and which placed landmarks were replaced.

    Raises
    ------
    ValueError
        When the file is not markups JSON, names another patient, study or series than
        ``expected``, holds no landmark of any measurement set, or holds landmarks outside
        ``image``; the landmarks are then unchanged.
    """
    named = refuse_other_identity(file_name, content, expected)
    with tempfile.TemporaryDirectory(prefix="mskwb-landmarks-") as folder:
        path = Path(folder) / (Path(file_name).name or "landmarks.mrk.json")
        path.write_bytes(content)
        try:
            found = read_markups_json(path)
        except ValueError as error:  # name the file as the reader chose it
            raise ValueError(str(error).replace(str(path), path.name)) from error
    wanted: dict[str, list[Any]] = {
        k: [v] for k, v in found.points_ras_mm.items() if set_of_label(k)
    }
    wanted.update({k: list(v) for k, v in found.lines_ras_mm.items() if set_of_label(k)})
    if not wanted:
        raise ValueError(f"{file_name} holds none of the landmarks of the measurement sets")
    every_point = np.asarray([p for points in wanted.values() for p in points], dtype=float)
    if image is not None:
        outside = points_outside_image(every_point, image)
        if outside:
            raise ValueError(
                f"{outside} of {len(every_point)} landmark points of {file_name} lie outside "
                f"{image_name}; they were not placed on this image"
            )
    placed = set(landmarks.positions_ras_mm()) | set(landmarks.lines_ras_mm())
    kinds = [set_of_label(label) for label in wanted]
    if landmarks.kind not in kinds:
        landmarks.set_kind(max(set(kinds), key=kinds.count))
    # The side belongs to the file: one that names none must not keep the previous file's.
    landmarks.set_side(found.side or "")
    for label, positions in wanted.items():
        landmarks.set_points(label, positions)
    return ImportedLandmarks(
        np.mean(every_point, axis=0),
        [label for label in wanted if label in placed],
        sorted(named),
    )


def refuse_other_identity(
    file_name: str, content: bytes, expected: ExpectedIdentity | None
) -> dict[str, str]:
    """The identity a markups file names; raises ValueError when it is not ``expected``'s."""
    named = _named_identity(content)
    if expected is not None:
        problems = identity_mismatches(named, expected)
        if problems:
            raise ValueError(
                f"{file_name} is not of the current study: {'; '.join(problems)}; "
                "nothing was placed"
            )
    return named


def _named_identity(content: bytes) -> dict[str, str]:
    try:
        document = json.loads(content)
    except (UnicodeDecodeError, ValueError):
        return {}  # the markups reader names what is wrong with the file
    return identity_in_markups(document)

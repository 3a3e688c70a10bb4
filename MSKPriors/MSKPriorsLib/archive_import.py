"""Importing a folder of DICOM files (a CD, a download) into the local archive.

How to use (through :meth:`MSKPriorsLib.archive.LocalArchive.import_folder`)::

    summary = archive.import_folder(Path("/media/cdrom"))
    print(summary.stored, summary.already_present, summary.not_dicom, summary.failed)
    for message in summary.patient_conflicts:  # archived instances that name another patient
        print(message)
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from MSKPriorsLib.retrieval_checks import (
    ArchiveError,
    CorruptInstanceError,
    looks_like_dicom,
    read_instance_header,
)

if TYPE_CHECKING:
    from MSKPriorsLib.archive import LocalArchive, PlacedInstance
    from MSKPriorsLib.records import PatientIdentity

logger = logging.getLogger(__name__)

IMPORT_BATCH_FILES = 64


@dataclass
class ImportSummary:
    """Result of :meth:`MSKPriorsLib.archive.LocalArchive.import_folder`.

    Attributes
    ----------
    stored
        Files copied into the archive and indexed.
    already_present
        Files whose instance (same SOPInstanceUID) is archived under the same patient.
    not_dicom
        Files that are not DICOM.
    failed
        One message per DICOM file that could not be stored.
    patient_conflicts
        One message per file whose instance is archived under another patient (PatientID,
        issuer, PatientName or PatientBirthDate differ): the file, the SOPInstanceUID and the
        attributes that differ, never their values. The archived copy is kept unchanged.
    """

    stored: int = 0
    already_present: int = 0
    not_dicom: int = 0
    failed: list[str] = field(default_factory=list)
    patient_conflicts: list[str] = field(default_factory=list)


def _normalised_name(name: str) -> str:
    """PatientName compared without case, surrounding spaces or empty trailing components."""
    return "^".join(part.strip() for part in name.strip().rstrip("^").split("^")).upper()


def differing_patient_attributes(archived: PatientIdentity, incoming: PatientIdentity) -> list[str]:
    """The DICOM attributes in which two headers name different patients.

    Parameters
    ----------
    archived
        The patient an archived instance is indexed under.
    incoming
        The patient a file of the same instance names.

    Returns
    -------
    list of str
        Keywords among PatientID, IssuerOfPatientID, PatientName and PatientBirthDate that
        differ (names compared without case and spacing; a birth date only when both are
        known); empty when both name the same patient.
    """
    differing = []
    if archived.patient_id.strip() != incoming.patient_id.strip():
        differing.append("PatientID")
    if archived.issuer.strip() != incoming.issuer.strip():
        differing.append("IssuerOfPatientID")
    if _normalised_name(archived.name) != _normalised_name(incoming.name):
        differing.append("PatientName")
    birth_dates = (archived.birth_date.strip(), incoming.birth_date.strip())
    if all(birth_dates) and birth_dates[0] != birth_dates[1]:
        differing.append("PatientBirthDate")
    return differing


def import_folder(archive: LocalArchive, folder: Path) -> ImportSummary:
    """Store every DICOM file found under ``folder`` (recursively); others are counted.

    Files already archived (same SOPInstanceUID) are not copied again. When such a file names
    another patient than the archived copy, it is reported in ``patient_conflicts`` (not
    counted as already present) and the archived copy is left untouched. Files are stored in
    batches of :data:`IMPORT_BATCH_FILES`, each made durable before it is indexed (see
    :meth:`~MSKPriorsLib.archive.LocalArchive.store_checked`).
    """
    summary = ImportSummary()
    batch: list[tuple[Path, PlacedInstance]] = []
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        try:
            header = read_instance_header(path)
        except CorruptInstanceError as error:
            if looks_like_dicom(path):
                summary.failed.append(str(error))
            else:
                summary.not_dicom += 1
            continue
        archived = archive.archived_patient(header.sop_uid)
        if archived is not None:
            differing = differing_patient_attributes(archived, header.patient)
            if differing:
                summary.patient_conflicts.append(_conflict_message(path, header.sop_uid, differing))
                logger.warning(
                    "%s: instance %s is archived under another patient (%s); not imported",
                    path,
                    header.sop_uid,
                    _differ(differing),
                )
            else:
                summary.already_present += 1
            continue
        incoming = archive.new_incoming_path()
        shutil.copyfile(path, incoming)
        try:
            batch.append((incoming, archive.check_incoming(incoming)))
        except ArchiveError as error:
            summary.failed.append(f"{path}: {error}")
        if len(batch) >= IMPORT_BATCH_FILES:
            _store(archive, batch, summary)
    _store(archive, batch, summary)
    return summary


def _differ(differing: list[str]) -> str:
    return f"{', '.join(differing)} {'differs' if len(differing) == 1 else 'differ'}"


def _conflict_message(path: Path, sop_uid: str, differing: list[str]) -> str:
    return (
        f"{path}: instance {sop_uid} is already archived under another patient "
        f"({_differ(differing)} from the archived copy); the archived copy was kept and this "
        "file was not imported"
    )


def _store(
    archive: LocalArchive, batch: list[tuple[Path, PlacedInstance]], summary: ImportSummary
) -> None:
    if not batch:
        return
    refused = [error for error in archive.store_checked(batch) if error is not None]
    summary.stored += len(batch) - len(refused)
    summary.failed.extend(str(error) for error in refused)
    batch.clear()

"""Importing a folder of DICOM files (a CD, a download) into the local archive.

How to use (through :meth:`MSKPriorsLib.archive.LocalArchive.import_folder`)::

    summary = archive.import_folder(Path("/media/cdrom"))
    print(summary.stored, summary.already_present, summary.not_dicom, summary.failed)
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

logger = logging.getLogger(__name__)

IMPORT_BATCH_FILES = 64


@dataclass
class ImportSummary:
    """Result of :meth:`MSKPriorsLib.archive.LocalArchive.import_folder`."""

    stored: int = 0
    already_present: int = 0
    not_dicom: int = 0
    failed: list[str] = field(default_factory=list)


def import_folder(archive: LocalArchive, folder: Path) -> ImportSummary:
    """Store every DICOM file found under ``folder`` (recursively); others are counted.

    Files already archived (same SOPInstanceUID) are not copied again. Files are stored in
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
        if archive.has_instance(header.sop_uid):
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


def _store(
    archive: LocalArchive, batch: list[tuple[Path, PlacedInstance]], summary: ImportSummary
) -> None:
    if not batch:
        return
    refused = [error for error in archive.store_checked(batch) if error is not None]
    summary.stored += len(batch) - len(refused)
    summary.failed.extend(str(error) for error in refused)
    batch.clear()

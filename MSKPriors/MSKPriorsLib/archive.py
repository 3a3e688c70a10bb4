"""The local archive: DICOM instance files under one folder, indexed in SQLite.

How to use::

    from MSKPriorsLib.archive import LocalArchive

    archive = LocalArchive(Path("~/mskwb-archive").expanduser())
    archive.import_folder(Path("/media/cdrom"))              # or store_file / store_dataset
    studies = archive.search_studies(patient_id="12345")     # list[StudyRecord], source "archive"
    series = archive.search_series(studies[0].study_uid)     # list[SeriesRecord]
    paths = archive.instance_paths(series[0].series_uid)     # list[Path], for the series loader

It answers the same searches as :class:`MSKPriorsLib.dicomweb.DicomWebClient`, so prior
discovery and the command line work on either.

Layout: ``index.sqlite`` (:mod:`MSKPriorsLib.archive_index`) and the files
(:mod:`MSKPriorsLib.archive_layout`). Files are stored in batches
(:meth:`LocalArchive.store_checked`): each is written to ``incoming/`` and checked as a
complete DICOM file; then the batch's files are flushed to disk (fsync), renamed into
place, the folders that received them are flushed, and only then is the batch indexed in
one transaction. So the index never names a file that is half-written, unchecked or not yet
on disk, a file in its final place is always complete, and
:meth:`LocalArchive.present_sop_uids` tells an interrupted retrieval what it need not fetch
again (a file moved into place but not yet indexed is fetched again and replaced). Several
processes can store into one archive at once.
"""

from __future__ import annotations

import logging
import shutil
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pydicom

from MSKPriorsLib import archive_queries
from MSKPriorsLib.archive_import import ImportSummary, import_folder
from MSKPriorsLib.archive_index import (
    check_patient,
    in_transaction,
    insert_instance,
    open_index,
)
from MSKPriorsLib.archive_layout import ArchiveLayout
from MSKPriorsLib.durable_files import fsync_folders, fsync_path
from MSKPriorsLib.records import PatientIdentity, SeriesRecord, StudyRecord
from MSKPriorsLib.retrieval_checks import (
    ArchiveError,
    CorruptInstanceError,
    InstanceHeader,
    PatientConflictError,
    ReceivedFile,
    check_received,
    header_from_dataset,
    read_instance_header,
)

__all__ = [
    "ArchiveError",
    "CorruptInstanceError",
    "ImportSummary",
    "InstanceHeader",
    "LocalArchive",
    "NotAnArchiveError",
    "PatientConflictError",
    "PlacedInstance",
    "header_from_dataset",
    "is_archive",
    "read_instance_header",
]

logger = logging.getLogger(__name__)

SOURCE_NAME = archive_queries.SOURCE_NAME
INDEX_NAME = "index.sqlite"


class NotAnArchiveError(ArchiveError):
    """A folder named as a local archive is missing or holds no archive index."""


def is_archive(folder: Path) -> bool:
    """Whether ``folder`` holds a local archive (its ``index.sqlite``)."""
    return (Path(folder) / INDEX_NAME).is_file()


def check_existing_archive(folder: Path) -> None:
    """Refuse a folder that is not a local archive, creating nothing in it.

    Parameters
    ----------
    folder
        The folder to be read as an archive.

    Raises
    ------
    NotAnArchiveError
        When the folder does not exist, or exists without an ``index.sqlite`` (for example a
        folder of DICOM files that were never imported).
    """
    if not Path(folder).is_dir():
        raise NotAnArchiveError(f"the archive folder {folder} does not exist")
    if not is_archive(folder):
        raise NotAnArchiveError(
            f"{folder} is not an MSK Workbench archive (it has no {INDEX_NAME})"
        )


@dataclass(frozen=True)
class PlacedInstance:
    """A checked instance and where it goes (from :meth:`LocalArchive.check_incoming`)."""

    header: InstanceHeader
    relative_path: Path
    size_bytes: int


class LocalArchive:
    """DICOM files under ``folder`` with a SQLite index; safe for threads and processes.

    Parameters
    ----------
    folder
        The archive folder; created when missing (readers use :meth:`open_existing`).
    busy_timeout_s
        How long a writer waits for another process's transaction before failing.
    """

    def __init__(self, folder: Path, busy_timeout_s: float = 60.0) -> None:
        self.folder = Path(folder)
        self.layout = ArchiveLayout(self.folder)
        self.incoming_dir = self.layout.incoming_dir
        self.instances_dir = self.layout.instances_dir
        self._lock = threading.RLock()
        self._known_patients: dict[str, tuple[str, str]] = {}
        with self._lock:
            self._connection = open_index(self.folder / INDEX_NAME, busy_timeout_s)

    @classmethod
    def open_existing(cls, folder: Path, busy_timeout_s: float = 60.0) -> LocalArchive:
        """Open an archive that must already exist; nothing is created in ``folder``.

        For readers (searches, loading, the viewer), so that a folder named by mistake is
        not turned into an empty archive.

        Raises
        ------
        NotAnArchiveError
            See :func:`check_existing_archive`.
        """
        check_existing_archive(folder)
        return cls(folder, busy_timeout_s)

    def __repr__(self) -> str:
        return f"LocalArchive({str(self.folder)!r})"

    def close(self) -> None:
        """Close the index database."""
        with self._lock:
            self._connection.close()

    def __enter__(self) -> LocalArchive:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- writing ------------------------------------------------------------------------

    def new_incoming_path(self) -> Path:
        """A fresh file name in ``incoming/`` for a file being written (same file system)."""
        return self.layout.new_incoming_path()

    def relative_path_for(self, header: InstanceHeader) -> Path:
        """Where an instance lives, relative to the archive folder."""
        return self.layout.relative_path_for(header)

    def _write(self, action: Callable[[sqlite3.Connection], None]) -> None:
        """Run ``action(connection)`` in one immediate transaction (retried while busy)."""
        with self._lock:
            in_transaction(self._connection, action)

    def adopt_file(
        self, incoming: Path, expected_series_uid: str | None = None, durable: bool = True
    ) -> InstanceHeader:
        """Check a file written to ``incoming/``, make it durable, move it into place, index it.

        Parameters
        ----------
        incoming
            A complete file in :attr:`incoming_dir` (see :meth:`new_incoming_path`); it is
            removed whatever happens.
        expected_series_uid
            Refuse the file when it belongs to another series.
        durable
            fsync the file (and its folder) before it is indexed.

        Raises
        ------
        CorruptInstanceError, PatientConflictError
            The file is refused (and removed); nothing in the archive changes.
        """
        checked = self.check_incoming(incoming, expected_series_uid)
        refused = self.store_checked([(incoming, checked)], durable)[0]
        if refused is not None:
            raise refused
        return checked.header

    def check_incoming(
        self,
        incoming: Path,
        expected_series_uid: str | None = None,
        received: ReceivedFile | None = None,
    ) -> PlacedInstance:
        """Check a complete file in ``incoming/`` and say where it goes; nothing is moved.

        ``received`` (the bytes its writer kept, see :func:`check_received`) spares reading
        the file again.

        Raises
        ------
        CorruptInstanceError
            The file is not a complete instance, or belongs to another series.
        PatientConflictError
            Its study is archived under another patient.
        Both remove ``incoming``.
        """
        try:
            if received is not None:
                header, size = check_received(received), received.size_bytes
            else:
                header, size = read_instance_header(incoming), incoming.stat().st_size
            if expected_series_uid and header.series_uid != expected_series_uid:
                raise CorruptInstanceError(
                    f"instance {header.sop_uid} belongs to series {header.series_uid}, "
                    f"not the requested {expected_series_uid}"
                )
            # The index transaction checks the patient again; this early check keeps a
            # conflicting file out of place, once per study and patient.
            patient_key = (header.patient.patient_id, header.patient.issuer)
            if self._known_patients.get(header.study_uid) != patient_key:
                with self._lock:
                    check_patient(self._connection, header)
                self._known_patients[header.study_uid] = patient_key
        except BaseException:
            incoming.unlink(missing_ok=True)
            raise
        return PlacedInstance(header, self.relative_path_for(header), size)

    def store_checked(
        self, batch: Sequence[tuple[Path, PlacedInstance]], durable: bool = True
    ) -> list[ArchiveError | None]:
        """Store a batch of checked ``incoming/`` files: durable, in place, then indexed.

        In this order: every file is flushed to disk (fsync, when ``durable``); each is
        renamed to its place; the folders that received them are flushed; the batch is
        indexed in one transaction. A crash at any point leaves nothing indexed that is not
        complete on disk; files moved but not indexed are fetched again and replaced.

        Parameters
        ----------
        batch
            ``(incoming file, check_incoming(...) of it)`` pairs.
        durable
            Flush files and folders before indexing (off only for throw-away archives).

        Returns
        -------
        list
            For each item, None when it is indexed, or the :class:`ArchiveError` that refused
            it (a study archived under another patient, a file that could not be moved).

        Raises
        ------
        ArchiveError
            When the batch could not be made durable (its incoming files are removed).
        sqlite3.Error
            When the index could not be written (the moved files stay, unindexed).
        """
        outcomes: list[ArchiveError | None] = [None] * len(batch)
        if durable:
            for failing, _ in batch:
                try:
                    fsync_path(failing)
                except OSError as error:
                    for incoming, _ in batch:
                        incoming.unlink(missing_ok=True)
                    raise ArchiveError(
                        f"could not flush {failing.name} to disk ({error})"
                    ) from error
        changed_folders: set[Path] = set()
        moved: list[tuple[int, PlacedInstance]] = []
        for position, (incoming, checked) in enumerate(batch):
            try:
                changed_folders |= self.layout.move_into_place(incoming, checked.relative_path)
                moved.append((position, checked))
            except OSError as error:
                incoming.unlink(missing_ok=True)
                outcomes[position] = ArchiveError(
                    f"instance {checked.header.sop_uid} could not be moved into place ({error})"
                )
        if durable and moved:
            try:
                fsync_folders(changed_folders)
            except OSError as error:
                raise ArchiveError(f"could not flush the archive folders ({error})") from error
        refused = self.index_placed([checked for _, checked in moved])
        by_path = {error.relative_path: error for error in refused}
        for position, checked in moved:
            outcomes[position] = by_path.get(checked.relative_path)
        return outcomes

    def index_placed(self, placed: Sequence[PlacedInstance]) -> list[PatientConflictError]:
        """Index files already in place (and on disk), all in one transaction.

        Returns
        -------
        list of PatientConflictError
            Instances refused because their study already belongs to another patient (their
            files are removed; ``relative_path`` names each); the others are indexed.
        """
        refused: list[PatientConflictError] = []

        def insert_all(db: sqlite3.Connection) -> None:
            refused.clear()
            for item in placed:
                try:
                    insert_instance(db, item.header, item.relative_path, item.size_bytes)
                except PatientConflictError as error:
                    refused.append(error)

        if placed:
            self._write(insert_all)
        for error in refused:
            if error.relative_path is not None:
                (self.folder / error.relative_path).unlink(missing_ok=True)
        return refused

    def store_file(self, path: Path) -> InstanceHeader:
        """Copy a DICOM file into the archive (the original is left alone).

        Raises
        ------
        CorruptInstanceError
            When the file is not a complete DICOM instance.
        """
        incoming = self.new_incoming_path()
        shutil.copyfile(path, incoming)
        try:
            return self.adopt_file(incoming)
        except CorruptInstanceError as error:
            raise CorruptInstanceError(f"{path}: {error}") from error

    def store_dataset(self, ds: pydicom.Dataset) -> InstanceHeader:
        """Write a pydicom dataset (with its file meta) into the archive."""
        incoming = self.new_incoming_path()
        try:
            pydicom.dcmwrite(incoming, ds, enforce_file_format=True)
        except BaseException:
            incoming.unlink(missing_ok=True)
            raise
        return self.adopt_file(incoming)

    def import_folder(self, folder: Path) -> ImportSummary:
        """Store every DICOM file found under ``folder`` (recursively); others are counted.

        Files already archived (same SOPInstanceUID) are not copied again; see
        :func:`MSKPriorsLib.archive_import.import_folder`.
        """
        return import_folder(self, folder)

    # -- reading ------------------------------------------------------------------------

    def _rows(self, sql: str, parameters: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        with self._lock:
            return list(self._connection.execute(sql, parameters).fetchall())

    def has_instance(self, sop_uid: str) -> bool:
        """Whether the instance is archived."""
        return bool(self._rows("SELECT 1 FROM instances WHERE sop_uid = ?", (sop_uid,)))

    def archived_patient(self, sop_uid: str) -> PatientIdentity | None:
        """The patient an archived instance is indexed under, or None when it is not archived.

        Parameters
        ----------
        sop_uid
            SOPInstanceUID of the instance.

        Returns
        -------
        PatientIdentity or None
            PatientID, issuer, name and birth date of the patient of the instance's study, as
            the archive holds them.
        """
        rows = self._rows(
            "SELECT p.patient_id, p.issuer, p.name, p.birth_date FROM instances i "
            "JOIN studies s ON s.study_uid = i.study_uid JOIN patients p ON p.pk = s.patient_pk "
            "WHERE i.sop_uid = ?",
            (sop_uid,),
        )
        if not rows:
            return None
        patient_id, issuer, name, birth_date = (str(value or "") for value in rows[0])
        return PatientIdentity(patient_id, issuer, name, birth_date)

    def present_sop_uids(self, series_uid: str) -> set[str]:
        """SOPInstanceUIDs of the archived (complete and durable) instances of a series."""
        rows = self._rows("SELECT sop_uid FROM instances WHERE series_uid = ?", (series_uid,))
        return {str(row[0]) for row in rows}

    def search_studies(
        self,
        patient_id: str | None = None,
        study_uid: str | None = None,
        issuer: str | None = None,
        accession_number: str | None = None,
        study_date: str | None = None,
        modality: str | None = None,
    ) -> list[StudyRecord]:
        """Find archived studies, with the same filters as a QIDO-RS study search.

        Parameters
        ----------
        patient_id, accession_number
            Exact values, or patterns with the DICOM wildcards ``*`` and ``?``. An empty
            string matches only studies whose value is empty.
        study_uid, issuer
            Exact values.
        study_date
            ``YYYYMMDD`` or a DICOM range (``YYYYMMDD-``, ``-YYYYMMDD``, ``A-B``).
        modality
            Only studies with a series of this modality.

        Returns
        -------
        list of StudyRecord
            Newest first, with ``source`` ``"archive"``; modalities, body parts and
            lateralities gathered from the archived series. Filters left as None are not
            applied.
        """
        return archive_queries.search_studies(
            self._rows, patient_id, study_uid, issuer, accession_number, study_date, modality
        )

    def search_series(self, study_uid: str) -> list[SeriesRecord]:
        """Archived series of a study, by SeriesNumber, with ``source`` ``"archive"``."""
        return archive_queries.search_series(self._rows, study_uid)

    def instance_paths(self, series_uid: str) -> list[Path]:
        """Absolute paths of the archived files of a series, by InstanceNumber."""
        rows = self._rows(
            "SELECT path FROM instances WHERE series_uid = ? ORDER BY instance_number, sop_uid",
            (series_uid,),
        )
        return [self.folder / str(row[0]) for row in rows]

    def iter_instance_rows(self) -> Iterator[tuple[str, str, int]]:
        """Yield ``(sop_uid, relative path, size_bytes)`` of every indexed instance."""
        for row in self._rows("SELECT sop_uid, path, size_bytes FROM instances ORDER BY path"):
            yield str(row[0]), str(row[1]), int(str(row[2]))

    def clean_incoming(self, older_than_s: float = 3600.0) -> int:
        """Remove leftovers of interrupted writes in ``incoming/``; returns how many."""
        return self.layout.clean_incoming(older_than_s)

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

Layout: ``index.sqlite`` (tables ``patients``, ``studies``, ``series``, ``instances``),
``instances/<StudyUID>/<SeriesUID>/<SOPInstanceUID>.dcm`` and ``incoming/`` for files being
written. A file is written to ``incoming/``, flushed to disk (fsync), checked as a complete
DICOM file, renamed into place, and only then indexed in one transaction: the index never
names a half-written file, and :meth:`LocalArchive.present_sop_uids` tells an interrupted
retrieval what it need not fetch again. The database runs in WAL mode with a busy timeout
and unique keys, so several processes can store into one archive at once.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom

from MSKPriorsLib.records import PatientIdentity, SeriesRecord, StudyRecord
from MSKPriorsLib.retrieval_checks import (
    ArchiveError,
    CorruptInstanceError,
    InstanceHeader,
    PatientConflictError,
    ReceivedFile,
    check_received,
    fsync_file,
    header_from_dataset,
    looks_like_dicom,
    read_instance_header,
)

__all__ = [
    "ArchiveError",
    "CorruptInstanceError",
    "ImportSummary",
    "InstanceHeader",
    "LocalArchive",
    "PatientConflictError",
    "PlacedInstance",
    "header_from_dataset",
    "read_instance_header",
]

logger = logging.getLogger(__name__)

SOURCE_NAME = "archive"
INDEX_NAME = "index.sqlite"
INCOMING_DIR = "incoming"
INSTANCES_DIR = "instances"
_UID_PATTERN = re.compile(r"^[0-9][0-9.]{0,63}$")

SCHEMA = """
CREATE TABLE IF NOT EXISTS patients (
    pk INTEGER PRIMARY KEY,
    patient_id TEXT NOT NULL,
    issuer TEXT NOT NULL,
    name TEXT NOT NULL,
    birth_date TEXT NOT NULL,
    UNIQUE (patient_id, issuer, name, birth_date)
);
CREATE TABLE IF NOT EXISTS studies (
    study_uid TEXT PRIMARY KEY,
    patient_pk INTEGER NOT NULL REFERENCES patients(pk),
    study_date TEXT NOT NULL,
    study_time TEXT NOT NULL,
    description TEXT NOT NULL,
    accession_number TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS series (
    series_uid TEXT PRIMARY KEY,
    study_uid TEXT NOT NULL REFERENCES studies(study_uid),
    modality TEXT NOT NULL,
    series_number INTEGER NOT NULL,
    description TEXT NOT NULL,
    body_part TEXT NOT NULL,
    laterality TEXT NOT NULL,
    orientation TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS instances (
    sop_uid TEXT PRIMARY KEY,
    series_uid TEXT NOT NULL REFERENCES series(series_uid),
    study_uid TEXT NOT NULL,
    instance_number INTEGER NOT NULL,
    sop_class_uid TEXT NOT NULL,
    transfer_syntax TEXT NOT NULL,
    path TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    stored_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS instances_by_series ON instances(series_uid);
CREATE INDEX IF NOT EXISTS series_by_study ON series(study_uid);
CREATE INDEX IF NOT EXISTS studies_by_patient ON studies(patient_pk);
CREATE INDEX IF NOT EXISTS patients_by_id ON patients(patient_id);
"""


@dataclass(frozen=True)
class PlacedInstance:
    """A checked file moved into place, waiting to be indexed (see :meth:`LocalArchive.place_file`)."""

    header: InstanceHeader
    relative_path: Path
    size_bytes: int


@dataclass
class ImportSummary:
    """Result of :meth:`LocalArchive.import_folder`."""

    stored: int = 0
    already_present: int = 0
    not_dicom: int = 0
    failed: list[str] = field(default_factory=list)


def _safe_name(uid: str) -> str:
    """A file-system name for a UID (UIDs are digits and dots; anything else is hashed)."""
    if _UID_PATTERN.match(uid):
        return uid
    return hashlib.sha1(uid.encode("utf-8")).hexdigest()


class LocalArchive:
    """DICOM files under ``folder`` with a SQLite index; safe for threads and processes.

    Parameters
    ----------
    folder
        The archive folder; created when missing.
    busy_timeout_s
        How long a writer waits for another process's transaction before failing.
    """

    def __init__(self, folder: Path, busy_timeout_s: float = 60.0) -> None:
        self.folder = Path(folder)
        self.incoming_dir = self.folder / INCOMING_DIR
        self.instances_dir = self.folder / INSTANCES_DIR
        self.incoming_dir.mkdir(parents=True, exist_ok=True)
        self.instances_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._made_folders: set[Path] = set()
        self._known_patients: dict[str, tuple[str, str]] = {}
        self._connection = sqlite3.connect(
            self.folder / INDEX_NAME,
            timeout=busy_timeout_s,
            isolation_level=None,
            check_same_thread=False,
        )
        self._connection.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        with self._lock:
            self._connection.execute("PRAGMA journal_mode = WAL")
            self._connection.execute("PRAGMA synchronous = NORMAL")
            self._connection.execute("PRAGMA foreign_keys = ON")
            self._connection.executescript(f"BEGIN;\n{SCHEMA}\nCOMMIT;")
            self._add_missing_columns()

    def __repr__(self) -> str:
        return f"LocalArchive({str(self.folder)!r})"

    def _add_missing_columns(self) -> None:
        """Bring an index written by an earlier version up to the current schema."""
        columns = {row[1] for row in self._connection.execute("PRAGMA table_info(series)")}
        if "orientation" not in columns:
            try:
                self._connection.execute(
                    "ALTER TABLE series ADD COLUMN orientation TEXT NOT NULL DEFAULT ''"
                )
            except sqlite3.OperationalError as error:
                if "duplicate column" not in str(error):
                    raise

    def close(self) -> None:
        """Close the index database."""
        with self._lock:
            self._connection.close()

    def __enter__(self) -> LocalArchive:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- writing ------------------------------------------------------------------------

    def _write(self, action: Callable[[sqlite3.Connection], None]) -> None:
        """Run ``action(connection)`` in one immediate transaction (retried while busy)."""
        with self._lock:
            deadline = time.monotonic() + 120.0
            while True:
                try:
                    self._connection.execute("BEGIN IMMEDIATE")
                    break
                except sqlite3.OperationalError as error:
                    if "locked" not in str(error) or time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            try:
                action(self._connection)
            except BaseException:
                self._connection.execute("ROLLBACK")
                raise
            self._connection.execute("COMMIT")

    def new_incoming_path(self) -> Path:
        """A fresh file name in ``incoming/`` for a file being written (same file system)."""
        return self.incoming_dir / f"{uuid.uuid4().hex}.part"

    def relative_path_for(self, header: InstanceHeader) -> Path:
        """Where an instance lives, relative to the archive folder."""
        return (
            Path(INSTANCES_DIR)
            / _safe_name(header.study_uid)
            / _safe_name(header.series_uid)
            / f"{_safe_name(header.sop_uid)}.dcm"
        )

    def adopt_file(
        self, incoming: Path, expected_series_uid: str | None = None, durable: bool = True
    ) -> InstanceHeader:
        """Check a file written to ``incoming/``, move it into place and index it.

        Parameters
        ----------
        incoming
            A complete file in :attr:`incoming_dir` (see :meth:`new_incoming_path`); it is
            removed whatever happens.
        expected_series_uid
            Refuse the file when it belongs to another series.
        durable
            fsync the file before it is renamed and indexed.

        Raises
        ------
        CorruptInstanceError, PatientConflictError
            The file is refused (and removed); nothing in the archive changes.
        """
        prepared = self.place_file(incoming, expected_series_uid, durable)
        refused = self.index_placed([prepared])
        if refused:
            raise refused[0]
        return prepared.header

    def place_file(
        self,
        incoming: Path,
        expected_series_uid: str | None = None,
        durable: bool = True,
        received: ReceivedFile | None = None,
    ) -> PlacedInstance:
        """First half of :meth:`adopt_file`: check, fsync and rename, without indexing.

        ``received`` (the bytes its writer kept, see :func:`check_received`) spares reading
        the file again. The file is not part of the archive until :meth:`index_placed` has
        indexed it; a crash in between leaves an unindexed file that the next retrieval
        overwrites.
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
            # The index transaction checks the patient again (:meth:`_insert`); this early
            # check keeps a conflicting file out of place, once per study and patient.
            patient_key = (header.patient.patient_id, header.patient.issuer)
            if self._known_patients.get(header.study_uid) != patient_key:
                self._check_patient(header)
                self._known_patients[header.study_uid] = patient_key
            if durable:
                fsync_file(incoming)
            relative = self.relative_path_for(header)
            target = self.folder / relative
            if target.parent not in self._made_folders:
                target.parent.mkdir(parents=True, exist_ok=True)
                self._made_folders.add(target.parent)
            try:
                os.replace(incoming, target)
            except FileNotFoundError:  # the folder was removed since
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(incoming, target)
        except BaseException:
            incoming.unlink(missing_ok=True)
            raise
        return PlacedInstance(header, relative, size)

    def index_placed(self, placed: Sequence[PlacedInstance]) -> list[ArchiveError]:
        """Index files placed by :meth:`place_file`, all in one transaction.

        Returns
        -------
        list of ArchiveError
            Instances refused because their study already belongs to another patient (their
            files are removed); the others are indexed.
        """
        refused: list[ArchiveError] = []

        def insert_all(db: sqlite3.Connection) -> None:
            refused.clear()
            for item in placed:
                try:
                    self._insert(db, item)
                except PatientConflictError as error:
                    refused.append(error)

        if placed:
            self._write(insert_all)
        for error in refused:
            if isinstance(error, PatientConflictError) and error.relative_path is not None:
                (self.folder / error.relative_path).unlink(missing_ok=True)
        return refused

    def _check_patient(self, header: InstanceHeader, db: sqlite3.Connection | None = None) -> None:
        sql = (
            "SELECT p.patient_id, p.issuer FROM studies s JOIN patients p ON p.pk = s.patient_pk "
            "WHERE s.study_uid = ?"
        )
        if db is None:
            rows = self._rows(sql, (header.study_uid,))
        else:
            rows = list(db.execute(sql, (header.study_uid,)).fetchall())
        row = rows[0] if rows else None
        if row and (row[0], row[1]) != (header.patient.patient_id, header.patient.issuer):
            raise PatientConflictError(
                f"instance {header.sop_uid}: its patient ID differs from that of study "
                f"{header.study_uid} already in the archive; not stored"
            )

    def _insert(self, db: sqlite3.Connection, item: PlacedInstance) -> None:
        header, relative, size_bytes = item.header, item.relative_path, item.size_bytes
        patient = header.patient
        try:
            self._check_patient(header, db)
        except PatientConflictError as error:
            error.relative_path = relative
            raise
        db.execute(
            "INSERT INTO patients (patient_id, issuer, name, birth_date) VALUES (?, ?, ?, ?) "
            "ON CONFLICT DO NOTHING",
            (patient.patient_id, patient.issuer, patient.name, patient.birth_date),
        )
        (patient_pk,) = db.execute(
            "SELECT pk FROM patients WHERE patient_id = ? AND issuer = ? AND name = ? "
            "AND birth_date = ?",
            (patient.patient_id, patient.issuer, patient.name, patient.birth_date),
        ).fetchone()
        db.execute(
            "INSERT INTO studies VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (study_uid) DO UPDATE "
            "SET study_date = excluded.study_date, study_time = excluded.study_time, "
            "description = excluded.description, accession_number = excluded.accession_number",
            (
                header.study_uid,
                patient_pk,
                header.study_date,
                header.study_time,
                header.study_description,
                header.accession_number,
            ),
        )
        db.execute(
            "INSERT INTO series (series_uid, study_uid, modality, series_number, description, "
            "body_part, laterality, orientation) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (series_uid) DO UPDATE SET orientation = excluded.orientation "
            "WHERE series.orientation = ''",
            (
                header.series_uid,
                header.study_uid,
                header.modality,
                header.series_number,
                header.series_description,
                header.body_part,
                header.laterality,
                header.orientation_lps,
            ),
        )
        db.execute(
            "INSERT INTO instances VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (sop_uid) DO UPDATE SET path = excluded.path, "
            "size_bytes = excluded.size_bytes, stored_at = excluded.stored_at",
            (
                header.sop_uid,
                header.series_uid,
                header.study_uid,
                header.instance_number,
                header.sop_class_uid,
                header.transfer_syntax,
                relative.as_posix(),
                size_bytes,
                time.time(),
            ),
        )

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

        Files already archived (same SOPInstanceUID) are not copied again.
        """
        summary = ImportSummary()
        placed: list[PlacedInstance] = []
        for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
            try:
                header = read_instance_header(path)
            except CorruptInstanceError as error:
                if looks_like_dicom(path):
                    summary.failed.append(str(error))
                else:
                    summary.not_dicom += 1
                continue
            if self.has_instance(header.sop_uid):
                summary.already_present += 1
                continue
            incoming = self.new_incoming_path()
            shutil.copyfile(path, incoming)
            try:
                placed.append(self.place_file(incoming))
            except ArchiveError as error:
                summary.failed.append(f"{path}: {error}")
            if len(placed) >= 64:
                self._index_imported(placed, summary)
        self._index_imported(placed, summary)
        return summary

    def _index_imported(self, placed: list[PlacedInstance], summary: ImportSummary) -> None:
        refused = self.index_placed(placed)
        summary.stored += len(placed) - len(refused)
        summary.failed.extend(str(error) for error in refused)
        placed.clear()

    # -- reading ------------------------------------------------------------------------

    def _rows(self, sql: str, parameters: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        with self._lock:
            return list(self._connection.execute(sql, parameters).fetchall())

    def has_instance(self, sop_uid: str) -> bool:
        """Whether the instance is archived."""
        return bool(self._rows("SELECT 1 FROM instances WHERE sop_uid = ?", (sop_uid,)))

    def present_sop_uids(self, series_uid: str) -> set[str]:
        """SOPInstanceUIDs of the archived (complete) instances of a series."""
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
                "EXISTS (SELECT 1 FROM series se WHERE se.study_uid = s.study_uid "
                "AND se.modality = ?)"
            )
            parameters.append(modality)
        where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
        rows = self._rows(
            "SELECT s.study_uid, p.patient_id, p.issuer, p.name, p.birth_date, s.study_date, "
            "s.study_time, s.description, s.accession_number FROM studies s "
            f"JOIN patients p ON p.pk = s.patient_pk {where} "
            "ORDER BY s.study_date DESC, s.study_time DESC, s.study_uid",
            tuple(parameters),
        )
        return [self._study_record(row) for row in rows]

    def _study_record(self, row: tuple[object, ...]) -> StudyRecord:
        study_uid = str(row[0])
        series = self.search_series(study_uid)
        instances = self._rows("SELECT COUNT(*) FROM instances WHERE study_uid = ?", (study_uid,))
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

    def search_series(self, study_uid: str) -> list[SeriesRecord]:
        """Archived series of a study, by SeriesNumber, with ``source`` ``"archive"``."""
        rows = self._rows(
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
            for r in rows
        ]

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
        removed = 0
        now = time.time()
        for path in self.incoming_dir.glob("*.part"):
            try:
                if now - path.stat().st_mtime > older_than_s:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        return removed


def _orientation_extra(orientation: str) -> dict[str, Any]:
    """``{"image_orientation_patient": [six floats, LPS]}``, or empty when not stored."""
    try:
        cosines = [float(v) for v in orientation.split("\\")] if orientation else []
    except ValueError:
        return {}
    return {"image_orientation_patient": cosines} if len(cosines) == 6 else {}

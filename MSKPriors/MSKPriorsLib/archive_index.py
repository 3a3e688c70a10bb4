"""The SQLite index of the local archive: schema, connection and the rows of one instance.

How to use::

    from MSKPriorsLib.archive_index import insert_instance, open_index

    connection = open_index(folder / "index.sqlite", busy_timeout_s=60.0)
    insert_instance(connection, header, Path("instances/1.2/1.3/1.4.dcm"), 525252)

:class:`MSKPriorsLib.archive.LocalArchive` wraps every write in one immediate transaction;
this module only says what the rows are. The database runs in WAL mode with a busy timeout
and unique keys, so several processes can write into one index at once.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from MSKPriorsLib.retrieval_checks import InstanceHeader, PatientConflictError

logger = logging.getLogger(__name__)

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


def open_index(path: Path, busy_timeout_s: float) -> sqlite3.Connection:
    """Open (creating when missing) the index database at ``path``, schema up to date.

    The connection is in autocommit mode (transactions are explicit) and may be used from
    several threads under one lock.
    """
    connection = sqlite3.connect(
        path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
    )
    connection.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("PRAGMA synchronous = NORMAL")
    connection.execute("PRAGMA foreign_keys = ON")
    connection.executescript(f"BEGIN;\n{SCHEMA}\nCOMMIT;")
    _add_missing_columns(connection)
    return connection


def _add_missing_columns(connection: sqlite3.Connection) -> None:
    """Bring an index written by an earlier version up to the current schema."""
    columns = {row[1] for row in connection.execute("PRAGMA table_info(series)")}
    if "orientation" not in columns:
        try:
            connection.execute("ALTER TABLE series ADD COLUMN orientation TEXT NOT NULL DEFAULT ''")
        except sqlite3.OperationalError as error:
            if "duplicate column" not in str(error):
                raise


def in_transaction(
    db: sqlite3.Connection,
    action: Callable[[sqlite3.Connection], None],
    busy_deadline_s: float = 120.0,
) -> None:
    """Run ``action(db)`` in one immediate transaction; rolled back if it raises.

    A database locked by another process is tried again every 50 ms for up to
    ``busy_deadline_s`` seconds (beyond the connection's own busy timeout).
    """
    deadline = time.monotonic() + busy_deadline_s
    while True:
        try:
            db.execute("BEGIN IMMEDIATE")
            break
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    try:
        action(db)
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def check_patient(db: sqlite3.Connection, header: InstanceHeader) -> None:
    """Refuse an instance whose study is archived under another patient ID or issuer.

    Raises
    ------
    PatientConflictError
        Naming the instance and the study.
    """
    row = db.execute(
        "SELECT p.patient_id, p.issuer FROM studies s JOIN patients p ON p.pk = s.patient_pk "
        "WHERE s.study_uid = ?",
        (header.study_uid,),
    ).fetchone()
    if row and (row[0], row[1]) != (header.patient.patient_id, header.patient.issuer):
        raise PatientConflictError(
            f"instance {header.sop_uid}: its patient ID differs from that of study "
            f"{header.study_uid} already in the archive; not stored"
        )


def insert_instance(
    db: sqlite3.Connection, header: InstanceHeader, relative: Path, size_bytes: int
) -> None:
    """Index one instance (and its patient, study and series) inside the caller's transaction.

    Parameters
    ----------
    db
        A connection inside an open transaction.
    header
        What the index keeps of the instance.
    relative
        Its file, relative to the archive folder (already in place and, for a durable
        archive, on disk).
    size_bytes
        The file's size.

    Raises
    ------
    PatientConflictError
        When the study is archived under another patient (nothing is inserted); its
        ``relative_path`` names the file.
    """
    patient = header.patient
    try:
        check_patient(db, header)
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

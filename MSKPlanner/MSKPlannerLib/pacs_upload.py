"""The outbox: DICOM objects written to the case folder first, then stored on a PACS.

Layout of an outbox folder (usually ``CASE_DIR/dicom``)::

    outbox.json          the manifest: UIDs, files and per-server status of every object
    sr.dcm, seg.dcm, key_image_1.dcm, ...

Guarantees:

- *Stable UIDs.* Each object's SOP Instance UID and each series' Series Instance UID are
  generated once and kept in the manifest; writing the same object again (same inputs, as
  told by a digest the caller gives) reuses them, so a PACS sees the same object, not a new
  one. Changed inputs get new UIDs once the old object has been stored anywhere.
- *Nothing lost locally.* Files are written (atomically) before any upload; a failed upload
  changes nothing in the folder except the recorded error.
- *Idempotent retries.* Before storing, the server is asked (QIDO-RS) which of the
  series' instances it already holds; those are marked stored without sending them again.
  Each object is stored in its own STOW-RS request and marked done as soon as the server
  accepts it, so an interruption leaves an exact record of what remains.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pydicom
import requests
from pydicom.uid import generate_uid

logger = logging.getLogger(__name__)

MANIFEST_NAME = "outbox.json"


class OutboxError(RuntimeError):
    """The outbox folder or manifest cannot be used; the message names it."""


class StoreClient(Protocol):
    """What the outbox needs from a DICOMweb client (``MSKPriorsLib.dicomweb.DicomWebClient``)."""

    def search_instances(self, study_uid: str, series_uid: str) -> list[Any]:
        """Instances of a series on the server (each with ``sop_uid``)."""
        ...

    def store_instances(self, datasets: Any, study_uid: str | None = None) -> dict[str, Any]:
        """STOW-RS the given instances (bytes or datasets)."""
        ...


@dataclass
class UploadReport:
    """What one upload attempt did.

    Attributes
    ----------
    stored
        Object names sent and accepted in this attempt.
    already_present
        Object names the server held already (found by QIDO-RS), not sent again.
    failed
        Object name -> reason, for the object whose upload failed.
    pending
        Object names not tried because an earlier failure stopped the attempt.
    """

    server: str
    stored: list[str] = field(default_factory=list)
    already_present: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    pending: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """Whether every object of the outbox is now on the server."""
        return not self.failed and not self.pending

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "server": self.server,
            "stored": list(self.stored),
            "already_present": list(self.already_present),
            "failed": dict(self.failed),
            "pending": list(self.pending),
            "complete": self.complete,
        }


def _instances_on_server(client: StoreClient, study_uid: str, series_uid: str) -> set[str]:
    """SOP Instance UIDs of a series the server holds; none when it answers 404 (unknown)."""
    try:
        return {str(ref.sop_uid) for ref in client.search_instances(study_uid, series_uid)}
    except RuntimeError as error:
        if getattr(error, "status_code", None) == 404:
            return set()
        raise


def content_digest(*parts: bytes) -> str:
    """Digest of the inputs an outbox object is made from (SHA-256, 32 hex characters).

    Passed as ``digest`` to :meth:`Outbox.series_uid`, :meth:`Outbox.sop_uid` and
    :meth:`Outbox.add`, so that changed inputs get new UIDs once the old ones were stored.
    """
    hasher = hashlib.sha256()
    for part in parts:
        hasher.update(part)
    return hasher.hexdigest()[:32]


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


class Outbox:
    """The DICOM objects of one case, their UIDs and their upload status.

    Parameters
    ----------
    folder
        The outbox folder (created when missing).
    """

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.manifest_path = self.folder / MANIFEST_NAME
        self.manifest: dict[str, Any] = {"series": {}, "objects": {}}
        if self.manifest_path.is_file():
            try:
                self.manifest = json.loads(self.manifest_path.read_text())
            except (OSError, json.JSONDecodeError) as error:
                raise OutboxError(
                    f"outbox manifest {self.manifest_path} is unreadable: {error}"
                ) from error

    def _save(self) -> None:
        temporary = self.manifest_path.with_suffix(".json.tmp")
        temporary.write_text(json.dumps(self.manifest, indent=2))
        os.replace(temporary, self.manifest_path)

    @property
    def objects(self) -> dict[str, dict[str, Any]]:
        """Object name -> manifest entry (file, UIDs, digest, per-server status)."""
        return dict(self.manifest["objects"])

    def series_uid(self, series_name: str, digest: str = "") -> str:
        """The Series Instance UID of a named series of this case, generated once.

        A series whose objects were stored and whose inputs changed (another ``digest``)
        gets a new UID, so the PACS keeps both versions apart.
        """
        series = self.manifest["series"].setdefault(series_name, {})
        stored = any(
            entry.get("stored") and entry.get("series_name") == series_name
            for entry in self.manifest["objects"].values()
        )
        if "uid" not in series or (stored and series.get("digest") != digest):
            series["uid"] = generate_uid()
            series["digest"] = digest
            self._save()
        return str(series["uid"])

    def sop_uid(self, name: str, digest: str = "") -> str:
        """The SOP Instance UID of a named object, generated once (see :meth:`series_uid`)."""
        entry = self.manifest["objects"].get(name)
        if entry and (entry.get("digest") == digest or not entry.get("stored")):
            return str(entry["sop_uid"])
        uid = str(generate_uid())
        self.manifest["objects"][name] = {"sop_uid": uid, "digest": digest, "stored": {}}
        self._save()
        return uid

    def add(self, name: str, dataset: pydicom.Dataset, series_name: str, digest: str = "") -> Path:
        """Write an object into the outbox (atomically) and record it as pending.

        Parameters
        ----------
        name
            Object name, also the file name stem (``sr``, ``seg``, ``key_image_1``).
        dataset
            The DICOM object; its SOP Instance UID must be :meth:`sop_uid` of ``name``.
        series_name
            The named series it belongs to (for :meth:`series_uid`).
        digest
            Digest of the inputs it was made from.
        """
        entry = self.manifest["objects"].setdefault(name, {"stored": {}})
        if entry.get("sop_uid") and entry["sop_uid"] != dataset.SOPInstanceUID:
            entry["stored"] = {}
        path = self.folder / f"{name}.dcm"
        temporary = path.with_suffix(".dcm.tmp")
        dataset.save_as(temporary, enforce_file_format=True)
        os.replace(temporary, path)
        entry.update(
            {
                "file": path.name,
                "sop_uid": str(dataset.SOPInstanceUID),
                "sop_class_uid": str(dataset.SOPClassUID),
                "series_uid": str(dataset.SeriesInstanceUID),
                "study_uid": str(dataset.StudyInstanceUID),
                "series_name": series_name,
                "digest": digest,
                "modality": str(dataset.get("Modality", "")),
                "written": _now(),
            }
        )
        entry.setdefault("stored", {})
        self._save()
        logger.info("outbox %s: wrote %s (%s)", self.folder, name, dataset.SOPInstanceUID)
        return path

    def is_stored(self, name: str, server: str) -> bool:
        """Whether ``name`` is recorded as stored on ``server``."""
        return server in self.manifest["objects"].get(name, {}).get("stored", {})

    def upload(
        self,
        client: StoreClient,
        server: str,
        after_each: Callable[[str], None] | None = None,
    ) -> UploadReport:
        """Store every object not yet on ``server``; stop at the first failure.

        Parameters
        ----------
        client
            A DICOMweb client for the server (QIDO-RS and STOW-RS).
        server
            The key under which the status is recorded (the server's name or URL).
        after_each
            Called with the object name after each object is stored and recorded.

        Returns
        -------
        UploadReport
            What was stored, found present, failed and left pending; the manifest records
            it per object.
        """
        report = UploadReport(server=server)
        names = [n for n, e in self.manifest["objects"].items() if e.get("file")]
        present_by_series: dict[tuple[str, str], set[str]] = {}
        for index, name in enumerate(names):
            entry = self.manifest["objects"][name]
            if server in entry.get("stored", {}):
                continue
            try:
                key = (entry["study_uid"], entry["series_uid"])
                if key not in present_by_series:
                    present_by_series[key] = _instances_on_server(client, *key)
                if entry["sop_uid"] in present_by_series[key]:
                    report.already_present.append(name)
                    logger.info("%s is already on %s; not sent again", name, server)
                else:
                    payload = (self.folder / entry["file"]).read_bytes()
                    client.store_instances([payload], study_uid=entry["study_uid"])
                    report.stored.append(name)
                entry.setdefault("stored", {})[server] = _now()
                entry.pop("last_error", None)
                self._save()
            except (OSError, requests.RequestException, RuntimeError) as error:
                entry["last_error"] = f"{server}: {error}"
                self._save()
                report.failed[name] = str(error)
                report.pending = [
                    n
                    for n in names[index + 1 :]
                    if server not in self.manifest["objects"][n].get("stored", {})
                ]
                logger.warning("upload of %s to %s failed: %s", name, server, error)
                return report
            if after_each is not None:
                after_each(name)
        return report

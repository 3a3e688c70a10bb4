"""Where the local archive keeps its files, and moving a finished file into its place.

How to use (through :class:`MSKPriorsLib.archive.LocalArchive`, which owns one)::

    layout = ArchiveLayout(folder)
    incoming = layout.new_incoming_path()                  # write the file here
    relative = layout.relative_path_for(header)            # instances/<study>/<series>/<sop>.dcm
    changed = layout.move_into_place(incoming, relative)   # folders to fsync

Layout: ``instances/<StudyUID>/<SeriesUID>/<SOPInstanceUID>.dcm`` for archived files and
``incoming/`` for files being written (the same file system, so a rename moves them).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
import uuid
from pathlib import Path

from MSKPriorsLib.retrieval_checks import InstanceHeader

logger = logging.getLogger(__name__)

INCOMING_DIR = "incoming"
INSTANCES_DIR = "instances"
_UID_PATTERN = re.compile(r"^[0-9][0-9.]{0,63}$")


def safe_name(uid: str) -> str:
    """A file-system name for a UID (UIDs are digits and dots; anything else is hashed)."""
    if _UID_PATTERN.match(uid):
        return uid
    return hashlib.sha1(uid.encode("utf-8")).hexdigest()


class ArchiveLayout:
    """The folders of one archive; creates them when missing.

    Parameters
    ----------
    folder
        The archive folder.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.incoming_dir = self.folder / INCOMING_DIR
        self.instances_dir = self.folder / INSTANCES_DIR
        self.incoming_dir.mkdir(parents=True, exist_ok=True)
        self.instances_dir.mkdir(parents=True, exist_ok=True)
        self._made_folders: set[Path] = set()

    def new_incoming_path(self) -> Path:
        """A fresh file name in ``incoming/`` for a file being written (same file system)."""
        return self.incoming_dir / f"{uuid.uuid4().hex}.part"

    def relative_path_for(self, header: InstanceHeader) -> Path:
        """Where an instance lives, relative to the archive folder."""
        return (
            Path(INSTANCES_DIR)
            / safe_name(header.study_uid)
            / safe_name(header.series_uid)
            / f"{safe_name(header.sop_uid)}.dcm"
        )

    def move_into_place(self, incoming: Path, relative: Path) -> set[Path]:
        """Rename ``incoming`` to ``relative`` (replacing a file there).

        Returns
        -------
        set of Path
            The folders whose entries changed (the target's, and the parents of folders
            created for it): those to fsync for the rename to survive a power cut.
        """
        target = self.folder / relative
        changed = {target.parent}
        if target.parent not in self._made_folders:
            changed |= self._make_folder(target.parent)
        try:
            os.replace(incoming, target)
        except FileNotFoundError:
            if not incoming.exists():
                raise
            changed |= self._make_folder(target.parent)  # removed since it was made
            os.replace(incoming, target)
        return changed

    def _make_folder(self, folder: Path) -> set[Path]:
        """Create ``folder`` and its missing parents; return the folders that gained one."""
        missing: list[Path] = []
        current = folder
        while not current.is_dir():
            missing.append(current)
            current = current.parent
        for path in reversed(missing):
            path.mkdir(exist_ok=True)
        self._made_folders.add(folder)
        return {path.parent for path in missing}

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

"""Archive folders named on the command line: readers open only existing archives."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from mskworkbench.cli import CommandError

if TYPE_CHECKING:
    from MSKPriorsLib.archive import LocalArchive


def not_an_archive_message(folder: Path, reason: str) -> str:
    """The user's message for ``folder`` refused as an archive, with the way to make one."""
    if not Path(folder).is_dir():
        return reason
    return (
        f"{reason}; nothing was written to it. To archive the DICOM files it holds, run: "
        f"mskwb import {folder} --archive NEW_ARCHIVE"
    )


def check_archive_folder(folder: Path) -> None:
    """Refuse, as a :class:`~mskworkbench.cli.CommandError`, a folder that is no archive."""
    from MSKPriorsLib.archive import NotAnArchiveError, check_existing_archive

    try:
        check_existing_archive(folder)
    except NotAnArchiveError as error:
        raise CommandError(not_an_archive_message(folder, str(error))) from error


def open_archive_to_read(folder: Path) -> LocalArchive:
    """Open an existing archive for a command that only reads it; create nothing."""
    from MSKPriorsLib.archive import LocalArchive

    check_archive_folder(folder)
    return LocalArchive.open_existing(folder)

"""Where the public test and demo DICOM files live (``../shared/data`` beside the project).

The folder can be named with the environment variable ``MSKWB_SHARED_DATA``. Tests require it;
in CI (``CI`` set) its absence is an error, never a skip.
"""

from __future__ import annotations

import os
from pathlib import Path

ENVIRONMENT_VARIABLE = "MSKWB_SHARED_DATA"
PROJECT_ROOT = Path(__file__).resolve().parent.parent


class SharedDataMissingError(FileNotFoundError):
    """The shared data folder, or a file expected in it, is not there."""


def candidate_folders() -> list[Path]:
    """Folders searched for the shared data, in order."""
    candidates = []
    if os.environ.get(ENVIRONMENT_VARIABLE):
        candidates.append(Path(os.environ[ENVIRONMENT_VARIABLE]))
    candidates.append(PROJECT_ROOT.parent / "shared" / "data")
    candidates.append(Path.cwd().parent / "shared" / "data")
    return candidates


def find_shared_data() -> Path | None:
    """Return the shared data folder, or None when it is not on this machine."""
    for folder in candidate_folders():
        if (folder / "MANIFEST.md").is_file():
            return folder.resolve()
    return None


def shared_data_path(*parts: str) -> Path:
    """Return a path inside the shared data folder, checking that it exists.

    Raises
    ------
    SharedDataMissingError
        If the folder or the named file is missing; the message lists where it looked.
    """
    folder = find_shared_data()
    if folder is None:
        searched = ", ".join(str(path) for path in candidate_folders())
        raise SharedDataMissingError(
            f"the shared data folder was not found (looked in: {searched}); "
            f"set {ENVIRONMENT_VARIABLE} to the folder that holds MANIFEST.md"
        )
    path = folder.joinpath(*parts)
    if not path.exists():
        raise SharedDataMissingError(f"{path} is missing from the shared data folder")
    return path

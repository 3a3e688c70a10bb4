"""Commands that only read an archive refuse a folder that is not one and create nothing in it;
commands that write into an archive still create it in an empty or missing folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from MSKPriorsLib.archive import LocalArchive, NotAnArchiveError
from mskworkbench.cli import main
from mskworkbench.web.sources import ArchiveSource


@pytest.fixture
def dicom_folder(shared_data: Path, tmp_path: Path) -> Path:
    """A plain folder of real DICOM files that was never imported into an archive."""
    folder = tmp_path / "cd-import"
    folder.mkdir()
    for name in ("RG3_JPLL.dcm", "RG2_JPLL.dcm"):
        shutil.copy(shared_data / "wg04" / name, folder / name)
    return folder


def _listing(folder: Path) -> list[str]:
    return sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*"))


READ_ONLY_COMMANDS = [
    ("studies", "--archive", "{folder}"),
    ("studies", "--archive", "{folder}", "--patient-id", "X", "--json"),
    ("priors", "--archive", "{folder}", "--patient-id", "X"),
    ("plan", "--archive", "{folder}", "--patient-id", "X", "--out", "{out}"),
    ("reconstruct", "1.2.3.4", "--archive", "{folder}", "--out", "{out}"),
]


@pytest.mark.parametrize("argv", READ_ONLY_COMMANDS, ids=lambda argv: argv[0])
def test_read_only_commands_refuse_a_plain_dicom_folder(
    argv: tuple[str, ...],
    dicom_folder: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    before = _listing(dicom_folder)
    filled = [a.format(folder=dicom_folder, out=tmp_path / "out") for a in argv]

    status = main(filled)

    assert status == 2
    captured = capsys.readouterr()
    (line,) = captured.err.strip().splitlines()
    assert f"{dicom_folder} is not an MSK Workbench archive" in line
    assert f"mskwb import {dicom_folder} --archive NEW_ARCHIVE" in line
    assert "No studies found" not in captured.out
    assert _listing(dicom_folder) == before
    assert not (tmp_path / "out").exists()


def test_the_suggested_import_makes_an_archive_the_readers_accept(
    dicom_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    archive = tmp_path / "new-archive"  # missing: the import creates it

    assert main(["import", str(dicom_folder), "--archive", str(archive), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["stored"] == 2

    assert main(["studies", "--archive", str(archive), "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 2


def test_fetch_and_import_still_create_an_archive_in_an_empty_folder(
    dicom_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["import", str(dicom_folder), "--archive", str(empty)]) == 0
    assert (empty / "index.sqlite").is_file()
    capsys.readouterr()

    # fetch reaches no PACS here, but it opens (creates) its archive folder first.
    missing = tmp_path / "fetched"
    main(["fetch", "--archive", str(missing), "--pacs", "http://127.0.0.1:9/dicom-web",
          "--study", "1.2.3"])  # fmt: skip
    assert (missing / "index.sqlite").is_file()


def test_the_library_and_the_viewer_refuse_a_folder_that_is_no_archive(
    dicom_folder: Path, tmp_path: Path
) -> None:
    before = _listing(dicom_folder)
    with pytest.raises(NotAnArchiveError, match="is not an MSK Workbench archive"):
        LocalArchive.open_existing(dicom_folder)
    with pytest.raises(NotAnArchiveError, match="is not an MSK Workbench archive"):
        ArchiveSource(dicom_folder)
    with pytest.raises(NotAnArchiveError, match="does not exist"):
        LocalArchive.open_existing(tmp_path / "missing")
    assert _listing(dicom_folder) == before
    assert not (tmp_path / "missing").exists()

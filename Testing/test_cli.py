"""The ``mskwb`` console script is installed and answers ``--help``."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def test_mskwb_help_lists_the_commands() -> None:
    executable = shutil.which("mskwb") or str(Path(sys.executable).parent / "mskwb")
    result = subprocess.run([executable, "--help"], capture_output=True, text=True, timeout=120)

    assert result.returncode == 0, result.stderr
    assert "usage: mskwb" in result.stdout
    assert "orthanc" in result.stdout


def test_a_file_where_a_folder_is_expected_gives_one_line(tmp_path: Path) -> None:
    not_a_folder = tmp_path / "archive"
    not_a_folder.write_text("a file, not an archive folder")
    executable = shutil.which("mskwb") or str(Path(sys.executable).parent / "mskwb")

    result = subprocess.run(
        [executable, "import", str(tmp_path), "--archive", str(not_a_folder)],
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert str(not_a_folder) in result.stderr
    assert not_a_folder.read_text() == "a file, not an archive folder"


def test_an_empty_patient_id_is_refused_not_read_as_every_patient(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from mskworkbench.cli import main

    status = main(["studies", "--archive", str(tmp_path), "--patient-id", " "])

    assert status == 2
    assert "empty patient ID matches no patient" in capsys.readouterr().err

"""Malformed command-line inputs are refused with one line naming the culprit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from MSKPriorsLib.archive import LocalArchive
from mskworkbench.cli import main


@pytest.mark.parametrize(
    ("command", "port"), [("serve", "80000"), ("serve", "-1"), ("orthanc", "65536")]
)
def test_a_port_out_of_range_is_a_usage_error(
    command: str, port: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    source = ["--archive", str(tmp_path)] if command == "serve" else ["--storage", str(tmp_path)]
    with pytest.raises(SystemExit) as stopped:
        main([command, *source, "--port", port])
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert stopped.value.code == 2
    assert f"argument --port: port {port} is out of range (0 to 65535)" in error


@pytest.mark.parametrize("position", [[12, "abc", 3], [1, 2], "x"])
def test_a_malformed_landmark_names_the_file_and_the_point(
    position: object, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "knee_left.mrk.json"
    point = {"label": "hip_center", "position": position}
    path.write_text(json.dumps({"markups": [{"type": "Fiducial", "controlPoints": [point]}]}))
    status = main(["measure", "alignment", "--landmarks", str(path)])
    error = capsys.readouterr().err.strip()
    assert status == 2 and len(error.splitlines()) == 1
    assert str(path) in error and "'hip_center'" in error


def test_serve_says_an_archive_file_is_not_an_archive_folder(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    a_file = tmp_path / "archive.zip"
    a_file.write_bytes(b"not a folder")

    status = main(["serve", "--archive", str(a_file), "--port", "0"])

    error = capsys.readouterr().err.strip()
    assert status == 2 and len(error.splitlines()) == 1
    assert f"{a_file} is a file, not an archive folder" in error
    assert "does not exist" not in error


def test_serve_says_a_work_dir_file_is_not_a_folder(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    LocalArchive(tmp_path / "archive").close()  # an empty archive
    a_file = tmp_path / "work"
    a_file.write_text("")

    status = main(
        ["serve", "--archive", str(tmp_path / "archive"), "--work-dir", str(a_file), "--port", "0"]
    )

    error = capsys.readouterr().err.strip()
    assert status == 2 and len(error.splitlines()) == 1
    assert f"--work-dir {a_file} is a file, not a folder" in error
    assert "File exists" not in error

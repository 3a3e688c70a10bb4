"""The identity a landmark file names, read from real markups files and checked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from MSKPlannerLib.landmark_identity import (
    ExpectedIdentity,
    LandmarkIdentityError,
    check_landmark_files,
    check_markups_identity,
    identity_in_markups,
    identity_values,
)
from MSKPlannerLib.landmarks import read_markups_json, write_markups_json

CURRENT = ExpectedIdentity("MRN100", "SMITH^ANNA", "19600101", "1.2.3", {"1.2.3.1"})


@pytest.fixture
def a_markups_file(tmp_path: Path) -> Path:
    """A Slicer markups file of two hip landmarks, naming no identity."""
    path = tmp_path / "hip.mrk.json"
    points = {"hip_center": np.array([1.0, 2.0, 3.0]), "ankle_center": np.array([1.0, 2.0, -800])}
    write_markups_json(path, points, name="Hip")
    return path


def _with(path: Path, top: dict[str, Any], in_markup: dict[str, Any]) -> Path:
    """Add identity fields at the top level and in the first markup of a markups file."""
    document = json.loads(path.read_text())
    document.update(top)
    document["markups"][0].update(in_markup)
    path.write_text(json.dumps(document))
    return path


def test_slicers_own_file_names_no_identity(a_markups_file: Path) -> None:
    assert check_markups_identity("hip", a_markups_file.read_bytes(), CURRENT) == {}
    assert check_landmark_files([a_markups_file], CURRENT) == {a_markups_file: {}}


def test_every_value_anywhere_in_the_file_is_collected(a_markups_file: Path) -> None:
    _with(a_markups_file, {"PatientID": "MRN100"}, {"patient_id": "OTHER-999"})
    document = json.loads(a_markups_file.read_text())
    document["markups"][0]["controlPoints"][0]["Patient-Name"] = "SMITH^ANNA"
    document["markups"][0]["controlPoints"][1]["PatientName"] = "smith ^ anna"

    assert identity_values(document) == {
        "PatientID": ["MRN100", "OTHER-999"],
        "PatientName": ["SMITH^ANNA"],
    }


def test_a_file_naming_two_patients_is_refused_with_its_name(a_markups_file: Path) -> None:
    _with(a_markups_file, {"PatientID": "MRN100"}, {"PatientID": "OTHER-999"})

    with pytest.raises(LandmarkIdentityError) as refused:
        check_landmark_files([a_markups_file], CURRENT)

    message = str(refused.value)
    assert message.startswith(f"{a_markups_file} names two patients: PatientID")
    assert "MRN100 and OTHER-999" in message
    # Without a study to compare with, the two patients are refused all the same.
    with pytest.raises(LandmarkIdentityError, match="names two patients"):
        check_landmark_files([a_markups_file], None)


def test_two_studies_in_one_file_are_refused(a_markups_file: Path) -> None:
    _with(a_markups_file, {"StudyInstanceUID": "1.2.3"}, {"StudyInstanceUID": "1.2.4"})

    with pytest.raises(LandmarkIdentityError, match="names two studies: StudyInstanceUID"):
        identity_in_markups(json.loads(a_markups_file.read_text()))


def test_a_file_of_another_patient_is_refused_naming_the_field(a_markups_file: Path) -> None:
    _with(a_markups_file, {"PatientID": "OTHER-999"}, {})

    with pytest.raises(LandmarkIdentityError) as refused:
        check_landmark_files([a_markups_file], CURRENT)

    assert str(refused.value) == (
        f"{a_markups_file} is not of the current study: it names PatientID OTHER-999, "
        "the current study has MRN100"
    )


def test_a_file_naming_this_patient_is_read_as_usual(a_markups_file: Path) -> None:
    top = {"PatientID": "MRN100", "StudyInstanceUID": "1.2.3"}
    _with(a_markups_file, top, {"PatientName": "Smith^Anna", "PatientBirthDate": "1960-01-01"})

    named = check_landmark_files([a_markups_file], CURRENT)[a_markups_file]

    assert named == {
        "PatientID": "MRN100",
        "StudyInstanceUID": "1.2.3",
        "PatientName": "Smith^Anna",
        "PatientBirthDate": "1960-01-01",
    }
    assert set(read_markups_json(a_markups_file).points_ras_mm) == {"hip_center", "ankle_center"}


def test_bytes_that_are_not_json_are_left_to_the_markups_reader(tmp_path: Path) -> None:
    broken = tmp_path / "broken.mrk.json"
    broken.write_bytes(b'{"PatientID": "OTHER-999"')

    assert check_landmark_files([broken, tmp_path / "missing.mrk.json"], CURRENT) == {broken: {}}

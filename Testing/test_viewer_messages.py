"""What the viewer tells the reader: short sentences, no raw exceptions or UIDs, no repeats."""

from __future__ import annotations

import json
from typing import Any

import pytest
import SimpleITK as sitk

from MSKPlannerLib.case_plan import PlanError
from MSKPlannerLib.landmark_identity import (
    ExpectedIdentity,
    LandmarkIdentityError,
    identity_in_markups,
    identity_mismatches,
)
from MSKPriorsLib.hanging_protocols import load_rules, plan_hanging
from MSKPriorsLib.records import PatientIdentity, SeriesRecord, StudyRecord
from mskworkbench.web.landmark_files import import_markups, refuse_other_identity
from mskworkbench.web.landmark_panel import identity_notice
from mskworkbench.web.plan_jobs import plan_failure_message

CURRENT = ExpectedIdentity("MRN100", "SMITH^ANNA", "19600101", "1.2.3", {"1.2.3.1"})


def test_a_python_error_of_a_plan_is_not_shown_to_the_reader() -> None:
    shown = plan_failure_message(ValueError("cannot convert float NaN to integer"))

    assert shown.startswith("The plan failed: ")
    assert "NaN" not in shown and "server log" in shown
    assert plan_failure_message(PlanError("the study has no CT series")) == (
        "The plan failed: The study has no CT series."
    )


def test_unfilled_views_name_the_study_by_role_not_by_uid() -> None:
    current = StudyRecord("1.2.840.99.1", PatientIdentity("P1"), modalities=("CT",))
    series = [SeriesRecord("1.2.840.99.1.1", "1.2.840.99.1", modality="SR")]

    plan = plan_hanging(load_rules(), current, series, [])

    assert plan.unfilled
    assert all("1.2.840" not in why for why in plan.unfilled.values())
    assert all("current study" in why for why in plan.unfilled.values())


def _markups(**identity: str) -> dict[str, Any]:
    point = {"label": "hip_center", "position": [0.0, 0.0, 0.0], "positionStatus": "defined"}
    return {"markups": [{"type": "Fiducial", "controlPoints": [point], **identity}]}


def test_identity_a_markups_file_names_is_found_and_compared() -> None:
    named = identity_in_markups(
        {**_markups(patient_id="MRN100"), "StudyInstanceUID": "1.2.3", "PatientName": ""}
    )

    assert named == {"StudyInstanceUID": "1.2.3", "PatientID": "MRN100"}
    assert identity_mismatches(named, CURRENT) == []
    assert identity_mismatches({"PatientName": "smith^anna"}, CURRENT) == []
    assert identity_mismatches({"PatientID": "MRN200"}, CURRENT) == [
        "it names PatientID MRN200, the current study has MRN100"
    ]
    assert identity_mismatches({"SeriesInstanceUID": "9.9"}, CURRENT)
    # An empty PatientID matches nothing, not even an empty one named in the file.
    anonymous = ExpectedIdentity("")
    assert identity_mismatches({"PatientID": "MRN100"}, anonymous)


def test_a_landmark_file_of_another_patient_is_refused_before_anything_is_placed() -> None:
    content = json.dumps(_markups(PatientID="MRN200")).encode()
    image = sitk.Image(10, 10, 10, sitk.sitkInt16)

    with pytest.raises(ValueError, match="not of the current study: it names PatientID MRN200"):
        import_markups(None, "other.mrk.json", content, image, "the image", CURRENT)  # type: ignore[arg-type]


def test_a_landmark_file_naming_two_patients_is_refused_though_one_is_this_one() -> None:
    document = {**_markups(PatientID="OTHER-999"), "PatientID": "MRN100"}
    content = json.dumps(document).encode()
    image = sitk.Image(10, 10, 10, sitk.sitkInt16)

    with pytest.raises(LandmarkIdentityError, match="names two patients: PatientID MRN100 and"):
        identity_in_markups(document)
    with pytest.raises(
        ValueError, match=r"both\.mrk\.json names two patients: PatientID MRN100 and"
    ):
        import_markups(None, "both.mrk.json", content, image, "the image", CURRENT)  # type: ignore[arg-type]
    # The same name written two ways is one patient.
    same = {**_markups(PatientName="smith ^ anna"), "PatientName": "SMITH^ANNA"}
    assert refuse_other_identity("same", json.dumps(same).encode(), CURRENT) == {
        "PatientName": "SMITH^ANNA"
    }


def test_the_notice_says_for_whom_and_that_the_file_names_no_patient() -> None:
    study = StudyRecord(
        "1.2.3",
        PatientIdentity("MRN100", name="SMITH^ANNA", birth_date="19600101"),
        study_date="20240110",
    )

    unnamed = identity_notice(study, [])
    named = identity_notice(study, ["PatientID"])

    assert unnamed.startswith("Measured for SMITH, ANNA · born 1960-01-01 · ID MRN100")
    assert "2024-01-10" in unnamed and "does not name its patient" in unnamed
    assert "The file names its PatientID, which matches this study." in named
    assert "does not name" not in named


def test_the_notice_lists_every_field_the_file_named_and_matched() -> None:
    study = StudyRecord("1.2.3", PatientIdentity("MRN100", name="SMITH^ANNA"))
    named = sorted(
        refuse_other_identity(
            "named.mrk.json",
            json.dumps({**_markups(StudyInstanceUID="1.2.3"), "PatientID": "MRN100"}).encode(),
            CURRENT,
        )
    )

    notice = identity_notice(study, named)

    assert notice.endswith(
        "The file names its PatientID and StudyInstanceUID, which match this study."
    )
    assert "does not name" not in notice
    three = identity_notice(study, ["PatientBirthDate", "PatientID", "PatientName"])
    assert "its PatientBirthDate, PatientID and PatientName, which match" in three

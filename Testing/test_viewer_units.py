"""Small pieces of the browser viewer that need neither a browser nor a server."""

from __future__ import annotations

import pytest

from MSKPriorsLib.hanging_protocols import HangingPlan, ViewAssignment
from MSKPriorsLib.prior_discovery import PriorSearch, RankedPrior
from MSKPriorsLib.records import PatientIdentity, StudyRecord
from mskworkbench.web.case_workflow import (
    preset_for,
    rejected_notice,
    shown_person_name,
    study_row,
)
from mskworkbench.web.hanging_read import view_labels
from mskworkbench.web.measurements import format_value
from mskworkbench.web.sources import search_pattern


def test_page_presets_map_to_the_display_presets_of_each_modality() -> None:
    assert preset_for("bone", "CT") == "ct-bone"
    assert preset_for("soft_tissue", "CT") == "ct-soft-tissue"
    # MR intensities are not calibrated: both buttons use the automatic MR window.
    assert preset_for("bone", "MR") == preset_for("soft_tissue", "MR") == "mr-auto"
    assert preset_for("bone", "DX") == "radiograph"
    with pytest.raises(KeyError, match="lung"):
        preset_for("lung", "CT")


def test_search_text_becomes_a_patient_id_pattern() -> None:
    assert search_pattern("") == ""
    assert search_pattern(" 1234 ") == "*1234*"
    assert search_pattern("12?4*") == "12?4*"


def test_study_rows_show_readable_dates_and_names() -> None:
    study = StudyRecord(
        "1.2.3",
        PatientIdentity("P1", name="DOE^JANE"),
        study_date="20240131",
        modalities=("CT", "SR"),
    )

    row = study_row(study)

    assert row["date"] == "2024-01-31"
    assert row["patient_name"] == "DOE, JANE"
    assert row["modalities"] == "CT, SR"


def test_study_rows_tell_two_people_under_one_patient_id_apart() -> None:
    jane = StudyRecord("1.2.3", PatientIdentity("P1", name="DOE^Jane", birth_date="19700305"))
    john = StudyRecord("1.2.4", PatientIdentity("P1", name="DOE^John", birth_date="19510611"))

    jane_row, john_row = study_row(jane), study_row(john)

    assert jane_row["patient_label"] == "DOE, Jane · born 1970-03-05 · ID P1"
    assert john_row["patient_label"] == "DOE, John · born 1951-06-11 · ID P1"
    assert jane_row["birth_date"] == "1970-03-05"


def test_study_rows_say_when_identity_is_missing() -> None:
    row = study_row(StudyRecord("1.2.5", PatientIdentity(""), study_date="20260201"))

    assert row["patient_label"] == "(no name) · no birth date · ID (no patient ID)"
    assert row["birth_date"] == ""


def test_person_names_are_shown_family_first() -> None:
    assert shown_person_name("DOE^JANE^Q^DR^PHD") == "DOE, DR JANE Q, PHD"
    assert shown_person_name("DOE") == "DOE"
    assert shown_person_name("^Jane") == "Jane"
    assert shown_person_name("YAMADA^TARO=山田^太郎") == "YAMADA, TARO"
    assert shown_person_name("") == ""


def test_measurement_values_carry_their_unit() -> None:
    assert format_value(176.04, "deg") == "176.0°"
    assert format_value(-9.96, "mm") == "-10.0 mm"


def test_view_labels_call_a_study_after_the_current_one_later_not_prior() -> None:
    patient = PatientIdentity("P1", name="DOE^JANE")
    current = StudyRecord("1.1", patient, study_date="20240101")
    earlier = StudyRecord("1.2", patient, study_date="20230101")
    after = StudyRecord("1.3", patient, study_date="20250101")
    search = PriorSearch(
        current,
        priors=[
            RankedPrior(1, earlier, 80.0, (), ("archive",), 365),
            RankedPrior(2, after, -29.0, (), ("archive",), -366),
        ],
    )
    views = [
        ("Red", "current", 0, "1.1"),
        ("Yellow", "prior", 1, "1.2"),
        ("Green", "prior", 2, "1.3"),
    ]
    plan = HangingPlan(
        "rule",
        "2x2",
        [
            ViewAssignment(v, role, rank, study, "s" + study, "Axial", "bone")
            for v, role, rank, study in views
        ],
    )

    labels = view_labels(plan, search)

    assert labels == {
        "Red": "Current · 2024-01-01 · Axial",
        "Yellow": "Prior #1 · 2023-01-01 · Axial",
        "Green": "Later #2 · 2025-01-01 · Axial",
    }


def test_the_rejected_studies_notice_counts_in_words() -> None:
    assert rejected_notice(1).startswith("1 study under the same PatientID is not offered")
    assert rejected_notice(3).startswith("3 studies under the same PatientID are not offered")

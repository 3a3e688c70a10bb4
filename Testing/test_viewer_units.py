"""Small pieces of the browser viewer that need neither a browser nor a server."""

from __future__ import annotations

import pytest

from MSKPriorsLib.records import PatientIdentity, StudyRecord
from mskworkbench.web.case_workflow import preset_for, study_row
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
    assert row["patient_name"] == "DOE JANE"
    assert row["modalities"] == "CT, SR"


def test_measurement_values_carry_their_unit() -> None:
    assert format_value(176.04, "deg") == "176.0 °"
    assert format_value(-9.96, "mm") == "-10.0 mm"

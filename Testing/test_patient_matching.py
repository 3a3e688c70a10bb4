"""Patient matching: only a non-empty PatientID with agreeing issuer, cross-checked on name and
birth date; conflicts are reported with the attributes that differ."""

from __future__ import annotations

import pytest

from MSKPriorsLib.patient_matching import (
    CANDIDATE_NO_PATIENT_ID,
    DIFFERENT_PATIENT_ID,
    IDENTITY_CONFLICT,
    ISSUER_DIFFERS,
    MATCHED,
    NO_PATIENT_ID,
    match_patient,
    normalise_birth_date,
    person_name_parts,
)
from MSKPriorsLib.records import PatientIdentity

CURRENT = PatientIdentity("PAT-7", "HOSP-A", "Doe^Jane^Q", "19650412")


def test_same_identity_matches_and_says_what_was_checked() -> None:
    result = match_patient(CURRENT, PatientIdentity("PAT-7", "HOSP-A", "DOE^JANE^Q", "19650412"))

    assert result.matched
    assert result.code == MATCHED
    assert result.mismatches == ()
    assert "PatientName and PatientBirthDate agree" in result.reason


def test_name_comparison_ignores_case_spacing_and_trailing_carets() -> None:
    candidate = PatientIdentity("PAT-7", "HOSP-A", "  doe ^ jane ^^^", "19650412")

    assert match_patient(CURRENT, candidate).matched


def test_empty_current_patient_id_matches_nothing_even_an_empty_candidate() -> None:
    empty = PatientIdentity("", "2.16.756.5.30.1.149.1.2.1.1", "", "")

    result = match_patient(empty, empty)

    assert not result.matched
    assert result.code == NO_PATIENT_ID
    assert "empty PatientID" in result.reason


def test_whitespace_only_patient_id_is_empty() -> None:
    result = match_patient(CURRENT, PatientIdentity("   ", "HOSP-A", "Doe^Jane", "19650412"))

    assert not result.matched
    assert result.code == CANDIDATE_NO_PATIENT_ID


def test_different_patient_id_does_not_match() -> None:
    result = match_patient(CURRENT, PatientIdentity("PAT-8", "HOSP-A", "Doe^Jane^Q", "19650412"))

    assert not result.matched
    assert result.code == DIFFERENT_PATIENT_ID


@pytest.mark.parametrize(
    ("current_issuer", "candidate_issuer"), [("HOSP-A", "HOSP-B"), ("HOSP-A", ""), ("", "HOSP-B")]
)
def test_issuer_that_differs_or_is_missing_on_one_side_does_not_match(
    current_issuer: str, candidate_issuer: str
) -> None:
    current = PatientIdentity("PAT-7", current_issuer, "Doe^Jane", "19650412")
    candidate = PatientIdentity("PAT-7", candidate_issuer, "Doe^Jane", "19650412")

    result = match_patient(current, candidate)

    assert not result.matched
    assert result.code == ISSUER_DIFFERS
    assert "IssuerOfPatientID" in result.reason


def test_name_mismatch_under_the_same_id_is_a_reported_conflict_without_the_names() -> None:
    result = match_patient(CURRENT, PatientIdentity("PAT-7", "HOSP-A", "Roe^John", "19650412"))

    assert not result.matched
    assert result.is_conflict
    assert result.code == IDENTITY_CONFLICT
    assert result.mismatches == ("PatientName",)
    assert "not loaded" in result.reason
    assert "ROE" not in result.reason.upper() and "JOHN" not in result.reason.upper()


def test_given_name_mismatch_is_a_conflict() -> None:
    result = match_patient(CURRENT, PatientIdentity("PAT-7", "HOSP-A", "Doe^John", "19650412"))

    assert result.mismatches == ("PatientName",)


def test_birth_date_mismatch_is_a_conflict() -> None:
    result = match_patient(CURRENT, PatientIdentity("PAT-7", "HOSP-A", "Doe^Jane", "19650421"))

    assert result.is_conflict
    assert result.mismatches == ("PatientBirthDate",)


def test_both_mismatches_are_listed() -> None:
    result = match_patient(CURRENT, PatientIdentity("PAT-7", "HOSP-A", "Roe^Jane", "19700101"))

    assert result.mismatches == ("PatientName", "PatientBirthDate")


def test_missing_name_or_birth_date_is_unchecked_not_a_conflict() -> None:
    result = match_patient(CURRENT, PatientIdentity("PAT-7", "HOSP-A", "", ""))

    assert result.matched
    assert result.unchecked == ("PatientName", "PatientBirthDate")
    assert "not available to cross-check" in result.reason


def test_old_style_birth_date_with_dots_compares_equal() -> None:
    assert normalise_birth_date("1965.04.12") == "19650412"
    candidate = PatientIdentity("PAT-7", "HOSP-A", "Doe^Jane", "1965.04.12")

    assert match_patient(CURRENT, candidate).matched


def test_person_name_uses_the_first_nonempty_representation() -> None:
    assert person_name_parts("Yamada^Tarou=山田^太郎=やまだ^たろう") == ("YAMADA", "TAROU")
    assert person_name_parts("=山田^太郎") == ("山田", "太郎")
    assert person_name_parts("") == ("", "")

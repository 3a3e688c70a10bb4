"""Prior ranking on constructed study records with a known expected order and reasons."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from MSKPriorsLib.prior_discovery import AFTER_CURRENT, SOURCES_DISAGREE, discover_priors
from MSKPriorsLib.prior_ranking import AFTER_CURRENT_PENALTY, score_relevance
from MSKPriorsLib.records import PatientIdentity, SeriesRecord, StudyRecord, shown_date

PATIENT = PatientIdentity("PAT-7", "", "Doe^Jane", "19650412")


def study(
    uid: str, date: str, modality: str, body_part: str, side: str = "", **kw: object
) -> StudyRecord:
    return StudyRecord(
        study_uid=uid,
        patient=kw.pop("patient", PATIENT),  # type: ignore[arg-type]
        study_date=date,
        modalities=(modality,) if modality else (),
        body_parts=(body_part,) if body_part else (),
        lateralities=(side,) if side else (),
        **kw,  # type: ignore[arg-type]
    )


@dataclass
class ListSource:
    """A study source over a fixed list of records, the shape of the archive and PACS clients."""

    name: str
    studies: list[StudyRecord]
    series: dict[str, list[SeriesRecord]] = field(default_factory=dict)
    fail: bool = False
    asked: list[str] = field(default_factory=list)

    def search_studies(
        self, *, patient_id: str | None = None, study_uid: str | None = None
    ) -> Sequence[StudyRecord]:
        self.asked.append(patient_id or study_uid or "")
        if self.fail:
            raise ConnectionError("connection refused")
        return [
            s
            for s in self.studies
            if patient_id in (None, s.patient.patient_id) and study_uid in (None, s.study_uid)
        ]

    def search_series(self, study_uid: str) -> Sequence[SeriesRecord]:
        return self.series.get(study_uid, [])


CURRENT = study("1.1", "20240610", "CT", "KNEE", "L", description="CT KNEE LEFT")


def test_ranking_order_and_reasons_on_known_studies() -> None:
    candidates = [
        study("2.old_same", "20180101", "CT", "KNEE", "L"),
        study("2.recent_same", "20240101", "CT", "KNEE", "L"),
        study("2.mr_same", "20231201", "MR", "KNEE", "L"),
        study("2.other_side", "20240301", "CT", "KNEE", "R"),
        study("2.related", "20240301", "CR", "LEG", "L"),
        study("2.unrelated", "20240501", "CT", "CHEST", ""),
        study("2.after", "20240701", "CT", "KNEE", "L"),
    ]
    source = ListSource("archive", [CURRENT, *candidates])

    result = discover_priors(CURRENT, [source])

    order = [prior.study.study_uid for prior in result.priors]
    assert order == [
        "2.recent_same",
        "2.old_same",
        "2.mr_same",
        "2.other_side",
        "2.related",
        "2.unrelated",
        "2.after",
    ]
    assert [prior.rank for prior in result.priors] == list(range(1, 8))
    scores = [prior.score for prior in result.priors]
    assert scores == sorted(scores, reverse=True)
    by_uid = {prior.study.study_uid: prior for prior in result.priors}
    assert by_uid["2.recent_same"].reasons[:3] == (
        "same body part (KNEE)",
        "same side (L)",
        "same modality (CT)",
    )
    assert by_uid["2.recent_same"].reasons[3] == "5 months before the current study"
    assert by_uid["2.old_same"].reasons[3] == "6.4 years before the current study"
    assert by_uid["2.mr_same"].reasons[2] == "compatible modality (MR for CT)"
    assert by_uid["2.other_side"].reasons[1] == "opposite side (R, current L)"
    assert by_uid["2.related"].reasons[0].startswith("related body part (LEG")
    assert by_uid["2.unrelated"].reasons[0] == "different body part (CHEST, current KNEE)"
    assert "after the current study" in by_uid["2.after"].reason
    assert by_uid["2.after"].score < 0
    assert by_uid["2.recent_same"].days_before_current == 161
    assert result.rejected == [] and result.reason == ""
    assert source.asked == ["PAT-7"]


def test_later_study_can_be_excluded_with_its_reason() -> None:
    later = study("2.after", "20240701", "CT", "KNEE", "L")
    result = discover_priors(CURRENT, [ListSource("archive", [later])], include_later=False)

    assert result.priors == []
    assert [item.code for item in result.excluded] == [AFTER_CURRENT]
    assert result.excluded[0].reason.startswith("taken 21 days after the current study")


def test_score_parts_add_up_to_100_for_a_same_day_perfect_match() -> None:
    same_day = study("2.x", "20240610", "CT", "KNEE", "L")

    relevance = score_relevance(CURRENT, same_day)

    assert relevance.score == pytest.approx(100.0)
    assert relevance.reasons[3] == "same day as the current study"
    later = score_relevance(CURRENT, study("2.y", "20250610", "CT", "KNEE", "L"))
    assert later.score == pytest.approx(85.0 - AFTER_CURRENT_PENALTY)


def test_body_part_and_side_are_read_from_the_description_when_missing() -> None:
    prior = study("2.d", "20230610", "CT", "", description="CT Knie links")

    relevance = score_relevance(CURRENT, prior)

    assert relevance.reasons[0] == "same body part (KNEE) (read from the study description)"
    assert relevance.reasons[1] == "same side (L) (read from the study description)"


def test_same_study_on_two_sources_is_one_prior_listing_both() -> None:
    on_pacs = study("2.dup", "20230101", "CT", "", number_of_instances=300)
    in_archive = study("2.dup", "20230101", "CT", "KNEE", "L", number_of_instances=120)
    pacs = ListSource("pacs", [on_pacs])
    archive = ListSource("archive", [in_archive])

    result = discover_priors(CURRENT, [pacs, archive])

    assert len(result.priors) == 1
    prior = result.priors[0]
    assert prior.sources == ("pacs", "archive")
    assert prior.study.body_parts == ("KNEE",)
    assert prior.study.number_of_instances == 300


def test_series_fill_in_body_part_laterality_and_modality() -> None:
    bare = study("2.bare", "20230101", "", "")
    series = {
        "2.bare": [
            SeriesRecord("2.bare.1", "2.bare", "MR", 1, "PD cor", "KNEE", "L", 30),
            SeriesRecord("2.bare.2", "2.bare", "SR", 99, "report"),
        ]
    }

    result = discover_priors(CURRENT, [ListSource("pacs", [bare], series)])

    prior = result.priors[0]
    assert prior.study.body_parts == ("KNEE",)
    assert prior.study.lateralities == ("L",)
    assert prior.reasons[:3] == (
        "same body part (KNEE)",
        "same side (L)",
        "compatible modality (MR for CT)",
    )
    assert [s.series_uid for s in prior.series] == ["2.bare.1", "2.bare.2"]


def test_identity_conflicts_are_rejected_with_reason_never_ranked() -> None:
    other_name = study(
        "2.n",
        "20230101",
        "CT",
        "KNEE",
        patient=PatientIdentity("PAT-7", "", "Roe^John", "19650412"),
    )
    other_birth = study(
        "2.b",
        "20230101",
        "CT",
        "KNEE",
        patient=PatientIdentity("PAT-7", "", "Doe^Jane", "19990101"),
    )
    other_issuer = study(
        "2.i",
        "20230101",
        "CT",
        "KNEE",
        patient=PatientIdentity("PAT-7", "ELSEWHERE", "Doe^Jane", "19650412"),
    )
    good = study("2.ok", "20230101", "CT", "KNEE")

    result = discover_priors(
        CURRENT, [ListSource("pacs", [other_name, other_birth, other_issuer, good])]
    )

    assert [p.study.study_uid for p in result.priors] == ["2.ok"]
    rejected = {item.study.study_uid: item for item in result.rejected}
    assert rejected["2.n"].code == "identity_conflict"
    assert rejected["2.n"].mismatches == ("PatientName",)
    assert rejected["2.b"].mismatches == ("PatientBirthDate",)
    assert rejected["2.i"].code == "issuer_differs"


def test_a_study_whose_copies_disagree_on_the_patient_is_rejected() -> None:
    good = study("2.split", "20230101", "CT", "KNEE")
    bad = study(
        "2.split", "20230101", "CT", "KNEE", patient=PatientIdentity("PAT-7", "", "Roe^John", "")
    )

    result = discover_priors(CURRENT, [ListSource("pacs", [good]), ListSource("archive", [bad])])

    assert result.priors == []
    assert result.rejected[0].code == SOURCES_DISAGREE
    assert "on archive" in result.rejected[0].reason


def test_empty_patient_id_searches_nothing_and_says_why() -> None:
    anonymous = study("1.anon", "20240610", "CT", "KNEE", patient=PatientIdentity("", "ISSUER"))
    source = ListSource(
        "pacs", [study("2.anon", "20230101", "CT", "KNEE", patient=PatientIdentity(""))]
    )

    result = discover_priors(anonymous, [source])

    assert result.priors == [] and result.rejected == []
    assert "empty PatientID" in result.reason
    assert source.asked == []


def test_a_failing_source_is_reported_and_the_others_still_answer() -> None:
    broken = ListSource("down", [], fail=True)
    working = ListSource("archive", [study("2.ok", "20230101", "CT", "KNEE")])

    result = discover_priors(CURRENT, [broken, working])

    assert [p.study.study_uid for p in result.priors] == ["2.ok"]
    assert result.source_errors == ["down: study search failed: connection refused"]


def test_json_view_carries_scores_and_reasons() -> None:
    result = discover_priors(
        CURRENT, [ListSource("archive", [study("2.ok", "20230101", "CT", "KNEE", "L")])]
    )

    data = result.to_dict()

    assert data["priors"][0]["rank"] == 1
    assert data["priors"][0]["reason"].startswith("same body part (KNEE); same side (L)")
    assert data["priors"][0]["identity"]["matched"] is True
    assert data["current"]["study_uid"] == "1.1"


def test_study_dates_are_shown_as_iso_dates() -> None:
    assert shown_date("20250114") == "2025-01-14"
    assert shown_date("") == "no date"
    assert shown_date("", "unknown date") == "unknown date"
    assert shown_date("2025") == "2025"  # not a full DA value: shown as it is

"""Prior discovery on real DICOM files in the real local archive (and the real Orthanc), and
``mskwb priors`` end to end."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pydicom
import pytest
from dicom_factory import copy_series, study_uid_of

from MSKPriorsLib.archive import LocalArchive
from MSKPriorsLib.dicomweb import DicomWebClient
from MSKPriorsLib.hanging_protocols import load_rules
from MSKPriorsLib.prior_discovery import discover_priors, find_study
from MSKPriorsLib.servers import server_from_url
from mskworkbench.cli import main
from mskworkbench.local_orthanc import LocalOrthanc, free_loopback_port
from mskworkbench.web.hanging_read import plan_for


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.fixture(scope="module")
def anonymous_archive(
    tmp_path_factory: pytest.TempPathFactory, shared_data: Path
) -> tuple[Path, str]:
    """The TotalSegmentator CT (empty PatientID) archived as two studies.

    Its files also lack StudyInstanceUID and SeriesInstanceUID, which the archive refuses, so
    they are archived as copies given new UIDs; the PatientID stays empty.
    """
    folder = tmp_path_factory.mktemp("anonymous")
    source = sorted((shared_data / "totalsegmentator" / "ct_dicom").iterdir())
    assert pydicom.dcmread(source[0], stop_before_pixels=True).PatientID == ""
    current = copy_series(source, folder / "current")
    copy_series(source[:5], folder / "other", StudyDate="20200101")
    with LocalArchive(folder / "archive") as archive:
        for name in ("current", "other"):
            summary = archive.import_folder(folder / name)
            assert summary.failed == []
    return folder / "archive", study_uid_of(current)


@pytest.fixture(scope="module")
def patient_archive(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> dict[str, Any]:
    """A real head CT (PatientID PLASTIC) with a real prior, an unrelated study and a conflict."""
    folder = tmp_path_factory.mktemp("patient")
    source = sorted(
        p for p in (shared_data / "dcm_qa_ct" / "Philips_untilted").iterdir() if p.name != "DIRFILE"
    )
    prior = copy_series(
        source[:12], folder / "prior", StudyDate="20130206", StudyDescription="CT HEAD"
    )
    knee = copy_series(
        source[:3],
        folder / "knee",
        StudyDate="20140601",
        BodyPartExamined="KNEE",
        StudyDescription="CT KNEE",
    )
    conflict = copy_series(
        source[:2], folder / "conflict", StudyDate="20140101", PatientName="OTHER^PERSON"
    )
    archive_folder = folder / "archive"
    with LocalArchive(archive_folder) as archive:
        for files in (source, prior, knee, conflict):
            archive.import_folder(files[0].parent)
    return {
        "archive": archive_folder,
        "current": study_uid_of(source),
        "prior": study_uid_of(prior),
        "prior_files": prior,
        "knee": study_uid_of(knee),
        "conflict": study_uid_of(conflict),
    }


def test_empty_patient_id_gets_no_priors_even_with_another_empty_id_study(
    anonymous_archive: tuple[Path, str],
) -> None:
    folder, current_uid = anonymous_archive
    with LocalArchive(folder) as archive:
        assert len(archive.search_studies(patient_id="")) == 2
        current = find_study([archive], current_uid)
        result = discover_priors(current, [archive])

    assert current.patient.patient_id == ""
    assert result.priors == [] and result.rejected == []
    assert "empty PatientID" in result.reason


def test_empty_patient_id_study_still_gets_its_own_series_and_hangs(
    anonymous_archive: tuple[Path, str],
) -> None:
    folder, current_uid = anonymous_archive
    with LocalArchive(folder) as archive:
        current = find_study([archive], current_uid)
        result = discover_priors(current, [archive])
        archived = archive.search_series(current_uid)

    plan = plan_for(load_rules(), result, result.priors)

    assert [s.series_uid for s in result.current_series] == [s.series_uid for s in archived]
    assert result.current.modalities == ("CT",)
    assert result.priors == [] and "empty PatientID" in result.reason
    assert plan.assignments and plan.unfilled == {}
    assert {a.series_uid for a in plan.assignments} == {archived[0].series_uid}


def test_cli_reports_no_priors_for_the_empty_patient_id(
    anonymous_archive: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    folder, current_uid = anonymous_archive

    status, out, _ = run_cli(
        capsys, "priors", "--archive", str(folder), "--study", current_uid, "--json"
    )

    data = json.loads(out)
    assert status == 0
    assert data["current"]["study_uid"] == current_uid
    assert data["priors"] == [] and data["rejected"] == []
    assert "empty PatientID" in data["reason"]


def test_real_prior_ranks_above_a_more_recent_unrelated_body_part(
    patient_archive: dict[str, Any],
) -> None:
    with LocalArchive(patient_archive["archive"]) as archive:
        current = find_study([archive], patient_archive["current"])
        result = discover_priors(current, [archive])

    assert [p.study.study_uid for p in result.priors] == [
        patient_archive["prior"],
        patient_archive["knee"],
    ]
    best, unrelated = result.priors
    assert best.reasons[0] == "same body part (BRAIN)"
    assert best.reasons[2] == "same modality (CT)"
    assert best.reasons[3] == "2.0 years before the current study"
    assert unrelated.reasons[0] == "different body part (KNEE, current BRAIN)"
    assert best.score > unrelated.score
    assert best.sources == ("archive",)
    assert best.series and best.series[0].number_of_instances == 12
    assert [r.study.study_uid for r in result.rejected] == [patient_archive["conflict"]]
    assert result.rejected[0].mismatches == ("PatientName",)


def test_cli_text_and_json_end_to_end(
    patient_archive: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    archive = str(patient_archive["archive"])

    status, text, _ = run_cli(capsys, "priors", "--archive", archive, "--patient-id", "PLASTIC")
    json_status, out, _ = run_cli(
        capsys,
        "priors",
        "--archive",
        archive,
        "--study",
        patient_archive["current"],
        "--json",
        "--hanging",
    )

    assert status == 0 and json_status == 0
    assert "Priors (2), most relevant first:" in text
    assert text.index(patient_archive["prior"]) < text.index(patient_archive["knee"])
    assert "same body part (BRAIN)" in text
    assert "Rejected, not loaded (1):" in text
    assert "PatientName differs" in text
    assert "OTHER" not in text
    data = json.loads(out)
    assert data["sources"] == ["archive"]
    assert [p["study"]["study_uid"] for p in data["priors"]] == [
        patient_archive["prior"],
        patient_archive["knee"],
    ]
    assert data["priors"][0]["rank"] == 1 and data["priors"][0]["reason"].startswith(
        "same body part (BRAIN)"
    )
    assert data["rejected"][0]["code"] == "identity_conflict"
    hanging = data["hanging_protocol"]
    assert hanging["rule"] == "ct-bone-compare"
    prior_views = {
        a["view"]: a["study_uid"] for a in hanging["assignments"] if a["role"] == "prior"
    }
    assert prior_views == {"Slice4": patient_archive["prior"], "Yellow": patient_archive["prior"]}


def test_cli_names_an_unknown_study_and_a_missing_archive(
    patient_archive: dict[str, Any], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    status, _, err = run_cli(
        capsys, "priors", "--archive", str(patient_archive["archive"]), "--study", "1.2.3.4"
    )
    missing_status, _, missing_err = run_cli(
        capsys, "priors", "--archive", str(tmp_path / "nowhere"), "--study", "1.2.3.4"
    )

    assert status == 2 and "study 1.2.3.4 was not found on archive" in err
    assert missing_status == 2 and "does not exist" in missing_err


@pytest.mark.pacs
def test_same_study_on_the_pacs_and_in_the_archive_is_one_prior(
    empty_orthanc: LocalOrthanc,
    patient_archive: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("MSKWB_PACS_USERNAME", empty_orthanc.username)
    monkeypatch.setenv("MSKWB_PACS_PASSWORD", empty_orthanc.password)
    server = server_from_url(empty_orthanc.dicomweb_url)
    with DicomWebClient(server) as client:
        client.store_instances([pydicom.dcmread(path) for path in patient_archive["prior_files"]])

    status, out, _ = run_cli(
        capsys,
        "priors",
        "--pacs",
        empty_orthanc.dicomweb_url,
        "--archive",
        str(patient_archive["archive"]),
        "--study",
        patient_archive["current"],
        "--json",
    )

    data = json.loads(out)
    assert status == 0
    assert data["sources"] == [server.name, "archive"]
    uids = [p["study"]["study_uid"] for p in data["priors"]]
    assert uids == [patient_archive["prior"], patient_archive["knee"]]
    assert data["priors"][0]["sources"] == [server.name, "archive"]
    assert data["source_errors"] == []


def test_an_unreachable_pacs_is_reported_and_the_archive_still_answers(
    patient_archive: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    dead_url = f"http://127.0.0.1:{free_loopback_port()}/dicom-web"

    status, out, err = run_cli(
        capsys,
        "priors",
        "--pacs",
        dead_url,
        "--archive",
        str(patient_archive["archive"]),
        "--study",
        patient_archive["current"],
        "--json",
    )

    data = json.loads(out)
    assert status == 0
    assert data["priors"][0]["study"]["study_uid"] == patient_archive["prior"]
    assert len(data["source_errors"]) == 1
    assert data["source_errors"][0].startswith("127.0.0.1: study search failed")
    assert "127.0.0.1: study search failed" in err

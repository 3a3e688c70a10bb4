"""``mskwb plan`` and ``mskwb measure`` refuse a demo landmark file that names another patient."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from MSKPlannerLib import demo_case
from mskworkbench.cli import main


@pytest.fixture(scope="module")
def demo_archive(tmp_path_factory: pytest.TempPathFactory) -> tuple[demo_case.DemoCase, Path]:
    """The demo patient (synthetic CT) in a local archive."""
    return demo_case.build_demo_archive(tmp_path_factory.mktemp("demo"))


def _named(case: demo_case.DemoCase, folder: Path, **identity: str) -> Path:
    """The demo landmark file with identity fields added at its top level."""
    document = json.loads(case.landmarks_file.read_text())
    document.update(identity)
    path = folder / "long_leg_left.mrk.json"
    path.write_text(json.dumps(document))
    return path


def _plan(archive: Path, case: demo_case.DemoCase, landmarks: Path, out_dir: Path) -> int:
    return main(
        [
            "plan",
            "--archive",
            str(archive),
            "--patient-id",
            case.patient_id,
            "--landmarks",
            str(landmarks),
            "--out",
            str(out_dir),
        ]
    )


def test_the_plan_refuses_landmarks_of_another_patient(
    demo_archive: tuple[demo_case.DemoCase, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    case, archive = demo_archive
    other = _named(case, tmp_path, PatientID="OTHER-999")

    status = _plan(archive, case, other, tmp_path / "out")

    assert status == 2
    error = capsys.readouterr().err
    assert str(other) in error
    assert f"it names PatientID OTHER-999, the current study has {case.patient_id}" in error
    assert not (tmp_path / "out" / "report.html").exists()
    stopped = json.loads((tmp_path / "out" / "plan.json").read_text())
    assert "OTHER-999" in json.dumps(stopped)
    assert stopped["measurements"]["rows"] == []


def test_the_plan_refuses_a_file_naming_two_patients(
    demo_archive: tuple[demo_case.DemoCase, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    case, archive = demo_archive
    document = json.loads(case.landmarks_file.read_text())
    document["PatientID"] = case.patient_id
    document["markups"][0]["PatientID"] = "OTHER-999"
    both = tmp_path / "both.mrk.json"
    both.write_text(json.dumps(document))

    status = _plan(archive, case, both, tmp_path / "out")

    assert status == 2
    error = capsys.readouterr().err
    assert f"{both} names two patients: PatientID {case.patient_id} and OTHER-999" in error


def test_measure_checks_the_file_against_the_radiograph_it_names(
    demo_archive: tuple[demo_case.DemoCase, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    case, _ = demo_archive
    image = case.dicom_folder / "current_cr" / "0001.dcm"
    other = _named(case, tmp_path, PatientID="OTHER-999")

    status = main(["measure", "alignment", "--landmarks", str(other), "--image", str(image)])

    assert status == 2
    assert "it names PatientID OTHER-999" in capsys.readouterr().err

    same = _named(
        case, tmp_path, PatientID=case.patient_id, StudyInstanceUID=case.current_study_uid
    )
    argv = ["measure", "alignment", "--landmarks", str(same), "--image", str(image), "--json"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["hka_deg"] == pytest.approx(case.expected["hka_deg"], abs=0.5)

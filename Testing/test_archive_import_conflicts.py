"""Importing files of instances already archived under another patient: reported, never merged."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pydicom
import pytest

from MSKPriorsLib.archive import LocalArchive
from MSKPriorsLib.archive_import import differing_patient_attributes
from MSKPriorsLib.records import PatientIdentity
from mskworkbench.cli import main


@pytest.fixture
def mr_head_slices(shared_data: Path) -> list[Path]:
    """Four real MR head slices."""
    return sorted((shared_data / "pacsman" / "mr_head").glob("*.dcm"))[:4]


@pytest.fixture
def archive_folder(tmp_path: Path, mr_head_slices: list[Path]) -> Path:
    """An archive holding the four slices as the scanner wrote them."""
    folder = tmp_path / "archive"
    with LocalArchive(folder) as archive:
        for path in mr_head_slices:
            archive.store_file(path)
    return folder


def _digests(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*.dcm"))
    }


def test_archived_instances_of_another_patient_are_reported_and_kept(
    archive_folder: Path,
    mr_head_slices: list[Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    original = pydicom.dcmread(mr_head_slices[0], stop_before_pixels=True)
    cd = tmp_path / "cd"
    cd.mkdir()
    changes = [
        ("1_another_id.dcm", {"PatientID": f"{original.PatientID}X"}),
        ("2_another_name.dcm", {"PatientName": "OTHER^PERSON"}),
        ("3_another_birth_date.dcm", {"PatientBirthDate": "19010101"}),
        ("4_same_patient.dcm", {"PatientName": f" {str(original.PatientName).lower()}^ "}),
    ]
    uids = []
    for source, (name, tags) in zip(mr_head_slices, changes, strict=True):
        dataset = pydicom.dcmread(source)
        for keyword, value in tags.items():
            setattr(dataset, keyword, value)
        dataset.save_as(cd / name)
        uids.append(str(dataset.SOPInstanceUID))
    before = _digests(archive_folder)

    status = main(["import", str(cd), "--archive", str(archive_folder)])
    captured = capsys.readouterr()
    assert status == 1
    assert captured.out.strip() == (
        "0 stored, 1 already archived, 0 not DICOM, 0 failed, "
        "3 archived under another patient (not imported)"
    )
    lines = captured.err.strip().splitlines()
    assert len(lines) == 3
    for line, (name, _), uid, attribute in zip(
        lines, changes, uids, ("PatientID", "PatientName", "PatientBirthDate"), strict=False
    ):
        assert line.startswith(f"mskwb import: {cd / name}: instance {uid} ")
        assert "already archived under another patient" in line and attribute in line
        assert "archived copy was kept" in line
        assert "OTHER^PERSON" not in line and "19010101" not in line
    assert _digests(archive_folder) == before

    status = main(["import", str(cd), "--archive", str(archive_folder), "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert status == 1 and summary["already_present"] == 1 and summary["stored"] == 0
    assert [message.split(": instance ")[0] for message in summary["patient_conflicts"]] == [
        str(cd / name) for name, _ in changes[:3]
    ]
    with LocalArchive(archive_folder) as archive:
        kept = archive.archived_patient(uids[0])
        assert kept is not None and kept.patient_id == str(original.PatientID)
        assert archive.archived_patient("1.2.3.4.5.6.7") is None
    assert _digests(archive_folder) == before


def test_a_second_import_of_the_same_files_is_not_a_conflict(
    archive_folder: Path, mr_head_slices: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    folder = mr_head_slices[0].parent
    cd = archive_folder.parent / "same"
    cd.mkdir()
    for path in mr_head_slices:
        shutil.copy(path, cd / path.name)
    status = main(["import", str(cd), "--archive", str(archive_folder)])
    captured = capsys.readouterr()
    assert status == 0 and captured.err == "" and folder.is_dir()
    assert captured.out.strip() == "0 stored, 4 already archived, 0 not DICOM, 0 failed"


def test_differing_patient_attributes_ignores_only_spelling_of_the_same_name() -> None:
    archived = PatientIdentity("123", "HOSP", "DOE^JANE", "19800101")
    assert (
        differing_patient_attributes(archived, PatientIdentity("123", "HOSP", "doe^jane^^")) == []
    )
    assert differing_patient_attributes(archived, PatientIdentity("124", "", "DOE^JOHN", "1")) == [
        "PatientID",
        "IssuerOfPatientID",
        "PatientName",
        "PatientBirthDate",
    ]

"""``mskwb studies --pacs`` lists the studies of a real Orthanc newest first, as the archive does."""

from __future__ import annotations

import json
from io import BytesIO
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid

from MSKPriorsLib.archive import LocalArchive
from MSKPriorsLib.dicomweb import DicomWebClient
from MSKPriorsLib.servers import PacsServer
from mskworkbench.cli import main
from mskworkbench.local_orthanc import LocalOrthanc

pytestmark = pytest.mark.pacs

PASSWORD_VARIABLE = "TEST_ORTHANC_PASSWORD"

#: (StudyDate, StudyTime, rank of the StudyInstanceUID among the six) of each study, in the
#: order they are stored: oldest first, so the newest-first listing is the reverse.
STUDIES = [
    ("", "", 0),
    ("20190301", "080000", 1),
    ("20210615", "101500", 3),
    ("20210615", "101500", 2),  # same date and time: the smaller UID is listed first
    ("20210615", "170000", 4),
    ("20240102", "090000", 5),
]


@pytest.fixture
def dated_studies(
    empty_orthanc: LocalOrthanc, shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> list[pydicom.Dataset]:
    """One real MR slice stored as six studies of one patient, each with its own date."""
    slice_path = sorted((shared_data / "pacsman" / "mr_head").glob("*.dcm"))[0]
    uids = sorted(generate_uid() for _ in STUDIES)
    datasets = []
    for date, time, rank in STUDIES:
        dataset = pydicom.dcmread(slice_path)
        dataset.StudyInstanceUID = uids[rank]
        dataset.SeriesInstanceUID = generate_uid()
        dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        dataset.StudyDate, dataset.StudyTime = date, time
        datasets.append(dataset)
    monkeypatch.setenv(PASSWORD_VARIABLE, empty_orthanc.password)
    server = PacsServer(
        "test-orthanc",
        empty_orthanc.dicomweb_url,
        "basic",
        empty_orthanc.username,
        password_env=PASSWORD_VARIABLE,
    )
    with DicomWebClient(server) as client:
        client.store_instances([_encoded(dataset) for dataset in datasets])
    return datasets


def _encoded(dataset: pydicom.Dataset) -> bytes:
    buffer = BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def test_pacs_studies_are_listed_newest_first_like_the_archive(
    empty_orthanc: LocalOrthanc,
    dated_studies: list[pydicom.Dataset],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("MSKWB_PACS_USERNAME", empty_orthanc.username)
    monkeypatch.setenv("MSKWB_PACS_PASSWORD", empty_orthanc.password)
    monkeypatch.delenv("MSKWB_PACS_TOKEN", raising=False)
    patient_id = str(dated_studies[0].PatientID)
    expected = [str(dataset.StudyInstanceUID) for dataset in reversed(dated_studies)]

    status = main(
        ["studies", "--pacs", empty_orthanc.dicomweb_url, "--patient-id", patient_id, "--json"]
    )
    listed = json.loads(capsys.readouterr().out)
    assert status == 0
    assert [study["study_uid"] for study in listed["studies"]] == expected

    archive_folder = tmp_path / "archive"
    with LocalArchive(archive_folder) as archive:
        for dataset in dated_studies:
            archive.store_dataset(dataset)
    status = main(["studies", "--archive", str(archive_folder), "--json"])
    local = json.loads(capsys.readouterr().out)
    assert status == 0 and [study["study_uid"] for study in local["studies"]] == expected

    status = main(["studies", "--pacs", empty_orthanc.dicomweb_url, "--patient-id", patient_id])
    lines = capsys.readouterr().out.strip().splitlines()
    assert status == 0 and [line.split()[-1] for line in lines] == expected

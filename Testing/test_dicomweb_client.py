"""Our DICOMweb client against the real Orthanc: search, retrieve into the archive, STOW, CLI."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import JPEG2000Lossless, generate_uid

from MSKPriorsLib.archive import LocalArchive
from MSKPriorsLib.dicomweb import DicomWebAuthError, DicomWebClient
from MSKPriorsLib.retrieval import TransferProgress, retrieve_into_archive, series_to_retrieve
from MSKPriorsLib.retrieval_multipart import CollectingReceiver
from MSKPriorsLib.servers import PacsServer
from mskworkbench.cli import main as mskwb
from mskworkbench.local_orthanc import LocalOrthanc

pytestmark = pytest.mark.pacs

PASSWORD_VARIABLE = "TEST_ORTHANC_PASSWORD"


def make_client(
    orthanc: LocalOrthanc, monkeypatch: pytest.MonkeyPatch, **options: int
) -> DicomWebClient:
    """A client for the Orthanc fixture, its password taken from the environment."""
    monkeypatch.setenv(PASSWORD_VARIABLE, orthanc.password)
    server = PacsServer(
        "test-orthanc",
        orthanc.dicomweb_url,
        "basic",
        orthanc.username,
        password_env=PASSWORD_VARIABLE,
    )
    return DicomWebClient(server, **options)


@pytest.fixture
def mr_head_files(shared_data: Path) -> list[Path]:
    """The 128 real MR head slices."""
    return sorted((shared_data / "pacsman" / "mr_head").glob("*.dcm"))


@pytest.fixture
def mr_head_on_pacs(
    empty_orthanc: LocalOrthanc, mr_head_files: list[Path], monkeypatch: pytest.MonkeyPatch
) -> pydicom.Dataset:
    """The MR head series stored (with STOW-RS) in the emptied Orthanc; returns slice 0's header."""
    with make_client(empty_orthanc, monkeypatch) as client:
        client.store_instances([path.read_bytes() for path in mr_head_files])
    return pydicom.dcmread(mr_head_files[0], stop_before_pixels=True)


def test_search_studies_series_and_instances_with_paging(
    empty_orthanc: LocalOrthanc, mr_head_on_pacs: pydicom.Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = make_client(empty_orthanc, monkeypatch, page_size=10)

    (study,) = client.search_studies(patient_id="PACSMAN1")
    (series,) = client.search_series(study.study_uid)
    instances = client.search_instances(study.study_uid, series.series_uid)
    by_uid = client.search_series(series_uid=series.series_uid)

    assert study.study_uid == mr_head_on_pacs.StudyInstanceUID and study.source == "test-orthanc"
    assert study.patient.patient_id == "PACSMAN1"
    assert study.patient.birth_date == str(mr_head_on_pacs.PatientBirthDate)
    assert study.modalities == ("MR",)
    assert (study.number_of_series, study.number_of_instances) == (1, 128)
    assert series.number_of_instances == 128 and series.modality == "MR"
    assert series.description == str(mr_head_on_pacs.SeriesDescription)
    orientation = [float(v) for v in mr_head_on_pacs.ImageOrientationPatient]
    assert series.extra["image_orientation_patient"] == orientation
    # 128 instances in pages of 10: every one once.
    assert len(instances) == 128 == len({i.sop_uid for i in instances})
    assert [i.instance_number for i in instances] == sorted(i.instance_number for i in instances)
    assert by_uid[0].study_uid == study.study_uid
    assert client.search_studies(patient_id="NOBODY") == []
    assert client.search_patients("PACSMAN1")[0].patient_id == "PACSMAN1"
    # QIDO-RS wildcards reach the server as wildcards, not as literal characters.
    assert [s.study_uid for s in client.search_studies(patient_id="PACS*")] == [study.study_uid]
    assert [s.study_uid for s in client.search_studies(patient_id="*MAN?")] == [study.study_uid]


def test_a_real_series_is_retrieved_into_the_archive_with_progress(
    empty_orthanc: LocalOrthanc,
    mr_head_on_pacs: pydicom.Dataset,
    mr_head_files: list[Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = make_client(empty_orthanc, monkeypatch)
    archive = LocalArchive(tmp_path / "archive")
    seen: list[TransferProgress] = []

    series = series_to_retrieve(client, study_uid=mr_head_on_pacs.StudyInstanceUID)
    result = retrieve_into_archive(client, archive, series, progress=seen.append)
    again = retrieve_into_archive(client, archive, series)

    paths = archive.instance_paths(mr_head_on_pacs.SeriesInstanceUID)
    original = {pydicom.dcmread(p).SOPInstanceUID: pydicom.dcmread(p) for p in mr_head_files[:5]}
    assert result.failures == [] and result.series[0].retrieved == 128
    assert result.bytes_received > 4_000_000
    assert len(paths) == 128
    for path in paths:
        stored = pydicom.dcmread(path)
        if stored.SOPInstanceUID in original:
            assert np.array_equal(stored.pixel_array, original[stored.SOPInstanceUID].pixel_array)
    assert max(p.instances_done for p in seen) == 128 == max(p.instances_total for p in seen)
    assert max(p.bytes_done for p in seen) == result.bytes_received
    assert (again.series[0].retrieved, again.series[0].already_present) == (0, 128)
    assert again.bytes_received == 0
    assert archive.search_studies(patient_id="PACSMAN1")[0].number_of_instances == 128


def test_jpeg2000_series_with_empty_patient_id_round_trips(
    empty_orthanc: LocalOrthanc, shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The public slices come with their study, series and SOP UIDs emptied; Orthanc needs
    # them, so they get new ones here. Pixel data and the empty PatientID stay as they are.
    study_uid, series_uid = generate_uid(), generate_uid()
    originals = []
    for path in sorted((shared_data / "totalsegmentator" / "ct_dicom").iterdir()):
        ds = pydicom.dcmread(path)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
        originals.append(ds)
    client = make_client(empty_orthanc, monkeypatch)
    client.store_instances(originals)
    archive = LocalArchive(tmp_path / "archive")

    result = retrieve_into_archive(
        client, archive, series_to_retrieve(client, series_uid=series_uid)
    )

    (study,) = archive.search_studies(study_uid=study_uid)
    paths = archive.instance_paths(series_uid)
    by_uid = {ds.SOPInstanceUID: ds for ds in originals}
    assert result.failures == [] and len(paths) == len(originals) == 20
    assert study.patient.patient_id == "" and not study.patient.is_identifiable
    for path in paths:
        stored = pydicom.dcmread(path)
        assert stored.file_meta.TransferSyntaxUID == JPEG2000Lossless
        assert np.array_equal(stored.pixel_array, by_uid[stored.SOPInstanceUID].pixel_array)
    # An empty patient ID names nobody: fetching by it is refused.
    with pytest.raises(ValueError, match="empty patient ID"):
        series_to_retrieve(client, patient_id="")


def test_metadata_frames_and_single_instances(
    empty_orthanc: LocalOrthanc,
    mr_head_on_pacs: pydicom.Dataset,
    mr_head_files: list[Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = make_client(empty_orthanc, monkeypatch)
    original = pydicom.dcmread(mr_head_files[7])
    study, series = original.StudyInstanceUID, original.SeriesInstanceUID

    metadata = client.retrieve_series_metadata(study, series)
    study_metadata = client.retrieve_study_metadata(study)
    (frame,) = client.retrieve_frames(study, series, original.SOPInstanceUID, [1])
    instance = client.retrieve_instance_dataset(study, series, original.SOPInstanceUID)
    whole_study = CollectingReceiver()
    parts = client.stream_study(study, whole_study)

    assert len(metadata) == 128 == len(study_metadata)
    assert {m["00080018"]["Value"][0] for m in metadata} >= {original.SOPInstanceUID}
    pixels = np.frombuffer(frame, dtype=original.pixel_array.dtype).reshape(
        original.pixel_array.shape
    )
    assert np.array_equal(pixels, original.pixel_array)
    assert np.array_equal(instance.pixel_array, original.pixel_array)
    assert parts == 128 == len(whole_study.parts)
    assert {h.content_type for h, _ in whole_study.parts} == {"application/dicom"}


def test_wrong_credentials_give_a_clear_error_without_retries(
    orthanc: LocalOrthanc, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSWORD_VARIABLE, "not-the-password")
    server = PacsServer(
        "test-orthanc",
        orthanc.dicomweb_url,
        "basic",
        orthanc.username,
        password_env=PASSWORD_VARIABLE,
    )
    client = DicomWebClient(server, retries=3, backoff_s=5.0)

    with pytest.raises(DicomWebAuthError, match=r"refused the credentials.*HTTP 401") as raised:
        client.search_studies()

    assert "test-orthanc" in str(raised.value) and "not-the-password" not in str(raised.value)


@pytest.mark.slow
def test_cli_studies_fetch_and_import(
    empty_orthanc: LocalOrthanc,
    mr_head_on_pacs: pydicom.Dataset,
    shared_data: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("MSKWB_PACS_USERNAME", empty_orthanc.username)
    monkeypatch.setenv("MSKWB_PACS_PASSWORD", empty_orthanc.password)
    monkeypatch.delenv("MSKWB_PACS_TOKEN", raising=False)
    archive = tmp_path / "archive"
    study_uid = str(mr_head_on_pacs.StudyInstanceUID)

    def run(*argv: str) -> tuple[int, str, str]:
        status = mskwb(list(argv))
        out, err = capsys.readouterr()
        return status, out, err

    listed = run(
        "studies", "--pacs", empty_orthanc.dicomweb_url, "--patient-id", "PACSMAN1", "--json"
    )
    fetched = run(
        "fetch",
        "--pacs",
        empty_orthanc.dicomweb_url,
        "--archive",
        str(archive),
        "--study",
        study_uid,
        "--json",
    )
    local = run("studies", "--archive", str(archive), "--study", study_uid, "--json")
    imported = run(
        "import",
        str(shared_data / "dcm_qa_ct" / "Philips_untilted"),
        "--archive",
        str(archive),
        "--json",
    )
    config = tmp_path / "servers.json"
    config.write_text(
        json.dumps(
            {
                "servers": [
                    {
                        "name": "local",
                        "url": empty_orthanc.dicomweb_url,
                        "auth": "basic",
                        "username": empty_orthanc.username,
                        "password_env": "LOCAL_PACS_PASSWORD",
                    }
                ]
            }
        )
    )
    monkeypatch.setenv("MSKWB_SERVERS", str(config))
    monkeypatch.setenv("LOCAL_PACS_PASSWORD", empty_orthanc.password)
    by_series = run(
        "fetch",
        "--pacs",
        "local",
        "--archive",
        str(tmp_path / "by-series"),
        "--series",
        str(mr_head_on_pacs.SeriesInstanceUID),
        "--json",
    )
    by_patient = run(
        "fetch",
        "--pacs",
        "local",
        "--archive",
        str(tmp_path / "by-patient"),
        "--patient-id",
        "PACSMAN1",
        "--json",
    )
    unknown = run("studies", "--pacs", "elsewhere")
    missing = run(
        "fetch",
        "--pacs",
        empty_orthanc.dicomweb_url,
        "--archive",
        str(archive),
        "--study",
        "1.2.3.4",
    )

    assert listed[0] == 0 and json.loads(listed[1])["studies"][0]["study_uid"] == study_uid
    assert fetched[0] == 0
    summary = json.loads(fetched[1])
    assert summary["series"][0]["retrieved"] == 128 and summary["failures"] == []
    assert "128/128 instances" in fetched[2]
    assert empty_orthanc.password not in fetched[1] + fetched[2]
    (study,) = json.loads(local[1])["studies"]
    assert study["source"] == "archive" and study["series"][0]["number_of_instances"] == 128
    assert imported[0] == 1  # the Philips folder holds a DICOMDIR-like file without UIDs
    assert json.loads(imported[1])["stored"] == 28
    assert missing[0] == 2 and "nothing found" in missing[2] and "1.2.3.4" in missing[2]
    assert json.loads(by_series[1])["source"] == "local"
    assert json.loads(by_series[1])["series"][0]["retrieved"] == 128
    assert json.loads(by_patient[1])["series"][0]["retrieved"] == 128
    assert unknown[0] == 2 and "no PACS server named 'elsewhere'" in unknown[2]


def test_several_series_in_flight(
    empty_orthanc: LocalOrthanc,
    mr_head_files: list[Path],
    shared_data: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = make_client(empty_orthanc, monkeypatch)
    series_uids = []
    for number in range(3):
        series_uid = generate_uid()
        datasets = [pydicom.dcmread(path) for path in mr_head_files[number * 20 : number * 20 + 20]]
        for ds in datasets:
            ds.SeriesInstanceUID, ds.SeriesNumber = series_uid, number + 1
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        client.store_instances(datasets)
        series_uids.append(series_uid)
    study_uid = str(pydicom.dcmread(mr_head_files[0], stop_before_pixels=True).StudyInstanceUID)
    archive = LocalArchive(tmp_path / "archive")
    seen: list[TransferProgress] = []

    result = retrieve_into_archive(
        client,
        archive,
        client.search_series(study_uid),
        max_series_in_flight=3,
        progress=seen.append,
    )

    assert result.failures == [] and len(result.series) == 3
    assert {s.series_uid for s in archive.search_series(study_uid)} == set(series_uids)
    assert all(len(archive.instance_paths(uid)) == 20 for uid in series_uids)
    assert max(p.series_done for p in seen) == 3 == seen[0].series_total
    assert max(p.instances_done for p in seen) == 60


FETCH_ONLY = """
import argparse, sys
from mskworkbench.commands import fetch
parser = argparse.ArgumentParser(prog="mskwb")
fetch.register(parser.add_subparsers())
arguments = parser.parse_args(sys.argv[1:])
sys.exit(arguments.func(arguments))
"""


@pytest.mark.slow
def test_two_fetch_processes_into_one_archive(
    empty_orthanc: LocalOrthanc, mr_head_on_pacs: pydicom.Dataset, tmp_path: Path
) -> None:
    archive = tmp_path / "archive"
    environment = {
        **os.environ,
        "MSKWB_PACS_USERNAME": empty_orthanc.username,
        "MSKWB_PACS_PASSWORD": empty_orthanc.password,
    }
    environment.pop("MSKWB_PACS_TOKEN", None)
    # Only the fetch command is loaded (the full CLI imports every command's dependencies).
    command = [
        sys.executable,
        "-c",
        FETCH_ONLY,
        "fetch",
        "--pacs",
        empty_orthanc.dicomweb_url,
        "--archive",
        str(archive),
        "--study",
        str(mr_head_on_pacs.StudyInstanceUID),
        "--json",
    ]
    processes = [
        subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    answers = [process.communicate(timeout=120) for process in processes]

    opened = LocalArchive(archive)
    rows = list(opened.iter_instance_rows())
    with sqlite3.connect(archive / "index.sqlite") as db:
        integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
    assert [p.returncode for p in processes] == [0, 0], [err.decode() for _, err in answers]
    assert integrity == "ok"
    assert len(rows) == 128 == len({sop for sop, _, _ in rows})
    for sop, path, size in rows:
        assert (archive / path).stat().st_size == size
        assert pydicom.dcmread(archive / path, stop_before_pixels=True).SOPInstanceUID == sop
    assert list(opened.incoming_dir.iterdir()) == []

"""The viewer's study search behaves the same on the real Orthanc as on the local archive."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from dicom_factory import copy_series, study_uid_of

from MSKPriorsLib.archive import LocalArchive
from MSKPriorsLib.dicomweb import DicomWebClient
from MSKPriorsLib.servers import server_from_url
from mskworkbench.local_orthanc import LocalOrthanc
from mskworkbench.web.sources import ArchiveSource, PacsSource, search_pattern

#: Three studies of two people: (PatientID, PatientName, AccessionNumber, StudyDate).
STUDIES = {
    "old_hip": ("MRN100", "SMITH^ANNA", "ACC7001", "20190304"),
    "new_knee": ("MRN100", "SMITH^ANNA", "ACC7002", "20240110"),
    "other": ("MRN200", "JONES^PAUL", "XR9999", "20210815"),
}


@pytest.fixture(scope="module")
def study_folders(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> dict[str, Path]:
    """One real CT slice written as each study of :data:`STUDIES` (new UIDs)."""
    folder = tmp_path_factory.mktemp("search")
    source = sorted(
        p for p in (shared_data / "dcm_qa_ct" / "Philips_untilted").iterdir() if p.name != "DIRFILE"
    )[:1]
    written = {}
    for key, (patient_id, name, accession, date) in STUDIES.items():
        written[key] = copy_series(
            source,
            folder / key,
            PatientID=patient_id,
            PatientName=name,
            AccessionNumber=accession,
            StudyDate=date,
        )[0].parent
    return written


@pytest.fixture
def both_sources(
    study_folders: dict[str, Path],
    empty_orthanc: LocalOrthanc,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[ArchiveSource, PacsSource, dict[str, str]]:
    """The studies in a local archive and on the emptied Orthanc; key -> StudyInstanceUID."""
    monkeypatch.setenv("MSKWB_PACS_USERNAME", empty_orthanc.username)
    monkeypatch.setenv("MSKWB_PACS_PASSWORD", empty_orthanc.password)
    with (
        LocalArchive(tmp_path / "archive") as archive,
        DicomWebClient(server_from_url(empty_orthanc.dicomweb_url)) as client,
    ):
        for folder in study_folders.values():
            archive.import_folder(folder)
            client.store_instances([pydicom.dcmread(path) for path in folder.iterdir()])
    uids = {key: study_uid_of(sorted(folder.iterdir())) for key, folder in study_folders.items()}
    pacs = PacsSource(empty_orthanc.dicomweb_url, tmp_path / "cache")
    return ArchiveSource(tmp_path / "archive"), pacs, uids


@pytest.mark.pacs
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("MRN100", ["new_knee", "old_hip"]),
        ("smith", ["new_knee", "old_hip"]),
        ("JONES^P*", ["other"]),
        ("ACC700?", ["new_knee", "old_hip"]),
        ("XR99", ["other"]),
        ("", ["new_knee", "other", "old_hip"]),
        ("nobody", []),
    ],
)
def test_pacs_and_archive_match_id_name_and_accession_newest_first(
    both_sources: tuple[ArchiveSource, PacsSource, dict[str, str]],
    text: str,
    expected: list[str],
) -> None:
    archive, pacs, uids = both_sources

    on_pacs = [study.study_uid for study in pacs.search(text)]
    in_archive = [study.study_uid for study in archive.search(text)]

    assert on_pacs == [uids[key] for key in expected]
    assert in_archive == on_pacs


def test_search_text_with_a_value_separator_or_control_character_is_refused() -> None:
    for text in ("MRN100\\MRN200", "MRN\n100", "MRN\x00"):
        with pytest.raises(ValueError, match="backslash or control"):
            search_pattern(text)
    assert search_pattern("O'BRIEN") == "*O'BRIEN*"

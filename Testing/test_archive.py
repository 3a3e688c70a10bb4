"""The local archive: real DICOM files in, the same records out, atomic and multi-process safe."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pydicom
import pytest

from MSKPriorsLib.archive import (
    CorruptInstanceError,
    LocalArchive,
    PatientConflictError,
    read_instance_header,
)


@pytest.fixture
def mr_head(shared_data: Path) -> list[Path]:
    """The 128 real MR head slices (one series)."""
    files = sorted((shared_data / "pacsman" / "mr_head").glob("*.dcm"))
    assert len(files) == 128
    return files


@pytest.fixture
def an_archive(tmp_path: Path) -> LocalArchive:
    """An empty archive folder."""
    return LocalArchive(tmp_path / "archive")


def _indexed_paths(archive: LocalArchive) -> list[str]:
    return [path for _, path, _ in archive.iter_instance_rows()]


def test_import_folder_indexes_a_real_series(an_archive: LocalArchive, mr_head: list[Path]) -> None:
    summary = an_archive.import_folder(mr_head[0].parent)
    again = an_archive.import_folder(mr_head[0].parent)

    studies = an_archive.search_studies(patient_id="PACSMAN1")
    series = an_archive.search_series(studies[0].study_uid)
    paths = an_archive.instance_paths(series[0].series_uid)
    first = pydicom.dcmread(mr_head[0])

    assert (summary.stored, summary.failed, again.stored, again.already_present) == (
        128,
        [],
        0,
        128,
    )
    assert len(studies) == 1 and studies[0].source == "archive"
    assert studies[0].patient.patient_id == "PACSMAN1"
    assert studies[0].patient.birth_date == str(first.PatientBirthDate)
    assert studies[0].modalities == ("MR",)
    assert (studies[0].number_of_series, studies[0].number_of_instances) == (1, 128)
    assert series[0].series_uid == first.SeriesInstanceUID and series[0].source == "archive"
    assert series[0].number_of_instances == 128
    orientation = [float(v) for v in first.ImageOrientationPatient]
    assert series[0].extra["image_orientation_patient"] == orientation
    numbers = [int(pydicom.dcmread(p, stop_before_pixels=True).InstanceNumber) for p in paths]
    assert numbers == sorted(numbers)
    assert an_archive.search_studies(patient_id="SOMEONE-ELSE") == []
    assert an_archive.search_studies(study_uid=first.StudyInstanceUID)[0] == studies[0]


def test_stored_files_keep_their_pixels(an_archive: LocalArchive, mr_head: list[Path]) -> None:
    original = pydicom.dcmread(mr_head[40])
    header = an_archive.store_dataset(original)

    (stored,) = [
        p for p in an_archive.instance_paths(header.series_uid) if header.sop_uid in p.name
    ]

    assert np.array_equal(pydicom.dcmread(stored).pixel_array, original.pixel_array)
    assert an_archive.present_sop_uids(header.series_uid) == {original.SOPInstanceUID}


def test_ranking_tags_are_indexed(an_archive: LocalArchive, mr_head: list[Path]) -> None:
    ds = pydicom.dcmread(mr_head[0])
    ds.BodyPartExamined, ds.Laterality, ds.StudyDescription = "KNEE", "L", "MR KNEE LEFT"
    ds.IssuerOfPatientID, ds.AccessionNumber, ds.SeriesNumber = "HOSP-A", "ACC42", 7
    an_archive.store_dataset(ds)

    (study,) = an_archive.search_studies(patient_id="PACSMAN1", issuer="HOSP-A")
    (series,) = an_archive.search_series(study.study_uid)

    assert (study.body_parts, study.lateralities) == (("KNEE",), ("L",))
    assert (study.description, study.accession_number) == ("MR KNEE LEFT", "ACC42")
    assert (series.body_part, series.laterality, series.series_number) == ("KNEE", "L", 7)
    assert an_archive.search_studies(patient_id="PACSMAN1", issuer="OTHER") == []


def test_truncated_and_garbage_files_are_refused_and_nothing_is_indexed(
    an_archive: LocalArchive, mr_head: list[Path]
) -> None:
    data = mr_head[3].read_bytes()
    refused = []
    for content in (data[: len(data) // 2], b"\x00" * 128 + b"DICM" + b"garbage" * 100):
        incoming = an_archive.new_incoming_path()
        incoming.write_bytes(content)
        with pytest.raises(CorruptInstanceError) as raised:
            an_archive.adopt_file(incoming)
        refused.append(str(raised.value))

    assert "truncated" in refused[0] and pydicom.dcmread(mr_head[3]).SOPInstanceUID in refused[0]
    assert "not a readable DICOM file" in refused[1] or "without SOPInstanceUID" in refused[1]
    assert _indexed_paths(an_archive) == []
    assert list(an_archive.incoming_dir.iterdir()) == []
    assert list(an_archive.instances_dir.rglob("*.dcm")) == []


def test_a_half_written_file_in_incoming_is_never_indexed(
    an_archive: LocalArchive, mr_head: list[Path]
) -> None:
    # What a crash mid-write leaves behind: a partial file in incoming/.
    leftover = an_archive.new_incoming_path()
    leftover.write_bytes(mr_head[0].read_bytes()[:5000])
    os.utime(leftover, (0, 0))
    an_archive.import_folder(mr_head[0].parent)

    indexed = _indexed_paths(an_archive)

    assert len(indexed) == 128
    assert all(p.startswith("instances/") and p.endswith(".dcm") for p in indexed)
    assert all((an_archive.folder / p).is_file() for p in indexed)
    assert an_archive.clean_incoming(older_than_s=60) == 1
    assert list(an_archive.incoming_dir.iterdir()) == []


def test_a_study_uid_reused_for_another_patient_is_refused(
    an_archive: LocalArchive, mr_head: list[Path]
) -> None:
    an_archive.store_file(mr_head[0])
    intruder = pydicom.dcmread(mr_head[1])
    intruder.PatientID = "ANOTHER-PATIENT"

    with pytest.raises(PatientConflictError):
        an_archive.store_dataset(intruder)

    assert an_archive.search_studies(patient_id="ANOTHER-PATIENT") == []
    assert an_archive.present_sop_uids(intruder.SeriesInstanceUID) == {
        pydicom.dcmread(mr_head[0]).SOPInstanceUID
    }


def test_files_that_are_not_dicom_are_counted_not_stored(
    an_archive: LocalArchive, tmp_path: Path
) -> None:
    folder = tmp_path / "cd"
    folder.mkdir()
    (folder / "README.TXT").write_text("not an image")

    summary = an_archive.import_folder(folder)

    assert (summary.stored, summary.not_dicom, summary.failed) == (0, 1, [])


def test_an_instance_without_uids_is_refused_with_its_file_name(
    an_archive: LocalArchive, shared_data: Path
) -> None:
    # The public TotalSegmentator slices have empty study and series UIDs.
    path = sorted((shared_data / "totalsegmentator" / "ct_dicom").iterdir())[0]

    with pytest.raises(CorruptInstanceError, match="StudyInstanceUID") as raised:
        read_instance_header(path)

    assert path.name in str(raised.value)


WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from MSKPriorsLib.archive import LocalArchive
    archive = LocalArchive(Path(sys.argv[1]), busy_timeout_s=60)
    for name in sys.argv[2:]:
        archive.store_file(Path(name))
    archive.close()
    """
)


@pytest.mark.slow
def test_two_processes_storing_into_one_archive_do_not_corrupt_it(
    tmp_path: Path, mr_head: list[Path]
) -> None:
    folder = tmp_path / "shared-archive"
    LocalArchive(folder).close()
    # Overlapping halves: both processes store slices 40..87, each stores its own others.
    first_files = [str(p) for p in mr_head[:88]]
    second_files = [str(p) for p in mr_head[40:]]
    processes = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(folder), *files])
        for files in (first_files, second_files)
    ]
    statuses = [process.wait(timeout=120) for process in processes]

    archive = LocalArchive(folder)
    rows = list(archive.iter_instance_rows())
    with sqlite3.connect(folder / "index.sqlite") as db:
        integrity = db.execute("PRAGMA integrity_check").fetchone()[0]

    assert statuses == [0, 0]
    assert integrity == "ok"
    assert len(rows) == 128 == len({sop for sop, _, _ in rows})
    for sop, path, size in rows:
        stored = folder / path
        assert stored.stat().st_size == size
        assert pydicom.dcmread(stored, stop_before_pixels=True).SOPInstanceUID == sop
    assert list(archive.incoming_dir.iterdir()) == []


def test_search_filters_match_those_of_qido(an_archive: LocalArchive, mr_head: list[Path]) -> None:
    an_archive.store_file(mr_head[0])  # PatientID PACSMAN1, StudyDate 20231016, MR

    def count(**filters: str) -> int:
        return len(an_archive.search_studies(**filters))

    assert count(patient_id="PACS*") == count(patient_id="PACSMAN?") == 1
    assert count(patient_id="P*X") == count(patient_id="PACSMAN") == 0
    assert count(study_date="20231016") == count(study_date="20231001-20231031") == 1
    assert count(study_date="20231017-") == count(study_date="-20231015") == 0
    assert count(modality="MR") == 1 and count(modality="CT") == 0


def test_an_index_from_before_the_orientation_column_is_upgraded(
    tmp_path: Path, mr_head: list[Path]
) -> None:
    folder = tmp_path / "old-archive"
    LocalArchive(folder).close()
    with sqlite3.connect(folder / "index.sqlite") as db:
        db.execute("ALTER TABLE series DROP COLUMN orientation")

    archive = LocalArchive(folder)
    header = archive.store_file(mr_head[0])

    (series,) = archive.search_series(header.study_uid)
    assert len(series.extra["image_orientation_patient"]) == 6

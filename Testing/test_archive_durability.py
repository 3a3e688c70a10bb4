"""Batch durability of the archive: nothing is indexed before its bytes and folder are on disk.

The order checked: each file of a batch is fsynced, renamed into place, the folders that
received them are fsynced, and only then is the batch indexed. A process killed between the
rename and the index leaves those files unindexed, and a later retrieval completes them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from MSKPriorsLib import archive as archive_module
from MSKPriorsLib import archive_import
from MSKPriorsLib.archive import LocalArchive, PlacedInstance
from MSKPriorsLib.dicomweb import DicomWebClient
from MSKPriorsLib.records import SeriesRecord
from MSKPriorsLib.retrieval import BatchStore, retrieve_into_archive
from MSKPriorsLib.servers import PacsServer
from mskworkbench.local_orthanc import LocalOrthanc

PASSWORD_VARIABLE = "TEST_DURABILITY_ORTHANC_PASSWORD"
SLICES = 40


@dataclass
class DiskEvents:
    """What reached the disk, in order: inodes of fsynced files, fsynced folders, indexings."""

    synced_inodes: set[int] = field(default_factory=set)
    synced_folders: list[Path] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    indexed: int = 0
    file_syncs: int = 0


@pytest.fixture
def disk_events(monkeypatch: pytest.MonkeyPatch) -> DiskEvents:
    """Record the archive's fsyncs, and check every indexing against them when it happens."""
    events = DiskEvents()
    real_fsync_path = archive_module.fsync_path
    real_fsync_folders = archive_module.fsync_folders
    real_index_placed = LocalArchive.index_placed

    def fsync_path(path: Path) -> None:
        real_fsync_path(path)
        events.synced_inodes.add(path.stat().st_ino)  # a rename keeps the inode
        events.file_syncs += 1

    def fsync_folders(folders: set[Path]) -> None:
        real_fsync_folders(folders)
        events.synced_folders.extend(folders)

    def index_placed(
        self: LocalArchive, placed: Sequence[PlacedInstance]
    ) -> list[archive_module.PatientConflictError]:
        for item in placed:
            target = self.folder / item.relative_path
            if not target.is_file():
                events.problems.append(f"{item.relative_path} indexed but not in place")
            elif target.stat().st_ino not in events.synced_inodes:
                events.problems.append(f"{item.relative_path} indexed before it was fsynced")
            elif target.parent not in events.synced_folders:
                events.problems.append(f"{item.relative_path} indexed before its folder was")
        events.indexed += len(placed)
        # Folders must be synced again for the next batch's renames.
        events.synced_folders.clear()
        return real_index_placed(self, placed)

    monkeypatch.setattr(archive_module, "fsync_path", fsync_path)
    monkeypatch.setattr(archive_module, "fsync_folders", fsync_folders)
    monkeypatch.setattr(LocalArchive, "index_placed", index_placed)
    return events


@pytest.fixture
def stored_series(
    empty_orthanc: LocalOrthanc, shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[DicomWebClient, SeriesRecord, list[pydicom.Dataset]]:
    """40 real MR head slices (128x128) as a new series in the session Orthanc, and a client for it."""
    files = sorted((shared_data / "pacsman" / "mr_head").glob("*.dcm"))[:SLICES]
    study_uid, series_uid = generate_uid(), generate_uid()
    datasets = []
    for path in files:
        ds = pydicom.dcmread(path)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        datasets.append(ds)
    monkeypatch.setenv(PASSWORD_VARIABLE, empty_orthanc.password)
    server = PacsServer(
        "durability-orthanc",
        empty_orthanc.dicomweb_url,
        "basic",
        empty_orthanc.username,
        password_env=PASSWORD_VARIABLE,
    )
    client = DicomWebClient(server)
    client.store_instances(datasets)
    return client, SeriesRecord(series_uid, study_uid, number_of_instances=SLICES), datasets


def _assert_archived(archive: LocalArchive, datasets: list[pydicom.Dataset]) -> None:
    """Every instance indexed, each file complete with the original pixels."""
    series_uid = str(datasets[0].SeriesInstanceUID)
    by_uid = {str(ds.SOPInstanceUID): ds for ds in datasets}
    paths = archive.instance_paths(series_uid)
    assert archive.present_sop_uids(series_uid) == set(by_uid)
    for path in paths:
        stored = pydicom.dcmread(path)
        expected = by_uid[str(stored.SOPInstanceUID)]
        assert np.array_equal(stored.pixel_array, expected.pixel_array)


@pytest.mark.pacs
def test_each_retrieved_batch_is_indexed_only_after_it_is_on_disk(
    stored_series: tuple[DicomWebClient, SeriesRecord, list[pydicom.Dataset]],
    disk_events: DiskEvents,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client, record, datasets = stored_series
    monkeypatch.setattr(BatchStore, "max_batch_files", 7)  # several batches, the last short
    archive = LocalArchive(tmp_path / "archive")

    result = retrieve_into_archive(client, archive, [record])

    assert result.failures == []
    assert disk_events.problems == []
    assert disk_events.indexed == SLICES and disk_events.file_syncs == SLICES
    _assert_archived(archive, datasets)


@pytest.mark.pacs
def test_a_throwaway_retrieval_syncs_nothing(
    stored_series: tuple[DicomWebClient, SeriesRecord, list[pydicom.Dataset]],
    disk_events: DiskEvents,
    tmp_path: Path,
) -> None:
    client, record, datasets = stored_series
    archive = LocalArchive(tmp_path / "archive")

    result = retrieve_into_archive(client, archive, [record], durable=False)

    assert result.failures == [] and disk_events.indexed == SLICES
    assert disk_events.file_syncs == 0 and disk_events.synced_folders == []
    _assert_archived(archive, datasets)


def test_an_imported_folder_is_indexed_only_after_it_is_on_disk(
    shared_data: Path, disk_events: DiskEvents, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(archive_import, "IMPORT_BATCH_FILES", 50)  # batches of 50, 50 and 28
    archive = LocalArchive(tmp_path / "archive")

    summary = archive.import_folder(shared_data / "pacsman" / "mr_head")

    assert summary.stored == 128 and summary.failed == []
    assert disk_events.problems == [] and disk_events.indexed == 128


CRASHING_RETRIEVAL = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    from MSKPriorsLib.archive import LocalArchive
    from MSKPriorsLib.dicomweb import DicomWebClient
    from MSKPriorsLib.records import SeriesRecord
    from MSKPriorsLib.retrieval import BatchStore, retrieve_into_archive
    from MSKPriorsLib.servers import PacsServer

    folder, url, user, study_uid, series_uid, count = sys.argv[1:7]
    real_index_placed = LocalArchive.index_placed
    calls = []

    def index_then_die(self, placed):
        calls.append(len(placed))
        if len(calls) == 2:  # the second batch is on disk and in place: die before indexing
            print(sum(calls[:-1]), len(placed), flush=True)
            os._exit(3)
        return real_index_placed(self, placed)

    LocalArchive.index_placed = index_then_die
    BatchStore.max_batch_files = 12
    server = PacsServer("crash", url, "basic", user, password_env="CRASH_PASSWORD")
    record = SeriesRecord(series_uid, study_uid, number_of_instances=int(count))
    with DicomWebClient(server) as client:
        retrieve_into_archive(client, LocalArchive(Path(folder)), [record])
    sys.exit(0)
    """
)


@pytest.mark.pacs
def test_a_crash_between_rename_and_index_indexes_nothing_and_resume_completes_it(
    stored_series: tuple[DicomWebClient, SeriesRecord, list[pydicom.Dataset]],
    empty_orthanc: LocalOrthanc,
    tmp_path: Path,
) -> None:
    client, record, datasets = stored_series
    folder = tmp_path / "archive"
    crashed = subprocess.run(
        [
            sys.executable,
            "-c",
            CRASHING_RETRIEVAL,
            str(folder),
            empty_orthanc.dicomweb_url,
            empty_orthanc.username,
            record.study_uid,
            record.series_uid,
            str(SLICES),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "CRASH_PASSWORD": empty_orthanc.password},
    )
    assert crashed.returncode == 3, crashed.stderr
    indexed_before, in_place_not_indexed = (int(v) for v in crashed.stdout.split())

    archive = LocalArchive(folder)
    indexed = archive.instance_paths(record.series_uid)
    on_disk = set((folder / "instances").rglob("*.dcm"))
    # The first batch is indexed; the second is in place, complete, but not indexed.
    assert len(indexed) == indexed_before > 0 and in_place_not_indexed > 0
    assert len(on_disk) == indexed_before + in_place_not_indexed
    assert set(indexed) < on_disk
    for path in on_disk:
        assert pydicom.dcmread(path).pixel_array.shape == (128, 128)

    resumed = retrieve_into_archive(client, archive, [record])

    outcome = resumed.series[0]
    assert resumed.failures == [] and outcome.complete
    assert outcome.already_present == indexed_before
    assert outcome.retrieved == SLICES - indexed_before
    _assert_archived(archive, datasets)
    assert set((folder / "instances").rglob("*.dcm")) == set(
        archive.instance_paths(record.series_uid)
    )

"""A real Orthanc killed in the middle of a retrieval, restarted, and the retrieval resumed."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from MSKPriorsLib.archive import LocalArchive
from MSKPriorsLib.dicomweb import DicomWebClient
from MSKPriorsLib.records import SeriesRecord
from MSKPriorsLib.retrieval import BatchStore, TransferProgress, retrieve_into_archive
from MSKPriorsLib.servers import PacsServer
from mskworkbench.local_orthanc import LocalOrthanc, OrthancMissingError

pytestmark = [pytest.mark.pacs, pytest.mark.slow]

# Enough that the server is still sending when the third indexed batch kills it.
SLICES = 160
# Small batches: instances are indexed (and so reported) early in the answer, while most of
# it is still to come; with the default batch size the answer may be all received first.
BATCH_FILES = 4


@pytest.fixture
def private_orthanc(tmp_path: Path) -> Iterator[LocalOrthanc]:
    """An Orthanc of this test's own, so killing it leaves the session one alone."""
    server = LocalOrthanc(tmp_path / "orthanc")
    try:
        server.start()
    except OrthancMissingError as error:
        pytest.fail(str(error))
    yield server
    server.stop()


def large_series(shared_data: Path) -> list[pydicom.Dataset]:
    """160 uncompressed 512x512 slices (about 84 MB) from the real MR head pixels (repeated)."""
    head = sorted((shared_data / "pacsman" / "mr_head").glob("*.dcm"))
    files = [head[index % len(head)] for index in range(SLICES)]
    study_uid, series_uid = generate_uid(), generate_uid()
    datasets = []
    for path in files:
        ds = pydicom.dcmread(path)
        pixels = np.repeat(np.repeat(ds.pixel_array, 512 // ds.Rows, 0), 512 // ds.Columns, 1)
        ds.Rows, ds.Columns = pixels.shape
        ds.PixelData = pixels.tobytes()
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        datasets.append(ds)
    return datasets


def test_a_killed_server_mid_retrieval_then_resume(
    private_orthanc: LocalOrthanc,
    shared_data: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PRIVATE_ORTHANC_PASSWORD", private_orthanc.password)
    server = PacsServer(
        "private",
        private_orthanc.dicomweb_url,
        "basic",
        private_orthanc.username,
        password_env="PRIVATE_ORTHANC_PASSWORD",
    )
    client = DicomWebClient(server, retries=1, backoff_s=0.05)
    datasets = large_series(shared_data)
    for start in range(0, SLICES, 20):
        client.store_instances(datasets[start : start + 20])
    study_uid, series_uid = str(datasets[0].StudyInstanceUID), str(datasets[0].SeriesInstanceUID)
    record = SeriesRecord(series_uid, study_uid, number_of_instances=SLICES)
    archive = LocalArchive(tmp_path / "archive")
    monkeypatch.setattr(BatchStore, "max_batch_files", BATCH_FILES)
    killed = threading.Event()

    def kill_after_ten(progress: TransferProgress) -> None:
        if progress.instances_done >= 10 and not killed.is_set():
            killed.set()
            assert private_orthanc._process is not None
            private_orthanc._process.kill()

    cut = retrieve_into_archive(client, archive, [record], attempts=2, progress=kill_after_ten)
    stored_before = archive.present_sop_uids(series_uid)
    leftovers = list(archive.incoming_dir.iterdir())
    private_orthanc.stop()
    private_orthanc.start()
    resumed = retrieve_into_archive(client, archive, [record])

    assert killed.is_set()
    assert cut.failures and "run the fetch again to resume" in cut.failures[0]
    assert 10 <= len(stored_before) < SLICES
    assert leftovers == []
    for path in archive.instance_paths(series_uid):
        assert pydicom.dcmread(path).pixel_array.shape == (512, 512)
    outcome = resumed.series[0]
    assert resumed.failures == [] and outcome.complete
    assert outcome.already_present == len(stored_before)
    assert outcome.retrieved == SLICES - len(stored_before)
    assert resumed.bytes_received < (SLICES - len(stored_before) + 1) * 600_000
    assert archive.present_sop_uids(series_uid) == {str(ds.SOPInstanceUID) for ds in datasets}

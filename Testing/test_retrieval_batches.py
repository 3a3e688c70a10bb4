"""How received parts are grouped into durable batches: fast answers in large batches, slow ones
indexed as they come, and a waiting receiver never held up by a batch that is not full."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest

from MSKPriorsLib.archive import LocalArchive
from MSKPriorsLib.retrieval import ArchiveReceiver, BatchStore
from MSKPriorsLib.retrieval_multipart import stream_parts
from MSKPriorsLib.retrieval_progress import ProgressTracker, SeriesOutcome

BOUNDARY = "mskwb-test-boundary"
CONTENT_TYPE = f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'


@pytest.fixture
def mr_parts(shared_data: Path) -> list[bytes]:
    """Twenty real MR head slices, as the bytes of Part-10 files."""
    return [
        path.read_bytes()
        for path in sorted((shared_data / "pacsman" / "mr_head").glob("*.dcm"))[:20]
    ]


def _series_uid(part: bytes, folder: Path) -> str:
    probe = folder / "probe.dcm"
    probe.write_bytes(part)
    return str(pydicom.dcmread(probe, stop_before_pixels=True).SeriesInstanceUID)


def _multipart_chunks(parts: list[bytes]) -> Iterator[bytes]:
    """The body of a WADO-RS answer, one chunk per part, each ending with the next delimiter."""
    yield f"--{BOUNDARY}\r\n".encode()
    for number, part in enumerate(parts, start=1):
        after = "--" if number == len(parts) else ""
        yield (
            b"Content-Type: application/dicom\r\n\r\n"
            + part
            + f"\r\n--{BOUNDARY}{after}\r\n".encode()
        )


def _receiver(store: BatchStore, series_uid: str) -> tuple[ArchiveReceiver, SeriesOutcome]:
    outcome = SeriesOutcome(series_uid, "study")
    return ArchiveReceiver(store, outcome, ProgressTracker(None, 1)), outcome


def test_a_slow_answer_is_indexed_while_it_still_arrives(
    mr_parts: list[bytes], tmp_path: Path
) -> None:
    series_uid = _series_uid(mr_parts[0], tmp_path)
    archive = LocalArchive(tmp_path / "archive")
    indexed_before_the_end: list[int] = []

    def slow_chunks() -> Iterator[bytes]:
        chunks = list(_multipart_chunks(mr_parts[:5]))
        yield from chunks[:4]  # the opening delimiter and three whole parts
        # Fewer parts than a batch wait for: the store must index them within a few idle
        # periods rather than hold them until more arrive or the answer ends.
        deadline = time.monotonic() + 20 * BatchStore.idle_commit_s
        while time.monotonic() < deadline and len(archive.present_sop_uids(series_uid)) < 3:
            time.sleep(0.01)
        indexed_before_the_end.append(len(archive.present_sop_uids(series_uid)))
        yield from chunks[4:]

    with BatchStore(archive) as store:
        assert store.min_batch_files > 3
        receiver, outcome = _receiver(store, series_uid)
        assert stream_parts(CONTENT_TYPE, slow_chunks(), receiver) == 5
        receiver.wait()

    assert indexed_before_the_end == [3]
    assert outcome.retrieved == 5 and outcome.failures == []
    assert len(archive.instance_paths(series_uid)) == 5


def test_a_waiting_receiver_gets_a_short_batch_at_once(
    mr_parts: list[bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With the idle period far longer than the test, only the receiver's wait can start the
    # commit of a batch smaller than the minimum.
    monkeypatch.setattr(BatchStore, "idle_commit_s", 60.0)
    series_uid = _series_uid(mr_parts[0], tmp_path)
    archive = LocalArchive(tmp_path / "archive")

    with BatchStore(archive) as store:
        receiver, outcome = _receiver(store, series_uid)
        stream_parts(CONTENT_TYPE, _multipart_chunks(mr_parts[:4]), receiver)
        started = time.monotonic()
        receiver.wait()
        waited_s = time.monotonic() - started

    assert waited_s < 10.0
    assert outcome.retrieved == 4 and len(archive.instance_paths(series_uid)) == 4


@pytest.mark.parametrize(("min_files", "max_files"), [(1, 1), (16, 3), (4, 64)])
def test_every_part_is_indexed_once_whatever_the_batch_limits(
    min_files: int,
    max_files: int,
    mr_parts: list[bytes],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(BatchStore, "min_batch_files", min_files)
    monkeypatch.setattr(BatchStore, "max_batch_files", max_files)
    series_uid = _series_uid(mr_parts[0], tmp_path)
    archive = LocalArchive(tmp_path / "archive")
    committed: list[int] = []
    real_store_checked = LocalArchive.store_checked

    def counting_store_checked(self: LocalArchive, batch, durable=True):  # type: ignore[no-untyped-def]
        committed.append(len(batch))
        return real_store_checked(self, batch, durable)

    monkeypatch.setattr(LocalArchive, "store_checked", counting_store_checked)

    with BatchStore(archive) as store:
        receiver, outcome = _receiver(store, series_uid)
        stream_parts(CONTENT_TYPE, _multipart_chunks(mr_parts), receiver)
        receiver.wait()

    assert sum(committed) == 20 and max(committed) <= max_files
    assert outcome.retrieved == 20 and outcome.failures == []
    assert list(archive.incoming_dir.iterdir()) == []
    stored = {pydicom.dcmread(path).SOPInstanceUID for path in archive.instance_paths(series_uid)}
    assert len(stored) == 20

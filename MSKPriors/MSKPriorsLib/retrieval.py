"""Retrieve series from a DICOMweb server into the local archive: resumable, concurrent.

How to use::

    from MSKPriorsLib.retrieval import retrieve_into_archive, series_to_retrieve

    series = series_to_retrieve(client, study_uid="1.2.3")        # or series_uid= / patient_id=
    result = retrieve_into_archive(client, archive, series, progress=print)
    if result.failures: ...                                      # messages name the instances

A series with nothing archived comes in one streamed WADO-RS request and is checked against
the instance count the server reported. The network thread only parses the answer: each
complete part (the received chunks, not copied) goes to worker threads that write it to
``incoming/``, fsync it, check it from the header bytes kept in memory, rename it into place
and index it in batches. What waits for the writers is capped (:class:`_Finisher`), and a
part too large to keep is written to its file as it arrives, so memory stays flat however
large the series. A series partly archived (an earlier retrieval was cut off) is listed with
QIDO-RS and only its missing instances are fetched, several at a time. Several series are in
flight at once. A connection that breaks mid-series is retried with back-off, resuming from what was
stored. A part that is not a complete DICOM file is refused with a message naming it and
nothing of it is stored.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from MSKPriorsLib.archive import ArchiveError, LocalArchive, PlacedInstance
from MSKPriorsLib.dicomweb import DicomWebClient, DicomWebError, InstanceRef
from MSKPriorsLib.records import SeriesRecord
from MSKPriorsLib.retrieval_checks import HEAD_BYTES, ReceivedFile
from MSKPriorsLib.retrieval_multipart import (
    MultipartFormatError,
    PartHeaders,
    PartReceiver,
    TruncatedAnswerError,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TransferProgress:
    """A snapshot of a retrieval, given to the progress callback.

    Attributes
    ----------
    bytes_done
        Bytes received so far (all series).
    instances_done, instances_total
        Instances stored or found already archived, out of all listed.
    series_done, series_total
        Series finished, out of all asked for.
    elapsed_s
        Seconds since the retrieval started.
    """

    bytes_done: int
    instances_done: int
    instances_total: int
    series_done: int
    series_total: int
    elapsed_s: float

    @property
    def megabytes_per_s(self) -> float:
        """Mean transfer rate so far in MB/s (10^6 bytes)."""
        return self.bytes_done / 1e6 / self.elapsed_s if self.elapsed_s > 0 else 0.0


ProgressCallback = Callable[[TransferProgress], None]


@dataclass
class SeriesOutcome:
    """What happened to one series."""

    series_uid: str
    study_uid: str
    instances_total: int = 0
    retrieved: int = 0
    already_present: int = 0
    bytes_received: int = 0
    failures: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """Whether every listed instance is now archived."""
        return not self.failures and self.retrieved + self.already_present >= self.instances_total

    def to_dict(self) -> dict[str, Any]:
        """Return JSON-ready values."""
        return {
            "series_uid": self.series_uid,
            "study_uid": self.study_uid,
            "instances_total": self.instances_total,
            "retrieved": self.retrieved,
            "already_present": self.already_present,
            "bytes_received": self.bytes_received,
            "complete": self.complete,
            "failures": list(self.failures),
        }


@dataclass
class RetrievalResult:
    """Outcome of :func:`retrieve_into_archive`."""

    series: list[SeriesOutcome]
    seconds: float

    @property
    def bytes_received(self) -> int:
        """Bytes received over all series."""
        return sum(s.bytes_received for s in self.series)

    @property
    def failures(self) -> list[str]:
        """Every failure message, naming the series or instance."""
        return [message for s in self.series for message in s.failures]

    def to_dict(self) -> dict[str, Any]:
        """Return JSON-ready values."""
        seconds = max(self.seconds, 1e-9)
        return {
            "series": [s.to_dict() for s in self.series],
            "bytes_received": self.bytes_received,
            "seconds": round(self.seconds, 3),
            "megabytes_per_s": round(self.bytes_received / 1e6 / seconds, 1),
            "failures": self.failures,
        }


class _Tracker:
    """Thread-safe progress counters."""

    def __init__(self, callback: ProgressCallback | None, series_total: int) -> None:
        self.callback = callback
        self.lock = threading.Lock()
        self.started = time.monotonic()
        self.bytes_done = 0
        self.instances_done = 0
        self.instances_total = 0
        self.series_done = 0
        self.series_total = series_total
        self._last_report = 0.0

    def add(
        self, *, bytes_done: int = 0, instances: int = 0, total: int = 0, series: int = 0
    ) -> None:
        with self.lock:
            self.bytes_done += bytes_done
            self.instances_done += instances
            self.instances_total += total
            self.series_done += series
            now = time.monotonic()
            if self.callback is None or (
                bytes_done and not instances and now - self._last_report < 0.2
            ):
                return
            self._last_report = now
            snapshot = TransferProgress(
                self.bytes_done,
                self.instances_done,
                self.instances_total,
                self.series_done,
                self.series_total,
                now - self.started,
            )
        self.callback(snapshot)


class _Finisher:
    """Writes, checks, fsyncs and renames received parts on worker threads; indexes in batches.

    This overlaps the disk work with the network: the thread reading the answer only parses
    it and hands each complete part over (the bytes as received, no copy).
    """

    buffer_limit_bytes = 16 << 20

    def __init__(self, archive: LocalArchive, workers: int = 8, batch: int = 32) -> None:
        self.archive = archive
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mskwb-store")
        self.batch = batch
        self.lock = threading.Lock()
        self.pending: list[tuple[PlacedInstance, Callable[[str | None], None]]] = []
        self.room = threading.Condition()
        self.buffered_bytes = 0

    def place(
        self,
        received: ReceivedFile,
        pieces: list[memoryview] | None,
        series_uid: str,
        durable: bool,
        done: Callable[[str | None], None],
    ) -> Future[None]:
        """Queue one received part; ``done(None)`` once indexed, ``done(message)`` if refused.

        ``pieces`` are the part's bytes when they are still to be written to
        ``received.path``; ``None`` when the file is already written. Blocks while
        :attr:`buffer_limit_bytes` wait to be written, so memory stays bounded however fast
        the network is.
        """
        held = received.size_bytes if pieces is not None else 0
        with self.room:
            self.room.wait_for(
                lambda: (
                    self.buffered_bytes == 0
                    or self.buffered_bytes + held <= self.buffer_limit_bytes
                )
            )
            self.buffered_bytes += held

        def job() -> None:
            try:
                synced = False
                if pieces is not None:
                    with received.path.open("xb") as handle:
                        handle.writelines(pieces)
                        pieces.clear()
                        with self.room:
                            self.buffered_bytes -= held
                            self.room.notify_all()
                        if durable:
                            handle.flush()
                            os.fsync(handle.fileno())
                            synced = True
                placed = self.archive.place_file(
                    received.path, series_uid, durable and not synced, received
                )
            except ArchiveError as error:
                done(str(error))
                return
            except OSError as error:
                received.path.unlink(missing_ok=True)
                done(f"could not be stored ({error})")
                return
            finally:
                if pieces:
                    with self.room:
                        self.buffered_bytes -= held
                        self.room.notify_all()
            with self.lock:
                self.pending.append((placed, done))
                full = len(self.pending) >= self.batch
            if full:
                self.flush()

        return self.pool.submit(job)

    def flush(self) -> None:
        """Index every placed file now."""
        with self.lock:
            taken, self.pending = self.pending, []
        if not taken:
            return
        try:
            refused = self.archive.index_placed([placed for placed, _ in taken])
        except Exception as error:
            for _, done in taken:
                done(f"could not be indexed ({error})")
            raise
        by_path = {getattr(error, "relative_path", None): str(error) for error in refused}
        for placed, done in taken:
            done(by_path.get(placed.relative_path))

    def close(self) -> None:
        """Wait for queued files and index them."""
        self.pool.shutdown(wait=True)
        self.flush()


class ArchiveReceiver(PartReceiver):
    """Store each multipart part as a file of the archive (through ``incoming/``).

    A part is kept as the received chunks (no copy) and written by a worker thread once
    complete; a part larger than :attr:`spill_bytes` is written to its ``incoming/`` file
    while it arrives instead, so no part is ever held in memory whole.

    Parameters
    ----------
    finisher
        Writes, checks, renames and indexes complete parts off the network thread.
    outcome
        Counters and failures of the series being received.
    tracker
        Progress counters shared by all series.
    durable
        fsync each file before it is indexed.
    """

    spill_bytes = 8 << 20

    def __init__(
        self, finisher: _Finisher, outcome: SeriesOutcome, tracker: _Tracker, durable: bool
    ) -> None:
        self.finisher = finisher
        self.outcome = outcome
        self.tracker = tracker
        self.durable = durable
        self.part_number = 0
        self.lock = threading.Lock()
        self.settled = threading.Condition(self.lock)
        self.unsettled = 0
        self.futures: list[Future[None]] = []
        self._headers = PartHeaders()
        self._stem = finisher.archive.new_incoming_path().stem
        self._path = finisher.archive.incoming_dir / f"{self._stem}-0.part"
        self._handle: BinaryIO | None = None
        self._pieces: list[memoryview] = []
        self._head = bytearray()
        self._tail = b""
        self._size = 0

    def begin(self, headers: PartHeaders) -> None:
        self.part_number += 1
        self._headers = headers
        self._path = self.finisher.archive.incoming_dir / f"{self._stem}-{self.part_number}.part"
        self._handle = None
        self._pieces = []
        self._head = bytearray()
        self._tail = b""
        self._size = 0

    def data(self, chunk: memoryview) -> None:
        if len(self._head) < HEAD_BYTES:
            self._head += chunk[: HEAD_BYTES - len(self._head)]
        self._tail = (self._tail + chunk[-8:])[-8:]
        self._size += len(chunk)
        if self._handle is not None:
            self._handle.write(chunk)
        elif self._size > self.spill_bytes:
            self._handle = self._path.open("xb")
            self._handle.writelines(self._pieces)
            self._handle.write(chunk)
            self._pieces = []
        else:
            # Views of immutable chunks stay valid; anything else is copied.
            self._pieces.append(chunk if isinstance(chunk.obj, bytes) else memoryview(bytes(chunk)))
        self.outcome.bytes_received += len(chunk)
        self.tracker.add(bytes_done=len(chunk))

    def end(self) -> None:
        pieces: list[memoryview] | None = self._pieces
        if self._handle is not None:
            self._handle.close()
            self._handle = None
            pieces = None
        self._pieces = []
        received = ReceivedFile(self._path, self._size, bytes(self._head), self._tail)
        where = self._headers.content_location or (
            f"part {self.part_number} of series {self.outcome.series_uid}"
        )

        def done(problem: str | None) -> None:
            if problem is None:
                self.tracker.add(instances=1)
            with self.lock:
                if problem is None:
                    self.outcome.retrieved += 1
                else:
                    logger.error("refused %s: %s", where, problem)
                    self.outcome.failures.append(f"{where}: {problem}")
                self.unsettled -= 1
                self.settled.notify_all()

        with self.lock:
            self.unsettled += 1
        self.futures.append(
            self.finisher.place(received, pieces, self.outcome.series_uid, self.durable, done)
        )

    def abort(self) -> None:
        self._pieces = []
        if self._handle is not None:
            self._handle.close()
            self._handle = None
            self._path.unlink(missing_ok=True)

    def wait(self) -> None:
        """Wait until every complete part is stored or refused, and indexed."""
        for future in self.futures:
            future.result()
        # Another thread may be indexing a batch that holds some of these parts.
        self.finisher.flush()
        with self.lock:
            self.settled.wait_for(lambda: self.unsettled == 0)


def series_to_retrieve(
    client: DicomWebClient,
    study_uid: str | None = None,
    series_uid: str | None = None,
    patient_id: str | None = None,
) -> list[SeriesRecord]:
    """List the series a fetch request names (exactly one of the three arguments).

    Raises
    ------
    ValueError
        When not exactly one argument is given, or ``patient_id`` is empty.
    DicomWebError
        When the server cannot be searched.
    """
    given = [v for v in (study_uid, series_uid, patient_id) if v is not None]
    if len(given) != 1:
        raise ValueError("name exactly one of a study UID, a series UID or a patient ID")
    if series_uid is not None:
        return client.search_series(series_uid=series_uid)
    if study_uid is not None:
        return client.search_series(study_uid)
    if not (patient_id or "").strip():
        raise ValueError("an empty patient ID matches no patient")
    found: list[SeriesRecord] = []
    for study in client.search_studies(patient_id=patient_id):
        if study.patient.patient_id == patient_id:
            found.extend(client.search_series(study.study_uid))
    return found


def _retrieve_one_series(
    client: DicomWebClient,
    finisher: _Finisher,
    series: SeriesRecord,
    tracker: _Tracker,
    instance_workers: int,
    attempts: int,
    durable: bool,
) -> SeriesOutcome:
    archive = finisher.archive
    outcome = SeriesOutcome(series.series_uid, series.study_uid)
    present = archive.present_sop_uids(series.series_uid)
    # A series with nothing archived needs no instance listing (a slow QIDO query on some
    # servers): it comes in one request and is counted against the series' reported size.
    listed: list[InstanceRef] | None = None
    if present or not series.number_of_instances:
        listed = client.search_instances(series.study_uid, series.series_uid)
    expected = len(listed) if listed is not None else series.number_of_instances
    outcome.instances_total = expected
    if listed is not None:
        outcome.already_present = sum(1 for ref in listed if ref.sop_uid in present)
    tracker.add(total=expected, instances=outcome.already_present)

    for attempt in range(attempts):
        present = archive.present_sop_uids(series.series_uid)
        receiver_failures_before = len(outcome.failures)
        try:
            if listed is None and present:
                listed = client.search_instances(series.study_uid, series.series_uid)
            missing = (
                [r for r in listed if r.sop_uid not in present] if listed is not None else None
            )
            if missing == [] or (missing is None and len(present) >= expected > 0):
                break
            if missing is None or not present:
                receiver = ArchiveReceiver(finisher, outcome, tracker, durable)
                try:
                    client.stream_series(series.study_uid, series.series_uid, receiver)
                finally:
                    receiver.wait()
            else:
                _retrieve_instances(
                    client, finisher, missing, outcome, tracker, instance_workers, durable
                )
            break
        except (TruncatedAnswerError, DicomWebError, MultipartFormatError) as error:
            if isinstance(error, DicomWebError) and error.status_code is not None:
                outcome.failures.append(f"series {series.series_uid}: {error}")
                break
            if attempt + 1 >= attempts:
                outcome.failures.append(
                    f"series {series.series_uid}: retrieval broke off and {attempts} attempts "
                    f"failed ({error}); run the fetch again to resume"
                )
                break
            del outcome.failures[receiver_failures_before:]
            delay_s = client.backoff_s * (2**attempt)
            logger.warning(
                "series %s broke off (%s); resuming in %.1f s", series.series_uid, error, delay_s
            )
            time.sleep(delay_s)

    present = archive.present_sop_uids(series.series_uid)
    if listed is not None:
        still_missing = sum(1 for ref in listed if ref.sop_uid not in present)
    else:
        still_missing = max(0, expected - len(present))
    if still_missing and not outcome.failures:
        outcome.failures.append(
            f"series {series.series_uid}: {still_missing} instances did not arrive"
        )
    tracker.add(series=1)
    return outcome


def _retrieve_instances(
    client: DicomWebClient,
    finisher: _Finisher,
    refs: Sequence[InstanceRef],
    outcome: SeriesOutcome,
    tracker: _Tracker,
    workers: int,
    durable: bool,
) -> None:
    lock = threading.Lock()

    def fetch(ref: InstanceRef) -> None:
        own = SeriesOutcome(outcome.series_uid, outcome.study_uid)
        receiver = ArchiveReceiver(finisher, own, tracker, durable)
        try:
            client.stream_instance(ref.study_uid, ref.series_uid, ref.sop_uid, receiver)
        finally:
            receiver.wait()
            with lock:
                outcome.retrieved += own.retrieved
                outcome.bytes_received += own.bytes_received
                outcome.failures.extend(
                    f"instance {ref.sop_uid}: {message}" for message in own.failures
                )

    pool = ThreadPoolExecutor(max_workers=max(1, workers))
    try:
        for future in [pool.submit(fetch, ref) for ref in refs]:
            future.result()
    finally:
        # After the first failure (a dead server), do not start the remaining requests.
        pool.shutdown(wait=True, cancel_futures=True)


def retrieve_into_archive(
    client: DicomWebClient,
    archive: LocalArchive,
    series: Sequence[SeriesRecord],
    *,
    max_series_in_flight: int = 3,
    instance_workers: int = 4,
    attempts: int = 3,
    durable: bool = True,
    progress: ProgressCallback | None = None,
) -> RetrievalResult:
    """Retrieve series into the archive, skipping what it already holds.

    Parameters
    ----------
    client
        The server to retrieve from.
    archive
        Where instances are stored.
    series
        The series to retrieve (from :func:`series_to_retrieve` or a search).
    max_series_in_flight
        Series streamed at the same time.
    instance_workers
        Single-instance requests in flight when resuming a partly archived series.
    attempts
        Tries per series when the connection breaks (each resumes from what was stored).
    durable
        fsync each instance before indexing it.
    progress
        Called (from worker threads) with a :class:`TransferProgress` as data arrives.

    Returns
    -------
    RetrievalResult
        Per-series counts and failure messages; nothing partial is ever indexed.
    """
    tracker = _Tracker(progress, len(series))
    started = time.monotonic()
    finisher = _Finisher(archive)
    outcomes: list[SeriesOutcome] = []
    try:
        with ThreadPoolExecutor(max_workers=max(1, max_series_in_flight)) as pool:
            futures = [
                pool.submit(
                    _retrieve_one_series,
                    client,
                    finisher,
                    record,
                    tracker,
                    instance_workers,
                    attempts,
                    durable,
                )
                for record in series
            ]
            for record, future in zip(series, futures, strict=True):
                try:
                    outcomes.append(future.result())
                except DicomWebError as error:
                    hint = "" if error.status_code else "; run the fetch again to resume"
                    outcomes.append(
                        SeriesOutcome(
                            record.series_uid, record.study_uid, failures=[f"{error}{hint}"]
                        )
                    )
    finally:
        finisher.close()
    return RetrievalResult(outcomes, time.monotonic() - started)

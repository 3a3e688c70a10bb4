"""Retrieve series from a DICOMweb server into the local archive: resumable, concurrent.

How to use::

    from MSKPriorsLib.retrieval import retrieve_into_archive, series_to_retrieve

    series = series_to_retrieve(client, study_uid="1.2.3")        # or series_uid= / patient_id=
    result = retrieve_into_archive(client, archive, series, progress=print)
    if result.failures: ...                                      # messages name the instances

A series with nothing archived comes in one streamed WADO-RS request and is checked against
the instance count the server reported. Each part is written to its own file as it arrives
and stored by :class:`~MSKPriorsLib.retrieval_store.BatchStore`: checked from the bytes kept
in memory, made durable a batch at a time, then indexed; memory stays flat however large
the series. A series partly archived (an earlier retrieval was cut off) is listed with
QIDO-RS and only its missing instances are fetched, several at a time. Several series are in
flight at once. A connection that breaks mid-series is retried with back-off, resuming from
what was stored. A part that is not a complete DICOM file is refused with a message naming
it and nothing of it is stored.

Throughput measured with ``Testing/benchmarks/bench_retrieve.py`` is in
``docs/limitations.md``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from MSKPriorsLib.archive import LocalArchive
from MSKPriorsLib.dicomweb import DicomWebClient, DicomWebError, InstanceRef
from MSKPriorsLib.records import SeriesRecord
from MSKPriorsLib.retrieval_multipart import MultipartFormatError, TruncatedAnswerError
from MSKPriorsLib.retrieval_progress import (
    ProgressCallback,
    ProgressTracker,
    RetrievalResult,
    SeriesOutcome,
    TransferProgress,
)
from MSKPriorsLib.retrieval_store import ArchiveReceiver, BatchStore

__all__ = [
    "ArchiveReceiver",
    "BatchStore",
    "ProgressCallback",
    "RetrievalResult",
    "SeriesOutcome",
    "TransferProgress",
    "retrieve_into_archive",
    "series_to_retrieve",
]

logger = logging.getLogger(__name__)


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
    store: BatchStore,
    series: SeriesRecord,
    tracker: ProgressTracker,
    instance_workers: int,
    attempts: int,
) -> SeriesOutcome:
    archive = store.archive
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
                receiver = ArchiveReceiver(store, outcome, tracker)
                try:
                    client.stream_series(series.study_uid, series.series_uid, receiver)
                finally:
                    receiver.wait()
            else:
                _retrieve_instances(client, store, missing, outcome, tracker, instance_workers)
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
        except OSError as error:  # writing to the archive failed (disk full, permissions)
            outcome.failures.append(
                f"series {series.series_uid}: could not write to the archive {archive.folder} "
                f"({error})"
            )
            break

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
    store: BatchStore,
    refs: Sequence[InstanceRef],
    outcome: SeriesOutcome,
    tracker: ProgressTracker,
    workers: int,
) -> None:
    lock = threading.Lock()
    started: list[tuple[InstanceRef, SeriesOutcome, ArchiveReceiver]] = []

    def fetch(ref: InstanceRef) -> None:
        own = SeriesOutcome(outcome.series_uid, outcome.study_uid)
        receiver = ArchiveReceiver(store, own, tracker)
        with lock:
            started.append((ref, own, receiver))
        client.stream_instance(ref.study_uid, ref.series_uid, ref.sop_uid, receiver)

    pool = ThreadPoolExecutor(max_workers=max(1, workers))
    try:
        for future in [pool.submit(fetch, ref) for ref in refs]:
            future.result()
    finally:
        # After the first failure (a dead server), do not start the remaining requests.
        pool.shutdown(wait=True, cancel_futures=True)
        # Waiting only now lets the store commit the instances in batches, not one by one.
        for ref, own, receiver in started:
            receiver.wait()
            outcome.retrieved += own.retrieved
            outcome.bytes_received += own.bytes_received
            outcome.failures.extend(
                f"instance {ref.sop_uid}: {message}" for message in own.failures
            )


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
        Make every instance durable on disk (fsync, a batch at a time) before it is indexed.
    progress
        Called (from worker threads) with a :class:`TransferProgress` as data arrives.

    Returns
    -------
    RetrievalResult
        Per-series counts and failure messages; nothing partial is ever indexed.
    """
    tracker = ProgressTracker(progress, len(series))
    started = time.monotonic()
    outcomes: list[SeriesOutcome] = []
    with (
        BatchStore(archive, durable) as store,
        ThreadPoolExecutor(max_workers=max(1, max_series_in_flight)) as pool,
    ):
        futures = [
            pool.submit(
                _retrieve_one_series, client, store, record, tracker, instance_workers, attempts
            )
            for record in series
        ]
        for record, future in zip(series, futures, strict=True):
            try:
                outcomes.append(future.result())
            except DicomWebError as error:
                hint = "" if error.status_code else "; run the fetch again to resume"
                outcomes.append(
                    SeriesOutcome(record.series_uid, record.study_uid, failures=[f"{error}{hint}"])
                )
    return RetrievalResult(outcomes, time.monotonic() - started)

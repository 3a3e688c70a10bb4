"""Received parts into the archive: written as they arrive, then checked and stored in batches.

How to use (what :func:`MSKPriorsLib.retrieval.retrieve_into_archive` does)::

    with BatchStore(archive, durable=True) as store:
        receiver = ArchiveReceiver(store, outcome, tracker)
        client.stream_series(study_uid, series_uid, receiver)   # each part to incoming/
        receiver.wait()                  # every complete part now indexed, or refused by name

The thread reading the answer writes each part to its own ``incoming/`` file as the bytes
arrive (``os.write`` of the received chunks, no copy), in a file created ahead of time by
:class:`SpareFiles`; of a part it keeps in memory only the first
:data:`~MSKPriorsLib.retrieval_checks.HEAD_BYTES` and the last 8 bytes, for the check. A
complete part goes to :class:`BatchStore`: one of its threads asks the kernel to start
writing the file to disk and checks it from the kept bytes; its other thread commits what
was checked meanwhile with :meth:`~MSKPriorsLib.archive.LocalArchive.store_checked` (fsync of
each file, mostly written already, rename into place, fsync of the folders, one index
transaction). Commits are grouped: while one batch goes to disk the next gathers (at least
:attr:`BatchStore.min_batch_files`, at most :attr:`BatchStore.max_batch_files` files or
:attr:`BatchStore.max_batch_bytes` bytes), so a fast answer is stored in large batches, the
last batch of an answer is short, a slow answer is indexed after
:attr:`BatchStore.idle_commit_s` at the latest, and a waiting receiver is served at once.
Parts waiting to be checked are capped (:attr:`BatchStore.max_waiting_parts`), and so are
the checked parts waiting for the disk, so memory stays flat however large the series and
however fast the network.

Measured on the idle two-core development machine (300 CT slices of 512x512, 158 MB,
Orthanc on loopback): 0.30 to 0.36 s and 0.30 to 0.38 s of CPU, 66 MB peak memory. Of that
CPU, about 0.13 s is the thread reading the answer (receiving, parsing the multipart
framing, writing), 0.08 to 0.12 s the checks (mostly pydicom's walk of each header), 0.05 s
the commits (fsync, rename, index) and 0.03 s creating the files; figures against curl and
dicomweb-client are in ``docs/limitations.md``.
"""

from __future__ import annotations

import collections
import logging
import os
import queue
import sqlite3
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from MSKPriorsLib.archive import ArchiveError, LocalArchive, PlacedInstance
from MSKPriorsLib.durable_files import start_writeback
from MSKPriorsLib.retrieval_checks import HEAD_BYTES, ReceivedFile
from MSKPriorsLib.retrieval_multipart import PartHeaders, PartReceiver
from MSKPriorsLib.retrieval_progress import ProgressTracker, SeriesOutcome

logger = logging.getLogger(__name__)

Settle = Callable[[str | None], None]
"""Called once per part: with None when it is indexed, or with the reason it was refused."""

_OPEN_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)


@dataclass
class ReceivedPart:
    """A complete part in ``incoming/``, handed from the network thread to the store."""

    received: ReceivedFile
    descriptor: int
    """Still open for writing; the store closes it."""
    series_uid: str
    settle: Settle


_Checked = tuple[Path, PlacedInstance, Settle]
"""A checked part waiting in a batch: its ``incoming/`` file, where it goes, whom to tell."""


class SpareFiles:
    """Empty ``incoming/`` files created ahead on a thread of their own, for the network thread.

    Creating a file can cost the file system as much as writing half a megabyte into it (on
    the development machine's ext4 without a journal, 0.02 ms in most folders but up to 1 ms
    of CPU in one where many files were just deleted, spent skipping their freed inodes), so
    the thread reading the answer takes a file made in advance and does not wait for that.

    Parameters
    ----------
    folder
        Where to create them (the archive's ``incoming/``).
    count
        How many to keep ready.
    """

    def __init__(self, folder: Path, count: int = 8) -> None:
        self.folder = folder
        self.count = count
        self._ready: list[tuple[Path, int]] = []
        self._wanted = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="mskwb-spare-files", daemon=True)
        self._thread.start()

    def _create(self) -> tuple[Path, int]:
        path = self.folder / f"{uuid.uuid4().hex}.part"
        return path, os.open(path, _OPEN_FLAGS, 0o644)

    def _run(self) -> None:
        while True:
            with self._wanted:
                self._wanted.wait_for(lambda: self._closing or len(self._ready) < self.count)
                if self._closing:
                    return
            try:
                made = self._create()
            except OSError as error:  # the network thread will create its own and report it
                logger.debug("could not create a spare file in %s: %s", self.folder, error)
                return
            with self._wanted:
                self._ready.append(made)

    def take(self) -> tuple[Path, int]:
        """A new empty file in ``folder`` and its descriptor, open for writing."""
        with self._wanted:
            made = self._ready.pop() if self._ready else None
            self._wanted.notify()
        return made if made is not None else self._create()

    def close(self) -> None:
        """Stop creating files and remove those not taken."""
        with self._wanted:
            self._closing = True
            self._wanted.notify()
        self._thread.join()
        for path, descriptor in self._ready:
            os.close(descriptor)
            path.unlink(missing_ok=True)
        self._ready = []


class BatchStore:
    """Checks received parts and stores them in durable batches, on two threads of its own.

    One thread checks each part as it comes and gathers a batch; the other commits the
    previous batch (fsync, rename, index) meanwhile, so the parts keep flowing while a
    batch waits for the disk.

    Parameters
    ----------
    archive
        Where the parts go.
    durable
        Flush each batch to disk before indexing it (see
        :meth:`~MSKPriorsLib.archive.LocalArchive.store_checked`).
    """

    max_batch_files = 64
    max_batch_bytes = 64 << 20
    min_batch_files = 16
    idle_commit_s = 0.1
    max_waiting_parts = 32

    def __init__(self, archive: LocalArchive, durable: bool = True) -> None:
        self.archive = archive
        self.durable = durable
        self._parts: queue.Queue[ReceivedPart | threading.Event | None] = queue.Queue(
            self.max_waiting_parts
        )
        # Checked parts and markers, in order, waiting for the committing thread.
        self._ready: collections.deque[_Checked | threading.Event | None] = collections.deque()
        self._ready_changed = threading.Condition()
        self._markers_ready = 0
        self.spare_files = SpareFiles(archive.incoming_dir)
        self._threads = [
            threading.Thread(target=self._check_parts, name="mskwb-check", daemon=True),
            threading.Thread(target=self._commit_batches, name="mskwb-commit", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def __enter__(self) -> BatchStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def submit(self, part: ReceivedPart) -> None:
        """Hand over a complete part; blocks while :attr:`max_waiting_parts` wait already."""
        self._parts.put(part)

    def flush(self) -> None:
        """Return once every part submitted so far is indexed or refused."""
        marker = threading.Event()
        self._parts.put(marker)
        marker.wait()

    def close(self) -> None:
        """Store what was submitted and stop the threads."""
        if self._threads[0].is_alive():
            self._parts.put(None)
        for thread in self._threads:
            thread.join()
        self.spare_files.close()

    def _check_parts(self) -> None:
        while True:
            item = self._parts.get()
            ready: _Checked | threading.Event | None = item  # type: ignore[assignment]
            if isinstance(item, ReceivedPart):
                checked = self._check(item)
                if checked is None:
                    continue
                ready = (item.received.path, checked, item.settle)
            with self._ready_changed:
                # At most two batches wait, so the checking never runs far ahead of the disk.
                self._ready_changed.wait_for(lambda: len(self._ready) < 2 * self.max_batch_files)
                self._ready.append(ready)
                if not isinstance(ready, tuple):
                    self._markers_ready += 1
                # Wake the committing thread only when it has something to do; a short batch
                # is taken at its next idle check.
                if not isinstance(ready, tuple) or len(self._ready) >= self._wanted_batch():
                    self._ready_changed.notify_all()
            if item is None:
                return

    def _wanted_batch(self) -> int:
        return min(self.min_batch_files, self.max_batch_files)

    def _take_batch(self) -> list[_Checked] | threading.Event | None:
        """What was checked since the last commit (within the batch limits), or a marker.

        Waits for :attr:`min_batch_files` parts, unless a receiver waits (a marker follows)
        or :attr:`idle_commit_s` pass with fewer (a slow answer is indexed as it comes).
        """
        wanted = self._wanted_batch()
        with self._ready_changed:
            while not self._ready_changed.wait_for(
                lambda: len(self._ready) >= wanted or self._markers_ready > 0,
                timeout=self.idle_commit_s,
            ):
                if self._ready:
                    break
            first = self._ready[0]
            if first is None or isinstance(first, threading.Event):
                self._ready.popleft()
                self._markers_ready -= 1
                self._ready_changed.notify_all()
                return first
            batch: list[_Checked] = []
            batch_bytes = 0
            while (
                self._ready
                and isinstance(self._ready[0], tuple)
                and len(batch) < self.max_batch_files
                and batch_bytes < self.max_batch_bytes
            ):
                checked = self._ready.popleft()
                assert isinstance(checked, tuple)
                batch.append(checked)
                batch_bytes += checked[1].size_bytes
            self._ready_changed.notify_all()
            return batch

    def _commit_batches(self) -> None:
        # Group commit: while one batch goes to disk the next gathers, so batches are large
        # when parts arrive fast and small (a short wait for the last ones) when they slow.
        while True:
            item = self._take_batch()
            if isinstance(item, list):
                self._commit(item)
            elif item is None:
                return
            else:
                item.set()  # a flush marker: every part before it is settled

    def _check(self, part: ReceivedPart) -> PlacedInstance | None:
        path = part.received.path
        try:
            if self.durable:
                start_writeback(part.descriptor)
            os.close(part.descriptor)
            return self.archive.check_incoming(path, part.series_uid, part.received)
        except ArchiveError as error:
            _settle(part.settle, str(error))
        except Exception as error:  # an unreadable file, or a failure nobody else would see
            path.unlink(missing_ok=True)
            _settle(part.settle, f"could not be stored ({error})")
        return None

    def _commit(self, batch: list[_Checked]) -> None:
        try:
            problems = self.archive.store_checked(
                [(path, checked) for path, checked, _ in batch], self.durable
            )
        except (ArchiveError, OSError, sqlite3.Error) as error:
            logger.error("a batch of %d instances was not stored: %s", len(batch), error)
            for _, _, settle in batch:
                _settle(settle, f"could not be stored ({error})")
            return
        for (_, _, settle), problem in zip(batch, problems, strict=True):
            _settle(settle, None if problem is None else str(problem))


def _settle(settle: Settle, problem: str | None) -> None:
    try:
        settle(problem)
    except Exception:  # a failing progress callback must not stop the store
        logger.exception("reporting a stored part failed")


class ArchiveReceiver(PartReceiver):
    """Writes each multipart part to its own ``incoming/`` file and hands it to a store.

    Parameters
    ----------
    store
        Checks, makes durable, moves into place and indexes complete parts.
    outcome
        Counters and failures of the series being received.
    tracker
        Progress counters shared by all series.
    """

    def __init__(self, store: BatchStore, outcome: SeriesOutcome, tracker: ProgressTracker) -> None:
        self.store = store
        self.outcome = outcome
        self.tracker = tracker
        self.part_number = 0
        self.lock = threading.Lock()
        self.settled = threading.Condition(self.lock)
        self.unsettled = 0
        self._headers = PartHeaders()
        self._path = store.archive.incoming_dir / "none.part"
        self._descriptor: int | None = None
        self._head = bytearray()
        self._tail = b""
        self._size = 0

    def begin(self, headers: PartHeaders) -> None:
        self.part_number += 1
        self._headers = headers
        self._path, self._descriptor = self.store.spare_files.take()
        self._head = bytearray()
        self._tail = b""
        self._size = 0

    def data(self, chunk: memoryview) -> None:
        if len(self._head) < HEAD_BYTES:
            self._head += chunk[: HEAD_BYTES - len(self._head)]
        self._tail = (self._tail + chunk[-8:])[-8:]
        assert self._descriptor is not None, "data outside a part"
        remaining = chunk
        while remaining:
            remaining = remaining[os.write(self._descriptor, remaining) :]
        self._size += len(chunk)
        self.outcome.bytes_received += len(chunk)
        self.tracker.add(bytes_done=len(chunk))

    def end(self) -> None:
        assert self._descriptor is not None, "end outside a part"
        descriptor, self._descriptor = self._descriptor, None
        received = ReceivedFile(self._path, self._size, bytes(self._head), self._tail)
        self._head = bytearray()
        where = self._headers.content_location or (
            f"part {self.part_number} of series {self.outcome.series_uid}"
        )

        def settle(problem: str | None) -> None:
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
        self.store.submit(ReceivedPart(received, descriptor, self.outcome.series_uid, settle))

    def abort(self) -> None:
        if self._descriptor is not None:
            os.close(self._descriptor)
            self._descriptor = None
            self._path.unlink(missing_ok=True)

    def wait(self) -> None:
        """Wait until every complete part is indexed or refused."""
        self.store.flush()
        with self.lock:
            self.settled.wait_for(lambda: self.unsettled == 0)

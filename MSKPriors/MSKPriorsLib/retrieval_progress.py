"""What a retrieval reports: progress snapshots while it runs, per-series outcomes at the end.

How to use::

    from MSKPriorsLib.retrieval_progress import TransferProgress

    def show(progress: TransferProgress) -> None:
        print(f"{progress.instances_done}/{progress.instances_total}, "
              f"{progress.megabytes_per_s:.0f} MB/s")

    result = retrieve_into_archive(client, archive, series, progress=show)
    for outcome in result.series: ...                # SeriesOutcome, JSON via to_dict()
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


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


class ProgressTracker:
    """Progress counters shared by the threads of one retrieval; reports to ``callback``.

    Byte counts are reported at most every 0.2 s; instance and series counts always.
    """

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
        """Add to the counters and call the callback (outside the lock) when it is due."""
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

"""What a reader's own viewer process costs behind the ``mskwb serve`` front.

Run: ``.venv/bin/python Testing/benchmarks/bench_viewer_readers.py [--readers 2] [--requests 200]``

Starts the real ``mskwb serve --archive`` (an empty archive) on a free loopback port and
prints, for each simulated reader (a cookie session, no browser):

- the time from the first page load to the reader's viewer answering;
- the resident memory of the front and of each idle viewer process;
- the time of one small request (the viewer's ``index.html``) through the front, next to the
  same request sent straight to the viewer with its secret, measured in the same run (the
  baseline): the ratio is what the relay adds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from viewer_server import child_pids, listening_sockets, running_server

from mskworkbench.local_orthanc import free_loopback_port
from mskworkbench.web.access import FRONT_SECRET_HEADER
from mskworkbench.web.launcher import SECRET_VARIABLE
from mskworkbench.web.single_reader import READER_COOKIE


def resident_mb(pid: int) -> float:
    """Resident memory of a process in MB (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def initial_environment(pid: int) -> dict[str, str]:
    """The environment a process was started with (readable by its own user only)."""
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    pairs = (item.decode(errors="replace").split("=", 1) for item in raw if b"=" in item)
    return {name: value for name, value in pairs}


def timed_gets(session: requests.Session, url: str, count: int, **kwargs: object) -> list[float]:
    """Seconds taken by each of ``count`` GET requests of ``url``."""
    times = []
    for _ in range(count):
        start = time.perf_counter()
        response = session.get(url, timeout=30, **kwargs)  # type: ignore[arg-type]
        times.append(time.perf_counter() - start)
        if response.status_code != 200:
            raise RuntimeError(f"{url} answered {response.status_code}")
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readers", type=int, default=2)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="mskwb-bench-readers-") as folder:
        archive = Path(folder) / "archive"
        archive.mkdir()
        with running_server(
            ["--archive", str(archive)], free_loopback_port(), Path(folder) / "w"
        ) as server:
            readers = []
            for number in range(1, args.readers + 1):
                session = requests.Session()
                known = set(server.viewer_pids())
                start = time.perf_counter()
                while "viewer-starting" in session.get(server.url, timeout=60).text:
                    time.sleep(0.05)
                ready_s = time.perf_counter() - start
                (pid,) = set(server.viewer_pids()) - known
                readers.append((session, pid))
                print(f"reader {number}: viewer ready {ready_s:.2f} s after the first page load")

            time.sleep(2.0)
            print(f"front process: {resident_mb(server.process.pid):.0f} MB resident")
            for number, (_, pid) in enumerate(readers, 1):
                print(f"reader {number}: idle viewer process {resident_mb(pid):.0f} MB resident")

            session, pid = readers[0]
            secret = initial_environment(pid)[SECRET_VARIABLE]
            (_, port), *_ = listening_sockets(pid)
            cookie = session.cookies.get(READER_COOKIE)
            direct = requests.Session()
            direct.headers[FRONT_SECRET_HEADER] = secret
            direct.cookies.set(READER_COOKIE, cookie)
            count = args.requests
            via_front = timed_gets(session, server.url + "index.html", count)
            straight = timed_gets(direct, f"http://127.0.0.1:{port}/index.html", count)
            front_ms = 1000 * statistics.median(via_front)
            direct_ms = 1000 * statistics.median(straight)
            print(
                f"index.html, median of {count}: through the front {front_ms:.2f} ms, "
                f"straight to the viewer (baseline) {direct_ms:.2f} ms, "
                f"ratio {front_ms / direct_ms:.2f}"
            )
            assert child_pids(server.process.pid), "the viewers stopped during the run"
    return 0


if __name__ == "__main__":
    sys.exit(main())

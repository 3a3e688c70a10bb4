"""Test helper: run the real ``mskwb serve`` in a subprocess until the test is done.

``mskwb serve`` is a front that starts one viewer process per reader; this helper waits for
the front only (its status route), so it starts no viewer by itself, and it can list the
viewer processes the front has started.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from mskworkbench.local_orthanc import LocalOrthanc, free_loopback_port

PROJECT_ROOT = Path(__file__).resolve().parent.parent
STATUS_PATH = "mskwb/front/status"


@dataclass
class ViewerServer:
    """A running ``mskwb serve``: its address, its process and its log."""

    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def viewer_pids(self) -> list[int]:
        """Process IDs of the viewer processes the front runs now (its child processes)."""
        return child_pids(self.process.pid)

    def status(self, token: str = "") -> dict[str, int]:
        """The front's own count of open viewers and places."""
        params = {"token": token} if token else None
        return dict(requests.get(self.url + STATUS_PATH, params=params, timeout=10).json())

    def log_tail(self, characters: int = 3000) -> str:
        """The end of the server's log, for failure messages."""
        return self.log_path.read_text(errors="replace")[-characters:]


def child_pids(parent_pid: int) -> list[int]:
    """Live processes whose parent is ``parent_pid`` (from /proc; zombies excluded)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name is in parentheses and may hold spaces: fields follow the last ')'.
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if int(ppid) == parent_pid and state != "Z":
            found.append(int(entry.name))
    return sorted(found)


def is_running(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (an unreaped process counts)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def exists_in_process_table(pid: int) -> bool:
    """Whether ``pid`` is still in the process table (running, or exited but not reaped)."""
    return Path(f"/proc/{pid}").exists()


def listening_sockets(pid: int) -> list[tuple[str, int]]:
    """(local address as the kernel lists it in hex, port) of TCP sockets ``pid`` listens on."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    found = []
    for table in (Path("/proc/net/tcp"), Path("/proc/net/tcp6")):
        for line in table.read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:
                address, port_hex = fields[1].rsplit(":", 1)
                found.append((address, int(port_hex, 16)))
    return sorted(found)


@contextmanager
def running_server(
    source_args: list[str],
    port: int,
    work_dir: Path,
    extra_env: dict[str, str] | None = None,
    extra_args: list[str] | None = None,
    host: str = "127.0.0.1",
    token: str = "",
) -> Iterator[ViewerServer]:
    """Start ``mskwb serve SOURCE_ARGS --port PORT --work-dir WORK_DIR EXTRA_ARGS``.

    The server's output goes to ``WORK_DIR/serve.log``; a server that exits or does not answer
    within 120 s fails the test with the end of that log. On exit the server is stopped with
    SIGTERM, as a service manager would.
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "VTK_DEFAULT_OPENGL_WINDOW": "vtkEGLRenderWindow", **(extra_env or {})}
    command = [sys.executable, "-m", "mskworkbench.cli", "serve", *source_args]
    command += ["--port", str(port), "--work-dir", str(work_dir), *(extra_args or [])]
    if host != "127.0.0.1":
        command += ["--host", host]
    log_path = work_dir / "serve.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=log, stderr=log)
    server = ViewerServer(f"http://{host}:{port}/", process, log_path)
    deadline = time.monotonic() + 120
    while True:
        if process.poll() is not None:
            pytest.fail(f"mskwb serve exited: {server.log_tail()}")
        try:
            server.status(token)
            break
        except (requests.ConnectionError, ValueError):
            pass
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("mskwb serve did not answer within 120 s")
        time.sleep(0.3)
    try:
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=20)


@contextmanager
def running_viewer(
    source_args: list[str], port: int, work_dir: Path, extra_env: dict[str, str] | None = None
) -> Iterator[str]:
    """Start ``mskwb serve SOURCE_ARGS --port PORT --work-dir WORK_DIR``; yield its URL."""
    with running_server(source_args, port, work_dir, extra_env) as server:
        yield server.url


@contextmanager
def viewer_on_orthanc(
    orthanc: LocalOrthanc, work_dir: Path, extra_env: dict[str, str] | None = None
) -> Iterator[str]:
    """Start ``mskwb serve --pacs`` on the test Orthanc, credentials from the environment."""
    environment = {
        "MSKWB_PACS_USERNAME": orthanc.username,
        "MSKWB_PACS_PASSWORD": orthanc.password,
        **(extra_env or {}),
    }
    with running_viewer(
        ["--pacs", orthanc.dicomweb_url], free_loopback_port(), work_dir, environment
    ) as url:
        yield url

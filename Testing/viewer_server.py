"""Test helper: run the real ``mskwb serve`` in a subprocess until the test is done."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def running_viewer(
    source_args: list[str], port: int, work_dir: Path, extra_env: dict[str, str] | None = None
) -> Iterator[str]:
    """Start ``mskwb serve SOURCE_ARGS --port PORT --work-dir WORK_DIR``; yield its URL.

    The server's output goes to ``WORK_DIR/serve.log``; a server that exits or does not answer
    within 120 s fails the test with the end of that log.
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "VTK_DEFAULT_OPENGL_WINDOW": "vtkEGLRenderWindow", **(extra_env or {})}
    command = [sys.executable, "-m", "mskworkbench.cli", "serve", *source_args]
    command += ["--port", str(port), "--work-dir", str(work_dir)]
    log_path = work_dir / "serve.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 120
    while True:
        if process.poll() is not None:
            pytest.fail(f"mskwb serve exited: {log_path.read_text()[-2000:]}")
        try:
            if requests.get(url + "index.html", timeout=2).status_code == 200:
                break
        except requests.ConnectionError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("mskwb serve did not answer within 120 s")
        time.sleep(0.5)
    try:
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=20)

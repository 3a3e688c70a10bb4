"""A PACS that cannot be reached: short, clear errors and retry messages."""

from __future__ import annotations

import logging
import socket

import pytest
import requests

from MSKPriorsLib.dicomweb import DicomWebClient, DicomWebError
from MSKPriorsLib.servers import PacsServer
from mskworkbench.cli import main as mskwb


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on (bound once, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_refused_connection_is_one_short_sentence_with_the_cause_kept(
    closed_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"http://127.0.0.1:{closed_port}/dicom-web"
    client = DicomWebClient(PacsServer(name="down", url=url), retries=2, backoff_s=0.01)
    with (
        caplog.at_level(logging.WARNING, logger="MSKPriorsLib.dicomweb"),
        pytest.raises(DicomWebError) as failure,
        client,
    ):
        client.search_studies(patient_id="X")
    message = str(failure.value)
    assert message.startswith(f"PACS {url} unreachable (connection refused) after 3 attempts")
    assert len(message) < 150 and "HTTPConnection" not in message
    # The full story stays available for debugging.
    assert isinstance(failure.value.__cause__, requests.ConnectionError)
    retries = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(retries) == 2
    assert all(len(line) < 120 and "connection refused" in line for line in retries)
    assert "retry 1 of 2" in retries[0]


def test_the_command_prints_one_short_line(
    closed_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"http://127.0.0.1:{closed_port}/dicom-web"
    status = mskwb(["studies", "--pacs", url, "--patient-id", "X"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert status != 0
    assert lines[-1].startswith(f"mskwb studies: PACS {url} unreachable (connection refused)")
    assert all(len(line) < 160 for line in lines)

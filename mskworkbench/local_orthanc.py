"""Start and stop a private Orthanc with the DICOMweb plugin on loopback.

Used by the test suite (a real PACS) and by ``mskwb orthanc`` (the same PACS by hand). It
listens on 127.0.0.1 only in practice: remote access is refused and the DICOM port is off, and
every request needs the user name and password given here.
"""

from __future__ import annotations

import json
import logging
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

logger = logging.getLogger(__name__)

DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
ORTHANC_NAMES = ("Orthanc", "orthanc")


class OrthancMissingError(RuntimeError):
    """Orthanc or its DICOMweb plugin is not installed on this machine."""


def find_orthanc_executable() -> Path:
    """Return the Orthanc server executable, or raise :class:`OrthancMissingError`."""
    for name in ORTHANC_NAMES:
        found = shutil.which(name) or (
            f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").is_file() else None
        )
        if found:
            return Path(found)
    raise OrthancMissingError(
        "Orthanc is not installed: install the Debian packages 'orthanc' and 'orthanc-dicomweb'"
    )


def port_is_free(port: int) -> bool:
    """Whether nothing listens on ``port`` of 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # Connections of a stopped server still closing (TIME_WAIT) must not count as in use.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_loopback_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class LocalOrthanc:
    """An Orthanc process with its own storage folder, configuration and credentials.

    Parameters
    ----------
    storage_dir
        Folder for Orthanc's database and files; created if missing, kept after stop.
    http_port
        Port on 127.0.0.1; a free one is chosen when 0.
    username, password
        The one registered user; authentication is always on.
    """

    storage_dir: Path
    http_port: int = 0
    username: str = "mskwb"
    password: str = "mskwb-test"
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        """Base URL of Orthanc's REST API."""
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb_url(self) -> str:
        """Base URL of the DICOMweb services (QIDO-RS, WADO-RS, STOW-RS)."""
        return f"{self.url}/dicom-web"

    @property
    def auth(self) -> tuple[str, str]:
        """HTTP basic credentials as ``(username, password)``."""
        return (self.username, self.password)

    def configuration(self) -> dict[str, object]:
        """Return the Orthanc configuration used for this instance."""
        return {
            "Name": "MSKWB-local",
            "StorageDirectory": str(self.storage_dir / "storage"),
            "IndexDirectory": str(self.storage_dir / "index"),
            "HttpPort": self.http_port,
            "RemoteAccessAllowed": False,
            "DicomServerEnabled": False,
            "AuthenticationEnabled": True,
            "RegisteredUsers": {self.username: self.password},
            "HttpCompressionEnabled": False,
            "StorageCompression": False,
            "Plugins": [str(DICOMWEB_PLUGIN)],
            "DicomWeb": {
                "Enable": True,
                "Root": "/dicom-web/",
                "EnableWado": True,
                "WadoRoot": "/wado",
                "Ssl": False,
                "StudiesMetadata": "Full",
                "SeriesMetadata": "Full",
                # Orthanc writes BulkDataURIs from the Host header; clients that omit the
                # port would otherwise get unusable links.
                "Host": f"127.0.0.1:{self.http_port}",
            },
        }

    def start(self, timeout_s: float = 30.0) -> None:
        """Write the configuration, start Orthanc and wait until its REST API answers.

        Raises
        ------
        OrthancMissingError
            If Orthanc or the DICOMweb plugin is not installed.
        RuntimeError
            If Orthanc exits or does not answer within ``timeout_s``.
        """
        executable = find_orthanc_executable()
        if not DICOMWEB_PLUGIN.is_file():
            raise OrthancMissingError(
                f"the Orthanc DICOMweb plugin is missing ({DICOMWEB_PLUGIN}): "
                "install the Debian package 'orthanc-dicomweb'"
            )
        if not self.http_port:
            self.http_port = free_loopback_port()
        elif not port_is_free(self.http_port):
            # Another server answering there would be taken for this one.
            raise RuntimeError(f"port {self.http_port} on 127.0.0.1 is already in use")
        self.storage_dir.mkdir(parents=True, exist_ok=True)
        config_path = self.storage_dir / "orthanc.json"
        config_path.write_text(json.dumps(self.configuration(), indent=2))
        log_path = self.storage_dir / "orthanc.log"
        with log_path.open("ab") as log_file:
            self._process = subprocess.Popen(
                [str(executable), str(config_path)], stdout=log_file, stderr=subprocess.STDOUT
            )
        self._wait_until_ready(timeout_s, log_path)
        logger.info("Orthanc answers on %s", self.url)

    def _wait_until_ready(self, timeout_s: float, log_path: Path) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise RuntimeError(
                    f"Orthanc exited with code {self._process.returncode}; see {log_path}"
                )
            try:
                answer = requests.get(f"{self.url}/system", auth=self.auth, timeout=1)
                if answer.status_code == 200 and self.is_running():
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"Orthanc did not answer on {self.url} within {timeout_s} s")

    def stop(self) -> None:
        """Stop Orthanc (its storage folder stays)."""
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None

    def is_running(self) -> bool:
        """Whether the Orthanc process is alive."""
        return self._process is not None and self._process.poll() is None

    def clear(self) -> None:
        """Delete every patient stored in this Orthanc (tests use it between cases)."""
        patients = requests.get(f"{self.url}/patients", auth=self.auth, timeout=30)
        patients.raise_for_status()
        for patient_id in patients.json():
            requests.delete(f"{self.url}/patients/{patient_id}", auth=self.auth, timeout=30)

    def __enter__(self) -> LocalOrthanc:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

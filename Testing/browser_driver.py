"""Drive a real headless Chromium over the DevTools protocol, for the browser tests.

Chromium is started with an empty profile, no GPU, no background networking and a host
resolver that maps every name except loopback to "not found", so a page that tries to reach
the internet fails instead of waiting. Every request the page issues is recorded (from
``Network.requestWillBeSent``) so a test can prove that nothing left the machine.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import websocket

logger = logging.getLogger(__name__)

CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}


class BrowserError(RuntimeError):
    """Chromium could not be started or a DevTools command failed."""


def find_chromium() -> Path:
    """Return the Chromium executable, or raise :class:`BrowserError` naming what to install."""
    for name in CHROMIUM_CANDIDATES:
        found = shutil.which(name)
        if found:
            return Path(found)
    raise BrowserError("no Chromium executable on PATH (install the Debian package 'chromium')")


def is_loopback_url(url: str) -> bool:
    """Whether ``url`` stays on this machine (loopback host, or a data/blob/about URL)."""
    parts = urlsplit(url)
    if parts.scheme in ("data", "blob", "about", "chrome", "devtools", "chrome-error"):
        return True
    return (parts.hostname or "") in LOOPBACK_HOSTS or (parts.hostname or "").startswith("127.")


class Browser:
    """One headless Chromium with one page, driven over the DevTools protocol.

    Each instance has a profile of its own (cookies included), so two instances are two
    readers to a server. Only loopback is reachable, plus the ``reachable_hosts`` a test names
    (this machine's own addresses, for remote-access tests). Use it as a context manager;
    :meth:`close` stops the browser and removes its profile.
    """

    def __init__(
        self,
        width_px: int = 1600,
        height_px: int = 1000,
        executable: Path | None = None,
        startup_timeout_s: float = 30.0,
        reachable_hosts: tuple[str, ...] = (),
    ) -> None:
        self.width_px = width_px
        self.reachable_hosts = reachable_hosts
        self.height_px = height_px
        self.requested_urls: list[str] = []
        self.console_messages: list[str] = []
        self._executable = executable or find_chromium()
        self._profile = tempfile.TemporaryDirectory(
            prefix="mskwb-chromium-", ignore_cleanup_errors=True
        )
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._socket: websocket.WebSocket | None = None
        self._reader: threading.Thread | None = None
        self._next_id = 0
        self._replies: dict[int, dict[str, Any]] = {}
        self._condition = threading.Condition()
        self._closed = False
        self._launch(startup_timeout_s)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _launch(self, timeout_s: float) -> None:
        profile = Path(self._profile.name)
        arguments = [
            str(self._executable),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--disable-dev-shm-usage",
            "--host-resolver-rules=MAP * ~NOTFOUND, "
            + ", ".join(f"EXCLUDE {host}" for host in ("127.0.0.1", *self.reachable_hosts)),
            f"--user-data-dir={profile}",
            "--remote-debugging-port=0",
            f"--window-size={self.width_px},{self.height_px}",
            "about:blank",
        ]
        self._log = (profile / "chromium.log").open("wb")
        self._process = subprocess.Popen(arguments, stdout=self._log, stderr=subprocess.STDOUT)
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout_s
        while not port_file.is_file() or not port_file.read_text().strip():
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise BrowserError(f"Chromium did not open its DevTools port within {timeout_s} s")
            time.sleep(0.1)
        port = int(port_file.read_text().splitlines()[0])
        page_url = self._page_websocket_url(port, deadline)
        self._socket = websocket.create_connection(
            page_url, timeout=timeout_s, suppress_origin=True
        )
        self._reader = threading.Thread(target=self._read_messages, daemon=True)
        self._reader.start()
        self.send("Page.enable")
        self.send("Runtime.enable")
        self.send("Network.enable")
        self.send(
            "Emulation.setDeviceMetricsOverride",
            width=self.width_px,
            height=self.height_px,
            deviceScaleFactor=1,
            mobile=False,
        )

    def _page_websocket_url(self, port: int, deadline: float) -> str:
        while True:
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/json/list", timeout=5
                ) as reply:
                    targets = json.load(reply)
                pages = [t for t in targets if t.get("type") == "page"]
                if pages:
                    return str(pages[0]["webSocketDebuggerUrl"])
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise BrowserError("Chromium opened no page target")
            time.sleep(0.1)

    def _read_messages(self) -> None:
        assert self._socket is not None
        while not self._closed:
            try:
                raw = self._socket.recv()
            except (websocket.WebSocketException, OSError):
                break
            if not raw:
                continue
            message = json.loads(raw)
            if "id" in message:
                with self._condition:
                    self._replies[int(message["id"])] = message
                    self._condition.notify_all()
            else:
                self._on_event(message.get("method", ""), message.get("params", {}))
        with self._condition:
            self._closed = True
            self._condition.notify_all()

    def _on_event(self, method: str, params: dict[str, Any]) -> None:
        if method == "Network.requestWillBeSent":
            self.requested_urls.append(str(params.get("request", {}).get("url", "")))
        elif method == "Runtime.consoleAPICalled":
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"])
            self.console_messages.append(f"{params.get('type')}: {text}")

    def send(self, method: str, timeout_s: float = 30.0, **params: Any) -> dict[str, Any]:
        """Send one DevTools command and return its ``result``.

        Raises
        ------
        BrowserError
            If the browser answers with an error, closes, or does not answer in time.
        """
        if self._socket is None:
            raise BrowserError("the browser is not running")
        with self._condition:
            self._next_id += 1
            command_id = self._next_id
        self._socket.send(json.dumps({"id": command_id, "method": method, "params": params}))
        deadline = time.monotonic() + timeout_s
        with self._condition:
            while command_id not in self._replies:
                remaining = deadline - time.monotonic()
                if self._closed or remaining <= 0:
                    raise BrowserError(f"no answer to {method} within {timeout_s} s")
                self._condition.wait(remaining)
            reply = self._replies.pop(command_id)
        if "error" in reply:
            raise BrowserError(f"{method} failed: {reply['error']}")
        return dict(reply.get("result", {}))

    def navigate(self, url: str) -> None:
        """Open ``url`` in the page (returns once the navigation started)."""
        result = self.send("Page.navigate", url=url)
        if result.get("errorText"):
            raise BrowserError(f"could not open {url}: {result['errorText']}")

    def reload(self) -> None:
        """Reload the page, as the reader's browser button does (returns once it started)."""
        self.send("Page.reload", ignoreCache=False)

    def evaluate(self, expression: str, timeout_s: float = 30.0) -> Any:
        """Evaluate JavaScript in the page (awaiting a promise) and return its JSON value."""
        result = self.send(
            "Runtime.evaluate",
            timeout_s=timeout_s,
            expression=expression,
            returnByValue=True,
            awaitPromise=True,
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise BrowserError(f"JavaScript failed: {text}")
        return result.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout_s: float = 60.0, poll_s: float = 0.25) -> Any:
        """Poll a JavaScript expression until it is truthy; return its value.

        Raises
        ------
        TimeoutError
            If the expression stayed falsy for ``timeout_s`` seconds.
        """
        deadline = time.monotonic() + timeout_s
        last_error = ""
        while time.monotonic() < deadline:
            try:
                value = self.evaluate(expression)
                if value:
                    return value
            except BrowserError as error:
                last_error = str(error)
            time.sleep(poll_s)
        raise TimeoutError(f"still false after {timeout_s} s: {expression} {last_error}".strip())

    def screenshot(self, path: Path, scale: float = 1.0) -> Path:
        """Save the visible page as a PNG file (optionally scaled down) and return its path."""
        clip = {"x": 0, "y": 0, "width": self.width_px, "height": self.height_px, "scale": scale}
        result = self.send(
            "Page.captureScreenshot", format="png", captureBeyondViewport=False, clip=clip
        )
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(result["data"]))
        return path

    def click_at(self, x_px: float, y_px: float) -> None:
        """Move the mouse to a page position and click there with the left button."""
        self.send("Input.dispatchMouseEvent", type="mouseMoved", x=x_px, y=y_px, button="none")
        for kind in ("mousePressed", "mouseReleased"):
            self.send(
                "Input.dispatchMouseEvent", type=kind, x=x_px, y=y_px, button="left", clickCount=1
            )

    def set_file_input(self, selector: str, path: Path) -> None:
        """Choose a file in the ``<input type=file>`` matched by a CSS selector."""
        document = self.send("DOM.getDocument")
        found = self.send("DOM.querySelector", nodeId=document["root"]["nodeId"], selector=selector)
        if not found.get("nodeId"):
            raise BrowserError(f"no element matches {selector}")
        self.send(
            "DOM.setFileInputFiles", nodeId=found["nodeId"], files=[str(Path(path).resolve())]
        )

    def outside_requests(self) -> list[str]:
        """The recorded request URLs whose host is not loopback."""
        return [url for url in self.requested_urls if not is_loopback_url(url)]

    def close(self) -> None:
        """Stop Chromium and remove its temporary profile."""
        self._closed = True
        if self._socket is not None:
            with contextlib.suppress(websocket.WebSocketException, OSError):
                self._socket.close()
            self._socket = None
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=10)
        self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None
        self._profile.cleanup()

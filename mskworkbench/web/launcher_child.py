"""One reader's viewer process, started by the multi-reader front of ``mskwb serve``.

The process runs the ordinary viewer (:class:`mskworkbench.web.app.ViewerApp`) on a free
loopback port, with three differences from a viewer that browsers reach directly:

- it answers only requests carrying the secret the front gave it, and its single-reader
  guard is dedicated to the reader the front named (both through the environment, so neither
  appears on a command line that other local users can list);
- once it listens, it prints its port on standard output for the front;
- it exits when its standard input closes, which happens when the front exits, however the
  front ended.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path

from mskworkbench.web.access import AccessPolicy
from mskworkbench.web.launcher import READER_VARIABLE, READY_PREFIX, SECRET_VARIABLE
from mskworkbench.web.sources import ViewerSource

logger = logging.getLogger(__name__)

STDIN_FILENO = 0

#: What the page shows in place of the viewer when its connection closes.
DISCONNECTED_TEMPLATE = (
    '<div id="viewer-disconnected" style="position: fixed; inset: 0; padding: 3em;'
    ' font-family: sans-serif; background: #1e1e1e; color: #eee;">'
    "<h1>The connection to your viewer was lost</h1>"
    "<p>Reload the page: it opens your viewer again, or says why it cannot.</p></div>"
)


class ViewerChildError(RuntimeError):
    """The process was started without what the front must hand it."""


def _exit_when_front_exits() -> None:
    """Stop this process as soon as the front's end of standard input closes."""

    def watch() -> None:
        # The raw descriptor, not sys.stdin: a thread blocked inside a buffered reader would
        # hold its lock and make the interpreter abort when the process exits normally.
        while os.read(STDIN_FILENO, 4096):
            pass
        logger.warning("the viewer server front is gone; this viewer stops")
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="mskwb-front-watch", daemon=True).start()


def serve_one_reader(source: ViewerSource, work_dir: Path) -> None:
    """Serve the viewer for the one reader the front named, until the front stops it.

    Parameters
    ----------
    source
        Where studies are searched and retrieved (the same for every reader).
    work_dir
        This reader's own folder (plan outputs go to its ``plans`` subfolder).

    Raises
    ------
    ViewerChildError
        If the environment lacks the front's secret or the reader's name.
    """
    secret = os.environ.pop(SECRET_VARIABLE, "")
    reader = os.environ.pop(READER_VARIABLE, "")
    if not secret or not reader:
        raise ViewerChildError(
            f"a viewer process needs {SECRET_VARIABLE} and {READER_VARIABLE}; "
            "it is started by mskwb serve, not by hand"
        )
    _exit_when_front_exits()

    from mskworkbench.web.app import ViewerApp

    app = ViewerApp(source, work_dir / "plans", AccessPolicy(host="127.0.0.1", front_secret=secret))
    app.readers.dedicate(reader)
    app.state.trame__template_error = DISCONNECTED_TEMPLATE

    def announce(**_: object) -> None:
        print(f"{READY_PREFIX}{app.server.port}", flush=True)

    app.server.controller.on_server_ready.add(announce)
    app.start("127.0.0.1", 0)

"""``mskwb orthanc``: run the same private Orthanc the tests use, to try the tools by hand."""

from __future__ import annotations

import argparse
import os
import signal
import threading
from pathlib import Path

from mskworkbench.argument_types import port_number
from mskworkbench.cli import CommandError


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``orthanc`` sub-command."""
    parser = subparsers.add_parser(
        "orthanc",
        help="run a local Orthanc PACS with DICOMweb on 127.0.0.1 (for trying the tools)",
        description="Start Orthanc with its DICOMweb plugin on loopback, authentication on and "
        "the DICOM port off, and keep it running until Ctrl-C. The password is read from "
        "MSKWB_ORTHANC_PASSWORD (default: mskwb-test).",
    )
    parser.add_argument("--storage", type=Path, required=True, help="folder for Orthanc's data")
    parser.add_argument("--port", type=port_number, default=8042, help="HTTP port (default 8042)")
    parser.add_argument("--user", default="mskwb", help="user name (default mskwb)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Start Orthanc and wait for Ctrl-C or SIGTERM."""
    from mskworkbench.local_orthanc import LocalOrthanc, OrthancMissingError

    password = os.environ.get("MSKWB_ORTHANC_PASSWORD", "mskwb-test")
    orthanc = LocalOrthanc(args.storage, args.port, args.user, password)
    try:
        orthanc.start()
    except (OrthancMissingError, RuntimeError) as error:
        raise CommandError(str(error)) from error
    print(f"Orthanc is running: DICOMweb at {orthanc.dicomweb_url} (user {args.user})")
    print("Press Ctrl-C to stop.")
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    try:
        stopped.wait()
    except KeyboardInterrupt:
        pass
    finally:
        orthanc.stop()
    return 0

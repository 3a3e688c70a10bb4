"""``mskwb serve``: the browser viewer on trame-slicer, for an archive folder or a PACS."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from mskworkbench.cli import CommandError

TOKEN_VARIABLE = "MSKWB_SERVE_TOKEN"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``serve`` sub-command."""
    parser = subparsers.add_parser(
        "serve",
        help="serve the browser viewer (studies, priors, 3D bones, measurements, plan)",
        description="Serve the MSK Workbench viewer in the browser. It binds 127.0.0.1 unless "
        "--host names another address together with --allow-remote; remote viewers must then "
        f"present a token (from {TOKEN_VARIABLE}, or a random one printed at start). One "
        "server serves one reader (browser) at a time: another browser is shown that the "
        "viewer is in use; when the reader closes the page, the case is cleared for the next "
        "one. Start one server per reader, each on its own --port.",
    )
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--archive", type=Path, help="folder of DICOM studies (local archive)")
    where.add_argument("--pacs", help="configured PACS name or DICOMweb URL")
    parser.add_argument("--port", type=int, default=8080, help="HTTP port (default 8080; 0: any)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a non-loopback --host; every request then needs the access token",
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        help="folder for retrieved series and plan outputs (default: temporary)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Build the viewer and serve it until interrupted."""
    os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")
    from mskworkbench.web.access import AccessError, AccessPolicy

    try:
        policy = AccessPolicy.create(
            args.host, args.allow_remote, os.environ.get(TOKEN_VARIABLE, "")
        )
    except AccessError as error:
        raise CommandError(str(error)) from error

    from mskworkbench.web.app import ViewerApp
    from mskworkbench.web.sources import ArchiveSource, PacsSource, ViewerSource

    holder = None
    work_dir = args.work_dir
    if work_dir is None:
        holder = tempfile.TemporaryDirectory(prefix="mskwb-serve-")
        work_dir = Path(holder.name)
    work_dir.mkdir(parents=True, exist_ok=True)
    source: ViewerSource
    try:
        if args.archive is not None:
            source = ArchiveSource(args.archive)
        else:
            source = PacsSource(args.pacs, work_dir / "retrieved")
    except (OSError, ValueError) as error:
        raise CommandError(str(error)) from error

    app = ViewerApp(source, work_dir / "plans", policy)
    token_query = f"?token={policy.token}" if policy.token else ""

    def announce(**_: object) -> None:
        print(
            f"MSK Workbench viewer on http://{args.host}:{app.server.port}/{token_query}",
            file=sys.stderr,
            flush=True,
        )

    app.server.controller.on_server_ready.add(announce)
    try:
        app.start(args.host, args.port)
    finally:
        if holder is not None:
            holder.cleanup()
    return 0

"""``mskwb serve``: the browser viewer on trame-slicer, for an archive folder or a PACS."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from mskworkbench.argument_types import port_number
from mskworkbench.cli import CommandError

TOKEN_VARIABLE = "MSKWB_SERVE_TOKEN"
#: Hidden flag that makes ``mskwb serve`` one reader's viewer process behind the front.
CHILD_FLAG = "--viewer-child"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``serve`` sub-command."""
    parser = subparsers.add_parser(
        "serve",
        help="serve the browser viewer (studies, priors, 3D bones, measurements, plan)",
        description="Serve the MSK Workbench viewer in the browser. It binds 127.0.0.1 unless "
        "--host names another address together with --allow-remote; remote viewers must then "
        f"present a token (from {TOKEN_VARIABLE}, or a random one printed at start). Every "
        "reader (browser) gets a viewer process of their own behind the one address, so no "
        "reader sees another's patient and one reader's plan or retrieval never holds up "
        "another's page. Each viewer costs several hundred MB of memory: --max-readers caps "
        "how many run at once, and a further browser gets a page saying all places are in "
        "use. A viewer is stopped shortly after its reader's last page closes (a reload "
        "keeps the case).",
    )
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--archive", type=Path, help="folder of DICOM studies (local archive)")
    where.add_argument("--pacs", help="configured PACS name or DICOMweb URL")
    parser.add_argument(
        "--port", type=port_number, default=8080, help="HTTP port (default 8080; 0: any)"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a non-loopback --host; every request then needs the access token",
    )
    parser.add_argument(
        "--max-readers",
        type=int,
        default=4,
        help="readers served at once, one viewer process each (default 4)",
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        help="folder for retrieved series and plan outputs, one subfolder per reader's viewer "
        "(default: temporary)",
    )
    parser.add_argument(CHILD_FLAG, action="store_true", help=argparse.SUPPRESS)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Serve the viewer front until interrupted (or, hidden, one reader's viewer process)."""
    os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")
    if args.viewer_child:
        return _run_viewer_child(args)
    return _run_front(args)


def _check_source(args: argparse.Namespace) -> None:
    """Fail now, once, on a source every viewer process would fail on."""
    if args.archive is not None:
        if args.archive.exists() and not args.archive.is_dir():
            raise CommandError(
                f"{args.archive} is a file, not an archive folder; give the folder that "
                "mskwb import or mskwb fetch fills"
            )
        from mskworkbench.archive_folders import check_archive_folder

        check_archive_folder(args.archive)
        return
    from MSKPriorsLib.servers import resolve_server

    try:
        resolve_server(args.pacs)
    except (OSError, ValueError, KeyError) as error:
        raise CommandError(str(error)) from error


def _make_work_dir(work_dir: Path) -> None:
    """Create the work folder, or say plainly why it cannot be one."""
    if work_dir.exists() and not work_dir.is_dir():
        raise CommandError(f"--work-dir {work_dir} is a file, not a folder; give a folder")
    try:
        work_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CommandError(
            f"--work-dir {work_dir} cannot be created: {error.strerror or error}"
        ) from error


def _child_command(args: argparse.Namespace, work_dir: Path) -> list[str]:
    """The command line of one reader's viewer process."""
    command = [sys.executable, "-m", "mskworkbench.cli"]
    # One -v makes the front say what it does; only -vv makes every viewer verbose too.
    command += ["-v"] * max(0, min(int(getattr(args, "verbose", 0) or 0), 2) - 1)
    command += ["serve", CHILD_FLAG, "--port", "0", "--work-dir", str(work_dir)]
    if args.archive is not None:
        command += ["--archive", str(args.archive.resolve())]
    else:
        command += ["--pacs", args.pacs]
    return command


def _run_front(args: argparse.Namespace) -> int:
    """Serve the front: access checks, then one viewer process per reader."""
    import asyncio

    from mskworkbench.web.access import AccessError, AccessPolicy, install_access_control
    from mskworkbench.web.launcher import ViewerLauncher, front_application, serve_front

    try:
        policy = AccessPolicy.create(
            args.host, args.allow_remote, os.environ.get(TOKEN_VARIABLE, "")
        )
    except AccessError as error:
        raise CommandError(str(error)) from error
    if args.max_readers < 1:
        raise CommandError(f"--max-readers must be at least 1, not {args.max_readers}")
    _check_source(args)

    holder = None
    work_dir = args.work_dir
    if work_dir is None:
        holder = tempfile.TemporaryDirectory(prefix="mskwb-serve-")
        work_dir = Path(holder.name)
    _make_work_dir(work_dir)
    child_env = {k: v for k, v in os.environ.items() if k != TOKEN_VARIABLE}
    launcher = ViewerLauncher(
        lambda folder: _child_command(args, folder),
        work_dir,
        max_readers=args.max_readers,
        env=child_env,
    )
    app = front_application(launcher, lambda front: install_access_control(front, policy))
    token_query = f"?token={policy.token}" if policy.token else ""

    def announce(port: int) -> None:
        readers = "1 reader" if args.max_readers == 1 else f"up to {args.max_readers} readers"
        print(
            f"MSK Workbench viewer on http://{args.host}:{port}/{token_query} ({readers})",
            file=sys.stderr,
            flush=True,
        )

    try:
        asyncio.run(serve_front(app, args.host, args.port, announce))
    finally:
        if holder is not None:
            holder.cleanup()
    return 0


def _run_viewer_child(args: argparse.Namespace) -> int:
    """One reader's viewer process, started by the front (hidden sub-mode)."""
    from MSKPriorsLib.archive import NotAnArchiveError
    from mskworkbench.web.launcher_child import ViewerChildError, serve_one_reader
    from mskworkbench.web.sources import ArchiveSource, PacsSource, ViewerSource

    if args.work_dir is None:
        raise CommandError("a viewer process needs the --work-dir its front gives it")
    _make_work_dir(args.work_dir)
    source: ViewerSource
    try:
        if args.archive is not None:
            source = ArchiveSource(args.archive)
        else:
            source = PacsSource(args.pacs, args.work_dir / "retrieved")
        serve_one_reader(source, args.work_dir)
    except (ValueError, ViewerChildError, NotAnArchiveError) as error:
        raise CommandError(str(error)) from error
    return 0

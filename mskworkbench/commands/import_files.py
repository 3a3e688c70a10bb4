"""``mskwb import``: put local DICOM files (a CD, a folder) into the local archive."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from mskworkbench.cli import CommandError


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``import`` sub-command."""
    parser = subparsers.add_parser(
        "import",
        help="copy the DICOM files of a folder into a local archive",
        description="Copy every DICOM file under FOLDER (recursively) into the archive and index "
        "it; files already archived are skipped, files that are not DICOM are counted. A file "
        "whose instance is archived under another patient is reported and not imported, and "
        "the exit status is then 1.",
    )
    parser.add_argument("folder", metavar="FOLDER", type=Path, help="folder to import")
    parser.add_argument("--archive", metavar="DIR", type=Path, required=True, help="archive folder")
    parser.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Import and report; exit status 1 when a file could not be stored or names another patient."""
    from MSKPriorsLib.archive import LocalArchive

    if not args.folder.is_dir():
        raise CommandError(f"folder {args.folder} does not exist")
    with LocalArchive(args.archive) as archive:
        summary = archive.import_folder(args.folder)
    if args.json:
        json.dump({"archive": str(args.archive), **asdict(summary)}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        conflicts = len(summary.patient_conflicts)
        print(
            f"{summary.stored} stored, {summary.already_present} already archived, "
            f"{summary.not_dicom} not DICOM, {len(summary.failed)} failed"
            + (f", {conflicts} archived under another patient (not imported)" if conflicts else "")
        )
    for message in summary.failed + summary.patient_conflicts:
        sys.stderr.write(f"mskwb import: {message}\n")
    return 1 if summary.failed or summary.patient_conflicts else 0

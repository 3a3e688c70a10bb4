"""``mskwb fetch``: retrieve studies or series from a PACS into the local archive."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from mskworkbench.cli import CommandError

if TYPE_CHECKING:
    from MSKPriorsLib.retrieval import TransferProgress


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``fetch`` sub-command."""
    parser = subparsers.add_parser(
        "fetch",
        help="retrieve a study, a series or a patient's studies into a local archive",
        description="Retrieve from a DICOMweb PACS into a local archive folder, several series "
        "at a time, streamed to disk. Instances already in the archive are not fetched again, "
        "so an interrupted fetch resumes when run again. Progress goes to stderr.",
    )
    parser.add_argument("--pacs", metavar="NAME_OR_URL", required=True, help="server name or URL")
    parser.add_argument("--archive", metavar="DIR", type=Path, required=True, help="archive folder")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--study", metavar="UID", help="StudyInstanceUID to retrieve")
    what.add_argument("--series", metavar="UID", help="SeriesInstanceUID to retrieve")
    what.add_argument("--patient-id", metavar="ID", help="retrieve every study of this PatientID")
    parser.add_argument("--parallel", type=int, default=3, help="series in flight (default 3)")
    parser.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    parser.set_defaults(func=run)


def _show_progress(progress: TransferProgress) -> None:
    sys.stderr.write(
        f"\r{progress.instances_done}/{progress.instances_total} instances, "
        f"{progress.series_done}/{progress.series_total} series, "
        f"{progress.bytes_done / 1e6:.1f} MB at {progress.megabytes_per_s:.1f} MB/s "
    )
    sys.stderr.flush()


def run(args: argparse.Namespace) -> int:
    """Retrieve and report; exit status 1 when any instance failed."""
    from MSKPriorsLib.archive import LocalArchive
    from MSKPriorsLib.dicomweb import DicomWebClient, DicomWebError
    from MSKPriorsLib.retrieval import retrieve_into_archive, series_to_retrieve
    from MSKPriorsLib.servers import ServerConfigError, resolve_server

    try:
        server = resolve_server(args.pacs)
        archive = LocalArchive(args.archive)
    except (ServerConfigError, OSError) as error:
        raise CommandError(str(error)) from error
    try:
        with DicomWebClient(server) as client:
            try:
                series = series_to_retrieve(
                    client, study_uid=args.study, series_uid=args.series, patient_id=args.patient_id
                )
            except ValueError as error:
                raise CommandError(str(error)) from error
            if not series:
                wanted = args.study or args.series or f"patient {args.patient_id}"
                raise CommandError(f"nothing found on {server.name} for {wanted}")
            result = retrieve_into_archive(
                client,
                archive,
                series,
                max_series_in_flight=args.parallel,
                progress=_show_progress,
            )
    except (DicomWebError, ServerConfigError) as error:
        raise CommandError(str(error)) from error
    finally:
        archive.close()
    sys.stderr.write("\n")
    summary = {"source": server.name, "archive": str(args.archive), **result.to_dict()}
    if args.json:
        json.dump(summary, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        retrieved = sum(s.retrieved for s in result.series)
        present = sum(s.already_present for s in result.series)
        print(
            f"{len(result.series)} series: {retrieved} instances retrieved, {present} already "
            f"archived, {summary['megabytes_per_s']} MB/s"
        )
    for message in result.failures:
        sys.stderr.write(f"mskwb fetch: {message}\n")
    return 1 if result.failures else 0

"""``mskwb studies``: list a patient's studies on a PACS or in the local archive."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mskworkbench.cli import CommandError

if TYPE_CHECKING:
    from MSKPriorsLib.records import SeriesRecord, StudyRecord


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``studies`` sub-command."""
    parser = subparsers.add_parser(
        "studies",
        help="list studies (and their series) on a PACS or in a local archive",
        description="Search a DICOMweb PACS (a configured name or a URL; credentials come from "
        "the server configuration or the environment, never from the command line) or a local "
        "archive folder. With --study the series of that study are listed too.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--pacs", metavar="NAME_OR_URL", help="configured server name or URL")
    source.add_argument("--archive", metavar="DIR", type=Path, help="local archive folder")
    parser.add_argument("--patient-id", metavar="ID", help="only this PatientID")
    parser.add_argument("--study", metavar="UID", help="only this StudyInstanceUID")
    parser.add_argument("--json", action="store_true", help="print JSON on stdout")
    parser.set_defaults(func=run)


def _search(args: argparse.Namespace) -> tuple[str, list[tuple[StudyRecord, list[SeriesRecord]]]]:
    from MSKPriorsLib.dicomweb import DicomWebClient, DicomWebError
    from MSKPriorsLib.records import newest_first
    from MSKPriorsLib.servers import ServerConfigError, resolve_server
    from mskworkbench.archive_folders import open_archive_to_read

    if args.archive is not None:
        with open_archive_to_read(args.archive) as archive:
            studies = archive.search_studies(patient_id=args.patient_id, study_uid=args.study)
            found = [(s, archive.search_series(s.study_uid) if args.study else []) for s in studies]
        return "archive", found
    try:
        server = resolve_server(args.pacs)
        with DicomWebClient(server) as client:
            studies = newest_first(
                client.search_studies(patient_id=args.patient_id, study_uid=args.study)
            )
            found = [(s, client.search_series(s.study_uid) if args.study else []) for s in studies]
    except (ServerConfigError, DicomWebError) as error:
        raise CommandError(str(error)) from error
    return server.name, found


def run(args: argparse.Namespace) -> int:
    """Search and print the studies found."""
    if args.patient_id is not None and not args.patient_id.strip():
        raise CommandError(
            "an empty patient ID matches no patient; leave out --patient-id to list every study"
        )
    source, found = _search(args)
    if args.json:
        studies: list[dict[str, Any]] = []
        for study, series in found:
            entry = study.to_dict()
            if args.study:
                entry["series"] = [s.to_dict() for s in series]
            studies.append(entry)
        json.dump({"source": source, "studies": studies}, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    if not found:
        print(f"no studies found in {source}")
        return 0
    for study, series in found:
        print(
            f"{study.study_date or '--------'}  {','.join(study.modalities) or '-':8} "
            f"{study.number_of_series:3d} series {study.number_of_instances:5d} instances  "
            f"ID {study.patient.patient_id or '(none)'}  {study.description}  {study.study_uid}"
        )
        for item in series:
            print(
                f"    #{item.series_number:<4d} {item.modality:4} {item.number_of_instances:5d} "
                f"instances  {item.description}  {item.series_uid}"
            )
    return 0

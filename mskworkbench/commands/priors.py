"""``mskwb priors``: a study's ranked prior studies on PACS servers and the local archive."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mskworkbench.archive_folders import check_archive_folder
from mskworkbench.cli import CommandError

if TYPE_CHECKING:
    from MSKPriorsLib.archive import LocalArchive
    from MSKPriorsLib.dicomweb import DicomWebClient
    from MSKPriorsLib.prior_discovery import PriorSearch
    from MSKPriorsLib.records import StudyRecord


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``priors`` sub-command."""
    parser = subparsers.add_parser(
        "priors",
        help="rank a study's prior studies (same patient) on PACS servers and/or an archive",
        description="Find the current study (--study) or the patient's most recent study "
        "(--patient-id), then every other study of the same PatientID on each --pacs server "
        "and the --archive folder. Priors are matched on PatientID and issuer and cross-checked "
        "on name and birth date; mismatches are listed as rejected, never offered. Priors are "
        "ranked by body part, laterality, modality and time, each with its reasons.",
    )
    parser.add_argument(
        "--pacs",
        metavar="NAME_OR_URL",
        action="extend",
        nargs="+",
        default=[],
        help="configured server name or DICOMweb URL (several allowed; credentials come from "
        "the server configuration or the environment)",
    )
    parser.add_argument("--archive", metavar="DIR", type=Path, help="local archive folder")
    current = parser.add_mutually_exclusive_group(required=True)
    current.add_argument("--study", metavar="UID", help="StudyInstanceUID of the current study")
    current.add_argument(
        "--patient-id", metavar="ID", help="PatientID; its most recent study is the current one"
    )
    parser.add_argument(
        "--exclude-later",
        action="store_true",
        help="leave out studies taken after the current one (default: rank them last)",
    )
    parser.add_argument(
        "--hanging",
        action="store_true",
        help="also choose a hanging protocol for the current study and its priors",
    )
    parser.add_argument("--json", action="store_true", help="print JSON on stdout")
    parser.set_defaults(func=run)


@contextmanager
def open_sources(
    pacs: list[str], archive: Path | None
) -> Iterator[list[DicomWebClient | LocalArchive]]:
    """Open a DICOMweb client per server and the archive, closing them all afterwards."""
    from MSKPriorsLib.archive import LocalArchive
    from MSKPriorsLib.dicomweb import DicomWebClient
    from MSKPriorsLib.servers import ServerConfigError, resolve_server

    if not pacs and archive is None:
        raise CommandError("give at least one --pacs server or an --archive folder")
    if archive is not None:
        check_archive_folder(archive)
    with ExitStack() as stack:
        sources: list[DicomWebClient | LocalArchive] = []
        for name_or_url in pacs:
            try:
                server = resolve_server(name_or_url)
            except ServerConfigError as error:
                raise CommandError(str(error)) from error
            sources.append(stack.enter_context(DicomWebClient(server)))
        if archive is not None:
            sources.append(stack.enter_context(LocalArchive.open_existing(archive)))
        yield sources


def run(args: argparse.Namespace) -> int:
    """Find the current study, search and rank its priors, and print them."""
    from MSKPriorsLib.prior_discovery import discover_priors, find_study, latest_study, source_name

    with open_sources(args.pacs, args.archive) as sources:
        failures: dict[str, str] = {}
        try:
            current = (
                find_study(sources, args.study, failures)
                if args.study is not None
                else latest_study(sources, args.patient_id, failures)
            )
        except LookupError as error:
            raise CommandError(str(error)) from error
        # A server that failed to answer is not asked again (each attempt costs its retries).
        reachable = [source for source in sources if source_name(source) not in failures]
        result = discover_priors(current, reachable, include_later=not args.exclude_later)
        result.source_errors[:0] = [f"{name}: {text}" for name, text in failures.items()]
        names = [source_name(source) for source in sources]
    hanging = _hanging(result) if args.hanging else None

    if args.json:
        output: dict[str, Any] = {"sources": names, **result.to_dict()}
        if hanging is not None:
            output["hanging_protocol"] = hanging
        json.dump(output, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        _print_text(result, hanging)
    for message in result.source_errors:
        sys.stderr.write(f"mskwb priors: {message}\n")
    return 0


def _hanging(result: PriorSearch) -> dict[str, Any]:
    from MSKPriorsLib.hanging_protocols import HangingProtocolError, load_rules, plan_hanging

    try:
        plan = plan_hanging(
            load_rules(),
            result.current,
            result.current_series,
            [(prior.study, prior.series) for prior in result.priors if prior.score >= 0],
        )
    except (HangingProtocolError, LookupError) as error:
        return {"error": str(error)}
    return plan.to_dict()


def _study_line(study: StudyRecord) -> str:
    date = study.study_date
    shown_date = f"{date[:4]}-{date[4:6]}-{date[6:]}" if len(date) == 8 else date or "no date"
    parts = [
        shown_date,
        ",".join(study.modalities) or "-",
        ",".join(study.body_parts) or "-",
        ",".join(study.lateralities) or "-",
        study.description or "(no description)",
        study.study_uid,
    ]
    return "  ".join(parts)


def _print_text(result: PriorSearch, hanging: dict[str, Any] | None) -> None:
    current = result.current
    patient_id = current.patient.patient_id or "(empty PatientID)"
    print(f"Current study (PatientID {patient_id}):")
    print(f"  {_study_line(current)}")
    if result.reason:
        print(f"No priors: {result.reason}.")
    elif not result.priors:
        print("No priors found.")
    else:
        print(f"Priors ({len(result.priors)}), most relevant first:")
        for prior in result.priors:
            print(
                f"  {prior.rank:2d}. score {prior.score:6.1f}  {_study_line(prior.study)}  "
                f"[{', '.join(prior.sources)}]"
            )
            print(f"      {prior.reason}")
    if result.rejected:
        print(f"Rejected, not loaded ({len(result.rejected)}):")
        for item in result.rejected:
            print(f"   -  {_study_line(item.study)}  [{', '.join(item.sources)}]")
            print(f"      {item.reason}")
    if result.excluded:
        print(f"Excluded ({len(result.excluded)}):")
        for item in result.excluded:
            print(f"   -  {_study_line(item.study)}: {item.reason}")
    if hanging is not None:
        if "error" in hanging:
            print(f"Hanging protocol: {hanging['error']}")
        else:
            views = ", ".join(
                f"{a['view']}={a['role']} {a['orientation']} {a['preset']}"
                for a in hanging["assignments"]
            )
            print(f"Hanging protocol {hanging['rule']} ({hanging['layout']}): {views or 'no view'}")
            for view, reason in hanging["unfilled"].items():
                print(f"  {view} left empty: {reason}")

"""``mskwb plan``: plan a case end to end from a PACS or a local archive."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from mskworkbench.archive_folders import check_archive_folder
from mskworkbench.cli import CommandError


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``plan`` sub-command."""
    parser = subparsers.add_parser(
        "plan",
        help="plan a case: priors, bones, measurements, report and scene",
        description="Find the current study and its ranked priors, retrieve what is missing "
        "into the archive, load and register them, reconstruct the bones of every CT, make "
        "every measurement the inputs allow, and write plan.json, report.html, scene.mrb, "
        "surfaces and DICOM results to the output folder.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--pacs", metavar="NAME_OR_URL", help="configured PACS name or URL")
    source.add_argument("--archive", type=Path, metavar="DIR", help="local archive folder")
    subject = parser.add_mutually_exclusive_group(required=True)
    subject.add_argument("--patient-id", metavar="ID", help="plan this patient's newest study")
    subject.add_argument("--study", metavar="UID", help="plan this study")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    parser.add_argument(
        "--landmarks",
        type=Path,
        nargs="+",
        default=[],
        metavar="FILE",
        help="Slicer markups JSON files with landmarks or endplate lines",
    )
    parser.add_argument(
        "--labels", type=Path, metavar="FILE", help="label map of the current CT (.seg.nrrd, NIfTI)"
    )
    parser.add_argument(
        "--push", action="store_true", help="store the SR and other results where the case is"
    )
    parser.add_argument("--json", action="store_true", help="print plan.json to standard output")
    parser.set_defaults(func=run)


def progress_printer(stage: str, message: str) -> None:
    """Print a progress line to standard error."""
    print(f"[{stage}] {message}", file=sys.stderr, flush=True)


def check_inputs(landmarks: list[Path], labels: Path | None) -> None:
    """Refuse missing input files before any work starts."""
    for path in [*landmarks, *([labels] if labels else [])]:
        if not Path(path).is_file():
            raise CommandError(f"the input file {path} does not exist")


def run_plan(request: Any, as_json: bool) -> int:
    """Run :func:`plan_case` and print the outcome (JSON only when ``as_json``)."""
    from MSKPlannerLib.case_plan import PlanError, plan_case
    from MSKPriorsLib.dicomweb import DicomWebError
    from MSKPriorsLib.servers import ServerConfigError

    try:
        result = plan_case(request, progress=progress_printer)
    except (PlanError, ServerConfigError, DicomWebError) as error:
        raise CommandError(str(error)) from error
    plan = result.plan
    if as_json:
        print(json.dumps(plan, indent=2, default=str))
        return 0
    rows = plan["measurements"]["rows"]
    print(f"Plan written to {result.out_dir}")
    print(f"  report: {result.report_path}")
    for row in rows:
        print(f"  {row['key']}: {row['value']:.2f} {row['unit']}")
    for key, reason in plan["measurements"]["not_measured"].items():
        print(f"  not measured: {key}: {reason}")
    for warning in plan["warnings"]:
        print(f"  warning: {warning['message']}")
    return 0


def run(args: argparse.Namespace) -> int:
    """Plan the case."""
    from MSKPlannerLib.case_plan import PlanRequest

    check_inputs(args.landmarks, args.labels)
    if args.archive is not None:
        check_archive_folder(args.archive)
    request = PlanRequest(
        out_dir=args.out,
        archive_dir=args.archive,
        pacs=args.pacs,
        patient_id=args.patient_id,
        study_uid=args.study,
        landmark_files=list(args.landmarks),
        labels_file=args.labels,
        push=args.push,
    )
    return run_plan(request, args.json)

"""``mskwb demo``: build a demo patient in a local archive and plan it end to end."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mskworkbench.commands.plan import progress_printer, run_plan
from mskworkbench.shared_data import SharedDataMissingError, shared_data_path


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``demo`` sub-command."""
    parser = subparsers.add_parser(
        "demo",
        help="plan a demo case end to end and print where the report is",
        description="Build a demo patient (current and prior CT, a calibrated long-leg "
        "radiograph, vertebra labels and alignment landmarks) in a local archive inside the "
        "output folder, then run 'mskwb plan' on it. The CT is the real TotalSegmentator CT "
        "when the shared data folder is present, generated anatomy otherwise.",
    )
    parser.add_argument(
        "--out", type=Path, default=Path("demo-output"), metavar="DIR", help="output folder"
    )
    parser.add_argument("--json", action="store_true", help="print plan.json to standard output")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Build the demo archive and plan it."""
    from MSKPlannerLib.case_plan import PlanRequest
    from MSKPlannerLib.demo_case import build_demo_archive

    out_dir = Path(args.out)
    ct: Path | None
    labels: Path | None
    try:
        ct = shared_data_path("totalsegmentator", "ct_volume.nii.gz")
        labels = shared_data_path("totalsegmentator", "ct_volume_vertebrae_labels.nii.gz")
    except SharedDataMissingError:
        ct = labels = None
    progress_printer(
        "demo", f"building the demo patient ({'real' if ct else 'generated'} CT) in {out_dir}"
    )
    case, archive_dir = build_demo_archive(out_dir / "demo-case", ct, labels)
    request = PlanRequest(
        out_dir=out_dir,
        archive_dir=archive_dir,
        patient_id=case.patient_id,
        landmark_files=[case.landmarks_file],
        labels_file=case.labels_file,
    )
    status = run_plan(request, args.json)
    print(f"Open the report: {(out_dir / 'report.html').resolve()}", file=sys.stderr)
    return status

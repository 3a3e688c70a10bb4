"""``mskwb report``: write a case's DICOM SR, SEG and key images, and store them on a PACS.

The case folder layout is described in :mod:`MSKPlannerLib.dicom_outputs`: the measurement
table (``measurements.json`` or ``plan.json``), the source DICOM series found below the
folder (or in ``--source`` folders), an optional bone label map (``segmentation/`` or
``--labels``) and key-image PNGs (``images/``, ``key_images/``). The objects are written to
``CASE_DIR/dicom/`` with an ``outbox.json`` manifest; ``--push`` stores the ones the server
does not hold yet, so running it again after a failure stores nothing twice.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from mskworkbench.cli import CommandError

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``report`` sub-command."""
    parser = subparsers.add_parser(
        "report",
        help="write DICOM SR, SEG and key images for a case folder and store them on a PACS",
        description="Write the measurement table as a DICOM SR (TID 1500), the bone label map "
        "as DICOM SEG and the key images as secondary captures into CASE_DIR/dicom/, and with "
        "--push store them on the PACS (STOW-RS). Uploads are idempotent: objects the server "
        "already holds are not sent again, and nothing in the folder is lost on failure.",
    )
    parser.add_argument("case_dir", metavar="CASE_DIR", type=Path, help="case folder")
    parser.add_argument(
        "--source",
        type=Path,
        action="append",
        default=[],
        help="folder with the source DICOM series (repeatable; CASE_DIR is always searched)",
    )
    parser.add_argument("--labels", type=Path, help="bone label map (.seg.nrrd or NIfTI)")
    parser.add_argument("--push", action="store_true", help="store the objects on the PACS")
    parser.add_argument(
        "--pacs", help="configured server name or DICOMweb URL (required with --push)"
    )
    parser.add_argument(
        "--no-key-object-selection",
        action="store_true",
        help="do not write the Key Object Selection document",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON only")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Write the objects and optionally push them."""
    from MSKPlannerLib.dicom_outputs import CaseFolderError, report_case
    from MSKPlannerLib.dicom_sr import SRError
    from MSKPlannerLib.key_images import KeyImageError
    from MSKPlannerLib.pacs_upload import OutboxError
    from MSKPriorsLib.dicomweb import DicomWebError
    from MSKPriorsLib.servers import ServerConfigError

    case_dir: Path = args.case_dir
    if not case_dir.is_dir():
        raise CommandError(f"case folder {case_dir} does not exist")
    if args.push and not args.pacs:
        raise CommandError("--push needs --pacs NAME_OR_URL")
    try:
        report = report_case(
            case_dir,
            args.source,
            args.labels,
            key_object_selection=not args.no_key_object_selection,
            push_to=args.pacs if args.push else None,
        )
    except ServerConfigError as error:
        raise CommandError(str(error)) from error
    except (
        CaseFolderError,
        SRError,
        KeyImageError,
        OutboxError,
        DicomWebError,
        ValueError,
    ) as error:
        raise CommandError(f"{case_dir}: {error}") from error
    outbox = report.outbox
    result: dict[str, Any] = dict(report.result)
    result["outbox"] = str(outbox.folder)
    result["objects"] = {
        name: {"file": entry.get("file"), "sop_instance_uid": entry.get("sop_uid")}
        for name, entry in outbox.objects.items()
        if entry.get("file")
    }
    status = 0
    if report.upload is not None:
        upload = report.upload
        result["push"] = upload.to_dict()
        if not upload.complete:
            status = 1
            print(
                f"mskwb report: the upload to {args.pacs} stopped "
                f"({'; '.join(upload.failed.values())}); the objects stay in {outbox.folder}, "
                "run the same command again to store the rest",
                file=sys.stderr,
            )
    if args.json:
        print(json.dumps(result, indent=2))
        return status
    print(f"{case_dir}: wrote {', '.join(result['written'])} into {outbox.folder}")
    for name, reason in result["skipped"].items():
        print(f"  not written: {name}: {reason}")
    if "push" in result:
        push = result["push"]
        print(
            f"  stored {len(push['stored'])}, already on the server {len(push['already_present'])}"
            f", failed {len(push['failed'])}, pending {len(push['pending'])}"
        )
    return status

"""``mskwb inspect``: load a series folder (or a volume file) and print its geometry."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mskworkbench.cli import CommandError

if TYPE_CHECKING:
    from MSKPriorsLib.pixel_data_series import DicomSeriesVolume


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``inspect`` sub-command."""
    parser = subparsers.add_parser(
        "inspect",
        help="load a DICOM series folder (or a volume file) and print its geometry and warnings",
        description="Read a series the way the viewers load it: slices sorted along their "
        "normal, spacing from positions, localizers and non-image files left out, gantry tilt, "
        "uneven spacing and missing slices detected (and corrected by resampling unless "
        "--geometry refuse). Prints dimensions, spacing, origin and axis directions in RAS "
        "millimetres, and the warnings with their stable codes.",
    )
    parser.add_argument(
        "path", type=Path, metavar="PATH", help="series folder, DICOM file or volume file"
    )
    parser.add_argument(
        "--series", metavar="UID", help="SeriesInstanceUID, when PATH holds several"
    )
    parser.add_argument(
        "--geometry",
        choices=("correct", "refuse"),
        default="correct",
        help="resample an irregular stack (default) or refuse it with the reason",
    )
    parser.add_argument("--json", action="store_true", help="print JSON on stdout")
    parser.set_defaults(func=run)


def _load(args: argparse.Namespace) -> DicomSeriesVolume:
    from MSKPriorsLib.dicom_geometry import SeriesLoadError
    from MSKPriorsLib.pixel_data_series import is_volume_file, read_dicom_series, read_volume_file

    path: Path = args.path
    if not path.exists():
        raise CommandError(f"{path} does not exist")
    try:
        if is_volume_file(path):
            return read_volume_file(path)
        return read_dicom_series(path, series_uid=args.series, geometry=args.geometry)
    except SeriesLoadError as error:
        hint = " (pass --series UID)" if error.code == "multiple_series" else ""
        raise CommandError(f"{error}{hint} [{error.code}]") from error
    except FileNotFoundError as error:
        raise CommandError(str(error)) from error


def run(args: argparse.Namespace) -> int:
    """Load the series and print its geometry."""
    volume = _load(args)
    summary: dict[str, Any] = {"path": str(args.path)}
    summary.update(volume.summary())
    if args.json:
        json.dump(summary, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    _print_text(summary)
    return 0


def _vector(values: list[float]) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"


def _print_text(summary: dict[str, Any]) -> None:
    print(f"path            {summary['path']}")
    print(f"series          {summary['series_uid'] or '-'} ({summary['modality'] or '-'})")
    print(f"slices read     {summary['number_of_slices']}")
    print(f"dimensions      {' x '.join(str(v) for v in summary['dimensions'])}")
    print(f"spacing mm      {_vector(summary['spacing_mm'])}")
    print(f"origin RAS mm   {_vector(summary['origin_ras_mm'])}")
    for axis, direction in zip("ijk", summary["directions_ras"], strict=True):
        print(f"{axis} axis RAS      {_vector(direction)}")
    if summary["gantry_tilt_deg"]:
        print(f"gantry tilt     {summary['gantry_tilt_deg']:.2f} deg")
    print(f"resampled       {'yes' if summary['resampled'] else 'no'}")
    if not summary["warnings"]:
        print("warnings        none")
    for warning in summary["warnings"]:
        print(f"warning         [{warning['code']}] {warning['message']}")

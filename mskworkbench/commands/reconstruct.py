"""``mskwb reconstruct``: bones of a CT as closed surfaces (STL, OBJ) and a segmentation file."""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from pathlib import Path
from typing import Any

from mskworkbench.cli import CommandError

logger = logging.getLogger(__name__)

_UID = re.compile(r"^[0-9]+(\.[0-9]+)+$")
_VOLUME_SUFFIXES = (".nrrd", ".nhdr", ".nii", ".nii.gz", ".mha", ".mhd")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``reconstruct`` sub-command."""
    parser = subparsers.add_parser(
        "reconstruct",
        help="segment the bones of a CT and write one closed surface per bone",
        description="Segment the bones of a CT (by threshold, or from a label map such as "
        "TotalSegmentator's) and write per bone an STL and an OBJ surface in the chosen frame, "
        "plus the segmentation as bones.seg.nrrd. INPUT is a DICOM series folder, a series "
        "UID of the local archive (with --archive) or a volume file (.nrrd, .nii, .nii.gz).",
    )
    parser.add_argument("input", metavar="INPUT", help="series folder, series UID or volume file")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--labels", type=Path, help="label map (.seg.nrrd or NIfTI) naming bones")
    parser.add_argument("--names", type=Path, help="JSON table label value -> structure name")
    parser.add_argument("--archive", type=Path, help="local archive folder (for a series UID)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON only")
    parser.add_argument("--frame", choices=("RAS", "LPS"), default="RAS", help="mesh frame")
    parser.add_argument(
        "--threshold-preset", choices=("cortical", "cancellous"), default="cortical"
    )
    parser.add_argument("--lower-hu", type=float, help="lower bone threshold (HU)")
    parser.add_argument("--upper-hu", type=float, help="upper bone threshold (HU)")
    parser.add_argument("--metal-hu", type=float, default=2500.0, help="metal above this (HU)")
    parser.add_argument(
        "--fill", choices=("3d", "slices", "none"), default="3d", help="cavity filling"
    )
    parser.add_argument("--smoothing", type=float, default=0.5, help="0..1 (default 0.5)")
    parser.add_argument("--decimate", type=float, default=0.0, help="fraction of triangles removed")
    parser.set_defaults(func=run)


def _load_dicom(context: Any, source: Path | list[Path], name: str) -> tuple[Any, list[str]]:
    """Load a DICOM series with checked geometry; return its node and the loader's warnings."""
    from MSKPriorsLib.dicom_geometry import SeriesLoadError
    from MSKPriorsLib.series_loader import load_series

    try:
        loaded = load_series(context, source)
    except (SeriesLoadError, FileNotFoundError) as error:
        raise CommandError(f"{name} could not be loaded: {error}") from error
    return loaded.volume_node, [warning.message for warning in loaded.warnings]


def load_ct(context: Any, source: str, archive: Path | None) -> tuple[Any, list[str]]:
    """Load INPUT into a CT volume node of ``context.scene``; return it and load warnings.

    A folder or an archive series UID is read as DICOM with checked geometry (gantry tilt
    and uneven slices are corrected and reported); a volume file is read with SimpleITK.
    """
    import SimpleITK as sitk

    from MSKPriorsLib.mrml_volumes import add_volume_from_sitk

    path = Path(source)
    if path.is_dir():
        return _load_dicom(context, path, f"series folder {path}")
    if path.is_file():
        if not path.name.lower().endswith(_VOLUME_SUFFIXES):
            raise CommandError(f"{path} is not a volume file (.nrrd, .nii, .nii.gz) or folder")
        try:
            image = sitk.ReadImage(str(path))
        except RuntimeError as error:
            raise CommandError(f"volume {path} could not be read: {error}") from error
        return add_volume_from_sitk(context.scene, image, path.name.split(".")[0]), []
    if _UID.match(source):
        if archive is None:
            raise CommandError(f"series UID {source} needs --archive to name the local archive")
        from mskworkbench.archive_folders import open_archive_to_read

        with open_archive_to_read(archive) as opened:
            files = opened.instance_paths(source)
        if not files:
            raise CommandError(f"series {source} is not in the archive {archive}")
        return _load_dicom(context, list(files), f"series {source}")
    raise CommandError(f"input {source} is neither a folder, a volume file nor a series UID")


def run(args: argparse.Namespace) -> int:
    """Reconstruct the bones of INPUT into --out."""
    from MSKPlannerLib.bone_segmentation import BoneSegmentationOptions
    from MSKPlannerLib.label_maps import LabelMapError, read_label_map
    from MSKPlannerLib.surface_reconstruction import ReconstructionOptions, reconstruct_bones
    from MSKPriorsLib.app_context import AppContext

    if not 0.0 <= args.decimate < 1.0:
        raise CommandError(f"--decimate {args.decimate} must be at least 0 and below 1")
    if not 0.0 <= args.smoothing <= 1.0:
        raise CommandError(f"--smoothing {args.smoothing} must be between 0 and 1")
    labels: Any = None
    if args.labels is not None:
        try:
            labels = read_label_map(args.labels, args.names)
        except LabelMapError as error:
            raise CommandError(str(error)) from error
    try:
        segmentation_options = BoneSegmentationOptions(
            preset=args.threshold_preset,
            lower_hu=args.lower_hu,
            upper_hu=args.upper_hu,
            metal_hu=args.metal_hu,
            fill_cavities=args.fill,
        )
        segmentation_options.threshold_range_hu()
    except ValueError as error:
        raise CommandError(str(error)) from error

    context = AppContext.create_headless()
    volume_node, load_warnings = load_ct(context, args.input, args.archive)
    options = ReconstructionOptions(
        segmentation=segmentation_options,
        smoothing_factor=args.smoothing,
        decimate=args.decimate,
        output_dir=args.out,
        frame=args.frame,
        add_models=False,
    )
    logger.info("reconstructing bones of %s", volume_node.GetName())
    result = reconstruct_bones(context, volume_node, labels, options)
    result.warnings[:0] = load_warnings
    summary = {"input": str(args.input), **result.to_dict()}
    summary["seconds"] = {step: round(value, 3) for step, value in result.seconds.items()}
    (Path(args.out) / "reconstruction.json").write_text(
        json.dumps(summary, indent=2), encoding="utf-8"
    )
    if args.json:
        json.dump(summary, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        for bone in result.bones:
            state = "closed" if bone.closed else "NOT closed"
            print(
                f"{bone.name:24s} {bone.volume_ml:9.2f} ml {bone.area_cm2:9.2f} cm2 {state:10s} "
                + " ".join(str(path) for path in bone.files.values())
            )
        print(f"segmentation: {result.files.get('seg.nrrd')}")
        for warning in result.warnings:
            print(f"warning: {warning}", file=sys.stderr)
    return 0 if result.bones else 1

"""``mskwb measure cobb|alignment|hip``: measurements from landmark files or a label map."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mskworkbench.cli import CommandError

if TYPE_CHECKING:
    from MSKPlannerLib.calibration import Radiograph
    from MSKPlannerLib.landmark_identity import ExpectedIdentity
    from MSKPlannerLib.landmarks import LandmarkSet
    from MSKPlannerLib.measurement_table import Calibration, MeasurementTable

logger = logging.getLogger(__name__)

#: Keys printed for each measurement, in order.
OUTPUT_KEYS = {
    "cobb": ("cobb_deg", "upper_end_vertebra", "lower_end_vertebra", "apex_vertebra"),
    "alignment": ("hka_deg", "mldfa_deg", "mpta_deg", "jlca_deg", "mad_mm"),
    "hip": ("femoral_offset_mm", "cup_inclination_deg", "ccd_deg", "lld_mm"),
}


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``measure`` sub-command."""
    parser = subparsers.add_parser(
        "measure",
        help="measure Cobb angle, lower-limb alignment or hip geometry",
        description="Measure from Slicer markups files (--landmarks) or, for the Cobb angle, "
        "from a per-vertebra label map (--labels). Angles are measured in the frontal plane. "
        "Lengths need a calibration: --image (a DICOM radiograph's tags), --calibration (the "
        "JSON of 'mskwb calibrate') or --volume (landmarks placed on a CT/MR volume); without "
        "one, lengths are refused.",
    )
    parser.add_argument("kind", choices=tuple(OUTPUT_KEYS), help="what to measure")
    parser.add_argument(
        "--landmarks", nargs="+", type=Path, default=[], help="Slicer markups .mrk.json file(s)"
    )
    parser.add_argument("--labels", type=Path, help="per-vertebra label map (automatic Cobb)")
    parser.add_argument(
        "--label-names",
        type=Path,
        help="JSON table label value -> name (default: label_names.json beside the labels)",
    )
    parser.add_argument("--side", choices=("left", "right"), help="limb side (overrides files)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--image", type=Path, help="DICOM radiograph the landmarks were placed on")
    source.add_argument("--calibration", type=Path, help="JSON written by 'mskwb calibrate --json'")
    source.add_argument(
        "--volume", action="store_true", help="the landmarks were placed on a CT/MR volume (mm)"
    )
    parser.add_argument("--out", type=Path, help="write the measurement table (JSON) here")
    parser.add_argument("--json", action="store_true", help="print the result as JSON only")
    parser.set_defaults(func=run)


def _calibration_from_json(path: Path) -> tuple[Calibration, float]:
    """The calibration saved by ``mskwb calibrate --json`` and the landmark coordinate scale."""
    import numpy as np

    from MSKPlannerLib.calibration import CalibrationError, check_plausible_spacing
    from MSKPlannerLib.measurement_table import Calibration

    try:
        data = json.loads(path.read_text())
        spacing = data.get("mm_per_pixel")
        method = str(data["method"])
    except (OSError, ValueError, KeyError, AttributeError) as error:
        raise CommandError(
            f"{path} is not a calibration written by 'mskwb calibrate --json'"
        ) from error
    if spacing is None or method == "uncalibrated":
        detail = f"{data.get('detail', '')} ({path})".strip()
        return Calibration(method="uncalibrated", detail=detail), 1.0
    try:
        spacing = check_plausible_spacing(spacing, str(path))
        # Landmarks were placed on the image as loaded (tag spacing, or 1 mm per pixel).
        loaded = check_plausible_spacing(data.get("image_mm_per_pixel") or [1.0, 1.0], str(path))
    except CalibrationError as error:
        raise CommandError(str(error)) from error
    calibration = Calibration(method=method, mm_per_pixel=spacing, detail=data.get("detail", ""))
    ratios = [float(spacing[i]) / float(loaded[i]) for i in range(2)]
    if abs(ratios[0] - ratios[1]) > 1e-3 * max(ratios):
        raise CommandError(
            f"{path}: the calibration changes the pixel aspect ratio; place the landmarks on an "
            "image loaded with this calibration instead"
        )
    return calibration, float(np.mean(ratios))


#: How far (mm, or pixels when uncalibrated) a landmark may lie outside the radiograph.
EXTENT_TOLERANCE_MM = 3.0


def _check_within_image(landmarks: LandmarkSet, radiograph: Radiograph) -> None:
    """Refuse landmarks that do not lie on the radiograph they are said to be placed on."""
    import numpy as np

    from MSKPlannerLib.calibration import radiograph_ijk_to_ras

    points = [np.asarray(p, dtype=float).reshape(-1, 3) for p in landmarks.points_ras_mm.values()]
    points += [np.asarray(p, dtype=float).reshape(-1, 3) for p in landmarks.lines_ras_mm.values()]
    if not points:
        return
    ijk_to_ras, _orientation = radiograph_ijk_to_ras(radiograph)
    all_points = np.concatenate(points)
    ijk = (np.c_[all_points, np.ones(len(all_points))] @ np.linalg.inv(ijk_to_ras).T)[:, :2]
    spacing = np.linalg.norm(ijk_to_ras[:3, :2], axis=0)
    tolerance_px = EXTENT_TOLERANCE_MM / spacing
    rows, columns = radiograph.pixels.shape
    last = np.array([columns - 1.0, rows - 1.0])
    outside = np.any((ijk < -tolerance_px) | (ijk > last + tolerance_px), axis=1)
    if outside.any():
        raise CommandError(
            f"{int(outside.sum())} of {len(all_points)} landmark points lie outside "
            f"{radiograph.source}; they were not placed on this image"
        )


def _calibration(
    args: argparse.Namespace,
) -> tuple[Calibration, float, str, Radiograph | None]:
    """Calibration, landmark coordinate scale, source image name and the radiograph if given."""
    from MSKPlannerLib.calibration import CalibrationError, read_radiograph
    from MSKPlannerLib.measurement_table import VOLUME_GEOMETRY, Calibration

    if args.image is not None:
        try:
            radiograph = read_radiograph(args.image)
        except CalibrationError as error:
            raise CommandError(str(error)) from error
        return radiograph.calibration, 1.0, str(args.image), radiograph
    if args.calibration is not None:
        calibration, scale = _calibration_from_json(args.calibration)
        return calibration, scale, str(args.calibration), None
    if args.volume or (args.labels is not None and not args.landmarks):
        return VOLUME_GEOMETRY, 1.0, "", None
    return (
        Calibration(
            method="uncalibrated",
            detail="no calibration given (use --image, --calibration or --volume)",
        ),
        1.0,
        "",
        None,
    )


def _identity_of(radiograph: Radiograph | None) -> ExpectedIdentity | None:
    """Who the radiograph names, when it names a patient: landmark files must name the same."""
    from MSKPlannerLib.landmark_identity import ExpectedIdentity

    if radiograph is None or not str(radiograph.dataset.get("PatientID", "")).strip():
        return None
    dataset = radiograph.dataset
    return ExpectedIdentity(
        str(dataset.get("PatientID", "")).strip(),
        str(dataset.get("PatientName", "")),
        str(dataset.get("PatientBirthDate", "")),
        str(dataset.get("StudyInstanceUID", "")),
        {str(dataset.get("SeriesInstanceUID", ""))},
    )


def _scaled(landmarks: LandmarkSet, scale: float) -> LandmarkSet:
    from MSKPlannerLib.landmarks import LandmarkSet

    if scale == 1.0:
        return landmarks
    return LandmarkSet(
        points_ras_mm={k: v * scale for k, v in landmarks.points_ras_mm.items()},
        lines_ras_mm={k: v * scale for k, v in landmarks.lines_ras_mm.items()},
        side=landmarks.side,
        source=landmarks.source,
    )


def _cobb_from_labels(args: argparse.Namespace) -> MeasurementTable:
    from MSKPlannerLib.label_maps import LabelMapError, read_label_map
    from MSKPlannerLib.measure_cobb import CobbError, cobb_from_sitk_labels

    names: Path | None = args.label_names
    if names is None:
        beside = args.labels.parent / "label_names.json"
        names = beside if beside.is_file() else None
    try:
        label_map = read_label_map(args.labels, names)
        return cobb_from_sitk_labels(label_map.image, label_map.names, str(args.labels))
    except (LabelMapError, CobbError) as error:
        raise CommandError(str(error)) from error


def _flat(kind: str, table: MeasurementTable) -> dict[str, Any]:
    values: dict[str, Any] = {key: None for key in OUTPUT_KEYS[kind]}
    for row in table.rows:
        if row.key in values:
            values[row.key] = row.value
        for name in ("upper_end_vertebra", "lower_end_vertebra", "apex_vertebra"):
            if name in row.details and name in values:
                values[name] = row.details[name]
    return values


def run(args: argparse.Namespace) -> int:
    """Measure and print the values."""
    from MSKPlannerLib.landmark_identity import check_landmark_files
    from MSKPlannerLib.landmarks import LandmarkError, read_landmark_files
    from MSKPlannerLib.measure_cobb import CobbError
    from MSKPlannerLib.measurement_nodes import measure_landmarks

    if args.kind == "cobb" and args.labels is not None and not args.landmarks:
        table = _cobb_from_labels(args)
        side = None
    else:
        if not args.landmarks:
            raise CommandError(f"measure {args.kind} needs --landmarks FILE.mrk.json")
        if args.labels is not None:
            raise CommandError("give either --landmarks or --labels for the Cobb angle, not both")
        calibration, scale, image_name, radiograph = _calibration(args)
        try:
            check_landmark_files(args.landmarks, _identity_of(radiograph))
            landmarks = _scaled(read_landmark_files(args.landmarks), scale)
            if radiograph is not None:
                _check_within_image(landmarks, radiograph)
            side = args.side or landmarks.side
            source = image_name or ", ".join(str(p) for p in args.landmarks)
            table = measure_landmarks(args.kind, landmarks, side, calibration, source)
        except (LandmarkError, CobbError, ValueError) as error:
            raise CommandError(str(error)) from error

    if args.out is not None:
        table.write_json(args.out)
    result = _flat(args.kind, table)
    refused = {k: v for k, v in table.not_measured.items() if k in result}
    if not table.rows:
        reasons = "; ".join(f"{key}: {reason}" for key, reason in refused.items())
        raise CommandError(f"no {args.kind} value could be measured: {reasons}")
    for key, reason in refused.items():
        print(f"mskwb measure: {key} not measured: {reason}", file=sys.stderr)
    if args.json:
        result.update({"side": side, "not_measured": table.not_measured, "table": table.to_dict()})
        print(json.dumps(result, indent=2))
        return 0
    for row in table.rows:
        spread = f" (+/- {row.uncertainty:g})" if row.uncertainty is not None else ""
        print(f"{row.label}: {row.value:g} {row.unit}{spread}  [{row.key}, {row.method}]")
        for name in ("upper_end_vertebra", "lower_end_vertebra", "apex_vertebra", "convexity"):
            if name in row.details:
                print(f"  {name.replace('_', ' ')}: {row.details[name]}")
    return 0

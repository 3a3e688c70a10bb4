"""``mskwb template``: suggest an implant size on a calibrated radiograph from landmarks.

The landmarks are a Slicer markups file placed on the radiograph as the workbench loads it
(frontal plane, PatientOrientation, the tag pixel spacing or 1 mm when it has none); they are
turned back into pixels here, and the calibration (from the tags, or ``--calibration``) turns
pixels into millimetres. An uncalibrated radiograph is refused.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mskworkbench.cli import CommandError

if TYPE_CHECKING:
    from MSKPlannerLib.calibration import Radiograph
    from MSKPlannerLib.measurement_table import Calibration

logger = logging.getLogger(__name__)

#: Implant kinds (``MSKPlannerLib.implant_geometry.KINDS``; a test keeps them equal). The Lib
#: modules are imported when the command runs, so that ``mskwb`` starts quickly.
FAMILY_CHOICES = ("cup", "stem", "knee_femoral", "knee_tibial")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``template`` sub-command."""
    parser = subparsers.add_parser(
        "template",
        help="suggest an implant size on a calibrated radiograph from landmarks",
        description="Fit the anatomy given by the landmarks (acetabular outline for a cup, "
        "canal widths below the lesser trochanter for a stem, condylar or plateau width for "
        "knee components), pick the catalogue size and predict the change in offset and leg "
        "length. The catalogue's built-in implants are generic shapes, not any "
        "manufacturer's design.",
    )
    parser.add_argument("image", metavar="IMAGE", help="DICOM radiograph file")
    parser.add_argument(
        "--landmarks", required=True, type=Path, help="Slicer markups file (.mrk.json)"
    )
    parser.add_argument("--family", required=True, choices=FAMILY_CHOICES, help="implant kind")
    parser.add_argument(
        "--calibration",
        help="a calibration JSON file (as written by 'mskwb calibrate --json') or "
        "'magnification:FACTOR'; default: the image's tags",
    )
    parser.add_argument("--implant-family", help="catalogue family name (default: first)")
    parser.add_argument("--variant", help="stem variant, such as 132-high")
    parser.add_argument("--side", choices=("left", "right"), help="side (else from the file)")
    parser.add_argument("--key-image", type=Path, help="write the template drawn on the image")
    parser.add_argument(
        "--add-to",
        type=Path,
        metavar="TABLE_JSON",
        help="add the anatomy and predicted-change rows to this measurement table file "
        "(such as CASE_DIR/measurements.json; created when missing)",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON only")
    parser.set_defaults(func=run)


def _calibration(argument: str | None, radiograph: Radiograph) -> Calibration:
    from MSKPlannerLib.calibration import (
        CalibrationError,
        check_plausible_spacing,
        fixed_magnification_calibration,
    )
    from MSKPlannerLib.measurement_table import Calibration

    if not argument:
        return radiograph.calibration
    if argument.startswith("magnification:"):
        try:
            factor = float(argument.split(":", 1)[1])
            return fixed_magnification_calibration(
                radiograph.calibration, factor, radiograph.source
            )
        except (ValueError, CalibrationError) as error:
            raise CommandError(f"--calibration {argument}: {error}") from error
    path = Path(argument)
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise CommandError(f"calibration file {path} is not readable JSON: {error}") from error
    data = data.get("calibration", data)
    spacing = data.get("mm_per_pixel")
    if not data.get("method") or (
        data["method"] != "uncalibrated" and not (isinstance(spacing, list) and len(spacing) == 2)
    ):
        raise CommandError(f"calibration file {path} has no method and mm_per_pixel")
    detector = data.get("detector_mm_per_pixel")
    try:
        checked = check_plausible_spacing(spacing, str(path)) if spacing else None
    except CalibrationError as error:
        raise CommandError(f"calibration file {error}") from error
    return Calibration(
        method=str(data["method"]),
        mm_per_pixel=checked,
        detail=str(data.get("detail", f"from {path}")),
        detector_mm_per_pixel=(float(detector[0]), float(detector[1])) if detector else None,
    )


def _refuse_another_patient(table: Any, dataset: Any, image_name: str, table_path: Path) -> None:
    """Refuse to add rows of ``dataset`` to a table whose rows are of another patient.

    A row's source image is resolved as a DICOM file (from the working folder or the
    table's folder), or by UID or file name among the DICOM files below the table's folder;
    rows that cannot be resolved are not compared.
    """
    from MSKPlannerLib.dicom_outputs import (
        OUTBOX_FOLDER,
        find_series,
        patient_difference,
        read_source_header,
    )

    folder = table_path.parent
    known: dict[str, Any] | None = None
    for row in table.rows:
        source = read_source_header(row.source_image, [folder])
        if source is None:
            if known is None:
                known = {}
                for series_uid, datasets in find_series(
                    [folder], skip=folder / OUTBOX_FOLDER
                ).items():
                    for header in datasets:
                        known[series_uid] = header
                        known[str(header.SOPInstanceUID)] = header
                        known[Path(header.filename).name] = header
            source = known.get(row.source_image) or known.get(Path(row.source_image).name)
        if source is None:
            continue
        why = patient_difference(source, dataset)
        if why:
            raise CommandError(
                f"{image_name} belongs to another patient than row {row.key} of {table_path} "
                f"({why}); nothing was added"
            )


def run(args: argparse.Namespace) -> int:
    """Template the radiograph and print the suggestion."""
    from PIL import Image

    from MSKPlannerLib.calibration import (
        CalibrationError,
        radiograph_ijk_to_ras,
        read_radiograph,
    )
    from MSKPlannerLib.implant_catalogue import CatalogueError, ImplantCatalogue
    from MSKPlannerLib.key_images import draw_overlay, grey_to_rgb
    from MSKPlannerLib.landmarks import LandmarkError, read_markups_json
    from MSKPlannerLib.measurement_table import MeasurementTable
    from MSKPlannerLib.templating import (
        TemplatingError,
        implant_points_px,
        ras_to_pixels,
        suggest_size,
    )

    try:
        radiograph = read_radiograph(Path(args.image))
        landmarks = read_markups_json(args.landmarks)
    except (CalibrationError, LandmarkError, OSError) as error:
        raise CommandError(str(error)) from error
    calibration = _calibration(args.calibration, radiograph)
    image_name = str(args.image)
    ijk_to_ras, _orientation = radiograph_ijk_to_ras(radiograph)
    points_px = {
        label: ras_to_pixels(position, ijk_to_ras)
        for label, position in landmarks.points_ras_mm.items()
    }
    side = args.side or landmarks.side
    try:
        catalogue = ImplantCatalogue.load()
        family = (
            catalogue.family(args.implant_family)
            if args.implant_family
            else catalogue.default_family(args.family)
        )
        result = suggest_size(
            args.family, points_px, calibration, image_name, family, args.variant, side
        )
    except (TemplatingError, CatalogueError) as error:
        raise CommandError(str(error)) from error

    if args.add_to:
        table = MeasurementTable.read_json(args.add_to) if args.add_to.is_file() else None
        table = table or MeasurementTable()
        _refuse_another_patient(table, radiograph.dataset, image_name, args.add_to)
        for row in result.measurements:
            table.add(row)
        table.write_json(args.add_to)
    output = {"image": image_name, "landmarks": str(args.landmarks), "side": side}
    output.update(result.to_dict())
    output["disclaimer"] = family.disclaimer
    if args.key_image:
        outline = implant_points_px(result.size.outline_mm(), result.pose, calibration, image_name)
        caption = (
            f"{family.name} size {result.size.label} from {result.based_on.label} "
            f"{result.based_on.value:.1f} {result.based_on.unit}"
        )
        rgb = grey_to_rgb(
            radiograph.pixels,
            monochrome1=radiograph.dataset.get("PhotometricInterpretation") == "MONOCHROME1",
        )
        drawn = draw_overlay(rgb, [outline], points_px, caption)
        args.key_image.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(drawn).save(args.key_image)
        output["key_image"] = str(args.key_image)
    if args.json:
        print(json.dumps(output, indent=2, default=_json_default))
        return 0
    based = result.based_on
    print(
        f"{image_name}: {family.name} size {result.size.label} "
        f"(from {based.label} {based.value:.1f} {based.unit}, calibration {calibration.method})"
    )
    for key, value in result.predicted.items():
        print(f"  {key.replace('_', ' ')}: {value:+.1f}")
    for note in result.notes:
        print(f"  note: {note}")
    return 0


def _json_default(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.floating | np.integer):
        return value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return str(value)

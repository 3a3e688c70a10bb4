"""``mskwb calibrate``: how many mm a pixel of a radiograph measures, and how that is known."""

from __future__ import annotations

import argparse
import json
import logging
from typing import Any

from mskworkbench.cli import CommandError

logger = logging.getLogger(__name__)

#: ``MSKPlannerLib.calibration.DEFAULT_BALL_DIAMETER_MM`` (a test keeps them equal). The Lib
#: modules are imported when the command runs, so that ``mskwb`` starts quickly.
DEFAULT_BALL_DIAMETER_MM = 25.0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``calibrate`` sub-command."""
    parser = subparsers.add_parser(
        "calibrate",
        help="calibrate a radiograph (tags, calibration ball, known length or magnification)",
        description="Report the calibration of a radiograph (CR, DX or secondary capture). "
        "Without options it comes from the DICOM tags; an image without a trustworthy spacing "
        "is reported as uncalibrated. --ball finds a calibration ball of known diameter and "
        "prints the detected circle for you to check; --known-length uses two pixel positions a "
        "known distance apart; --magnification divides the detector spacing by a factor.",
    )
    parser.add_argument("image", metavar="IMAGE", help="DICOM radiograph file")
    method = parser.add_mutually_exclusive_group()
    method.add_argument("--ball", action="store_true", help="find a calibration ball")
    method.add_argument(
        "--known-length",
        nargs=5,
        type=float,
        metavar=("ROW0", "COL0", "ROW1", "COL1", "MM"),
        help="two pixel positions (row, column) and their true distance in mm",
    )
    method.add_argument(
        "--magnification", type=float, help="magnification factor chosen (e.g. 1.15 to 1.21)"
    )
    parser.add_argument(
        "--ball-diameter",
        type=float,
        default=DEFAULT_BALL_DIAMETER_MM,
        help=f"ball diameter in mm (default {DEFAULT_BALL_DIAMETER_MM:g})",
    )
    parser.add_argument(
        "--radius-range",
        nargs=2,
        type=float,
        metavar=("MIN", "MAX"),
        help="ball radius range to search, in pixels",
    )
    parser.add_argument(
        "--roi",
        nargs=4,
        type=int,
        metavar=("ROW0", "COL0", "ROW1", "COL1"),
        help="search the ball only in this pixel region",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON only")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Calibrate and print the result."""
    from MSKPlannerLib.calibration import (
        CalibrationError,
        ball_calibration,
        detect_calibration_ball,
        fixed_magnification_calibration,
        known_length_calibration,
        loaded_spacing_mm,
        pixel_aspect,
        read_radiograph,
    )

    try:
        radiograph = read_radiograph(args.image)
    except (CalibrationError, OSError) as error:
        raise CommandError(str(error)) from error
    tags = radiograph.calibration
    result: dict[str, Any] = {"image": str(args.image)}
    try:
        if args.ball:
            detection = detect_calibration_ball(
                radiograph.pixels,
                tuple(args.radius_range) if args.radius_range else None,
                tuple(args.roi) if args.roi else None,
            )
            calibration = ball_calibration(detection, args.ball_diameter, str(args.image))
            result["ball_center_row_col_px"] = [round(v, 3) for v in detection.center_rc]
            result["ball_radius_px"] = round(detection.radius_px, 3)
            result["ball"] = detection.to_dict()
            result["ball_diameter_mm"] = args.ball_diameter
            result["ball_plausible"] = detection.plausible
        elif args.known_length:
            r0, c0, r1, c1, length_mm = args.known_length
            calibration = known_length_calibration(
                (r0, c0),
                (r1, c1),
                length_mm,
                pixel_aspect(tags),
                str(args.image),
                image_shape_rc=radiograph.pixels.shape,
            )
        elif args.magnification is not None:
            calibration = fixed_magnification_calibration(tags, args.magnification, str(args.image))
        else:
            calibration = tags
    except CalibrationError as error:
        message = str(error)
        if not message.startswith(str(args.image)):
            message = f"{args.image}: {message}"
        raise CommandError(message) from error

    loaded = loaded_spacing_mm(radiograph.dataset)
    result.update(
        {
            "mm_per_pixel": list(calibration.mm_per_pixel) if calibration.mm_per_pixel else None,
            "method": calibration.method,
            "calibrated": calibration.is_calibrated,
            "detail": calibration.detail,
            "detector_mm_per_pixel": list(tags.detector_mm_per_pixel)
            if tags.detector_mm_per_pixel
            else None,
            # The spacing a viewer loads the image with; landmarks placed on it are in these mm.
            "image_mm_per_pixel": list(loaded) if loaded else None,
        }
    )
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    if calibration.is_calibrated and calibration.mm_per_pixel:
        row_mm, col_mm = calibration.mm_per_pixel
        print(f"{args.image}: {row_mm:.5g} x {col_mm:.5g} mm per pixel ({calibration.method})")
    else:
        print(f"{args.image}: not calibrated; lengths will be refused. {calibration.detail}")
    if "ball" in result:
        ball = result["ball"]
        print(
            f"ball found at row {ball['center_row_col_px'][0]}, column "
            f"{ball['center_row_col_px'][1]}, radius {ball['radius_px']} px "
            f"(edge RMS {ball['edge_rms_px']} px, score {ball['score']}); check it before use"
        )
    return 0

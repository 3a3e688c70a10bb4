"""Calibration of radiographs (CR, DX and secondary captures): how pixels become millimetres.

Public API
----------
- :func:`calibration_from_dataset`: from the DICOM tags (PixelSpacing with
  PixelSpacingCalibrationType, or ImagerPixelSpacing divided by
  EstimatedRadiographicMagnificationFactor). Missing, zero or detector-only spacing gives an
  *uncalibrated* :class:`~MSKPlannerLib.measurement_table.Calibration`; nothing is guessed.
- :func:`fixed_magnification_calibration`: detector spacing divided by a factor the user
  chose (for example 1.15 to 1.21).
- :func:`known_length_calibration`: two pixel positions a known distance apart (both
  checked to lie on the image with :func:`check_pixel_inside`).
- :func:`check_plausible_spacing`: refuse a scale that is not finite or lies outside
  :data:`PLAUSIBLE_MM_PER_PIXEL`, for a calibration made here or read back from a file.
- :func:`detect_calibration_ball` and :func:`ball_calibration` (from
  :mod:`MSKPlannerLib.calibration_ball`, re-exported here): find a calibration ball of known
  diameter (25 mm by default) and calibrate from its size; the detected circle is returned so
  the user can accept it.
- :func:`read_radiograph`: pixels, dataset and tag calibration of a DICOM file.
- :func:`loaded_spacing_mm`: the spacing a viewer (Slicer's reader) loads the image with,
  needed to rescale landmarks placed on it to another calibration.
- :func:`pixel_to_ras_matrix` / :func:`pixels_to_ras_mm`: pixel ``(row, column)`` positions to
  RAS mm in the frontal plane, using PatientOrientation, so the measurement functions can be
  used on radiograph landmarks; :func:`radiograph_ijk_to_ras`: the 4x4 matrix of a radiograph
  loaded into a scene.

All spacings are ``(row spacing, column spacing)`` in mm, i.e. the distance between rows and
between columns, as in DICOM PixelSpacing. Pixel positions are ``(row, column)`` with (0, 0)
the centre of the first pixel.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pydicom

from MSKPlannerLib.calibration_ball import (
    DEFAULT_BALL_DIAMETER_MM,
    BallDetection,
    CalibrationError,
    ball_calibration,
    detect_calibration_ball,
)
from MSKPlannerLib.measurement_table import Calibration
from MSKPriorsLib.pixel_data import spacing_pair_mm

__all__ = [
    "DEFAULT_BALL_DIAMETER_MM",
    "MAGNIFICATION_RANGE",
    "PIXEL_SPACING_ONLY_NOTE",
    "PLAUSIBLE_MM_PER_PIXEL",
    "BallDetection",
    "CalibrationError",
    "Radiograph",
    "ball_calibration",
    "calibration_from_dataset",
    "check_pixel_inside",
    "check_plausible_spacing",
    "detect_calibration_ball",
    "fixed_magnification_calibration",
    "known_length_calibration",
    "loaded_spacing_mm",
    "pixel_aspect",
    "pixel_to_ras_matrix",
    "pixels_to_ras_mm",
    "radiograph_ijk_to_ras",
    "read_radiograph",
]

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]

#: Magnification factors a user may choose for a fixed-magnification calibration.
MAGNIFICATION_RANGE = (1.0, 1.5)

#: Pixel sizes (mm per pixel, at the patient) a radiograph calibration may give. Detectors
#: and digitised films have pixels of about 0.05 to 0.5 mm; a scale outside 0.01 to 5 mm
#: comes from a mistyped length or point, never from a real radiograph.
PLAUSIBLE_MM_PER_PIXEL = (0.01, 5.0)

#: Detail note of a CR/DX whose only spacing is PixelSpacing, without a calibration type.
PIXEL_SPACING_ONLY_NOTE = (
    "without ImagerPixelSpacing or PixelSpacingCalibrationType it is probably the detector "
    "spacing, and no magnification correction was applied"
)


def _fmt(spacing: tuple[float, float]) -> str:
    return f"{spacing[0]:g} x {spacing[1]:g} mm"


def calibration_from_dataset(dataset: pydicom.Dataset, source: str = "") -> Calibration:
    """Calibration of a radiograph from its DICOM tags.

    Parameters
    ----------
    dataset
        The image's dataset (pixel data not needed).
    source
        File or SOP Instance UID, used in the detail text.

    Returns
    -------
    Calibration
        - ``pixel_spacing`` when PixelSpacing is present, positive, and either has a
          PixelSpacingCalibrationType or differs from ImagerPixelSpacing (so it refers to the
          patient);
        - ``pixel_spacing`` also for a CR or DX with PixelSpacing only (no
          ImagerPixelSpacing, no calibration type); the detail says that no magnification
          correction was applied, and ``detector_mm_per_pixel`` is that PixelSpacing so that a
          magnification factor can be applied to it;
        - ``imager_spacing_magnification`` when the spacing is at the detector and an
          EstimatedRadiographicMagnificationFactor is given;
        - otherwise ``uncalibrated``, with the detector spacing kept when known (for the
          pixel aspect ratio and a user-chosen magnification factor).
    """
    name = source or str(dataset.get("SOPInstanceUID", "the image"))
    pixel = spacing_pair_mm(dataset.get("PixelSpacing"))
    imager = spacing_pair_mm(dataset.get("ImagerPixelSpacing"))
    nominal = spacing_pair_mm(dataset.get("NominalScannedPixelSpacing"))
    calibration_type = str(dataset.get("PixelSpacingCalibrationType", "") or "").strip()
    factor_value = dataset.get("EstimatedRadiographicMagnificationFactor")
    try:
        factor = float(factor_value) if factor_value is not None else None
    except (TypeError, ValueError):
        factor = None
    if factor is not None and not (np.isfinite(factor) and factor > 0):
        factor = None

    same_as_detector = (
        pixel is not None and imager is not None and np.allclose(pixel, imager, rtol=1e-6)
    )
    modality = str(dataset.get("Modality", "") or "").strip().upper()
    if pixel is not None and imager is None and not calibration_type and modality in ("CR", "DX"):
        # Usually the detector spacing in practice: kept as the calibration (lengths at the
        # detector), and offered as the base of a user-chosen magnification factor.
        return Calibration(
            method="pixel_spacing",
            mm_per_pixel=pixel,
            detail=f"PixelSpacing {_fmt(pixel)} ({name}); {PIXEL_SPACING_ONLY_NOTE}",
            detector_mm_per_pixel=pixel,
        )
    if pixel is not None and (calibration_type or not same_as_detector):
        kind = f", calibration type {calibration_type}" if calibration_type else ""
        return Calibration(
            method="pixel_spacing",
            mm_per_pixel=pixel,
            detail=f"PixelSpacing {_fmt(pixel)}{kind} ({name})",
            detector_mm_per_pixel=imager,
        )
    detector = imager
    if detector is not None and factor is not None:
        spacing = (detector[0] / factor, detector[1] / factor)
        return Calibration(
            method="imager_spacing_magnification",
            mm_per_pixel=spacing,
            detail=f"ImagerPixelSpacing {_fmt(detector)} / estimated magnification "
            f"{factor:g} ({name})",
            detector_mm_per_pixel=detector,
        )
    if detector is not None:
        return Calibration(
            method="uncalibrated",
            detail=f"{name}: only the detector spacing {_fmt(detector)} is known, without a "
            "magnification factor",
            detector_mm_per_pixel=detector,
        )
    if nominal is not None:
        return Calibration(
            method="uncalibrated",
            detail=f"{name}: only the scanner's NominalScannedPixelSpacing {_fmt(nominal)} of "
            "a digitised film is known, not the patient scale",
        )
    raw = dataset.get("PixelSpacing")
    if raw is not None:
        return Calibration(method="uncalibrated", detail=f"{name}: PixelSpacing {raw} is unusable")
    return Calibration(method="uncalibrated", detail=f"{name}: no pixel spacing tag")


def loaded_spacing_mm(dataset: pydicom.Dataset) -> tuple[float, float] | None:
    """The ``(row, column)`` spacing a viewer loads the image with, trusted or not.

    PixelSpacing when positive, else ImagerPixelSpacing when positive, else None (a viewer
    then shows 1 mm per pixel). Landmarks placed on the image as loaded are in these units;
    they are rescaled to another calibration by the ratio of the spacings.
    """
    return spacing_pair_mm(dataset.get("PixelSpacing")) or spacing_pair_mm(
        dataset.get("ImagerPixelSpacing")
    )


def fixed_magnification_calibration(
    base: Calibration | tuple[float, float], factor: float, source: str = ""
) -> Calibration:
    """Detector spacing divided by a magnification factor chosen by the user.

    Parameters
    ----------
    base
        The tag calibration of the image (its ``detector_mm_per_pixel`` is used; for a CR or
        DX with PixelSpacing only, that PixelSpacing), or the detector spacing
        ``(row, column)`` in mm.
    factor
        Radiographic magnification (object-to-detector), for example 1.15 to 1.21.
    source
        File or SOP Instance UID, for the detail text.

    Raises
    ------
    CalibrationError
        When the factor is outside :data:`MAGNIFICATION_RANGE` or no detector spacing is known.
    """
    if not (MAGNIFICATION_RANGE[0] <= factor <= MAGNIFICATION_RANGE[1]):
        raise CalibrationError(
            f"magnification factor {factor:g} is outside {MAGNIFICATION_RANGE[0]:g} to "
            f"{MAGNIFICATION_RANGE[1]:g}"
        )
    detector = base.detector_mm_per_pixel if isinstance(base, Calibration) else base
    if detector is None:
        raise CalibrationError(
            f"{source or 'the image'} has no detector spacing (ImagerPixelSpacing), so a "
            "magnification factor cannot be applied; use a calibration ball or a known length"
        )
    spacing = (detector[0] / factor, detector[1] / factor)
    taken_from = (
        "PixelSpacing taken as detector spacing"
        if isinstance(base, Calibration) and PIXEL_SPACING_ONLY_NOTE in base.detail
        else "detector spacing"
    )
    return Calibration(
        method="fixed_magnification",
        mm_per_pixel=spacing,
        detail=f"{taken_from} {_fmt(detector)} / magnification {factor:g} chosen by the "
        f"user ({source or 'image'})",
        detector_mm_per_pixel=detector,
    )


def pixel_aspect(calibration: Calibration) -> float:
    """Row spacing over column spacing (1 when nothing is known about the pixel shape)."""
    spacing = calibration.mm_per_pixel or calibration.detector_mm_per_pixel
    return spacing[0] / spacing[1] if spacing else 1.0


def check_pixel_inside(
    position_rc: Sequence[float], shape_rc: Sequence[int], name: str, source: str = ""
) -> None:
    """Refuse a pixel position that does not lie on the image.

    Parameters
    ----------
    position_rc
        ``(row, column)`` pixel position, in pixels from the centre of the first pixel.
    shape_rc
        ``(rows, columns)`` of the image.
    name
        What the position is (for example ``"the first point"``), named in the message.
    source
        File or SOP Instance UID, the start of the message when given.

    Raises
    ------
    CalibrationError
        When the row is outside ``0 .. rows - 1`` or the column outside ``0 .. columns - 1``,
        or either is not a finite number.
    """
    row, column = (float(v) for v in position_rc[:2])
    rows, columns = int(shape_rc[0]), int(shape_rc[1])
    inside = (
        np.isfinite([row, column]).all() and 0 <= row <= rows - 1 and 0 <= column <= columns - 1
    )
    if not inside:
        where = f"{source}: " if source else ""
        raise CalibrationError(
            f"{where}{name} (row {row:g}, column {column:g}) lies outside the image of {rows} "
            f"rows x {columns} columns (rows 0 to {rows - 1}, columns 0 to {columns - 1})"
        )


def check_plausible_spacing(spacing_mm: Sequence[float], source: str = "") -> tuple[float, float]:
    """Refuse a radiograph scale that is not finite or not plausible.

    Parameters
    ----------
    spacing_mm
        ``(row, column)`` spacing in mm per pixel.
    source
        File or SOP Instance UID, the start of the message when given.

    Returns
    -------
    tuple of float
        The spacing as two floats, in mm per pixel.

    Raises
    ------
    CalibrationError
        When it does not hold two numbers, or either is not finite or lies outside
        :data:`PLAUSIBLE_MM_PER_PIXEL` (0.01 to 5 mm per pixel).
    """
    where = f"{source}: " if source else ""
    try:
        row_mm, column_mm = (float(v) for v in spacing_mm)
    except (TypeError, ValueError) as error:
        raise CalibrationError(f"{where}{spacing_mm!r} is not a (row, column) spacing") from error
    low, high = PLAUSIBLE_MM_PER_PIXEL
    if not all(np.isfinite(v) and low <= v <= high for v in (row_mm, column_mm)):
        raise CalibrationError(
            f"{where}a scale of {row_mm:g} x {column_mm:g} mm per pixel is not plausible for a "
            f"radiograph (expected {low:g} to {high:g} mm per pixel); no calibration was made"
        )
    return row_mm, column_mm


def known_length_calibration(
    start_rc: Sequence[float],
    end_rc: Sequence[float],
    length_mm: float,
    aspect: float = 1.0,
    source: str = "",
    image_shape_rc: Sequence[int] | None = None,
) -> Calibration:
    """Calibrate from two pixel positions a known distance apart.

    Parameters
    ----------
    start_rc, end_rc
        ``(row, column)`` pixel positions of the two points.
    length_mm
        Their true distance, in mm, in the plane of the anatomy.
    aspect
        Row spacing over column spacing of the pixels (from :func:`pixel_aspect`).
    source
        File or SOP Instance UID, for the detail text.
    image_shape_rc
        ``(rows, columns)`` of the image the points were placed on; when given, both points
        must lie on it (:func:`check_pixel_inside`). Every caller that has the image gives it.

    Raises
    ------
    CalibrationError
        A length that is not a finite positive number, coincident points, a point outside the
        image, or a resulting scale outside :data:`PLAUSIBLE_MM_PER_PIXEL`
        (:func:`check_plausible_spacing`).
    """
    if not (np.isfinite(length_mm) and length_mm > 0):
        raise CalibrationError(
            f"the known length must be a finite positive number, not {length_mm}"
        )
    if image_shape_rc is not None:
        check_pixel_inside(start_rc, image_shape_rc, "the first point of the known length", source)
        check_pixel_inside(end_rc, image_shape_rc, "the second point of the known length", source)
    rows = (float(end_rc[0]) - float(start_rc[0])) * aspect
    cols = float(end_rc[1]) - float(start_rc[1])
    distance_px = float(np.hypot(rows, cols))
    if distance_px < 1.0:
        raise CalibrationError("the two points of a known length must be distinct pixels")
    column_mm = length_mm / distance_px
    spacing = check_plausible_spacing((column_mm * aspect, column_mm), source)
    return Calibration(
        method="known_length",
        mm_per_pixel=spacing,
        detail=f"{length_mm:g} mm between pixels {tuple(start_rc)} and {tuple(end_rc)} "
        f"({source or 'image'})",
    )


@dataclass
class Radiograph:
    """A radiograph read from DICOM.

    Attributes
    ----------
    pixels
        2D float array (rows, columns) of stored values after the modality rescale.
    dataset
        The pydicom dataset.
    calibration
        The tag calibration (:func:`calibration_from_dataset`).
    source
        The file path.
    """

    pixels: FloatArray
    dataset: pydicom.Dataset
    calibration: Calibration
    source: str


def read_radiograph(path: Path) -> Radiograph:
    """Read a single-frame radiograph (CR, DX, secondary capture) and its tag calibration.

    Raises
    ------
    CalibrationError
        When the file is not readable DICOM or holds no single 2D grey image.
    """
    path = Path(path)
    try:
        dataset = pydicom.dcmread(path)
        pixels = dataset.pixel_array
    except Exception as error:  # pydicom raises many kinds for unreadable pixel data
        raise CalibrationError(f"{path} is not a readable DICOM image: {error}") from error
    if pixels.ndim == 3 and dataset.get("SamplesPerPixel", 1) > 1:
        pixels = pixels.mean(axis=-1)
    if pixels.ndim != 2:
        raise CalibrationError(f"{path} is not a single-frame 2D image (shape {pixels.shape})")
    values = pixels.astype(np.float64)
    slope = float(dataset.get("RescaleSlope", 1) or 1)
    intercept = float(dataset.get("RescaleIntercept", 0) or 0)
    values = values * slope + intercept
    return Radiograph(values, dataset, calibration_from_dataset(dataset, str(path)), str(path))


_ORIENTATION_TO_RAS = {
    "L": np.array([-1.0, 0.0, 0.0]),
    "R": np.array([1.0, 0.0, 0.0]),
    "A": np.array([0.0, 1.0, 0.0]),
    "P": np.array([0.0, -1.0, 0.0]),
    "H": np.array([0.0, 0.0, 1.0]),
    "F": np.array([0.0, 0.0, -1.0]),
}


def pixel_to_ras_matrix(
    spacing_mm: tuple[float, float], patient_orientation: Sequence[str] | None = None
) -> FloatArray:
    """3x3 matrix from ``(row, column, 1)`` pixel positions to RAS mm for a frontal radiograph.

    Parameters
    ----------
    spacing_mm
        ``(row, column)`` spacing in mm (or any consistent unit).
    patient_orientation
        DICOM PatientOrientation: the patient direction of increasing column index (along a
        row) and of increasing row index, such as ``["L", "F"]`` for an AP view displayed with
        the patient's right on the viewer's left. Defaults to ``["L", "F"]``. Only the first
        letter of each is used (oblique views are measured as if frontal).
    """
    orientation = list(patient_orientation or ["L", "F"])
    if len(orientation) != 2 or any(not o or o[0] not in _ORIENTATION_TO_RAS for o in orientation):
        raise CalibrationError(f"PatientOrientation {orientation} is not understood")
    along_row = _ORIENTATION_TO_RAS[orientation[0][0]]
    along_column = _ORIENTATION_TO_RAS[orientation[1][0]]
    matrix = np.zeros((3, 3))
    matrix[:, 0] = along_column * spacing_mm[0]
    matrix[:, 1] = along_row * spacing_mm[1]
    return matrix


def pixels_to_ras_mm(
    points_rc: npt.ArrayLike,
    calibration: Calibration,
    patient_orientation: Sequence[str] | None = None,
) -> FloatArray:
    """Pixel positions ``(row, column)`` to RAS positions for the measurement functions.

    Parameters
    ----------
    points_rc
        Shape (2,) or (N, 2), pixels.
    calibration
        Its ``mm_per_pixel`` scales the positions; when uncalibrated the positions are in
        column-pixel units with the pixel aspect ratio kept, so angles stay right while lengths
        must be (and are, by the measurement functions) refused.
    patient_orientation
        See :func:`pixel_to_ras_matrix`.

    Returns
    -------
    numpy.ndarray
        Shape (3,) or (N, 3), RAS (mm when calibrated), anterior coordinate 0.
    """
    spacing = calibration.mm_per_pixel or (pixel_aspect(calibration), 1.0)
    matrix = pixel_to_ras_matrix(spacing, patient_orientation)
    points = np.asarray(points_rc, dtype=float)
    return points @ matrix[:, :2].T


def radiograph_ijk_to_ras(radiograph: Radiograph) -> tuple[FloatArray, tuple[str, str]]:
    """IJK-to-RAS matrix of a radiograph as the workbench loads it into a scene (one slice).

    ``i`` runs along a row (the column index), ``j`` down the rows and ``k`` along the unit
    normal of the picture. The spacing is the tag calibration's, or 1 per pixel when the image
    is uncalibrated. A PatientOrientation that is missing or not understood is taken as
    ``("L", "F")``, the usual frontal view.

    Parameters
    ----------
    radiograph
        The radiograph (:func:`read_radiograph`).

    Returns
    -------
    ijk_to_ras
        Shape (4, 4), voxel index ``(i, j, k, 1)`` to RAS (mm when calibrated).
    patient_orientation
        The two PatientOrientation letters the matrix follows.
    """
    value = radiograph.dataset.get("PatientOrientation") or ["L", "F"]
    spacing = radiograph.calibration.mm_per_pixel or (1.0, 1.0)
    try:
        orientation = (str(value[0]), str(value[1]))
        rc_to_ras = pixel_to_ras_matrix(spacing, orientation)
    except (CalibrationError, IndexError):
        orientation = ("L", "F")
        rc_to_ras = pixel_to_ras_matrix(spacing, orientation)
    matrix = np.eye(4)
    matrix[:3, 0] = rc_to_ras[:, 1]
    matrix[:3, 1] = rc_to_ras[:, 0]
    normal = np.cross(matrix[:3, 0], matrix[:3, 1])
    matrix[:3, 2] = normal / np.linalg.norm(normal)
    return matrix, orientation

"""Which series of the open case a landmark file was placed on, and in which frame.

A Slicer markups file does not name its image. The viewer finds it by extent: the landmarks of
a file belong to the series whose extent holds all of them. A radiograph needs one more step:
the plan and the measurement commands read radiograph landmarks in the radiograph's frontal
plane (first pixel at the origin, columns and rows along its PatientOrientation,
:func:`~MSKPlannerLib.calibration.radiograph_ijk_to_ras`), while the viewer shows the
radiograph in the plane its loader puts it (the axial plane when the file has no position).
:func:`frontal_to_shown_ras` maps the one onto the other through the radiograph's pixels, so a
file written for the plan lands on the same pixels in the page, and back.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from MSKPlannerLib.calibration import Radiograph, calibration_from_dataset, radiograph_ijk_to_ras
from MSKPlannerLib.landmarks import LandmarkSet, read_markups_json, write_markups_json
from MSKPriorsLib.frames import ijk_to_ras_from_sitk
from MSKPriorsLib.pixel_data_series import DicomSeriesVolume
from mskworkbench.web.landmark_files import points_outside_image

logger = logging.getLogger(__name__)

#: Modalities that hold no image to show in a slice view.
NON_IMAGE_MODALITIES = frozenset({"SR", "SEG", "KO", "PR", "RTSTRUCT", "RTPLAN", "REG", "DOC"})


@dataclass(frozen=True)
class SeriesFit:
    """A series that holds every landmark of a file, and how to bring them onto it.

    Attributes
    ----------
    series_uid
        The series.
    file_to_shown_ras
        4x4 matrix from the file's RAS mm to the RAS mm of the series as the viewer shows it:
        identity when the file was placed on the series as shown, the frontal-to-shown map of
        :func:`frontal_to_shown_ras` for a radiograph file written in its frontal plane.
    """

    series_uid: str
    file_to_shown_ras: npt.NDArray[np.float64]

    @property
    def moves_points(self) -> bool:
        """Whether the file's positions change on their way onto the series."""
        return not np.allclose(self.file_to_shown_ras, np.eye(4))


def is_single_image(volume: DicomSeriesVolume) -> bool:
    """Whether a read series is one picture (a radiograph), shown in its own plane."""
    size = volume.image.GetSize()
    return len(size) < 3 or size[2] <= 1


def frontal_to_shown_ras(volume: DicomSeriesVolume) -> npt.NDArray[np.float64] | None:
    """Map radiograph landmarks from the frontal frame of the plan to the viewer's frame.

    Parameters
    ----------
    volume
        A series as the viewer read it.

    Returns
    -------
    numpy.ndarray or None
        Shape (4, 4): RAS mm in the frontal plane the plan reads the radiograph in, to RAS mm
        where the viewer shows the same pixel. None for a volume of several slices or a series
        without DICOM header.
    """
    if not is_single_image(volume) or volume.header is None:
        return None
    source = volume.series_uid or "radiograph"
    tags = calibration_from_dataset(volume.header, source)
    # Only the header is needed for the matrix; the pixels stay in the volume.
    picture = Radiograph(np.zeros((0, 0)), volume.header, tags, source)
    frontal_ijk_to_ras, _ = radiograph_ijk_to_ras(picture)
    shown_ijk_to_ras = np.asarray(ijk_to_ras_from_sitk(volume.image), dtype=float)
    return np.asarray(shown_ijk_to_ras @ np.linalg.inv(frontal_ijk_to_ras), dtype=float)


def file_positions(landmarks: LandmarkSet) -> npt.NDArray[np.float64]:
    """Every point and line end of a landmark set, shape (N, 3), RAS mm."""
    positions = list(landmarks.points_ras_mm.values())
    positions += [p for line in landmarks.lines_ras_mm.values() for p in line]
    return np.asarray(positions, dtype=float).reshape(-1, 3)


def fit_on(
    positions_ras_mm: npt.ArrayLike, series_uid: str, volume: DicomSeriesVolume
) -> SeriesFit | None:
    """How a file's positions fit one series: as they are, from its frontal plane, or not at all.

    Parameters
    ----------
    positions_ras_mm
        The file's positions (N, 3), RAS mm.
    series_uid
        The series' SeriesInstanceUID.
    volume
        The series as the viewer read it.
    """
    points = np.asarray(positions_ras_mm, dtype=float).reshape(-1, 3)
    if len(points) == 0:
        return None
    if points_outside_image(points, volume.image) == 0:
        return SeriesFit(series_uid, np.eye(4))
    frontal = frontal_to_shown_ras(volume)
    if frontal is not None:
        moved = points @ frontal[:3, :3].T + frontal[:3, 3]
        if points_outside_image(moved, volume.image) == 0:
            return SeriesFit(series_uid, frontal)
    return None


def find_fit(
    positions_ras_mm: npt.ArrayLike, candidates: Iterable[tuple[str, DicomSeriesVolume]]
) -> SeriesFit | None:
    """The first candidate series (in the order given) that holds every position."""
    for series_uid, volume in candidates:
        found = fit_on(positions_ras_mm, series_uid, volume)
        if found is not None:
            logger.info("landmark file fits series %s", series_uid)
            return found
    return None


def read_landmark_file(file_name: str, content: bytes) -> LandmarkSet | None:
    """Read uploaded markups JSON bytes; None when they are not a landmark file.

    The reason a file cannot be read is given by
    :func:`~mskworkbench.web.landmark_files.import_markups`, which reads it again.
    """
    with tempfile.TemporaryDirectory(prefix="mskwb-fit-") as folder:
        path = Path(folder) / (Path(file_name).name or "landmarks.mrk.json")
        path.write_bytes(content)
        try:
            return read_markups_json(path)
        except (ValueError, KeyError, TypeError):
            return None


def moved_file(landmarks: LandmarkSet, matrix: npt.ArrayLike, file_name: str) -> bytes:
    """The landmarks as markups JSON bytes, every position moved by a 4x4 RAS matrix."""
    transform = np.asarray(matrix, dtype=float)

    def move(points: npt.ArrayLike) -> npt.NDArray[np.float64]:
        array = np.asarray(points, dtype=float)
        return np.asarray(array @ transform[:3, :3].T + transform[:3, 3], dtype=float)

    points = {label: move(p) for label, p in landmarks.points_ras_mm.items()}
    lines = {name: move(line) for name, line in landmarks.lines_ras_mm.items()}
    with tempfile.TemporaryDirectory(prefix="mskwb-fit-") as folder:
        path = Path(folder) / (Path(file_name).name or "landmarks.mrk.json")
        write_markups_json(path, points, lines, name="Landmarks", description=landmarks.side or "")
        return path.read_bytes()

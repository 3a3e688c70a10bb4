"""Geometry of a stack of DICOM slices: ordering, spacing, gantry tilt, gaps, regular grids.

Slices are sorted by their position along the slice normal (``ImagePositionPatient`` dotted
with the cross product of the two ``ImageOrientationPatient`` directions); the slice spacing is
taken from those positions, never from ``SliceThickness``. A stack is *regular* when every
slice lies on the normal line through the first slice (no gantry tilt) and every gap equals
the common spacing. An irregular stack is either resampled onto a regular grid with SimpleITK
(linear interpolation) or refused, as the caller chooses; either way the problem is reported
as a :class:`GeometryWarning` with a stable ``code``.

Everything here is in DICOM/ITK patient coordinates (LPS, millimetres) unless a name says RAS;
:class:`SeriesGeometry` gives the RAS view that Slicer uses.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk

from MSKPriorsLib.frames import LPS_TO_RAS
from MSKPriorsLib.pixel_data import FrameInfo

logger = logging.getLogger(__name__)

GeometryPolicy = Literal["correct", "refuse"]

#: Largest difference between ImageOrientationPatient values of slices of one stack.
ORIENTATION_TOLERANCE = 1e-3


@dataclass(frozen=True)
class GeometryWarning:
    """Something the user must know about a loaded series.

    Attributes
    ----------
    code
        Stable identifier for programs: ``gantry_tilt``, ``uneven_spacing``,
        ``missing_slices``, ``localizer_removed``, ``inconsistent_orientation``,
        ``non_image_removed``, ``multiple_series``, ``duplicate_slices``, ``no_spacing``,
        ``no_position``, ``resampled``; the scene loader adds ``no_patient_id`` and
        ``patient_mismatch``.
    message
        One plain-language sentence naming the series (or file).
    """

    code: str
    message: str

    def to_dict(self) -> dict[str, str]:
        """Return ``{"code": ..., "message": ...}``."""
        return {"code": self.code, "message": self.message}


class SeriesLoadError(ValueError):
    """A series that cannot be loaded; ``code`` says why in a stable word.

    Attributes
    ----------
    code
        ``no_images``, ``multiple_series``, ``series_not_found``, ``gantry_tilt``,
        ``uneven_spacing``, ``missing_slices``, ``inconsistent_orientation``,
        ``invalid_orientation``, ``inconsistent_dimensions``, ``inconsistent_pixel_spacing``,
        ``no_positions``, ``undecodable``, ``unreadable``.
    warnings
        What had been found before the refusal.
    """

    def __init__(
        self, code: str, message: str, warnings: list[GeometryWarning] | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.warnings = list(warnings or [])


@dataclass(frozen=True)
class SeriesGeometry:
    """Voxel grid of a loaded volume, in LPS millimetres, with its RAS view.

    Attributes
    ----------
    dimensions
        Voxels along i (columns), j (rows), k (slices).
    spacing_mm
        Voxel size along i, j, k.
    origin_lps_mm
        Centre of voxel (0, 0, 0), LPS.
    direction_lps
        3x3 matrix whose columns are the unit directions of i, j, k in LPS (row-major tuple).
    gantry_tilt_deg
        Angle between the slice stacking direction and the slice normal in the source slices
        (0 for an untilted stack).
    source_gaps_mm
        Distances between consecutive source slices along the normal, in slice order.
    resampled
        Whether voxels were interpolated onto a new grid.
    """

    dimensions: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    origin_lps_mm: tuple[float, float, float]
    direction_lps: tuple[float, ...]
    gantry_tilt_deg: float = 0.0
    source_gaps_mm: tuple[float, ...] = ()
    resampled: bool = False

    @classmethod
    def of_image(cls, image: sitk.Image, **extra: Any) -> SeriesGeometry:
        """Return the geometry of a 3D SimpleITK image (LPS)."""
        return cls(
            dimensions=tuple(int(v) for v in image.GetSize()),  # type: ignore[arg-type]
            spacing_mm=tuple(float(v) for v in image.GetSpacing()),  # type: ignore[arg-type]
            origin_lps_mm=tuple(float(v) for v in image.GetOrigin()),  # type: ignore[arg-type]
            direction_lps=tuple(float(v) for v in image.GetDirection()),
            **extra,
        )

    @property
    def direction_matrix_lps(self) -> npt.NDArray[np.float64]:
        """3x3 array; column n is the LPS unit direction of voxel axis n."""
        return np.array(self.direction_lps, dtype=float).reshape(3, 3)

    @property
    def origin_ras_mm(self) -> npt.NDArray[np.float64]:
        """Centre of voxel (0, 0, 0) in RAS millimetres, shape (3,)."""
        return LPS_TO_RAS @ np.array(self.origin_lps_mm, dtype=float)

    @property
    def directions_ras(self) -> npt.NDArray[np.float64]:
        """3x3 array; column n is the RAS unit direction of voxel axis n (i, j, k)."""
        return LPS_TO_RAS @ self.direction_matrix_lps

    def ijk_to_ras_mm(self) -> npt.NDArray[np.float64]:
        """4x4 matrix from voxel index (i, j, k, 1) to RAS millimetres."""
        matrix = np.eye(4)
        matrix[:3, :3] = self.directions_ras @ np.diag(self.spacing_mm)
        matrix[:3, 3] = self.origin_ras_mm
        return matrix

    def to_dict(self) -> dict[str, Any]:
        """Return JSON-ready values; every vector is labelled RAS.

        ``directions_ras`` is a list of three unit vectors: the RAS directions of the i, j and
        k voxel axes, in that order.
        """
        return {
            "dimensions": list(self.dimensions),
            "spacing_mm": [round(v, 6) for v in self.spacing_mm],
            "origin_ras_mm": [round(float(v), 6) for v in self.origin_ras_mm],
            "directions_ras": [
                [round(float(v), 8) for v in self.directions_ras[:, axis]] for axis in range(3)
            ],
            "ijk_to_ras_mm": [[round(float(v), 8) for v in row] for row in self.ijk_to_ras_mm()],
            "gantry_tilt_deg": round(self.gantry_tilt_deg, 4),
            "source_gaps_mm": [round(v, 4) for v in self.source_gaps_mm],
            "resampled": self.resampled,
        }


@dataclass
class StackAnalysis:
    """What :func:`analyse_stack` found about one orientation's slices.

    Attributes
    ----------
    frames
        Slices sorted by position along ``normal_lps`` (duplicates removed).
    row_lps, column_lps, normal_lps
        Unit vectors of the image rows, columns and their cross product (LPS).
    distances_mm
        Position of each slice along the normal.
    in_plane_offsets_mm
        Offset of each slice origin from the first one along (row, column) directions,
        shape (n, 2); all zero for an untilted stack.
    common_spacing_mm
        The most frequent gap between slices (None for one slice).
    tilt_deg
        Angle between the stacking direction and the normal.
    tilted, uneven, missing
        Irregularities found.
    missing_count
        Slices that appear to be missing.
    warnings
        Warnings about the findings.
    """

    frames: list[FrameInfo]
    row_lps: npt.NDArray[np.float64]
    column_lps: npt.NDArray[np.float64]
    normal_lps: npt.NDArray[np.float64]
    distances_mm: npt.NDArray[np.float64]
    in_plane_offsets_mm: npt.NDArray[np.float64]
    pixel_spacing_mm: tuple[float, float]
    common_spacing_mm: float | None
    tilt_deg: float = 0.0
    tilted: bool = False
    uneven: bool = False
    missing: bool = False
    missing_count: int = 0
    warnings: list[GeometryWarning] = field(default_factory=list)

    @property
    def gaps_mm(self) -> npt.NDArray[np.float64]:
        """Distances between consecutive slices along the normal."""
        return np.diff(self.distances_mm)

    @property
    def irregular(self) -> bool:
        """Whether the slices do not lie on a regular grid as they are."""
        return self.tilted or self.uneven or self.missing


def _orientation_groups(frames: list[FrameInfo]) -> list[list[FrameInfo]]:
    """Split frames into groups of equal orientation, largest group first."""
    groups: list[list[FrameInfo]] = []
    for frame in frames:
        assert frame.orientation_lps is not None
        for group in groups:
            reference = group[0].orientation_lps
            assert reference is not None
            if np.max(np.abs(frame.orientation_lps - reference)) <= ORIENTATION_TOLERANCE:
                group.append(frame)
                break
        else:
            groups.append([frame])
    return sorted(groups, key=len, reverse=True)


def _names(frames: list[FrameInfo], limit: int = 5) -> str:
    labels = [f.label for f in frames[:limit]]
    more = len(frames) - limit
    return ", ".join(labels) + (f" and {more} more" if more > 0 else "")


def select_stack(
    frames: list[FrameInfo], series_uid: str
) -> tuple[list[FrameInfo], list[GeometryWarning]]:
    """Leave out localizers and slices whose orientation differs from the majority.

    Parameters
    ----------
    frames
        Every image frame of one series; each must have an orientation.
    series_uid
        Named in messages.

    Returns
    -------
    frames, warnings
        The frames of the main stack and a ``localizer_removed`` or
        ``inconsistent_orientation`` warning for what was left out.

    Raises
    ------
    SeriesLoadError
        ``inconsistent_orientation`` when no orientation holds a majority of the slices.
    """
    warnings = []
    localizers = [f for f in frames if f.is_localizer]
    if localizers and len(localizers) < len(frames):
        frames = [f for f in frames if not f.is_localizer]
        warnings.append(
            GeometryWarning(
                "localizer_removed",
                f"Series {series_uid}: {len(localizers)} localizer image(s) left out "
                f"(ImageType LOCALIZER): {_names(localizers)}.",
            )
        )
    groups = _orientation_groups(frames)
    if len(groups) > 1:
        if 2 * len(groups[0]) <= len(frames):
            sizes = ", ".join(str(len(g)) for g in groups)
            raise SeriesLoadError(
                "inconsistent_orientation",
                f"Series {series_uid} holds slices in {len(groups)} orientations "
                f"({sizes} slices) and none is a majority; load the stacks separately.",
                warnings,
            )
        others = [f for group in groups[1:] for f in group]
        warnings.append(
            GeometryWarning(
                "inconsistent_orientation",
                f"Series {series_uid}: {len(others)} slice(s) whose orientation differs from "
                f"the other {len(groups[0])} were left out as localizers: {_names(others)}.",
            )
        )
        frames = groups[0]
    return frames, warnings


def _unit(vector: npt.NDArray[np.float64], series_uid: str) -> npt.NDArray[np.float64]:
    norm = float(np.linalg.norm(vector))
    if norm < 1e-6:
        raise SeriesLoadError(
            "invalid_orientation",
            f"Series {series_uid}: ImageOrientationPatient has a zero-length direction.",
        )
    return vector / norm


def _mode_spacing(gaps: npt.NDArray[np.float64], tolerance_mm: float) -> float:
    """Return the most frequent gap (the smallest on a tie), averaged within its cluster."""
    best: npt.NDArray[np.float64] | None = None
    for gap in np.sort(gaps):
        members = gaps[np.abs(gaps - gap) <= tolerance_mm]
        if best is None or len(members) > len(best):
            best = members
    assert best is not None
    return float(np.mean(best))


def spacing_tolerance_mm(spacing_mm: float) -> float:
    """Largest gap difference treated as rounding: 0.02 mm or 1 % of the spacing."""
    return max(0.02, 0.01 * spacing_mm)


def analyse_stack(frames: list[FrameInfo], series_uid: str) -> StackAnalysis:
    """Sort slices of one orientation along their normal and find irregularities.

    Parameters
    ----------
    frames
        Slices with positions, one orientation, equal size and pixel spacing.
    series_uid
        Named in messages.

    Returns
    -------
    StackAnalysis
        Sorted frames, distances, and ``gantry_tilt``, ``uneven_spacing``,
        ``missing_slices`` and ``duplicate_slices`` warnings as found.
    """
    first = frames[0]
    assert first.orientation_lps is not None and first.pixel_spacing_mm is not None
    row = _unit(first.orientation_lps[:3], series_uid)
    column = _unit(first.orientation_lps[3:], series_uid)
    if abs(float(row @ column)) > 1e-3:
        raise SeriesLoadError(
            "invalid_orientation",
            f"Series {series_uid}: the row and column directions of ImageOrientationPatient "
            f"are not perpendicular ({first.label}).",
        )
    normal = _unit(np.cross(row, column), series_uid)
    positions = np.array([f.position_lps_mm for f in frames], dtype=float)
    order = np.argsort(positions @ normal, kind="stable")
    frames = [frames[i] for i in order]
    positions = positions[order]
    distances = positions @ normal

    warnings: list[GeometryWarning] = []
    keep = np.concatenate([[True], np.diff(distances) > 0.01])
    if not np.all(keep):
        dropped = [f for f, k in zip(frames, keep, strict=True) if not k]
        warnings.append(
            GeometryWarning(
                "duplicate_slices",
                f"Series {series_uid}: {len(dropped)} slice(s) share a position with another "
                f"slice and were left out (several echoes or phases are not loaded as one "
                f"volume): {_names(dropped)}.",
            )
        )
        frames = [f for f, k in zip(frames, keep, strict=True) if k]
        positions, distances = positions[keep], distances[keep]

    offsets = np.stack([(positions - positions[0]) @ row, (positions - positions[0]) @ column], 1)
    analysis = StackAnalysis(
        frames=frames,
        row_lps=row,
        column_lps=column,
        normal_lps=normal,
        distances_mm=distances,
        in_plane_offsets_mm=offsets,
        pixel_spacing_mm=first.pixel_spacing_mm,
        common_spacing_mm=None,
        warnings=warnings,
    )
    if len(frames) < 2:
        return analysis
    _check_tilt(analysis, series_uid)
    _check_gaps(analysis, series_uid)
    return analysis


def _check_tilt(analysis: StackAnalysis, series_uid: str) -> None:
    offsets = analysis.in_plane_offsets_mm
    span_mm = float(analysis.distances_mm[-1] - analysis.distances_mm[0])
    largest_offset_mm = float(np.max(np.linalg.norm(offsets, axis=1)))
    analysis.tilt_deg = math.degrees(math.atan2(float(np.linalg.norm(offsets[-1])), span_mm))
    if largest_offset_mm <= 0.1 * min(analysis.pixel_spacing_mm):
        return
    analysis.tilted = True
    header_tilt = analysis.frames[0].dataset.get("GantryDetectorTilt")
    hint = f" (header GantryDetectorTilt {float(header_tilt):+.1f} deg)" if header_tilt else ""
    analysis.warnings.append(
        GeometryWarning(
            "gantry_tilt",
            f"Series {series_uid}: slices are stacked at {analysis.tilt_deg:.1f} deg to their "
            f"normal{hint}: the image planes drift up to {largest_offset_mm:.1f} mm in plane "
            f"across the stack (gantry tilt).",
        )
    )


def _check_gaps(analysis: StackAnalysis, series_uid: str) -> None:
    gaps = analysis.gaps_mm
    common = _mode_spacing(gaps, spacing_tolerance_mm(float(np.median(gaps))))
    analysis.common_spacing_mm = common
    tolerance = spacing_tolerance_mm(common)
    ratios = gaps / common
    multiples = np.rint(ratios)
    is_missing = (multiples >= 2) & (np.abs(gaps - multiples * common) <= tolerance)
    is_uneven = (np.abs(gaps - common) > tolerance) & ~is_missing
    missing_by_position = int(np.sum(multiples[is_missing] - 1))
    missing_by_number = _instance_number_gaps(analysis.frames)
    if is_uneven.any():
        analysis.uneven = True
        values = ", ".join(f"{g:.2f}" for g in sorted({round(float(g), 2) for g in gaps}))
        analysis.warnings.append(
            GeometryWarning(
                "uneven_spacing",
                f"Series {series_uid}: the distance between slices varies ({values} mm; the "
                f"most common is {common:.2f} mm).",
            )
        )
    if missing_by_position or missing_by_number:
        analysis.missing = bool(missing_by_position)
        analysis.missing_count = max(missing_by_position, missing_by_number)
        where = [
            f"{analysis.distances_mm[i]:.1f}..{analysis.distances_mm[i + 1]:.1f} mm"
            for i in np.flatnonzero(is_missing)
        ]
        location = f" (gaps along the normal at {', '.join(where)})" if where else ""
        numbers = f"; InstanceNumber skips {missing_by_number}" if missing_by_number else ""
        analysis.warnings.append(
            GeometryWarning(
                "missing_slices",
                f"Series {series_uid}: about {analysis.missing_count} slice(s) appear to be "
                f"missing{location}{numbers}.",
            )
        )


def _instance_number_gaps(frames: list[FrameInfo]) -> int:
    """Return how many instance numbers are skipped, when numbers follow the slice order."""
    numbers = [f.instance_number for f in frames]
    if any(n is None for n in numbers) or len(set(numbers)) != len(numbers) or len(numbers) < 3:
        return 0
    steps = np.diff(np.array(numbers, dtype=int))
    if not (np.all(steps > 0) or np.all(steps < 0)):
        return 0
    unit = int(np.min(np.abs(steps)))
    return int(np.sum(np.abs(steps) // unit - 1))


def output_slice_spacing_mm(analysis: StackAnalysis) -> float:
    """Return the slice spacing of the regular grid an irregular stack is resampled onto.

    The common spacing when the slices are only tilted or have missing slices; for uneven
    gaps the smallest gap (so no acquired detail is lost), but never finer than the pixels.
    """
    assert analysis.common_spacing_mm is not None
    if not analysis.uneven:
        return analysis.common_spacing_mm
    return max(float(np.min(analysis.gaps_mm)), min(analysis.pixel_spacing_mm))

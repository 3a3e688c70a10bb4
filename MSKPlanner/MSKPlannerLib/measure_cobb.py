"""Cobb angle in the frontal plane, from endplate lines or from a per-vertebra label map.

Public API
----------
- :func:`parse_endplate_name`: ``"L1-superior"`` -> ``("L1", "superior")``.
- :func:`vertebra_order`: sort key of a vertebra name (C1 ... C7, T1 ... T12, L1 ... L6, S1).
- :func:`cobb_from_endplates`: endplate lines (name -> two RAS points) -> Cobb angle with end
  vertebrae and apex, as a :class:`~MSKPlannerLib.measurement_table.MeasurementTable`.
- :func:`vertebra_tilts_from_labels`: frontal-plane tilt and centre of each labelled vertebral
  body (TotalSegmentator names such as ``vertebrae_L1``).
- :func:`cobb_from_label_map` / :func:`cobb_from_sitk_labels`: the automatic Cobb angle.
- :func:`cobb_from_tilts`: the Cobb angle of a sequence of vertebral tilts (shared by both).
- :func:`body_end_line_ras`: the line to draw for one end vertebra of the automatic angle.

Both methods measure in the frontal (coronal) plane: positions are projected on the RAS x
(patient right) and z (superior) axes, so a rotation of the spine about a vertical axis or
a sagittal curve does not enter the angle. A line's tilt is its angle to the patient's
horizontal, positive when it rises toward the patient's right. The Cobb angle is the
largest difference in tilt between a cranial and a caudal endplate (or vertebral body); the
curve is convex to the right when the cranial end vertebra's tilt is the larger.
"""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk

from MSKPlannerLib.measurement_table import (
    VOLUME_GEOMETRY,
    Calibration,
    Measurement,
    MeasurementTable,
)
from MSKPriorsLib.frames import ijk_to_ras_from_sitk

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]

_REGIONS = {"C": 0, "T": 1, "L": 2, "S": 3}
_VERTEBRA = re.compile(r"^(?:vertebrae_)?([CTLS])(\d{1,2})$", re.IGNORECASE)
_ENDPLATE = re.compile(r"^([CTLS]\d{1,2})[-_ ](superior|inferior)$", re.IGNORECASE)

#: Default standard deviation of an endplate line's end point placed by hand, in mm.
DEFAULT_PLACEMENT_SIGMA_MM = 1.0

COBB_DEFINITION = (
    "Largest angle in the frontal plane between the endplate (or vertebral body) of a cranial "
    "end vertebra and that of a caudal end vertebra."
)


class CobbError(ValueError):
    """The Cobb angle cannot be measured; the message names the object and the reason."""


@dataclass(frozen=True)
class VertebraTilt:
    """Frontal-plane orientation of one endplate or vertebral body.

    Attributes
    ----------
    vertebra
        Vertebra name such as ``L1``.
    tilt_deg
        Angle to the patient's horizontal, in (-90, 90], positive rising toward the right.
    center_frontal_mm
        ``(x, z)`` centre in the frontal plane, RAS mm.
    part
        ``superior``, ``inferior`` or ``body``.
    sigma_deg
        Standard error of the tilt, in degrees, when it can be estimated.
    """

    vertebra: str
    tilt_deg: float
    center_frontal_mm: tuple[float, float]
    part: str = "body"
    sigma_deg: float | None = None


def vertebra_order(name: str) -> tuple[int, int]:
    """Sort key of a vertebra name, cranial first (``C1`` < ``T12`` < ``L1`` < ``S1``)."""
    match = _VERTEBRA.match(name.strip())
    if not match:
        raise CobbError(f"{name!r} is not a vertebra name such as T12 or L1")
    return _REGIONS[match.group(1).upper()], int(match.group(2))


def parse_endplate_name(name: str) -> tuple[str, str]:
    """Split an endplate line name such as ``L1-superior`` into vertebra and endplate.

    Raises
    ------
    CobbError
        When the name does not follow ``<vertebra>-superior`` / ``<vertebra>-inferior``.
    """
    match = _ENDPLATE.match(name.strip())
    if not match:
        raise CobbError(f"endplate line {name!r} is not named like 'L1-superior' or 'T12-inferior'")
    return match.group(1).upper(), match.group(2).lower()


def line_tilt_deg(direction_frontal: npt.ArrayLike) -> float:
    """Tilt of a frontal-plane direction ``(x, z)`` to the horizontal, in (-90, 90] degrees."""
    dx, dz = np.asarray(direction_frontal, dtype=float)
    if dx < 0 or (dx == 0 and dz < 0):
        dx, dz = -dx, -dz
    return float(np.degrees(np.arctan2(dz, dx)))


def cobb_from_tilts(tilts: Sequence[VertebraTilt]) -> tuple[float, int, int]:
    """Largest tilt difference between a cranial and a caudal element of different vertebrae.

    Parameters
    ----------
    tilts
        Ordered cranial to caudal.

    Returns
    -------
    tuple
        ``(cobb_deg, index_upper, index_lower)``; the sign of ``tilt[upper] - tilt[lower]``
        gives the convexity (positive: convex to the right).
    """
    best = (-1.0, 0, 0)
    for i, upper in enumerate(tilts):
        for j in range(i + 1, len(tilts)):
            lower = tilts[j]
            if lower.vertebra == upper.vertebra:
                continue
            angle = abs(upper.tilt_deg - lower.tilt_deg)
            if angle > best[0]:
                best = (angle, i, j)
    if best[0] < 0:
        raise CobbError("a Cobb angle needs endplates of at least two different vertebrae")
    return best


def _apex(tilts: Sequence[VertebraTilt], upper: int, lower: int) -> str | None:
    """The vertebra between the end vertebrae that lies farthest from the line joining them."""
    start = np.asarray(tilts[upper].center_frontal_mm)
    end = np.asarray(tilts[lower].center_frontal_mm)
    chord = end - start
    length = float(np.linalg.norm(chord))
    best_name, best_distance = None, 0.0
    ends = {tilts[upper].vertebra, tilts[lower].vertebra}
    for tilt in tilts[upper : lower + 1]:
        if tilt.vertebra in ends or length == 0.0:
            continue
        offset = np.asarray(tilt.center_frontal_mm) - start
        distance = abs(chord[0] * offset[1] - chord[1] * offset[0]) / length
        if distance > best_distance:
            best_name, best_distance = tilt.vertebra, distance
    return best_name


def _cobb_table(
    tilts: Sequence[VertebraTilt],
    calibration: Calibration,
    source_image: str,
    method: str,
    uncertainty_of: dict[tuple[int, int], float] | None,
) -> MeasurementTable:
    cobb, upper, lower = cobb_from_tilts(tilts)
    apex = _apex(tilts, upper, lower)
    convexity = "right" if tilts[upper].tilt_deg > tilts[lower].tilt_deg else "left"
    uncertainty = uncertainty_of.get((upper, lower)) if uncertainty_of else None
    details = {
        "upper_end_vertebra": tilts[upper].vertebra,
        "lower_end_vertebra": tilts[lower].vertebra,
        "apex_vertebra": apex,
        "upper_endplate": tilts[upper].part,
        "lower_endplate": tilts[lower].part,
        "convexity": convexity if cobb > 0 else "none",
        "plane": "frontal",
        "tilts_deg": {f"{t.vertebra}-{t.part}": round(t.tilt_deg, 3) for t in tilts},
    }
    table = MeasurementTable()
    table.add(
        Measurement(
            key="cobb_deg",
            label="Cobb angle",
            value=round(cobb, 3),
            unit="deg",
            definition=COBB_DEFINITION,
            method=method,
            calibration=calibration,
            source_image=source_image,
            uncertainty=None if uncertainty is None else round(uncertainty, 3),
            details=details,
        )
    )
    if apex is None:
        table.not_measured["apex_vertebra"] = (
            "no vertebra lies between the end vertebrae, so no apex can be named"
        )
    return table


def cobb_from_endplates(
    lines_ras_mm: Mapping[str, npt.ArrayLike],
    calibration: Calibration,
    source_image: str,
    placement_sigma_mm: float = DEFAULT_PLACEMENT_SIGMA_MM,
) -> MeasurementTable:
    """Cobb angle from endplate lines placed by the user.

    Parameters
    ----------
    lines_ras_mm
        Line name (``L1-superior``, ``T12-inferior``, ...) -> end points (2, 3), RAS mm. Lines
        with other names are ignored.
    calibration
        Recorded with the row (an angle needs no length calibration).
    source_image
        Series Instance UID or file the lines were placed on.
    placement_sigma_mm
        Standard deviation of an end point coordinate, for the uncertainty (95 % half-width).

    Returns
    -------
    MeasurementTable
        One ``cobb_deg`` row; ``details`` hold ``upper_end_vertebra``, ``lower_end_vertebra``,
        ``apex_vertebra`` (None when no vertebra lies between them) and the convexity.
    """
    elements: list[tuple[tuple[int, int, int], VertebraTilt, float]] = []
    for name, ends in lines_ras_mm.items():
        try:
            vertebra, part = parse_endplate_name(name)
        except CobbError:
            logger.debug("line %r is not an endplate line; ignored", name)
            continue
        points = np.asarray(ends, dtype=float).reshape(2, 3)[:, [0, 2]]
        direction = points[1] - points[0]
        length = float(np.linalg.norm(direction))
        if length == 0.0:
            raise CobbError(f"endplate line {name!r} of {source_image} has zero length")
        center = points.mean(axis=0)
        tilt = VertebraTilt(vertebra, line_tilt_deg(direction), (center[0], center[1]), part)
        order = (*vertebra_order(vertebra), 0 if part == "superior" else 1)
        # Tilt standard deviation of a line from two independently placed end points.
        sigma_deg = float(np.degrees(np.sqrt(2.0) * placement_sigma_mm / length))
        elements.append((order, tilt, sigma_deg))
    if len({e[1].vertebra for e in elements}) < 2:
        raise CobbError(
            f"{source_image or 'the landmark set'} needs endplate lines of at least two "
            "vertebrae, named like 'L1-superior'"
        )
    elements.sort(key=lambda e: e[0])
    tilts = [e[1] for e in elements]
    sigmas = [e[2] for e in elements]
    uncertainty = {
        (i, j): 1.96 * float(np.hypot(sigmas[i], sigmas[j]))
        for i in range(len(tilts))
        for j in range(i + 1, len(tilts))
    }
    return _cobb_table(tilts, calibration, source_image, "manual", uncertainty)


def _principal_tilt_deg(frontal_mm: FloatArray) -> float:
    """Tilt of the principal (longest) axis of frontal-plane points (N, 2)."""
    centred = frontal_mm - frontal_mm.mean(axis=0)
    eigenvalues, eigenvectors = np.linalg.eigh(np.cov(centred.T))
    return line_tilt_deg(eigenvectors[:, int(np.argmax(eigenvalues))])


def _body_selection(points_ras_mm: FloatArray) -> npt.NDArray[np.bool_]:
    """Which of a vertebra's points (N, 3), RAS mm, belong to its body (the anterior half)."""
    anterior = points_ras_mm[:, 1]
    selected = anterior >= 0.5 * (anterior.min() + anterior.max())
    if np.count_nonzero(selected) < 10:
        return np.ones(len(points_ras_mm), dtype=bool)
    return selected


def body_end_line_ras(
    points_ras_mm: npt.ArrayLike,
    tilt_deg: float,
    end: str,
    overhang: float = 0.25,
    depth_ras_mm: float | None = None,
    slab_mm: float = 5.0,
) -> tuple[FloatArray, FloatArray]:
    """The line of an automatic Cobb angle's end vertebra, drawn at the end of its body.

    The automatic angle compares the tilts of whole vertebral bodies; to show it the way a
    Cobb angle is drawn by hand, the body's tilt is drawn as a line along its superior or
    inferior end (its endplate), as wide as the body plus ``overhang`` on each side.

    Parameters
    ----------
    points_ras_mm
        Voxel centres of the vertebra, shape (N, 3), RAS mm.
    tilt_deg
        The body's frontal-plane tilt (as in :class:`VertebraTilt`).
    end
        ``"superior"`` (the cranial end vertebra) or ``"inferior"`` (the caudal one).
    overhang
        Length added at each end, as a fraction of the body's width.
    depth_ras_mm, slab_mm
        When a coronal picture at RAS y = ``depth_ras_mm`` shows the line, the endplate is
        found on the body's points within ``slab_mm`` of that plane (if there are enough),
        so the line meets the outline the picture shows.

    Returns
    -------
    start_ras_mm, end_ras_mm
        The line's ends, RAS mm, at the body's mean anterior-posterior position (or at
        ``depth_ras_mm``).
    """
    if end not in ("superior", "inferior"):
        raise ValueError(f"end must be superior or inferior, not {end!r}")
    points = np.asarray(points_ras_mm, dtype=float)
    body = points[_body_selection(points)]
    angle = np.radians(tilt_deg)
    along = np.array([np.cos(angle), np.sin(angle)])
    across = np.array([-np.sin(angle), np.cos(angle)])  # points superior
    depth = float(body[:, 1].mean())
    if depth_ras_mm is not None:
        depth = float(depth_ras_mm)
        near = body[np.abs(body[:, 1] - depth) <= slab_mm]
        if len(near) >= 10:
            body = near
    frontal = body[:, [0, 2]]
    offsets = frontal @ across
    # A high quantile rather than the extreme, so a stray voxel does not lift the line.
    level = np.quantile(offsets, 0.99 if end == "superior" else 0.01)
    positions = frontal @ along
    low, high = positions.min(), positions.max()
    margin = overhang * (high - low)
    ends = [(low - margin) * along + level * across, (high + margin) * along + level * across]
    start, finish = (np.array([x, depth, z]) for x, z in ends)
    return start, finish


def _cut_sides(
    kji: npt.NDArray[np.int64], shape: tuple[int, ...], matrix: FloatArray
) -> list[tuple[str, int]]:
    """Patient sides where voxels (N, 3) ``[k, j, i]`` reach the grid's edge, with counts."""
    names = {0: ("left", "right"), 1: ("posterior", "anterior"), 2: ("inferior", "superior")}
    sides = []
    for axis in range(3):
        column = matrix[:3, 2 - axis]
        ras_axis = int(np.argmax(np.abs(column)))
        low_name, high_name = names[ras_axis]
        if column[ras_axis] < 0:
            low_name, high_name = high_name, low_name
        at_low = int(np.count_nonzero(kji[:, axis] == 0))
        at_high = int(np.count_nonzero(kji[:, axis] == shape[axis] - 1))
        if at_low:
            sides.append((low_name, at_low))
        if at_high:
            sides.append((high_name, at_high))
    return sides


def _body_tilt(points_ras_mm: FloatArray) -> tuple[float, tuple[float, float], float | None]:
    """Frontal-plane tilt, centre and tilt standard error of one vertebra's voxels (N, 3), RAS mm.

    The posterior elements (laminae, spinous and transverse processes) would bias the
    orientation, so only the anterior part of the vertebra, the body, is used: voxels anterior
    to the middle of the vertebra's anterior-posterior extent. The principal axis of the body
    projected on the frontal plane is its left-right axis. The standard error comes from the
    spread of the same tilt measured on four anterior-posterior slabs of the body, which sample
    its outline independently.
    """
    body = points_ras_mm[_body_selection(points_ras_mm)]
    frontal = body[:, [0, 2]]
    center = frontal.mean(axis=0)
    tilt = _principal_tilt_deg(frontal)

    bounds = np.quantile(body[:, 1], [0.0, 0.25, 0.5, 0.75, 1.0])
    slab_tilts = []
    for low, high in itertools.pairwise(bounds):
        slab = frontal[(body[:, 1] >= low) & (body[:, 1] <= high)]
        if len(slab) >= 10:
            # Keep each slab's tilt on the same side of the +-90 degree wrap as the body's.
            slab_tilts.append(tilt + ((_principal_tilt_deg(slab) - tilt + 90.0) % 180.0 - 90.0))
    sigma = (
        float(np.std(slab_tilts, ddof=1) / np.sqrt(len(slab_tilts)))
        if len(slab_tilts) > 2
        else None
    )
    return tilt, (float(center[0]), float(center[1])), sigma


def vertebra_tilts_from_labels(
    labels_kji: npt.ArrayLike,
    ijk_to_ras_mm: npt.ArrayLike,
    names: Mapping[int, str],
) -> tuple[list[VertebraTilt], dict[str, str]]:
    """Frontal-plane tilt of every labelled vertebral body.

    Parameters
    ----------
    labels_kji
        Integer label array indexed ``[k, j, i]``.
    ijk_to_ras_mm
        4x4 matrix from ``(i, j, k, 1)`` to RAS mm.
    names
        Label value -> name; vertebrae follow TotalSegmentator (``vertebrae_L1``).

    Returns
    -------
    tuple
        Tilts ordered cranial to caudal, and vertebra -> reason for those left out (for
        example a vertebra cut by the edge of the volume).
    """
    labels = np.asarray(labels_kji)
    matrix = np.asarray(ijk_to_ras_mm, dtype=float)
    tilts: list[tuple[tuple[int, int], VertebraTilt]] = []
    skipped: dict[str, str] = {}
    for value, name in names.items():
        match = _VERTEBRA.match(name)
        if not match or not name.lower().startswith("vertebrae_"):
            continue
        vertebra = f"{match.group(1).upper()}{int(match.group(2))}"
        kji = np.argwhere(labels == value)
        if len(kji) == 0:
            continue
        if len(kji) < 20:
            skipped[vertebra] = f"only {len(kji)} voxels"
            continue
        ijk1 = np.column_stack([kji[:, ::-1].astype(float), np.ones(len(kji))])
        ras = (matrix @ ijk1.T).T[:, :3]
        # Only the body is measured: a process clipped by the edge does not matter, a body
        # that runs on out of the scan does (its shape, hence its tilt, is incomplete).
        cut = _cut_sides(kji[_body_selection(ras)], labels.shape, matrix)
        if cut:
            where = ", ".join(f"{count} body voxels on the {side} edge" for side, count in cut)
            skipped[vertebra] = f"vertebral body cut by the edge of the volume ({where})"
            continue
        tilt, center, sigma = _body_tilt(ras)
        tilts.append(
            (vertebra_order(vertebra), VertebraTilt(vertebra, tilt, center, "body", sigma))
        )
    tilts.sort(key=lambda item: item[0])
    return [t for _, t in tilts], skipped


def cobb_from_label_map(
    labels_kji: npt.ArrayLike,
    ijk_to_ras_mm: npt.ArrayLike,
    names: Mapping[int, str],
    source_image: str,
    calibration: Calibration = VOLUME_GEOMETRY,
) -> MeasurementTable:
    """Automatic Cobb angle from a per-vertebra label map.

    Parameters
    ----------
    labels_kji, ijk_to_ras_mm, names
        See :func:`vertebra_tilts_from_labels`.
    source_image
        The label map or series it was computed on.
    calibration
        Recorded with the row (volume geometry by default).

    Returns
    -------
    MeasurementTable
        One ``cobb_deg`` row (method ``automatic``) with the end vertebrae, the apex and every
        vertebra's tilt in ``details``; vertebrae left out are listed in ``not_measured``. The
        uncertainty (95 % half-width) combines the two end vertebrae's tilt standard errors.

    Raises
    ------
    CobbError
        When fewer than two whole vertebrae are labelled.
    """
    tilts, skipped = vertebra_tilts_from_labels(labels_kji, ijk_to_ras_mm, names)
    if len({t.vertebra for t in tilts}) < 2:
        raise CobbError(
            f"{source_image} holds fewer than two whole labelled vertebrae "
            "(names like vertebrae_L1 are expected)"
        )
    sigmas = [t.sigma_deg for t in tilts]
    uncertainty = {
        (i, j): 1.96 * float(np.hypot(a, b))
        for i, a in enumerate(sigmas)
        for j, b in enumerate(sigmas)
        if i < j and a is not None and b is not None
    }
    table = _cobb_table(tilts, calibration, source_image, "automatic", uncertainty)
    for vertebra, reason in skipped.items():
        table.not_measured[f"tilt_{vertebra}"] = reason
    return table


def cobb_from_sitk_labels(
    image: sitk.Image, names: Mapping[int, str], source_image: str
) -> MeasurementTable:
    """:func:`cobb_from_label_map` for a SimpleITK label image (geometry in LPS)."""
    return cobb_from_label_map(
        sitk.GetArrayViewFromImage(image), ijk_to_ras_from_sitk(image), names, source_image
    )

"""Landmarks and endplate lines read from, and written to, Slicer's markups JSON.

Public API
----------
- :class:`LandmarkSet`: named points and named lines in RAS millimetres, with the side of
  the body they belong to and the file they came from.
- :func:`read_markups_json` / :func:`read_landmark_files`: parse ``.mrk.json`` files as 3D
  Slicer writes them (``coordinateSystem`` LPS or RAS, ``coordinateUnits`` mm or um); every
  position is returned in RAS mm.
- :func:`write_markups_json`: write points (one Fiducial markup) and lines (one Line markup
  per line) in the same format, so Slicer loads them.
- :func:`side_from_text`: ``"left"``, ``"right"`` or None from a node name or description.
- :func:`landmarks_from_nodes`: the same :class:`LandmarkSet` from MRML markups nodes.
- :func:`frontal_plane_mm`, :func:`medial_direction_frontal`, :func:`check_frontal_extent`:
  the frontal-plane geometry shared by the measurement families.
- :func:`unfold_axial_radiograph`: landmarks placed on a radiograph that Slicer loaded into an
  axial plane (no orientation tags), brought into the frontal plane.
- :func:`propagate_uncertainty`: 95 % half-width of a value from landmark placement error.

Slicer's RAS frame: +x points to the patient's right, +y anterior, +z superior. LPS flips the
first two axes. Slicer does not store a node's name in the file; it names the loaded node after
the file, so the side is also looked for in the file name.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

logger = logging.getLogger(__name__)

SCHEMA_URL = (
    "https://raw.githubusercontent.com/slicer/slicer/master/Modules/Loadable/Markups/"
    "Resources/Schema/markups-schema-v1.0.3.json#"
)

#: Factor from RAS to LPS and back (the first two axes change sign).
LPS_TO_RAS = np.array([-1.0, -1.0, 1.0])

_SIDE_PATTERN = re.compile(r"(?<![a-z])(left|right)(?![a-z])", re.IGNORECASE)
_SIDE_SHORT = re.compile(r"(?:^|[_\-\s])(l|r)(?:$|[_\-\s.])", re.IGNORECASE)

FloatArray = npt.NDArray[np.float64]


class LandmarkError(ValueError):
    """A landmark file or set cannot be used; the message names the file and the problem."""


@dataclass
class LandmarkSet:
    """Named points and lines in RAS millimetres.

    Attributes
    ----------
    points_ras_mm
        Control point label -> position, shape (3,), RAS mm.
    lines_ras_mm
        Line name (such as ``L1-superior``) -> end points, shape (2, 3), RAS mm.
    side
        ``"left"``, ``"right"`` or None when no name or description states it.
    source
        The file(s) or node(s) the landmarks came from.
    """

    points_ras_mm: dict[str, FloatArray] = field(default_factory=dict)
    lines_ras_mm: dict[str, FloatArray] = field(default_factory=dict)
    side: str | None = None
    source: str = ""

    def require(self, labels: Iterable[str]) -> None:
        """Raise :class:`LandmarkError` naming every label in ``labels`` that is missing."""
        missing = [label for label in labels if label not in self.points_ras_mm]
        if missing:
            raise LandmarkError(
                f"{self.source or 'the landmark set'} lacks the landmark(s) {', '.join(missing)}"
            )

    def merge(self, other: LandmarkSet) -> None:
        """Add the points and lines of ``other``; conflicting sides raise an error."""
        if self.side and other.side and self.side != other.side:
            raise LandmarkError(
                f"{self.source} is marked {self.side} but {other.source} is marked {other.side}"
            )
        self.side = self.side or other.side
        self.points_ras_mm.update(other.points_ras_mm)
        self.lines_ras_mm.update(other.lines_ras_mm)
        self.source = ", ".join(s for s in (self.source, other.source) if s)


def side_from_text(*texts: str) -> str | None:
    """Return the body side named in the texts.

    Parameters
    ----------
    *texts
        Node names, descriptions or file names. ``left``/``right`` are matched as words, and
        ``L``/``R`` as separate tokens (``knee_R``).

    Returns
    -------
    str or None
        ``"left"`` or ``"right"``; None when no text names a side.

    Raises
    ------
    LandmarkError
        When the texts name both sides.
    """
    found: set[str] = set()
    for text in texts:
        if not text:
            continue
        found.update(match.lower() for match in _SIDE_PATTERN.findall(text))
        for match in _SIDE_SHORT.findall(text):
            found.add("left" if match.lower() == "l" else "right")
    if len(found) > 1:
        raise LandmarkError(f"both sides are named in {', '.join(t for t in texts if t)!r}")
    return found.pop() if found else None


def _position_ras_mm(
    point: Mapping[str, Any], system: str, scale_to_mm: float, path: Path
) -> FloatArray:
    name = f"control point {str(point.get('label') or point.get('id') or '?')!r} of {path}"
    raw = point.get("position", ())
    try:
        position = np.asarray(raw, dtype=float)
    except (TypeError, ValueError) as error:
        raise LandmarkError(f"{name} has a position that is not three numbers: {raw!r}") from error
    if position.shape != (3,) or not np.all(np.isfinite(position)):
        raise LandmarkError(f"{name} has no valid position (three finite numbers): {raw!r}")
    position = position * scale_to_mm
    return position * LPS_TO_RAS if system == "LPS" else position


def _units_to_mm(markup: Mapping[str, Any], path: Path) -> float:
    units = markup.get("coordinateUnits", "mm")
    if isinstance(units, list):
        units = units[0] if units else "mm"
    if units == "mm":
        return 1.0
    if units == "um":
        return 1e-3
    raise LandmarkError(f"{path} uses coordinate units {units!r}; only mm and um are defined")


def read_markups_json(path: Path) -> LandmarkSet:
    """Read one Slicer markups JSON file.

    Parameters
    ----------
    path
        A ``.mrk.json`` file. Fiducial markups give named points (by control point label);
        Line markups give named lines (by markup ``name``, or the file name when the file
        holds a single line, as Slicer names the loaded node). Points whose
        ``positionStatus`` is not ``defined`` are ignored.

    Returns
    -------
    LandmarkSet
        Positions in RAS mm; the side from the markup names, descriptions or the file name.

    Raises
    ------
    LandmarkError
        Unreadable JSON, no ``markups`` list, unknown coordinate system or units.
    """
    path = Path(path)
    try:
        document = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise LandmarkError(f"{path} is not a readable markups JSON file: {error}") from error
    markups = document.get("markups") if isinstance(document, dict) else None
    if not isinstance(markups, list):
        raise LandmarkError(f"{path} has no 'markups' list (not a Slicer markups file)")

    stem = path.name.removesuffix(".json").removesuffix(".mrk")
    result = LandmarkSet(source=str(path))
    texts = [stem]
    line_count = sum(1 for m in markups if isinstance(m, dict) and m.get("type") == "Line")
    for index, markup in enumerate(markups):
        points = markup.get("controlPoints", []) if isinstance(markup, dict) else None
        if not isinstance(points, list) or not all(isinstance(p, dict) for p in points):
            raise LandmarkError(f"markup {index + 1} of {path} has no list of control points")
        system = str(markup.get("coordinateSystem", "LPS")).upper()
        if system not in ("LPS", "RAS"):
            raise LandmarkError(f"{path} uses coordinate system {system!r}; expected LPS or RAS")
        scale = _units_to_mm(markup, path)
        texts += [str(markup.get("name", "")), str(markup.get("description", ""))]
        defined = [p for p in points if p.get("positionStatus", "defined") == "defined"]
        kind = markup.get("type")
        if kind == "Line":
            name = markup.get("name") or (stem if line_count == 1 else f"{stem}-{index}")
            if len(defined) != 2:
                raise LandmarkError(f"line {name!r} in {path} has {len(defined)} defined points")
            result.lines_ras_mm[name] = np.stack(
                [_position_ras_mm(p, system, scale, path) for p in defined]
            )
        else:
            for point in defined:
                label = str(point.get("label", "")).strip()
                if not label:
                    continue
                if label in result.points_ras_mm:
                    raise LandmarkError(f"{path} holds the landmark {label!r} twice")
                result.points_ras_mm[label] = _position_ras_mm(point, system, scale, path)
    result.side = side_from_text(*texts)
    logger.debug(
        "read %d points and %d lines from %s",
        len(result.points_ras_mm),
        len(result.lines_ras_mm),
        path,
    )
    return result


def read_landmark_files(paths: Iterable[Path]) -> LandmarkSet:
    """Read several markups files into one :class:`LandmarkSet` (see :func:`read_markups_json`)."""
    merged = LandmarkSet()
    for path in paths:
        merged.merge(read_markups_json(Path(path)))
    return merged


def _control_point(index: int, label: str, position_ras_mm: FloatArray, system: str) -> dict:
    position = np.asarray(position_ras_mm, dtype=float)
    if system == "LPS":
        position = position * LPS_TO_RAS
    return {
        "id": str(index + 1),
        "label": label,
        "description": "",
        "associatedNodeID": "",
        "position": [float(v) for v in position],
        "orientation": [-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0]
        if system == "LPS"
        else [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
        "selected": True,
        "locked": False,
        "visibility": True,
        "positionStatus": "defined",
    }


def write_markups_json(
    path: Path,
    points_ras_mm: Mapping[str, FloatArray] | None = None,
    lines_ras_mm: Mapping[str, FloatArray] | None = None,
    name: str = "",
    description: str = "",
    coordinate_system: str = "LPS",
) -> None:
    """Write points and lines as a Slicer markups JSON file.

    Parameters
    ----------
    path
        Output ``.mrk.json`` file.
    points_ras_mm
        Label -> position (3,), RAS mm; written as one Fiducial markup named ``name``.
    lines_ras_mm
        Line name -> end points (2, 3), RAS mm; one Line markup each.
    name, description
        Name and description of the Fiducial markup (where the side is stated).
    coordinate_system
        ``"LPS"`` (Slicer's default for files) or ``"RAS"``.
    """
    system = coordinate_system.upper()
    if system not in ("LPS", "RAS"):
        raise ValueError(f"coordinate_system must be LPS or RAS, not {coordinate_system!r}")
    markups: list[dict[str, Any]] = []
    if points_ras_mm:
        markups.append(
            {
                "type": "Fiducial",
                "name": name,
                "description": description,
                "coordinateSystem": system,
                "coordinateUnits": "mm",
                "controlPoints": [
                    _control_point(i, label, pos, system)
                    for i, (label, pos) in enumerate(points_ras_mm.items())
                ],
            }
        )
    for line_name, ends in (lines_ras_mm or {}).items():
        ends_array = np.asarray(ends, dtype=float).reshape(2, 3)
        markups.append(
            {
                "type": "Line",
                "name": line_name,
                "coordinateSystem": system,
                "coordinateUnits": "mm",
                "controlPoints": [
                    _control_point(i, f"{line_name}-{i + 1}", ends_array[i], system)
                    for i in range(2)
                ],
            }
        )
    Path(path).write_text(json.dumps({"@schema": SCHEMA_URL, "markups": markups}, indent=2))


def landmarks_from_nodes(nodes: Iterable[Any]) -> LandmarkSet:
    """Collect points and lines from MRML markups nodes, in world RAS mm.

    Parameters
    ----------
    nodes
        ``vtkMRMLMarkupsNode`` instances. Line nodes (two defined points) give lines named
        after the node; other nodes give points named by control point label.

    Returns
    -------
    LandmarkSet
        Side from the node names and descriptions.
    """
    result = LandmarkSet()
    texts: list[str] = []
    position = [0.0, 0.0, 0.0]
    for node in nodes:
        texts += [node.GetName() or "", node.GetDescription() or ""]
        defined = [
            i
            for i in range(node.GetNumberOfControlPoints())
            if node.GetNthControlPointPositionStatus(i) == node.PositionDefined
        ]
        positions = []
        for i in defined:
            node.GetNthControlPointPositionWorld(i, position)
            positions.append(np.array(position, dtype=float))
        if node.IsA("vtkMRMLMarkupsLineNode"):
            if len(positions) == 2:
                result.lines_ras_mm[node.GetName()] = np.stack(positions)
            continue
        for i, pos in zip(defined, positions, strict=True):
            label = node.GetNthControlPointLabel(i).strip()
            if label:
                result.points_ras_mm[label] = pos
    result.side = side_from_text(*texts)
    result.source = ", ".join(t for t in texts[::2] if t)
    return result


def frontal_plane_mm(points_ras_mm: npt.ArrayLike) -> FloatArray:
    """Project RAS points on the frontal (coronal) plane.

    Parameters
    ----------
    points_ras_mm
        Shape (3,) or (N, 3), RAS mm.

    Returns
    -------
    numpy.ndarray
        Shape (2,) or (N, 2): ``(x toward the patient's right, z superior)`` in mm.
    """
    points = np.asarray(points_ras_mm, dtype=float)
    return points[..., [0, 2]]


def medial_direction_frontal(side: str) -> FloatArray:
    """Unit vector pointing medially in the frontal plane of :func:`frontal_plane_mm`.

    RAS +x points to the patient's right, so the midline lies toward -x from a right limb
    and toward +x from a left limb.
    """
    if side == "right":
        return np.array([-1.0, 0.0])
    if side == "left":
        return np.array([1.0, 0.0])
    raise LandmarkError(f"side must be 'left' or 'right', not {side!r}")


def check_frontal_extent(points_ras_mm: npt.ArrayLike, what: str, source: str) -> None:
    """Refuse landmarks that do not lie near a frontal plane.

    A landmark set spread mostly along the anterior-posterior axis (for example points placed
    on a radiograph that was loaded into the axial plane) would collapse when projected on the
    frontal plane; measuring it anyway would give meaningless angles.

    Raises
    ------
    LandmarkError
        When the in-plane extent is less than the anterior-posterior extent.
    """
    points = np.asarray(points_ras_mm, dtype=float).reshape(-1, 3)
    extent = points.max(axis=0) - points.min(axis=0)
    if max(extent[0], extent[2]) < extent[1]:
        raise LandmarkError(
            f"the {what} landmarks of {source or 'the landmark set'} spread more "
            "anterior-posterior than in the frontal plane; they cannot be measured in the "
            "frontal plane (check the image orientation)"
        )


def propagate_uncertainty(
    value_of: Callable[[dict[str, FloatArray]], float],
    points_ras_mm: Mapping[str, FloatArray],
    labels: Iterable[str],
    sigma_mm: float,
    coverage: float = 1.96,
) -> float:
    """Half-width of the uncertainty of a value computed from landmarks.

    First-order propagation: each coordinate of each landmark in ``labels`` is moved by a small
    step, the change of the value gives its partial derivative, and independent placement
    errors of standard deviation ``sigma_mm`` per coordinate are combined.

    Parameters
    ----------
    value_of
        Function of a label -> position (3,) mapping, RAS mm, returning the value.
    points_ras_mm
        The landmarks as placed.
    labels
        The landmarks the value depends on.
    sigma_mm
        Placement standard deviation of one coordinate, in mm.
    coverage
        Multiplier of the standard deviation (1.96 for about 95 %).

    Returns
    -------
    float
        ``coverage`` times the propagated standard deviation, in the value's unit.
    """
    base = {k: np.asarray(v, dtype=float) for k, v in points_ras_mm.items()}
    value0 = value_of(base)
    step_mm = 1e-3
    variance = 0.0
    for label in labels:
        for axis in range(3):
            moved = dict(base)
            shifted = base[label].copy()
            shifted[axis] += step_mm
            moved[label] = shifted
            derivative = (value_of(moved) - value0) / step_mm
            variance += (derivative * sigma_mm) ** 2
    return float(coverage * np.sqrt(variance))


def unfold_axial_radiograph(landmarks: LandmarkSet) -> tuple[LandmarkSet, str | None]:
    """Read landmarks placed on a radiograph that a viewer loaded into the axial plane.

    A radiograph without ImageOrientationPatient is loaded by Slicer (ITK) with an identity
    direction: columns run toward the patient's left (RAS -x) and rows toward RAS -y, so the
    whole image lies in one axial plane and its "down" (toward the feet on an AP radiograph)
    is -y. Landmarks that all share one superior coordinate and spread in y are such a case:
    y is then read as the superior axis. Anything else is returned unchanged.

    Parameters
    ----------
    landmarks
        Points and lines in RAS mm.

    Returns
    -------
    tuple
        The landmarks in the frontal frame, and a note saying the unfolding was applied (None
        when it was not).
    """
    positions = list(landmarks.points_ras_mm.values()) + [
        p for line in landmarks.lines_ras_mm.values() for p in line
    ]
    if len(positions) < 3:
        return landmarks, None
    stacked = np.stack(positions)
    extent = np.ptp(stacked, axis=0)
    if extent[2] > 1e-6 * max(extent.max(), 1.0) or extent[1] <= extent[2]:
        return landmarks, None

    def unfold(point: FloatArray) -> FloatArray:
        return np.array([point[0], 0.0, point[1]])

    unfolded = LandmarkSet(
        points_ras_mm={k: unfold(v) for k, v in landmarks.points_ras_mm.items()},
        lines_ras_mm={
            k: np.stack([unfold(p) for p in v]) for k, v in landmarks.lines_ras_mm.items()
        },
        side=landmarks.side,
        source=landmarks.source,
    )
    note = (
        "landmarks lie in one axial plane (a radiograph loaded without orientation): "
        "anterior (y) was read as superior"
    )
    logger.info("%s: %s", landmarks.source, note)
    return unfolded, note

"""The case's landmarks as markups nodes, and its measurement table kept live from them.

Each point landmark is a one-point ``vtkMRMLMarkupsFiducialNode`` whose control point carries
the label the measurement library expects (``hip_center``, ``femoral_head_center``, ...), as
trame-slicer places markups (one new node per placement); each Cobb endplate is a
``vtkMRMLMarkupsLineNode`` named like ``L1-superior``. The landmarks of the chosen measurement
set (:mod:`mskworkbench.web.landmark_sets`) are shown in every view; placing or dragging one in
a view, or nudging it from the page, makes the measurement library's
:class:`~MSKPlannerLib.measurement_nodes.LiveMeasurement` recompute the table, and the page is
told.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import vtk

from MSKPlannerLib.landmarks import LandmarkSet, landmarks_from_nodes
from MSKPlannerLib.measurement_nodes import LiveMeasurement
from MSKPlannerLib.measurement_table import VOLUME_GEOMETRY, Calibration, MeasurementTable
from MSKPriorsLib.app_context import AppContext
from mskworkbench.web.landmark_sets import (
    MeasurementSet,
    endplate_order,
    measurement_set,
    set_of_label,
)

logger = logging.getLogger(__name__)

LANDMARK_COLOR = (1.0, 0.85, 0.1)

#: The page's nudge buttons: of a point (R and S) and of a line's two ends (S, which tilts it).
POINT_MOVES = (
    {"key": "r", "text": "R+", "axis": 0, "index": 0},
    {"key": "s", "text": "S+", "axis": 2, "index": 0},
)
LINE_MOVES = (
    {"key": "s1", "text": "S+ 1", "axis": 2, "index": 0},
    {"key": "s2", "text": "S+ 2", "axis": 2, "index": 1},
)


def _shown_ras(position_ras_mm: Any) -> str:
    return " ".join(f"{v:.0f}" for v in position_ras_mm)


def row_note(details: dict[str, Any]) -> str:
    """What a row's value refers to, when the measurement names it (the Cobb end vertebrae)."""
    upper, lower = details.get("upper_end_vertebra"), details.get("lower_end_vertebra")
    if not upper or not lower:
        return ""
    apex = details.get("apex_vertebra")
    return f"{upper} to {lower}" + (f", apex {apex}" if apex else "")


def format_value(value: float, unit: str) -> str:
    """A measurement value as the page (and the report) shows it: ``176.0°``, ``36.0 mm``."""
    if unit == "deg":
        return f"{value:.1f}°"
    return f"{value:.1f} {unit}".strip()


def format_uncertainty(uncertainty: float | None, unit: str) -> str:
    """A value's uncertainty with its unit (``± 0.6°``); empty when it is not known."""
    return "" if uncertainty is None else f"± {format_value(uncertainty, unit)}"


class LiveLandmarks:
    """One case's landmark nodes and the measurement table of the chosen set.

    Parameters
    ----------
    context
        The viewer's scene and logics.

    Attributes
    ----------
    nodes
        Landmark label or endplate line name -> its markups node, of every set.
    kind
        The measurement set measured and shown (``alignment``, ``hip`` or ``cobb``).
    calibration
        What lengths are measured with (recorded with every row).
    """

    def __init__(self, context: AppContext) -> None:
        self.context = context
        self.nodes: dict[str, Any] = {}
        self.kind = "alignment"
        self.calibration: Calibration = VOLUME_GEOMETRY
        self.live: LiveMeasurement | None = None
        self.side = ""
        self.source_image = ""
        self._listeners: list[Callable[[], None]] = []
        self._view_node_ids: list[str] | None = None

    @property
    def measures(self) -> MeasurementSet:
        """The chosen measurement set."""
        return measurement_set(self.kind)

    def on_changed(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` (no arguments) after every change of the measurement table."""
        self._listeners.append(listener)

    def attach(
        self, source_image: str, calibration: Calibration = VOLUME_GEOMETRY, side: str = ""
    ) -> None:
        """Start an empty landmark set for a newly opened volume.

        Parameters
        ----------
        source_image
            SeriesInstanceUID of the current volume, recorded with every measurement.
        calibration
            How lengths on that volume become millimetres.
        side
            ``left``, ``right`` or empty until the user says.
        """
        self.detach()
        self.source_image = source_image
        self.calibration = calibration
        self.side = side
        self._measure_again()

    def detach(self) -> None:
        """Stop measuring and remove the landmark nodes and the table node."""
        self._stop_live()
        for node in self.nodes.values():
            if node.GetScene() is not None:
                self.context.scene.RemoveNode(node)
        self.nodes = {}

    def _stop_live(self) -> None:
        if self.live is not None:
            self.live.stop()
            if self.live.table_node.GetScene() is not None:
                self.context.scene.RemoveNode(self.live.table_node)
            self.live = None

    def active_nodes(self) -> dict[str, Any]:
        """The landmark nodes of the chosen measurement set, by label or line name."""
        return {k: v for k, v in self.nodes.items() if set_of_label(k) == self.kind}

    def _measure_again(self) -> None:
        """(Re)build the live measurement over the chosen set's landmark nodes."""
        self._stop_live()
        self.live = LiveMeasurement(
            self.context.scene,
            self.kind,
            list(self.active_nodes().values()),
            self.calibration,
            self.source_image,
            side=self.side or None,
            on_update=self._notify,
        )

    def _notify(self, _table: MeasurementTable) -> None:
        for listener in self._listeners:
            listener()

    def set_kind(self, kind: str) -> None:
        """Measure and show another measurement set; the other sets' landmarks are kept hidden.

        Raises
        ------
        KeyError
            For a name that is not a measurement set.
        """
        measurement_set(kind)
        self.kind = kind
        for label, node in self.nodes.items():
            display = node.GetDisplayNode()
            if display is not None:
                display.SetVisibility(set_of_label(label) == kind and self._view_node_ids != [])
        self._measure_again()

    def show_in_views(self, view_node_ids: list[str] | None) -> None:
        """Draw (and so let the reader drag) the landmarks only in these MRML views.

        ``None`` draws them in every view. Views showing another series lie in another frame:
        a landmark drawn there would sit on the wrong anatomy and could be dragged onto it.
        """
        self._view_node_ids = None if view_node_ids is None else list(view_node_ids)
        for label, node in self.nodes.items():
            self._restrict_display(label, node)

    def _restrict_display(self, label: str, node: Any) -> None:
        display = node.GetDisplayNode()
        if display is None:
            return
        display.RemoveAllViewNodeIDs()
        for view_node_id in self._view_node_ids or []:
            display.AddViewNodeID(view_node_id)
        # No view ID means every view: a set to be drawn in no view is hidden instead.
        display.SetVisibility(set_of_label(label) == self.kind and self._view_node_ids != [])

    def set_side(self, side: str) -> None:
        """Set which limb the landmarks are on (``left`` or ``right``, empty when unknown)."""
        if side not in ("", "left", "right"):
            raise ValueError(f"side must be left or right, not {side!r}")
        self.side = side
        if self.live is not None:
            self.live.side = side or None
            self.live.update()

    def _new_node(self, label: str) -> Any:
        kind = set_of_label(label)
        if not kind:
            raise KeyError(f"{label!r} is not a landmark of any measurement set")
        old = self.nodes.pop(label, None)
        if old is not None and old.GetScene() is not None:
            self.context.scene.RemoveNode(old)
        measures = measurement_set(kind)
        if measures.uses_lines:
            # The Cobb measurement reads an endplate line by its node name. The line's own
            # length (in mm whatever the calibration) is not shown: only the table's values.
            node = self.context.scene.AddNewNodeByClass("vtkMRMLMarkupsLineNode", label)
            node.GetMeasurement("length").SetEnabled(False)
        else:
            # A point is read by its control point label. The node name must not be the label:
            # names are searched for the side, and "teardrop_left" would name one.
            name = f"{measures.title} landmark"
            node = self.context.scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", name)
            node.SetControlPointLabelFormat(label)
            node.SetMaximumNumberOfControlPoints(1)
        node.CreateDefaultDisplayNodes()
        display = node.GetDisplayNode()
        display.SetSelectedColor(*LANDMARK_COLOR)
        display.SetGlyphScale(2.5)
        display.SetTextScale(2.5)
        # Landmarks off the slice plane are drawn faded, so a reader sees them all in 2D.
        display.SetSliceProjection(True)
        display.SetSliceProjectionOpacity(0.4)
        self._restrict_display(label, node)
        self.nodes[label] = node
        return node

    def positions_ras_mm(self) -> dict[str, np.ndarray]:
        """Point label -> defined position (3,), world RAS mm, of every set."""
        if not self.nodes:
            return {}
        return dict(landmarks_from_nodes(self.nodes.values()).points_ras_mm)

    def lines_ras_mm(self) -> dict[str, np.ndarray]:
        """Endplate line name -> its two defined end points (2, 3), world RAS mm."""
        if not self.nodes:
            return {}
        return dict(landmarks_from_nodes(self.nodes.values()).lines_ras_mm)

    def set_position(self, label: str, position_ras_mm: Any) -> None:
        """Put a point landmark at a world RAS position (mm), creating it when absent."""
        self.set_points(label, [position_ras_mm])

    def set_points(self, label: str, positions_ras_mm: Any) -> None:
        """Put a landmark's points (one, or a line's two ends) at world RAS positions (mm)."""
        points = [vtk.vtkVector3d(*[float(v) for v in p]) for p in positions_ras_mm]
        node = self.nodes.get(label)
        if node is not None and node.GetNumberOfDefinedControlPoints() == len(points):
            for index, point in enumerate(points):
                node.SetNthControlPointPositionWorld(index, point)
            return
        node = self._new_node(label)
        for index, point in enumerate(points):
            node.AddControlPointWorld(point, label if len(points) == 1 else f"{label}-{index + 1}")
        if set_of_label(label) == self.kind:
            self._measure_again()

    def move(self, label: str, axis: int, step_mm: float, point_index: int = 0) -> None:
        """Move a placed landmark's point by ``step_mm`` along RAS axis ``axis`` (0 R, 1 A, 2 S).

        ``point_index`` chooses the end of a line (0 or 1); a point has only index 0.
        """
        if axis not in (0, 1, 2):
            raise ValueError(f"axis must be 0, 1 or 2, not {axis}")
        node = self.nodes.get(label)
        defined = node.GetNumberOfDefinedControlPoints() if node is not None else 0
        if node is None or defined == 0 or (defined == 1 and node.IsA("vtkMRMLMarkupsLineNode")):
            raise KeyError(f"no landmark named {label!r} has been placed")
        if not 0 <= point_index < defined:
            raise ValueError(f"{label} has no point number {point_index + 1}")
        position = [0.0, 0.0, 0.0]
        node.GetNthControlPointPositionWorld(point_index, position)
        position[axis] += step_mm
        node.SetNthControlPointPositionWorld(point_index, vtk.vtkVector3d(*position))

    def start_placing(self, label: str) -> Any:
        """A new, empty node for ``label`` (replacing a placed one) that clicks will fill."""
        node = self._new_node(label)
        if set_of_label(label) != self.kind:
            self.set_kind(set_of_label(label))
        else:
            self._measure_again()
        return node

    def landmark_set(self) -> LandmarkSet:
        """The landmarks of every set as the measurement library reads them."""
        return landmarks_from_nodes(self.nodes.values()) if self.nodes else LandmarkSet()

    def table(self) -> MeasurementTable:
        """The latest measurement table."""
        return self.live.table if self.live is not None else MeasurementTable()

    def rows(self) -> list[dict[str, Any]]:
        """The chosen set's landmarks for the page: placed or not, RAS position(s) in mm.

        Point sets list every label of the set; the Cobb set lists the endplate lines placed
        (or being placed), cranial first.
        """
        if self.measures.uses_lines:
            return self._line_rows()
        points = self.positions_ras_mm()
        rows = []
        for label in self.measures.point_labels:
            position = points.get(label)
            rows.append(
                {
                    "label": label,
                    "placed": position is not None,
                    "ras": "" if position is None else _shown_ras(position),
                    "moves": list(POINT_MOVES),
                }
            )
        return rows

    def _line_rows(self) -> list[dict[str, Any]]:
        lines = self.lines_ras_mm()
        rows = []
        for name in sorted(self.active_nodes(), key=endplate_order):
            ends = lines.get(name)
            rows.append(
                {
                    "label": name,
                    "placed": ends is not None,
                    "ras": "" if ends is None else " → ".join(_shown_ras(p) for p in ends),
                    "moves": list(LINE_MOVES),
                }
            )
        return rows

    @property
    def started(self) -> bool:
        """Whether the reader has loaded or placed any landmark of the chosen set."""
        return bool(self.active_nodes())

    def table_rows(self) -> dict[str, Any]:
        """The measurement table as the page shows it."""
        table = self.table()
        rows = [
            {
                "key": row.key,
                "label": row.label,
                "value": format_value(row.value, row.unit),
                "uncertainty": format_uncertainty(row.uncertainty, row.unit),
                "method": row.method,
                "note": row_note(row.details),
            }
            for row in table.rows
        ]
        reasons = [f"{key}: {reason}" for key, reason in table.not_measured.items()]
        if self.measures.needs_side and not self.side:
            # The library's sentence names the markups nodes; the reader needs the button.
            reasons = [
                f"{self.kind}: no side: choose Left or Right (medial and lateral cannot be told "
                "apart without it)"
            ]
        return {"rows": rows, "not_measured": reasons}

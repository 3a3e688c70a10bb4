"""The case's landmarks as markups nodes, and its measurement table kept live from them.

Each landmark is a one-point ``vtkMRMLMarkupsFiducialNode`` whose control point carries the
label the measurement library expects (``hip_center``, ``knee_center_femur``, ...), as
trame-slicer places markups (one new node per placement). They are shown in every view;
placing or dragging one in a view, or nudging it from the page, makes the measurement
library's :class:`~MSKPlannerLib.measurement_nodes.LiveMeasurement` recompute the table, and
the page is told.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import vtk

from MSKPlannerLib.landmarks import LandmarkSet, landmarks_from_nodes
from MSKPlannerLib.measure_alignment import ALIGNMENT_LABELS
from MSKPlannerLib.measurement_nodes import LiveMeasurement
from MSKPlannerLib.measurement_table import VOLUME_GEOMETRY, MeasurementTable
from MSKPriorsLib.app_context import AppContext

logger = logging.getLogger(__name__)

LANDMARK_LABELS = ALIGNMENT_LABELS
LANDMARK_COLOR = (1.0, 0.85, 0.1)


def format_value(value: float, unit: str) -> str:
    """A measurement value as the page shows it."""
    return f"{value:.1f} {'°' if unit == 'deg' else unit}".strip()


class LiveLandmarks:
    """One case's landmark nodes and the measurement table computed from them.

    Parameters
    ----------
    context
        The viewer's scene and logics.
    """

    def __init__(self, context: AppContext) -> None:
        self.context = context
        self.nodes: dict[str, Any] = {}
        self.live: LiveMeasurement | None = None
        self.side = ""
        self.source_image = ""
        self._listeners: list[Callable[[], None]] = []

    def on_changed(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` (no arguments) after every change of the measurement table."""
        self._listeners.append(listener)

    def attach(self, source_image: str, side: str = "") -> None:
        """Start an empty landmark set for a newly opened volume.

        Parameters
        ----------
        source_image
            SeriesInstanceUID of the current volume, recorded with every measurement.
        side
            ``left``, ``right`` or empty until the user says.
        """
        self.detach()
        self.source_image = source_image
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

    def _measure_again(self) -> None:
        """(Re)build the live measurement over the current set of landmark nodes."""
        self._stop_live()
        self.live = LiveMeasurement(
            self.context.scene,
            "alignment",
            list(self.nodes.values()),
            VOLUME_GEOMETRY,
            self.source_image,
            side=self.side or None,
            on_update=self._notify,
        )

    def _notify(self, _table: MeasurementTable) -> None:
        for listener in self._listeners:
            listener()

    def set_side(self, side: str) -> None:
        """Set which limb the landmarks are on (``left`` or ``right``, empty when unknown)."""
        if side not in ("", "left", "right"):
            raise ValueError(f"side must be left or right, not {side!r}")
        self.side = side
        if self.live is not None:
            self.live.side = side or None
            self.live.update()

    def _new_node(self, label: str) -> Any:
        if label not in LANDMARK_LABELS:
            raise KeyError(f"{label!r} is not a landmark of the measurement table")
        old = self.nodes.pop(label, None)
        if old is not None and old.GetScene() is not None:
            self.context.scene.RemoveNode(old)
        node = self.context.scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", label)
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
        self.nodes[label] = node
        return node

    def positions_ras_mm(self) -> dict[str, np.ndarray]:
        """Label -> defined position (3,), world RAS mm."""
        if not self.nodes:
            return {}
        return dict(landmarks_from_nodes(self.nodes.values()).points_ras_mm)

    def set_position(self, label: str, position_ras_mm: Any) -> None:
        """Put a landmark at a world RAS position (mm), creating it when absent."""
        point = vtk.vtkVector3d(*[float(v) for v in position_ras_mm])
        node = self.nodes.get(label)
        if node is not None and node.GetNumberOfControlPoints() == 1:
            node.SetNthControlPointPositionWorld(0, point)
            return
        node = self._new_node(label)
        node.AddControlPointWorld(point, label)
        self._measure_again()

    def move(self, label: str, axis: int, step_mm: float) -> None:
        """Move a placed landmark by ``step_mm`` along RAS axis ``axis`` (0 R, 1 A, 2 S)."""
        if axis not in (0, 1, 2):
            raise ValueError(f"axis must be 0, 1 or 2, not {axis}")
        positions = self.positions_ras_mm()
        if label not in positions:
            raise KeyError(f"no landmark named {label!r} has been placed")
        position = positions[label].copy()
        position[axis] += step_mm
        self.set_position(label, position)

    def start_placing(self, slicer_app: Any, label: str) -> None:
        """Arm the views so that the next click places (or re-places) the landmark ``label``."""
        node = self._new_node(label)
        self._measure_again()
        slicer_app.markups_logic.place_node(node, persistent=False)

    def landmark_set(self) -> LandmarkSet:
        """The landmarks as the measurement library reads them."""
        return landmarks_from_nodes(self.nodes.values()) if self.nodes else LandmarkSet()

    def table(self) -> MeasurementTable:
        """The latest measurement table."""
        return self.live.table if self.live is not None else MeasurementTable()

    def rows(self) -> list[dict[str, Any]]:
        """One row per landmark label: placed or not, and its RAS position in mm."""
        points = self.positions_ras_mm()
        rows = []
        for label in LANDMARK_LABELS:
            position = points.get(label)
            rows.append(
                {
                    "label": label,
                    "placed": position is not None,
                    "ras": "" if position is None else " ".join(f"{v:.0f}" for v in position),
                }
            )
        return rows

    def table_rows(self) -> dict[str, Any]:
        """The measurement table as the page shows it."""
        table = self.table()
        rows = [
            {
                "key": row.key,
                "label": row.label,
                "value": format_value(row.value, row.unit),
                "uncertainty": "" if row.uncertainty is None else f"± {row.uncertainty:.1f}",
                "method": row.method,
            }
            for row in table.rows
        ]
        reasons = [f"{key}: {reason}" for key, reason in table.not_measured.items()]
        return {"rows": rows, "not_measured": reasons}

"""Live measurements in the MRML scene: markups in, a table node out, updated as points move.

Public API
----------
- :func:`load_landmark_file`: load a ``.mrk.json`` file into markups nodes with the markups
  logic (one node per markup, as Slicer does).
- :func:`measure_landmarks`: run one measurement family (``alignment``, ``hip``, ``cobb``) on
  a :class:`~MSKPlannerLib.landmarks.LandmarkSet`.
- :func:`write_table_node`: put a :class:`~MSKPlannerLib.measurement_table.MeasurementTable`
  into a ``vtkMRMLTableNode`` (one row per measurement).
- :class:`LiveMeasurement`: observes markups nodes (point added, moved, removed) and
  recomputes the measurement, refreshing the table node and, when given, a JSON file.

This is MRML logic: it takes the scene (or the :class:`~MSKPriorsLib.app_context.AppContext`)
as an argument and runs unchanged in desktop Slicer and headless.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import slicer
import vtk

from MSKPlannerLib.landmarks import (
    LandmarkError,
    LandmarkSet,
    landmarks_from_nodes,
    unfold_axial_radiograph,
)
from MSKPlannerLib.measure_alignment import measure_alignment
from MSKPlannerLib.measure_cobb import cobb_from_endplates
from MSKPlannerLib.measure_hip import measure_hip
from MSKPlannerLib.measurement_table import Calibration, MeasurementTable

logger = logging.getLogger(__name__)

KINDS = ("alignment", "hip", "cobb")

TABLE_COLUMNS = (
    "key",
    "label",
    "value",
    "unit",
    "uncertainty",
    "method",
    "calibration",
    "source_image",
    "definition",
)

_OBSERVED_EVENTS = ("PointModifiedEvent", "PointAddedEvent", "PointRemovedEvent")


def load_landmark_file(markups_logic: Any, scene: Any, path: Path) -> list[Any]:
    """Load every markup of a Slicer markups JSON file into the scene.

    Parameters
    ----------
    markups_logic
        ``vtkSlicerMarkupsLogic`` of the scene (``AppContext.markups_logic``).
    scene
        The ``vtkMRMLScene``.
    path
        ``.mrk.json`` file.

    Returns
    -------
    list
        The new markups nodes, in the order of the file.

    Raises
    ------
    LandmarkError
        When Slicer cannot read the file.
    """
    before = {
        scene.GetNthNodeByClass(i, "vtkMRMLMarkupsNode").GetID()
        for i in range(scene.GetNumberOfNodesByClass("vtkMRMLMarkupsNode"))
    }
    node_id = markups_logic.LoadMarkups(str(path), Path(path).name.split(".")[0])
    if not node_id:
        raise LandmarkError(f"Slicer could not load the markups file {path}")
    nodes = [
        scene.GetNthNodeByClass(i, "vtkMRMLMarkupsNode")
        for i in range(scene.GetNumberOfNodesByClass("vtkMRMLMarkupsNode"))
    ]
    return [node for node in nodes if node.GetID() not in before]


def measure_landmarks(
    kind: str,
    landmarks: LandmarkSet,
    side: str | None,
    calibration: Calibration,
    source_image: str,
) -> MeasurementTable:
    """Run one measurement family on a landmark set.

    Parameters
    ----------
    kind
        ``alignment``, ``hip`` or ``cobb``.
    landmarks
        Points and lines in RAS mm.
    side
        ``left``/``right``; overrides the side stated by the landmarks. Alignment and hip
        need one.
    calibration, source_image
        Recorded with every row; lengths are refused when uncalibrated.

    Raises
    ------
    LandmarkError
        For a missing side or landmark.

    Notes
    -----
    Landmarks placed on a radiograph loaded into the axial plane are first unfolded into the
    frontal plane (:func:`~MSKPlannerLib.landmarks.unfold_axial_radiograph`); every row then
    says so in ``details["plane_note"]``.
    """
    landmarks, note = unfold_axial_radiograph(landmarks)
    table = _measure(kind, landmarks, side, calibration, source_image)
    if note:
        for row in table.rows:
            row.details["plane_note"] = note
    return table


def _measure(
    kind: str,
    landmarks: LandmarkSet,
    side: str | None,
    calibration: Calibration,
    source_image: str,
) -> MeasurementTable:
    if kind == "cobb":
        return cobb_from_endplates(landmarks.lines_ras_mm, calibration, source_image)
    chosen = side or landmarks.side
    if chosen not in ("left", "right"):
        raise LandmarkError(
            f"no side for {landmarks.source or source_image}: name the markups node or file "
            "left or right, or give the side"
        )
    if kind == "alignment":
        return measure_alignment(landmarks.points_ras_mm, chosen, calibration, source_image)
    if kind == "hip":
        return measure_hip(landmarks.points_ras_mm, chosen, calibration, source_image)
    raise ValueError(f"unknown measurement kind {kind!r}; expected one of {', '.join(KINDS)}")


def _calibration_text(calibration: Calibration) -> str:
    if calibration.mm_per_pixel:
        row_mm, column_mm = calibration.mm_per_pixel
        return f"{calibration.method} ({row_mm:.5g} x {column_mm:.5g} mm/pixel)"
    return calibration.method


def write_table_node(scene: Any, table: MeasurementTable, node: Any | None = None) -> Any:
    """Write a measurement table into a ``vtkMRMLTableNode``.

    Parameters
    ----------
    scene
        The ``vtkMRMLScene``.
    table
        The rows to show; rows not measured are listed with an empty value and the reason in
        the definition column.
    node
        Existing table node to overwrite; a new node named ``Measurements`` when None.

    Returns
    -------
    vtkMRMLTableNode
        The node, with the columns of :data:`TABLE_COLUMNS` (value and uncertainty numeric).
    """
    if node is None:
        node = scene.AddNewNodeByClass("vtkMRMLTableNode", "Measurements")
    vtk_table = vtk.vtkTable()
    columns: dict[str, Any] = {}
    for name in TABLE_COLUMNS:
        array = vtk.vtkDoubleArray() if name in ("value", "uncertainty") else vtk.vtkStringArray()
        array.SetName(name)
        vtk_table.AddColumn(array)
        columns[name] = array
    for row in table.rows:
        columns["key"].InsertNextValue(row.key)
        columns["label"].InsertNextValue(row.label)
        columns["value"].InsertNextValue(float(row.value))
        columns["unit"].InsertNextValue(row.unit)
        columns["uncertainty"].InsertNextValue(
            float("nan") if row.uncertainty is None else float(row.uncertainty)
        )
        columns["method"].InsertNextValue(row.method)
        columns["calibration"].InsertNextValue(_calibration_text(row.calibration))
        columns["source_image"].InsertNextValue(row.source_image)
        columns["definition"].InsertNextValue(row.definition)
    for key, reason in table.not_measured.items():
        for name, array in columns.items():
            if name == "key":
                array.InsertNextValue(key)
            elif name == "definition":
                array.InsertNextValue(f"not measured: {reason}")
            elif name in ("value", "uncertainty"):
                array.InsertNextValue(float("nan"))
            else:
                array.InsertNextValue("")
    was_modifying = node.StartModify()
    node.SetAndObserveTable(vtk_table)
    node.SetUseColumnTitleAsColumnHeader(True)
    node.EndModify(was_modifying)
    return node


class LiveMeasurement:
    """A measurement that follows its markups: moving a point recomputes the table.

    Parameters
    ----------
    scene
        The ``vtkMRMLScene`` that holds the markups nodes.
    kind
        ``alignment``, ``hip`` or ``cobb``.
    nodes
        The markups nodes (fiducial lists and lines) the measurement reads.
    calibration, source_image
        Recorded with every row.
    side
        ``left``/``right``, or None to take it from the node names or descriptions.
    json_path
        When given, the table is also written there as JSON after every update.
    on_update
        Called with the new table after every update (for a widget or a web view).

    Attributes
    ----------
    table
        The latest :class:`MeasurementTable`.
    table_node
        The ``vtkMRMLTableNode`` showing it.
    error
        The reason of the last failed update (for example a missing landmark), or None.
    """

    def __init__(
        self,
        scene: Any,
        kind: str,
        nodes: Iterable[Any],
        calibration: Calibration,
        source_image: str,
        side: str | None = None,
        json_path: Path | None = None,
        on_update: Callable[[MeasurementTable], None] | None = None,
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown measurement kind {kind!r}")
        self.scene = scene
        self.kind = kind
        self.nodes = list(nodes)
        self.calibration = calibration
        self.source_image = source_image
        self.side = side
        self.json_path = json_path
        self.on_update = on_update
        self.table = MeasurementTable()
        self.table_node = scene.AddNewNodeByClass("vtkMRMLTableNode", f"Measurements {kind}")
        self.error: str | None = None
        self._observations: list[tuple[Any, int]] = []
        for node in self.nodes:
            for event_name in _OBSERVED_EVENTS:
                event = getattr(slicer.vtkMRMLMarkupsNode, event_name)
                tag = node.AddObserver(event, self._on_markups_changed)
                self._observations.append((node, tag))
        self.update()

    def _on_markups_changed(self, caller: Any, event: Any) -> None:
        self.update()

    def update(self) -> MeasurementTable:
        """Recompute from the current point positions and refresh the outputs."""
        landmarks = landmarks_from_nodes(self.nodes)
        try:
            table = measure_landmarks(
                self.kind, landmarks, self.side, self.calibration, self.source_image
            )
            self.error = None
        except ValueError as error:  # LandmarkError, CobbError and degenerate fits
            table = MeasurementTable(not_measured={self.kind: str(error)})
            self.error = str(error)
            logger.info("%s measurement not made: %s", self.kind, error)
        self.table = table
        write_table_node(self.scene, table, self.table_node)
        if self.json_path is not None:
            table.write_json(self.json_path)
        if self.on_update is not None:
            self.on_update(table)
        return table

    def stop(self) -> None:
        """Stop observing the markups nodes."""
        for node, tag in self._observations:
            node.RemoveObserver(tag)
        self._observations.clear()

"""What the MSK Planner panel does, without Qt: bones, calibration, measurements, templates.

The desktop module's Logic class inherits from :class:`PlannerLogic` and hands it the
application's scene; tests run it headless. Every method takes MRML nodes of that scene and
returns plain rows (tuples of text and numbers) for the panel's tables, keeping the richer
results on the object (:attr:`PlannerLogic.reconstruction`, :attr:`PlannerLogic.tables`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from MSKPlannerLib.bone_segmentation import BoneSegmentationOptions
from MSKPlannerLib.calibration import (
    ball_calibration,
    calibration_from_dataset,
    detect_calibration_ball,
    fixed_magnification_calibration,
    known_length_calibration,
)
from MSKPlannerLib.dicom_outputs import report_case
from MSKPlannerLib.implant_catalogue import ImplantCatalogue
from MSKPlannerLib.landmarks import landmarks_from_nodes
from MSKPlannerLib.measure_cobb import cobb_from_label_map
from MSKPlannerLib.measurement_nodes import LiveMeasurement, write_table_node
from MSKPlannerLib.measurement_table import (
    UNCALIBRATED,
    VOLUME_GEOMETRY,
    Calibration,
    MeasurementTable,
)
from MSKPlannerLib.surface_reconstruction import (
    ReconstructionOptions,
    ReconstructionResult,
    reconstruct_bones,
)
from MSKPlannerLib.templating import ras_to_pixels, suggest_size
from MSKPlannerLib.templating_scene import place_outline
from MSKPriorsLib.app_context import AppContext
from MSKPriorsLib.mrml_volumes import array_from_volume, ijk_to_ras_of
from MSKPriorsLib.series_loader import series_uid_of

logger = logging.getLogger(__name__)

#: Called with the new table whenever a live measurement is recomputed.
TableCallback = Callable[[MeasurementTable], None]

CALIBRATION_METHODS = ("tags", "calibration_ball", "known_length", "fixed_magnification")


def _point_rows(table: MeasurementTable) -> list[tuple[str, str, str, str, str]]:
    rows = [
        (row.key, f"{row.value:.1f}", row.unit, row.method, row.calibration.method)
        for row in table.rows
    ]
    rows += [(key, "not measured", "", reason, "") for key, reason in table.not_measured.items()]
    return rows


def _is_radiograph(node: Any) -> bool:
    dimensions = node.GetImageData().GetDimensions()
    return min(dimensions) == 1


class PlannerLogic:
    """The planner's operations on one scene.

    Parameters
    ----------
    context
        The scene and module logics.

    Attributes
    ----------
    calibrations
        Volume node ID -> the calibration chosen for that radiograph.
    reconstruction
        The latest bone reconstruction.
    tables
        Measurement family -> its latest table.
    """

    def __init__(self, context: AppContext) -> None:
        self.context = context
        self.calibrations: dict[str, Calibration] = {}
        self.reconstruction: ReconstructionResult | None = None
        self.tables: dict[str, MeasurementTable] = {}
        self._live: dict[str, LiveMeasurement] = {}

    def reconstruct(
        self,
        volume_node: Any,
        preset: str = "cortical",
        labels_path: Path | None = None,
        decimation: float = 0.0,
        frame: str = "RAS",
        output_dir: Path | None = None,
    ) -> list[tuple[str, float, float, bool]]:
        """Segment the bones of a CT volume node and build one closed surface per bone.

        Parameters
        ----------
        volume_node
            CT scalar volume node (HU).
        preset
            ``cortical`` or ``cancellous`` threshold preset.
        labels_path
            Optional AI or user label map (``.seg.nrrd`` or NIfTI) naming the bones.
        decimation
            Fraction of triangles removed (0 keeps all).
        frame, output_dir
            Where to write STL/OBJ and ``.seg.nrrd`` and in which frame (RAS or LPS).

        Returns
        -------
        list of tuple
            ``(bone, volume_ml, area_cm2, closed)`` per bone.
        """
        if volume_node is None:
            raise ValueError("choose a CT volume to reconstruct")
        options = ReconstructionOptions(
            segmentation=BoneSegmentationOptions(preset=preset),
            decimate=decimation,
            frame=frame,
            output_dir=output_dir,
        )
        self.reconstruction = reconstruct_bones(
            self.context, volume_node, labels=labels_path, options=options
        )
        for warning in self.reconstruction.warnings:
            logger.warning("%s: %s", volume_node.GetName(), warning)
        return [
            (bone.name, round(bone.volume_ml, 2), round(bone.area_cm2, 2), bone.closed)
            for bone in self.reconstruction.bones
        ]

    def calibrate(
        self,
        radiograph_node: Any,
        method: str,
        dicom_file: Path | None = None,
        ball_diameter_mm: float = 25.0,
        known_length_mm: float | None = None,
        known_points_ras_mm: Any = None,
        magnification_factor: float = 1.15,
    ) -> str:
        """Calibrate a radiograph node and remember the result for its measurements.

        Parameters
        ----------
        radiograph_node
            The radiograph's scalar volume node (one slice).
        method
            One of :data:`CALIBRATION_METHODS`.
        dicom_file
            The radiograph's DICOM file; needed for ``tags`` and ``fixed_magnification``.
        ball_diameter_mm
            Diameter of the calibration ball for ``calibration_ball``.
        known_length_mm, known_points_ras_mm
            For ``known_length``: the true distance and the two end points (RAS mm) placed
            on the image.
        magnification_factor
            For ``fixed_magnification``: detector spacing is divided by it.

        Returns
        -------
        str
            The calibration in plain words.
        """
        if radiograph_node is None:
            raise ValueError("choose the radiograph to calibrate")
        name = radiograph_node.GetName()
        if method not in CALIBRATION_METHODS:
            raise ValueError(f"unknown calibration method {method!r}")
        if method in ("tags", "fixed_magnification"):
            if dicom_file is None:
                raise ValueError(f"{name}: the DICOM file is needed to read its spacing tags")
            import pydicom

            tags = calibration_from_dataset(pydicom.dcmread(dicom_file), str(dicom_file))
            calibration = (
                tags
                if method == "tags"
                else fixed_magnification_calibration(tags, magnification_factor, name)
            )
        elif method == "calibration_ball":
            pixels = array_from_volume(radiograph_node)[0].astype(float)
            detection = detect_calibration_ball(pixels)
            calibration = ball_calibration(detection, ball_diameter_mm, name)
        else:
            if known_length_mm is None or known_points_ras_mm is None:
                raise ValueError(f"{name}: place two points and give the known length in mm")
            columns_rows = ras_to_pixels(known_points_ras_mm, ijk_to_ras_of(radiograph_node))
            start_rc, end_rc = columns_rows[0][::-1], columns_rows[1][::-1]
            shape_rc = array_from_volume(radiograph_node).shape[1:]
            calibration = known_length_calibration(
                start_rc, end_rc, known_length_mm, 1.0, name, image_shape_rc=shape_rc
            )
        self.calibrations[radiograph_node.GetID()] = calibration
        return f"{calibration.method}: {calibration.detail}"

    def calibration_of(self, image_node: Any) -> Calibration:
        """The calibration measurements on ``image_node`` use (uncalibrated until chosen)."""
        if image_node is None:
            return UNCALIBRATED
        if not _is_radiograph(image_node):
            return VOLUME_GEOMETRY
        return self.calibrations.get(image_node.GetID(), UNCALIBRATED)

    def measure(
        self,
        kind: str,
        landmarks_node: Any,
        side: str | None = None,
        vertebra_labels: Any = None,
        image_node: Any = None,
        on_update: TableCallback | None = None,
    ) -> list[tuple[str, str, str, str, str]]:
        """Measure one family and keep it live: moving a landmark recomputes the table.

        Parameters
        ----------
        kind
            ``alignment``, ``hip`` or ``cobb``.
        landmarks_node
            Markups node with the labelled points; for ``cobb`` without labels, the endplate
            lines are the scene's line markups named like ``L1-superior``.
        side
            ``left`` or ``right``; None takes it from the node's name or description.
        vertebra_labels
            For automatic Cobb: a label-map volume node or segmentation node whose names
            follow TotalSegmentator (``vertebrae_L1``).
        image_node
            The image the landmarks were placed on, for its calibration.
        on_update
            Called with each recomputed table.

        Returns
        -------
        list of tuple
            ``(key, value, unit, method, calibration)`` rows, and ``not measured`` rows.
        """
        calibration = self.calibration_of(image_node)
        source = series_uid_of(image_node) if image_node is not None else ""
        if kind == "cobb" and vertebra_labels is not None:
            table = self._cobb_from_labels(vertebra_labels)
            self.tables[kind] = table
            write_table_node(self.context.scene, table)
            return _point_rows(table)
        nodes = [landmarks_node] if landmarks_node is not None else []
        if kind == "cobb":
            nodes = self._endplate_lines()
        if not nodes:
            raise ValueError(f"place or choose the landmarks for the {kind} measurement")
        if kind in self._live:
            self._live.pop(kind).stop()

        def remember(table: MeasurementTable) -> None:
            self.tables[kind] = table
            if on_update is not None:
                on_update(table)

        live = LiveMeasurement(
            self.context.scene,
            kind,
            nodes,
            calibration,
            source or landmarks_from_nodes(nodes).source,
            side=side,
            on_update=remember,
        )
        self._live[kind] = live
        return _point_rows(live.table)

    def _endplate_lines(self) -> list[Any]:
        scene = self.context.scene
        lines = [
            scene.GetNthNodeByClass(i, "vtkMRMLMarkupsLineNode")
            for i in range(scene.GetNumberOfNodesByClass("vtkMRMLMarkupsLineNode"))
        ]
        return [line for line in lines if "-" in line.GetName()]

    def _cobb_from_labels(self, labels_node: Any) -> MeasurementTable:
        if labels_node.IsA("vtkMRMLSegmentationNode"):
            labelmap = self.context.scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode")
            segment_ids = labels_node.GetSegmentation().GetSegmentIDs()
            self.context.segmentations_logic.ExportAllSegmentsToLabelmapNode(labels_node, labelmap)
            names = {
                index + 1: labels_node.GetSegmentation().GetSegment(segment_id).GetName()
                for index, segment_id in enumerate(segment_ids)
            }
            labels_kji, ijk_to_ras = array_from_volume(labelmap), ijk_to_ras_of(labelmap)
            self.context.scene.RemoveNode(labelmap)
        else:
            labels_kji, ijk_to_ras = array_from_volume(labels_node), ijk_to_ras_of(labels_node)
            names = self._names_of_labelmap(labels_node, labels_kji)
        return cobb_from_label_map(labels_kji, ijk_to_ras, names, labels_node.GetName())

    def _names_of_labelmap(self, node: Any, labels_kji: Any) -> dict[int, str]:
        color_node = node.GetDisplayNode().GetColorNode() if node.GetDisplayNode() else None
        names = {}
        for value in np.unique(labels_kji):
            if value and color_node is not None:
                names[int(value)] = color_node.GetColorName(int(value))
        return names

    def template(
        self, radiograph_node: Any, landmarks_node: Any, kind: str, side: str | None = None
    ) -> str:
        """Suggest an implant size on a calibrated radiograph and draw its outline.

        Parameters
        ----------
        radiograph_node
            The radiograph (one slice); it must have been calibrated.
        landmarks_node
            Markups with the anatomy points templating reads (rim points for a cup, canal
            edges for a stem, condyle or plateau points for knees).
        kind
            ``cup``, ``stem``, ``knee_femoral`` or ``knee_tibial``.

        Returns
        -------
        str
            The suggestion and the measurement it came from, in plain words.
        """
        if radiograph_node is None or landmarks_node is None:
            raise ValueError("choose the radiograph and the landmarks to template on")
        calibration = self.calibration_of(radiograph_node)
        landmarks = landmarks_from_nodes([landmarks_node])
        ijk_to_ras = ijk_to_ras_of(radiograph_node)
        points_px = {
            label: ras_to_pixels(point, ijk_to_ras)
            for label, point in landmarks.points_ras_mm.items()
        }
        family = ImplantCatalogue.load().default_family(kind)
        result = suggest_size(
            kind, points_px, calibration, radiograph_node.GetName(), family, side=side
        )
        place_outline(self.context.scene, result.size, radiograph_node, calibration, result.pose)
        based_on = result.based_on
        return (
            f"{family.family_id} size {result.size.size} "
            f"(from {based_on.label} {based_on.value:.1f} {based_on.unit})"
        )

    def write_report(
        self, case_folder: Path, push: bool = False, server: str | None = None
    ) -> list[Path]:
        """Write the case's SR, SEG and key images, and store them on the PACS when asked.

        The case folder holds the measurement table and sources as ``mskwb plan`` writes
        them; the measurements made in this scene are written into it first.

        Returns
        -------
        list of pathlib.Path
            The DICOM files written.
        """
        case_folder = Path(case_folder)
        case_folder.mkdir(parents=True, exist_ok=True)
        table = MeasurementTable()
        for family_table in self.tables.values():
            for row in family_table.rows:
                table.add(row)
        if table.rows:
            table.write_json(case_folder / "measurements.json")
        outcome = report_case(case_folder, push_to=server if push else None)
        if outcome.upload is not None and not outcome.upload.complete:
            raise RuntimeError(
                f"the upload stopped ({'; '.join(outcome.upload.failed.values())}); "
                f"the objects stay in {outcome.outbox.folder}"
            )
        return outcome.files

"""Reconstruction, measurement and reporting stages of the case plan.

Every measurement the inputs allow is made through the measurement modules; every one that
cannot be made is listed in the table's ``not_measured`` with what is missing. Landmarks are
tied to the image whose extent holds them all (the current radiograph or CT); landmarks that
fit no image are measured as uncalibrated (angles only) and the user is told.

MRML logic: works on the scene of the plan state's context.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from MSKPlannerLib.bone_segmentation import BoneSegmentationOptions
from MSKPlannerLib.case_loading import LoadedImage, study_item
from MSKPlannerLib.label_maps import LabelMapError, read_label_map
from MSKPlannerLib.landmarks import LandmarkError, LandmarkSet, read_landmark_files
from MSKPlannerLib.measure_alignment import measure_alignment, missing_alignment_landmarks
from MSKPlannerLib.measure_cobb import CobbError, cobb_from_endplates, cobb_from_sitk_labels
from MSKPlannerLib.measure_hip import measure_hip, missing_hip_landmarks
from MSKPlannerLib.measurement_table import (
    UNCALIBRATED,
    VOLUME_GEOMETRY,
    Calibration,
    MeasurementTable,
    missing_landmarks_reason,
)
from MSKPlannerLib.rendering import volume_corners_ras
from MSKPlannerLib.surface_reconstruction import ReconstructionOptions, reconstruct_bones
from MSKPriorsLib.mrml_volumes import place_under

if TYPE_CHECKING:
    from MSKPlannerLib.case_plan import PlanState

logger = logging.getLogger(__name__)

#: Names table looked for beside a NIfTI label map.
LABEL_NAMES_FILE = "label_names.json"

#: Threshold preset of the bone reconstruction: cancellous, so vertebral bodies and the
#: trabecular ends of long bones are included, not only their cortices.
BONE_PRESET = "cancellous"

#: Bone pieces smaller than this (ml) are left out of the threshold reconstruction.
MIN_BONE_PIECE_ML = 2.0

#: How far (mm) a landmark may lie outside an image's extent and still belong to it.
EXTENT_TOLERANCE_MM = 5.0

ALIGNMENT_KEYS = ("hka_deg", "mldfa_deg", "mpta_deg", "jlca_deg", "mad_mm")
HIP_KEYS = ("femoral_offset_mm", "cup_inclination_deg", "ccd_deg", "lld_mm")


def names_table_for(labels_file: Path) -> Path | None:
    """The ``label_names.json`` beside a NIfTI label map, if there is one."""
    candidate = Path(labels_file).parent / LABEL_NAMES_FILE
    is_nifti = Path(labels_file).name.lower().endswith((".nii", ".nii.gz"))
    return candidate if is_nifti and candidate.is_file() else None


def reconstruct_all(state: PlanState) -> None:
    """Reconstruct the bones of every loaded CT; with a label map also the labelled bones."""
    request = state.request
    out_dir = Path(request.out_dir)
    cts = [image for image in state.loaded if image.kind == "volume" and image.modality == "CT"]
    for index, image in enumerate(cts):
        runs: list[tuple[str, Any, Any]] = [("threshold", None, None)]
        if image.role == "current" and request.labels_file is not None:
            runs.append(("labels", request.labels_file, names_table_for(request.labels_file)))
        for method, labels, names in runs:
            folder = out_dir / "surfaces" / f"{image.role}-{index + 1}-{method}"
            options = ReconstructionOptions(
                segmentation=BoneSegmentationOptions(
                    preset=BONE_PRESET, min_island_ml=MIN_BONE_PIECE_ML
                ),
                output_dir=folder,
                names=names,
                add_models=True,
                folder_name=f"Bones ({method}) {image.title}",
            )
            try:
                result = reconstruct_bones(state.context, image.node, labels, options)
            except (LabelMapError, ValueError, RuntimeError) as error:
                state.warn(
                    "reconstruction",
                    "reconstruction_failed",
                    f"Bones of {image.title} ({method}) could not be reconstructed: {error}",
                    where=f"series {image.series_uid}",
                )
                continue
            _place_results(state, image, result)
            _reconstruction_warnings(state, image, method, result)
            summary = result.to_dict()
            summary.update(
                {
                    "series_uid": image.series_uid,
                    "study_uid": image.study_uid,
                    "role": image.role,
                    "method": method,
                    "title": f"{image.title} ({'label map' if labels else 'bone threshold'})",
                }
            )
            for bone in summary["bones"]:
                bone["files"] = {k: _relative(Path(v), out_dir) for k, v in bone["files"].items()}
            summary["files"] = {k: _relative(Path(v), out_dir) for k, v in summary["files"].items()}
            state.reconstructions.append(summary)
            state.surface_results.append((image, method, result))
            state.files.setdefault("surfaces", []).extend(
                path for bone in summary["bones"] for path in bone["files"].values()
            )


def _reconstruction_warnings(
    state: PlanState, image: LoadedImage, method: str, result: Any
) -> None:
    """Report reconstruction problems once each; problems of single bones are summarised."""
    per_bone = {f"{bone.name}: {w}" for bone in result.bones for w in bone.warnings}
    seen = {(w["where"], w["message"]) for w in state.warnings}
    where = f"series {image.series_uid}"
    for warning in result.warnings:
        message = f"{image.title}: {warning}"
        if warning in per_bone or (where, message) in seen:
            continue
        state.warn("reconstruction", "reconstruction", message, where=where)
    flagged = [bone for bone in result.bones if bone.warnings]
    if flagged:
        example = f"{flagged[0].name}: {flagged[0].warnings[0]}"
        state.warn(
            "reconstruction",
            "bone_surface_checks",
            f"{image.title} ({method}): {len(flagged)} of {len(result.bones)} bone surfaces "
            f"failed a quality check (for example {example}); see the reconstruction table.",
            where=where,
        )


def _relative(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)


def _place_results(state: PlanState, image: LoadedImage, result: Any) -> None:
    """Move the segmentation and the model folder under the image's study item."""
    scene = state.context.scene
    hierarchy = state.context.subject_hierarchy
    assert state.search is not None
    study = state.search.current
    for prior in state.used_priors:
        if prior.study.study_uid == image.study_uid:
            study = prior.study
    item = study_item(state, study, image.role)
    place_under(scene, result.segmentation_node, item)
    models = [bone.model_node for bone in result.bones if bone.model_node is not None]
    if models:
        folder = hierarchy.GetItemParent(hierarchy.GetItemByDataNode(models[0]))
        if folder and folder != hierarchy.GetSceneItemID():
            hierarchy.SetItemParent(folder, item)
        if image.transform_node is not None:
            for node in models:
                node.SetAndObserveTransformNodeID(image.transform_node.GetID())
    if image.transform_node is not None:
        result.segmentation_node.SetAndObserveTransformNodeID(image.transform_node.GetID())


def points_outside_extent(
    points_ras_mm: npt.ArrayLike, shape_kji: tuple[int, ...], ijk_to_ras_mm: npt.ArrayLike
) -> int:
    """How many points lie outside an image's extent (beyond :data:`EXTENT_TOLERANCE_MM`).

    Parameters
    ----------
    points_ras_mm
        Positions, shape (N, 3), world RAS mm; a non-finite position counts as outside.
    shape_kji
        The image's voxel array shape (slices, rows, columns).
    ijk_to_ras_mm
        4x4 IJK-to-RAS matrix of the image.
    """
    points = np.asarray(points_ras_mm, dtype=float).reshape(-1, 3)
    corners = volume_corners_ras(shape_kji, np.asarray(ijk_to_ras_mm, dtype=float))
    low = corners.min(axis=0) - EXTENT_TOLERANCE_MM
    high = corners.max(axis=0) + EXTENT_TOLERANCE_MM
    inside = np.all((points >= low) & (points <= high), axis=1) & np.all(
        np.isfinite(points), axis=1
    )
    return int((~inside).sum())


def landmark_image(
    state: PlanState, landmarks: LandmarkSet
) -> tuple[LoadedImage | None, Calibration, str]:
    """The current image holding every landmark, its calibration and the source name."""
    positions = list(landmarks.points_ras_mm.values()) + [
        p for line in landmarks.lines_ras_mm.values() for p in np.asarray(line)
    ]
    points = np.asarray(positions, dtype=float).reshape(-1, 3)
    current = [image for image in state.loaded if image.role == "current"]
    ordered = [i for i in current if i.kind == "radiograph"] + [
        i for i in current if i.kind == "volume"
    ]
    for image in ordered:
        if not points_outside_extent(points, image.array_kji.shape, image.ijk_to_ras_mm):
            calibration = image.calibration if image.kind == "radiograph" else VOLUME_GEOMETRY
            return image, calibration or UNCALIBRATED, image.series_uid
    state.warn(
        "measurement",
        "landmarks_outside_images",
        f"The landmarks of {landmarks.source} lie outside every image of the current study, so "
        "their calibration is unknown: angles are measured, lengths are refused.",
    )
    return None, UNCALIBRATED, landmarks.source


def _merge(target: MeasurementTable, source: MeasurementTable) -> None:
    for row in source.rows:
        target.add(row)
    target.not_measured.update(source.not_measured)


def _missing(keys: tuple[str, ...], reason: str, table: MeasurementTable) -> None:
    for key in keys:
        if not table.by_key(key):
            table.not_measured.setdefault(key, reason)


def measure_all(state: PlanState) -> None:
    """Make every measurement the landmarks and labels allow; list the others."""
    table = state.table
    landmarks = LandmarkSet()
    if state.request.landmark_files:
        try:
            landmarks = read_landmark_files(state.request.landmark_files)
        except (LandmarkError, OSError, ValueError) as error:
            state.warn("measurement", "landmarks_unreadable", f"Landmarks not used: {error}")
    if landmarks.points_ras_mm or landmarks.lines_ras_mm:
        image, calibration, source = landmark_image(state, landmarks)
        state.landmark_image = image
        state.landmarks = landmarks
        _measure_from_landmarks(state, landmarks, calibration, source)
        _add_markups(state, landmarks)
    else:
        _missing(ALIGNMENT_KEYS, "needs a landmark file with the alignment landmarks", table)
        _missing(HIP_KEYS, "needs a landmark file with the hip landmarks", table)
    _measure_cobb_from_labels(state)
    _missing(
        ("cobb_deg",),
        "needs a vertebra label map (--labels) or endplate lines such as L1-superior",
        table,
    )


def _missing_each(missing: dict[str, list[str]], table: MeasurementTable) -> None:
    """List every value with the landmarks it lacks (those lacking none are skipped)."""
    for key, labels in missing.items():
        if labels:
            _missing((key,), missing_landmarks_reason(labels), table)


def _measure_family(
    state: PlanState,
    measure: Any,
    keys: tuple[str, ...],
    missing: dict[str, list[str]],
    landmarks: LandmarkSet,
    calibration: Calibration,
    source: str,
) -> None:
    """Measure one family when any of its values has its landmarks; list what is left out."""
    table = state.table
    if all(missing.values()):
        _missing_each(missing, table)
        return
    if landmarks.side is None:
        _missing(keys, "the landmark files do not say which side (left or right)", table)
        return
    try:
        _merge(table, measure(landmarks.points_ras_mm, landmarks.side, calibration, source))
    except LandmarkError as error:
        _missing(keys, str(error), table)


def _measure_from_landmarks(
    state: PlanState, landmarks: LandmarkSet, calibration: Calibration, source: str
) -> None:
    table = state.table
    points = landmarks.points_ras_mm
    _measure_family(
        state,
        measure_alignment,
        ALIGNMENT_KEYS,
        missing_alignment_landmarks(points),
        landmarks,
        calibration,
        source,
    )
    _measure_family(
        state, measure_hip, HIP_KEYS, missing_hip_landmarks(points), landmarks, calibration, source
    )

    lines = landmarks.lines_ras_mm
    if lines:
        try:
            _merge(table, cobb_from_endplates(lines, calibration, source))
        except CobbError as error:
            table.not_measured.setdefault("cobb_deg", str(error))


def _measure_cobb_from_labels(state: PlanState) -> None:
    labels_file = state.request.labels_file
    if labels_file is None:
        return
    try:
        label_map = read_label_map(Path(labels_file), names_table_for(Path(labels_file)))
        result = cobb_from_sitk_labels(label_map.image, label_map.names, _label_source(state))
    except (LabelMapError, CobbError) as error:
        state.table.not_measured.setdefault("cobb_deg", str(error))
        return
    _merge(state.table, result)


def _label_source(state: PlanState) -> str:
    """The current CT the label map belongs to (its series UID)."""
    for image in state.loaded:
        if image.role == "current" and image.kind == "volume":
            return image.series_uid
    return str(state.request.labels_file)


def _add_markups(state: PlanState, landmarks: LandmarkSet) -> None:
    """Landmarks and lines as markups nodes (placed under the current study when written)."""
    scene = state.context.scene
    if landmarks.points_ras_mm:
        node = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "Landmarks")
        for label, position in landmarks.points_ras_mm.items():
            index = node.AddControlPoint(*[float(v) for v in position])
            node.SetNthControlPointLabel(index, label)
        if landmarks.side:
            node.SetDescription(f"{landmarks.side} side")
        state.markups_nodes.append(node)
    for name, ends in landmarks.lines_ras_mm.items():
        line = scene.AddNewNodeByClass("vtkMRMLMarkupsLineNode", name)
        for end in np.asarray(ends):
            line.AddControlPoint(*[float(v) for v in end])
        state.markups_nodes.append(line)


def add_reporting_outputs(state: PlanState) -> None:
    """Write DICOM SR, SEG and key images where the reporting modules allow, and push them.

    The reporting modules are used as they stand; what they cannot do is recorded as a
    warning, never faked.
    """
    from MSKPlannerLib import case_reporting

    case_reporting.write_dicom_outputs(state)

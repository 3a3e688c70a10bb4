"""Loading and registration stages of the case plan, and the scene records it leaves.

Volumes (CT, MR) are read with their geometry checked (tilt, uneven spacing and missing
slices are corrected by resampling and reported, never hidden) and placed under
Patient > Study in the subject hierarchy. Projection radiographs keep their pixels as read
and are placed in the frontal plane the way the measurement code reads landmarks on them:
the first pixel's centre at the RAS origin, columns and rows along the directions of the
image's PatientOrientation (patient's left and feet by default), at the calibrated spacing.

MRML logic: works on the scene of the :class:`~MSKPriorsLib.app_context.AppContext` held by
the plan state.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import numpy as np
import numpy.typing as npt

from MSKPlannerLib.calibration import CalibrationError, radiograph_ijk_to_ras, read_radiograph
from MSKPlannerLib.measurement_table import Calibration
from MSKPriorsLib.dicom_geometry import SeriesLoadError
from MSKPriorsLib.display_presets import default_preset_for, get_preset, window_level_for
from MSKPriorsLib.mrml_volumes import (
    add_volume_from_array,
    array_from_volume,
    ijk_to_ras_of,
    new_subject_hierarchy_parent,
    place_under,
)
from MSKPriorsLib.pixel_data import is_monochrome1
from MSKPriorsLib.records import StudyRecord, shown_date
from MSKPriorsLib.registration import transform_to_parent_ras
from MSKPriorsLib.series_loader import load_series

if TYPE_CHECKING:
    from MSKPlannerLib.case_plan import PlanState

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]

#: UID name under which subject-hierarchy items carry their DICOM UIDs (as Slicer sets it).
DICOM_UID_NAME = "DICOM"


@dataclass
class LoadedImage:
    """One series of the case, loaded into the scene.

    Attributes
    ----------
    series_uid, study_uid, modality
        Identity of the series.
    role
        ``current`` or ``prior``.
    title
        Plain words for captions: role, date, modality and description.
    kind
        ``volume`` (CT, MR) or ``radiograph``.
    node
        The scalar volume node (a radiograph is a volume of one slice in the frontal plane).
    window_level
        Display window width and centre in stored units.
    calibration
        For radiographs, the calibration of their pixels; volumes use their voxel geometry.
    warnings
        Geometry warnings as ``{"code", "message"}``.
    transform_node
        For a registered prior, the transform that maps it onto the current study.
    registration
        Figures of the registration (rotation, translation, metric), when done.
    files
        The DICOM files it came from.
    display_inverted
        Whether pictures show the voxels inverted: a MONOCHROME1 radiograph keeps its stored
        values (low is white) in the node, and only its display is turned the right way.
    """

    series_uid: str
    study_uid: str
    modality: str
    role: str
    title: str
    kind: str
    node: Any
    window_level: tuple[float, float]
    calibration: Calibration | None = None
    warnings: list[dict[str, str]] = field(default_factory=list)
    transform_node: Any = None
    registration: dict[str, Any] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    patient_orientation: tuple[str, str] = ("L", "F")
    display_inverted: bool = False

    @property
    def array_kji(self) -> npt.NDArray[Any]:
        """The voxels, indexed ``[k, j, i]``."""
        return array_from_volume(self.node)

    @property
    def ijk_to_ras_mm(self) -> FloatArray:
        """IJK-to-RAS matrix (mm) of the node, without any parent transform."""
        return ijk_to_ras_of(self.node)

    def ijk_to_current_ras_mm(self) -> FloatArray:
        """IJK-to-RAS matrix (mm) in the current study's frame (registration applied)."""
        matrix = self.ijk_to_ras_mm
        if self.transform_node is None:
            return matrix
        return transform_to_parent_ras(self.transform_node) @ matrix


def study_title(role: str, study: StudyRecord) -> str:
    """``Current 2026-11-20`` or ``Prior 2024-10-02``: role and date of a study."""
    return f"{role.capitalize()} {shown_date(study.study_date)}"


def study_item(state: PlanState, study: StudyRecord, role: str) -> int:
    """The subject-hierarchy study item of ``study``, found by its DICOM UID or created.

    Items are identified the way the series loader and Slicer's DICOM module identify them:
    by the ``DICOM`` UID of the patient (PatientID) and of the study (StudyInstanceUID).
    """
    hierarchy = state.context.subject_hierarchy
    if study.study_uid in state.hierarchy_items:
        return state.hierarchy_items[study.study_uid]
    item = int(hierarchy.GetItemByUID(DICOM_UID_NAME, study.study_uid))
    if not item:
        patient = study.patient
        patient_item = 0
        if patient.patient_id:
            patient_item = int(hierarchy.GetItemByUID(DICOM_UID_NAME, patient.patient_id))
        if not patient_item:
            name = patient.name.replace("^", " ").strip() or patient.patient_id
            patient_item = new_subject_hierarchy_parent(
                state.context.scene, name or "Unidentified patient", "Patient"
            )
            if patient.patient_id:
                hierarchy.SetItemUID(patient_item, DICOM_UID_NAME, patient.patient_id)
        label = f"{study.description or 'No study description'} ({study.study_date})"
        item = new_subject_hierarchy_parent(state.context.scene, label, "Study", patient_item)
        hierarchy.SetItemUID(item, DICOM_UID_NAME, study.study_uid)
    state.hierarchy_items[study.study_uid] = item
    return item


def load_studies(state: PlanState) -> None:
    """Load the current study's volumes and radiographs and the used priors' volumes."""
    assert state.current is not None and state.search is not None
    studies: list[tuple[StudyRecord, str]] = [(state.search.current, "current")]
    studies += [(prior.study, "prior") for prior in state.used_priors]
    failures: list[str] = []
    for study, role in studies:
        for series in state.archive.search_series(study.study_uid):
            wanted = ("CT", "MR") if role == "prior" else ("CT", "MR", "CR", "DX", "DR", "RG")
            if series.modality not in wanted:
                continue
            files = state.archive.instance_paths(series.series_uid)
            if not files:
                state.warn(
                    "retrieval",
                    "series_missing",
                    f"Series {series.description or series.series_uid} of the {role} study "
                    "is not in the archive and was not loaded.",
                    where=f"series {series.series_uid}",
                )
                continue
            description = series.description
            if not description.upper().startswith(series.modality):
                description = f"{series.modality} {description}"
            title = f"{study_title(role, study)} {description}".strip()
            try:
                if series.modality in ("CT", "MR"):
                    image = _load_volume(state, files, series.series_uid, role, title)
                else:
                    image = _load_radiograph(state, files, series.series_uid, role, title)
            except (SeriesLoadError, CalibrationError, OSError, ValueError) as error:
                failures.append(f"{title} could not be loaded: {error}")
                state.warn(
                    "geometry",
                    getattr(error, "code", "load_failed"),
                    failures[-1],
                    where=f"series {series.series_uid}",
                    high=True,
                )
                if role == "current":
                    _refuse_current_series(series.series_uid, title, error)
                continue
            image.modality = series.modality
            place_under(state.context.scene, image.node, study_item(state, study, role))
            for warning in image.warnings:
                state.warn(
                    "geometry",
                    warning["code"],
                    f"{title}: {warning['message']}",
                    where=f"series {series.series_uid}",
                )
            state.loaded.append(image)
    if not any(image.role == "current" for image in state.loaded):
        from MSKPlannerLib.case_plan import PlanError

        raise PlanError(
            f"study {state.current.study_uid} holds no CT, MR or radiograph that could be loaded"
            + (f" ({'; '.join(failures)})" if failures else "")
        )


def _refuse_current_series(series_uid: str, title: str, error: Exception) -> NoReturn:
    """Stop the plan: a current series that cannot be loaded makes every result doubtful."""
    from MSKPlannerLib.case_plan import PlanError

    reason = " ".join(str(error).split())
    raise PlanError(
        f"series {series_uid} ({title}) of the current study could not be loaded: {reason}"
    ) from error


def _load_volume(
    state: PlanState, files: list[Path], series_uid: str, role: str, title: str
) -> LoadedImage:
    loaded = load_series(state.context, files, series_uid=series_uid, name=title)
    node = loaded.volume_node
    warnings = [w.to_dict() for w in loaded.warnings]
    modality = loaded.modality or "CT"
    preset = get_preset(default_preset_for(modality))
    # Automatic presets (MR) take their window from the voxels.
    window_level = window_level_for(
        preset, array_from_volume(node) if preset.is_automatic else None
    )
    return LoadedImage(
        series_uid=series_uid,
        study_uid=loaded.study_uid,
        modality=modality,
        role=role,
        title=title,
        kind="volume",
        node=node,
        window_level=window_level,
        warnings=warnings,
        files=list(files),
    )


def _load_radiograph(
    state: PlanState, files: list[Path], series_uid: str, role: str, title: str
) -> LoadedImage:
    radiograph = read_radiograph(files[0])
    dataset = radiograph.dataset
    ijk_to_ras, orientation = radiograph_ijk_to_ras(radiograph)
    node = add_volume_from_array(
        state.context.scene, radiograph.pixels.astype(np.float32)[None], ijk_to_ras, title
    )
    width = float(dataset.get("WindowWidth", 0) or 0) if "WindowWidth" in dataset else 0.0
    preset = get_preset(default_preset_for(str(dataset.get("Modality", "CR"))))
    dicom_window = None
    if width > 0:
        centre = dataset.WindowCenter
        centre = float(centre[0] if isinstance(centre, list | tuple) else centre)
        width_value = dataset.WindowWidth
        width = float(width_value[0] if isinstance(width_value, list | tuple) else width_value)
        dicom_window = (width, centre)
    window_level = window_level_for(preset, radiograph.pixels, dicom_window)
    warnings = []
    if not radiograph.calibration.is_calibrated:
        warnings.append(
            {
                "code": "uncalibrated",
                "message": "the radiograph has no trustworthy pixel spacing; lengths on it are "
                f"refused ({radiograph.calibration.detail})",
            }
        )
    return LoadedImage(
        series_uid=series_uid,
        study_uid=str(dataset.get("StudyInstanceUID", "")),
        modality=str(dataset.get("Modality", "")),
        role=role,
        title=title,
        kind="radiograph",
        node=node,
        window_level=window_level,
        calibration=radiograph.calibration,
        warnings=warnings,
        files=list(files),
        patient_orientation=orientation,
        display_inverted=is_monochrome1(dataset),
    )


def register_priors(state: PlanState) -> None:
    """Register each prior volume rigidly onto the current volume of the same modality."""
    from MSKPriorsLib.registration import register_prior_volume

    currents = {
        image.modality: image
        for image in state.loaded
        if image.role == "current" and image.kind == "volume"
    }
    for image in state.loaded:
        if image.role != "prior" or image.kind != "volume":
            continue
        fixed = currents.get(image.modality)
        if fixed is None:
            state.warn(
                "registration",
                "no_current_volume",
                f"{image.title} was not registered: the current study has no {image.modality} "
                "volume; it is shown in its own frame.",
            )
            continue
        try:
            registered = register_prior_volume(state.context.scene, fixed.node, image.node)
        except (RuntimeError, ValueError) as error:
            state.warn(
                "registration",
                "registration_failed",
                f"{image.title} could not be registered to {fixed.title}: {error}; it is shown "
                "in its own frame.",
                where=f"series {image.series_uid}",
            )
            continue
        image.transform_node = registered.transform_node
        hierarchy = state.context.subject_hierarchy
        study = hierarchy.GetItemParent(hierarchy.GetItemByDataNode(image.node))
        if study:
            place_under(state.context.scene, registered.transform_node, study)
        image.registration = registered.result.to_dict()
        image.registration["fixed_series_uid"] = fixed.series_uid


def add_scene_records(state: PlanState) -> None:
    """Put the measurement table and the landmarks in the scene, under the current study."""
    assert state.current is not None and state.search is not None
    scene = state.context.scene
    item = study_item(state, state.search.current, "current")
    table = scene.AddNewNodeByClass("vtkMRMLTableNode", "Measurements")
    columns = ["Measurement", "Value", "Unit", "Method", "Calibration", "Source image"]
    for name in columns:
        column = table.AddColumn()
        column.SetName(name)
    for row in state.table.rows:
        index = table.AddEmptyRow()
        values = [
            row.label,
            f"{row.value:.2f}",
            row.unit,
            row.method,
            row.calibration.method,
            row.source_image,
        ]
        for column_index, value in enumerate(values):
            table.SetCellText(index, column_index, value)
    place_under(scene, table, item)
    for node in state.markups_nodes:
        place_under(scene, node, item)

"""Load a DICOM series (or a volume file) into a scalar volume node with checked geometry.

The one call for callers::

    from MSKPriorsLib.series_loader import load_series

    loaded = load_series(context, folder_or_list_of_files)  # or a .nrrd / .nii.gz path
    loaded.volume_node      # vtkMRMLScalarVolumeNode (IJK-to-RAS in millimetres)
    loaded.warnings         # list of GeometryWarning(code, message): gantry_tilt, ...
    loaded.geometry         # SeriesGeometry: dimensions, spacing_mm, origin_ras_mm, ...
    loaded.series_uid, loaded.study_uid, loaded.patient_item, loaded.study_item

Options: ``series_uid=`` picks one series when the files hold several (otherwise a
:class:`~MSKPriorsLib.dicom_geometry.SeriesLoadError` with code ``multiple_series`` lists
them), ``geometry="refuse"`` refuses a tilted, unevenly spaced or gapped series instead of
resampling it (the default ``"correct"`` resamples it and adds a ``resampled`` warning),
``pick_largest=True`` loads the largest of several series, ``name=`` names the node.
Every failure is a ``SeriesLoadError`` whose ``code`` says why and whose message names the
series or folder; nothing already in the scene is changed by a failed load.

The node goes under a Patient and a Study item of the subject hierarchy. Items are found
again by their DICOM UIDs (the ``"DICOM"`` UID name, as Slicer's DICOM module sets them):
the patient's PatientID, the study's StudyInstanceUID and the series' SeriesInstanceUID. A
patient item is reused only for the same non-empty PatientID and issuer whose name and birth
date agree; a series without PatientID always gets its own patient item. The node also
carries its SeriesInstanceUID and warnings as attributes (:data:`SERIES_UID_ATTRIBUTE`,
:data:`WARNINGS_ATTRIBUTE`), read back with :func:`series_uid_of` and :func:`warnings_of`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import slicer
import vtk
from pydicom.dataset import Dataset

from MSKPriorsLib.dicom_geometry import (
    GeometryPolicy,
    GeometryWarning,
    SeriesGeometry,
    SeriesLoadError,
)
from MSKPriorsLib.frames import lps_grid_from_ijk_to_ras
from MSKPriorsLib.mrml_volumes import add_volume_from_sitk, ijk_to_ras_of, place_under
from MSKPriorsLib.pixel_data_series import (
    DicomSeriesVolume,
    Source,
    is_volume_file,
    read_dicom_series,
)

logger = logging.getLogger(__name__)

#: Node attribute holding the SeriesInstanceUID.
SERIES_UID_ATTRIBUTE = "DICOM.SeriesInstanceUID"
#: Node attribute holding the SOPInstanceUIDs, space separated (as Slicer's DICOM module).
INSTANCE_UIDS_ATTRIBUTE = "DICOM.instanceUIDs"
#: Node attribute holding the warnings as a JSON list of ``{"code", "message"}``.
WARNINGS_ATTRIBUTE = "MSKWorkbench.GeometryWarnings"
#: Node attribute ``"1"`` when voxels were resampled onto a new grid, else ``"0"``.
RESAMPLED_ATTRIBUTE = "MSKWorkbench.GeometryResampled"
#: Subject-hierarchy item attribute holding IssuerOfPatientID.
ISSUER_ATTRIBUTE = "DICOM.IssuerOfPatientID"

_constants = slicer.vtkMRMLSubjectHierarchyConstants
DICOM_UID_NAME = _constants.GetDICOMUIDName()


@dataclass
class LoadedSeries:
    """A series loaded into the scene.

    Attributes
    ----------
    volume_node
        The ``vtkMRMLScalarVolumeNode``; geometry in RAS millimetres.
    geometry
        Its voxel grid (:class:`SeriesGeometry`; ``origin_ras_mm``, ``directions_ras``).
    warnings
        What the user must be told, with stable codes.
    series_uid, study_uid, modality
        From the DICOM header (empty for a volume file).
    patient_item, study_item, series_item
        Subject-hierarchy item IDs (patient and study are 0 for a volume file).
    files
        Files whose pixels were used.
    """

    volume_node: Any
    geometry: SeriesGeometry
    warnings: list[GeometryWarning] = field(default_factory=list)
    series_uid: str = ""
    study_uid: str = ""
    modality: str = ""
    patient_item: int = 0
    study_item: int = 0
    series_item: int = 0
    files: list[Path] = field(default_factory=list)

    @property
    def warning_codes(self) -> list[str]:
        """The warnings' codes, in order."""
        return [w.code for w in self.warnings]


def load_series(
    context: Any,
    source: Source,
    series_uid: str | None = None,
    geometry: GeometryPolicy = "correct",
    pick_largest: bool = False,
    name: str | None = None,
) -> LoadedSeries:
    """Load one DICOM series, or a volume file, into the context's scene.

    Parameters
    ----------
    context
        An :class:`~MSKPriorsLib.app_context.AppContext` (its scene and volumes logic).
    source
        A series folder (searched recursively), a list of DICOM files, one DICOM file, or a
        volume file (``.nrrd``, ``.nii``, ``.nii.gz``, ``.mha``).
    series_uid
        SeriesInstanceUID to load when the files hold several series.
    geometry
        ``"correct"`` resamples an irregular stack (tilt, uneven gaps, missing slices) onto a
        regular grid and says so; ``"refuse"`` raises instead.
    pick_largest
        Load the largest series instead of refusing when several are present.
    name
        Node name; by default the SeriesDescription (or the file name).

    Returns
    -------
    LoadedSeries

    Raises
    ------
    SeriesLoadError
        With ``code`` naming the reason (``no_images``, ``multiple_series``,
        ``gantry_tilt``, ...).
    FileNotFoundError
        If ``source`` does not exist.
    """
    if isinstance(source, str | Path) and is_volume_file(source):
        return load_volume_file(context, Path(source), name)
    volume = read_dicom_series(source, series_uid, geometry, pick_largest)
    return add_series_volume(context, volume, name)


def add_series_volume(
    context: Any, volume: DicomSeriesVolume, name: str | None = None
) -> LoadedSeries:
    """Add an already read series to the scene under its patient and study items.

    Parameters
    ----------
    context
        The application context whose scene receives the node.
    volume
        The result of :func:`~MSKPriorsLib.pixel_data_series.read_dicom_series`.
    name
        Node name; by default the SeriesDescription, else the modality and series number.
    """
    header = volume.header if volume.header is not None else Dataset()
    warnings = list(volume.warnings)
    hierarchy = context.subject_hierarchy
    patient_item = _patient_item(hierarchy, header, warnings, volume.series_uid)
    study_item = _study_item(hierarchy, header, patient_item)

    node = add_volume_from_sitk(context.scene, volume.image, name or _series_name(header, volume))
    _set_node_attributes(node, volume.series_uid, volume.sop_instance_uids, warnings, volume)
    if volume.window is not None:
        display = node.GetScalarVolumeDisplayNode()
        if display is not None:
            display.AutoWindowLevelOff()
            display.SetWindowLevel(volume.window[1], volume.window[0])
    series_item = place_under(context.scene, node, study_item)
    if volume.series_uid:
        hierarchy.SetItemUID(series_item, DICOM_UID_NAME, volume.series_uid)
    if volume.sop_instance_uids:
        hierarchy.SetItemUID(
            series_item, _constants.GetDICOMInstanceUIDName(), " ".join(volume.sop_instance_uids)
        )
    hierarchy.SetItemAttribute(
        series_item, _constants.GetDICOMSeriesModalityAttributeName(), volume.modality
    )
    hierarchy.SetItemAttribute(
        series_item,
        _constants.GetDICOMSeriesNumberAttributeName(),
        str(header.get("SeriesNumber", "") or ""),
    )
    logger.info(
        "series %s loaded as %s (%d warnings)", volume.series_uid, node.GetID(), len(warnings)
    )
    return LoadedSeries(
        volume_node=node,
        geometry=volume.geometry,
        warnings=warnings,
        series_uid=volume.series_uid,
        study_uid=volume.study_uid,
        modality=volume.modality,
        patient_item=patient_item,
        study_item=study_item,
        series_item=series_item,
        files=list(volume.files),
    )


def load_volume_file(context: Any, path: Path, name: str | None = None) -> LoadedSeries:
    """Load a plain volume file with the volumes logic (Slicer's own readers).

    The node goes directly under the scene item: a volume file names no patient or study.

    Raises
    ------
    SeriesLoadError
        ``unreadable`` when the file cannot be read as a volume.
    """
    path = Path(path)
    node_name = name or path.name.split(".")[0]
    node = context.volumes_logic.AddArchetypeVolume(str(path), node_name, 0)
    if node is None or node.GetImageData() is None:
        raise SeriesLoadError("unreadable", f"{path} could not be read as a volume.")
    geometry = geometry_of_node(node)
    node.SetAttribute(WARNINGS_ATTRIBUTE, "[]")
    node.SetAttribute(RESAMPLED_ATTRIBUTE, "0")
    hierarchy = context.subject_hierarchy
    series_item = place_under(context.scene, node, hierarchy.GetSceneItemID())
    return LoadedSeries(volume_node=node, geometry=geometry, series_item=series_item, files=[path])


def geometry_of_node(node: Any) -> SeriesGeometry:
    """Return the voxel grid of a volume node as a :class:`SeriesGeometry` (LPS record)."""
    spacing_mm, origin_lps_mm, direction_lps = lps_grid_from_ijk_to_ras(ijk_to_ras_of(node))
    dims = node.GetImageData().GetDimensions()
    return SeriesGeometry(
        dimensions=(int(dims[0]), int(dims[1]), int(dims[2])),
        spacing_mm=(float(spacing_mm[0]), float(spacing_mm[1]), float(spacing_mm[2])),
        origin_lps_mm=tuple(float(v) for v in origin_lps_mm),  # type: ignore[arg-type]
        direction_lps=tuple(float(v) for v in direction_lps.ravel()),
    )


def series_uid_of(node: Any) -> str:
    """Return the SeriesInstanceUID stored on a node loaded here (empty if none)."""
    return str(node.GetAttribute(SERIES_UID_ATTRIBUTE) or "")


def warnings_of(node: Any) -> list[GeometryWarning]:
    """Return the warnings stored on a node loaded here."""
    text = node.GetAttribute(WARNINGS_ATTRIBUTE)
    if not text:
        return []
    return [GeometryWarning(item["code"], item["message"]) for item in json.loads(text)]


def _series_name(header: Dataset, volume: DicomSeriesVolume) -> str:
    """SeriesDescription, else modality and SeriesNumber, else the folder name."""
    description = _text(header, "SeriesDescription")
    if description:
        return description
    parts = [volume.modality, _text(header, "SeriesNumber")]
    if any(parts):
        return " ".join(p for p in parts if p)
    return volume.files[0].parent.name if volume.files else "Series"


def _set_node_attributes(
    node: Any,
    series_uid: str,
    sop_instance_uids: list[str],
    warnings: list[GeometryWarning],
    volume: DicomSeriesVolume,
) -> None:
    node.SetAttribute(SERIES_UID_ATTRIBUTE, series_uid)
    node.SetAttribute(INSTANCE_UIDS_ATTRIBUTE, " ".join(sop_instance_uids))
    node.SetAttribute(WARNINGS_ATTRIBUTE, json.dumps([w.to_dict() for w in warnings]))
    node.SetAttribute(RESAMPLED_ATTRIBUTE, "1" if volume.geometry.resampled else "0")


def _text(header: Dataset, keyword: str) -> str:
    return str(header.get(keyword, "") or "").strip()


def _patient_item(
    hierarchy: Any, header: Dataset, warnings: list[GeometryWarning], series_uid: str
) -> int:
    """Find the patient item for the header's patient, or create one."""
    patient_id = _text(header, "PatientID")
    issuer = _text(header, "IssuerOfPatientID")
    name = _text(header, "PatientName")
    birth_date = _text(header, "PatientBirthDate")
    if patient_id:
        existing = _find_patient(hierarchy, patient_id, issuer)
        if existing and _same_person(hierarchy, existing, name, birth_date):
            return existing
        if existing:
            warnings.append(
                GeometryWarning(
                    "patient_mismatch",
                    f"Series {series_uid}: the scene already holds PatientID {patient_id} with a "
                    f"different name or birth date; the series was put under a separate "
                    f"patient item.",
                )
            )
    else:
        warnings.append(
            GeometryWarning(
                "no_patient_id",
                f"Series {series_uid} has no PatientID; it is put under its own patient item "
                f"and is never matched to other studies.",
            )
        )
    item = int(
        hierarchy.CreateSubjectItem(
            hierarchy.GetSceneItemID(), name or patient_id or "Unidentified patient"
        )
    )
    if patient_id:
        hierarchy.SetItemUID(item, DICOM_UID_NAME, patient_id)
    attributes = {
        _constants.GetDICOMPatientIDAttributeName(): patient_id,
        _constants.GetDICOMPatientNameAttributeName(): name,
        _constants.GetDICOMPatientBirthDateAttributeName(): birth_date,
        _constants.GetDICOMPatientSexAttributeName(): _text(header, "PatientSex"),
        ISSUER_ATTRIBUTE: issuer,
    }
    for attribute, value in attributes.items():
        hierarchy.SetItemAttribute(item, attribute, value)
    return item


def _patient_items(hierarchy: Any) -> list[int]:
    children = _vtk_id_list()
    hierarchy.GetItemChildren(hierarchy.GetSceneItemID(), children, True)
    level = _constants.GetDICOMLevelPatient()
    return [
        int(children.GetId(i))
        for i in range(children.GetNumberOfIds())
        if hierarchy.GetItemLevel(children.GetId(i)) == level
    ]


def _find_patient(hierarchy: Any, patient_id: str, issuer: str) -> int:
    for item in _patient_items(hierarchy):
        if (
            hierarchy.GetItemUID(item, DICOM_UID_NAME) == patient_id
            and (hierarchy.GetItemAttribute(item, ISSUER_ATTRIBUTE) or "") == issuer
        ):
            return item
    return 0


def _same_person(hierarchy: Any, item: int, name: str, birth_date: str) -> bool:
    """Cross-check name and birth date; an empty value on either side is no contradiction."""
    known_name = hierarchy.GetItemAttribute(item, _constants.GetDICOMPatientNameAttributeName())
    known_birth = hierarchy.GetItemAttribute(
        item, _constants.GetDICOMPatientBirthDateAttributeName()
    )
    name_ok = not (known_name and name) or known_name.upper() == name.upper()
    birth_ok = not (known_birth and birth_date) or known_birth == birth_date
    return bool(name_ok and birth_ok)


def _study_item(
    hierarchy: Any,
    header: Dataset,
    patient_item: int,
) -> int:
    """Find the study item under the patient item by StudyInstanceUID, or create one."""
    study_uid = _text(header, "StudyInstanceUID")
    if study_uid:
        children = _vtk_id_list()
        hierarchy.GetItemChildren(patient_item, children, False)
        for index in range(children.GetNumberOfIds()):
            child = int(children.GetId(index))
            if hierarchy.GetItemUID(child, DICOM_UID_NAME) == study_uid:
                return child
    description = _text(header, "StudyDescription") or "No study description"
    date = _text(header, "StudyDate")
    item = int(
        hierarchy.CreateStudyItem(patient_item, f"{description} ({date})" if date else description)
    )
    if study_uid:
        hierarchy.SetItemUID(item, DICOM_UID_NAME, study_uid)
    attributes = {
        _constants.GetDICOMStudyInstanceUIDAttributeName(): study_uid,
        _constants.GetDICOMStudyIDAttributeName(): _text(header, "StudyID"),
        _constants.GetDICOMStudyDescriptionAttributeName(): _text(header, "StudyDescription"),
        _constants.GetDICOMStudyDateAttributeName(): date,
        _constants.GetDICOMStudyTimeAttributeName(): _text(header, "StudyTime"),
    }
    for attribute, value in attributes.items():
        hierarchy.SetItemAttribute(item, attribute, value)
    return item


def _vtk_id_list() -> Any:
    return vtk.vtkIdList()

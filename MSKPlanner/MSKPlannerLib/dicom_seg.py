"""Bone segmentations as DICOM SEG (binary, one segment per bone) on the source CT series.

The label map must lie on the source series' voxel grid (any axis order or direction: each
source slice's pixels are looked up by position); a label map on another grid is refused
with the series named, never resampled silently. Segments are coded with SNOMED CT: the
segmented property category is *Anatomical structure* and the type the bone where a code is
well known (femur, tibia, vertebra, sacrum, ...), else *Bone*. The label names
(TotalSegmentator style, ``femur_left``) are kept as segment labels.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

import highdicom as hd
import numpy as np
import numpy.typing as npt
import pydicom
import vtk
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import generate_uid

from MSKPriorsLib.mrml_volumes import array_from_volume, ijk_to_ras_of

logger = logging.getLogger(__name__)

MANUFACTURER = "MSK Workbench"

_BONE_CODES: tuple[tuple[str, Code], ...] = (
    (r"^femur", codes.SCT.Femur),
    (r"^tibia", codes.SCT.Tibia),
    (r"^fibula", codes.SCT.Fibula),
    (r"^patella", codes.SCT.Patella),
    (r"^humerus", codes.SCT.Humerus),
    (r"^vertebra", codes.SCT.Vertebra),
    (r"^sacrum", codes.SCT.Sacrum),
    (r"^coccyx", codes.SCT.Coccyx),
    (r"^rib", codes.SCT.Rib),
    (r"^scapula", codes.SCT.Scapula),
    (r"^clavicul", codes.SCT.Clavicle),
    (r"^sternum", codes.SCT.Sternum),
    (r"^skull", codes.SCT.Skull),
    (r"^mandible", codes.SCT.Mandible),
    (r"^radius", codes.SCT.Radius),
    (r"^ulna", codes.SCT.Ulna),
)


class SegmentationExportError(ValueError):
    """The label map or the source series cannot make a DICOM SEG; the message says why."""


def property_type_for(name: str) -> Code:
    """SNOMED CT code of a bone name (``femur_left`` -> Femur), *Bone* when not known."""
    for pattern, code in _BONE_CODES:
        if re.search(pattern, name, re.IGNORECASE):
            return code
    return codes.SCT.Bone


def _sorted_sources(datasets: Sequence[pydicom.Dataset]) -> list[pydicom.Dataset]:
    if not datasets:
        raise SegmentationExportError("a segmentation needs the source series; none was given")
    series = {str(ds.get("SeriesInstanceUID", "")) for ds in datasets}
    if len(series) != 1:
        raise SegmentationExportError(f"the source images come from {len(series)} series")
    for ds in datasets:
        for keyword in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"):
            if keyword not in ds:
                raise SegmentationExportError(
                    f"source instance {ds.get('SOPInstanceUID', '?')} lacks {keyword}"
                )
    normal = np.cross(*np.asarray(datasets[0].ImageOrientationPatient, dtype=float).reshape(2, 3))
    return sorted(datasets, key=lambda ds: float(np.asarray(ds.ImagePositionPatient) @ normal))


def frames_on_sources(
    label_kji: npt.NDArray[Any],
    ijk_to_ras_mm: npt.ArrayLike,
    source_datasets: Sequence[pydicom.Dataset],
    tolerance_voxels: float = 0.05,
) -> tuple[list[pydicom.Dataset], npt.NDArray[Any]]:
    """Take the label map's voxels at every source slice's pixels.

    Parameters
    ----------
    label_kji
        Integer label map indexed ``[k, j, i]``.
    ijk_to_ras_mm
        Its 4x4 IJK-to-RAS matrix (mm).
    source_datasets
        The single-frame instances of the source series (any order).
    tolerance_voxels
        How far (in voxels) a source pixel centre may lie from a label voxel centre.

    Returns
    -------
    tuple
        The sources sorted along the slice normal, and the labels as an array of shape
        ``(slices, rows, columns)`` in that order.

    Raises
    ------
    SegmentationExportError
        When a source pixel falls between label voxels or outside the label map.
    """
    sources = _sorted_sources(source_datasets)
    ras_to_ijk = np.linalg.inv(np.asarray(ijk_to_ras_mm, dtype=float))
    labels = np.asarray(label_kji)
    frames = []
    for ds in sources:
        rows, columns = int(ds.Rows), int(ds.Columns)
        orientation = np.asarray(ds.ImageOrientationPatient, dtype=float).reshape(2, 3)
        row_mm, column_mm = (float(v) for v in ds.PixelSpacing)
        r, c = np.mgrid[0:rows, 0:columns]
        lps = (
            np.asarray(ds.ImagePositionPatient, dtype=float)
            + c[..., None] * column_mm * orientation[0]
            + r[..., None] * row_mm * orientation[1]
        )
        ras = lps * np.array([-1.0, -1.0, 1.0])
        ijk = ras @ ras_to_ijk[:3, :3].T + ras_to_ijk[:3, 3]
        nearest = np.rint(ijk)
        inside = np.all((nearest >= 0) & (nearest < np.array(labels.shape[::-1])), axis=-1)
        if np.abs(ijk - nearest).max() > tolerance_voxels or not inside.all():
            raise SegmentationExportError(
                f"the label map is not on the grid of series {ds.SeriesInstanceUID} "
                f"(instance {ds.SOPInstanceUID}); resample it onto the source series first"
            )
        index = nearest.astype(int)
        frames.append(labels[index[..., 2], index[..., 1], index[..., 0]])
    return sources, np.stack(frames)


def _require_citable(source_datasets: Sequence[pydicom.Dataset]) -> None:
    """Refuse source instances whose SOP Class, SOP Instance or Series UID is empty."""
    for ds in source_datasets:
        missing = [
            keyword
            for keyword in (
                "SOPClassUID",
                "SOPInstanceUID",
                "SeriesInstanceUID",
                "StudyInstanceUID",
            )
            if not str(ds.get(keyword, "") or "").strip()
        ]
        if missing:
            series = str(ds.get("SeriesInstanceUID", "") or "(no series UID)")
            raise SegmentationExportError(
                f"series {series}: a source instance has no {', '.join(missing)}, so a DICOM "
                "SEG cannot reference it"
            )


def build_segmentation(
    source_datasets: Sequence[pydicom.Dataset],
    label_kji: npt.NDArray[Any],
    ijk_to_ras_mm: npt.ArrayLike,
    names: Mapping[int, str],
    series_instance_uid: str,
    sop_instance_uid: str,
    series_number: int = 9902,
    instance_number: int = 1,
    series_description: str = "MSK Workbench bone segmentation",
) -> hd.seg.Segmentation:
    """Write a bone label map as a binary DICOM SEG referencing the source series.

    Parameters
    ----------
    source_datasets
        The instances of the CT/MR series the labels were drawn on.
    label_kji, ijk_to_ras_mm
        The label map ``[k, j, i]`` and its IJK-to-RAS matrix (mm), on the source grid.
    names
        Label value -> structure name; only these values become segments (in value order).
    series_instance_uid, sop_instance_uid
        UIDs of the SEG, kept by the caller so that a rewrite stores the same object.

    Returns
    -------
    highdicom.seg.Segmentation
        One segment per named label value present in the map.

    Raises
    ------
    SegmentationExportError
        When the source instances lack the UIDs a SEG must cite, or no named label is present.
    """
    _require_citable(source_datasets)
    sources, frames = frames_on_sources(label_kji, ijk_to_ras_mm, source_datasets)
    present = set(np.unique(frames).tolist())
    values = [value for value in sorted(names) if value in present and value != 0]
    if not values:
        raise SegmentationExportError(
            f"none of the named labels {sorted(names)} is present on series "
            f"{sources[0].SeriesInstanceUID}"
        )
    masks = np.stack([frames == value for value in values], axis=-1).astype(np.uint8)
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=names[value][:64],
            segmented_property_category=codes.SCT.AnatomicalStructure,
            segmented_property_type=property_type_for(names[value]),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.SEMIAUTOMATIC,
            algorithm_identification=hd.AlgorithmIdentificationSequence(
                name="MSK Workbench bone segmentation",
                version="1",
                family=codes.cid7162.MorphologicalOperations,
            ),
            tracking_id=names[value][:64],
            tracking_uid=generate_uid(prefix=None, entropy_srcs=[sop_instance_uid, names[value]]),
        )
        for number, value in enumerate(values, start=1)
    ]
    segmentation = hd.seg.Segmentation(
        source_images=sources,
        pixel_array=masks,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=series_instance_uid,
        series_number=series_number,
        sop_instance_uid=sop_instance_uid,
        instance_number=instance_number,
        manufacturer=MANUFACTURER,
        manufacturer_model_name="MSK Workbench",
        software_versions="0.1",
        device_serial_number="none",
        series_description=series_description,
    )
    logger.info(
        "SEG %s: %d segments on series %s",
        sop_instance_uid,
        len(values),
        sources[0].SeriesInstanceUID,
    )
    return segmentation


def label_map_from_segmentation_node(
    segmentations_logic: Any, segmentation_node: Any, reference_volume_node: Any
) -> tuple[npt.NDArray[Any], npt.NDArray[np.float64], dict[int, str]]:
    """Export a segmentation node to a label map on a reference volume's grid.

    Parameters
    ----------
    segmentations_logic
        ``vtkSlicerSegmentationsModuleLogic`` (the app context's ``segmentations_logic``).
    segmentation_node
        The ``vtkMRMLSegmentationNode`` with one segment per bone.
    reference_volume_node
        The source series volume node, whose grid the labels take.

    Returns
    -------
    tuple
        Label map ``[k, j, i]``, its IJK-to-RAS matrix (mm) and label value -> segment name.
    """
    scene = segmentation_node.GetScene()
    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "seg export")
    try:
        segment_ids = [
            segmentation_node.GetSegmentation().GetNthSegmentID(i)
            for i in range(segmentation_node.GetSegmentation().GetNumberOfSegments())
        ]
        ids = vtk.vtkStringArray()
        for segment_id in segment_ids:
            ids.InsertNextValue(segment_id)
        if not segmentations_logic.ExportSegmentsToLabelmapNode(
            segmentation_node, ids, labelmap, reference_volume_node
        ):
            raise SegmentationExportError(
                f"segmentation {segmentation_node.GetName()!r} could not be exported onto "
                f"{reference_volume_node.GetName()!r}"
            )
        names = {
            index: segmentation_node.GetSegmentation().GetSegment(segment_id).GetName()
            for index, segment_id in enumerate(segment_ids, start=1)
        }
        return array_from_volume(labelmap), ijk_to_ras_of(labelmap), names
    finally:
        scene.RemoveNode(labelmap)


def read_segment_names(seg_dataset: pydicom.Dataset) -> dict[int, tuple[str, str]]:
    """Segment number -> (label, SNOMED CT type code value) of a SEG."""
    return {
        int(item.SegmentNumber): (
            str(item.SegmentLabel),
            str(item.SegmentedPropertyTypeCodeSequence[0].CodeValue),
        )
        for item in seg_dataset.SegmentSequence
    }

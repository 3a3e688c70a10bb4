"""Closed, faithful bone surfaces from CT: the entry point of bone reconstruction.

Main entry point, for the front ends and the case plan::

    result = reconstruct_bones(context, volume_node, labels=None, options=ReconstructionOptions())

``volume_node`` is a CT scalar volume node (HU) of ``context.scene``. ``labels`` is optional:
a :class:`~MSKPlannerLib.label_maps.LabelMap`, a label-map file (``.seg.nrrd``, NIfTI) or a
``vtkMRMLLabelMapVolumeNode``; without it bones are thresholded (and split at seeds when
``options.seeds_ras_mm`` names some). The returned :class:`ReconstructionResult` holds the
segmentation node (one segment per bone, binary labelmap plus closed surface), one
:class:`BoneSurface` per bone with volume, area, closedness and the files written, the metal
regions kept out, and warnings. With ``options.output_dir`` set, STL/OBJ per bone and the
``.seg.nrrd`` are written there (see :mod:`MSKPlannerLib.surface_export`); with
``options.add_models`` the surfaces also become model nodes in a subject-hierarchy folder.

Surfaces come from slicer-core's own closed-surface conversion rule with its default
smoothing (see :mod:`MSKPlannerLib.surface_meshes`), run per bone on the bone's bounding box;
the segments share one labelmap, so nothing is imported or thresholded twice. Every surface
is checked: no boundary or non-manifold edges, consistent outward orientation, and volume
against the labelmap (small fragments within half a voxel, see
:func:`~MSKPlannerLib.surface_meshes.judge_surface`). A bone that reaches the edge of the
scan is closed by a flat face there and marked as cut, not as failed. Geometry is in RAS
millimetres throughout.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk
import slicer
from vtk.util import numpy_support

from MSKPlannerLib.bone_segmentation import (
    BoneSegmentation,
    BoneSegmentationOptions,
    MetalRegion,
    label_boxes,
    segment_bones,
)
from MSKPlannerLib.label_maps import LabelMap, read_label_map
from MSKPlannerLib.surface_meshes import (
    SurfaceCheck,
    check_surface,
    judge_surface,
    sides_cut_by_volume_edge,
    surface_from_mask,
)
from MSKPriorsLib.frames import LPS_TO_RAS, vtk_matrix_from_numpy
from MSKPriorsLib.mrml_volumes import (
    ijk_to_ras_of,
    new_subject_hierarchy_parent,
    place_under,
    sitk_from_volume,
)

logger = logging.getLogger(__name__)

#: Label colours (RGB 0..1), cycled through the bones.
BONE_COLOURS = (
    (0.945, 0.839, 0.569),
    (0.890, 0.765, 0.541),
    (0.847, 0.702, 0.482),
    (0.961, 0.871, 0.659),
    (0.820, 0.737, 0.580),
)


@dataclass
class ReconstructionOptions:
    """Settings of :func:`reconstruct_bones`.

    Attributes
    ----------
    segmentation
        Thresholds, cleaning, cavity filling and metal handling.
    seeds_ras_mm
        Bone name -> a point inside it (RAS mm), to split thresholded bones.
    names
        Label value -> name table (or a JSON file) for label maps without embedded names.
    smoothing_factor
        0 (none) to 1 (strong); Slicer's closed-surface smoothing factor.
    decimate
        Fraction of triangles to remove (0 keeps all, 0.9 keeps a tenth).
    preserve_volume
        When a surface's volume is more than 1% off the labelmap volume (thin structures at
        coarse voxels shrink when contoured and smoothed), offset it along its normals, by at
        most half a voxel, until the volumes agree.
    output_dir
        Folder to write STL, OBJ and ``.seg.nrrd`` into; nothing is written when None.
    frame
        ``"RAS"`` or ``"LPS"``: coordinate frame of the written meshes.
    add_models
        Also add one model node per bone under a subject-hierarchy folder.
    folder_name
        Name of that folder.
    """

    segmentation: BoneSegmentationOptions = field(default_factory=BoneSegmentationOptions)
    seeds_ras_mm: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    names: dict[int, str] | Path | None = None
    smoothing_factor: float = 0.5
    decimate: float = 0.0
    preserve_volume: bool = True
    output_dir: Path | None = None
    frame: str = "RAS"
    add_models: bool = True
    folder_name: str = "Bone models"


@dataclass
class BoneSurface:
    """One reconstructed bone.

    Attributes
    ----------
    name, label_value
        Bone name (TotalSegmentator style where known) and its value in the label image.
    segment_id
        ID of its segment in the segmentation node.
    polydata
        Closed triangle surface in RAS mm, with point normals.
    labelmap_volume_ml
        Voxel count times voxel volume.
    volume_ml, area_cm2
        Of the closed surface (vtkMassProperties).
    check
        Closedness and orientation.
    files
        Written files by kind (``"stl"``, ``"obj"``).
    model_node
        Model node in the scene, if models were added.
    warnings
        Problems with this bone: its surface failed a check.
    notes
        Facts about this bone that are not failures (a small fragment judged by the mean
        distance of its surface to the voxel outline).
    cut_by_volume_edge
        Patient sides (``"superior"``, ...) where the bone reaches the edge of the scan and
        its surface is closed by a flat face; empty when it lies wholly inside.
    """

    name: str
    label_value: int
    segment_id: str
    polydata: Any
    labelmap_volume_ml: float
    volume_ml: float
    area_cm2: float
    check: SurfaceCheck
    files: dict[str, Path] = field(default_factory=dict)
    model_node: Any = None
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    cut_by_volume_edge: tuple[str, ...] = ()

    @property
    def closed(self) -> bool:
        """The surface has no holes and consistent outward normals."""
        return self.check.closed and self.check.consistent and self.check.outward

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (files as strings)."""
        return {
            "name": self.name,
            "label_value": self.label_value,
            "volume_ml": round(self.volume_ml, 3),
            "labelmap_volume_ml": round(self.labelmap_volume_ml, 3),
            "area_cm2": round(self.area_cm2, 3),
            "closed": self.closed,
            "files": {kind: str(path) for kind, path in self.files.items()},
            "warnings": list(self.warnings),
            "notes": list(self.notes),
            "cut_by_volume_edge": list(self.cut_by_volume_edge),
        }


@dataclass
class ReconstructionResult:
    """Everything :func:`reconstruct_bones` produced.

    Attributes
    ----------
    segmentation_node
        ``vtkMRMLSegmentationNode`` with one segment per bone.
    bones
        One :class:`BoneSurface` per bone, in label order.
    metal
        Metal regions kept out of the bones (LPS mm centroids).
    thresholds_hu
        Bone range used.
    frame
        Frame of the written meshes.
    files
        Files written for the whole result (``"seg.nrrd"``).
    warnings
        Problems for the user (metal, seeds, open surfaces).
    seconds
        Wall time per step.
    """

    segmentation_node: Any
    bones: list[BoneSurface]
    metal: list[MetalRegion]
    thresholds_hu: tuple[float, float]
    frame: str = "RAS"
    files: dict[str, Path] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary of the bones, metal, files and warnings."""
        return {
            "frame": self.frame,
            "thresholds_hu": list(self.thresholds_hu),
            "bones": [bone.to_dict() for bone in self.bones],
            "metal": [
                {
                    "volume_ml": round(region.volume_ml, 3),
                    "centroid_lps_mm": [round(v, 2) for v in region.centroid_lps_mm],
                    "max_hu": region.max_hu,
                }
                for region in self.metal
            ],
            "files": {kind: str(path) for kind, path in self.files.items()},
            "warnings": list(self.warnings),
        }


def _labels_of(context: Any, volume_node: Any, labels: Any, names: Any) -> LabelMap | None:
    """Turn the ``labels`` argument of :func:`reconstruct_bones` into a LabelMap."""
    if labels is None or isinstance(labels, LabelMap):
        return labels
    if isinstance(labels, (str, Path)):
        return read_label_map(Path(labels), names)
    if hasattr(labels, "IsA") and labels.IsA("vtkMRMLLabelMapVolumeNode"):
        image = sitk_from_volume(labels)
        table = {}
        display = labels.GetDisplayNode()
        colour_node = display.GetColorNode() if display is not None else None
        values = np.unique(sitk.GetArrayViewFromImage(image))
        for value in values[values != 0]:
            name = colour_node.GetColorName(int(value)) if colour_node is not None else ""
            table[int(value)] = name or f"label_{int(value)}"
        if isinstance(names, dict):
            table.update(names)
        return LabelMap(image=sitk.Cast(image, sitk.sitkUInt16), names=table, source=None)
    raise TypeError(f"labels of type {type(labels).__name__} are not supported")


def _shared_labelmap(labels_kji: npt.NDArray[np.uint16], ijk_to_ras: Any) -> Any:
    """A ``vtkOrientedImageData`` holding all bones, to be shared by their segments."""
    dtype = np.uint8 if labels_kji.max(initial=0) < 256 else np.uint16
    array = np.ascontiguousarray(labels_kji.astype(dtype, copy=False))
    image = slicer.vtkOrientedImageData()
    image.SetDimensions(array.shape[2], array.shape[1], array.shape[0])
    image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(array.ravel(), deep=True))
    image.SetImageToWorldMatrix(vtk_matrix_from_numpy(ijk_to_ras))
    return image


def build_segmentation_node(
    context: Any,
    volume_node: Any,
    segmentation: BoneSegmentation,
    smoothing_factor: float = 0.5,
    name: str | None = None,
) -> tuple[Any, dict[int, str]]:
    """Add a segmentation node with one segment per bone, all sharing one labelmap.

    Parameters
    ----------
    context
        The :class:`~MSKPriorsLib.app_context.AppContext` (or anything with ``.scene``).
    volume_node
        The CT the labels lie on; it becomes the segmentation's reference geometry.
    segmentation
        Labels and names from :func:`~MSKPlannerLib.bone_segmentation.segment_bones`.
    smoothing_factor
        Stored as the closed-surface conversion parameter, so Slicer rebuilds surfaces alike.

    Returns
    -------
    node, segment_ids
        The segmentation node and the segment ID of each label value.
    """
    scene = context.scene
    node = scene.AddNewNodeByClass(
        "vtkMRMLSegmentationNode", name or f"{volume_node.GetName()} bones"
    )
    node.CreateDefaultDisplayNodes()
    node.SetReferenceImageGeometryParameterFromVolumeNode(volume_node)
    content = node.GetSegmentation()
    content.SetConversionParameter("Smoothing factor", str(float(smoothing_factor)))
    labelmap_name = slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName()
    labels_kji = sitk.GetArrayViewFromImage(segmentation.labels)
    shared = _shared_labelmap(np.asarray(labels_kji), ijk_to_ras_of(volume_node))
    segment_ids: dict[int, str] = {}
    for index, (value, bone_name) in enumerate(sorted(segmentation.names.items())):
        segment = slicer.vtkSegment()
        segment.SetName(bone_name)
        segment.SetLabelValue(int(value))
        segment.SetColor(*BONE_COLOURS[index % len(BONE_COLOURS)])
        segment.AddRepresentation(labelmap_name, shared)
        content.AddSegment(segment, bone_name)
        segment_ids[value] = bone_name
    return node, segment_ids


def _add_model_nodes(context: Any, node: Any, bones: list[BoneSurface], folder: str) -> None:
    """Add one model node per bone under a subject-hierarchy folder beside the segmentation."""
    hierarchy = context.subject_hierarchy
    segmentation_item = hierarchy.GetItemByDataNode(node)
    parent = hierarchy.GetItemParent(segmentation_item) if segmentation_item else 0
    folder_item = new_subject_hierarchy_parent(context.scene, folder, "Folder", parent)
    for bone in bones:
        model = context.scene.AddNewNodeByClass("vtkMRMLModelNode", bone.name)
        model.SetAndObservePolyData(bone.polydata)
        model.CreateDefaultDisplayNodes()
        colour = node.GetSegmentation().GetSegment(bone.segment_id).GetColor()
        model.GetDisplayNode().SetColor(*colour)
        place_under(context.scene, model, folder_item)
        bone.model_node = model


def reconstruct_bones(
    context: Any,
    volume_node: Any,
    labels: Any = None,
    options: ReconstructionOptions | None = None,
) -> ReconstructionResult:
    """Segment the bones of a CT volume node and build a closed surface per bone.

    Parameters
    ----------
    context
        :class:`~MSKPriorsLib.app_context.AppContext` owning the scene of ``volume_node``.
    volume_node
        CT scalar volume node in HU (geometry RAS mm).
    labels
        None (threshold), a :class:`~MSKPlannerLib.label_maps.LabelMap`, a ``.seg.nrrd`` /
        NIfTI path, or a ``vtkMRMLLabelMapVolumeNode`` naming the bones.
    options
        Segmentation, surface and export settings.

    Returns
    -------
    ReconstructionResult
        Segmentation node, per-bone surfaces with volume (ml), area (cm2), closedness and
        written files, metal regions, warnings and timings.
    """
    options = options or ReconstructionOptions()
    if options.frame not in ("RAS", "LPS"):
        raise ValueError(f"frame must be RAS or LPS, not {options.frame!r}")
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    ct = sitk_from_volume(volume_node)
    label_map = _labels_of(context, volume_node, labels, options.names)
    seeds_lps: dict[str, tuple[float, float, float]] = {}
    for name, point in options.seeds_ras_mm.items():
        x, y, z = (float(v) for v in LPS_TO_RAS @ np.asarray(point, dtype=float))
        seeds_lps[name] = (x, y, z)
    segmentation = segment_bones(ct, options.segmentation, seeds_lps or None, label_map)
    seconds["segmentation"] = time.perf_counter() - start

    start = time.perf_counter()
    node, segment_ids = build_segmentation_node(
        context, volume_node, segmentation, options.smoothing_factor
    )
    seconds["segmentation_node"] = time.perf_counter() - start

    start = time.perf_counter()
    bones = _surfaces(node, volume_node, segmentation, segment_ids, options)
    seconds["surfaces"] = time.perf_counter() - start

    warnings = list(segmentation.warnings)
    for bone in bones:
        warnings.extend(f"{bone.name}: {warning}" for warning in bone.warnings)
    cut = [bone for bone in bones if bone.cut_by_volume_edge]
    if cut:
        what = "thresholded bone pieces" if label_map is None else "labelled bones"
        warnings.append(_cut_by_edge_sentence(cut, len(bones), what))
    result = ReconstructionResult(
        segmentation_node=node,
        bones=bones,
        metal=segmentation.metal,
        thresholds_hu=segmentation.thresholds_hu,
        frame=options.frame,
        warnings=warnings,
        seconds=seconds,
    )
    if options.add_models:
        _add_model_nodes(context, node, bones, options.folder_name)
    if options.output_dir is not None:
        from MSKPlannerLib.surface_export import export_reconstruction

        start = time.perf_counter()
        export_reconstruction(context, result, Path(options.output_dir), options.frame)
        seconds["export"] = time.perf_counter() - start
    return result


def _cut_by_edge_sentence(cut: list[BoneSurface], total: int, what: str) -> str:
    """One sentence naming the bones that run out of the scan, and on which sides."""
    named = ", ".join(f"{bone.name} ({'/'.join(bone.cut_by_volume_edge)})" for bone in cut[:6])
    more = f" and {len(cut) - 6} more" if len(cut) > 6 else ""
    return (
        f"{len(cut)} of {total} {what} run out of the scan: {named}{more}; their surfaces are "
        "closed flat at the edge of the scan and show only the part inside it"
    )


def _surfaces(
    node: Any,
    volume_node: Any,
    segmentation: BoneSegmentation,
    segment_ids: dict[int, str],
    options: ReconstructionOptions,
) -> list[BoneSurface]:
    """Contour each bone in its bounding box, check it and attach it to its segment."""
    labels_kji = sitk.GetArrayViewFromImage(segmentation.labels)
    ijk_to_ras = ijk_to_ras_of(volume_node)
    voxel_ml = float(abs(np.linalg.det(ijk_to_ras[:3, :3]))) / 1000.0
    spacing_mm = float(np.linalg.norm(ijk_to_ras[:3, :3], axis=0).min())
    surface_name = slicer.vtkSegmentationConverter.GetClosedSurfaceRepresentationName()
    bones = []
    for value, box in sorted(label_boxes(segmentation.labels).items()):
        if value not in segment_ids:
            continue
        mask = labels_kji[box] == value
        offset = (box[0].start, box[1].start, box[2].start)
        voxel_count = int(np.count_nonzero(mask))
        labelmap_ml = voxel_count * voxel_ml
        target = labelmap_ml * 1000.0 if options.preserve_volume else None
        notes: list[str] = []
        polydata = surface_from_mask(
            mask, ijk_to_ras, options.smoothing_factor, options.decimate, offset, target, notes
        )
        check = check_surface(polydata)
        problems, facts = judge_surface(check, labelmap_ml * 1000.0, voxel_count, spacing_mm)
        bone = BoneSurface(
            name=segmentation.names[value],
            label_value=value,
            segment_id=segment_ids[value],
            polydata=polydata,
            labelmap_volume_ml=labelmap_ml,
            volume_ml=check.volume_mm3 / 1000.0,
            area_cm2=check.area_mm2 / 100.0,
            check=check,
            warnings=notes + problems,
            notes=facts,
            cut_by_volume_edge=sides_cut_by_volume_edge(box, labels_kji.shape, ijk_to_ras),
        )
        node.GetSegmentation().GetSegment(segment_ids[value]).AddRepresentation(
            surface_name, polydata
        )
        bones.append(bone)
    return bones

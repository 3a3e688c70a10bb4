"""Bone surfaces for the viewer's 3D view: computed off the event loop, shown as model nodes.

The bones are segmented and contoured with the reconstruction library's own functions
(:func:`~MSKPlannerLib.bone_segmentation.segment_bones` on the CT image and
:func:`~MSKPlannerLib.surface_reconstruction.surface_from_mask` per bone), which need no
scene, so they run on a worker thread; only adding the finished surfaces touches the scene.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from MSKPlannerLib.bone_segmentation import BoneSegmentationOptions, segment_bones
from MSKPlannerLib.case_measures import BONE_PRESET, MIN_BONE_PIECE_ML
from MSKPlannerLib.surface_reconstruction import surface_from_mask
from MSKPriorsLib.mrml_volumes import ijk_to_ras_from_sitk

logger = logging.getLogger(__name__)

#: Fraction of triangles removed: the 3D view is rendered in software on the server.
VIEW_DECIMATION = 0.5
BONE_COLOR = (0.93, 0.89, 0.78)


@dataclass
class BoneSurface:
    """One bone: its name and closed surface (``vtkPolyData``, RAS mm)."""

    name: str
    polydata_ras: Any


def reconstruct(image: sitk.Image, modality: str) -> tuple[list[BoneSurface], list[str]]:
    """Bone surfaces of a CT image (worker thread); other modalities have no bone threshold.

    Parameters
    ----------
    image
        The current volume, HU for CT, geometry in LPS mm.
    modality
        Its DICOM modality.

    Returns
    -------
    tuple
        The surfaces (RAS mm) and the warnings for the user.
    """
    if modality.upper() != "CT":
        return [], [
            f"3D bones are reconstructed from CT only (this series is {modality or 'unknown'})."
        ]
    # The plan's (and its report's) bone threshold: the default cortical threshold keeps only
    # the densest cortices of a CT, which the 3D view showed as scattered fragments.
    options = BoneSegmentationOptions(preset=BONE_PRESET, min_island_ml=MIN_BONE_PIECE_ML)
    segmentation = segment_bones(image, options)
    labels_kji = sitk.GetArrayViewFromImage(segmentation.labels)
    ijk_to_ras = ijk_to_ras_from_sitk(image)
    surfaces = []
    for value, box in enumerate(ndimage.find_objects(labels_kji), start=1):
        if box is None or value not in segmentation.names:
            continue
        mask = np.asarray(labels_kji[box] == value)
        offset = (box[0].start, box[1].start, box[2].start)
        polydata = surface_from_mask(mask, ijk_to_ras, 0.5, VIEW_DECIMATION, offset)
        surfaces.append(BoneSurface(segmentation.names[value], polydata))
    logger.info("reconstructed %d bone surfaces for the 3D view", len(surfaces))
    return surfaces, list(segmentation.warnings)


def show(case: Any, surfaces: list[BoneSurface]) -> list[Any]:
    """Add surfaces to the case's scene as model nodes, shown in 3D only (loop thread)."""
    nodes = []
    for surface in surfaces:
        node = case.context.models_logic.AddModel(surface.polydata_ras)
        node.SetName(surface.name)
        display = node.GetDisplayNode()
        display.SetColor(*BONE_COLOR)
        display.ScalarVisibilityOff()
        display.SetVisibility2D(False)
        # Both faces are drawn lit: a surface cut open by the image's edge stays solid.
        display.SetBackfaceCulling(False)
        nodes.append(node)
    return nodes

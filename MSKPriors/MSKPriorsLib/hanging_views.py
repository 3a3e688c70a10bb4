"""Put a hanging plan into an MRML scene: layout, slice views, volumes, presets and linking.

MRML logic. It works on the scene's own nodes, so it runs unchanged on desktop Slicer's scene
(whose layout manager already made the slice views) and headless (where the slice and
composite nodes are created here). A plan comes from
:func:`MSKPriorsLib.hanging_protocols.plan_hanging`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from MSKPriorsLib.display_presets import apply_preset
from MSKPriorsLib.hanging_protocols import LAYOUTS, HangingPlan
from MSKPriorsLib.registration import RigidSettings, VolumeRegistration, register_prior_volume

logger = logging.getLogger(__name__)

#: Singleton tag of the 3D view in Slicer's standard layouts.
THREE_D_VIEW_NAME = "1"


def layout_node_of(scene: Any) -> Any:
    """Return the scene's ``vtkMRMLLayoutNode``, adding one if the scene has none (headless)."""
    existing = scene.GetFirstNodeByClass("vtkMRMLLayoutNode")
    if existing is not None:
        return existing
    node = scene.CreateNodeByClass("vtkMRMLLayoutNode")
    node.SetSingletonTag("vtkMRMLLayoutNode")
    return scene.AddNode(node)


def slice_node_for(scene: Any, view_name: str) -> Any:
    """Return the slice node of a view (``Red``, ``Yellow``, ...), creating it if missing."""
    existing = scene.GetSingletonNode(view_name, "vtkMRMLSliceNode")
    if existing is not None:
        return existing
    node = scene.CreateNodeByClass("vtkMRMLSliceNode")
    node.SetName(view_name)
    node.SetLayoutName(view_name)
    return scene.AddNode(node)


def composite_node_for(scene: Any, view_name: str) -> Any:
    """Return the slice composite node of a view, creating it if missing."""
    for index in range(scene.GetNumberOfNodesByClass("vtkMRMLSliceCompositeNode")):
        node = scene.GetNthNodeByClass(index, "vtkMRMLSliceCompositeNode")
        if node.GetLayoutName() == view_name:
            return node
    node = scene.CreateNodeByClass("vtkMRMLSliceCompositeNode")
    node.SetLayoutName(view_name)
    return scene.AddNode(node)


def apply_hanging_plan(
    scene: Any, plan: HangingPlan, volumes: Mapping[str, Any], fit: bool = True
) -> dict[str, Any]:
    """Show a hanging plan: set the layout, and each view's volume, orientation and preset.

    Parameters
    ----------
    scene
        The ``vtkMRMLScene``.
    plan
        The plan to show.
    volumes
        SeriesInstanceUID -> loaded ``vtkMRMLScalarVolumeNode`` for every assigned series. A
        prior volume may already observe a registration transform; views then show it
        registered.
    fit
        Centre each view on its volume (world RAS, after transforms) and fit the field of view
        to it.

    Returns
    -------
    dict
        View name -> its ``vtkMRMLSliceNode``.

    Raises
    ------
    KeyError
        When a series of the plan has no volume in ``volumes`` (the message names the UID).
    """
    missing = [a.series_uid for a in plan.assignments if a.series_uid not in volumes]
    if missing:
        raise KeyError(f"no loaded volume for series {', '.join(missing)}")
    arrangement_name, _, has_3d = LAYOUTS[plan.layout]
    layout_node = layout_node_of(scene)
    if has_3d and scene.GetSingletonNode(THREE_D_VIEW_NAME, "vtkMRMLViewNode") is None:
        view = scene.CreateNodeByClass("vtkMRMLViewNode")
        view.SetLayoutName(THREE_D_VIEW_NAME)
        scene.AddNode(view)

    slice_nodes: dict[str, Any] = {}
    for assignment in plan.assignments:
        volume = volumes[assignment.series_uid]
        slice_node = slice_node_for(scene, assignment.view)
        slice_node.SetOrientation(assignment.orientation)
        composite = composite_node_for(scene, assignment.view)
        composite.SetBackgroundVolumeID(volume.GetID())
        composite.SetForegroundVolumeID(None)
        composite.SetLinkedControl(bool(plan.link))
        apply_preset(volume, assignment.preset)
        if fit:
            fit_slice_to_volume(slice_node, volume)
        slice_nodes[assignment.view] = slice_node
    layout_node.SetViewArrangement(getattr(layout_node, arrangement_name))
    logger.info("hanging plan %s shown in %d views", plan.rule, len(slice_nodes))
    return slice_nodes


def register_and_show(
    scene: Any,
    plan: HangingPlan,
    volumes: Mapping[str, Any],
    settings: RigidSettings | None = None,
) -> dict[str, VolumeRegistration]:
    """Register the plan's prior volumes to its current volume (if the rule asks), then show it.

    Parameters
    ----------
    scene
        The ``vtkMRMLScene``.
    plan
        The plan; ``plan.register_priors`` decides whether priors are registered.
    volumes
        SeriesInstanceUID -> loaded volume node, for every assigned series.
    settings
        Registration parameters.

    Returns
    -------
    dict
        Prior SeriesInstanceUID -> its registration (transform node and quality figures);
        empty when the rule does not register or the plan shows no current series.
    """
    registrations: dict[str, VolumeRegistration] = {}
    current = [a.series_uid for a in plan.assignments if a.role == "current"]
    priors = list(dict.fromkeys(a.series_uid for a in plan.assignments if a.role == "prior"))
    if plan.register_priors and current:
        missing = [uid for uid in [current[0], *priors] if uid not in volumes]
        if missing:
            raise KeyError(f"no loaded volume for series {', '.join(missing)}")
        for series_uid in priors:
            registrations[series_uid] = register_prior_volume(
                scene, volumes[current[0]], volumes[series_uid], settings
            )
    apply_hanging_plan(scene, plan, volumes)
    return registrations


def fit_slice_to_volume(slice_node: Any, volume: Any) -> None:
    """Centre a slice view on a volume and fit its field of view to the volume's extent.

    Uses the volume's world bounds (RAS mm, parent transforms applied), so a registered prior
    is framed where it is shown.
    """
    bounds = [0.0] * 6
    volume.GetRASBounds(bounds)
    extent_mm = [bounds[1] - bounds[0], bounds[3] - bounds[2], bounds[5] - bounds[4]]
    centre_ras = [
        (bounds[0] + bounds[1]) / 2,
        (bounds[2] + bounds[3]) / 2,
        (bounds[4] + bounds[5]) / 2,
    ]
    in_plane = {"Axial": (0, 1), "Coronal": (0, 2), "Sagittal": (1, 2)}.get(
        slice_node.GetOrientation(), (0, 1)
    )
    horizontal_mm = max(extent_mm[in_plane[0]], 1.0)
    vertical_mm = max(extent_mm[in_plane[1]], 1.0)
    dimensions = slice_node.GetDimensions()
    aspect = dimensions[1] / dimensions[0] if dimensions[0] else 1.0
    width_mm = max(horizontal_mm, vertical_mm / aspect)
    slice_node.SetFieldOfView(width_mm, width_mm * aspect, slice_node.GetFieldOfView()[2])
    slice_node.JumpSliceByCentering(*centre_ras)

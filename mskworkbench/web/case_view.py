"""What the browser viewer shows of one case, as MRML: the two slice views and linked scrolling.

This part knows the scene and trame-slicer's views but no web widgets. Everything here runs on
the server's event-loop thread, which owns the scene.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import slicer
import vtk

from MSKPriorsLib.app_context import AppContext

logger = logging.getLogger(__name__)

CURRENT_VIEW = "Current"
PRIOR_VIEW = "Prior"
THREED_VIEW = "ThreeD"

#: The 3D view looks at the bones from this far above the anterior direction.
THREED_ELEVATION_DEG = 35.0


def context_for(slicer_app: Any) -> AppContext:
    """Wrap trame-slicer's scene and logics in the :class:`AppContext` the Lib code expects.

    trame-slicer registers the module logics under the names Slicer uses, except the models
    logic, which is added here so the same Lib functions run on the viewer's scene.
    """
    if slicer_app.app_logic.GetModuleLogic("Models") is None:
        # The application logic does not own its module logics: keep a reference alive.
        slicer_app.models_logic = slicer_app.register_module_logic(
            slicer.vtkSlicerModelsLogic(), logic_name="Models"
        )
    return AppContext.from_application_logic(slicer_app.scene, slicer_app.app_logic)


class CaseView:
    """The current and prior volumes of one case in trame-slicer's views.

    Parameters
    ----------
    slicer_app
        trame-slicer's ``SlicerApp`` (scene, logics, view manager).
    """

    def __init__(self, slicer_app: Any) -> None:
        self.slicer_app = slicer_app
        self.context = context_for(slicer_app)
        self.current: Any = None
        self.prior: Any = None
        self.prior_transform: Any = None
        self.linked = True
        self.focus_ras_mm: tuple[float, float, float] | None = None
        self._syncing = False
        self._observed: list[tuple[Any, int]] = []

    @property
    def scene(self) -> Any:
        """The viewer's MRML scene."""
        return self.slicer_app.scene

    def _view(self, view_id: str) -> Any:
        return self.slicer_app.view_manager.get_view(view_id)

    def clear(self) -> None:
        """Remove the case's data nodes from the scene (views and singletons stay)."""
        for node in (self.current, self.prior, self.prior_transform):
            if node is not None:
                self.scene.RemoveNode(node)
        for class_name in ("vtkMRMLModelNode", "vtkMRMLMarkupsFiducialNode"):
            for node in list(self._nodes_of_class(class_name)):
                self.scene.RemoveNode(node)
        self.current = self.prior = self.prior_transform = None
        self.focus_ras_mm = None

    def _nodes_of_class(self, class_name: str) -> list[Any]:
        collection = self.scene.GetNodesByClass(class_name)
        return [collection.GetItemAsObject(i) for i in range(collection.GetNumberOfItems())]

    def show_current(self, node: Any) -> None:
        """Show ``node`` in the current slice view and make it the reference for the 3D view."""
        self.current = node
        self._show_in(CURRENT_VIEW, node)

    def show_prior(self, node: Any, current_to_prior_ras: np.ndarray | None = None) -> None:
        """Show ``node`` in the prior view, under its registration to the current volume.

        Parameters
        ----------
        node
            The prior volume.
        current_to_prior_ras
            4x4 matrix taking current RAS (mm) to the same anatomy in prior RAS (mm), as the
            rigid registration returns it (the transform node's "from parent" matrix);
            identity when None (both series in the scanner's frame).
        """
        self.prior = node
        transform = self.scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "Prior registration")
        node.SetAndObserveTransformNodeID(transform.GetID())
        self.prior_transform = transform
        self.set_prior_registration(current_to_prior_ras)
        self._show_in(PRIOR_VIEW, node)
        self._observe_slices()

    def set_prior_registration(self, current_to_prior_ras: np.ndarray | None) -> None:
        """Set the prior's registration (current RAS -> prior RAS, mm) and re-align the views."""
        if self.prior_transform is None:
            raise RuntimeError("no prior is shown")
        matrix = vtk.vtkMatrix4x4()
        if current_to_prior_ras is not None:
            for row in range(4):
                for column in range(4):
                    matrix.SetElement(row, column, float(current_to_prior_ras[row, column]))
        self.prior_transform.SetMatrixTransformFromParent(matrix)
        self._sync(CURRENT_VIEW, PRIOR_VIEW)

    def _show_in(self, view_id: str, node: Any) -> None:
        view = self._view(view_id)
        if view is None:
            raise RuntimeError(f"the layout has no view named {view_id}")
        view.set_background_volume_id(node.GetID())
        view.set_foreground_volume_id(None)
        view.fit_view_to_content()

    def _observe_slices(self) -> None:
        for view_node, tag in self._observed:
            view_node.RemoveObserver(tag)
        self._observed = []
        for view_id, other_id in ((CURRENT_VIEW, PRIOR_VIEW), (PRIOR_VIEW, CURRENT_VIEW)):
            view = self._view(view_id)
            node = view.get_view_node()
            tag = node.AddObserver(
                vtk.vtkCommand.ModifiedEvent, lambda *_, a=view_id, b=other_id: self._sync(a, b)
            )
            self._observed.append((node, tag))

    def _sync(self, source_id: str, target_id: str) -> None:
        if not self.linked or self._syncing or self.prior is None:
            return
        self._syncing = True
        try:
            source = self._view(source_id)
            target = self._view(target_id)
            offset_mm = source.get_slice_value()
            if abs(target.get_slice_value() - offset_mm) > 1e-3:
                target.set_slice_value(offset_mm)
        finally:
            self._syncing = False

    def set_linked(self, linked: bool) -> None:
        """Link (or unlink) scrolling of the current and prior views; linking aligns them now."""
        self.linked = linked
        if linked:
            self._sync(CURRENT_VIEW, PRIOR_VIEW)

    def set_slice_offset(self, view_id: str, offset_mm: float) -> None:
        """Move a slice view to ``offset_mm`` along its normal (RAS, mm)."""
        self._view(view_id).set_slice_value(offset_mm)

    def slice_offset(self, view_id: str) -> float:
        """The slice view's offset along its normal (RAS, mm)."""
        return float(self._view(view_id).get_slice_value())

    def jump_to(self, position_ras_mm: Any) -> None:
        """Move the current slice view (and the linked prior view) through a RAS point (mm)."""
        r, a, s = (float(v) for v in position_ras_mm)
        self.focus_ras_mm = (r, a, s)
        self._view(CURRENT_VIEW).get_view_node().JumpSliceByOffsetting(r, a, s)
        self._sync(CURRENT_VIEW, PRIOR_VIEW)

    def set_orientation(self, orientation: str) -> None:
        """Show the current and prior volumes in Axial, Coronal or Sagittal slices."""
        if orientation not in ("Axial", "Coronal", "Sagittal"):
            raise ValueError(f"unknown slice orientation {orientation!r}")
        for view_id in (CURRENT_VIEW, PRIOR_VIEW):
            view = self._view(view_id)
            view.set_orientation(orientation)
            if view.get_background_volume_id():
                view.fit_view_to_content()
        if self.focus_ras_mm is not None:
            self.jump_to(self.focus_ras_mm)
        self._sync(CURRENT_VIEW, PRIOR_VIEW)

    def reset_views(self) -> None:
        """Fit every view to its content; the 3D view looks at the bones from above the front."""
        for view in self.slicer_app.view_manager.get_views():
            view.reset_view()
        threed = self._view(THREED_VIEW)
        camera_node = threed.get_camera_node() if threed is not None else None
        if camera_node is not None:
            camera = camera_node.GetCamera()
            camera.Elevation(THREED_ELEVATION_DEG)
            camera.OrthogonalizeViewUp()
            threed.reset_camera()
            threed.schedule_render()

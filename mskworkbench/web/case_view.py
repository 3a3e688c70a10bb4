"""What the browser viewer shows of one case, as MRML: the hung slice views and linked scrolling.

The hanging protocol decides which series each slice view shows and in which orientation;
prior volumes are shown under their registration to the current volume, so views of the same
orientation scroll together through the same anatomy when linked. This part knows the scene
and trame-slicer's views but no web widgets. Everything here runs on the server's event-loop
thread, which owns the scene.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import slicer
import vtk

from MSKPriorsLib.app_context import AppContext
from MSKPriorsLib.hanging_views import fit_slice_to_volume
from mskworkbench.web.hanging_layout import THREED_VIEW

logger = logging.getLogger(__name__)

ORIENTATIONS = ("Axial", "Coronal", "Sagittal")

#: Slice normals closer than this (cosine) are the same orientation for linked scrolling.
SAME_NORMAL_COSINE = 0.999

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


@dataclass(frozen=True)
class HungView:
    """One slice view of the hanging: the series it shows, in which orientation.

    Attributes
    ----------
    view
        Slice view name (``Red``, ``Yellow``, ``Green``, ``Slice4``).
    series_uid
        SeriesInstanceUID of the volume shown (a key of :attr:`CaseView.volumes`).
    orientation
        ``Axial``, ``Coronal`` or ``Sagittal``, as the protocol names it.
    """

    view: str
    series_uid: str
    orientation: str


def own_plane(volume_node: Any) -> str:
    """The orientation of the plane a single-slice image lies in (a radiograph), by its normal."""
    matrix = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(matrix)
    normal = np.abs([matrix.GetElement(row, 2) for row in range(3)])
    return ("Sagittal", "Coronal", "Axial")[int(np.argmax(normal))]


class CaseView:
    """The volumes of one case in trame-slicer's views, as the hanging protocol hangs them.

    Parameters
    ----------
    slicer_app
        trame-slicer's ``SlicerApp`` (scene, logics, view manager).

    Attributes
    ----------
    current
        The current volume node: the reference for registration, landmarks and bones.
    volumes
        SeriesInstanceUID -> volume node, current and prior series.
    transforms
        Prior SeriesInstanceUID -> its registration transform node.
    hung
        The slice views shown, in reading order.
    """

    def __init__(self, slicer_app: Any) -> None:
        self.slicer_app = slicer_app
        self.context = context_for(slicer_app)
        self.current: Any = None
        self.volumes: dict[str, Any] = {}
        self.transforms: dict[str, Any] = {}
        self.hung: list[HungView] = []
        self.orientation_override = ""
        self.linked = True
        self.focus_ras_mm: tuple[float, float, float] | None = None
        self._syncing = False
        self._observed: list[tuple[Any, int]] = []
        #: View name -> the field-of-view width (mm) the last fit gave it.
        self._fitted_width_mm: dict[str, float] = {}

    @property
    def scene(self) -> Any:
        """The viewer's MRML scene."""
        return self.slicer_app.scene

    def _view(self, view_id: str) -> Any:
        return self.slicer_app.view_manager.get_view(view_id)

    @property
    def shown_views(self) -> list[str]:
        """Names of the slice views that show a volume, in reading order."""
        return [hung.view for hung in self.hung]

    def clear(self) -> None:
        """Remove the case's data nodes from the scene (views and singletons stay)."""
        self._stop_observing()
        for view_id in self.shown_views:
            view = self._view(view_id)
            if view is not None:
                view.set_background_volume_id(None)
        for node in [*self.volumes.values(), *self.transforms.values()]:
            if node.GetScene() is not None:
                self.scene.RemoveNode(node)
        for class_name in ("vtkMRMLModelNode", "vtkMRMLMarkupsNode"):
            for node in list(self._nodes_of_class(class_name)):
                self.scene.RemoveNode(node)
        self.current = None
        self.volumes = {}
        self.transforms = {}
        self.hung = []
        self._fitted_width_mm = {}
        self.focus_ras_mm = None

    def _nodes_of_class(self, class_name: str) -> list[Any]:
        collection = self.scene.GetNodesByClass(class_name)
        return [collection.GetItemAsObject(i) for i in range(collection.GetNumberOfItems())]

    def add_current(self, series_uid: str, node: Any) -> None:
        """Add the current volume: the reference of the case."""
        self.current = node
        self.volumes[series_uid] = node

    def add_volume(self, series_uid: str, node: Any) -> None:
        """Add another series of the current study (shown in the scanner frame)."""
        self.volumes[series_uid] = node

    def add_prior(
        self, series_uid: str, node: Any, current_to_prior_ras: np.ndarray | None = None
    ) -> None:
        """Add a prior volume under its registration to the current volume.

        Parameters
        ----------
        series_uid
            The prior series' SeriesInstanceUID.
        node
            The prior volume.
        current_to_prior_ras
            4x4 matrix taking current RAS (mm) to the same anatomy in prior RAS (mm), as the
            rigid registration returns it (the transform node's "from parent" matrix);
            identity when None (both series in the scanner's frame).
        """
        self.volumes[series_uid] = node
        transform = self.scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "Prior registration")
        node.SetAndObserveTransformNodeID(transform.GetID())
        self.transforms[series_uid] = transform
        self.set_prior_registration(series_uid, current_to_prior_ras)

    def remove_volume(self, series_uid: str) -> None:
        """Remove a series (and its registration) that the hanging no longer shows."""
        for store in (self.volumes, self.transforms):
            node = store.pop(series_uid, None)
            if node is not None and node.GetScene() is not None:
                self.scene.RemoveNode(node)

    def set_prior_registration(
        self, series_uid: str, current_to_prior_ras: np.ndarray | None
    ) -> None:
        """Set a prior's registration (current RAS -> prior RAS, mm) and re-align the views."""
        transform = self.transforms.get(series_uid)
        if transform is None:
            raise RuntimeError(f"no prior series {series_uid} is shown")
        matrix = vtk.vtkMatrix4x4()
        if current_to_prior_ras is not None:
            for row in range(4):
                for column in range(4):
                    matrix.SetElement(row, column, float(current_to_prior_ras[row, column]))
        transform.SetMatrixTransformFromParent(matrix)
        self.align_views()

    def hang(self, views: Sequence[HungView]) -> None:
        """Show each view's series in its orientation and link the views; others are emptied.

        Raises
        ------
        RuntimeError
            When the layout has no such view.
        KeyError
            When a view's series has not been added.
        """
        self._stop_observing()
        for old in self.shown_views:
            if old not in {hung.view for hung in views} and self._view(old) is not None:
                self._view(old).set_background_volume_id(None)
        for hung in views:
            if hung.series_uid not in self.volumes:
                raise KeyError(f"series {hung.series_uid} of view {hung.view} is not loaded")
            view = self._view(hung.view)
            if view is None:
                raise RuntimeError(f"the layout has no view named {hung.view}")
            view.set_background_volume_id(self.volumes[hung.series_uid].GetID())
            view.set_foreground_volume_id(None)
        self.hung = list(views)
        self._apply_orientations()
        self._observe_slices()
        self.align_views()

    def _orientation_of(self, hung: HungView) -> str:
        node = self.volumes[hung.series_uid]
        image = node.GetImageData()
        if image is not None and image.GetDimensions()[2] == 1:
            # A radiograph is one plane: another orientation would show it edge-on.
            return own_plane(node)
        return self.orientation_override or hung.orientation

    def _apply_orientations(self) -> None:
        for hung in self.hung:
            view = self._view(hung.view)
            view.set_orientation(self._orientation_of(hung))
            self.fit_view(hung.view)

    def fit_view(self, view_id: str) -> None:
        """Centre a slice view on its volume and show all of it, at the view's own aspect.

        The field of view covers the volume's extent in the view's orientation (world RAS mm,
        registration applied) in both directions of the view's current size in pixels.
        """
        hung = next((h for h in self.hung if h.view == view_id), None)
        if hung is None:
            return
        view = self._view(view_id)
        slice_node = view.get_view_node()
        width_px, height_px = view.render_window().GetSize()[:2]
        logic = self.slicer_app.app_logic.GetSliceLogic(slice_node)
        if logic is not None and width_px > 0 and height_px > 0:
            logic.ResizeSliceNode(width_px, height_px)
        fit_slice_to_volume(slice_node, self.volumes[hung.series_uid])
        self._fitted_width_mm[view_id] = float(slice_node.GetFieldOfView()[0])
        view.schedule_render()

    def _on_view_resized(self, view_id: str) -> None:
        """Fit a view again when the page resized it, unless the reader zoomed it since.

        Slicer keeps the field-of-view width when a view changes shape, which crops a view
        that became wider than it was when it was fitted.
        """
        fitted_mm = self._fitted_width_mm.get(view_id)
        if fitted_mm is None:
            return
        slice_node = self._view(view_id).get_view_node()
        if abs(float(slice_node.GetFieldOfView()[0]) - fitted_mm) > 1e-3 * max(fitted_mm, 1.0):
            return
        offset_mm = self.slice_offset(view_id)
        self.fit_view(view_id)
        self.set_slice_offset(view_id, offset_mm)

    def _stop_observing(self) -> None:
        for view_node, tag in self._observed:
            view_node.RemoveObserver(tag)
        self._observed = []

    def _observe_slices(self) -> None:
        self._stop_observing()
        for view_id in self.shown_views:
            view = self._view(view_id)
            node = view.get_view_node()
            tag = node.AddObserver(
                vtk.vtkCommand.ModifiedEvent, lambda *_, source=view_id: self._sync_from(source)
            )
            self._observed.append((node, tag))
            # The page's resize sets the render window's size, then the slice node's.
            window = view.render_window()
            tag = window.AddObserver(
                vtk.vtkCommand.WindowResizeEvent,
                lambda *_, source=view_id: self._on_view_resized(source),
            )
            self._observed.append((window, tag))

    def _normal(self, view_id: str) -> np.ndarray:
        matrix = self._view(view_id).get_view_node().GetSliceToRAS()
        return np.array([matrix.GetElement(row, 2) for row in range(3)])

    def _sync_from(self, source_id: str) -> None:
        """Scroll every other shown view of the same orientation to the source's offset."""
        if not self.linked or self._syncing or len(self.hung) < 2 or self._is_flat(source_id):
            return
        self._syncing = True
        try:
            normal = self._normal(source_id)
            offset_mm = self._view(source_id).get_slice_value()
            for target_id in self.shown_views:
                if target_id == source_id or self._is_flat(target_id):
                    continue
                if float(np.dot(normal, self._normal(target_id))) < SAME_NORMAL_COSINE:
                    continue
                target = self._view(target_id)
                if abs(target.get_slice_value() - offset_mm) > 1e-3:
                    target.set_slice_value(offset_mm)
        finally:
            self._syncing = False

    def align_views(self) -> None:
        """Bring linked views to the slice of the first view of their orientation."""
        seen: list[np.ndarray] = []
        for view_id in self.shown_views:
            normal = self._normal(view_id)
            if any(float(np.dot(normal, other)) >= SAME_NORMAL_COSINE for other in seen):
                continue
            seen.append(normal)
            self._sync_from(view_id)

    def set_linked(self, linked: bool) -> None:
        """Link (or unlink) scrolling of views of the same orientation; linking aligns them."""
        self.linked = linked
        if linked:
            self.align_views()

    def set_slice_offset(self, view_id: str, offset_mm: float) -> None:
        """Move a slice view to ``offset_mm`` along its normal (RAS, mm)."""
        self._view(view_id).set_slice_value(offset_mm)

    def slice_offset(self, view_id: str) -> float:
        """The slice view's offset along its normal (RAS, mm)."""
        return float(self._view(view_id).get_slice_value())

    def _is_flat(self, view_id: str) -> bool:
        """Whether a view shows a single image (a radiograph), whose frame is its own.

        A radiograph's coordinates are not patient coordinates, so its view neither scrolls
        other views nor follows them.
        """
        hung = next((h for h in self.hung if h.view == view_id), None)
        node = self.volumes.get(hung.series_uid) if hung is not None else None
        image = node.GetImageData() if node is not None else None
        return image is not None and image.GetDimensions()[2] == 1

    def view_node_ids(self, view_ids: Sequence[str]) -> list[str]:
        """The MRML view node IDs of named views (slice views and the 3D view)."""
        found = [self._view(view_id) for view_id in view_ids]
        return [view.get_view_node().GetID() for view in found if view is not None]

    def views_showing(self, series_uid: str) -> list[str]:
        """The shown slice views that show one series, in reading order."""
        return [hung.view for hung in self.hung if hung.series_uid == series_uid]

    def jump_to(self, position_ras_mm: Any, views: Sequence[str] | None = None) -> None:
        """Move the shown slice views (or only ``views``) through a RAS point (mm)."""
        r, a, s = (float(v) for v in position_ras_mm)
        if views is None:
            self.focus_ras_mm = (r, a, s)
        for view_id in self.shown_views if views is None else views:
            self._view(view_id).get_view_node().JumpSliceByOffsetting(r, a, s)

    def set_orientation(self, orientation: str) -> None:
        """Show every slice view in one orientation, or (empty) each in the protocol's own.

        Raises
        ------
        ValueError
            For an orientation other than Axial, Coronal, Sagittal or empty.
        """
        if orientation and orientation not in ORIENTATIONS:
            raise ValueError(f"unknown slice orientation {orientation!r}")
        self.orientation_override = orientation
        self._apply_orientations()
        if self.focus_ras_mm is not None:
            self.jump_to(self.focus_ras_mm)
        self.align_views()

    def reset_views(self) -> None:
        """Fit every view to its whole volume; the 3D view looks at the bones from above the front."""
        for view_id in self.shown_views:
            self.fit_view(view_id)
        threed = self._view(THREED_VIEW)
        camera_node = threed.get_camera_node() if threed is not None else None
        if camera_node is not None:
            threed.reset_view()
            camera = camera_node.GetCamera()
            camera.Elevation(THREED_ELEVATION_DEG)
            camera.OrthogonalizeViewUp()
            threed.reset_camera()
            threed.schedule_render()

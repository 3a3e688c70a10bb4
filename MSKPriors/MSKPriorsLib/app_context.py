"""One object that owns an MRML scene and the module logics that work on it.

Headless, the context builds the scene, the application logic and every module logic itself,
the way the Slicer application does at start-up. In desktop Slicer it wraps the application's
own scene and logics, so the same Lib code runs unchanged in both.
"""

from __future__ import annotations

import importlib.util
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import slicer
import vtk

logger = logging.getLogger(__name__)

#: Names under which the Slicer application registers the module logics used here.
LOGIC_NAMES = (
    "Colors",
    "Volumes",
    "Segmentations",
    "Markups",
    "Models",
    "SubjectHierarchy",
    "Terminologies",
    "Data",
)


def default_share_directory() -> Path | None:
    """Return the folder holding Slicer's terminology tables for headless use, if installed.

    Returns
    -------
    pathlib.Path or None
        trame-slicer ships the share folder that slicer-core lacks; it is located without
        importing trame-slicer, so this layer stays free of web code.
    """
    spec = importlib.util.find_spec("trame_slicer")
    if spec is None or spec.origin is None:
        return None
    resources = Path(spec.origin).parent / "resources"
    return resources if resources.is_dir() else None


@dataclass
class AppContext:
    """A configured MRML scene with its application logic and module logics.

    Build it with :meth:`create_headless` or :meth:`from_application_logic`; do not call the
    constructor directly.
    """

    scene: Any
    app_logic: Any
    logics: dict[str, Any]
    _keep_alive: list[Any] = field(default_factory=list, repr=False)

    @classmethod
    def create_headless(cls, share_directory: Path | None = None) -> AppContext:
        """Create a new scene with the application logic and module logics, without Qt.

        Parameters
        ----------
        share_directory
            Folder with Slicer's ``terminologies`` tables; found automatically when omitted.
        """
        scene = slicer.vtkMRMLScene()
        crosshair = slicer.vtkMRMLCrosshairNode()
        crosshair.SetCrosshairName("default")
        scene.AddNode(crosshair)

        app_logic = slicer.vtkSlicerApplicationLogic()
        app_logic.SetMRMLScene(scene)
        app_logic.GetColorLogic().SetMRMLScene(scene)
        app_logic.GetColorLogic().AddDefaultColorNodes()
        app_logic.SetSliceLogics(vtk.vtkCollection())
        app_logic.SetViewLogics(vtk.vtkCollection())
        slicer.vtkMRMLSliceNode.AddDefaultSliceOrientationPresets(scene, True)

        share = share_directory or default_share_directory()
        context = cls(scene=scene, app_logic=app_logic, logics={})
        context._register("Colors", slicer.vtkMRMLColorLogic(), share)
        context._register("Volumes", slicer.vtkSlicerVolumesLogic(), share)
        terminologies = share / "terminologies" if share else None
        context._register(
            "Terminologies", slicer.vtkSlicerTerminologiesModuleLogic(), terminologies
        )
        context._register("Segmentations", slicer.vtkSlicerSegmentationsModuleLogic(), share)
        context._register("Markups", slicer.vtkSlicerMarkupsLogic(), share)
        context._register("Models", slicer.vtkSlicerModelsLogic(), share)
        context._register("SubjectHierarchy", slicer.vtkSlicerSubjectHierarchyModuleLogic(), share)
        context._register("Data", slicer.vtkSlicerDataModuleLogic(), share)
        context._add_data_io()
        return context

    @classmethod
    def from_application_logic(cls, scene: Any, app_logic: Any) -> AppContext:
        """Wrap the desktop application's scene and its registered module logics.

        Parameters
        ----------
        scene
            The desktop application's scene.
        app_logic
            The desktop application logic; its module logics are looked up by name.
        """
        logics = {name: app_logic.GetModuleLogic(name) for name in LOGIC_NAMES}
        missing = [name for name, logic in logics.items() if logic is None]
        if missing:
            raise RuntimeError(f"the application has no module logic for: {', '.join(missing)}")
        return cls(scene=scene, app_logic=app_logic, logics=logics)

    def _register(self, name: str, logic: Any, share: Path | None) -> None:
        if share is not None and hasattr(logic, "SetModuleShareDirectory"):
            logic.SetModuleShareDirectory(share.as_posix())
        logic.SetMRMLScene(self.scene)
        logic.SetMRMLApplicationLogic(self.app_logic)
        self.app_logic.SetModuleLogic(name, logic)
        self.logics[name] = logic

    def _add_data_io(self) -> None:
        """Give the scene the remote-IO and data-IO managers that ``.mrb`` reading needs."""
        cache = tempfile.TemporaryDirectory(prefix="mskwb-cache-")
        remote_io = slicer.vtkMRMLRemoteIOLogic()
        remote_io.SetMRMLScene(self.scene)
        remote_io.SetMRMLApplicationLogic(self.app_logic)
        remote_io.GetCacheManager().SetRemoteCacheDirectory(cache.name)
        data_io = slicer.vtkDataIOManagerLogic()
        data_io.SetMRMLScene(self.scene)
        data_io.SetMRMLApplicationLogic(self.app_logic)
        data_io.SetAndObserveDataIOManager(remote_io.GetDataIOManager())
        remote_io.AddDataIOToScene()
        self._keep_alive.extend([cache, remote_io, data_io])

    @property
    def volumes_logic(self) -> Any:
        """``vtkSlicerVolumesLogic`` of this scene."""
        return self.logics["Volumes"]

    @property
    def segmentations_logic(self) -> Any:
        """``vtkSlicerSegmentationsModuleLogic`` of this scene."""
        return self.logics["Segmentations"]

    @property
    def markups_logic(self) -> Any:
        """``vtkSlicerMarkupsLogic`` of this scene."""
        return self.logics["Markups"]

    @property
    def models_logic(self) -> Any:
        """``vtkSlicerModelsLogic`` of this scene."""
        return self.logics["Models"]

    @property
    def subject_hierarchy_logic(self) -> Any:
        """``vtkSlicerSubjectHierarchyModuleLogic`` of this scene."""
        return self.logics["SubjectHierarchy"]

    @property
    def color_logic(self) -> Any:
        """``vtkMRMLColorLogic`` of this scene."""
        return self.logics["Colors"]

    @property
    def terminologies_logic(self) -> Any:
        """``vtkSlicerTerminologiesModuleLogic`` of this scene."""
        return self.logics["Terminologies"]

    @property
    def subject_hierarchy(self) -> Any:
        """The scene's ``vtkMRMLSubjectHierarchyNode``, created if the scene has none yet."""
        return slicer.vtkMRMLSubjectHierarchyNode.ResolveSubjectHierarchy(self.scene)

    def save_mrb(self, path: Path) -> None:
        """Write the whole scene with its data into one Medical Reality Bundle file.

        Raises
        ------
        OSError
            If the scene could not be written.
        """
        path = Path(path).resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        self.scene.SetRootDirectory(path.parent.as_posix())
        if not self.scene.WriteToMRB(path.as_posix()):
            raise OSError(f"could not write the scene to {path}")
        logger.info("scene written to %s", path)

    def load_mrb(self, path: Path, clear: bool = True) -> None:
        """Read a Medical Reality Bundle into this scene.

        Parameters
        ----------
        path
            The ``.mrb`` file.
        clear
            Remove what the scene holds before reading (as opening a scene in Slicer does).

        Raises
        ------
        OSError
            If the file is missing or the scene could not be read.
        """
        path = Path(path).resolve()
        if not path.is_file():
            raise OSError(f"no scene file at {path}")
        if not self.scene.ReadFromMRB(path.as_posix(), clear):
            raise OSError(f"could not read the scene from {path}")
        logger.info("scene read from %s", path)

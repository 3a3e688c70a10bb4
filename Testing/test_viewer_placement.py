"""A click in a slice view that shows a prior study places no landmark of the current study."""

from __future__ import annotations

import pytest
import vtk

from MSKPriorsLib.app_context import AppContext
from mskworkbench.web.placement import ClickPlacement


@pytest.mark.parametrize(("shows_prior", "reaches_the_view"), [(True, False), (False, True)])
def test_a_press_in_place_mode_reaches_only_a_view_of_the_current_study(
    app_context: AppContext, shows_prior: bool, reaches_the_view: bool
) -> None:
    scene = app_context.scene
    interaction = scene.GetNodeByID("vtkMRMLInteractionNodeSingleton")
    if interaction is None:
        interaction = scene.AddNewNodeByClass("vtkMRMLInteractionNode")
        interaction.SetSingletonTag("Singleton")
    refused: list[str] = []
    placement = ClickPlacement(
        scene, None, lambda _status: None, lambda view: shows_prior, refused.append
    )
    interactor = vtk.vtkRenderWindowInteractor()
    seen: list[str] = []
    # The view's interactor style observes presses below the placement guard's priority.
    interactor.AddObserver(vtk.vtkCommand.LeftButtonPressEvent, lambda *_: seen.append("press"))
    interactor.AddObserver(vtk.vtkCommand.LeftButtonReleaseEvent, lambda *_: seen.append("up"))
    placement.guard_view("Green", interactor)
    interaction.SwitchToSinglePlaceMode()

    interactor.InvokeEvent(vtk.vtkCommand.LeftButtonPressEvent)
    interactor.InvokeEvent(vtk.vtkCommand.LeftButtonReleaseEvent)

    assert (seen == ["press", "up"]) is reaches_the_view
    assert seen in ([], ["press", "up"])
    assert refused == ([] if reaches_the_view else ["Green"])


def test_a_press_outside_place_mode_always_reaches_the_view(app_context: AppContext) -> None:
    placement = ClickPlacement(app_context.scene, None, lambda _status: None, lambda _view: True)
    interactor = vtk.vtkRenderWindowInteractor()
    seen: list[str] = []
    interactor.AddObserver(vtk.vtkCommand.LeftButtonPressEvent, lambda *_: seen.append("press"))
    placement.guard_view("Green", interactor)

    interactor.InvokeEvent(vtk.vtkCommand.LeftButtonPressEvent)

    assert seen == ["press"]

"""Placing a landmark with clicks in the slice views: reliably, and visibly to the reader.

Slicer's markups widget places a point where the last mouse *move* in place mode left its
preview. A press that arrives with no move after place mode was switched on (a touch tap, a
pen, or a click with the pointer already resting over the view) would otherwise be ignored.
:class:`ClickPlacement` therefore makes every left-button press in place mode pass a mouse move
at the press position first, so the first click after choosing "place" always lands where it
was made. It also follows the placement (which label, how many points of how many, whether
the views are armed) and tells the page after every change.

The page's trigger that starts a placement and the clicks in a view travel over the same
WebSocket and are handled in the order sent, so arming is always complete before the click
is processed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import slicer
import vtk

logger = logging.getLogger(__name__)

#: Observer priority above the view's interactor style, so the move is processed first.
BEFORE_STYLE_PRIORITY = 10.0


@dataclass(frozen=True)
class PlacementStatus:
    """What is being placed, as the page shows it.

    Attributes
    ----------
    label
        The landmark label or endplate line name; empty when nothing is being placed.
    points_placed, points_needed
        Clicks made and clicks needed (1 for a point, 2 for a line).
    ready
        Whether the views are armed: the next click in a slice view places the next point.
    """

    label: str = ""
    points_placed: int = 0
    points_needed: int = 0
    ready: bool = False

    def to_state(self) -> dict[str, Any] | None:
        """The status as page state; None when nothing is being placed."""
        if not self.label:
            return None
        return {
            "label": self.label,
            "points_placed": self.points_placed,
            "points_needed": self.points_needed,
            "ready": self.ready,
        }


class ClickPlacement:
    """Arms the slice views for placing one landmark and reports how the placement goes.

    Parameters
    ----------
    scene
        The viewer's ``vtkMRMLScene`` (holds the interaction node singleton).
    markups_logic
        trame-slicer's markups logic (``SlicerApp.markups_logic``).
    on_change
        Called with the new :class:`PlacementStatus` after every change.
    """

    def __init__(
        self,
        scene: Any,
        markups_logic: Any,
        on_change: Callable[[PlacementStatus], None],
        refuses_clicks: Callable[[str], bool] = lambda _view_id: False,
        on_refused: Callable[[str], None] = lambda _view_id: None,
    ) -> None:
        self.scene = scene
        self.markups_logic = markups_logic
        self.on_change = on_change
        self.refuses_clicks = refuses_clicks
        self.on_refused = on_refused
        self.status = PlacementStatus()
        self._node: Any = None
        self._node_tags: list[int] = []
        self._guarded: dict[str, Any] = {}
        self._interaction_tag: int | None = None

    @property
    def interaction_node(self) -> Any:
        """The scene's interaction node (place or view-transform mode)."""
        return self.scene.GetNodeByID("vtkMRMLInteractionNodeSingleton")

    def _in_place_mode(self) -> bool:
        node = self.interaction_node
        return node is not None and node.GetCurrentInteractionMode() == node.Place

    def guard_view(self, view_id: str, interactor: Any) -> None:
        """Guard left presses in place mode in this view.

        A press in a view that ``refuses_clicks`` places nothing: landmarks belong to the series
        they are measured on, and a prior's or another series' anatomy lies elsewhere in its
        frame unless a registration is exact. The press is stopped before the view's interactor style sees
        it and ``on_refused`` is called. Any other press first passes a move at its position.
        """
        if self._guarded.get(view_id) is interactor:
            return
        tags: list[int] = []

        def move_before_press(caller: Any, _event: str) -> None:
            if not self._in_place_mode():
                return
            if self.refuses_clicks(view_id):
                caller.GetCommand(tags[0]).SetAbortFlag(1)
                logger.info(
                    "click in view %s refused: it does not show the measured series", view_id
                )
                self.on_refused(view_id)
                return
            caller.InvokeEvent(vtk.vtkCommand.MouseMoveEvent)

        def refuse_release(caller: Any, _event: str) -> None:
            # Slicer places a point on the click its style makes of a press and a release:
            # the release must not reach the style either.
            if self._in_place_mode() and self.refuses_clicks(view_id):
                caller.GetCommand(tags[1]).SetAbortFlag(1)

        tags.append(
            interactor.AddObserver(
                vtk.vtkCommand.LeftButtonPressEvent, move_before_press, BEFORE_STYLE_PRIORITY
            )
        )
        tags.append(
            interactor.AddObserver(
                vtk.vtkCommand.LeftButtonReleaseEvent, refuse_release, BEFORE_STYLE_PRIORITY
            )
        )
        self._guarded[view_id] = interactor

    def start(self, node: Any, label: str) -> None:
        """Arm the views so that the next click(s) place the empty markups ``node``.

        A line node takes two clicks (its two ends), a point node one; place mode ends by
        itself after the last.
        """
        self._forget_node()
        self._observe_interaction_node()
        self._node = node
        needed = 2 if node.IsA("vtkMRMLMarkupsLineNode") else 1
        for event in (
            slicer.vtkMRMLMarkupsNode.PointPositionDefinedEvent,
            slicer.vtkMRMLMarkupsNode.PointRemovedEvent,
        ):
            self._node_tags.append(node.AddObserver(event, self._on_node_changed))
        self.markups_logic.place_node(node, persistent=False)
        self.status = PlacementStatus(label, 0, needed, self._armed_for(node))
        logger.info("placing %s (%d click(s))", label, needed)
        self.on_change(self.status)

    def cancel(self) -> None:
        """Stop placing: the views go back to scrolling and panning."""
        if self.interaction_node is not None and self._in_place_mode():
            self.interaction_node.SwitchToViewTransformMode()
        self._finish()

    def _armed_for(self, node: Any) -> bool:
        active = self.markups_logic.GetActiveListID() if node is not None else ""
        return self._in_place_mode() and active == node.GetID()

    def _observe_interaction_node(self) -> None:
        if self._interaction_tag is not None or self.interaction_node is None:
            return
        self._interaction_tag = self.interaction_node.AddObserver(
            slicer.vtkMRMLInteractionNode.InteractionModeChangedEvent, self._on_mode_changed
        )

    def _on_node_changed(self, node: Any, _event: str) -> None:
        placed = node.GetNumberOfDefinedControlPoints()
        if not self.status.label:
            return
        self.status = PlacementStatus(
            self.status.label, placed, self.status.points_needed, self._armed_for(node)
        )
        self.on_change(self.status)

    def _on_mode_changed(self, *_: Any) -> None:
        if self._node is None:
            return
        if self._in_place_mode():
            return
        self._finish()

    def _finish(self) -> None:
        if not self.status.label and self._node is None:
            return
        done = self.status
        self._forget_node()
        self.status = PlacementStatus()
        if done.label:
            logger.info("placing %s ended after %d click(s)", done.label, done.points_placed)
        self.on_change(self.status)

    def _forget_node(self) -> None:
        if self._node is not None:
            for tag in self._node_tags:
                self._node.RemoveObserver(tag)
        self._node_tags = []
        self._node = None

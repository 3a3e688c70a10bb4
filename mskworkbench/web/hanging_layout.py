"""The viewer's view layout for a hanging protocol, taken from Slicer's own layout descriptions.

A hanging protocol names a layout (``1x1``, ``1x2``, ``2x2``, ``2x2-3d``; see
:data:`MSKPriorsLib.hanging_protocols.LAYOUTS`), which is a Slicer view arrangement. Slicer's
layout logic gives the arrangement as its XML description; trame-slicer turns that into the
page's grid of views (:func:`trame_slicer.views.slicer_layout_to_vue`), so the browser shows
the views where desktop Slicer does, under the same names (``Red``, ``Yellow``, ``Green``,
``Slice4``). The 3D view of such a layout becomes the viewer's bone view.

Arrangements without a 3D view get the bone view in a strip below them when the case has
reconstructed bones, so the 3D bones stay in sight; without bones no empty 3D view is shown.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import slicer
from trame_slicer.views import (
    Layout,
    LayoutDirection,
    ViewLayoutDefinition,
    ViewProps,
    ViewType,
    slicer_layout_to_vue,
)

from MSKPriorsLib.hanging_protocols import LAYOUTS

logger = logging.getLogger(__name__)

THREED_VIEW = "ThreeD"

#: Slicer's colours of its slice views, used for each view's frame and label.
VIEW_COLORS = {"Red": "#F34A33", "Yellow": "#EDD54C", "Green": "#6EB04B", "Slice4": "#8C8C8C"}

#: Layout before a case is open: one empty slice view.
EMPTY_LAYOUT = "1x1"


@functools.cache
def slicer_layout_description(layout_name: str) -> str:
    """Slicer's XML layout description of a hanging-protocol layout name.

    Raises
    ------
    KeyError
        For a name that is not a key of :data:`~MSKPriorsLib.hanging_protocols.LAYOUTS`.
    """
    if layout_name not in LAYOUTS:
        raise KeyError(f"unknown layout {layout_name!r} (known: {', '.join(LAYOUTS)})")
    scene = slicer.vtkMRMLScene()
    slicer.vtkMRMLSliceNode.AddDefaultSliceOrientationPresets(scene, True)
    logic = slicer.vtkMRMLLayoutLogic()
    logic.SetMRMLScene(scene)
    layout_node = logic.GetLayoutNode()
    layout_node.SetViewArrangement(getattr(layout_node, LAYOUTS[layout_name][0]))
    return str(layout_node.GetCurrentLayoutDescription())


def _viewer_item(item: Any) -> Any:
    """Replace Slicer's view definitions by the viewer's, keeping names and arrangement."""
    if isinstance(item, Layout):
        return Layout(item.direction, [_viewer_item(child) for child in item.items], None)
    if item.view_type == ViewType.THREE_D_VIEW:
        return ViewLayoutDefinition.threed_view(name=THREED_VIEW, label="3D")
    name = item.singleton_tag
    return ViewLayoutDefinition(
        name,
        ViewType.SLICE_VIEW,
        ViewProps(orientation=item.properties.orientation, label=name, color=VIEW_COLORS.get(name)),
    )


def has_threed_view(layout_name: str) -> bool:
    """Whether the hanging-protocol layout has a 3D view of its own."""
    return bool(LAYOUTS[layout_name][2])


def layout_id(layout_name: str, bones_below: bool) -> str:
    """The id under which the page layout of a protocol layout is registered."""
    return (
        f"{layout_name}+bones" if bones_below and not has_threed_view(layout_name) else layout_name
    )


def page_layout(layout_name: str, bones_below: bool = False) -> Layout:
    """The page's grid of views for a hanging-protocol layout.

    Parameters
    ----------
    layout_name
        A key of :data:`~MSKPriorsLib.hanging_protocols.LAYOUTS`.
    bones_below
        Add the 3D bone view in a strip below a layout that has no 3D view.

    Returns
    -------
    Layout
        trame-slicer's layout: Slicer's arrangement with its slice view names, the 3D view
        named :data:`THREED_VIEW`.
    """
    arranged = _viewer_item(slicer_layout_to_vue(slicer_layout_description(layout_name)))
    if bones_below and not has_threed_view(layout_name):
        threed = ViewLayoutDefinition.threed_view(name=THREED_VIEW, label="3D")
        return Layout(LayoutDirection.Vertical, [arranged, threed], flex_sizes=["3", "2"])
    return arranged


def slice_view_names(layout: Layout) -> list[str]:
    """The slice views of a page layout, in reading order."""
    return [
        view.singleton_tag
        for view in _views_in_order(layout)
        if getattr(view, "view_type", None) == ViewType.SLICE_VIEW
    ]


def _views_in_order(layout: Layout) -> list[Any]:
    found: list[Any] = []
    for item in layout.items:
        found += _views_in_order(item) if isinstance(item, Layout) else [item]
    return found

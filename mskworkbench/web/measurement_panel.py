"""The page's measurement panel: measurement set, landmarks, placing, and the live table.

Only widgets live here; the actions are triggers answered by
:class:`~mskworkbench.web.landmark_panel.LandmarkPanel`. Element ids name the parts a browser
test reads or clicks.
"""

from __future__ import annotations

from typing import Any

from trame.widgets import html
from trame.widgets import vuetify3 as v3

#: Style of text that must wrap, even inside long unbroken words such as UIDs.
WRAPPED = "white-space: normal; overflow-wrap: anywhere;"

#: Style of the landmark table's cells: narrow padding, so the table fits the panel.
_CELL = "padding: 0 4px;"


def data_attribute(name: str, expression: str) -> dict[str, Any]:
    """Keyword arguments binding the HTML attribute ``data-<name>`` to a JavaScript expression."""
    return {"__properties": [(f"data_{name}", f"data-{name}")], f"data_{name}": (expression,)}


def _set_and_side() -> None:
    with v3.VCardText(classes="pb-0 d-flex flex-wrap ga-2"):
        with v3.VBtnToggle(
            v_model=("measurement_set",), mandatory=True, density="compact", id="set-toggle"
        ):
            v3.VBtn(
                "{{ item.title }}",
                v_for="item in measurement_sets",
                key="item.value",
                value=("item.value",),
                size="small",
                id=("'set-' + item.value",),
            )
        with v3.VBtnToggle(
            v_model=("side",),
            density="compact",
            id="side-toggle",
            v_if=("measurement_set !== 'cobb'",),
        ):
            v3.VBtn("Left", value="left", size="small", id="side-left")
            v3.VBtn("Right", value="right", size="small", id="side-right")
    html.Div(
        "Calibration: {{ calibration }}",
        id="calibration",
        classes="px-4 pt-1 text-caption text-medium-emphasis",
    )


def _table() -> None:
    with (
        v3.VTable(density="compact", id="measurement-table"),
        html.Tbody(),
        html.Tr(v_for="row in measurements", key="row.key", classes="measurement-row"),
    ):
        with html.Td():
            html.Div("{{ row.label }}")
            html.Div("{{ row.note }}", v_if=("row.note",), classes="text-caption")
        html.Td(
            "{{ row.value }} {{ row.uncertainty }}",
            classes="measurement-value text-no-wrap",
            **data_attribute("key", "row.key"),
        )
    with html.Div(classes="px-4 text-caption text-medium-emphasis", id="not-measured"):
        html.Div("{{ reason }}", v_for="reason in not_measured", key="reason")


def _placing_banner() -> None:
    with v3.VAlert(
        v_if=("placing",),
        density="compact",
        type="info",
        variant="tonal",
        classes="mx-4 my-2",
        id="placing",
    ):
        html.Span(
            "Placing {{ placing.label }}: click in a view of the current study"
            "{{ placing.points_needed > 1 ? ' (end ' + (placing.points_placed + 1) + ' of 2)'"
            " : '' }}. ",
            id="placing-label",
        )
        v3.VChip(
            "{{ placing.ready ? 'views ready' : 'preparing the views' }}",
            size="x-small",
            color=("placing.ready ? 'success' : 'warning'",),
            id="placing-ready",
            **data_attribute("ready", "placing.ready ? 'yes' : 'no'"),
        )
        v3.VBtn(
            "Cancel",
            size="x-small",
            variant="text",
            click="trigger('cancel_placing')",
            id="cancel-placing",
        )
        html.Div(
            "{{ placing_notice }}",
            v_if=("placing_notice",),
            id="placing-notice",
            classes="text-caption text-warning mt-1",
            style=WRAPPED,
        )


def _landmark_inputs() -> None:
    v3.VCardTitle("Landmarks (RAS mm)", classes="text-subtitle-2")
    with v3.VCardText(classes="py-0"):
        v3.VFileInput(
            v_model=("landmark_upload",),
            label="Load landmarks (.mrk.json)",
            accept=".json",
            density="compact",
            hide_details=True,
            prepend_icon="mdi-map-marker-plus",
            id="landmark-file",
        )
        v3.VAlert(
            "{{ landmark_notice }}",
            v_if=("landmark_notice",),
            type="warning",
            variant="tonal",
            density="compact",
            closable=True,
            click_close="landmark_notice = ''",
            id="landmark-notice",
            classes="my-2 text-caption",
            style=WRAPPED,
        )
        html.Div(
            "Loaded: {{ landmarks_loaded_from }}",
            v_if=("landmarks_loaded_from",),
            id="landmarks-loaded-from",
            classes="text-caption text-medium-emphasis",
        )
        with html.Div(v_if=("measurement_set === 'cobb'",), classes="d-flex align-center ga-2"):
            v3.VSelect(
                v_model=("cobb_vertebra",),
                items=("vertebrae",),
                label="Vertebra",
                density="compact",
                hide_details=True,
                id="cobb-vertebra",
                style="max-width: 110px;",
            )
            with v3.VBtnToggle(
                v_model=("cobb_endplate",), mandatory=True, density="compact", id="cobb-endplate"
            ):
                v3.VBtn("Superior", value="superior", size="small", id="endplate-superior")
                v3.VBtn("Inferior", value="inferior", size="small", id="endplate-inferior")
            v3.VBtn(
                icon="mdi-vector-line",
                size="small",
                variant="tonal",
                title="Place this endplate line with two clicks in a slice view",
                click="trigger('place_endplate', [cobb_vertebra, cobb_endplate])",
                id="place-endplate",
            )


def _landmark_rows() -> None:
    with (
        v3.VTable(density="compact", id="landmark-table"),
        html.Tbody(),
        html.Tr(v_for="lm in landmarks", key="lm.label", classes="landmark-row"),
    ):
        html.Td("{{ lm.label }}", classes="text-caption", style=_CELL + WRAPPED)
        html.Td("{{ lm.ras }}", classes="text-caption landmark-ras", style=_CELL)
        with html.Td(classes="text-no-wrap", style=_CELL):
            v3.VBtn(
                icon="mdi-crosshairs-gps",
                size="x-small",
                variant="text",
                title="Place with the next click(s) in a slice view",
                density="compact",
                click="trigger('place_landmark', [lm.label])",
                classes="place-landmark",
                **data_attribute("label", "lm.label"),
            )
            v3.VBtn(
                "{{ move.text }}",
                v_for="move in lm.moves",
                key="move.key",
                size="x-small",
                variant="text",
                min_width=0,
                disabled=("!lm.placed",),
                click="trigger('move_landmark', [lm.label, move.axis, landmark_step_mm, move.index])",
                classes=("'move-landmark px-1 move-' + move.key",),
                **data_attribute("label", "lm.label"),
            )


def measurement_panel() -> None:
    """The measurement card: set and side, calibration, table, placing, landmarks."""
    with v3.VCard(variant="flat", classes="mb-2", v_if=("current_study",)):
        v3.VCardTitle("Measurements", classes="text-subtitle-1")
        _set_and_side()
        _table()
        _placing_banner()
        _landmark_inputs()
        _landmark_rows()

"""The viewer page: search and priors on the left, views in the middle, measurements on the right.

Only widgets live here; every action calls a controller method of the viewer application.
Element ids (``id=...``) name the parts a browser test reads or clicks.
"""

from __future__ import annotations

from typing import Any

from trame.ui.vuetify3 import VAppLayout
from trame.widgets import html
from trame.widgets import vuetify3 as v3


def _data_attribute(name: str, expression: str) -> dict[str, Any]:
    """Keyword arguments binding the HTML attribute ``data-<name>`` to a JavaScript expression."""
    return {"__properties": [(f"data_{name}", f"data-{name}")], f"data_{name}": (expression,)}


def _search_panel() -> None:
    with v3.VCard(variant="flat", classes="mb-2"):
        v3.VCardTitle("Studies", classes="text-subtitle-1")
        with v3.VCardText(classes="pb-1"):
            v3.VTextField(
                id="search-text",
                v_model=("search_text",),
                label="Patient ID (wildcards * ?)",
                density="compact",
                hide_details=True,
                clearable=True,
                keyup_enter="trigger('search')",
            )
            v3.VBtn(
                "Search",
                id="search-button",
                block=True,
                size="small",
                classes="mt-2",
                color="primary",
                click="trigger('search')",
                disabled=("busy",),
            )
        with (
            v3.VList(
                density="compact",
                id="study-list",
                lines="three",
                max_height="260",
                classes="overflow-y-auto",
            ),
            v3.VListItem(
                v_for="study in studies",
                key="study.study_uid",
                click="trigger('open_study', [study.study_uid])",
                classes="study-item",
                active=("current_study && current_study.study_uid === study.study_uid",),
                disabled=("busy",),
            ),
        ):
            v3.VListItemTitle("{{ study.date }} · {{ study.description || study.modalities }}")
            v3.VListItemSubtitle("{{ study.patient_label }}", classes="study-patient")


def _priors_panel() -> None:
    with v3.VCard(variant="flat", classes="mb-2", v_if=("current_study",)):
        v3.VCardTitle("Current and priors", classes="text-subtitle-1")
        with v3.VCardText(classes="pb-1"):
            html.Div(
                "Current: {{ current_study.patient_label }} · {{ current_study.date }} · "
                "{{ current_study.description }}",
                id="current-study",
                classes="text-body-2 mb-2",
            )
            html.Div("No prior of this patient was found.", v_if=("priors.length === 0",))
            with html.Div(classes="text-caption d-flex align-center", id="registration-message"):
                v3.VProgressCircular(
                    indeterminate=True,
                    size=14,
                    width=2,
                    classes="mr-2",
                    v_if=("registration === 'running'",),
                )
                html.Span("{{ registration_message }}")
        with (
            v3.VList(density="compact", id="prior-list", lines="three"),
            v3.VListItem(
                v_for="prior in priors",
                key="prior.study_uid",
                click="trigger('open_prior', [prior.study_uid])",
                active=("prior.study_uid === selected_prior",),
                classes="prior-item",
            ),
        ):
            v3.VListItemTitle("#{{ prior.rank }} · {{ prior.date }} · score {{ prior.score }}")
            v3.VListItemSubtitle("{{ prior.reasons.join('; ') }}", classes="prior-reasons")


def _display_panel() -> None:
    with v3.VCard(variant="flat", classes="mb-2", v_if=("current_study",)):
        v3.VCardTitle("Display", classes="text-subtitle-1")
        with v3.VCardText():
            with v3.VBtnToggle(
                v_model=("preset",), mandatory=True, density="compact", id="preset-toggle"
            ):
                v3.VBtn("Bone", value="bone", size="small", id="preset-bone")
                v3.VBtn("Soft tissue", value="soft_tissue", size="small", id="preset-soft")
            with v3.VBtnToggle(
                v_model=("orientation",),
                mandatory=True,
                density="compact",
                classes="mt-2",
                id="orientation-toggle",
            ):
                for name in ("Axial", "Coronal", "Sagittal"):
                    v3.VBtn(name, value=name, size="small", id=f"orientation-{name.lower()}")
            v3.VSwitch(
                v_model=("linked",),
                label="Linked, registered scrolling",
                density="compact",
                hide_details=True,
                color="primary",
                id="linked-switch",
            )
            v3.VBtn(
                "Reset views",
                prepend_icon="mdi-fit-to-screen-outline",
                size="small",
                variant="tonal",
                click="trigger('reset_views')",
                id="reset-views",
            )


def _measurement_panel() -> None:
    with v3.VCard(variant="flat", classes="mb-2", v_if=("current_study",)):
        v3.VCardTitle("Measurements", classes="text-subtitle-1")
        with (
            v3.VCardText(classes="pb-0"),
            v3.VBtnToggle(v_model=("side",), density="compact", id="side-toggle"),
        ):
            v3.VBtn("Left", value="left", size="small", id="side-left")
            v3.VBtn("Right", value="right", size="small", id="side-right")
        with (
            v3.VTable(density="compact", id="measurement-table"),
            html.Tbody(),
            html.Tr(v_for="row in measurements", key="row.key", classes="measurement-row"),
        ):
            html.Td("{{ row.label }}")
            html.Td(
                "{{ row.value }} {{ row.uncertainty }}",
                classes="measurement-value",
                **_data_attribute("key", "row.key"),
            )
        with html.Div(classes="px-4 text-caption text-medium-emphasis", id="not-measured"):
            html.Div("{{ reason }}", v_for="reason in not_measured", key="reason")
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
            html.Div(
                "Loaded: {{ landmarks_loaded_from }}",
                v_if=("landmarks_loaded_from",),
                id="landmarks-loaded-from",
                classes="text-caption text-medium-emphasis",
            )
        with (
            v3.VTable(density="compact", id="landmark-table"),
            html.Tbody(),
            html.Tr(v_for="lm in landmarks", key="lm.label", classes="landmark-row"),
        ):
            html.Td("{{ lm.label }}", classes="text-caption")
            html.Td("{{ lm.ras }}", classes="text-caption text-no-wrap landmark-ras")
            with html.Td(classes="text-no-wrap"):
                v3.VBtn(
                    icon="mdi-crosshairs-gps",
                    size="x-small",
                    variant="text",
                    title="Place with the next click in a slice view",
                    click="trigger('place_landmark', [lm.label])",
                    classes="place-landmark",
                    **_data_attribute("label", "lm.label"),
                )
                for axis, name in ((0, "R"), (2, "S")):
                    v3.VBtn(
                        f"{name}+",
                        size="x-small",
                        variant="text",
                        disabled=("!lm.placed",),
                        click=f"trigger('move_landmark', [lm.label, {axis}, landmark_step_mm])",
                        classes=f"move-landmark move-{name.lower()}",
                        **_data_attribute("label", "lm.label"),
                    )


def _plan_panel() -> None:
    with v3.VCard(variant="flat", classes="mb-2", v_if=("current_study",)):
        v3.VCardTitle("Plan", classes="text-subtitle-1")
        with v3.VCardText():
            v3.VBtn(
                "Plan this case",
                id="plan-button",
                block=True,
                color="primary",
                click="trigger('run_plan')",
                loading=("plan_running",),
                disabled=("plan_running || busy",),
            )
            v3.VProgressLinear(
                model_value=("plan_progress",),
                height=6,
                classes="mt-2",
                color="primary",
                id="plan-progress",
                v_show=("plan_running || plan_progress > 0",),
            )
            html.Div("{{ plan_message }}", id="plan-message", classes="text-caption")
            with html.Div(id="plan-downloads"):
                html.A(
                    "{{ item.name }}",
                    v_for="item in plan_downloads",
                    key="item.url",
                    href=("item.url",),
                    download=("item.name",),
                    classes="d-block text-body-2 plan-download",
                )


def build_page(server: Any, layout_manager: Any) -> VAppLayout:
    """Build the page for ``server``; the views come from trame-slicer's layout manager."""
    with VAppLayout(server, full_height=True, theme="dark") as layout:
        with v3.VAppBar(density="compact"):
            v3.VToolbarTitle("MSK Workbench")
            v3.VProgressCircular(
                indeterminate=True,
                size=18,
                width=2,
                v_show=("busy || trame__busy",),
                classes="mr-3",
            )
            html.Div("{{ status_message }}", id="status-message", classes="text-caption mr-4")
        with v3.VNavigationDrawer(permanent=True, width=330, location="left"):
            v3.VAlert(
                "{{ error_message }}",
                type="error",
                density="compact",
                v_if=("error_message",),
                id="error-message",
                classes="ma-2",
            )
            _search_panel()
            _priors_panel()
            _display_panel()
        with v3.VNavigationDrawer(permanent=True, width=400, location="right"):
            _plan_panel()
            _measurement_panel()
        with v3.VMain():
            with html.Div(style="display: flex; height: 24px;", classes="text-body-2 px-2"):
                html.Div(
                    "{{ current_view_label }}",
                    id="view-label-current",
                    style="flex: 1; color: #F34A33;",
                )
                html.Div(
                    "{{ prior_view_label }}",
                    id="view-label-prior",
                    style="flex: 1; color: #6DAD4A;",
                )
            with html.Div(style="height: calc(100vh - 72px); display: flex;", id="views"):
                layout_manager.initialize_layout_grid(layout)
    return layout

"""The viewer page: search and priors on the left, views in the middle, measurements on the right.

Only widgets live here; every action calls a controller method of the viewer application.
Element ids (``id=...``) name the parts a browser test reads or clicks; each slice view
carries its label and, while a landmark is being placed, says so (:func:`slice_view_ui`).
"""

from __future__ import annotations

from typing import Any

from trame.ui.vuetify3 import VAppLayout
from trame.widgets import client, html
from trame.widgets import vuetify3 as v3
from trame_slicer.app.logic import connect_slice_view_slider_to_state
from trame_slicer.app.ui.slider import Slider

from mskworkbench.web.hanging_layout import VIEW_COLORS
from mskworkbench.web.measurement_panel import WRAPPED, data_attribute, measurement_panel

#: Height of the strip below each slice view's image that holds its slice slider (CSS px).
SLIDER_PX = 28

#: trame-slicer draws a view's image over the whole view; a slice view's image ends above its
#: slider strip instead (the streamed image follows the area's size).
SLIDER_CSS = (
    "div:has(> .slice-slider-gutter) > .remote-controlled-area"
    f" {{ height: calc(100% - {SLIDER_PX}px) !important; }}"
)


def _search_panel() -> None:
    with v3.VCard(variant="flat", classes="mb-2"):
        v3.VCardTitle("Studies", classes="text-subtitle-1")
        with v3.VCardText(classes="pb-1"):
            v3.VTextField(
                id="search-text",
                v_model=("search_text",),
                label="Patient ID, name or accession (wildcards * ?)",
                density="compact",
                hide_details=True,
                clearable=True,
                # Vuetify's field declares no key events: the Vue listener is named here.
                __events=[("keyup_enter", "keyup.enter")],
                keyup_enter="trigger('search', [search_text])",
            )
            v3.VBtn(
                "Search",
                id="search-button",
                block=True,
                size="small",
                classes="mt-2",
                color="primary",
                click="trigger('search', [search_text])",
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
                "Current: {{ [current_study.patient_label, current_study.date,"
                " current_study.description].filter(Boolean).join(' · ') }}",
                id="current-study",
                classes="text-body-2 mb-2",
            )
            with html.Div(id="hanging-protocol", classes="text-body-2 mb-2", v_if=("hanging",)):
                html.Div(
                    "Hanging protocol: {{ hanging.name }} · layout {{ hanging.layout }} · "
                    "{{ hanging.views }} slice view{{ hanging.views === 1 ? '' : 's' }}",
                    id="hanging-protocol-name",
                )
                html.Div("{{ hanging.description }}", classes="text-caption")
                html.Div(
                    "{{ reason }}",
                    v_for="reason in hanging.unfilled",
                    key="reason",
                    classes="text-caption text-warning",
                )
            with html.Div(id="status-details", v_if=("status_details.length",)):
                html.Div(
                    "{{ detail }}",
                    v_for="detail in status_details",
                    key="detail",
                    classes="text-caption text-warning mb-1",
                    style=WRAPPED,
                )
            html.Div(
                "{{ series_notice }}",
                id="series-notice",
                v_if=("series_notice",),
                classes="text-caption text-info mb-1",
                style=WRAPPED,
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
                active=("shown_priors.includes(prior.study_uid)",),
                disabled=("busy",),
                classes="prior-item",
            ),
        ):
            v3.VListItemTitle("#{{ prior.rank }} · {{ prior.date }} · score {{ prior.score }}")
            v3.VListItemSubtitle("{{ prior.reasons.join('; ') }}", classes="prior-reasons")


def _series_panel() -> None:
    """One series list per shown view: every image series of the view's study."""
    with html.Div(id="view-series", v_if=("view_series.length",), classes="mt-3"):
        html.Div("Series shown", classes="text-caption mb-1")
        with html.Div(v_for="row in view_series", key="row.view", classes="mb-1"):
            v3.VSelect(
                label=("row.label + (row.measured ? ' · landmarks' : '')",),
                items=("row.options",),
                model_value=("row.series_uid",),
                item_title="title",
                item_value="value",
                density="compact",
                hide_details=True,
                variant="outlined",
                disabled=("busy",),
                classes="series-select",
                update_modelValue="trigger('choose_series', [row.view, $event])",
                **data_attribute("view", "row.view"),
            )


def _display_panel() -> None:
    with v3.VCard(variant="flat", classes="mb-2", v_if=("current_study",)):
        v3.VCardTitle("Display", classes="text-subtitle-1")
        with v3.VCardText():
            with v3.VBtnToggle(
                v_model=("preset",), mandatory=True, density="compact", id="preset-toggle"
            ):
                v3.VBtn("Protocol", value="protocol", size="small", id="preset-protocol")
                v3.VBtn("Bone", value="bone", size="small", id="preset-bone")
                v3.VBtn("Soft tissue", value="soft_tissue", size="small", id="preset-soft")
            with v3.VBtnToggle(
                v_model=("orientation",),
                mandatory=True,
                density="compact",
                classes="mt-2",
                id="orientation-toggle",
            ):
                v3.VBtn("Protocol", value="protocol", size="x-small", id="orientation-protocol")
                for name in ("Axial", "Coronal", "Sagittal"):
                    v3.VBtn(name, value=name, size="x-small", id=f"orientation-{name.lower()}")
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
            _series_panel()


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
        client.Style(SLIDER_CSS)
        with v3.VAppBar(density="compact"):
            # The title keeps its width; the status gets what is left and is cut with an
            # ellipsis (its full text is its tooltip; long details are in the side panel).
            v3.VToolbarTitle("MSK Workbench", style="flex: 0 0 auto;")
            v3.VProgressCircular(
                indeterminate=True,
                size=18,
                width=2,
                v_show=("busy || trame__busy",),
                classes="mr-3",
            )
            html.Div(
                "{{ status_message }}",
                id="status-message",
                classes="text-caption mr-4 text-truncate",
                style="min-width: 0; flex: 1 1 auto; text-align: right;",
                title=("status_message",),
            )
        with v3.VNavigationDrawer(permanent=True, width=330, location="left"):
            v3.VAlert(
                "{{ error_message }}",
                type="error",
                density="compact",
                v_if=("error_message",),
                id="error-message",
                classes="ma-2",
                style=WRAPPED,
            )
            _search_panel()
            _priors_panel()
            _display_panel()
        with v3.VNavigationDrawer(permanent=True, width=400, location="right"):
            _plan_panel()
            measurement_panel()
        with (
            v3.VMain(),
            html.Div(style="height: calc(100vh - 48px); display: flex;", id="views"),
        ):
            layout_manager.initialize_layout_grid(layout)
    return layout


def slice_view_ui(server: Any, view_id: str, view: Any) -> None:
    """What the page draws over one slice view: its label, the placing hint and its slider.

    The label names what the hanging protocol shows there (role, date, orientation); while a
    landmark is being placed and the views are armed, the view says which one a click places.
    """
    name = view.get_singleton_tag()
    color = VIEW_COLORS.get(name, "#FFFFFF")
    html.Div(
        f"{{{{ view_labels['{name}'] || '' }}}}",
        classes="view-label text-body-2 px-2",
        style=f"position: absolute; top: 4px; left: 4px; color: {color}; pointer-events: none;",
        **data_attribute("view", f"'{name}'"),
    )
    html.Div(
        "Click to place {{ placing.label }}"
        "{{ placing.points_needed > 1 ? ' (end ' + (placing.points_placed + 1) + ' of 2)' : '' }}",
        # Only on views of the current study (a click in a prior's view places nothing),
        # and below the view's label, so that the label stays readable in a narrow view.
        v_if=(
            f"placing && placing.ready && view_labels['{name}'] && !no_landmark_views.includes('{name}')",
        ),
        classes="view-placing text-body-2 px-2",
        style=(
            "position: absolute; top: 30px; left: 4px; color: #FFD91A; pointer-events: none;"
            "border: 1px solid #FFD91A; border-radius: 4px;"
        ),
        **data_attribute("view", f"'{name}'"),
    )
    # The image area stops above the slider (SLIDER_CSS), so that no click meant for the
    # image lands on the slider.
    with html.Div(
        classes="slice-slider-gutter d-flex align-center",
        style=f"position: absolute; bottom: 0; left: 0; width: 100%; height: {SLIDER_PX}px;",
    ):
        Slider(
            classes="slice-slider",
            typed_state=connect_slice_view_slider_to_state(server, view),
            theme="dark",
            dense=True,
        )

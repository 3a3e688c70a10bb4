"""The MSK Workbench browser viewer: a trame-slicer application around one MRML scene.

The page has a study search with the current study's ranked priors, the slice views the
study's hanging protocol chooses (its layout, and the series, orientation and preset of every
view; linked, registered scrolling), a 3D view of the reconstructed bones, the landmarks of a
chosen measurement set (alignment, hip, Cobb) with their live measurement table, and a button
that plans the case with progress and download links. Reading files and planning run on
worker threads, so the event loop (and the reader's page) stays responsive. The server admits
one reader at a time (:mod:`mskworkbench.web.single_reader`): trame shares one state among all
connected pages, and two readers must never see or change each other's patient.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trame.app import get_server
from trame_slicer import module as trame_slicer_module
from trame_slicer.core import LayoutManager, SlicerApp
from trame_slicer.rca_view import register_rca_factories

from MSKPriorsLib.records import StudyRecord
from mskworkbench.web import case_workflow
from mskworkbench.web.access import AccessPolicy, install_access_control
from mskworkbench.web.case_view import CaseView
from mskworkbench.web.hanging_layout import (
    EMPTY_LAYOUT,
    layout_id,
    page_layout,
    slice_view_names,
)
from mskworkbench.web.landmark_panel import INITIAL_PANEL_STATE, LandmarkPanel
from mskworkbench.web.page import build_page, slice_view_ui
from mskworkbench.web.placement import ClickPlacement
from mskworkbench.web.plan_jobs import PlanJobs, plan_failure_message
from mskworkbench.web.prior_registration import PriorRegistration
from mskworkbench.web.single_reader import SingleReader
from mskworkbench.web.sources import ViewerSource

logger = logging.getLogger(__name__)

_server_count = 0

#: The page state of an empty case; every reader session starts from it.
INITIAL_STATE: dict[str, Any] = {
    "search_text": "",
    "studies": [],
    "current_study": None,
    "priors": [],
    "selected_prior": None,
    "shown_priors": [],
    "hanging": None,
    "view_labels": {},
    "no_landmark_views": [],
    "view_series": [],
    "series_notice": "",
    "preset": case_workflow.PROTOCOL_PRESET,
    "linked": True,
    "status_message": "Search for a patient or study to begin.",
    "status_details": [],
    "error_message": "",
    "busy": False,
    "plan_running": False,
    "plan_progress": 0,
    "plan_message": "",
    "plan_downloads": [],
    "orientation": "protocol",
    "registration": "",
    "registration_message": "",
    **INITIAL_PANEL_STATE,
}

#: The page state that belongs to the open case; all of it goes when another study is opened.
CASE_STATE_KEYS = tuple(
    key
    for key in INITIAL_STATE
    if key not in ("search_text", "studies", "status_message", "error_message", "busy")
)


class ViewerApp:
    """One viewer server: the trame server, trame-slicer's scene and views, and the case.

    Parameters
    ----------
    source
        Where studies are searched and retrieved (archive folder or PACS).
    work_dir
        Folder for plan outputs (reports, scenes) offered for download.
    access
        Who may connect; loopback only unless remote access was explicitly allowed.
    """

    def __init__(
        self, source: ViewerSource, work_dir: Path | None = None, access: AccessPolicy | None = None
    ) -> None:
        global _server_count
        _server_count += 1
        self.source = source
        self._work_dir_holder = None
        if work_dir is None:
            self._work_dir_holder = tempfile.TemporaryDirectory(prefix="mskwb-serve-")
            work_dir = Path(self._work_dir_holder.name)
        self.work_dir = Path(work_dir)
        self.access = access or AccessPolicy()

        self.server = get_server(f"mskwb-{_server_count}", client_type="vue3")
        self.server.enable_module(trame_slicer_module)
        self.slicer_app = SlicerApp()
        register_rca_factories(
            self.slicer_app.view_manager, self.server, slice_view_ui_f=slice_view_ui
        )
        self.layout_manager = LayoutManager(
            self.slicer_app.scene, self.slicer_app.view_manager, self.server
        )
        self.case = CaseView(self.slicer_app)
        self.workflow = case_workflow.CaseWorkflow(self.case, source)
        self.workflow.on_layout = self.show_layout
        self.workflow.on_series_switched = self._on_series_switched
        self.plans = PlanJobs(self.work_dir, self._on_plan_progress)

        self._tasks: set[asyncio.Task[Any]] = set()
        #: Counts the cases cleared, so that late results of a previous case are dropped.
        self._case_serial = 0
        self.readers = SingleReader(self.end_session, lambda: self.server.port)
        self._init_state()
        self.placement = ClickPlacement(
            self.slicer_app.scene,
            self.slicer_app.markups_logic,
            lambda status: self.panel.on_placement_changed(status),
            self.workflow.refuses_landmarks,
            lambda view_id: self.panel.on_click_refused(view_id),
        )
        self.panel = LandmarkPanel(self.state, self.workflow, self.placement, self._report_error)
        self.registration = PriorRegistration(self.state, self.workflow, self._report_error)
        self._bind_controller()
        self.show_layout(EMPTY_LAYOUT, False)
        self.page = build_page(self.server, self.layout_manager)
        self.server.controller.on_server_bind.add(self._on_server_bind)

    @property
    def state(self) -> Any:
        """The trame state shared with the page."""
        return self.server.state

    def _init_state(self) -> None:
        state = self.state
        state.trame__title = "MSK Workbench"
        # trame-slicer's own default favicon is an internet address; the page must not leave
        # the machine, so the browser gets an inline empty icon instead.
        state.trame__favicon = "data:,"
        state.update(copy.deepcopy(INITIAL_STATE))
        state.change("linked")(self._on_linked)
        state.change("preset")(self._on_preset)
        state.change("orientation")(self._on_orientation)

    def _bind_controller(self) -> None:
        actions: dict[str, Callable[..., Any]] = {
            "search": self.search,
            "open_study": self.open_study,
            "open_prior": self.open_prior,
            "choose_series": self.choose_series,
            "run_plan": self.run_plan,
            "reset_views": self.case.reset_views,
            **self.panel.actions(),
        }
        for name, action in actions.items():
            self.server.trigger(name)(self._in_background(action))

    def show_layout(self, layout_name: str, bones: bool) -> None:
        """Show a hanging-protocol layout (with the bone view below it when it has none).

        Layouts are registered with trame-slicer's layout manager the first time they are
        needed; switching creates the missing views and rebuilds the page's grid of views.
        """
        manager = self.layout_manager
        wanted = layout_id(layout_name, bones)
        layout = page_layout(layout_name, bones)
        if not manager.has_layout(wanted):
            manager.register_layout(wanted, layout, lazy_initialization=True)
        manager.set_layout(wanted)
        manager.create_layout_views_if_needed(wanted)
        for view_id in slice_view_names(layout):
            view = self.slicer_app.view_manager.get_view(view_id)
            self.placement.guard_view(view_id, view.interactor())
        logger.info("page layout %s", wanted)

    def _in_background(self, action: Callable[..., Any]) -> Callable[..., None]:
        """Wrap a page action so that its trigger returns at once.

        The WebSocket handles one message at a time: a trigger that waited for a long action
        would hold back every later message of the page (state changes, view interaction).
        Coroutine actions therefore run as tasks of their own.
        """
        if not asyncio.iscoroutinefunction(action):
            return action

        def start(*args: Any) -> None:
            task = asyncio.get_running_loop().create_task(action(*args))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        return start

    def _on_server_bind(self, wslink_server: Any) -> None:
        install_access_control(wslink_server.app, self.access)
        self.readers.install(wslink_server.app)
        self.plans.install_routes(wslink_server.app)

    async def end_session(self) -> None:
        """End the reader's session: cancel its work and clear the case and the page state.

        Runs after the reader's last connection closed. A running plan cannot be interrupted
        (it writes files on its own thread); the next reader waits until it finished, so that
        its progress never reaches another reader's page.
        """
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.get_running_loop().run_in_executor(self.plans.executor, lambda: None)
        self.placement.cancel()
        self.workflow.close_case()
        self.show_layout(EMPTY_LAYOUT, False)
        with self.state:
            self.state.update(copy.deepcopy(INITIAL_STATE))
        logger.info("the case of the previous reader was cleared")

    async def _run_blocking(self, label: str, work: Callable[[], Any]) -> Any:
        """Run ``work`` on a worker thread, showing ``label`` as the page's busy message."""
        with self.state:
            self.state.busy = True
            self.state.error_message = ""
            self.state.status_message = label
        try:
            return await asyncio.to_thread(work)
        finally:
            with self.state:
                self.state.busy = False

    def _report_error(self, error: Exception) -> None:
        logger.warning("viewer action failed: %s", error)
        with self.state:
            self.state.error_message = str(error)
            self.state.status_message = ""

    async def search(self, text: str | None = None, *_: Any) -> None:
        """Search the source for studies matching the search text.

        The page sends the text with the trigger: its copy of the state may reach the server
        after the trigger when the reader presses Enter right after typing.
        """
        text = str((self.state.search_text if text is None else text) or "")
        try:
            found = await self._run_blocking("Searching...", lambda: self.source.search(text))
        except Exception as error:  # the source's own message is the one to show
            self._report_error(error)
            return
        with self.state:
            self.state.studies = [case_workflow.study_row(study) for study in found]
            self.state.status_message = (
                f"{len(found)} {'study' if len(found) == 1 else 'studies'} found."
            )

    def clear_case(self) -> None:
        """Remove the open case from the scene and the page: views, identity, priors, landmarks.

        Called before another study is read, so that a study that fails to open leaves an
        empty case with its error, never the previous patient's images beside the new search.
        """
        self._case_serial += 1
        self.placement.cancel()
        self.workflow.close_case()
        self.show_layout(EMPTY_LAYOUT, False)
        with self.state:
            initial = copy.deepcopy(INITIAL_STATE)
            self.state.update({key: initial[key] for key in CASE_STATE_KEYS})

    async def open_study(self, study_uid: str) -> None:
        """Open a study and hang it with its priors as its hanging protocol says.

        The previous case is cleared first; a plan still running keeps writing its own
        folder, but its progress and downloads no longer reach the page.
        """
        self.clear_case()
        try:
            opened = await self._run_blocking(
                "Retrieving and reading the study and its priors...",
                lambda: self.workflow.read_study_with_priors(study_uid),
            )
            self.placement.cancel()
            self.workflow.show(opened)
        except Exception as error:
            self._report_error(error)
            return
        self._publish_case(opened.study, opened.warnings)
        await self.registration.run()

    async def open_prior(self, study_uid: str) -> None:
        """Hang a chosen ranked prior first, as the hanging protocol hangs it."""
        loaded = set(self.workflow.series)
        try:
            hanging = await self._run_blocking(
                "Reading the prior...",
                lambda: self.workflow.read_with_prior_first(study_uid, loaded),
            )
            self.workflow.show_hanging(hanging)
        except Exception as error:
            self._report_error(error)
            return
        with self.state:
            self._publish_hanging()
            self.state.status_message = "Prior shown beside the current study."
        await self.registration.run()

    async def choose_series(self, view: str, series_uid: str) -> None:
        """Show another series of the view's study in one view (the reader chose it)."""
        view, series_uid = str(view), str(series_uid)
        case_serial = self._case_serial
        try:
            read = await self._run_blocking(
                "Reading the series...", lambda: self.workflow.read_view_series(view, series_uid)
            )
            if case_serial != self._case_serial:
                return  # another study was opened meanwhile
            measured_before = self.workflow.measured_uid
            self.placement.cancel()
            self.workflow.show_view_series(view, read)
        except Exception as error:
            self._report_error(error)
            with self.state:
                self._publish_hanging()
            return
        with self.state:
            self._publish_hanging()
            self.state.series_notice = ""
            message = f"View {view} shows the series chosen."
            if self.workflow.measured_uid != measured_before:
                message += " Landmarks are now placed and measured on it."
            self.state.status_message = message
            self.panel.publish()
        await self.registration.run()

    def _on_series_switched(self, message: str) -> None:
        with self.state:
            self._publish_hanging()
            self.state.series_notice = message

    def _publish_hanging(self) -> None:
        """Name the hanging protocol, the shown priors and every view's content in the page."""
        self.state.hanging = self.workflow.hanging_row()
        self.state.shown_priors = self.workflow.shown_prior_uids
        self.state.selected_prior = next(iter(self.workflow.shown_prior_uids), None)
        self.state.view_labels = self.workflow.view_labels()
        self.state.no_landmark_views = self.workflow.views_refusing_landmarks()
        self.state.view_series = self.workflow.series_choices()

    def _publish_case(self, study: StudyRecord, warnings: list[str]) -> None:
        with self.state:
            self.state.current_study = case_workflow.study_row(study)
            self.state.priors = self.workflow.prior_rows()
            self._publish_hanging()
            self.state.plan_downloads = []
            self.state.plan_progress = 0
            self.state.plan_message = ""
            self.state.registration = ""
            self.state.registration_message = ""
            self.state.side = ""
            self.state.landmarks_loaded_from = ""
            self.state.landmark_upload = None
            self.state.series_notice = ""
            self.state.orientation = "protocol"
            self.state.preset = case_workflow.PROTOCOL_PRESET
            self.state.placing = None
            hanging = self.workflow.hanging
            shown = f"Study opened with hanging protocol {hanging.rule}." if hanging else ""
            # The header keeps a short status; what the reader must know goes in the side
            # panel, where long sentences wrap.
            self.state.status_message = shown or "Study opened."
            self.state.status_details = list(warnings)
            self.panel.publish()

    def _on_linked(self, linked: bool, **_: Any) -> None:
        self.case.set_linked(bool(linked))

    def _on_orientation(self, orientation: str, **_: Any) -> None:
        try:
            self.case.set_orientation("" if orientation == "protocol" else str(orientation))
        except ValueError as error:
            self._report_error(error)
            return
        with self.state:
            self.state.view_labels = self.workflow.view_labels()
            self.state.view_series = self.workflow.series_choices()

    def _on_preset(self, preset: str, **_: Any) -> None:
        try:
            self.workflow.apply_preset(str(preset))
        except (KeyError, ValueError) as error:
            self._report_error(error)

    async def run_plan(self, *_: Any) -> None:
        """Plan the open case on a worker thread; progress and downloads appear in the page."""
        if self.case.current is None:
            self._report_error(ValueError("open a study before planning it"))
            return
        if self.plans.is_running:
            self._report_error(ValueError("the plan of the previous study is still running"))
            return
        planned_case = self._case_serial
        with self.state:
            self.state.plan_running = True
            self.state.plan_progress = 0
            self.state.plan_downloads = []
            self.state.plan_message = "Starting the plan..."
        try:
            run_id, out_dir = self.plans.new_run_folder()
            inputs = self.workflow.plan_inputs(out_dir)
            downloads = await self.plans.run(run_id, inputs)
        except Exception as error:  # the page gets a short sentence, the log the details
            logger.exception("the plan of the open case failed")
            with self.state:
                self.state.error_message = plan_failure_message(error)
                self.state.plan_message = self.state.error_message
            downloads = []
        if planned_case != self._case_serial:
            return  # another study was opened meanwhile: this plan is not the page's
        with self.state:
            self.state.plan_running = False
            self.state.plan_downloads = downloads
            if downloads:
                self.state.plan_progress = 100
                self.state.plan_message = "Plan finished."

    def _on_plan_progress(self, fraction: float, message: str) -> None:
        loop = self._loop
        if loop is None:
            return

        def publish() -> None:
            if not self.state.plan_running:
                return  # another study was opened meanwhile: this plan is not the page's
            with self.state:
                self.state.plan_progress = round(100 * fraction)
                self.state.plan_message = message

        loop.call_soon_threadsafe(publish)

    @property
    def _loop(self) -> asyncio.AbstractEventLoop | None:
        return self.plans.loop

    def start(self, host: str, port: int, **kwargs: Any) -> Any:
        """Start serving (blocking unless ``exec_mode`` says otherwise)."""
        return self.server.start(
            host=host,
            port=port,
            open_browser=False,
            timeout=0,
            show_connection_info=False,
            **kwargs,
        )

"""The MSK Workbench browser viewer: a trame-slicer application around one MRML scene.

The page has a study search with the current study's ranked priors, the current and prior
slice views side by side (linked, registered scrolling, bone and soft-tissue presets), a 3D
view of the reconstructed bones, the case's landmarks and measurement table, and a button
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
from trame_slicer.views import Layout, LayoutDirection, ViewLayoutDefinition, ViewProps, ViewType

from MSKPriorsLib.mrml_volumes import sitk_from_volume
from MSKPriorsLib.records import StudyRecord, shown_date
from mskworkbench.web import case_workflow
from mskworkbench.web.access import AccessPolicy, install_access_control
from mskworkbench.web.case_view import CURRENT_VIEW, PRIOR_VIEW, THREED_VIEW, CaseView
from mskworkbench.web.case_workflow import ReadPrior
from mskworkbench.web.page import build_page
from mskworkbench.web.plan_jobs import PlanJobs
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
    "preset": "bone",
    "linked": True,
    "landmarks": [],
    "measurements": [],
    "not_measured": [],
    "status_message": "Search for a patient or study to begin.",
    "error_message": "",
    "busy": False,
    "plan_running": False,
    "plan_progress": 0,
    "plan_message": "",
    "plan_downloads": [],
    "landmark_step_mm": 5.0,
    "orientation": "Axial",
    "registration": "",
    "registration_message": "",
    "side": "",
    "landmark_upload": None,
    "landmarks_loaded_from": "",
    "current_view_label": "Current",
    "prior_view_label": "Prior",
}


def case_layout() -> Layout:
    """Current and prior slice views side by side above the 3D view of the bones."""
    current = ViewLayoutDefinition(
        CURRENT_VIEW,
        ViewType.SLICE_VIEW,
        ViewProps(orientation="Axial", label="Current", color="#F34A33", group=0),
    )
    prior = ViewLayoutDefinition(
        PRIOR_VIEW,
        ViewType.SLICE_VIEW,
        ViewProps(orientation="Axial", label="Prior", color="#6DAD4A", group=1),
    )
    threed = ViewLayoutDefinition.threed_view(name=THREED_VIEW, label="3D")
    return Layout(
        LayoutDirection.Vertical,
        [Layout(LayoutDirection.Horizontal, [current, prior]), threed],
        flex_sizes=["3", "2"],
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
        register_rca_factories(self.slicer_app.view_manager, self.server)
        self.layout_manager = LayoutManager(
            self.slicer_app.scene, self.slicer_app.view_manager, self.server
        )
        self.layout_manager.register_layout("case", case_layout())
        self.layout_manager.set_layout("case")
        self.case = CaseView(self.slicer_app)
        self.workflow = case_workflow.CaseWorkflow(self.case, source)
        self.plans = PlanJobs(self.work_dir, self._on_plan_progress)

        self._tasks: set[asyncio.Task[Any]] = set()
        self.readers = SingleReader(self.end_session, lambda: self.server.port)
        self._init_state()
        self._bind_controller()
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
        state.change("side")(self._on_side)
        state.change("landmark_upload")(self._on_landmark_upload)
        self.workflow.landmarks.on_changed(self.on_landmarks_modified)

    def _bind_controller(self) -> None:
        actions: dict[str, Callable[..., Any]] = {
            "search": self.search,
            "open_study": self.open_study,
            "open_prior": self.open_prior,
            "move_landmark": self.move_landmark,
            "place_landmark": self.place_landmark,
            "run_plan": self.run_plan,
            "reset_views": self.case.reset_views,
        }
        for name, action in actions.items():
            self.server.trigger(name)(self._in_background(action))

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
        self.workflow.close_case()
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

    async def search(self, *_: Any) -> None:
        """Search the source for studies matching the search text."""
        text = str(self.state.search_text or "")
        try:
            found = await self._run_blocking("Searching...", lambda: self.source.search(text))
        except Exception as error:  # the source's own message is the one to show
            self._report_error(error)
            return
        with self.state:
            self.state.studies = [case_workflow.study_row(study) for study in found]
            self.state.status_message = f"{len(found)} studies found."

    async def open_study(self, study_uid: str) -> None:
        """Open a study as the current one, with its best-ranked prior beside it."""
        try:
            opened = await self._run_blocking(
                "Retrieving and reading the study and its priors...",
                lambda: self.workflow.read_study_with_priors(study_uid),
            )
            self.workflow.show(opened)
        except Exception as error:
            self._report_error(error)
            return
        self._publish_case(opened.study, opened.warnings)
        if opened.prior is not None and self.workflow.should_register:
            await self._register(opened.prior)

    async def open_prior(self, study_uid: str) -> None:
        """Show another of the ranked priors beside the current study."""
        try:
            read = await self._run_blocking(
                "Reading and registering the prior...",
                lambda: self.workflow.read_prior(study_uid),
            )
            self.workflow.show_prior(read)
            self.workflow.apply_preset(str(self.state.preset))
        except Exception as error:
            self._report_error(error)
            return
        with self.state:
            self.state.selected_prior = study_uid
            self._publish_view_labels()
            self.state.status_message = "Prior shown beside the current study."
        if self.workflow.should_register:
            await self._register(read)

    async def _register(self, prior: ReadPrior) -> None:
        """Register a shown prior on a worker thread; the views stay usable meanwhile."""
        current = self.case.current
        if current is None:
            return
        image = sitk_from_volume(current)
        with self.state:
            self.state.registration = "running"
            self.state.registration_message = "Registering the prior to the current study..."
        try:
            await asyncio.to_thread(self.workflow.register, image, prior)
        except Exception as error:
            self._report_error(error)
            with self.state:
                self.state.registration = "failed"
            return
        if self.workflow.apply_registration(prior):
            shift_mm = prior.registration.get("translation_lps_mm", [0.0, 0.0, 0.0])
            with self.state:
                self.state.registration = "done"
                self.state.registration_message = (
                    "Prior registered (rigid, mutual information; translation "
                    + ", ".join(f"{v:.1f}" for v in shift_mm)
                    + " mm LPS)."
                )

    def _publish_case(self, study: StudyRecord, warnings: list[str]) -> None:
        with self.state:
            self.state.current_study = case_workflow.study_row(study)
            self.state.priors = self.workflow.prior_rows()
            self.state.selected_prior = self.workflow.shown_prior_uid
            self._publish_view_labels()
            self.state.plan_downloads = []
            self.state.plan_progress = 0
            self.state.plan_message = ""
            self.state.registration = ""
            self.state.registration_message = ""
            self.state.side = ""
            self.state.landmarks_loaded_from = ""
            self.state.landmark_upload = None
            self.state.orientation = self.workflow.hung_orientation()
            self.state.status_message = " ".join(["Study opened.", *warnings])
            self._publish_measurements()
        self._on_preset(self.state.preset)

    def _publish_view_labels(self) -> None:
        """Name the two slice views by role and study date, as the page shows above them."""
        current = self.workflow.current_study
        self.state.current_view_label = (
            f"Current {shown_date(current.study_date)}" if current is not None else "Current"
        )
        shown = [
            p for p in self.workflow.priors if p.study.study_uid == self.workflow.shown_prior_uid
        ]
        self.state.prior_view_label = (
            f"Prior {shown_date(shown[0].study.study_date)}" if shown else "Prior (none shown)"
        )

    def _publish_measurements(self) -> None:
        self.state.landmarks = self.workflow.landmark_rows()
        table = self.workflow.measurement_rows()
        self.state.measurements = table["rows"]
        # Why a measurement is missing matters only once the reader has loaded or placed
        # landmarks; before that every measurement is missing for the same obvious reason.
        started = bool(self.workflow.landmarks.nodes)
        self.state.not_measured = table["not_measured"] if started else []

    def on_landmarks_modified(self) -> None:
        """Refresh the landmark and measurement panels after a landmark moved."""
        with self.state:
            self._publish_measurements()

    def move_landmark(self, label: str, axis: int, step_mm: float) -> None:
        """Move one landmark by ``step_mm`` along RAS axis ``axis`` (0 R, 1 A, 2 S)."""
        try:
            self.workflow.move_landmark(label, int(axis), float(step_mm))
        except (KeyError, ValueError) as error:
            self._report_error(error)

    def place_landmark(self, label: str) -> None:
        """Let the next click in a slice view place (or re-place) the named landmark."""
        try:
            self.workflow.start_placing(label)
        except (KeyError, RuntimeError) as error:
            self._report_error(error)
            return
        with self.state:
            self.state.status_message = f"Click in a slice view to place {label}."

    def _on_linked(self, linked: bool, **_: Any) -> None:
        self.case.set_linked(bool(linked))

    def _on_orientation(self, orientation: str, **_: Any) -> None:
        self.case.set_orientation(str(orientation))

    def _on_side(self, side: str | None, **_: Any) -> None:
        try:
            self.workflow.landmarks.set_side(str(side or ""))
        except ValueError as error:
            self._report_error(error)

    def _on_landmark_upload(self, landmark_upload: Any, **_: Any) -> None:
        """Load landmarks from a Slicer markups JSON file chosen in the page.

        A file that fails leaves the landmarks as they were; the field is emptied and the
        banner names the file and the reason, so the page never shows a failed file's name
        beside landmarks that came from another file. A file naming no side clears the side,
        so the reader must choose it (as ``mskwb measure`` refuses to guess one).
        """
        files = landmark_upload if isinstance(landmark_upload, list) else [landmark_upload]
        for item in files:
            if not item:
                continue
            name = str(item.get("name", "")) if isinstance(item, dict) else ""
            try:
                side = self.workflow.import_landmarks(name, item["content"])
            except (KeyError, TypeError, ValueError, RuntimeError) as error:
                kept = (
                    " The landmarks shown are unchanged." if self.workflow.landmarks.nodes else ""
                )
                reason = str(error).rstrip(".") or type(error).__name__
                self._report_error(
                    ValueError(f"Landmarks not loaded from {name or 'the file'}: {reason}.{kept}")
                )
                with self.state:
                    self.state.landmark_upload = None
                return
            with self.state:
                self.state.error_message = ""
                self.state.side = side
                self.state.landmarks_loaded_from = name
                message = f"Landmarks loaded from {name or 'the file'}"
                if side:
                    message += f" ({side} side)."
                else:
                    message += "; the file names no side: choose Left or Right to measure."
                self.state.status_message = message
                self._publish_measurements()

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
            return
        with self.state:
            self.state.plan_running = True
            self.state.plan_progress = 0
            self.state.plan_downloads = []
            self.state.plan_message = "Starting the plan..."
        try:
            run_id, out_dir = self.plans.new_run_folder()
            inputs = self.workflow.plan_inputs(out_dir)
            downloads = await self.plans.run(run_id, inputs)
        except Exception as error:
            self._report_error(error)
            with self.state:
                self.state.plan_message = f"The plan failed: {error}"
            downloads = []
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

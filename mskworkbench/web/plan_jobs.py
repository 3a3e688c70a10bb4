"""Planning the open case on a worker thread, with progress for the page and download links.

A plan runs on a single-worker thread pool, so a long plan never blocks the server's event
loop: every connected browser keeps scrolling and measuring while it runs. Its outputs are
written to a folder per run and served read-only under ``/mskwb/downloads/<run>/<file>``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from aiohttp import web

from MSKPlannerLib.case_plan import STAGES, PlanRequest, plan_case

logger = logging.getLogger(__name__)

DOWNLOAD_PREFIX = "/mskwb/downloads"
_SAFE_NAME = re.compile(r"^[A-Za-z0-9._-]+$")

Progress = Callable[[float, str], None]

#: Files of a plan offered for download, in the order the page lists them.
DOWNLOADS = ("report.html", "scene.mrb", "plan.json", "measurements.json")


def plan_open_case(inputs: dict[str, Any], out_dir: Path, progress: Progress) -> list[Path]:
    """Plan the open case with the case-plan library and return the files to offer.

    Parameters
    ----------
    inputs
        ``study`` (StudyRecord), ``landmark_files``, ``archive_dir`` and ``pacs`` (or None).
    out_dir
        Output folder of this run.
    progress
        Called with (fraction 0..1, message) as the stages go by.
    """
    stages = list(STAGES)

    def on_stage(stage: str, message: str) -> None:
        done = stages.index(stage) if stage in stages else 0
        progress(done / len(stages), message[:1].upper() + message[1:] + "...")

    request = PlanRequest(
        out_dir=out_dir,
        archive_dir=Path(inputs["archive_dir"]),
        pacs=inputs["pacs"],
        study_uid=inputs["study"].study_uid,
        landmark_files=list(inputs["landmark_files"]),
    )
    plan_case(request, progress=on_stage)
    progress(1.0, "Plan finished.")
    return [out_dir / name for name in DOWNLOADS]


#: Packages whose exceptions carry sentences written for the reader.
OWN_PACKAGES = ("MSKPlannerLib", "MSKPriorsLib", "mskworkbench")


def plan_failure_message(error: BaseException) -> str:
    """The page's short sentence for a failed plan.

    Our own errors say what to do in plain words and are shown; any other error (a Python
    or library message such as a failed number conversion) is named only as an internal
    error, its details going to the server log.
    """
    ours = type(error).__module__.split(".")[0] in OWN_PACKAGES
    reason = str(error).strip().rstrip(".") if ours else ""
    if not reason:
        return "The plan failed: an internal error stopped it (the details are in the server log)."
    return f"The plan failed: {reason[0].upper()}{reason[1:]}."


class PlanJobs:
    """Runs plans one at a time off the event loop and serves their outputs.

    Parameters
    ----------
    work_dir
        Folder receiving one subfolder per run.
    on_progress
        Called from the worker thread with (fraction 0..1, message).
    plan
        The planning function (inputs, output folder, progress) -> files.
    """

    def __init__(
        self,
        work_dir: Path,
        on_progress: Progress,
        plan: Callable[[dict[str, Any], Path, Progress], list[Path]] = plan_open_case,
    ) -> None:
        self.work_dir = Path(work_dir)
        self.on_progress = on_progress
        self.plan = plan
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mskwb-plan")
        self.loop: asyncio.AbstractEventLoop | None = None
        self.is_running = False

    def new_run_folder(self) -> tuple[str, Path]:
        """A fresh run ID and its output folder."""
        run_id = uuid.uuid4().hex[:12]
        out_dir = self.work_dir / run_id
        out_dir.mkdir(parents=True, exist_ok=True)
        return run_id, out_dir

    async def run(self, run_id: str, inputs: dict[str, Any]) -> list[dict[str, str]]:
        """Plan on the worker thread; return the download links of the files it wrote."""
        self.loop = asyncio.get_running_loop()
        self.is_running = True
        out_dir = self.work_dir / run_id
        try:
            files = await self.loop.run_in_executor(
                self.executor, self.plan, inputs, out_dir, self.on_progress
            )
        finally:
            self.is_running = False
        return [
            {"name": path.name, "url": f"{DOWNLOAD_PREFIX}/{run_id}/{path.name}"}
            for path in files
            if path.is_file()
        ]

    def install_routes(self, app: web.Application) -> None:
        """Serve the run folders read-only (names checked, no path traversal)."""
        app.router.add_get(DOWNLOAD_PREFIX + "/{run}/{name}", self._download)

    async def _download(self, request: web.Request) -> web.StreamResponse:
        run, name = request.match_info["run"], request.match_info["name"]
        if not _SAFE_NAME.match(run) or not _SAFE_NAME.match(name):
            raise web.HTTPNotFound()
        path = self.work_dir / run / name
        if not path.is_file():
            raise web.HTTPNotFound()
        return web.FileResponse(
            path, headers={"Content-Disposition": f'attachment; filename="{name}"'}
        )

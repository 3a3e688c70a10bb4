"""Registering the shown priors of the open case in the background, as the page reports it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from MSKPriorsLib.mrml_volumes import sitk_from_volume
from mskworkbench.web.case_workflow import CaseWorkflow

logger = logging.getLogger(__name__)


class PriorRegistration:
    """Registers every prior series the hanging shows to the current volume, one at a time.

    Each registration runs on a worker thread, so the views stay usable; a finished one is
    applied to its prior at once (when that prior is still shown), and the page's
    registration message names every prior's translation.

    Parameters
    ----------
    state
        The trame state shared with the page.
    workflow
        The open case.
    report_error
        Shows an error in the page's banner.
    """

    def __init__(
        self, state: Any, workflow: CaseWorkflow, report_error: Callable[[Exception], None]
    ) -> None:
        self.state = state
        self.workflow = workflow
        self.report_error = report_error
        self._running: set[str] = set()

    async def run(self) -> None:
        """Register the shown priors not registered yet (nor being registered)."""
        current = self.workflow.case.current
        pending = [
            read
            for read in self.workflow.priors_to_register()
            if read.series_uid not in self._running
        ]
        if current is None or not pending:
            return
        self._running.update(read.series_uid for read in pending)
        image = sitk_from_volume(current)
        with self.state:
            self.state.registration = "running"
            self.state.registration_message = (
                f"Registering {len(pending)} prior series to the current study..."
            )
        shifts = []
        try:
            for read in pending:
                try:
                    await asyncio.to_thread(self.workflow.register, image, read)
                except Exception as error:  # the registration's own message is shown
                    self.report_error(error)
                    with self.state:
                        self.state.registration = "failed"
                    return
                if self.workflow.apply_registration(read):
                    shift_mm = read.registration.get("translation_lps_mm", [0.0, 0.0, 0.0])
                    date = self.workflow.study_date(read.study_uid)
                    shifts.append(f"{date}: " + ", ".join(f"{v:.1f}" for v in shift_mm) + " mm")
        finally:
            self._running.difference_update(read.series_uid for read in pending)
        if shifts:
            with self.state:
                self.state.registration = "done"
                self.state.registration_message = (
                    f"{'Prior' if len(shifts) == 1 else f'{len(shifts)} priors'} registered "
                    f"(rigid, mutual information; translation LPS {'; '.join(shifts)})."
                )

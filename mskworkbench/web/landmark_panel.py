"""The page's landmark and measurement panel: its actions, and the state it shows.

The reader chooses a measurement set (alignment, hip, Cobb), places its landmarks with clicks
in the slice views, loads them from a Slicer markups file or nudges them, and sees the
measurement table follow. Everything here runs on the event-loop thread.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from MSKPriorsLib.records import StudyRecord
from mskworkbench.web.case_workflow import CaseWorkflow
from mskworkbench.web.landmark_sets import (
    ENDPLATES,
    MEASUREMENT_SETS,
    VERTEBRAE,
    calibration_text,
    endplate_line_name,
    set_of_label,
)
from mskworkbench.web.placement import ClickPlacement, PlacementStatus
from mskworkbench.web.study_rows import study_row

logger = logging.getLogger(__name__)

#: The panel's part of the page state of an empty case.
INITIAL_PANEL_STATE: dict[str, Any] = {
    "landmarks": [],
    "measurements": [],
    "not_measured": [],
    "landmark_step_mm": 5.0,
    "side": "",
    "landmark_upload": None,
    "landmarks_loaded_from": "",
    "landmark_notice": "",
    "measurement_set": "alignment",
    "measurement_sets": [{"value": k, "title": v.title} for k, v in MEASUREMENT_SETS.items()],
    "calibration": "",
    "placing": None,
    "placing_notice": "",
    "vertebrae": list(VERTEBRAE),
    "endplates": list(ENDPLATES),
    "cobb_vertebra": "L1",
    "cobb_endplate": "superior",
}


def click_refused_notice(series_name: str) -> str:
    """What the page says when a click in a view not showing the measured series placed nothing."""
    return (
        f"Landmarks are placed and measured on {series_name} of the current study: click in a "
        "view showing it. Nothing was placed."
    )


def identity_notice(study: StudyRecord | None, named_identity: list[str]) -> str:
    """The sentence saying for whom loaded landmarks are measured, and what the file named.

    Slicer's markups files name neither patient nor image, so the reader must confirm the
    file is this patient's; the attributes a file names (``named_identity``, DICOM keywords)
    were checked against the study and are listed as matching it.
    """
    if study is None:
        return ""
    row = study_row(study)
    whom = f"Measured for {row['patient_label']} · study of {row['date']}."
    if named_identity:
        fields = ", ".join(named_identity[:-1]) + " and " if len(named_identity) > 1 else ""
        fields += named_identity[-1]
        verb = "matches" if len(named_identity) == 1 else "match"
        return f"{whom} The file names its {fields}, which {verb} this study."
    return f"{whom} The file does not name its patient: confirm it is this patient's."


def replaced_notice(file_name: str, replaced: list[str]) -> str:
    """The sentence telling the reader which placed landmarks a loaded file replaced."""
    if not replaced:
        return ""
    return (
        f"{file_name or 'The file'} replaced {len(replaced)} landmark"
        f"{'' if len(replaced) == 1 else 's'} placed before: {', '.join(replaced)}."
    )


class LandmarkPanel:
    """Landmark placement, loading and nudging, and the live measurement table of the page.

    Parameters
    ----------
    state
        The trame state shared with the page.
    workflow
        The open case.
    placement
        Arms the slice views for click placement.
    report_error
        Shows an error in the page's banner.
    """

    def __init__(
        self,
        state: Any,
        workflow: CaseWorkflow,
        placement: ClickPlacement,
        report_error: Callable[[Exception], None],
    ) -> None:
        self.state = state
        self.workflow = workflow
        self.placement = placement
        self.report_error = report_error
        self._placing_label = ""
        workflow.landmarks.on_changed(self.on_landmarks_modified)
        state.change("side")(self._on_side)
        state.change("landmark_upload")(self._on_landmark_upload)
        state.change("measurement_set")(self._on_measurement_set)

    @property
    def landmarks(self) -> Any:
        """The case's live landmarks."""
        return self.workflow.landmarks

    def actions(self) -> dict[str, Callable[..., Any]]:
        """The page triggers this panel answers, by name."""
        return {
            "move_landmark": self.move_landmark,
            "place_landmark": self.place_landmark,
            "place_endplate": self.place_endplate,
            "cancel_placing": self.cancel_placing,
        }

    def publish(self) -> None:
        """Write the landmarks, the measurement table and the calibration into the state."""
        state = self.state
        state.landmarks = self.workflow.landmark_rows()
        table = self.workflow.measurement_rows()
        state.measurements = table["rows"]
        # Why a measurement is missing matters only once the reader has loaded or placed
        # landmarks of the chosen set; before that every one is missing for the same reason.
        state.not_measured = table["not_measured"] if self.landmarks.started else []
        state.measurement_set = self.landmarks.kind
        opened = self.workflow.current_study is not None
        state.calibration = calibration_text(self.landmarks.calibration) if opened else ""

    def on_landmarks_modified(self) -> None:
        """Refresh the landmark and measurement panels after a landmark moved."""
        with self.state:
            self.publish()

    def on_placement_changed(self, status: PlacementStatus) -> None:
        """Show what is being placed; say what was placed when the placement ends."""
        with self.state:
            self.state.placing = status.to_state()
            if not status.label or status.points_placed:
                self.state.placing_notice = ""
            finished = self._placing_label and not status.label
            if finished and self._placing_label in self.landmarks.active_nodes():
                node = self.landmarks.nodes[self._placing_label]
                if node.GetNumberOfDefinedControlPoints() > 0:
                    self.state.status_message = f"{self._placing_label} placed."
            self._placing_label = status.label
            self.publish()

    def on_click_refused(self, view_id: str) -> None:
        """Say why a click in a view not showing the measured series placed nothing."""
        with self.state:
            self.state.placing_notice = click_refused_notice(self.workflow.measured_series_name())

    def move_landmark(self, label: str, axis: int, step_mm: float, point_index: int = 0) -> None:
        """Move one landmark (or a line's end) by ``step_mm`` along RAS axis ``axis``."""
        try:
            self.workflow.move_landmark(label, int(axis), float(step_mm), int(point_index))
        except (KeyError, ValueError) as error:
            self.report_error(error)

    def place_landmark(self, label: str) -> None:
        """Arm the slice views so that the next click(s) place (or re-place) ``label``."""
        if self.workflow.case.current is None:
            self.report_error(ValueError("open a study before placing landmarks"))
            return
        try:
            node = self.landmarks.start_placing(str(label))
        except KeyError as error:
            self.report_error(error)
            return
        self.placement.start(node, str(label))
        with self.state:
            self.state.error_message = ""
            self.publish()

    def place_endplate(self, vertebra: str, endplate: str) -> None:
        """Arm the views for the endplate line of a vertebra (two clicks: its two ends)."""
        try:
            name = endplate_line_name(str(vertebra), str(endplate))
        except ValueError as error:
            self.report_error(error)
            return
        self.place_landmark(name)

    def cancel_placing(self) -> None:
        """Stop placing; the views go back to scrolling and panning."""
        self.placement.cancel()

    def _on_measurement_set(self, measurement_set: str, **_: Any) -> None:
        if measurement_set == self.landmarks.kind:
            return
        try:
            self.landmarks.set_kind(str(measurement_set))
        except KeyError as error:
            self.report_error(error)
            return
        if self._placing_label and set_of_label(self._placing_label) != measurement_set:
            self.placement.cancel()
        with self.state:
            self.publish()

    def _on_side(self, side: str | None, **_: Any) -> None:
        try:
            self.landmarks.set_side(str(side or ""))
        except ValueError as error:
            self.report_error(error)

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
                imported = self.workflow.import_landmarks(name, item["content"])
            except (KeyError, TypeError, ValueError, RuntimeError) as error:
                kept = " The landmarks shown are unchanged." if self.landmarks.nodes else ""
                reason = str(error).rstrip(".") or type(error).__name__
                self.report_error(
                    ValueError(f"Landmarks not loaded from {name or 'the file'}: {reason}.{kept}")
                )
                with self.state:
                    self.state.landmark_upload = None
                return
            side = self.landmarks.side
            with self.state:
                self.state.error_message = ""
                notices = [
                    identity_notice(self.workflow.current_study, imported.named_identity),
                    replaced_notice(name, imported.replaced),
                ]
                self.state.landmark_notice = " ".join(n for n in notices if n)
                self.state.side = side
                self.state.landmarks_loaded_from = name
                message = f"Landmarks loaded from {name or 'the file'}"
                if side or not self.landmarks.measures.needs_side:
                    message += f" ({side} side)." if side else "."
                else:
                    message += "; the file names no side: choose Left or Right to measure."
                self.state.status_message = message
                self.publish()

"""The viewer's case workflow: open a study with its ranked priors, hang, register, show bones.

Retrieval, reading, registration and bone contouring run on a worker thread and return plain
objects (:class:`OpenedCase`, :class:`~mskworkbench.web.hanging_read.HangingRead`);
:meth:`CaseWorkflow.show` then puts them into the scene on the event-loop thread. The hanging
protocol chosen for the study decides the layout and what every slice view shows. Prior
ranking, hanging protocols, series reading, presets, registration, reconstruction and
measurements all come from the module libraries.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from MSKPlannerLib.landmark_identity import ExpectedIdentity
from MSKPlannerLib.landmarks import write_markups_json
from MSKPriorsLib.display_presets import apply_preset, default_preset_for
from MSKPriorsLib.hanging_protocols import HangingPlan, ViewAssignment, load_rules
from MSKPriorsLib.pixel_data_series import DicomSeriesVolume, read_dicom_series
from MSKPriorsLib.prior_discovery import PriorSearch, RankedPrior, discover_priors
from MSKPriorsLib.records import SeriesRecord, StudyRecord, shown_date
from MSKPriorsLib.registration import register_rigid
from MSKPriorsLib.series_loader import add_series_volume
from mskworkbench.web import bones, measurements
from mskworkbench.web.case_view import CaseView
from mskworkbench.web.hanging_layout import THREED_VIEW
from mskworkbench.web.hanging_read import (
    HangingRead,
    ReadSeries,
    hung_views,
    plan_for,
    priors_first,
    read_hanging,
    view_labels,
)
from mskworkbench.web.landmark_files import (
    ImportedLandmarks,
    import_markups,
    refuse_other_identity,
)
from mskworkbench.web.landmark_sets import calibration_of
from mskworkbench.web.series_fit import (
    NON_IMAGE_MODALITIES,
    SeriesFit,
    file_positions,
    find_fit,
    frontal_to_shown_ras,
    is_single_image,
    moved_file,
    read_landmark_file,
)
from mskworkbench.web.sources import ViewerSource
from mskworkbench.web.study_rows import (
    PAGE_PRESETS,
    PROTOCOL_PRESET,
    preset_for,
    shown_person_name,
    study_row,
)

__all__ = [
    "MODALITY_ATTRIBUTE",
    "PAGE_PRESETS",
    "PROTOCOL_PRESET",
    "CaseWorkflow",
    "OpenedCase",
    "preset_for",
    "shown_person_name",
    "study_row",
]

logger = logging.getLogger(__name__)

#: Node attribute holding the DICOM modality of a volume the viewer loaded.
MODALITY_ATTRIBUTE = "MSKWB.Modality"


@dataclass
class OpenedCase:
    """A study read from its source with what its hanging protocol shows, ready to be shown.

    Attributes
    ----------
    study
        The current study.
    priors
        The prior search (ranked priors and their series).
    hanging
        The hanging plan and the series read for it.
    current
        The reference series of the current study (landmarks, bones and registration).
    surfaces
        Bone surfaces of the reference series (CT only).
    spare
        Radiographs of the current study that the hanging does not show, read so that a
        landmark file placed on one of them is recognised.
    warnings
        Everything the reader must know, in plain sentences.
    """

    study: StudyRecord
    priors: PriorSearch
    hanging: HangingRead
    current: ReadSeries
    surfaces: list[bones.BoneSurface] = field(default_factory=list)
    spare: dict[str, ReadSeries] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def series_name(header: Any) -> str:
    """How the page names a series: its number and description, as the scanner wrote them."""
    number = str(getattr(header, "SeriesNumber", "") or "").strip()
    description = str(getattr(header, "SeriesDescription", "") or "").strip()
    parts = [f"series {number}" if number else "", description]
    return " · ".join(part for part in parts if part) or "the series shown"


def rejected_notice(count: int) -> str:
    """What the page says of ``count`` studies left out as possibly another patient's."""
    studies = "1 study" if count == 1 else f"{count} studies"
    verb = "is" if count == 1 else "are"
    return (
        f"{studies} under the same PatientID {verb} not offered as priors: the patient identity "
        "does not match."
    )


class CaseWorkflow:
    """Opens cases from a source into a :class:`CaseView` and keeps their landmarks live.

    Parameters
    ----------
    case
        The scene-side view of the case.
    source
        Archive or PACS the studies come from.

    Attributes
    ----------
    on_layout
        Called with a hanging-protocol layout name and whether the case has 3D bones, before
        the views of a hanging are filled; the application switches the page layout there.
    on_series_switched
        Called with a sentence for the reader after a landmark file made a view show another
        series of the current study.
    measured_uid
        The series the landmarks are placed on and measured on: the one the first view of
        the current study shows.
    """

    def __init__(self, case: CaseView, source: ViewerSource) -> None:
        self.case = case
        self.source = source
        self.rules = load_rules()
        self.prior_search: PriorSearch | None = None
        self.hanging: HangingPlan | None = None
        self.series: dict[str, ReadSeries] = {}
        self.reference_uid = ""
        self.current_study: StudyRecord | None = None
        self.current_modality = ""
        self.has_bones = False
        self.page_preset = PROTOCOL_PRESET
        self.landmarks = measurements.LiveLandmarks(case.context)
        self.on_layout: Callable[[str, bool], None] = lambda _layout, _bones: None
        self.on_series_switched: Callable[[str], None] = lambda _message: None
        self.measured_uid = ""
        #: Every series of the current study read so far, shown or not (event-loop thread).
        self.current_reads: dict[str, ReadSeries] = {}

    # -- worker thread ------------------------------------------------------------------

    def _read(self, series: SeriesRecord) -> DicomSeriesVolume:
        return read_dicom_series(self.source.series_files(series), series.series_uid)

    def _largest_series(self, study_uid: str) -> SeriesRecord:
        found = self.source.search_series(study_uid)
        if not found:
            raise ValueError(f"study {study_uid} has no series to show")
        return max(found, key=lambda s: s.number_of_instances)

    def read_study_with_priors(self, study_uid: str) -> OpenedCase:
        """Find and read a study, what its hanging protocol shows, and its bones (worker)."""
        study = self.source.study(study_uid)
        search = discover_priors(study, [self.source])
        plan = plan_for(self.rules, search, search.priors)
        hanging = read_hanging(self.source, search, plan, self._read)
        currents = [a.series_uid for a in plan.assignments if a.role == "current"]
        if currents:
            reference = hanging.read[currents[0]]
        else:
            series = self._largest_series(study_uid)
            reference = ReadSeries(study_uid, series.series_uid, "current", self._read(series))
        opened = OpenedCase(search.current, search, hanging, reference)
        opened.warnings += [w.message for w in reference.volume.warnings]
        # Views the plan could not fill are named by the hanging-protocol panel, not here.
        if search.reason:
            opened.warnings.append(search.reason)
        if search.rejected:
            opened.warnings.append(rejected_notice(len(search.rejected)))
        opened.surfaces, bone_warnings = bones.reconstruct(
            reference.volume.image, reference.volume.modality
        )
        opened.warnings += bone_warnings
        opened.spare, spare_warnings = self._read_spare_radiographs(search, hanging)
        opened.warnings += spare_warnings
        return opened

    def _read_spare_radiographs(
        self, search: PriorSearch, hanging: HangingRead
    ) -> tuple[dict[str, ReadSeries], list[str]]:
        """Read the current study's single-image series that the hanging does not show."""
        shown = {a.series_uid for a in hanging.plan.assignments}
        spare: dict[str, ReadSeries] = {}
        warnings = []
        for series in search.current_series:
            if series.series_uid in shown or not is_image_series(series):
                continue
            if series.number_of_instances != 1:
                continue
            try:
                volume = self._read(series)
            except (OSError, ValueError, RuntimeError) as error:
                warnings.append(f"Series {series.series_number} could not be read: {error}")
                continue
            spare[series.series_uid] = ReadSeries(
                search.current.study_uid, series.series_uid, "current", volume
            )
        return spare, warnings

    def read_view_series(self, view: str, series_uid: str) -> ReadSeries:
        """Read a series the reader chose for a view, unless it was read before (worker).

        Parameters
        ----------
        view
            The slice view (``Red``, ...); its study is the one the series must belong to.
        series_uid
            SeriesInstanceUID of a series of that study.

        Raises
        ------
        KeyError
            When the view shows nothing or the series is not one of its study's series.
        """
        assignment = self._assignment(view)
        known = self.current_reads.get(series_uid) or self.series.get(series_uid)
        if known is not None:
            return known
        record = next(
            (s for s in self._study_series(assignment.study_uid) if s.series_uid == series_uid),
            None,
        )
        if record is None:
            raise KeyError(f"series {series_uid} is not a series of the study view {view} shows")
        return ReadSeries(assignment.study_uid, series_uid, assignment.role, self._read(record))

    def read_with_prior_first(self, study_uid: str, loaded: set[str]) -> HangingRead:
        """Plan the hanging again with a chosen ranked prior first, and read it (worker).

        Parameters
        ----------
        study_uid
            The prior the reader chose.
        loaded
            SeriesInstanceUIDs already in the scene (taken on the event-loop thread).
        """
        if self.prior_search is None:
            raise ValueError("open a study before choosing a prior")
        search = self.prior_search
        plan = plan_for(self.rules, search, priors_first(search, study_uid))
        return read_hanging(self.source, search, plan, self._read, loaded)

    def register(self, current_image: Any, prior: ReadSeries) -> ReadSeries:
        """Rigidly register a read prior to the current image (worker thread; seconds)."""
        result = register_rigid(current_image, prior.volume.image)
        prior.current_to_prior_ras = result.matrix_ras()
        prior.registration = result.to_dict()
        logger.info("prior series %s registered in %.1f s", prior.series_uid, result.elapsed_s)
        return prior

    @property
    def should_register(self) -> bool:
        """Whether the hanging protocol asks for registered priors."""
        return self.hanging is None or self.hanging.register_priors

    # -- event-loop thread --------------------------------------------------------------

    @property
    def priors(self) -> list[RankedPrior]:
        """The ranked priors of the open case."""
        return list(self.prior_search.priors) if self.prior_search else []

    def show(self, opened: OpenedCase) -> None:
        """Put a read case into the scene and hang it (event-loop thread)."""
        self.close_case()
        self.prior_search = opened.priors
        self.current_study = opened.study
        self.current_modality = opened.current.volume.modality
        self.reference_uid = opened.current.series_uid
        self.has_bones = bool(opened.surfaces)
        self.page_preset = PROTOCOL_PRESET
        self.case.add_current(self.reference_uid, self._add_node(opened.current))
        self.series[self.reference_uid] = opened.current
        self.current_reads = {self.reference_uid: opened.current, **opened.spare}
        self.current_reads.update(
            {uid: read for uid, read in opened.hanging.read.items() if read.role == "current"}
        )
        self.show_hanging(opened.hanging)
        if opened.hanging.plan is not None:
            self.case.set_linked(opened.hanging.plan.link)
        bones.show(self.case, opened.surfaces)
        self.case.reset_views()

    def _add_node(self, read: ReadSeries) -> Any:
        loaded = add_series_volume(self.case.context, read.volume)
        loaded.volume_node.SetAttribute(MODALITY_ATTRIBUTE, read.volume.modality)
        return loaded.volume_node

    def show_hanging(self, hanging: HangingRead) -> None:
        """Switch to the plan's layout and fill its views (event-loop thread).

        Series read for the plan are added (priors under their registration, when known);
        series no longer shown are removed, except the current reference series.
        """
        plan = hanging.plan
        wanted = {a.series_uid for a in plan.assignments} | {self.reference_uid}
        for uid in [uid for uid in self.series if uid not in wanted]:
            self.case.remove_volume(uid)
            del self.series[uid]
        for uid, read in hanging.read.items():
            if uid in self.series:
                continue
            self.series[uid] = read
            node = self._add_node(read)
            if read.role == "prior":
                matrix = read.current_to_prior_ras
                self.case.add_prior(uid, node, None if matrix is None else np.asarray(matrix))
            else:
                self.case.add_volume(uid, node)
        self.hanging = plan
        self.on_layout(plan.layout, self.has_bones)
        self.case.hang(hung_views(plan))
        self.apply_preset(self.page_preset)
        self._follow_measured_series()
        self._draw_landmarks_on_measured_views()

    def _draw_landmarks_on_measured_views(self) -> None:
        """Draw the landmarks only where the measured series is shown (its frame)."""
        read = self.series.get(self.measured_uid)
        if read is None:
            return
        views = self.case.views_showing(self.measured_uid)
        if not is_single_image(read.volume):
            views.append(THREED_VIEW)  # the bones are the current volume's, in its frame
        self.landmarks.show_in_views(self.case.view_node_ids(views))

    def _follow_measured_series(self) -> None:
        """Measure on the series of the first current view; a new one starts empty landmarks."""
        assignments = self.hanging.assignments if self.hanging is not None else []
        currents = [a.series_uid for a in assignments if a.role == "current"]
        wanted = currents[0] if currents else self.reference_uid
        if wanted == self.measured_uid or wanted not in self.series:
            return
        self.measured_uid = wanted
        self.landmarks.attach(wanted, calibration_of(self.series[wanted].volume))
        logger.info("landmarks are measured on series %s", wanted)

    def _assignment(self, view: str) -> ViewAssignment:
        if self.hanging is None:
            raise KeyError("open a study before choosing a series")
        for assignment in self.hanging.assignments:
            if assignment.view == view:
                return assignment
        raise KeyError(f"view {view} shows no series")

    def _study_series(self, study_uid: str) -> list[SeriesRecord]:
        if self.prior_search is None:
            return []
        if study_uid == self.prior_search.current.study_uid:
            return list(self.prior_search.current_series)
        for prior in self.prior_search.priors:
            if prior.study.study_uid == study_uid:
                return list(prior.series)
        return []

    def show_view_series(self, view: str, read: ReadSeries) -> None:
        """Show a read series in one view, in the view's orientation (event-loop thread).

        The view keeps its place in the hanging; the series gets its modality's preset. A
        prior series is shown unregistered until it is registered.
        """
        if self.hanging is None:
            raise KeyError("open a study before choosing a series")
        old = self._assignment(view)
        new = dataclasses.replace(
            old, series_uid=read.series_uid, preset=default_preset_for(read.volume.modality)
        )
        plan = dataclasses.replace(
            self.hanging,
            assignments=[new if a.view == view else a for a in self.hanging.assignments],
        )
        if read.role == "current":
            self.current_reads[read.series_uid] = read
        self.show_hanging(HangingRead(plan, {read.series_uid: read}))
        logger.info("view %s shows series %s", view, read.series_uid)

    def series_choices(self) -> list[dict[str, Any]]:
        """Per shown view: what it shows and the series of its study it can show instead.

        Returns
        -------
        list of dict
            ``view``, ``label`` (the view label), ``series_uid`` and ``options`` (``value``:
            SeriesInstanceUID, ``title``: modality, number and description), in view order.
        """
        if self.hanging is None:
            return []
        labels = self.view_labels()
        measured_view = next((a.view for a in self.hanging.assignments if a.role == "current"), "")
        rows = []
        for assignment in self.hanging.assignments:
            options = [
                {"value": s.series_uid, "title": series_title(s)}
                for s in sorted(self._study_series(assignment.study_uid), key=_series_order)
                if is_image_series(s)
            ]
            rows.append(
                {
                    "view": assignment.view,
                    "label": labels.get(assignment.view, assignment.view),
                    "series_uid": assignment.series_uid,
                    "options": options,
                    "measured": assignment.view == measured_view,
                }
            )
        return rows

    def views_refusing_landmarks(self) -> list[str]:
        """The slice views where no landmark may be placed, in the plan's order.

        Landmarks are placed and measured on one series of the current study: a view that
        shows a prior, or another series of the current study (a CT beside the radiograph
        measured on), lies in another frame, so a click there would mix frames.
        """
        if self.hanging is None:
            return []
        return [a.view for a in self.hanging.assignments if a.series_uid != self.measured_uid]

    def refuses_landmarks(self, view: str) -> bool:
        """Whether a click in this slice view must place no landmark."""
        return view in self.views_refusing_landmarks()

    def measured_series_name(self) -> str:
        """The series landmarks are measured on, as the page names it."""
        return self._series_name(self.measured_uid) if self.measured_uid else "the current study"

    @property
    def shown_prior_uids(self) -> list[str]:
        """StudyInstanceUIDs of the priors the hanging shows, most relevant first."""
        if self.hanging is None:
            return []
        uids = [a.study_uid for a in self.hanging.assignments if a.role == "prior"]
        return list(dict.fromkeys(uids))

    def priors_to_register(self) -> list[ReadSeries]:
        """The shown prior series not registered yet, when the protocol asks for registration."""
        if self.hanging is None or not self.should_register:
            return []
        shown = {a.series_uid for a in self.hanging.assignments if a.role == "prior"}
        return [
            read
            for uid, read in self.series.items()
            if uid in shown
            and read.role == "prior"
            and read.current_to_prior_ras is None
            and not is_single_image(read.volume)
        ]

    def close_case(self) -> None:
        """Remove the open case from the scene and forget it (event-loop thread)."""
        self.landmarks.detach()
        interaction = self.case.scene.GetNodeByID("vtkMRMLInteractionNodeSingleton")
        if interaction is not None:
            interaction.SwitchToViewTransformMode()
        self.case.clear()
        self.prior_search = None
        self.hanging = None
        self.series = {}
        self.current_reads = {}
        self.reference_uid = ""
        self.measured_uid = ""
        self.current_study = None
        self.current_modality = ""
        self.has_bones = False

    def apply_registration(self, read: ReadSeries) -> bool:
        """Put a finished registration on a prior; False when the series is no longer shown."""
        if read.current_to_prior_ras is None or read.series_uid not in self.case.transforms:
            return False
        self.case.set_prior_registration(read.series_uid, np.asarray(read.current_to_prior_ras))
        return True

    def study_date(self, study_uid: str) -> str:
        """The date of the current study or a ranked prior, as the page shows dates."""
        studies = [self.current_study, *(p.study for p in self.priors)]
        dates = [s.study_date for s in studies if s is not None and s.study_uid == study_uid]
        return shown_date(dates[0], "") if dates else ""

    def view_labels(self) -> dict[str, str]:
        """Slice view name -> the label the page shows on it."""
        if self.hanging is None or self.prior_search is None:
            return {}
        flat = [uid for uid, read in self.series.items() if read.volume.image.GetDepth() <= 1]
        return view_labels(self.hanging, self.prior_search, self.case.orientation_override, flat)

    def hanging_row(self) -> dict[str, Any] | None:
        """The chosen hanging protocol as the page names it; None without an open case."""
        if self.hanging is None:
            return None
        rule = next((r for r in self.rules if r.name == self.hanging.rule), None)
        return {
            "name": self.hanging.rule,
            "description": rule.description if rule is not None else "",
            "layout": self.hanging.layout,
            "views": len(self.hanging.assignments),
            "unfilled": [f"{view}: {why}" for view, why in self.hanging.unfilled.items()],
        }

    def prior_rows(self) -> list[dict[str, Any]]:
        """The ranked priors as the page lists them, each with its reasons."""
        rows = []
        for prior in self.priors:
            row = study_row(prior.study)
            row.update(rank=prior.rank, score=round(prior.score, 1), reasons=list(prior.reasons))
            rows.append(row)
        return rows

    def apply_preset(self, page_preset: str) -> None:
        """Apply the protocol's presets, or the bone or soft-tissue preset, to every volume."""
        if page_preset != PROTOCOL_PRESET:
            preset_for(page_preset, "CT")  # refuses an unknown page preset first
        self.page_preset = page_preset
        if page_preset == PROTOCOL_PRESET and self.hanging is not None:
            for assignment in self.hanging.assignments:
                node = self.case.volumes.get(assignment.series_uid)
                if node is not None:
                    apply_preset(node, assignment.preset)
            return
        for node in self.case.volumes.values():
            modality = node.GetAttribute(MODALITY_ATTRIBUTE) or ""
            apply_preset(node, preset_for(page_preset, modality))

    def landmark_rows(self) -> list[dict[str, Any]]:
        """The chosen measurement set's landmarks (label and RAS mm) for the page."""
        return self.landmarks.rows()

    def measurement_rows(self) -> dict[str, Any]:
        """The case's measurement table for the page."""
        return self.landmarks.table_rows()

    def move_landmark(self, label: str, axis: int, step_mm: float, point_index: int = 0) -> None:
        """Move one landmark (or one end of a line) along a RAS axis; the measurements follow."""
        self.landmarks.move(label, axis, step_mm, point_index)

    def import_landmarks(self, file_name: str, content: bytes) -> ImportedLandmarks:
        """Place the landmarks of a Slicer markups JSON file on the series they were placed on.

        The series measured on is tried first, then the other series of the current study read
        so far. A file that fits another series makes the first current view show that series
        (``on_series_switched`` says so); a radiograph file written in its frontal plane, as
        the plan reads it, is brought into the plane the radiograph is shown in. Landmarks
        that fit none are refused. See
        :func:`~mskworkbench.web.landmark_files.import_markups`.
        """
        measured = self.series.get(self.measured_uid)
        if self.case.current is None or measured is None or self.current_study is None:
            raise ValueError("open a study before loading landmarks")
        expected = self._expected_identity()
        # A file of another patient is refused before it can switch any view.
        named = sorted(refuse_other_identity(file_name, content, expected))
        found = read_landmark_file(file_name, content)
        fit = None
        if found is not None:
            candidates = [(self.measured_uid, measured.volume)]
            candidates += [
                (uid, read.volume)
                for uid, read in self.current_reads.items()
                if uid != self.measured_uid
            ]
            fit = find_fit(file_positions(found), candidates)
        if found is None or fit is None:
            image_name = f"the current image (series {self._series_name(self.measured_uid)})"
            return self._import_on(measured, file_name, content, image_name, named)
        if fit.series_uid != self.measured_uid:
            self._switch_for_landmarks(file_name, fit)
        if fit.moves_points:
            content = moved_file(found, fit.file_to_shown_ras, file_name)
        reference = self.series[self.measured_uid]
        name = f"series {self._series_name(self.measured_uid)}"
        return self._import_on(reference, file_name, content, name, named)

    def _expected_identity(self) -> ExpectedIdentity:
        """Who and what the open case is, for checking the identity a landmark file names."""
        assert self.current_study is not None
        patient = self.current_study.patient
        current_series = {uid for uid, read in self.series.items() if read.role == "current"}
        return ExpectedIdentity(
            patient.patient_id,
            patient.name,
            patient.birth_date,
            self.current_study.study_uid,
            current_series | set(self.current_reads),
        )

    def _import_on(
        self,
        read: ReadSeries,
        file_name: str,
        content: bytes,
        image_name: str,
        named_identity: list[str],
    ) -> ImportedLandmarks:
        """Place checked landmarks (the identity ``import_landmarks`` already compared)."""
        imported = import_markups(self.landmarks, file_name, content, read.volume.image, image_name)
        # Moved content is rewritten without the identity the reader's file named.
        imported.named_identity = named_identity
        # A radiograph's frame is its own: the views of other series stay where they are.
        views = self.case.views_showing(read.series_uid) if is_single_image(read.volume) else None
        self.case.jump_to(imported.center_ras_mm, views)
        return imported

    def _switch_for_landmarks(self, file_name: str, fit: SeriesFit) -> None:
        """Show the series a landmark file fits in the first current view, and say so."""
        assignments = self.hanging.assignments if self.hanging is not None else []
        view = next(a.view for a in assignments if a.role == "current")
        before = self._series_name(self.measured_uid)
        self.show_view_series(view, self.current_reads[fit.series_uid])
        self.on_series_switched(
            f"{file_name or 'The landmark file'} fits series {self._series_name(fit.series_uid)}"
            f" of the current study, not series {before}: view {view} now shows it and the "
            "landmarks are measured on it."
        )

    def _series_name(self, series_uid: str) -> str:
        """How the page names a series: its number, modality and description."""
        for series in self._study_series(self._study_of(series_uid)):
            if series.series_uid == series_uid:
                return series_title(series)
        return series_uid

    def _study_of(self, series_uid: str) -> str:
        read = self.series.get(series_uid) or self.current_reads.get(series_uid)
        return read.study_uid if read is not None else ""

    def plan_inputs(self, folder: Path) -> dict[str, Any]:
        """What the plan of the open case needs; the landmarks are written to ``folder``.

        Landmarks on a radiograph are written in its frontal plane, where the plan reads them.
        """
        if self.current_study is None:
            raise ValueError("open a study before planning it")
        landmark_files = []
        points = self.landmarks.positions_ras_mm()
        lines = self.landmarks.lines_ras_mm()
        measured = self.series.get(self.measured_uid)
        to_shown = frontal_to_shown_ras(measured.volume) if measured is not None else None
        if to_shown is not None:
            to_frontal = np.linalg.inv(to_shown)
            points = {k: to_frontal[:3, :3] @ v + to_frontal[:3, 3] for k, v in points.items()}
            lines = {k: v @ to_frontal[:3, :3].T + to_frontal[:3, 3] for k, v in lines.items()}
        if points or lines:
            path = folder / f"landmarks_{self.landmarks.side or 'unsided'}.mrk.json"
            write_markups_json(
                path, points, lines, name="Landmarks", description=self.landmarks.side
            )
            landmark_files.append(path)
        return {
            "study": self.current_study,
            "landmark_files": landmark_files,
            "archive_dir": self.source.archive.folder,
            "pacs": self.source.pacs,
        }


def is_image_series(series: SeriesRecord) -> bool:
    """Whether a series holds images a slice view can show (not a report or segmentation)."""
    return series.modality.upper() not in NON_IMAGE_MODALITIES and series.number_of_instances > 0


def series_title(series: SeriesRecord) -> str:
    """A series as the page lists it: number, modality and description."""
    parts = [f"#{series.series_number}", series.modality or "?", series.description]
    return " · ".join(part for part in parts if part)


def _series_order(series: SeriesRecord) -> tuple[int, str]:
    return series.series_number, series.series_uid

"""The viewer's case workflow: open a study with its ranked priors, hang, register, show bones.

Retrieval, reading, registration and bone contouring run on a worker thread and return plain
objects (:class:`OpenedCase`); :meth:`CaseWorkflow.show` then puts them into the scene on the
event-loop thread. Prior ranking, hanging protocols, series reading, presets, registration,
reconstruction and measurements all come from the module libraries.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from MSKPlannerLib.landmarks import read_markups_json, write_markups_json
from MSKPriorsLib.display_presets import apply_preset, default_preset_for
from MSKPriorsLib.hanging_protocols import HangingPlan, load_rules, plan_hanging
from MSKPriorsLib.pixel_data_series import DicomSeriesVolume, read_dicom_series
from MSKPriorsLib.prior_discovery import PriorSearch, RankedPrior, discover_priors
from MSKPriorsLib.records import SeriesRecord, StudyRecord, shown_date
from MSKPriorsLib.registration import register_rigid
from MSKPriorsLib.series_loader import add_series_volume
from mskworkbench.web import bones, measurements
from mskworkbench.web.case_view import CaseView
from mskworkbench.web.sources import ViewerSource

logger = logging.getLogger(__name__)

#: Node attribute holding the DICOM modality of a volume the viewer loaded.
MODALITY_ATTRIBUTE = "MSKWB.Modality"

#: The page's two preset buttons -> the display preset for each modality.
PAGE_PRESETS = {
    "bone": {"CT": "ct-bone"},
    "soft_tissue": {"CT": "ct-soft-tissue"},
}


def shown_person_name(dicom_name: str) -> str:
    """A DICOM person name (PN, ``FAMILY^GIVEN^MIDDLE^PREFIX^SUFFIX``) as ``FAMILY, Given``.

    Only the alphabetic group (before any ``=``) is shown; empty components are dropped.
    """
    alphabetic = dicom_name.split("=", 1)[0]
    parts = [part.strip() for part in alphabetic.split("^")]
    parts += [""] * (5 - len(parts))
    family, given, middle, prefix, suffix = parts[:5]
    first = " ".join(p for p in (prefix, given, middle) if p)
    shown = ", ".join(p for p in (family, first) if p)
    return f"{shown}, {suffix}" if suffix and shown else shown or suffix


def study_row(study: StudyRecord) -> dict[str, Any]:
    """A study as the page lists it, with who it belongs to in words a reader can check."""
    patient = study.patient
    name = shown_person_name(patient.name) or "(no name)"
    birth = shown_date(patient.birth_date, "")
    born = f"born {birth}" if birth else "no birth date"
    patient_id = patient.patient_id.strip() or "(no patient ID)"
    return {
        "study_uid": study.study_uid,
        "patient_id": patient.patient_id,
        "patient_name": name,
        "birth_date": birth,
        "patient_label": f"{name} · {born} · ID {patient_id}",
        "date": shown_date(study.study_date),
        "description": study.description,
        "modalities": ", ".join(study.modalities),
        "source": study.source,
    }


def preset_for(page_preset: str, modality: str) -> str:
    """The display preset behind a page preset button for a modality.

    MR and radiograph intensities are not calibrated, so both buttons use their automatic
    window there.
    """
    if page_preset not in PAGE_PRESETS:
        raise KeyError(f"unknown display preset {page_preset!r}")
    return PAGE_PRESETS[page_preset].get(modality.upper(), default_preset_for(modality))


@dataclass
class ReadPrior:
    """A prior read from its source, with its registration to the current volume."""

    study_uid: str
    volume: DicomSeriesVolume
    current_to_prior_ras: Any = None
    registration: dict[str, Any] = field(default_factory=dict)


@dataclass
class OpenedCase:
    """A study read from its source, with its best prior, ready to be shown."""

    study: StudyRecord
    current: DicomSeriesVolume
    priors: PriorSearch
    hanging: HangingPlan | None = None
    prior: ReadPrior | None = None
    surfaces: list[bones.BoneSurface] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


class CaseWorkflow:
    """Opens cases from a source into a :class:`CaseView` and keeps their landmarks live.

    Parameters
    ----------
    case
        The scene-side view of the case.
    source
        Archive or PACS the studies come from.
    """

    def __init__(self, case: CaseView, source: ViewerSource) -> None:
        self.case = case
        self.source = source
        self.rules = load_rules()
        self.prior_search: PriorSearch | None = None
        self.hanging: HangingPlan | None = None
        self.shown_prior_uid = ""
        self.current_study: StudyRecord | None = None
        self.current_modality = ""
        self.landmarks = measurements.LiveLandmarks(case.context)

    # -- worker thread ------------------------------------------------------------------

    def _read(self, series: SeriesRecord) -> DicomSeriesVolume:
        return read_dicom_series(self.source.series_files(series), series.series_uid)

    def _series(self, study_uid: str, wanted: str, modality: str = "") -> SeriesRecord:
        found = self.source.search_series(study_uid)
        for series in found:
            if series.series_uid == wanted:
                return series
        images = [s for s in found if not modality or s.modality == modality] or found
        if not images:
            raise ValueError(f"study {study_uid} has no series to show")
        return max(images, key=lambda s: s.number_of_instances)

    def read_study_with_priors(self, study_uid: str) -> OpenedCase:
        """Find, retrieve and read a study, its best prior and its bones (worker thread)."""
        study = self.source.study(study_uid)
        search = discover_priors(study, [self.source])
        priors = [(p.study, list(p.series)) for p in search.priors]
        hanging = plan_hanging(self.rules, search.current, list(search.current_series), priors)
        by_role = {a.role: a for a in reversed(hanging.assignments)}
        current_uid = by_role["current"].series_uid if "current" in by_role else ""
        current = self._read(self._series(study_uid, current_uid))
        opened = OpenedCase(study=search.current, current=current, priors=search, hanging=hanging)
        opened.warnings += [w.message for w in current.warnings]
        if search.reason:
            opened.warnings.append(search.reason)
        if search.rejected:
            opened.warnings.append(
                f"{len(search.rejected)} studies under the same PatientID are not offered as "
                "priors: their patient identity does not match."
            )
        prior_assignment = by_role.get("prior")
        if prior_assignment is not None:
            series = self._series(
                prior_assignment.study_uid, prior_assignment.series_uid, current.modality
            )
            opened.prior = ReadPrior(prior_assignment.study_uid, self._read(series))
        opened.surfaces, bone_warnings = bones.reconstruct(current.image, current.modality)
        opened.warnings += bone_warnings
        return opened

    def read_prior(self, study_uid: str) -> ReadPrior:
        """Read another ranked prior of the open case (worker thread)."""
        if study_uid not in {p.study.study_uid for p in self.priors}:
            raise KeyError(f"study {study_uid} is not a ranked prior of the open case")
        volume = self._read(self._series(study_uid, "", self.current_modality))
        return ReadPrior(study_uid, volume)

    def register(self, current_image: Any, prior: ReadPrior) -> ReadPrior:
        """Rigidly register a read prior to the current image (worker thread; seconds)."""
        result = register_rigid(current_image, prior.volume.image)
        prior.current_to_prior_ras = result.matrix_ras()
        prior.registration = result.to_dict()
        logger.info("prior %s registered in %.1f s", prior.study_uid, result.elapsed_s)
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
        """Put a read case into the scene and the views (event-loop thread)."""
        self.case.clear()
        self.prior_search = opened.priors
        self.hanging = opened.hanging
        self.current_study = opened.study
        self.current_modality = opened.current.modality
        loaded = add_series_volume(self.case.context, opened.current)
        loaded.volume_node.SetAttribute(MODALITY_ATTRIBUTE, opened.current.modality)
        self.case.show_current(loaded.volume_node)
        self.shown_prior_uid = ""
        if opened.prior is not None:
            self.show_prior(opened.prior)
        if opened.hanging is not None:
            self.case.set_linked(opened.hanging.link)
        bones.show(self.case, opened.surfaces)
        self.landmarks.attach(opened.current.series_uid)
        self.case.reset_views()

    def close_case(self) -> None:
        """Remove the open case from the scene and forget it (event-loop thread)."""
        self.landmarks.detach()
        interaction = self.case.scene.GetNodeByID("vtkMRMLInteractionNodeSingleton")
        if interaction is not None:
            interaction.SwitchToViewTransformMode()
        self.case.clear()
        self.prior_search = None
        self.hanging = None
        self.shown_prior_uid = ""
        self.current_study = None
        self.current_modality = ""

    def apply_registration(self, read: ReadPrior) -> bool:
        """Put a finished registration on the shown prior; False when another prior is shown."""
        if read.study_uid != self.shown_prior_uid or read.current_to_prior_ras is None:
            return False
        self.case.set_prior_registration(np.asarray(read.current_to_prior_ras))
        return True

    def show_prior(self, read: ReadPrior) -> None:
        """Show a read prior beside the current volume (in the scanner frame until registered)."""
        for node in (self.case.prior, self.case.prior_transform):
            if node is not None:
                self.case.scene.RemoveNode(node)
        loaded = add_series_volume(self.case.context, read.volume)
        loaded.volume_node.SetAttribute(MODALITY_ATTRIBUTE, read.volume.modality)
        matrix = read.current_to_prior_ras
        self.case.show_prior(loaded.volume_node, None if matrix is None else np.asarray(matrix))
        self.shown_prior_uid = read.study_uid

    def hung_orientation(self) -> str:
        """Slice orientation the hanging protocol gives the current study (Axial by default)."""
        if self.hanging is not None:
            for assignment in self.hanging.assignments:
                if assignment.role == "current" and assignment.orientation:
                    return assignment.orientation
        return "Axial"

    def prior_rows(self) -> list[dict[str, Any]]:
        """The ranked priors as the page lists them, each with its reasons."""
        rows = []
        for prior in self.priors:
            row = study_row(prior.study)
            row.update(rank=prior.rank, score=round(prior.score, 1), reasons=list(prior.reasons))
            rows.append(row)
        return rows

    def apply_preset(self, page_preset: str) -> None:
        """Apply the bone or soft-tissue preset to the current and prior volumes."""
        for node in (self.case.current, self.case.prior):
            if node is not None:
                modality = node.GetAttribute(MODALITY_ATTRIBUTE) or ""
                apply_preset(node, preset_for(page_preset, modality))

    def landmark_rows(self) -> list[dict[str, Any]]:
        """The case's landmarks (label and RAS mm) for the page."""
        return self.landmarks.rows()

    def measurement_rows(self) -> dict[str, Any]:
        """The case's measurement table for the page."""
        return self.landmarks.table_rows()

    def move_landmark(self, label: str, axis: int, step_mm: float) -> None:
        """Move one landmark along a RAS axis; the measurements follow."""
        self.landmarks.move(label, axis, step_mm)

    def start_placing(self, label: str) -> None:
        """Make the next click in a slice view place the named landmark."""
        self.landmarks.start_placing(self.case.slicer_app, label)

    def import_landmarks(self, file_name: str, content: bytes) -> str:
        """Place the landmarks of a Slicer markups JSON file; return the side it names.

        Only the labels of the measurement table are taken; positions are world RAS mm. The
        landmarks' side becomes the file's (empty when the file names none, so the reader must
        choose it before the sided measurements are made).

        Raises
        ------
        ValueError
            When no study is open, or the file is not markups JSON or holds none of the labels.
        """
        if self.case.current is None:
            raise ValueError("open a study before loading landmarks")
        with tempfile.TemporaryDirectory(prefix="mskwb-landmarks-") as folder:
            path = Path(folder) / (Path(file_name).name or "landmarks.mrk.json")
            path.write_bytes(content)
            try:
                found = read_markups_json(path)
            except ValueError as error:  # name the file as the reader chose it
                raise ValueError(str(error).replace(str(path), path.name)) from error
        wanted = {k: v for k, v in found.points_ras_mm.items() if k in measurements.LANDMARK_LABELS}
        if not wanted:
            raise ValueError(f"{file_name} holds none of the landmarks of the measurement table")
        # The side belongs to the file: one that names none must not keep the previous file's.
        self.landmarks.set_side(found.side or "")
        for label, position in wanted.items():
            self.landmarks.set_position(label, position)
        self.case.jump_to(np.mean(list(wanted.values()), axis=0))
        return found.side or ""

    def plan_inputs(self, folder: Path) -> dict[str, Any]:
        """What the plan of the open case needs; the landmarks are written to ``folder``."""
        if self.current_study is None:
            raise ValueError("open a study before planning it")
        landmark_files = []
        points = self.landmarks.positions_ras_mm()
        if points:
            path = folder / f"landmarks_{self.landmarks.side or 'unsided'}.mrk.json"
            write_markups_json(path, points, name="Landmarks", description=self.landmarks.side)
            landmark_files.append(path)
        return {
            "study": self.current_study,
            "landmark_files": landmark_files,
            "archive_dir": self.source.archive.folder,
            "pacs": self.source.pacs,
        }

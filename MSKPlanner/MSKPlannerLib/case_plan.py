"""Plan a case end to end: studies, priors, loading, registration, bones, measures, report.

Main entry point, for the command line and the desktop module::

    request = PlanRequest(out_dir=Path("plan"), archive_dir=Path("archive"), patient_id="123")
    result = plan_case(request, progress=print_stage)
    result.plan["measurements"]             # the same dictionary as plan.json

The stages, each timed for the benchmark (:attr:`PlanResult.seconds`):

1. ``retrieve``: find the current study (named by its UID, or the patient's newest study)
   and rank the same patient's priors on the PACS or in the archive (patient matching is
   strict: an empty PatientID matches nothing, conflicting identities are rejected); refuse
   the plan when a landmark file names two patients or another patient, study or series than
   the current study's; then retrieve into the local archive what the archive does not hold
   yet.
2. ``load``: every CT/MR volume and projection radiograph of the current study and of the
   priors used, with their geometry warnings, under Patient > Study in the subject hierarchy.
3. ``register``: each prior CT/MR rigidly onto the current one of the same modality.
4. ``reconstruct``: the bones of every CT, one closed surface per bone (STL files).
5. ``measure``: every measurement the inputs allow (Cobb from labels or endplate lines,
   alignment and hip from landmarks), and for every other one what is missing.
6. ``render``: offscreen pictures (current beside prior, 3D bones, measurement overlays).
7. ``write``: ``plan.json``, ``report.html``, ``scene.mrb``, the measurement table and, where
   the reporting modules can, DICOM SR, SEG and key images (stored on the PACS with
   ``push``).

MRML logic: works on the :class:`~MSKPriorsLib.app_context.AppContext` it is given.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from MSKPlannerLib import case_figures, case_loading, case_measures
from MSKPlannerLib.landmark_identity import (
    ExpectedIdentity,
    LandmarkIdentityError,
    check_landmark_files,
)
from MSKPlannerLib.measurement_table import MeasurementTable
from MSKPlannerLib.report_html import write_report
from MSKPriorsLib.app_context import AppContext
from MSKPriorsLib.archive import LocalArchive, NotAnArchiveError
from MSKPriorsLib.prior_discovery import PriorSearch, discover_priors
from MSKPriorsLib.records import SeriesRecord, StudyRecord, shown_date

logger = logging.getLogger(__name__)

#: Stages in the order they run; :attr:`PlanResult.seconds` has one entry per stage.
STAGES = ("retrieve", "load", "register", "reconstruct", "measure", "render", "write")

#: Modalities loaded as volumes and as projection radiographs.
VOLUME_MODALITIES = ("CT", "MR")
RADIOGRAPH_MODALITIES = ("CR", "DX", "DR", "RG")

ProgressCallback = Callable[[str, str], None]


class PlanError(RuntimeError):
    """The case cannot be planned; the message names the study, patient or file."""


@dataclass
class PlanRequest:
    """What to plan and where to write it.

    Attributes
    ----------
    out_dir
        Output folder (created).
    archive_dir
        Local archive to read from (``--archive``); with ``pacs``, where retrieved instances
        are kept (default ``out_dir / "archive"``).
    pacs
        Configured server name or DICOMweb URL (``--pacs``).
    patient_id, study_uid
        The patient (its newest study is the current one) or the current study.
    landmark_files
        Slicer markups JSON files (lower-limb, hip landmarks, endplate lines).
    labels_file
        Label map of the current CT (``.seg.nrrd`` or NIfTI, TotalSegmentator names); a
        ``label_names.json`` beside a NIfTI file names its values.
    push
        Store SR, SEG and key images on the PACS.
    max_priors
        How many of the ranked priors to load.
    """

    out_dir: Path
    archive_dir: Path | None = None
    pacs: str | None = None
    patient_id: str | None = None
    study_uid: str | None = None
    landmark_files: list[Path] = field(default_factory=list)
    labels_file: Path | None = None
    push: bool = False
    max_priors: int = 2


@dataclass
class PlanResult:
    """Outcome of :func:`plan_case`.

    Attributes
    ----------
    plan
        The dictionary written as ``plan.json`` (keys ``studies``, ``warnings``,
        ``measurements``, ``reconstruction``, ``files``).
    out_dir
        The output folder.
    seconds
        Wall time per stage of :data:`STAGES`.
    context
        The scene that was built (saved as ``scene.mrb``).
    """

    plan: dict[str, Any]
    out_dir: Path
    seconds: dict[str, float]
    context: AppContext

    @property
    def report_path(self) -> Path:
        """The report page."""
        return self.out_dir / "report.html"


@dataclass
class PlanState:
    """What the stages hand to each other."""

    request: PlanRequest
    context: AppContext
    archive: LocalArchive
    client: Any = None
    current: StudyRecord | None = None
    current_reason: str = ""
    search: PriorSearch | None = None
    used_priors: list[Any] = field(default_factory=list)
    unused_priors: dict[str, str] = field(default_factory=dict)
    loaded: list[case_loading.LoadedImage] = field(default_factory=list)
    warnings: list[dict[str, Any]] = field(default_factory=list)
    reconstructions: list[dict[str, Any]] = field(default_factory=list)
    table: MeasurementTable = field(default_factory=MeasurementTable)
    figures: list[Any] = field(default_factory=list)
    files: dict[str, Any] = field(default_factory=dict)
    hierarchy_items: dict[str, int] = field(default_factory=dict)
    surface_results: list[tuple[Any, str, Any]] = field(default_factory=list)
    landmarks: Any = None
    landmark_image: Any = None
    markups_nodes: list[Any] = field(default_factory=list)

    def warn(self, kind: str, code: str, message: str, where: str = "", high: bool = False) -> None:
        """Record a warning for the plan and the report."""
        self.warnings.append(
            {
                "kind": kind,
                "code": code,
                "message": message,
                "where": where,
                "severity": "high" if high else "normal",
            }
        )


class _Timer:
    def __init__(self, progress: ProgressCallback | None) -> None:
        self.seconds = dict.fromkeys(STAGES, 0.0)
        self.progress = progress

    @contextmanager
    def stage(self, name: str, message: str) -> Iterator[None]:
        if self.progress:
            self.progress(name, message)
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - start


def plan_case(
    request: PlanRequest,
    context: AppContext | None = None,
    progress: ProgressCallback | None = None,
) -> PlanResult:
    """Plan one case and write its outputs (see the module documentation).

    Parameters
    ----------
    request
        What to plan and where to write it.
    context
        Scene to build into; a new headless one when omitted.
    progress
        Called with ``(stage, message)`` as the work goes on.

    Raises
    ------
    PlanError
        When the current study cannot be found or holds nothing that can be loaded.
    """
    if request.pacs is None and request.archive_dir is None:
        raise PlanError("name a PACS or a local archive to plan from")
    if not (request.patient_id or request.study_uid):
        raise PlanError("name the patient ID or the study UID of the case")
    out_dir = Path(request.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    timer = _Timer(progress)
    context = context or AppContext.create_headless()
    state = PlanState(request, context, _open_archive(request))
    try:
        with timer.stage("retrieve", "finding the current study and its priors"):
            _find_studies(state)
            _check_landmark_identity(state)
            _retrieve(state, progress)
        with timer.stage("load", "loading the current study and the priors"):
            case_loading.load_studies(state)
        with timer.stage("register", "registering priors to the current study"):
            case_loading.register_priors(state)
        with timer.stage("reconstruct", "reconstructing bones"):
            case_measures.reconstruct_all(state)
        with timer.stage("measure", "measuring"):
            case_measures.measure_all(state)
        with timer.stage("render", "rendering report pictures"):
            state.figures = case_figures.make_figures(state)
        with timer.stage("write", "writing the plan, report and scene"):
            plan = _write_outputs(state)
    except PlanError as error:
        _write_stopped_plan(state, error)
        raise
    finally:
        if state.client is not None:
            state.client.close()
        state.archive.close()
    timings = {"seconds": {name: round(value, 3) for name, value in timer.seconds.items()}}
    (out_dir / "timings.json").write_text(json.dumps(timings, indent=2))
    return PlanResult(plan=plan, out_dir=out_dir, seconds=timer.seconds, context=context)


def _open_archive(request: PlanRequest) -> LocalArchive:
    folder = Path(request.archive_dir or Path(request.out_dir) / "archive")
    if request.pacs is not None:
        return LocalArchive(folder)  # receives the retrieved studies; created when missing
    try:
        return LocalArchive.open_existing(folder)
    except NotAnArchiveError as error:
        raise PlanError(str(error)) from error


def _sources(state: PlanState) -> list[Any]:
    if state.request.pacs is None:
        return [state.archive]
    if state.client is None:
        from MSKPriorsLib.dicomweb import DicomWebClient
        from MSKPriorsLib.servers import resolve_server

        state.client = DicomWebClient(resolve_server(state.request.pacs))
    return [state.client]


def _find_studies(state: PlanState) -> None:
    """Find the current study and rank the priors (stage ``retrieve``)."""
    request = state.request
    sources = _sources(state)
    if request.study_uid:
        found = [s for src in sources for s in src.search_studies(study_uid=request.study_uid)]
        if not found:
            raise PlanError(f"study {request.study_uid} was not found")
        state.current = found[0]
        state.current_reason = "named on the command line"
    else:
        patient_id = str(request.patient_id)
        found = [s for src in sources for s in src.search_studies(patient_id=patient_id)]
        found = [s for s in found if s.patient.patient_id == patient_id]
        if not found:
            raise PlanError(f"no study of patient {patient_id} was found")
        found.sort(key=lambda s: (s.study_date, s.study_time, s.study_uid), reverse=True)
        state.current = found[0]
        state.current_reason = "the patient's newest study"
        identities = {(s.patient.name, s.patient.birth_date) for s in found}
        if len(identities) > 1:
            state.warn(
                "matching",
                "identities_differ",
                f"Studies filed under patient ID {patient_id} name {len(identities)} different "
                "people (name or birth date differ); only studies matching the current one are "
                "used as priors.",
                high=True,
            )
    state.search = discover_priors(state.current, sources)
    search = state.search
    if not search.current_series:  # prior discovery does not search for an unmatched patient
        for source in sources:
            search.current_series = tuple(source.search_series(state.current.study_uid))
            if search.current_series:
                break
    if search.reason:
        state.warn("matching", "no_priors", f"No prior can be matched: {search.reason}.")
    for rejected in search.rejected:
        date = shown_date(rejected.study.study_date, "unknown date")
        state.warn(
            "matching",
            rejected.code,
            f"A study of {date} filed under the same patient ID was NOT used: {rejected.reason}",
            where=f"study {rejected.study.study_uid}",
            high=True,
        )
    for error in search.source_errors:
        state.warn("matching", "source_error", error)
    usable = [p for p in search.priors if _has_modality(p.series, VOLUME_MODALITIES)]
    state.used_priors = usable[: max(request.max_priors, 0)]
    for prior in search.priors:
        if prior in state.used_priors:
            continue
        if prior in usable:
            state.unused_priors[prior.study.study_uid] = (
                f"ranked below the {request.max_priors} priors loaded"
            )
        else:
            state.unused_priors[prior.study.study_uid] = "holds no CT or MR volume to compare"


def _check_landmark_identity(state: PlanState) -> None:
    """Refuse the plan when a landmark file names two patients or not the current study's.

    Checked before anything is retrieved: landmarks of another patient must never be measured
    for this one, and leaving the file out would report the case as planned without them.
    """
    if not state.request.landmark_files or state.current is None:
        return
    patient = state.current.patient
    series = state.search.current_series if state.search is not None else ()
    expected = ExpectedIdentity(
        patient.patient_id,
        patient.name,
        patient.birth_date,
        state.current.study_uid,
        {s.series_uid for s in series},
    )
    try:
        check_landmark_files(state.request.landmark_files, expected)
    except LandmarkIdentityError as error:
        raise PlanError(f"landmark file refused, nothing was measured: {error}") from error


def _has_modality(series: Sequence[SeriesRecord], modalities: Sequence[str]) -> bool:
    return any(s.modality in modalities for s in series)


def _wanted_series(series: Sequence[SeriesRecord], volumes_only: bool) -> list[SeriesRecord]:
    modalities = VOLUME_MODALITIES if volumes_only else VOLUME_MODALITIES + RADIOGRAPH_MODALITIES
    return [s for s in series if s.modality in modalities]


def _retrieve(state: PlanState, progress: ProgressCallback | None) -> None:
    """Retrieve the series to load into the archive when planning from a PACS."""
    if state.client is None or state.search is None:
        return
    from MSKPriorsLib.retrieval import retrieve_into_archive

    wanted = _wanted_series(state.search.current_series, volumes_only=False)
    for prior in state.used_priors:
        wanted += _wanted_series(prior.series, volumes_only=True)
    if progress:
        progress("retrieve", f"retrieving {len(wanted)} series into {state.archive.folder}")
    result = retrieve_into_archive(state.client, state.archive, wanted)
    for failure in result.failures:
        state.warn("retrieval", "retrieval_failed", failure)


def _studies_dict(state: PlanState) -> dict[str, Any]:
    search = state.search
    assert state.current is not None and search is not None
    used = {p.study.study_uid for p in state.used_priors}
    priors = []
    for prior in search.priors:
        entry = prior.to_dict()
        entry["used"] = prior.study.study_uid in used
        entry["why"] = (
            f"ranked {prior.rank}: {prior.reason}"
            if entry["used"]
            else f"not loaded: {state.unused_priors.get(prior.study.study_uid, '')}"
        )
        loaded = [image for image in state.loaded if image.study_uid == prior.study.study_uid]
        entry["series_loaded"] = [image.series_uid for image in loaded]
        entry["registration"] = {
            image.series_uid: image.registration for image in loaded if image.registration
        }
        priors.append(entry)
    return {
        "current": {
            "study": search.current.to_dict(),
            "used": True,
            "why": state.current_reason,
            "series_loaded": [
                image.series_uid
                for image in state.loaded
                if image.study_uid == state.current.study_uid
            ],
        },
        "priors": priors,
        "rejected": [item.to_dict() for item in search.rejected],
        "excluded": [item.to_dict() for item in search.excluded],
        "prior_search": (f"No prior can be matched: {search.reason}." if search.reason else ""),
    }


def _measurements_dict(state: PlanState) -> dict[str, Any]:
    data = state.table.to_dict()
    labels = {image.series_uid: image.title for image in state.loaded}
    for row in data["rows"]:
        row["source_label"] = labels.get(row["source_image"], row["source_image"])
    return data


def _write_outputs(state: PlanState) -> dict[str, Any]:
    out_dir = Path(state.request.out_dir)
    files = state.files
    table_path = out_dir / "measurements.json"
    state.table.write_json(table_path)
    files["measurements"] = table_path.name
    case_measures.add_reporting_outputs(state)
    files["scene"] = "scene.mrb"
    files["report"] = "report.html"
    files["plan"] = "plan.json"
    files["timings"] = "timings.json"
    plan = {
        "studies": _studies_dict(state),
        "warnings": state.warnings,
        "measurements": _measurements_dict(state),
        "reconstruction": state.reconstructions,
        "files": files,
    }
    case_loading.add_scene_records(state)
    _save_scene_quietly(state.context, out_dir / "scene.mrb")
    write_report(out_dir / "report.html", plan, state.figures, title="MSK Workbench case plan")
    (out_dir / "plan.json").write_text(json.dumps(plan, indent=2, default=str))
    return plan


def _write_stopped_plan(state: PlanState, error: PlanError) -> None:
    """Write ``plan.json`` with the reason the plan stopped and the warnings met so far."""
    plan = {
        "error": str(error),
        "studies": _studies_dict(state) if state.search and state.current else {},
        "warnings": state.warnings,
        "measurements": _measurements_dict(state),
        "files": {"plan": "plan.json"},
    }
    out_dir = Path(state.request.out_dir)
    (out_dir / "plan.json").write_text(json.dumps(plan, indent=2, default=str))


def _save_scene_quietly(context: AppContext, path: Path) -> None:
    """Write the scene bundle without VTK's per-file progress messages on standard error."""
    import vtk

    window = vtk.vtkOutputWindow.GetInstance()
    mode = window.GetDisplayMode()
    window.SetDisplayModeToNever()
    try:
        context.save_mrb(path)  # failures raise; only the chatter is hidden
    finally:
        window.SetDisplayMode(mode)

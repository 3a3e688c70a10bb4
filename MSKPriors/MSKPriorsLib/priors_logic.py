"""What the MSK Priors panel does, without Qt: connect, search, rank, retrieve, compare.

The desktop module's Logic class inherits from :class:`PriorsLogic` and hands it the
application's scene; tests run it headless on a scene of their own. Passwords and tokens are
kept in memory on the server object only, never in the scene or in logs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from MSKPriorsLib.app_context import AppContext
from MSKPriorsLib.archive import LocalArchive
from MSKPriorsLib.dicomweb import DicomWebClient
from MSKPriorsLib.hanging_protocols import HangingPlan, load_rules, plan_hanging
from MSKPriorsLib.hanging_views import apply_hanging_plan
from MSKPriorsLib.prior_discovery import PriorSearch, StudySource, discover_priors
from MSKPriorsLib.records import StudyRecord
from MSKPriorsLib.registration import register_prior_volume
from MSKPriorsLib.retrieval import TransferProgress, retrieve_into_archive
from MSKPriorsLib.series_loader import load_series
from MSKPriorsLib.servers import PacsServer, load_servers, resolve_server

logger = logging.getLogger(__name__)

#: Called with (instances done, instances in all) while retrieving.
ProgressCallback = Callable[[int, int], None]


@dataclass
class Comparison:
    """Current and priors as loaded for reading side by side.

    Attributes
    ----------
    plan
        The hanging plan that was applied.
    volumes_by_series
        SeriesInstanceUID -> loaded volume node.
    volumes_by_view
        View name -> the volume node it shows.
    warnings
        Geometry and registration messages to show the user.
    """

    plan: HangingPlan
    volumes_by_series: dict[str, Any] = field(default_factory=dict)
    volumes_by_view: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


class PriorsLogic:
    """The panel's operations on one scene, one optional PACS and one local archive.

    Parameters
    ----------
    context
        The scene and module logics to load into.
    """

    def __init__(self, context: AppContext) -> None:
        self.context = context
        self.server: PacsServer | None = None
        self.client: DicomWebClient | None = None
        self.archive: LocalArchive | None = None

    def configured_server_names(self) -> list[str]:
        """Names of the servers in the user's server configuration file."""
        try:
            return sorted(load_servers())
        except (OSError, ValueError) as error:
            logger.warning("server configuration not read: %s", error)
            return []

    def describe_server(self, name: str) -> tuple[str, str]:
        """Return ``(url, auth kind)`` of a configured server."""
        server = resolve_server(name)
        return server.url, server.auth

    def connect(
        self,
        server_name: str = "",
        server_url: str = "",
        auth_kind: str = "none",
        username: str = "",
        secret: str = "",
        verify_tls: bool = True,
        archive_folder: Path | None = None,
    ) -> None:
        """Choose the PACS (a configured name, or a URL with its credentials) and the archive.

        Parameters
        ----------
        server_name
            A configured server; takes precedence over ``server_url``.
        server_url
            A DICOMweb base URL; empty to work on the archive alone.
        auth_kind
            ``none``, ``basic`` or ``bearer`` for ``server_url``.
        secret
            Password or token typed by the user; kept in memory only.
        archive_folder
            Folder of the local archive (created when missing).
        """
        if archive_folder is not None:
            self.archive = LocalArchive(Path(archive_folder))
        if server_name:
            self.server = resolve_server(server_name)
        elif server_url:
            self.server = PacsServer(
                name="pacs",
                url=server_url,
                auth=auth_kind,  # type: ignore[arg-type]
                username=username,
                verify_tls=verify_tls,
            )
        else:
            self.server = None
        if self.server is not None and secret:
            self.server = replace(self.server, stored_secret=secret)
        self.client = DicomWebClient(self.server) if self.server is not None else None

    def sources(self) -> list[StudySource]:
        """The places searched: the PACS when connected, and the archive."""
        found: list[StudySource] = []
        if self.client is not None:
            found.append(self.client)
        if self.archive is not None:
            found.append(self.archive)
        if not found:
            raise RuntimeError("connect to a PACS or choose a local archive first")
        return found

    def search_studies(self, patient_id: str) -> list[StudyRecord]:
        """Studies of a patient on the first source (PACS, else archive), newest first."""
        if not patient_id.strip():
            raise ValueError("enter a patient ID: an empty ID matches no patient")
        studies = self.sources()[0].search_studies(patient_id=patient_id)
        return sorted(studies, key=lambda s: (s.study_date, s.study_time), reverse=True)

    @staticmethod
    def study_row(study: StudyRecord) -> tuple[str, ...]:
        """One table row: date, modalities, body parts, description, source."""
        return (
            study.study_date,
            "/".join(study.modalities),
            "/".join(study.body_parts),
            study.description,
            study.source,
        )

    def find_priors(self, current: StudyRecord) -> PriorSearch:
        """Rank the current patient's other studies on every source, with reasons."""
        return discover_priors(current, self.sources())

    @staticmethod
    def prior_rows(search: PriorSearch) -> list[tuple[str, ...]]:
        """Table rows of the ranked priors: rank, date, modality, body part, reason."""
        return [
            (
                str(prior.rank),
                prior.study.study_date,
                "/".join(prior.study.modalities),
                "/".join(prior.study.body_parts),
                prior.reason,
            )
            for prior in search.priors
        ]

    @staticmethod
    def rejected_rows(search: PriorSearch) -> list[tuple[str, str]]:
        """Table rows of studies that were not matched to the patient, with why."""
        rows = [(item.study.study_uid, item.reason) for item in search.rejected]
        if search.reason:
            rows.insert(0, ("(all)", search.reason))
        return rows

    def retrieve(self, search: PriorSearch, progress: ProgressCallback | None = None) -> list[Path]:
        """Retrieve the current study and the ranked priors into the archive.

        Returns
        -------
        list of pathlib.Path
            Folders of the archived series, for the desktop DICOM database to import.

        Raises
        ------
        RuntimeError
            Without an archive, or when some series could not be retrieved (named).
        """
        if self.archive is None:
            raise RuntimeError("choose a local archive folder to retrieve into")
        studies = [search.current] + [prior.study for prior in search.priors]
        if self.client is not None:
            series = [s for study in studies for s in self.client.search_series(study.study_uid)]

            def relay(snapshot: TransferProgress) -> None:
                if progress is not None:
                    progress(snapshot.instances_done, snapshot.instances_total)

            result = retrieve_into_archive(self.client, self.archive, series, progress=relay)
            if result.failures:
                raise RuntimeError("; ".join(result.failures))
        folders: set[Path] = set()
        for study in studies:
            for series_record in self.archive.search_series(study.study_uid):
                paths = self.archive.instance_paths(series_record.series_uid)
                folders.update(path.parent for path in paths)
        return sorted(folders)

    def load_comparison(
        self, search: PriorSearch, preset: str, register: bool, link: bool
    ) -> Comparison:
        """Load current and priors from the archive and show them with the hanging protocol.

        Parameters
        ----------
        search
            The prior search of the current study.
        preset
            Window/level preset for every view (``ct-bone``, ``ct-soft-tissue``, ...), or
            ``auto`` for what the hanging protocol chose.
        register
            Rigidly register each prior volume to the current one.
        link
            Scroll the views together.
        """
        if self.archive is None:
            raise RuntimeError("choose a local archive folder to load from")
        archive = self.archive
        current_series = archive.search_series(search.current.study_uid)
        priors = [
            (prior.study, archive.search_series(prior.study.study_uid)) for prior in search.priors
        ]
        plan = plan_hanging(load_rules(), search.current, current_series, priors)
        plan.link = link
        comparison = Comparison(plan=plan)
        for assignment in plan.assignments:
            if assignment.series_uid in comparison.volumes_by_series:
                continue
            loaded = load_series(self.context, archive.instance_paths(assignment.series_uid))
            comparison.volumes_by_series[assignment.series_uid] = loaded.volume_node
            comparison.warnings.extend(w.message for w in loaded.warnings)
        if preset != "auto":
            plan.assignments = [replace(a, preset=preset) for a in plan.assignments]
        for assignment in plan.assignments:
            comparison.volumes_by_view[assignment.view] = comparison.volumes_by_series[
                assignment.series_uid
            ]
        if register:
            self._register_priors(plan, comparison, search.current.study_uid)
        apply_hanging_plan(self.context.scene, plan, comparison.volumes_by_series)
        return comparison

    def _register_priors(self, plan: HangingPlan, comparison: Comparison, current_uid: str) -> None:
        current = [a for a in plan.assignments if a.study_uid == current_uid]
        if not current:
            comparison.warnings.append("no current series in the layout: priors not registered")
            return
        fixed = comparison.volumes_by_series[current[0].series_uid]
        for assignment in plan.assignments:
            if assignment.study_uid == current_uid:
                continue
            moving = comparison.volumes_by_series[assignment.series_uid]
            if moving.GetParentTransformNode() is None:
                register_prior_volume(self.context.scene, fixed, moving)

"""Read what a hanging plan shows: every series its views name, once, off the event loop.

A plan (:func:`MSKPriorsLib.hanging_protocols.plan_hanging`) assigns series of the current
study and of its ranked priors to slice views. This module finds each assigned series among
the series the prior search already listed (asking the source only when it did not), reads
the ones not already in the scene, and names each view for the page.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from MSKPriorsLib.hanging_protocols import HangingPlan, ViewAssignment, plan_hanging
from MSKPriorsLib.pixel_data_series import DicomSeriesVolume
from MSKPriorsLib.prior_discovery import PriorSearch, RankedPrior
from MSKPriorsLib.records import SeriesRecord, shown_date
from mskworkbench.web.case_view import HungView
from mskworkbench.web.sources import ViewerSource

logger = logging.getLogger(__name__)


@dataclass
class ReadSeries:
    """One series of the hanging, read from its source.

    Attributes
    ----------
    study_uid, series_uid
        What was read.
    role
        ``current`` or ``prior``.
    volume
        The voxels and header.
    current_to_prior_ras
        4x4 registration of a prior to the current volume (RAS mm), once computed.
    registration
        The registration's figures (:meth:`~MSKPriorsLib.registration.RigidResult.to_dict`).
    """

    study_uid: str
    series_uid: str
    role: str
    volume: DicomSeriesVolume
    current_to_prior_ras: Any = None
    registration: dict[str, Any] = field(default_factory=dict)


@dataclass
class HangingRead:
    """A hanging plan with the series read for it that were not yet in the scene."""

    plan: HangingPlan
    read: dict[str, ReadSeries] = field(default_factory=dict)


def priors_first(search: PriorSearch, study_uid: str) -> list[RankedPrior]:
    """The ranked priors with one of them moved to the front (the reader chose to hang it).

    Raises
    ------
    KeyError
        When the study is not a ranked prior of the search.
    """
    chosen = [p for p in search.priors if p.study.study_uid == study_uid]
    if not chosen:
        raise KeyError(f"study {study_uid} is not a ranked prior of the open case")
    return chosen + [p for p in search.priors if p.study.study_uid != study_uid]


def plan_for(
    rules: Sequence[Any], search: PriorSearch, priors: Sequence[RankedPrior]
) -> HangingPlan:
    """The hanging plan of the search's current study with these priors, in this order."""
    return plan_hanging(
        rules,
        search.current,
        list(search.current_series),
        [(prior.study, list(prior.series)) for prior in priors],
    )


def read_hanging(
    source: ViewerSource,
    search: PriorSearch,
    plan: HangingPlan,
    read_series: Callable[[SeriesRecord], DicomSeriesVolume],
    loaded: Collection[str] = (),
) -> HangingRead:
    """Read every series the plan assigns that is not in ``loaded`` (worker thread).

    Parameters
    ----------
    source
        Where series are searched when the prior search did not list them.
    search
        The prior search (its current and prior series lists).
    plan
        The hanging plan.
    read_series
        Reads one series (retrieving it first when needed).
    loaded
        SeriesInstanceUIDs already in the scene, which are not read again.
    """
    known: dict[str, SeriesRecord] = {s.series_uid: s for s in search.current_series}
    for prior in search.priors:
        known.update({s.series_uid: s for s in prior.series})
    result = HangingRead(plan)
    for assignment in plan.assignments:
        uid = assignment.series_uid
        if uid in loaded or uid in result.read:
            continue
        record = known.get(uid) or _search_series(source, assignment)
        result.read[uid] = ReadSeries(
            assignment.study_uid, uid, assignment.role, read_series(record)
        )
        logger.info("read %s series %s for view %s", assignment.role, uid, assignment.view)
    return result


def _search_series(source: ViewerSource, assignment: ViewAssignment) -> SeriesRecord:
    for series in source.search_series(assignment.study_uid):
        if series.series_uid == assignment.series_uid:
            return series
    raise ValueError(
        f"series {assignment.series_uid} of study {assignment.study_uid} is no longer available"
    )


def hung_views(plan: HangingPlan) -> list[HungView]:
    """The plan's slice views as the case view shows them, in the plan's order."""
    return [HungView(a.view, a.series_uid, a.orientation) for a in plan.assignments]


def view_labels(
    plan: HangingPlan,
    search: PriorSearch,
    orientation_override: str = "",
    flat_series: Collection[str] = (),
) -> dict[str, str]:
    """View name -> the label the page shows on it (role, prior rank, date, orientation).

    Parameters
    ----------
    plan
        The hanging plan.
    search
        The prior search: the priors' ranks as the page lists them, and the study dates.
    orientation_override
        The orientation the reader chose for every view, empty for the protocol's.
    flat_series
        Series of a single image (radiographs), shown in their own plane: no orientation is
        named for them.
    """
    studies = {search.current.study_uid: ("Current", search.current.study_date)}
    for prior in search.priors:
        # A study taken after the one opened is not a prior: the label must not say so.
        later = prior.days_before_current is not None and prior.days_before_current < 0
        role = f"{'Later' if later else 'Prior'} #{prior.rank}"
        studies[prior.study.study_uid] = (role, prior.study.study_date)
    labels = {}
    for assignment in plan.assignments:
        role, study_date = studies.get(assignment.study_uid, (assignment.role.title(), ""))
        orientation = orientation_override or assignment.orientation
        if assignment.series_uid in flat_series:
            orientation = ""
        parts = (role, shown_date(study_date, ""), orientation)
        labels[assignment.view] = " · ".join(part for part in parts if part)
    return labels

"""Find a patient's prior studies on every study source and rank them by relevance.

A *study source* is anything that answers study and series searches with
:class:`~MSKPriorsLib.records.StudyRecord` and :class:`~MSKPriorsLib.records.SeriesRecord`
values: a DICOMweb server client or the local archive. Every source is asked for the current
patient's studies; the same StudyInstanceUID seen on several sources becomes one candidate;
each candidate's patient identity is checked with :func:`~MSKPriorsLib.patient_matching.
match_patient` (conflicts are reported in ``rejected``, never ranked); the rest are ranked by
body part, laterality, modality and time before the current study, each with a numeric score
and the reasons behind it.

Pure core: no MRML. The weights and body-region table live in :mod:`MSKPriorsLib.prior_ranking`.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from MSKPriorsLib.patient_matching import MatchResult, match_patient
from MSKPriorsLib.prior_ranking import RelevanceScore, score_relevance
from MSKPriorsLib.records import SeriesRecord, StudyRecord

logger = logging.getLogger(__name__)

#: Codes of :attr:`RejectedStudy.code` besides the patient-matching codes.
SOURCES_DISAGREE = "sources_disagree"
AFTER_CURRENT = "after_current"


class StudySource(Protocol):
    """What prior discovery needs from a DICOMweb client or the local archive."""

    def search_studies(self, *, patient_id: str) -> Sequence[StudyRecord]:
        """Return the studies whose PatientID is ``patient_id``."""
        ...

    def search_series(self, study_uid: str) -> Sequence[SeriesRecord]:
        """Return the series of one study."""
        ...


class StudyLookup(Protocol):
    """A source that can also find one study by its StudyInstanceUID."""

    def search_studies(self, *, study_uid: str) -> Sequence[StudyRecord]:
        """Return the study with this StudyInstanceUID (an empty list if it has none)."""
        ...


@dataclass(frozen=True)
class RankedPrior:
    """One prior study with its rank, score and the reasons for them.

    Attributes
    ----------
    rank
        1 for the most relevant prior.
    study
        The study, merged over every source that holds it.
    score
        Relevance score; higher is more relevant. Studies taken after the current one carry a
        penalty of :data:`~MSKPriorsLib.prior_ranking.AFTER_CURRENT_PENALTY` so they always
        rank below earlier ones.
    reasons
        Plain-language reasons, one per criterion (body part, laterality, modality, time).
    sources
        Names of the sources holding the study.
    days_before_current
        Whole days from this study to the current one (negative when after); None when a date
        is missing.
    series
        The study's series, when they were searched.
    identity
        The patient-matching result that let this study through.
    """

    rank: int
    study: StudyRecord
    score: float
    reasons: tuple[str, ...]
    sources: tuple[str, ...]
    days_before_current: int | None
    series: tuple[SeriesRecord, ...] = ()
    identity: MatchResult | None = None

    @property
    def reason(self) -> str:
        """All reasons in one sentence."""
        return "; ".join(self.reasons)

    def to_dict(self) -> dict[str, Any]:
        """Return the prior as JSON-ready values."""
        return {
            "rank": self.rank,
            "score": round(self.score, 2),
            "reason": self.reason,
            "reasons": list(self.reasons),
            "sources": list(self.sources),
            "days_before_current": self.days_before_current,
            "study": self.study.to_dict(),
            "series": [series.to_dict() for series in self.series],
            "identity": self.identity.to_dict() if self.identity else None,
        }


@dataclass(frozen=True)
class RejectedStudy:
    """A study found under the patient's ID that is not offered as a prior, and why.

    Attributes
    ----------
    study
        The study as the first source reported it.
    code
        A patient-matching code (``identity_conflict``, ``issuer_differs``, ...),
        ``sources_disagree`` or ``after_current``.
    reason
        One plain-language sentence.
    mismatches
        Attributes that disagree with the current study (``PatientName``, ...).
    sources
        Names of the sources that returned the study.
    """

    study: StudyRecord
    code: str
    reason: str
    mismatches: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Return the rejection as JSON-ready values."""
        return {
            "code": self.code,
            "reason": self.reason,
            "mismatches": list(self.mismatches),
            "sources": list(self.sources),
            "study": self.study.to_dict(),
        }


@dataclass
class PriorSearch:
    """Everything one prior search found.

    Attributes
    ----------
    current
        The current study.
    priors
        Ranked priors, most relevant first.
    rejected
        Studies under the same PatientID whose identity does not match; never load these.
    excluded
        Studies left out for another reason (taken after the current one, when asked to).
    reason
        Why there are no priors at all (for example an empty PatientID); empty otherwise.
    source_errors
        One sentence per source that could not be searched.
    current_series
        Series of the current study, when they were searched.
    """

    current: StudyRecord
    priors: list[RankedPrior] = field(default_factory=list)
    rejected: list[RejectedStudy] = field(default_factory=list)
    excluded: list[RejectedStudy] = field(default_factory=list)
    reason: str = ""
    source_errors: list[str] = field(default_factory=list)
    current_series: tuple[SeriesRecord, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Return the search result as JSON-ready values."""
        return {
            "current": self.current.to_dict(),
            "current_series": [series.to_dict() for series in self.current_series],
            "priors": [prior.to_dict() for prior in self.priors],
            "rejected": [item.to_dict() for item in self.rejected],
            "excluded": [item.to_dict() for item in self.excluded],
            "reason": self.reason,
            "source_errors": list(self.source_errors),
        }


def source_name(source: object) -> str:
    """Return a printable name of a study source.

    Its ``name`` attribute, else the name of its ``server`` (a DICOMweb client), else the
    ``SOURCE_NAME`` constant of the module defining its class (the archive's ``archive``),
    else its class name.
    """
    for candidate in (source, getattr(source, "server", None)):
        name = getattr(candidate, "name", None)
        if isinstance(name, str) and name:
            return name
    module = sys.modules.get(type(source).__module__)
    module_name = getattr(module, "SOURCE_NAME", None)
    if isinstance(module_name, str) and module_name:
        return module_name
    return type(source).__name__


def find_study(
    sources: Sequence[StudyLookup],
    study_uid: str,
    failures: dict[str, str] | None = None,
) -> StudyRecord:
    """Return a study by StudyInstanceUID, merged over every source that holds it.

    Parameters
    ----------
    sources
        Sources to ask.
    study_uid
        The StudyInstanceUID.
    failures
        When given, source name -> error sentence for each source that could not be searched
        (so a caller can leave an unreachable server out of later searches).

    Raises
    ------
    LookupError
        When no source holds the study (the message names the UID and the sources, and any
        source that could not be searched).
    """
    failures = {} if failures is None else failures
    copies: list[StudyRecord] = []
    for source in sources:
        try:
            copies.extend(source.search_studies(study_uid=study_uid))
        except Exception as error:  # report every source's failure together
            logger.warning("study search on %s failed: %s", source_name(source), error)
            failures[source_name(source)] = f"study search failed: {error}"
    copies = [record for record in copies if record.study_uid == study_uid]
    if not copies:
        raise LookupError(f"study {study_uid} was not found on {_searched(sources, failures)}")
    return _merged(copies)


def latest_study(
    sources: Sequence[StudySource],
    patient_id: str,
    failures: dict[str, str] | None = None,
) -> StudyRecord:
    """Return the most recent study of a PatientID over every source (by StudyDate and time).

    Parameters
    ----------
    sources
        Sources to ask.
    patient_id
        The PatientID; must not be empty.
    failures
        When given, source name -> error sentence for each source that could not be searched.

    Raises
    ------
    LookupError
        When the PatientID is empty or no source holds a study for it.
    """
    if not patient_id.strip():
        raise LookupError("an empty PatientID names no patient")
    failures = {} if failures is None else failures
    found = _search_all(patient_id.strip(), sources, {}, failures)
    found = {uid: copies for uid, copies in found.items() if uid}
    if not found:
        searched = _searched(sources, failures)
        raise LookupError(f"no study with PatientID {patient_id!r} on {searched}")
    merged = [_merged([record for record, _ in copies]) for copies in found.values()]
    return max(merged, key=lambda record: (record.study_date, record.study_time, record.study_uid))


def _searched(sources: Sequence[object], failures: dict[str, str]) -> str:
    searched = ", ".join(source_name(source) for source in sources) or "no source"
    if failures:
        searched += " (" + "; ".join(f"{name}: {text}" for name, text in failures.items()) + ")"
    return searched


def discover_priors(
    current: StudyRecord,
    sources: Sequence[StudySource],
    *,
    include_later: bool = True,
    fetch_series: bool = True,
) -> PriorSearch:
    """Find and rank the current patient's other studies on every source.

    Parameters
    ----------
    current
        The study being read. Its PatientID is the only search key.
    sources
        Study sources to search (DICOMweb clients, the local archive); a source that fails is
        reported in ``source_errors`` and the others are still searched.
    include_later
        Rank studies taken after the current one (below every earlier study) when True; list
        them in ``excluded`` when False.
    fetch_series
        Ask the sources for each candidate's series, which fills in body part, laterality and
        modality when the study search does not return them (QIDO study searches often do not).

    Returns
    -------
    PriorSearch
        Ranked priors, rejected identities and excluded studies. A current study with an empty
        PatientID gives no priors and a ``reason`` saying so; no source is searched for other
        studies, but the current study's own series are still searched (it is still read).
    """
    result = PriorSearch(current=current)
    if not current.patient.is_identifiable:
        result.reason = (
            "the current study has an empty PatientID; an empty PatientID matches nothing, so "
            "no prior can be identified"
        )
        logger.info("study %s has no PatientID: no prior search", current.study_uid)
        if fetch_series:
            _fill_current_series(result, sources)
        return result

    by_name: dict[str, StudySource] = {}
    failures: dict[str, str] = {}
    found = _search_all(current.patient.patient_id.strip(), sources, by_name, failures)
    result.source_errors.extend(f"{name}: {text}" for name, text in failures.items())
    reachable = [source for source in sources if source_name(source) not in failures]
    if fetch_series:
        _fill_current_series(result, reachable)
    current = result.current

    scored: list[tuple[float, int, str, RankedPrior]] = []
    for study_uid, copies in found.items():
        if not study_uid or study_uid == current.study_uid:
            continue
        rejected = _identity_rejection(current, copies)
        if rejected is not None:
            result.rejected.append(rejected)
            continue
        merged = _merged([record for record, _ in copies])
        holders = _unique(name for _, name in copies)
        series: list[SeriesRecord] = []
        if fetch_series:
            holding = [by_name[name] for name in holders if name in by_name]
            series = _series_of(study_uid, holding or reachable, result.source_errors)
            merged = _enriched(merged, series)
        relevance = score_relevance(current, merged)
        if relevance.after_current and not include_later:
            result.excluded.append(
                RejectedStudy(merged, AFTER_CURRENT, relevance.time_reason, (), holders)
            )
            continue
        prior = RankedPrior(
            rank=0,
            study=merged,
            score=relevance.score,
            reasons=relevance.reasons,
            sources=holders,
            days_before_current=relevance.days_before_current,
            series=tuple(series),
            identity=match_patient(current.patient, merged.patient),
        )
        scored.append((-relevance.score, _recency_key(relevance), study_uid, prior))

    scored.sort(key=lambda item: item[:3])
    result.priors = [
        dataclasses.replace(prior, rank=index + 1) for index, (*_, prior) in enumerate(scored)
    ]
    logger.info(
        "study %s: %d priors, %d rejected, %d excluded",
        current.study_uid,
        len(result.priors),
        len(result.rejected),
        len(result.excluded),
    )
    return result


def _fill_current_series(result: PriorSearch, sources: Sequence[StudySource]) -> None:
    """Search the current study's series and fill its modalities and body parts from them.

    The current study is always read, whether or not it can have priors, so its series are
    searched even when its PatientID is empty.
    """
    current_series = _series_of(result.current.study_uid, sources, result.source_errors)
    result.current_series = tuple(current_series)
    result.current = _enriched(result.current, current_series)


def _recency_key(relevance: RelevanceScore) -> int:
    days = relevance.days_before_current
    if days is None:
        return 10**9
    return abs(days)


def _search_all(
    patient_id: str,
    sources: Sequence[StudySource],
    by_name: dict[str, StudySource],
    failures: dict[str, str],
) -> dict[str, list[tuple[StudyRecord, str]]]:
    """Search every source; name each copy by its record's ``source`` (else the source's)."""
    found: dict[str, list[tuple[StudyRecord, str]]] = {}
    for source in sources:
        fallback = source_name(source)
        try:
            records = list(source.search_studies(patient_id=patient_id))
        except Exception as error:  # one unreachable server must not hide the others
            logger.warning("study search on %s failed: %s", fallback, error)
            failures[fallback] = f"study search failed: {error}"
            continue
        for record in records:
            name = record.source or fallback
            by_name.setdefault(name, source)
            found.setdefault(record.study_uid, []).append((record, name))
    return found


def _series_of(
    study_uid: str, sources: Sequence[StudySource], errors: list[str]
) -> list[SeriesRecord]:
    for source in sources:
        try:
            series = list(source.search_series(study_uid))
        except Exception as error:  # try the next source holding the study
            name = source_name(source)
            logger.warning("series search for study %s on %s failed: %s", study_uid, name, error)
            errors.append(f"{name}: series search for study {study_uid} failed: {error}")
            continue
        if series:
            unique: dict[str, SeriesRecord] = {}
            for record in series:
                unique.setdefault(record.series_uid, record)
            return list(unique.values())
    return []


def _identity_rejection(
    current: StudyRecord, copies: list[tuple[StudyRecord, str]]
) -> RejectedStudy | None:
    outcomes = [(match_patient(current.patient, record.patient), name) for record, name in copies]
    failed = [(outcome, name) for outcome, name in outcomes if not outcome.matched]
    if not failed:
        return None
    holders = _unique(name for _, name in copies)
    first, first_source = failed[0]
    if len(failed) < len(outcomes):
        failing_sources = ", ".join(_unique(name for _, name in failed))
        return RejectedStudy(
            copies[0][0],
            SOURCES_DISAGREE,
            f"the sources disagree on this study's patient: on {failing_sources} "
            f"{first.reason}; not loaded",
            first.mismatches,
            holders,
        )
    if first.is_conflict:
        logger.warning(
            "study %s on %s: identity conflict with current study %s",
            copies[0][0].study_uid,
            first_source,
            current.study_uid,
        )
    return RejectedStudy(copies[0][0], first.code, first.reason, first.mismatches, holders)


def _merged(records: list[StudyRecord]) -> StudyRecord:
    first = records[0]
    if len(records) == 1:
        return first

    def union(attribute: str) -> tuple[str, ...]:
        values: set[str] = set()
        for record in records:
            values.update(getattr(record, attribute))
        return tuple(sorted(value for value in values if value))

    def first_text(attribute: str) -> str:
        return next((getattr(r, attribute) for r in records if getattr(r, attribute)), "")

    return dataclasses.replace(
        first,
        study_date=first_text("study_date"),
        study_time=first_text("study_time"),
        description=first_text("description"),
        accession_number=first_text("accession_number"),
        modalities=union("modalities"),
        body_parts=union("body_parts"),
        lateralities=union("lateralities"),
        number_of_series=max(r.number_of_series for r in records),
        number_of_instances=max(r.number_of_instances for r in records),
        source=", ".join(_unique(r.source for r in records if r.source)),
    )


def _enriched(study: StudyRecord, series: Sequence[SeriesRecord]) -> StudyRecord:
    """Fill modalities, body parts and lateralities of a study from its series."""
    if not series:
        return study
    modalities = set(study.modalities) | {s.modality.upper() for s in series if s.modality}
    body_parts = set(study.body_parts) | {s.body_part.upper() for s in series if s.body_part}
    lateralities = set(study.lateralities) | {s.laterality.upper() for s in series if s.laterality}
    return dataclasses.replace(
        study,
        modalities=tuple(sorted(modalities)),
        body_parts=tuple(sorted(body_parts)),
        lateralities=tuple(sorted(lateralities)),
        number_of_series=max(study.number_of_series, len(series)),
    )


def _unique(values: Any) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values))

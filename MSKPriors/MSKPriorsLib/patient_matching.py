"""Decide whether two DICOM patient identities name the same patient.

The rule is deliberately strict, because loading another patient's images as a "prior" is a
clinical error while missing a prior is only an inconvenience:

- the PatientID must be non-empty on both sides and equal; an empty PatientID matches nothing;
- where either side carries an IssuerOfPatientID, both must carry the same one;
- a matching PatientID is then cross-checked on PatientName (family and given name, compared
  without regard to case, spacing or trailing ``^`` separators) and PatientBirthDate. Any
  disagreement makes the pair a *conflict*: it is reported and never treated as a match.

Pure core: no MRML, no network. Results never carry patient names or dates, only the names of
the attributes that differ, so they can be logged and printed safely.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any

from MSKPriorsLib.records import PatientIdentity

logger = logging.getLogger(__name__)

#: Stable codes of :attr:`MatchResult.code`.
MATCHED = "matched"
NO_PATIENT_ID = "no_patient_id"
CANDIDATE_NO_PATIENT_ID = "candidate_no_patient_id"
DIFFERENT_PATIENT_ID = "different_patient_id"
ISSUER_DIFFERS = "issuer_differs"
IDENTITY_CONFLICT = "identity_conflict"


@dataclass(frozen=True)
class MatchResult:
    """Outcome of comparing a candidate patient identity with the current one.

    Attributes
    ----------
    matched
        True only when the candidate may be treated as the same patient.
    code
        A stable code: ``matched``, ``no_patient_id`` (the current identity has none),
        ``candidate_no_patient_id``, ``different_patient_id``, ``issuer_differs`` or
        ``identity_conflict`` (same PatientID, different name or birth date).
    reason
        One plain-language sentence explaining the outcome; it names attributes, never values.
    mismatches
        DICOM keywords of the cross-checked attributes that disagree (``PatientName``,
        ``PatientBirthDate``); empty unless ``code`` is ``identity_conflict``.
    unchecked
        Keywords that could not be cross-checked because one side leaves them empty.
    """

    matched: bool
    code: str
    reason: str
    mismatches: tuple[str, ...] = ()
    unchecked: tuple[str, ...] = field(default=())

    @property
    def is_conflict(self) -> bool:
        """Whether the PatientID agrees but the cross-check failed (must be reported)."""
        return self.code == IDENTITY_CONFLICT

    def to_dict(self) -> dict[str, Any]:
        """Return the result as JSON-ready values."""
        return {
            "matched": self.matched,
            "code": self.code,
            "reason": self.reason,
            "mismatches": list(self.mismatches),
            "unchecked": list(self.unchecked),
        }


def person_name_parts(name: str) -> tuple[str, str]:
    """Return the normalised (family, given) names of a DICOM PN value.

    Parameters
    ----------
    name
        PatientName as DICOM text: up to three ``=``-separated representations (alphabetic,
        ideographic, phonetic), each with ``^``-separated family, given, middle, prefix and
        suffix components. The first non-empty representation is used.

    Returns
    -------
    tuple of str
        Family and given name, upper case, with runs of spaces collapsed and surrounding spaces
        removed; empty strings where the value has no such component.
    """
    for representation in name.split("="):
        components = [_normalise_component(part) for part in representation.split("^")]
        if any(components):
            family = components[0] if components else ""
            given = components[1] if len(components) > 1 else ""
            return family, given
    return "", ""


def normalise_birth_date(value: str) -> str:
    """Return a DICOM DA birth date as ``YYYYMMDD`` (also accepts ``YYYY.MM.DD``, ``YYYY-MM-DD``).

    Parameters
    ----------
    value
        PatientBirthDate text; surrounding spaces are ignored.

    Returns
    -------
    str
        Eight digits, or the stripped input unchanged when it is not a recognisable date, so
        that two malformed values compare equal only when they are identical.
    """
    stripped = value.strip()
    digits = re.sub(r"[.\-/]", "", stripped)
    return digits if re.fullmatch(r"\d{8}", digits) else stripped


def match_patient(current: PatientIdentity, candidate: PatientIdentity) -> MatchResult:
    """Compare a candidate study's patient identity with the current study's.

    Parameters
    ----------
    current
        Identity of the current study (the one being read).
    candidate
        Identity of a study that may be a prior.

    Returns
    -------
    MatchResult
        ``matched`` is True only for an equal, non-empty PatientID with agreeing issuers and no
        disagreement on name or birth date. An identity conflict (same PatientID, different
        name or birth date) has ``matched`` False and ``code`` ``identity_conflict``.
    """
    current_id = current.patient_id.strip()
    candidate_id = candidate.patient_id.strip()
    if not current_id:
        return MatchResult(
            False,
            NO_PATIENT_ID,
            "the current study has an empty PatientID, and an empty PatientID matches nothing",
        )
    if not candidate_id:
        return MatchResult(
            False,
            CANDIDATE_NO_PATIENT_ID,
            "this study has an empty PatientID, and an empty PatientID matches nothing",
        )
    if current_id != candidate_id:
        return MatchResult(False, DIFFERENT_PATIENT_ID, "the PatientID differs")

    issuer_reason = _issuer_disagreement(current.issuer.strip(), candidate.issuer.strip())
    if issuer_reason:
        return MatchResult(False, ISSUER_DIFFERS, issuer_reason)

    mismatches: list[str] = []
    unchecked: list[str] = []
    _cross_check(
        "PatientName",
        person_name_parts(current.name),
        person_name_parts(candidate.name),
        mismatches,
        unchecked,
    )
    _cross_check(
        "PatientBirthDate",
        normalise_birth_date(current.birth_date),
        normalise_birth_date(candidate.birth_date),
        mismatches,
        unchecked,
    )
    if mismatches:
        logger.info("same PatientID, different %s: identity conflict", " and ".join(mismatches))
        differing = " and ".join(mismatches)
        return MatchResult(
            False,
            IDENTITY_CONFLICT,
            f"same PatientID but {differing} differ{'s' if len(mismatches) == 1 else ''}: "
            "possibly another patient, not loaded",
            tuple(mismatches),
            tuple(unchecked),
        )
    reason = "same PatientID"
    if current.issuer.strip():
        reason += " and issuer"
    checked = [name for name in ("PatientName", "PatientBirthDate") if name not in unchecked]
    if checked:
        reason += "; " + " and ".join(checked) + " agree"
    if unchecked:
        reason += "; " + " and ".join(unchecked) + " not available to cross-check"
    return MatchResult(True, MATCHED, reason, (), tuple(unchecked))


def _normalise_component(component: str) -> str:
    return " ".join(component.split()).upper()


def _issuer_disagreement(current_issuer: str, candidate_issuer: str) -> str:
    if not current_issuer and not candidate_issuer:
        return ""
    if current_issuer == candidate_issuer:
        return ""
    if not candidate_issuer:
        return "the current study has an IssuerOfPatientID and this study has none"
    if not current_issuer:
        return "this study has an IssuerOfPatientID and the current study has none"
    return "the IssuerOfPatientID differs"


def _cross_check(
    keyword: str,
    current_value: object,
    candidate_value: object,
    mismatches: list[str],
    unchecked: list[str],
) -> None:
    empty_current = (
        not any(current_value) if isinstance(current_value, tuple) else not current_value
    )
    empty_candidate = (
        not any(candidate_value) if isinstance(candidate_value, tuple) else not candidate_value
    )
    if empty_current or empty_candidate:
        unchecked.append(keyword)
    elif current_value != candidate_value:
        mismatches.append(keyword)

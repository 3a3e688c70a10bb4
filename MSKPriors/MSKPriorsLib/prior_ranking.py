"""How relevant a prior study is to the current one: a score with a reason per criterion.

The score adds four parts (their weights are in :data:`WEIGHTS`, the one place to tune them):

- body part: the same BodyPartExamined, a related one (the same region, for example ``HIP``
  and ``PELVIS``), unknown, or a different one;
- laterality: the same side, one side against a bilateral study, unknown, or the opposite side;
- modality: the same, a compatible one (CT and MR, CR and DX), unknown, or a different one;
- time: more recent priors score higher; studies taken after the current one lose
  :data:`AFTER_CURRENT_PENALTY`, so they rank below every earlier study.

When a study's BodyPartExamined or laterality is missing they are read from its description
(``"CT KNEE LEFT"``), and the reason says so. Pure core.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from MSKPriorsLib.records import StudyRecord

#: Points per criterion and outcome. The maximum total is 100 for a same-day study.
WEIGHTS: dict[str, dict[str, float]] = {
    "body_part": {"same": 40.0, "related": 25.0, "unknown": 10.0, "different": 0.0},
    "laterality": {
        "same": 20.0,
        "bilateral": 12.0,
        "none": 12.0,
        "unknown": 6.0,
        "opposite": 0.0,
    },
    "modality": {"same": 25.0, "compatible": 12.0, "unknown": 5.0, "different": 0.0},
    "time": {"max": 15.0, "half_life_years": 1.0},
}

#: Subtracted from the score of a study taken after the current one.
AFTER_CURRENT_PENALTY = 100.0

#: Body regions: two body parts in the same region are "related". A part may sit in several.
BODY_REGIONS: dict[str, frozenset[str]] = {
    "spine": frozenset(
        {
            "SPINE",
            "CSPINE",
            "TSPINE",
            "LSPINE",
            "SSPINE",
            "CTSPINE",
            "TLSPINE",
            "LSSPINE",
            "SACRUM",
            "COCCYX",
            "WHOLESPINE",
        }
    ),
    "pelvis and hip": frozenset(
        {"PELVIS", "HIP", "SIJOINT", "SACRUM", "ABDOMENPELVIS", "FEMUR", "LEG", "LOWERLIMB"}
    ),
    "knee and leg": frozenset(
        {"KNEE", "PATELLA", "FEMUR", "TIBIA", "FIBULA", "LOWERLEG", "LEG", "LOWERLIMB"}
    ),
    "ankle and foot": frozenset(
        {
            "ANKLE",
            "FOOT",
            "HEEL",
            "CALCANEUS",
            "TOE",
            "TIBIA",
            "FIBULA",
            "LOWERLEG",
            "LEG",
            "LOWERLIMB",
        }
    ),
    "shoulder and arm": frozenset(
        {"SHOULDER", "CLAVICLE", "SCAPULA", "HUMERUS", "ARM", "UPPERARM", "UPPERLIMB"}
    ),
    "elbow and forearm": frozenset(
        {"ELBOW", "FOREARM", "RADIUS", "ULNA", "HUMERUS", "ARM", "UPPERLIMB"}
    ),
    "wrist and hand": frozenset(
        {"WRIST", "HAND", "FINGER", "THUMB", "FOREARM", "SCAPHOID", "UPPERLIMB"}
    ),
    "chest": frozenset({"CHEST", "THORAX", "RIB", "STERNUM", "TSPINE", "CHESTABDOMEN"}),
    "abdomen": frozenset(
        {"ABDOMEN", "ABDOMENPELVIS", "CHESTABDOMEN", "LSPINE", "KIDNEY", "PELVIS"}
    ),
    "head and neck": frozenset({"HEAD", "BRAIN", "SKULL", "NECK", "HEADNECK", "CSPINE"}),
    "whole body": frozenset({"WHOLEBODY", "PARTIALBODY", "BODY"}),
}

#: Words in a study description that name a body part, mapped to BodyPartExamined terms.
DESCRIPTION_BODY_PARTS: dict[str, str] = {
    "KNEE": "KNEE",
    "KNIE": "KNEE",
    "HIP": "HIP",
    "HUEFTE": "HIP",
    "PELVIS": "PELVIS",
    "BECKEN": "PELVIS",
    "SHOULDER": "SHOULDER",
    "SCHULTER": "SHOULDER",
    "ANKLE": "ANKLE",
    "FOOT": "FOOT",
    "WRIST": "WRIST",
    "HAND": "HAND",
    "ELBOW": "ELBOW",
    "SPINE": "SPINE",
    "LSPINE": "LSPINE",
    "CSPINE": "CSPINE",
    "TSPINE": "TSPINE",
    "LUMBAR": "LSPINE",
    "CERVICAL": "CSPINE",
    "THORACIC": "TSPINE",
    "FEMUR": "FEMUR",
    "TIBIA": "TIBIA",
    "HEAD": "HEAD",
    "BRAIN": "BRAIN",
    "CHEST": "CHEST",
    "ABDOMEN": "ABDOMEN",
}

#: Words in a description that name a side.
DESCRIPTION_LATERALITY: dict[str, str] = {
    "LEFT": "L",
    "LT": "L",
    "LINKS": "L",
    "RIGHT": "R",
    "RT": "R",
    "RECHTS": "R",
    "BILATERAL": "B",
    "BILAT": "B",
    "BOTH": "B",
}

#: Modalities compatible with each other for comparison (same kind of image).
COMPATIBLE_MODALITIES: tuple[frozenset[str], ...] = (
    frozenset({"CT", "MR"}),
    frozenset({"CR", "DX", "RG", "DR"}),
    frozenset({"PT", "NM"}),
)

#: Modalities that are not images to compare (reports, segmentations, key objects).
NON_IMAGE_MODALITIES = frozenset(
    {"SR", "SEG", "KO", "PR", "DOC", "RTSTRUCT", "RTPLAN", "REG", "FID", "PLAN"}
)


@dataclass(frozen=True)
class RelevanceScore:
    """Score of one candidate prior against the current study.

    Attributes
    ----------
    score
        Sum of the criterion points, minus the after-current penalty where it applies.
    reasons
        One plain-language reason per criterion, in the order body part, laterality,
        modality, time.
    days_before_current
        Whole days from the prior to the current study (negative when after); None when either
        date is missing.
    after_current
        Whether the prior was taken after the current study.
    time_reason
        The time reason alone (used when a later study is excluded).
    """

    score: float
    reasons: tuple[str, ...]
    days_before_current: int | None
    after_current: bool
    time_reason: str


def normalise_body_part(value: str) -> str:
    """Return a BodyPartExamined value upper case with spaces, dashes and underscores removed."""
    return re.sub(r"[^A-Z0-9]", "", value.upper())


def body_parts_of(study: StudyRecord) -> tuple[set[str], bool]:
    """Return a study's body parts and whether they were read from its description.

    Returns
    -------
    tuple
        Normalised body-part terms, and True when BodyPartExamined was empty and the terms
        come from words of the study description.
    """
    parts = {normalise_body_part(part) for part in study.body_parts if part.strip()}
    if parts:
        return parts, False
    words = _words(study.description)
    return {DESCRIPTION_BODY_PARTS[word] for word in words if word in DESCRIPTION_BODY_PARTS}, True


def lateralities_of(study: StudyRecord) -> tuple[set[str], bool]:
    """Return a study's sides (``L``, ``R``, ``B``) and whether they come from its description."""
    sides = {side.strip().upper() for side in study.lateralities if side.strip()}
    if sides:
        return sides, False
    words = _words(study.description)
    return {DESCRIPTION_LATERALITY[word] for word in words if word in DESCRIPTION_LATERALITY}, True


def study_datetime(study: StudyRecord) -> datetime | None:
    """Return StudyDate (and StudyTime when present) as a naive datetime, or None if missing."""
    date_text = study.study_date.strip().replace(".", "").replace("-", "")
    if not re.fullmatch(r"\d{8}", date_text):
        return None
    time_digits = re.match(r"\d{0,6}", study.study_time.strip()) if study.study_time else None
    time_text = (time_digits.group(0) if time_digits else "").ljust(6, "0")[:6]
    try:
        return datetime.strptime(date_text + time_text, "%Y%m%d%H%M%S")
    except ValueError:
        try:
            return datetime.strptime(date_text, "%Y%m%d")
        except ValueError:
            return None


def days_between(current: StudyRecord, prior: StudyRecord) -> int | None:
    """Return whole days from ``prior`` to ``current`` (negative if ``prior`` is later)."""
    current_time = study_datetime(current)
    prior_time = study_datetime(prior)
    if current_time is None or prior_time is None:
        return None
    return (current_time.date() - prior_time.date()).days


def score_relevance(current: StudyRecord, prior: StudyRecord) -> RelevanceScore:
    """Score how relevant ``prior`` is for reading ``current``.

    Parameters
    ----------
    current, prior
        The two studies; their modalities, body parts, lateralities, dates and descriptions
        are used.

    Returns
    -------
    RelevanceScore
        The total (at most 100 for a same-day study with everything matching) and the reasons.
    """
    body_points, body_reason = _body_part(current, prior)
    side_points, side_reason = _laterality(current, prior)
    modality_points, modality_reason = _modality(current, prior)
    time_points, time_reason, days, after = _time(current, prior)
    total = body_points + side_points + modality_points + time_points
    if after:
        total -= AFTER_CURRENT_PENALTY
    return RelevanceScore(
        score=total,
        reasons=(body_reason, side_reason, modality_reason, time_reason),
        days_before_current=days,
        after_current=after,
        time_reason=time_reason,
    )


def _words(text: str) -> list[str]:
    return re.findall(r"[A-Z0-9]+", text.upper().replace("-SPINE", "SPINE"))


def _regions(part: str) -> set[str]:
    return {name for name, members in BODY_REGIONS.items() if part in members}


def _body_part(current: StudyRecord, prior: StudyRecord) -> tuple[float, str]:
    weights = WEIGHTS["body_part"]
    current_parts, current_guessed = body_parts_of(current)
    prior_parts, prior_guessed = body_parts_of(prior)
    note = " (read from the study description)" if current_guessed or prior_guessed else ""
    if not current_parts or not prior_parts:
        return weights["unknown"], "body part unknown" + note
    same = sorted(current_parts & prior_parts)
    if same:
        return weights["same"], f"same body part ({', '.join(same)})" + note
    current_regions = set().union(*(_regions(part) for part in current_parts))
    prior_regions = set().union(*(_regions(part) for part in prior_parts))
    shared = sorted(current_regions & prior_regions)
    prior_text = ", ".join(sorted(prior_parts))
    current_text = ", ".join(sorted(current_parts))
    if shared:
        return (
            weights["related"],
            f"related body part ({prior_text}, same region as {current_text}: {shared[0]})" + note,
        )
    return weights[
        "different"
    ], f"different body part ({prior_text}, current {current_text})" + note


def _laterality(current: StudyRecord, prior: StudyRecord) -> tuple[float, str]:
    weights = WEIGHTS["laterality"]
    current_sides, current_guessed = lateralities_of(current)
    prior_sides, prior_guessed = lateralities_of(prior)
    note = " (read from the study description)" if current_guessed or prior_guessed else ""
    if not current_sides and not prior_sides:
        return weights["none"], "no laterality on either study"
    if not current_sides or not prior_sides:
        return weights["unknown"], "laterality unknown on one study" + note
    if current_sides & prior_sides:
        side = "/".join(sorted(current_sides & prior_sides))
        return weights["same"], f"same side ({side})" + note
    if "B" in current_sides or "B" in prior_sides:
        return weights["bilateral"], "one study is bilateral" + note
    prior_text = "/".join(sorted(prior_sides))
    current_text = "/".join(sorted(current_sides))
    return weights["opposite"], f"opposite side ({prior_text}, current {current_text})" + note


def _image_modalities(study: StudyRecord) -> set[str]:
    return {m.upper() for m in study.modalities if m and m.upper() not in NON_IMAGE_MODALITIES}


def _modality(current: StudyRecord, prior: StudyRecord) -> tuple[float, str]:
    weights = WEIGHTS["modality"]
    current_modalities = _image_modalities(current)
    prior_modalities = _image_modalities(prior)
    if not current_modalities or not prior_modalities:
        return weights["unknown"], "modality unknown"
    same = sorted(current_modalities & prior_modalities)
    if same:
        return weights["same"], f"same modality ({', '.join(same)})"
    prior_text = ", ".join(sorted(prior_modalities))
    current_text = ", ".join(sorted(current_modalities))
    for group in COMPATIBLE_MODALITIES:
        if current_modalities & group and prior_modalities & group:
            return weights["compatible"], f"compatible modality ({prior_text} for {current_text})"
    return weights["different"], f"different modality ({prior_text}, current {current_text})"


def _time(current: StudyRecord, prior: StudyRecord) -> tuple[float, str, int | None, bool]:
    weights = WEIGHTS["time"]
    current_time = study_datetime(current)
    prior_time = study_datetime(prior)
    if current_time is None or prior_time is None:
        return 0.0, "study date unknown", None, False
    days = (current_time.date() - prior_time.date()).days
    after = prior_time > current_time
    if after:
        return (
            0.0,
            f"taken {_duration(-days)} after the current study, ranked below earlier studies",
            days,
            True,
        )
    years = days / 365.25
    points = weights["max"] / (1.0 + years / weights["half_life_years"])
    if days == 0:
        return points, "same day as the current study", days, False
    return points, f"{_duration(days)} before the current study", days, False


def _duration(days: int) -> str:
    if days == 0:
        return "the same day"
    if days < 60:
        return f"{days} day{'s' if days != 1 else ''}"
    if days < 730:
        return f"{round(days / 30.44)} months"
    return f"{days / 365.25:.1f} years"

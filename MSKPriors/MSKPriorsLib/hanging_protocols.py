"""Hanging protocols: which layout, and which series of the current study and its priors go in
which view. Rules are data (JSON files), so sites and users add their own without code.

Where rules come from, in order (a later rule with the same ``name`` replaces an earlier one):

1. the defaults shipped in ``MSKPriors/Resources/HangingProtocols/*.json``;
2. every folder in the environment variable ``MSKWB_HANGING_PROTOCOLS`` (``os.pathsep``
   separated), or ``~/.config/mskwb/hanging_protocols/`` when it is not set.

A rule file holds one rule object or a list of them::

    {
      "name": "ct-bone-compare",
      "description": "CT with a prior: current and prior axial and coronal in bone window",
      "priority": 10,
      "match": {"modalities": ["CT"], "body_parts": [], "lateralities": [],
                "prior_required": true, "prior_modalities": ["CT", "MR"]},
      "layout": "2x2",
      "link": true,
      "register_priors": true,
      "views": {
        "Red":    {"study": "current", "orientation": "Axial", "preset": "ct-bone",
                   "series": {"modalities": ["CT"], "prefer": "most_instances"}},
        "Slice4": {"study": "prior", "prior": 1, "orientation": "Axial", "preset": "auto",
                   "series": {"modalities": ["CT", "MR"], "description_regex": "(?i)bone"}}
      }
    }

``match`` lists left empty match anything. ``layout`` is a key of :data:`LAYOUTS`; view
names are that layout's Slicer view names. A series selector keeps series of the listed
modalities that do not match ``exclude_description_regex`` and have at least
``min_instances`` instances, then prefers those matching ``description_regex``, then those
in ``orientation`` (from the series' ``orientation`` or ``image_orientation_patient`` extras,
else words such as AX/COR/SAG in the description), then ``prefer`` (``most_instances``,
``fewest_instances``, ``lowest_series_number``, ``highest_series_number``). ``preset`` is a
name from :data:`~MSKPriorsLib.display_presets.PRESETS` or ``auto`` (the modality default).

The best rule for a study has the highest ``priority``, then the most match criteria, then
comes from the user folder; a rule that leaves views empty yields to the next rule that fills
all of its views (the shipped catch-all always does). Pure core: :mod:`MSKPriorsLib.hanging_views` puts a plan into a
scene.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from MSKPriorsLib.display_presets import PRESETS, default_preset_for
from MSKPriorsLib.prior_ranking import body_parts_of, lateralities_of, normalise_body_part
from MSKPriorsLib.records import SeriesRecord, StudyRecord
from MSKPriorsLib.resource_folders import shipped_folder
from MSKPriorsLib.series_selection import (
    ORIENTATIONS,
    PREFERENCES,
    SeriesSelector,
    select_series,
)

logger = logging.getLogger(__name__)

USER_FOLDERS_VARIABLE = "MSKWB_HANGING_PROTOCOLS"
DEFAULT_USER_FOLDER = Path("~/.config/mskwb/hanging_protocols")
DEFAULT_RULES_FOLDER = shipped_folder(
    __file__, ("Resources", "HangingProtocols"), "mskwb_hanging_protocols"
)

#: Layout name -> (Slicer ``vtkMRMLLayoutNode`` arrangement name, slice view names in reading
#: order, whether the layout has a 3D view).
LAYOUTS: dict[str, tuple[str, tuple[str, ...], bool]] = {
    "1x1": ("SlicerLayoutOneUpRedSliceView", ("Red",), False),
    "1x2": ("SlicerLayoutSideBySideView", ("Red", "Yellow"), False),
    "2x2": ("SlicerLayoutTwoOverTwoView", ("Red", "Slice4", "Green", "Yellow"), False),
    "2x2-3d": ("SlicerLayoutFourUpView", ("Red", "Green", "Yellow"), True),
}

_RULE_KEYS = {
    "name",
    "description",
    "priority",
    "match",
    "layout",
    "link",
    "register_priors",
    "views",
}
_MATCH_KEYS = {"modalities", "body_parts", "lateralities", "prior_required", "prior_modalities"}
_VIEW_KEYS = {"study", "prior", "orientation", "preset", "series"}
_SELECTOR_KEYS = {
    "modalities",
    "description_regex",
    "exclude_description_regex",
    "orientation",
    "min_instances",
    "prefer",
}


class HangingProtocolError(ValueError):
    """A rule file that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class ViewRule:
    """What one view shows: a series of the current study or of the n-th ranked prior."""

    view: str
    study: str
    prior: int
    orientation: str
    preset: str
    series: SeriesSelector


@dataclass(frozen=True)
class HangingRule:
    """One hanging protocol, as read from its JSON file."""

    name: str
    description: str
    priority: int
    modalities: tuple[str, ...]
    body_parts: tuple[str, ...]
    lateralities: tuple[str, ...]
    prior_required: bool
    prior_modalities: tuple[str, ...]
    layout: str
    link: bool
    register_priors: bool
    views: tuple[ViewRule, ...]
    origin: str = ""
    from_user: bool = False

    @property
    def specificity(self) -> int:
        """How many match criteria the rule sets (more specific rules win ties of priority)."""
        return sum(
            bool(criterion)
            for criterion in (
                self.modalities,
                self.body_parts,
                self.lateralities,
                self.prior_required,
                self.prior_modalities,
            )
        )


@dataclass(frozen=True)
class ViewAssignment:
    """One filled view of a hanging plan.

    Attributes
    ----------
    view
        Slicer view name (``Red``, ``Yellow``, ``Green``, ``Slice4``).
    role
        ``current`` or ``prior``.
    prior_rank
        Position of the prior among those given (1 = most relevant); 0 for the current study.
    study_uid, series_uid
        What to show.
    orientation
        Slice orientation of the view (``Axial``, ``Coronal``, ``Sagittal``).
    preset
        Display preset name (resolved; never ``auto``).
    """

    view: str
    role: str
    prior_rank: int
    study_uid: str
    series_uid: str
    orientation: str
    preset: str

    def to_dict(self) -> dict[str, Any]:
        """Return the assignment as JSON-ready values."""
        return dict(self.__dict__)


@dataclass
class HangingPlan:
    """The chosen rule and what each of its views shows.

    Attributes
    ----------
    rule
        Name of the rule used.
    layout
        Layout name (a key of :data:`LAYOUTS`).
    assignments
        Filled views.
    unfilled
        View name -> why no series could be found for it.
    link
        Whether the views scroll together.
    register_priors
        Whether priors should be rigidly registered to the current study before linking.
    """

    rule: str
    layout: str
    assignments: list[ViewAssignment] = field(default_factory=list)
    unfilled: dict[str, str] = field(default_factory=dict)
    link: bool = True
    register_priors: bool = False

    def view_to_series(self) -> dict[str, str]:
        """Return view name -> SeriesInstanceUID."""
        return {assignment.view: assignment.series_uid for assignment in self.assignments}

    def to_dict(self) -> dict[str, Any]:
        """Return the plan as JSON-ready values."""
        return {
            "rule": self.rule,
            "layout": self.layout,
            "link": self.link,
            "register_priors": self.register_priors,
            "assignments": [assignment.to_dict() for assignment in self.assignments],
            "unfilled": dict(self.unfilled),
        }


def user_rule_folders() -> list[Path]:
    """Return the user's rule folders: ``MSKWB_HANGING_PROTOCOLS``, else the default folder."""
    value = os.environ.get(USER_FOLDERS_VARIABLE, "")
    if value.strip():
        return [Path(part).expanduser() for part in value.split(os.pathsep) if part.strip()]
    return [DEFAULT_USER_FOLDER.expanduser()]


def load_rules(
    default_folder: Path | None = None, user_folders: Sequence[Path] | None = None
) -> list[HangingRule]:
    """Read the default rules and the user's, user rules replacing defaults of the same name.

    Parameters
    ----------
    default_folder
        Folder of the shipped rules; :data:`DEFAULT_RULES_FOLDER` when None.
    user_folders
        User rule folders; :func:`user_rule_folders` when None. Missing folders are ignored.

    Raises
    ------
    HangingProtocolError
        When a rule file is not valid JSON or not a valid rule (the message names the file).
    """
    rules: dict[str, HangingRule] = {}
    folders = [(default_folder or DEFAULT_RULES_FOLDER, False)]
    folders += [
        (folder, True) for folder in (user_rule_folders() if user_folders is None else user_folders)
    ]
    for folder, from_user in folders:
        if not folder.is_dir():
            if not from_user:
                logger.warning("no default hanging-protocol folder at %s", folder)
            continue
        for path in sorted(folder.glob("*.json")):
            for rule in read_rule_file(path, from_user):
                if rule.name in rules:
                    logger.info(
                        "hanging protocol %s from %s replaces an earlier one", rule.name, path
                    )
                rules[rule.name] = rule
    return list(rules.values())


def read_rule_file(path: Path, from_user: bool = False) -> list[HangingRule]:
    """Read one JSON rule file (one rule object or a list of them).

    Raises
    ------
    HangingProtocolError
        When the file is not valid JSON or a rule in it is invalid.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise HangingProtocolError(
            f"hanging-protocol file {path}: cannot read it: {error}"
        ) from error
    items = data if isinstance(data, list) else [data]
    try:
        return [parse_rule(item, str(path), from_user) for item in items]
    except HangingProtocolError as error:
        raise HangingProtocolError(f"hanging-protocol file {path}: {error}") from error


def parse_rule(data: Any, origin: str = "", from_user: bool = False) -> HangingRule:
    """Build a :class:`HangingRule` from its JSON object, checking every field.

    Raises
    ------
    HangingProtocolError
        On a missing or unknown key, an unknown layout, view, orientation or preset, or a
        regular expression that does not compile.
    """
    if not isinstance(data, dict):
        raise HangingProtocolError("a rule must be a JSON object")
    _check_keys(data, _RULE_KEYS, "rule")
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise HangingProtocolError("the rule has no name")
    layout = data.get("layout")
    if layout not in LAYOUTS:
        raise HangingProtocolError(
            f"rule {name!r}: unknown layout {layout!r} (known: {', '.join(LAYOUTS)})"
        )
    match = data.get("match", {})
    if not isinstance(match, dict):
        raise HangingProtocolError(f"rule {name!r}: 'match' must be an object")
    _check_keys(match, _MATCH_KEYS, f"rule {name!r} match")
    views_data = data.get("views")
    if not isinstance(views_data, dict) or not views_data:
        raise HangingProtocolError(f"rule {name!r}: 'views' must be a non-empty object")
    layout_views = LAYOUTS[layout][1]
    views = []
    for view_name, view_data in views_data.items():
        if view_name not in layout_views:
            raise HangingProtocolError(
                f"rule {name!r}: layout {layout} has no view {view_name!r} "
                f"(its views: {', '.join(layout_views)})"
            )
        views.append(_parse_view(name, view_name, view_data))
    return HangingRule(
        name=name.strip(),
        description=str(data.get("description", "")),
        priority=int(data.get("priority", 0)),
        modalities=_upper_list(match.get("modalities", [])),
        body_parts=tuple(normalise_body_part(p) for p in match.get("body_parts", [])),
        lateralities=_upper_list(match.get("lateralities", [])),
        prior_required=bool(match.get("prior_required", False)),
        prior_modalities=_upper_list(match.get("prior_modalities", [])),
        layout=layout,
        link=bool(data.get("link", True)),
        register_priors=bool(data.get("register_priors", False)),
        views=tuple(views),
        origin=origin,
        from_user=from_user,
    )


def rule_matches(rule: HangingRule, current: StudyRecord, priors: Sequence[StudyRecord]) -> bool:
    """Whether a rule applies to a current study with these (ranked) priors."""
    if rule.modalities and not set(rule.modalities) & {m.upper() for m in current.modalities}:
        return False
    if rule.body_parts and not set(rule.body_parts) & body_parts_of(current)[0]:
        return False
    if rule.lateralities and not set(rule.lateralities) & lateralities_of(current)[0]:
        return False
    if rule.prior_required or rule.prior_modalities:
        wanted = set(rule.prior_modalities)
        usable = [p for p in priors if not wanted or wanted & {m.upper() for m in p.modalities}]
        if not usable:
            return False
    return True


def select_rule(
    rules: Sequence[HangingRule], current: StudyRecord, priors: Sequence[StudyRecord]
) -> HangingRule | None:
    """Return the best matching rule: highest priority, then most specific, then a user rule."""
    matching = [rule for rule in rules if rule_matches(rule, current, priors)]
    if not matching:
        return None
    return max(matching, key=lambda rule: (rule.priority, rule.specificity, rule.from_user))


def plan_hanging(
    rules: Sequence[HangingRule],
    current: StudyRecord,
    current_series: Sequence[SeriesRecord],
    priors: Sequence[tuple[StudyRecord, Sequence[SeriesRecord]]],
) -> HangingPlan:
    """Choose a rule for the current study and fill its views with series.

    Parameters
    ----------
    rules
        Rules from :func:`load_rules`.
    current, current_series
        The current study and its series.
    priors
        The priors, most relevant first, each with its series.

    Returns
    -------
    HangingPlan
        The chosen rule's layout and view assignments. The best matching rule is used unless
        it leaves views empty and a later rule fills all of its own; when no rule fills every
        view, the best rule's plan is returned with the empty views in ``unfilled``.

    Raises
    ------
    LookupError
        When no rule matches (the shipped rules include a catch-all, so only when it was
        removed).
    """
    prior_studies = [study for study, _ in priors]
    matching = sorted(
        (rule for rule in rules if rule_matches(rule, current, prior_studies)),
        key=lambda rule: (rule.priority, rule.specificity, rule.from_user),
        reverse=True,
    )
    if not matching:
        raise LookupError(f"no hanging protocol matches study {current.study_uid}")
    plans = [_fill(rule, current, current_series, priors) for rule in matching]
    plan = next((p for p in plans if not p.unfilled), plans[0])
    if plan is not plans[0]:
        logger.info(
            "hanging protocol %s leaves views empty for study %s; using %s",
            plans[0].rule,
            current.study_uid,
            plan.rule,
        )
    logger.info(
        "hanging protocol %s for study %s: %d views",
        plan.rule,
        current.study_uid,
        len(plan.assignments),
    )
    return plan


def _fill(
    rule: HangingRule,
    current: StudyRecord,
    current_series: Sequence[SeriesRecord],
    priors: Sequence[tuple[StudyRecord, Sequence[SeriesRecord]]],
) -> HangingPlan:
    """Fill one rule's views with series."""
    plan = HangingPlan(rule.name, rule.layout, link=rule.link, register_priors=rule.register_priors)
    for view in rule.views:
        if view.study == "current":
            study, series_list, rank = current, current_series, 0
        else:
            found = _nth_prior_with_series(priors, view)
            if found is None:
                plan.unfilled[view.view] = f"no prior number {view.prior} with a series that fits"
                continue
            study, series_list, rank = found
        series = select_series(series_list, view.series)
        if series is None:
            which = "the current study" if rank == 0 else f"prior number {rank}"
            plan.unfilled[view.view] = f"no series of {which} fits the view"
            logger.info("view %s: no series of study %s fits", view.view, study.study_uid)
            continue
        preset = default_preset_for(series.modality) if view.preset == "auto" else view.preset
        plan.assignments.append(
            ViewAssignment(
                view.view,
                view.study,
                rank,
                study.study_uid,
                series.series_uid,
                view.orientation,
                preset,
            )
        )
    return plan


def _nth_prior_with_series(
    priors: Sequence[tuple[StudyRecord, Sequence[SeriesRecord]]], view: ViewRule
) -> tuple[StudyRecord, Sequence[SeriesRecord], int] | None:
    seen = 0
    for rank, (study, series_list) in enumerate(priors, start=1):
        if select_series(series_list, view.series) is None:
            continue
        seen += 1
        if seen == view.prior:
            return study, series_list, rank
    return None


def _parse_view(rule_name: str, view_name: str, data: Any) -> ViewRule:
    where = f"rule {rule_name!r} view {view_name!r}"
    if not isinstance(data, dict):
        raise HangingProtocolError(f"{where}: must be an object")
    _check_keys(data, _VIEW_KEYS, where)
    study = data.get("study", "current")
    if study not in ("current", "prior"):
        raise HangingProtocolError(f"{where}: 'study' must be 'current' or 'prior', not {study!r}")
    prior = int(data.get("prior", 1))
    if prior < 1:
        raise HangingProtocolError(f"{where}: 'prior' counts from 1")
    orientation = str(data.get("orientation", "Axial")).capitalize()
    if orientation not in ORIENTATIONS:
        raise HangingProtocolError(f"{where}: unknown orientation {orientation!r}")
    preset = str(data.get("preset", "auto"))
    if preset != "auto" and preset not in PRESETS:
        raise HangingProtocolError(
            f"{where}: unknown preset {preset!r} (known: auto, {', '.join(PRESETS)})"
        )
    return ViewRule(
        view_name, study, prior, orientation, preset, _parse_selector(where, data.get("series", {}))
    )


def _parse_selector(where: str, data: Any) -> SeriesSelector:
    if not isinstance(data, dict):
        raise HangingProtocolError(f"{where}: 'series' must be an object")
    _check_keys(data, _SELECTOR_KEYS, f"{where} series")
    defaults = SeriesSelector()
    selector = SeriesSelector(
        modalities=_upper_list(data.get("modalities", [])),
        description_regex=str(data.get("description_regex", "")),
        exclude_description_regex=str(
            data.get("exclude_description_regex", defaults.exclude_description_regex)
        ),
        orientation=str(data.get("orientation", "")).capitalize(),
        min_instances=int(data.get("min_instances", 1)),
        prefer=str(data.get("prefer", defaults.prefer)),
    )
    for pattern in (selector.description_regex, selector.exclude_description_regex):
        try:
            re.compile(pattern)
        except re.error as error:
            raise HangingProtocolError(
                f"{where}: bad regular expression {pattern!r}: {error}"
            ) from error
    if selector.orientation and selector.orientation not in ORIENTATIONS:
        raise HangingProtocolError(f"{where}: unknown series orientation {selector.orientation!r}")
    if selector.prefer not in PREFERENCES:
        raise HangingProtocolError(f"{where}: 'prefer' must be one of {', '.join(PREFERENCES)}")
    return selector


def _check_keys(data: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise HangingProtocolError(f"{where}: unknown key(s) {', '.join(unknown)}")


def _upper_list(values: Any) -> tuple[str, ...]:
    if isinstance(values, str) or not isinstance(values, (list, tuple)):
        raise HangingProtocolError(f"expected a list of strings, got {values!r}")
    return tuple(str(value).strip().upper() for value in values if str(value).strip())

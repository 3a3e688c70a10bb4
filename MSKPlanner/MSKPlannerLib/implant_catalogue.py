"""The implant catalogue: families of sizes read from JSON files, extendable by the user.

The built-in families in ``MSKPlanner/Resources/Implants`` are generic parametric shapes
(hemispherical cups, a tapered femoral stem with neck-shaft angle and offset variants, and
total-knee femoral and tibial components). They are not any manufacturer's designs.

Users add families by dropping JSON files (and optional STL surfaces) into the folder named
by the environment variable ``MSKWB_IMPLANTS`` (several folders separated by the path
separator) or into ``~/.config/mskwb/implants/``. A family file looks like::

    {"family": "my_cup", "kind": "cup", "name": "My cup", "generic": false,
     "sizing": {"parameter": "outer_diameter_mm", "rule": "nearest"},
     "sizes": [{"size": "50", "outer_diameter_mm": 50, "stl": "my_cup_50.stl"}]}

``kind`` is ``cup``, ``stem``, ``knee_femoral`` or ``knee_tibial``; the parameters a kind
needs are those of :mod:`MSKPlannerLib.implant_geometry`. ``stl`` (optional, relative to the
JSON file) replaces the generated surface; it must be in the implant frame, in mm. A family
may list ``variants`` (each a ``variant`` name plus parameters that override the size's);
a variant parameter ending in ``_add_mm`` is added to the size parameter of the same name
without that ending (``offset_add_mm`` adds to ``offset_mm``). A user family whose
``family`` name equals a built-in one replaces it.

Sizing rules (``sizing.rule``): ``nearest`` (the size whose parameter is closest to the
anatomy, ties to the larger), ``largest_not_exceeding`` (no overhang) and
``largest_fitting`` (stems: the largest stem whose width fits the canal at every level).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import vtk

from MSKPlannerLib import implant_geometry
from MSKPlannerLib.implant_geometry import KINDS, FloatArray
from MSKPriorsLib.resource_folders import shipped_folder

logger = logging.getLogger(__name__)

#: Environment variable naming extra catalogue folders.
IMPLANTS_ENVIRONMENT_VARIABLE = "MSKWB_IMPLANTS"
#: Default user catalogue folder.
DEFAULT_USER_FOLDER = Path("~/.config/mskwb/implants")
#: Built-in catalogue folder (part of the module's resources).
BUILTIN_FOLDER = shipped_folder(__file__, ("Resources", "Implants"), "mskwb_implants")
SIZING_RULES = ("nearest", "largest_not_exceeding", "largest_fitting")


class CatalogueError(ValueError):
    """A catalogue file, family or size cannot be used; the message names it."""


@dataclass(frozen=True)
class ImplantSize:
    """One size (and variant) of an implant family.

    Attributes
    ----------
    family_id, kind
        The family this size belongs to, and its kind.
    size
        The size label as the catalogue names it (``"52"``, ``"5"``).
    variant
        Variant name (``"132-high"``) or None for families without variants.
    parameters
        Shape parameters in mm and degrees, variant applied.
    stl_path
        Surface file replacing the generated model, or None.
    """

    family_id: str
    kind: str
    size: str
    variant: str | None
    parameters: Mapping[str, float]
    stl_path: Path | None = None

    @property
    def label(self) -> str:
        """``size`` alone, or ``size (variant)``."""
        return f"{self.size} ({self.variant})" if self.variant else self.size

    def outline_mm(self) -> FloatArray:
        """Closed 2D outline, shape (N, 2), implant frame, mm (see :mod:`implant_geometry`)."""
        return implant_geometry.outline_mm(self.kind, self.parameters)

    def model_polydata(self) -> vtk.vtkPolyData:
        """3D surface in the implant frame (mm): the STL when given, else generated."""
        if self.stl_path is not None:
            return implant_geometry.read_stl(str(self.stl_path))
        return implant_geometry.model_polydata(self.kind, self.parameters)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description of the size."""
        return {
            "family": self.family_id,
            "kind": self.kind,
            "size": self.size,
            "variant": self.variant,
            "parameters": dict(self.parameters),
            "stl": str(self.stl_path) if self.stl_path else None,
        }


@dataclass(frozen=True)
class ImplantFamily:
    """A family of implant sizes read from one JSON file."""

    family_id: str
    kind: str
    name: str
    generic: bool
    disclaimer: str
    sizing_parameter: str
    sizing_rule: str
    sizes: tuple[ImplantSize, ...]
    variants: tuple[str, ...]
    default_variant: str | None
    source: Path

    def sizes_of_variant(self, variant: str | None = None) -> list[ImplantSize]:
        """Sizes of one variant (the default variant when None), in catalogue order."""
        wanted = variant or self.default_variant
        if wanted is not None and wanted not in self.variants:
            raise CatalogueError(
                f"family {self.family_id!r} has no variant {wanted!r}; "
                f"it has {', '.join(self.variants)}"
            )
        return [size for size in self.sizes if size.variant == wanted]

    def size(self, label: str, variant: str | None = None) -> ImplantSize:
        """Return the size named ``label`` (of ``variant``, or the default variant)."""
        for candidate in self.sizes_of_variant(variant):
            if candidate.size == str(label):
                return candidate
        raise CatalogueError(f"family {self.family_id!r} has no size {label!r}")

    def choose_size(self, anatomy_value: float, variant: str | None = None) -> ImplantSize:
        """Choose the size whose sizing parameter matches an anatomy value (same unit).

        Parameters
        ----------
        anatomy_value
            The measured anatomy, in the unit of :attr:`sizing_parameter` (mm).
        variant
            The variant to choose from; the default variant when None.

        Raises
        ------
        CatalogueError
            For the ``largest_fitting`` rule (use the stem sizing of
            :mod:`MSKPlannerLib.templating`) and when no size fits.
        """
        sizes = self.sizes_of_variant(variant)
        values = np.array([float(s.parameters[self.sizing_parameter]) for s in sizes])
        if self.sizing_rule == "nearest":
            distance = np.abs(values - anatomy_value)
            best = np.flatnonzero(np.isclose(distance, distance.min(), atol=1e-6))
            return sizes[int(best[np.argmax(values[best])])]
        if self.sizing_rule == "largest_not_exceeding":
            fitting = np.flatnonzero(values <= anatomy_value + 1e-6)
            if fitting.size == 0:
                raise CatalogueError(
                    f"every size of {self.family_id!r} is larger than {anatomy_value:.1f} mm "
                    f"({self.sizing_parameter})"
                )
            return sizes[int(fitting[np.argmax(values[fitting])])]
        raise CatalogueError(
            f"family {self.family_id!r} sizes by {self.sizing_rule!r}, not by one value"
        )


@dataclass
class ImplantCatalogue:
    """Every implant family available, by family name."""

    families: dict[str, ImplantFamily] = field(default_factory=dict)

    @classmethod
    def load(cls, extra_folders: Iterable[Path] | None = None) -> ImplantCatalogue:
        """Read the built-in families, then the user folders (later files replace earlier).

        Parameters
        ----------
        extra_folders
            Folders read after the built-in one; :func:`user_implant_folders` when None.
        """
        catalogue = cls()
        folders = [BUILTIN_FOLDER, *(user_implant_folders() if extra_folders is None else [])]
        folders += list(extra_folders or [])
        for folder in folders:
            catalogue.add_folder(Path(folder))
        return catalogue

    def add_folder(self, folder: Path) -> None:
        """Read every ``*.json`` family file in ``folder`` (a missing folder adds nothing)."""
        if not folder.is_dir():
            return
        for path in sorted(folder.glob("*.json")):
            family = read_family(path)
            if family.family_id in self.families:
                logger.info("implant family %s from %s replaces an earlier one", family, path)
            self.families[family.family_id] = family

    def family(self, family_id: str) -> ImplantFamily:
        """Return a family by name."""
        try:
            return self.families[family_id]
        except KeyError:
            raise CatalogueError(
                f"no implant family {family_id!r}; known: {', '.join(sorted(self.families))}"
            ) from None

    def families_of_kind(self, kind: str) -> list[ImplantFamily]:
        """Families of one kind, generic built-ins last."""
        if kind not in KINDS:
            raise CatalogueError(f"unknown implant kind {kind!r}; expected one of {KINDS}")
        found = [f for f in self.families.values() if f.kind == kind]
        return sorted(found, key=lambda f: (f.generic, f.family_id))

    def default_family(self, kind: str) -> ImplantFamily:
        """The first family of a kind (a user family before a generic one)."""
        found = self.families_of_kind(kind)
        if not found:
            raise CatalogueError(f"the implant catalogue has no {kind} family")
        return found[0]


def user_implant_folders() -> list[Path]:
    """Folders named by ``MSKWB_IMPLANTS``, else ``~/.config/mskwb/implants``."""
    value = os.environ.get(IMPLANTS_ENVIRONMENT_VARIABLE, "")
    if value:
        return [Path(p).expanduser() for p in value.split(os.pathsep) if p]
    return [DEFAULT_USER_FOLDER.expanduser()]


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CatalogueError(f"{where} must be a number, not {value!r}")
    return float(value)


def _size_parameters(
    entry: Mapping[str, Any], variant: Mapping[str, Any] | None, where: str
) -> dict[str, float]:
    parameters = {
        key: _number(value, f"{where}: {key}")
        for key, value in entry.items()
        if key not in ("size", "stl")
    }
    for key, value in (variant or {}).items():
        if key == "variant":
            continue
        number = _number(value, f"{where}: variant {key}")
        if key.endswith("_add_mm"):
            base = key.removesuffix("_add_mm") + "_mm"
            if base not in parameters:
                raise CatalogueError(f"{where}: variant adds to {base!r}, which the size lacks")
            parameters[base] += number
        else:
            parameters[key] = number
    return parameters


def read_family(path: Path) -> ImplantFamily:
    """Read and check one family file.

    Parameters
    ----------
    path
        A JSON family file (format in the module docstring).

    Raises
    ------
    CatalogueError
        Unreadable JSON, an unknown kind or rule, a size without the parameters its kind
        needs, or a missing STL file; the message names the file.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CatalogueError(f"implant file {path} is not readable JSON: {error}") from error
    if not isinstance(data, dict):
        raise CatalogueError(f"implant file {path} does not hold a JSON object")
    family_id = str(data.get("family") or path.stem)
    kind = data.get("kind")
    if kind not in KINDS:
        raise CatalogueError(f"implant file {path}: kind {kind!r} is not one of {KINDS}")
    sizing = data.get("sizing") or {}
    rule = sizing.get("rule", "nearest")
    if rule not in SIZING_RULES:
        raise CatalogueError(
            f"implant file {path}: sizing rule {rule!r} is not one of {SIZING_RULES}"
        )
    variants = data.get("variants") or [None]
    default_variant = data.get("default_variant")
    variant_names = tuple(str(v["variant"]) for v in variants if v is not None)
    if variant_names and default_variant is None:
        default_variant = variant_names[0]
    entries = data.get("sizes")
    if not isinstance(entries, list) or not entries:
        raise CatalogueError(f"implant file {path} lists no sizes")

    sizes: list[ImplantSize] = []
    for entry in entries:
        label = str(entry.get("size", "")).strip()
        if not label:
            raise CatalogueError(f"implant file {path}: a size has no 'size' label")
        stl_path = (path.parent / entry["stl"]).resolve() if entry.get("stl") else None
        if stl_path is not None and not stl_path.is_file():
            raise CatalogueError(f"implant file {path}: size {label} names a missing {stl_path}")
        for variant in variants:
            where = f"implant file {path}, size {label}"
            parameters = _size_parameters(entry, variant, where)
            size = ImplantSize(
                family_id=family_id,
                kind=kind,
                size=label,
                variant=str(variant["variant"]) if variant else None,
                parameters=parameters,
                stl_path=stl_path,
            )
            try:
                size.outline_mm()
            except implant_geometry.ImplantGeometryError as error:
                raise CatalogueError(f"{where}: {error}") from error
            sizes.append(size)

    parameter = str(sizing.get("parameter", ""))
    if rule != "largest_fitting" and any(parameter not in s.parameters for s in sizes):
        raise CatalogueError(f"implant file {path}: sizing parameter {parameter!r} is missing")
    return ImplantFamily(
        family_id=family_id,
        kind=kind,
        name=str(data.get("name", family_id)),
        generic=bool(data.get("generic", False)),
        disclaimer=str(data.get("disclaimer", "")),
        sizing_parameter=parameter,
        sizing_rule=rule,
        sizes=tuple(sizes),
        variants=variant_names,
        default_variant=default_variant,
        source=path,
    )

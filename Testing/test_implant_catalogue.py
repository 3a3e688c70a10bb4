"""The implant catalogue: built-in generic families, user folders with STL, shapes per size."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import vtk

from MSKPlannerLib import implant_geometry
from MSKPlannerLib.implant_catalogue import (
    BUILTIN_FOLDER,
    CatalogueError,
    ImplantCatalogue,
    read_family,
    user_implant_folders,
)
from mskworkbench.commands.template import FAMILY_CHOICES


@pytest.fixture
def builtin() -> ImplantCatalogue:
    return ImplantCatalogue.load([])


def _is_closed(polydata: vtk.vtkPolyData) -> bool:
    edges = vtk.vtkFeatureEdges()
    edges.SetInputData(polydata)
    edges.BoundaryEdgesOn()
    edges.NonManifoldEdgesOff()
    edges.FeatureEdgesOff()
    edges.ManifoldEdgesOff()
    edges.Update()
    return edges.GetOutput().GetNumberOfCells() == 0


def test_builtin_families_are_generic_and_complete(builtin) -> None:
    cups = builtin.family("generic_hemispherical_cup")
    stems = builtin.family("generic_tapered_stem")

    assert [s.size for s in cups.sizes] == [str(d) for d in range(44, 67, 2)]
    assert set(stems.variants) >= {"127-standard", "132-standard", "132-high", "135-standard"}
    assert {f.kind for f in builtin.families.values()} == set(implant_geometry.KINDS)
    for family in builtin.families.values():
        assert family.generic
        assert "not any manufacturer's design" in family.disclaimer


def test_stem_variants_change_angle_and_offset(builtin) -> None:
    stems = builtin.family("generic_tapered_stem")
    standard, high = stems.size("4", "132-standard"), stems.size("4", "132-high")
    varus = stems.size("4", "127-standard")

    assert high.parameters["offset_mm"] == standard.parameters["offset_mm"] + 6.0
    assert varus.parameters["neck_shaft_angle_deg"] == 127.0
    neck = implant_geometry.stem_neck_geometry(standard.parameters)
    # The neck axis meets the head centre at the stated neck-shaft angle.
    neck_axis = np.array(
        [
            standard.parameters["offset_mm"],
            standard.parameters["head_height_mm"] - neck["neck_base_y_mm"],
        ]
    )
    to_distal_shaft = np.array([0.0, -1.0])
    cosine = neck_axis @ to_distal_shaft / np.linalg.norm(neck_axis)
    assert np.degrees(np.arccos(cosine)) == pytest.approx(132.0)
    assert np.linalg.norm(neck_axis) == pytest.approx(neck["neck_length_mm"])


@pytest.mark.parametrize(
    "family_id",
    [
        "generic_hemispherical_cup",
        "generic_tapered_stem",
        "generic_knee_femoral",
        "generic_knee_tibial",
    ],
)
def test_every_size_has_an_outline_matching_its_model(builtin, family_id) -> None:
    family = builtin.family(family_id)
    for size in (family.sizes[0], family.sizes[-1]):
        outline = size.outline_mm()
        model = size.model_polydata()
        bounds = np.array(model.GetBounds()).reshape(3, 2)

        assert outline.ndim == 2 and outline.shape[1] == 2 and len(outline) >= 3
        assert model.GetNumberOfCells() > 0
        # The outline is the model's silhouette in the frontal (x, y) plane.
        assert outline[:, 0].min() == pytest.approx(bounds[0, 0], abs=0.5)
        if family.kind == "stem":  # the model adds the head ball beyond the neck
            assert outline[:, 0].max() < bounds[0, 1]
        else:
            assert outline[:, 0].max() == pytest.approx(bounds[0, 1], abs=0.5)
        if family.kind != "cup":
            assert _is_closed(model)


def test_cup_model_is_a_hemisphere_of_its_size(builtin) -> None:
    size = builtin.family("generic_hemispherical_cup").size("52")
    points = implant_geometry.points_of(size.model_polydata())

    assert np.linalg.norm(points, axis=1) == pytest.approx(26.0, abs=1e-4)
    assert points[:, 1].min() >= -1e-6  # dome toward +y


def test_user_folder_adds_a_family_with_an_stl(tmp_path, monkeypatch) -> None:
    sphere = vtk.vtkSphereSource()
    sphere.SetRadius(24.5)
    sphere.SetPhiResolution(32)
    writer = vtk.vtkSTLWriter()
    writer.SetFileName(str(tmp_path / "cup49.stl"))
    writer.SetInputConnection(sphere.GetOutputPort())
    writer.Write()
    (tmp_path / "my_cups.json").write_text(
        json.dumps(
            {
                "family": "my_cups",
                "kind": "cup",
                "name": "My cups",
                "sizing": {"parameter": "outer_diameter_mm", "rule": "nearest"},
                "sizes": [
                    {"size": "49", "outer_diameter_mm": 49, "stl": "cup49.stl"},
                    {"size": "51", "outer_diameter_mm": 51},
                ],
            }
        )
    )
    monkeypatch.setenv("MSKWB_IMPLANTS", str(tmp_path))

    catalogue = ImplantCatalogue.load()
    family = catalogue.family("my_cups")

    assert user_implant_folders() == [tmp_path]
    assert catalogue.default_family("cup") is family  # user families come first
    assert "generic_hemispherical_cup" in catalogue.families
    assert family.choose_size(49.4).size == "49"
    assert family.size("49").stl_path == (tmp_path / "cup49.stl").resolve()
    bounds = family.size("49").model_polydata().GetBounds()
    assert bounds[5] - bounds[4] == pytest.approx(49.0, abs=1e-3)  # pole to pole


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"kind": "shoulder", "sizes": [{"size": "1"}]}, "kind 'shoulder'"),
        ({"kind": "cup", "sizes": []}, "lists no sizes"),
        ({"kind": "cup", "sizes": [{"size": "1"}]}, "outer_diameter_mm"),
        (
            {"kind": "cup", "sizes": [{"size": "1", "outer_diameter_mm": 50, "stl": "none.stl"}]},
            "missing",
        ),
        ({"kind": "cup", "sizes": [{"size": "1", "outer_diameter_mm": "big"}]}, "must be a number"),
    ],
)
def test_bad_family_files_are_refused_with_their_name(tmp_path, content, message) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(content))

    with pytest.raises(CatalogueError, match=message) as error:
        read_family(path)
    assert str(path) in str(error.value)


def test_sizing_rules(builtin) -> None:
    tibial = builtin.family("generic_knee_tibial")

    assert builtin.family("generic_hemispherical_cup").choose_size(53.0).size == "54"  # tie: larger
    assert tibial.choose_size(68.9).size == "3"  # 66 fits, 69 would overhang
    with pytest.raises(CatalogueError, match="larger than"):
        tibial.choose_size(50.0)


def test_builtin_folder_holds_only_listed_json() -> None:
    assert sorted(p.name for p in Path(BUILTIN_FOLDER).iterdir()) == sorted(
        p.name for p in Path(BUILTIN_FOLDER).glob("*.json")
    )


def test_template_command_offers_every_implant_kind() -> None:
    assert FAMILY_CHOICES == implant_geometry.KINDS

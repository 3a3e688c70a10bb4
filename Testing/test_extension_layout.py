"""The extension builds as Slicer expects: every installed file listed, module files parse."""

from __future__ import annotations

import ast
import json
import re
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent
MODULES = ("MSKPriors", "MSKPlanner")


def _listed_in_cmake(module: str) -> set[str]:
    text = (PROJECT_ROOT / module / "CMakeLists.txt").read_text()
    return set(re.findall(r"^\s+([\w/.${}-]+\.(?:py|png|ui|json|stl))\s*$", text, re.MULTILINE))


def _installed_files(module: str) -> set[str]:
    folder = PROJECT_ROOT / module
    files = {
        path.relative_to(folder).as_posix()
        for path in folder.rglob("*")
        if path.is_file() and "Testing" not in path.parts and "__pycache__" not in path.parts
    }
    return {name for name in files if name.endswith((".py", ".png", ".ui", ".json", ".stl"))}


@pytest.mark.parametrize("module", MODULES)
def test_every_python_file_and_resource_is_listed_in_cmake(module: str) -> None:
    missing = _installed_files(module) - _listed_in_cmake(module)

    assert not missing, f"{module}/CMakeLists.txt does not list: {sorted(missing)}"


@pytest.mark.parametrize("module", MODULES)
def test_cmake_lists_no_file_that_does_not_exist(module: str) -> None:
    stale = _listed_in_cmake(module) - _installed_files(module)

    assert not stale, f"{module}/CMakeLists.txt lists missing files: {sorted(stale)}"


@pytest.mark.parametrize("module", MODULES)
def test_module_file_parses_and_has_the_slicer_classes(module: str) -> None:
    tree = ast.parse((PROJECT_ROOT / module / f"{module}.py").read_text())
    classes = {node.name for node in tree.body if isinstance(node, ast.ClassDef)}

    expected = {module, f"{module}Widget", f"{module}Logic", f"{module}Test"}
    assert expected <= classes


@pytest.mark.parametrize("module", MODULES)
def test_ui_file_is_well_formed(module: str) -> None:
    for ui_file in (PROJECT_ROOT / module / "Resources" / "UI").glob("*.ui"):
        root = ElementTree.parse(ui_file).getroot()
        assert root.tag == "ui"


def test_top_level_cmake_declares_the_extension() -> None:
    text = (PROJECT_ROOT / "CMakeLists.txt").read_text()

    assert "project(MSKWorkbench)" in text
    assert 'set(EXTENSION_CATEGORY "Planning")' in text
    for module in MODULES:
        assert f"add_subdirectory({module})" in text


def test_catalogue_entry_is_valid_json_for_the_index() -> None:
    entry = json.loads((PROJECT_ROOT / "MSKWorkbench.json").read_text())

    assert entry["category"] == "Planning"
    assert entry["scm_url"].endswith(".git")
    assert entry["build_subdirectory"] == "."


def test_lib_packages_do_not_import_qt_or_the_application() -> None:
    forbidden = re.compile(
        r"^\s*(import|from)\s+(qt|ctk)\b|slicer\.app\b|slicer\.modules\b|slicer\.mrmlScene\b",
        re.MULTILINE,
    )
    for module in MODULES:
        for path in (PROJECT_ROOT / module / f"{module}Lib").rglob("*.py"):
            match = forbidden.search(path.read_text())
            assert match is None, f"{path} uses {match.group(0).strip()!r} (Lib must stay Qt-free)"


def _parameter_node_fields(module: str) -> set[str]:
    tree = ast.parse((PROJECT_ROOT / module / f"{module}.py").read_text())
    for node in tree.body:
        decorators = {getattr(d, "id", "") for d in getattr(node, "decorator_list", [])}
        if isinstance(node, ast.ClassDef) and "parameterNodeWrapper" in decorators:
            return {
                item.target.id
                for item in node.body
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)
            }
    raise AssertionError(f"{module}.py has no @parameterNodeWrapper class")


@pytest.mark.parametrize("module", MODULES)
def test_every_ui_parameter_name_exists_in_the_parameter_node(module: str) -> None:
    ui_root = ElementTree.parse(PROJECT_ROOT / module / "Resources" / "UI" / f"{module}.ui")
    used = {
        element.findtext("string")
        for element in ui_root.iter("property")
        if element.get("name") == "SlicerParameterName"
    }
    fields = _parameter_node_fields(module)

    assert used, f"{module}.ui binds no widget to the parameter node"
    assert used <= fields, f"{module}.ui names unknown parameters: {sorted(used - fields)}"


@pytest.mark.parametrize("module", MODULES)
def test_widget_uses_only_names_the_ui_file_defines(module: str) -> None:
    ui_root = ElementTree.parse(PROJECT_ROOT / module / "Resources" / "UI" / f"{module}.ui")
    defined = {element.get("name") for element in ui_root.iter("widget")}
    source = (PROJECT_ROOT / module / f"{module}.py").read_text()
    used = set(re.findall(r"self\.ui\.(\w+)", source))

    assert used <= defined, (
        f"{module}.py uses widgets missing from its .ui: {sorted(used - defined)}"
    )

"""``mskwb`` starts without importing the heavy libraries its sub-commands use.

Batch users call ``mskwb`` once per case, so building the parser (``mskwb --help``, or any
sub-command before it runs) must not import the scene, imaging or network libraries: each
command module imports them inside the function that needs them. Every check runs in a fresh
interpreter, so modules already imported by other tests cannot hide a module-level import.
"""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import pytest

from mskworkbench import commands

#: Top-level packages that cost seconds to import and must wait until a command runs.
HEAVY_MODULES = (
    "vtk",
    "vtkmodules",
    "slicer",
    "SimpleITK",
    "pydicom",
    "highdicom",
    "numpy",
    "scipy",
    "requests",
)

COMMAND_MODULES = sorted(info.name for info in pkgutil.iter_modules(commands.__path__))


def _heavy_modules_after(statement: str) -> list[str]:
    """Run ``statement`` in a fresh interpreter; return the heavy modules then in sys.modules."""
    code = (
        f"{statement}\n"
        "import json, sys\n"
        f"print(json.dumps(sorted(n for n in {HEAVY_MODULES!r} if n in sys.modules)))\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300
    )
    if completed.returncode != 0:
        pytest.fail(f"{statement!r} failed in a fresh interpreter:\n{completed.stderr}")
    loaded: list[str] = json.loads(completed.stdout.strip().splitlines()[-1])
    return loaded


def test_the_check_sees_a_heavy_import() -> None:
    assert _heavy_modules_after("import numpy") == ["numpy"]


def test_build_parser_imports_no_heavy_library() -> None:
    loaded = _heavy_modules_after("from mskworkbench.cli import build_parser\nbuild_parser()")

    assert not loaded, (
        f"building the mskwb parser imports {', '.join(loaded)}; import them inside the "
        "command functions (see the per-module tests for the culprit)"
    )


@pytest.mark.parametrize("name", COMMAND_MODULES)
def test_command_module_imports_no_heavy_library(name: str) -> None:
    loaded = _heavy_modules_after(f"import mskworkbench.commands.{name}")

    assert not loaded, (
        f"mskworkbench/commands/{name}.py imports {', '.join(loaded)} when it is imported; "
        "move those imports into the functions that use them"
    )


def test_calibrate_default_ball_diameter_matches_the_lib() -> None:
    from MSKPlannerLib.calibration import DEFAULT_BALL_DIAMETER_MM
    from mskworkbench.commands import calibrate

    assert calibrate.DEFAULT_BALL_DIAMETER_MM == DEFAULT_BALL_DIAMETER_MM

"""The packages the desktop modules install on demand are exactly those the project pins."""

from __future__ import annotations

import re
from pathlib import Path

from MSKPriorsLib.runtime_packages import RUNTIME_PACKAGES, install_missing, missing_requirements

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _pinned_dependencies() -> set[str]:
    text = (PROJECT_ROOT / "pyproject.toml").read_text()
    block = text.split("\ndependencies = [", 1)[1].split("\n]", 1)[0]
    return set(re.findall(r'"([^"]+==[^"]+)"', block))


def test_every_on_demand_package_has_the_pyproject_pin() -> None:
    unpinned = set(RUNTIME_PACKAGES.values()) - _pinned_dependencies()

    assert not unpinned, f"not pinned the same in pyproject.toml: {sorted(unpinned)}"


def test_nothing_is_missing_in_the_headless_environment() -> None:
    installed: list[str] = []

    assert missing_requirements() == []
    assert install_missing(installed.append) == []
    assert installed == []

"""A wheel install (not only the source tree) carries the shipped protocols and implants."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

PROBE = """
import json
from MSKPriorsLib.hanging_protocols import DEFAULT_RULES_FOLDER, load_rules
from MSKPlannerLib.implant_catalogue import BUILTIN_FOLDER, ImplantCatalogue
print(json.dumps({
    "rules_folder": str(DEFAULT_RULES_FOLDER),
    "rules": sorted(rule.name for rule in load_rules()),
    "implants_folder": str(BUILTIN_FOLDER),
    "families": sorted(ImplantCatalogue.load(extra_folders=[]).families),
}))
"""


@pytest.mark.slow
def test_wheel_install_finds_shipped_data(tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--target",
            str(target),
            str(REPO),
        ],
        check=True,
        capture_output=True,
    )
    environment = {**os.environ, "PYTHONPATH": str(target), "HOME": str(tmp_path)}
    environment.pop("MSKWB_HANGING_PROTOCOLS", None)
    environment.pop("MSKWB_IMPLANTS", None)
    answer = subprocess.run(
        [sys.executable, "-c", PROBE],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=environment,
    )
    found = json.loads(answer.stdout.strip().splitlines()[-1])

    # The installed copy is used, not the source tree.
    assert Path(found["rules_folder"]).is_relative_to(target)
    assert Path(found["implants_folder"]).is_relative_to(target)
    shipped_rules = REPO / "MSKPriors" / "Resources" / "HangingProtocols"
    shipped_implants = REPO / "MSKPlanner" / "Resources" / "Implants"
    assert sorted(p.name for p in Path(found["rules_folder"]).glob("*.json")) == sorted(
        p.name for p in shipped_rules.glob("*.json")
    )
    expected_families = sorted(
        json.loads(p.read_text())["family"] for p in shipped_implants.glob("*.json")
    )
    assert found["families"] == expected_families
    assert len(found["rules"]) >= len(list(shipped_rules.glob("*.json")))

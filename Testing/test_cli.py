"""The ``mskwb`` console script is installed and answers ``--help``."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path


def test_mskwb_help_lists_the_commands() -> None:
    executable = shutil.which("mskwb") or str(Path(sys.executable).parent / "mskwb")
    result = subprocess.run([executable, "--help"], capture_output=True, text=True, timeout=120)

    assert result.returncode == 0, result.stderr
    assert "usage: mskwb" in result.stdout
    assert "orthanc" in result.stdout

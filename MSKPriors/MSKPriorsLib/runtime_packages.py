"""Python packages the Lib code needs beyond what the 3D Slicer desktop bundles.

The headless package gets them from its pinned dependencies; in desktop Slicer the module
panels install the missing ones into Slicer's Python the first time a panel is opened. This
module imports none of them, so it can run before they exist.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable

logger = logging.getLogger(__name__)

#: Import name -> pinned requirement, for each package Slicer's Python may lack. The pins are
#: those of ``pyproject.toml`` (a test keeps them equal).
RUNTIME_PACKAGES = {
    "python_multipart": "python-multipart==0.0.34",
    "nibabel": "nibabel==5.4.2",
    "PIL": "pillow==13.0.0",
    "pylibjpeg": "pylibjpeg==2.1.0",
    "openjpeg": "pylibjpeg-openjpeg==2.6.0",
    "libjpeg": "pylibjpeg-libjpeg==2.5.0",
    "rle": "pylibjpeg-rle==2.2.0",
    "jpeg_ls": "pyjpegls==1.5.1",
}


def missing_requirements() -> list[str]:
    """Return the pinned requirements whose package cannot be imported here."""
    return [
        requirement
        for module, requirement in RUNTIME_PACKAGES.items()
        if importlib.util.find_spec(module) is None
    ]


def install_missing(installer: Callable[[str], object]) -> list[str]:
    """Install every missing requirement with ``installer`` and return what was installed.

    Parameters
    ----------
    installer
        Called with a space-separated requirement list, such as Slicer's
        ``slicer.util.pip_install``.
    """
    missing = missing_requirements()
    if missing:
        logger.info("installing missing Python packages: %s", ", ".join(missing))
        installer(" ".join(missing))
    return missing

"""Find a module's shipped data folder in the source tree, the Slicer extension or a wheel.

In the source tree and in the Slicer extension a module's data lies beside its Lib package
(``MSKPriors/Resources/HangingProtocols``). A wheel has no such folder: there the same files
are installed as a data-only package (``mskwb_hanging_protocols``, see pyproject.toml).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path


def shipped_folder(lib_file: str, resource_parts: tuple[str, ...], package_name: str) -> Path:
    """Return the folder holding a module's shipped data files.

    Parameters
    ----------
    lib_file
        ``__file__`` of a module of the Lib package (``MSKPriorsLib/...``).
    resource_parts
        Path of the folder under the module folder, e.g. ``("Resources", "Implants")``.
    package_name
        Data-only package a wheel installs the same files as.

    Returns
    -------
    Path
        The folder beside the Lib package when it exists, else the installed package's
        folder; the (missing) folder beside the Lib package when neither exists, so that
        the caller's error names where the files were expected.
    """
    beside_lib = Path(lib_file).resolve().parent.parent.joinpath(*resource_parts)
    if beside_lib.is_dir():
        return beside_lib
    spec = importlib.util.find_spec(package_name)
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            if Path(location).is_dir():
                return Path(location)
    return beside_lib

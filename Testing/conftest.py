"""Fixtures shared by the whole suite: the shared data, a headless scene, a real Orthanc."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from MSKPriorsLib.app_context import AppContext
from mskworkbench.local_orthanc import LocalOrthanc, OrthancMissingError
from mskworkbench.shared_data import SharedDataMissingError, shared_data_path

os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of real public DICOM files; a missing folder fails the test, never skips it."""
    try:
        return shared_data_path()
    except SharedDataMissingError as error:
        pytest.fail(str(error))


@pytest.fixture
def app_context() -> AppContext:
    """A fresh headless MRML scene with its application and module logics."""
    return AppContext.create_headless()


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalOrthanc]:
    """A real Orthanc with DICOMweb on a free loopback port, authentication on, for the session."""
    server = LocalOrthanc(tmp_path_factory.mktemp("orthanc"))
    try:
        server.start()
    except OrthancMissingError as error:
        pytest.fail(f"{error} (the PACS tests need a real Orthanc; .ci/run installs it)")
    yield server
    server.stop()


@pytest.fixture
def empty_orthanc(orthanc: LocalOrthanc) -> LocalOrthanc:
    """The session Orthanc with every stored patient deleted first."""
    orthanc.clear()
    return orthanc

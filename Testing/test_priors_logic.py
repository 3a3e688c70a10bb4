"""The MSK Priors panel's logic, run headless on real slicer-core MRML and a real Orthanc."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from dicom_factory import copy_series, study_uid_of

from MSKPriorsLib.app_context import AppContext
from MSKPriorsLib.priors_logic import PriorsLogic
from MSKPriorsLib.registration import transform_to_parent_ras
from mskworkbench.local_orthanc import LocalOrthanc

pytestmark = [pytest.mark.pacs, pytest.mark.slow]


@pytest.fixture
def head_ct_with_prior(tmp_path: Path, shared_data: Path) -> dict[str, list[Path]]:
    """A real head CT series and a real prior of the same patient one year earlier."""
    source = sorted(
        p for p in (shared_data / "dcm_qa_ct" / "Philips_untilted").iterdir() if p.name != "DIRFILE"
    )
    current = copy_series(source, tmp_path / "current", StudyDate="20260101")
    prior = copy_series(source, tmp_path / "prior", StudyDate="20250101")
    return {"current": current, "prior": prior}


def test_search_rank_retrieve_and_compare_from_the_pacs(
    app_context: AppContext,
    empty_orthanc: LocalOrthanc,
    head_ct_with_prior: dict[str, list[Path]],
    tmp_path: Path,
) -> None:
    datasets = [pydicom.dcmread(p) for files in head_ct_with_prior.values() for p in files]
    logic = PriorsLogic(app_context)
    logic.connect(
        server_url=empty_orthanc.dicomweb_url,
        auth_kind="basic",
        username=empty_orthanc.username,
        secret=empty_orthanc.password,
        archive_folder=tmp_path / "archive",
    )
    assert logic.client is not None
    logic.client.store_instances(datasets)
    patient_id = str(datasets[0].PatientID)
    progress: list[tuple[int, int]] = []

    studies = logic.search_studies(patient_id)
    current = next(s for s in studies if s.study_uid == study_uid_of(head_ct_with_prior["current"]))
    search = logic.find_priors(current)
    folders = logic.retrieve(search, lambda done, total: progress.append((done, total)))
    comparison = logic.load_comparison(search, "ct-bone", register=True, link=True)

    assert [s.study_date for s in studies] == ["20260101", "20250101"]
    assert [p.study.study_uid for p in search.priors] == [study_uid_of(head_ct_with_prior["prior"])]
    assert logic.prior_rows(search)[0][0] == "1"
    assert progress and progress[-1][0] == progress[-1][1] == len(datasets)
    assert len(folders) == 2
    assert len(comparison.volumes_by_series) == 2
    views = comparison.volumes_by_view
    assert len({node.GetID() for node in views.values()}) == 2
    prior_node = next(node for node in views.values() if node.GetParentTransformNode() is not None)
    # The prior is an exact copy of the current scan, so registration must find no motion.
    assert np.allclose(
        transform_to_parent_ras(prior_node.GetParentTransformNode()), np.eye(4), atol=0.5
    )
    window = prior_node.GetDisplayNode().GetWindow()
    assert window >= 1000, "bone preset expected on the prior view"


def test_secret_is_not_kept_in_the_scene(
    app_context: AppContext, empty_orthanc: LocalOrthanc, tmp_path: Path
) -> None:
    logic = PriorsLogic(app_context)
    logic.connect(
        server_url=empty_orthanc.dicomweb_url,
        auth_kind="basic",
        username=empty_orthanc.username,
        secret="a-secret-typed-in-the-panel",
        archive_folder=tmp_path / "archive",
    )
    app_context.save_mrb(tmp_path / "scene.mrb")

    import zipfile

    with zipfile.ZipFile(tmp_path / "scene.mrb") as bundle:
        text = b"".join(bundle.read(name) for name in bundle.namelist())
    assert b"a-secret-typed-in-the-panel" not in text
    assert "a-secret-typed-in-the-panel" not in repr(logic.server)


def test_empty_patient_id_is_refused(app_context: AppContext, tmp_path: Path) -> None:
    logic = PriorsLogic(app_context)
    logic.connect(archive_folder=tmp_path / "archive")

    with pytest.raises(ValueError, match="empty ID"):
        logic.search_studies("  ")

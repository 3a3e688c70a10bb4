"""``mskwb plan`` against the real Orthanc, loaded with the real TotalSegmentator CT.

The PACS holds (1) the 20-slice JPEG 2000 TotalSegmentator series whose PatientID is empty
and (2) the real TotalSegmentator CT volume wrapped as DICOM for a patient with an ID, as a
current study (with a calibrated long-leg radiograph) and a prior taken two years earlier
with the patient moved. The plan is run once per PACS case (module fixtures) and each test
checks one promise.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from MSKPlannerLib import demo_case
from MSKPlannerLib.case_plan import PlanRequest, PlanResult, plan_case
from MSKPriorsLib.app_context import AppContext
from MSKPriorsLib.dicomweb import DicomWebClient
from MSKPriorsLib.servers import server_from_url
from mskworkbench.cli import main
from mskworkbench.local_orthanc import LocalOrthanc

pytestmark = [pytest.mark.pacs, pytest.mark.slow]

PLAN_KEYS = {"studies", "warnings", "measurements", "reconstruction", "files"}


@pytest.fixture(scope="module")
def loaded_pacs(
    orthanc: LocalOrthanc, shared_data: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LocalOrthanc, demo_case.DemoCase, str]]:
    """Orthanc with the empty-PatientID series and the demo patient (real CT pixels)."""
    orthanc.clear()
    folder = tmp_path_factory.mktemp("pacs-case")
    totalseg = shared_data / "totalsegmentator"
    case = demo_case.build_demo_dicom(
        folder, totalseg / "ct_volume.nii.gz", totalseg / "ct_volume_vertebrae_labels.nii.gz"
    )
    # The public slices come with their study, series and SOP UIDs emptied, which a PACS
    # needs; they get UIDs here. Pixels, JPEG 2000 encoding and the empty PatientID stay.
    no_id_study, no_id_series = generate_uid(), generate_uid()
    no_id = []
    for path in sorted((totalseg / "ct_dicom").iterdir()):
        ds = pydicom.dcmread(path)
        assert ds.PatientID == ""
        ds.StudyInstanceUID, ds.SeriesInstanceUID = no_id_study, no_id_series
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
        no_id.append(ds)
    client = DicomWebClient(server_from_url(orthanc.dicomweb_url))
    client.session.auth = orthanc.auth
    client.store_instances([path.read_bytes() for path in sorted(case.dicom_folder.rglob("*.dcm"))])
    client.store_instances(no_id)
    client.close()
    yield orthanc, case, str(no_id_study)


@pytest.fixture(scope="module")
def pacs_credentials(loaded_pacs: tuple[LocalOrthanc, demo_case.DemoCase, str]) -> Iterator[None]:
    """The PACS credentials in the environment, as ``mskwb`` reads them for a URL."""
    orthanc = loaded_pacs[0]
    patch = pytest.MonkeyPatch()
    patch.setenv("MSKWB_PACS_USERNAME", orthanc.username)
    patch.setenv("MSKWB_PACS_PASSWORD", orthanc.password)
    yield
    patch.undo()


@pytest.fixture(scope="module")
def patient_plan(
    loaded_pacs: tuple[LocalOrthanc, demo_case.DemoCase, str],
    pacs_credentials: None,
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[PlanResult, demo_case.DemoCase]:
    """The demo patient planned from the PACS by PatientID, with landmarks and labels."""
    orthanc, case, _ = loaded_pacs
    request = PlanRequest(
        out_dir=tmp_path_factory.mktemp("plan-patient"),
        pacs=orthanc.dicomweb_url,
        patient_id=case.patient_id,
        landmark_files=[case.landmarks_file],
        labels_file=case.labels_file,
        push=True,
    )
    return plan_case(request), case


@pytest.fixture(scope="module")
def no_id_plan(
    loaded_pacs: tuple[LocalOrthanc, demo_case.DemoCase, str],
    pacs_credentials: None,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict:
    """The empty-PatientID study planned through the command line, JSON on standard output."""
    orthanc, _, study_uid = loaded_pacs
    out_dir = tmp_path_factory.mktemp("plan-no-id")
    status = main(
        ["plan", "--pacs", orthanc.dicomweb_url, "--study", study_uid, "--out", str(out_dir)]
    )
    assert status == 0
    return {"plan": json.loads((out_dir / "plan.json").read_text()), "out_dir": out_dir}


def test_plan_from_the_pacs_writes_every_output(
    patient_plan: tuple[PlanResult, demo_case.DemoCase],
) -> None:
    result, _ = patient_plan
    out_dir = result.out_dir
    plan = json.loads((out_dir / "plan.json").read_text())

    assert set(plan) == PLAN_KEYS
    for name in ("report.html", "scene.mrb", "measurements.json", "timings.json"):
        assert (out_dir / name).stat().st_size > 0, name
    assert plan["files"]["surfaces"]
    assert all((out_dir / path).is_file() for path in plan["files"]["surfaces"])
    assert {"dicom/sr.dcm", "dicom/seg.dcm", "dicom/key_objects.dcm"} <= set(plan["files"]["dicom"])
    assert plan["files"]["pushed"]["complete"] is True
    assert set(result.seconds) == {
        "retrieve",
        "load",
        "register",
        "reconstruct",
        "measure",
        "render",
        "write",
    }


def test_plan_uses_the_prior_and_rejects_the_other_identity(
    patient_plan: tuple[PlanResult, demo_case.DemoCase],
) -> None:
    result, case = patient_plan
    studies = result.plan["studies"]

    assert studies["current"]["study"]["study_uid"] == case.current_study_uid
    used = [p for p in studies["priors"] if p["used"]]
    assert [p["study"]["study_uid"] for p in used] == [case.prior_study_uid]
    assert used[0]["why"].startswith("ranked 1")
    rejected = [r["study"]["study_uid"] for r in studies["rejected"]]
    assert rejected == [case.other_patient_study_uid]
    codes = {w["code"] for w in result.plan["warnings"]}
    assert "identity_conflict" in codes


def test_registration_recovers_the_prior_motion(
    patient_plan: tuple[PlanResult, demo_case.DemoCase],
) -> None:
    result, case = patient_plan
    prior = next(p for p in result.plan["studies"]["priors"] if p["used"])
    registration = next(iter(prior["registration"].values()))

    rotation_deg = registration["rotation_deg"]
    translation = registration["translation_lps_mm"]
    assert abs(abs(rotation_deg[2]) - demo_case.PRIOR_ROTATION_DEG) < 0.3
    assert np.allclose(np.abs(translation), np.abs(case.expected["prior_translation_mm"]), atol=1.0)


def test_measurements_match_the_constructed_anatomy(
    patient_plan: tuple[PlanResult, demo_case.DemoCase],
) -> None:
    result, case = patient_plan
    rows = {row["key"]: row for row in result.plan["measurements"]["rows"]}

    for key in ("hka_deg", "mldfa_deg", "mpta_deg", "jlca_deg", "mad_mm"):
        assert rows[key]["value"] == pytest.approx(case.expected[key], abs=0.05), key
    assert rows["mad_mm"]["calibration"]["method"] == "pixel_spacing"
    assert rows["hka_deg"]["source_image"] == case.radiograph_series_uid
    cobb = rows["cobb_deg"]
    assert cobb["method"] == "automatic"
    assert 0.0 < cobb["value"] < 10.0
    assert cobb["calibration"]["method"] == "volume_geometry"
    for key in ("femoral_offset_mm", "ccd_deg"):
        assert rows[key]["value"] == pytest.approx(case.expected[key], abs=0.05), key
    assert "cup_inclination_deg" in result.plan["measurements"]["not_measured"]


def test_reconstruction_lists_closed_bones_with_figures(
    patient_plan: tuple[PlanResult, demo_case.DemoCase],
) -> None:
    result, _ = patient_plan
    reconstruction = result.plan["reconstruction"]
    labelled = next(r for r in reconstruction if r["method"] == "labels")
    names = {bone["name"] for bone in labelled["bones"]}

    assert {"vertebrae_L1", "vertebrae_L5", "vertebrae_S1"} <= names
    assert {r["role"] for r in reconstruction} == {"current", "prior"}
    for bone in labelled["bones"]:
        assert bone["volume_ml"] > 1.0 and bone["area_cm2"] > 1.0
        assert bone["closed"]


def test_the_scene_reopens_with_volumes_segments_markups_and_hierarchy(
    patient_plan: tuple[PlanResult, demo_case.DemoCase],
) -> None:
    result, case = patient_plan
    fresh = AppContext.create_headless()

    fresh.load_mrb(result.out_dir / "scene.mrb")

    scene = fresh.scene
    volumes = [
        scene.GetNthNodeByClass(i, "vtkMRMLScalarVolumeNode")
        for i in range(scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode"))
    ]
    assert len([v for v in volumes if v.GetImageData() is not None]) >= 3
    segmentations = [
        scene.GetNthNodeByClass(i, "vtkMRMLSegmentationNode")
        for i in range(scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode"))
    ]
    segment_names = {
        s.GetSegmentation().GetNthSegment(k).GetName()
        for s in segmentations
        for k in range(s.GetSegmentation().GetNumberOfSegments())
    }
    assert "vertebrae_L3" in segment_names
    landmarks = scene.GetFirstNodeByName("Landmarks")
    labels = {
        landmarks.GetNthControlPointLabel(i) for i in range(landmarks.GetNumberOfControlPoints())
    }
    assert "hip_center" in labels and "ankle_center" in labels
    hierarchy = fresh.subject_hierarchy
    study = hierarchy.GetItemByUID("DICOM", case.current_study_uid)
    patient = hierarchy.GetItemParent(study)
    assert study and hierarchy.GetItemLevel(study) == "Study"
    assert hierarchy.GetItemLevel(patient) == "Patient"
    table = scene.GetFirstNodeByName("Measurements")
    assert hierarchy.GetItemParent(hierarchy.GetItemByDataNode(table)) == study
    assert hierarchy.GetItemParent(hierarchy.GetItemByDataNode(landmarks)) == study
    prior_study = hierarchy.GetItemByUID("DICOM", case.prior_study_uid)
    assert hierarchy.GetItemParent(prior_study) == patient
    models = [
        scene.GetNthNodeByClass(i, "vtkMRMLModelNode")
        for i in range(scene.GetNumberOfNodesByClass("vtkMRMLModelNode"))
    ]
    bone_models = [m for m in models if hierarchy.GetItemByDataNode(m)]
    assert len(bone_models) >= 8
    for model in bone_models:  # each bone model sits in a folder under its study
        folder = hierarchy.GetItemParent(hierarchy.GetItemByDataNode(model))
        assert hierarchy.GetItemParent(folder) in (study, prior_study)
    transform = scene.GetFirstNodeByClass("vtkMRMLLinearTransformNode")
    assert hierarchy.GetItemParent(hierarchy.GetItemByDataNode(transform)) == prior_study


def test_the_sr_reads_back_as_the_same_measurements(
    patient_plan: tuple[PlanResult, demo_case.DemoCase],
) -> None:
    from MSKPlannerLib.dicom_sr import read_measurement_table

    result, _ = patient_plan
    table = read_measurement_table(pydicom.dcmread(result.out_dir / "dicom" / "sr.dcm"))
    read = {row.key: row.value for row in table.rows}

    for row in result.plan["measurements"]["rows"]:
        assert math.isclose(read[row["key"]], row["value"], abs_tol=1e-6)


def test_a_study_with_an_empty_patient_id_is_planned_without_priors(no_id_plan: dict) -> None:
    plan = no_id_plan["plan"]
    out_dir = no_id_plan["out_dir"]

    assert set(plan) == PLAN_KEYS
    assert plan["studies"]["priors"] == []
    assert "empty PatientID" in plan["studies"]["prior_search"]
    assert any(w["code"] == "no_priors" for w in plan["warnings"])
    assert plan["studies"]["current"]["series_loaded"]
    assert plan["reconstruction"][0]["bones"]
    assert "cobb_deg" in plan["measurements"]["not_measured"]
    assert (out_dir / "report.html").is_file() and (out_dir / "scene.mrb").is_file()
    assert "No prior can be matched" in (out_dir / "report.html").read_text()


def test_json_output_is_only_the_plan(
    loaded_pacs: tuple[LocalOrthanc, demo_case.DemoCase, str],
    no_id_plan: dict,
    capsys: pytest.CaptureFixture[str],
) -> None:
    orthanc, _, study_uid = loaded_pacs
    out_dir = no_id_plan["out_dir"]

    status = main(
        [
            "plan",
            "--pacs",
            orthanc.dicomweb_url,
            "--study",
            study_uid,
            "--out",
            str(out_dir),
            "--json",
        ]
    )

    captured = capsys.readouterr()
    assert status == 0
    assert set(json.loads(captured.out)) == PLAN_KEYS
    assert "[load]" in captured.err


def test_plan_names_a_missing_study(
    loaded_pacs: tuple[LocalOrthanc, demo_case.DemoCase, str],
    pacs_credentials: None,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    orthanc = loaded_pacs[0]

    status = main(
        ["plan", "--pacs", orthanc.dicomweb_url, "--study", "1.2.3.4.5", "--out", str(tmp_path)]
    )

    assert status == 2
    assert "study 1.2.3.4.5 was not found" in capsys.readouterr().err

"""``mskwb plan`` on real MR and radiograph studies held in a local archive (no PACS involved)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image

from MSKPlannerLib.case_plan import PlanRequest, plan_case
from MSKPriorsLib.archive import LocalArchive
from MSKPriorsLib.mrml_volumes import array_from_volume
from mskworkbench.cli import main


def _mr_archive(folder: Path, shared_data: Path) -> tuple[str, list[Path]]:
    """Archive of the real MR head series; returns its study UID and archived files."""
    with LocalArchive(folder) as archive:
        summary = archive.import_folder(shared_data / "pacsman" / "mr_head")
        assert summary.stored == 128 and summary.failed == []
        (study,) = archive.search_studies()
        (series,) = archive.search_series(study.study_uid)
        return study.study_uid, archive.instance_paths(series.series_uid)


def test_plan_on_a_real_mr_study_writes_its_outputs(shared_data: Path, tmp_path: Path) -> None:
    study_uid, _ = _mr_archive(tmp_path / "archive", shared_data)
    out_dir = tmp_path / "out"

    status = main(
        [
            "plan",
            "--archive",
            str(tmp_path / "archive"),
            "--study",
            study_uid,
            "--out",
            str(out_dir),
        ]
    )

    assert status == 0
    plan = json.loads((out_dir / "plan.json").read_text())
    assert len(plan["studies"]["current"]["series_loaded"]) == 1
    assert not [w for w in plan["warnings"] if "could not be loaded" in w["message"]]
    # No landmarks were given: every measurement is listed as not possible, with a reason.
    assert plan["measurements"]["rows"] == []
    assert "hka_deg" in plan["measurements"]["not_measured"]
    assert (out_dir / "report.html").stat().st_size > 0
    assert (out_dir / "scene.mrb").stat().st_size > 0


def test_a_series_that_fails_to_load_is_named_with_its_reason_when_the_plan_stops(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    study_uid, files = _mr_archive(tmp_path / "archive", shared_data)
    damaged = files[5]
    data = damaged.read_bytes()
    damaged.write_bytes(data[: len(data) // 2])  # damaged on disk after it was archived
    out_dir = tmp_path / "out"

    status = main(
        [
            "plan",
            "--archive",
            str(tmp_path / "archive"),
            "--study",
            study_uid,
            "--out",
            str(out_dir),
        ]
    )

    assert status == 2
    error = capsys.readouterr().err
    assert "could not be loaded" in error and damaged.name in error
    plan = json.loads((out_dir / "plan.json").read_text())
    assert "of the current study could not be loaded" in plan["error"]
    assert damaged.name in plan["error"] and "\n" not in plan["error"]
    (warning,) = [w for w in plan["warnings"] if "could not be loaded" in w["message"]]
    assert damaged.name in warning["message"] and warning["severity"] == "high"


def test_one_damaged_current_series_stops_the_plan_though_another_loads(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    study_uid, files = _mr_archive(tmp_path / "archive", shared_data)
    mr = pydicom.dcmread(files[0], stop_before_pixels=True)
    radiograph = pydicom.dcmread(shared_data / "wg04" / "RG2_JPLL.dcm")
    for keyword in ("PatientID", "PatientName", "PatientBirthDate", "StudyInstanceUID"):
        setattr(radiograph, keyword, getattr(mr, keyword, ""))
    radiograph.SeriesInstanceUID = pydicom.uid.generate_uid()
    radiograph.SOPInstanceUID = pydicom.uid.generate_uid()
    radiograph.file_meta.MediaStorageSOPInstanceUID = radiograph.SOPInstanceUID
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    radiograph.save_as(incoming / "rg.dcm")
    with LocalArchive(tmp_path / "archive") as archive:
        assert archive.import_folder(incoming).stored == 1
    damaged = files[7]
    damaged.write_bytes(damaged.read_bytes()[:2000])
    out_dir = tmp_path / "out"

    status = main(["plan", "--archive", str(tmp_path / "archive"), "--study", study_uid,
                   "--out", str(out_dir)])  # fmt: skip

    error_lines = capsys.readouterr().err.strip().splitlines()
    assert status != 0
    assert not (out_dir / "report.html").exists()
    last = error_lines[-1]
    assert last.startswith("mskwb plan: series ") and mr.SeriesInstanceUID in last
    assert "of the current study could not be loaded" in last and damaged.name in last


def test_a_monochrome1_radiograph_is_drawn_with_dark_air_and_bright_bone(
    shared_data: Path, tmp_path: Path
) -> None:
    source = shared_data / "wg04" / "RG3_JPLL.dcm"
    dataset = pydicom.dcmread(source)
    assert dataset.PhotometricInterpretation == "MONOCHROME1"
    folder = tmp_path / "input"
    folder.mkdir()
    shutil.copyfile(source, folder / source.name)
    with LocalArchive(tmp_path / "archive") as archive:
        assert archive.import_folder(folder).stored == 1
    out_dir = tmp_path / "out"

    result = plan_case(
        PlanRequest(
            out_dir=out_dir, archive_dir=tmp_path / "archive", study_uid=dataset.StudyInstanceUID
        )
    )

    (picture_name,) = result.plan["files"]["images"]
    picture = np.asarray(Image.open(out_dir / picture_name).convert("L"), dtype=np.float64)
    height, width = picture.shape
    # The radiograph fills the square picture, shown with the patient's right on the left:
    # the air strip beside the calf is at 67-71 % of the width, the tibial shaft at 49-52 %.
    air = picture[height // 6 : height // 2, int(0.67 * width) : int(0.71 * width)]
    bone = picture[height // 9 : height // 3, int(0.49 * width) : int(0.52 * width)]
    assert air.mean() < 60 < 150 < bone.mean()
    # The node keeps the stored values the measurements read.
    (node,) = result.context.scene.GetNodesByClass("vtkMRMLScalarVolumeNode")
    np.testing.assert_array_equal(array_from_volume(node)[0], dataset.pixel_array)

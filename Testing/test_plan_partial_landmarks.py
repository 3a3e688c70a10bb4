"""``mskwb plan`` on the demo archive with partial landmark sets: endplate lines alone, and
the four limb centres without the condyles and plateau points."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest

from MSKPlannerLib import demo_case
from MSKPlannerLib.dicom_sr import read_measurement_table
from MSKPlannerLib.landmarks import read_landmark_files, write_markups_json
from mskworkbench.cli import main

CENTRES = ("hip_center", "knee_center_femur", "knee_center_tibia", "ankle_center")
JOINT_POINTS = (
    "femoral_condyle_medial",
    "femoral_condyle_lateral",
    "tibial_plateau_medial",
    "tibial_plateau_lateral",
)


@pytest.fixture(scope="module")
def demo_archive(
    tmp_path_factory: pytest.TempPathFactory, shared_data: Path
) -> tuple[demo_case.DemoCase, Path]:
    """The demo patient in a local archive, on the real CT and its vertebra labels."""
    ct = shared_data / "totalsegmentator" / "ct_volume.nii.gz"
    labels = shared_data / "totalsegmentator" / "ct_volume_vertebrae_labels.nii.gz"
    return demo_case.build_demo_archive(tmp_path_factory.mktemp("demo"), ct, labels)


def _plan(archive: Path, case: demo_case.DemoCase, landmarks: Path, out_dir: Path) -> dict:
    status = main(
        [
            "plan",
            "--archive",
            str(archive),
            "--patient-id",
            case.patient_id,
            "--landmarks",
            str(landmarks),
            "--out",
            str(out_dir),
        ]
    )
    assert status == 0
    return json.loads((out_dir / "plan.json").read_text())


def _measurement_pictures(plan: dict) -> list[str]:
    return [path for path in plan["files"]["images"] if "-measurements-" in path]


def test_endplate_lines_alone_are_planned_with_their_cobb_angle_drawn(
    demo_archive: tuple[demo_case.DemoCase, Path], tmp_path: Path
) -> None:
    case, archive = demo_archive
    # Two endplate lines across the demo CT's spine (RAS mm), with no side and no point.
    lines = {
        "L1-superior": np.array([[29.07, 161.32, 327.88], [-20.80, 161.32, 324.32]]),
        "S1-superior": np.array([[29.07, 161.32, 197.53], [-20.80, 161.32, 205.59]]),
    }
    landmarks = tmp_path / "cobb_lines.mrk.json"
    write_markups_json(landmarks, lines_ras_mm=lines)

    plan = _plan(archive, case, landmarks, tmp_path / "out")

    (row,) = plan["measurements"]["rows"]
    assert row["key"] == "cobb_deg" and row["method"] == "manual"
    assert row["value"] == pytest.approx(13.27, abs=0.05)
    not_measured = plan["measurements"]["not_measured"]
    assert "hip_center" in not_measured["hka_deg"] and "ankle_center" in not_measured["hka_deg"]
    assert "femoral_shaft_proximal" in not_measured["ccd_deg"]
    assert _measurement_pictures(plan), "the endplate lines are drawn on the CT"
    report = (tmp_path / "out" / "report.html").read_text()
    assert "Cobb angle" in report and f"{row['value']:.1f}" in report


def test_the_four_limb_centres_give_hka_and_mad_in_plan_report_and_sr(
    demo_archive: tuple[demo_case.DemoCase, Path], tmp_path: Path
) -> None:
    case, archive = demo_archive
    placed = read_landmark_files([case.landmarks_file])
    centres = {label: placed.points_ras_mm[label] for label in CENTRES}
    landmarks = tmp_path / "centres.mrk.json"
    write_markups_json(landmarks, centres, name=f"Alignment {placed.side}")
    out_dir = tmp_path / "out"

    plan = _plan(archive, case, landmarks, out_dir)

    values = {row["key"]: row["value"] for row in plan["measurements"]["rows"]}
    assert set(values) == {"hka_deg", "mad_mm"}
    assert values["hka_deg"] == pytest.approx(case.expected["hka_deg"], abs=0.05)
    assert values["mad_mm"] == pytest.approx(case.expected["mad_mm"], abs=0.1)
    not_measured = plan["measurements"]["not_measured"]
    assert not_measured["mldfa_deg"] == (
        "missing landmark(s) femoral_condyle_medial, femoral_condyle_lateral"
    )
    assert not_measured["mpta_deg"] == (
        "missing landmark(s) tibial_plateau_medial, tibial_plateau_lateral"
    )
    assert not_measured["jlca_deg"] == f"missing landmark(s) {', '.join(JOINT_POINTS)}"
    assert _measurement_pictures(plan)
    assert "Hip-knee-ankle angle" in (out_dir / "report.html").read_text()
    sr = read_measurement_table(pydicom.dcmread(out_dir / "dicom" / "sr.dcm"))
    assert {row.key: row.value for row in sr.rows} == pytest.approx(values, abs=1e-6)

"""``mskwb demo``: the demo patient has the anatomy it claims, and the demo plans it end to end."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import vtk
from vtk.util import numpy_support

from MSKPlannerLib import demo_case, demo_radiograph
from MSKPlannerLib.measure_alignment import alignment_angles_deg, mechanical_axis_deviation_mm
from MSKPlannerLib.measure_cobb import cobb_from_label_map
from MSKPlannerLib.measure_hip import hip_values
from MSKPriorsLib.series_loader import load_series
from mskworkbench.cli import main
from mskworkbench.commands import demo as demo_command
from mskworkbench.shared_data import SharedDataMissingError

CHROMIUM = "/usr/bin/chromium"


@pytest.mark.parametrize("side", ["left", "right"])
def test_constructed_leg_has_the_stated_angles(side: str) -> None:
    geometry = demo_radiograph.leg_geometry(side)

    angles = alignment_angles_deg(geometry.points_ras_mm, side)

    assert angles["hka_deg"] == pytest.approx(geometry.expected["hka_deg"], abs=1e-9)
    assert angles["hka_deg"] == pytest.approx(
        180.0 - demo_radiograph.HIP_ANGLE_DEG - demo_radiograph.ANKLE_ANGLE_DEG
    )
    assert angles["mldfa_deg"] == pytest.approx(demo_radiograph.MLDFA_DEG, abs=1e-9)
    assert angles["mpta_deg"] == pytest.approx(demo_radiograph.MPTA_DEG, abs=1e-9)
    assert angles["jlca_deg"] == pytest.approx(geometry.expected["jlca_deg"], abs=1e-9)
    assert mechanical_axis_deviation_mm(geometry.points_ras_mm, side) == pytest.approx(
        geometry.expected["mad_mm"], abs=1e-9
    )
    hip = hip_values(geometry.points_ras_mm, side)
    assert hip["femoral_offset_mm"] == pytest.approx(geometry.expected["femoral_offset_mm"])
    assert hip["ccd_deg"] == pytest.approx(geometry.expected["ccd_deg"])
    assert 115.0 < hip["ccd_deg"] < 140.0 and 30.0 < hip["femoral_offset_mm"] < 55.0


def test_generated_spine_gives_the_constructed_cobb_angle() -> None:
    _, labels_kji, ijk_to_ras = demo_case.generated_ct()
    names = {value: f"vertebrae_{name}" for value, name in demo_case.VERTEBRA_LABELS.items()}

    table = cobb_from_label_map(labels_kji, ijk_to_ras, names, "generated")

    tilts = demo_case.generated_vertebra_tilts_deg()
    whole = [t for v, t in zip(demo_case.VERTEBRA_LABELS, tilts, strict=True) if v != 33]
    expected = max(whole) - min(whole)  # T11 touches the top of the volume and is left out
    assert table.rows[0].value == pytest.approx(expected, abs=0.5)


def test_written_ct_series_loads_with_its_geometry(app_context, tmp_path: Path) -> None:
    ct_kji, _, ijk_to_ras = demo_case.generated_ct()

    files = demo_case.write_ct_series(
        ct_kji[:12], ijk_to_ras, tmp_path, "1.2.3", "1.2.3.4", "CT", "CT", "20260101"
    )
    loaded = load_series(app_context, files)

    matrix = vtk.vtkMatrix4x4()
    loaded.volume_node.GetIJKToRASMatrix(matrix)
    read = np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])
    assert np.allclose(read, ijk_to_ras, atol=1e-3)
    array = numpy_support.vtk_to_numpy(
        loaded.volume_node.GetImageData().GetPointData().GetScalars()
    )
    assert np.array_equal(array.reshape(12, 80, 96), ct_kji[:12])
    assert loaded.warnings == []


def test_the_synthetic_radiograph_says_it_is_synthetic(tmp_path: Path) -> None:
    import pydicom

    pixels = np.zeros((16, 8), dtype=np.uint16)
    path = demo_case.write_radiograph(
        pixels, 0.5, tmp_path / "cr.dcm", "1.2.3", "1.2.3.4", "20260101", "left"
    )

    dataset = pydicom.dcmread(path)
    assert dataset.SeriesDescription == "Long leg AP left (synthetic phantom)"
    assert "not an image of a person" in dataset.ImageComments


def _screenshot(report: Path, png: Path) -> np.ndarray:
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"{CHROMIUM} is missing (the report check needs headless Chromium)")
    subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            f"--screenshot={png}",
            "--window-size=1280,4000",
            report.resolve().as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    reader = vtk.vtkPNGReader()
    reader.SetFileName(str(png))
    reader.Update()
    image = reader.GetOutput()
    width, height, _ = image.GetDimensions()
    flat = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())
    return flat.reshape(height, width, -1)[::-1, :, :3]


@pytest.mark.slow
@pytest.mark.browser
def test_demo_writes_a_report_chromium_shows(
    tmp_path: Path, shared_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = tmp_path / "demo-output"

    status = main(["demo", "--out", str(out_dir)])

    assert status == 0
    console = capsys.readouterr()
    assert str((out_dir / "report.html").resolve()) in console.err
    # Metal is reported once per CT (current and prior), however often the CT is segmented.
    assert (console.out + console.err).count("metal kept out of the bones") == 2
    html = (out_dir / "report.html").read_text()
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", html)  # self-contained
    assert html.count("data:image/png;base64,") >= 8
    for text in ("Hip-knee-ankle angle", "176.0", "Cobb angle", "Rejected", "Warnings"):
        assert text in html
    assert "born 1958-03-12" in html and "19580312" not in html
    assert "CR Long leg AP left (synthetic phantom): mechanical axes" in html
    plan = json.loads((out_dir / "plan.json").read_text())
    assert plan["studies"]["current"]["study"]["patient"]["patient_id"] == demo_case.PATIENT_ID
    # The rib ends at the top of the real CT are small and cut by the scan, not failures.
    assert not [w for w in plan["warnings"] if w["code"] == "bone_surface_checks"]
    assert any("run out of the scan" in w["message"] for w in plan["warnings"])

    shot = _screenshot(out_dir / "report.html", tmp_path / "report.png")

    assert shot.shape[:2] == (4000, 1280)
    header = shot[10:60, 10:400]
    assert header.mean() < 80  # the dark title bar was drawn
    # the rendered pictures arrived: a 3D view's blue gradient is on the page
    blue = (shot[..., 2].astype(int) - shot[..., 0] > 60) & (shot[..., 2] > 90)
    assert blue.sum() > 20_000


@pytest.mark.slow
def test_demo_without_shared_data_plans_generated_anatomy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def missing(*parts: str) -> Path:
        raise SharedDataMissingError("no shared data on this machine")

    monkeypatch.setattr(demo_command, "shared_data_path", missing)
    out_dir = tmp_path / "demo-output"

    status = main(["demo", "--out", str(out_dir), "--json"])

    plan = json.loads(capsys.readouterr().out)
    assert status == 0
    rows = {row["key"]: row for row in plan["measurements"]["rows"]}
    expected = demo_radiograph.leg_geometry("left").expected
    for key in ("hka_deg", "mldfa_deg", "mpta_deg", "jlca_deg", "mad_mm", "ccd_deg"):
        assert rows[key]["value"] == pytest.approx(expected[key], abs=0.05)
    assert rows["cobb_deg"]["value"] == pytest.approx(20.0, abs=1.0)
    prior = next(p for p in plan["studies"]["priors"] if p["used"])
    registration = next(iter(prior["registration"].values()))
    assert abs(registration["rotation_deg"][2]) == pytest.approx(
        demo_case.PRIOR_ROTATION_DEG, abs=0.3
    )
    assert (out_dir / "demo-case" / "vertebrae_labels.nii.gz").is_file()
    titles = [f"{r['title']}" for r in plan["reconstruction"]]
    assert titles and all("(synthetic phantom)" in title for title in titles)

"""``mskwb calibrate`` and ``mskwb measure`` end to end, with --json output."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from dicom_factory import new_instance
from pydicom.uid import ComputedRadiographyImageStorage

from MSKPlannerLib.landmarks import write_markups_json
from MSKPlannerLib.measurement_phantoms import (
    alignment_landmarks,
    ball_radiograph,
    endplate_lines,
    hip_landmarks,
    spine_phantom,
)
from mskworkbench.cli import main


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    output = json.loads(captured.out) if status == 0 and "--json" in argv else {}
    return status, output, captured.err


def _write_cr(path: Path, pixels: np.ndarray, spacing: tuple[float, float] | None) -> None:
    dataset = new_instance(ComputedRadiographyImageStorage)
    dataset.Modality = "CR"
    dataset.PatientID = "SYNTH"
    dataset.Rows, dataset.Columns = pixels.shape
    dataset.SamplesPerPixel = 1
    dataset.PhotometricInterpretation = "MONOCHROME2"
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit = 16, 12, 11
    dataset.PixelRepresentation = 0
    if spacing is not None:
        dataset.PixelSpacing = list(spacing)
    dataset.PixelData = np.clip(pixels * 4000, 0, 4095).astype(np.uint16).tobytes()
    dataset.save_as(path, enforce_file_format=True)


def test_calibrate_tags_and_uncalibrated_files(
    capsys: pytest.CaptureFixture[str], shared_data: Path
) -> None:
    status, result, _ = _run(
        capsys, "calibrate", str(shared_data / "wg04" / "RG2_RLE.dcm"), "--json"
    )
    assert status == 0
    assert result["mm_per_pixel"] == [0.2, 0.2] and result["method"] == "pixel_spacing"

    status, result, _ = _run(
        capsys, "calibrate", str(shared_data / "wg04" / "RG3_JPLL.dcm"), "--json"
    )
    assert status == 0
    assert result["mm_per_pixel"] is None and result["method"] == "uncalibrated"
    assert result["calibrated"] is False

    dx = shared_data / "highdicom" / "dx_image.dcm"
    status, result, _ = _run(capsys, "calibrate", str(dx), "--magnification", "1.2", "--json")
    assert status == 0 and result["method"] == "fixed_magnification"
    assert result["mm_per_pixel"] == pytest.approx([1.0, 1.001])
    # A viewer loads the DX with its detector spacing; landmarks placed on it are rescaled.
    assert result["image_mm_per_pixel"] == pytest.approx([1.2, 1.2012])

    status, _, error = _run(
        capsys, "calibrate", str(shared_data / "wg04" / "RG1_J2KI.dcm"), "--magnification", "1.15"
    )
    assert status == 2 and "RG1_J2KI.dcm" in error and "detector spacing" in error


def test_calibrate_with_a_ball_then_measure_a_hip(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    image = tmp_path / "ball.dcm"
    _write_cr(image, ball_radiograph(spacing_mm=(0.25, 0.25), center_rc=(280.4, 210.6)), None)
    status, result, _ = _run(capsys, "calibrate", str(image), "--ball", "--json")
    assert status == 0
    assert result["method"] == "calibration_ball"
    assert result["mm_per_pixel"] == pytest.approx([0.25, 0.25], rel=0.01)
    assert result["ball_center_row_col_px"] == pytest.approx([280.4, 210.6], abs=0.3)
    assert result["ball_radius_px"] == pytest.approx(50.0, rel=0.01)
    assert result["image_mm_per_pixel"] is None
    calibration_file = tmp_path / "calibration.json"
    calibration_file.write_text(json.dumps(result))

    # Landmarks placed on the uncalibrated image are in pixels (1 mm per pixel when loaded).
    points_mm, expected = hip_landmarks("left", 131.0, 40.0, 42.0, 4.0)
    points_px = {k: v / 0.25 for k, v in points_mm.items()}
    landmarks = tmp_path / "hip.mrk.json"
    write_markups_json(landmarks, points_px, name="Left hip")
    status, result, _ = _run(
        capsys,
        "measure", "hip", "--landmarks", str(landmarks),
        "--calibration", str(calibration_file), "--json",
    )  # fmt: skip
    assert status == 0
    assert result["femoral_offset_mm"] == pytest.approx(40.0, rel=0.01)
    assert result["lld_mm"] == pytest.approx(4.0, rel=0.02)
    assert result["ccd_deg"] == pytest.approx(expected["ccd_deg"], abs=1e-3)
    assert result["table"]["rows"][0]["calibration"]["method"] == "calibration_ball"


def test_measure_alignment_side_from_file_or_flag(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    points, expected = alignment_landmarks("right", 90.0, 85.0, 1.5)
    unnamed = tmp_path / "leg.mrk.json"
    write_markups_json(unnamed, points)
    status, _, error = _run(capsys, "measure", "alignment", "--landmarks", str(unnamed), "--json")
    assert status == 2 and "no side" in error

    out = tmp_path / "table.json"
    status, result, _ = _run(
        capsys,
        "measure", "alignment", "--landmarks", str(unnamed), "--side", "right",
        "--volume", "--out", str(out), "--json",
    )  # fmt: skip
    assert status == 0
    for key in ("hka_deg", "mldfa_deg", "mpta_deg", "jlca_deg", "mad_mm"):
        assert result[key] == pytest.approx(expected[key], abs=2e-3), key
    assert json.loads(out.read_text())["rows"][0]["calibration"]["method"] == "volume_geometry"

    named = tmp_path / "Right_leg.mrk.json"
    write_markups_json(named, points, coordinate_system="RAS")
    status, result, error = _run(
        capsys, "measure", "alignment", "--landmarks", str(named), "--json"
    )
    assert status == 0 and result["side"] == "right"
    assert result["hka_deg"] == pytest.approx(expected["hka_deg"], abs=2e-3)
    assert result["mad_mm"] is None and "not calibrated" in result["not_measured"]["mad_mm"]
    assert "mad_mm not measured" in error


def test_measure_hip_on_a_radiograph_without_spacing_refuses_lengths(
    capsys: pytest.CaptureFixture[str], shared_data: Path, tmp_path: Path
) -> None:
    points, expected = hip_landmarks("right", 127.0, 44.0, 40.0, -3.0)
    # Moved onto the 1760 x 1760 image (PatientOrientation R, F; 1 unit per pixel): +x, -z.
    points = {k: v + np.array([880.0, 0.0, -880.0]) for k, v in points.items()}
    landmarks = tmp_path / "right_hip.mrk.json"
    write_markups_json(landmarks, points)
    image = shared_data / "wg04" / "RG3_JPLL.dcm"
    status, result, error = _run(
        capsys, "measure", "hip", "--landmarks", str(landmarks), "--image", str(image), "--json"
    )
    assert status == 0
    assert result["ccd_deg"] == pytest.approx(expected["ccd_deg"], abs=1e-3)
    assert result["femoral_offset_mm"] is None and result["lld_mm"] is None
    assert "RG3_JPLL.dcm is not calibrated" in result["not_measured"]["femoral_offset_mm"]
    assert "RG3_JPLL.dcm" in error


def test_measure_hip_names_the_landmarks_each_value_lacks(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    points, expected = hip_landmarks("right", 127.0, 44.0, 40.0, -3.0)
    head_and_neck = {k: points[k] for k in ("femoral_head_center", "femoral_neck_center")}
    landmarks = tmp_path / "hip.mrk.json"
    write_markups_json(landmarks, head_and_neck)
    argv = ("measure", "hip", "--landmarks", str(landmarks), "--side", "right", "--volume")

    status, _, error = _run(capsys, *argv)

    assert status == 2
    (line,) = error.strip().splitlines()
    assert "holds no hip landmarks" not in line
    assert "ccd_deg: missing landmark(s) femoral_shaft_proximal, femoral_shaft_distal" in line
    assert "lld_mm: missing landmark(s) teardrop_left, teardrop_right" in line

    shaft = ("femoral_shaft_proximal", "femoral_shaft_distal")
    write_markups_json(landmarks, head_and_neck | {k: points[k] for k in shaft})
    status, result, error = _run(capsys, *argv, "--json")
    assert status == 0
    assert result["ccd_deg"] == pytest.approx(expected["ccd_deg"], abs=1e-3)
    assert "cup_inclination_deg not measured: missing landmark(s) acetabulum" in error


def test_measure_cobb_from_lines_and_from_real_labels(
    capsys: pytest.CaptureFixture[str], shared_data: Path, tmp_path: Path
) -> None:
    lines = tmp_path / "spine.mrk.json"
    write_markups_json(lines, lines_ras_mm=endplate_lines(spine_phantom([2.0, 8.0, 0.0, -9.0])))
    status, result, _ = _run(capsys, "measure", "cobb", "--landmarks", str(lines), "--json")
    assert status == 0
    assert result["cobb_deg"] == pytest.approx(17.0, abs=1e-3)
    assert (result["upper_end_vertebra"], result["lower_end_vertebra"]) == ("T11", "L1")
    assert result["apex_vertebra"] == "T12"

    labels = shared_data / "totalsegmentator" / "ct_volume_vertebrae_labels.nii.gz"
    status, result, _ = _run(capsys, "measure", "cobb", "--labels", str(labels), "--json")
    assert status == 0
    assert 0.5 < result["cobb_deg"] < 10.0
    assert result["upper_end_vertebra"] and result["lower_end_vertebra"]
    assert result["table"]["rows"][0]["method"] == "automatic"


def test_the_installed_console_script_prints_json_only(shared_data: Path) -> None:
    executable = shutil.which("mskwb") or str(Path(sys.executable).parent / "mskwb")
    image = shared_data / "wg04" / "RG2_JPLL.dcm"
    result = subprocess.run(
        [executable, "calibrate", str(image), "--json"], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["mm_per_pixel"] == [0.2, 0.2]


def test_landmarks_on_a_radiograph_loaded_in_the_axial_plane(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # A radiograph without orientation is loaded with rows toward RAS -y: "superior" is +y.
    points, expected = alignment_landmarks("left", 86.0, 88.0, -1.0)
    axial = {k: np.array([v[0], v[2], 12.5]) for k, v in points.items()}
    landmarks = tmp_path / "left_leg.mrk.json"
    write_markups_json(landmarks, axial)
    status, result, _ = _run(
        capsys, "measure", "alignment", "--landmarks", str(landmarks), "--volume", "--json"
    )
    assert status == 0
    assert result["hka_deg"] == pytest.approx(expected["hka_deg"], abs=2e-3)
    assert result["mad_mm"] == pytest.approx(expected["mad_mm"], abs=2e-3)
    assert "axial plane" in result["table"]["rows"][0]["details"]["plane_note"]


def test_calibrate_refuses_a_ball_that_is_not_there(
    capsys: pytest.CaptureFixture[str], shared_data: Path
) -> None:
    image = shared_data / "wg04" / "RG2_JPLL.dcm"  # a hip radiograph without a ball
    for extra in ((), ("--json",)):
        status = main(["calibrate", str(image), "--ball", *extra])
        captured = capsys.readouterr()
        assert status == 2 and captured.out == ""
        lines = captured.err.strip().splitlines()
        assert len(lines) == 1 and str(image) in lines[0]
        assert "not a plausible calibration ball" in lines[0]

    status, result, _ = _run(capsys, "calibrate", str(image), "--magnification", "1.25", "--json")
    assert status == 0 and result["mm_per_pixel"] == pytest.approx([0.16, 0.16])
    assert "PixelSpacing taken as detector spacing" in result["detail"]


def test_measure_refuses_landmarks_not_placed_on_the_image(
    capsys: pytest.CaptureFixture[str], shared_data: Path, tmp_path: Path
) -> None:
    # A long-leg set (about a metre tall) cannot lie on the 428 x 352 mm hip radiograph.
    image = shared_data / "wg04" / "RG2_JPLL.dcm"
    points, expected = alignment_landmarks("left", 86.0, 88.0, -1.0)
    landmarks = tmp_path / "long_leg_left.mrk.json"
    write_markups_json(landmarks, points)
    status, _, error = _run(
        capsys, "measure", "alignment", "--landmarks", str(landmarks), "--image", str(image)
    )
    assert status == 2
    lines = error.strip().splitlines()
    assert len(lines) == 1 and str(image) in lines[0]
    assert "landmark points lie outside" in lines[0] and "not placed on this image" in lines[0]

    # The same set scaled into the image frame (PatientOrientation missing: L, F) is measured.
    rows_mm, columns_mm = 2140 * 0.2, 1760 * 0.2
    coords = np.stack(list(points.values()))
    low, high = coords.min(axis=0), coords.max(axis=0)
    factor = 0.9 * rows_mm / (high[2] - low[2])
    centre = np.array([-columns_mm / 2.0, 0.0, -rows_mm / 2.0])
    inside = {k: centre + factor * (v - (low + high) / 2.0) for k, v in points.items()}
    write_markups_json(landmarks, inside)
    status, result, _ = _run(
        capsys, "measure", "alignment", "--landmarks", str(landmarks), "--image", str(image),
        "--json",
    )  # fmt: skip
    assert status == 0
    assert result["hka_deg"] == pytest.approx(expected["hka_deg"], abs=2e-3)
    assert result["mad_mm"] == pytest.approx(expected["mad_mm"] * factor, abs=2e-3)


@pytest.mark.parametrize(
    ("mm_per_pixel", "image_mm_per_pixel"),
    [
        ("[Infinity, Infinity]", "null"),
        ("[NaN, NaN]", "null"),
        ("[1e-300, 1e-300]", "null"),
        ("[0.2, 0.2]", "[0.0, 0.0]"),
    ],
)
def test_measure_and_template_refuse_an_implausible_calibration_file(
    capsys: pytest.CaptureFixture[str],
    shared_data: Path,
    tmp_path: Path,
    mm_per_pixel: str,
    image_mm_per_pixel: str,
) -> None:
    # Written by hand as 'mskwb calibrate --json' once wrote it for "--known-length ... inf".
    calibration_file = tmp_path / "calibration.json"
    calibration_file.write_text(
        f'{{"image": "x.dcm", "mm_per_pixel": {mm_per_pixel}, "method": "known_length", '
        f'"calibrated": true, "detail": "", "image_mm_per_pixel": {image_mm_per_pixel}}}'
    )
    points, _ = alignment_landmarks("left", 86.0, 88.0, -1.0)
    landmarks = tmp_path / "long_leg_left.mrk.json"
    write_markups_json(landmarks, points)
    status = main(
        [
            "measure",
            "alignment",
            "--landmarks",
            str(landmarks),
            "--calibration",
            str(calibration_file),
        ]
    )
    captured = capsys.readouterr()
    assert status == 2 and captured.out == ""
    (line,) = captured.err.strip().splitlines()
    assert str(calibration_file) in line and "not plausible for a radiograph" in line

    if image_mm_per_pixel != "null":
        return  # the template command does not read the loaded spacing
    hip, _ = hip_landmarks("right", 127.0, 44.0, 40.0, -3.0)
    hip_file = tmp_path / "right_hip.mrk.json"
    write_markups_json(hip_file, hip)
    image = shared_data / "wg04" / "RG2_JPLL.dcm"
    status = main(
        [
            "template", str(image), "--landmarks", str(hip_file), "--family", "cup",
            "--calibration", str(calibration_file),
        ]
    )  # fmt: skip
    captured = capsys.readouterr()
    assert status == 2 and captured.out == ""
    (line,) = captured.err.strip().splitlines()
    assert str(calibration_file) in line and "not plausible for a radiograph" in line


@pytest.mark.parametrize(("name", "rows"), [("RG1_J2KI.dcm", 1955), ("RG3_JPLL.dcm", 1760)])
def test_landmarks_off_an_image_without_spacing_are_refused(
    capsys: pytest.CaptureFixture[str], shared_data: Path, tmp_path: Path, name: str, rows: int
) -> None:
    # Zero (RG1) or missing (RG3) spacing: the image is loaded at 1 unit per pixel, so its
    # pixel grid still says where it lies. A set 4000 units tall cannot lie on it.
    image = shared_data / "wg04" / name
    points, expected = alignment_landmarks("left", 86.0, 88.0, -1.0)
    coords = np.stack(list(points.values()))
    low, high = coords.min(axis=0), coords.max(axis=0)
    # Columns run toward -x (PatientOrientation L, F) on RG1 and toward +x (R, F) on RG3.
    column_edge = {"RG1_J2KI.dcm": (high[0], -100.0), "RG3_JPLL.dcm": (low[0], 100.0)}[name]
    for factor, accepted in ((4000.0, False), (0.8 * rows, True)):
        scale = factor / (high[2] - low[2])
        origin = np.array([column_edge[0], 0.0, high[2]])
        placed = {
            k: np.array([column_edge[1], 0.0, -50.0]) + scale * (v - origin)
            for k, v in points.items()
        }
        landmarks = tmp_path / f"left_leg_{accepted}.mrk.json"
        write_markups_json(landmarks, placed)
        status = main(
            ["measure", "alignment", "--landmarks", str(landmarks), "--image", str(image), "--json"]
        )
        captured = capsys.readouterr()
        if accepted:
            assert status == 0, captured.err
            hka = json.loads(captured.out)["hka_deg"]
            assert hka == pytest.approx(expected["hka_deg"], abs=2e-3)
            continue
        assert status == 2 and captured.out == ""
        (line,) = captured.err.strip().splitlines()
        assert str(image) in line and "landmark points lie outside" in line

"""Radiograph calibration: tags of real CR/DX files, calibration ball, known length, magnification."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset

from MSKPlannerLib.calibration import (
    PLAUSIBLE_MM_PER_PIXEL,
    BallDetection,
    CalibrationError,
    ball_calibration,
    calibration_from_dataset,
    check_plausible_spacing,
    detect_calibration_ball,
    fixed_magnification_calibration,
    known_length_calibration,
    pixel_aspect,
    pixels_to_ras_mm,
    radiograph_ijk_to_ras,
    read_radiograph,
)
from MSKPlannerLib.measure_hip import measure_hip
from MSKPlannerLib.measurement_phantoms import ball_radiograph

CODECS = ("RG2_JPLL.dcm", "RG2_J2KR.dcm", "RG2_RLE.dcm")


def _dataset(**tags: object) -> Dataset:
    dataset = Dataset()
    dataset.SOPInstanceUID = "1.2.3.4"
    for name, value in tags.items():
        setattr(dataset, name, value)
    return dataset


def test_hip_radiograph_calibrates_identically_in_three_codecs(shared_data: Path) -> None:
    radiographs = [read_radiograph(shared_data / "wg04" / name) for name in CODECS]
    reference = radiographs[0]
    assert reference.calibration.method == "pixel_spacing"
    assert reference.calibration.mm_per_pixel == (0.2, 0.2)
    assert reference.pixels.shape == (2140, 1760)
    for other in radiographs[1:]:
        assert other.calibration.mm_per_pixel == reference.calibration.mm_per_pixel
        np.testing.assert_array_equal(other.pixels, reference.pixels)  # lossless codecs

    # A measurement on fixed pixel landmarks is the same for every codec.
    pixel_landmarks = {
        "femoral_head_center": (820.0, 1010.0),
        "femoral_neck_center": (905.0, 930.0),
        "femoral_shaft_proximal": (1150.0, 870.0),
        "femoral_shaft_distal": (1800.0, 905.0),
    }
    values = []
    detections = []
    for radiograph in radiographs:
        points = {
            label: pixels_to_ras_mm(rc, radiograph.calibration, ["L", "F"])
            for label, rc in pixel_landmarks.items()
        }
        table = measure_hip(points, "right", radiograph.calibration, radiograph.source)
        values.append(table.values())
        detections.append(detect_calibration_ball(radiograph.pixels, (20.0, 80.0)).to_dict())
    assert values[0]["femoral_offset_mm"] > 10.0
    assert values[1] == values[0] and values[2] == values[0]
    assert detections[1] == detections[0] and detections[2] == detections[0]
    assert [float(r.pixels.mean()) for r in radiographs] == [float(reference.pixels.mean())] * 3


def test_radiograph_ijk_to_ras_follows_patient_orientation(shared_data: Path) -> None:
    radiograph = read_radiograph(shared_data / "wg04" / "RG2_JPLL.dcm")
    row_mm, column_mm = radiograph.calibration.mm_per_pixel
    radiograph.dataset.PatientOrientation = ["L", "F"]

    matrix, orientation = radiograph_ijk_to_ras(radiograph)

    assert orientation == ("L", "F")
    expected = np.eye(4)
    expected[:3, 0] = [-column_mm, 0.0, 0.0]  # i along a row, toward the patient's left
    expected[:3, 1] = [0.0, 0.0, -row_mm]  # j down the rows, toward the feet
    expected[:3, 2] = [0.0, -1.0, 0.0]  # unit normal i x j
    np.testing.assert_allclose(matrix, expected, atol=1e-12)
    pixel_rc = np.array([412.0, 1033.0])
    np.testing.assert_allclose(
        (matrix @ [pixel_rc[1], pixel_rc[0], 0.0, 1.0])[:3],
        pixels_to_ras_mm(pixel_rc, radiograph.calibration, ["L", "F"]),
        atol=1e-9,
    )

    radiograph.dataset.PatientOrientation = ["A", "H"]
    matrix, orientation = radiograph_ijk_to_ras(radiograph)
    assert orientation == ("A", "H")
    np.testing.assert_allclose(matrix[:3, 0], [0.0, column_mm, 0.0], atol=1e-12)
    np.testing.assert_allclose(matrix[:3, 1], [0.0, 0.0, row_mm], atol=1e-12)

    for unusable in (["X", "F"], ["L"]):
        radiograph.dataset.PatientOrientation = unusable
        matrix, orientation = radiograph_ijk_to_ras(radiograph)
        assert orientation == ("L", "F"), unusable
        np.testing.assert_allclose(matrix, expected, atol=1e-12)


def test_radiograph_without_spacing_refuses_lengths(shared_data: Path) -> None:
    radiograph = read_radiograph(shared_data / "wg04" / "RG3_JPLL.dcm")
    calibration = radiograph.calibration
    assert not calibration.is_calibrated
    assert "RG3_JPLL.dcm" in calibration.detail and "no pixel spacing" in calibration.detail
    points = {
        "femoral_head_center": pixels_to_ras_mm((400.0, 700.0), calibration),
        "femoral_shaft_proximal": pixels_to_ras_mm((700.0, 600.0), calibration),
        "femoral_shaft_distal": pixels_to_ras_mm((1500.0, 640.0), calibration),
        "femoral_neck_center": pixels_to_ras_mm((480.0, 640.0), calibration),
    }
    table = measure_hip(points, "right", calibration, radiograph.source)
    assert "ccd_deg" in table.values()  # angles still work
    assert "femoral_offset_mm" not in table.values()
    assert "RG3_JPLL.dcm is not calibrated" in table.not_measured["femoral_offset_mm"]


def test_zero_spacing_is_uncalibrated_not_zero_mm(shared_data: Path) -> None:
    dataset = pydicom.dcmread(shared_data / "wg04" / "RG1_J2KI.dcm", stop_before_pixels=True)
    calibration = calibration_from_dataset(dataset, "RG1_J2KI.dcm")
    assert not calibration.is_calibrated
    assert calibration.mm_per_pixel is None
    assert "RG1_J2KI.dcm" in calibration.detail and "unusable" in calibration.detail
    with pytest.raises(CalibrationError, match="no detector spacing"):
        fixed_magnification_calibration(calibration, 1.15, "RG1_J2KI.dcm")


def test_dx_with_non_square_detector_pixels(shared_data: Path) -> None:
    dataset = pydicom.dcmread(shared_data / "highdicom" / "dx_image.dcm", stop_before_pixels=True)
    calibration = calibration_from_dataset(dataset, "dx_image.dcm")
    # PixelSpacing equals ImagerPixelSpacing and no calibration type: detector plane only.
    assert calibration.method == "uncalibrated"
    assert calibration.detector_mm_per_pixel == pytest.approx((1.2, 1.2012))
    assert pixel_aspect(calibration) == pytest.approx(1.2 / 1.2012)

    magnified = fixed_magnification_calibration(calibration, 1.2, "dx_image.dcm")
    assert magnified.method == "fixed_magnification"
    assert magnified.mm_per_pixel == pytest.approx((1.0, 1.001))
    # A 45 degree line in mm is not 45 degrees in pixels of a non-square grid.
    start = pixels_to_ras_mm((0.0, 0.0), magnified)
    end = pixels_to_ras_mm((100.0, 100.0), magnified)
    angle = np.degrees(np.arctan2(abs(end[2] - start[2]), abs(end[0] - start[0])))
    assert angle == pytest.approx(np.degrees(np.arctan2(1.0, 1.001)), abs=1e-9)
    with pytest.raises(CalibrationError, match="outside"):
        fixed_magnification_calibration(calibration, 3.0)


def test_tag_rules_for_magnification_and_calibration_type() -> None:
    estimated = calibration_from_dataset(
        _dataset(ImagerPixelSpacing=[0.15, 0.15], EstimatedRadiographicMagnificationFactor=1.2)
    )
    assert estimated.method == "imager_spacing_magnification"
    assert estimated.mm_per_pixel == pytest.approx((0.125, 0.125))

    geometry = calibration_from_dataset(
        _dataset(
            PixelSpacing=[0.14, 0.15],
            ImagerPixelSpacing=[0.14, 0.15],
            PixelSpacingCalibrationType="GEOMETRY",
        )
    )
    assert geometry.method == "pixel_spacing" and geometry.mm_per_pixel == (0.14, 0.15)
    assert "GEOMETRY" in geometry.detail

    calibrated = calibration_from_dataset(
        _dataset(PixelSpacing=[0.12, 0.12], ImagerPixelSpacing=[0.14, 0.14])
    )
    assert calibrated.method == "pixel_spacing" and calibrated.mm_per_pixel == (0.12, 0.12)

    scanned = calibration_from_dataset(_dataset(NominalScannedPixelSpacing=[0.1, 0.1]), "film.dcm")
    assert not scanned.is_calibrated and "digitised film" in scanned.detail


def test_known_length_with_square_and_non_square_pixels() -> None:
    square = known_length_calibration((10.0, 10.0), (10.0, 510.0), 100.0)
    assert square.mm_per_pixel == pytest.approx((0.2, 0.2))
    aspect = 0.15 / 0.2
    # 300 rows of 0.15 mm and 400 columns of 0.2 mm: 45 mm and 80 mm.
    true_mm = float(np.hypot(300 * 0.15, 400 * 0.2))
    oblique = known_length_calibration((0.0, 0.0), (300.0, 400.0), true_mm, aspect)
    assert oblique.mm_per_pixel == pytest.approx((0.15, 0.2))
    with pytest.raises(CalibrationError):
        known_length_calibration((1.0, 1.0), (1.0, 1.0), 10.0)


def test_known_length_points_must_lie_on_the_image() -> None:
    shape_rc = (1760, 1760)
    inside = known_length_calibration((0.0, 0.0), (1759.0, 0.0), 50.0, image_shape_rc=shape_rc)
    assert inside.mm_per_pixel == pytest.approx((50.0 / 1759, 50.0 / 1759))
    outside = [((10, 10), (999999, 10), "second point"), ((-10, 10), (500, 10), "first point")]
    for start, end, which in outside:
        with pytest.raises(CalibrationError, match=which) as refused:
            known_length_calibration(start, end, 50.0, image_shape_rc=shape_rc, source="rg.dcm")
        assert "1760 rows x 1760 columns" in str(refused.value)
        assert str(refused.value).startswith("rg.dcm: ")
    with pytest.raises(CalibrationError, match="column nan"):
        known_length_calibration((1, 1), (5, float("nan")), 50.0, image_shape_rc=shape_rc)


@pytest.mark.parametrize("length_mm", [float("inf"), float("nan"), -5.0, 0.0])
def test_known_length_must_be_a_finite_positive_number(length_mm: float) -> None:
    with pytest.raises(CalibrationError, match="finite positive number"):
        known_length_calibration((10.0, 10.0), (100.0, 10.0), length_mm, source="rg.dcm")


@pytest.mark.parametrize(
    ("length_mm", "accepted"),
    [(1e-300, False), (0.89, False), (0.9, True), (450.0, True), (450.1, False), (1e300, False)],
)
def test_known_length_gives_only_a_plausible_scale(length_mm: float, accepted: bool) -> None:
    # 90 pixels apart: 0.9 mm is 0.01 mm per pixel, 450 mm is 5 mm per pixel.
    assert PLAUSIBLE_MM_PER_PIXEL == (0.01, 5.0)
    if accepted:
        calibration = known_length_calibration((10.0, 10.0), (100.0, 10.0), length_mm)
        assert calibration.mm_per_pixel == pytest.approx((length_mm / 90, length_mm / 90))
        return
    with pytest.raises(CalibrationError, match="not plausible for a radiograph") as refused:
        known_length_calibration((10.0, 10.0), (100.0, 10.0), length_mm, source="rg.dcm")
    assert str(refused.value).startswith("rg.dcm: ")


def test_plausible_spacing_refuses_non_numbers_and_infinity() -> None:
    assert check_plausible_spacing([0.2, 0.25]) == (0.2, 0.25)
    for spacing in ([float("inf"), 0.2], [0.2, float("nan")], [0.0, 0.2], [0.2, 6.0]):
        with pytest.raises(CalibrationError, match="not plausible"):
            check_plausible_spacing(spacing, "cal.json")
    for malformed in (["a", "b"], [0.2], None):
        with pytest.raises(CalibrationError, match=r"not a \(row, column\) spacing"):
            check_plausible_spacing(malformed, "cal.json")  # type: ignore[arg-type]


def test_calibrate_refuses_an_infinite_or_tiny_known_length(
    capsys: pytest.CaptureFixture[str], shared_data: Path
) -> None:
    from mskworkbench.cli import main

    image = str(shared_data / "wg04" / "RG3_JPLL.dcm")
    for length, reason in (("inf", "finite positive"), ("1e-300", "not plausible")):
        status = main(
            ["calibrate", image, "--known-length", "10", "10", "100", "10", length, "--json"]
        )
        captured = capsys.readouterr()
        assert status == 2 and captured.out == ""
        (line,) = captured.err.strip().splitlines()
        assert image in line and reason in line


def test_calibrate_refuses_known_length_points_off_the_real_radiograph(
    capsys: pytest.CaptureFixture[str], shared_data: Path
) -> None:
    from mskworkbench.cli import main

    image = str(shared_data / "wg04" / "RG3_JPLL.dcm")  # 1760 x 1760 pixels
    for points in (("10", "10", "999999", "10"), ("-10", "10", "500", "10")):
        status = main(["calibrate", image, "--known-length", *points, "50", "--json"])
        captured = capsys.readouterr()
        assert status == 2 and captured.out == ""
        (line,) = captured.err.strip().splitlines()
        assert image in line and "lies outside the image of 1760 rows x 1760 columns" in line

    status = main(["calibrate", image, "--known-length", "10", "10", "510", "10", "50", "--json"])
    assert status == 0
    assert json.loads(capsys.readouterr().out)["mm_per_pixel"] == pytest.approx([0.1, 0.1])


@pytest.mark.parametrize(
    ("spacing", "center", "noise"),
    [
        ((0.2, 0.2), (300.3, 240.7), 0.02),
        ((0.15, 0.18), (250.6, 260.2), 0.03),  # non-square pixels
        ((0.3, 0.3), (120.2, 390.9), 0.06),  # small ball, noisy, near a side
    ],
)
def test_ball_detection_gives_the_true_scale(
    spacing: tuple[float, float], center: tuple[float, float], noise: float
) -> None:
    image = ball_radiograph(spacing_mm=spacing, center_rc=center, noise=noise, seed=5)
    detection = detect_calibration_ball(image)
    calibration = ball_calibration(detection, 25.0, "synthetic")

    assert detection.plausible
    assert np.hypot(*np.subtract(detection.center_rc, center)) < 0.3
    for measured, true in zip(calibration.mm_per_pixel, spacing, strict=True):
        assert abs(measured / true - 1.0) < 0.01
    assert calibration.method == "calibration_ball" and "25 mm ball" in calibration.detail


def test_ball_detection_in_a_region_and_a_dark_ball() -> None:
    image = ball_radiograph(center_rc=(150.0, 150.0), seed=1)
    inverted = 1.0 - image  # MONOCHROME1-like: the ball is dark
    detection = detect_calibration_ball(inverted, roi_rc=(50, 50, 300, 300))
    assert np.hypot(detection.center_rc[0] - 150.0, detection.center_rc[1] - 150.0) < 0.3
    assert detection.radius_px == pytest.approx(62.5, rel=0.01)
    with pytest.raises(CalibrationError, match="no disk"):
        detect_calibration_ball(np.zeros((100, 100)))


def test_calibration_survives_the_json_table(tmp_path: Path) -> None:
    from MSKPlannerLib.measurement_table import Measurement, MeasurementTable

    calibration = fixed_magnification_calibration((0.15, 0.16), 1.18, "dx.dcm")
    table = MeasurementTable()
    table.add(Measurement("ccd_deg", "CCD", 131.0, "deg", "d", "manual", calibration, "dx.dcm"))
    table.write_json(tmp_path / "table.json")
    again = MeasurementTable.read_json(tmp_path / "table.json")
    assert again.rows[0].calibration == calibration
    assert again.rows[0].calibration.detector_mm_per_pixel == (0.15, 0.16)


def test_an_implausible_ball_is_never_a_calibration(shared_data: Path) -> None:
    # The hip radiograph holds no calibration ball: whatever circle is found is irregular.
    radiograph = read_radiograph(shared_data / "wg04" / "RG2_JPLL.dcm")
    detection = detect_calibration_ball(radiograph.pixels)
    assert not detection.plausible
    with pytest.raises(CalibrationError) as raised:
        ball_calibration(detection, 25.0, radiograph.source)
    assert radiograph.source in str(raised.value)
    assert "not a plausible calibration ball" in str(raised.value)

    ragged = BallDetection(
        (100.0, 100.0), (50.0, 50.0), edge_rms_px=0.5, score=0.4, n_edge_points=9
    )
    with pytest.raises(CalibrationError, match=r"synthetic\.dcm: .*edge found around 40%"):
        ball_calibration(ragged, 25.0, "synthetic.dcm")
    clean = BallDetection((100.0, 100.0), (50.0, 50.0), edge_rms_px=0.5, score=0.9, n_edge_points=9)
    assert ball_calibration(clean, 25.0, "synthetic.dcm").mm_per_pixel == (0.25, 0.25)


def test_magnification_on_a_cr_with_pixel_spacing_only(shared_data: Path) -> None:
    # RG2_JPLL.dcm: CR, PixelSpacing 0.2 mm, no ImagerPixelSpacing, no calibration type.
    tags = read_radiograph(shared_data / "wg04" / "RG2_JPLL.dcm").calibration
    assert tags.method == "pixel_spacing" and tags.mm_per_pixel == (0.2, 0.2)
    assert "no magnification correction was applied" in tags.detail
    magnified = fixed_magnification_calibration(tags, 1.25, "RG2_JPLL.dcm")
    assert magnified.method == "fixed_magnification"
    assert magnified.mm_per_pixel == pytest.approx((0.16, 0.16))
    assert "PixelSpacing taken as detector spacing" in magnified.detail

    # Other images keep their former meaning.
    typed = calibration_from_dataset(
        _dataset(Modality="CR", PixelSpacing=[0.2, 0.2], PixelSpacingCalibrationType="GEOMETRY")
    )
    assert typed.detector_mm_per_pixel is None and "magnification" not in typed.detail
    with pytest.raises(CalibrationError, match="no detector spacing"):
        fixed_magnification_calibration(typed, 1.2)
    secondary = calibration_from_dataset(_dataset(Modality="OT", PixelSpacing=[0.2, 0.2]))
    assert secondary.method == "pixel_spacing" and secondary.detector_mm_per_pixel is None
    with pytest.raises(CalibrationError, match="no detector spacing"):
        fixed_magnification_calibration(secondary, 1.2)
    detector = calibration_from_dataset(
        _dataset(Modality="DX", PixelSpacing=[0.1, 0.1], ImagerPixelSpacing=[0.14, 0.14])
    )
    assert detector.mm_per_pixel == (0.1, 0.1) and detector.detector_mm_per_pixel == (0.14, 0.14)
    assert "taken as detector" not in fixed_magnification_calibration(detector, 1.4).detail

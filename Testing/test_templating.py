"""Templating: catalogue sizes from synthetic anatomy of known size, refusal without calibration,
outlines in the scene, and 3D cup fit against a synthetic acetabulum."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pydicom
import pytest
import vtk
from PIL import Image
from vtk.util import numpy_support

from MSKPlannerLib import implant_geometry
from MSKPlannerLib.calibration import (
    known_length_calibration,
    radiograph_ijk_to_ras,
    read_radiograph,
)
from MSKPlannerLib.implant_catalogue import ImplantCatalogue
from MSKPlannerLib.landmarks import write_markups_json
from MSKPlannerLib.measurement_table import (
    UNCALIBRATED,
    VOLUME_GEOMETRY,
    Calibration,
    Measurement,
    MeasurementTable,
)
from MSKPlannerLib.templating import (
    TemplatePose,
    TemplatingError,
    implant_points_px,
    ras_to_pixels,
    suggest_cup,
    suggest_knee,
    suggest_size,
    suggest_stem,
)
from MSKPlannerLib.templating_scene import (
    cup_pose_ras,
    model_fit,
    move_outline,
    outline_points_ras,
    place_model,
    place_outline,
    suggest_cup_3d,
)
from MSKPriorsLib.mrml_volumes import add_volume_from_array
from mskworkbench import cli

SPACING = Calibration("known_length", (0.25, 0.2), "synthetic 0.25 x 0.2 mm")


@pytest.fixture(scope="module")
def catalogue() -> ImplantCatalogue:
    return ImplantCatalogue.load([])


def _circle_points_px(center_mm, diameter_mm, start_deg, stop_deg, count, calibration=SPACING):
    angles = np.radians(np.linspace(start_deg, stop_deg, count))
    x_mm = center_mm[0] + diameter_mm / 2 * np.cos(angles)
    y_mm = center_mm[1] + diameter_mm / 2 * np.sin(angles)
    row_mm, column_mm = calibration.mm_per_pixel
    return {
        f"acetabulum_rim_{i}": (x / column_mm, -y / row_mm)
        for i, (x, y) in enumerate(zip(x_mm, y_mm, strict=True))
    }


@pytest.mark.parametrize(("diameter_mm", "expected"), [(52.0, "52"), (50.6, "50"), (57.2, "58")])
def test_cup_size_from_acetabular_diameter(catalogue, diameter_mm, expected) -> None:
    # Rim points only over the upper arc (as on a radiograph), pixels non-square.
    landmarks = _circle_points_px((40.0, -60.0), diameter_mm, -30.0, 200.0, 9)

    result = suggest_cup(
        landmarks, SPACING, "synthetic.dcm", catalogue.family("generic_hemispherical_cup")
    )

    assert result.size.size == expected
    assert result.based_on.key == "acetabular_diameter_mm"
    assert result.based_on.value == pytest.approx(diameter_mm, abs=0.01)
    assert result.based_on.calibration == SPACING


def test_cup_predicts_change_of_the_centre_of_rotation(catalogue) -> None:
    landmarks = _circle_points_px((40.0, -60.0), 52.0, 0.0, 180.0, 7)
    # Native head centre 3 mm lower and 2 mm more lateral (right hip: lateral is -x).
    landmarks["femoral_head_center"] = ((40.0 - 2.0) / 0.2, (60.0 + 3.0) / 0.25)

    result = suggest_cup(
        landmarks, SPACING, "synthetic.dcm", catalogue.family("generic_hemispherical_cup"), "right"
    )

    assert result.predicted["offset_change_mm"] == pytest.approx(-2.0, abs=0.01)
    assert result.predicted["leg_length_change_mm"] == pytest.approx(-3.0, abs=0.01)
    assert {row.key for row in result.measurements} >= {"offset_change_mm", "leg_length_change_mm"}


def _femur_landmarks(size, canal_extra_mm, axis_angle_deg, head_shift_mm, medial_sign=1.0):
    """A straight femur in image mm: canal walls fitting ``size`` plus ``canal_extra_mm``."""
    angle = math.radians(axis_angle_deg)
    up = np.array([-math.sin(angle), math.cos(angle)])
    across = np.array([up[1], -up[0]]) * medial_sign  # medial
    origin = np.array([50.0, -40.0])
    points = {"lesser_trochanter": origin + 12.0 * across}
    for index, depth in enumerate((20.0, 60.0, 100.0), start=1):
        width = (
            implant_geometry.stem_width_at_mm(size.parameters, depth) + canal_extra_mm[index - 1]
        )
        center = origin - depth * up
        points[f"canal_medial_{index}"] = center + width / 2 * across
        points[f"canal_lateral_{index}"] = center - width / 2 * across
    native_head = (
        origin
        + (size.parameters["head_height_mm"] - head_shift_mm[1]) * up
        + (size.parameters["offset_mm"] - head_shift_mm[0]) * across
    )
    points["femoral_head_center"] = native_head
    row_mm, column_mm = SPACING.mm_per_pixel
    return {k: (v[0] / column_mm, -v[1] / row_mm) for k, v in points.items()}


@pytest.mark.parametrize(("medial_sign", "axis_angle_deg"), [(1.0, 0.0), (-1.0, 7.0)])
def test_stem_size_from_canal_width_and_predicted_change(
    catalogue, medial_sign, axis_angle_deg
) -> None:
    family = catalogue.family("generic_tapered_stem")
    size5 = family.size("5", "132-standard")
    landmarks = _femur_landmarks(size5, (0.6, 0.3, 0.5), axis_angle_deg, (2.0, 3.0), medial_sign)

    result = suggest_stem(landmarks, SPACING, "femur.dcm", family, "132-standard")

    assert result.size.label == "5 (132-standard)"
    assert result.based_on.key == "canal_width_mm"
    assert result.based_on.details["level"] == "2"  # the tightest level
    assert result.predicted["offset_change_mm"] == pytest.approx(2.0, abs=0.05)
    assert result.predicted["leg_length_change_mm"] == pytest.approx(3.0, abs=0.05)
    # The drawn stem's head centre lands on the predicted head position.
    head_px = implant_points_px(
        [[size5.parameters["offset_mm"], size5.parameters["head_height_mm"]]],
        result.pose,
        SPACING,
        "femur.dcm",
    )[0]
    native_px = np.asarray(landmarks["femoral_head_center"])
    moved_mm = (head_px - native_px) * np.array([0.2, 0.25])
    assert np.linalg.norm(moved_mm) == pytest.approx(math.hypot(2.0, 3.0), abs=0.05)


def test_high_offset_variant_adds_offset(catalogue) -> None:
    family = catalogue.family("generic_tapered_stem")
    standard = family.size("5", "132-standard")
    landmarks = _femur_landmarks(standard, (0.5, 0.5, 0.5), 0.0, (0.0, 0.0))

    result = suggest_stem(landmarks, SPACING, "femur.dcm", family, "132-high")

    assert result.size.variant == "132-high"
    assert result.predicted["offset_change_mm"] == pytest.approx(6.0, abs=0.05)


def test_largest_stem_suggested_for_a_canal_just_wider_than_it(catalogue) -> None:
    family = catalogue.family("generic_tapered_stem")
    largest = max(
        family.sizes_of_variant("132-standard"),
        key=lambda s: implant_geometry.stem_width_at_mm(s.parameters, 0.0),
    )
    landmarks = _femur_landmarks(largest, (0.4, 0.3, 0.5), 0.0, (0.0, 0.0))

    result = suggest_stem(landmarks, SPACING, "femur.dcm", family, "132-standard")

    assert result.size == largest


def test_canal_far_wider_than_the_largest_stem_is_refused(catalogue) -> None:
    family = catalogue.family("generic_tapered_stem")
    largest = max(
        family.sizes_of_variant("132-standard"),
        key=lambda s: implant_geometry.stem_width_at_mm(s.parameters, 0.0),
    )
    # A canal 12 mm wider than the largest stem at every level: a wrong calibration, say.
    landmarks = _femur_landmarks(largest, (12.0, 12.0, 12.0), 0.0, (0.0, 0.0))

    with pytest.raises(TemplatingError, match=r"femur\.dcm.*exceeds the largest stem"):
        suggest_stem(landmarks, SPACING, "femur.dcm", family, "132-standard")


@pytest.mark.parametrize(
    ("kind", "labels", "width_mm", "expected"),
    [
        ("knee_femoral", ("femoral_condyle_medial", "femoral_condyle_lateral"), 66.5, "4"),
        ("knee_femoral", ("femoral_condyle_medial", "femoral_condyle_lateral"), 72.0, "6"),
        ("knee_tibial", ("tibial_plateau_medial", "tibial_plateau_lateral"), 70.0, "4"),
    ],
)
def test_knee_sizes_from_widths(catalogue, kind, labels, width_mm, expected) -> None:
    landmarks = {labels[0]: (500.0 + width_mm / 0.2, 300.0), labels[1]: (500.0, 300.0)}
    family = catalogue.default_family(kind)

    result = suggest_knee(landmarks, SPACING, "knee.dcm", family)

    assert result.size.size == expected
    assert result.based_on.value == pytest.approx(width_mm, abs=0.01)


def test_anatomy_far_outside_the_size_range_is_refused_not_clamped(catalogue) -> None:
    family = catalogue.family("generic_hemispherical_cup")  # 44 to 66 mm in 2 mm steps
    # Within one size step of the largest size: the largest size.
    near = _circle_points_px((40.0, -60.0), 67.5, -30.0, 200.0, 9)
    assert suggest_cup(near, SPACING, "hip.dcm", family).size.size == "66"
    # A 125.7 mm "acetabulum" (a wrong calibration) gets no size at all.
    far = _circle_points_px((40.0, -60.0), 125.7, -30.0, 200.0, 9)
    with pytest.raises(TemplatingError) as raised:
        suggest_cup(far, SPACING, "hip.dcm", family)
    message = str(raised.value)
    assert "hip.dcm" in message and "acetabular diameter of 125.7 mm" in message
    assert "44 to 66 mm" in message
    small = _circle_points_px((40.0, -60.0), 30.0, -30.0, 200.0, 9)
    with pytest.raises(TemplatingError, match=r"acetabular diameter of 30\.0 mm lies outside"):
        suggest_cup(small, SPACING, "hip.dcm", family)

    knee = catalogue.default_family("knee_femoral")
    wide = {"femoral_condyle_medial": (500.0 + 200.0 / 0.2, 300.0)}
    wide["femoral_condyle_lateral"] = (500.0, 300.0)
    with pytest.raises(TemplatingError, match=r"condylar width of 200\.0 mm lies outside"):
        suggest_knee(wide, SPACING, "knee.dcm", knee)


@pytest.mark.parametrize("kind", ["cup", "stem", "knee_femoral", "knee_tibial"])
def test_templating_refuses_an_uncalibrated_image(catalogue, kind) -> None:
    landmarks = _circle_points_px((40.0, -60.0), 52.0, 0.0, 180.0, 5)

    with pytest.raises(TemplatingError, match=r"RG3_JPLL\.dcm is not calibrated"):
        suggest_size(kind, landmarks, UNCALIBRATED, "RG3_JPLL.dcm", catalogue.default_family(kind))


def test_outline_in_the_scene_follows_the_pose(app_context, catalogue) -> None:
    pixels = np.zeros((1, 400, 500), dtype=np.int16)
    ijk_to_ras = np.array([[-0.5, 0, 0, 10.0], [0, 0, 1.0, 0], [0, -0.5, 0, 200.0], [0, 0, 0, 1]])
    radiograph = add_volume_from_array(app_context.scene, pixels, ijk_to_ras, "hip radiograph")
    calibration = Calibration("known_length", (0.3, 0.3), "ruler")
    size = catalogue.family("generic_hemispherical_cup").size("50")

    nodes = place_outline(
        app_context.scene, size, radiograph, calibration, TemplatePose((200.0, 150.0))
    )
    pixels_of_outline = ras_to_pixels(outline_points_ras(nodes), ijk_to_ras)
    radius_px = np.linalg.norm(pixels_of_outline - [200.0, 150.0], axis=1)

    assert nodes.outline.GetNumberOfControlPoints() == len(size.outline_mm())
    assert radius_px.max() == pytest.approx(25.0 / 0.3, abs=1e-6)  # 50 mm cup at 0.3 mm/pixel
    assert pixels_of_outline[:, 1].max() == pytest.approx(150.0, abs=1e-6)  # dome upwards

    move_outline(nodes, radiograph, calibration, TemplatePose((300.0, 100.0), 90.0))
    moved = ras_to_pixels(outline_points_ras(nodes), ijk_to_ras)
    assert np.linalg.norm(moved - [300.0, 100.0], axis=1).max() == pytest.approx(25.0 / 0.3)
    # Turned 90 degrees counter-clockwise: the dome now points to the displayed left.
    assert moved[:, 0].max() == pytest.approx(300.0, abs=1e-6)

    with pytest.raises(TemplatingError, match="hip radiograph is not calibrated"):
        place_outline(app_context.scene, size, radiograph, UNCALIBRATED, TemplatePose((0.0, 0.0)))


def _bone_with_acetabulum(radius_mm: float) -> vtk.vtkPolyData:
    """A block of bone (z >= 0) with a hemispherical cavity of ``radius_mm`` opening downwards."""
    spacing = 1.0
    grid = np.arange(-45.0, 46.0, spacing)
    z, y, x = np.meshgrid(grid, grid, grid, indexing="ij")
    bone = (
        (z >= 0)
        & (np.sqrt(x**2 + y**2 + z**2) > radius_mm)
        & (np.abs(x) < 40)
        & (np.abs(y) < 40)
        & (z < 40)
    ).astype(np.float32)
    image = vtk.vtkImageData()
    image.SetDimensions(len(grid), len(grid), len(grid))
    image.SetSpacing(spacing, spacing, spacing)
    image.SetOrigin(grid[0], grid[0], grid[0])
    image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(bone.ravel(), deep=True))
    smooth = vtk.vtkImageGaussianSmooth()
    smooth.SetInputData(image)
    smooth.SetStandardDeviation(0.8)
    contour = vtk.vtkFlyingEdges3D()
    contour.SetInputConnection(smooth.GetOutputPort())
    contour.SetValue(0, 0.5)
    contour.ComputeNormalsOn()
    contour.Update()
    surface = vtk.vtkPolyData()
    surface.DeepCopy(contour.GetOutput())
    return surface


def test_cup_on_ct_is_sized_and_fits_the_acetabulum(app_context, catalogue) -> None:
    family = catalogue.family("generic_hemispherical_cup")
    bone = app_context.scene.AddNewNodeByClass("vtkMRMLModelNode", "pelvis_right")
    bone.SetAndObservePolyData(_bone_with_acetabulum(26.0))
    rng = np.random.default_rng(3)
    directions = rng.normal(size=(30, 3))
    directions[:, 2] = np.abs(directions[:, 2]) + 0.3
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)

    size, center, diameter = suggest_cup_3d(26.0 * directions, family, "synthetic CT")
    pose = cup_pose_ras(center, "right", inclination_deg=0.0, anteversion_deg=0.0)
    nodes = place_model(app_context.scene, size, pose)
    fit = model_fit(nodes.outline, bone, contact_tolerance_mm=1.0)
    small = place_model(app_context.scene, family.size("46"), pose)
    small_fit = model_fit(small.outline, bone, contact_tolerance_mm=1.0)

    assert size.size == "52"
    assert diameter == pytest.approx(52.0, abs=0.01)
    assert np.allclose(pose[:3, 1], [0.0, 0.0, 1.0])  # pole up into the acetabular roof
    assert fit["mean_abs_mm"] < 0.6
    assert fit["percent_in_contact"] > 95.0
    assert small_fit["mean_mm"] == pytest.approx(3.0, abs=0.6)  # a 3 mm gap all round
    assert small_fit["percent_in_contact"] < 5.0


#: Points on the acetabular outline of the real hip radiograph RG2 (column, row), placed by eye
#: along the subchondral line from the lateral rim over the roof to the teardrop.
RG2_RIM_PX = [
    (975, 718),
    (940, 726),
    (900, 727),
    (860, 732),
    (820, 747),
    (790, 770),
    (770, 800),
    (760, 840),
    (760, 880),
    (768, 925),
    (780, 960),
]
RG2_HEAD_CENTER_PX = (880, 865)


def _user_calibration(source: str) -> Calibration:
    # A ruler of 174 mm spanning 1000 pixels: the 0.2 mm tag spacing corrected for a
    # radiographic magnification of 1.15.
    return known_length_calibration((0, 0), (0, 1000), 174.0, source=source)


def test_hip_radiograph_with_user_calibration_gives_a_plausible_cup(shared_data, catalogue) -> None:
    path = shared_data / "wg04" / "RG2_JPLL.dcm"
    radiograph = read_radiograph(path)
    landmarks = {f"acetabulum_rim_{i}": p for i, p in enumerate(RG2_RIM_PX)}
    landmarks["femoral_head_center"] = RG2_HEAD_CENTER_PX

    result = suggest_cup(
        landmarks,
        _user_calibration(str(path)),
        str(path),
        catalogue.family("generic_hemispherical_cup"),
        "left",
    )
    tag_result = suggest_cup(
        landmarks,
        radiograph.calibration,
        str(path),
        catalogue.family("generic_hemispherical_cup"),
        "left",
    )

    assert 50.0 <= result.based_on.value <= 58.0  # adult acetabulum
    assert result.size.size in {"50", "52", "54", "56", "58"}
    assert result.based_on.details["fit_rms_mm"] < 2.0
    assert abs(result.predicted["offset_change_mm"]) < 10.0
    assert abs(result.predicted["leg_length_change_mm"]) < 10.0
    # The tag spacing (no magnification correction) measures 15 % larger.
    assert tag_result.based_on.value == pytest.approx(result.based_on.value * 0.2 / 0.174, abs=0.02)


def _write_landmarks(path, radiograph, points_px, name) -> None:
    matrix, _orientation = radiograph_ijk_to_ras(radiograph)
    points_ras = {
        label: (matrix @ np.array([p[0], p[1], 0.0, 1.0]))[:3] for label, p in points_px.items()
    }
    write_markups_json(path, points_ras, name=name)


def test_template_command_prints_the_size_and_its_measurement(
    shared_data, tmp_path, capsys
) -> None:
    path = shared_data / "wg04" / "RG2_JPLL.dcm"
    landmarks = {f"acetabulum_rim_{i}": p for i, p in enumerate(RG2_RIM_PX)}
    landmarks["femoral_head_center"] = RG2_HEAD_CENTER_PX
    _write_landmarks(tmp_path / "hip_left.mrk.json", read_radiograph(path), landmarks, "hip left")
    calibration = _user_calibration(str(path))
    (tmp_path / "calibration.json").write_text(
        json.dumps(
            {
                "method": calibration.method,
                "mm_per_pixel": list(calibration.mm_per_pixel),
                "detail": calibration.detail,
            }
        )
    )

    status = cli.main(
        [
            "template",
            str(path),
            "--landmarks",
            str(tmp_path / "hip_left.mrk.json"),
            "--family",
            "cup",
            "--calibration",
            str(tmp_path / "calibration.json"),
            "--key-image",
            str(tmp_path / "key.png"),
            "--add-to",
            str(tmp_path / "measurements.json"),
            "--json",
        ]
    )
    output = json.loads(capsys.readouterr().out)

    assert status == 0
    assert output["side"] == "left"
    assert output["suggested_size"] in {"50", "52", "54", "56", "58"}
    assert output["based_on"]["key"] == "acetabular_diameter_mm"
    assert output["based_on"]["unit"] == "mm"
    assert 50.0 <= output["based_on"]["value"] <= 58.0
    assert output["calibration"]["method"] == "known_length"
    assert "not any manufacturer" in output["disclaimer"]
    table = MeasurementTable.read_json(tmp_path / "measurements.json")
    assert [row.key for row in table.rows] == [
        "acetabular_diameter_mm",
        "offset_change_mm",
        "leg_length_change_mm",
    ]
    assert table.rows[0].value == output["based_on"]["value"]
    assert len(table.rows[0].details["region_px"]) == len(RG2_RIM_PX)
    picture = np.asarray(Image.open(tmp_path / "key.png"))
    assert picture.shape == (2140, 1760, 3)  # rows, columns of RG2
    outline = np.all(picture == (255, 200, 0), axis=-1)  # the template's colour
    columns = np.nonzero(outline)[1]
    assert outline.sum() > 1000
    # The drawn cup spans about its size in pixels (54 mm at 0.174 mm per pixel is 310 px).
    assert 250 < columns.max() - columns.min() < 380


def test_template_command_refuses_an_uncalibrated_radiograph(shared_data, tmp_path, capsys) -> None:
    path = shared_data / "wg04" / "RG3_JPLL.dcm"
    landmarks = {f"acetabulum_rim_{i}": (100 + 10 * i, 100 + i * i) for i in range(5)}
    _write_landmarks(tmp_path / "rim.mrk.json", read_radiograph(path), landmarks, "rim")

    status = cli.main(
        ["template", str(path), "--landmarks", str(tmp_path / "rim.mrk.json"), "--family", "cup"]
    )

    assert status == 2
    assert f"{path} is not calibrated" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("family", "labels", "expected"),
    [
        ("knee_tibial", ("tibial_plateau_medial", "tibial_plateau_lateral"), "4"),
        ("knee_femoral", ("femoral_condyle_medial", "femoral_condyle_lateral"), "5"),
    ],
)
def test_template_command_sizes_knee_components_with_tag_calibration(
    shared_data, tmp_path, capsys, family, labels, expected
) -> None:
    path = shared_data / "wg04" / "RG2_JPLL.dcm"  # PixelSpacing 0.2 mm from the tags
    points = {labels[0]: (1200.0, 1500.0), labels[1]: (850.0, 1500.0)}  # 350 px = 70 mm
    _write_landmarks(tmp_path / "knee_right.mrk.json", read_radiograph(path), points, "knee right")

    landmarks = str(tmp_path / "knee_right.mrk.json")
    status = cli.main(
        ["template", str(path), "--landmarks", landmarks, "--family", family, "--json"]
    )
    output = json.loads(capsys.readouterr().out)

    assert status == 0
    assert output["suggested_size"] == expected
    assert output["based_on"]["value"] == pytest.approx(70.0)
    assert output["calibration"]["method"] == "pixel_spacing"


def test_template_refuses_to_add_rows_of_another_patient_to_a_table(
    shared_data, tmp_path, capsys
) -> None:
    # A case of patient PACSMAN1: its MR slice in the case folder, a row citing its series UID.
    case = tmp_path / "case"
    (case / "source").mkdir(parents=True)
    slice_path = sorted((shared_data / "pacsman" / "mr_head").glob("*.dcm"))[0]
    shutil.copyfile(slice_path, case / "source" / slice_path.name)
    series_uid = str(pydicom.dcmread(slice_path, stop_before_pixels=True).SeriesInstanceUID)
    table = MeasurementTable()
    table.add(
        Measurement(
            "bone_volume_ml", "Bone", 1.0, "ml", "", "automatic", VOLUME_GEOMETRY, series_uid
        )
    )
    table.write_json(case / "measurements.json")
    before = (case / "measurements.json").read_text()
    path = shared_data / "wg04" / "RG2_JPLL.dcm"  # patient 10RG2
    points = {"tibial_plateau_medial": (1200.0, 1500.0), "tibial_plateau_lateral": (850.0, 1500.0)}
    _write_landmarks(tmp_path / "knee.mrk.json", read_radiograph(path), points, "knee right")
    command = ["template", str(path), "--landmarks", str(tmp_path / "knee.mrk.json")]
    command += ["--family", "knee_tibial", "--add-to"]

    status = cli.main([*command, str(case / "measurements.json")])

    error = capsys.readouterr().err.strip().splitlines()
    assert status == 2
    assert len(error) == 1 and "RG2_JPLL.dcm" in error[0] and "bone_volume_ml" in error[0]
    assert (case / "measurements.json").read_text() == before
    # Rows of the same patient (another encoding of RG2, cited by path) are added.
    same = tmp_path / "same.json"
    same_table = MeasurementTable()
    same_table.add(
        Measurement(
            "x_mm",
            "x",
            1.0,
            "mm",
            "",
            "manual",
            VOLUME_GEOMETRY,
            str(shared_data / "wg04" / "RG2_J2KR.dcm"),
        )
    )
    same_table.write_json(same)
    assert cli.main([*command, str(same)]) == 0
    assert len(MeasurementTable.read_json(same).rows) == 2

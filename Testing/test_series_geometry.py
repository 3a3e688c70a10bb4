"""Series geometry on synthetic DICOM series whose answers are known analytically.

Each series is written with pydicom into a temporary folder: an oblique stack checks the
LPS-to-RAS flip numerically, a tilted and unevenly spaced stack holding an analytic sphere
checks the resampling, and small variations check series selection, duplicates, rescale
and the refusal path.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pydicom
import pytest
import SimpleITK as sitk
from dicom_factory import new_instance
from pydicom.uid import CTImageStorage, generate_uid

from MSKPriorsLib.dicom_geometry import SeriesLoadError, analyse_stack
from MSKPriorsLib.pixel_data_resampling import regular_stack_image
from MSKPriorsLib.pixel_data_series import list_series, read_dicom_series

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


def rotation(axis: npt.ArrayLike, angle_deg: float) -> npt.NDArray[np.float64]:
    """Rotation matrix about ``axis`` (Rodrigues)."""
    axis = np.asarray(axis, dtype=float) / np.linalg.norm(axis)
    angle = math.radians(angle_deg)
    cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + math.sin(angle) * cross + (1 - math.cos(angle)) * cross @ cross


def write_slice(
    path: Path,
    pixels: npt.NDArray[np.int16],
    position_lps: npt.ArrayLike,
    orientation_lps: npt.ArrayLike,
    pixel_spacing_mm: tuple[float, float],
    series_uid: str,
    instance_number: int,
    *,
    study_uid: str = "1.2.826.0.1.3680043.8.498.1",
    image_type: str = "ORIGINAL\\PRIMARY\\AXIAL",
    slope: float = 1.0,
    intercept: float = 0.0,
    patient_id: str = "SYN-1",
) -> None:
    """Write one CT slice with the given geometry (LPS mm) and stored pixels."""
    ds = new_instance(CTImageStorage)
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = "1.2.826.0.1.3680043.8.498.2"
    ds.PatientID = patient_id
    ds.PatientName = "Synthetic^Series"
    ds.Modality = "CT"
    ds.SeriesNumber = 1
    ds.InstanceNumber = instance_number
    ds.ImageType = image_type
    ds.ImagePositionPatient = [f"{v:.6f}" for v in np.asarray(position_lps, dtype=float)]
    ds.ImageOrientationPatient = [f"{v:.8f}" for v in np.asarray(orientation_lps, dtype=float)]
    ds.PixelSpacing = [f"{v:g}" for v in pixel_spacing_mm]
    ds.SliceThickness = "9.9"
    ds.RescaleSlope = f"{slope:g}"
    ds.RescaleIntercept = f"{intercept:g}"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.PixelData = np.ascontiguousarray(pixels, dtype="<i2").tobytes()
    ds.save_as(path, enforce_file_format=True)


def write_stack(
    folder: Path,
    volume_kji: npt.NDArray[np.int16],
    positions_lps: list[npt.NDArray[np.float64]],
    orientation_lps: npt.ArrayLike,
    pixel_spacing_mm: tuple[float, float],
    series_uid: str | None = None,
    **options: object,
) -> str:
    """Write a stack, one file per slice, in shuffled file order; return the series UID."""
    folder.mkdir(parents=True, exist_ok=True)
    uid = series_uid or generate_uid()
    order = list(range(len(positions_lps)))
    random.Random(7).shuffle(order)
    for index in order:
        write_slice(
            folder / f"slice_{uid[-6:]}_{index:03d}.dcm",
            volume_kji[index],
            positions_lps[index],
            orientation_lps,
            pixel_spacing_mm,
            uid,
            index + 1,
            **options,  # type: ignore[arg-type]
        )
    return uid


@pytest.fixture
def oblique_series(tmp_path: Path) -> dict[str, object]:
    """An oblique, regular stack: 6 slices of 8 rows x 10 columns, one marked voxel."""
    frame = rotation([1.0, 2.0, 3.0], 30.0)
    row, column = frame[:, 0], frame[:, 1]
    normal = np.cross(row, column)
    spacing = (0.7, 0.9)  # between rows, between columns
    slice_gap_mm = 2.5
    first = np.array([-40.0, 25.0, 110.0])
    positions = [first + k * slice_gap_mm * normal for k in range(6)]
    volume = np.zeros((6, 8, 10), dtype=np.int16)
    volume[2, 3, 5] = 999
    uid = write_stack(tmp_path / "oblique", volume, positions, np.r_[row, column], spacing)
    return {
        "folder": tmp_path / "oblique",
        "uid": uid,
        "row": row,
        "column": column,
        "normal": normal,
        "first": first,
        "spacing": spacing,
        "gap": slice_gap_mm,
        "positions": positions,
    }


def test_oblique_series_geometry_in_ras(oblique_series: dict[str, object]) -> None:
    volume = read_dicom_series(oblique_series["folder"])  # type: ignore[arg-type]
    geometry = volume.geometry
    row, column, normal = (np.asarray(oblique_series[k]) for k in ("row", "column", "normal"))
    first = np.asarray(oblique_series["first"])
    row_spacing, column_spacing = oblique_series["spacing"]  # type: ignore[misc]

    assert volume.warnings == []
    assert geometry.dimensions == (10, 8, 6)
    np.testing.assert_allclose(geometry.spacing_mm, (column_spacing, row_spacing, 2.5), atol=1e-6)
    expected_origin_ras = np.array([-first[0], -first[1], first[2]])
    np.testing.assert_allclose(geometry.origin_ras_mm, expected_origin_ras, atol=1e-5)
    for axis, direction_lps in enumerate((row, column, normal)):
        flipped = np.array([-direction_lps[0], -direction_lps[1], direction_lps[2]])
        np.testing.assert_allclose(geometry.directions_ras[:, axis], flipped, atol=1e-6)
    assert np.linalg.det(geometry.directions_ras) == pytest.approx(1.0, abs=1e-6)

    marked_ras = LPS_TO_RAS @ (
        np.asarray(oblique_series["positions"])[2]
        + 5 * column_spacing * row
        + 3 * row_spacing * column
    )
    ijk_to_ras = geometry.ijk_to_ras_mm()
    np.testing.assert_allclose(ijk_to_ras @ [5, 3, 2, 1], [*marked_ras, 1.0], atol=1e-5)
    assert sitk.GetArrayFromImage(volume.image)[2, 3, 5] == 999
    assert np.count_nonzero(sitk.GetArrayFromImage(volume.image)) == 1


def sphere_stack(
    centre_lps: npt.NDArray[np.float64],
    radius_mm: float,
    table_z_mm: list[float],
    tilt_deg: float,
    size: int = 48,
) -> tuple[npt.NDArray[np.int16], list[npt.NDArray[np.float64]], npt.NDArray[np.float64]]:
    """Slices of a tilted gantry through a sphere: the table moves along z, planes are tilted."""
    tilt = math.radians(tilt_deg)
    row = np.array([1.0, 0.0, 0.0])
    column = np.array([0.0, math.cos(tilt), -math.sin(tilt)])
    first_pixel = np.array([-size / 2, -size / 2 * math.cos(tilt), 0.0])
    subsample = (np.arange(4) + 0.5) / 4 - 0.5
    volume = np.zeros((len(table_z_mm), size, size), dtype=np.int16)
    positions = []
    for k, z in enumerate(table_z_mm):
        position = first_pixel + np.array([0.0, 0.0, z])
        positions.append(position)
        jj, ii = np.mgrid[0:size, 0:size].astype(float)
        inside = np.zeros((size, size))
        for du in subsample:  # partial volume in plane, 4 x 4 samples per pixel
            for dv in subsample:
                points = position + (ii[..., None] + du) * row + (jj[..., None] + dv) * column
                inside += np.linalg.norm(points - centre_lps, axis=-1) < radius_mm
        volume[k] = np.rint(1000 * inside / 16).astype(np.int16)
    return volume, positions, np.r_[row, column]


def sphere_statistics(image: sitk.Image) -> tuple[npt.NDArray[np.float64], float, float]:
    """Centroid (LPS), equivalent radius and largest/smallest principal axis of the >500 blob."""
    mask = sitk.BinaryThreshold(image, 500, 32767, 1, 0)
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(sitk.RelabelComponent(sitk.ConnectedComponent(mask)))
    moments = np.sqrt(np.array(stats.GetPrincipalMoments(1)))
    return (
        np.array(stats.GetCentroid(1)),
        stats.GetEquivalentSphericalRadius(1),
        float(moments.max() / moments.min()),
    )


def test_tilted_uneven_sphere_is_corrected(tmp_path: Path) -> None:
    centre = np.array([2.0, 3.0, 30.0])
    radius_mm = 9.0
    table_z = [float(z) for z in np.r_[np.arange(10, 30, 1.5), np.arange(30.0, 52, 2.5)]]
    volume, positions, orientation = sphere_stack(centre, radius_mm, table_z, tilt_deg=20.0)
    uid = write_stack(tmp_path / "tilted", volume, positions, orientation, (1.0, 1.0))

    loaded = read_dicom_series(tmp_path / "tilted")
    assert loaded.warning_codes == ["gantry_tilt", "uneven_spacing", "resampled"]
    assert all(uid in w.message for w in loaded.warnings)
    assert loaded.geometry.gantry_tilt_deg == pytest.approx(20.0, abs=0.01)
    assert loaded.geometry.resampled
    centroid, equivalent_radius, elongation = sphere_statistics(loaded.image)
    np.testing.assert_allclose(centroid, centre, atol=0.5)
    assert equivalent_radius == pytest.approx(radius_mm, abs=0.4)
    assert elongation < 1.1

    # The same slices stacked as if they were regular and untilted land elsewhere.
    frames_image = regular_stack_image(
        volume[np.argsort(table_z)],
        analyse_stack(_frames_of(tmp_path / "tilted"), uid),
        float(np.mean(np.diff(table_z)) * math.cos(math.radians(20.0))),
    )
    naive_centroid, _, _ = sphere_statistics(frames_image)
    assert np.linalg.norm(naive_centroid - centre) > 3.0


def _frames_of(folder: Path) -> list:
    from MSKPriorsLib.pixel_data import frames_of_dataset

    return [
        frame
        for path in sorted(folder.iterdir())
        for frame in frames_of_dataset(pydicom.dcmread(path), path)
    ]


def test_refuse_names_the_problem(tmp_path: Path) -> None:
    table_z = [0.0, 2.0, 4.0, 9.0, 11.0]
    volume, positions, orientation = sphere_stack(np.array([0.0, 0.0, 5.0]), 4.0, table_z, 0.0, 16)
    uid = write_stack(tmp_path / "uneven", volume, positions, orientation, (1.0, 1.0))
    with pytest.raises(SeriesLoadError) as refused:
        read_dicom_series(tmp_path / "uneven", geometry="refuse")
    assert refused.value.code == "uneven_spacing"
    assert uid in str(refused.value) and "not loaded" in str(refused.value)
    assert "uneven_spacing" in [w.code for w in refused.value.warnings]

    corrected = read_dicom_series(tmp_path / "uneven")
    assert corrected.geometry.dimensions[2] == 6  # 0..11 mm every 2 mm
    assert corrected.geometry.spacing_mm[2] == pytest.approx(2.0)


def test_missing_slice_in_regular_stack_is_interpolated(tmp_path: Path) -> None:
    table_z = [0.0, 2.0, 4.0, 8.0, 10.0]
    volume = np.stack([np.full((4, 4), 100 * (k + 1), dtype=np.int16) for k in range(5)])
    positions = [np.array([0.0, 0.0, z]) for z in table_z]
    write_stack(tmp_path / "gap", volume, positions, [1, 0, 0, 0, 1, 0], (1.0, 1.0))
    loaded = read_dicom_series(tmp_path / "gap")
    assert loaded.warning_codes == ["missing_slices", "resampled"]
    values = sitk.GetArrayFromImage(loaded.image)[:, 0, 0]
    np.testing.assert_array_equal(values, [100, 200, 300, 350, 400, 500])


def test_several_series_are_refused_or_chosen(tmp_path: Path) -> None:
    volume = np.ones((3, 4, 4), dtype=np.int16)
    positions = [np.array([0.0, 0.0, float(z)]) for z in range(3)]
    small = write_stack(tmp_path / "mixed", volume[:2], positions[:2], [1, 0, 0, 0, 1, 0], (1, 1))
    large = write_stack(tmp_path / "mixed", volume, positions, [1, 0, 0, 0, 1, 0], (1, 1))

    with pytest.raises(SeriesLoadError) as refused:
        read_dicom_series(tmp_path / "mixed")
    assert refused.value.code == "multiple_series"
    assert small in str(refused.value) and large in str(refused.value)

    chosen = read_dicom_series(tmp_path / "mixed", series_uid=small)
    assert chosen.series_uid == small and chosen.number_of_slices == 2
    assert chosen.warning_codes == ["multiple_series"]
    largest = read_dicom_series(tmp_path / "mixed", pick_largest=True)
    assert largest.series_uid == large
    assert [s.series_uid for s in list_series(tmp_path / "mixed")] == [large, small]
    with pytest.raises(SeriesLoadError) as unknown:
        read_dicom_series(tmp_path / "mixed", series_uid="1.2.3.4")
    assert unknown.value.code == "series_not_found"


def test_duplicate_positions_keep_one_slice(tmp_path: Path) -> None:
    volume = np.stack([np.full((4, 4), v, dtype=np.int16) for v in (1, 2, 3)])
    positions = [np.array([0.0, 0.0, z]) for z in (0.0, 1.0, 1.0)]
    write_stack(tmp_path / "dup", volume, positions, [1, 0, 0, 0, 1, 0], (1.0, 1.0))
    loaded = read_dicom_series(tmp_path / "dup")
    assert loaded.warning_codes == ["duplicate_slices"]
    assert loaded.geometry.dimensions == (4, 4, 2)


def test_rescale_with_fractional_slope_gives_float_voxels(tmp_path: Path) -> None:
    volume = np.arange(2 * 4 * 4, dtype=np.int16).reshape(2, 4, 4)
    positions = [np.array([0.0, 0.0, z]) for z in (0.0, 3.0)]
    write_stack(
        tmp_path / "rescale",
        volume,
        positions,
        [1, 0, 0, 0, 1, 0],
        (1.0, 1.0),
        slope=0.5,
        intercept=-10.0,
    )
    loaded = read_dicom_series(tmp_path / "rescale")
    values = sitk.GetArrayFromImage(loaded.image)
    assert values.dtype == np.float32
    np.testing.assert_allclose(values, volume * 0.5 - 10.0)
    assert loaded.geometry.spacing_mm[2] == pytest.approx(3.0)  # positions, not SliceThickness


def test_folder_without_images_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "data.json").write_text("{}")
    with pytest.raises(SeriesLoadError) as refused:
        read_dicom_series(tmp_path)
    assert refused.value.code == "no_images"
    assert str(tmp_path) in str(refused.value)


def test_classic_multiframe_without_positions_is_stacked_by_spacing(
    shared_data: Path, tmp_path: Path
) -> None:
    dataset = pydicom.dcmread(shared_data / "pacsman" / "mr_head" / "slice0.dcm")
    first = dataset.pixel_array
    frames = np.stack([first + k for k in range(3)]).astype(first.dtype)
    dataset.NumberOfFrames = 3
    dataset.SpacingBetweenSlices = "2.0"
    dataset.PixelData = frames.tobytes()
    dataset.save_as(tmp_path / "multiframe.dcm")
    loaded = read_dicom_series(tmp_path / "multiframe.dcm")
    assert loaded.warning_codes == ["no_position"]
    assert loaded.geometry.dimensions[2] == 3
    assert loaded.geometry.spacing_mm[2] == pytest.approx(2.0)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(loaded.image), frames)


def test_instance_number_gap_is_reported_without_resampling(tmp_path: Path) -> None:
    volume = np.ones((4, 4, 4), dtype=np.int16)
    positions = [np.array([0.0, 0.0, float(z)]) for z in range(4)]
    folder = tmp_path / "numbers"
    folder.mkdir()
    for index, number in enumerate((1, 2, 4, 5)):
        write_slice(
            folder / f"{number}.dcm",
            volume[index],
            positions[index],
            [1, 0, 0, 0, 1, 0],
            (1.0, 1.0),
            "1.2.826.0.1.3680043.8.498.77",
            number,
        )
    loaded = read_dicom_series(folder)
    assert loaded.warning_codes == ["missing_slices"]
    assert "InstanceNumber skips 1" in loaded.warnings[0].message
    assert not loaded.geometry.resampled

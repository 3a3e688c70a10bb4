"""Series loading on real scanner files from the shared data folder.

GE and Philips gantry-tilt CT, JPEG 2000 CT, every transfer syntax of one MR slice, a
MONOCHROME1 radiograph, a real MR head with a slice removed or a localizer added, and an
enhanced multi-frame CT built from real slices.
"""

from __future__ import annotations

from pathlib import Path

import highdicom
import numpy as np
import numpy.typing as npt
import pydicom
import pytest
import SimpleITK as sitk
from highdicom.legacy import LegacyConvertedEnhancedCTImage, LegacyConvertedEnhancedMRImage

from MSKPriorsLib.dicom_geometry import SeriesLoadError
from MSKPriorsLib.pixel_data_series import DicomSeriesVolume, read_dicom_series


@pytest.fixture(scope="module")
def ge_tilted(shared_data: Path) -> DicomSeriesVolume:
    """The GE head CT with +18.5 deg gantry tilt and 1.08 / 4 / 7 mm gaps, corrected."""
    return read_dicom_series(shared_data / "dcm_qa_ct" / "GE_tilt_variable_spacing")


def _source_slices(folder: Path) -> list[pydicom.Dataset]:
    return [pydicom.dcmread(p) for p in sorted(folder.iterdir()) if p.suffix == ".dcm"]


def _slice_image(dataset: pydicom.Dataset) -> sitk.Image:
    """One source slice as a 3D image of one slice at its own position (LPS), rescaled."""
    values = dataset.pixel_array * float(dataset.RescaleSlope) + float(dataset.RescaleIntercept)
    image = sitk.GetImageFromArray(values[None].astype(np.float32))
    orientation = np.array(dataset.ImageOrientationPatient, dtype=float)
    direction = np.column_stack(
        [orientation[:3], orientation[3:], np.cross(orientation[:3], orientation[3:])]
    )
    image.SetDirection(tuple(direction.ravel()))
    image.SetOrigin(tuple(float(v) for v in dataset.ImagePositionPatient))
    image.SetSpacing((float(dataset.PixelSpacing[1]), float(dataset.PixelSpacing[0]), 1.0))
    return image


@pytest.mark.slow
def test_ge_tilt_and_uneven_spacing_are_detected(ge_tilted: DicomSeriesVolume) -> None:
    codes = ge_tilted.warning_codes
    assert codes == ["gantry_tilt", "uneven_spacing", "resampled"]
    assert ge_tilted.geometry.gantry_tilt_deg == pytest.approx(18.5, abs=0.05)
    gaps = np.round(ge_tilted.geometry.source_gaps_mm, 2)
    assert sorted(set(gaps)) == [1.08, 4.0, 7.0]
    assert ge_tilted.number_of_slices == 28
    assert ge_tilted.series_uid in ge_tilted.warnings[0].message


@pytest.mark.slow
def test_ge_corrected_volume_holds_every_slice_at_its_position(
    ge_tilted: DicomSeriesVolume, shared_data: Path
) -> None:
    sources = _source_slices(shared_data / "dcm_qa_ct" / "GE_tilt_variable_spacing")
    corrected = sitk.Cast(ge_tilted.image, sitk.sitkFloat32)
    correlations = []
    for dataset in sources:
        reference = _slice_image(dataset)
        sampled = sitk.Resample(corrected, reference, sitk.Transform(), sitk.sitkLinear, -5000.0)
        values = sitk.GetArrayFromImage(sampled)[0]
        source = sitk.GetArrayFromImage(reference)[0]
        assert (values > -5000).all(), f"{dataset.InstanceNumber}: slice outside the volume"
        correlations.append(np.corrcoef(values.ravel(), source.ravel())[0, 1])
    assert min(correlations) > 0.99, correlations

    # The first acquired slice is an exact plane of the corrected grid.
    first = min(sources, key=lambda d: float(d.ImagePositionPatient[2]))
    index = np.array(corrected.TransformPhysicalPointToContinuousIndex(first.ImagePositionPatient))
    np.testing.assert_allclose(index, np.round(index), atol=1e-3)
    i0, j0, k0 = (int(v) for v in np.round(index))
    block = sitk.GetArrayFromImage(ge_tilted.image)[k0, j0 : j0 + 512, i0 : i0 + 512]
    expected = first.pixel_array * int(first.RescaleSlope) + int(first.RescaleIntercept)
    np.testing.assert_array_equal(block, expected)


def test_ge_refusal_gives_the_reason(shared_data: Path) -> None:
    with pytest.raises(SeriesLoadError) as refused:
        read_dicom_series(shared_data / "dcm_qa_ct" / "GE_tilt_variable_spacing", geometry="refuse")
    message = str(refused.value)
    assert refused.value.code == "gantry_tilt"
    assert "not loaded" in message and "18.5 deg" in message and "varies" in message
    assert [w.code for w in refused.value.warnings] == ["gantry_tilt", "uneven_spacing"]


SPHERE_SEED_LPS = np.array([-24.0, 82.0, 775.0])  # the phantom's sphere, seen in both scans


def sphere_measures(
    image: sitk.Image,
) -> tuple[npt.NDArray[np.float64], float, npt.NDArray[np.float64]] | None:
    """Segment the phantom's sphere; return centroid (LPS), principal-axis ratio, extents mm.

    Threshold half way between air and the sphere (-450 HU) on a 0.5 mm grid around the
    sphere, open with a 5 mm ball to cut the rod it stands on, keep the seed's component
    (None when there is nothing at the seed).
    """
    grid = sitk.Image(80, 80, 80, sitk.sitkFloat32)
    grid.SetSpacing((0.5, 0.5, 0.5))
    grid.SetOrigin(tuple(SPHERE_SEED_LPS - 20.0))
    region = sitk.Resample(image, grid, sitk.Transform(), sitk.sitkLinear, -1024.0)
    mask = sitk.BinaryMorphologicalOpening(
        sitk.BinaryThreshold(region, -450, 32767, 1, 0), [10] * 3
    )
    components = sitk.ConnectedComponent(mask)
    label = components[region.TransformPhysicalPointToIndex(tuple(SPHERE_SEED_LPS))]
    if label == 0:
        return None
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(components)
    axes = np.sqrt(np.array(stats.GetPrincipalMoments(label)))
    extents = np.array(stats.GetBoundingBox(label)[3:]) * 0.5
    return np.array(stats.GetCentroid(label)), float(axes.max() / axes.min()), extents


@pytest.mark.slow
def test_philips_tilted_sphere_is_round_and_in_place(shared_data: Path) -> None:
    untilted = read_dicom_series(shared_data / "dcm_qa_ct" / "Philips_untilted")
    tilted = read_dicom_series(shared_data / "dcm_qa_ct" / "Philips_tilt_minus18")
    assert untilted.warning_codes == ["non_image_removed"]
    assert "DIRFILE" in untilted.warnings[0].message
    assert tilted.warning_codes == ["non_image_removed", "gantry_tilt", "resampled"]
    assert tilted.geometry.gantry_tilt_deg == pytest.approx(18.5, abs=0.05)

    untilted_sphere = sphere_measures(untilted.image)
    tilted_sphere = sphere_measures(tilted.image)
    assert untilted_sphere is not None and tilted_sphere is not None
    centre_untilted, ratio_untilted, _ = untilted_sphere
    centre_tilted, ratio_tilted, extents = tilted_sphere
    flip = np.diag([-1.0, -1.0, 1.0])
    distance_mm = np.linalg.norm(flip @ centre_tilted - flip @ centre_untilted)
    assert distance_mm < 2.0
    assert ratio_tilted < 1.1
    assert ratio_untilted < 1.1
    assert extents.max() / extents.min() < 1.15

    # The same slices stacked along the normal without the tilt correction miss the sphere.
    sources = sorted(
        (
            pydicom.dcmread(p)
            for p in (shared_data / "dcm_qa_ct" / "Philips_tilt_minus18").glob("I*")
        ),
        key=lambda d: float(d.ImagePositionPatient[2]),
    )
    naive = sitk.GetImageFromArray(
        np.stack([d.pixel_array.astype(np.int16) - 1024 for d in sources])
    )
    first = _slice_image(sources[0])
    naive.SetOrigin(first.GetOrigin())
    naive.SetDirection(first.GetDirection())
    naive.SetSpacing((*first.GetSpacing()[:2], tilted.geometry.spacing_mm[2]))
    naive_sphere = sphere_measures(naive)
    assert naive_sphere is None or np.linalg.norm(naive_sphere[0] - centre_untilted) > 5.0


def test_jpeg2000_series_decodes_onto_its_label_map(shared_data: Path) -> None:
    volume = read_dicom_series(shared_data / "totalsegmentator" / "ct_dicom")
    assert volume.number_of_slices == 20 and volume.warning_codes == []
    assert volume.geometry.spacing_mm == pytest.approx((0.9765625, 0.9765625, 2.0))
    labels = sitk.ReadImage(str(shared_data / "totalsegmentator" / "ct_dicom_labels.nii.gz"))
    on_grid = sitk.Resample(labels, volume.image, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    hu = sitk.GetArrayFromImage(volume.image)
    label = sitk.GetArrayFromImage(on_grid)
    assert 20 < hu[label == 5].mean() < 120  # liver
    assert hu[label == 32].mean() > 200  # vertebra T12
    assert hu[label == 0].min() == -1024


def test_every_transfer_syntax_decodes_to_the_same_pixels(shared_data: Path) -> None:
    folder = shared_data / "dcm_qa_ts"
    reference = sitk.GetArrayFromImage(read_dicom_series(folder / "1.dcm").image)
    assert reference.std() > 0
    for number in range(2, 10):
        path = folder / f"{number}.dcm"
        syntax = pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID
        pixels = sitk.GetArrayFromImage(read_dicom_series(path).image)
        assert np.array_equal(pixels, reference), f"{path.name} ({syntax.name}) differs"


def test_monochrome1_is_inverted_for_display(shared_data: Path) -> None:
    path = shared_data / "wg04" / "RG3_JPLL.dcm"
    volume = read_dicom_series(path)
    stored = pydicom.dcmread(path).pixel_array
    assert volume.monochrome1_inverted
    np.testing.assert_array_equal(sitk.GetArrayFromImage(volume.image)[0], 1023 - stored)
    assert volume.window == (1023 - 550, 1024)
    assert "no_spacing" in volume.warning_codes and "no_position" in volume.warning_codes


def test_zero_pixel_spacing_is_not_a_size(shared_data: Path) -> None:
    volume = read_dicom_series(shared_data / "wg04" / "RG1_J2KI.dcm")
    assert "no_spacing" in volume.warning_codes
    assert volume.geometry.spacing_mm[:2] == (1.0, 1.0)
    assert sitk.GetArrayFromImage(volume.image).std() > 0


def test_rescale_intercept_is_applied(shared_data: Path) -> None:
    folder = shared_data / "dcm_qa_ct" / "Philips_untilted"
    volume = read_dicom_series(folder)
    first = pydicom.dcmread(folder / "I10")
    assert float(first.RescaleIntercept) == -1024
    np.testing.assert_array_equal(
        sitk.GetArrayFromImage(volume.image)[0], first.pixel_array.astype(np.int32) - 1024
    )


def _linked_copy(source: Path, target: Path, leave_out: frozenset[str] = frozenset()) -> Path:
    target.mkdir()
    for path in source.iterdir():
        if path.name not in leave_out:
            (target / path.name).symlink_to(path)
    return target


def test_missing_slice_is_detected(shared_data: Path, tmp_path: Path) -> None:
    source = shared_data / "pacsman" / "mr_head"
    folder = _linked_copy(source, tmp_path / "mr", leave_out=frozenset({"slice64.dcm"}))
    volume = read_dicom_series(folder)
    assert volume.warning_codes == ["missing_slices", "resampled"]
    assert "1 slice(s)" in volume.warnings[0].message
    assert volume.geometry.dimensions == (128, 128, 128)
    assert volume.geometry.spacing_mm[2] == pytest.approx(1.0)
    pixels = sitk.GetArrayFromImage(volume.image).astype(float)
    neighbours = (pixels[63] + pixels[65]) / 2
    assert np.abs(pixels[64] - neighbours).max() <= 0.5 + 1e-9
    with pytest.raises(SeriesLoadError) as refused:
        read_dicom_series(folder, geometry="refuse")
    assert refused.value.code == "missing_slices"


def test_localizer_is_left_out(shared_data: Path, tmp_path: Path) -> None:
    source = shared_data / "pacsman" / "mr_head"
    folder = _linked_copy(source, tmp_path / "mr")
    plain = read_dicom_series(source)
    localizer = pydicom.dcmread(source / "slice10.dcm")
    localizer.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]
    localizer.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    localizer.SOPInstanceUID = pydicom.uid.generate_uid()
    localizer.InstanceNumber = 500
    localizer.save_as(folder / "scout.dcm")
    (folder / "README.txt").write_text("not DICOM")

    volume = read_dicom_series(folder)
    assert volume.warning_codes == ["non_image_removed", "localizer_removed"]
    assert "scout.dcm" in volume.warnings[1].message
    assert volume.number_of_slices == 128
    assert volume.geometry == plain.geometry
    np.testing.assert_array_equal(
        sitk.GetArrayFromImage(volume.image), sitk.GetArrayFromImage(plain.image)
    )

    localizer.ImageType = ["ORIGINAL", "PRIMARY", "OTHER"]
    localizer.save_as(folder / "scout.dcm")
    assert "inconsistent_orientation" in read_dicom_series(folder).warning_codes


def test_enhanced_multiframe_matches_single_frames(
    shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = shared_data / "dcm_qa_ct" / "Philips_untilted"
    single = read_dicom_series(folder)
    monkeypatch.setattr(pydicom.config, "datetime_conversion", True)  # highdicom needs dates
    slices = [pydicom.dcmread(p) for p in sorted(folder.glob("I*"))]
    enhanced = LegacyConvertedEnhancedCTImage(slices, highdicom.UID(), 99, highdicom.UID(), 1)
    third = enhanced.PerFrameFunctionalGroupsSequence[2]
    third.PixelValueTransformationSequence[0].RescaleSlope = 2
    third.PixelValueTransformationSequence[0].RescaleIntercept = -3000
    enhanced.save_as(tmp_path / "enhanced.dcm")
    monkeypatch.setattr(pydicom.config, "datetime_conversion", False)

    multi = read_dicom_series(tmp_path / "enhanced.dcm")
    assert multi.number_of_slices == 28 and multi.warning_codes == []
    assert multi.geometry == single.geometry
    multi_pixels = sitk.GetArrayFromImage(multi.image)
    single_pixels = sitk.GetArrayFromImage(single.image)
    z_of_third = float(third.PlanePositionSequence[0].ImagePositionPatient[2])
    k = round((z_of_third - 696.21) / 5.0)
    others = [i for i in range(28) if i != k]
    np.testing.assert_array_equal(multi_pixels[others], single_pixels[others])
    source = next(d for d in slices if float(d.ImagePositionPatient[2]) == z_of_third)
    raw = source.pixel_array.astype(np.int32)
    np.testing.assert_array_equal(multi_pixels[k], raw * 2 - 3000)


def test_a_list_of_files_is_one_series(shared_data: Path) -> None:
    files = [shared_data / "pacsman" / "mr_head" / f"slice{n}.dcm" for n in (7, 3, 5, 4, 6)]
    volume = read_dicom_series(files)
    assert volume.number_of_slices == 5 and volume.warning_codes == []
    assert {p.name for p in volume.files} == {p.name for p in files}
    assert volume.geometry.origin_ras_mm[2] == pytest.approx(3.0)


def test_enhanced_mr_matches_single_frames(
    shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = shared_data / "pacsman" / "mr_head"
    single = read_dicom_series(folder)
    monkeypatch.setattr(pydicom.config, "datetime_conversion", True)
    slices = [pydicom.dcmread(p) for p in sorted(folder.glob("*.dcm"))]
    for dataset in slices:  # the converter needs these (possibly empty) attributes
        for keyword in (
            "Manufacturer",
            "PatientSex",
            "PatientBirthDate",
            "AccessionNumber",
            "StudyID",
            "ReferringPhysicianName",
            "StudyTime",
            "StudyDate",
        ):
            setattr(dataset, keyword, dataset.get(keyword, ""))
        dataset.SliceThickness = dataset.get("SliceThickness", "1")
    enhanced = LegacyConvertedEnhancedMRImage(slices, highdicom.UID(), 98, highdicom.UID(), 1)
    enhanced.save_as(tmp_path / "enhanced_mr.dcm")
    monkeypatch.setattr(pydicom.config, "datetime_conversion", False)

    multi = read_dicom_series(tmp_path / "enhanced_mr.dcm")
    assert multi.warning_codes == []
    assert multi.geometry == single.geometry
    np.testing.assert_array_equal(
        sitk.GetArrayFromImage(multi.image), sitk.GetArrayFromImage(single.image)
    )

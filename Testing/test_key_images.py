"""Key images: overlays drawn on radiograph pixels, RGB secondary captures, key object selection."""

from __future__ import annotations

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from MSKPlannerLib.key_images import (
    KeyImageError,
    build_key_image,
    build_key_object_selection,
    draw_overlay,
    grey_to_rgb,
)


@pytest.fixture
def hip(shared_data) -> pydicom.Dataset:
    return pydicom.dcmread(shared_data / "wg04" / "RG2_JPLL.dcm")


def test_overlay_draws_on_the_outline_only(hip) -> None:
    rgb = grey_to_rgb(hip.pixel_array[600:1000, 700:1100])
    square = np.array([[50, 50], [150, 50], [150, 150], [50, 150]])

    drawn = draw_overlay(rgb, [square], {"teardrop": (300, 300)}, outline_colour=(255, 0, 0))

    assert drawn.shape == rgb.shape and drawn.dtype == np.uint8
    assert tuple(drawn[50, 100]) == (255, 0, 0)  # on the top edge
    assert np.array_equal(drawn[100, 100], rgb[100, 100])  # inside, untouched
    assert not np.array_equal(drawn[295:306, 295:306], rgb[295:306, 295:306])  # the point mark


def test_key_image_joins_the_source_study_and_keeps_its_pixels(hip, tmp_path) -> None:
    rgb = draw_overlay(grey_to_rgb(hip.pixel_array[::8, ::8]), caption="cup 54 from 53.6 mm")

    image = build_key_image(rgb, hip, generate_uid(), generate_uid(), instance_number=1)
    image.save_as(tmp_path / "key.dcm")
    reread = pydicom.dcmread(tmp_path / "key.dcm")

    assert reread.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture
    assert reread.StudyInstanceUID == hip.StudyInstanceUID
    assert reread.PatientID == hip.PatientID
    assert reread.PhotometricInterpretation == "RGB"
    assert np.array_equal(reread.pixel_array, rgb)


def test_key_object_selection_flags_the_key_images(hip) -> None:
    rgb = np.zeros((32, 48, 3), dtype=np.uint8)
    images = [build_key_image(rgb, hip, generate_uid(), generate_uid(), n) for n in (1, 2)]

    selection = build_key_object_selection(images, generate_uid(), generate_uid())
    parsed = hd.ko.KeyObjectSelectionDocument.from_dataset(selection)

    referenced = {
        ref.ReferencedSOPInstanceUID
        for study in parsed.CurrentRequestedProcedureEvidenceSequence
        for series in study.ReferencedSeriesSequence
        for ref in series.ReferencedSOPSequence
    }
    flagged = [item for item in parsed.ContentSequence if item.ValueType == "IMAGE"]
    assert len(flagged) == 2
    assert referenced == {image.SOPInstanceUID for image in images}
    assert selection.StudyInstanceUID == hip.StudyInstanceUID


def test_a_grey_picture_is_refused(hip) -> None:
    with pytest.raises(KeyImageError, match="RGB uint8"):
        build_key_image(np.zeros((10, 10)), hip, generate_uid(), generate_uid(), 1)

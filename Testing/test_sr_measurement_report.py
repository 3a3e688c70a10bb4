"""The measurement table as a TID 1500 SR: codes, units, regions, and reading it back."""

from __future__ import annotations

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid
from test_seg_export import write_ct_series

from MSKPlannerLib.dicom_sr import (
    PRIVATE_SCHEME,
    SRError,
    build_measurement_report,
    measurement_groups,
    read_measurement_table,
    region_of_group,
)
from MSKPlannerLib.measurement_table import (
    VOLUME_GEOMETRY,
    Calibration,
    Measurement,
    MeasurementTable,
)


@pytest.fixture
def hip_radiograph(shared_data) -> pydicom.Dataset:
    return pydicom.dcmread(shared_data / "wg04" / "RG2_JPLL.dcm", stop_before_pixels=True)


def _table(radiograph: pydicom.Dataset, ct_series_uid: str) -> MeasurementTable:
    user = Calibration("known_length", (0.174, 0.174), "ruler of 100 mm", (0.2, 0.2))
    table = MeasurementTable()
    table.add(
        Measurement(
            "acetabular_diameter_mm",
            "Acetabular diameter",
            55.37,
            "mm",
            "Diameter of the circle fitted to the acetabular outline.",
            "manual",
            user,
            radiograph.SOPInstanceUID,
            0.8,
            {"region_px": [[985.0, 712.0], [900.0, 708.0], [745.0, 850.0]], "side": "left"},
        )
    )
    table.add(
        Measurement(
            "cobb_deg",
            "Cobb angle",
            7.25,
            "deg",
            "Angle between the upper endplate of the upper end vertebra and the lower one.",
            "automatic",
            VOLUME_GEOMETRY,
            ct_series_uid,
            1.5,
            {
                "upper": "vertebrae_L2",
                "lower": "vertebrae_L5",
                "region_ras_mm": [[1, 2, 3], [4, 5, 6]],
            },
        )
    )
    table.add(
        Measurement(
            "bone_volume_ml",
            "Femur volume",
            412.5,
            "ml",
            "Volume of the femur segment.",
            "automatic",
            VOLUME_GEOMETRY,
            ct_series_uid,
        )
    )
    table.add(
        Measurement(
            "femoral_offset_mm",
            "Femoral offset",
            41.2,
            "mm",
            "Distance from head centre to shaft axis.",
            "manual",
            user,
            "/cases/hip/radiograph.dcm",
        )
    )
    table.not_measured["lld_mm"] = "missing landmark(s) teardrop_left"
    return table


def _written_report(
    shared_data, radiograph: pydicom.Dataset, tmp_path
) -> tuple[pydicom.Dataset, MeasurementTable, pydicom.Dataset]:
    """Header of a CT slice, the table citing it and the radiograph, the SR read back."""
    ct = pydicom.dcmread(write_ct_series(shared_data, tmp_path / "ct")[0], stop_before_pixels=True)
    table = _table(radiograph, ct.SeriesInstanceUID)
    sources = {radiograph.SOPInstanceUID: radiograph, ct.SeriesInstanceUID: ct}
    sr = build_measurement_report(table, [radiograph, ct], generate_uid(), generate_uid(), sources)
    sr.save_as(tmp_path / "sr.dcm")
    return ct, table, pydicom.dcmread(tmp_path / "sr.dcm")


def test_every_row_reads_back_the_same(shared_data, hip_radiograph, tmp_path) -> None:
    _, table, reread = _written_report(shared_data, hip_radiograph, tmp_path)

    expected = table.to_dict()
    # A source known only as a local file is cited by its base name, never by its path.
    assert expected["rows"][3]["source_image"] == "/cases/hip/radiograph.dcm"
    expected["rows"][3]["source_image"] = "radiograph.dcm"
    assert read_measurement_table(reread).to_dict() == expected
    assert isinstance(hd.sr.srread(tmp_path / "sr.dcm"), hd.sr.Comprehensive3DSR)


def test_the_sr_cites_uids_and_never_a_local_path(shared_data, hip_radiograph, tmp_path) -> None:
    path = shared_data / "wg04" / "RG2_JPLL.dcm"
    calibration = Calibration("pixel_spacing", (0.2, 0.2), f"{path}: PixelSpacing 0.2 mm")
    table = MeasurementTable()
    for key, source in (("offset_change_mm", str(path)), ("leg_length_change_mm", "a/b/c.dcm")):
        table.add(Measurement(key, key, 1.0, "mm", "", "manual", calibration, source))

    sr = build_measurement_report(
        table, [hip_radiograph], generate_uid(), generate_uid(), {str(path): hip_radiograph}
    )

    text = str(sr)
    assert len(_text_values(sr)) >= 8
    assert "/" not in "".join(str(item.get("TextValue", "")) for item in _text_values(sr))
    assert str(path.parent) not in text and "a/b/" not in text
    rows = read_measurement_table(sr).rows
    assert [row.source_image for row in rows] == [hip_radiograph.SOPInstanceUID, "c.dcm"]
    assert rows[0].calibration.detail == "RG2_JPLL.dcm: PixelSpacing 0.2 mm"


def _text_values(dataset: pydicom.Dataset) -> list[pydicom.Dataset]:
    items = []
    for item in dataset.get("ContentSequence", []):
        if item.ValueType == "TEXT":
            items.append(item)
        items += _text_values(item)
    return items


def test_codes_units_and_regions(shared_data, hip_radiograph, tmp_path) -> None:
    ct, _, sr = _written_report(shared_data, hip_radiograph, tmp_path)
    groups = measurement_groups(sr)
    numbers = [next(i for i in g.ContentSequence if i.ValueType == "NUM") for g in groups]
    names = [n.ConceptNameCodeSequence[0] for n in numbers]
    concepts = [(c.CodingSchemeDesignator, c.get("CodeValue") or c.LongCodeValue) for c in names]
    units = [n.MeasuredValueSequence[0].MeasurementUnitsCodeSequence[0] for n in numbers]

    assert concepts[0] == ("SCT", "81827009")  # Diameter
    assert concepts[1] == ("SCT", "285285000")  # Cobb angle
    assert concepts[2] == (PRIVATE_SCHEME, "bone_volume_ml")
    assert concepts[3] == (PRIVATE_SCHEME, "femoral_offset_mm")  # a long code value
    assert [(u.CodingSchemeDesignator, u.CodeValue) for u in units] == [
        ("UCUM", "mm"),
        ("UCUM", "deg"),
        ("UCUM", "mL"),
        ("UCUM", "mm"),
    ]
    region_2d = region_of_group(groups[0])
    assert region_2d["type"] == "SCOORD"
    assert region_2d["referenced_sop_instance_uid"] == hip_radiograph.SOPInstanceUID
    assert np.allclose(region_2d["points"], [[985, 712], [900, 708], [745, 850]])
    region_3d = region_of_group(groups[1])
    assert region_3d["type"] == "SCOORD3D"
    assert region_3d["frame_of_reference_uid"] == ct.FrameOfReferenceUID
    assert np.allclose(region_3d["points"], [[-1, -2, 3], [-4, -5, 6]])  # RAS -> LPS
    assert region_of_group(groups[2]) is None
    # The row whose source is a plain file refers to no image and still reads back.
    assert region_of_group(groups[3]) is None
    assert sr.StudyInstanceUID == hip_radiograph.StudyInstanceUID
    assert sr.PatientID == hip_radiograph.PatientID


def test_an_empty_table_or_no_evidence_is_refused(hip_radiograph) -> None:
    with pytest.raises(SRError, match="empty"):
        build_measurement_report(
            MeasurementTable(), [hip_radiograph], generate_uid(), generate_uid()
        )
    with pytest.raises(SRError, match="evidence"):
        build_measurement_report(
            _table(hip_radiograph, "1.2.3"), [], generate_uid(), generate_uid()
        )


def test_an_sr_that_is_not_a_measurement_report_is_refused(shared_data) -> None:
    other = pydicom.dcmread(shared_data / "highdicom" / "sr_document.dcm")
    other.ConceptNameCodeSequence[0].CodeValue = "18748-4"

    with pytest.raises(SRError, match="not a TID 1500"):
        read_measurement_table(other)


def test_a_foreign_measurement_report_reads_with_its_codes(shared_data) -> None:
    foreign = pydicom.dcmread(shared_data / "highdicom" / "sr_document_with_multiple_groups.dcm")

    table = read_measurement_table(foreign)

    assert table.rows
    assert all(np.isfinite(row.value) and row.unit for row in table.rows)

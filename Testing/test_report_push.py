"""SR, SEG and key images of a case folder stored on a real Orthanc, read back, and an
interrupted upload retried without storing anything twice."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from PIL import Image
from test_seg_export import SLICES, vertebra_labels, write_ct_series

from MSKPlannerLib.dicom_outputs import find_case_inputs, write_case_dicom
from MSKPlannerLib.dicom_sr import read_measurement_table
from MSKPlannerLib.measurement_table import VOLUME_GEOMETRY, Measurement, MeasurementTable
from MSKPlannerLib.pacs_upload import Outbox
from MSKPriorsLib.dicomweb import DicomWebClient
from MSKPriorsLib.servers import server_from_url
from mskworkbench import cli
from mskworkbench.local_orthanc import LocalOrthanc

pytestmark = pytest.mark.pacs


@pytest.fixture
def case_dir(shared_data: Path, tmp_path: Path) -> Path:
    """A case folder: measurement table, source CT series, two key-image PNGs."""
    case = tmp_path / "case"
    paths = write_ct_series(shared_data, case / "source")
    series_uid = pydicom.dcmread(paths[0], stop_before_pixels=True).SeriesInstanceUID
    table = MeasurementTable()
    table.add(
        Measurement(
            "cobb_deg",
            "Cobb angle",
            6.4,
            "deg",
            "Angle between the upper endplate of L2 and the lower endplate of L5.",
            "automatic",
            VOLUME_GEOMETRY,
            series_uid,
            1.2,
            {
                "upper": "vertebrae_L2",
                "lower": "vertebrae_L5",
                "region_ras_mm": [[0, 20, 100], [0, 20, 160]],
            },
        )
    )
    table.not_measured["hka_deg"] = "missing landmark(s) hip_center"
    table.write_json(case / "measurements.json")
    (case / "key_images").mkdir()
    rng = np.random.default_rng(7)
    for name in ("spine", "bones"):
        picture = rng.integers(0, 255, size=(60, 90, 3), dtype=np.uint8)
        Image.fromarray(picture).save(case / "key_images" / f"{name}.png")
    return case


def _labels_path(shared_data: Path) -> Path:
    return shared_data / "totalsegmentator" / "ct_volume_vertebrae_labels.nii.gz"


def _client(
    server: LocalOrthanc, monkeypatch: pytest.MonkeyPatch, retries: int = 0
) -> DicomWebClient:
    monkeypatch.setenv("MSKWB_PACS_USERNAME", server.username)
    monkeypatch.setenv("MSKWB_PACS_PASSWORD", server.password)
    return DicomWebClient(server_from_url(server.dicomweb_url), retries=retries)


def test_report_round_trips_through_orthanc(
    shared_data, case_dir, empty_orthanc, monkeypatch, capsys
) -> None:
    monkeypatch.setenv("MSKWB_PACS_USERNAME", empty_orthanc.username)
    monkeypatch.setenv("MSKWB_PACS_PASSWORD", empty_orthanc.password)
    argv = ["report", str(case_dir), "--labels", str(_labels_path(shared_data)), "--push"]
    argv += ["--pacs", empty_orthanc.dicomweb_url, "--json"]

    assert cli.main(argv) == 0
    first = json.loads(capsys.readouterr().out)
    assert cli.main(argv) == 0
    second = json.loads(capsys.readouterr().out)

    names = ["sr", "seg", "key_image_1", "key_image_2", "key_objects"]
    assert first["written"] == names
    assert sorted(first["push"]["stored"]) == sorted(names)
    assert second["push"]["stored"] == [] and second["push"]["complete"]
    assert second["objects"] == first["objects"]  # the same UIDs on a rewrite

    manifest = json.loads((case_dir / "dicom" / "outbox.json").read_text())["objects"]
    client = _client(empty_orthanc, monkeypatch)
    fetched = {
        name: client.retrieve_instance_dataset(
            entry["study_uid"], entry["series_uid"], entry["sop_uid"]
        )
        for name, entry in manifest.items()
    }

    table = MeasurementTable.read_json(case_dir / "measurements.json")
    assert read_measurement_table(fetched["sr"]).to_dict() == table.to_dict()
    assert isinstance(hd.sr.Comprehensive3DSR.from_dataset(fetched["sr"]), hd.sr.Comprehensive3DSR)

    seg = hd.seg.Segmentation.from_dataset(fetched["seg"])
    labels = vertebra_labels(shared_data)
    label_kji = sitk.GetArrayFromImage(labels.image)
    present = sorted(int(v) for v in np.unique(label_kji[SLICES.start : SLICES.stop]) if v)
    assert [item.SegmentLabel for item in seg.SegmentSequence] == [labels.names[v] for v in present]

    for index, name in enumerate(("bones", "spine"), start=1):  # PNGs in name order
        picture = np.asarray(Image.open(case_dir / "key_images" / f"{name}.png").convert("RGB"))
        assert np.array_equal(fetched[f"key_image_{index}"].pixel_array, picture)
    study_uid = fetched["seg"].StudyInstanceUID
    assert {ds.StudyInstanceUID for ds in fetched.values()} == {study_uid}


@pytest.mark.slow
def test_interrupted_upload_is_retried_without_storing_twice(
    shared_data, case_dir, tmp_path, monkeypatch
) -> None:
    server = LocalOrthanc(tmp_path / "interrupted-pacs")
    server.start()
    try:
        inputs = find_case_inputs(case_dir, label_map=_labels_path(shared_data))
        outbox = Outbox(case_dir / "dicom")
        names = write_case_dicom(inputs, outbox)["written"]
        files_before = {
            p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in outbox.folder.glob("*.dcm")
        }
        posts: list[str] = []

        def count_posts(answer, *args, **kwargs):
            if answer.request.method == "POST":
                posts.append(answer.request.body[-2000:].hex())
            return answer

        def stop_after_second(name: str) -> None:
            if name == names[1]:
                server.stop()

        client = _client(server, monkeypatch)
        client.session.hooks["response"].append(count_posts)
        interrupted = outbox.upload(client, server.dicomweb_url, after_each=stop_after_second)

        assert interrupted.stored == names[:2]
        assert list(interrupted.failed) == [names[2]]
        assert interrupted.pending == names[3:]
        assert {
            p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in outbox.folder.glob("*.dcm")
        } == files_before  # a failed upload loses nothing locally

        # The acknowledgement of the second object is lost: the manifest forgets it.
        reopened = Outbox(case_dir / "dicom")
        reopened.manifest["objects"][names[1]]["stored"] = {}
        reopened._save()

        server.start()  # same storage, same port
        retry_client = _client(server, monkeypatch)
        retry_client.session.hooks["response"].append(count_posts)
        retried = Outbox(case_dir / "dicom").upload(retry_client, server.dicomweb_url)

        assert retried.already_present == [names[1]]
        assert retried.stored == names[2:]
        assert retried.complete
        assert len(posts) == len(names)  # every object sent exactly once over both attempts
        stored = {
            ref.sop_uid
            for entry in reopened.manifest["objects"].values()
            for ref in retry_client.search_instances(entry["study_uid"], entry["series_uid"])
        }
        assert stored == {entry["sop_uid"] for entry in reopened.manifest["objects"].values()}
        assert Outbox(case_dir / "dicom").upload(retry_client, server.dicomweb_url).stored == []
    finally:
        server.stop()


def test_report_without_a_source_series_names_the_folder(tmp_path, capsys) -> None:
    case = tmp_path / "empty-case"
    case.mkdir()
    MeasurementTable(not_measured={"cobb_deg": "no labels"}).write_json(case / "measurements.json")

    assert cli.main(["report", str(case)]) == 2
    assert f"{case}: no source DICOM series" in capsys.readouterr().err
    assert cli.main(["report", str(case), "--push"]) == 2
    assert "--push needs --pacs" in capsys.readouterr().err


def test_a_row_of_another_patient_refuses_the_whole_report(
    case_dir: Path, shared_data: Path, capsys
) -> None:
    other_patient = shared_data / "wg04" / "RG2_JPLL.dcm"  # patient 10RG2
    table = MeasurementTable.read_json(case_dir / "measurements.json")
    table.add(
        Measurement(
            "offset_change_mm",
            "Offset change",
            2.0,
            "mm",
            "",
            "manual",
            VOLUME_GEOMETRY,
            str(other_patient),
        )
    )
    table.write_json(case_dir / "measurements.json")

    assert cli.main(["report", str(case_dir)]) == 2

    error = capsys.readouterr().err
    assert "offset_change_mm" in error and "RG2_JPLL.dcm" in error and "another patient" in error
    assert not list((case_dir / "dicom").glob("*.dcm"))


def test_a_row_citing_a_case_file_by_path_is_cited_by_uid(case_dir: Path) -> None:
    source = sorted((case_dir / "source").rglob("*.dcm"))[0]
    table = MeasurementTable.read_json(case_dir / "measurements.json")
    table.add(
        Measurement(
            "bone_volume_ml",
            "Femur volume",
            400.0,
            "ml",
            "",
            "automatic",
            VOLUME_GEOMETRY,
            str(source),
        )
    )
    table.write_json(case_dir / "measurements.json")

    write_case_dicom(find_case_inputs(case_dir), Outbox(case_dir / "dicom"))

    sr = pydicom.dcmread(case_dir / "dicom" / "sr.dcm")
    rows = {row.key: row for row in read_measurement_table(sr).rows}
    assert rows["bone_volume_ml"].source_image == pydicom.dcmread(source).SOPInstanceUID
    assert str(case_dir) not in str(sr)

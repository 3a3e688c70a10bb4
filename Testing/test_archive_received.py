"""Received parts checked from the bytes kept while writing, and stored whatever the batching."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from MSKPriorsLib.archive import CorruptInstanceError, LocalArchive, read_instance_header
from MSKPriorsLib.dicomweb import DicomWebClient
from MSKPriorsLib.records import SeriesRecord
from MSKPriorsLib.retrieval import BatchStore, retrieve_into_archive
from MSKPriorsLib.retrieval_checks import HEAD_BYTES, ReceivedFile, check_received
from MSKPriorsLib.servers import PacsServer
from mskworkbench.local_orthanc import LocalOrthanc

PASSWORD_VARIABLE = "TEST_RECEIVED_ORTHANC_PASSWORD"


def _received(path: Path, data: bytes) -> ReceivedFile:
    """What the network writer keeps of ``data`` after writing it to ``path``."""
    path.write_bytes(data)
    return ReceivedFile(path, len(data), data[:HEAD_BYTES], data[-8:])


@pytest.fixture
def mr_slice(shared_data: Path) -> Path:
    """One real MR head slice (uncompressed, 256x256)."""
    return sorted((shared_data / "pacsman" / "mr_head").glob("*.dcm"))[0]


def test_a_check_from_kept_bytes_agrees_with_reading_the_file(
    mr_slice: Path, tmp_path: Path
) -> None:
    data = mr_slice.read_bytes()
    received = _received(tmp_path / "a.part", data)

    assert check_received(received) == read_instance_header(mr_slice)


@pytest.mark.parametrize("folder", ["wg04", "dcm_qa_ts", "dcm_qa_ct", "pacsman", "highdicom"])
def test_checks_from_kept_bytes_agree_with_reading_every_real_file(
    folder: str, shared_data: Path, tmp_path: Path
) -> None:
    # The check of a received file walks the header's raw elements when the file is plain
    # and leaves the rest to pydicom.dcmread; both must index what reading the file does,
    # and refuse the same files once their last 100 bytes are cut.
    checked = 0
    for source in sorted(p for p in (shared_data / folder).rglob("*") if p.is_file()):
        try:
            expected = read_instance_header(source)
        except CorruptInstanceError:
            continue  # not DICOM (licences, NIfTI, DICOMDIR-like files)
        data = source.read_bytes()

        assert check_received(_received(tmp_path / "whole.part", data)) == expected, source

        cut_file = tmp_path / "cut.dcm"
        cut_file.write_bytes(data[:-100])
        try:
            read_instance_header(cut_file)
            file_refused = False
        except CorruptInstanceError:
            file_refused = True
        try:
            check_received(_received(tmp_path / "cut.part", data[:-100]))
            bytes_refused = False
        except CorruptInstanceError:
            bytes_refused = True
        assert bytes_refused == file_refused, source
        checked += 1
    assert checked > 0


def test_a_header_longer_than_the_kept_bytes_is_read_from_the_file(
    mr_slice: Path, tmp_path: Path
) -> None:
    ds = pydicom.dcmread(mr_slice)
    ds.add_new(0x00291010, "OB", bytes(3 * HEAD_BYTES))  # a large private block
    ds.save_as(tmp_path / "long.dcm")
    data = (tmp_path / "long.dcm").read_bytes()
    received = _received(tmp_path / "long.part", data)

    header = check_received(received)

    assert header.sop_uid == ds.SOPInstanceUID and header.series_uid == ds.SeriesInstanceUID
    # The same file cut short is still refused, through the file read.
    cut = _received(tmp_path / "cut.part", data[:-100])
    with pytest.raises(CorruptInstanceError, match="truncated"):
        check_received(cut)


def test_truncated_and_garbage_parts_are_refused_from_kept_bytes(
    mr_slice: Path, tmp_path: Path
) -> None:
    data = mr_slice.read_bytes()
    sop_uid = str(pydicom.dcmread(mr_slice, stop_before_pixels=True).SOPInstanceUID)

    with pytest.raises(CorruptInstanceError, match=re.escape(f"instance {sop_uid} is truncated")):
        check_received(_received(tmp_path / "short.part", data[: len(data) - 1000]))
    with pytest.raises(CorruptInstanceError, match=re.escape("garbage.part")):
        check_received(_received(tmp_path / "garbage.part", b"\x00" * 200_000))


@pytest.mark.pacs
@pytest.mark.parametrize(("waiting_parts", "batch_files"), [(1, 1), (2, 5), (32, 64)])
def test_every_part_is_stored_whatever_the_waiting_room_and_batch_size(
    waiting_parts: int,
    batch_files: int,
    empty_orthanc: LocalOrthanc,
    shared_data: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 24 real slices: one part waiting at most (the network thread waits for the store at
    # every part) and batches of one, a batch size that leaves a short last batch, the
    # defaults (the whole series in one batch).
    files = sorted((shared_data / "pacsman" / "mr_head").glob("*.dcm"))[:24]
    series_uid = generate_uid()
    originals = []
    for path in files:
        ds = pydicom.dcmread(path)
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        originals.append(ds)
    monkeypatch.setenv(PASSWORD_VARIABLE, empty_orthanc.password)
    server = PacsServer(
        "received-orthanc",
        empty_orthanc.dicomweb_url,
        "basic",
        empty_orthanc.username,
        password_env=PASSWORD_VARIABLE,
    )
    client = DicomWebClient(server)
    client.store_instances(originals)
    record = SeriesRecord(series_uid, str(originals[0].StudyInstanceUID), number_of_instances=24)
    monkeypatch.setattr(BatchStore, "max_waiting_parts", waiting_parts)
    monkeypatch.setattr(BatchStore, "max_batch_files", batch_files)
    archive = LocalArchive(tmp_path / "archive")

    result = retrieve_into_archive(client, archive, [record])

    paths = archive.instance_paths(series_uid)
    assert result.failures == [] and len(paths) == 24
    # Neither parts nor the spare files made ahead are left behind.
    assert list(archive.incoming_dir.iterdir()) == []
    by_uid = {ds.SOPInstanceUID: ds for ds in originals}
    for path in paths:
        stored = pydicom.dcmread(path)
        assert np.array_equal(stored.pixel_array, by_uid[stored.SOPInstanceUID].pixel_array)


def test_encapsulated_pixel_data_followed_by_trailing_padding_is_complete(
    shared_data: Path, tmp_path: Path
) -> None:
    # RG2_RLE.dcm ends with a (FFFC,FFFC) padding element after the pixel data delimiter.
    rle = shared_data / "wg04" / "RG2_RLE.dcm"
    assert list(pydicom.dcmread(rle))[-1].tag == 0xFFFCFFFC
    data = rle.read_bytes()
    sop_uid = str(pydicom.dcmread(rle, stop_before_pixels=True).SOPInstanceUID)

    assert read_instance_header(rle).sop_uid == sop_uid
    assert check_received(_received(tmp_path / "rle.part", data)).sop_uid == sop_uid
    # Cut inside the last fragment: refused, and the message names the file and the instance.
    delimiter = data.rfind(b"\xfe\xff\xdd\xe0")
    cut = tmp_path / "RG2_cut.dcm"
    cut.write_bytes(data[: delimiter - 500])
    with pytest.raises(CorruptInstanceError, match=re.escape(f"RG2_cut.dcm: instance {sop_uid}")):
        read_instance_header(cut)
    with pytest.raises(CorruptInstanceError, match="truncated"):
        check_received(_received(tmp_path / "cut.part", data[: delimiter - 500]))


@pytest.mark.parametrize("folder", ["wg04", "dcm_qa_ts"])
def test_every_real_file_of_a_folder_imports(
    folder: str, shared_data: Path, tmp_path: Path
) -> None:
    with LocalArchive(tmp_path / "archive") as archive:
        summary = archive.import_folder(shared_data / folder)

    dicom_files = [p for p in (shared_data / folder).iterdir() if p.suffix == ".dcm"]
    assert summary.failed == []
    assert summary.stored == len(dicom_files) > 0


def test_an_implicit_vr_file_keeps_its_orientation_and_names(
    shared_data: Path, tmp_path: Path
) -> None:
    # Implicit VR elements carry no VR of their own: the dictionary's must be used, or the
    # orientation is indexed as a Python list and lost.
    source = shared_data / "dcm_qa_ts" / "2.dcm"
    ds = pydicom.dcmread(source, stop_before_pixels=True)
    assert ds.file_meta.TransferSyntaxUID.is_implicit_VR
    data = source.read_bytes()

    from_bytes = check_received(_received(tmp_path / "implicit.part", data))
    with LocalArchive(tmp_path / "archive") as archive:
        stored = archive.store_file(source)
        series = archive.search_series(stored.study_uid)

    assert from_bytes == stored == read_instance_header(source)
    assert stored.patient.name == str(ds.PatientName)
    expected = [float(value) for value in ds.ImageOrientationPatient]
    assert series[0].extra["image_orientation_patient"] == pytest.approx(expected)

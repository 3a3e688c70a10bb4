"""Test helpers that write DICOM: real slices again as new studies, or new empty instances."""

from __future__ import annotations

from pathlib import Path

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid


def copy_series(files: list[Path], folder: Path, **changes: str) -> list[Path]:
    """Write copies of real slices as a new study and series, with header attributes changed.

    ``changes`` maps DICOM keywords to new values (``StudyDate="20130206"``); the study,
    series and instance UIDs are always new.
    """
    folder.mkdir(parents=True)
    study_uid, series_uid = generate_uid(), generate_uid()
    written = []
    for index, path in enumerate(files):
        ds = pydicom.dcmread(path)
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        for keyword, value in changes.items():
            setattr(ds, keyword, value)
        target = folder / f"{index:03d}.dcm"
        ds.save_as(target, enforce_file_format=True)
        written.append(target)
    return written


def study_uid_of(files: list[Path]) -> str:
    """StudyInstanceUID of the first file."""
    return str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)


def new_instance(sop_class_uid: str) -> Dataset:
    """An empty instance of ``sop_class_uid`` with a new SOPInstanceUID and its file meta.

    The transfer syntax is explicit VR little endian; save it with
    ``save_as(path, enforce_file_format=True)``.
    """
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class_uid)
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    return ds

"""Test helpers that write real DICOM slices again as new studies (new UIDs, changed tags)."""

from __future__ import annotations

from pathlib import Path

import pydicom
from pydicom.uid import generate_uid


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

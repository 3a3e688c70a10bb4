"""Checking received DICOM files before the archive takes them, and reading what it indexes.

A file is accepted only when pydicom reads it as Part 10, it has its study, series and SOP
instance UIDs, and its pixel data is complete (the declared length is present, or an
encapsulated pixel data element ends with its delimiter). Only the indexed attributes are
decoded, so the check is cheap enough to run on every instance of a retrieval.
"""

from __future__ import annotations

import logging
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pydicom
from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.errors import InvalidDicomError

from MSKPriorsLib.records import PatientIdentity

logger = logging.getLogger(__name__)


class ArchiveError(RuntimeError):
    """The archive cannot store or find something; the message names the file or UID."""


class CorruptInstanceError(ArchiveError):
    """A file is not a complete DICOM instance (truncated, garbage, or missing its UIDs)."""


class PatientConflictError(ArchiveError):
    """An instance names a different patient than the study already archived under its UID."""

    relative_path: Path | None = None


@dataclass(frozen=True)
class InstanceHeader:
    """What the index keeps of one instance (read from its header).

    ``orientation_lps`` is ImageOrientationPatient as DICOM text (six direction cosines,
    LPS, backslash-separated), empty when absent.
    """

    sop_uid: str
    series_uid: str
    study_uid: str
    patient: PatientIdentity
    study_date: str = ""
    study_time: str = ""
    study_description: str = ""
    accession_number: str = ""
    modality: str = ""
    series_number: int = 0
    series_description: str = ""
    body_part: str = ""
    laterality: str = ""
    instance_number: int = 0
    sop_class_uid: str = ""
    transfer_syntax: str = ""
    orientation_lps: str = ""


# Value representations whose bytes are plain ASCII, read without pydicom's conversion
# (which costs more than the rest of the check); text that may use another character set
# (names, descriptions, IDs) goes through pydicom.
_ASCII_VRS = frozenset({"UI", "DA", "TM", "CS", "IS", "AS", "DS"})


def _text(ds: pydicom.Dataset, keyword: str) -> str:
    tag = tag_for_keyword(keyword)
    if tag is None or tag not in ds:
        return ""
    element = ds.get_item(tag)
    if isinstance(element, RawDataElement) and element.VR in _ASCII_VRS:
        raw = element.value or b""
        return raw.decode("ascii", "replace").strip("\x00 ")
    value = ds[tag].value
    return "" if value is None else str(value).strip()


def _integer(ds: pydicom.Dataset, keyword: str) -> int:
    try:
        return int(_text(ds, keyword) or 0)
    except ValueError:
        return 0


def header_from_dataset(ds: pydicom.Dataset) -> InstanceHeader:
    """Extract the indexed attributes of one instance.

    Raises
    ------
    CorruptInstanceError
        When the SOP instance, series or study UID is missing.
    """
    uids = {k: _text(ds, k) for k in ("SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID")}
    meta = getattr(ds, "file_meta", None)
    if not uids["SOPInstanceUID"] and meta is not None:
        uids["SOPInstanceUID"] = str(meta.get("MediaStorageSOPInstanceUID", "")).strip()
    missing = [k for k, v in uids.items() if not v]
    if missing:
        raise CorruptInstanceError(f"instance without {', '.join(missing)}")
    syntax = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
    return InstanceHeader(
        sop_uid=uids["SOPInstanceUID"],
        series_uid=uids["SeriesInstanceUID"],
        study_uid=uids["StudyInstanceUID"],
        patient=PatientIdentity(
            patient_id=_text(ds, "PatientID"),
            issuer=_text(ds, "IssuerOfPatientID"),
            name=_text(ds, "PatientName"),
            birth_date=_text(ds, "PatientBirthDate"),
        ),
        study_date=_text(ds, "StudyDate"),
        study_time=_text(ds, "StudyTime"),
        study_description=_text(ds, "StudyDescription"),
        accession_number=_text(ds, "AccessionNumber"),
        modality=_text(ds, "Modality"),
        series_number=_integer(ds, "SeriesNumber"),
        series_description=_text(ds, "SeriesDescription"),
        body_part=_text(ds, "BodyPartExamined").upper(),
        laterality=_text(ds, "Laterality") or _text(ds, "ImageLaterality"),
        instance_number=_integer(ds, "InstanceNumber"),
        sop_class_uid=_text(ds, "SOPClassUID"),
        transfer_syntax=syntax,
        orientation_lps=_text(ds, "ImageOrientationPatient"),
    )


def read_instance_header(path: Path) -> InstanceHeader:
    """Check that ``path`` is one complete Part-10 DICOM file and return its header.

    The pixel data is not read: a file that ends before the declared end of its pixel data
    (or, when encapsulated, without the closing delimiter) is refused as truncated.

    Raises
    ------
    CorruptInstanceError
        When the file is not DICOM, is truncated, or lacks its UIDs (the message names it).
    """
    size = path.stat().st_size
    try:
        with path.open("rb") as handle:
            ds = pydicom.dcmread(handle, stop_before_pixels=True)
            declared_end = _pixel_data_end(handle, ds, size)
    except (InvalidDicomError, EOFError, ValueError, KeyError, OSError) as error:
        raise CorruptInstanceError(f"{path.name} is not a readable DICOM file: {error}") from error
    try:
        header = header_from_dataset(ds)
    except CorruptInstanceError as error:
        raise CorruptInstanceError(f"{path.name}: {error}") from error
    if declared_end > size:
        raise CorruptInstanceError(
            f"instance {header.sop_uid} is truncated ({size} bytes, {declared_end} declared)"
        )
    return header


_SEQUENCE_END = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"


def _pixel_data_end(handle: BinaryIO, ds: pydicom.Dataset, size: int) -> int:
    """Byte offset where the pixel data element says the file ends (``size`` if none).

    ``handle`` stands where pydicom stopped, at the start of the pixel data element. Native
    pixel data declares its length; encapsulated pixel data (undefined length) must end
    with a sequence delimiter.
    """
    start = handle.tell()
    head = handle.read(12)
    if len(head) < 8:
        return size
    little = ds.is_little_endian if ds.is_little_endian is not None else True
    order = "<" if little else ">"
    implicit = bool(ds.is_implicit_VR)
    if implicit:
        (length,) = struct.unpack(f"{order}I", head[4:8])
        header_bytes = 8
    elif head[4:6] in (b"OB", b"OW", b"OF", b"OD", b"OL", b"OV", b"UN"):
        (length,) = struct.unpack(f"{order}I", head[8:12])
        header_bytes = 12
    else:
        (length,) = struct.unpack(f"{order}H", head[6:8])
        header_bytes = 8
    if length == 0xFFFFFFFF:
        handle.seek(max(size - 8, 0))
        return size if handle.read(8) == _SEQUENCE_END else size + 1
    return start + header_bytes + length


def fsync_file(path: Path) -> None:
    """Flush a file's content to the disk."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def looks_like_dicom(path: Path) -> bool:
    """Whether a file carries the Part-10 ``DICM`` marker (so a failure to read it matters)."""
    try:
        with path.open("rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False

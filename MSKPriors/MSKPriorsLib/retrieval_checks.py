"""Checking received DICOM files before the archive takes them, and reading what it indexes.

A file is accepted only when pydicom reads it as Part 10, it has its study, series and SOP
instance UIDs, and its pixel data is complete (the declared length is present, or an
encapsulated pixel data element ends with its delimiter). Only the indexed attributes are
decoded, so the check is cheap enough to run on every instance of a retrieval.
"""

from __future__ import annotations

import io
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
            start = handle.tell()
            element = handle.read(12)
            handle.seek(max(size - 8, 0))
            tail = handle.read(8)
            declared_end = _pixel_data_end(element, start, ds, size, tail, handle)
    except (InvalidDicomError, EOFError, ValueError, KeyError, OSError) as error:
        raise CorruptInstanceError(f"{path.name} is not a readable DICOM file: {error}") from error
    return _checked(header_from_parsed(ds, path.name), path.name, size, declared_end)


@dataclass(frozen=True)
class ReceivedFile:
    """A file just written to the archive's ``incoming/``, with what its check needs.

    The writer keeps the first :data:`HEAD_BYTES` and the last 8 bytes it wrote, so the
    check needs no second read of the file.

    Attributes
    ----------
    path
        The file in ``incoming/``.
    size_bytes
        Bytes written.
    head
        The first ``min(size_bytes, HEAD_BYTES)`` bytes.
    tail
        The last ``min(size_bytes, 8)`` bytes.
    """

    path: Path
    size_bytes: int
    head: bytes
    tail: bytes


HEAD_BYTES = 1 << 16


def check_received(received: ReceivedFile) -> InstanceHeader:
    """Check a received file from the bytes kept while writing it; same rules as on disk.

    The header is parsed from :attr:`ReceivedFile.head`; when the elements before the
    pixel data do not all fit in it, the file itself is read (:func:`read_instance_header`).

    Raises
    ------
    CorruptInstanceError
        When the file is not DICOM, is truncated, or lacks its UIDs (the message names it).
    """
    name, size, head = received.path.name, received.size_bytes, received.head
    whole = size <= len(head)
    try:
        buffer = io.BytesIO(head)
        ds = pydicom.dcmread(buffer, stop_before_pixels=True)
        start = buffer.tell()
        # A header cut by the end of ``head`` stops the parse early: read the file instead.
        if not whole and start + 12 > len(head):
            return read_instance_header(received.path)
        declared_end = _pixel_data_end(
            head[start : start + 12], start, ds, size, received.tail, buffer if whole else None
        )
        # Encapsulated pixel data followed by trailing elements: walk its items in the file.
        if declared_end > size and not whole:
            return read_instance_header(received.path)
    except (InvalidDicomError, EOFError, ValueError, KeyError, OSError) as error:
        if not whole:
            return read_instance_header(received.path)
        raise CorruptInstanceError(f"{name} is not a readable DICOM file: {error}") from error
    return _checked(header_from_parsed(ds, name), name, size, declared_end)


def header_from_parsed(ds: pydicom.Dataset, name: str) -> InstanceHeader:
    """:func:`header_from_dataset` with the file ``name`` in its error message."""
    try:
        return header_from_dataset(ds)
    except CorruptInstanceError as error:
        raise CorruptInstanceError(f"{name}: {error}") from error


def _checked(header: InstanceHeader, name: str, size: int, declared_end: int) -> InstanceHeader:
    if declared_end > size:
        raise CorruptInstanceError(
            f"{name}: instance {header.sop_uid} is truncated ({size} bytes, {declared_end} declared)"
        )
    return header


_SEQUENCE_END = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"


def _pixel_data_end(
    element: bytes,
    start: int,
    ds: pydicom.Dataset,
    size: int,
    tail: bytes,
    handle: BinaryIO | None = None,
) -> int:
    """Byte offset where the pixel data element says the file ends (``size`` if none).

    ``element`` holds the (up to 12) bytes at ``start``, where pydicom stopped: the start of
    the pixel data element. Native pixel data declares its length; encapsulated pixel data
    (undefined length) must end with a sequence delimiter. That is usually the file's last 8
    bytes ``tail``; when it is not (trailing elements such as (FFFC,FFFC) padding follow),
    the fragment items are walked in ``handle`` (the whole file, seekable) to find it.
    Without ``handle`` such a file reports ``size + 1``.
    """
    head = element
    if len(head) < 8:
        return size
    little = ds.is_little_endian if ds.is_little_endian is not None else True
    order = "<" if little else ">"
    implicit = bool(ds.is_implicit_VR)
    if implicit:
        (length,) = struct.unpack(f"{order}I", head[4:8])
        header_bytes = 8
    elif head[4:6] in (b"OB", b"OW", b"OF", b"OD", b"OL", b"OV", b"UN"):
        if len(head) < 12:
            return size + 1
        (length,) = struct.unpack(f"{order}I", head[8:12])
        header_bytes = 12
    else:
        (length,) = struct.unpack(f"{order}H", head[6:8])
        header_bytes = 8
    if length == 0xFFFFFFFF:
        if tail == _SEQUENCE_END:
            return size
        if handle is None:
            return size + 1
        return _delimiter_end(handle, start + header_bytes, order, size)
    return start + header_bytes + length


def _delimiter_end(handle: BinaryIO, offset: int, order: str, size: int) -> int:
    """End offset of the sequence delimiter closing encapsulated pixel data items.

    Walks the items from ``offset``; returns ``size + 1`` when the file ends first or an
    element other than an item or the delimiter is met (a damaged or truncated file).
    """
    while offset + 8 <= size:
        handle.seek(offset)
        group, element, length = struct.unpack(f"{order}HHI", handle.read(8))
        if (group, element) == (0xFFFE, 0xE0DD):
            return offset + 8
        if (group, element) != (0xFFFE, 0xE000) or length == 0xFFFFFFFF:
            return size + 1
        offset += 8 + length
    return size + 1


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

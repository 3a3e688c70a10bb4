"""Checking received DICOM files before the archive takes them, and reading what it indexes.

A file is accepted only when pydicom reads it as Part 10, it has its study, series and SOP
instance UIDs, and its pixel data is complete (the declared length is present, or an
encapsulated pixel data element ends with its delimiter). Only the indexed attributes are
decoded, so the check is cheap enough to run on every instance of a retrieval.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue

from MSKPriorsLib.dicom_head import file_encoding, pixel_data_end, read_plain_head
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
# (which costs more than the rest of the check). Text that may use another character set
# (names, descriptions, IDs) is read the same way when its bytes are ASCII and one value
# (every DICOM character set agrees with ASCII there); otherwise pydicom decodes it.
_ASCII_VRS = frozenset({"UI", "DA", "TM", "CS", "IS", "AS", "DS"})
_TAGS: dict[str, int] = {}


def _tag(keyword: str) -> int | None:
    tag = _TAGS.get(keyword)
    if tag is None:
        tag = tag_for_keyword(keyword)
        if tag is not None:
            _TAGS[keyword] = tag
    return tag


def _text(ds: pydicom.Dataset, keyword: str) -> str:
    tag = _tag(keyword)
    element = ds.get_item(tag) if tag is not None else None
    if tag is None or element is None:
        return ""
    if isinstance(element, RawDataElement):
        # Implicit VR files leave the VR to the dictionary.
        vr = element.VR or dictionary_VR(tag)
        raw = element.value or b""
        if vr in _ASCII_VRS:
            return raw.decode("ascii", "replace").strip("\x00 ")
        if raw.isascii() and b"\\" not in raw:
            return raw.decode("ascii").rstrip("\x00 ").strip()
    value = ds[tag].value
    if value is None:
        return ""
    if isinstance(value, MultiValue):  # as stored: values separated by backslashes
        return "\\".join(str(item) for item in value).strip()
    return str(value).strip()


def _integer(ds: pydicom.Dataset, keyword: str) -> int:
    try:
        return int(_text(ds, keyword) or 0)
    except ValueError:
        return 0


HEADER_KEYWORDS = (
    "SOPInstanceUID",
    "SeriesInstanceUID",
    "StudyInstanceUID",
    "PatientID",
    "IssuerOfPatientID",
    "PatientName",
    "PatientBirthDate",
    "StudyDate",
    "StudyTime",
    "StudyDescription",
    "AccessionNumber",
    "Modality",
    "SeriesNumber",
    "SeriesDescription",
    "BodyPartExamined",
    "Laterality",
    "ImageLaterality",
    "InstanceNumber",
    "SOPClassUID",
    "ImageOrientationPatient",
)
"""The attributes :func:`header_from_dataset` reads (and all a received file's check parses)."""

HEADER_TAGS = frozenset(
    tag for tag in (tag_for_keyword(keyword) for keyword in HEADER_KEYWORDS) if tag is not None
)


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
            implicit, little = file_encoding(ds)
            declared_end = pixel_data_end(element, start, implicit, little, size, tail, handle)
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
    plain = read_plain_head(head, HEADER_TAGS)
    if plain is not None:
        ds, start, implicit, little = plain
        declared_end = pixel_data_end(
            head[start : start + 12], start, implicit, little, size, received.tail, None
        )
        if declared_end <= size or whole:
            return _checked(header_from_parsed(ds, name), name, size, declared_end)
        # Encapsulated pixel data followed by trailing elements: walk its items in the file.
        return read_instance_header(received.path)
    try:
        buffer = io.BytesIO(head)
        ds = pydicom.dcmread(buffer, stop_before_pixels=True)
        start = buffer.tell()
        # A header cut by the end of ``head`` stops the parse early: read the file instead.
        if not whole and start + 12 > len(head):
            return read_instance_header(received.path)
        implicit, little = file_encoding(ds)
        declared_end = pixel_data_end(
            head[start : start + 12],
            start,
            implicit,
            little,
            size,
            received.tail,
            buffer if whole else None,
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


def looks_like_dicom(path: Path) -> bool:
    """Whether a file carries the Part-10 ``DICM`` marker (so a failure to read it matters)."""
    try:
        with path.open("rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False

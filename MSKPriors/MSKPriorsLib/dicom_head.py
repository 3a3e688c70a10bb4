"""The first bytes of a Part-10 DICOM file: its header elements, where its pixel data ends.

How to use::

    from MSKPriorsLib.dicom_head import pixel_data_end, read_plain_head

    plain = read_plain_head(first_bytes)          # None: leave it to pydicom.dcmread
    if plain is not None:
        ds, start, implicit, little = plain       # raw elements before the pixel data
        end = pixel_data_end(first_bytes[start : start + 12], start, implicit, little,
                             size, last_8_bytes)  # > size: the file is truncated

These work on bytes kept in memory, so a received file is checked without reading it back
(:func:`MSKPriorsLib.retrieval_checks.check_received`).
"""

from __future__ import annotations

import io
import logging
import struct
from collections.abc import Collection
from typing import BinaryIO

import pydicom
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import FileMetaDataset
from pydicom.filereader import data_element_generator
from pydicom.tag import BaseTag
from pydicom.uid import UID

logger = logging.getLogger(__name__)


_PIXEL_DATA_TAGS = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})
_TRANSFER_SYNTAX_TAG = BaseTag(0x00020010)


def _after_file_meta(tag: BaseTag, vr: str | None, length: int) -> bool:
    return tag >> 16 != 0x0002


def _at_pixel_data(tag: BaseTag, vr: str | None, length: int) -> bool:
    return tag in _PIXEL_DATA_TAGS


def read_plain_head(
    head: bytes, tags: Collection[int] | None = None
) -> tuple[pydicom.Dataset, int, bool, bool] | None:
    """The elements before the pixel data, from the first bytes of a plain Part-10 file.

    Walks the raw elements with pydicom's element reader, without building what
    :func:`pydicom.dcmread` builds around them (half its time on a CT slice header). Plain
    means: a preamble and ``DICM``, a file meta group, a transfer syntax pydicom knows that
    is not deflated, and pixel data starting inside ``head``. With ``tags``, only those
    elements (and the character set) are kept: the others are stepped over unread, which
    halves the walk on a CT header of a few hundred elements.

    Returns
    -------
    tuple or None
        ``(dataset of raw elements with its file_meta, offset of the pixel data element,
        implicit VR, little endian)``; None for anything else, which
        :func:`pydicom.dcmread` then reads (and reports when it is damaged).
    """
    if head[128:132] != b"DICM":
        return None
    buffer = io.BytesIO(head)
    buffer.seek(132)
    try:
        meta: dict[BaseTag, RawDataElement | DataElement] = {
            e.tag: e for e in data_element_generator(buffer, False, True, _after_file_meta)
        }
        syntax_element = meta.get(_TRANSFER_SYNTAX_TAG)
        if syntax_element is None or not isinstance(syntax_element.value, bytes):
            return None
        syntax = UID(syntax_element.value.decode("ascii").strip("\x00 "))
        if not syntax.is_transfer_syntax or syntax.is_deflated:
            return None
        implicit, little = syntax.is_implicit_VR, syntax.is_little_endian
        elements = {
            e.tag: e
            for e in data_element_generator(
                buffer,
                implicit,
                little,
                _at_pixel_data,
                specific_tags=list(tags) if tags else None,
            )
        }
    # Whatever stops this walk (a damaged header) is for dcmread to read and report.
    except Exception:
        return None
    start = buffer.tell()
    if len(head) < start + 8:
        return None
    group, number = struct.unpack("<HH" if little else ">HH", head[start : start + 4])
    if (group << 16) | number not in _PIXEL_DATA_TAGS:
        return None
    ds = pydicom.Dataset(elements)
    ds.file_meta = FileMetaDataset(pydicom.Dataset(meta))
    ds.set_original_encoding(implicit, little)
    return ds, start, implicit, little


def file_encoding(ds: pydicom.Dataset) -> tuple[bool, bool]:
    """``(implicit VR, little endian)`` of a dataset read from a file."""
    implicit, little = ds.original_encoding
    return bool(implicit), little is not False


_SEQUENCE_END = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"


def pixel_data_end(
    element: bytes,
    start: int,
    implicit: bool,
    little: bool,
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
    order = "<" if little else ">"
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

"""Streaming reader for the ``multipart/related`` answers of WADO-RS.

The body is parsed as it arrives (python-multipart's incremental parser), so a series of
hundreds of megabytes never sits in memory. Quirks of real servers are handled here: the
boundary is taken from the answer's Content-Type (quoted or not), every part may carry its
own headers, a single-part answer (``application/dicom`` instead of multipart) is read as one
part, and an empty body or ``204 No Content`` means no parts at all. A body that stops before
its closing boundary raises :class:`TruncatedAnswerError`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

logger = logging.getLogger(__name__)

DEFAULT_CHUNK_BYTES = 1 << 20


class MultipartFormatError(ValueError):
    """The answer claims to be multipart but cannot be parsed as such."""


class TruncatedAnswerError(ConnectionError):
    """The answer ended before its last part was complete (server died or connection broke)."""


@dataclass
class PartHeaders:
    """Headers of one part, with lower-case names."""

    values: dict[str, str] = field(default_factory=dict)

    @property
    def content_type(self) -> str:
        """The part's media type without parameters (``application/dicom``, ...)."""
        return self.values.get("content-type", "").split(";")[0].strip().lower()

    @property
    def content_location(self) -> str:
        """The part's Content-Location, or empty."""
        return self.values.get("content-location", "")


def media_type_and_boundary(content_type: str) -> tuple[str, str]:
    """Split a Content-Type header into its media type and multipart boundary.

    Returns
    -------
    tuple of str
        ``(media_type, boundary)`` with the media type in lower case; the boundary is empty
        for non-multipart types. Quotes around the boundary are removed.
    """
    media, options = parse_options_header(content_type or "")
    boundary = options.get(b"boundary", b"").decode("latin-1").strip('"')
    return media.decode("latin-1").strip().lower(), boundary


class PartReceiver:
    """Callbacks for :func:`stream_parts`; subclass or pass callables to :class:`CallbackReceiver`."""

    def begin(self, headers: PartHeaders) -> None:
        """A part starts (its headers are known)."""

    def data(self, chunk: memoryview) -> None:
        """Some bytes of the current part (valid only during the call)."""

    def end(self) -> None:
        """The current part is complete."""

    def abort(self) -> None:
        """The current part will never be completed (the answer was cut)."""


@dataclass
class _ParserState:
    receiver: PartReceiver
    header_field: bytearray = field(default_factory=bytearray)
    header_value: bytearray = field(default_factory=bytearray)
    headers: dict[str, str] = field(default_factory=dict)
    in_part: bool = False
    data_started: bool = False
    finished: bool = False
    parts: int = 0


def _multipart_callbacks(state: _ParserState) -> dict[str, Callable[..., None]]:
    def on_part_begin() -> None:
        state.headers = {}
        state.in_part = True
        state.data_started = False

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state.header_field += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state.header_value += data[start:end]

    def on_header_end() -> None:
        name = state.header_field.decode("latin-1").strip().lower()
        state.headers[name] = state.header_value.decode("latin-1").strip()
        state.header_field.clear()
        state.header_value.clear()

    def on_headers_finished() -> None:
        state.receiver.begin(PartHeaders(dict(state.headers)))
        state.data_started = True

    def on_part_data(data: bytes, start: int, end: int) -> None:
        state.receiver.data(memoryview(data)[start:end])

    def on_part_end() -> None:
        if state.data_started:
            state.receiver.end()
            state.parts += 1
        state.in_part = False
        state.data_started = False

    def on_end() -> None:
        state.finished = True

    return {
        "on_part_begin": on_part_begin,
        "on_header_field": on_header_field,
        "on_header_value": on_header_value,
        "on_header_end": on_header_end,
        "on_headers_finished": on_headers_finished,
        "on_part_data": on_part_data,
        "on_part_end": on_part_end,
        "on_end": on_end,
    }


def stream_parts(content_type: str, chunks: Iterable[bytes], receiver: PartReceiver) -> int:
    """Feed an answer body, chunk by chunk, to ``receiver`` one part at a time.

    Parameters
    ----------
    content_type
        The answer's Content-Type header.
    chunks
        The body as it arrives (for example ``response.iter_content(1 << 20)``).
    receiver
        Gets ``begin``/``data``/``end`` for every complete part, ``abort`` for a cut one.

    Returns
    -------
    int
        Number of complete parts.

    Raises
    ------
    TruncatedAnswerError
        When the body ends inside a part or before the closing boundary.
    MultipartFormatError
        When a multipart body does not follow its declared boundary.
    """
    media_type, boundary = media_type_and_boundary(content_type)
    if not media_type.startswith("multipart/"):
        return _single_part(content_type, chunks, receiver)
    if not boundary:
        raise MultipartFormatError(f"multipart answer without a boundary ({content_type!r})")
    state = _ParserState(receiver)
    parser = MultipartParser(
        boundary.encode("latin-1"),
        _multipart_callbacks(state),  # type: ignore[arg-type]
        max_header_count=64,
        max_header_size=16384,
    )
    received = 0
    iterator = iter(chunks)
    while True:
        try:
            chunk = next(iterator)
        except StopIteration:
            break
        except OSError as error:
            if state.data_started:
                receiver.abort()
            raise TruncatedAnswerError(
                f"the answer broke off after {received} bytes and {state.parts} complete "
                f"parts: {error}"
            ) from error
        if not chunk:
            continue
        received += len(chunk)
        try:
            parser.write(chunk)
        except MultipartParseError as error:
            if state.data_started:
                receiver.abort()
            raise MultipartFormatError(f"malformed multipart answer: {error}") from error
        except BaseException:
            if state.data_started:
                receiver.abort()
            raise
    if received == 0:
        return 0
    if not state.finished:
        if state.data_started:
            receiver.abort()
        raise TruncatedAnswerError(
            f"the answer ended after {received} bytes without its closing boundary "
            f"({state.parts} complete parts)"
        )
    return state.parts


def _single_part(content_type: str, chunks: Iterable[bytes], receiver: PartReceiver) -> int:
    started = False
    iterator = iter(chunks)
    while True:
        try:
            chunk = next(iterator)
        except StopIteration:
            break
        except OSError as error:
            if started:
                receiver.abort()
            raise TruncatedAnswerError(f"the single-part answer broke off: {error}") from error
        if not chunk:
            continue
        if not started:
            receiver.begin(PartHeaders({"content-type": content_type}))
            started = True
        receiver.data(memoryview(chunk))
    if not started:
        return 0
    receiver.end()
    return 1


class CollectingReceiver(PartReceiver):
    """Keep every part in memory: for small answers only (frames, metadata, single instances)."""

    def __init__(self) -> None:
        self.parts: list[tuple[PartHeaders, bytes]] = []
        self._headers = PartHeaders()
        self._buffer = bytearray()

    def begin(self, headers: PartHeaders) -> None:
        self._headers = headers
        self._buffer = bytearray()

    def data(self, chunk: memoryview) -> None:
        self._buffer += chunk

    def end(self) -> None:
        self.parts.append((self._headers, bytes(self._buffer)))

    def abort(self) -> None:
        self._buffer = bytearray()

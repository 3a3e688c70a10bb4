"""A DICOMweb client for one server: QIDO-RS search, WADO-RS retrieval, STOW-RS upload.

How to use::

    from MSKPriorsLib.dicomweb import DicomWebClient
    from MSKPriorsLib.servers import resolve_server

    with DicomWebClient(resolve_server("hospital")) as client:
        studies = client.search_studies(patient_id="12345")          # list[StudyRecord]
        series = client.search_series(studies[0].study_uid)          # list[SeriesRecord]
        client.stream_series(study_uid, series_uid, receiver)        # parts to a receiver
        metadata = client.retrieve_series_metadata(study_uid, series_uid)
        frames = client.retrieve_frames(study_uid, series_uid, sop_uid, [1])
        client.store_instances([dataset])                            # STOW-RS

To retrieve into the local archive (resuming, several series in flight, progress), use
:func:`MSKPriorsLib.retrieval.retrieve_into_archive`.

Every request asks for an uncompressed transfer (``Accept-Encoding: identity``: Orthanc
otherwise gzips each instance, which costs more than it saves on a LAN), uses the server's
timeouts and TLS settings, and is retried with exponential back-off on connection errors
and 502/503/504 answers (never on other 4xx/5xx answers). Records carry the server name as
their ``source``.
"""

from __future__ import annotations

import logging
import socket
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import pydicom
import requests
from pydicom.filebase import DicomBytesIO

from MSKPriorsLib.records import PatientIdentity, SeriesRecord, StudyRecord
from MSKPriorsLib.retrieval_multipart import (
    DEFAULT_CHUNK_BYTES,
    CollectingReceiver,
    PartReceiver,
    stream_parts,
)
from MSKPriorsLib.servers import PacsServer

logger = logging.getLogger(__name__)

TRANSIENT_STATUS = frozenset({502, 503, 504})
STUDY_FIELDS = (
    "StudyDescription",
    "ModalitiesInStudy",
    "PatientBirthDate",
    "IssuerOfPatientID",
    "NumberOfStudyRelatedSeries",
    "NumberOfStudyRelatedInstances",
    "AccessionNumber",
    "StudyTime",
)
SERIES_FIELDS = (
    "SeriesDescription",
    "BodyPartExamined",
    "Laterality",
    "NumberOfSeriesRelatedInstances",
    "SeriesNumber",
    "ImageOrientationPatient",
)
INSTANCE_FIELDS = ("InstanceNumber", "SOPClassUID", "ImageLaterality")
DICOM_ACCEPT = 'multipart/related; type="application/dicom"; transfer-syntax=*'
FRAMES_ACCEPT = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'


class DicomWebError(RuntimeError):
    """A DICOMweb request failed; the message names the server and the request."""

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class DicomWebAuthError(DicomWebError):
    """The server refused the credentials (401) or the access (403)."""


@dataclass(frozen=True)
class InstanceRef:
    """One instance as QIDO-RS lists it."""

    sop_uid: str
    series_uid: str
    study_uid: str
    sop_class_uid: str = ""
    instance_number: int = 0


def _value(item: dict[str, Any], keyword: str) -> Any:
    """First value of a DICOM JSON attribute, or None."""
    tag = pydicom.datadict.tag_for_keyword(keyword)
    if tag is None:
        return None
    element = item.get(f"{tag:08X}")
    if not element:
        return None
    values = element.get("Value") or []
    if not values:
        return None
    first = values[0]
    if isinstance(first, dict):
        return first.get("Alphabetic", "")
    return first


def _values(item: dict[str, Any], keyword: str) -> list[str]:
    tag = pydicom.datadict.tag_for_keyword(keyword)
    element = item.get(f"{tag:08X}") if tag is not None else None
    if not element:
        return []
    return [str(v) for v in element.get("Value") or [] if v not in (None, "")]


def _text(item: dict[str, Any], keyword: str) -> str:
    value = _value(item, keyword)
    return "" if value is None else str(value).strip()


def _integer(item: dict[str, Any], keyword: str) -> int:
    value = _value(item, keyword)
    try:
        return int(value) if value not in (None, "") else 0
    except (TypeError, ValueError):
        return 0


def study_record_from_json(item: dict[str, Any], source: str) -> StudyRecord:
    """Convert one QIDO-RS study answer (DICOM JSON) to a :class:`StudyRecord`."""
    patient = PatientIdentity(
        patient_id=_text(item, "PatientID"),
        issuer=_text(item, "IssuerOfPatientID"),
        name=_text(item, "PatientName"),
        birth_date=_text(item, "PatientBirthDate"),
    )
    return StudyRecord(
        study_uid=_text(item, "StudyInstanceUID"),
        patient=patient,
        study_date=_text(item, "StudyDate"),
        study_time=_text(item, "StudyTime"),
        description=_text(item, "StudyDescription"),
        accession_number=_text(item, "AccessionNumber"),
        modalities=tuple(sorted(set(_values(item, "ModalitiesInStudy")))),
        body_parts=tuple(sorted({v.upper() for v in _values(item, "BodyPartExamined")})),
        lateralities=tuple(sorted(set(_values(item, "Laterality")))),
        number_of_series=_integer(item, "NumberOfStudyRelatedSeries"),
        number_of_instances=_integer(item, "NumberOfStudyRelatedInstances"),
        source=source,
    )


def series_record_from_json(item: dict[str, Any], source: str) -> SeriesRecord:
    """Convert one QIDO-RS series answer (DICOM JSON) to a :class:`SeriesRecord`.

    When the server reports ImageOrientationPatient at series level (Orthanc does),
    ``extra["image_orientation_patient"]`` holds its six direction cosines (LPS).
    """
    extra: dict[str, Any] = {}
    tag = pydicom.datadict.tag_for_keyword("ImageOrientationPatient")
    cosines = (item.get(f"{tag:08X}") or {}).get("Value") or []
    try:
        if len(cosines) == 6:
            extra["image_orientation_patient"] = [float(v) for v in cosines]
    except (TypeError, ValueError):
        extra = {}
    return SeriesRecord(
        series_uid=_text(item, "SeriesInstanceUID"),
        study_uid=_text(item, "StudyInstanceUID"),
        modality=_text(item, "Modality"),
        series_number=_integer(item, "SeriesNumber"),
        description=_text(item, "SeriesDescription"),
        body_part=_text(item, "BodyPartExamined").upper(),
        laterality=_text(item, "Laterality"),
        number_of_instances=_integer(item, "NumberOfSeriesRelatedInstances"),
        source=source,
        extra=extra,
    )


def query_string(params: Sequence[tuple[str, str]]) -> str:
    """Encode QIDO-RS query parameters, keeping the ``*`` and ``?`` of wildcard matching.

    Percent-encoded wildcards (``%2A``) are taken literally by some servers (Orthanc 1.10's
    DICOMweb plugin among them), so a search for ``MSKWB*`` would find nothing.
    """
    return urlencode(list(params), quote_via=quote, safe="*?")


def _causes(error: BaseException) -> list[BaseException]:
    """``error`` and every exception it wraps (causes, contexts, urllib3 ``reason``)."""
    found: list[BaseException] = []
    pending: list[object] = [error]
    while pending:
        current = pending.pop()
        if not isinstance(current, BaseException) or any(current is f for f in found):
            continue
        found.append(current)
        pending += [getattr(current, "reason", None), current.__cause__, current.__context__]
        pending += list(current.args)
    return found


#: Short reasons for the socket errors behind a failed connection, most telling first.
_FAILURE_REASONS: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], str], ...] = (
    (ConnectionRefusedError, "connection refused"),
    (socket.gaierror, "host name not found"),
    (ConnectionResetError, "connection reset"),
    ((requests.Timeout, TimeoutError), "timed out"),
    (OSError, "network error"),
)


def connection_failure_reason(error: BaseException) -> str:
    """A few words saying why a connection failed, such as ``connection refused``.

    ``requests`` wraps the socket error in several urllib3 exceptions whose messages repeat
    the whole URL and the objects' addresses; the wrapped socket error says what happened.
    """
    causes = _causes(error)
    for kinds, reason in _FAILURE_REASONS:
        if any(isinstance(cause, kinds) for cause in causes):
            return reason
    return type(error).__name__


class DicomWebClient:
    """DICOMweb access to one :class:`~MSKPriorsLib.servers.PacsServer`.

    Parameters
    ----------
    server
        Where and how to connect (URL, authentication, TLS, timeouts).
    retries
        Extra attempts after a transient failure (connection error, 502, 503, 504).
    backoff_s
        First wait before a retry, in seconds; doubled on each further retry.
    page_size
        Results asked for per QIDO-RS request (``limit``); later pages use ``offset``.
    pool_connections
        HTTP connections kept open to the server (one per transfer in flight).
    """

    def __init__(
        self,
        server: PacsServer,
        retries: int = 3,
        backoff_s: float = 0.5,
        page_size: int = 200,
        pool_connections: int = 8,
    ) -> None:
        self.server = server
        self.retries = retries
        self.backoff_s = backoff_s
        self.page_size = page_size
        self.session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(
            pool_connections=pool_connections, pool_maxsize=pool_connections
        )
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.auth = server.requests_auth()
        self.session.verify = server.verify
        self.session.headers["Accept-Encoding"] = "identity"
        self.session.headers["User-Agent"] = "mskworkbench"

    def __repr__(self) -> str:
        return f"DicomWebClient(server={self.server.name!r}, url={self.server.url!r})"

    def close(self) -> None:
        """Close the HTTP connections."""
        self.session.close()

    def __enter__(self) -> DicomWebClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- HTTP ---------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Sequence[tuple[str, str]] | None = None,
        headers: dict[str, str] | None = None,
        data: bytes | None = None,
        stream: bool = False,
    ) -> requests.Response:
        """Send one request with retries; return the answer or raise :class:`DicomWebError`.

        Parameters
        ----------
        method, path
            HTTP method and a path relative to the server's DICOMweb URL (``/studies``).
        params, headers, data
            Query parameters, extra headers and body.
        stream
            Leave the body unread (for streaming it to disk).
        """
        url = f"{self.server.url}{path}"
        what = f"{method} {path} on {self.server.name}"
        attempt = 0
        while True:
            try:
                answer = self.session.request(
                    method,
                    url,
                    params=query_string(params or []),
                    headers=headers,
                    data=data,
                    stream=stream,
                    timeout=self.server.timeout,
                    # Passed on every request: a session-level value loses against the
                    # REQUESTS_CA_BUNDLE environment variable in requests.
                    verify=self.server.verify,
                )
            except requests.exceptions.SSLError as error:
                raise DicomWebError(f"{what}: TLS certificate check failed ({error})") from error
            except (requests.ConnectionError, requests.Timeout) as error:
                reason = connection_failure_reason(error)
                logger.debug("%s: %s", what, error)
                if attempt >= self.retries:
                    raise DicomWebError(
                        f"PACS {self.server.url} unreachable ({reason}) after "
                        f"{attempt + 1} attempts ({method} {path})"
                    ) from error
                self._wait(attempt, f"PACS {self.server.url}", f"unreachable: {reason}")
                attempt += 1
                continue
            if answer.status_code in TRANSIENT_STATUS and attempt < self.retries:
                answer.close()
                self._wait(attempt, what, f"answered HTTP {answer.status_code}")
                attempt += 1
                continue
            if answer.status_code >= 400:
                self._raise_for(answer, what)
            return answer

    def _wait(self, attempt: int, what: str, reason: str) -> None:
        delay_s = self.backoff_s * (2**attempt)
        logger.warning(
            "%s %s; retry %d of %d in %.1f s", what, reason, attempt + 1, self.retries, delay_s
        )
        time.sleep(delay_s)

    def _raise_for(self, answer: requests.Response, what: str) -> None:
        status = answer.status_code
        answer.close()
        if status in (401, 403):
            raise DicomWebAuthError(
                f"{what}: the server refused the credentials (HTTP {status}); check the user "
                "name and the password or token of this server",
                status,
            )
        raise DicomWebError(f"{what}: HTTP {status} {answer.reason}", status)

    # -- QIDO-RS ------------------------------------------------------------------------

    def _search(
        self, path: str, filters: dict[str, str], fields: Sequence[str], key: str
    ) -> list[dict[str, Any]]:
        """All matches of a QIDO-RS search, paged with limit/offset, without duplicates.

        Servers that ignore ``limit`` (more answers than asked) or ``offset`` (a page that
        repeats an earlier one) are detected and the paging stops there.
        """
        base: list[tuple[str, str]] = [(k, v) for k, v in filters.items() if v]
        base += [("includefield", name) for name in fields]
        found: dict[str, dict[str, Any]] = {}
        offset = 0
        while True:
            params = [*base, ("limit", str(self.page_size)), ("offset", str(offset))]
            answer = self.request(
                "GET", path, params=params, headers={"Accept": "application/dicom+json"}
            )
            try:
                items = answer.json() if answer.status_code != 204 and answer.content else []
            except ValueError as error:
                raise DicomWebError(
                    f"GET {path} on {self.server.name}: the answer is not DICOM JSON ({error})"
                ) from error
            if not isinstance(items, list):
                raise DicomWebError(f"GET {path} on {self.server.name}: expected a JSON list")
            new = 0
            for item in items:
                uid = _text(item, key)
                if uid and uid not in found:
                    found[uid] = item
                    new += 1
            if len(items) < self.page_size or new == 0 or len(items) > self.page_size:
                if len(items) > self.page_size:
                    logger.info(
                        "%s ignores limit on %s: took its full answer", self.server.name, path
                    )
                elif items and new == 0:
                    logger.warning(
                        "%s ignores offset on %s: only the first %d matches can be listed",
                        self.server.name,
                        path,
                        len(found),
                    )
                return list(found.values())
            offset += len(items)

    def search_studies(
        self,
        patient_id: str | None = None,
        study_uid: str | None = None,
        accession_number: str | None = None,
        study_date: str | None = None,
        modality: str | None = None,
        issuer: str | None = None,
        patient_name: str | None = None,
    ) -> list[StudyRecord]:
        """Find studies (QIDO-RS ``/studies``); filters left as None are not sent.

        ``study_date`` takes DICOM ranges (``20200101-20201231``). ``patient_id``,
        ``patient_name`` and ``accession_number`` may hold the wildcards ``*`` and ``?``.
        Each record's body parts and lateralities are those the server reports at study level
        (often none; the series search fills them in).
        """
        filters = {
            "PatientID": patient_id or "",
            "PatientName": patient_name or "",
            "StudyInstanceUID": study_uid or "",
            "AccessionNumber": accession_number or "",
            "StudyDate": study_date or "",
            "ModalitiesInStudy": modality or "",
            "IssuerOfPatientID": issuer or "",
        }
        items = self._search("/studies", filters, STUDY_FIELDS, "StudyInstanceUID")
        return [study_record_from_json(item, self.server.name) for item in items]

    def search_patients(self, patient_id: str | None = None) -> list[PatientIdentity]:
        """Distinct patients of the matching studies (QIDO-RS has no patient level)."""
        identities = {record.patient for record in self.search_studies(patient_id=patient_id)}
        return sorted(identities, key=lambda p: (p.patient_id, p.issuer, p.name))

    def search_series(
        self, study_uid: str | None = None, series_uid: str | None = None
    ) -> list[SeriesRecord]:
        """Find the series of a study, or a series by UID anywhere (QIDO-RS ``/series``)."""
        path = f"/studies/{study_uid}/series" if study_uid else "/series"
        filters = {"SeriesInstanceUID": series_uid or ""}
        items = self._search(path, filters, SERIES_FIELDS, "SeriesInstanceUID")
        records = [series_record_from_json(item, self.server.name) for item in items]
        if study_uid:
            records = [
                r if r.study_uid else SeriesRecord(**{**r.to_dict(), "study_uid": study_uid})
                for r in records
            ]
        return records

    def search_instances(self, study_uid: str, series_uid: str) -> list[InstanceRef]:
        """List the instances of a series (QIDO-RS), sorted by InstanceNumber."""
        path = f"/studies/{study_uid}/series/{series_uid}/instances"
        items = self._search(path, {}, INSTANCE_FIELDS, "SOPInstanceUID")
        refs = [
            InstanceRef(
                sop_uid=_text(item, "SOPInstanceUID"),
                series_uid=series_uid,
                study_uid=study_uid,
                sop_class_uid=_text(item, "SOPClassUID"),
                instance_number=_integer(item, "InstanceNumber"),
            )
            for item in items
        ]
        return sorted(refs, key=lambda r: (r.instance_number, r.sop_uid))

    # -- WADO-RS ------------------------------------------------------------------------

    def _stream(self, path: str, accept: str, receiver: PartReceiver) -> int:
        answer = self.request("GET", path, headers={"Accept": accept}, stream=True)
        with answer:
            if answer.status_code == 204:
                return 0
            chunks: Iterator[bytes] = answer.iter_content(DEFAULT_CHUNK_BYTES)
            return stream_parts(answer.headers.get("Content-Type", ""), chunks, receiver)

    def stream_series(self, study_uid: str, series_uid: str, receiver: PartReceiver) -> int:
        """Stream every instance of a series (one WADO-RS request) to ``receiver``.

        Each part is one Part-10 DICOM file. Returns the number of complete parts; raises
        :class:`~MSKPriorsLib.retrieval_multipart.TruncatedAnswerError` when the answer is cut.
        """
        return self._stream(f"/studies/{study_uid}/series/{series_uid}", DICOM_ACCEPT, receiver)

    def stream_study(self, study_uid: str, receiver: PartReceiver) -> int:
        """Stream every instance of a study (one WADO-RS request) to ``receiver``."""
        return self._stream(f"/studies/{study_uid}", DICOM_ACCEPT, receiver)

    def stream_instance(
        self, study_uid: str, series_uid: str, sop_uid: str, receiver: PartReceiver
    ) -> int:
        """Stream one instance (WADO-RS) to ``receiver``."""
        path = f"/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}"
        return self._stream(path, DICOM_ACCEPT, receiver)

    def retrieve_instance(self, study_uid: str, series_uid: str, sop_uid: str) -> bytes:
        """Return one instance as Part-10 bytes (held in memory: one instance only)."""
        collector = CollectingReceiver()
        self.stream_instance(study_uid, series_uid, sop_uid, collector)
        if len(collector.parts) != 1:
            raise DicomWebError(
                f"instance {sop_uid} on {self.server.name}: expected one part, "
                f"got {len(collector.parts)}"
            )
        return collector.parts[0][1]

    def retrieve_instance_dataset(
        self, study_uid: str, series_uid: str, sop_uid: str
    ) -> pydicom.Dataset:
        """Return one instance as a pydicom dataset."""
        data = self.retrieve_instance(study_uid, series_uid, sop_uid)
        return pydicom.dcmread(DicomBytesIO(data))

    def retrieve_series_metadata(self, study_uid: str, series_uid: str) -> list[dict[str, Any]]:
        """Return the DICOM JSON metadata of every instance of a series (bulk data as URIs)."""
        path = f"/studies/{study_uid}/series/{series_uid}/metadata"
        answer = self.request("GET", path, headers={"Accept": "application/dicom+json"})
        return list(answer.json()) if answer.content else []

    def retrieve_study_metadata(self, study_uid: str) -> list[dict[str, Any]]:
        """Return the DICOM JSON metadata of every instance of a study."""
        answer = self.request(
            "GET", f"/studies/{study_uid}/metadata", headers={"Accept": "application/dicom+json"}
        )
        return list(answer.json()) if answer.content else []

    def retrieve_frames(
        self, study_uid: str, series_uid: str, sop_uid: str, frame_numbers: Sequence[int]
    ) -> list[bytes]:
        """Return the pixel data of frames (numbers start at 1) as the server stores them.

        Uncompressed frames are raw little-endian pixels (``Rows x Columns x samples``);
        compressed ones are their codestreams.
        """
        if not frame_numbers:
            return []
        numbers = ",".join(str(int(n)) for n in frame_numbers)
        path = f"/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}/frames/{numbers}"
        collector = CollectingReceiver()
        self._stream(path, FRAMES_ACCEPT, collector)
        return [data for _, data in collector.parts]

    # -- STOW-RS ------------------------------------------------------------------------

    def store_instances(
        self, datasets: Sequence[pydicom.Dataset | bytes], study_uid: str | None = None
    ) -> dict[str, Any]:
        """Upload instances (STOW-RS) and return the server's DICOM JSON answer.

        Raises
        ------
        DicomWebError
            When the server refuses the upload or reports failed instances.
        """
        boundary = uuid.uuid4().hex
        body = bytearray()
        for item in datasets:
            if isinstance(item, bytes | bytearray):
                payload = bytes(item)
            else:
                buffer = DicomBytesIO()
                pydicom.dcmwrite(buffer, item, enforce_file_format=True)
                payload = buffer.getvalue()
            body += f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
            body += payload
            body += b"\r\n"
        body += f"--{boundary}--\r\n".encode()
        path = f"/studies/{study_uid}" if study_uid else "/studies"
        headers = {
            "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
            "Accept": "application/dicom+json",
        }
        answer = self.request("POST", path, headers=headers, data=bytes(body))
        result: dict[str, Any] = answer.json() if answer.content else {}
        failed = result.get("00081198", {}).get("Value") or []
        if failed:
            raise DicomWebError(
                f"STOW-RS to {self.server.name}: {len(failed)} of {len(datasets)} instances "
                "were refused"
            )
        return result

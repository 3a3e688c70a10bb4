"""Answers of real servers that differ from Orthanc's, served by a real local HTTP server.

Canned DICOMweb answers (made from real DICOM files) cover single-part answers, headers on
every part, quoted boundaries, 204 and empty bodies, servers that ignore limit/offset,
transient 503s, corrupt and cut-off parts. A small proxy checks bearer tokens in front of
the real Orthanc, which has no bearer support of its own.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pydicom
import pytest
import requests

from MSKPriorsLib.archive import LocalArchive
from MSKPriorsLib.dicomweb import DicomWebAuthError, DicomWebClient, DicomWebError
from MSKPriorsLib.records import SeriesRecord
from MSKPriorsLib.retrieval import retrieve_into_archive
from MSKPriorsLib.retrieval_multipart import CollectingReceiver, TruncatedAnswerError
from MSKPriorsLib.servers import PacsServer
from mskworkbench.local_orthanc import LocalOrthanc

Handler = Callable[[BaseHTTPRequestHandler], None]


class CannedServer:
    """A threaded stdlib HTTP server answering each path with a handler function."""

    def __init__(self) -> None:
        self.routes: dict[str, Handler] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        canned = self

        class RequestHandler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                canned.requests.append((self.path, dict(self.headers)))
                route = canned.routes.get(self.path.split("?")[0])
                if route is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                route(self)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), RequestHandler)
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/dicom-web"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def canned() -> Iterator[CannedServer]:
    """A running canned-answer server."""
    server = CannedServer()
    yield server
    server.close()


@pytest.fixture
def slices(shared_data: Path) -> list[bytes]:
    """Four real MR slices as Part-10 bytes."""
    return [p.read_bytes() for p in sorted((shared_data / "pacsman" / "mr_head").glob("*.dcm"))[:4]]


def uids_of(data: bytes) -> tuple[str, str, str]:
    """(study, series, SOP instance) UIDs of a Part-10 file."""
    ds = pydicom.dcmread(pydicom.filebase.DicomBytesIO(data), stop_before_pixels=True)
    return str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)


def reply(status: int, content_type: str, body: bytes, close: bool = False) -> Handler:
    """A handler sending one fixed answer (``close``: no length, body ends at connection close)."""

    def handle(request: BaseHTTPRequestHandler) -> None:
        request.send_response(status)
        if content_type:
            request.send_header("Content-Type", content_type)
        if close:
            request.send_header("Connection", "close")
            request.close_connection = True
        else:
            request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)

    return handle


def multipart(parts: list[bytes], boundary: str, part_headers: bool = True) -> bytes:
    """A multipart/related body; each part with Content-Type, Content-Length, Content-Location."""
    body = b"\r\n"  # some servers start with an empty preamble line
    for number, data in enumerate(parts):
        body += f"--{boundary}\r\n".encode()
        if part_headers:
            body += (
                f"Content-Type: application/dicom\r\nContent-Length: {len(data)}\r\n"
                f"Content-Location: /instances/part-{number + 1}\r\nMIME-Version: 1.0\r\n"
            ).encode()
        body += b"\r\n" + data + b"\r\n"
    return body + f"--{boundary}--\r\n".encode()


def client_for(url: str, **options: Any) -> DicomWebClient:
    return DicomWebClient(PacsServer("canned", url), **options)


def series_path(study: str, series: str) -> str:
    return f"/dicom-web/studies/{study}/series/{series}"


@pytest.mark.parametrize(
    ("boundary", "content_type"),
    [
        ("b0undary-42", 'multipart/related; type="application/dicom"; boundary=b0undary-42'),
        ("a:b c/d", 'multipart/related; boundary="a:b c/d"; type="application/dicom"'),
    ],
)
def test_quoted_or_plain_boundaries_and_per_part_headers(
    canned: CannedServer, slices: list[bytes], tmp_path: Path, boundary: str, content_type: str
) -> None:
    study, series, _ = uids_of(slices[0])
    canned.routes[series_path(study, series)] = reply(
        200, content_type, multipart(slices, boundary)
    )
    archive = LocalArchive(tmp_path / "archive")
    record = SeriesRecord(series, study, number_of_instances=4)

    result = retrieve_into_archive(client_for(canned.url), archive, [record])

    assert result.failures == []
    assert archive.present_sop_uids(series) == {uids_of(s)[2] for s in slices}
    assert canned.requests[0][1]["Accept-Encoding"] == "identity"


def test_single_part_answers_where_multipart_was_expected(
    canned: CannedServer, slices: list[bytes]
) -> None:
    study, series, sop = uids_of(slices[1])
    canned.routes[f"{series_path(study, series)}/instances/{sop}"] = reply(
        200, "application/dicom", slices[1]
    )

    data = client_for(canned.url).retrieve_instance(study, series, sop)

    assert data == slices[1]


def test_no_content_and_empty_bodies_mean_no_matches(canned: CannedServer) -> None:
    canned.routes["/dicom-web/studies"] = reply(204, "", b"")
    canned.routes["/dicom-web/series"] = reply(200, "application/dicom+json", b"")
    canned.routes["/dicom-web/studies/1.2/series/3.4"] = reply(204, "", b"")
    client = client_for(canned.url)
    collector = CollectingReceiver()

    assert client.search_studies(patient_id="X") == []
    assert client.search_series(series_uid="1.2.3") == []
    assert client.stream_series("1.2", "3.4", collector) == 0 and collector.parts == []


def _study_json(number: int) -> dict[str, Any]:
    return {
        "0020000D": {"vr": "UI", "Value": [f"1.2.826.0.1.{number}"]},
        "00100020": {"vr": "LO", "Value": ["P1"]},
        "00081030": {"vr": "LO", "Value": [f"study {number}"]},
        "00080061": {"vr": "CS", "Value": ["MR", "CT"]},
        "00100010": {"vr": "PN", "Value": [{"Alphabetic": "DOE^JANE"}]},
    }


def test_servers_that_ignore_limit_or_offset(
    canned: CannedServer, caplog: pytest.LogCaptureFixture
) -> None:
    everything = json.dumps([_study_json(n) for n in range(25)]).encode()
    first_ten = json.dumps([_study_json(n) for n in range(10)]).encode()
    canned.routes["/dicom-web/studies"] = reply(200, "application/dicom+json", everything)
    canned.routes["/dicom-web/series"] = reply(200, "application/dicom+json", first_ten)
    client = client_for(canned.url, page_size=10)

    studies = client.search_studies(patient_id="P1")
    # The series route ignores offset: page two repeats page one, and paging must stop.
    repeated = client._search("/series", {}, (), "StudyInstanceUID")
    pages_asked = sum(1 for path, _ in canned.requests if path.startswith("/dicom-web/series"))

    assert len(studies) == 25 == len({s.study_uid for s in studies})
    assert studies[3].description == "study 3" and studies[3].modalities == ("CT", "MR")
    assert studies[3].patient.name == "DOE^JANE"
    assert pages_asked == 2 and len(repeated) == 10
    assert "ignores offset on /series" in caplog.text
    assert "includefield=StudyDescription" in canned.requests[0][0]


def test_transient_errors_are_retried_and_client_errors_are_not(canned: CannedServer) -> None:
    answers = iter([503, 502, 200])

    def flaky(request: BaseHTTPRequestHandler) -> None:
        reply(next(answers), "application/dicom+json", b"[]")(request)

    canned.routes["/dicom-web/studies"] = flaky
    client = client_for(canned.url, retries=3, backoff_s=0.01)

    assert client.search_studies() == []
    with pytest.raises(DicomWebError, match="HTTP 404") as raised:
        client.search_series(series_uid="9.9")
    assert raised.value.status_code == 404
    assert [p.split("?")[0] for p, _ in canned.requests].count("/dicom-web/series") == 1
    assert [p.split("?")[0] for p, _ in canned.requests].count("/dicom-web/studies") == 3


def test_corrupt_parts_are_refused_by_name_and_the_rest_is_stored(
    canned: CannedServer, slices: list[bytes], tmp_path: Path
) -> None:
    study, series, _ = uids_of(slices[0])
    truncated_sop = uids_of(slices[2])[2]
    parts = [slices[0], b"\x00" * 200 + b"this is not DICOM" * 50, slices[2][:20000], slices[3]]
    canned.routes[series_path(study, series)] = reply(
        200, 'multipart/related; type="application/dicom"; boundary=xyz', multipart(parts, "xyz")
    )
    archive = LocalArchive(tmp_path / "archive")

    result = retrieve_into_archive(
        client_for(canned.url), archive, [SeriesRecord(series, study, number_of_instances=4)]
    )

    failures = "\n".join(result.failures)
    assert len(result.failures) == 2
    assert "/instances/part-2" in failures
    assert f"instance {truncated_sop} is truncated" in failures
    assert archive.present_sop_uids(series) == {uids_of(slices[0])[2], uids_of(slices[3])[2]}
    assert len(list(archive.instances_dir.rglob("*.dcm"))) == 2
    assert list(archive.incoming_dir.iterdir()) == []


def test_an_answer_cut_mid_part_resumes_with_the_missing_instances(
    canned: CannedServer, slices: list[bytes], tmp_path: Path
) -> None:
    study, series, _ = uids_of(slices[0])
    body = multipart(slices, "cut")
    cut_at = body.index(slices[2]) + 5000  # two parts complete, the third cut off
    canned.routes[series_path(study, series)] = reply(
        200, 'multipart/related; type="application/dicom"; boundary=cut', body[:cut_at], close=True
    )
    listing = [
        {"00080018": {"vr": "UI", "Value": [uids_of(s)[2]]}, "00200013": {"vr": "IS", "Value": [n]}}
        for n, s in enumerate(slices)
    ]
    canned.routes[f"{series_path(study, series)}/instances"] = reply(
        200, "application/dicom+json", json.dumps(listing).encode()
    )
    for data in slices:
        sop = uids_of(data)[2]
        canned.routes[f"{series_path(study, series)}/instances/{sop}"] = reply(
            200,
            'multipart/related; type="application/dicom"; boundary=one',
            multipart([data], "one"),
        )
    archive = LocalArchive(tmp_path / "archive")
    client = client_for(canned.url, backoff_s=0.01)

    with pytest.raises(TruncatedAnswerError):
        client.stream_series(study, series, CollectingReceiver())
    result = retrieve_into_archive(
        client, archive, [SeriesRecord(series, study, number_of_instances=4)]
    )

    instance_requests = [p for p, _ in canned.requests if "/instances/" in p]
    assert result.failures == [] and result.series[0].complete
    assert archive.present_sop_uids(series) == {uids_of(s)[2] for s in slices}
    # Only the two instances missing after the cut were asked for one by one.
    assert len(instance_requests) == 2
    assert list(archive.incoming_dir.iterdir()) == []


class BearerProxy(CannedServer):
    """Checks ``Authorization: Bearer <token>`` and forwards GETs to Orthanc (basic auth)."""

    def __init__(self, orthanc: LocalOrthanc, token: str) -> None:
        super().__init__()
        self.orthanc, self.token = orthanc, token

    def forward(self, request: BaseHTTPRequestHandler) -> None:
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            reply(401, "text/plain", b"bad token")(request)
            return
        answer = requests.get(
            f"{self.orthanc.url}{request.path}",
            headers={"Accept": request.headers.get("Accept", "*/*"), "Accept-Encoding": "identity"},
            auth=self.orthanc.auth,
            timeout=30,
        )
        reply(answer.status_code, answer.headers.get("Content-Type", ""), answer.content)(request)


@pytest.mark.pacs
def test_bearer_tokens_through_a_checking_proxy(
    empty_orthanc: LocalOrthanc,
    slices: list[bytes],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ORTHANC_TEST_PASSWORD", empty_orthanc.password)
    DicomWebClient(
        PacsServer(
            "o",
            empty_orthanc.dicomweb_url,
            "basic",
            empty_orthanc.username,
            password_env="ORTHANC_TEST_PASSWORD",
        )
    ).store_instances(slices)
    proxy = BearerProxy(empty_orthanc, "good-token")
    proxy.routes = _ProxyRoutes(proxy.forward)  # type: ignore[assignment]
    try:
        monkeypatch.setenv("PROXY_TOKEN", "good-token")
        good = DicomWebClient(PacsServer("proxy", proxy.url, "bearer", token_env="PROXY_TOKEN"))
        monkeypatch.setenv("WRONG_TOKEN", "stolen-token")
        bad = DicomWebClient(PacsServer("proxy", proxy.url, "bearer", token_env="WRONG_TOKEN"))
        study, series, _ = uids_of(slices[0])
        archive = LocalArchive(tmp_path / "archive")

        found = good.search_studies(study_uid=study)
        result = retrieve_into_archive(good, archive, good.search_series(study))
        with pytest.raises(DicomWebAuthError, match="HTTP 401"):
            bad.search_studies()
    finally:
        proxy.close()

    assert [s.study_uid for s in found] == [study]
    assert result.failures == [] and len(archive.present_sop_uids(series)) == 4
    assert all(h.get("Authorization") == "Bearer good-token" for _, h in proxy.requests[:-1])


class _ProxyRoutes(dict[str, Handler]):
    """Every path goes to one handler."""

    def __init__(self, handler: Handler) -> None:
        super().__init__()
        self.handler = handler

    def get(self, key: str, default: Handler | None = None) -> Handler:  # type: ignore[override]
        return self.handler

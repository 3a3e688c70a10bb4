"""Several readers at once: ``mskwb serve`` gives each browser a viewer process of its own.

A real ``mskwb serve --pacs`` on the real Orthanc fixture serves two patients (a CT with its
prior, and a hip radiograph) to two real headless Chromium instances with separate profiles,
that is two readers. Each must see only its own patient, one reader's plan must not hold up
the other's search and study, a reload keeps the case, and a closed page's viewer process
is stopped and reaped. Screenshots are kept in ``Testing/artifacts/``.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pydicom
import pytest
import requests
from browser_driver import Browser, BrowserError
from dicomweb_client.api import DICOMwebClient
from dicomweb_client.session_utils import create_session_from_auth
from pydicom.uid import generate_uid
from viewer_server import exists_in_process_table, is_running, running_server

from MSKPriorsLib.archive import LocalArchive
from mskworkbench.local_orthanc import LocalOrthanc, free_loopback_port

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ARTIFACTS = Path(__file__).parent / "artifacts"
PATIENT_A = "MSKWB-READER-A"
PATIENT_B = "MSKWB-READER-B"
#: The front keeps a viewer this long after its last page closed (its default), plus margin.
VIEWER_STOP_WAIT_S = 15.0 + 45.0


def _with_patient(ds: pydicom.Dataset, patient_id: str, name: str, study_date: str) -> None:
    ds.PatientID = patient_id
    ds.PatientName = name
    ds.PatientBirthDate = "19600101"
    ds.StudyDate = study_date
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID


def _ct_study(shared_data: Path, study_date: str) -> list[pydicom.Dataset]:
    """The real 20-slice CT as one study of patient A (its header lacks IDs and a class)."""
    study_uid, series_uid = generate_uid(), generate_uid()
    datasets = []
    for path in sorted((shared_data / "totalsegmentator" / "ct_dicom").iterdir()):
        ds = pydicom.dcmread(path)
        _with_patient(ds, PATIENT_A, "READER^ALPHA", study_date)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
        ds.StudyDescription = "CT PELVIS"
        datasets.append(ds)
    return datasets


def _hip_radiograph(shared_data: Path) -> list[pydicom.Dataset]:
    """The real hip CR as patient B's only study."""
    ds = pydicom.dcmread(shared_data / "wg04" / "RG2_JPLL.dcm")
    _with_patient(ds, PATIENT_B, "READER^BRAVO", "20230405")
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    return [ds]


@pytest.fixture(scope="module")
def two_patients(orthanc: LocalOrthanc, shared_data: Path) -> LocalOrthanc:
    """Orthanc holding patient A (CT and its prior) and patient B (a hip radiograph)."""
    orthanc.clear()
    session = create_session_from_auth(
        requests.auth.HTTPBasicAuth(orthanc.username, orthanc.password)
    )
    client = DICOMwebClient(url=orthanc.dicomweb_url, session=session)
    client.store_instances(_ct_study(shared_data, "20221208"))
    client.store_instances(_ct_study(shared_data, "20190301"))
    client.store_instances(_hip_radiograph(shared_data))
    return orthanc


def _browser() -> Browser:
    try:
        return Browser(width_px=1400, height_px=900)
    except BrowserError as error:
        pytest.fail(f"{error} (the browser tests need Chromium; .ci/setup installs it)")


def _wait_for_viewer(page: Browser) -> None:
    """Wait through the front's "starting" page until the viewer's search box is there."""
    page.wait_for("document.querySelector('#search-button') !== null", 120)
    page.wait_for("window.trame && window.trame.state.get('status_message')", 60)


def _search(page: Browser, text: str) -> None:
    page.evaluate(
        "(() => { const f = document.querySelector('#search-text');"
        f" f.value = '{text}'; f.dispatchEvent(new Event('input')); }})()"
    )
    page.wait_for(f"window.trame.state.get('search_text') === '{text}'", 30)
    page.evaluate("document.querySelector('#search-button').click()")


def _open_patient(page: Browser, patient_id: str, study_date: str) -> None:
    """Search the patient, open the study of ``study_date`` (YYYY-MM-DD), wait until shown."""
    _search(page, patient_id)
    page.wait_for(
        "[...document.querySelectorAll('.study-item')]"
        f".some(e => e.textContent.includes('{study_date}'))",
        60,
    )
    page.evaluate(
        "[...document.querySelectorAll('.study-item')]"
        f".find(e => e.textContent.includes('{study_date}')).click()"
    )
    page.wait_for(
        "(() => { const c = document.querySelector('#current-study');"
        f" return c !== null && c.textContent.includes('{patient_id}'); }})()",
        180,
    )


def _shown(page: Browser) -> dict[str, object]:
    """What the page shows and holds: its text, open patient and listed patients."""
    return dict(
        page.evaluate(
            "({text: document.body.innerText,"
            " open: (window.trame.state.get('current_study') || {}).patient_id || '',"
            " listed: window.trame.state.get('studies').map(s => s.patient_id)})"
        )
    )


@pytest.mark.pacs
def test_two_readers_see_only_their_own_patient_and_one_plan_holds_up_neither(
    two_patients: LocalOrthanc, tmp_path: Path
) -> None:
    credentials = {
        "MSKWB_PACS_USERNAME": two_patients.username,
        "MSKWB_PACS_PASSWORD": two_patients.password,
    }
    with running_server(
        ["--pacs", two_patients.dicomweb_url], free_loopback_port(), tmp_path / "work", credentials
    ) as server:
        reader_a, reader_b = _browser(), _browser()
        try:
            reader_a.navigate(server.url)
            _wait_for_viewer(reader_a)
            (viewer_a,) = server.viewer_pids()
            _open_patient(reader_a, PATIENT_A, "2022-12-08")
            reader_b.navigate(server.url)
            _wait_for_viewer(reader_b)
            (viewer_b,) = [pid for pid in server.viewer_pids() if pid != viewer_a]

            # Reader A plans its case; while that runs, reader B searches and opens its own.
            reader_a.evaluate("document.querySelector('#plan-button').click()")
            reader_a.wait_for("window.trame.state.get('plan_running') === true", 30)
            a_plan_message = reader_a.wait_for(
                "document.querySelector('#plan-message').textContent.trim()", 30
            )
            _open_patient(reader_b, PATIENT_B, "2023-04-05")
            a_still_planning = reader_a.evaluate(
                "window.trame.state.get('plan_running') === true"
                " && window.trame.state.get('plan_downloads').length === 0"
            )
            shown_a, shown_b = _shown(reader_a), _shown(reader_b)
            reader_a.screenshot(ARTIFACTS / "readers_a_planning.png")
            reader_b.screenshot(ARTIFACTS / "readers_b_opened.png")

            assert a_plan_message
            assert a_still_planning, "reader B's study opened only after reader A's plan ended"
            assert shown_a["open"] == PATIENT_A and set(shown_a["listed"]) == {PATIENT_A}
            assert shown_b["open"] == PATIENT_B and set(shown_b["listed"]) == {PATIENT_B}
            assert PATIENT_B not in str(shown_a["text"]) and "BRAVO" not in str(shown_a["text"])
            assert PATIENT_A not in str(shown_b["text"]) and "ALPHA" not in str(shown_b["text"])

            # A's plan ends in A's page only; B's page is unchanged by it.
            links = reader_a.wait_for(
                "(() => { const a = [...document.querySelectorAll('.plan-download')];"
                " return a.length ? a.map(e => e.getAttribute('href')) : null; })()",
                300,
            )
            report = reader_a.evaluate(
                f"fetch('{next(x for x in links if x.endswith('report.html'))}')"
                ".then(r => r.text())",
                timeout_s=30,
            )
            b_after_plan = _shown(reader_b)
            b_plan_state = reader_b.evaluate(
                "[window.trame.state.get('plan_running'),"
                " window.trame.state.get('plan_downloads').length]"
            )
            assert "<html" in report.lower()
            assert b_after_plan["open"] == PATIENT_B
            assert b_plan_state == [False, 0]

            # A reload keeps the reader's viewer and its open case.
            reader_b.reload()
            reader_b.wait_for(
                "(() => { const c = document.querySelector('#current-study');"
                f" return c !== null && c.textContent.includes('{PATIENT_B}'); }})()",
                60,
            )
            assert sorted(server.viewer_pids()) == sorted([viewer_a, viewer_b])

            # Closing reader A's page stops A's viewer (and it is reaped); B's keeps running.
            reader_a.close()
            deadline = time.monotonic() + VIEWER_STOP_WAIT_S
            while exists_in_process_table(viewer_a) and time.monotonic() < deadline:
                time.sleep(0.5)
            assert not exists_in_process_table(viewer_a), server.log_tail()
            assert is_running(viewer_b)
            assert server.status() == {"readers": 1, "max_readers": 4}
            assert PATIENT_B in reader_b.evaluate(
                "document.querySelector('#current-study').textContent"
            )
        finally:
            reader_a.close()
            reader_b.close()
    # Stopping the front (SIGTERM) stops the viewer it still ran: no orphan is left.
    assert not is_running(viewer_b)


@pytest.fixture
def hip_archive(shared_data: Path, tmp_path: Path) -> Path:
    """An archive folder holding patient B's hip radiograph."""
    folder = tmp_path / "archive"
    archive = LocalArchive(folder)
    archive.store_file(shared_data / "wg04" / "RG2_JPLL.dcm")
    archive.close()
    return folder


def test_a_viewer_that_dies_is_reported_to_its_reader_and_replaced_on_the_next_load(
    hip_archive: Path, tmp_path: Path
) -> None:
    with running_server(
        ["--archive", str(hip_archive)], free_loopback_port(), tmp_path / "work"
    ) as server:
        page = _browser()
        with page:
            page.navigate(server.url)
            _wait_for_viewer(page)
            (viewer,) = server.viewer_pids()
            os.kill(viewer, signal.SIGKILL)
            lost = page.wait_for(
                "(() => { const e = document.querySelector('#viewer-disconnected');"
                " return e ? e.textContent : ''; })()",
                30,
            )
            page.screenshot(ARTIFACTS / "readers_viewer_lost.png")
            page.reload()
            stopped = page.wait_for(
                "(() => { const e = document.querySelector('#viewer-stopped');"
                " return e ? e.textContent : ''; })()",
                30,
            )
            page.screenshot(ARTIFACTS / "readers_viewer_stopped.png")
            page.reload()
            _wait_for_viewer(page)
            (replacement,) = server.viewer_pids()

        assert "connection to your viewer was lost" in lost
        assert "stopped unexpectedly" in stopped and "Reload this page" in stopped
        assert replacement != viewer
        assert not exists_in_process_table(viewer)
        assert "exited on its own" in server.log_tail(20_000)

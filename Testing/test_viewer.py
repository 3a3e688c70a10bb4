"""The browser viewer (``mskwb serve``) in real headless Chromium, on the real Orthanc fixture.

One viewer serves a real CT study and its prior from Orthanc; one Chromium page drives it over
the DevTools protocol, as a reader would: search, open, look, load landmarks, nudge one,
plan. Screenshots are kept in ``Testing/artifacts/``.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from browser_driver import Browser, BrowserError
from viewer_case import (
    ARTIFACTS,
    click_landmark_button,
    content_fraction,
    crop,
    landmark_ras,
    measurement,
    open_study,
    png_rgb,
    press_and_release,
    slice_view_rectangles,
    store,
    study_copy,
    view_rectangles,
    wait_for_measurement,
    wait_for_views,
)
from viewer_server import viewer_on_orthanc

from MSKPlannerLib.landmarks import write_markups_json
from MSKPlannerLib.measure_alignment import alignment_angles_deg
from mskworkbench.local_orthanc import LocalOrthanc

pytestmark = [pytest.mark.browser, pytest.mark.pacs]

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PATIENT_ID = "MSKWB-VIEWER-1"

#: Lower-limb landmarks of a right leg (+x is patient right) in the coronal plane through the
#: middle of the CT (A 187.5 mm), RAS mm, so the slice views show them. The leg is scaled to a
#: tenth about the knee so that every point lies inside the test CT (a 38 mm slab, S -804.5 to
#: -766.5 mm): the viewer refuses landmarks outside the image, and angles do not change with scale.
LANDMARKS_RAS_MM = {
    "hip_center": (71.0, 187.5, -768.0),
    "knee_center_femur": (70.0, 187.5, -785.0),
    "knee_center_tibia": (70.0, 187.5, -785.8),
    "ankle_center": (70.5, 187.5, -803.0),
    "femoral_condyle_medial": (67.5, 187.5, -785.2),
    "femoral_condyle_lateral": (72.5, 187.5, -785.0),
    "tibial_plateau_medial": (67.5, 187.5, -785.6),
    "tibial_plateau_lateral": (72.5, 187.5, -785.7),
}


@pytest.fixture(scope="module")
def stored_case(orthanc: LocalOrthanc, shared_data: Path) -> dict[str, str]:
    """A real CT series as a current study and, with new UIDs and an older date, its prior.

    The TotalSegmentator CT has no PatientID, no UIDs and an empty SOPClassUID; both copies get
    the same test patient and valid UIDs, so the prior must be found and matched.
    """
    orthanc.clear()
    files = sorted((shared_data / "totalsegmentator" / "ct_dicom").iterdir())
    current = study_copy(files, PATIENT_ID, "20221208", "CT PELVIS")
    prior = study_copy(files, PATIENT_ID, "20190301", "CT PELVIS")
    store(orthanc, current, prior)
    return {"current": current[0].StudyInstanceUID, "prior": prior[0].StudyInstanceUID}


@pytest.fixture(scope="module")
def viewer_url(
    orthanc: LocalOrthanc, stored_case: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """``mskwb serve --pacs`` on a free loopback port, as a user would start it."""
    with viewer_on_orthanc(orthanc, tmp_path_factory.mktemp("viewer")) as url:
        yield url


@pytest.fixture(scope="module")
def page(viewer_url: str, stored_case: dict[str, str]) -> Iterator[Browser]:
    """One Chromium page with the current study opened from a search."""
    try:
        browser = Browser(width_px=1600, height_px=1000)
    except BrowserError as error:
        pytest.fail(f"{error} (the browser tests need Chromium; .ci/setup installs it)")
    with browser:
        browser.navigate(viewer_url)
        open_study(browser, PATIENT_ID[:9], "2022-12-08", 2)
        yield browser


def _listening_addresses(port: int) -> set[str]:
    """Local addresses (hex, as the kernel lists them) of TCP sockets listening on ``port``."""
    found = set()
    for table in (Path("/proc/net/tcp"), Path("/proc/net/tcp6")):
        if not table.is_file():
            continue
        for line in table.read_text().splitlines()[1:]:
            fields = line.split()
            address, port_hex = fields[1].split(":")
            if int(port_hex, 16) == port and fields[3] == "0A":
                found.add(address)
    return found


def test_viewer_listens_on_loopback_only(viewer_url: str) -> None:
    port = int(viewer_url.rstrip("/").rsplit(":", 1)[1])

    # 0100007F is 127.0.0.1 in the kernel's little-endian hex.
    assert _listening_addresses(port) == {"0100007F"}


def test_study_opens_hung_by_its_protocol_with_content_in_every_view(
    page: Browser, stored_case: dict[str, str]
) -> None:
    priors = page.evaluate("[...document.querySelectorAll('.prior-item')].map(e => e.textContent)")
    found = page.evaluate("[...document.querySelectorAll('.study-item')].map(e => e.textContent)")
    current_line = page.evaluate("document.querySelector('#current-study').textContent")
    # Who the study belongs to is shown, so two people under one PatientID can be told apart.
    for text in [*found, current_line]:
        assert "VIEWER, TEST" in text and "born 1960-01-01" in text and PATIENT_ID in text
    # No landmark has been loaded or placed yet: no measurement complaint may be shown.
    assert page.evaluate("document.querySelectorAll('#not-measured div').length") == 0
    assert page.evaluate("document.querySelector('#error-message')") is None
    protocol = page.evaluate("document.querySelector('#hanging-protocol-name').textContent")
    labels = page.evaluate(
        "Object.fromEntries([...document.querySelectorAll('.view-label')]"
        ".map(e => [e.dataset.view, e.textContent.trim()]))"
    )
    # A CT with a CT prior: the shipped ct-bone-compare protocol hangs current and prior,
    # axial above coronal (Slicer's two-over-two layout), with the bones below.
    assert "ct-bone-compare" in protocol and "2x2" in protocol
    assert labels == {
        "Red": "Current · 2022-12-08 · Axial",
        "Slice4": "Prior #1 · 2019-03-01 · Axial",
        "Green": "Current · 2022-12-08 · Coronal",
        "Yellow": "Prior #1 · 2019-03-01 · Coronal",
    }
    assert len(priors) == 1
    assert "2019-03-01" in priors[0]
    assert "same modality (CT)" in priors[0]

    wait_for_views(page, 5)
    shot = page.screenshot(ARTIFACTS / "viewer_opened.png")
    pixels = png_rgb(shot)
    rectangles = view_rectangles(page)
    slice_views = slice_view_rectangles(page)

    assert len(rectangles) == 5
    for rectangle in rectangles:
        shown = content_fraction(pixels, rectangle)
        assert shown > 0.01, f"the view at {rectangle[:2]} shows no content ({shown:.3f})"
    # Current and prior show the same anatomy in the same orientation.
    for current, prior in (("Red", "Slice4"), ("Green", "Yellow")):
        assert (
            abs(crop(pixels, slice_views[current]).mean() - crop(pixels, slice_views[prior]).mean())
            < 10.0
        )
    # The bone view is the strip below the four slice views.
    assert rectangles[-1][1] > max(r[1] for r in slice_views.values())
    assert page.outside_requests() == []


def test_registration_finishes_and_is_reported(page: Browser) -> None:
    message = page.wait_for(
        "(() => { const m = document.querySelector('#registration-message');"
        " return m && m.textContent.includes('registered') ? m.textContent : ''; })()",
        180,
    )
    shift = [float(v) for v in re.findall(r"-?\d+\.\d", message)[:3]]

    assert "2019-03-01" in message
    assert len(shift) == 3
    assert max(abs(v) for v in shift) < 3.0


def test_scrolling_a_current_view_scrolls_the_registered_prior_of_its_orientation(
    page: Browser,
) -> None:
    state = "window.trame.state"
    followed = {}
    for current, prior in (("Red", "Slice4"), ("Green", "Yellow")):
        start = page.evaluate(f"{state}.get('{current}__SliderState__value')")
        step = page.evaluate(f"{state}.get('{current}__SliderState__step')")
        target = round(start + 6 * step, 6)
        page.evaluate(f"{state}.set('{current}__SliderState__value', {target})")
        followed[prior] = page.wait_for(
            f"Math.abs({state}.get('{prior}__SliderState__value') - {target}) < 0.01", 20
        )
    red = page.evaluate(f"{state}.get('Red__SliderState__value')")

    page.evaluate("document.querySelector('#linked-switch').click()")
    page.wait_for(f"{state}.get('linked') === false", 10)
    step = page.evaluate(f"{state}.get('Red__SliderState__step')")
    page.evaluate(f"{state}.set('Red__SliderState__value', {red - 4 * step})")
    page.wait_for(f"Math.abs({state}.get('Red__SliderState__value') - {red - 4 * step}) < 0.01", 20)
    time.sleep(1.0)
    unlinked_prior = page.evaluate(f"{state}.get('Slice4__SliderState__value')")
    page.evaluate("document.querySelector('#linked-switch').click()")
    page.wait_for(f"{state}.get('linked') === true", 10)

    assert followed == {"Slice4": True, "Yellow": True}
    assert unlinked_prior == pytest.approx(red, abs=0.01)


def test_a_click_right_after_choosing_place_lands_where_it_was_made(page: Browser) -> None:
    state = "window.trame.state"
    red = slice_view_rectangles(page)["Red"]
    x, y = red[0] + 0.35 * red[2], red[1] + 0.45 * red[3]
    slice_s_mm = page.evaluate(f"{state}.get('Red__SliderState__value')")

    # Choose "place" and click at once: no waiting, and no mouse move before the press.
    click_landmark_button(page, "hip_center", "place-landmark")
    press_and_release(page, x, y)
    placed = page.wait_for(
        "(() => { const r = [...document.querySelectorAll('.landmark-row')]"
        ".find(r => r.textContent.includes('hip_center'));"
        " return r ? r.querySelector('.landmark-ras').textContent.trim() : ''; })()",
        30,
    )
    page.wait_for("document.querySelector('#placing') === null", 10)
    time.sleep(1.5)
    shot = page.screenshot(ARTIFACTS / "viewer_click_placed.png")

    # The point lies in the axial slice shown, and is drawn where the click was made.
    assert float(placed.split()[2]) == pytest.approx(slice_s_mm, abs=0.6)
    pixels = png_rgb(shot)
    around = pixels[int(y) - 15 : int(y) + 16, int(x) - 15 : int(x) + 16]
    # The CT is grey; the glyph is coloured (yellow, or green while the pointer is on it).
    glyph = (around.max(axis=2) - around.min(axis=2) > 120) & (around[..., 1] > 150)
    rows, columns = np.nonzero(glyph)
    assert glyph.sum() > 10, "no landmark glyph is drawn at the clicked position"
    assert abs(rows.mean() - 15) < 5 and abs(columns.mean() - 15) < 5

    # While placing, the page names the landmark and says the views are ready.
    click_landmark_button(page, "ankle_center", "place-landmark")
    banner = page.wait_for(
        "(() => { const b = document.querySelector('#placing-label');"
        " const r = document.querySelector('#placing-ready');"
        " return b && r && r.dataset.ready === 'yes' ? b.textContent : ''; })()",
        10,
    )
    hints = page.evaluate(
        "[...document.querySelectorAll('.view-placing')].map(e => e.textContent.trim())"
    )
    page.screenshot(ARTIFACTS / "viewer_placing.png")
    prior_views = page.evaluate(f"{state}.get('no_landmark_views')")
    ankle_before = landmark_ras(page, "ankle_center")
    # A click in a view showing a prior places nothing, and the page says why.
    prior = slice_view_rectangles(page)[prior_views[0]]
    page.click_at(prior[0] + 0.5 * prior[2], prior[1] + 0.5 * prior[3])
    refused = page.wait_for(
        "(() => { const n = document.querySelector('#placing-notice');"
        " return n ? n.textContent : ''; })()",
        10,
    )
    page.screenshot(ARTIFACTS / "viewer_prior_click_refused.png")
    time.sleep(1.0)
    after_refused = landmark_ras(page, "ankle_center")
    page.click_at(x + 0.2 * red[2], y)
    page.wait_for("document.querySelector('#placing') === null", 10)

    assert "ankle_center" in banner
    # The hint is drawn on the views of the current study only.
    assert prior_views and len(hints) == 4 - len(prior_views)
    assert all("Click to place ankle_center" in h for h in hints)
    assert "of the current study: click in a view showing it" in refused
    assert after_refused == ankle_before
    assert landmark_ras(page, "ankle_center") not in ("", ankle_before)
    assert landmark_ras(page, "hip_center") == placed


def test_moving_a_landmark_changes_the_measurement_in_the_page(
    page: Browser, tmp_path: Path
) -> None:
    landmark_file = tmp_path / "leg_right.mrk.json"
    write_markups_json(
        landmark_file,
        {k: np.array(v) for k, v in LANDMARKS_RAS_MM.items()},
        name="Lower limb",
        description="right",
    )
    page.evaluate("document.querySelector('#orientation-coronal').click()")
    page.set_file_input("input[type=file]", landmark_file)
    before = wait_for_measurement(page, "hka_deg")
    expected_before = alignment_angles_deg(LANDMARKS_RAS_MM, "right")["hka_deg"]
    assert float(before.split()[0].rstrip("°")) == pytest.approx(expected_before, abs=0.06)

    click_landmark_button(page, "hip_center", "move-r")
    after = wait_for_measurement(page, "hka_deg", other_than=before, timeout_s=30)
    moved = dict(LANDMARKS_RAS_MM)
    moved["hip_center"] = (76.0, 187.5, -768.0)
    expected_after = alignment_angles_deg(moved, "right")["hka_deg"]

    assert float(after.split()[0].rstrip("°")) == pytest.approx(expected_after, abs=0.06)
    assert expected_after != pytest.approx(expected_before, abs=0.1)
    time.sleep(2.0)
    shot = page.screenshot(ARTIFACTS / "viewer_landmarks.png")
    current_view = crop(png_rgb(shot), slice_view_rectangles(page)["Red"])
    landmark_yellow = (
        (current_view[..., 0] > 200) & (current_view[..., 1] > 150) & (current_view[..., 2] < 90)
    )
    assert landmark_yellow.sum() > 100, "the landmarks are not drawn in the current slice view"
    # The README's picture is refreshed only on request, so test runs leave the tree clean.
    small = ARTIFACTS / "viewer_small.png"
    if os.environ.get("MSKWB_UPDATE_SCREENSHOTS"):
        small = PROJECT_ROOT / "Resources" / "Screenshots" / "viewer.png"
    assert page.screenshot(small, 0.75).stat().st_size < 300_000


def _landmark_field_text(page: Browser) -> str:
    return page.evaluate(
        "(() => { const f = document.querySelector('#landmark-file');"
        " const box = f ? f.closest('.v-file-input') : null;"
        " return box ? box.textContent : ''; })()"
    )


def test_failed_and_sideless_landmark_files_are_reported_and_never_guessed(
    page: Browser, tmp_path: Path
) -> None:
    hka_before = wait_for_measurement(page, "hka_deg", timeout_s=30)
    broken = tmp_path / "broken_leg.mrk.json"
    broken.write_text('{"markups": [')
    page.set_file_input("input[type=file]", broken)
    banner = page.wait_for(
        "(() => { const e = document.querySelector('#error-message');"
        " return e ? e.textContent : ''; })()",
        30,
    )
    assert "broken_leg.mrk.json" in banner and "not a readable markups JSON" in banner
    assert "unchanged" in banner
    # The field no longer names the broken file; the landmarks it did not replace stay.
    page.wait_for(
        "(() => { const f = document.querySelector('#landmark-file');"
        " return f && f.closest('.v-file-input').textContent.indexOf('broken_leg') < 0; })()",
        30,
    )
    assert "broken_leg" not in _landmark_field_text(page)
    loaded = page.evaluate("document.querySelector('#landmarks-loaded-from').textContent")
    assert "leg_right.mrk.json" in loaded
    assert measurement(page, "hka_deg") == hka_before

    # A valid file naming no side: the banner goes, the side is cleared, nothing is guessed.
    sideless = tmp_path / "leg.mrk.json"
    write_markups_json(sideless, {k: np.array(v) for k, v in LANDMARKS_RAS_MM.items()})
    page.set_file_input("input[type=file]", sideless)
    page.wait_for("document.querySelector('#error-message') === null", 30)
    page.wait_for("window.trame.state.get('side') === ''", 30)
    page.wait_for("document.querySelectorAll('.measurement-value').length === 0", 30)
    reasons = page.evaluate("document.querySelector('#not-measured').textContent")
    status = page.evaluate("document.querySelector('#status-message').textContent")
    assert "side" in reasons
    assert "leg.mrk.json" in status and "choose Left or Right" in status

    # The reader chooses the side: the measurements come back.
    page.evaluate("document.querySelector('#side-right').click()")
    hka = wait_for_measurement(page, "hka_deg", timeout_s=30)
    expected = alignment_angles_deg(LANDMARKS_RAS_MM, "right")["hka_deg"]
    assert float(hka.split()[0].rstrip("°")) == pytest.approx(expected, abs=0.06)


@pytest.mark.slow
def test_plan_runs_with_progress_and_offers_report_and_scene(page: Browser) -> None:
    page.evaluate("document.querySelector('#plan-button').click()")
    page.wait_for("document.querySelector('#plan-message').textContent.trim() !== ''", 30)

    # The plan runs off the event loop: a search answers while it is still running.
    page.evaluate(
        "(() => { const f = document.querySelector('#search-text');"
        " f.value = 'NO-SUCH-PATIENT'; f.dispatchEvent(new Event('input')); })()"
    )
    page.evaluate("document.querySelector('#search-button').click()")
    page.wait_for("document.querySelectorAll('.study-item').length === 0", 30)
    responsive_while_planning = page.evaluate("window.trame.state.get('plan_running')")
    outcome = page.wait_for(
        "(() => { const a = [...document.querySelectorAll('.plan-download')];"
        " const e = document.querySelector('#error-message');"
        " if (e) return {error: e.textContent};"
        " return a.length ? {links: a.map(e => e.getAttribute('href'))} : null; })()",
        300,
    )
    assert "error" not in outcome, outcome
    links = outcome["links"]
    assert responsive_while_planning, "a search did not finish while the plan was running"
    names = [link.rsplit("/", 1)[-1] for link in links]
    report = page.evaluate(
        f"fetch('{links[names.index('report.html')]}').then(r => r.text())", timeout_s=30
    )
    scene_bytes = page.evaluate(
        f"fetch('{links[names.index('scene.mrb')]}').then(r => r.arrayBuffer())"
        ".then(b => b.byteLength)",
        timeout_s=60,
    )

    assert "report.html" in names and "scene.mrb" in names
    assert "<html" in report.lower()
    assert scene_bytes > 10_000
    page.screenshot(ARTIFACTS / "viewer_planned.png")


def test_no_request_left_the_machine(page: Browser) -> None:
    assert page.requested_urls, "the page made no request at all"
    assert any("/ws" in url or url.endswith(".js") for url in page.requested_urls)
    assert page.outside_requests() == []

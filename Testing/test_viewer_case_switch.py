"""Switching patients in the browser viewer, in real headless Chromium on the real Orthanc.

A reader opens a CT (with its prior), searches another patient with Enter and opens a
radiograph study that cannot be read: the first patient must be gone from the page. The CT's
bones, the header, the error banner and the landmark panel are read from the page itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from browser_driver import Browser, BrowserError
from viewer_case import (
    ARTIFACTS,
    content_fraction,
    open_study,
    png_rgb,
    slice_view_rectangles,
    store,
    study_copy,
    view_rectangles,
    wait_for_views,
)
from viewer_server import viewer_on_orthanc

from mskworkbench.local_orthanc import LocalOrthanc

pytestmark = [pytest.mark.browser, pytest.mark.pacs]

CT_PATIENT = "MSKWB-SWITCH-CT"
CR_PATIENT = "MSKWB-SWITCH-CR"


@pytest.fixture(scope="module")
def viewer_url(
    orthanc: LocalOrthanc, shared_data: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A CT study with its prior, and a CR series of two images without a patient position."""
    orthanc.clear()
    ct_files = sorted((shared_data / "totalsegmentator" / "ct_dicom").iterdir())
    radiographs = [shared_data / "wg04" / name for name in ("RG2_JPLL.dcm", "RG2_RLE.dcm")]
    store(
        orthanc,
        study_copy(ct_files, CT_PATIENT, "20221208", "CT PELVIS"),
        study_copy(ct_files, CT_PATIENT, "20190301", "CT PELVIS"),
        study_copy(radiographs, CR_PATIENT, "20240826", "HIP JOINT"),
    )
    with viewer_on_orthanc(orthanc, tmp_path_factory.mktemp("viewer")) as url:
        yield url


@pytest.fixture(scope="module")
def page(viewer_url: str) -> Iterator[Browser]:
    """One Chromium page with the CT opened from a search."""
    try:
        browser = Browser(width_px=1600, height_px=1000)
    except BrowserError as error:
        pytest.fail(f"{error} (the browser tests need Chromium; .ci/setup installs it)")
    with browser:
        browser.navigate(viewer_url)
        open_study(browser, CT_PATIENT, "2022-12-08", 2)
        yield browser


def _press_enter(browser: Browser) -> None:
    """A real Enter key press (down and up) in the focused element."""
    for kind in ("keyDown", "keyUp"):
        browser.send(
            "Input.dispatchKeyEvent",
            type=kind,
            key="Enter",
            code="Enter",
            windowsVirtualKeyCode=13,
            nativeVirtualKeyCode=13,
            **({"text": "\r"} if kind == "keyDown" else {}),
        )


def test_the_ct_bones_are_solid_and_the_header_keeps_its_title(page: Browser) -> None:
    wait_for_views(page, 5, settle_s=4.0)
    shot = page.screenshot(ARTIFACTS / "viewer_switch_ct.png")
    pixels = png_rgb(shot)
    labelled = {tuple(r) for r in slice_view_rectangles(page).values()}
    three_d = [r for r in view_rectangles(page) if tuple(r) not in labelled]
    assert len(three_d) == 1
    bones = content_fraction(pixels, three_d[0])
    print(f"3D view: {bones:.3f} of its inner pixels show bone")
    # Solid bones of this thin CT slab cover about 6 % of the view (the page at 1600 x 1000).
    assert bones > 0.04
    # The title is never cut to "MS..."; the status line is one short sentence.
    title = page.evaluate(
        "(() => { const t = document.querySelector('.v-toolbar-title__placeholder')"
        " || document.querySelector('.v-toolbar-title');"
        " return [t.scrollWidth, t.clientWidth, t.textContent.trim()]; })()"
    )
    assert title[2] == "MSK Workbench" and title[0] <= title[1], title
    status = page.evaluate("window.trame.state.get('status_message')")
    assert status.startswith("Study opened with hanging protocol") and len(status) < 90
    # The landmark table fits its panel: no horizontal scrolling for the nudge buttons.
    widths = page.evaluate(
        "(() => { const w = document.querySelector('#landmark-table .v-table__wrapper');"
        " return [w.scrollWidth, w.clientWidth]; })()"
    )
    assert widths[0] <= widths[1], widths


def test_enter_searches_and_a_failed_open_leaves_no_previous_patient(page: Browser) -> None:
    page.evaluate(
        "(() => { const f = document.querySelector('#search-text');"
        f" f.value = '{CR_PATIENT}'; f.dispatchEvent(new Event('input')); f.focus(); }})()"
    )
    page.wait_for(f"window.trame.state.get('search_text') === '{CR_PATIENT}'", 30)
    _press_enter(page)
    page.wait_for(
        "document.querySelectorAll('.study-item').length === 1 && "
        "document.querySelector('.study-item').textContent.includes('2024-08-26')",
        60,
    )
    assert page.evaluate("document.querySelector('#status-message').textContent.trim()") == (
        "1 study found."
    )

    page.evaluate("document.querySelector('.study-item').click()")
    banner = page.wait_for(
        "(() => { const e = document.querySelector('#error-message');"
        " return e ? e.textContent : ''; })()",
        120,
    )
    page.screenshot(ARTIFACTS / "viewer_switch_failed.png")

    assert "ImagePositionPatient" in banner
    # Nothing of the CT patient is left: identity, priors, plan, landmarks and views.
    assert page.evaluate("document.querySelector('#current-study')") is None
    assert page.evaluate("document.querySelector('#plan-button')") is None
    assert page.evaluate("document.querySelectorAll('.prior-item').length") == 0
    assert page.evaluate("document.querySelectorAll('.landmark-row').length") == 0
    assert page.evaluate("window.trame.state.get('view_labels')") == {}
    assert CT_PATIENT not in page.evaluate("document.body.innerText")
    # The banner wraps its long series UID inside the panel instead of cutting it off.
    fits = page.evaluate(
        "(() => { const e = document.querySelector('#error-message');"
        " const t = e.querySelector('.v-alert__content') || e;"
        " const drawer = e.closest('.v-navigation-drawer').getBoundingClientRect();"
        " return [t.scrollWidth <= t.clientWidth,"
        " e.getBoundingClientRect().right <= drawer.right]; })()"
    )
    assert fits == [True, True]

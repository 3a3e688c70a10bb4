"""The viewer page hangs each study as its hanging protocol says, in real headless Chromium.

One ``mskwb serve`` on the real Orthanc fixture, with a site protocol folder that hangs a CT
beside two CT priors. A patient with one CT and no prior, and a patient with three CTs (the
oldest lying 10 mm higher in the scanner) are opened in one page. What each view shows is
checked from the screenshot's pixels, not only from the page state.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from browser_driver import Browser, BrowserError
from viewer_case import (
    ARTIFACTS,
    TWO_PRIORS_RULE,
    content_fraction,
    crop,
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

ALONE = "MSKWB-LAYOUT-ALONE"
THREE = "MSKWB-LAYOUT-THREE"


@pytest.fixture(scope="module")
def stored_studies(orthanc: LocalOrthanc, shared_data: Path) -> dict[str, str]:
    """A CT without prior, and a CT with two CT priors (the older one shifted 10 mm up)."""
    orthanc.clear()
    files = sorted((shared_data / "totalsegmentator" / "ct_dicom").iterdir())
    alone = study_copy(files, ALONE, "20230405", "CT ABDOMEN")
    current = study_copy(files, THREE, "20221208", "CT PELVIS")
    first = study_copy(files, THREE, "20190301", "CT PELVIS")
    second = study_copy(files, THREE, "20160520", "CT PELVIS", (0.0, 0.0, 10.0))
    store(orthanc, alone, current, first, second)
    return {
        "second_prior": second[0].StudyInstanceUID,
        "first_prior": first[0].StudyInstanceUID,
    }


@pytest.fixture(scope="module")
def page(
    orthanc: LocalOrthanc,
    stored_studies: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Browser]:
    """One page of ``mskwb serve --pacs`` with a site protocol folder."""
    rules = tmp_path_factory.mktemp("protocols")
    (rules / "ct-two-priors.json").write_text(json.dumps(TWO_PRIORS_RULE))
    with viewer_on_orthanc(
        orthanc, tmp_path_factory.mktemp("viewer"), {"MSKWB_HANGING_PROTOCOLS": str(rules)}
    ) as url:
        try:
            browser = Browser(width_px=1600, height_px=1000)
        except BrowserError as error:
            pytest.fail(f"{error} (the browser tests need Chromium; .ci/setup installs it)")
        with browser:
            browser.navigate(url)
            yield browser


def _labels(page: Browser) -> dict[str, str]:
    return page.evaluate(
        "Object.fromEntries([...document.querySelectorAll('.view-label')]"
        ".map(e => [e.dataset.view, e.textContent.trim()]))"
    )


def _difference(pixels: np.ndarray, views: dict[str, list[float]], a: str, b: str) -> float:
    """Mean absolute grey difference of two equally sized views, where either shows anatomy.

    The black background around the body is left out, so that the figure measures how well
    the two images of the body agree.
    """
    first, second = crop(pixels, views[a], 0.1), crop(pixels, views[b], 0.1)
    rows, columns = min(first.shape[0], second.shape[0]), min(first.shape[1], second.shape[1])
    first, second = first[:rows, :columns], second[:rows, :columns]
    body = np.maximum(first.max(axis=2), second.max(axis=2)) > 30.0
    return float(np.abs(first - second)[body].mean())


def test_a_study_without_a_prior_shows_the_current_series_alone(page: Browser) -> None:
    open_study(page, ALONE, "2023-04-05", 1)
    wait_for_views(page, 4)
    shot = page.screenshot(ARTIFACTS / "viewer_no_prior.png")
    pixels = png_rgb(shot)
    rectangles = view_rectangles(page)
    protocol = page.evaluate("document.querySelector('#hanging-protocol-name').textContent")
    priors_text = page.evaluate("document.querySelector('#prior-list').parentElement.textContent")

    # The shipped ct-single protocol: three planes of the current CT and the 3D bones.
    assert "ct-single" in protocol and "2x2-3d" in protocol
    assert _labels(page) == {
        "Red": "Current · 2023-04-05 · Axial",
        "Green": "Current · 2023-04-05 · Coronal",
        "Yellow": "Current · 2023-04-05 · Sagittal",
    }
    assert "No prior of this patient was found." in priors_text
    assert page.evaluate("document.querySelectorAll('.prior-item').length") == 0
    # Every view of the layout shows something: no empty prior view is left in the grid.
    assert len(rectangles) == 4
    for rectangle in rectangles:
        shown = content_fraction(pixels, rectangle)
        assert shown > 0.01, f"the view at {rectangle[:2]} is empty ({shown:.3f})"
    assert page.outside_requests() == []


def test_a_protocol_hanging_two_priors_shows_both_registered_and_scrolling_with_it(
    page: Browser,
) -> None:
    state = "window.trame.state"
    open_study(page, THREE, "2022-12-08", 3)
    message = page.wait_for(
        "(() => { const m = document.querySelector('#registration-message');"
        " return m && m.textContent.includes('registered') ? m.textContent : ''; })()",
        240,
    )
    protocol = page.evaluate("document.querySelector('#hanging-protocol-name').textContent")
    shifts = re.findall(r"(\d{4}-\d\d-\d\d): (-?\d+\.\d), (-?\d+\.\d), (-?\d+\.\d) mm", message)
    shift_by_date = {date: [float(x), float(y), float(z)] for date, x, y, z in shifts}

    assert "ct-two-priors" in protocol
    assert _labels(page) == {
        "Red": "Current · 2022-12-08 · Axial",
        "Green": "Prior #1 · 2019-03-01 · Axial",
        "Yellow": "Prior #2 · 2016-05-20 · Axial",
    }
    assert "2 priors registered" in message
    assert max(abs(v) for v in shift_by_date["2019-03-01"]) < 1.0
    assert abs(shift_by_date["2016-05-20"][2]) == pytest.approx(10.0, abs=1.0)

    # Every view has its protocol's preset: the older prior's soft-tissue window shows the
    # soft tissue brighter than the bone window of the same anatomy in the first prior.
    wait_for_views(page, 4)
    presets_shot = png_rgb(page.screenshot(ARTIFACTS / "viewer_two_priors_presets.png"))
    views = slice_view_rectangles(page)
    brightness = {p: crop(presets_shot, views[p], 0.2).mean() for p in ("Green", "Yellow")}
    assert brightness["Yellow"] > brightness["Green"] + 15.0, brightness
    page.evaluate("document.querySelector('#preset-bone').click()")
    page.wait_for(f"{state}.get('preset') === 'bone'", 10)

    # Scroll the current view: both priors follow, to the same anatomy as the current.
    start = page.evaluate(f"{state}.get('Red__SliderState__value')")
    step = page.evaluate(f"{state}.get('Red__SliderState__step')")
    target = round(start + 3 * step, 6)
    page.evaluate(f"{state}.set('Red__SliderState__value', {target})")
    for prior in ("Green", "Yellow"):
        page.wait_for(f"Math.abs({state}.get('{prior}__SliderState__value') - {target}) < 0.01", 20)
    wait_for_views(page, 4)
    linked_shot = png_rgb(page.screenshot(ARTIFACTS / "viewer_two_priors.png"))
    views = slice_view_rectangles(page)

    # Unlinked, the current view moves alone: its image no longer matches the priors'.
    page.evaluate("document.querySelector('#linked-switch').click()")
    page.wait_for(f"{state}.get('linked') === false", 10)
    page.evaluate(f"{state}.set('Red__SliderState__value', {round(target - 8 * step, 6)})")
    wait_for_views(page, 4)
    unlinked_shot = png_rgb(page.screenshot(ARTIFACTS / "viewer_two_priors_unlinked.png"))
    page.evaluate("document.querySelector('#linked-switch').click()")
    page.wait_for(f"{state}.get('linked') === true", 10)

    for rectangle in view_rectangles(page):
        assert content_fraction(linked_shot, rectangle) > 0.01
    linked = {p: _difference(linked_shot, views, "Red", p) for p in ("Green", "Yellow")}
    unlinked = {p: _difference(unlinked_shot, views, "Red", p) for p in ("Green", "Yellow")}
    for prior in ("Green", "Yellow"):
        # Yellow is hung in a soft-tissue window, so even the same anatomy differs a little.
        assert linked[prior] < 4.0, linked
        assert unlinked[prior] > 2 * linked[prior] + 1.0, (linked, unlinked)


def test_choosing_the_second_prior_hangs_it_first(
    page: Browser, stored_studies: dict[str, str]
) -> None:
    page.evaluate(
        "[...document.querySelectorAll('.prior-item')]"
        ".find(e => e.textContent.includes('2016-05-20')).click()"
    )
    page.wait_for(
        "(() => { const e = document.querySelector('.view-label[data-view=\"Green\"]');"
        " return e && e.textContent.includes('2016-05-20'); })()",
        60,
    )
    wait_for_views(page, 4)
    shot = png_rgb(page.screenshot(ARTIFACTS / "viewer_second_prior_first.png"))
    views = slice_view_rectangles(page)
    shown = page.evaluate("window.trame.state.get('shown_priors')")

    assert _labels(page)["Yellow"] == "Prior #1 · 2019-03-01 · Axial"
    assert shown == [stored_studies["second_prior"], stored_studies["first_prior"]]
    assert page.evaluate("document.querySelectorAll('.prior-item.v-list-item--active').length") == 2
    # The shifted prior keeps its registration: it still shows the current's anatomy.
    assert _difference(shot, views, "Red", "Green") < 3.0

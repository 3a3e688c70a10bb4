"""The viewer shows any series of a study, fits whole images, and keeps sliders off them.

The real demo case (current CT and long-leg CR, a CT prior) in a local archive, served by the
real ``mskwb serve --archive`` and read in real headless Chromium. The demo's own landmark
file was written for the radiograph in the frontal plane the plan reads it in; the page must
find the radiograph, show it, and measure the file's known alignment.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from browser_driver import Browser, BrowserError
from viewer_case import (
    ARTIFACTS,
    crop,
    open_study,
    png_rgb,
    slice_view_rectangles,
    value_of,
    wait_for_measurement,
    wait_for_views,
)
from viewer_server import running_viewer

from MSKPlannerLib.demo_case import DemoCase, build_demo_archive
from MSKPriorsLib.pixel_data_series import read_dicom_series
from mskworkbench.local_orthanc import free_loopback_port
from mskworkbench.web.series_fit import (
    file_positions,
    find_fit,
    fit_on,
    frontal_to_shown_ras,
    read_landmark_file,
)

#: A view's image pixel is content when brighter than this (0-255); the background is black.
CONTENT_LEVEL = 25.0


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> tuple[DemoCase, Path]:
    """The demo patient on the real CT of the shared data, in a local archive."""
    folder = tmp_path_factory.mktemp("demo") / "demo-case"
    ct = shared_data / "totalsegmentator" / "ct_volume.nii.gz"
    labels = shared_data / "totalsegmentator" / "ct_volume_vertebrae_labels.nii.gz"
    return build_demo_archive(folder, ct, labels)


def _series_files(archive: Path, series_uid: str) -> list[Path]:
    from mskworkbench.web.sources import ArchiveSource

    source = ArchiveSource(archive)
    for study in source.search("*"):
        for series in source.search_series(study.study_uid):
            if series.series_uid == series_uid:
                return source.series_files(series)
    raise AssertionError(f"series {series_uid} is not in the archive")


def test_the_demo_landmark_file_fits_the_radiograph_from_its_frontal_plane(
    demo: tuple[DemoCase, Path],
) -> None:
    case, archive = demo
    ct = read_dicom_series(_series_files(archive, case.ct_series_uid), case.ct_series_uid)
    cr_uid = case.radiograph_series_uid
    cr = read_dicom_series(_series_files(archive, cr_uid), cr_uid)
    landmarks = read_landmark_file(case.landmarks_file.name, case.landmarks_file.read_bytes())
    assert landmarks is not None
    positions = file_positions(landmarks)

    assert fit_on(positions, case.ct_series_uid, ct) is None
    fit = find_fit(positions, [(case.ct_series_uid, ct), (cr_uid, cr)])

    assert fit is not None and fit.series_uid == cr_uid and fit.moves_points
    assert frontal_to_shown_ras(ct) is None
    # The loader shows the radiograph in the axial plane (rows toward RAS -y); the plan reads
    # it in the frontal plane (rows toward the feet): superior becomes anterior, pixel by pixel.
    hip = landmarks.points_ras_mm["hip_center"]
    moved = fit.file_to_shown_ras @ np.r_[hip, 1.0]
    np.testing.assert_allclose(moved[:3], [hip[0], hip[2], 0.0], atol=1e-6)


@pytest.fixture(scope="module")
def page(
    demo: tuple[DemoCase, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Browser]:
    """One page of ``mskwb serve --archive`` on the demo archive, the current study open."""
    _, archive = demo
    with running_viewer(
        ["--archive", str(archive)], free_loopback_port(), tmp_path_factory.mktemp("viewer")
    ) as url:
        try:
            browser = Browser(width_px=1600, height_px=1000)
        except BrowserError as error:
            pytest.fail(f"{error} (the browser tests need Chromium; .ci/setup installs it)")
        with browser:
            browser.navigate(url)
            open_study(browser, "MSKWB-DEMO", "2026-11-20", 3)
            wait_for_views(browser, 4, settle_s=6.0)
            yield browser


def _screenshot(page: Browser, name: str) -> np.ndarray:
    ARTIFACTS.mkdir(exist_ok=True)
    return png_rgb(page.screenshot(ARTIFACTS / name))


def _image_rectangles(page: Browser) -> dict[str, list[float]]:
    """Slice view name -> the page rectangle of its image area (the slider strip left out)."""
    return page.evaluate(
        "Object.fromEntries([...document.querySelectorAll('.view-label')].map(e => {"
        " const r = e.parentElement.querySelector('.remote-controlled-area')"
        ".getBoundingClientRect(); return [e.dataset.view, [r.x, r.y, r.width, r.height]]; }))"
    )


def _content_box(pixels: np.ndarray, rectangle: list[float]) -> tuple[float, float, float, float]:
    """Fractions (left, right, top, bottom) of an image area where its content begins and ends."""
    inside = crop(pixels, rectangle).max(axis=2) > CONTENT_LEVEL
    # The view label sits in the top left corner: leave the top rows out of the columns.
    rows = np.flatnonzero(inside[:, inside.shape[1] // 4 : -inside.shape[1] // 4].any(axis=1))
    columns = np.flatnonzero(inside[inside.shape[0] // 8 :].any(axis=0))
    height, width = inside.shape
    return (
        columns[0] / width,
        (columns[-1] + 1) / width,
        rows[0] / height,
        (rows[-1] + 1) / height,
    )


def _series(page: Browser) -> dict[str, Any]:
    return {row["view"]: row for row in page.evaluate("window.trame.state.get('view_series')")}


def test_sliders_lie_below_the_images(page: Browser) -> None:
    images = _image_rectangles(page)
    sliders = page.evaluate(
        "Object.fromEntries([...document.querySelectorAll('.view-label')].map(e => {"
        " const r = e.parentElement.querySelector('.slice-slider-gutter')"
        ".getBoundingClientRect(); return [e.dataset.view, [r.x, r.y, r.width, r.height]]; }))"
    )
    views = slice_view_rectangles(page)
    assert set(images) == set(sliders) == {"Red", "Green", "Yellow", "Slice4"}
    for name, (_, y, _, height) in images.items():
        slider_top = sliders[name][1]
        assert y + height <= slider_top + 0.5, name
        assert slider_top + sliders[name][3] <= views[name][1] + views[name][3] + 0.5, name


def test_ct_views_show_the_whole_volume_and_reset_keeps_it(page: Browser) -> None:
    pixels = _screenshot(page, "series-display-ct-axial-coronal.png")
    images = _image_rectangles(page)
    # The demo CT is 366 mm wide and 336 mm high; its coronal view area is wider than high, so
    # the whole height is shown and dark columns stay on either side.
    left, right, top, bottom = _content_box(pixels, images["Green"])
    assert top < 0.05 and bottom > 0.95, (top, bottom)
    assert left > 0.03 and right < 0.97, (left, right)
    page.evaluate("document.querySelector('#reset-views').click()")
    time.sleep(4.0)
    after = _screenshot(page, "series-display-ct-after-reset.png")
    for name in ("Red", "Green"):
        before_box = np.array(_content_box(pixels, images[name]))
        after_box = np.array(_content_box(after, images[name]))
        np.testing.assert_allclose(after_box, before_box, atol=0.02, err_msg=name)

    page.evaluate("document.querySelector('#orientation-sagittal').click()")
    page.wait_for("window.trame.state.get('view_labels').Red.endsWith('Sagittal')", 30)
    time.sleep(5.0)
    sagittal = _screenshot(page, "series-display-ct-sagittal.png")
    # 303 mm front to back, 336 mm high: the whole height, dark at the front and the back.
    left, right, top, bottom = _content_box(sagittal, images["Red"])
    assert top < 0.05 and bottom > 0.95, (top, bottom)
    assert left > 0.03 and right < 0.97, (left, right)
    page.evaluate("document.querySelector('#orientation-protocol').click()")
    page.wait_for("window.trame.state.get('view_labels').Red.endsWith('Axial')", 30)


def test_the_demo_landmark_file_shows_its_radiograph_and_measures(
    page: Browser, demo: tuple[DemoCase, Path]
) -> None:
    case, _ = demo
    assert _series(page)["Red"]["series_uid"] == case.ct_series_uid
    titles = [option["title"] for option in _series(page)["Red"]["options"]]
    assert titles == [
        "#2 · CT · CT abdomen pelvis bone",
        "#3 · CR · Long leg AP left (synthetic phantom)",
    ]

    page.set_file_input("input[type=file]", case.landmarks_file)
    page.wait_for("window.trame.state.get('series_notice')", 60)
    notice = page.evaluate("window.trame.state.get('series_notice')")
    assert "fits series #3 · CR" in notice and "view Red now shows it" in notice
    assert page.evaluate("window.trame.state.get('error_message')") == ""
    assert _series(page)["Red"]["series_uid"] == case.radiograph_series_uid
    hka = value_of(wait_for_measurement(page, "hka_deg"))
    assert hka == pytest.approx(case.expected["hka_deg"], abs=0.2)
    # Landmarks are now placed on the radiograph only: the CT views lie in another frame.
    refusing = page.evaluate("window.trame.state.get('no_landmark_views')")
    assert "Red" not in refusing and "Green" in refusing, refusing

    time.sleep(5.0)
    pixels = _screenshot(page, "series-display-radiograph.png")
    images = _image_rectangles(page)
    # 216 mm wide, 966 mm long: the whole length fits the view's height, dark on its left
    # (the landmark names are written to the right of the leg).
    left, _, top, bottom = _content_box(pixels, images["Red"])
    assert top < 0.06 and bottom > 0.94, (top, bottom)
    assert left > 0.3, left
    # The CT views keep their slices (the radiograph's frame is its own).
    green = crop(pixels, images["Green"], 0.1).max(axis=2)
    assert (green > CONTENT_LEVEL).mean() > 0.2


def test_the_reader_chooses_the_series_of_a_view(
    page: Browser, demo: tuple[DemoCase, Path]
) -> None:
    case, _ = demo
    # Vuetify opens a select's menu on a mouse press in its field.
    page.evaluate(
        "(() => { const f = document.querySelector('.series-select[data-view=\"Red\"] .v-field');"
        " f.scrollIntoView(); f.dispatchEvent(new MouseEvent('mousedown', {bubbles: true})); })()"
    )
    page.wait_for(
        "[...document.querySelectorAll('.v-overlay-container .v-list-item')]"
        ".some(e => e.textContent.includes('CT abdomen pelvis bone'))",
        30,
    )
    page.evaluate(
        "[...document.querySelectorAll('.v-overlay-container .v-list-item')]"
        ".find(e => e.textContent.includes('CT abdomen pelvis bone')).click()"
    )
    page.wait_for(
        f"window.trame.state.get('view_series')[0].series_uid === '{case.ct_series_uid}'", 60
    )
    status = page.evaluate("window.trame.state.get('status_message')")
    assert (
        status == "View Red shows the series chosen. Landmarks are now placed and measured on it."
    )
    # The landmarks belonged to the radiograph: the CT starts without any.
    assert page.evaluate("window.trame.state.get('measurements')") == []
    time.sleep(4.0)
    _screenshot(page, "series-display-ct-chosen-again.png")

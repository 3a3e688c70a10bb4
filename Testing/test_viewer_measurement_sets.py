"""Hip and Cobb landmarks in the viewer page, in real headless Chromium on the real Orthanc.

A real hip radiograph (PixelSpacing 0.2 mm), a real radiograph without any pixel spacing, and
a real CT are opened in one page. The reader chooses a measurement set, loads or places its
landmarks, nudges one, and reads the table; expected values come from the measurement library
called directly on the same points with the radiograph's own calibration.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
from browser_driver import Browser, BrowserError
from viewer_case import (
    ARTIFACTS,
    click_landmark_button,
    content_fraction,
    landmark_ras,
    open_study,
    png_rgb,
    press_and_release,
    slice_view_rectangles,
    store,
    study_copy,
    value_of,
    view_rectangles,
    wait_for_measurement,
    wait_for_views,
)
from viewer_server import viewer_on_orthanc

from MSKPlannerLib.calibration import calibration_from_dataset
from MSKPlannerLib.landmarks import LandmarkSet, write_markups_json
from MSKPlannerLib.measure_cobb import cobb_from_endplates
from MSKPlannerLib.measurement_nodes import measure_landmarks
from MSKPlannerLib.measurement_table import VOLUME_GEOMETRY
from mskworkbench.local_orthanc import LocalOrthanc

pytestmark = [pytest.mark.browser, pytest.mark.pacs]

HIP = "MSKWB-SETS-HIP"
NO_SPACING = "MSKWB-SETS-NOCAL"
SPINE = "MSKWB-SETS-SPINE"

#: Right hip landmarks on the radiograph as the viewer shows it: the image lies in the plane
#: S = 0 (it has no orientation), columns toward RAS -x and rows toward RAS -y (the feet).
HIP_RAS_MM = {
    "femoral_head_center": (-150.0, -160.0, 0.0),
    "femoral_neck_center": (-130.0, -175.0, 0.0),
    "femoral_shaft_proximal": (-117.0, -220.0, 0.0),
    "femoral_shaft_distal": (-113.0, -340.0, 0.0),
    "acetabulum_lateral_edge": (-125.0, -138.0, 0.0),
    "acetabulum_inferior_edge": (-160.0, -185.0, 0.0),
    "teardrop_right": (-190.0, -190.0, 0.0),
    "teardrop_left": (-300.0, -188.0, 0.0),
    "lesser_trochanter_right": (-190.0, -235.0, 0.0),
    "lesser_trochanter_left": (-300.0, -230.0, 0.0),
}

#: Endplate lines of a curve in the coronal plane through the CT (RAS mm).
ENDPLATES_RAS_MM = {
    "T12-inferior": ((40.0, 187.5, -770.0), (80.0, 187.5, -764.0)),
    "L2-superior": ((50.0, 187.5, -785.0), (90.0, 187.5, -784.0)),
    "L4-inferior": ((40.0, 187.5, -800.0), (80.0, 187.5, -808.0)),
}


@pytest.fixture(scope="module")
def stored_studies(orthanc: LocalOrthanc, shared_data: Path) -> dict[str, pydicom.Dataset]:
    """The hip radiograph, the radiograph without spacing and the CT, one patient each."""
    orthanc.clear()
    hip = study_copy([shared_data / "wg04" / "RG2_JPLL.dcm"], HIP, "20240102", "HIP")
    bare = study_copy([shared_data / "wg04" / "RG3_JPLL.dcm"], NO_SPACING, "20240103", "LEG")
    ct_files = sorted((shared_data / "totalsegmentator" / "ct_dicom").iterdir())
    spine = study_copy(ct_files, SPINE, "20240104", "CT SPINE")
    store(orthanc, hip, bare, spine)
    return {"hip": hip[0], "bare": bare[0]}


@pytest.fixture(scope="module")
def page(
    orthanc: LocalOrthanc,
    stored_studies: dict[str, pydicom.Dataset],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Browser]:
    """One page of ``mskwb serve --pacs``."""
    with viewer_on_orthanc(orthanc, tmp_path_factory.mktemp("viewer")) as url:
        try:
            browser = Browser(width_px=1600, height_px=1000)
        except BrowserError as error:
            pytest.fail(f"{error} (the browser tests need Chromium; .ci/setup installs it)")
        with browser:
            browser.navigate(url)
            yield browser


def _expected_hip(points: dict, dataset: pydicom.Dataset) -> dict[str, float]:
    calibration = calibration_from_dataset(dataset, dataset.SeriesInstanceUID)
    landmarks = LandmarkSet(points_ras_mm={k: np.array(v) for k, v in points.items()})
    table = measure_landmarks("hip", landmarks, "right", calibration, dataset.SeriesInstanceUID)
    return {row.key: row.value for row in table.rows}


def _choose(page: Browser, selector: str, state_key: str, value: str) -> None:
    page.evaluate(f"document.querySelector('{selector}').click()")
    page.wait_for(f"window.trame.state.get('{state_key}') === '{value}'", 10)


def test_hip_landmarks_on_a_calibrated_radiograph_measure_in_mm_and_follow_a_nudge(
    page: Browser, stored_studies: dict[str, pydicom.Dataset], tmp_path: Path
) -> None:
    open_study(page, HIP, "2024-01-02", 1)
    wait_for_views(page, 1)
    alone = png_rgb(page.screenshot(ARTIFACTS / "viewer_radiograph.png"))
    rectangles = view_rectangles(page)
    # The single-study protocol: the radiograph alone, filling the view area; no 3D view.
    assert len(rectangles) == 1 and rectangles[0][2] > 600 and rectangles[0][3] > 900
    assert content_fraction(alone, rectangles[0]) > 0.2

    _choose(page, "#set-hip", "measurement_set", "hip")
    landmark_file = tmp_path / "hip.mrk.json"
    write_markups_json(landmark_file, {k: np.array(v) for k, v in HIP_RAS_MM.items()})
    page.set_file_input("input[type=file]", landmark_file)
    page.wait_for("document.querySelectorAll('.landmark-ras:not(:empty)').length === 10", 30)
    side_reason = page.evaluate("document.querySelector('#not-measured').textContent")
    _choose(page, "#side-right", "side", "right")
    offset = wait_for_measurement(page, "femoral_offset_mm")
    shown = {key: value_of(wait_for_measurement(page, key)) for key in ("ccd_deg", "lld_mm")}
    expected = _expected_hip(HIP_RAS_MM, stored_studies["hip"])
    calibration = page.evaluate("document.querySelector('#calibration').textContent")

    assert "choose Left or Right" in side_reason  # the file names no side: none is guessed
    assert "pixel spacing: PixelSpacing 0.2 x 0.2 mm" in calibration
    assert offset.split()[1] == "mm"
    assert value_of(offset) == pytest.approx(expected["femoral_offset_mm"], abs=0.06)
    assert shown["ccd_deg"] == pytest.approx(expected["ccd_deg"], abs=0.06)
    assert shown["lld_mm"] == pytest.approx(expected["lld_mm"], abs=0.06)

    # Nudge the head centre 5 mm toward the patient's right (RAS +x): the offset follows.
    click_landmark_button(page, "femoral_head_center", "move-r")
    after = wait_for_measurement(page, "femoral_offset_mm", other_than=offset)
    moved = dict(HIP_RAS_MM, femoral_head_center=(-145.0, -160.0, 0.0))
    assert value_of(after) == pytest.approx(
        _expected_hip(moved, stored_studies["hip"])["femoral_offset_mm"], abs=0.06
    )

    # A hip landmark placed with a click right after choosing it changes the leg length.
    view = view_rectangles(page)[0]
    lld = wait_for_measurement(page, "lld_mm")
    click_landmark_button(page, "lesser_trochanter_left", "place-landmark")
    press_and_release(page, view[0] + 0.3 * view[2], view[1] + 0.7 * view[3])
    wait_for_measurement(page, "lld_mm", other_than=lld, timeout_s=30)
    page.screenshot(ARTIFACTS / "viewer_hip.png")
    placed = [float(v) for v in landmark_ras(page, "lesser_trochanter_left").split()]
    assert placed[2] == pytest.approx(0.0, abs=0.6)  # on the radiograph's plane


def test_lengths_on_a_radiograph_without_spacing_are_refused_with_the_reason(
    page: Browser, tmp_path: Path
) -> None:
    open_study(page, NO_SPACING, "2024-01-03", 1)
    # Opening a study starts an empty case with the default set: the reader chooses again.
    assert page.evaluate("window.trame.state.get('measurement_set')") == "alignment"
    _choose(page, "#set-hip", "measurement_set", "hip")
    landmark_file = tmp_path / "hip_right.mrk.json"
    write_markups_json(
        landmark_file, {k: np.array(v) for k, v in HIP_RAS_MM.items()}, description="right"
    )
    page.set_file_input("input[type=file]", landmark_file)
    wait_for_measurement(page, "ccd_deg")
    keys = page.evaluate(
        "[...document.querySelectorAll('.measurement-value')].map(c => c.dataset.key)"
    )
    reasons = page.evaluate("document.querySelector('#not-measured').textContent")
    calibration = page.evaluate("document.querySelector('#calibration').textContent")
    page.screenshot(ARTIFACTS / "viewer_hip_uncalibrated.png")

    assert sorted(keys) == ["ccd_deg", "cup_inclination_deg"]
    assert "femoral_offset_mm:" in reasons and "lld_mm:" in reasons
    assert "is not calibrated" in reasons and "no pixel spacing tag" in reasons
    assert "lengths in mm are refused" in reasons
    assert calibration.strip().startswith("Calibration: none, angles only")


def test_cobb_endplate_lines_are_loaded_nudged_and_placed_with_two_clicks(
    page: Browser, tmp_path: Path
) -> None:
    state = "window.trame.state"
    open_study(page, SPINE, "2024-01-04", 1)
    _choose(page, "#set-cobb", "measurement_set", "cobb")
    assert page.evaluate("document.querySelector('#side-toggle')") is None  # Cobb has no side
    landmark_file = tmp_path / "spine.mrk.json"
    write_markups_json(
        landmark_file, lines_ras_mm={k: np.array(v) for k, v in ENDPLATES_RAS_MM.items()}
    )
    page.set_file_input("input[type=file]", landmark_file)
    before = wait_for_measurement(page, "cobb_deg")
    expected = cobb_from_endplates(ENDPLATES_RAS_MM, VOLUME_GEOMETRY, "")
    rows = page.evaluate(
        "[...document.querySelectorAll('.landmark-row')].map(r => r.querySelector('td').textContent)"
    )
    assert value_of(before) == pytest.approx(expected.rows[0].value, abs=0.06)
    assert rows == ["T12-inferior", "L2-superior", "L4-inferior"]

    # Raise the right-hand end of the L4 line 5 mm: the Cobb angle follows.
    page.evaluate("document.querySelector('.move-s2[data-label=\"L4-inferior\"]').click()")
    after = wait_for_measurement(page, "cobb_deg", other_than=before)
    tilted = dict(ENDPLATES_RAS_MM)
    tilted["L4-inferior"] = ((40.0, 187.5, -800.0), (80.0, 187.5, -803.0))
    assert value_of(after) == pytest.approx(
        cobb_from_endplates(tilted, VOLUME_GEOMETRY, "").rows[0].value, abs=0.06
    )

    # Place the L5 inferior endplate with two clicks in the coronal view.
    page.evaluate(f"{state}.set('cobb_vertebra', 'L5')")
    page.evaluate("document.querySelector('#endplate-inferior').click()")
    page.wait_for(f"{state}.get('cobb_endplate') === 'inferior'", 10)
    green = slice_view_rectangles(page)["Green"]
    coronal_a_mm = page.evaluate(f"{state}.get('Green__SliderState__value')")
    page.evaluate("document.querySelector('#place-endplate').click()")
    press_and_release(page, green[0] + 0.35 * green[2], green[1] + 0.5 * green[3])
    page.wait_for(
        "(() => { const p = window.trame.state.get('placing');"
        " return p && p.points_placed === 1; })()",
        20,
    )
    press_and_release(page, green[0] + 0.6 * green[2], green[1] + 0.55 * green[3])
    line = page.wait_for(
        "(() => { const r = [...document.querySelectorAll('.landmark-row')]"
        ".find(r => r.textContent.includes('L5-inferior'));"
        " const t = r ? r.querySelector('.landmark-ras').textContent : '';"
        " return t.includes('→') ? t : ''; })()",
        30,
    )
    page.wait_for("document.querySelector('#placing') === null", 10)
    page.screenshot(ARTIFACTS / "viewer_cobb.png")
    ends = [[float(v) for v in end.split()] for end in line.split("→")]

    assert [end[1] for end in ends] == pytest.approx([coronal_a_mm] * 2, abs=0.6)
    assert ends[0][0] > ends[1][0]  # the screen's left is the patient's right (RAS +x)
    assert wait_for_measurement(page, "cobb_deg")

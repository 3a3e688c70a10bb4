"""Landmark files loaded in the viewer: refused on another image, replacements named.

Headless: real markups nodes in a real slicer-core scene, the real CT of the shared data, and
files written by the landmark library as the page would upload them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from MSKPlannerLib.landmarks import write_markups_json
from MSKPriorsLib.app_context import AppContext
from MSKPriorsLib.frames import ijk_to_ras_from_sitk
from MSKPriorsLib.pixel_data_series import read_dicom_series
from mskworkbench.web.landmark_files import import_markups, points_outside_image
from mskworkbench.web.landmark_panel import replaced_notice
from mskworkbench.web.measurements import LiveLandmarks, format_uncertainty, format_value

ALIGNMENT_LABELS = (
    "hip_center",
    "knee_center_femur",
    "knee_center_tibia",
    "ankle_center",
)


@pytest.fixture(scope="module")
def ct_image(shared_data: Path) -> sitk.Image:
    files = sorted((shared_data / "totalsegmentator" / "ct_dicom").iterdir())
    return read_dicom_series(files, "").image


def _inside_points(image: sitk.Image) -> dict[str, np.ndarray]:
    """Alignment landmarks spread over the image's middle, RAS mm."""
    size = np.array(image.GetSize(), dtype=float)
    ijk_to_ras = ijk_to_ras_from_sitk(image)
    points = {}
    for index, label in enumerate(ALIGNMENT_LABELS):
        ijk = size * np.array([0.5, 0.5, 0.2 + 0.2 * index])
        points[label] = (ijk_to_ras @ np.r_[ijk, 1.0])[:3]
    return points


def _file_bytes(tmp_path: Path, name: str, points: dict[str, np.ndarray]) -> bytes:
    path = tmp_path / name
    write_markups_json(path, points, description="right")
    return path.read_bytes()


def test_landmarks_of_another_image_are_refused_and_the_placed_ones_kept(
    app_context: AppContext, ct_image: sitk.Image, tmp_path: Path
) -> None:
    live = LiveLandmarks(app_context)
    live.attach("1.2.3")
    inside = _inside_points(ct_image)
    import_markups(live, "leg.mrk.json", _file_bytes(tmp_path, "leg.mrk.json", inside), ct_image)
    before = live.positions_ras_mm()
    # The long-leg radiograph's landmarks reach far below this CT; a shifted file lies nowhere.
    below = {k: v + np.array([0.0, 0.0, -895.0]) for k, v in inside.items()}
    shifted = {k: v + 5000.0 for k, v in inside.items()}

    for name, points in (("radiograph.mrk.json", below), ("shifted.mrk.json", shifted)):
        content = _file_bytes(tmp_path, name, points)
        with pytest.raises(ValueError, match=r"lie outside the CT; they were not placed on this"):
            import_markups(live, name, content, ct_image, "the CT")

    after = live.positions_ras_mm()
    assert set(after) == set(before)
    for label, position in before.items():
        np.testing.assert_allclose(after[label], position)
    assert points_outside_image(list(inside.values()), ct_image) == 0
    assert points_outside_image(list(shifted.values()), ct_image) == len(shifted)


def test_loading_a_file_names_the_placed_landmarks_it_replaced(
    app_context: AppContext, ct_image: sitk.Image, tmp_path: Path
) -> None:
    live = LiveLandmarks(app_context)
    live.attach("1.2.3")
    inside = _inside_points(ct_image)
    # The reader placed two landmarks by hand; the file holds all four.
    live.set_position("hip_center", inside["hip_center"] + 1.0)
    live.set_position("ankle_center", inside["ankle_center"] + 1.0)

    imported = import_markups(
        live, "leg.mrk.json", _file_bytes(tmp_path, "leg.mrk.json", inside), ct_image
    )

    assert imported.replaced == ["hip_center", "ankle_center"]
    notice = replaced_notice("leg.mrk.json", imported.replaced)
    assert notice == "leg.mrk.json replaced 2 landmarks placed before: hip_center, ankle_center."
    assert replaced_notice("leg.mrk.json", []) == ""
    np.testing.assert_allclose(live.positions_ras_mm()["hip_center"], inside["hip_center"])


def test_values_and_uncertainties_carry_their_unit_as_the_report_shows_them() -> None:
    assert format_value(176.04, "deg") + " " + format_uncertainty(0.6, "deg") == "176.0° ± 0.6°"
    assert format_value(36.0, "mm") + " " + format_uncertainty(3.71, "mm") == "36.0 mm ± 3.7 mm"
    assert format_uncertainty(None, "mm") == ""

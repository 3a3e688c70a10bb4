"""The browser viewer's layout follows the hanging protocol: headless, on real MRML views.

The viewer application is built as ``mskwb serve`` builds it (trame server, trame-slicer scene,
views and layout manager) without serving a page; studies are real CT slices from the shared
data in a real local archive. What the page then shows is checked in the scene: the layout,
which volume every slice view shows, in which orientation, and linked scrolling.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import vtk
from viewer_case import TWO_PRIORS_RULE, study_copy

from MSKPriorsLib.archive import LocalArchive
from MSKPriorsLib.display_presets import PRESET_ATTRIBUTE
from MSKPriorsLib.hanging_protocols import LAYOUTS
from MSKPriorsLib.mrml_volumes import sitk_from_volume
from mskworkbench.web.app import ViewerApp
from mskworkbench.web.hanging_layout import (
    THREED_VIEW,
    has_threed_view,
    layout_id,
    page_layout,
    slice_view_names,
)
from mskworkbench.web.sources import ArchiveSource


def _tags(items: list) -> list:
    return [_tags(item.items) if hasattr(item, "items") else item.singleton_tag for item in items]


def test_page_layouts_are_slicers_arrangements_under_slicers_view_names() -> None:
    for name, (_, views, has_3d) in LAYOUTS.items():
        alone = page_layout(name, bones_below=False)
        with_bones = page_layout(name, bones_below=True)

        assert slice_view_names(alone) == list(views)
        assert has_threed_view(name) == has_3d
        shown = [view.singleton_tag for view in alone.get_views(is_recursive=True)]
        assert (THREED_VIEW in shown) == has_3d
        # Bones add a 3D strip only where the protocol's layout has no 3D view.
        with_bones_shown = [view.singleton_tag for view in with_bones.get_views(True)]
        assert THREED_VIEW in with_bones_shown
        assert layout_id(name, True) == (name if has_3d else f"{name}+bones")
    # Slicer's two-over-two: Red and Slice4 above, Green and Yellow below.
    assert _tags(page_layout("2x2").items) == [["Red", "Slice4"], ["Green", "Yellow"]]
    assert _tags(page_layout("2x2-3d").items) == [["Red", THREED_VIEW], ["Green", "Yellow"]]
    with pytest.raises(KeyError, match="3x3"):
        page_layout("3x3")


@pytest.fixture
def ct_files(shared_data: Path) -> list[Path]:
    """The 20 real CT slices of the shared data."""
    return sorted((shared_data / "totalsegmentator" / "ct_dicom").iterdir())


def _archive(folder: Path, *studies: list) -> ArchiveSource:
    archive = LocalArchive(folder)
    for datasets in studies:
        for ds in datasets:
            archive.store_dataset(ds)
    archive.close()
    return ArchiveSource(folder)


def _open(app: ViewerApp, study_uid: str) -> None:
    opened = app.workflow.read_study_with_priors(study_uid)
    app.workflow.show(opened)


def _view(app: ViewerApp, name: str):
    return app.slicer_app.view_manager.get_view(name)


def test_a_study_without_a_prior_is_hung_alone(tmp_path: Path, ct_files: list[Path]) -> None:
    current = study_copy(ct_files, "MSKWB-HANG-1", "20221208", "CT PELVIS")
    app = ViewerApp(_archive(tmp_path / "archive", current), tmp_path / "work")

    _open(app, current[0].StudyInstanceUID)

    # The shipped ct-single protocol: axial, coronal and sagittal of the current CT, with 3D.
    assert app.workflow.hanging.rule == "ct-single"
    assert app.layout_manager.layout_id == "2x2-3d"
    assert set(app.slicer_app.view_manager.get_current_view_ids()) == {
        "Red",
        "Green",
        "Yellow",
        THREED_VIEW,
    }
    reference = app.case.current.GetID()
    orientations = {}
    for name in ("Red", "Green", "Yellow"):
        assert _view(app, name).get_background_volume_id() == reference
        orientations[name] = _view(app, name).get_orientation()
    assert orientations == {"Red": "Axial", "Green": "Coronal", "Yellow": "Sagittal"}
    assert app.workflow.shown_prior_uids == []
    assert app.case.transforms == {}
    assert set(app.workflow.view_labels()) == {"Red", "Green", "Yellow"}
    assert all(label.startswith("Current") for label in app.workflow.view_labels().values())
    assert app.workflow.hanging_row()["name"] == "ct-single"


def test_a_protocol_hanging_two_priors_shows_registers_and_links_both(
    tmp_path: Path, ct_files: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "ct-two-priors.json").write_text(json.dumps(TWO_PRIORS_RULE))
    monkeypatch.setenv("MSKWB_HANGING_PROTOCOLS", str(rules))
    current = study_copy(ct_files, "MSKWB-HANG-2", "20221208", "CT PELVIS")
    first = study_copy(ct_files, "MSKWB-HANG-2", "20190301", "CT PELVIS")
    # The oldest prior lies 10 mm higher in the scanner: only registration aligns it.
    second = study_copy(ct_files, "MSKWB-HANG-2", "20160520", "CT PELVIS", (0.0, 0.0, 10.0))
    app = ViewerApp(_archive(tmp_path / "archive", current, first, second), tmp_path / "work")

    _open(app, current[0].StudyInstanceUID)

    workflow, case = app.workflow, app.case
    assert workflow.hanging.rule == "ct-two-priors"
    assert app.layout_manager.layout_id == "2x2-3d"
    shown = {
        name: _view(app, name).get_background_volume_id() for name in ("Red", "Green", "Yellow")
    }
    by_series = {uid: node.GetID() for uid, node in case.volumes.items()}
    assert shown == {
        "Red": by_series[current[0].SeriesInstanceUID],
        "Green": by_series[first[0].SeriesInstanceUID],
        "Yellow": by_series[second[0].SeriesInstanceUID],
    }
    assert workflow.shown_prior_uids == [first[0].StudyInstanceUID, second[0].StudyInstanceUID]
    assert workflow.view_labels() == {
        "Red": "Current · 2022-12-08 · Axial",
        "Green": "Prior #1 · 2019-03-01 · Axial",
        "Yellow": "Prior #2 · 2016-05-20 · Axial",
    }

    # Each view's volume has the protocol's preset; the page's buttons override and restore.
    def presets() -> dict[str, str]:
        return {
            h.view: case.volumes[h.series_uid].GetAttribute(PRESET_ATTRIBUTE) for h in case.hung
        }

    assert presets() == {"Red": "ct-bone", "Green": "ct-bone", "Yellow": "ct-soft-tissue"}
    workflow.apply_preset("bone")
    assert set(presets().values()) == {"ct-bone"}
    workflow.apply_preset("protocol")
    assert presets()["Yellow"] == "ct-soft-tissue"

    # Both priors are registered; the shifted one comes back by about 10 mm along S.
    pending = workflow.priors_to_register()
    assert {read.series_uid for read in pending} == {
        first[0].SeriesInstanceUID,
        second[0].SeriesInstanceUID,
    }
    image = sitk_from_volume(case.current)
    for read in pending:
        workflow.register(image, read)
        assert workflow.apply_registration(read)
    to_world = vtk.vtkMatrix4x4()
    case.transforms[second[0].SeriesInstanceUID].GetMatrixTransformToParent(to_world)
    assert to_world.GetElement(2, 3) == pytest.approx(-10.0, abs=1.0)
    assert workflow.priors_to_register() == []

    # Scrolling the current view scrolls both priors to the same anatomy (world slice).
    step_mm = _view(app, "Red").get_slice_step()
    target_mm = case.slice_offset("Red") + 3 * step_mm
    case.set_slice_offset("Red", target_mm)
    assert case.slice_offset("Green") == pytest.approx(target_mm, abs=1e-3)
    assert case.slice_offset("Yellow") == pytest.approx(target_mm, abs=1e-3)
    case.set_linked(False)
    case.set_slice_offset("Red", target_mm - 2 * step_mm)
    assert case.slice_offset("Yellow") == pytest.approx(target_mm, abs=1e-3)
    case.set_linked(True)
    assert case.slice_offset("Yellow") == pytest.approx(target_mm - 2 * step_mm, abs=1e-3)

    # Choosing the second prior hangs it first; nothing is read again, registrations stay.
    loaded = set(workflow.series)
    again = workflow.read_with_prior_first(second[0].StudyInstanceUID, loaded)
    workflow.show_hanging(again)
    assert again.read == {}
    assert _view(app, "Green").get_background_volume_id() == by_series[second[0].SeriesInstanceUID]
    assert _view(app, "Yellow").get_background_volume_id() == by_series[first[0].SeriesInstanceUID]
    assert workflow.view_labels()["Green"] == "Prior #2 · 2016-05-20 · Axial"
    case.transforms[second[0].SeriesInstanceUID].GetMatrixTransformToParent(to_world)
    assert to_world.GetElement(2, 3) == pytest.approx(-10.0, abs=1.0)
    assert np.isfinite(case.slice_offset("Green"))

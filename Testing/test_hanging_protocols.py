"""Hanging protocols: rule files as data, user rules overriding defaults, view assignment, and
the plan shown in a real MRML scene."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from MSKPriorsLib.app_context import AppContext
from MSKPriorsLib.hanging_protocols import (
    DEFAULT_RULES_FOLDER,
    USER_FOLDERS_VARIABLE,
    HangingProtocolError,
    load_rules,
    plan_hanging,
)
from MSKPriorsLib.hanging_views import apply_hanging_plan, register_and_show
from MSKPriorsLib.mrml_volumes import add_volume_from_array, add_volume_from_sitk
from MSKPriorsLib.records import PatientIdentity, SeriesRecord, StudyRecord
from MSKPriorsLib.registration import LPS_TO_RAS_4X4, euler_to_matrix
from MSKPriorsLib.series_selection import series_orientation

PATIENT = PatientIdentity("PAT-7", "", "Doe^Jane", "19650412")


def ct_study(uid: str, date: str, body_part: str = "KNEE") -> StudyRecord:
    return StudyRecord(uid, PATIENT, date, modalities=("CT",), body_parts=(body_part,))


def ct_series(study_uid: str) -> list[SeriesRecord]:
    return [
        SeriesRecord(f"{study_uid}.1", study_uid, "CT", 1, "Topogram 0.6", "KNEE", "", 2),
        SeriesRecord(f"{study_uid}.2", study_uid, "CT", 2, "Knee 3.0 Br40", "KNEE", "", 120),
        SeriesRecord(f"{study_uid}.3", study_uid, "CT", 3, "Knee 0.6 Br64 bone", "KNEE", "", 480),
        SeriesRecord(f"{study_uid}.4", study_uid, "SR", 99, "Dose report", "", "", 1),
    ]


def mr_knee(uid: str, date: str) -> tuple[StudyRecord, list[SeriesRecord]]:
    study = StudyRecord(uid, PATIENT, date, modalities=("MR",), body_parts=("KNEE",))
    series = [
        SeriesRecord(f"{uid}.1", uid, "MR", 1, "Localizer", "KNEE", "L", 9),
        SeriesRecord(f"{uid}.2", uid, "MR", 2, "T1 SAG", "KNEE", "L", 40),
        SeriesRecord(f"{uid}.3", uid, "MR", 3, "PD FS COR", "KNEE", "L", 30),
        SeriesRecord(f"{uid}.4", uid, "MR", 4, "PD FS AX", "KNEE", "L", 36),
    ]
    return study, series


@pytest.fixture
def no_user_rules(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty user rule folder named by the environment variable."""
    folder = tmp_path / "user_rules"
    folder.mkdir()
    monkeypatch.setenv(USER_FOLDERS_VARIABLE, str(folder))
    return folder


def test_every_shipped_rule_file_is_valid_and_has_a_catch_all(no_user_rules: Path) -> None:
    files = sorted(DEFAULT_RULES_FOLDER.glob("*.json"))
    rules = load_rules()

    assert len(files) >= 5
    assert {rule.origin for rule in rules} == {str(path) for path in files}
    assert "single-study" in {rule.name for rule in rules}


def test_ct_with_ct_prior_hangs_current_and_prior_axial_and_coronal(no_user_rules: Path) -> None:
    current, prior = ct_study("1.1", "20240610"), ct_study("2.1", "20230101")

    plan = plan_hanging(load_rules(), current, ct_series("1.1"), [(prior, ct_series("2.1"))])

    assert plan.rule == "ct-bone-compare"
    assert plan.layout == "2x2"
    assert plan.link and plan.register_priors
    assert plan.view_to_series() == {
        "Red": "1.1.3",
        "Slice4": "2.1.3",
        "Green": "1.1.3",
        "Yellow": "2.1.3",
    }
    by_view = {a.view: a for a in plan.assignments}
    assert by_view["Slice4"].role == "prior" and by_view["Slice4"].prior_rank == 1
    assert by_view["Green"].orientation == "Coronal"
    assert {a.preset for a in plan.assignments} == {"ct-bone"}
    assert plan.unfilled == {}


def test_prior_views_skip_priors_without_a_fitting_series(no_user_rules: Path) -> None:
    current = ct_study("1.1", "20240610")
    scout_only = ct_study("2.0", "20240101")
    usable = ct_study("2.1", "20230101")
    priors = [
        (scout_only, [SeriesRecord("2.0.1", "2.0", "CT", 1, "Topogram", "", "", 1)]),
        (usable, ct_series("2.1")),
    ]

    plan = plan_hanging(load_rules(), current, ct_series("1.1"), priors)

    by_view = {a.view: a for a in plan.assignments}
    assert by_view["Slice4"].study_uid == "2.1"
    assert by_view["Slice4"].prior_rank == 2


def test_knee_mr_prefers_the_coronal_pd_series(no_user_rules: Path) -> None:
    current, current_series = mr_knee("1.9", "20240610")
    prior, prior_series = mr_knee("2.9", "20220610")

    plan = plan_hanging(load_rules(), current, current_series, [(prior, prior_series)])

    assert plan.rule == "mr-knee-compare"
    assert plan.view_to_series() == {"Red": "1.9.3", "Yellow": "2.9.3"}
    assert {a.preset for a in plan.assignments} == {"mr-auto"}


def test_a_rule_that_would_leave_views_empty_yields_to_one_that_fills_them(
    no_user_rules: Path,
) -> None:
    current = ct_study("1.1", "20240610")
    short = [SeriesRecord("1.1.9", "1.1", "CT", 9, "Knee 3.0", "KNEE", "", 4)]
    prior = (ct_study("2.1", "20230101"), ct_series("2.1"))

    plan = plan_hanging(load_rules(), current, short, [prior])

    assert plan.rule == "ct-single"
    assert plan.unfilled == {}
    assert set(plan.view_to_series().values()) == {"1.1.9"}


def test_ct_without_prior_gets_three_planes_and_3d(no_user_rules: Path) -> None:
    plan = plan_hanging(load_rules(), ct_study("1.1", "20240610"), ct_series("1.1"), [])

    assert plan.rule == "ct-single"
    assert plan.layout == "2x2-3d"
    assert [a.orientation for a in plan.assignments] == ["Axial", "Coronal", "Sagittal"]


def test_user_rule_with_the_same_name_overrides_the_default(no_user_rules: Path) -> None:
    override = {
        "name": "ct-bone-compare",
        "description": "site preference: soft tissue, side by side",
        "priority": 10,
        "match": {"modalities": ["CT"], "prior_required": True, "prior_modalities": ["CT"]},
        "layout": "1x2",
        "views": {
            "Red": {
                "study": "current",
                "preset": "ct-soft-tissue",
                "series": {"modalities": ["CT"]},
            },
            "Yellow": {
                "study": "prior",
                "preset": "ct-soft-tissue",
                "series": {"modalities": ["CT"], "description_regex": "Br40"},
            },
        },
    }
    (no_user_rules / "mine.json").write_text(json.dumps(override))

    rules = load_rules()
    plan = plan_hanging(
        rules,
        ct_study("1.1", "20240610"),
        ct_series("1.1"),
        [(ct_study("2.1", "20230101"), ct_series("2.1"))],
    )

    assert [r.name for r in rules].count("ct-bone-compare") == 1
    assert plan.rule == "ct-bone-compare" and plan.layout == "1x2"
    assert plan.view_to_series() == {"Red": "1.1.3", "Yellow": "2.1.2"}
    assert {a.preset for a in plan.assignments} == {"ct-soft-tissue"}


def test_a_more_specific_user_rule_wins_for_its_body_part(no_user_rules: Path) -> None:
    rule = {
        "name": "ct-spine-compare",
        "priority": 10,
        "match": {
            "modalities": ["CT"],
            "body_parts": ["L-SPINE"],
            "prior_required": True,
            "prior_modalities": ["CT"],
        },
        "layout": "1x2",
        "views": {
            "Red": {
                "study": "current",
                "orientation": "Sagittal",
                "series": {"modalities": ["CT"]},
            },
            "Yellow": {
                "study": "prior",
                "orientation": "Sagittal",
                "series": {"modalities": ["CT"]},
            },
        },
    }
    (no_user_rules / "spine.json").write_text(json.dumps([rule]))
    rules = load_rules()
    spine = ct_study("1.5", "20240610", "LSPINE")
    knee = ct_study("1.1", "20240610", "KNEE")
    prior = (ct_study("2.1", "20230101"), ct_series("2.1"))

    assert plan_hanging(rules, spine, ct_series("1.5"), [prior]).rule == "ct-spine-compare"
    assert plan_hanging(rules, knee, ct_series("1.1"), [prior]).rule == "ct-bone-compare"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "cannot read it"),
        ('{"name": "x", "layout": "3x3", "views": {"Red": {}}}', "unknown layout"),
        ('{"name": "x", "layout": "1x2", "views": {"Green": {}}}', "has no view 'Green'"),
        (
            '{"name": "x", "layout": "1x1", "views": {"Red": {"preset": "ct-lung"}}}',
            "unknown preset",
        ),
        ('{"name": "x", "layout": "1x1", "views": {"Red": {"serie": {}}}}', "unknown key(s) serie"),
        (
            '{"name": "x", "layout": "1x1", "views": {"Red": {"series": {"description_regex": "(("}}}}',
            "bad regular expression",
        ),
    ],
)
def test_a_bad_user_rule_file_is_refused_naming_the_file(
    no_user_rules: Path, content: str, message: str
) -> None:
    path = no_user_rules / "broken.json"
    path.write_text(content)

    with pytest.raises(HangingProtocolError) as error:
        load_rules()

    assert str(path) in str(error.value)
    assert message in str(error.value)


def test_series_orientation_from_direction_cosines_and_description() -> None:
    sagittal = SeriesRecord(
        "s", "t", "MR", extra={"image_orientation_patient": [0, 1, 0, 0, 0, -1]}
    )
    coronal = SeriesRecord("c", "t", "MR", extra={"image_orientation_patient": [1, 0, 0, 0, 0, -1]})

    assert series_orientation(sagittal) == "Sagittal"
    assert series_orientation(coronal) == "Coronal"
    assert series_orientation(SeriesRecord("a", "t", "MR", description="t2_tse_tra")) == "Axial"
    assert series_orientation(SeriesRecord("u", "t", "MR", description="3D T1")) == ""


def test_plan_is_shown_in_a_real_scene_linked_with_presets(
    app_context: AppContext, no_user_rules: Path
) -> None:
    current, prior = ct_study("1.1", "20240610"), ct_study("2.1", "20230101")
    plan = plan_hanging(load_rules(), current, ct_series("1.1"), [(prior, ct_series("2.1"))])
    rng = np.random.default_rng(3)
    scene = app_context.scene
    volumes = {
        "1.1.3": add_volume_from_array(
            scene,
            rng.integers(-1000, 2000, (20, 32, 32)).astype(np.int16),
            np.diag([0.8, 0.8, 2.0, 1.0]),
            "current",
        ),
        "2.1.3": add_volume_from_array(
            scene,
            rng.integers(-1000, 2000, (10, 16, 16)).astype(np.int16),
            np.array([[1.0, 0, 0, 100], [0, 1, 0, 0], [0, 0, 4, 0], [0, 0, 0, 1]]),
            "prior",
        ),
    }

    slice_nodes = apply_hanging_plan(scene, plan, volumes)

    assert set(slice_nodes) == {"Red", "Slice4", "Green", "Yellow"}
    layout = scene.GetFirstNodeByClass("vtkMRMLLayoutNode")
    assert layout.GetViewArrangement() == layout.SlicerLayoutTwoOverTwoView
    composites = {
        node.GetLayoutName(): node
        for node in (
            scene.GetNthNodeByClass(i, "vtkMRMLSliceCompositeNode")
            for i in range(scene.GetNumberOfNodesByClass("vtkMRMLSliceCompositeNode"))
        )
    }
    assert composites["Red"].GetBackgroundVolumeID() == volumes["1.1.3"].GetID()
    assert composites["Slice4"].GetBackgroundVolumeID() == volumes["2.1.3"].GetID()
    assert all(composites[view].GetLinkedControl() for view in slice_nodes)
    assert slice_nodes["Green"].GetOrientation() == "Coronal"
    assert slice_nodes["Red"].GetOrientation() == "Axial"
    display = volumes["2.1.3"].GetDisplayNode()
    assert (display.GetWindow(), display.GetLevel()) == (2000.0, 500.0)
    # The prior view is centred on the prior volume (x 100..115 mm RAS, z 0..36 mm).
    centre = slice_nodes["Slice4"].GetSliceToRAS()
    assert centre.GetElement(0, 3) == pytest.approx(107.5)
    assert centre.GetElement(2, 3) == pytest.approx(18.0)


def test_showing_a_plan_without_its_volume_names_the_series(
    app_context: AppContext, no_user_rules: Path
) -> None:
    plan = plan_hanging(load_rules(), ct_study("1.1", "20240610"), ct_series("1.1"), [])

    with pytest.raises(KeyError, match=r"1\.1\.3"):
        apply_hanging_plan(app_context.scene, plan, {})


def test_register_and_show_registers_the_prior_then_links_the_views(
    app_context: AppContext, no_user_rules: Path, shared_data: Path
) -> None:
    ct = sitk.ReadImage(str(shared_data / "totalsegmentator" / "ct_volume.nii.gz"))
    moved = sitk.Euler3DTransform()
    moved.SetCenter(ct.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2 for s in ct.GetSize()]))
    moved.SetRotation(0.0, 0.0, math.radians(5.0))
    moved.SetTranslation((6.0, 0.0, -9.0))
    scene = app_context.scene
    volumes = {
        "1.1.3": add_volume_from_sitk(scene, ct, "current"),
        "2.1.3": add_volume_from_sitk(
            scene, sitk.Resample(ct, ct, moved.GetInverse(), sitk.sitkLinear, -1024.0), "prior"
        ),
    }
    current, prior = ct_study("1.1", "20240610"), ct_study("2.1", "20230101")
    plan = plan_hanging(load_rules(), current, ct_series("1.1"), [(prior, ct_series("2.1"))])

    registrations = register_and_show(scene, plan, volumes)
    register_and_show(scene, plan, volumes)

    assert set(registrations) == {"2.1.3"}
    node = registrations["2.1.3"].transform_node
    assert volumes["2.1.3"].GetParentTransformNode() is not None
    centre_lps = np.array(moved.GetCenter())
    prior_point_ras = LPS_TO_RAS_4X4 @ euler_to_matrix(moved) @ np.r_[centre_lps + 20.0, 1.0]
    shown_at = node.GetTransformToParent().TransformPoint(prior_point_ras[:3].tolist())
    expected_ras = (LPS_TO_RAS_4X4 @ np.r_[centre_lps + 20.0, 1.0])[:3]
    assert np.linalg.norm(np.array(shown_at) - expected_ras) < 1.0
    assert scene.GetNumberOfNodesByClass("vtkMRMLLinearTransformNode") == 1
    assert scene.GetNumberOfNodesByClass("vtkMRMLSliceNode") == 4
    assert scene.GetNumberOfNodesByClass("vtkMRMLSliceCompositeNode") == 4

"""Cobb angle from endplate lines and from label maps (synthetic and real TotalSegmentator)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from MSKPlannerLib.label_maps import read_label_map
from MSKPlannerLib.measure_cobb import (
    CobbError,
    body_end_line_ras,
    cobb_from_endplates,
    cobb_from_label_map,
    cobb_from_sitk_labels,
    parse_endplate_name,
    vertebra_order,
)
from MSKPlannerLib.measurement_phantoms import endplate_lines, spine_label_map, spine_phantom
from MSKPlannerLib.measurement_table import VOLUME_GEOMETRY
from MSKPriorsLib.frames import ijk_to_ras_from_sitk

TILTS_DEG = [1.0, 4.0, 9.0, 3.0, -4.0, -13.0, -7.0, -1.0]  # T10..L5, convex right, apex L2


def test_endplate_names_and_order() -> None:
    assert parse_endplate_name("L1-superior") == ("L1", "superior")
    assert parse_endplate_name("t12_Inferior") == ("T12", "inferior")
    with pytest.raises(CobbError, match="L1-superior"):
        parse_endplate_name("L1 top")
    names = ["L1", "S1", "T12", "C7", "T1"]
    assert sorted(names, key=vertebra_order) == ["C7", "T1", "T12", "L1", "S1"]


def test_manual_cobb_from_exact_lines_names_ends_and_apex() -> None:
    phantom = spine_phantom(TILTS_DEG)
    table = cobb_from_endplates(endplate_lines(phantom), VOLUME_GEOMETRY, "spine.mrk.json")
    row = table.by_key("cobb_deg")[0]

    assert row.value == pytest.approx(22.0, abs=1e-3)
    assert row.details["upper_end_vertebra"] == "T12"
    assert row.details["lower_end_vertebra"] == "L3"
    assert row.details["apex_vertebra"] in ("L1", "L2")
    assert row.details["convexity"] == "right"
    assert row.details["plane"] == "frontal"
    # 1 mm placement error per coordinate on 40 mm lines, two lines, 95 %.
    line_sigma_deg = np.degrees(np.sqrt(2.0) * 1.0 / 40.0)
    assert row.uncertainty == pytest.approx(1.96 * np.sqrt(2.0) * line_sigma_deg, abs=1e-3)


def test_manual_cobb_ignores_the_anterior_coordinate_and_mirrors() -> None:
    phantom = spine_phantom(TILTS_DEG)
    lines = endplate_lines(phantom)
    rng = np.random.default_rng(2)
    # A sagittal curve and points placed at different depths change nothing in the frontal plane.
    deep = {
        k: v + np.c_[np.zeros(2), rng.uniform(-15, 15, 2), np.zeros(2)] for k, v in lines.items()
    }
    mirrored = {k: v * [-1.0, 1.0, 1.0] for k, v in lines.items()}
    a = cobb_from_endplates(deep, VOLUME_GEOMETRY, "x").rows[0]
    b = cobb_from_endplates(mirrored, VOLUME_GEOMETRY, "x").rows[0]
    assert a.value == pytest.approx(22.0, abs=1e-3)
    assert b.value == pytest.approx(22.0, abs=1e-3)
    assert b.details["convexity"] == "left"


def test_manual_cobb_with_only_two_lines_has_no_apex() -> None:
    lines = {
        "T12-superior": np.array([[0.0, 0, 0], [40.0, 0, 40 * np.tan(np.radians(8))]]),
        "L4-inferior": np.array([[0.0, 0, -150], [40.0, 0, -150 - 40 * np.tan(np.radians(12))]]),
        "not-an-endplate": np.array([[0.0, 0, 0], [1.0, 0, 0]]),
    }
    table = cobb_from_endplates(lines, VOLUME_GEOMETRY, "x")
    assert table.rows[0].value == pytest.approx(20.0, abs=1e-3)
    assert table.rows[0].details["apex_vertebra"] is None
    assert "apex_vertebra" in table.not_measured
    with pytest.raises(CobbError, match="at least two"):
        cobb_from_endplates({"T12-superior": lines["T12-superior"]}, VOLUME_GEOMETRY, "x")


@pytest.mark.parametrize(
    ("spacing", "rotation", "noise"),
    [
        ((1.0, 1.0, 1.0), (0.0, 0.0, 0.0), 0.0),
        ((1.0, 1.0, 1.3), (4.0, -3.0, 8.0), 0.15),  # oblique grid, anisotropic, noisy
        ((1.0, 1.0, 1.0), (180.0, 0.0, 0.0), 0.1),  # grid flipped (LPS-like axes)
    ],
)
def test_automatic_cobb_on_synthetic_labels(
    spacing: tuple[float, float, float], rotation: tuple[float, float, float], noise: float
) -> None:
    phantom = spine_phantom(TILTS_DEG[1:7], first="T11")
    labels, ijk_to_ras, names = spine_label_map(phantom, spacing, rotation, noise, seed=4)
    table = cobb_from_label_map(labels, ijk_to_ras, names, "synthetic")
    row = table.rows[0]

    assert row.method == "automatic"
    assert row.value == pytest.approx(22.0, abs=1.5)
    assert row.uncertainty is not None and 0.0 < row.uncertainty < 5.0
    assert (row.details["upper_end_vertebra"], row.details["lower_end_vertebra"]) == ("T12", "L3")
    assert row.details["apex_vertebra"] in ("L1", "L2")
    assert row.details["convexity"] == "right"


def test_automatic_cobb_on_real_totalsegmentator_labels(shared_data: Path) -> None:
    folder = shared_data / "totalsegmentator"
    label_map = read_label_map(
        folder / "ct_volume_vertebrae_labels.nii.gz", folder / "label_names.json"
    )
    table = cobb_from_sitk_labels(label_map.image, label_map.names, "ct_volume")
    row = table.rows[0]

    # A non-scoliotic lumbar spine: a small angle, between named lumbar/sacral vertebrae.
    assert 0.5 < row.value < 10.0
    vertebrae = {"T11", "T12", "L1", "L2", "L3", "L4", "L5", "S1"}
    assert row.details["upper_end_vertebra"] in vertebrae
    assert row.details["lower_end_vertebra"] in vertebrae
    assert row.details["upper_end_vertebra"] != row.details["lower_end_vertebra"]
    assert len(row.details["tilts_deg"]) >= 5
    # Vertebrae cut by the volume's edge are left out, with the reason.
    assert all("edge" in reason for reason in table.not_measured.values())

    # The same labels through nibabel's RAS affine give the same angle as through SimpleITK.
    import nibabel

    nifti = nibabel.load(str(folder / "ct_volume_vertebrae_labels.nii.gz"))
    labels_kji = np.asarray(nifti.dataobj).transpose(2, 1, 0)
    again = cobb_from_label_map(labels_kji, nifti.affine, label_map.names, "ct_volume")
    assert again.rows[0].value == pytest.approx(row.value, abs=1e-6)
    np.testing.assert_allclose(ijk_to_ras_from_sitk(label_map.image), nifti.affine, atol=1e-3)


def test_too_few_vertebrae_are_refused() -> None:
    image = sitk.Image(20, 20, 20, sitk.sitkUInt16)
    with pytest.raises(CobbError, match="fewer than two"):
        cobb_from_sitk_labels(image, {27: "vertebrae_L5"}, "empty.nii.gz")


def test_automatic_cobb_from_a_seg_nrrd_through_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from mskworkbench.cli import main

    phantom = spine_phantom([5.0, -2.0, -10.0, -4.0], first="T12")
    labels, ijk_to_ras, names = spine_label_map(phantom, (1.2, 1.2, 1.2), (0.0, 0.0, 10.0))
    image = sitk.GetImageFromArray(labels.astype(np.uint16))
    ijk_to_lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ ijk_to_ras
    spacing = np.linalg.norm(ijk_to_lps[:3, :3], axis=0)
    image.SetSpacing(spacing.tolist())
    image.SetDirection((ijk_to_lps[:3, :3] / spacing).ravel().tolist())
    image.SetOrigin(ijk_to_lps[:3, 3].tolist())
    for index, (value, name) in enumerate(sorted(names.items())):
        image.SetMetaData(f"Segment{index}_ID", f"Segment_{value}")
        image.SetMetaData(f"Segment{index}_Name", name)
        image.SetMetaData(f"Segment{index}_LabelValue", str(value))
        image.SetMetaData(f"Segment{index}_Layer", "0")
    path = tmp_path / "spine.seg.nrrd"
    sitk.WriteImage(image, str(path))

    assert main(["measure", "cobb", "--labels", str(path), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["cobb_deg"] == pytest.approx(15.0, abs=1.0)
    assert (result["upper_end_vertebra"], result["lower_end_vertebra"]) == ("T12", "L2")
    assert result["apex_vertebra"] == "L1"


def _crop(
    labels: np.ndarray, ijk_to_ras: np.ndarray, first_kji: tuple[int, int, int], stop_k: int
) -> tuple[np.ndarray, np.ndarray]:
    """A sub-grid of a label volume from ``first_kji`` up to slice ``stop_k``, with its matrix."""
    moved = ijk_to_ras.copy()
    moved[:3, 3] = ijk_to_ras[:3, :3] @ np.array(first_kji[::-1], dtype=float) + ijk_to_ras[:3, 3]
    k, j, i = first_kji
    return labels[k:stop_k, j:, i:], moved


def test_only_a_body_cut_by_the_edge_leaves_a_vertebra_out() -> None:
    phantom = spine_phantom(TILTS_DEG[1:7], first="T11")
    labels, ijk_to_ras, names = spine_label_map(phantom)
    # Posteriorly the grid now ends inside every spinous process (y < -25 mm is dropped);
    # cranially it ends 5 mm above the top vertebra's centre, halfway up its body.
    first_j = int(np.ceil((-25.0 - ijk_to_ras[1, 3]) / ijk_to_ras[1, 1]))
    stop_k = int(np.floor((5.0 - ijk_to_ras[2, 3]) / ijk_to_ras[2, 2]))
    cropped, matrix = _crop(labels, ijk_to_ras, (0, first_j, 0), stop_k)
    assert (np.unique(cropped[:, 0, :]) > 0).sum() >= 5  # processes run out posteriorly

    table = cobb_from_label_map(cropped, matrix, names, "cropped")

    assert set(table.not_measured) == {"tilt_T11"}
    assert "body cut by the edge of the volume" in table.not_measured["tilt_T11"]
    assert "on the superior edge" in table.not_measured["tilt_T11"]
    measured = [key.split("-")[0] for key in table.rows[0].details["tilts_deg"]]
    assert measured == ["T12", "L1", "L2", "L3", "L4"]


@pytest.mark.parametrize("end", ["superior", "inferior"])
def test_the_drawn_end_line_lies_on_the_endplate_at_the_body_tilt(end: str) -> None:
    phantom = spine_phantom(TILTS_DEG[1:7], first="T11")
    labels, ijk_to_ras, names = spine_label_map(phantom)
    value = next(v for v, n in names.items() if n == "vertebrae_L1")
    kji = np.argwhere(labels == value)
    points_ras = (ijk_to_ras[:3, :3] @ kji[:, ::-1].T).T + ijk_to_ras[:3, 3]
    index = phantom.names.index("L1")
    tilt_deg = phantom.tilts_deg[index]

    start, finish = body_end_line_ras(points_ras, tilt_deg, end)

    direction = finish - start
    assert np.degrees(np.arctan2(direction[2], direction[0])) == pytest.approx(tilt_deg, abs=1e-6)
    assert np.linalg.norm(direction[[0, 2]]) == pytest.approx(1.5 * 40.0, abs=3.0)
    expected = endplate_lines(phantom)[f"L1-{end}"][:, [0, 2]].mean(axis=0)
    middle = 0.5 * (start + finish)[[0, 2]]
    assert np.linalg.norm(middle - expected) < 1.5
    with pytest.raises(ValueError, match="superior or inferior"):
        body_end_line_ras(points_ras, tilt_deg, "anterior")

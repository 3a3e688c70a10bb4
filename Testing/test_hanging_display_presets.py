"""Window/level presets set a real volume display node, from one table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from MSKPriorsLib.app_context import AppContext
from MSKPriorsLib.display_presets import (
    PRESET_ATTRIBUTE,
    PRESETS,
    apply_preset,
    default_preset_for,
    get_preset,
    window_level_from_voxels,
)
from MSKPriorsLib.mrml_volumes import add_volume_from_array, add_volume_from_sitk


def test_ct_bone_and_soft_tissue_on_a_real_ct(app_context: AppContext, shared_data: Path) -> None:
    image = sitk.ReadImage(str(shared_data / "totalsegmentator" / "ct_volume.nii.gz"))
    node = add_volume_from_sitk(app_context.scene, image, "ct")

    assert apply_preset(node, "ct-bone") == (2000.0, 500.0)
    display = node.GetDisplayNode()
    assert (display.GetWindow(), display.GetLevel()) == (2000.0, 500.0)
    assert not display.GetAutoWindowLevel()
    assert node.GetAttribute(PRESET_ATTRIBUTE) == "ct-bone"

    apply_preset(node, "ct-soft-tissue")
    assert (display.GetWindow(), display.GetLevel()) == (400.0, 40.0)
    assert node.GetAttribute(PRESET_ATTRIBUTE) == "ct-soft-tissue"


def test_mr_auto_spans_the_percentiles_of_the_voxels(app_context: AppContext) -> None:
    # 0..9999 once each: the 1st and 99.5th percentiles are 99.99 and 9949.005.
    voxels = np.arange(10000, dtype=np.int16).reshape(10, 10, 100)
    node = add_volume_from_array(app_context.scene, voxels, np.eye(4), "mr")

    window, level = apply_preset(node, "mr-auto")

    assert window == pytest.approx(9949.005 - 99.99)
    assert level == pytest.approx((9949.005 + 99.99) / 2)
    assert node.GetDisplayNode().GetWindow() == pytest.approx(window)


def test_radiograph_prefers_the_window_its_header_recommends(app_context: AppContext) -> None:
    node = add_volume_from_array(app_context.scene, np.zeros((1, 8, 8), np.uint16), np.eye(4), "cr")

    assert apply_preset(node, "radiograph", dicom_window=(3000.0, 1500.0)) == (3000.0, 1500.0)


def test_a_flat_image_still_gets_a_usable_window() -> None:
    assert window_level_from_voxels(np.full((4, 4), 7), 1, 99) == (1.0, 7.0)


def test_unknown_preset_lists_the_known_ones() -> None:
    with pytest.raises(KeyError, match="known presets: ct-bone"):
        get_preset("ct-lungs")


def test_every_modality_default_is_a_preset_in_the_table() -> None:
    assert default_preset_for("ct") == "ct-bone"
    assert default_preset_for("DX") == "radiograph"
    for modality in ("CT", "MR", "CR", "DX", "US"):
        assert default_preset_for(modality) in PRESETS

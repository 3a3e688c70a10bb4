"""``mskwb inspect``: geometry and warnings of a series folder, as text and as JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mskworkbench.cli import main


@pytest.mark.slow
def test_ge_folder_json_lists_the_warning_codes(
    shared_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = shared_data / "dcm_qa_ct" / "GE_tilt_variable_spacing"
    assert main(["inspect", str(folder), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [w["code"] for w in report["warnings"]] == ["gantry_tilt", "uneven_spacing", "resampled"]
    assert all(w["message"] for w in report["warnings"])
    assert report["modality"] == "CT" and report["number_of_slices"] == 28
    assert report["series_uid"].endswith("150714813892")
    assert len(report["dimensions"]) == 3 and report["dimensions"][0] == 512
    assert report["spacing_mm"][:2] == pytest.approx([0.488281, 0.488281])
    # Image rows run towards the patient's left: -R in RAS. The tilted columns point posterior
    # and down in LPS (0, 0.948, -0.317), so in RAS they are (0, -0.948, -0.317).
    assert report["directions_ras"][0] == pytest.approx([-1.0, 0.0, 0.0])
    assert report["directions_ras"][1] == pytest.approx([0.0, -0.94832365, -0.31730468])
    assert report["origin_ras_mm"][0] == pytest.approx(125.0)
    assert report["gantry_tilt_deg"] == pytest.approx(18.5, abs=0.05)


def test_refuse_flag_fails_with_the_reason(
    shared_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = shared_data / "dcm_qa_ct" / "GE_tilt_variable_spacing"
    assert main(["inspect", str(folder), "--geometry", "refuse", "--json"]) != 0
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "gantry_tilt" in captured.err and "not loaded" in captured.err


def test_text_output_names_ras(shared_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(shared_data / "pacsman" / "mr_head")]) == 0
    out = capsys.readouterr().out
    assert "origin RAS mm   (63, 0, 0)" in out
    assert "warnings        none" in out


def test_folder_without_images_exits_non_zero(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "readme.txt").write_text("nothing to see")
    assert main(["inspect", str(tmp_path), "--json"]) != 0
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "holds no images" in captured.err and str(tmp_path) in captured.err
    assert main(["inspect", str(tmp_path / "absent")]) != 0
    assert "does not exist" in capsys.readouterr().err


def test_several_series_ask_for_one(shared_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(shared_data / "highdicom")]) != 0
    err = capsys.readouterr().err
    assert "--series" in err and "multiple_series" in err
    uid = "1.3.6.1.4.1.5962.1.3.1.1.20040119072730.12322"
    assert main(["inspect", str(shared_data / "highdicom"), "--series", uid, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["series_uid"] == uid and report["modality"] == "CT"
    assert [w["code"] for w in report["warnings"]] == ["non_image_removed", "multiple_series"]

"""Draw the figures of docs/measurements.md from the same phantoms the tests use.

Run: ``.venv/bin/python docs/figures/make_figures.py`` (writes PNG files next to this script).
Each figure is computed by the measurement code itself, so a drawing cannot disagree with it.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Arc, Circle, Ellipse

from MSKPlannerLib.calibration import ball_calibration, detect_calibration_ball
from MSKPlannerLib.measure_alignment import measure_alignment
from MSKPlannerLib.measure_cobb import cobb_from_endplates, cobb_from_label_map
from MSKPlannerLib.measure_hip import measure_hip
from MSKPlannerLib.measurement_phantoms import (
    alignment_landmarks,
    ball_radiograph,
    endplate_lines,
    hip_landmarks,
    spine_label_map,
    spine_phantom,
)
from MSKPlannerLib.measurement_table import VOLUME_GEOMETRY

HERE = Path(__file__).resolve().parent
TILTS_DEG = [1.0, 4.0, 9.0, 3.0, -4.0, -13.0, -7.0, -1.0]


def _viewer(points: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """RAS points to the radiologist's view: patient's right on the viewer's left."""
    return {k: np.array([-v[0], v[2]]) for k, v in points.items()}


def _finish(fig: plt.Figure, axes: plt.Axes, name: str, title: str) -> None:
    axes.set_aspect("equal")
    axes.set_title(title, fontsize=10)
    axes.set_xticks([])
    axes.set_yticks([])
    fig.tight_layout()
    fig.savefig(HERE / name, dpi=110)
    plt.close(fig)


def figure_calibration() -> None:
    spacing = (0.2, 0.2)
    image = ball_radiograph((420, 420), spacing, (205.4, 214.8), noise=0.03, seed=2)
    detection = detect_calibration_ball(image)
    calibration = ball_calibration(detection, 25.0)
    fig, axes = plt.subplots(figsize=(4.2, 4.2))
    axes.imshow(image, cmap="gray")
    axes.add_patch(
        Ellipse(
            (detection.center_rc[1], detection.center_rc[0]),
            2 * detection.radius_rc[1],
            2 * detection.radius_rc[0],
            fill=False,
            color="yellow",
            lw=1.2,
        )
    )
    axes.plot(*detection.center_rc[::-1], "y+", ms=10)
    assert calibration.mm_per_pixel is not None
    axes.text(
        10,
        400,
        f"25 mm ball: r = {detection.radius_px:.2f} px\n"
        f"{calibration.mm_per_pixel[1]:.4f} mm/pixel (true 0.2000)",
        color="yellow",
        fontsize=8,
    )
    _finish(fig, axes, "calibration_ball.png", "Calibration ball found and fitted")


def figure_cobb_lines() -> None:
    phantom = spine_phantom(TILTS_DEG)
    lines = endplate_lines(phantom)
    row = cobb_from_endplates(lines, VOLUME_GEOMETRY, "phantom").rows[0]
    ends = {
        f"{row.details['upper_end_vertebra']}-{row.details['upper_endplate']}",
        f"{row.details['lower_end_vertebra']}-{row.details['lower_endplate']}",
    }
    fig, axes = plt.subplots(figsize=(4.0, 6.0))
    for name, ends_ras in lines.items():
        xy = np.array([[-p[0], p[2]] for p in ends_ras])
        chosen = name in ends
        axes.plot(xy[:, 0], xy[:, 1], color="red" if chosen else "0.5", lw=2.5 if chosen else 1)
        if chosen:
            direction = (xy[1] - xy[0]) / np.linalg.norm(xy[1] - xy[0])
            far = xy[0] - 45 * direction
            axes.plot([far[0], xy[1][0]], [far[1], xy[1][1]], "r--", lw=0.8)
            axes.text(xy[1][0] + 3, xy[1][1], name, color="red", fontsize=8)
    for name, (x, z) in zip(phantom.names, phantom.centers_frontal_mm, strict=True):
        axes.text(-x - 34, z - 3, name, fontsize=7, color="0.3")
    axes.text(
        -70,
        phantom.centers_frontal_mm[-1][1] - 30,
        f"Cobb {row.value:.1f} deg, apex {row.details['apex_vertebra']}, "
        f"convex {row.details['convexity']}",
        fontsize=8,
    )
    axes.text(-75, 20, "patient R", fontsize=7)
    axes.text(45, 20, "patient L", fontsize=7)
    _finish(fig, axes, "cobb_endplates.png", "Cobb angle from endplate lines (frontal plane)")


def figure_cobb_labels() -> None:
    phantom = spine_phantom(TILTS_DEG)
    labels, matrix, names = spine_label_map(phantom, (1.5, 1.5, 1.5))
    row = cobb_from_label_map(labels, matrix, names, "phantom").rows[0]
    kji = np.argwhere(labels > 0)
    ras = (matrix @ np.c_[kji[:, ::-1], np.ones(len(kji))].T).T
    fig, axes = plt.subplots(figsize=(4.0, 6.0))
    axes.scatter(-ras[:, 0], ras[:, 2], s=0.2, c=labels[labels > 0] % 7, cmap="tab10", alpha=0.15)
    for (x, z), name in zip(phantom.centers_frontal_mm, phantom.names, strict=True):
        tilt = np.radians(row.details["tilts_deg"][f"{name}-body"])
        direction = np.array([-np.cos(tilt), np.sin(tilt)])
        chosen = name in (row.details["upper_end_vertebra"], row.details["lower_end_vertebra"])
        segment = np.array([[-x, z] - 28 * direction, [-x, z] + 28 * direction])
        axes.plot(*segment.T, color="red" if chosen else "k", lw=2 if chosen else 1)
    axes.text(
        -70,
        phantom.centers_frontal_mm[-1][1] - 30,
        f"automatic Cobb {row.value:.1f} deg ({row.details['upper_end_vertebra']}-"
        f"{row.details['lower_end_vertebra']})",
        fontsize=8,
    )
    _finish(fig, axes, "cobb_labels.png", "Cobb angle from a vertebra label map (body axes)")


def figure_alignment() -> None:
    points, _ = alignment_landmarks("right", 89.0, 84.0, 2.0)
    values = measure_alignment(points, "right", VOLUME_GEOMETRY, "phantom").values()
    p = _viewer(points)
    fig, whole = plt.subplots(figsize=(5.0, 7.0))
    for axes in (whole,):
        axes.plot(*np.array([p["hip_center"], p["knee_center_femur"]]).T, "b-", lw=1.5)
        axes.plot(*np.array([p["knee_center_tibia"], p["ankle_center"]]).T, "g-", lw=1.5)
        axes.plot(*np.array([p["hip_center"], p["ankle_center"]]).T, "k--", lw=0.8)
        axes.plot(
            *np.array([p["femoral_condyle_medial"], p["femoral_condyle_lateral"]]).T, "m-", lw=1.5
        )
        axes.plot(
            *np.array([p["tibial_plateau_medial"], p["tibial_plateau_lateral"]]).T, "c-", lw=1.5
        )
        for xy in p.values():
            axes.plot(*xy, "ko", ms=3)
    whole.add_patch(Circle(p["hip_center"], 24, fill=False, color="0.5"))
    whole.text(p["hip_center"][0] + 30, p["hip_center"][1], "hip_center", fontsize=7)
    whole.text(p["ankle_center"][0] + 10, p["ankle_center"][1], "ankle_center", fontsize=7)
    whole.text(
        p["hip_center"][0] + 20,
        -250,
        f"HKA {values['hka_deg']:.1f} deg (varus < 180)\nMAD {values['mad_mm']:.1f} mm "
        "(line medial to knee)",
        fontsize=8,
    )
    whole.text(
        p["hip_center"][0] + 20,
        -120,
        "right leg, viewed AP:\nmedial is to the viewer's right",
        fontsize=7,
    )
    whole.set_xlim(p["hip_center"][0] - 60, p["hip_center"][0] + 200)
    _finish(fig, whole, "alignment_overview.png", "Mechanical axes (frontal plane)")
    fig, knee = plt.subplots(figsize=(4.5, 4.5))
    for label, xy in p.items():
        if "knee" in label or "condyle" in label or "plateau" in label:
            knee.plot(*xy, "ko", ms=3)
            knee.text(xy[0] + 2, xy[1] + 2, label, fontsize=6)
    knee.plot(*np.array([p["knee_center_femur"], p["hip_center"]]).T, "b-")
    knee.plot(*np.array([p["knee_center_tibia"], p["ankle_center"]]).T, "g-")
    knee.plot(*np.array([p["femoral_condyle_medial"], p["femoral_condyle_lateral"]]).T, "m-")
    knee.plot(*np.array([p["tibial_plateau_medial"], p["tibial_plateau_lateral"]]).T, "c-")
    center = p["knee_center_femur"]
    knee.set_xlim(center[0] - 60, center[0] + 60)
    knee.set_ylim(center[1] - 60, center[1] + 60)
    knee.add_patch(Arc(center, 30, 30, theta1=90, theta2=180, color="m"))
    knee.add_patch(Arc(p["knee_center_tibia"], 30, 30, theta1=270, theta2=360, color="c"))
    knee.text(
        center[0] - 58,
        center[1] + 48,
        f"mLDFA {values['mldfa_deg']:.1f} deg (lateral, proximal)\n"
        f"MPTA {values['mpta_deg']:.1f} deg (medial, distal)\n"
        f"JLCA {values['jlca_deg']:.1f} deg (+: open laterally)",
        fontsize=7,
    )
    _finish(fig, knee, "alignment_knee.png", "Knee joint angles (right knee, AP view)")


def figure_hip() -> None:
    points, _ = hip_landmarks("right", 130.0, 42.0, 42.0, 6.0)
    values = measure_hip(points, "right", VOLUME_GEOMETRY, "phantom").values()
    p = _viewer(points)
    fig, axes = plt.subplots(figsize=(6.5, 5.0))
    axes.add_patch(Circle(p["femoral_head_center"], 24, fill=False, color="0.4"))
    axes.plot(*np.array([p["femoral_shaft_proximal"], p["femoral_shaft_distal"]]).T, "b-")
    axes.plot(*np.array([p["femoral_neck_center"], p["femoral_head_center"]]).T, "g-")
    axes.plot(*np.array([p["teardrop_left"], p["teardrop_right"]]).T, "k--", lw=0.8)
    axes.plot(*np.array([p["acetabulum_inferior_edge"], p["acetabulum_lateral_edge"]]).T, "m-")
    head = p["femoral_head_center"]
    shaft_x = p["femoral_shaft_proximal"][0]
    # Extend the neck axis to the shaft axis, where the CCD angle lies.
    neck = p["femoral_head_center"] - p["femoral_neck_center"]
    junction = head + neck * (shaft_x - head[0]) / neck[0]
    axes.plot(*np.array([p["femoral_neck_center"], junction]).T, "g--", lw=0.8)
    axes.plot(*np.array([junction, p["femoral_shaft_proximal"]]).T, "b--", lw=0.8)
    axes.text(junction[0] + 3, junction[1] - 12, "CCD", color="g", fontsize=7)
    axes.annotate("", xy=(shaft_x, head[1]), xytext=head, arrowprops={"arrowstyle": "<->"})
    for label, xy in p.items():
        axes.plot(*xy, "ko", ms=3)
        axes.text(xy[0] + 2, xy[1] - 6, label, fontsize=6)
    axes.text(
        -140,
        -230,
        f"offset {values['femoral_offset_mm']:.1f} mm, CCD {values['ccd_deg']:.1f} deg\n"
        f"cup inclination {values['cup_inclination_deg']:.1f} deg, LLD {values['lld_mm']:+.1f} mm",
        fontsize=8,
    )
    _finish(fig, axes, "hip_measures.png", "Hip measures on an AP pelvis (right hip measured)")


def main() -> None:
    """Write every figure."""
    figure_calibration()
    figure_cobb_lines()
    figure_cobb_labels()
    figure_alignment()
    figure_hip()


if __name__ == "__main__":
    main()

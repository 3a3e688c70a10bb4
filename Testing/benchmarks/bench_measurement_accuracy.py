"""Accuracy of the measurements on generated cases with known answers.

Run: ``.venv/bin/python Testing/benchmarks/bench_measurement_accuracy.py [--cases 50]``

For each measurement family it generates noisy cases whose true values are known by
construction and prints the mean and largest absolute error, next to a simpler baseline
measured in the same run on the same cases:

- Cobb angle from per-vertebra labels (1 mm voxels, randomly oriented grid, boundary noise);
  baseline: principal axis of the whole vertebra instead of its body.
- Cobb angle from exact endplate lines, and from lines placed with 0.5 mm noise.
- HKA, mLDFA, MPTA from landmarks snapped to a 0.2 mm radiograph pixel grid, with
  anterior-posterior scatter and a rotated limb; and with 1 mm placement noise for reference.
- Calibration ball scale (25 mm ball, random pixel size and aspect, noise); baseline: the
  diameter of the disk's area after a half-way threshold.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from MSKPlannerLib.calibration import ball_calibration, detect_calibration_ball
from MSKPlannerLib.measure_alignment import alignment_angles_deg
from MSKPlannerLib.measure_cobb import (
    VertebraTilt,
    cobb_from_endplates,
    cobb_from_label_map,
    cobb_from_tilts,
    line_tilt_deg,
)
from MSKPlannerLib.measurement_phantoms import (
    alignment_landmarks,
    ball_radiograph,
    endplate_lines,
    spine_label_map,
    spine_phantom,
)
from MSKPlannerLib.measurement_table import VOLUME_GEOMETRY


def _summary(name: str, errors: list[float], target: float | None, unit: str = "deg") -> bool:
    values = np.abs(np.asarray(errors))
    verdict = ""
    ok = True
    if target is not None:
        ok = bool(values.mean() < target)
        verdict = f"  target < {target:g}: {'met' if ok else 'NOT met'}"
    print(
        f"  {name:<44s} n={len(values):3d}  mean |error| {values.mean():.3f} {unit}  "
        f"max {values.max():.3f} {unit}{verdict}"
    )
    return ok


def _whole_vertebra_cobb(labels: np.ndarray, matrix: np.ndarray, names: dict[int, str]) -> float:
    tilts = []
    for value, name in sorted(names.items(), key=lambda item: -item[0]):
        kji = np.argwhere(labels == value)
        ras = (matrix @ np.c_[kji[:, ::-1], np.ones(len(kji))].T).T[:, [0, 2]]
        covariance = np.cov((ras - ras.mean(axis=0)).T)
        values, vectors = np.linalg.eigh(covariance)
        axis = vectors[:, int(np.argmax(values))]
        tilts.append(VertebraTilt(name, line_tilt_deg(axis), (0.0, 0.0)))
    return cobb_from_tilts(tilts)[0]


def bench_cobb_labels(cases: int, rng: np.random.Generator) -> bool:
    errors, baseline, ends_right, covered = [], [], 0, 0
    for case in range(cases):
        tilts = list(rng.uniform(-15.0, 15.0, 5))
        phantom = spine_phantom(tilts, first="T12")
        rotation = rng.uniform(-6.0, 6.0, 3)
        labels, matrix, names = spine_label_map(phantom, (1.0, 1.0, 1.0), rotation, 0.1, case)
        row = cobb_from_label_map(labels, matrix, names, f"case {case}").rows[0]
        errors.append(row.value - float(phantom.expected["cobb_deg"]))
        covered += row.uncertainty is not None and abs(errors[-1]) <= row.uncertainty
        baseline.append(_whole_vertebra_cobb(labels, matrix, names) - phantom.expected["cobb_deg"])
        ends = (row.details["upper_end_vertebra"], row.details["lower_end_vertebra"])
        ends_right += ends == (
            phantom.expected["upper_end_vertebra"],
            phantom.expected["lower_end_vertebra"],
        )
    ok = _summary("Cobb from labels (vertebral body axis)", errors, 1.0)
    _summary("  baseline: whole-vertebra axis", baseline, None)
    ratio = np.mean(np.abs(errors)) / max(np.mean(np.abs(baseline)), 1e-9)
    print(
        f"  error ratio body/whole-vertebra {ratio:.2f}; end vertebrae right in {ends_right}/{cases}"
    )
    print(f"  true value within the reported 95 % uncertainty in {covered}/{cases} cases")
    return ok


def bench_cobb_lines(cases: int, rng: np.random.Generator) -> bool:
    exact, noisy = [], []
    for _ in range(cases):
        phantom = spine_phantom(list(rng.uniform(-20.0, 20.0, 7)), first="T9")
        lines = endplate_lines(phantom)
        truth = float(phantom.expected["cobb_deg"])
        exact.append(cobb_from_endplates(lines, VOLUME_GEOMETRY, "x").rows[0].value - truth)
        moved = {k: v + rng.normal(0.0, 0.5, v.shape) for k, v in lines.items()}
        noisy.append(cobb_from_endplates(moved, VOLUME_GEOMETRY, "x").rows[0].value - truth)
    ok = _summary("Cobb from exact endplate lines", exact, 0.5)
    _summary("  reference: lines with 0.5 mm placement noise", noisy, None)
    return ok


def bench_alignment(cases: int, rng: np.random.Generator) -> bool:
    errors: dict[str, list[float]] = {"hka_deg": [], "mldfa_deg": [], "mpta_deg": []}
    noisy: dict[str, list[float]] = {"hka_deg": [], "mldfa_deg": [], "mpta_deg": []}
    for case in range(cases):
        side = "left" if case % 2 else "right"
        points, expected = alignment_landmarks(
            side,
            float(rng.uniform(83.0, 93.0)),
            float(rng.uniform(82.0, 92.0)),
            float(rng.uniform(-3.0, 3.0)),
            femoral_axis_deg=float(rng.uniform(-95.0, -84.0)),
            anterior_jitter_mm=10.0,
            seed=case,
        )
        # Landmarks clicked on a radiograph land on its 0.2 mm pixel centres.
        snapped = {k: np.round(v / 0.2) * 0.2 for k, v in points.items()}
        measured = alignment_angles_deg(snapped, side)
        placed = {k: v + rng.normal(0.0, 1.0, 3) for k, v in points.items()}
        measured_noisy = alignment_angles_deg(placed, side)
        for key in errors:
            errors[key].append(measured[key] - expected[key])
            noisy[key].append(measured_noisy[key] - expected[key])
    ok = True
    for key in errors:
        ok &= _summary(f"{key} (landmarks on a 0.2 mm pixel grid)", errors[key], 0.3)
    for key in noisy:
        _summary(f"  reference: {key} with 1 mm placement noise", noisy[key], None)
    return ok


def _area_diameter_px(image: np.ndarray, center: tuple[float, float]) -> tuple[float, float]:
    r0, c0 = round(center[0]), round(center[1])
    window = image[max(r0 - 120, 0) : r0 + 120, max(c0 - 120, 0) : c0 + 120]
    inside = np.median(image[r0 - 3 : r0 + 4, c0 - 3 : c0 + 4])
    outside = np.median(np.r_[window[:5].ravel(), window[-5:].ravel()])
    area = float(np.count_nonzero(window > 0.5 * (inside + outside)))
    diameter = 2.0 * np.sqrt(area / np.pi)
    return diameter, diameter


def bench_ball(cases: int, rng: np.random.Generator) -> bool:
    errors, baseline = [], []
    for case in range(cases):
        column_mm = float(rng.uniform(0.12, 0.3))
        spacing = (column_mm * float(rng.choice([1.0, 1.0, 0.9, 1.1])), column_mm)
        radius_px = 12.5 / min(spacing)
        shape = (int(4 * radius_px) + 200, int(4 * radius_px) + 150)
        center = (
            float(rng.uniform(radius_px + 20, shape[0] - radius_px - 20)),
            float(rng.uniform(radius_px + 20, shape[1] - radius_px - 20)),
        )
        image = ball_radiograph(shape, spacing, center, 25.0, float(rng.uniform(0.01, 0.05)), case)
        calibration = ball_calibration(detect_calibration_ball(image), 25.0)
        assert calibration.mm_per_pixel is not None
        errors.extend(100.0 * (np.asarray(calibration.mm_per_pixel) / spacing - 1.0))
        # Baseline on the square-pixel cases only (the area method assumes round disks).
        if spacing[0] == spacing[1]:
            diameter_px = _area_diameter_px(image, center)[0]
            baseline.append(100.0 * ((25.0 / diameter_px) / spacing[1] - 1.0))
    ok = _summary("ball scale (per axis)", errors, 1.0, unit="%")
    if baseline:
        _summary("  baseline: area after half-way threshold", baseline, None, unit="%")
    return ok


def main(argv: list[str] | None = None) -> int:
    """Run every benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=50, help="generated cases per measurement")
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    all_ok = True
    for title, bench in (
        ("Cobb angle, automatic from labels", bench_cobb_labels),
        ("Cobb angle, manual from endplate lines", bench_cobb_lines),
        ("Lower-limb alignment", bench_alignment),
        ("Calibration ball", bench_ball),
    ):
        start = time.perf_counter()
        print(f"{title}:")
        all_ok &= bench(args.cases, rng)
        print(f"  ({time.perf_counter() - start:.1f} s)")
    print("all targets met" if all_ok else "some targets NOT met")
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())

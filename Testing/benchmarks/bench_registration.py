"""Rigid registration time and accuracy on a 256^3 volume, against the same image at 128^3.

The real TotalSegmentator CT (122x101x112 at 3 mm) is resampled to cubes of 128^3 and 256^3
voxels over the same field of view; a copy moved by a known rigid transform (5, -3, 7 degrees,
8, -5, 10 mm) is registered back with
:func:`MSKPriorsLib.registration.register_rigid` at its default settings. Printed per size:
wall and CPU time, iterations at the last level, final metric, and the largest error of the
recovered transform over points spread through the volume (mm) and its rotation error
(degrees). The 128^3 run is the baseline: with the capped metric sampling the 256^3 run
should cost little more although it has 8 times the voxels. Run:
``.venv/bin/python Testing/benchmarks/bench_registration.py``.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

PROJECT_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(PROJECT_ROOT / "MSKPriors"))
sys.path.insert(0, str(PROJECT_ROOT))

from MSKPriorsLib.registration import euler_to_matrix, register_rigid  # noqa: E402
from mskworkbench.shared_data import shared_data_path  # noqa: E402


def resampled_cube(image: sitk.Image, voxels: int) -> sitk.Image:
    """Resample ``image`` onto ``voxels``^3 voxels covering the same physical extent (LPS)."""
    extent_mm = [n * s for n, s in zip(image.GetSize(), image.GetSpacing(), strict=True)]
    spacing_mm = [e / voxels for e in extent_mm]
    reference = sitk.Image([voxels] * 3, sitk.sitkInt16)
    reference.SetSpacing(spacing_mm)
    reference.SetDirection(image.GetDirection())
    reference.SetOrigin(image.GetOrigin())
    return sitk.Resample(image, reference, sitk.Transform(), sitk.sitkLinear, -1024.0)


def truth_for(image: sitk.Image) -> sitk.Euler3DTransform:
    transform = sitk.Euler3DTransform()
    centre = [(s - 1) / 2 for s in image.GetSize()]
    transform.SetCenter(image.TransformContinuousIndexToPhysicalPoint(centre))
    transform.SetRotation(math.radians(5.0), math.radians(-3.0), math.radians(7.0))
    transform.SetTranslation((8.0, -5.0, 10.0))
    return transform


def errors(image: sitk.Image, recovered: np.ndarray, expected: np.ndarray) -> tuple[float, float]:
    size = image.GetSize()
    worst_mm = 0.0
    for fractions in np.linspace(0.2, 0.8, 4):
        for offset in ((0, 0, 0), (0.1, -0.1, 0.0), (-0.1, 0.1, 0.1)):
            index = [(fractions + o) * (n - 1) for o, n in zip(offset, size, strict=True)]
            point = np.r_[image.TransformContinuousIndexToPhysicalPoint(index), 1.0]
            worst_mm = max(
                worst_mm, float(np.linalg.norm((recovered @ point - expected @ point)[:3]))
            )
    relative = recovered[:3, :3].T @ expected[:3, :3]
    angle_deg = math.degrees(math.acos(max(-1.0, min(1.0, (np.trace(relative) - 1) / 2))))
    return worst_mm, angle_deg


def run(image: sitk.Image, label: str) -> float:
    truth = truth_for(image)
    moving = sitk.Resample(image, image, truth.GetInverse(), sitk.sitkLinear, -1024.0)
    cpu_start = time.process_time()
    result = register_rigid(image, moving)
    cpu_s = time.process_time() - cpu_start
    worst_mm, angle_deg = errors(
        image, euler_to_matrix(result.transform_lps), euler_to_matrix(truth)
    )
    print(
        f"{label:8s} wall {result.elapsed_s:6.2f} s  cpu {cpu_s:6.2f} s  "
        f"iterations {result.iterations:3d}  metric {result.final_metric:7.4f}  "
        f"max error {worst_mm:5.2f} mm  rotation error {angle_deg:5.2f} deg"
    )
    return result.elapsed_s


def main() -> None:
    source = sitk.ReadImage(str(shared_data_path("totalsegmentator", "ct_volume.nii.gz")))
    baseline_s = run(resampled_cube(source, 128), "128^3")
    large_s = run(resampled_cube(source, 256), "256^3")
    print(f"256^3 / 128^3 wall-time ratio: {large_s / baseline_s:.2f} (voxel ratio 8)")


if __name__ == "__main__":
    main()

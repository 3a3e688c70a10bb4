"""Synthetic landmarks, label maps and radiographs whose measurements are known exactly.

Used by the tests, the accuracy benchmark and demos. Every generator builds the geometry from
the values it is asked for (construction angles), so the measurement functions can be
checked against values they did not compute.

Public API
----------
- :func:`alignment_landmarks`: lower-limb landmarks (RAS mm) with given mLDFA, MPTA, JLCA.
- :func:`hip_landmarks`: hip landmarks with given CCD angle, offset, cup inclination, LLD.
- :func:`endplate_lines`: endplate lines of a spine with given vertebral tilts.
- :func:`spine_label_map`: a per-vertebra label volume with given tilts, on any voxel grid.
- :func:`ball_radiograph`: a radiograph with a calibration ball at a given pixel spacing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from scipy import ndimage
from scipy.spatial.transform import Rotation

FloatArray = npt.NDArray[np.float64]


def _unit(angle_deg: float) -> FloatArray:
    angle = np.radians(angle_deg)
    return np.array([np.cos(angle), np.sin(angle)])


def _frontal_to_ras(
    points_ms: dict[str, FloatArray], side: str, anterior_mm: dict[str, float] | None = None
) -> dict[str, FloatArray]:
    """(medial, superior) mm -> RAS mm; RAS +x is the patient's right."""
    medial_x = -1.0 if side == "right" else 1.0
    lateral_offset = 90.0 if side == "right" else -90.0  # the limb lies off the midline
    result = {}
    for label, (m, s) in points_ms.items():
        y = (anterior_mm or {}).get(label, 0.0)
        result[label] = np.array([lateral_offset + medial_x * m, y, s])
    return result


def alignment_landmarks(
    side: str,
    mldfa_deg: float,
    mpta_deg: float,
    jlca_deg: float = 0.0,
    femoral_axis_deg: float = -87.0,
    femur_mm: float = 430.0,
    tibia_mm: float = 370.0,
    knee_width_mm: float = 70.0,
    anterior_jitter_mm: float = 0.0,
    seed: int = 0,
) -> tuple[dict[str, FloatArray], dict[str, float]]:
    """Lower-limb landmarks built from the angles.

    Parameters
    ----------
    side
        ``left`` or ``right``.
    mldfa_deg, mpta_deg, jlca_deg
        Construction angles (JLCA positive when the lines converge medially).
    femoral_axis_deg
        Direction of the femoral mechanical axis (hip to knee) measured from the medial
        direction toward superior; -90 is vertical, -87 tilts it 3 degrees medially-down.
    femur_mm, tibia_mm, knee_width_mm
        Sizes.
    anterior_jitter_mm
        Random anterior-posterior offsets (a frontal measurement ignores them).
    seed
        Random seed for the offsets.

    Returns
    -------
    tuple
        Label -> RAS mm, and the expected ``hka_deg``, ``mldfa_deg``, ``mpta_deg``,
        ``jlca_deg`` and ``mad_mm``.
    """
    hip = np.array([0.0, 0.0])
    knee_femur = hip + femur_mm * _unit(femoral_axis_deg)
    femoral_line = femoral_axis_deg + 180.0 + mldfa_deg
    tibial_line = femoral_line + jlca_deg
    tibial_axis = tibial_line + 180.0 - mpta_deg
    knee_tibia = knee_femur + np.array([0.0, -4.0])
    ankle = knee_tibia + tibia_mm * _unit(tibial_axis)
    half = 0.5 * knee_width_mm
    points = {
        "hip_center": hip,
        "knee_center_femur": knee_femur,
        "knee_center_tibia": knee_tibia,
        "ankle_center": ankle,
        "femoral_condyle_lateral": knee_femur + half * _unit(femoral_line),
        "femoral_condyle_medial": knee_femur - half * _unit(femoral_line),
        "tibial_plateau_lateral": knee_tibia + half * _unit(tibial_line),
        "tibial_plateau_medial": knee_tibia - half * _unit(tibial_line),
    }
    knee = 0.5 * (knee_femur + knee_tibia)
    axis = (ankle - hip) / np.linalg.norm(ankle - hip)
    normal = np.array([-axis[1], axis[0]])
    normal = normal if normal[0] > 0 else -normal  # points medially
    mad = -float((knee - hip) @ normal)  # knee lateral of the line: positive
    rng = np.random.default_rng(seed)
    jitter = {k: float(rng.normal(0.0, anterior_jitter_mm)) for k in points}
    expected = {
        "hka_deg": 180.0 - (mldfa_deg - mpta_deg + jlca_deg),
        "mldfa_deg": mldfa_deg,
        "mpta_deg": mpta_deg,
        "jlca_deg": jlca_deg,
        "mad_mm": float(mad),
    }
    return _frontal_to_ras(points, side, jitter), expected


def hip_landmarks(
    side: str,
    ccd_deg: float,
    offset_mm: float,
    cup_inclination_deg: float,
    lld_mm: float,
    pelvic_tilt_deg: float = 0.0,
) -> tuple[dict[str, FloatArray], dict[str, float]]:
    """Landmarks of an AP pelvis built from the hip values.

    The whole picture is rotated in the frontal plane by ``pelvic_tilt_deg`` (an obliquity),
    which must change none of the values.

    Returns
    -------
    tuple
        Label -> RAS mm and the expected ``ccd_deg``, ``femoral_offset_mm``,
        ``cup_inclination_deg``, ``lld_mm`` (positive: measured leg longer).
    """
    medial_x = -1.0 if side == "right" else 1.0
    # Frontal coordinates (x toward the patient's right, z superior), measured hip first.
    head = np.array([90.0 * -medial_x, 0.0])
    shaft_dir = np.array([0.0, -1.0])  # proximal -> distal
    neck_angle = np.radians(180.0 - ccd_deg)
    # Neck axis from the shaft toward the head: rotate "up the shaft" medially by 180-ccd.
    up = -shaft_dir
    medial = np.array([medial_x, 0.0])
    neck_dir = np.cos(neck_angle) * up + np.sin(neck_angle) * medial
    # Put the shaft axis so that the head lies offset_mm from it, laterally.
    shaft_point = head - offset_mm * medial
    neck_length = offset_mm / np.sin(neck_angle)
    junction = head - neck_length * neck_dir
    teardrop_mid = np.array([0.0, -20.0])
    lt_depth = 40.0
    lateral = -medial
    inclination = np.radians(cup_inclination_deg)
    inferior_edge = head + 25.0 * medial + np.array([0.0, -10.0])
    lateral_edge = inferior_edge + 50.0 * (np.cos(inclination) * lateral + np.sin(inclination) * up)
    points = {
        "femoral_head_center": head,
        "femoral_neck_center": 0.5 * (junction + head),
        "femoral_shaft_proximal": np.array([shaft_point[0], junction[1] - 20.0]),
        "femoral_shaft_distal": np.array([shaft_point[0], junction[1] - 150.0]),
        "acetabulum_lateral_edge": lateral_edge,
        "acetabulum_inferior_edge": inferior_edge,
        f"teardrop_{side}": teardrop_mid + np.array([-medial_x * 55.0, 0.0]),
        f"teardrop_{'left' if side == 'right' else 'right'}": teardrop_mid
        + np.array([medial_x * 55.0, 0.0]),
        f"lesser_trochanter_{side}": np.array(
            [shaft_point[0] + 15.0 * medial_x, teardrop_mid[1] - lt_depth - lld_mm]
        ),
        f"lesser_trochanter_{'left' if side == 'right' else 'right'}": np.array(
            [-shaft_point[0] - 15.0 * medial_x, teardrop_mid[1] - lt_depth]
        ),
    }
    rotation = np.radians(pelvic_tilt_deg)
    matrix = np.array([[np.cos(rotation), -np.sin(rotation)], [np.sin(rotation), np.cos(rotation)]])
    ras = {k: np.array([*(matrix @ v)[:1], 0.0, (matrix @ v)[1]]) for k, v in points.items()}
    expected = {
        "ccd_deg": ccd_deg,
        "femoral_offset_mm": offset_mm,
        "cup_inclination_deg": cup_inclination_deg,
        "lld_mm": lld_mm,
    }
    return ras, expected


#: Cranial-to-caudal names used by the spine phantoms.
SPINE_NAMES = [f"T{i}" for i in range(1, 13)] + [f"L{i}" for i in range(1, 6)]

#: TotalSegmentator label values of the vertebrae (26 S1 ... 50 C1).
TOTALSEGMENTATOR_VERTEBRA_VALUES = {
    name: value
    for value, name in zip(
        range(26, 51),
        ["S1"]
        + [f"L{i}" for i in range(5, 0, -1)]
        + [f"T{i}" for i in range(12, 0, -1)]
        + [f"C{i}" for i in range(7, 0, -1)],
        strict=True,
    )
}


@dataclass
class SpinePhantom:
    """Vertebrae with known frontal tilts.

    Attributes
    ----------
    names
        Vertebra names, cranial to caudal.
    tilts_deg
        Frontal tilt of each body (positive rising toward the patient's right).
    centers_frontal_mm
        ``(x, z)`` centre of each body.
    expected
        ``cobb_deg``, ``upper_end_vertebra``, ``lower_end_vertebra``.
    """

    names: list[str]
    tilts_deg: list[float]
    centers_frontal_mm: list[tuple[float, float]]
    expected: dict[str, object] = field(default_factory=dict)


def spine_phantom(
    tilts_deg: Sequence[float], first: str = "T10", spacing_mm: float = 32.0
) -> SpinePhantom:
    """A spine whose bodies have the given tilts; centres follow the curve the tilts imply."""
    start = SPINE_NAMES.index(first)
    names = SPINE_NAMES[start : start + len(tilts_deg)]
    if len(names) != len(tilts_deg):
        raise ValueError(f"too many vertebrae after {first}")
    centers = []
    x, z = 0.0, 0.0
    for tilt in tilts_deg:
        centers.append((x, z))
        # Walk down perpendicular to the endplate: the spine bends as the bodies tilt.
        x += spacing_mm * np.sin(np.radians(tilt))
        z -= spacing_mm * np.cos(np.radians(tilt))
    best = (-1.0, 0, 0)
    for i in range(len(tilts_deg)):
        for j in range(i + 1, len(tilts_deg)):
            angle = abs(tilts_deg[i] - tilts_deg[j])
            if angle > best[0]:
                best = (angle, i, j)
    expected: dict[str, object] = {
        "cobb_deg": best[0],
        "upper_end_vertebra": names[best[1]],
        "lower_end_vertebra": names[best[2]],
    }
    return SpinePhantom(list(names), list(tilts_deg), centers, expected)


def endplate_lines(
    phantom: SpinePhantom, width_mm: float = 40.0, height_mm: float = 24.0
) -> dict[str, FloatArray]:
    """Superior and inferior endplate lines (RAS mm, anterior 0) of every phantom vertebra."""
    lines = {}
    for name, tilt, (x, z) in zip(
        phantom.names, phantom.tilts_deg, phantom.centers_frontal_mm, strict=True
    ):
        along = _unit(tilt)
        up = np.array([-along[1], along[0]])
        for part, sign in (("superior", 1.0), ("inferior", -1.0)):
            middle = np.array([x, z]) + sign * 0.5 * height_mm * up
            ends = [middle - 0.5 * width_mm * along, middle + 0.5 * width_mm * along]
            lines[f"{name}-{part}"] = np.array([[e[0], 0.0, e[1]] for e in ends])
    return lines


def spine_label_map(
    phantom: SpinePhantom,
    spacing_mm: Sequence[float] = (1.0, 1.0, 1.0),
    grid_rotation_deg: Sequence[float] = (0.0, 0.0, 0.0),
    boundary_noise: float = 0.0,
    seed: int = 0,
) -> tuple[npt.NDArray[np.int16], FloatArray, dict[int, str]]:
    """Voxelise the phantom's vertebrae (body plus posterior elements) into a label volume.

    Parameters
    ----------
    phantom
        The vertebrae.
    spacing_mm
        Voxel size along i, j, k.
    grid_rotation_deg
        Euler angles (x, y, z, degrees) of the voxel grid axes relative to RAS: the anatomy
        stays where it is, only the sampling changes.
    boundary_noise
        Probability that a voxel on a vertebra's surface is flipped (segmentation noise).
    seed
        Random seed of the noise.

    Returns
    -------
    tuple
        Labels ``[k, j, i]`` (TotalSegmentator values), IJK-to-RAS 4x4, value -> name.
    """
    rotation = Rotation.from_euler("xyz", grid_rotation_deg, degrees=True).as_matrix()
    spacing = np.asarray(spacing_mm, dtype=float)
    xs = [c[0] for c in phantom.centers_frontal_mm]
    zs = [c[1] for c in phantom.centers_frontal_mm]
    center = np.array([np.mean(xs), -2.5, np.mean(zs)])
    half_extent = np.array([np.ptp(xs) / 2 + 40.0, 40.0, np.ptp(zs) / 2 + 25.0])
    # The smallest grid (in the rotated sampling) that holds the box of the anatomy.
    corners = np.array(np.meshgrid(*[[-1.0, 1.0]] * 3, indexing="ij")).reshape(3, -1).T
    in_grid = (corners * half_extent) @ rotation / spacing
    size = np.ceil(in_grid.max(axis=0) - in_grid.min(axis=0)).astype(int) + 1
    matrix = np.eye(4)
    matrix[:3, :3] = rotation * spacing
    matrix[:3, 3] = center - matrix[:3, :3] @ ((size - 1) / 2.0)
    k, j, i = np.meshgrid(*(np.arange(n) for n in size[::-1]), indexing="ij")
    ijk = np.stack([i.ravel(), j.ravel(), k.ravel()], axis=1).astype(np.float32)
    ras = ijk @ matrix[:3, :3].T.astype(np.float32) + matrix[:3, 3].astype(np.float32)
    labels = np.zeros(len(ras), dtype=np.int16)
    names = {}
    for name, tilt, (x, z) in zip(
        phantom.names, phantom.tilts_deg, phantom.centers_frontal_mm, strict=True
    ):
        value = TOTALSEGMENTATOR_VERTEBRA_VALUES[name]
        names[value] = f"vertebrae_{name}"
        along = _unit(tilt)
        up = np.array([-along[1], along[0]])
        near = np.nonzero(np.abs(ras[:, 2] - z) < 45.0)[0]
        dx, dz = ras[near, 0] - x, ras[near, 2] - z
        u = dx * along[0] + dz * along[1]  # left-right within the vertebra
        v = dx * up[0] + dz * up[1]  # cranio-caudal within the vertebra
        w = ras[near, 1]  # anterior
        # An elliptic cylinder (40 mm wide, 30 mm deep, 24 mm high), like a lumbar body.
        body = ((u / 20.0) ** 2 + ((w - 15.0) / 15.0) ** 2 <= 1.0) & (np.abs(v) <= 12.0)
        arch = (np.abs(u) <= 12.0) & (np.abs(v) <= 8.0) & (w < 0.0) & (w >= -15.0)
        spinous = (np.abs(u) <= 3.0) & (np.abs(v) <= 6.0) & (w < -15.0) & (w >= -35.0)
        transverse = (np.abs(u) <= 35.0) & (np.abs(v) <= 4.0) & (w < -3.0) & (w >= -10.0)
        labels[near[body | arch | spinous | transverse]] = value
    volume = labels.reshape(tuple(size[::-1]))
    if boundary_noise > 0:
        rng = np.random.default_rng(seed)
        foreground = volume > 0
        surface = foreground ^ ndimage.binary_erosion(foreground)
        flip = surface & (rng.random(volume.shape) < boundary_noise)
        volume[flip] = 0
        grown = ndimage.grey_dilation(volume, size=3)
        outside = (volume == 0) & (grown > 0) & (rng.random(volume.shape) < boundary_noise)
        volume[outside] = grown[outside]
    return volume, matrix, names


def ball_radiograph(
    shape: tuple[int, int] = (600, 500),
    spacing_mm: tuple[float, float] = (0.2, 0.2),
    center_rc: tuple[float, float] = (300.3, 240.7),
    diameter_mm: float = 25.0,
    noise: float = 0.02,
    seed: int = 0,
    attenuation_per_mm: float = 0.5,
    supersample: int = 4,
) -> FloatArray:
    """A radiograph-like image with the shadow of a metal ball.

    Parameters
    ----------
    shape
        Rows, columns.
    spacing_mm
        True ``(row, column)`` size of a pixel in the plane of the ball, in mm.
    center_rc
        Ball centre in pixels.
    diameter_mm
        Ball diameter.
    noise
        Standard deviation of added Gaussian noise (the image spans about 0.3 to 0.9).
    seed
        Random seed.
    attenuation_per_mm
        Linear attenuation of the ball; the shadow brightens with the path length through it.
    supersample
        Sub-samples per pixel side, for partial-volume edges.
    """
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]].astype(float)
    image = 0.3 + 0.2 * np.sin(rows / 97.0) * np.cos(cols / 131.0) + 0.1 * cols / shape[1]
    radius = 0.5 * diameter_mm
    offsets = (np.arange(supersample) + 0.5) / supersample - 0.5
    shadow = np.zeros(shape)
    for dr in offsets:
        for dc in offsets:
            y = (rows + dr - center_rc[0]) * spacing_mm[0]
            x = (cols + dc - center_rc[1]) * spacing_mm[1]
            path = 2.0 * np.sqrt(np.clip(radius**2 - x**2 - y**2, 0.0, None))
            shadow += 1.0 - np.exp(-attenuation_per_mm * path)
    image = image + 0.6 * shadow / supersample**2
    return image + rng.normal(0.0, noise, shape)

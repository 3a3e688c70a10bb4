"""Bone segmentation of CT: a label image with one value per bone, metal kept out.

Pure core (numpy, scipy, SimpleITK); images carry their geometry in LPS millimetres and
intensities in Hounsfield units. Two routes lead to the same result, :class:`BoneSegmentation`:

- **Threshold**: voxels within a bone range of HU (presets ``cortical`` and ``cancellous``,
  both adjustable) make a bone mask; small islands are removed, medullary cavities filled,
  and the mask is split into bones by connected components or, from seed points, by a
  watershed on the distance map (bones touching at a joint are separated along the neck
  between them).
- **Label map**: a user's or an AI tool's label map (see :mod:`MSKPlannerLib.label_maps`)
  names the bones; it is resampled onto the CT grid and, optionally, trimmed to the bone
  range of HU.

In both routes voxels above the bone range (metal implants and their blooming, by default
over 2500 HU) are removed from every bone and reported as :class:`MetalRegion` objects.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk
from scipy import ndimage

from MSKPlannerLib.label_maps import LabelMap, resample_to_reference, select_bone_labels

logger = logging.getLogger(__name__)

#: Lower and upper bone thresholds in HU per preset. Cortical bone is dense (several hundred
#: HU and up); the cancellous preset also takes trabecular bone and thin cortices.
THRESHOLD_PRESETS_HU: dict[str, tuple[float, float]] = {
    "cortical": (400.0, 2500.0),
    "cancellous": (150.0, 2500.0),
}

#: Ways of filling medullary cavities: enclosed 3D cavities only, slice by slice along the
#: scanner axis (also fills canals open at the ends of the field of view), or not at all.
CAVITY_FILL_MODES = ("3d", "slices", "none")


@dataclass
class BoneSegmentationOptions:
    """Settings of the bone segmentation.

    Attributes
    ----------
    preset
        ``"cortical"`` or ``"cancellous"``; gives the default HU range.
    lower_hu, upper_hu
        Override the preset's bone range (HU, inclusive).
    metal_hu
        Voxels above this (HU) are metal, never bone.
    metal_margin_mm
        Metal is grown by this margin before it is cut out of the bones (blooming).
    min_metal_ml
        Bright regions smaller than this (ml) are noise, not reported as metal.
    min_island_ml
        Bone fragments smaller than this (ml) are removed.
    fill_cavities
        One of :data:`CAVITY_FILL_MODES`.
    closing_radius_mm
        Radius of a morphological closing before filling (bridges gaps in thin cortices);
        0 turns it off.
    refine_label_map
        With a label map: keep only label voxels within the bone range of HU (cavities of
        each bone filled again afterwards).
    include
        With a label map: the structure names to reconstruct; all bones when empty.
    """

    preset: str = "cortical"
    lower_hu: float | None = None
    upper_hu: float | None = None
    metal_hu: float = 2500.0
    metal_margin_mm: float = 1.0
    min_metal_ml: float = 0.1
    min_island_ml: float = 0.5
    fill_cavities: str = "3d"
    closing_radius_mm: float = 0.0
    refine_label_map: bool = False
    include: list[str] = field(default_factory=list)

    def threshold_range_hu(self) -> tuple[float, float]:
        """Return the (lower, upper) bone range in HU after presets and overrides."""
        if self.preset not in THRESHOLD_PRESETS_HU:
            known = ", ".join(THRESHOLD_PRESETS_HU)
            raise ValueError(f"unknown threshold preset {self.preset!r} (known: {known})")
        lower, upper = THRESHOLD_PRESETS_HU[self.preset]
        lower = lower if self.lower_hu is None else float(self.lower_hu)
        upper = upper if self.upper_hu is None else float(self.upper_hu)
        upper = min(upper, self.metal_hu)
        if lower >= upper:
            raise ValueError(f"bone range {lower}..{upper} HU is empty")
        return lower, upper


@dataclass
class MetalRegion:
    """One connected region above the bone range, kept out of the bones.

    Attributes
    ----------
    volume_ml
        Volume of the region (before the blooming margin).
    centroid_lps_mm
        Centre of the region in LPS millimetres.
    max_hu
        Brightest voxel.
    """

    volume_ml: float
    centroid_lps_mm: tuple[float, float, float]
    max_hu: float


@dataclass
class BoneSegmentation:
    """Bones found in a CT.

    Attributes
    ----------
    labels
        UInt16 image on the CT grid (LPS mm); 0 background, one value per bone.
    names
        Label value -> bone name.
    metal
        Regions above the bone range that were kept out of the bones.
    thresholds_hu
        Bone range used (HU); for a label map without refinement, the range used to find metal.
    warnings
        Problems the user should read (metal, seeds outside bone, labels lost).
    """

    labels: sitk.Image
    names: dict[int, str]
    metal: list[MetalRegion] = field(default_factory=list)
    thresholds_hu: tuple[float, float] = (0.0, 0.0)
    warnings: list[str] = field(default_factory=list)


def _voxel_ml(image: sitk.Image) -> float:
    return float(np.prod(image.GetSpacing())) / 1000.0


def _ball(radius_mm: float, spacing_mm: tuple[float, ...]) -> npt.NDArray[np.bool_]:
    """A ball structuring element indexed [k, j, i] for a voxel spacing (x, y, z) in mm."""
    half = [max(int(np.floor(radius_mm / s)), 0) for s in spacing_mm[::-1]]
    grid = np.ogrid[tuple(slice(-h, h + 1) for h in half)]
    distance_sq = sum((axis * s) ** 2 for axis, s in zip(grid, spacing_mm[::-1], strict=True))
    return np.asarray(distance_sq <= radius_mm**2 + 1e-9)


def _bounding_slices(mask: npt.NDArray[np.bool_], margin: int) -> tuple[slice, ...] | None:
    """Index slices of the box around the True voxels, grown by ``margin`` voxels."""
    slabs = np.flatnonzero(mask.any(axis=(1, 2)))
    if slabs.size == 0:
        return None
    k0, k1 = int(slabs[0]), int(slabs[-1]) + 1
    rows = np.flatnonzero(mask[k0:k1].any(axis=(0, 2)))
    columns = np.flatnonzero(mask[k0:k1].any(axis=(0, 1)))
    starts = (k0, int(rows[0]), int(columns[0]))
    stops = (k1, int(rows[-1]) + 1, int(columns[-1]) + 1)
    return tuple(
        slice(max(start - margin, 0), min(stop + margin, n))
        for start, stop, n in zip(starts, stops, mask.shape, strict=True)
    )


def find_metal(
    ct_hu: npt.NDArray[np.number[Any]], ct: sitk.Image, options: BoneSegmentationOptions
) -> tuple[npt.NDArray[np.bool_], list[MetalRegion]]:
    """Find voxels above the bone range and the regions they form.

    Parameters
    ----------
    ct_hu
        CT voxels indexed [k, j, i] in HU.
    ct
        The same CT as an image (for its geometry).
    options
        Gives ``metal_hu``, ``metal_margin_mm`` and ``min_metal_ml``.

    Returns
    -------
    mask, regions
        Boolean [k, j, i] mask of metal grown by the margin, and one :class:`MetalRegion`
        per reported region (largest first).
    """
    bright = ct_hu > options.metal_hu
    mask = np.zeros(bright.shape, dtype=bool)
    box = _bounding_slices(bright, 2 + int(np.ceil(options.metal_margin_mm / min(ct.GetSpacing()))))
    if box is None:
        return mask, []
    labelled, count = ndimage.label(bright[box])
    voxel_ml = _voxel_ml(ct)
    sizes = ndimage.sum_labels(np.ones_like(labelled), labelled, index=np.arange(1, count + 1))
    keep = np.flatnonzero(sizes * voxel_ml >= options.min_metal_ml) + 1
    if keep.size == 0:
        return mask, []
    kept = np.isin(labelled, keep)
    if options.metal_margin_mm > 0:
        kept = ndimage.binary_dilation(kept, _ball(options.metal_margin_mm, ct.GetSpacing()))
    mask[box] = kept

    offset = np.array([s.start for s in box], dtype=float)
    centres = ndimage.center_of_mass(np.ones_like(labelled), labelled, keep)
    peaks = ndimage.maximum(ct_hu[box], labelled, keep)
    regions = []
    for label, centre_kji, peak in zip(keep, centres, np.atleast_1d(peaks), strict=True):
        index_ijk = (np.asarray(centre_kji) + offset)[::-1]
        point = ct.TransformContinuousIndexToPhysicalPoint([float(v) for v in index_ijk])
        regions.append(
            MetalRegion(
                volume_ml=float(sizes[label - 1] * voxel_ml),
                centroid_lps_mm=(float(point[0]), float(point[1]), float(point[2])),
                max_hu=float(peak),
            )
        )
    regions.sort(key=lambda region: -region.volume_ml)
    return mask, regions


def fill_cavities(mask: npt.NDArray[np.bool_], mode: str) -> npt.NDArray[np.bool_]:
    """Fill cavities of a bone mask indexed [k, j, i].

    Parameters
    ----------
    mask
        Boolean bone mask.
    mode
        ``"3d"`` fills background regions that do not reach the edge of the volume (a
        medullary cavity closed by its epiphyses); ``"slices"`` fills holes in each axial
        slice (a canal cut open by the field of view, but also a vertebral canal);
        ``"none"`` returns the mask unchanged.
    """
    if mode not in CAVITY_FILL_MODES:
        raise ValueError(f"unknown cavity filling {mode!r} (known: {', '.join(CAVITY_FILL_MODES)})")
    if mode == "none":
        return mask
    if mode == "3d":
        filled = sitk.BinaryFillhole(sitk.GetImageFromArray(mask.view(np.uint8)), False, 1)
        return sitk.GetArrayViewFromImage(filled).astype(bool)
    in_plane = np.zeros((3, 3, 3), dtype=bool)
    in_plane[1] = ndimage.generate_binary_structure(2, 1)
    padded = np.pad(mask, ((1, 1), (0, 0), (0, 0)))
    return np.asarray(ndimage.binary_fill_holes(padded, in_plane))[1:-1]


def label_components(
    mask: npt.NDArray[np.bool_], min_voxels: int = 1
) -> tuple[npt.NDArray[np.uint16], int]:
    """Label face-connected parts of a [k, j, i] mask, largest first; drop smaller ones.

    Returns
    -------
    labels, count
        UInt16 labels (1 the largest part) and the number of parts kept.
    """
    components = sitk.ConnectedComponent(sitk.GetImageFromArray(mask.view(np.uint8)), False)
    relabelled = sitk.RelabelComponent(components, int(min_voxels), True)
    labels = sitk.GetArrayFromImage(relabelled)
    count = int(labels.max(initial=0))
    if count >= 2**16:
        raise ValueError(f"{count} separate bone parts: raise the island size or the threshold")
    return labels.astype(np.uint16, copy=False), count


def remove_islands(mask: npt.NDArray[np.bool_], min_voxels: int) -> npt.NDArray[np.bool_]:
    """Remove face-connected fragments smaller than ``min_voxels`` from a [k, j, i] mask."""
    labels, _ = label_components(mask, min_voxels)
    return labels > 0


def label_boxes(labels: sitk.Image) -> dict[int, tuple[slice, slice, slice]]:
    """Bounding box of each label of an integer image, as [k, j, i] index slices."""
    statistics = sitk.LabelShapeStatisticsImageFilter()
    statistics.ComputePerimeterOff()
    statistics.ComputeFeretDiameterOff()
    statistics.ComputeOrientedBoundingBoxOff()
    statistics.Execute(labels)
    boxes = {}
    for value in statistics.GetLabels():
        i0, j0, k0, size_i, size_j, size_k = statistics.GetBoundingBox(value)
        boxes[int(value)] = (
            slice(k0, k0 + size_k),
            slice(j0, j0 + size_j),
            slice(i0, i0 + size_i),
        )
    return boxes


def _threshold_labels(
    ct_hu: npt.NDArray[np.number[Any]],
    ct: sitk.Image,
    options: BoneSegmentationOptions,
    metal: npt.NDArray[np.bool_],
) -> tuple[npt.NDArray[np.uint16], list[int]]:
    """Connected bones from the HU range, largest first: metal cut out, cavities filled.

    Fragments are dropped and bones numbered in one connected-component pass; each bone's
    cavities are then filled inside its own bounding box (a cavity is enclosed by a single
    bone), larger bones last so they take in fragments lying in their cavities.
    """
    lower, upper = options.threshold_range_hu()
    mask = ct_hu >= lower
    mask &= ct_hu <= upper
    has_metal = bool(metal.any())
    if has_metal:
        mask[metal] = False
    labels = np.zeros(mask.shape, dtype=np.uint16)
    box = _bounding_slices(mask, 2)
    if box is None:
        return labels, []
    sub = np.ascontiguousarray(mask[box])
    del mask
    if options.closing_radius_mm > 0:
        ball = _ball(options.closing_radius_mm, ct.GetSpacing())
        pad = max(ball.shape)
        sub = ndimage.binary_closing(np.pad(sub, pad), ball)[pad:-pad, pad:-pad, pad:-pad]
    min_voxels = max(round(options.min_island_ml / _voxel_ml(ct)), 1)
    components = sitk.RelabelComponent(
        sitk.ConnectedComponent(sitk.GetImageFromArray(sub.view(np.uint8)), False),
        int(min_voxels),
        True,
    )
    found = sitk.GetArrayViewFromImage(components)
    filled = np.zeros(sub.shape, dtype=np.uint16)
    boxes = label_boxes(components)
    for value, bone_box in sorted(boxes.items(), reverse=True):
        if value >= 2**16:
            raise ValueError("too many separate bone parts: raise the island size or threshold")
        grown = tuple(
            slice(max(s.start - 1, 0), min(s.stop + 1, n))
            for s, n in zip(bone_box, sub.shape, strict=True)
        )
        bone = np.pad(found[grown] == value, 1)
        bone = fill_cavities(bone, options.fill_cavities)[1:-1, 1:-1, 1:-1]
        filled[grown][bone] = value
    labels[box] = filled
    if has_metal:
        labels[metal] = 0
    # Number the bones again by their final volume; a fragment inside a larger bone's
    # cavity was taken in by that bone and is gone.
    view = labels[box]
    masks = {value: view[bone_box] == value for value, bone_box in boxes.items()}
    ranked = sorted(
        (value for value in masks if masks[value].any()),
        key=lambda value: -int(np.count_nonzero(masks[value])),
    )
    for rank, value in enumerate(ranked, start=1):
        view[boxes[value]][masks[value]] = rank
    return labels, list(range(1, len(ranked) + 1))


def _split_by_seeds(
    mask: npt.NDArray[np.bool_],
    ct: sitk.Image,
    seeds_lps_mm: dict[str, tuple[float, float, float]],
    warnings: list[str],
) -> tuple[npt.NDArray[np.uint16], dict[int, str]]:
    """Split a bone mask into one label per seed by a watershed on the distance map."""
    markers = np.zeros(mask.shape, dtype=np.uint16)
    names: dict[int, str] = {}
    components, _ = ndimage.label(mask)
    wanted_components = set()
    for value, (name, point) in enumerate(seeds_lps_mm.items(), start=1):
        index = ct.TransformPhysicalPointToIndex([float(v) for v in point])
        inside_image = all(0 <= i < n for i, n in zip(index, ct.GetSize(), strict=True))
        if not inside_image or not mask[index[2], index[1], index[0]]:
            warnings.append(
                f"seed {name!r} at {tuple(round(v, 1) for v in point)} mm (LPS) is not in bone; ignored"
            )
            continue
        markers[index[2], index[1], index[0]] = value
        wanted_components.add(int(components[index[2], index[1], index[0]]))
        names[value] = name
    if not names:
        return np.zeros(mask.shape, dtype=np.uint16), {}

    region = np.isin(components, sorted(wanted_components))
    box = _bounding_slices(region, 1)
    assert box is not None
    sub_region = region[box]
    distance = ndimage.distance_transform_edt(sub_region, sampling=ct.GetSpacing()[::-1])
    relief = sitk.GetImageFromArray((-distance).astype(np.float32))
    marker_image = sitk.GetImageFromArray(markers[box].astype(np.uint16))
    basins = sitk.MorphologicalWatershedFromMarkers(
        relief, marker_image, markWatershedLine=False, fullyConnected=True
    )
    labels = np.zeros(mask.shape, dtype=np.uint16)
    labels[box] = np.where(sub_region, sitk.GetArrayFromImage(basins), 0).astype(np.uint16)
    return labels, names


def _labels_from_label_map(
    ct_hu: npt.NDArray[np.number[Any]],
    ct: sitk.Image,
    label_map: LabelMap,
    options: BoneSegmentationOptions,
    metal: npt.NDArray[np.bool_],
    warnings: list[str],
) -> tuple[npt.NDArray[np.uint16], dict[int, str]]:
    on_grid = resample_to_reference(label_map, ct)
    bones = select_bone_labels(on_grid.names, options.include or None)
    if not bones and not options.include and on_grid.names:
        # A user's own label map with its own names: every label is taken as a bone.
        bones = dict(on_grid.names)
        warnings.append(
            f"label map {label_map.source or ''} names no known bone; all "
            f"{len(bones)} labels are reconstructed as bones"
        )
    if not bones:
        warnings.append(f"label map {label_map.source or ''} has no bone labels")
    source = sitk.GetArrayFromImage(on_grid.image).astype(np.uint16)
    labels = np.where(np.isin(source, list(bones)), source, 0).astype(np.uint16)
    lower, _ = options.threshold_range_hu()
    min_voxels = max(round(options.min_island_ml / _voxel_ml(ct)), 1)
    for value, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None or value not in bones:
            continue
        bone = labels[box] == value
        kept = bone & ~metal[box]
        if options.refine_label_map:
            kept &= ct_hu[box] >= lower
            kept = fill_cavities(remove_islands(kept, min_voxels), options.fill_cavities)
            kept &= bone & ~metal[box]
        labels[box][bone & ~kept] = 0
        if not kept.any():
            warnings.append(f"bone {bones[value]!r} is empty after metal removal; left out")
    present = set(np.unique(labels).tolist())
    return labels, {value: name for value, name in bones.items() if value in present}


def segment_bones(
    ct: sitk.Image,
    options: BoneSegmentationOptions | None = None,
    seeds_lps_mm: dict[str, tuple[float, float, float]] | None = None,
    label_map: LabelMap | None = None,
) -> BoneSegmentation:
    """Segment the bones of a CT into one label value per bone, keeping metal out.

    Parameters
    ----------
    ct
        CT image in HU, geometry in LPS millimetres.
    options
        Thresholds, cleaning and filling settings; defaults when omitted.
    seeds_lps_mm
        Bone name -> a point inside that bone (LPS mm). The thresholded bone that holds the
        seeds is split between them; bones without a seed are left out.
    label_map
        A label map naming the bones (user or AI); it takes precedence over seeds.

    Returns
    -------
    BoneSegmentation
        Labels on the CT grid, bone names, metal regions and warnings.
    """
    options = options or BoneSegmentationOptions()
    thresholds = options.threshold_range_hu()
    ct_hu = sitk.GetArrayViewFromImage(ct)
    warnings: list[str] = []
    metal, regions = find_metal(ct_hu, ct, options)
    if regions:
        centre = ", ".join(f"{v:.1f}" for v in regions[0].centroid_lps_mm)
        total_ml = sum(region.volume_ml for region in regions)
        peak_hu = max(region.max_hu for region in regions)
        warnings.append(
            f"metal kept out of the bones: {len(regions)} region(s), {total_ml:.2f} ml, up to "
            f"{peak_hu:.0f} HU; the largest at ({centre}) mm LPS"
        )

    if label_map is not None:
        labels, names = _labels_from_label_map(ct_hu, ct, label_map, options, metal, warnings)
    else:
        labels, present = _threshold_labels(ct_hu, ct, options, metal)
        if seeds_lps_mm:
            labels, names = _split_by_seeds(labels > 0, ct, seeds_lps_mm, warnings)
        else:
            names = {value: f"bone_{value}" for value in present}
    if not names:
        warnings.append("no bone was found")

    image = sitk.GetImageFromArray(labels)
    image.CopyInformation(ct)
    # The warnings travel back in the result and the front ends show them once per CT; the
    # same CT is often segmented twice (threshold and label map), so they are only logged.
    for warning in warnings:
        logger.info("bone segmentation: %s", warning)
    return BoneSegmentation(
        labels=image, names=names, metal=regions, thresholds_hu=thresholds, warnings=warnings
    )

"""Closed triangle surfaces from binary masks, and the checks that they are sound.

Surfaces are made by slicer-core's own binary-labelmap to closed-surface conversion rule
(discrete flying edges and a windowed-sinc low-pass filter, Slicer's default smoothing),
run on an oriented image cropped to one bone, so each bone costs only its own bounding box.
Optional decimation keeps the surface closed, and a volume correction undoes the shrinking
that contouring and smoothing cause on thin structures at coarse voxels. Geometry is in
RAS millimetres.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import slicer
import vtk
from scipy import ndimage
from vtk.util import numpy_support

from MSKPriorsLib.frames import vtk_matrix_from_numpy

logger = logging.getLogger(__name__)

#: Difference (fraction) from which surfaces are offset back to the labelmap volume.
VOLUME_CORRECTION_START = 0.01

#: Largest accepted difference between surface volume and labelmap volume (fraction).
VOLUME_TOLERANCE = 0.02

#: Pieces of fewer voxels than this are small fragments: most of their voxels lie on their
#: outline, so their labelmap volume is only known to within a fraction of a voxel layer.
SMALL_PIECE_VOXELS = 1000

#: Side of the voxel grid by the RAS axis (0 x, 1 y, 2 z) and sign it faces.
_SIDE_NAMES = {
    (0, 1): "right",
    (0, -1): "left",
    (1, 1): "anterior",
    (1, -1): "posterior",
    (2, 1): "superior",
    (2, -1): "inferior",
}


@dataclass
class SurfaceCheck:
    """Quality figures of one closed surface.

    Attributes
    ----------
    boundary_edges, non_manifold_edges
        Edges used by one triangle, or by more than two; both 0 for a closed surface (the
        same counts as ``vtkFeatureEdges`` gives).
    consistent
        Every edge is walked once in each direction by its two triangles.
    outward
        Orientation gives a positive enclosed volume (normals point out).
    volume_mm3, area_mm2
        Enclosed volume and surface area.
    """

    boundary_edges: int
    non_manifold_edges: int
    consistent: bool
    outward: bool
    volume_mm3: float
    area_mm2: float

    @property
    def closed(self) -> bool:
        """No holes and no non-manifold edges."""
        return self.boundary_edges == 0 and self.non_manifold_edges == 0


def _triangles(polydata: Any) -> npt.NDArray[np.int64]:
    """Point indices of the triangles of a triangle-only ``vtkPolyData``, shape (M, 3)."""
    cells = numpy_support.vtk_to_numpy(polydata.GetPolys().GetConnectivityArray())
    return cells.reshape(-1, 3).astype(np.int64)


def _signed_volume_and_area(
    points: npt.NDArray[np.float64], triangles: npt.NDArray[np.int64]
) -> tuple[float, float]:
    """Enclosed volume (positive when oriented outwards) and area of a closed triangle mesh."""
    corners = points[triangles]
    volume = np.einsum("ij,ij->i", corners[:, 0], np.cross(corners[:, 1], corners[:, 2])).sum()
    edge_cross = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    return float(volume / 6.0), float(0.5 * np.linalg.norm(edge_cross, axis=1).sum())


def check_surface(polydata: Any) -> SurfaceCheck:
    """Check that a triangle surface is closed, manifold and oriented outwards.

    Parameters
    ----------
    polydata
        ``vtkPolyData`` of triangles (any frame; volume and area in its units cubed/squared).
    """
    if polydata.GetNumberOfPolys() == 0:
        return SurfaceCheck(0, 0, False, False, 0.0, 0.0)
    points = numpy_support.vtk_to_numpy(polydata.GetPoints().GetData()).astype(np.float64)
    triangles = _triangles(polydata)
    signed_volume, area = _signed_volume_and_area(points, triangles)

    # Group the directed edges by undirected edge: one use is a boundary edge (a hole), more
    # than two a non-manifold edge; a consistently oriented pair walks the edge both ways.
    start = np.concatenate([triangles[:, 0], triangles[:, 1], triangles[:, 2]])
    end = np.concatenate([triangles[:, 1], triangles[:, 2], triangles[:, 0]])
    key = np.minimum(start, end) * np.int64(points.shape[0]) + np.maximum(start, end)
    order = np.argsort(key, kind="stable")
    key, forward = key[order], (start < end)[order]
    first = np.flatnonzero(np.concatenate([[True], key[1:] != key[:-1]]))
    uses = np.diff(np.concatenate([first, [key.size]]))
    boundary = int(np.count_nonzero(uses == 1))
    non_manifold = int(np.count_nonzero(uses > 2))
    pairs = first[uses == 2]
    consistent = bool(np.all(forward[pairs] != forward[pairs + 1]))
    return SurfaceCheck(
        boundary_edges=int(boundary),
        non_manifold_edges=int(non_manifold),
        consistent=consistent,
        outward=signed_volume > 0,
        volume_mm3=abs(signed_volume),
        area_mm2=area,
    )


def surface_from_mask(
    mask_kji: npt.NDArray[np.bool_],
    ijk_to_ras_mm: npt.NDArray[np.float64],
    smoothing_factor: float = 0.5,
    decimate: float = 0.0,
    offset_kji: tuple[int, int, int] = (0, 0, 0),
    target_volume_mm3: float | None = None,
    notes: list[str] | None = None,
) -> Any:
    """Make a closed triangle surface (RAS mm) around the True voxels of a mask.

    Parameters
    ----------
    mask_kji
        Boolean voxels indexed [k, j, i]; the surface is contoured inside its bounding box.
    ijk_to_ras_mm
        4x4 matrix from voxel index (i, j, k) of the full grid to RAS millimetres.
    smoothing_factor
        0..1, Slicer's closed-surface smoothing factor (windowed-sinc pass band
        ``10 ** (-4 * smoothing_factor)``).
    decimate
        Fraction of triangles to remove with volume-preserving quadric decimation; backed off
        when it would open the surface.
    offset_kji
        Index of the mask's first voxel in the full grid, when the mask is a crop of it.
    target_volume_mm3
        When given and the enclosed volume is more than 1% off it, vertices are moved along
        their normals by one common offset (at most half the smallest voxel spacing) until
        the volumes agree; this undoes the shrinking that contouring and smoothing cause on
        thin structures at coarse voxels.
    notes
        Receives a sentence for the user when decimation had to be reduced.

    Returns
    -------
    vtkPolyData
        Triangles with outward point normals, RAS mm; empty when the mask is empty.
    """
    found = ndimage.find_objects(mask_kji.view(np.uint8))
    if not found or found[0] is None:
        return vtk.vtkPolyData()
    box = found[0]
    sub = np.ascontiguousarray(mask_kji[box].astype(np.uint8))
    first_ijk = [offset_kji[2 - axis] + box[2 - axis].start for axis in range(3)]

    # Slicer's own conversion rule, on an oriented image cropped to the bone: its extent
    # keeps the crop's place in the full grid, so the full IJK-to-RAS matrix applies.
    image = slicer.vtkOrientedImageData()
    image.SetExtent(
        first_ijk[0],
        first_ijk[0] + sub.shape[2] - 1,
        first_ijk[1],
        first_ijk[1] + sub.shape[1] - 1,
        first_ijk[2],
        first_ijk[2] + sub.shape[0] - 1,
    )
    image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(sub.ravel(), deep=True))
    image.SetImageToWorldMatrix(vtk_matrix_from_numpy(ijk_to_ras_mm))
    segment = slicer.vtkSegment()
    segment.SetLabelValue(1)
    segment.AddRepresentation(
        slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName(), image
    )
    rule = slicer.vtkBinaryLabelmapToClosedSurfaceConversionRule()
    rule.SetConversionParameter("Smoothing factor", str(float(smoothing_factor)))
    rule.SetConversionParameter("Decimation factor", "0.0")
    rule.SetConversionParameter("Compute surface normals", "0")
    if not rule.Convert(segment):
        raise RuntimeError("the closed-surface conversion failed")
    surface = vtk.vtkPolyData()
    surface.DeepCopy(
        segment.GetRepresentation(
            slicer.vtkSegmentationConverter.GetClosedSurfaceRepresentationName()
        )
    )
    if decimate > 0:
        surface = _decimate_closed(surface, float(decimate), notes if notes is not None else [])

    # A mirroring IJK-to-RAS matrix turns the contour inside out: put it right.
    if np.linalg.det(np.asarray(ijk_to_ras_mm, dtype=float)[:3, :3]) < 0:
        reverse = vtk.vtkReverseSense()
        reverse.SetInputData(surface)
        reverse.Update()
        surface = reverse.GetOutput()

    normals = vtk.vtkPolyDataNormals()
    normals.SetInputData(surface)
    normals.ComputePointNormalsOn()
    normals.ComputeCellNormalsOff()
    normals.SplittingOff()
    normals.ConsistencyOff()
    normals.AutoOrientNormalsOff()
    normals.Update()
    result = vtk.vtkPolyData()
    result.DeepCopy(normals.GetOutput())
    if target_volume_mm3 is not None and result.GetNumberOfPoints() > 0:
        spacing_mm = np.linalg.norm(np.asarray(ijk_to_ras_mm, dtype=float)[:3, :3], axis=0)
        _match_volume(result, target_volume_mm3, 0.5 * float(spacing_mm.min()))
    return result


def _decimate_closed(surface: Any, reduction: float, notes: list[str]) -> Any:
    """Decimate with volume-preserving quadric error, backing off if the surface would open.

    Quadric decimation can pinch thin parts of real bones into non-manifold edges; the
    reduction is halved until the result is closed, or the full surface is kept. A back-off
    is described in ``notes``.
    """
    requested = reduction
    while reduction >= 0.05:
        decimator = vtk.vtkQuadricDecimation()
        decimator.SetInputData(surface)
        decimator.SetTargetReduction(reduction)
        decimator.VolumePreservationOn()
        decimator.Update()
        check = check_surface(decimator.GetOutput())
        if check.closed and check.consistent:
            if reduction < requested:
                notes.append(
                    f"decimated by {reduction:.2f} instead of {requested:.2f}: more would have "
                    "opened the surface"
                )
            result = vtk.vtkPolyData()
            result.DeepCopy(decimator.GetOutput())
            return result
        logger.info("decimation by %.2f would open the surface; trying less", reduction)
        reduction /= 2
    notes.append("not decimated: decimation would have opened the surface")
    return surface


def _match_volume(surface: Any, target_volume_mm3: float, max_offset_mm: float) -> float:
    """Move all vertices along their normals by one offset so the volume meets the target.

    Nothing is moved while the volume is within :data:`VOLUME_CORRECTION_START` of the
    target (smooth shapes at fine voxels: the surface is then left exactly as Slicer makes
    it). Otherwise, since a surface of area A moved outwards by d gains about A * d of
    volume, two Newton steps bring the volume within 0.1% of the target. Returns the offset
    applied (mm).
    """
    points = numpy_support.vtk_to_numpy(surface.GetPoints().GetData())
    normals = numpy_support.vtk_to_numpy(surface.GetPointData().GetNormals()).astype(np.float64)
    original = points.astype(np.float64).copy()
    triangles = _triangles(surface)
    volume_mm3, _ = _signed_volume_and_area(original, triangles)
    if abs(target_volume_mm3 - abs(volume_mm3)) <= VOLUME_CORRECTION_START * target_volume_mm3:
        return 0.0
    offset_mm = 0.0
    for _ in range(3):
        moved = original + offset_mm * normals
        volume_mm3, area_mm2 = _signed_volume_and_area(moved, triangles)
        error_mm3 = target_volume_mm3 - abs(volume_mm3)
        if area_mm2 <= 0 or abs(error_mm3) <= 1e-3 * target_volume_mm3:
            break
        offset_mm = float(np.clip(offset_mm + error_mm3 / area_mm2, -max_offset_mm, max_offset_mm))
    points[:] = original + offset_mm * normals
    surface.GetPoints().Modified()
    return offset_mm


def sides_cut_by_volume_edge(
    box_kji: tuple[slice, slice, slice],
    shape_kji: tuple[int, ...],
    ijk_to_ras_mm: npt.NDArray[np.float64],
) -> tuple[str, ...]:
    """Patient sides on which a piece's bounding box reaches the edge of the voxel grid.

    Parameters
    ----------
    box_kji
        Bounding box of the piece, slices indexed [k, j, i] of the full grid.
    shape_kji
        Shape of the full grid.
    ijk_to_ras_mm
        4x4 matrix from voxel index (i, j, k) to RAS millimetres.

    Returns
    -------
    tuple of str
        ``"superior"``, ``"left"``, ... for each grid face the piece touches (the bone goes
        on beyond the scan there), in grid-axis order; empty when it lies wholly inside.
    """
    matrix = np.asarray(ijk_to_ras_mm, dtype=float)[:3, :3]
    sides: list[str] = []
    for array_axis, index_axis in enumerate((2, 1, 0)):
        column = matrix[:, index_axis]
        ras_axis = int(np.argmax(np.abs(column)))
        ascending = 1 if column[ras_axis] > 0 else -1
        if box_kji[array_axis].start == 0:
            sides.append(_SIDE_NAMES[(ras_axis, -ascending)])
        if box_kji[array_axis].stop == shape_kji[array_axis]:
            sides.append(_SIDE_NAMES[(ras_axis, ascending)])
    return tuple(sides)


def judge_surface(
    check: SurfaceCheck, labelmap_mm3: float, voxel_count: int, spacing_mm: float
) -> tuple[list[str], list[str]]:
    """Decide whether a bone surface is faithful to its labelmap.

    A surface fails when it has holes or non-manifold edges, when its normals are not
    consistently outward, or when its volume is off the labelmap volume. For ordinary pieces
    the volume must agree within :data:`VOLUME_TOLERANCE`. A small fragment (fewer than
    :data:`SMALL_PIECE_VOXELS` voxels, such as a rib end at a few millimetres per voxel) is
    mostly outline: its voxel count cannot tell its volume better than a fraction of a voxel
    layer over its whole area, and contouring shrinks thin parts by more than the
    half-voxel correction restores. Its volume difference is therefore judged as a mean
    distance between the surface and the voxel outline (volume difference over area): up to
    half a voxel is what the grid resolves; more, as for a collapsed surface, still fails.

    Parameters
    ----------
    check
        The surface's :func:`check_surface` figures (mm).
    labelmap_mm3
        Voxel count times voxel volume, mm^3.
    voxel_count
        Number of voxels of the piece.
    spacing_mm
        Smallest voxel spacing, mm.

    Returns
    -------
    problems, notes
        Sentences for real failures, and for facts the reader should know that are not
        failures (a small fragment judged by its mean distance).
    """
    problems: list[str] = []
    notes: list[str] = []
    if not check.closed:
        problems.append(
            f"surface is not closed ({check.boundary_edges} boundary, "
            f"{check.non_manifold_edges} non-manifold edges)"
        )
    if not (check.consistent and check.outward):
        problems.append("surface normals are not consistently outward")
    if labelmap_mm3 <= 0:
        return problems, notes
    difference_mm3 = abs(check.volume_mm3 - labelmap_mm3)
    if difference_mm3 <= VOLUME_TOLERANCE * labelmap_mm3:
        return problems, notes
    surface_ml, labelmap_ml = check.volume_mm3 / 1000, labelmap_mm3 / 1000
    if voxel_count >= SMALL_PIECE_VOXELS or check.area_mm2 <= 0:
        problems.append(
            f"surface volume {surface_ml:.2f} ml differs from the labelmap volume "
            f"{labelmap_ml:.2f} ml by more than {VOLUME_TOLERANCE:.0%}"
        )
        return problems, notes
    mean_distance_mm = difference_mm3 / check.area_mm2
    allowed_mm = 0.5 * spacing_mm
    fragment = (
        f"small fragment ({voxel_count} voxels, surface {surface_ml:.2f} ml, labelmap "
        f"{labelmap_ml:.2f} ml): surface on average {mean_distance_mm:.2f} mm from the voxel "
        "outline"
    )
    if mean_distance_mm > allowed_mm:
        problems.append(f"{fragment}, more than half a voxel ({allowed_mm:.2f} mm)")
    else:
        notes.append(f"{fragment}, within half a voxel ({allowed_mm:.2f} mm)")
    return problems, notes

"""Voxels of an analysed slice stack placed on a regular grid, with SimpleITK.

A regular stack is wrapped as it is; a tilted or unevenly spaced one is resampled by linear
interpolation onto an orthogonal grid spanned by the slices' row and column directions and
their normal. Geometry is in LPS millimetres.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk

if TYPE_CHECKING:
    from MSKPriorsLib.dicom_geometry import StackAnalysis


def regular_stack_image(
    volume_kji: npt.NDArray[Any], analysis: StackAnalysis, spacing_k_mm: float
) -> sitk.Image:
    """Wrap slices that already lie on a regular grid as a SimpleITK image (LPS).

    Parameters
    ----------
    volume_kji
        Voxels indexed [slice, row, column] in the analysis' slice order.
    analysis
        The stack's geometry.
    spacing_k_mm
        Distance between slices.
    """
    image = sitk.GetImageFromArray(volume_kji)
    row_spacing, column_spacing = analysis.pixel_spacing_mm
    image.SetSpacing((column_spacing, row_spacing, spacing_k_mm))
    first_position = analysis.frames[0].position_lps_mm
    assert first_position is not None
    image.SetOrigin(tuple(float(v) for v in first_position))
    direction = np.column_stack([analysis.row_lps, analysis.column_lps, analysis.normal_lps])
    image.SetDirection(tuple(float(v) for v in direction.ravel()))
    return image


def resample_to_regular_grid(
    volume_kji: npt.NDArray[Any],
    analysis: StackAnalysis,
    spacing_k_mm: float,
    default_value: float,
    dtype: npt.DTypeLike = np.float32,
) -> sitk.Image:
    """Resample a tilted or unevenly spaced stack onto a regular, orthogonal grid (LPS).

    The output grid has the slices' row and column directions and their normal as axes, the
    source pixel spacing in plane and ``spacing_k_mm`` between slices. In plane it is
    aligned with the first slice's pixels and widened to hold every source slice. Each
    output voxel is sampled by SimpleITK with linear interpolation between the two source
    slices around it, along the acquired stacking direction: for one output slice the map to
    the source stack is affine, so each output slice is one resampling with an affine
    transform into the stack's (column mm, row mm, slice index) space.

    Parameters
    ----------
    volume_kji
        Source voxels indexed [slice, row, column] in the analysis' slice order.
    analysis
        The stack's geometry (positions along the normal and in-plane offsets).
    spacing_k_mm
        Slice spacing of the output.
    default_value
        Value for output voxels that no source slice covers.
    dtype
        Voxel type of the output; integer types are rounded to the nearest value.

    Returns
    -------
    SimpleITK.Image
        The regular volume, geometry in LPS millimetres.
    """
    row_spacing, column_spacing = analysis.pixel_spacing_mm
    first_position = analysis.frames[0].position_lps_mm
    assert first_position is not None
    rows, columns = volume_kji.shape[1], volume_kji.shape[2]
    u0 = float(first_position @ analysis.row_lps)
    v0 = float(first_position @ analysis.column_lps)
    offsets_u = analysis.in_plane_offsets_mm[:, 0]
    offsets_v = analysis.in_plane_offsets_mm[:, 1]
    u_start = u0 + math.floor(offsets_u.min() / column_spacing + 1e-6) * column_spacing
    v_start = v0 + math.floor(offsets_v.min() / row_spacing + 1e-6) * row_spacing
    u_end = u0 + offsets_u.max() + (columns - 1) * column_spacing
    v_end = v0 + offsets_v.max() + (rows - 1) * row_spacing
    size_i = math.ceil((u_end - u_start) / column_spacing - 1e-6) + 1
    size_j = math.ceil((v_end - v_start) / row_spacing - 1e-6) + 1
    distances = analysis.distances_mm
    size_k = math.floor((distances[-1] - distances[0]) / spacing_k_mm + 1e-6) + 1

    direction = np.column_stack([analysis.row_lps, analysis.column_lps, analysis.normal_lps])
    origin = direction @ np.array([u_start, v_start, distances[0]])
    source = sitk.GetImageFromArray(volume_kji)
    source.SetSpacing((column_spacing, row_spacing, 1.0))
    # Source physical space is (column mm, row mm, slice index) from the first slice's corner.
    projection = np.vstack([analysis.row_lps, analysis.column_lps, np.zeros(3)])
    slice_indices = np.arange(len(distances), dtype=float)
    output_type = np.dtype(dtype)
    result = np.empty((size_k, size_j, size_i), dtype=output_type)
    for k in range(size_k):
        index = float(np.interp(distances[0] + k * spacing_k_mm, distances, slice_indices))
        shift_u = float(np.interp(index, slice_indices, offsets_u))
        shift_v = float(np.interp(index, slice_indices, offsets_v))
        transform = sitk.AffineTransform(3)
        transform.SetMatrix(tuple(float(v) for v in projection.ravel()))
        transform.SetTranslation((-u0 - shift_u, -v0 - shift_v, index))
        plane = sitk.Image(size_i, size_j, 1, sitk.sitkFloat32)
        plane.SetSpacing((column_spacing, row_spacing, spacing_k_mm))
        plane.SetOrigin(tuple(float(v) for v in origin + k * spacing_k_mm * direction[:, 2]))
        plane.SetDirection(tuple(float(v) for v in direction.ravel()))
        sampled = sitk.Resample(
            source, plane, transform, sitk.sitkLinear, float(default_value), sitk.sitkFloat32
        )
        values = sitk.GetArrayViewFromImage(sampled)[0]
        result[k] = np.rint(values) if output_type.kind in "iu" else values

    image = sitk.GetImageFromArray(result)
    image.SetSpacing((column_spacing, row_spacing, spacing_k_mm))
    image.SetOrigin(tuple(float(v) for v in origin))
    image.SetDirection(tuple(float(v) for v in direction.ravel()))
    return image

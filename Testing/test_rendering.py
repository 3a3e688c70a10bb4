"""Offscreen rendering: Slicer's view conventions checked on volumes with known anatomy."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
import vtk

from MSKPlannerLib import rendering
from MSKPlannerLib.rendering import (
    LineMark,
    PointMark,
    SliceOverlays,
    SurfaceActor,
    plane_through_volume,
    render_slice,
    render_surfaces,
)

SPACING_MM = 2.0


@pytest.fixture
def marked_volume() -> tuple[npt.NDArray[np.int16], npt.NDArray[np.float64]]:
    """A 64^3 volume (LPS-ordered voxels, like a DICOM CT) with bright blocks at known sides.

    Voxel axes run toward the patient's left (i), posterior (j) and superior (k); blocks
    sit at the patient's right, anterior and superior ends.
    """
    volume = np.zeros((64, 64, 64), dtype=np.int16)
    volume[28:36, 28:36, 0:8] = 1000  # low i: patient's right
    volume[28:36, 0:8, 28:36] = 1000  # low j: anterior
    volume[56:64, 28:36, 28:36] = 1000  # high k: superior
    ijk_to_ras = np.diag([-SPACING_MM, -SPACING_MM, SPACING_MM, 1.0])
    ijk_to_ras[:3, 3] = [63.0, 63.0, -63.0]
    return volume, ijk_to_ras


def _bright(picture: npt.NDArray[np.uint8]) -> npt.NDArray[np.bool_]:
    return picture.mean(axis=2) > 200


def test_axial_view_is_radiological_with_anterior_up(marked_volume) -> None:
    volume, ijk_to_ras = marked_volume

    picture = render_slice(volume, ijk_to_ras, 400, 200, "axial", center_ras_mm=(0, 0, 0))

    bright = _bright(picture)
    rows, columns = bright.shape
    right_block = bright[:, : columns // 4]
    anterior_block = bright[: rows // 4, :]
    assert right_block.sum() > 100  # the patient's right is on the left of the picture
    assert bright[:, 3 * columns // 4 :].sum() == 0
    assert anterior_block.sum() > 100  # anterior is up
    assert bright[3 * rows // 4 :, :].sum() == 0


def test_coronal_view_has_superior_up_and_right_on_the_left(marked_volume) -> None:
    volume, ijk_to_ras = marked_volume

    picture = render_slice(volume, ijk_to_ras, 400, 200, "coronal", center_ras_mm=(0, 0, 0))

    bright = _bright(picture)
    rows, columns = bright.shape
    assert bright[: rows // 4, columns // 3 : 2 * columns // 3].sum() > 100  # superior block
    assert bright[3 * rows // 4 :, :].sum() == 0
    assert bright[:, : columns // 4].sum() > 100  # right block on the left
    assert bright[:, 3 * columns // 4 :].sum() == 0


def test_sagittal_view_has_anterior_on_the_left(marked_volume) -> None:
    volume, ijk_to_ras = marked_volume

    picture = render_slice(volume, ijk_to_ras, 400, 200, "sagittal", center_ras_mm=(0, 0, 0))

    bright = _bright(picture)
    columns = bright.shape[1]
    assert bright[:, : columns // 4].sum() > 100
    assert bright[:, 3 * columns // 4 :].sum() == 0


def test_window_level_maps_the_window_onto_black_to_white() -> None:
    values = np.array([[-1000.0, 0.0, 40.0, 240.0, 3000.0]])

    grey = rendering.window_level_to_rgb(values, window=400.0, level=40.0)[..., 0]

    assert grey.tolist() == [[0, 102, 128, 255, 255]]


def test_point_and_line_marks_are_drawn_where_they_are(marked_volume) -> None:
    volume, ijk_to_ras = marked_volume
    empty = np.zeros_like(volume)
    overlays = SliceOverlays(
        points=[PointMark("", (30.0, 0.0, 0.0), (1.0, 0.0, 0.0))],
        lines=[LineMark((-40.0, 0.0, 30.0), (40.0, 0.0, 30.0), (0.0, 1.0, 0.0))],
    )
    plane = plane_through_volume(volume.shape, ijk_to_ras, "coronal", (0, 0, 0))

    picture = render_slice(empty, ijk_to_ras, 400, 200, overlays=overlays, plane=plane)

    red = (picture[..., 0] > 150) & (picture[..., 1] < 80)
    green = (picture[..., 1] > 150) & (picture[..., 0] < 80)
    rows_red, columns_red = np.nonzero(red)
    rows_green, _ = np.nonzero(green)
    x_mm, y_mm, _ = plane.to_picture((30.0, 0.0, 0.0))
    expected_column = x_mm / plane.pixel_mm
    expected_row = plane.shape[0] - 1 - y_mm / plane.pixel_mm
    assert abs(columns_red.mean() - expected_column) < 3  # x = +30 mm (right) is left of centre
    assert expected_column < plane.shape[1] / 2
    assert abs(rows_red.mean() - expected_row) < 3
    line_row = plane.shape[0] - 1 - plane.to_picture((0.0, 0.0, 30.0))[1] / plane.pixel_mm
    assert abs(np.median(rows_green) - line_row) < 2


def test_label_outlines_follow_the_label_border(marked_volume) -> None:
    volume, ijk_to_ras = marked_volume
    labels = np.zeros_like(volume)
    labels[20:44, 20:44, 20:44] = 7
    overlays = SliceOverlays(
        label_array_kji=labels, label_ijk_to_ras_mm=ijk_to_ras, label_colours={7: (1, 0, 1)}
    )

    picture = render_slice(
        np.zeros_like(volume), ijk_to_ras, 400, 200, "axial", (0, 0, 0), overlays=overlays
    )

    magenta = (picture[..., 0] > 200) & (picture[..., 2] > 200) & (picture[..., 1] < 60)
    _, columns = np.nonzero(magenta)
    pixel_mm = 128.0 / (picture.shape[1] - 1)
    assert (columns.max() - columns.min()) * pixel_mm == pytest.approx(48.0, abs=4.0)
    assert not magenta[picture.shape[0] // 2, picture.shape[1] // 2]  # outline, not filled


def test_3d_view_looks_from_the_front_on_a_slicer_background() -> None:
    right = vtk.vtkSphereSource()
    right.SetCenter(80.0, 0.0, 0.0)  # patient's right
    right.SetRadius(20.0)
    right.Update()
    top = vtk.vtkCubeSource()
    top.SetCenter(0.0, 0.0, 80.0)  # superior
    top.SetXLength(20.0)
    top.SetYLength(20.0)
    top.SetZLength(20.0)
    top.Update()

    picture = render_surfaces(
        [
            SurfaceActor("right", right.GetOutput(), (1.0, 0.0, 0.0)),
            SurfaceActor("top", top.GetOutput(), (0.0, 1.0, 0.0)),
        ],
        size_px=(300, 300),
    )

    red = (picture[..., 0] > 100) & (picture[..., 1] < 60) & (picture[..., 2] < 60)
    green = (picture[..., 1] > 100) & (picture[..., 0] < 60)
    assert np.nonzero(red)[1].mean() < 150  # right side of the patient on the left
    assert np.nonzero(green)[0].mean() < 150  # superior up
    assert picture[-1, 5].max() < 20  # black at the bottom
    assert picture[2, 5, 2] > picture[2, 5, 0] + 40  # blue at the top


def test_png_round_trip_keeps_the_pixels(tmp_path) -> None:
    picture = np.zeros((5, 7, 3), dtype=np.uint8)
    picture[0, 0] = (255, 0, 0)
    picture[4, 6] = (0, 0, 255)

    path = rendering.write_png(picture, tmp_path / "p.png")

    reader = vtk.vtkPNGReader()
    reader.SetFileName(str(path))
    reader.Update()
    from vtk.util import numpy_support

    image = reader.GetOutput()
    flat = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())
    read = flat.reshape(5, 7, 3)[::-1]
    assert np.array_equal(read, picture)

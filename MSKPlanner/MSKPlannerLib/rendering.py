"""Offscreen pictures for reports: slices with overlays and 3D views of bone surfaces.

Everything here renders with plain VTK into an offscreen EGL window (no Qt, no MRML views), so
the same pictures come out of the command line, the tests and the desktop. The views follow
3D Slicer's conventions:

- slice views are radiological: in an axial or coronal view the patient's right is on the
  left of the picture; axial has anterior up, coronal and sagittal have superior up, and the
  sagittal view has anterior on the left;
- the 3D view is seen from anterior (patient's right on the left of the picture, superior up)
  on a black-to-blue gradient background, with bone-coloured, lit surfaces.

Inputs are numpy arrays with their IJK-to-RAS matrix (millimetres) and ``vtkPolyData`` in RAS
millimetres; outputs are RGB arrays of shape ``(rows, columns, 3)`` (``uint8``) and PNG files.
"""

from __future__ import annotations

import logging
import os

# The EGL window must be the default before any VTK render window is created.
os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import vtk
from vtk.util import numpy_support

from MSKPriorsLib.frames import vtk_matrix_from_numpy

logger = logging.getLogger(__name__)

RGB = tuple[float, float, float]

#: Slicer's default bone colour for models (RGB, 0..1).
BONE_COLOUR: RGB = (0.945, 0.839, 0.569)

#: Gradient of the 3D view background: bottom and top (RGB, 0..1).
BACKGROUND_BOTTOM: RGB = (0.0, 0.0, 0.0)
BACKGROUND_TOP: RGB = (0.16, 0.25, 0.55)

#: Slice-to-RAS axes of the standard views, as columns (picture x, picture y, normal).
SLICE_AXES_RAS: dict[str, npt.NDArray[np.float64]] = {
    "axial": np.array([[-1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]),
    "coronal": np.array([[-1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]]),
    "sagittal": np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]),
}

#: Colours cycled for label outlines and for bones when no colour is given.
PALETTE: tuple[RGB, ...] = (
    (0.945, 0.839, 0.569),
    (0.50, 0.68, 0.50),
    (0.85, 0.50, 0.40),
    (0.56, 0.74, 0.86),
    (0.86, 0.75, 0.45),
    (0.70, 0.55, 0.80),
    (0.90, 0.60, 0.70),
    (0.60, 0.80, 0.75),
)


@dataclass(frozen=True)
class PointMark:
    """A labelled point drawn on a slice.

    Attributes
    ----------
    label
        Text written beside the point (may be empty).
    position_ras_mm
        Position in RAS millimetres, shape ``(3,)``.
    colour
        RGB in 0..1.
    """

    label: str
    position_ras_mm: tuple[float, float, float]
    colour: RGB = (1.0, 0.85, 0.1)


@dataclass(frozen=True)
class LineMark:
    """A line segment drawn on a slice, between two RAS points in millimetres.

    ``label`` is written at the middle of the line, or beyond its right-hand end in the
    picture when ``label_beside`` is set (so the text does not cover the line).
    """

    start_ras_mm: tuple[float, float, float]
    end_ras_mm: tuple[float, float, float]
    colour: RGB = (0.2, 0.9, 1.0)
    label: str = ""
    label_beside: bool = False


@dataclass
class SliceOverlays:
    """What to draw over a slice.

    Attributes
    ----------
    points, lines
        Marks in RAS millimetres; they are projected orthogonally onto the slice plane.
    label_array_kji
        Optional label map on its own grid (``[k, j, i]`` integers, 0 is background); the
        outline of each label is drawn in its colour.
    label_ijk_to_ras_mm
        4x4 IJK-to-RAS matrix of the label map (mm); required with ``label_array_kji``.
    label_colours
        Colour per label value; labels without one cycle through :data:`PALETTE`.
    """

    points: list[PointMark] = field(default_factory=list)
    lines: list[LineMark] = field(default_factory=list)
    label_array_kji: npt.NDArray[Any] | None = None
    label_ijk_to_ras_mm: npt.NDArray[np.float64] | None = None
    label_colours: dict[int, RGB] = field(default_factory=dict)


@dataclass(frozen=True)
class SurfaceActor:
    """One surface for the 3D view: ``vtkPolyData`` in RAS millimetres, with its colour."""

    name: str
    polydata: Any
    colour: RGB = BONE_COLOUR
    opacity: float = 1.0


def _image_from_array(array_kji: npt.NDArray[Any]) -> vtk.vtkImageData:
    """Wrap an array as image data in index space (origin 0, spacing 1)."""
    array_kji = np.ascontiguousarray(array_kji)
    image = vtk.vtkImageData()
    image.SetDimensions(array_kji.shape[2], array_kji.shape[1], array_kji.shape[0])
    image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(array_kji.ravel(), deep=True))
    return image


def volume_corners_ras(
    shape_kji: Sequence[int], ijk_to_ras_mm: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """Return the 8 corner voxel centres of a volume in RAS millimetres, shape ``(8, 3)``."""
    k, j, i = (max(int(n) - 1, 0) for n in shape_kji)
    corners = np.array(
        [[a, b, c, 1.0] for a in (0, i) for b in (0, j) for c in (0, k)], dtype=float
    )
    return (np.asarray(ijk_to_ras_mm, dtype=float) @ corners.T).T[:, :3]


@dataclass(frozen=True)
class SlicePlane:
    """A sampled slice plane: picture pixel ``(row, column)`` to RAS millimetres.

    Attributes
    ----------
    axes_ras
        3x3 matrix whose columns are the picture x (columns), picture y (up) and normal
        directions in RAS.
    origin_ras_mm
        RAS position of the picture's lower-left pixel centre.
    pixel_mm
        Edge of a square picture pixel in millimetres.
    shape
        ``(rows, columns)`` of the picture.
    """

    axes_ras: npt.NDArray[np.float64]
    origin_ras_mm: npt.NDArray[np.float64]
    pixel_mm: float
    shape: tuple[int, int]

    def to_picture(self, point_ras_mm: Sequence[float]) -> tuple[float, float, float]:
        """Return ``(x_mm, y_mm, distance_mm)`` of a RAS point in picture millimetres."""
        offset = np.asarray(point_ras_mm, dtype=float) - self.origin_ras_mm
        x_mm, y_mm, distance_mm = (self.axes_ras.T @ offset).tolist()
        return x_mm, y_mm, distance_mm

    def slice_to_ras(self) -> npt.NDArray[np.float64]:
        """4x4 matrix from picture millimetres (x, y, normal) to RAS millimetres."""
        matrix = np.eye(4)
        matrix[:3, :3] = self.axes_ras
        matrix[:3, 3] = self.origin_ras_mm
        return matrix


def plane_through_volume(
    shape_kji: Sequence[int],
    ijk_to_ras_mm: npt.NDArray[np.float64],
    orientation: str = "axial",
    center_ras_mm: npt.ArrayLike | None = None,
    pixel_mm: float | None = None,
    max_pixels: int = 512,
    min_pixels: int = 384,
) -> SlicePlane:
    """Return the plane of a standard view through a volume, covering all of it.

    Parameters
    ----------
    shape_kji
        Shape of the volume array ``(k, j, i)``.
    ijk_to_ras_mm
        4x4 IJK-to-RAS matrix (mm).
    orientation
        ``axial``, ``coronal`` or ``sagittal``.
    center_ras_mm
        A point the plane passes through (RAS mm); the volume centre when omitted.
    pixel_mm
        Picture pixel size in mm; by default the finest in-plane voxel spacing, coarsened so
        that neither picture side exceeds ``max_pixels``, and refined so that the longer
        side has at least ``min_pixels`` (coarse volumes are interpolated up).
    max_pixels, min_pixels
        Bounds on the longer picture side in pixels.
    """
    if orientation not in SLICE_AXES_RAS:
        raise ValueError(f"unknown slice orientation {orientation!r}")
    axes = SLICE_AXES_RAS[orientation]
    corners = volume_corners_ras(shape_kji, ijk_to_ras_mm)
    center = (
        np.asarray(center_ras_mm, dtype=float)
        if center_ras_mm is not None
        else corners.mean(axis=0)
    )
    projected = (axes.T @ (corners - center).T).T
    low, high = projected.min(axis=0), projected.max(axis=0)
    extent_mm = np.maximum(high[:2] - low[:2], 1e-3)
    spacing_mm = np.linalg.norm(np.asarray(ijk_to_ras_mm, dtype=float)[:3, :3], axis=0)
    if pixel_mm is None:
        pixel_mm = float(min(spacing_mm))
        pixel_mm = max(pixel_mm, float(extent_mm.max()) / max_pixels)
        if min_pixels > 0:
            pixel_mm = min(pixel_mm, float(extent_mm.max()) / min_pixels)
    columns = int(np.floor(extent_mm[0] / pixel_mm)) + 1
    rows = int(np.floor(extent_mm[1] / pixel_mm)) + 1
    origin = center + axes[:, 0] * low[0] + axes[:, 1] * low[1]
    return SlicePlane(axes, origin, float(pixel_mm), (rows, columns))


def plane_around(
    center_ras_mm: Sequence[float],
    orientation: str,
    width_mm: float,
    height_mm: float,
    pixel_mm: float,
) -> SlicePlane:
    """Return a standard-view plane of a given size centred on a RAS point (mm).

    Parameters
    ----------
    center_ras_mm
        Centre of the picture, RAS mm.
    orientation
        ``axial``, ``coronal`` or ``sagittal``.
    width_mm, height_mm
        Field of view in millimetres.
    pixel_mm
        Picture pixel size in millimetres.
    """
    if orientation not in SLICE_AXES_RAS:
        raise ValueError(f"unknown slice orientation {orientation!r}")
    axes = SLICE_AXES_RAS[orientation]
    columns = int(np.floor(width_mm / pixel_mm)) + 1
    rows = int(np.floor(height_mm / pixel_mm)) + 1
    centre = np.asarray(center_ras_mm, dtype=float)
    origin = centre - axes[:, 0] * width_mm / 2.0 - axes[:, 1] * height_mm / 2.0
    return SlicePlane(axes, origin, float(pixel_mm), (rows, columns))


def resample_on_plane(
    array_kji: npt.NDArray[Any],
    ijk_to_ras_mm: npt.NDArray[np.float64],
    plane: SlicePlane,
    nearest: bool = False,
    background: float | None = None,
) -> npt.NDArray[Any]:
    """Sample a volume on a slice plane with ``vtkImageReslice``.

    Returns
    -------
    numpy.ndarray
        Shape ``plane.shape`` (rows, columns), row 0 at the bottom of the picture (picture y
        grows with the row index), same dtype as the input.
    """
    image = _image_from_array(array_kji)
    ras_to_ijk = np.linalg.inv(np.asarray(ijk_to_ras_mm, dtype=float))
    reslice = vtk.vtkImageReslice()
    reslice.SetInputData(image)
    reslice.SetResliceAxes(vtk_matrix_from_numpy(ras_to_ijk @ plane.slice_to_ras()))
    reslice.SetOutputDimensionality(2)
    reslice.SetOutputOrigin(0.0, 0.0, 0.0)
    reslice.SetOutputSpacing(plane.pixel_mm, plane.pixel_mm, 1.0)
    reslice.SetOutputExtent(0, plane.shape[1] - 1, 0, plane.shape[0] - 1, 0, 0)
    if nearest:
        reslice.SetInterpolationModeToNearestNeighbor()
    else:
        reslice.SetInterpolationModeToLinear()
    fill = float(np.min(array_kji)) if background is None else background
    reslice.SetBackgroundLevel(fill)
    reslice.Update()
    out = numpy_support.vtk_to_numpy(reslice.GetOutput().GetPointData().GetScalars())
    return np.array(out).reshape(plane.shape)


def window_level_to_rgb(
    pixels: npt.NDArray[Any], window: float, level: float
) -> npt.NDArray[np.uint8]:
    """Map values to grey ``uint8`` RGB with a window width and centre (in pixel units)."""
    window = max(float(window), 1e-6)
    scaled = (pixels.astype(np.float64) - (level - window / 2.0)) / window
    grey = np.clip(np.round(scaled * 255.0), 0, 255).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=-1)


def _paint_label_outlines(
    rgb: npt.NDArray[np.uint8], labels: npt.NDArray[Any], colours: dict[int, RGB]
) -> None:
    """Colour, in place, the pixels of ``rgb`` on the border of each non-zero label."""
    edge = np.zeros(labels.shape, dtype=bool)
    edge[1:, :] |= labels[1:, :] != labels[:-1, :]
    edge[:-1, :] |= labels[1:, :] != labels[:-1, :]
    edge[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    edge[:, :-1] |= labels[:, 1:] != labels[:, :-1]
    edge &= labels != 0
    for index, value in enumerate(np.unique(labels[edge])):
        colour = colours.get(int(value), PALETTE[index % len(PALETTE)])
        mask = edge & (labels == value)
        rgb[mask] = (np.asarray(colour) * 255).astype(np.uint8)


def _new_window(size: tuple[int, int]) -> tuple[vtk.vtkRenderWindow, vtk.vtkRenderer]:
    window = vtk.vtkRenderWindow()
    window.SetOffScreenRendering(1)
    window.SetMultiSamples(0)
    window.SetSize(int(size[0]), int(size[1]))
    renderer = vtk.vtkRenderer()
    window.AddRenderer(renderer)
    return window, renderer


def _capture(window: vtk.vtkRenderWindow) -> npt.NDArray[np.uint8]:
    window.Render()
    grabber = vtk.vtkWindowToImageFilter()
    grabber.SetInput(window)
    grabber.SetInputBufferTypeToRGB()
    grabber.ReadFrontBufferOff()
    grabber.Update()
    image = grabber.GetOutput()
    width, height, _ = image.GetDimensions()
    flat = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())
    rgb = np.array(flat, dtype=np.uint8).reshape(height, width, -1)[..., :3]
    window.Finalize()
    return np.ascontiguousarray(rgb[::-1])


def _text_actor(text: str, position_px: tuple[float, float], size_pt: int, colour: RGB) -> Any:
    actor = vtk.vtkTextActor()
    actor.SetInput(text)
    actor.SetDisplayPosition(int(position_px[0]), int(position_px[1]))
    prop = actor.GetTextProperty()
    prop.SetFontSize(size_pt)
    prop.SetColor(*colour)
    prop.SetShadow(1)
    prop.SetBold(1)
    return actor


def render_slice(
    array_kji: npt.NDArray[Any],
    ijk_to_ras_mm: npt.NDArray[np.float64],
    window: float,
    level: float,
    orientation: str = "axial",
    center_ras_mm: npt.ArrayLike | None = None,
    overlays: SliceOverlays | None = None,
    title: str = "",
    max_pixels: int = 512,
    plane: SlicePlane | None = None,
    min_pixels: int = 384,
) -> npt.NDArray[np.uint8]:
    """Render one slice of a volume with window/level and optional overlays.

    Parameters
    ----------
    array_kji
        Volume voxels indexed ``[k, j, i]`` (a radiograph is a volume of one slice).
    ijk_to_ras_mm
        4x4 IJK-to-RAS matrix (mm).
    window, level
        Display window width and centre in voxel units (Hounsfield units for CT).
    orientation
        ``axial``, ``coronal`` or ``sagittal`` (Slicer's radiological views).
    center_ras_mm
        A RAS point (mm) the slice passes through; the volume centre when omitted.
    overlays
        Points, lines and label outlines to draw.
    title
        Text written in the upper left corner.
    max_pixels, min_pixels
        Bounds on the longer side of the picture in pixels.
    plane
        The exact plane to sample (for example the plane of another study, so current and
        prior pictures cover the same anatomy); overrides ``orientation`` and
        ``center_ras_mm``.

    Returns
    -------
    numpy.ndarray
        RGB picture, shape ``(rows, columns, 3)``, ``uint8``, row 0 at the top.
    """
    if plane is None:
        plane = plane_through_volume(
            array_kji.shape,
            ijk_to_ras_mm,
            orientation,
            center_ras_mm,
            max_pixels=max_pixels,
            min_pixels=min_pixels,
        )
    pixels = resample_on_plane(array_kji, ijk_to_ras_mm, plane)
    rgb = window_level_to_rgb(pixels, window, level)
    overlays = overlays or SliceOverlays()
    if overlays.label_array_kji is not None:
        if overlays.label_ijk_to_ras_mm is None:
            raise ValueError("label outlines need the label map's IJK-to-RAS matrix")
        labels = resample_on_plane(
            overlays.label_array_kji,
            overlays.label_ijk_to_ras_mm,
            plane,
            nearest=True,
            background=0,
        )
        _paint_label_outlines(rgb, labels, overlays.label_colours)

    rows, columns = plane.shape
    render_window, renderer = _new_window((columns, rows))
    renderer.SetBackground(0.0, 0.0, 0.0)

    image_actor = vtk.vtkImageActor()
    image_actor.GetMapper().SetInputData(_rgb_image(rgb, plane.pixel_mm))
    image_actor.InterpolateOff()
    renderer.AddActor(image_actor)
    _add_marks(renderer, plane, overlays)

    camera = renderer.GetActiveCamera()
    camera.ParallelProjectionOn()
    centre = ((columns - 1) * plane.pixel_mm / 2.0, (rows - 1) * plane.pixel_mm / 2.0)
    camera.SetFocalPoint(centre[0], centre[1], 0.0)
    camera.SetPosition(centre[0], centre[1], 1000.0)
    camera.SetViewUp(0.0, 1.0, 0.0)
    camera.SetParallelScale(rows * plane.pixel_mm / 2.0)
    renderer.ResetCameraClippingRange()
    if title:
        renderer.AddViewProp(_text_actor(title, (8, rows - 24), 14, (1.0, 1.0, 1.0)))
    return _capture(render_window)


def _rgb_image(rgb: npt.NDArray[np.uint8], pixel_mm: float) -> vtk.vtkImageData:
    """Image data of an RGB picture whose row 0 is the bottom row, as VTK stores it."""
    flipped = np.ascontiguousarray(rgb)
    image = vtk.vtkImageData()
    image.SetDimensions(flipped.shape[1], flipped.shape[0], 1)
    image.SetSpacing(pixel_mm, pixel_mm, 1.0)
    scalars = numpy_support.numpy_to_vtk(flipped.reshape(-1, 3), deep=True)
    scalars.SetNumberOfComponents(3)
    image.GetPointData().SetScalars(scalars)
    return image


def _add_marks(renderer: vtk.vtkRenderer, plane: SlicePlane, overlays: SliceOverlays) -> None:
    radius_mm = max(plane.pixel_mm * plane.shape[0] / 80.0, plane.pixel_mm * 2.0)
    for line in overlays.lines:
        x0, y0, _ = plane.to_picture(line.start_ras_mm)
        x1, y1, _ = plane.to_picture(line.end_ras_mm)
        source = vtk.vtkLineSource()
        source.SetPoint1(x0, y0, 1.0)
        source.SetPoint2(x1, y1, 1.0)
        renderer.AddActor(_actor(source, line.colour, line_width=2.5))
        if line.label:
            anchor = ((x0 + x1) / 2, (y0 + y1) / 2)
            if line.label_beside:
                right_x, right_y = (x0, y0) if x0 > x1 else (x1, y1)
                anchor = (right_x + radius_mm * 0.6, right_y)
            renderer.AddActor(_follower_text(line.label, anchor, line.colour, radius_mm))
    for point in overlays.points:
        x, y, _ = plane.to_picture(point.position_ras_mm)
        disc = vtk.vtkRegularPolygonSource()
        disc.SetNumberOfSides(24)
        disc.SetRadius(radius_mm)
        disc.SetCenter(x, y, 2.0)
        disc.GeneratePolygonOff()
        renderer.AddActor(_actor(disc, point.colour, line_width=2.0))
        if point.label:
            renderer.AddActor(
                _follower_text(point.label, (x + radius_mm * 1.4, y), point.colour, radius_mm)
            )


def _actor(source: Any, colour: RGB, line_width: float) -> vtk.vtkActor:
    mapper = vtk.vtkPolyDataMapper()
    mapper.SetInputConnection(source.GetOutputPort())
    actor = vtk.vtkActor()
    actor.SetMapper(mapper)
    actor.GetProperty().SetColor(*colour)
    actor.GetProperty().SetLineWidth(line_width)
    actor.GetProperty().LightingOff()
    return actor


def _follower_text(text: str, position_mm: tuple[float, float], colour: RGB, size_mm: float) -> Any:
    actor = vtk.vtkBillboardTextActor3D()
    actor.SetInput(text)
    actor.SetPosition(position_mm[0], position_mm[1], 3.0)
    prop = actor.GetTextProperty()
    prop.SetFontSize(13)
    prop.SetColor(*colour)
    prop.SetShadow(1)
    prop.SetJustificationToLeft()
    prop.SetVerticalJustificationToCentered()
    return actor


def render_surfaces(
    surfaces: Sequence[SurfaceActor],
    view: str = "anterior",
    size_px: tuple[int, int] = (640, 640),
    title: str = "",
) -> npt.NDArray[np.uint8]:
    """Render bone surfaces in a 3D view that looks like Slicer's.

    Parameters
    ----------
    surfaces
        Surfaces with ``vtkPolyData`` in RAS millimetres.
    view
        ``anterior`` (the default, patient's right on the picture's left), ``posterior``,
        ``left`` or ``right``: the side the camera looks from; superior is up.
    size_px
        Picture ``(width, height)`` in pixels.
    title
        Text written in the upper left corner.

    Returns
    -------
    numpy.ndarray
        RGB picture, shape ``(height, width, 3)``, ``uint8``, row 0 at the top.
    """
    directions = {
        "anterior": (0.0, 1.0, 0.0),
        "posterior": (0.0, -1.0, 0.0),
        "left": (-1.0, 0.0, 0.0),
        "right": (1.0, 0.0, 0.0),
    }
    if view not in directions:
        raise ValueError(f"unknown 3D view {view!r}")
    render_window, renderer = _new_window(size_px)
    renderer.GradientBackgroundOn()
    renderer.SetBackground(*BACKGROUND_BOTTOM)
    renderer.SetBackground2(*BACKGROUND_TOP)
    renderer.SetTwoSidedLighting(True)
    light_kit = vtk.vtkLightKit()
    light_kit.AddLightsToRenderer(renderer)

    for surface in surfaces:
        if surface.polydata is None or surface.polydata.GetNumberOfPoints() == 0:
            logger.warning("surface %s is empty and is left out of the 3D view", surface.name)
            continue
        normals = vtk.vtkPolyDataNormals()
        normals.SetInputData(surface.polydata)
        normals.SplittingOff()
        normals.ConsistencyOn()
        mapper = vtk.vtkPolyDataMapper()
        mapper.SetInputConnection(normals.GetOutputPort())
        mapper.ScalarVisibilityOff()
        actor = vtk.vtkActor()
        actor.SetMapper(mapper)
        prop = actor.GetProperty()
        prop.SetColor(*surface.colour)
        prop.SetOpacity(surface.opacity)
        prop.SetAmbient(0.1)
        prop.SetDiffuse(0.9)
        prop.SetSpecular(0.2)
        prop.SetSpecularPower(30.0)
        renderer.AddActor(actor)

    camera = renderer.GetActiveCamera()
    direction = np.array(directions[view])
    camera.SetFocalPoint(0.0, 0.0, 0.0)
    camera.SetPosition(*(direction * 1000.0))
    camera.SetViewUp(0.0, 0.0, 1.0)
    camera.SetViewAngle(30.0)
    renderer.ResetCamera()
    renderer.ResetCameraClippingRange()

    width, height = size_px
    if title:
        renderer.AddViewProp(_text_actor(title, (10, height - 28), 16, (1.0, 1.0, 1.0)))
    if view in ("anterior", "posterior"):
        left, right = ("R", "L") if view == "anterior" else ("L", "R")
        renderer.AddViewProp(_text_actor(left, (10, height // 2), 18, (0.9, 0.9, 0.9)))
        renderer.AddViewProp(_text_actor(right, (width - 24, height // 2), 18, (0.9, 0.9, 0.9)))
    return _capture(render_window)


def side_by_side(
    pictures: Sequence[npt.NDArray[np.uint8]], gap_px: int = 8
) -> npt.NDArray[np.uint8]:
    """Place RGB pictures next to each other, top-aligned on a black canvas."""
    height = max(p.shape[0] for p in pictures)
    width = sum(p.shape[1] for p in pictures) + gap_px * (len(pictures) - 1)
    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    x = 0
    for picture in pictures:
        canvas[: picture.shape[0], x : x + picture.shape[1]] = picture
        x += picture.shape[1] + gap_px
    return canvas


def png_bytes(rgb: npt.NDArray[np.uint8]) -> bytes:
    """Encode an RGB picture (row 0 at the top) as PNG bytes."""
    rgb = np.ascontiguousarray(rgb[::-1], dtype=np.uint8)
    image = vtk.vtkImageData()
    image.SetDimensions(rgb.shape[1], rgb.shape[0], 1)
    scalars = numpy_support.numpy_to_vtk(rgb.reshape(-1, 3), deep=True)
    scalars.SetNumberOfComponents(3)
    image.GetPointData().SetScalars(scalars)
    writer = vtk.vtkPNGWriter()
    writer.SetInputData(image)
    writer.WriteToMemoryOn()
    writer.Write()
    result = writer.GetResult()
    return bytes(numpy_support.vtk_to_numpy(result).tobytes())


def write_png(rgb: npt.NDArray[np.uint8], path: Path) -> Path:
    """Write an RGB picture (row 0 at the top) to a PNG file and return its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png_bytes(rgb))
    return path

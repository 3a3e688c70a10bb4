"""Pictures of the case report: current beside prior, 3D bones, measurement overlays.

Every picture is rendered offscreen by :mod:`MSKPlannerLib.rendering` from what the plan
loaded and measured; overlays draw the landmarks, axes and labels the values came from.

MRML logic (reads volume and model data from the plan state's scene).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import vtk

from MSKPlannerLib.case_loading import LoadedImage
from MSKPlannerLib.case_measures import names_table_for
from MSKPlannerLib.label_maps import LabelMapError, read_label_map
from MSKPlannerLib.landmarks import LandmarkSet
from MSKPlannerLib.measure_cobb import body_end_line_ras
from MSKPlannerLib.rendering import (
    PALETTE,
    LineMark,
    PointMark,
    SliceOverlays,
    SurfaceActor,
    plane_around,
    plane_through_volume,
    render_slice,
    render_surfaces,
    write_png,
)
from MSKPlannerLib.report_html import Figure
from MSKPriorsLib.frames import ijk_to_ras_from_sitk

if TYPE_CHECKING:
    from MSKPlannerLib.case_plan import PlanState

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]

SHORT_NAMES = {
    "hka_deg": "HKA",
    "mldfa_deg": "mLDFA",
    "mpta_deg": "MPTA",
    "jlca_deg": "JLCA",
    "cobb_deg": "Cobb",
}

#: Smallest height/width ratio of a comparison picture worth showing.
MIN_ASPECT = 0.25

#: Hounsfield units above which a voxel counts as bone when centring the comparison slices.
BONE_HU = 200.0

AXIS_COLOUR = (0.2, 0.9, 1.0)
JOINT_COLOUR = (1.0, 0.45, 0.2)
LOAD_LINE_COLOUR = (0.4, 1.0, 0.4)
HIP_COLOUR = (1.0, 0.4, 1.0)


def make_figures(state: PlanState) -> list[Figure]:
    """Render every picture of the report and write each as PNG under ``out_dir/images``."""
    figures: list[Figure] = []
    figures += _comparison_figures(state)
    figures += _bone_figures(state)
    figures += _measurement_figures(state)
    images_dir = Path(state.request.out_dir) / "images"
    written = []
    for index, figure in enumerate(figures):
        for sub, picture in enumerate(figure.pictures):
            path = images_dir / f"{index + 1:02d}-{figure.section}-{sub + 1}.png"
            write_png(picture, path)
            written.append(path.relative_to(state.request.out_dir).as_posix())
    state.files["images"] = written
    return figures


def bone_centre_ras(image: LoadedImage) -> FloatArray | None:
    """Centroid (RAS mm) of the voxels above :data:`BONE_HU`, or None when there are none."""
    array = image.array_kji
    step = max(1, round((array.size / 2_000_000) ** (1 / 3)))
    voxels = np.argwhere(array[::step, ::step, ::step] > BONE_HU) * step
    if voxels.size == 0:
        return None
    centre_ijk = np.append(voxels.mean(axis=0)[::-1], 1.0)
    return (image.ijk_to_ras_mm @ centre_ijk)[:3]


def _volume_picture(
    image: LoadedImage, orientation: str, reference: LoadedImage, title: str
) -> npt.NDArray[np.uint8]:
    centre = bone_centre_ras(reference) if reference.modality == "CT" else None
    plane = plane_through_volume(
        reference.array_kji.shape, reference.ijk_to_ras_mm, orientation, centre, max_pixels=420
    )
    window, level = image.window_level
    return render_slice(
        image.array_kji,
        image.ijk_to_current_ras_mm(),
        window,
        level,
        plane=plane,
        title=title,
    )


def _comparison_figures(state: PlanState) -> list[Figure]:
    figures = []
    currents = [i for i in state.loaded if i.role == "current" and i.kind == "volume"]
    priors = [i for i in state.loaded if i.role == "prior" and i.kind == "volume"]
    for current in currents:
        partners = [p for p in priors if p.modality == current.modality]
        for orientation in ("coronal", "axial"):
            rows, columns = plane_through_volume(
                current.array_kji.shape, current.ijk_to_ras_mm, orientation
            ).shape
            if rows < MIN_ASPECT * columns:
                continue  # a thin slab seen edge-on shows nothing useful
            pictures = [_volume_picture(current, orientation, current, current.title)]
            labels = [f"{current.title} ({orientation})"]
            for prior in partners:
                pictures.append(_volume_picture(prior, orientation, current, prior.title))
                moved = "after registration" if prior.transform_node is not None else "unregistered"
                labels.append(f"{prior.title} ({orientation}, {moved})")
            caption = (
                f"{orientation.capitalize()} slice through the centre of the bones of the "
                f"current {current.modality}"
                + (", with the same plane in the prior" if partners else "; no prior to compare")
            )
            figures.append(Figure("comparison", caption, pictures, labels))
    radiographs = [i for i in state.loaded if i.role == "current" and i.kind == "radiograph"]
    for radiograph in radiographs:
        if radiograph is state.landmark_image:
            continue
        figures.append(
            Figure("comparison", radiograph.title, [_radiograph_picture(radiograph, None, "")])
        )
    return figures


def _transformed(polydata: Any, image: LoadedImage) -> Any:
    if image.transform_node is None:
        return polydata
    matrix = vtk.vtkMatrix4x4()
    image.transform_node.GetMatrixTransformToParent(matrix)
    transform = vtk.vtkTransform()
    transform.SetMatrix(matrix)
    moved = vtk.vtkTransformPolyDataFilter()
    moved.SetInputData(polydata)
    moved.SetTransform(transform)
    moved.Update()
    return moved.GetOutput()


def _surfaces_picture(image: LoadedImage, result: Any, title: str) -> npt.NDArray[np.uint8]:
    actors = [
        SurfaceActor(
            bone.name,
            _transformed(bone.polydata, image),
            PALETTE[index % len(PALETTE)],
        )
        for index, bone in enumerate(result.bones)
    ]
    return render_surfaces(actors, "anterior", (480, 480), title)


def _bone_figures(state: PlanState) -> list[Figure]:
    figures = []
    threshold = [(i, r) for i, m, r in state.surface_results if m == "threshold" and r.bones]
    if threshold:
        pictures = [_surfaces_picture(i, r, i.title) for i, r in threshold]
        labels = [f"{i.title}: {len(r.bones)} bone pieces (bone threshold)" for i, r in threshold]
        figures.append(
            Figure(
                "bones",
                "Bones above the bone threshold, each connected piece in its own colour; priors "
                "are shown after registration to the current study.",
                pictures,
                labels,
            )
        )
    for image, method, result in state.surface_results:
        if method != "labels" or not result.bones:
            continue
        names = ", ".join(bone.name for bone in result.bones[:10])
        figures.append(
            Figure(
                "bones",
                f"Bones named by the label map on {image.title}: {names}",
                [_surfaces_picture(image, result, f"{image.title} (label map)")],
            )
        )
    return figures


def _display_voxels(image: LoadedImage) -> tuple[npt.NDArray[Any], float, float]:
    """Voxels, window and level to draw ``image`` with; MONOCHROME1 is drawn inverted.

    Negating the voxels and the level turns the grey ramp around without touching the
    node's stored values (which the measurements read).
    """
    window, level = image.window_level
    if image.display_inverted:
        return -image.array_kji.astype(np.float32), window, -level
    return image.array_kji, window, level


def _radiograph_picture(
    image: LoadedImage, overlays: SliceOverlays | None, title: str
) -> npt.NDArray[np.uint8]:
    voxels, window, level = _display_voxels(image)
    return render_slice(
        voxels,
        image.ijk_to_ras_mm,
        window,
        level,
        orientation="coronal",
        overlays=overlays,
        title=title,
        max_pixels=900,
        min_pixels=0,
    )


def _knee_picture(
    image: LoadedImage,
    points: dict[str, FloatArray],
    overlays: SliceOverlays,
    title: str,
) -> npt.NDArray[np.uint8] | None:
    """A close-up of the knee joint lines, 160 mm across, when the knee landmarks exist."""
    knee = [points[k] for k in ("knee_center_femur", "knee_center_tibia") if k in points]
    if not knee:
        return None
    centre = np.mean(knee, axis=0)
    plane = plane_around(centre, "coronal", 160.0, 160.0, 160.0 / 420)
    voxels, window, level = _display_voxels(image)
    return render_slice(
        voxels,
        image.ijk_to_ras_mm,
        window,
        level,
        overlays=overlays,
        title=title,
        plane=plane,
    )


def _value_text(state: PlanState, key: str, unit: str) -> str:
    rows = state.table.by_key(key)
    if not rows:
        return ""
    return f"{SHORT_NAMES.get(key, key)} {rows[0].value:.1f}{unit}"


def _alignment_overlays(points: dict[str, FloatArray]) -> SliceOverlays:
    def pt(label: str) -> tuple[float, float, float]:
        return tuple(float(v) for v in points[label])  # type: ignore[return-value]

    lines = []
    pairs = [
        ("hip_center", "knee_center_femur", AXIS_COLOUR),
        ("knee_center_tibia", "ankle_center", AXIS_COLOUR),
        ("femoral_condyle_medial", "femoral_condyle_lateral", JOINT_COLOUR),
        ("tibial_plateau_medial", "tibial_plateau_lateral", JOINT_COLOUR),
        ("hip_center", "ankle_center", LOAD_LINE_COLOUR),
        ("femoral_neck_center", "femoral_head_center", HIP_COLOUR),
        ("femoral_shaft_proximal", "femoral_shaft_distal", HIP_COLOUR),
    ]
    for start, end, colour in pairs:
        if start in points and end in points:
            lines.append(LineMark(pt(start), pt(end), colour))
    shown = {"hip_center", "knee_center_femur", "ankle_center"}
    marks = [PointMark(label if label in shown else "", pt(label)) for label in sorted(points)]
    return SliceOverlays(points=marks, lines=lines)


def landmark_positions_ras(landmarks: LandmarkSet) -> FloatArray:
    """Every landmark point and every line end of a landmark set, shape (N, 3), RAS mm.

    N is 0 for an empty set; a set of endplate lines alone still has the lines' ends.
    """
    positions = [
        np.asarray(p, dtype=float).reshape(-1, 3) for p in landmarks.points_ras_mm.values()
    ]
    positions += [
        np.asarray(e, dtype=float).reshape(-1, 3) for e in landmarks.lines_ras_mm.values()
    ]
    if not positions:
        return np.empty((0, 3))
    return np.concatenate(positions)


def _landmark_overlays(landmarks: LandmarkSet) -> SliceOverlays:
    overlays = _alignment_overlays(landmarks.points_ras_mm)
    for name, ends in landmarks.lines_ras_mm.items():
        a, b = np.asarray(ends, dtype=float)
        overlays.lines.append(LineMark(tuple(a), tuple(b), JOINT_COLOUR, name))
    return overlays


def _landmark_pictures(
    state: PlanState, image: LoadedImage, landmarks: LandmarkSet
) -> list[npt.NDArray[np.uint8]]:
    """The landmarks drawn on their image: whole radiograph and knee, or a coronal CT slice."""
    overlays = _landmark_overlays(landmarks)
    values = [
        _value_text(state, key, "°") for key in ("hka_deg", "mldfa_deg", "mpta_deg", "cobb_deg")
    ]
    title = "  ".join(v for v in values if v)
    if image.kind == "radiograph":
        pictures = [_radiograph_picture(image, overlays, title)]
        knee = _knee_picture(image, landmarks.points_ras_mm, overlays, title)
        return pictures + ([knee] if knee is not None else [])
    positions = landmark_positions_ras(landmarks)
    if len(positions) == 0:
        return []
    window, level = image.window_level
    picture = render_slice(
        image.array_kji,
        image.ijk_to_ras_mm,
        window,
        level,
        orientation="coronal",
        center_ras_mm=positions.mean(axis=0),
        overlays=overlays,
        title=title,
    )
    return [picture]


def _measurement_figures(state: PlanState) -> list[Figure]:
    figures = []
    image = state.landmark_image
    landmarks = state.landmarks
    pictures = (
        [] if landmarks is None or image is None else _landmark_pictures(state, image, landmarks)
    )
    if pictures and image is not None:
        figures.append(
            Figure(
                "measurements",
                f"Landmarks on {image.title}: mechanical axes (cyan), joint lines and endplate "
                "lines (orange), hip-ankle load line (green), femoral neck and shaft axes "
                "(magenta).",
                pictures,
                ["whole image", "knee"][: len(pictures)],
            )
        )
    cobb = _cobb_figure(state)
    if cobb is not None:
        figures.append(cobb)
    return figures


def _cobb_figure(state: PlanState) -> Figure | None:
    labels_file = state.request.labels_file
    rows = [r for r in state.table.by_key("cobb_deg") if r.method == "automatic"]
    currents = [i for i in state.loaded if i.role == "current" and i.kind == "volume"]
    if labels_file is None or not rows or not currents:
        return None
    try:
        label_map = read_label_map(Path(labels_file), names_table_for(Path(labels_file)))
    except LabelMapError as error:
        logger.warning("label map %s not drawn: %s", labels_file, error)
        return None
    import SimpleITK as sitk

    labels_kji = sitk.GetArrayFromImage(label_map.image)
    labels_ijk_to_ras = ijk_to_ras_from_sitk(label_map.image)
    voxels = np.argwhere(labels_kji > 0)
    if voxels.size == 0:
        return None
    voxels_ras = (labels_ijk_to_ras[:3, :3] @ voxels[:, ::-1].T).T + labels_ijk_to_ras[:3, 3]
    anterior = voxels_ras[voxels_ras[:, 1] >= np.median(voxels_ras[:, 1])]
    centre_ras = anterior.mean(axis=0)  # in the vertebral bodies, in front of the canal
    ct = currents[0]
    row = rows[0]
    details = row.details
    title = (
        f"Cobb {row.value:.1f}° "
        f"({details.get('upper_end_vertebra', '?')}–{details.get('lower_end_vertebra', '?')})"
    )
    overlays = SliceOverlays(
        lines=_cobb_lines(
            labels_kji, labels_ijk_to_ras, label_map.names, details, float(centre_ras[1])
        ),
        label_array_kji=labels_kji,
        label_ijk_to_ras_mm=labels_ijk_to_ras,
    )
    window, level = ct.window_level
    picture = render_slice(
        ct.array_kji,
        ct.ijk_to_ras_mm,
        window,
        level,
        orientation="coronal",
        center_ras_mm=centre_ras,
        overlays=overlays,
        title=title,
    )
    return Figure(
        "measurements",
        f"Vertebrae of the label map outlined on a coronal slice of {ct.title}; the Cobb angle "
        "is measured between the most tilted vertebral bodies in the frontal plane. The two "
        "white lines are those bodies' tilts, drawn along the superior endplate of the upper "
        "end vertebra and the inferior endplate of the lower one (the superior endplate of the "
        "sacrum).",
        [picture],
    )


def _cobb_lines(
    labels_kji: npt.NDArray[Any],
    ijk_to_ras_mm: npt.NDArray[np.float64],
    names: dict[int, str],
    details: dict[str, Any],
    depth_ras_mm: float,
) -> list[LineMark]:
    """The two endplate lines of an automatic Cobb angle, labelled with vertebra and tilt.

    The lines are placed for a coronal picture at RAS y = ``depth_ras_mm``; the sacrum has
    no inferior endplate, so a caudal end at S1 is drawn along its superior one.
    """
    lines = []
    tilts = details.get("tilts_deg", {})
    lower = str(details.get("lower_end_vertebra"))
    ends = (
        (details.get("upper_end_vertebra"), details.get("upper_endplate"), "superior"),
        (lower, details.get("lower_endplate"), "superior" if lower[:1] == "S" else "inferior"),
    )
    for vertebra, part, end in ends:
        tilt_deg = tilts.get(f"{vertebra}-{part}")
        values = [v for v, n in names.items() if n.lower() == f"vertebrae_{vertebra}".lower()]
        if tilt_deg is None or not values:
            logger.warning("Cobb line of %s not drawn: no tilt or label for it", vertebra)
            continue
        kji = np.argwhere(labels_kji == values[0])
        if kji.size == 0:
            logger.warning("Cobb line of %s not drawn: the label map has no voxel of it", vertebra)
            continue
        points_ras = (ijk_to_ras_mm[:3, :3] @ kji[:, ::-1].T).T + ijk_to_ras_mm[:3, 3]
        start, finish = body_end_line_ras(
            points_ras, float(tilt_deg), end, overhang=0.4, depth_ras_mm=depth_ras_mm
        )
        label = f"{vertebra} {end} {float(tilt_deg):+.1f}°"
        lines.append(
            LineMark(
                (float(start[0]), float(start[1]), float(start[2])),
                (float(finish[0]), float(finish[1]), float(finish[2])),
                (1.0, 1.0, 1.0),
                label,
                label_beside=True,
            )
        )
    return lines

"""Read one DICOM series from files into a SimpleITK volume with checked geometry.

:func:`read_dicom_series` is the pure-core entry point (no MRML): it reads a folder or a list
of files, keeps the image objects of one series, leaves out localizers and non-image objects,
sorts the slices along their normal, checks for gantry tilt, uneven spacing and missing
slices, and then either resamples an irregular stack onto a regular grid or refuses it,
as the caller chooses. Pixels are decoded (compressed transfer syntaxes included), rescaled
with RescaleSlope/RescaleIntercept (per frame for enhanced objects) and MONOCHROME1 is
mirrored so that high values are bright. The image geometry is LPS millimetres, as in ITK.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk
from pydicom.dataset import Dataset

from MSKPriorsLib.dicom_geometry import (
    GeometryPolicy,
    GeometryWarning,
    SeriesGeometry,
    SeriesLoadError,
    StackAnalysis,
    analyse_stack,
    output_slice_spacing_mm,
    select_stack,
)
from MSKPriorsLib.pixel_data import (
    FrameInfo,
    PixelDataError,
    SkippedFile,
    choose_output_dtype,
    collect_files,
    decode_stored_frames,
    frames_of_dataset,
    is_monochrome1,
    non_image_reason,
    output_frame,
    read_header,
    rescaled_range,
    window_of,
)
from MSKPriorsLib.pixel_data_resampling import regular_stack_image, resample_to_regular_grid

logger = logging.getLogger(__name__)

Source = str | Path | list[str] | list[Path] | tuple[Path, ...]


@dataclass(frozen=True)
class SeriesSummary:
    """One series found among files, for choosing which to load."""

    series_uid: str
    modality: str
    series_number: int | None
    description: str
    number_of_files: int


@dataclass
class DicomSeriesVolume:
    """A series read into a volume, with its geometry and what the user must know.

    Attributes
    ----------
    image
        The voxels; origin, spacing and direction in LPS millimetres.
    geometry
        The same geometry as a record, with a RAS view (:class:`SeriesGeometry`).
    warnings
        Everything found and done (``gantry_tilt``, ``resampled``, ...), in order.
    series_uid, study_uid, modality
        From the header (empty for a plain volume file).
    number_of_slices
        Source slices that went into the volume.
    header
        Header of the first slice (patient and study attributes), None for a volume file.
    files
        Files whose pixels were used.
    sop_instance_uids
        SOPInstanceUIDs of those objects, in slice order, without repeats.
    window
        Display window (centre, width) in output values from the header, or None.
    monochrome1_inverted
        Whether MONOCHROME1 pixels were mirrored.
    """

    image: sitk.Image
    geometry: SeriesGeometry
    warnings: list[GeometryWarning] = field(default_factory=list)
    series_uid: str = ""
    study_uid: str = ""
    modality: str = ""
    number_of_slices: int = 0
    header: Dataset | None = None
    files: list[Path] = field(default_factory=list)
    sop_instance_uids: list[str] = field(default_factory=list)
    window: tuple[float, float] | None = None
    monochrome1_inverted: bool = False

    @property
    def warning_codes(self) -> list[str]:
        """The warnings' codes, in order."""
        return [w.code for w in self.warnings]

    def summary(self) -> dict[str, Any]:
        """Return JSON-ready facts: identity, RAS geometry and warnings."""
        result: dict[str, Any] = {
            "series_uid": self.series_uid,
            "study_uid": self.study_uid,
            "modality": self.modality,
            "number_of_slices": self.number_of_slices,
        }
        result.update(self.geometry.to_dict())
        result["monochrome1_inverted"] = self.monochrome1_inverted
        result["warnings"] = [w.to_dict() for w in self.warnings]
        return result


def _scan(files: list[Path]) -> tuple[dict[str, list[tuple[Path, Dataset]]], list[SkippedFile]]:
    """Read headers and group image objects by SeriesInstanceUID."""
    series: dict[str, list[tuple[Path, Dataset]]] = defaultdict(list)
    skipped = []
    for path in files:
        dataset = read_header(path)
        if dataset is None:
            skipped.append(SkippedFile(path, "not a DICOM file"))
            continue
        reason = non_image_reason(dataset)
        if reason is not None:
            skipped.append(SkippedFile(path, reason))
            continue
        series[str(dataset.get("SeriesInstanceUID", ""))].append((path, dataset))
    return dict(series), skipped


def _summary(uid: str, objects: list[tuple[Path, Dataset]]) -> SeriesSummary:
    header = objects[0][1]
    number = header.get("SeriesNumber")
    return SeriesSummary(
        series_uid=uid,
        modality=str(header.get("Modality", "")),
        series_number=int(number) if number not in (None, "") else None,
        description=str(header.get("SeriesDescription", "")),
        number_of_files=len(objects),
    )


def list_series(source: Source) -> list[SeriesSummary]:
    """Return the image series among a folder's (or list's) files, largest first.

    Parameters
    ----------
    source
        A folder (searched recursively), one file, or a list of files.
    """
    groups, _ = _scan(collect_files(source))
    summaries = [_summary(uid, objects) for uid, objects in groups.items()]
    return sorted(summaries, key=lambda s: s.number_of_files, reverse=True)


def _choose_series(
    groups: dict[str, list[tuple[Path, Dataset]]],
    series_uid: str | None,
    pick_largest: bool,
    source_name: str,
) -> tuple[str, list[GeometryWarning]]:
    available = sorted(groups, key=lambda uid: len(groups[uid]), reverse=True)
    listing = "; ".join(
        f"{uid or '(no SeriesInstanceUID)'}: {_summary(uid, groups[uid]).modality} "
        f"{len(groups[uid])} file(s)"
        for uid in available
    )
    if series_uid is not None:
        if series_uid not in groups:
            raise SeriesLoadError(
                "series_not_found",
                f"{source_name} holds no images of series {series_uid} (it holds {listing}).",
            )
        chosen = series_uid
    elif len(groups) == 1:
        return available[0], []
    elif pick_largest:
        chosen = available[0]
    else:
        raise SeriesLoadError(
            "multiple_series",
            f"{source_name} holds {len(groups)} image series ({listing}); choose one by its "
            f"SeriesInstanceUID.",
        )
    others = len(groups) - 1
    warning = GeometryWarning(
        "multiple_series",
        f"Series {chosen} was loaded; {others} other image series in {source_name} were not "
        f"({listing}).",
    )
    return chosen, [warning] if others else []


def _non_image_warning(skipped: list[SkippedFile], source_name: str) -> GeometryWarning:
    by_reason: dict[str, list[str]] = defaultdict(list)
    for item in skipped:
        by_reason[item.reason].append(item.path.name)
    parts = []
    for reason, names in sorted(by_reason.items()):
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        parts.append(f"{reason}: {shown}")
    return GeometryWarning(
        "non_image_removed",
        f"{len(skipped)} file(s) in {source_name} are not images and were left out "
        f"({'; '.join(parts)}).",
    )


def read_dicom_series(
    source: Source,
    series_uid: str | None = None,
    geometry: GeometryPolicy = "correct",
    pick_largest: bool = False,
) -> DicomSeriesVolume:
    """Read one DICOM series into a SimpleITK volume (LPS) with its geometry checked.

    Parameters
    ----------
    source
        A folder (searched recursively), one file, or a list of files (as the archive returns
        them for a series).
    series_uid
        SeriesInstanceUID to load when the files hold several series.
    geometry
        ``"correct"``: resample a tilted, unevenly spaced or gapped stack onto a regular grid
        (linear interpolation) and say so in a ``resampled`` warning; ``"refuse"``: raise
        :class:`SeriesLoadError` naming the problem instead.
    pick_largest
        With several series and no ``series_uid``, load the one with most files (with a
        ``multiple_series`` warning) instead of refusing.

    Returns
    -------
    DicomSeriesVolume
        The volume, its geometry and warnings.

    Raises
    ------
    SeriesLoadError
        No images, several series and none chosen, an ambiguous or refused geometry, or
        pixels that cannot be decoded; ``code`` names the reason.
    FileNotFoundError
        If ``source`` does not exist.
    """
    if geometry not in ("correct", "refuse"):
        raise ValueError(f"geometry must be 'correct' or 'refuse', not {geometry!r}")
    files = collect_files(source)
    source_name = str(source) if isinstance(source, str | Path) else f"the {len(files)} files"
    groups, skipped = _scan(files)
    if not groups:
        reasons = sorted({s.reason for s in skipped})
        raise SeriesLoadError(
            "no_images",
            f"{source_name} holds no images ({len(files)} file(s)"
            + (f": {', '.join(reasons)}" if reasons else "")
            + ").",
        )
    uid, warnings = _choose_series(groups, series_uid, pick_largest, source_name)
    if skipped:
        warnings.insert(0, _non_image_warning(skipped, source_name))
    objects = groups[uid]
    frames = [frame for path, dataset in objects for frame in frames_of_dataset(dataset, path)]
    series_name = uid or source_name
    frames = _place_frames(frames, series_name, warnings)
    volume = _assemble(frames, series_name, geometry, warnings)
    for warning in volume.warnings:
        logger.warning("%s: %s", warning.code, warning.message)
    header = objects[0][1]
    volume.series_uid = uid
    volume.study_uid = str(header.get("StudyInstanceUID", ""))
    volume.modality = str(header.get("Modality", ""))
    volume.header = volume.header or header
    return volume


def _place_frames(
    frames: list[FrameInfo], series_name: str, warnings: list[GeometryWarning]
) -> list[FrameInfo]:
    """Give every frame a position and orientation, or refuse frames that cannot be placed."""
    by_object: dict[int, list[FrameInfo]] = defaultdict(list)
    for frame in frames:
        by_object[id(frame.dataset)].append(frame)
    for object_frames in by_object.values():
        classic_multiframe = len(object_frames) > 1 and all(
            f.position_lps_mm is None and f.orientation_lps is not None for f in object_frames[1:]
        )
        if classic_multiframe:
            _frames_along_normal(object_frames, series_name, warnings)
    placed = [f for f in frames if f.position_lps_mm is not None and f.orientation_lps is not None]
    unplaced = [f for f in frames if f.position_lps_mm is None or f.orientation_lps is None]
    if not unplaced:
        return placed
    if placed:
        warnings.append(
            GeometryWarning(
                "no_position",
                f"Series {series_name}: {len(unplaced)} frame(s) without ImagePositionPatient "
                f"were left out.",
            )
        )
        return placed
    if len(frames) == 1:
        frame = frames[0]
        frame.position_lps_mm = np.zeros(3)
        if frame.orientation_lps is None:
            frame.orientation_lps = np.array([1.0, 0.0, 0.0, 0.0, 1.0, 0.0])
        warnings.append(
            GeometryWarning(
                "no_position",
                f"Series {series_name}: {frame.label} has no patient position (a projection "
                f"image); it is placed at the origin and its coordinates are not patient "
                f"coordinates.",
            )
        )
        return frames
    raise SeriesLoadError(
        "no_positions",
        f"Series {series_name} holds {len(frames)} images without ImagePositionPatient, so they "
        f"cannot be stacked; load them one file at a time.",
        warnings,
    )


def _frames_along_normal(
    frames: list[FrameInfo], series_name: str, warnings: list[GeometryWarning]
) -> None:
    """Place the frames of a classic multi-frame object along its normal, in frame order."""
    dataset = frames[0].dataset
    start = dataset.get("ImagePositionPatient")
    orientation = frames[0].orientation_lps
    assert orientation is not None
    spacing = dataset.get("SpacingBetweenSlices") or dataset.get("SliceThickness")
    step_mm = float(spacing) if spacing else 1.0
    normal = np.cross(orientation[:3], orientation[3:])
    normal = normal / np.linalg.norm(normal)
    origin = np.array([float(v) for v in start], dtype=float) if start else np.zeros(3)
    for frame in frames:
        frame.position_lps_mm = origin + frame.frame_index * step_mm * normal
    warnings.append(
        GeometryWarning(
            "no_position",
            f"Series {series_name}: frames have no positions of their own; they are stacked "
            f"{step_mm:g} mm apart along the normal "
            f"({'SpacingBetweenSlices/SliceThickness' if spacing else 'no spacing given'}).",
        )
    )


def _check_uniform(
    frames: list[FrameInfo], series_name: str, warnings: list[GeometryWarning]
) -> None:
    sizes = {(f.rows, f.columns) for f in frames}
    if len(sizes) > 1:
        raise SeriesLoadError(
            "inconsistent_dimensions",
            f"Series {series_name} mixes slice sizes {sorted(sizes)}; it cannot be one volume.",
            warnings,
        )
    spacings = {f.pixel_spacing_mm for f in frames}
    if len(spacings) > 1 and None in spacings:
        raise SeriesLoadError(
            "inconsistent_pixel_spacing",
            f"Series {series_name}: some slices have PixelSpacing and some do not.",
            warnings,
        )
    known = [s for s in spacings if s is not None]
    if known and (np.ptp(np.array(known), axis=0) > 1e-4).any():
        raise SeriesLoadError(
            "inconsistent_pixel_spacing",
            f"Series {series_name} mixes pixel spacings {sorted(known)}; it cannot be one volume.",
            warnings,
        )
    if not known:
        imager = frames[0].dataset.get("ImagerPixelSpacing")
        note = " (ImagerPixelSpacing is at the detector and needs calibration)" if imager else ""
        warnings.append(
            GeometryWarning(
                "no_spacing",
                f"Series {series_name} has no usable PixelSpacing{note}: voxels are given 1 mm "
                f"in plane, which is not a calibrated size.",
            )
        )
        for frame in frames:
            frame.pixel_spacing_mm = (1.0, 1.0)


def _assemble(
    frames: list[FrameInfo],
    series_name: str,
    policy: GeometryPolicy,
    warnings: list[GeometryWarning],
) -> DicomSeriesVolume:
    frames, stack_warnings = select_stack(frames, series_name)
    warnings.extend(stack_warnings)
    _check_uniform(frames, series_name, warnings)
    analysis = analyse_stack(frames, series_name)
    warnings.extend(analysis.warnings)
    if analysis.irregular and policy == "refuse":
        problems = [w for w in analysis.warnings if w.code in _IRREGULAR_CODES]
        raise SeriesLoadError(
            problems[0].code,
            f"Series {series_name} was not loaded because its slices do not lie on a regular "
            f"grid: {' '.join(w.message for w in problems)} Load it with geometry correction "
            f"to resample it.",
            warnings,
        )
    volume_kji, dtype = _stack_pixels(analysis.frames, series_name, warnings)
    if analysis.irregular:
        image = _resampled(volume_kji, analysis, dtype, series_name, warnings)
    else:
        image = regular_stack_image(volume_kji, analysis, _regular_spacing_mm(analysis))
    geometry = SeriesGeometry.of_image(
        image,
        gantry_tilt_deg=analysis.tilt_deg,
        source_gaps_mm=tuple(float(g) for g in analysis.gaps_mm),
        resampled=analysis.irregular,
    )
    paths = list(dict.fromkeys(f.path for f in analysis.frames))
    return DicomSeriesVolume(
        image=image,
        geometry=geometry,
        warnings=warnings,
        number_of_slices=len(analysis.frames),
        header=analysis.frames[0].dataset,
        files=paths,
        sop_instance_uids=list(dict.fromkeys(f.sop_instance_uid for f in analysis.frames)),
        window=window_of(analysis.frames[0]),
        monochrome1_inverted=any(is_monochrome1(f.dataset) for f in analysis.frames),
    )


_IRREGULAR_CODES = ("gantry_tilt", "uneven_spacing", "missing_slices")


def _regular_spacing_mm(analysis: StackAnalysis) -> float:
    if len(analysis.frames) > 1:
        return float(np.mean(analysis.gaps_mm))
    dataset = analysis.frames[0].dataset
    for value in (dataset.get("SpacingBetweenSlices"), analysis.frames[0].slice_thickness_mm):
        try:
            if value is not None and float(value) > 0:
                return float(value)
        except (TypeError, ValueError):
            continue
    return 1.0


def _stack_pixels(
    frames: list[FrameInfo], series_name: str, warnings: list[GeometryWarning]
) -> tuple[npt.NDArray[Any], np.dtype]:
    """Decode, rescale and stack the frames in order, shape (slices, rows, columns)."""
    stored: dict[int, npt.NDArray[Any]] = {}
    low, high = np.inf, -np.inf
    for frame in frames:
        key = id(frame.dataset)
        if key not in stored:
            try:
                stored[key] = decode_stored_frames(frame.dataset, frame.path)
            except PixelDataError as error:
                raise SeriesLoadError(
                    "undecodable", f"Series {series_name}: {error}", warnings
                ) from error
        pixels = stored[key][frame.frame_index]
        ends = output_frame(np.array([[pixels.min(), pixels.max()]]), frame)
        if is_monochrome1(frame.dataset):
            ends = np.array(rescaled_range(frame))
        low, high = min(low, float(ends.min())), max(high, float(ends.max()))
    dtype = choose_output_dtype(frames, (low, high))
    if any(array.dtype.kind == "f" for array in stored.values()):
        dtype = np.dtype(np.float32)  # FloatPixelData or DoubleFloatPixelData
    volume = np.empty((len(frames), frames[0].rows, frames[0].columns), dtype=dtype)
    for index, frame in enumerate(frames):
        values = output_frame(stored[id(frame.dataset)][frame.frame_index], frame)
        volume[index] = np.rint(values) if dtype.kind == "i" else values
    return volume, dtype


def _resampled(
    volume_kji: npt.NDArray[Any],
    analysis: StackAnalysis,
    dtype: np.dtype,
    series_name: str,
    warnings: list[GeometryWarning],
) -> sitk.Image:
    spacing_k_mm = output_slice_spacing_mm(analysis)
    background = float(volume_kji.min())
    image = resample_to_regular_grid(volume_kji, analysis, spacing_k_mm, background, dtype)
    reasons = [
        name
        for name, found in (
            ("gantry tilt", analysis.tilted),
            ("uneven spacing", analysis.uneven),
            ("missing slices", analysis.missing),
        )
        if found
    ]
    warnings.append(
        GeometryWarning(
            "resampled",
            f"Series {series_name} was resampled by linear interpolation onto a regular grid of "
            f"{image.GetSize()[2]} slices {spacing_k_mm:.3g} mm apart to correct "
            f"{' and '.join(reasons)}; voxels between the {len(analysis.frames)} acquired "
            f"slices are interpolated.",
        )
    )
    return image


def read_volume_file(path: str | Path) -> DicomSeriesVolume:
    """Read a plain volume file (.nrrd, .nii, .nii.gz, .mha) with SimpleITK (LPS geometry).

    Raises
    ------
    SeriesLoadError
        ``unreadable`` when SimpleITK cannot read it or it is not 3D.
    """
    path = Path(path)
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as error:
        raise SeriesLoadError(
            "unreadable", f"{path} could not be read as a volume: {error}"
        ) from error
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise SeriesLoadError(
            "unreadable", f"{path} is not a 3D scalar volume (dimension {image.GetDimension()})."
        )
    return DicomSeriesVolume(
        image=image,
        geometry=SeriesGeometry.of_image(image),
        number_of_slices=int(image.GetSize()[2]),
        files=[path],
    )


#: File name endings read by :func:`read_volume_file` rather than as DICOM.
VOLUME_FILE_SUFFIXES = (".nrrd", ".nhdr", ".nii", ".nii.gz", ".mha", ".mhd")


def is_volume_file(path: str | Path) -> bool:
    """Whether ``path`` names a plain volume file (by its ending), not DICOM."""
    name = Path(path).name.lower()
    return Path(path).is_file() and name.endswith(VOLUME_FILE_SUFFIXES)

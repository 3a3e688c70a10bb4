"""Frames of DICOM image objects: where each frame lies and what its pixels mean.

A classic image object holds one frame whose geometry is in the top-level header. An
enhanced multi-frame CT or MR object holds many frames whose geometry, pixel measures and
rescale live in functional groups: the shared group applies to every frame, a per-frame group
overrides it for one frame. :func:`frames_of_dataset` reads both kinds into the same
:class:`FrameInfo` records, so the geometry code never needs to know which kind it had.

Positions and orientations are in DICOM patient coordinates: LPS, millimetres. Pixels are
decoded by pydicom with the pylibjpeg / pyjpegls plug-ins (JPEG baseline and lossless,
JPEG-LS, JPEG 2000, RLE).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pydicom
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

logger = logging.getLogger(__name__)

#: Modalities whose objects carry no image to stack, even when they hold pixel data.
NON_IMAGE_MODALITIES = frozenset(
    {"SEG", "SR", "PR", "KO", "RTSTRUCT", "RTPLAN", "RTRECORD", "REG", "DOC", "FID", "AU", "ECG"}
)

#: SOP classes that are never stacked into a volume (directory records, segmentations).
NON_IMAGE_SOP_CLASSES = frozenset(
    {
        "1.2.840.10008.1.3.10",  # Media Storage Directory (DICOMDIR)
        "1.2.840.10008.5.1.4.1.1.66.4",  # Segmentation
        "1.2.840.10008.5.1.4.1.1.66.7",  # Label Map Segmentation
    }
)

PIXEL_DATA_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


class PixelDataError(ValueError):
    """An image object whose pixels cannot be decoded or are of a kind we do not stack."""


@dataclass(eq=False)
class FrameInfo:
    """One frame of an image object, with its geometry in LPS millimetres.

    Attributes
    ----------
    path
        File the frame comes from.
    frame_index
        0-based index of the frame inside its object (0 for a classic single-frame image).
    dataset
        The object's header (pixel data may be deferred until decoding).
    sop_instance_uid
        SOPInstanceUID of the object.
    instance_number
        InstanceNumber, or None when absent.
    position_lps_mm
        ImagePositionPatient of the frame: centre of the first transmitted pixel, shape (3,),
        or None when the header has none.
    orientation_lps
        ImageOrientationPatient: row direction then column direction, shape (6,), or None.
    pixel_spacing_mm
        PixelSpacing as (between rows, between columns), or None when absent or zero.
    slice_thickness_mm
        SliceThickness, or None (informative only: spacing comes from positions).
    rescale_slope, rescale_intercept
        Stored value to output value: ``out = slope * stored + intercept``.
    image_type
        ImageType values, or the frame's FrameType for enhanced objects, upper case.
    rows, columns
        Frame size in pixels.
    """

    path: Path
    frame_index: int
    dataset: Dataset
    sop_instance_uid: str
    instance_number: int | None
    position_lps_mm: npt.NDArray[np.float64] | None
    orientation_lps: npt.NDArray[np.float64] | None
    pixel_spacing_mm: tuple[float, float] | None
    slice_thickness_mm: float | None
    rescale_slope: float
    rescale_intercept: float
    image_type: tuple[str, ...]
    rows: int
    columns: int

    @property
    def is_localizer(self) -> bool:
        """Whether ImageType (or FrameType) names the frame a localizer (scout)."""
        return "LOCALIZER" in self.image_type

    @property
    def label(self) -> str:
        """Short name of the frame for messages: file name, plus the frame number if any."""
        if int(self.dataset.get("NumberOfFrames", 1) or 1) > 1:
            return f"{self.path.name} frame {self.frame_index + 1}"
        return self.path.name


def non_image_reason(dataset: Dataset) -> str | None:
    """Return why an object cannot be stacked into a volume, or None if it can.

    Parameters
    ----------
    dataset
        A DICOM object as read by pydicom (the pixel data may be deferred).

    Returns
    -------
    str or None
        A short phrase such as ``"no pixel data"`` or ``"modality SR"``.
    """
    meta = getattr(dataset, "file_meta", None)
    sop_class = str(
        dataset.get("SOPClassUID", "") or (meta.get("MediaStorageSOPClassUID", "") if meta else "")
    )
    modality = str(dataset.get("Modality", "")).upper()
    if sop_class in NON_IMAGE_SOP_CLASSES:
        return f"{pydicom.uid.UID(sop_class).name}"
    if modality in NON_IMAGE_MODALITIES:
        return f"modality {modality}"
    if not any(keyword in dataset for keyword in PIXEL_DATA_KEYWORDS):
        return "no pixel data"
    if "Rows" not in dataset or "Columns" not in dataset:
        return "no Rows/Columns"
    return None


def _first_item(sequence_owner: Dataset | None, keyword: str) -> Dataset | None:
    if sequence_owner is None or keyword not in sequence_owner:
        return None
    sequence = sequence_owner.get(keyword)
    return sequence[0] if sequence else None


def _functional_group(dataset: Dataset, frame_index: int, keyword: str) -> Dataset | None:
    """Return a functional-group macro item for one frame: per-frame first, then shared."""
    per_frame = dataset.get("PerFrameFunctionalGroupsSequence")
    if per_frame is not None and frame_index < len(per_frame):
        item = _first_item(per_frame[frame_index], keyword)
        if item is not None:
            return item
    return _first_item(_first_item(dataset, "SharedFunctionalGroupsSequence"), keyword)


def _float_vector(value: Any, length: int) -> npt.NDArray[np.float64] | None:
    if value is None:
        return None
    try:
        vector = np.array([float(v) for v in value], dtype=float)
    except (TypeError, ValueError):
        return None
    return vector if vector.shape == (length,) and np.all(np.isfinite(vector)) else None


def spacing_pair_mm(value: Any) -> tuple[float, float] | None:
    """Read a two-value spacing element such as PixelSpacing as ``(row, column)`` floats (mm).

    Returns None when the value is absent, malformed, not finite or not positive.
    """
    vector = _float_vector(value, 2)
    if vector is None or np.any(vector <= 0):
        return None
    return float(vector[0]), float(vector[1])


def _optional_float(value: Any) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _first_value(value: Any) -> Any:
    """Return the first value of a multi-valued element, or the value itself."""
    if isinstance(value, MultiValue | list | tuple):
        return value[0] if len(value) else None
    return value


def _image_type(item: Dataset | None, keyword: str) -> tuple[str, ...]:
    if item is None or keyword not in item:
        return ()
    value = item.get(keyword)
    values = [value] if isinstance(value, str) else list(value or [])
    return tuple(str(v).strip().upper() for v in values)


def _instance_number(dataset: Dataset) -> int | None:
    try:
        value = dataset.get("InstanceNumber")
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _frame_type(dataset: Dataset, frame_index: int) -> tuple[str, ...]:
    for keyword in (
        "CTImageFrameTypeSequence",
        "MRImageFrameTypeSequence",
        "PETFrameTypeSequence",
        "XAXRFFrameCharacteristicsSequence",
    ):
        item = _functional_group(dataset, frame_index, keyword)
        frame_type = _image_type(item, "FrameType")
        if frame_type:
            return frame_type
    return _image_type(dataset, "ImageType")


def frames_of_dataset(dataset: Dataset, path: Path) -> list[FrameInfo]:
    """Return the frames of one image object with their geometry and rescale.

    Parameters
    ----------
    dataset
        An image object (classic single-frame, classic multi-frame or enhanced multi-frame).
    path
        The file it was read from.

    Returns
    -------
    list of FrameInfo
        One entry per frame. Positions and orientations are LPS millimetres as the header
        states them; frames of a classic multi-frame object without per-frame positions get
        ``position_lps_mm`` None from the second frame on.
    """
    number_of_frames = int(dataset.get("NumberOfFrames", 1) or 1)
    enhanced = "PerFrameFunctionalGroupsSequence" in dataset or (
        "SharedFunctionalGroupsSequence" in dataset
    )
    sop_instance_uid = str(dataset.get("SOPInstanceUID", ""))
    instance_number = _instance_number(dataset)
    rows, columns = int(dataset.Rows), int(dataset.Columns)
    frames = []
    for index in range(number_of_frames):
        if enhanced:
            position = _float_vector(
                getattr(
                    _functional_group(dataset, index, "PlanePositionSequence"),
                    "ImagePositionPatient",
                    None,
                ),
                3,
            )
            orientation_item = _functional_group(dataset, index, "PlaneOrientationSequence")
            measures = _functional_group(dataset, index, "PixelMeasuresSequence")
            rescale = _functional_group(dataset, index, "PixelValueTransformationSequence")
            orientation = _float_vector(
                getattr(orientation_item, "ImageOrientationPatient", None), 6
            )
            spacing = spacing_pair_mm(getattr(measures, "PixelSpacing", None))
            thickness = _optional_float(getattr(measures, "SliceThickness", None))
            if orientation is None:  # some converters keep the classic top-level attributes
                orientation = _float_vector(dataset.get("ImageOrientationPatient"), 6)
            if spacing is None:
                spacing = spacing_pair_mm(dataset.get("PixelSpacing"))
            if rescale is None:
                rescale = dataset
            image_type = _frame_type(dataset, index)
        else:
            rescale = dataset
            position = _float_vector(dataset.get("ImagePositionPatient"), 3) if index == 0 else None
            orientation = _float_vector(dataset.get("ImageOrientationPatient"), 6)
            spacing = spacing_pair_mm(dataset.get("PixelSpacing"))
            thickness = _optional_float(dataset.get("SliceThickness"))
            image_type = _image_type(dataset, "ImageType")
        slope = _optional_float(getattr(rescale, "RescaleSlope", None))
        intercept = _optional_float(getattr(rescale, "RescaleIntercept", None))
        frames.append(
            FrameInfo(
                path=path,
                frame_index=index,
                dataset=dataset,
                sop_instance_uid=sop_instance_uid,
                instance_number=instance_number,
                position_lps_mm=position,
                orientation_lps=orientation,
                pixel_spacing_mm=spacing,
                slice_thickness_mm=thickness,
                rescale_slope=1.0 if slope in (None, 0.0) else float(slope),
                rescale_intercept=0.0 if intercept is None else float(intercept),
                image_type=image_type,
                rows=rows,
                columns=columns,
            )
        )
    return frames


def decode_stored_frames(dataset: Dataset, path: Path) -> npt.NDArray[Any]:
    """Decode every frame of an object to stored values, shape (frames, rows, columns).

    Parameters
    ----------
    dataset
        The object (compressed transfer syntaxes are decoded by pydicom's plug-ins).
    path
        The file, named in the error message.

    Raises
    ------
    PixelDataError
        If the pixels cannot be decoded or are not single-sample (colour) images.
    """
    samples = int(dataset.get("SamplesPerPixel", 1) or 1)
    if samples != 1:
        raise PixelDataError(
            f"{path.name}: colour images ({dataset.get('PhotometricInterpretation', '')}, "
            f"{samples} samples per pixel) cannot be loaded as a scalar volume"
        )
    try:
        array = np.asarray(dataset.pixel_array)
    except Exception as error:
        syntax = getattr(getattr(dataset, "file_meta", None), "TransferSyntaxUID", "unknown")
        raise PixelDataError(
            f"{path.name}: the pixel data could not be decoded (transfer syntax {syntax}): {error}"
        ) from error
    number_of_frames = int(dataset.get("NumberOfFrames", 1) or 1)
    return array.reshape(number_of_frames, int(dataset.Rows), int(dataset.Columns))


def stored_value_range(dataset: Dataset) -> tuple[float, float]:
    """Return the smallest and largest value the stored pixels can take (BitsStored)."""
    bits = int(dataset.get("BitsStored", dataset.get("BitsAllocated", 16)) or 16)
    if int(dataset.get("PixelRepresentation", 0) or 0) == 1:
        return -float(2 ** (bits - 1)), float(2 ** (bits - 1) - 1)
    return 0.0, float(2**bits - 1)


def is_monochrome1(dataset: Dataset) -> bool:
    """Whether the object's pixels run from white (low) to black (high)."""
    return str(dataset.get("PhotometricInterpretation", "")).strip().upper() == "MONOCHROME1"


def output_frame(stored: npt.NDArray[Any], frame: FrameInfo) -> npt.NDArray[np.float64]:
    """Return one frame in output values: rescaled, and inverted if MONOCHROME1.

    Parameters
    ----------
    stored
        Stored values of the frame, shape (rows, columns).
    frame
        The frame's record (slope, intercept, header).

    Returns
    -------
    numpy.ndarray
        float64, shape (rows, columns). For MONOCHROME1 the values are mirrored inside the
        rescaled stored range, ``low + high - value``, so that high values are bright as in
        MONOCHROME2.
    """
    values = stored.astype(np.float64) * frame.rescale_slope + frame.rescale_intercept
    if is_monochrome1(frame.dataset):
        low, high = rescaled_range(frame)
        values = (low + high) - values
    return values


def rescaled_range(frame: FrameInfo) -> tuple[float, float]:
    """Return the range of output values the frame's stored range maps to, low first."""
    low, high = stored_value_range(frame.dataset)
    ends = sorted(
        (
            low * frame.rescale_slope + frame.rescale_intercept,
            high * frame.rescale_slope + frame.rescale_intercept,
        )
    )
    return ends[0], ends[1]


def choose_output_dtype(frames: list[FrameInfo], value_range: tuple[float, float]) -> np.dtype:
    """Pick the smallest dtype that holds the output values exactly.

    Parameters
    ----------
    frames
        Frames to be stacked.
    value_range
        Smallest and largest output value present.

    Returns
    -------
    numpy.dtype
        int16 or int32 when every slope and intercept is integral and the range fits,
        float32 otherwise.
    """
    integral = all(
        float(f.rescale_slope).is_integer() and float(f.rescale_intercept).is_integer()
        for f in frames
    )
    low, high = value_range
    if integral and low >= -32768 and high <= 32767:
        return np.dtype(np.int16)
    if integral and low >= -(2**31) and high <= 2**31 - 1:
        return np.dtype(np.int32)
    return np.dtype(np.float32)


def window_of(frame: FrameInfo) -> tuple[float, float] | None:
    """Return the header's first window (centre, width) in output values, or None.

    For MONOCHROME1 the centre is mirrored as the pixel values are (see :func:`output_frame`).
    """
    dataset = frame.dataset
    item = _functional_group(dataset, frame.frame_index, "FrameVOILUTSequence") or dataset
    centre = getattr(item, "WindowCenter", None)
    width = getattr(item, "WindowWidth", None)
    if centre is None or width is None:
        return None
    centre_value = _optional_float(_first_value(centre))
    width_value = _optional_float(_first_value(width))
    if centre_value is None or width_value is None or width_value <= 0:
        return None
    if is_monochrome1(dataset):
        low, high = rescaled_range(frame)
        centre_value = low + high - centre_value
    return centre_value, width_value


@dataclass
class SkippedFile:
    """A file left out of loading, with the reason in a few words."""

    path: Path
    reason: str


def collect_files(source: str | Path | list[str] | list[Path] | tuple[Path, ...]) -> list[Path]:
    """Return the files to read: a folder's files (recursively), one file, or a list of files.

    Parameters
    ----------
    source
        A folder, a single file, or a list of file paths (as the archive gives per series).

    Raises
    ------
    FileNotFoundError
        If the folder or a listed file does not exist.
    """
    if isinstance(source, str | Path):
        path = Path(source)
        if path.is_dir():
            return sorted(
                p
                for p in path.rglob("*")
                if p.is_file()
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
        if path.is_file():
            return [path]
        raise FileNotFoundError(f"no file or folder at {path}")
    paths = [Path(p) for p in source]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} of {len(paths)} listed files do not exist (first: {missing[0]})"
        )
    return paths


def read_header(path: Path, defer_size: str = "256 KB") -> Dataset | None:
    """Read a DICOM object with its large values (the pixel data) deferred.

    Returns
    -------
    pydicom.dataset.Dataset or None
        None when the file is not DICOM. Files without the 128-byte preamble are accepted when
        they parse to something with a SOPClassUID.
    """
    try:
        return pydicom.dcmread(path, defer_size=defer_size)
    except pydicom.errors.InvalidDicomError:
        pass
    except (OSError, ValueError, EOFError, AttributeError, KeyError) as error:
        logger.debug("%s is not readable as DICOM: %s", path, error)
        return None
    try:
        dataset = pydicom.dcmread(path, defer_size=defer_size, force=True)
    except Exception as error:  # a forced parse of an arbitrary file may fail in any way
        logger.debug("%s is not readable as DICOM: %s", path, error)
        return None
    return dataset if "SOPClassUID" in dataset else None

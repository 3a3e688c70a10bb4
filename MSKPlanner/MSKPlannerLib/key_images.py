"""Key images: rendered views with the measurements drawn, as DICOM secondary captures.

Each picture (an RGB array, for example a rendered view or a radiograph with the template
drawn by :func:`draw_overlay`) becomes a Secondary Capture Image in the source study, and a
Key Object Selection document can flag them (with the SR) as the case's key objects.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import highdicom as hd
import numpy as np
import numpy.typing as npt
import pydicom
from PIL import Image, ImageDraw
from pydicom.sr.codedict import codes

logger = logging.getLogger(__name__)

MANUFACTURER = "MSK Workbench"
RGB = tuple[int, int, int]


class KeyImageError(ValueError):
    """A picture cannot become a key image; the message names it."""


def read_png_rgb(path: Path) -> npt.NDArray[np.uint8]:
    """Read a PNG (or any Pillow image) as an RGB array of shape (rows, columns, 3)."""
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()
    except OSError as error:
        raise KeyImageError(f"{path} is not a readable picture: {error}") from error


def grey_to_rgb(
    pixels: npt.NDArray[np.generic],
    monochrome1: bool = False,
    percentiles: tuple[float, float] = (1.0, 99.0),
) -> npt.NDArray[np.uint8]:
    """Window a grey image by percentiles into RGB, shape (rows, columns, 3), uint8."""
    values = np.asarray(pixels, dtype=float)
    low, high = np.percentile(values, percentiles)
    scaled = np.clip((values - low) / max(high - low, 1e-9), 0.0, 1.0)
    if monochrome1:
        scaled = 1.0 - scaled
    grey = (scaled * 255.0).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=-1)


def draw_overlay(
    rgb: npt.NDArray[np.uint8],
    outlines_px: Sequence[npt.ArrayLike] = (),
    points_px: Mapping[str, npt.ArrayLike] | None = None,
    caption: str = "",
    outline_colour: RGB = (255, 200, 0),
    point_colour: RGB = (0, 220, 255),
    line_width_px: int = 3,
) -> npt.NDArray[np.uint8]:
    """Draw closed outlines, labelled points and a caption on a picture.

    Parameters
    ----------
    rgb
        Shape (rows, columns, 3), uint8; not changed.
    outlines_px
        Closed polygons, each shape (N, 2) in ``(column, row)`` pixels.
    points_px
        Label -> ``(column, row)``.
    caption
        Text written at the top left (size and the measurement it came from).

    Returns
    -------
    numpy.ndarray
        A new RGB array, same shape.
    """
    image = Image.fromarray(np.asarray(rgb, dtype=np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    scale = max(1, round(max(image.size) / 800))
    for outline in outlines_px:
        points = [tuple(map(float, p)) for p in np.asarray(outline, dtype=float).reshape(-1, 2)]
        if len(points) >= 2:
            draw.line([*points, points[0]], fill=outline_colour, width=line_width_px * scale)
    for label, position in (points_px or {}).items():
        x, y = (float(v) for v in np.asarray(position, dtype=float)[:2])
        radius = 4 * scale
        draw.ellipse(
            [x - radius, y - radius, x + radius, y + radius], outline=point_colour, width=scale
        )
        draw.text((x + radius + 2, y - radius), label, fill=point_colour)
    if caption:
        draw.rectangle([0, 0, min(image.size[0], 12 + 7 * len(caption)), 24], fill=(0, 0, 0))
        draw.text((6, 6), caption, fill=(255, 255, 255))
    return np.asarray(image, dtype=np.uint8).copy()


def build_key_image(
    rgb: npt.NDArray[np.uint8],
    reference: pydicom.Dataset,
    series_instance_uid: str,
    sop_instance_uid: str,
    instance_number: int,
    series_number: int = 9903,
    description: str = "MSK Workbench key image",
) -> hd.sc.SCImage:
    """Make an RGB secondary capture in the study of ``reference``.

    Parameters
    ----------
    rgb
        Shape (rows, columns, 3), uint8.
    reference
        A source instance; the key image takes its patient and study.
    series_instance_uid, sop_instance_uid, instance_number
        Identification, kept by the caller so that a rewrite stores the same object.
    """
    pixels = np.asarray(rgb)
    if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype != np.uint8:
        raise KeyImageError(
            f"a key image must be RGB uint8 of shape (rows, columns, 3), not {pixels.shape} "
            f"{pixels.dtype}"
        )
    image = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=reference,
        pixel_array=pixels,
        photometric_interpretation=hd.PhotometricInterpretationValues.RGB,
        bits_allocated=8,
        coordinate_system=hd.CoordinateSystemNames.PATIENT,
        series_instance_uid=series_instance_uid,
        series_number=series_number,
        sop_instance_uid=sop_instance_uid,
        instance_number=instance_number,
        manufacturer=MANUFACTURER,
        patient_orientation=("L", "F"),
        transfer_syntax_uid=pydicom.uid.ExplicitVRLittleEndian,
    )
    image.SeriesDescription = description[:64]
    image.ImageComments = description
    return image


def build_key_object_selection(
    key_objects: Sequence[pydicom.Dataset],
    series_instance_uid: str,
    sop_instance_uid: str,
    description: str = "MSK Workbench key images and measurements",
    series_number: int = 9904,
) -> hd.ko.KeyObjectSelectionDocument:
    """A Key Object Selection document flagging the key images (and SR) of one study.

    Parameters
    ----------
    key_objects
        The objects to flag (secondary captures, the SR); all in one study.
    """
    if not key_objects:
        raise KeyImageError("a key object selection needs at least one object")
    content = hd.ko.KeyObjectSelection(
        document_title=codes.DCM.OfInterest,
        referenced_objects=list(key_objects),
        description=description,
    )
    return hd.ko.KeyObjectSelectionDocument(
        evidence=list(key_objects),
        content=content,
        series_instance_uid=series_instance_uid,
        series_number=series_number,
        sop_instance_uid=sop_instance_uid,
        instance_number=1,
        manufacturer=MANUFACTURER,
    )

"""Landmarks loaded from a Slicer markups JSON file chosen in the viewer's page."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk

from MSKPlannerLib.case_measures import points_outside_extent
from MSKPlannerLib.landmark_identity import (
    ExpectedIdentity,
    LandmarkIdentityError,
    check_markups_identity,
)
from MSKPlannerLib.landmarks import read_markups_json
from MSKPriorsLib.frames import ijk_to_ras_from_sitk
from mskworkbench.web.landmark_sets import set_of_label
from mskworkbench.web.measurements import LiveLandmarks


@dataclass
class ImportedLandmarks:
    """What loading a landmark file did.

    Attributes
    ----------
    center_ras_mm
        The mean of the positions taken (3,), RAS mm, for the views to go to.
    replaced
        Labels (or endplate line names) that were placed before and now hold the file's
        positions, in the file's order.
    named_identity
        The identity attributes the file names (all matched the current study); empty when
        it names none, as Slicer's own markups files do.
    """

    center_ras_mm: npt.NDArray[np.float64]
    replaced: list[str] = field(default_factory=list)
    named_identity: list[str] = field(default_factory=list)


def points_outside_image(points_ras_mm: npt.ArrayLike, image: sitk.Image) -> int:
    """How many points lie outside an image's extent, beyond the plan's tolerance.

    The extent and tolerance are those the plan uses to find the image landmarks belong to
    (:data:`~MSKPlannerLib.case_measures.EXTENT_TOLERANCE_MM`).

    Parameters
    ----------
    points_ras_mm
        Positions (N, 3), world RAS mm.
    image
        The image the landmarks are to be measured on (geometry in LPS mm).
    """
    size = image.GetSize()
    shape_kji = (size[2] if len(size) > 2 else 1, size[1], size[0])
    return points_outside_extent(points_ras_mm, shape_kji, ijk_to_ras_from_sitk(image))


def import_markups(
    landmarks: LiveLandmarks,
    file_name: str,
    content: bytes,
    image: sitk.Image | None = None,
    image_name: str = "the image",
    expected: ExpectedIdentity | None = None,
) -> ImportedLandmarks:
    """Place the landmarks of a Slicer markups JSON file into the case's live landmarks.

    Points whose label belongs to a measurement set, and endplate lines, are taken; positions
    are world RAS mm. When the file holds none of the chosen set's landmarks, the set it holds
    most of is chosen. The landmarks' side becomes the file's (empty when the file names none,
    so the reader must choose it before sided measurements are made).

    Parameters
    ----------
    landmarks
        The case's live landmarks.
    file_name
        The file's name as the reader chose it (named in error messages).
    content
        The file's bytes.
    image
        The image the landmarks are measured on; landmarks outside it are refused.
    image_name
        How error messages name that image.
    expected
        The current study's identity; a file naming two patients, studies or series, or
        another than this one, is refused (see
        :func:`~MSKPlannerLib.landmark_identity.check_markups_identity`).

    Returns
    -------
    ImportedLandmarks
        Where the views should go, and which placed landmarks were replaced.

    Raises
    ------
    ValueError
        When the file is not markups JSON, names two patients, studies or series or another
        than ``expected``, holds no landmark of any measurement set, or holds landmarks outside
        ``image``; the landmarks are then unchanged.
    """
    named = refuse_other_identity(file_name, content, expected)
    with tempfile.TemporaryDirectory(prefix="mskwb-landmarks-") as folder:
        path = Path(folder) / (Path(file_name).name or "landmarks.mrk.json")
        path.write_bytes(content)
        try:
            found = read_markups_json(path)
        except ValueError as error:  # name the file as the reader chose it
            raise ValueError(str(error).replace(str(path), path.name)) from error
    wanted: dict[str, list[Any]] = {
        k: [v] for k, v in found.points_ras_mm.items() if set_of_label(k)
    }
    wanted.update({k: list(v) for k, v in found.lines_ras_mm.items() if set_of_label(k)})
    if not wanted:
        raise ValueError(f"{file_name} holds none of the landmarks of the measurement sets")
    every_point = np.asarray([p for points in wanted.values() for p in points], dtype=float)
    if image is not None:
        outside = points_outside_image(every_point, image)
        if outside:
            raise ValueError(
                f"{outside} of {len(every_point)} landmark points of {file_name} lie outside "
                f"{image_name}; they were not placed on this image"
            )
    placed = set(landmarks.positions_ras_mm()) | set(landmarks.lines_ras_mm())
    kinds = [set_of_label(label) for label in wanted]
    if landmarks.kind not in kinds:
        landmarks.set_kind(max(set(kinds), key=kinds.count))
    # The side belongs to the file: one that names none must not keep the previous file's.
    landmarks.set_side(found.side or "")
    for label, positions in wanted.items():
        landmarks.set_points(label, positions)
    return ImportedLandmarks(
        np.mean(every_point, axis=0),
        [label for label in wanted if label in placed],
        sorted(named),
    )


def refuse_other_identity(
    file_name: str, content: bytes, expected: ExpectedIdentity | None
) -> dict[str, str]:
    """The identity a markups file names; raises ValueError when it names two or another.

    See :func:`~MSKPlannerLib.landmark_identity.check_markups_identity`.
    """
    try:
        return check_markups_identity(file_name, content, expected)
    except LandmarkIdentityError as error:
        raise ValueError(f"{error}; nothing was placed") from error

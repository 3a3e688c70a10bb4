"""Landmarks loaded from a Slicer markups JSON file chosen in the viewer's page."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from MSKPlannerLib.landmarks import read_markups_json
from mskworkbench.web.landmark_sets import set_of_label
from mskworkbench.web.measurements import LiveLandmarks


def import_markups(landmarks: LiveLandmarks, file_name: str, content: bytes) -> np.ndarray:
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

    Returns
    -------
    numpy.ndarray
        The mean of the positions taken (3,), RAS mm, for the views to go to.

    Raises
    ------
    ValueError
        When the file is not markups JSON or holds no landmark of any measurement set; the
        landmarks are then unchanged.
    """
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
    kinds = [set_of_label(label) for label in wanted]
    if landmarks.kind not in kinds:
        landmarks.set_kind(max(set(kinds), key=kinds.count))
    # The side belongs to the file: one that names none must not keep the previous file's.
    landmarks.set_side(found.side or "")
    for label, positions in wanted.items():
        landmarks.set_points(label, positions)
    return np.mean([p for positions in wanted.values() for p in positions], axis=0)

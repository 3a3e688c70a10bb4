"""Label maps from users or AI tools: reading, naming, resampling and picking the bones.

A label map is an integer image whose voxel values name structures. Two file kinds are read:

- ``.seg.nrrd`` written by Slicer: segment names and label values come from the file's own
  ``SegmentN_Name`` / ``SegmentN_LabelValue`` / ``SegmentN_Layer`` fields; a file with several
  layers is merged into one label image.
- NIfTI (``.nii``, ``.nii.gz``), for example TotalSegmentator's output: names come from the
  label table embedded in the header extension when the file has one, or from a names table
  (a JSON object ``{"25": "sacrum", ...}``) given by the caller.

Everything here is pure core: SimpleITK images whose geometry is in LPS millimetres.
Structure names follow TotalSegmentator (``vertebrae_L1``, ``femur_left``, ``hip_right``).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

logger = logging.getLogger(__name__)

#: Structure names (TotalSegmentator style) that are bones. Cartilage and soft tissue are not.
BONE_NAME_PATTERN = re.compile(
    r"^(vertebrae_\w+|sacrum|coccyx|hip_(left|right)|femur_\w+|humerus_\w+|scapula_\w+|"
    r"clavicula_\w+|rib_\w+|ribs|skull|sternum|mandible|tibia\w*|fibula\w*|patella\w*|"
    r"radius\w*|ulna\w*|carpal\w*|metacarpal\w*|tarsal\w*|metatarsal\w*|phalanges_\w+|"
    r"bone_\d+)$",
    re.IGNORECASE,
)

_CARET_LABEL = re.compile(
    r'<Label\s+Key="(\d+)"[^>]*>\s*(?:<!\[CDATA\[)?(.*?)(?:\]\]>)?\s*</Label>', re.DOTALL
)

#: How far two grids may differ (mm, or direction cosine) and still count as the same grid.
GRID_TOLERANCE = 1e-3


class LabelMapError(ValueError):
    """A label map file that cannot be used; the message names the file and the problem."""


@dataclass
class LabelMap:
    """An integer label image with the structure name of each label value.

    Attributes
    ----------
    image
        Integer SimpleITK image, geometry in LPS millimetres; 0 is background.
    names
        Label value -> structure name, for every value present in the image.
    source
        The file it was read from, when it came from a file.
    """

    image: sitk.Image
    names: dict[int, str] = field(default_factory=dict)
    source: Path | None = None


def read_names_table(path: Path) -> dict[int, str]:
    """Read a label-value -> name table from JSON (``{"25": "sacrum", ...}``).

    Raises
    ------
    LabelMapError
        If the file is missing or is not such a table.
    """
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return {int(key): str(value) for key, value in dict(raw).items()}
    except (OSError, ValueError, TypeError) as error:
        raise LabelMapError(f"names table {path} could not be read: {error}") from error


def names_from_nifti_header(path: Path) -> dict[int, str]:
    """Return label names embedded in a NIfTI header extension (a Caret-style label table).

    TotalSegmentator writes such a table into its multi-label outputs. An empty dictionary
    is returned when the file has none.
    """
    import nibabel

    try:
        header = nibabel.load(str(path)).header
    except Exception as error:  # nibabel raises many kinds for damaged files
        raise LabelMapError(f"label map {path} is not a readable NIfTI file: {error}") from error
    names: dict[int, str] = {}
    for extension in getattr(header, "extensions", []):
        content = extension.get_content()
        text = content.decode("utf-8", "replace") if isinstance(content, bytes) else str(content)
        for key, name in _CARET_LABEL.findall(text):
            names[int(key)] = name.strip()
    return names


def _read_seg_nrrd(path: Path) -> LabelMap:
    image = sitk.ReadImage(str(path))
    keys = set(image.GetMetaDataKeys())
    names: dict[int, str] = {}
    layer_of_value: dict[int, int] = {}
    relabel: dict[tuple[int, int], int] = {}
    index = 0
    while f"Segment{index}_ID" in keys:
        name = image.GetMetaData(f"Segment{index}_Name") if f"Segment{index}_Name" in keys else ""
        value = int(image.GetMetaData(f"Segment{index}_LabelValue") or index + 1)
        layer = int(image.GetMetaData(f"Segment{index}_Layer") or 0)
        # Values repeat across layers; give each segment its own value in the merged image.
        unique_value = value if value not in names else max(names) + 1
        relabel[(layer, value)] = unique_value
        names[unique_value] = name or image.GetMetaData(f"Segment{index}_ID")
        layer_of_value[unique_value] = layer
        index += 1
    if index == 0:
        raise LabelMapError(f"{path} has no segment fields; it is not a Slicer .seg.nrrd")

    if image.GetNumberOfComponentsPerPixel() > 1:
        arrays = {}
        for (layer, value), unique_value in relabel.items():
            component = sitk.VectorIndexSelectionCast(image, layer)
            if layer not in arrays:
                arrays[layer] = sitk.GetArrayFromImage(component)
            if value != unique_value:
                arrays[layer] = np.where(arrays[layer] == value, unique_value, arrays[layer])
        merged = np.zeros(next(iter(arrays.values())).shape, dtype=np.uint16)
        for layer, array in arrays.items():
            wanted = [v for (lay, _), v in relabel.items() if lay == layer]
            inside = np.isin(array, wanted)
            if np.any(merged[inside]):
                logger.warning("%s: segments overlap; the later layer wins where they do", path)
            merged[inside] = array[inside]
        result = sitk.GetImageFromArray(merged)
        result.CopyInformation(sitk.VectorIndexSelectionCast(image, 0))
        image = result
    return LabelMap(image=sitk.Cast(image, sitk.sitkUInt16), names=names, source=path)


def read_label_map(path: Path, names: dict[int, str] | Path | None = None) -> LabelMap:
    """Read a ``.seg.nrrd`` or NIfTI label map with the names of its structures.

    Parameters
    ----------
    path
        ``.seg.nrrd``, ``.nrrd``, ``.nii`` or ``.nii.gz`` file.
    names
        Label value -> name, or a JSON file holding such a table. It overrides names stored
        in the file. Values with no name anywhere are called ``label_<value>``.

    Returns
    -------
    LabelMap
        Integer image (geometry in LPS mm) and the names of the values present in it.

    Raises
    ------
    LabelMapError
        If the file is missing, unreadable or not an integer label image.
    """
    path = Path(path)
    if not path.is_file():
        raise LabelMapError(f"label map {path} does not exist")
    lower = path.name.lower()
    if lower.endswith(".seg.nrrd"):
        label_map = _read_seg_nrrd(path)
    elif lower.endswith((".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")):
        try:
            image = sitk.ReadImage(str(path))
        except RuntimeError as error:
            raise LabelMapError(f"label map {path} could not be read: {error}") from error
        if image.GetNumberOfComponentsPerPixel() != 1:
            raise LabelMapError(f"label map {path} has several components per voxel")
        if image.GetPixelID() in (sitk.sitkFloat32, sitk.sitkFloat64):
            array = sitk.GetArrayViewFromImage(image)
            if not np.all(np.equal(np.mod(array, 1), 0)):
                raise LabelMapError(f"label map {path} holds non-integer values")
        embedded = names_from_nifti_header(path) if lower.endswith((".nii", ".nii.gz")) else {}
        label_map = LabelMap(image=sitk.Cast(image, sitk.sitkUInt16), names=embedded, source=path)
    else:
        raise LabelMapError(f"label map {path}: expected .seg.nrrd, .nrrd or .nii(.gz)")

    if names is not None:
        table = read_names_table(names) if isinstance(names, (str, Path)) else dict(names)
        label_map.names.update(table)
    present = label_values(label_map.image)
    label_map.names = {value: label_map.names.get(value, f"label_{value}") for value in present}
    logger.info("label map %s: %d labels", path, len(present))
    return label_map


def label_values(image: sitk.Image) -> list[int]:
    """Return the sorted non-zero values present in an integer label image."""
    array = sitk.GetArrayViewFromImage(image)
    return [int(value) for value in np.unique(array) if value != 0]


def same_grid(image: sitk.Image, reference: sitk.Image) -> bool:
    """Tell whether two images share size, spacing, origin and direction (LPS, within 1 µm)."""
    return (
        image.GetSize() == reference.GetSize()
        and np.allclose(image.GetSpacing(), reference.GetSpacing(), atol=GRID_TOLERANCE)
        and np.allclose(image.GetOrigin(), reference.GetOrigin(), atol=GRID_TOLERANCE)
        and np.allclose(image.GetDirection(), reference.GetDirection(), atol=GRID_TOLERANCE)
    )


def resample_to_reference(label_map: LabelMap, reference: sitk.Image) -> LabelMap:
    """Put a label map on the voxel grid of ``reference`` (nearest neighbour, physical space).

    Labels outside the label map's own extent become background. The grids are compared in
    LPS millimetres; nothing is done when they already match.

    Parameters
    ----------
    label_map
        The label map to move.
    reference
        The image (usually the CT) whose grid the result takes.
    """
    if same_grid(label_map.image, reference):
        return label_map
    logger.info(
        "label map %s: resampling from grid %s to %s (nearest neighbour)",
        label_map.source,
        label_map.image.GetSize(),
        reference.GetSize(),
    )
    resampled = sitk.Resample(
        label_map.image,
        reference,
        sitk.Transform(),
        sitk.sitkNearestNeighbor,
        0,
        sitk.sitkUInt16,
    )
    present = set(label_values(resampled))
    names = {value: name for value, name in label_map.names.items() if value in present}
    lost = sorted(set(label_map.names) - present)
    if lost:
        logger.warning(
            "label map %s: labels %s fall outside the reference grid", label_map.source, lost
        )
    return LabelMap(image=resampled, names=names, source=label_map.source)


def is_bone_name(name: str) -> bool:
    """Tell whether a structure name (TotalSegmentator style) is a bone."""
    return bool(BONE_NAME_PATTERN.match(name.strip()))


def select_bone_labels(names: dict[int, str], include: list[str] | None = None) -> dict[int, str]:
    """Return the label values that are bones, with their names.

    Parameters
    ----------
    names
        Label value -> structure name.
    include
        When given, only these structure names (exact, case-insensitive) are kept, bone or not;
        this is how a user picks structures from a label map with non-standard names.
    """
    if include:
        wanted = {item.strip().lower() for item in include}
        return {value: name for value, name in names.items() if name.lower() in wanted}
    return {value: name for value, name in names.items() if is_bone_name(name)}

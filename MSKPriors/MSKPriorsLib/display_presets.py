"""Window/level presets for reading bone and soft tissue, in one table.

Every preset the workbench offers is a row of :data:`PRESETS`; hanging protocols, the command
line and the viewers refer to presets by name only, so values are changed in one place.

- CT presets are fixed windows in Hounsfield units.
- ``mr-auto`` and ``radiograph`` have no fixed numbers (MR and radiograph intensities are not
  calibrated): the window spans the given percentiles of the image's voxels, or for a
  radiograph the WindowCenter/WindowWidth its DICOM header recommends.

MRML logic without importing ``slicer``: :func:`apply_preset` sets a volume node's scalar
display node through the node's own methods.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from vtk.util import numpy_support

logger = logging.getLogger(__name__)

#: Volume-node attribute that records which preset was applied.
PRESET_ATTRIBUTE = "MSKWB.DisplayPreset"


@dataclass(frozen=True)
class DisplayPreset:
    """One window/level preset.

    Attributes
    ----------
    name
        Identifier used in hanging protocols and on the command line (``ct-bone``).
    label
        Text shown to the user.
    window, level
        Fixed window width and centre in the image's stored units (HU for CT); None for an
        automatic preset.
    low_percentile, high_percentile
        For automatic presets: the window spans these percentiles of the voxels.
    modalities
        Modalities the preset is meant for.
    """

    name: str
    label: str
    window: float | None = None
    level: float | None = None
    low_percentile: float = 1.0
    high_percentile: float = 99.0
    modalities: tuple[str, ...] = ()

    @property
    def is_automatic(self) -> bool:
        """Whether the window is computed from the image rather than fixed."""
        return self.window is None or self.level is None


#: The one table of presets.
PRESETS: dict[str, DisplayPreset] = {
    preset.name: preset
    for preset in (
        DisplayPreset("ct-bone", "CT bone", window=2000.0, level=500.0, modalities=("CT",)),
        DisplayPreset(
            "ct-bone-narrow", "CT bone (narrow)", window=1800.0, level=400.0, modalities=("CT",)
        ),
        DisplayPreset(
            "ct-soft-tissue", "CT soft tissue", window=400.0, level=40.0, modalities=("CT",)
        ),
        DisplayPreset(
            "mr-auto",
            "MR automatic",
            low_percentile=1.0,
            high_percentile=99.5,
            modalities=("MR",),
        ),
        DisplayPreset(
            "radiograph",
            "Radiograph",
            low_percentile=0.5,
            high_percentile=99.5,
            modalities=("CR", "DX", "RG", "DR", "RF", "XA"),
        ),
    )
}

#: Preset used for a modality when none is named: bone reading for MSK.
DEFAULT_PRESET_BY_MODALITY: dict[str, str] = {
    "CT": "ct-bone",
    "MR": "mr-auto",
    "CR": "radiograph",
    "DX": "radiograph",
    "RG": "radiograph",
    "DR": "radiograph",
    "RF": "radiograph",
    "XA": "radiograph",
}


def get_preset(name: str) -> DisplayPreset:
    """Return the preset called ``name``.

    Raises
    ------
    KeyError
        With the list of known presets, if there is no such preset.
    """
    try:
        return PRESETS[name]
    except KeyError:
        known = ", ".join(sorted(PRESETS))
        raise KeyError(f"no display preset named {name!r}; known presets: {known}") from None


def default_preset_for(modality: str) -> str:
    """Return the name of the preset to use for ``modality`` when nothing else is asked for."""
    return DEFAULT_PRESET_BY_MODALITY.get(modality.upper(), "mr-auto")


def window_level_from_voxels(
    voxels: npt.NDArray[Any], low_percentile: float, high_percentile: float
) -> tuple[float, float]:
    """Return (window, level) spanning two percentiles of an image's voxel values.

    Parameters
    ----------
    voxels
        Voxel values in any shape, in the image's stored units.
    low_percentile, high_percentile
        Percentiles (0..100) that become the bottom and top of the window.

    Returns
    -------
    tuple of float
        Window width (at least 1) and level (centre), in the image's units.
    """
    flat = np.asarray(voxels).ravel()
    if flat.size == 0:
        raise ValueError("cannot compute a window from an empty image")
    if flat.size > 4_000_000:
        flat = flat[:: flat.size // 2_000_000]
    low, high = np.percentile(flat, [low_percentile, high_percentile])
    window = max(float(high - low), 1.0)
    return window, float(low + high) / 2.0


def window_level_for(
    preset: DisplayPreset,
    voxels: npt.NDArray[Any] | None = None,
    dicom_window: tuple[float, float] | None = None,
) -> tuple[float, float]:
    """Return the (window, level) a preset gives for an image.

    Parameters
    ----------
    preset
        The preset.
    voxels
        The image's voxels; needed for automatic presets without ``dicom_window``.
    dicom_window
        (WindowWidth, WindowCenter) recommended by the DICOM header; used by automatic presets
        in preference to percentiles.
    """
    if preset.window is not None and preset.level is not None:
        return preset.window, preset.level
    if dicom_window is not None and dicom_window[0] > 0:
        return float(dicom_window[0]), float(dicom_window[1])
    if voxels is None:
        raise ValueError(f"display preset {preset.name!r} needs the image voxels")
    return window_level_from_voxels(voxels, preset.low_percentile, preset.high_percentile)


def apply_preset(
    volume_node: Any, name: str, dicom_window: tuple[float, float] | None = None
) -> tuple[float, float]:
    """Set a scalar volume node's display to a preset.

    Parameters
    ----------
    volume_node
        A ``vtkMRMLScalarVolumeNode``; a display node is created if it has none.
    name
        Preset name from :data:`PRESETS`.
    dicom_window
        Optional (WindowWidth, WindowCenter) from the DICOM header, for automatic presets.

    Returns
    -------
    tuple of float
        The (window, level) set, in the volume's stored units.
    """
    preset = get_preset(name)
    voxels = _voxels_of(volume_node) if preset.is_automatic and not dicom_window else None
    window, level = window_level_for(preset, voxels, dicom_window)
    display = volume_node.GetDisplayNode()
    if display is None:
        volume_node.CreateDefaultDisplayNodes()
        display = volume_node.GetDisplayNode()
    if display is None or not hasattr(display, "SetWindowLevel"):
        raise ValueError(f"volume {volume_node.GetName()!r} has no scalar display node")
    display.SetAutoWindowLevel(False)
    display.SetWindowLevel(window, level)
    volume_node.SetAttribute(PRESET_ATTRIBUTE, preset.name)
    logger.debug("preset %s on %s: W %.1f L %.1f", name, volume_node.GetID(), window, level)
    return window, level


def _voxels_of(volume_node: Any) -> npt.NDArray[Any]:
    image = volume_node.GetImageData()
    scalars = image.GetPointData().GetScalars() if image is not None else None
    if scalars is None:
        raise ValueError(f"volume {volume_node.GetName()!r} has no voxels to set a window from")
    return numpy_support.vtk_to_numpy(scalars)

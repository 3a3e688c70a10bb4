"""Writing reconstructed bones: STL and OBJ meshes per bone, and the segmentation file.

Meshes are held in RAS millimetres (Slicer's world). They are written in the frame the user
chooses, RAS or LPS (LPS is what DICOM, ITK and most planning and printing software use);
the frame is stated in the file name (``femur_left_RAS.stl``) and inside the file (the STL
header, a comment line at the top of the OBJ). Going from RAS to LPS negates x and y, a
rotation about the z axis, so triangle orientation and outward normals are kept.

The segmentation is written as a Slicer ``.seg.nrrd`` by the segmentation storage node.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import vtk

if TYPE_CHECKING:
    from MSKPlannerLib.surface_reconstruction import ReconstructionResult

logger = logging.getLogger(__name__)

#: Mesh formats written per bone.
MESH_KINDS = ("stl", "obj")

#: Name of the segmentation file written beside the meshes.
SEGMENTATION_FILE_NAME = "bones.seg.nrrd"

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def mesh_file_name(bone_name: str, frame: str, kind: str) -> str:
    """Return the file name of a bone mesh, with the frame in it (``femur_left_RAS.stl``)."""
    safe = _UNSAFE.sub("_", bone_name).strip("_") or "bone"
    return f"{safe}_{frame}.{kind}"


def to_frame(polydata_ras: Any, frame: str) -> Any:
    """Return a copy of a RAS-mm surface in ``frame`` (``"RAS"`` or ``"LPS"``), normals included.

    Parameters
    ----------
    polydata_ras
        ``vtkPolyData`` in RAS millimetres.
    frame
        ``"RAS"`` (unchanged copy) or ``"LPS"`` (x and y negated).
    """
    if frame not in ("RAS", "LPS"):
        raise ValueError(f"frame must be RAS or LPS, not {frame!r}")
    copy = vtk.vtkPolyData()
    if frame == "RAS":
        copy.DeepCopy(polydata_ras)
        return copy
    flip = vtk.vtkTransform()
    flip.Scale(-1.0, -1.0, 1.0)
    transform = vtk.vtkTransformPolyDataFilter()
    transform.SetTransform(flip)
    transform.SetInputData(polydata_ras)
    transform.Update()
    copy.DeepCopy(transform.GetOutput())
    return copy


def write_stl(polydata_ras: Any, path: Path, frame: str, description: str = "") -> Path:
    """Write a surface as binary STL in ``frame`` with the frame named in the 80-byte header.

    Parameters
    ----------
    polydata_ras
        Triangle surface in RAS millimetres.
    path
        Output file.
    frame
        ``"RAS"`` or ``"LPS"``.
    description
        Short text for the header (the bone name).
    """
    writer = vtk.vtkSTLWriter()
    writer.SetInputData(to_frame(polydata_ras, frame))
    writer.SetFileName(str(path))
    writer.SetFileTypeToBinary()
    writer.SetHeader(f"MSK Workbench {description} frame={frame} units=mm"[:80])
    if not writer.Write():
        raise OSError(f"could not write {path}")
    return path


def write_obj(polydata_ras: Any, path: Path, frame: str, description: str = "") -> Path:
    """Write a surface as Wavefront OBJ in ``frame``, with the frame in a leading comment.

    Parameters
    ----------
    polydata_ras
        Triangle surface in RAS millimetres.
    path
        Output file.
    frame
        ``"RAS"`` or ``"LPS"``.
    description
        Short text for the comment (the bone name).
    """
    writer = vtk.vtkOBJWriter()
    writer.SetInputData(to_frame(polydata_ras, frame))
    writer.SetFileName(str(path))
    if not writer.Write():
        raise OSError(f"could not write {path}")
    body = Path(path).read_text(encoding="utf-8")
    header = f"# MSK Workbench {description}\n# frame={frame} units=mm\n"
    Path(path).write_text(header + body, encoding="utf-8")
    return path


def write_segmentation(context: Any, segmentation_node: Any, path: Path) -> Path:
    """Write a segmentation node as a Slicer ``.seg.nrrd`` with its segment names.

    Parameters
    ----------
    context
        The app context (or anything with ``.scene``) that owns the node.
    segmentation_node
        ``vtkMRMLSegmentationNode`` to write.
    path
        Output file; should end in ``.seg.nrrd``.
    """
    storage = segmentation_node.GetStorageNode()
    if storage is None:
        storage = context.scene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
        segmentation_node.SetAndObserveStorageNodeID(storage.GetID())
    storage.SetFileName(str(path))
    if not storage.WriteData(segmentation_node):
        raise OSError(f"could not write the segmentation to {path}")
    return path


def read_segmentation(context: Any, path: Path, name: str | None = None) -> Any:
    """Read a ``.seg.nrrd`` into a new segmentation node of ``context.scene``.

    Raises
    ------
    OSError
        If the file is missing or unreadable.
    """
    path = Path(path)
    if not path.is_file():
        raise OSError(f"no segmentation file at {path}")
    node = context.scene.AddNewNodeByClass(
        "vtkMRMLSegmentationNode", name or path.name.split(".")[0]
    )
    storage = context.scene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
    node.SetAndObserveStorageNodeID(storage.GetID())
    storage.SetFileName(str(path))
    if not storage.ReadData(node):
        raise OSError(f"could not read the segmentation {path}")
    node.CreateDefaultDisplayNodes()
    return node


def export_reconstruction(
    context: Any,
    result: ReconstructionResult,
    out_dir: Path,
    frame: str = "RAS",
    kinds: tuple[str, ...] = MESH_KINDS,
) -> ReconstructionResult:
    """Write every bone's meshes and the segmentation into ``out_dir``; record the files.

    Parameters
    ----------
    context
        The app context that owns the result's segmentation node.
    result
        What :func:`~MSKPlannerLib.surface_reconstruction.reconstruct_bones` returned;
        ``bone.files`` and ``result.files`` are filled in.
    out_dir
        Folder, created if needed.
    frame
        ``"RAS"`` or ``"LPS"`` for the meshes.
    kinds
        Subset of :data:`MESH_KINDS`.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    writers = {"stl": write_stl, "obj": write_obj}
    used: set[str] = set()
    for bone in result.bones:
        for kind in kinds:
            file_name = mesh_file_name(bone.name, frame, kind)
            if file_name in used:
                file_name = mesh_file_name(f"{bone.name}_{bone.label_value}", frame, kind)
            used.add(file_name)
            bone.files[kind] = writers[kind](bone.polydata, out_dir / file_name, frame, bone.name)
    result.files["seg.nrrd"] = write_segmentation(
        context, result.segmentation_node, out_dir / SEGMENTATION_FILE_NAME
    )
    result.frame = frame
    logger.info("wrote %d bones (%s, %s) to %s", len(result.bones), "/".join(kinds), frame, out_dir)
    return result

"""DICOM outputs of the case plan: measurement SR, bone SEG, key images, and storing them.

Objects go through the case's outbox (:class:`~MSKPlannerLib.pacs_upload.Outbox`, folder
``out_dir/dicom``): they are written there first, keep their UIDs when the case is planned
again with the same inputs, and with ``push`` are stored where the case came from (the PACS
with STOW-RS, skipping what it already holds, or the local archive). A failed upload loses
nothing: the files stay and the failure is reported.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pydicom

from MSKPlannerLib.dicom_seg import (
    SegmentationExportError,
    build_segmentation,
    label_map_from_segmentation_node,
)
from MSKPlannerLib.dicom_sr import SRError, build_measurement_report
from MSKPlannerLib.key_images import KeyImageError, build_key_image, build_key_object_selection
from MSKPlannerLib.pacs_upload import Outbox, OutboxError, content_digest
from MSKPriorsLib.archive import ArchiveError

if TYPE_CHECKING:
    from MSKPlannerLib.case_loading import LoadedImage
    from MSKPlannerLib.case_plan import PlanState

logger = logging.getLogger(__name__)

#: Report sections whose pictures become key images.
KEY_IMAGE_SECTIONS = ("measurements", "bones")


def _headers(image: LoadedImage) -> list[pydicom.Dataset]:
    return [pydicom.dcmread(path, stop_before_pixels=True) for path in image.files]


def write_dicom_outputs(state: PlanState) -> None:
    """Write SR, SEG and key images into the outbox and, with ``push``, store them."""
    out_dir = Path(state.request.out_dir)
    currents = [image for image in state.loaded if image.role == "current" and image.files]
    if not currents:
        state.warn("reporting", "no_source", "No DICOM result was written: no current image.")
        return
    outbox = Outbox(out_dir / "dicom")
    sources = {image.series_uid: _headers(image)[0] for image in currents}
    written: list[str] = []
    sr = _write_sr(state, outbox, sources)
    if sr is not None:
        written.append("sr")
    seg = _write_seg(state, outbox)
    if seg:
        written.append("seg")
    written += _write_key_images(state, outbox, next(iter(sources.values())), sr)
    state.files["dicom"] = sorted(
        f"dicom/{entry['file']}" for entry in outbox.objects.values() if entry.get("file")
    )
    if state.request.push:
        _push(state, outbox)


def _write_sr(
    state: PlanState, outbox: Outbox, sources: dict[str, pydicom.Dataset]
) -> pydicom.Dataset | None:
    if not state.table.rows:
        state.warn(
            "reporting", "sr_not_written", "No DICOM SR was written: no measurement was made."
        )
        return None
    digest = content_digest(json.dumps(state.table.to_dict(), sort_keys=True, default=str).encode())
    try:
        report = build_measurement_report(
            state.table,
            list(sources.values()),
            series_instance_uid=outbox.series_uid("sr", digest),
            sop_instance_uid=outbox.sop_uid("sr", digest),
            source_by_image=sources,
        )
    except SRError as error:
        state.warn("reporting", "sr_not_written", f"No DICOM SR was written: {error}")
        return None
    outbox.add("sr", report, "sr", digest)
    return report


def _write_seg(state: PlanState, outbox: Outbox) -> bool:
    """The bones of the current CT (named by the label map when given) as DICOM SEG."""
    chosen = None
    for image, method, result in state.surface_results:
        if image.role != "current" or not result.bones:
            continue
        if chosen is None or method == "labels":
            chosen = (image, result)
    if chosen is None:
        return False
    image, result = chosen
    try:
        labels_kji, ijk_to_ras, names = label_map_from_segmentation_node(
            state.context.segmentations_logic, result.segmentation_node, image.node
        )
        digest = content_digest(
            np.ascontiguousarray(labels_kji).tobytes(), json.dumps(names).encode()
        )
        seg = build_segmentation(
            _headers(image),
            labels_kji,
            ijk_to_ras,
            names,
            series_instance_uid=outbox.series_uid("seg", digest),
            sop_instance_uid=outbox.sop_uid("seg", digest),
        )
    except (SegmentationExportError, ValueError) as error:
        state.warn("reporting", "seg_not_written", f"No DICOM SEG was written: {error}")
        return False
    outbox.add("seg", seg, "seg", digest)
    return True


def _write_key_images(
    state: PlanState, outbox: Outbox, reference: pydicom.Dataset, sr: pydicom.Dataset | None
) -> list[str]:
    pictures = [
        picture
        for figure in state.figures
        if figure.section in KEY_IMAGE_SECTIONS
        for picture in figure.pictures
    ]
    names: list[str] = []
    key_objects: list[pydicom.Dataset] = []
    series_digest = content_digest(*(np.ascontiguousarray(p).tobytes() for p in pictures))
    try:
        for index, picture in enumerate(pictures):
            name = f"key_image_{index + 1}"
            digest = content_digest(np.ascontiguousarray(picture).tobytes())
            image = build_key_image(
                picture,
                reference,
                series_instance_uid=outbox.series_uid("key_images", series_digest),
                sop_instance_uid=outbox.sop_uid(name, digest),
                instance_number=index + 1,
            )
            outbox.add(name, image, "key_images", digest)
            names.append(name)
            key_objects.append(image)
        if key_objects:
            flagged = key_objects + ([sr] if sr is not None else [])
            selection = build_key_object_selection(
                flagged,
                series_instance_uid=outbox.series_uid("key_objects", series_digest),
                sop_instance_uid=outbox.sop_uid("key_objects", series_digest),
            )
            outbox.add("key_objects", selection, "key_objects", series_digest)
            names.append("key_objects")
    except (KeyImageError, ValueError) as error:
        state.warn("reporting", "key_images_not_written", f"Key images not written: {error}")
    return names


def _push(state: PlanState, outbox: Outbox) -> None:
    """Store the outbox where the case came from: the PACS, or the local archive."""
    if state.client is not None:
        server = str(state.client.server.name)
        try:
            report = outbox.upload(state.client, server)
        except OutboxError as error:
            report = None
            failure = str(error)
        if report is not None and report.complete:
            state.files["pushed"] = report.to_dict()
            return
        failure = "; ".join(report.failed.values()) if report is not None else failure
        state.warn(
            "reporting",
            "push_failed",
            f"Storing the results on {server} did not complete ({failure}); they are kept in "
            "the output folder's dicom outbox and a new --push sends only what is missing.",
            high=True,
        )
        if report is not None:
            state.files["pushed"] = report.to_dict()
        return
    stored: list[str] = []
    for name, entry in outbox.objects.items():
        if not entry.get("file"):
            continue
        try:
            state.archive.store_file(outbox.folder / entry["file"])
        except ArchiveError as error:
            state.warn("reporting", "push_failed", f"{name} not stored in the archive: {error}")
            continue
        stored.append(name)
    state.files["pushed"] = {"archive": str(state.archive.folder), "stored": stored}

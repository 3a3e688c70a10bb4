"""The DICOM results of a case folder: SR, SEG and key images written into its outbox.

Case folder layout read here (the layout ``mskwb plan`` writes, plus optional extras)::

    CASE_DIR/
      measurements.json        the measurement table (else plan.json's "measurements")
      plan.json                optional; "measurements" used when measurements.json is absent
      images/*.png             rendered views with the measurements drawn (key images)
      key_images/*.png         further key images (for example a templating overlay)
      segmentation/            optional bone label map: *.seg.nrrd or *.nii[.gz]
                               (label_names.json beside a NIfTI file names its values)
      source/ or archive/      the source DICOM series (any folder below CASE_DIR is
                               searched, except dicom/; other folders can be given)
      dicom/                   written here: outbox.json, sr.dcm, seg.dcm, key_image_N.dcm,
                               key_objects.dcm

Every object is written into the outbox (:class:`MSKPlannerLib.pacs_upload.Outbox`) with
UIDs kept from one run to the next, so re-running the report and pushing again stores
nothing twice.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom
import SimpleITK as sitk

from MSKPlannerLib.dicom_seg import SegmentationExportError, build_segmentation
from MSKPlannerLib.dicom_sr import build_measurement_report
from MSKPlannerLib.key_images import build_key_image, build_key_object_selection, read_png_rgb
from MSKPlannerLib.label_maps import LabelMapError, read_label_map, select_bone_labels
from MSKPlannerLib.measurement_table import MeasurementTable
from MSKPlannerLib.pacs_upload import Outbox, UploadReport, content_digest
from MSKPriorsLib.mrml_volumes import ijk_to_ras_from_sitk
from MSKPriorsLib.patient_matching import match_patient
from MSKPriorsLib.records import PatientIdentity

logger = logging.getLogger(__name__)

OUTBOX_FOLDER = "dicom"
KEY_IMAGE_FOLDERS = ("images", "key_images")
SEGMENTATION_FOLDER = "segmentation"
LABEL_NAMES_FILE = "label_names.json"


class CaseFolderError(ValueError):
    """The case folder lacks what a report needs; the message names the folder and file."""


@dataclass
class CaseInputs:
    """What a case folder offers for its DICOM results."""

    table: MeasurementTable
    table_path: Path
    series: dict[str, list[pydicom.Dataset]] = field(default_factory=dict)
    label_map_path: Path | None = None
    key_image_paths: list[Path] = field(default_factory=list)


def read_case_table(case_dir: Path) -> tuple[MeasurementTable, Path]:
    """The measurement table of a case: ``measurements.json``, else ``plan.json``'s."""
    path = case_dir / "measurements.json"
    try:
        if path.is_file():
            return MeasurementTable.read_json(path), path
        plan = case_dir / "plan.json"
        if plan.is_file():
            data = json.loads(plan.read_text())
            if "measurements" in data:
                return MeasurementTable.from_dict(data["measurements"]), plan
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as error:
        raise CaseFolderError(
            f"the measurement table of {case_dir} is unreadable: {error}"
        ) from error
    raise CaseFolderError(f"{case_dir} holds neither measurements.json nor plan.json")


def find_series(
    folders: Iterable[Path], skip: Path | None = None
) -> dict[str, list[pydicom.Dataset]]:
    """Read every DICOM file below the folders (headers only), grouped by Series UID."""
    series: dict[str, list[pydicom.Dataset]] = {}
    seen: set[str] = set()
    for folder in folders:
        for path in sorted(Path(folder).rglob("*")):
            if not path.is_file() or path.suffix.lower() in (".json", ".png", ".html", ".mrb"):
                continue
            if skip is not None and skip in path.parents:
                continue
            try:
                dataset = pydicom.dcmread(path, stop_before_pixels=True)
            except (pydicom.errors.InvalidDicomError, OSError, ValueError):
                continue
            uid = str(dataset.get("SOPInstanceUID", ""))
            if not uid or uid in seen or "SeriesInstanceUID" not in dataset:
                continue
            seen.add(uid)
            dataset.filename = str(path)
            series.setdefault(str(dataset.SeriesInstanceUID), []).append(dataset)
    return series


def find_case_inputs(
    case_dir: Path, source_folders: Iterable[Path] = (), label_map: Path | None = None
) -> CaseInputs:
    """Collect the table, source series, label map and key images of a case folder."""
    case_dir = Path(case_dir)
    table, table_path = read_case_table(case_dir)
    folders = [case_dir, *source_folders]
    series = find_series(folders, skip=case_dir / OUTBOX_FOLDER)
    if label_map is None and (case_dir / SEGMENTATION_FOLDER).is_dir():
        found = sorted(
            p
            for p in (case_dir / SEGMENTATION_FOLDER).iterdir()
            if p.name.lower().endswith((".seg.nrrd", ".nrrd", ".nii", ".nii.gz"))
        )
        label_map = found[0] if found else None
    pictures = [
        path
        for folder in KEY_IMAGE_FOLDERS
        if (case_dir / folder).is_dir()
        for path in sorted((case_dir / folder).glob("*.png"))
    ]
    return CaseInputs(table, table_path, series, label_map, pictures)


def _first(datasets: list[pydicom.Dataset]) -> pydicom.Dataset:
    return sorted(datasets, key=lambda ds: int(ds.get("InstanceNumber", 0) or 0))[0]


def _sources_by_image(inputs: CaseInputs) -> dict[str, pydicom.Dataset]:
    """Table ``source_image`` (series UID, SOP UID or file) -> an instance of it."""
    found: dict[str, pydicom.Dataset] = {}
    for series_uid, datasets in inputs.series.items():
        found[series_uid] = _first(datasets)
        for dataset in datasets:
            found[str(dataset.SOPInstanceUID)] = dataset
            found[str(Path(dataset.filename))] = dataset
            found[Path(dataset.filename).name] = dataset
    return found


def _reference(inputs: CaseInputs) -> pydicom.Dataset:
    by_image = _sources_by_image(inputs)
    for row in inputs.table.rows:
        if row.source_image in by_image:
            return by_image[row.source_image]
        if Path(row.source_image).name in by_image:
            return by_image[Path(row.source_image).name]
    if inputs.series:
        return _first(next(iter(inputs.series.values())))
    raise CaseFolderError(
        "no source DICOM series was found in the case folder or the folders given; the SR, "
        "SEG and key images must join the patient's study"
    )


def patient_identity_of(dataset: pydicom.Dataset) -> PatientIdentity:
    """The patient attributes of a DICOM header (PatientID, issuer, name, birth date)."""
    return PatientIdentity(
        patient_id=str(dataset.get("PatientID", "") or ""),
        issuer=str(dataset.get("IssuerOfPatientID", "") or ""),
        name=str(dataset.get("PatientName", "") or ""),
        birth_date=str(dataset.get("PatientBirthDate", "") or ""),
    )


def patient_difference(reference: pydicom.Dataset, other: pydicom.Dataset) -> str:
    """Why ``other`` may belong to another patient than ``reference``; empty when the same.

    The same patient means an equal, non-empty PatientID with agreeing issuers and no
    disagreement on name or birth date (identical identities, even empty, also agree).
    """
    ours, theirs = patient_identity_of(reference), patient_identity_of(other)
    if ours == theirs:
        return ""
    result = match_patient(ours, theirs)
    return "" if result.matched else result.reason


def read_source_header(source_image: str, folders: Iterable[Path] = ()) -> pydicom.Dataset | None:
    """The header of ``source_image`` when it names a readable DICOM file, else None.

    A relative path is tried from the working folder, then from each of ``folders``.
    """
    if not source_image:
        return None
    path = Path(source_image)
    candidates = [path] if path.is_absolute() else [path, *(Path(f) / path for f in folders)]
    for candidate in candidates:
        if candidate.is_file():
            try:
                return pydicom.dcmread(candidate, stop_before_pixels=True)
            except (pydicom.errors.InvalidDicomError, OSError, ValueError):
                return None
    return None


def _check_one_patient(
    inputs: CaseInputs, reference: pydicom.Dataset, by_image: dict[str, pydicom.Dataset]
) -> None:
    """Refuse the report when a row's source image is of another patient than the case."""
    case_dir = inputs.table_path.parent
    for row in inputs.table.rows:
        source = (
            by_image.get(row.source_image)
            or by_image.get(Path(row.source_image).name)
            or read_source_header(row.source_image, [case_dir])
        )
        if source is None:
            continue
        why = patient_difference(reference, source)
        if why:
            raise CaseFolderError(
                f"measurement {row.key} was made on {Path(row.source_image).name}, which belongs "
                f"to another patient than the case ({why}); no report was written"
            )


def write_case_dicom(
    inputs: CaseInputs, outbox: Outbox, key_object_selection: bool = True
) -> dict[str, Any]:
    """Write the SR, the SEG (when a label map is given) and the key images into ``outbox``.

    Returns
    -------
    dict
        ``written`` (object names), ``skipped`` (what could not be written, with why).

    Raises
    ------
    CaseFolderError
        When a row's source image belongs to another patient than the case (found among the
        case's series by UID or file name, or read from the file the row names); nothing
        is written then.
    """
    reference = _reference(inputs)
    by_image = _sources_by_image(inputs)
    _check_one_patient(inputs, reference, by_image)
    for row in inputs.table.rows:
        if row.source_image not in by_image and Path(row.source_image).name in by_image:
            by_image[row.source_image] = by_image[Path(row.source_image).name]
    written: list[str] = []
    skipped: dict[str, str] = {}
    # The SR joins the reference's study; images of other studies (priors) are not cited.
    same_study = {
        key: ds for key, ds in by_image.items() if ds.StudyInstanceUID == reference.StudyInstanceUID
    }
    cited = {reference.SOPInstanceUID: reference}
    for row in inputs.table.rows:
        if row.source_image in same_study:
            dataset = same_study[row.source_image]
            cited[dataset.SOPInstanceUID] = dataset
    table_digest = content_digest(
        json.dumps(inputs.table.to_dict(), sort_keys=True, default=str).encode()
    )
    report = build_measurement_report(
        inputs.table,
        list(cited.values()),
        series_instance_uid=outbox.series_uid("sr", table_digest),
        sop_instance_uid=outbox.sop_uid("sr", table_digest),
        source_by_image=same_study,
    )
    outbox.add("sr", report, "sr", table_digest)
    written.append("sr")
    key_objects: list[pydicom.Dataset] = [report]

    if inputs.label_map_path is not None:
        try:
            written += _write_segmentation(inputs, outbox)
        except (SegmentationExportError, LabelMapError, OSError) as error:
            skipped["seg"] = str(error)

    pictures_digest = content_digest(*(p.read_bytes() for p in inputs.key_image_paths))
    for number, path in enumerate(inputs.key_image_paths, start=1):
        name = f"key_image_{number}"
        content = path.read_bytes()
        digest = content_digest(content, str(reference.StudyInstanceUID).encode())
        image = build_key_image(
            read_png_rgb(path),
            reference,
            series_instance_uid=outbox.series_uid("key_images", pictures_digest),
            sop_instance_uid=outbox.sop_uid(name, digest),
            instance_number=number,
            description=f"MSK Workbench key image: {path.stem}",
        )
        outbox.add(name, image, "key_images", digest)
        written.append(name)
        key_objects.append(image)
    if key_object_selection and len(key_objects) > 1:
        digest = content_digest(*(str(ds.SOPInstanceUID).encode() for ds in key_objects))
        selection = build_key_object_selection(
            key_objects,
            series_instance_uid=outbox.series_uid("key_objects", digest),
            sop_instance_uid=outbox.sop_uid("key_objects", digest),
        )
        outbox.add("key_objects", selection, "key_objects", digest)
        written.append("key_objects")
    return {"written": written, "skipped": skipped}


def _write_segmentation(inputs: CaseInputs, outbox: Outbox) -> list[str]:
    path = inputs.label_map_path
    assert path is not None
    names_path = path.parent / LABEL_NAMES_FILE
    label_map = read_label_map(path, names_path if names_path.is_file() else None)
    bones = select_bone_labels(label_map.names)
    if not bones:
        raise SegmentationExportError(f"the label map {path} names no bone")
    label_kji = sitk.GetArrayFromImage(label_map.image)
    ijk_to_ras = ijk_to_ras_from_sitk(label_map.image)
    errors = []
    for series_uid, headers in inputs.series.items():
        if len(headers) < 2 or "ImageOrientationPatient" not in headers[0]:
            continue
        digest = content_digest(path.read_bytes(), series_uid.encode())
        datasets = [pydicom.dcmread(ds.filename, stop_before_pixels=True) for ds in headers]
        try:
            segmentation = build_segmentation(
                datasets,
                label_kji,
                ijk_to_ras,
                bones,
                series_instance_uid=outbox.series_uid("seg", digest),
                sop_instance_uid=outbox.sop_uid("seg", digest),
            )
        except SegmentationExportError as error:
            errors.append(str(error))
            continue
        outbox.add("seg", segmentation, "seg", digest)
        return ["seg"]
    raise SegmentationExportError(
        f"the label map {path} lies on none of the source series"
        + (f" ({'; '.join(errors)})" if errors else "")
    )


@dataclass
class CaseReport:
    """What :func:`report_case` wrote and, when asked, stored.

    Attributes
    ----------
    result
        ``written`` (object names) and ``skipped`` (name -> why), as from
        :func:`write_case_dicom`.
    outbox
        The case's outbox (its folder holds the DICOM files and ``outbox.json``).
    upload
        The upload attempt, or None when nothing was pushed.
    """

    result: dict[str, Any]
    outbox: Outbox
    upload: UploadReport | None = None

    @property
    def files(self) -> list[Path]:
        """The DICOM files of the case's objects."""
        return [
            self.outbox.folder / str(entry["file"])
            for entry in self.outbox.objects.values()
            if entry.get("file")
        ]


def report_case(
    case_dir: Path,
    source_folders: Iterable[Path] = (),
    label_map: Path | None = None,
    key_object_selection: bool = True,
    push_to: str | None = None,
) -> CaseReport:
    """Write a case folder's SR, SEG and key images into its outbox, and push them if asked.

    Parameters
    ----------
    case_dir
        The case folder (layout at the top of this module).
    source_folders, label_map
        Extra folders with the source series, and the bone label map, when not in the folder.
    key_object_selection
        Also write a Key Object Selection document for the key images.
    push_to
        A configured server name or DICOMweb URL to store the objects on; None stores nothing.
        Objects the server already holds are not sent again.

    Raises
    ------
    CaseFolderError, ValueError
        When the case folder lacks what the objects need (the message names it).
    """
    from MSKPriorsLib.dicomweb import DicomWebClient
    from MSKPriorsLib.servers import resolve_server

    inputs = find_case_inputs(case_dir, source_folders, label_map)
    outbox = Outbox(Path(case_dir) / OUTBOX_FOLDER)
    report = CaseReport(write_case_dicom(inputs, outbox, key_object_selection), outbox)
    if push_to is not None:
        server = resolve_server(push_to)
        with DicomWebClient(server) as client:
            report.upload = outbox.upload(client, server.url)
    return report

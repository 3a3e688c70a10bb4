"""A demo patient with known answers: two CTs, a calibrated long-leg radiograph, landmarks.

The demo patient has

- a current study with a CT of the abdomen and pelvis and a calibrated long-leg radiograph
  (computed radiography, ``PixelSpacing`` set) of one leg;
- a prior CT two years earlier, of the same anatomy with the patient lying slightly shifted
  and turned, so rigid registration has work to do;
- a third study under the same PatientID but another birth date, which prior discovery must
  reject as a possible different patient;
- the vertebra label map of the CT (TotalSegmentator names) for the automatic Cobb angle, and
  a landmark file (Slicer markups JSON) of the lower-limb alignment landmarks.

The radiograph and its landmarks come from :mod:`MSKPlannerLib.demo_radiograph`. The CT
pixels are the real TotalSegmentator CT from the shared data folder when it is present;
otherwise a generated CT with a known spine curve is used (and its vertebra labels are
written beside it), so a machine without that folder still gets a complete demo. The
radiograph and landmarks are always generated from construction angles, so the alignment
values of the report can be checked against :attr:`DemoCase.expected`.

Pure core: numpy, SimpleITK, nibabel, pydicom. The DICOM files are written to a folder; the
caller imports them into an archive.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import numpy.typing as npt
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, CTImageStorage, ExplicitVRLittleEndian, generate_uid

from MSKPlannerLib.demo_radiograph import (
    RADIOGRAPH_SPACING_MM,
    leg_geometry,
    long_leg_radiograph,
)
from MSKPlannerLib.landmarks import write_markups_json
from MSKPriorsLib.frames import LPS_TO_RAS, lps_grid_from_ijk_to_ras, sitk_from_array

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]

#: Identity of the demo patient (invented).
PATIENT_ID = "MSKWB-DEMO-001"
PATIENT_NAME = "DEMO^ORTHO"
BIRTH_DATE = "19580312"
CURRENT_DATE = "20261120"
PRIOR_DATE = "20241002"
OTHER_BIRTH_DATE = "19610704"

#: Computed Radiography Image Storage.
CR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.1"

#: Rigid motion of the patient in the prior CT relative to the current one.
PRIOR_ROTATION_DEG = 4.0
PRIOR_TRANSLATION_MM = (6.0, -5.0, 9.0)

#: Name of the label-value -> structure-name table written beside a label map.
LABEL_NAMES_FILE = "label_names.json"

#: TotalSegmentator label values of the vertebrae in the generated spine (S1 to T11).
#: Added to the series description of every demo image that is not a scan of a person, so
#: the viewer, the report titles and the figure captions all say so.
SYNTHETIC_MARK = "(synthetic phantom)"

#: Added to the prior CT's series description: it is the current CT moved, not a second scan.
SIMULATED_PRIOR_MARK = "(simulated prior)"

#: ImageComments of the simulated prior CT.
SIMULATED_PRIOR_COMMENT = "Simulated prior made by the MSK Workbench demo: the current CT, moved."

#: ImageComments of the synthetic images.
SYNTHETIC_COMMENT = "Synthetic phantom made by the MSK Workbench demo; not an image of a person."

VERTEBRA_LABELS = {26: "S1", 27: "L5", 28: "L4", 29: "L3", 30: "L2", 31: "L1", 32: "T12", 33: "T11"}


@dataclass
class DemoCase:
    """What :func:`build_demo_dicom` wrote and the values the plan should find.

    Attributes
    ----------
    dicom_folder
        Folder with every DICOM file of the demo (one sub-folder per series).
    patient_id
        PatientID of the demo patient.
    current_study_uid, prior_study_uid, other_patient_study_uid
        StudyInstanceUIDs of the current study, the true prior and the study that shares the
        PatientID but names another birth date.
    ct_series_uid, prior_ct_series_uid, radiograph_series_uid
        SeriesInstanceUIDs.
    labels_file
        Vertebra label map (NIfTI, RAS) on the current CT grid.
    landmarks_file
        Lower-limb landmarks (Slicer markups JSON, LPS) placed on the radiograph.
    real_ct
        Whether the CT pixels are the real TotalSegmentator CT.
    expected
        Known values: ``hka_deg``, ``mldfa_deg``, ``mpta_deg``, ``jlca_deg``, ``mad_mm`` and
        the prior motion (``prior_rotation_deg``, ``prior_translation_mm``).
    """

    dicom_folder: Path
    patient_id: str
    current_study_uid: str
    prior_study_uid: str
    other_patient_study_uid: str
    ct_series_uid: str
    prior_ct_series_uid: str
    radiograph_series_uid: str
    labels_file: Path
    landmarks_file: Path
    real_ct: bool
    expected: dict[str, Any] = field(default_factory=dict)


def _uid(*parts: str) -> str:
    """A UID derived from names, so rebuilding the demo gives the same UIDs."""
    return str(generate_uid(entropy_srcs=["mskwb-demo", *parts]))


def _base_dataset(
    sop_class: str, sop_uid: str, study_uid: str, series_uid: str, birth_date: str, date: str
) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = UID(sop_uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.PatientID = PATIENT_ID
    ds.PatientName = PATIENT_NAME
    ds.PatientBirthDate = birth_date
    ds.PatientSex = "F"
    ds.StudyDate = date
    ds.SeriesDate = date
    ds.ContentDate = date
    ds.StudyTime = "091500"
    ds.AccessionNumber = f"DEMO{date}"
    ds.ReferringPhysicianName = ""
    ds.StudyID = "1"
    ds.Manufacturer = "MSK Workbench demo"
    ds.InstitutionName = "Demo"
    return ds


def write_ct_series(
    array_kji: npt.NDArray[Any],
    ijk_to_ras_mm: FloatArray,
    folder: Path,
    study_uid: str,
    series_uid: str,
    description: str,
    study_description: str,
    date: str,
    birth_date: str = BIRTH_DATE,
    body_part: str = "ABDOMEN",
    comments: str = "",
) -> list[Path]:
    """Write a volume as a CT series, one uncompressed instance per slice.

    Parameters
    ----------
    array_kji
        Hounsfield units indexed ``[k, j, i]``; stored as signed 16-bit.
    ijk_to_ras_mm
        4x4 IJK-to-RAS matrix (mm); converted to DICOM's LPS image position and orientation.
    folder
        Output folder (created).
    comments
        ImageComments of every instance (how a demo image was made); none when empty.

    Returns
    -------
    list of pathlib.Path
        The written files, one per slice.
    """
    folder.mkdir(parents=True, exist_ok=True)
    matrix = np.asarray(ijk_to_ras_mm, dtype=float)
    spacing_mm, _, direction_lps = lps_grid_from_ijk_to_ras(matrix)
    row_direction_lps = direction_lps[:, 0]
    column_direction_lps = direction_lps[:, 1]
    pixels = np.clip(np.round(array_kji), -32768, 32767).astype(np.int16)
    paths = []
    for k in range(pixels.shape[0]):
        sop_uid = _uid(series_uid, str(k))
        ds = _base_dataset(CTImageStorage, sop_uid, study_uid, series_uid, birth_date, date)
        ds.Modality = "CT"
        ds.StudyDescription = study_description
        ds.SeriesDescription = description
        ds.BodyPartExamined = body_part
        ds.SeriesNumber = 2
        ds.InstanceNumber = k + 1
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        if comments:
            ds.ImageComments = comments
        ds.FrameOfReferenceUID = _uid(study_uid, "frame")
        position_lps = LPS_TO_RAS @ (matrix @ np.array([0.0, 0.0, float(k), 1.0]))[:3]
        ds.ImagePositionPatient = [f"{v:.4f}" for v in position_lps]
        ds.ImageOrientationPatient = [
            f"{v:.6f}" for v in (*row_direction_lps, *column_direction_lps)
        ]
        ds.SliceThickness = f"{spacing_mm[2]:.4f}"
        ds.PixelSpacing = [f"{spacing_mm[1]:.4f}", f"{spacing_mm[0]:.4f}"]
        ds.SliceLocation = f"{position_lps[2]:.4f}"
        _set_pixels(ds, pixels[k], signed=True)
        ds.RescaleIntercept = "0"
        ds.RescaleSlope = "1"
        ds.RescaleType = "HU"
        ds.WindowCenter = "400"
        ds.WindowWidth = "1800"
        path = folder / f"{k + 1:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def _set_pixels(ds: Dataset, pixels: npt.NDArray[Any], signed: bool) -> None:
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = int(pixels.shape[0]), int(pixels.shape[1])
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1 if signed else 0
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()


def prior_motion() -> sitk.Euler3DTransform:
    """The rigid motion (LPS mm) that maps current-CT points to where the prior saw them."""
    transform = sitk.Euler3DTransform()
    transform.SetRotation(0.0, 0.0, math.radians(PRIOR_ROTATION_DEG))
    transform.SetTranslation(PRIOR_TRANSLATION_MM)
    return transform


def moved_prior(image: sitk.Image) -> sitk.Image:
    """Resample a CT (LPS) as it would look with the patient moved by :func:`prior_motion`.

    The prior keeps the current grid; its content is the current anatomy displaced, so
    registering the prior to the current CT must recover the motion.
    """
    centre = image.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2.0 for n in image.GetSize()])
    motion = prior_motion()
    motion.SetCenter(centre)
    return sitk.Resample(image, image, motion.GetInverse(), sitk.sitkLinear, -1024.0)


def generated_ct() -> tuple[npt.NDArray[np.int16], npt.NDArray[np.int16], FloatArray]:
    """A CT with a known curved lumbar spine, for machines without the shared data.

    Returns
    -------
    ct_kji, labels_kji, ijk_to_ras_mm
        Hounsfield units and vertebra labels (TotalSegmentator values 26..33) indexed
        ``[k, j, i]`` on a 2.5 mm grid, and the IJK-to-RAS matrix (mm). The vertebral bodies
        are tilted in the coronal plane by :func:`generated_vertebra_tilts_deg`.
    """
    spacing_mm = 2.5
    shape_kji = (96, 80, 96)
    k, j, i = np.indices(shape_kji, dtype=np.float32)
    x_mm = (i - shape_kji[2] / 2) * spacing_mm
    y_mm = (j - shape_kji[1] / 2) * spacing_mm
    z_mm = (k - 6) * spacing_mm
    ct = np.full(shape_kji, -1000.0, dtype=np.float32)
    # The body narrows toward the head; femoral heads, kidneys at different heights and a
    # bowel gas pocket make the anatomy distinct along every axis, as registration needs.
    half_width_mm = 160.0 - 0.15 * z_mm
    body = (x_mm / half_width_mm) ** 2 + (y_mm / 95.0) ** 2 <= 1.0
    ct[body] = 40.0
    for side_mm in (-85.0, 85.0):
        head = (x_mm - side_mm) ** 2 + (y_mm + 5.0) ** 2 + (z_mm - 10.0) ** 2 <= 22.0**2
        ct[head] = 600.0
    for centre in ((-55.0, -25.0, 120.0), (60.0, -30.0, 150.0)):
        kidney = (
            ((x_mm - centre[0]) / 25.0) ** 2
            + ((y_mm - centre[1]) / 20.0) ** 2
            + ((z_mm - centre[2]) / 45.0) ** 2
        ) <= 1.0
        ct[kidney] = 110.0
    gas = (x_mm - 30.0) ** 2 + (y_mm - 45.0) ** 2 + (z_mm - 80.0) ** 2 <= 18.0**2
    ct[gas] = -900.0
    labels = np.zeros(shape_kji, dtype=np.int16)
    tilts = generated_vertebra_tilts_deg()
    for index, (value, tilt_deg) in enumerate(zip(VERTEBRA_LABELS, tilts, strict=True)):
        centre_z = 15.0 + index * 28.0
        centre_x = 12.0 * math.sin(index / 7.0 * math.pi)
        angle = math.radians(tilt_deg)
        u = (x_mm - centre_x) * math.cos(angle) + (z_mm - centre_z) * math.sin(angle)
        v = -(x_mm - centre_x) * math.sin(angle) + (z_mm - centre_z) * math.cos(angle)
        body_mask = (np.abs(u) <= 20.0) & (np.abs(v) <= 9.0) & (np.abs(y_mm + 20.0) <= 16.0)
        labels[body_mask] = value
        ct[body_mask] = 700.0
        hollow = (np.abs(u) <= 16.0) & (np.abs(v) <= 6.0) & (np.abs(y_mm + 20.0) <= 12.0)
        ct[hollow] = 250.0
    rng = np.random.default_rng(7)
    ct += rng.normal(0.0, 12.0, size=shape_kji).astype(np.float32)
    ijk_to_ras = np.diag([-spacing_mm, -spacing_mm, spacing_mm, 1.0])
    ijk_to_ras[:3, 3] = [shape_kji[2] / 2 * spacing_mm, shape_kji[1] / 2 * spacing_mm, -15.0]
    return ct.astype(np.int16), labels, ijk_to_ras


def generated_vertebra_tilts_deg() -> tuple[float, ...]:
    """Coronal tilt of each generated vertebral body, S1 first (degrees, + = counterclockwise)."""
    return (2.0, -4.0, -9.0, -6.0, 1.0, 7.0, 11.0, 8.0)


def write_radiograph(
    pixels: npt.NDArray[np.uint16],
    spacing_mm: float,
    path: Path,
    study_uid: str,
    series_uid: str,
    date: str,
    side: str,
) -> Path:
    """Write a computed radiography image with ``PixelSpacing`` (calibrated at the patient)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sop_uid = _uid(series_uid, "1")
    ds = _base_dataset(CR_IMAGE_STORAGE, sop_uid, study_uid, series_uid, BIRTH_DATE, date)
    ds.Modality = "CR"
    ds.StudyDescription = "CT ABDOMEN PELVIS AND LONG LEG"
    ds.SeriesDescription = f"Long leg AP {side} {SYNTHETIC_MARK}"
    ds.ImageComments = SYNTHETIC_COMMENT
    ds.BodyPartExamined = "LEG"
    ds.Laterality = "L" if side == "left" else "R"
    ds.ViewPosition = "AP"
    ds.PatientOrientation = ["L", "F"]
    ds.SeriesNumber = 3
    ds.InstanceNumber = 1
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.PixelSpacing = [f"{spacing_mm:.4f}", f"{spacing_mm:.4f}"]
    ds.PixelSpacingCalibrationType = "GEOMETRY"
    ds.PixelSpacingCalibrationDescription = "magnification corrected at the patient plane"
    _set_pixels(ds, pixels, signed=False)
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.WindowCenter = "1200"
    ds.WindowWidth = "2600"
    ds.save_as(path, enforce_file_format=True)
    return path


def build_demo_dicom(
    folder: Path, ct_source: Path | None = None, labels_source: Path | None = None
) -> DemoCase:
    """Write the demo patient's DICOM files, label map and landmark file into ``folder``.

    Parameters
    ----------
    folder
        Output folder (created); DICOM files go under ``folder/dicom``.
    ct_source, labels_source
        The real CT volume and its vertebra labels (NIfTI). When either is missing, a
        generated CT with a known spine is used instead.

    Returns
    -------
    DemoCase
        UIDs, files and the values the plan should find.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    dicom_folder = folder / "dicom"
    current_study = _uid("study", "current")
    prior_study = _uid("study", "prior")
    other_study = _uid("study", "other")
    ct_series = _uid("series", "ct-current")
    prior_series = _uid("series", "ct-prior")
    other_series = _uid("series", "ct-other")
    radiograph_series = _uid("series", "cr-current")

    real = ct_source is not None and labels_source is not None
    if real:
        assert ct_source is not None and labels_source is not None
        ct_image: Any = nib.load(str(ct_source))
        ct_kji = np.asarray(ct_image.dataobj).transpose(2, 1, 0)
        ct_affine: FloatArray = np.asarray(ct_image.affine, dtype=np.float64)
        labels_file = Path(labels_source)
    else:
        ct_kji, labels_kji, ct_affine = generated_ct()
        labels_file = folder / "vertebrae_labels.nii.gz"
        nib.save(nib.Nifti1Image(labels_kji.transpose(2, 1, 0), ct_affine), str(labels_file))
        names = {str(value): f"vertebrae_{name}" for value, name in VERTEBRA_LABELS.items()}
        (folder / LABEL_NAMES_FILE).write_text(json.dumps(names, indent=1))
    logger.info("demo CT: %s pixels", "real" if real else "generated")
    ct_description = "CT abdomen pelvis bone" if real else f"CT abdomen pelvis {SYNTHETIC_MARK}"

    write_ct_series(
        ct_kji,
        ct_affine,
        dicom_folder / "current_ct",
        current_study,
        ct_series,
        ct_description,
        "CT ABDOMEN PELVIS AND LONG LEG",
        CURRENT_DATE,
        comments="" if real else SYNTHETIC_COMMENT,
    )

    current_lps = sitk_from_array(np.asarray(ct_kji, dtype=np.float32), ct_affine)
    prior_kji = sitk.GetArrayFromImage(moved_prior(current_lps))
    write_ct_series(
        prior_kji,
        ct_affine,
        dicom_folder / "prior_ct",
        prior_study,
        prior_series,
        f"{ct_description} {SIMULATED_PRIOR_MARK}",
        "CT ABDOMEN PELVIS",
        PRIOR_DATE,
        comments=SIMULATED_PRIOR_COMMENT,
    )

    small = ct_kji[:: max(ct_kji.shape[0] // 8, 1), ::4, ::4][:8]
    small_affine = ct_affine.copy()
    small_affine[:3, :2] *= 4
    small_affine[:3, 2] *= max(ct_kji.shape[0] // 8, 1)
    write_ct_series(
        small,
        small_affine,
        dicom_folder / "other_ct",
        other_study,
        other_series,
        "CT abdomen",
        "CT ABDOMEN",
        "20250114",
        birth_date=OTHER_BIRTH_DATE,
    )

    side = "left"
    geometry = leg_geometry(side)
    pixels, picture_ijk_to_ras = long_leg_radiograph(geometry)
    # Landmarks are stored as placed on the radiograph read the usual way: the first pixel's
    # centre at the RAS origin, columns toward the patient's left, rows toward the feet.
    offset_ras = picture_ijk_to_ras[:3, 3]
    landmarks_ras = {label: p - offset_ras for label, p in geometry.points_ras_mm.items()}
    write_radiograph(
        pixels,
        RADIOGRAPH_SPACING_MM,
        dicom_folder / "current_cr" / "0001.dcm",
        current_study,
        radiograph_series,
        CURRENT_DATE,
        side,
    )
    landmarks_file = folder / f"long_leg_{side}.mrk.json"
    write_markups_json(
        landmarks_file,
        points_ras_mm=landmarks_ras,
        name=f"Alignment {side}",
        description=f"{side} leg, long-leg radiograph",
    )

    expected: dict[str, Any] = dict(geometry.expected)
    expected["prior_rotation_deg"] = PRIOR_ROTATION_DEG
    expected["prior_translation_mm"] = list(PRIOR_TRANSLATION_MM)
    return DemoCase(
        dicom_folder=dicom_folder,
        patient_id=PATIENT_ID,
        current_study_uid=current_study,
        prior_study_uid=prior_study,
        other_patient_study_uid=other_study,
        ct_series_uid=ct_series,
        prior_ct_series_uid=prior_series,
        radiograph_series_uid=radiograph_series,
        labels_file=labels_file,
        landmarks_file=landmarks_file,
        real_ct=real,
        expected=expected,
    )


def build_demo_archive(
    folder: Path, ct_source: Path | None = None, labels_source: Path | None = None
) -> tuple[DemoCase, Path]:
    """Write the demo patient and import it into a local archive at ``folder / "archive"``.

    Returns
    -------
    DemoCase, pathlib.Path
        The demo case and the archive folder. Importing again stores nothing twice.

    Raises
    ------
    RuntimeError
        When an instance could not be archived (the message names it).
    """
    from MSKPriorsLib.archive import LocalArchive

    case = build_demo_dicom(folder, ct_source, labels_source)
    archive_dir = Path(folder) / "archive"
    with LocalArchive(archive_dir) as archive:
        summary = archive.import_folder(case.dicom_folder)
    if summary.failed:
        raise RuntimeError(f"the demo archive could not store: {'; '.join(summary.failed[:3])}")
    logger.info(
        "demo archive %s: %d stored, %d already present",
        archive_dir,
        summary.stored,
        summary.already_present,
    )
    return case, archive_dir

"""How the viewer's page shows studies and names display presets: plain values, no scene."""

from __future__ import annotations

from typing import Any

from MSKPriorsLib.display_presets import default_preset_for
from MSKPriorsLib.records import StudyRecord, shown_date

#: The page's preset button that keeps the hanging protocol's presets.
PROTOCOL_PRESET = "protocol"

#: The page's other preset buttons -> the display preset for each modality.
PAGE_PRESETS = {
    "bone": {"CT": "ct-bone"},
    "soft_tissue": {"CT": "ct-soft-tissue"},
}


def shown_person_name(dicom_name: str) -> str:
    """A DICOM person name (PN, ``FAMILY^GIVEN^MIDDLE^PREFIX^SUFFIX``) as ``FAMILY, Given``.

    Only the alphabetic group (before any ``=``) is shown; empty components are dropped.
    """
    alphabetic = dicom_name.split("=", 1)[0]
    parts = [part.strip() for part in alphabetic.split("^")]
    parts += [""] * (5 - len(parts))
    family, given, middle, prefix, suffix = parts[:5]
    first = " ".join(p for p in (prefix, given, middle) if p)
    shown = ", ".join(p for p in (family, first) if p)
    return f"{shown}, {suffix}" if suffix and shown else shown or suffix


def study_row(study: StudyRecord) -> dict[str, Any]:
    """A study as the page lists it, with who it belongs to in words a reader can check."""
    patient = study.patient
    name = shown_person_name(patient.name) or "(no name)"
    birth = shown_date(patient.birth_date, "")
    born = f"born {birth}" if birth else "no birth date"
    patient_id = patient.patient_id.strip() or "(no patient ID)"
    return {
        "study_uid": study.study_uid,
        "patient_id": patient.patient_id,
        "patient_name": name,
        "birth_date": birth,
        "patient_label": f"{name} · {born} · ID {patient_id}",
        "date": shown_date(study.study_date),
        "description": study.description,
        "modalities": ", ".join(study.modalities),
        "source": study.source,
    }


def preset_for(page_preset: str, modality: str) -> str:
    """The display preset behind a page preset button for a modality.

    MR and radiograph intensities are not calibrated, so both buttons use their automatic
    window there.
    """
    if page_preset not in PAGE_PRESETS:
        raise KeyError(f"unknown display preset {page_preset!r}")
    return PAGE_PRESETS[page_preset].get(modality.upper(), default_preset_for(modality))

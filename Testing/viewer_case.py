"""Test helper: real studies for the browser viewer, and reading what its page shows.

Studies are built from the real DICOM files of the shared data (new UIDs, a test patient,
a study date) and stored in the real Orthanc over DICOMweb; the page is read through
Chromium: view rectangles, screenshot pixels, measurement values.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pydicom
import requests
import vtk
from browser_driver import Browser
from dicomweb_client.api import DICOMwebClient
from dicomweb_client.session_utils import create_session_from_auth
from pydicom.uid import generate_uid
from vtkmodules.util.numpy_support import vtk_to_numpy

from mskworkbench.local_orthanc import LocalOrthanc

ARTIFACTS = Path(__file__).parent / "artifacts"

#: A site's protocol that hangs the current CT beside its two most relevant CT priors.
TWO_PRIORS_RULE = {
    "name": "ct-two-priors",
    "description": "CT beside two CT priors, axial, registered, linked; the older in soft tissue.",
    "priority": 50,
    "match": {"modalities": ["CT"], "prior_required": True, "prior_modalities": ["CT"]},
    "layout": "2x2-3d",
    "link": True,
    "register_priors": True,
    "views": {
        "Red": {"study": "current", "orientation": "Axial", "preset": "ct-bone"},
        "Green": {"study": "prior", "prior": 1, "orientation": "Axial", "preset": "ct-bone"},
        "Yellow": {
            "study": "prior",
            "prior": 2,
            "orientation": "Axial",
            "preset": "ct-soft-tissue",
        },
    },
}


def study_copy(
    files: list[Path],
    patient_id: str,
    study_date: str,
    description: str,
    shift_lps_mm: tuple[float, float, float] = (0.0, 0.0, 0.0),
) -> list[pydicom.Dataset]:
    """Real DICOM files as one new study of a test patient (new UIDs, given date).

    The files keep their pixels; ``shift_lps_mm`` moves the image position (a patient lying
    elsewhere in the scanner), which a registration must find again. Files without a
    SOPClassUID in their header get the one their file meta names.
    """
    study_uid, series_uid = generate_uid(), generate_uid()
    datasets = []
    for path in files:
        ds = pydicom.dcmread(path)
        ds.PatientID = patient_id
        ds.PatientName = "VIEWER^TEST"
        ds.PatientBirthDate = "19600101"
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        if not str(ds.get("SOPClassUID", "")):
            ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
        ds.StudyDate = study_date
        ds.StudyDescription = description
        if "ImagePositionPatient" in ds and any(shift_lps_mm):
            ds.ImagePositionPatient = [
                float(v) + d for v, d in zip(ds.ImagePositionPatient, shift_lps_mm, strict=True)
            ]
        datasets.append(ds)
    return datasets


def store(orthanc: LocalOrthanc, *studies: list[pydicom.Dataset]) -> None:
    """Store studies in the real Orthanc with STOW-RS."""
    session = create_session_from_auth(
        requests.auth.HTTPBasicAuth(orthanc.username, orthanc.password)
    )
    client = DICOMwebClient(url=orthanc.dicomweb_url, session=session)
    for datasets in studies:
        client.store_instances(datasets)


def open_study(browser: Browser, search_text: str, study_date: str, studies: int) -> None:
    """Search as a reader types, wait for ``studies`` results, open the one of ``study_date``."""
    browser.wait_for("document.querySelector('#search-button') !== null", 60)
    # Type only once the page has the server's state, and search once the text arrived.
    browser.wait_for("window.trame && window.trame.state.get('status_message')", 60)
    browser.evaluate(
        "(() => { const f = document.querySelector('#search-text');"
        f" f.value = '{search_text}'; f.dispatchEvent(new Event('input')); }})()"
    )
    browser.wait_for(f"window.trame.state.get('search_text') === '{search_text}'", 30)
    browser.evaluate("document.querySelector('#search-button').click()")
    browser.wait_for(
        f"document.querySelectorAll('.study-item').length === {studies} && "
        "[...document.querySelectorAll('.study-item')]"
        f".some(e => e.textContent.includes('{study_date}'))",
        60,
    )
    browser.evaluate(
        "[...document.querySelectorAll('.study-item')]"
        f".find(e => e.textContent.includes('{study_date}')).click()"
    )
    browser.wait_for(
        "(() => { const c = document.querySelector('#current-study');"
        " const s = document.querySelector('#status-message');"
        f" return c && c.textContent.includes('{study_date}')"
        " && s.textContent.includes('hanging protocol'); })()",
        180,
    )


def wait_for_views(browser: Browser, count: int, settle_s: float = 2.0) -> None:
    """Wait until ``count`` views stream an image, then a little for the last frames."""
    browser.wait_for(
        "[...document.querySelectorAll('.layout-grid-item img')].filter(i => i.naturalWidth > 0)"
        f".length >= {count}",
        60,
    )
    time.sleep(settle_s)


def png_rgb(path: Path) -> np.ndarray:
    """A PNG file as an array (rows from the top, columns, RGB) of floats."""
    reader = vtk.vtkPNGReader()
    reader.SetFileName(str(path))
    reader.Update()
    image = reader.GetOutput()
    width, height, _ = image.GetDimensions()
    pixels = vtk_to_numpy(image.GetPointData().GetScalars()).reshape(height, width, -1)
    return np.flipud(pixels[:, :, :3]).astype(float)


def view_rectangles(browser: Browser) -> list[list[float]]:
    """Page rectangles ``[x, y, width, height]`` of every view of the layout, in page order."""
    return browser.evaluate(
        "[...document.querySelectorAll('.layout-grid-item')].map(e => {"
        " const r = e.getBoundingClientRect(); return [r.x, r.y, r.width, r.height]; })"
    )


def slice_view_rectangles(browser: Browser) -> dict[str, list[float]]:
    """Slice view name -> its page rectangle, for the views that carry a label."""
    return browser.evaluate(
        "Object.fromEntries([...document.querySelectorAll('.view-label')].map(e => {"
        " const r = e.closest('.layout-grid-item').getBoundingClientRect();"
        " return [e.dataset.view, [r.x, r.y, r.width, r.height]]; }))"
    )


def crop(pixels: np.ndarray, rectangle: list[float], margin: float = 0.0) -> np.ndarray:
    """The pixels inside a page rectangle, less a margin (fraction of its size) on each side."""
    x, y, width, height = rectangle
    return pixels[
        int(y + margin * height) : int(y + (1 - margin) * height),
        int(x + margin * width) : int(x + (1 - margin) * width),
    ]


def content_fraction(pixels: np.ndarray, rectangle: list[float]) -> float:
    """Share of a view's inner pixels (10 % margins left out) brighter than its background.

    An empty slice view is black; the label, the slider and the frame lie in the margins.
    A 3D view's background is a grey gradient, so "brighter" means clearly above the
    darkest tenth of the view.
    """
    inner = crop(pixels, rectangle, 0.1).max(axis=2)
    background = np.percentile(inner, 10)
    return float((inner > background + 40.0).mean())


def measurement(browser: Browser, key: str) -> str:
    """The measurement table's value cell for ``key`` (empty when the row is absent)."""
    return browser.evaluate(
        f"(() => {{ const c = document.querySelector('.measurement-value[data-key=\"{key}\"]');"
        " return c ? c.textContent.trim() : ''; })()"
    )


def wait_for_measurement(browser: Browser, key: str, other_than: str = "", timeout_s=60) -> str:
    """Wait until the value of ``key`` is shown (and differs from ``other_than``); return it."""
    return browser.wait_for(
        f"(() => {{ const c = document.querySelector('.measurement-value[data-key=\"{key}\"]');"
        f" const t = c ? c.textContent.trim() : ''; return t && t !== '{other_than}' ? t : ''; }})()",
        timeout_s,
    )


def value_of(shown: str) -> float:
    """The number of a shown value such as ``176.0 ° ± 1.3`` or ``-10.0 mm``."""
    return float(shown.split()[0].rstrip("°"))


def landmark_ras(browser: Browser, label: str) -> str:
    """The RAS text of a landmark row (empty while it is not placed)."""
    return browser.evaluate(
        "(() => { const row = [...document.querySelectorAll('.landmark-row')]"
        f".find(r => r.querySelector('td').textContent.trim() === '{label}');"
        " return row ? row.querySelector('.landmark-ras').textContent.trim() : ''; })()"
    )


def click_landmark_button(browser: Browser, label: str, button_class: str) -> None:
    """Click a button (``place-landmark``, ``move-r``, ...) of a landmark row."""
    browser.evaluate(f"document.querySelector('.{button_class}[data-label=\"{label}\"]').click()")


def press_and_release(browser: Browser, x_px: float, y_px: float) -> None:
    """A left click at a page position with no mouse move before it (as a touch tap gives)."""
    for kind in ("mousePressed", "mouseReleased"):
        browser.send(
            "Input.dispatchMouseEvent", type=kind, x=x_px, y=y_px, button="left", clickCount=1
        )

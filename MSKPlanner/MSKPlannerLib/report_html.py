"""The case report: one self-contained HTML page a surgeon can read.

The page is built from the plan (the same dictionary that is written as ``plan.json``) and a
list of figures (RGB pictures from :mod:`MSKPlannerLib.rendering`). Pictures are inlined as
base64 PNG, styles are inline, nothing is loaded from elsewhere, so the file can be mailed,
archived or opened offline. Every value shown comes from the plan; nothing is recomputed.
"""

from __future__ import annotations

import base64
import html
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from MSKPlannerLib.rendering import png_bytes
from MSKPriorsLib.records import shown_date

logger = logging.getLogger(__name__)

#: A parenthesised file path in a calibration detail; the page shows the series instead.
_PATH_IN_PARENTHESES = re.compile(r"\s*\([^()]*/[^()]*\)")

#: Plain words for the calibration methods of :class:`~MSKPlannerLib.measurement_table.Calibration`.
CALIBRATION_WORDS = {
    "volume_geometry": "CT/MR voxel geometry",
    "pixel_spacing": "Pixel Spacing tag (calibrated at the patient)",
    "imager_spacing_magnification": "detector spacing divided by the stated magnification",
    "calibration_ball": "calibration ball",
    "known_length": "two points of known distance",
    "fixed_magnification": "fixed magnification factor",
    "uncalibrated": "not calibrated",
}


@dataclass
class Figure:
    """One picture of the report.

    Attributes
    ----------
    section
        ``comparison``, ``bones`` or ``measurements``: where the picture goes.
    caption
        Plain-language caption.
    pictures
        One RGB picture (``(rows, columns, 3)``, ``uint8``), or several shown side by side
        (for example current and prior), each with its own sub-caption in ``labels``.
    labels
        Sub-captions of ``pictures``.
    """

    section: str
    caption: str
    pictures: list[npt.NDArray[np.uint8]] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)


STYLE = """
body { font-family: "DejaVu Sans", Arial, sans-serif; margin: 0; background: #f4f5f7;
       color: #1d232b; }
header { background: #1f2d3d; color: #fff; padding: 18px 28px; }
header h1 { margin: 0 0 6px 0; font-size: 22px; }
header .meta { font-size: 14px; opacity: 0.9; }
main { padding: 8px 28px 40px 28px; max-width: 1220px; }
section { background: #fff; border-radius: 6px; padding: 14px 20px; margin: 16px 0;
          box-shadow: 0 1px 3px rgba(0,0,0,0.12); }
h2 { font-size: 18px; margin: 4px 0 12px 0; color: #1f2d3d; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid #e1e4e8;
         vertical-align: top; overflow-wrap: anywhere; }
th { background: #eef1f5; }
td.value { font-weight: bold; white-space: nowrap; overflow-wrap: normal; }
td.nowrap { white-space: nowrap; overflow-wrap: normal; }
.warning { background: #fff4e5; border-left: 5px solid #e8890c; padding: 8px 12px;
           margin: 6px 0; font-size: 14px; }
.danger { background: #fdecea; border-left: 5px solid #d93025; }
.ok { background: #e8f5e9; border-left: 5px solid #34a853; padding: 8px 12px; font-size: 14px; }
.figures { display: flex; flex-wrap: wrap; gap: 18px; }
figure { margin: 0; }
figure .pair { display: flex; gap: 6px; align-items: flex-start; }
figure .pair div { text-align: center; font-size: 12px; color: #444; }
figure img { display: block; max-width: 100%; border: 1px solid #333; background: #000; }
figcaption { font-size: 13px; color: #333; margin-top: 6px; max-width: 820px; }
.small { font-size: 12px; color: #555; }
"""


def _e(value: Any) -> str:
    return html.escape(str(value))


def _img(picture: npt.NDArray[np.uint8], alt: str) -> str:
    data = base64.b64encode(png_bytes(picture)).decode("ascii")
    return (
        f'<img src="data:image/png;base64,{data}" alt="{_e(alt)}" '
        f'width="{picture.shape[1]}" height="{picture.shape[0]}">'
    )


def _figure_html(figure: Figure) -> str:
    parts = []
    for index, picture in enumerate(figure.pictures):
        label = figure.labels[index] if index < len(figure.labels) else ""
        parts.append(f"<div>{_img(picture, label or figure.caption)}{_e(label)}</div>")
    return (
        f'<figure><div class="pair">{"".join(parts)}</div>'
        f"<figcaption>{_e(figure.caption)}</figcaption></figure>"
    )


def _format_value(row: dict[str, Any]) -> str:
    value = float(row["value"])
    unit = row.get("unit", "")
    decimals = 1 if unit in ("deg", "mm") else 2
    shown_unit = "°" if unit == "deg" else f" {unit}"
    text = f"{value:.{decimals}f}{shown_unit}"
    if row.get("uncertainty") is not None:
        text += f" ± {float(row['uncertainty']):.{decimals}f}{shown_unit}"
    return text


def _calibration_text(calibration: dict[str, Any]) -> str:
    method = calibration.get("method", "")
    words = CALIBRATION_WORDS.get(method, method)
    spacing = calibration.get("mm_per_pixel")
    if spacing:
        words += f" ({float(spacing[0]):.3g} × {float(spacing[1]):.3g} mm/pixel)"
    detail = _PATH_IN_PARENTHESES.sub("", str(calibration.get("detail") or "")).strip()
    return f"{words}; {detail}" if detail else words


def _details_text(details: dict[str, Any]) -> str:
    shown = []
    for key, value in details.items():
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            shown.append(f"{key.replace('_', ' ')}: {value}")
    return "; ".join(shown)


def _measurement_section(measurements: dict[str, Any]) -> str:
    rows = measurements.get("rows", [])
    body = []
    for row in rows:
        body.append(
            "<tr>"
            f"<td>{_e(row['label'])}<div class='small'>{_e(row['definition'])}</div></td>"
            f"<td class='value'>{_e(_format_value(row))}</td>"
            f"<td class='nowrap'>{_e(row['method'])}</td>"
            f"<td>{_e(_calibration_text(row['calibration']))}</td>"
            f"<td class='small'>{_e(row.get('source_label') or row['source_image'])}"
            f"<div>{_e(_details_text(row.get('details', {})))}</div></td>"
            "</tr>"
        )
    table = (
        "<table><tr><th>Measurement</th><th>Value</th><th>Method</th><th>Calibration</th>"
        "<th>Image and details</th></tr>" + "".join(body) + "</table>"
        if body
        else "<p>No measurement could be made from the inputs.</p>"
    )
    missing = measurements.get("not_measured", {})
    if missing:
        items = "".join(
            f"<tr><td>{_e(key)}</td><td>{_e(reason)}</td></tr>" for key, reason in missing.items()
        )
        table += (
            "<h2 style='margin-top:16px'>Not measured</h2>"
            f"<table><tr><th>Measurement</th><th>What is missing</th></tr>{items}</table>"
        )
    return f"<section><h2>Measurements</h2>{table}</section>"


def _warnings_section(warnings: Sequence[dict[str, Any]]) -> str:
    if not warnings:
        return (
            "<section><h2>Warnings</h2><div class='ok'>No geometry or patient-matching "
            "problem was found.</div></section>"
        )
    items = []
    for warning in warnings:
        css = "warning danger" if warning.get("severity") == "high" else "warning"
        where = warning.get("where", "")
        items.append(
            f"<div class='{css}'>{_e(warning['message'])}"
            + (f"<div class='small'>{_e(where)}</div>" if where else "")
            + "</div>"
        )
    return f"<section><h2>Warnings</h2>{''.join(items)}</section>"


def _study_line(study: dict[str, Any]) -> str:
    date_text = shown_date(str(study.get("study_date", "")))
    modalities = ", ".join(study.get("modalities", [])) or "?"
    return f"{date_text} · {modalities} · {study.get('description') or 'no description'}"


def _studies_section(studies: dict[str, Any]) -> str:
    rows = []
    current = studies.get("current", {})
    rows.append(
        f"<tr><td>Current</td><td>{_e(_study_line(current.get('study', {})))}</td>"
        f"<td>{_e(current.get('why', ''))}</td></tr>"
    )
    for prior in studies.get("priors", []):
        status = "Prior, used" if prior.get("used") else "Prior, not loaded"
        rows.append(
            f"<tr><td>{status} (rank {prior.get('rank')})</td>"
            f"<td>{_e(_study_line(prior.get('study', {})))}</td>"
            f"<td>{_e(prior.get('why', ''))}</td></tr>"
        )
    for rejected in studies.get("rejected", []):
        rows.append(
            f"<tr><td>Rejected</td><td>{_e(_study_line(rejected.get('study', {})))}</td>"
            f"<td>{_e(rejected.get('reason', ''))}</td></tr>"
        )
    note = studies.get("prior_search", "")
    note_html = f"<div class='warning'>{_e(note)}</div>" if note else ""
    return (
        "<section><h2>Studies</h2>"
        "<table><tr><th>Role</th><th>Study</th><th>Why</th></tr>"
        + "".join(rows)
        + f"</table>{note_html}</section>"
    )


def _bone_checks(bone: dict[str, Any]) -> str:
    """The checks cell of one bone: failures first, then where it leaves the scan, then notes."""
    parts = [f"<b>failed:</b> {_e(warning)}" for warning in bone.get("warnings", [])]
    sides = bone.get("cut_by_volume_edge", [])
    if sides:
        parts.append(f"runs out of the scan ({_e(', '.join(sides))}): closed flat at the edge")
    parts += [_e(note) for note in bone.get("notes", [])]
    return "; ".join(parts) if parts else "passed"


def _reconstruction_section(reconstruction: Sequence[dict[str, Any]]) -> str:
    if not reconstruction:
        return ""
    blocks = []
    for item in reconstruction:
        rows = "".join(
            f"<tr><td style='white-space:nowrap'>{_e(bone['name'])}</td>"
            f"<td class='value'>{float(bone['volume_ml']):.1f}</td>"
            f"<td class='value'>{float(bone['area_cm2']):.1f}</td>"
            f"<td>{'yes' if bone.get('closed') else 'NO'}</td>"
            f"<td class='small'>{_bone_checks(bone)}</td></tr>"
            for bone in item.get("bones", [])
        )
        blocks.append(
            f"<h3 style='font-size:15px'>{_e(item.get('title', item.get('series_uid', '')))}</h3>"
            "<table><tr><th>Bone</th><th>Volume (ml)</th><th>Surface area (cm²)</th>"
            f"<th>Closed surface</th><th>Checks</th></tr>{rows}</table>"
        )
    return f"<section><h2>Bone reconstruction</h2>{''.join(blocks)}</section>"


def _figures_section(title: str, figures: Sequence[Figure], intro: str = "") -> str:
    if not figures:
        return ""
    intro_html = f"<p class='small'>{_e(intro)}</p>" if intro else ""
    body = "".join(_figure_html(figure) for figure in figures)
    return f"<section><h2>{_e(title)}</h2>{intro_html}<div class='figures'>{body}</div></section>"


def _files_section(files: dict[str, Any]) -> str:
    rows = []
    for kind, value in files.items():
        values = value if isinstance(value, list) else [value]
        shown = ", ".join(str(v) for v in values[:12])
        if len(values) > 12:
            shown += f" and {len(values) - 12} more"
        rows.append(f"<tr><td>{_e(kind)}</td><td class='small'>{_e(shown)}</td></tr>")
    return (
        "<section><h2>Files written</h2><table><tr><th>Kind</th><th>Files (relative to the "
        f"output folder)</th></tr>{''.join(rows)}</table></section>"
    )


def build_report_html(
    plan: dict[str, Any], figures: Sequence[Figure], title: str = "Case plan"
) -> str:
    """Return the report page as one HTML string.

    Parameters
    ----------
    plan
        The plan with keys ``studies``, ``warnings``, ``measurements``, ``reconstruction``
        and ``files``, as written to ``plan.json``.
    figures
        Pictures to show; their ``section`` decides where.
    title
        Page title.
    """
    current = plan.get("studies", {}).get("current", {}).get("study", {})
    patient = current.get("patient", {})
    name = str(patient.get("name", "")).replace("^", " ").strip()
    meta = " · ".join(
        part
        for part in (
            f"Patient ID {patient.get('patient_id') or '(empty)'}",
            name,
            f"born {shown_date(str(patient['birth_date']))}" if patient.get("birth_date") else "",
            f"current study {_study_line(current)}",
        )
        if part
    )
    by_section: dict[str, list[Figure]] = {}
    for figure in figures:
        by_section.setdefault(figure.section, []).append(figure)
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{_e(title)}</title><style>{STYLE}</style></head><body>",
        f"<header><h1>{_e(title)}</h1><div class='meta'>{_e(meta)}</div></header><main>",
        _warnings_section(plan.get("warnings", [])),
        _studies_section(plan.get("studies", {})),
        _figures_section(
            "Current and prior",
            by_section.get("comparison", []),
            "Same plane in both studies; the prior is shown after rigid registration to the "
            "current CT. Radiological convention: the patient's right is on the left.",
        ),
        _figures_section(
            "3D bone reconstruction",
            by_section.get("bones", []),
            "Surfaces seen from the front (patient's right on the left, head up).",
        ),
        _figures_section("Measurement overlays", by_section.get("measurements", [])),
        _measurement_section(plan.get("measurements", {})),
        _reconstruction_section(plan.get("reconstruction", [])),
        _files_section(plan.get("files", {})),
        "</main></body></html>",
    ]
    return "".join(parts)


def write_report(
    path: Path, plan: dict[str, Any], figures: Sequence[Figure], title: str = "Case plan"
) -> Path:
    """Write :func:`build_report_html` to ``path`` (UTF-8) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(build_report_html(plan, figures, title), encoding="utf-8")
    logger.info("report written to %s", path)
    return path

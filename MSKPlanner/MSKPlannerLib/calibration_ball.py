"""Calibration ball: find the shadow of a ball of known diameter and calibrate from it.

Public API (also re-exported by :mod:`MSKPlannerLib.calibration`)
-----------------------------------------------------------------
- :class:`BallDetection`: the circle found (centre, radii along rows and columns, fit quality),
  for the user to accept.
- :func:`detect_calibration_ball`: gradient-direction voting (a Hough transform for circles)
  on a reduced image, then a sub-pixel outline at full resolution (steepest edge on 360 rays)
  and a least-squares ellipse with axes along rows and columns, so non-square pixels are
  measured per axis.
- :func:`ball_calibration`: ``(row, column)`` mm per pixel from an accepted detection.
- :class:`CalibrationError`: raised when a calibration cannot be made.

Pixel positions are ``(row, column)`` with (0, 0) the centre of the first pixel.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from MSKPlannerLib.measurement_table import Calibration

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]

DEFAULT_BALL_DIAMETER_MM = 25.0


class CalibrationError(ValueError):
    """A calibration cannot be made; the message names the image and the reason."""


@dataclass(frozen=True)
class BallDetection:
    """A calibration ball found in an image, for the user to accept or reject.

    Attributes
    ----------
    center_rc
        Centre ``(row, column)`` in pixels.
    radius_rc
        Radii ``(along rows, along columns)`` in pixels; they differ for non-square pixels.
    edge_rms_px
        RMS distance of the edge points to the fitted outline, in pixels.
    score
        Fraction of the outline (0 to 1) where a clear edge of the expected polarity was found.
    n_edge_points
        Number of edge points used in the final fit.
    """

    center_rc: tuple[float, float]
    radius_rc: tuple[float, float]
    edge_rms_px: float
    score: float
    n_edge_points: int

    @property
    def plausible(self) -> bool:
        """Whether the outline looks like a ball: a regular edge found around most of it."""
        return self.edge_rms_px < 1.0 and self.score > 0.6

    @property
    def radius_px(self) -> float:
        """Mean radius in pixels."""
        return 0.5 * (self.radius_rc[0] + self.radius_rc[1])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values."""
        return {
            "center_row_col_px": [round(v, 3) for v in self.center_rc],
            "radius_px": round(self.radius_px, 3),
            "radius_row_col_px": [round(v, 3) for v in self.radius_rc],
            "edge_rms_px": round(self.edge_rms_px, 4),
            "score": round(self.score, 4),
            "plausible": self.plausible,
        }


def _coarse_circle(
    image: FloatArray, radius_range_px: tuple[float, float]
) -> list[tuple[float, float, float]]:
    """Candidate circles ``(row, col, radius)`` by gradient-direction voting (Hough)."""
    rows_grad = ndimage.sobel(image, axis=0)
    cols_grad = ndimage.sobel(image, axis=1)
    magnitude = np.hypot(rows_grad, cols_grad)
    threshold = np.percentile(magnitude, 96.0)
    edge_r, edge_c = np.nonzero(magnitude > max(threshold, 1e-12))
    if len(edge_r) == 0:
        return []
    if len(edge_r) > 40000:
        keep = np.random.default_rng(0).choice(len(edge_r), 40000, replace=False)
        edge_r, edge_c = edge_r[keep], edge_c[keep]
    unit_r = rows_grad[edge_r, edge_c] / magnitude[edge_r, edge_c]
    unit_c = cols_grad[edge_r, edge_c] / magnitude[edge_r, edge_c]
    radii = np.arange(max(2.0, radius_range_px[0]), radius_range_px[1] + 1.0, 1.0)
    accumulator = np.zeros(image.shape, dtype=np.float64)
    for radius in radii:
        for sign in (1.0, -1.0):
            centre_r = np.rint(edge_r + sign * radius * unit_r).astype(int)
            centre_c = np.rint(edge_c + sign * radius * unit_c).astype(int)
            inside = (
                (centre_r >= 0)
                & (centre_r < image.shape[0])
                & (centre_c >= 0)
                & (centre_c < image.shape[1])
            )
            # Larger circles collect more votes; weight by 1/r so sizes compete fairly.
            np.add.at(accumulator, (centre_r[inside], centre_c[inside]), 1.0 / radius)
    accumulator = ndimage.gaussian_filter(accumulator, 1.0)
    peaks = (accumulator == ndimage.maximum_filter(accumulator, size=5)) & (accumulator > 0)
    order = np.argsort(accumulator[peaks])[::-1][:8]
    peak_r, peak_c = np.nonzero(peaks)
    candidates = []
    for index in order:
        r0, c0 = float(peak_r[index]), float(peak_c[index])
        distance = np.hypot(edge_r - r0, edge_c - c0)
        radial = ((edge_r - r0) * unit_r + (edge_c - c0) * unit_c) / np.maximum(distance, 1e-9)
        aligned = (np.abs(radial) > 0.9) & (distance >= radii[0]) & (distance <= radii[-1])
        if not aligned.any():
            continue
        histogram, bins = np.histogram(
            distance[aligned], bins=np.arange(radii[0] - 0.5, radii[-1] + 1.5, 1.0)
        )
        # Normalise by circumference so a radius is chosen by edge density, not length.
        centres = 0.5 * (bins[:-1] + bins[1:])
        best = int(np.argmax(histogram / centres))
        candidates.append((r0, c0, float(centres[best])))
    return candidates


def _refine(
    image: FloatArray, center_rc: tuple[float, float], radius_px: float, n_rays: int = 360
) -> BallDetection | None:
    """Sub-pixel outline of a bright or dark disk near a first guess."""
    angles = np.linspace(0.0, 2.0 * np.pi, n_rays, endpoint=False)
    steps = np.arange(0.6, 1.4, 0.25 / max(radius_px, 1.0))
    center = np.asarray(center_rc, dtype=float)
    radii = np.array([radius_px, radius_px])
    best: BallDetection | None = None
    for _ in range(3):
        rows = center[0] + np.outer(np.sin(angles), steps * radii[0])
        cols = center[1] + np.outer(np.cos(angles), steps * radii[1])
        profiles = ndimage.map_coordinates(image, [rows, cols], order=1, mode="nearest")
        derivative = np.gradient(profiles, axis=1)
        inside = profiles[:, : len(steps) // 4].mean()
        outside = profiles[:, -len(steps) // 4 :].mean()
        polarity = -1.0 if inside > outside else 1.0
        signed = polarity * derivative
        index = np.argmax(signed, axis=1)
        strong = signed[np.arange(n_rays), index]
        contrast = abs(inside - outside)
        ok = (index > 0) & (index < len(steps) - 1) & (strong > 0.25 * np.median(strong))
        if contrast <= 0 or ok.sum() < 12:
            return best
        i = index[ok]
        left, mid, right = (signed[ok, i - 1], signed[ok, i], signed[ok, i + 1])
        denominator = left - 2.0 * mid + right
        shift = np.where(np.abs(denominator) > 1e-12, 0.5 * (left - right) / denominator, 0.0)
        position = np.interp(i + np.clip(shift, -1, 1), np.arange(len(steps)), steps)
        edge_r = center[0] + np.sin(angles[ok]) * position * radii[0]
        edge_c = center[1] + np.cos(angles[ok]) * position * radii[1]
        fit = _fit_axis_aligned_ellipse(edge_r, edge_c)
        if fit is None:
            return best
        (r0, c0, a_r, a_c), residual = fit
        # Drop outliers (other structures crossing the outline) and fit again.
        keep = np.abs(residual) < max(3.0 * np.median(np.abs(residual)) * 1.4826, 0.5)
        if keep.sum() >= 12:
            refit = _fit_axis_aligned_ellipse(edge_r[keep], edge_c[keep])
            if refit is not None:
                (r0, c0, a_r, a_c), residual = refit
        center = np.array([r0, c0])
        radii = np.array([a_r, a_c])
        best = BallDetection(
            center_rc=(float(r0), float(c0)),
            radius_rc=(float(a_r), float(a_c)),
            edge_rms_px=float(np.sqrt(np.mean(residual**2))),
            score=float(keep.sum() / n_rays) if keep.sum() >= 12 else float(ok.mean()),
            n_edge_points=len(residual),
        )
    return best


def _fit_axis_aligned_ellipse(
    rows: FloatArray, cols: FloatArray
) -> tuple[tuple[float, float, float, float], FloatArray] | None:
    """Least-squares ellipse with axes along rows and columns; residuals in pixels."""
    r_mean, c_mean = rows.mean(), cols.mean()
    r, c = rows - r_mean, cols - c_mean
    design = np.column_stack([r**2, c**2, r, c])
    solution, *_ = np.linalg.lstsq(design, np.ones(len(r)), rcond=None)
    a, b, d, e = solution
    if a <= 0 or b <= 0:
        return None
    r0, c0 = -d / (2 * a), -e / (2 * b)
    g = 1.0 + a * r0**2 + b * c0**2
    if g <= 0:
        return None
    a_r, a_c = float(np.sqrt(g / a)), float(np.sqrt(g / b))
    scaled = np.hypot((r - r0) / a_r, (c - c0) / a_c)
    residual = (scaled - 1.0) * 0.5 * (a_r + a_c)
    return (float(r0 + r_mean), float(c0 + c_mean), a_r, a_c), residual


def detect_calibration_ball(
    pixels: npt.ArrayLike,
    radius_range_px: tuple[float, float] | None = None,
    roi_rc: tuple[int, int, int, int] | None = None,
) -> BallDetection:
    """Find the most circular disk (a calibration ball's shadow) in a radiograph.

    Parameters
    ----------
    pixels
        2D image (rows, columns); any polarity (the ball may be brighter or darker).
    radius_range_px
        Smallest and largest radius to look for, in pixels; by default 4 pixels to a quarter
        of the smaller image side.
    roi_rc
        ``(row0, col0, row1, col1)``: search only this region (pixel bounds, end exclusive).

    Returns
    -------
    BallDetection
        Centre and radii to sub-pixel precision in full-image pixel coordinates, with a score;
        the caller shows it to the user, who accepts or rejects it.

    Raises
    ------
    CalibrationError
        When no disk-shaped object is found.
    """
    image = np.asarray(pixels, dtype=np.float64)
    if image.ndim != 2:
        raise CalibrationError(f"ball detection needs a 2D image, got shape {image.shape}")
    offset = np.zeros(2)
    if roi_rc is not None:
        r0, c0, r1, c1 = roi_rc
        image = image[r0:r1, c0:c1]
        offset = np.array([r0, c0], dtype=float)
    low, high = np.percentile(image, [0.5, 99.5])
    image = np.clip((image - low) / max(high - low, 1e-12), 0.0, 1.0)
    if radius_range_px is None:
        radius_range_px = (4.0, min(image.shape) / 4.0)

    # Vote on a reduced image (at most 512 pixels a side), refine at full resolution.
    factor = max(1, int(np.ceil(max(image.shape) / 512)))
    small = ndimage.gaussian_filter(image, 0.6 * factor)[::factor, ::factor]
    small = ndimage.gaussian_filter(small, 1.0)
    small_range = (radius_range_px[0] / factor, radius_range_px[1] / factor)
    candidates = _coarse_circle(small, small_range)
    smooth = ndimage.gaussian_filter(image, 1.0)
    best: BallDetection | None = None
    for row, col, radius in candidates:
        found = _refine(smooth, (row * factor, col * factor), radius * factor)
        if found is None:
            continue
        if not (radius_range_px[0] * 0.9 <= found.radius_px <= radius_range_px[1] * 1.1):
            continue
        quality = found.score / (1.0 + found.edge_rms_px)
        if best is None or quality > best.score / (1.0 + best.edge_rms_px):
            best = found
    if best is None:
        raise CalibrationError("no disk-shaped object (calibration ball) was found")
    if offset.any():
        best = BallDetection(
            center_rc=(best.center_rc[0] + offset[0], best.center_rc[1] + offset[1]),
            radius_rc=best.radius_rc,
            edge_rms_px=best.edge_rms_px,
            score=best.score,
            n_edge_points=best.n_edge_points,
        )
    logger.debug("ball found: %s", best.to_dict())
    return best


def ball_calibration(
    detection: BallDetection,
    diameter_mm: float = DEFAULT_BALL_DIAMETER_MM,
    source: str = "",
) -> Calibration:
    """Calibration from an accepted ball detection.

    Parameters
    ----------
    detection
        The ball found by :func:`detect_calibration_ball` and accepted by the user.
    diameter_mm
        True diameter of the ball (25 mm by default).
    source
        File or SOP Instance UID, for the detail text.

    Returns
    -------
    Calibration
        ``calibration_ball``; the scale applies in the plane of the ball, which should be
        placed at the height of the anatomy measured.

    Raises
    ------
    CalibrationError
        When the diameter is not positive, or when the detection is not plausible
        (:attr:`BallDetection.plausible`): an irregular outline is not turned into a scale.
    """
    if not diameter_mm > 0:
        raise CalibrationError(f"the ball diameter must be positive, not {diameter_mm}")
    if not detection.plausible:
        centre_text = ", ".join(f"{v:.0f}" for v in detection.center_rc)
        raise CalibrationError(
            f"{source or 'the image'}: the circle found at pixel ({centre_text}), radius "
            f"{detection.radius_px:.1f} px, is not a plausible calibration ball (edge RMS "
            f"{detection.edge_rms_px:.2f} px, edge found around {detection.score:.0%} of it; a "
            "ball needs an RMS below 1 px and more than 60%), so no calibration was made"
        )
    spacing = (
        diameter_mm / (2.0 * detection.radius_rc[0]),
        diameter_mm / (2.0 * detection.radius_rc[1]),
    )
    centre = ", ".join(f"{v:.1f}" for v in detection.center_rc)
    return Calibration(
        method="calibration_ball",
        mm_per_pixel=spacing,
        detail=f"{diameter_mm:g} mm ball at pixel ({centre}), radius "
        f"{detection.radius_px:.2f} px ({source or 'image'})",
    )

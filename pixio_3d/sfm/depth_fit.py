"""Dense depth that agrees with the cameras: each view's network depth fitted to the
bundle-adjusted points it sees.

The network's depth is a prior: smooth and complete, but at CPU scale no better than a constant
in absolute terms. The bundle adjustment's points are few but exact in the adjusted cameras'
frame. Per view, :func:`fit_view_depth` fits

1. a scale (``MIN_POINTS`` points) or a scale and shift, ``z_fit = a * z_net + b``
   (``MIN_POINTS_SHIFT``; a robust least-squares fit: Cauchy-weighted iterations on relative
   residuals), and
2. with at least ``MIN_POINTS_SMOOTH`` points, a smooth low-frequency correction: a
   multiplicative field on a coarse ``grid`` of control points, interpolated bilinearly over the
   image and pulled toward 1 (ridge), fitted to the remaining log ratios,

keeping the richest of these that 3-fold cross-validation on the points supports. No pixel's
correction (fitted over network depth) goes outside the range the fit applies at most of the
points (2nd..98th percentile), so a shift fitted to a narrow band of depths does not
extrapolate. Views with
fewer than ``MIN_POINTS`` points keep the network's depth. The fit reports the median absolute
relative error of the depth at the points before and after (in-sample).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from pixio_3d.sfm.bundle_adjust import SparseDepth, sample_depth

__all__ = ["DepthFit", "fit_depth_to_points", "fit_view_depth"]

MIN_POINTS = 3  # a scale
MIN_POINTS_SHIFT = 12  # a scale and a shift
MIN_POINTS_SMOOTH = 60  # and the low-frequency correction
SMOOTH_GRID = (3, 4)  # control points (rows, columns)
SMOOTH_RIDGE = 0.5  # pull of the correction toward 1 (per control point, in log units)
IRLS_ROUNDS = 5
SUPPORTED_PERCENTILES = (2.0, 98.0)  # the range of corrections a fit may apply


class DepthFit(NamedTuple):
    """What the fit of one view did: ``points`` used, ``scale`` and ``shift`` (metres),
    whether the smooth correction ran, the median absolute relative depth error at the points
    ``before`` and ``after``, and the ``model`` cross-validation chose."""

    points: int
    scale: float
    shift: float
    smooth: bool
    before: float
    after: float
    model: str = "none"


def _median(values: np.ndarray) -> float:
    """``np.median`` of a finite 1-D array, the same value without its generic machinery
    (the fits below take ~1,000 medians of a few hundred values per 16-view call)."""
    half = len(values) // 2
    if len(values) % 2:
        return float(np.partition(values, half)[half])
    middle = np.partition(values, (half - 1, half))
    return float((middle[half - 1] + middle[half]) / 2)


def _robust_affine(network: np.ndarray, target: np.ndarray, shift: bool) -> tuple[float, float]:
    """``(a, b)`` with ``target ~ a * network + b``: least squares weighted by a Cauchy weight of
    the relative residuals, a few rounds; ``a`` kept positive."""
    weights = np.ones_like(target)
    a, b = _median(target / network), 0.0
    for _ in range(IRLS_ROUNDS):
        w = weights / target  # relative residuals: divide by the depth
        if shift:  # weighted least squares of [network, 1]: the 2x2 normal equations
            w2 = w * w
            s1, sx, sy = w2.sum(), w2 @ network, w2 @ target
            sxx, sxy = w2 @ (network * network), w2 @ (network * target)
            det = s1 * sxx - sx * sx
            if not det > 1e-12 * s1 * sxx:  # one network depth only: no shift can be told
                a, b = 0.0, 0.0
            else:
                a, b = float((s1 * sxy - sx * sy) / det), float((sxx * sy - sx * sxy) / det)
        else:
            a, b = float(np.sum(w * w * network * target) / np.sum(w * w * network**2)), 0.0
        if not a > 0:  # a degenerate shift: fall back to a scale
            a, b, shift = _median(target / network), 0.0, False
        residual = (a * network + b - target) / target
        sigma = max(_median(np.abs(residual)) * 1.4826, 1e-4)
        weights = 1.0 / (1.0 + (residual / sigma) ** 2)
    return a, b


def _axis_weights(coords: np.ndarray, extent: int, controls: int) -> np.ndarray:
    """``(n, controls)`` linear interpolation weights of positions ``coords (n,)`` along one
    image axis of ``extent`` pixels on ``controls`` evenly spaced control points spanning it
    (two distinct control points per position: ``controls >= 2``)."""
    g = np.clip(coords / extent * (controls - 1), 0, controls - 1)
    low = np.minimum(np.floor(g).astype(int), controls - 2)
    weights = np.zeros((len(coords), controls))
    rows = np.arange(len(coords))
    weights[rows, low] = 1 - (g - low)
    weights[rows, low + 1] = g - low
    return weights


def _bilinear_weights(pixels: np.ndarray, size: tuple[int, int], grid: tuple[int, int]):
    """``(n, gh * gw)`` bilinear interpolation weights of ``pixels (n, 2)`` (x, y) on a grid of
    control points spanning an image of ``size = (height, width)``: per pixel the product of
    its row's and its column's :func:`_axis_weights`."""
    rows = _axis_weights(pixels[:, 1], size[0], grid[0])
    cols = _axis_weights(pixels[:, 0], size[1], grid[1])
    return (rows[:, :, None] * cols[:, None, :]).reshape(len(pixels), -1)


def _dense_field(field: np.ndarray, size: tuple[int, int], grid: tuple[int, int]) -> np.ndarray:
    """The control points' ``field (gh * gw,)`` interpolated bilinearly at every pixel centre of
    an image of ``size = (height, width)``: :func:`_bilinear_weights` of all pixels, as two
    separable products (the weights of a pixel are its row's times its column's)."""
    centres = [np.arange(length) + 0.5 for length in size]
    rows = _axis_weights(centres[0], size[0], grid[0])
    cols = _axis_weights(centres[1], size[1], grid[1])
    return rows @ field.reshape(grid) @ cols.T


MODELS = ("none", "scale", "affine", "smooth")  # each adds to the one before


def _fit(
    model: str, network: np.ndarray, target: np.ndarray, pixels: np.ndarray, size, grid
) -> tuple[float, float, np.ndarray | None]:
    """``(a, b, field)`` of ``model`` fitted to the points (``field``: log correction at the
    control points, smooth only)."""
    if model == "none":
        return 1.0, 0.0, None
    a, b = _robust_affine(network, target, shift=model in ("affine", "smooth"))
    if model != "smooth":
        return a, b, None
    return a, b, _smooth_field(a, b, network, target, pixels, size, grid)


def _smooth_field(a, b, network, target, pixels, size, grid) -> np.ndarray:
    """The smooth model's log correction at the control points, on top of ``a, b``."""
    weights = _bilinear_weights(pixels, size, grid)
    log_ratio = np.log(target / np.maximum(a * network + b, 1e-9))
    lhs = weights.T @ weights + SMOOTH_RIDGE * np.eye(weights.shape[1])
    return np.linalg.solve(lhs, weights.T @ log_ratio)


def _fits(models, network, target, pixels, size, grid) -> dict[str, tuple]:
    """:func:`_fit` of each of ``models`` on the same points; the smooth model starts from the
    affine one's scale and shift (the same robust fit), so that is fitted once."""
    fits: dict[str, tuple] = {}
    for model in models:
        if model == "smooth" and "affine" in fits:
            a, b, _ = fits["affine"]
            fits[model] = (a, b, _smooth_field(a, b, network, target, pixels, size, grid))
        else:
            fits[model] = _fit(model, network, target, pixels, size, grid)
    return fits


def _apply(a, b, field, network, pixels, size, grid) -> np.ndarray:
    values = a * network + b
    if field is not None:
        values = values * np.exp(_bilinear_weights(pixels, size, grid) @ field)
    return values


def _candidates(count: int, allowed: tuple[str, ...] = MODELS) -> list[str]:
    models = ["none"]
    if count >= MIN_POINTS:
        models.append("scale")
    if count >= MIN_POINTS_SHIFT:
        models.append("affine")
    if count >= MIN_POINTS_SMOOTH:
        models.append("smooth")
    return [m for m in models if m in allowed]


def _cross_validated_errors(
    models, network, target, pixels, size, grid, folds: int = 3
) -> dict[str, float]:
    """Median relative error of each of ``models`` on held-out points (``folds``-fold)."""
    order = np.random.default_rng(0).permutation(len(target))
    errors: dict[str, list[np.ndarray]] = {model: [] for model in models}
    for fold in range(folds):
        test = order[fold::folds]
        train = np.setdiff1d(order, test)
        if len(train) < MIN_POINTS or not len(test):
            continue
        fits = _fits(models, network[train], target[train], pixels[train], size, grid)
        for model, (a, b, field) in fits.items():
            predicted = _apply(a, b, field, network[test], pixels[test], size, grid)
            errors[model].append(np.abs(predicted - target[test]) / target[test])
    return {
        model: float(np.median(np.concatenate(e))) if e else float("inf")
        for model, e in errors.items()
    }


def fit_view_depth(
    depth: np.ndarray,
    pixels: np.ndarray,
    z: np.ndarray,
    grid: tuple[int, int] = SMOOTH_GRID,
    models: tuple[str, ...] = MODELS,
) -> tuple[np.ndarray, DepthFit]:
    """Fit one view's ``depth (H, W)`` to the points seen at ``pixels (n, 2)`` with z-depth
    ``z (n,)``. The model (none, scale, scale + shift, + smooth correction; the richer ones
    only with enough points) is chosen by 3-fold cross-validation on the points: the one whose
    held-out median relative error is lowest, so a fit that would bend the depth where no
    point is (the points of one object extrapolated to the walls) loses to a plain scale.
    ``models`` limits the choice. Returns the fitted depth (positive where the network's was)
    and what was done."""
    network = sample_depth(depth, pixels)
    usable = np.isfinite(network) & (network > 0) & np.isfinite(z) & (z > 0)
    network, target, pixels = network[usable], z[usable], pixels[usable]
    count = int(usable.sum())
    before = float(np.median(np.abs(network - target) / target)) if count else float("nan")
    candidates = _candidates(count, models)
    if len(candidates) == 1:
        return depth.copy(), DepthFit(count, 1.0, 0.0, False, before, before)
    size = depth.shape
    scores = _cross_validated_errors(candidates, network, target, pixels, size, grid)
    model = min(candidates, key=lambda m: (scores[m], MODELS.index(m)))
    a, b, field = _fit(model, network, target, pixels, size, grid)
    fitted = a * depth + b
    if field is not None:
        fitted = fitted * np.exp(_dense_field(field, size, grid))
    # no pixel is corrected by more than most points are (2nd..98th percentile): a shift and
    # a field fitted to a few near outliers extrapolate (one benchmark view reached 1,744 m in
    # a 6 m room)
    supported = _apply(a, b, field, network, pixels, size, grid) / network
    low, high = np.maximum(np.percentile(supported, SUPPORTED_PERCENTILES), 1e-6)
    with np.errstate(divide="ignore", invalid="ignore"):
        fitted = depth * np.clip(fitted / depth, low, high)
    floor = 0.05 * float(np.median(target))
    fitted = np.where(depth > 0, np.maximum(fitted, floor), 0.0)
    after_values = sample_depth(fitted, pixels)
    after = float(np.median(np.abs(after_values - target) / target))
    return fitted, DepthFit(count, a, b, model == "smooth", before, after, model)


def fit_depth_to_points(
    depth_z: np.ndarray,
    sparse: SparseDepth,
    grid: tuple[int, int] = SMOOTH_GRID,
    models: tuple[str, ...] = MODELS,
) -> tuple[np.ndarray, list[DepthFit]]:
    """:func:`fit_view_depth` for every view of ``depth_z (V, H, W)`` with the points of
    ``sparse`` that view sees. Returns the fitted depths and one :class:`DepthFit` per view."""
    fitted, report = np.empty_like(depth_z), []
    for view in range(depth_z.shape[0]):
        here = sparse.views == view
        fitted[view], fit = fit_view_depth(
            depth_z[view], sparse.pixels[here], sparse.z[here], grid, models
        )
        report.append(fit)
    return fitted, report

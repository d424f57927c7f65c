"""Multi-view consistency: a pixel's depth is kept where the other views that see its point agree.

For every pixel of view ``i`` the point ``X = cam2world_i (z K_i^-1 [u, v, 1])`` is projected
into every other view ``j``. When it lands inside ``j``'s image, in front of the camera and not
behind ``j``'s own surface there (then it is occluded in ``j``), ``j`` *sees* it; ``j``
*agrees* when its depth there is within ``rel_tol`` of the projected z. A point well in front of
``j``'s surface contradicts it (``j`` would have seen the point). The support of a pixel is

    support = (agreeing views + 0.5) / (seeing views + 1)

a Laplace-smoothed fraction: 0.5 for a pixel no other view sees (unverified), 0.75 when the one
view that sees it agrees, 0.25 when it does not, toward 1 or 0 with more views. A pixel is kept
when its support is at least 0.5: every unverified pixel, and those that at least half of the
views that see them agree with. :meth:`Consistency.kept` gives the masks of the three modes of
``FUSION_MODES``: ``consistent`` (that rule, ``pixio-recon``'s default), ``verified`` (only the
pixels another view sees and agrees with: more accurate, less complete; a single view keeps all
its pixels) and ``all`` (no filtering).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from pixio_3d.sfm.settings import FUSION_MODES

__all__ = ["FUSION_MODES", "Consistency", "consistency"]

REL_TOL = 0.05
KEEP = 0.5


class Consistency(NamedTuple):
    """``seen (V, H, W)`` and ``agree (V, H, W)`` counts of other views, ``support (V, H, W)``
    in [0, 1] and ``keep (V, H, W)`` (support >= 0.5 and a valid depth)."""

    seen: np.ndarray
    agree: np.ndarray
    support: np.ndarray
    keep: np.ndarray

    def kept(self, mode: str = "consistent") -> np.ndarray:
        """The ``(V, H, W)`` pixels a fusion ``mode`` of :data:`FUSION_MODES` keeps."""
        if mode == "consistent":
            return self.keep
        if mode == "verified":
            if self.keep.shape[0] == 1:  # nothing to verify a single view against
                return self.keep
            return self.keep & (self.seen > 0)
        if mode == "all":
            return np.ones_like(self.keep)
        raise ValueError(f"fusion mode must be one of {FUSION_MODES}, got {mode!r}")


def consistency(
    depth_z: np.ndarray,
    intrinsics: np.ndarray,
    cam2world: np.ndarray,
    rel_tol: float = REL_TOL,
) -> Consistency:
    """Multi-view support of every pixel of ``depth_z (V, H, W)`` (metric z-depth, 0 or
    non-finite = invalid) seen by cameras ``intrinsics (V, 3, 3)`` / ``cam2world (V, 4, 4)``
    (OpenCV, pixel centres at +0.5). A point that projects *in front of* another view's surface
    by more than ``rel_tol`` contradicts it (that view would see the point, not its surface);
    one *behind* it is occluded there and does not count as seen."""
    views, height, width = depth_z.shape
    valid = np.isfinite(depth_z) & (depth_z > 0)
    cols, rows = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    pixels = np.stack([cols.reshape(-1), rows.reshape(-1), np.ones(cols.size)])  # (3, HW)
    seen = np.zeros((views, height * width), np.int32)
    agree = np.zeros((views, height * width), np.int32)
    world2cam = np.linalg.inv(cam2world)
    surfaces = np.where(valid, depth_z, np.nan).reshape(views, -1)  # NaN: no surface there
    # points as (3, n) and contiguous 3x3 factors: numpy's (n, 3) @ (3, 3).T is ~4x slower
    for i in range(views):
        index_i = np.flatnonzero(valid[i].reshape(-1))
        z = depth_z[i].reshape(-1)[index_i]
        local = (np.linalg.inv(intrinsics[i]) @ pixels[:, index_i]) * z  # (3, n) camera i
        for j in range(views):
            if j == i:
                continue
            relative = world2cam[j] @ cam2world[i]  # camera i -> camera j, then pixels of j
            projected = (intrinsics[j] @ relative[:3, :3]) @ local
            projected += (intrinsics[j] @ relative[:3, 3])[:, None]
            zj = projected[2]
            with np.errstate(divide="ignore", invalid="ignore"):
                u, v = projected[0] / zj, projected[1] / zj
            inside = (zj > 1e-9) & (u >= 0) & (u < width) & (v >= 0) & (v < height)
            index = np.flatnonzero(inside)
            surface = surfaces[j, v[index].astype(np.int64) * width + u[index].astype(np.int64)]
            with np.errstate(invalid="ignore"):  # NaN surface: neither counts nor agrees
                difference = (zj[index] - surface) / surface
                counts = difference <= rel_tol  # further behind j's surface: occluded there
                agrees = counts & (difference >= -rel_tol)
            target = index_i[index]
            seen[i, target[counts]] += 1
            agree[i, target[agrees]] += 1
    seen, agree = seen.reshape(views, height, width), agree.reshape(views, height, width)
    support = (agree + 0.5) / (seen + 1.0)
    return Consistency(seen, agree, support, valid & (support >= KEEP))

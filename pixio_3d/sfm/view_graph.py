"""The view graph of the ``features`` solver: verified view pairs as edges, chained into one
frame by a maximum spanning tree grown from view 0 (Prim; edge weight: inlier count)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

__all__ = ["ViewPair", "chain_view_graph"]


class ViewPair(NamedTuple):
    """A verified view pair: an edge of the view graph."""

    inliers: int
    i: int
    j: int
    j_from_i: np.ndarray  # cam_j_from_cam_i, metric translation
    matches: np.ndarray  # (n, 2) inlier keypoint indices into views i and j


def chain_view_graph(
    edges: Sequence[ViewPair], views: int
) -> tuple[dict[int, np.ndarray], np.ndarray]:
    """Camera-to-world poses ``{view: (4, 4)}`` in the frame of view 0 (the identity) of every
    view the edges reach from view 0, each placed by the strongest edge from the views placed
    before it, and the inlier count of that edge per view ``(views,)`` (0 for view 0 and for
    views not reached)."""
    cam2world = {0: np.eye(4)}
    placed_by = np.zeros(views, np.int64)
    while True:  # Prim: the strongest edge from the placed views to a new one
        frontier = [e for e in edges if (e.i in cam2world) != (e.j in cam2world)]
        if not frontier:
            break
        edge = max(frontier, key=lambda e: e.inliers)
        if edge.i in cam2world:
            cam2world[edge.j] = cam2world[edge.i] @ np.linalg.inv(edge.j_from_i)
            placed_by[edge.j] = edge.inliers
        else:
            cam2world[edge.i] = cam2world[edge.j] @ edge.j_from_i
            placed_by[edge.i] = edge.inliers
    return cam2world, placed_by

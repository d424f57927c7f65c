"""The view graph of the ``features`` solver: verified view pairs as edges, chained into one
frame by a maximum spanning tree (Prim; edge weight: inlier count) of its largest connected
component, grown from that component's first view (view 0 where it belongs to it)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

__all__ = ["ViewPair", "chain_view_graph", "largest_component_root"]


class ViewPair(NamedTuple):
    """A verified view pair: an edge of the view graph."""

    inliers: int
    i: int
    j: int
    j_from_i: np.ndarray  # cam_j_from_cam_i, metric translation
    matches: np.ndarray  # (n, 2) inlier keypoint indices into views i and j


def largest_component_root(edges: Sequence[ViewPair], views: int) -> int:
    """The first view of the view graph's largest connected component (most views; of equal
    ones the component with the lowest view, so view 0's wins a tie): the root the chain grows
    from. A view in no edge is a component of its own."""
    if views == 0:
        return 0
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    pairs = np.array([(e.i, e.j) for e in edges], np.int64).reshape(-1, 2)
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(views, views))
    _, labels = connected_components(graph, directed=False)
    # labels are numbered in order of each component's lowest view: argmax keeps the first tie
    largest = int(np.argmax(np.bincount(labels)))
    return int(np.flatnonzero(labels == largest)[0])


def chain_view_graph(
    edges: Sequence[ViewPair], views: int, root: int = 0
) -> tuple[dict[int, np.ndarray], np.ndarray]:
    """Camera-to-world poses ``{view: (4, 4)}`` in the frame of view ``root`` (the identity) of
    every view the edges reach from it, each placed by the strongest edge from the views placed
    before it, and the inlier count of that edge per view ``(views,)`` (0 for the root and for
    views not reached)."""
    cam2world = {root: np.eye(4)}
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

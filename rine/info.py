"""Exact information-theoretic quantities of finite joint distributions, in bits.

A joint pmf is a dense numpy array with one axis per variable; by convention in this
project the last axis is the target Y and the others are the sources X1..Xn.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

LN2 = math.log(2.0)


def nats_to_bits(nats):
    return nats / LN2


def entropy_bits(p: np.ndarray) -> float:
    """Shannon entropy of a pmf of any shape (all cells are outcomes)."""
    p = np.asarray(p, dtype=np.float64).ravel()
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


def marginal(joint: np.ndarray, keep: Sequence[int]) -> np.ndarray:
    """The marginal pmf of the axes in `keep`, in that order."""
    keep = list(keep)
    drop = tuple(a for a in range(joint.ndim) if a not in keep)
    m = joint.sum(axis=drop)
    kept_sorted = sorted(keep)
    return np.moveaxis(m, [kept_sorted.index(a) for a in keep], range(len(keep)))


def mutual_information_bits(joint: np.ndarray, a: Sequence[int], b: Sequence[int]) -> float:
    """I(A; B) where A and B are disjoint groups of axes of `joint`."""
    a, b = list(a), list(b)
    if set(a) & set(b):
        raise ValueError("mutual information needs disjoint groups of variables")
    h_a = entropy_bits(marginal(joint, a))
    h_b = entropy_bits(marginal(joint, b))
    h_ab = entropy_bits(marginal(joint, a + b))
    # Clamp float round-off: I >= 0 exactly.
    return max(0.0, h_a + h_b - h_ab)


def gacs_korner_redundancy_bits(joint: np.ndarray) -> float:
    """Griffith et al.'s I∧: the information about Y in the sources' Gács–Körner common part.

    The largest Q that is a deterministic function of every source is the label of the
    connected component of the sources' joint support (symbols of different sources are
    linked when they occur together). I∧ = I(Q; Y). Works for any number of sources.
    """
    n_sources = joint.ndim - 1
    offsets = np.cumsum([0] + [joint.shape[i] for i in range(n_sources)])
    parent = list(range(int(offsets[-1])))

    def find(node: int) -> int:
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    sources = marginal(joint, range(n_sources))
    for cell in zip(*np.nonzero(sources)):
        first = find(int(offsets[0] + cell[0]))
        for i in range(1, n_sources):
            other = find(int(offsets[i] + cell[i]))
            if other != first:
                parent[other] = first

    component_of_x1 = [find(int(offsets[0] + s)) for s in range(joint.shape[0])]
    labels = {c: k for k, c in enumerate(sorted(set(component_of_x1)))}
    # Q is a function of X1 alone (and equally of every other source).
    x1_y = marginal(joint, [0, n_sources])
    q_y = np.zeros((len(labels), joint.shape[-1]))
    for s, comp in enumerate(component_of_x1):
        q_y[labels[comp]] += x1_y[s]
    return mutual_information_bits(q_y, [0], [1])

"""Exact information measures against hand-computed values."""

import math

import numpy as np
import pytest

from rine.info import (
    entropy_bits,
    gacs_korner_redundancy_bits,
    marginal,
    mutual_information_bits,
    nats_to_bits,
)
from rine.pmf import load_pmf

H_QUARTER = -(0.25 * math.log2(0.25) + 0.75 * math.log2(0.75))  # h(1/4) = 0.8113 bits


def test_bits_conversion_is_exactly_one_over_ln2():
    assert nats_to_bits(math.log(2)) == pytest.approx(1.0, abs=1e-15)
    assert nats_to_bits(1.0) == pytest.approx(1 / math.log(2), abs=1e-15)
    assert nats_to_bits(math.log(4)) == pytest.approx(2.0, abs=1e-15)


def test_entropy_of_known_pmfs():
    assert entropy_bits([0.25] * 4) == pytest.approx(2.0)
    assert entropy_bits([0.5, 0.5, 0.0]) == pytest.approx(1.0)
    assert entropy_bits([1.0, 0.0]) == 0.0
    assert entropy_bits([0.25, 0.75]) == pytest.approx(H_QUARTER)
    assert entropy_bits(np.full((2, 2, 2), 1 / 8)) == pytest.approx(3.0)


def test_marginal_keeps_requested_axis_order():
    joint = np.arange(24, dtype=float).reshape(2, 3, 4)
    joint /= joint.sum()
    np.testing.assert_allclose(marginal(joint, [2, 0]), joint.sum(axis=1).T)


def test_mutual_information_of_known_pmfs():
    copy = np.array([[0.5, 0.0], [0.0, 0.5]])
    independent = np.outer([0.3, 0.7], [0.6, 0.4])
    assert mutual_information_bits(copy, [0], [1]) == pytest.approx(1.0)
    assert mutual_information_bits(independent, [0], [1]) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError):
        mutual_information_bits(copy, [0], [0])


@pytest.mark.parametrize(
    "task, h_y, mi_x1, mi_x2, mi_joint, i_wedge",
    [
        ("unq", 2.0, 1.0, 1.0, 2.0, 0.0),
        ("and", H_QUARTER, 1.5 - 1.5 * math.log2(3) / 2, 1.5 - 1.5 * math.log2(3) / 2, H_QUARTER, 0.0),
        ("rdnxor", 2.0, 1.0, 1.0, 2.0, 1.0),
        ("imperfectrdn", 1.0, 1.0, None, 1.0, 0.0),
    ],
)
def test_canonical_tasks_exact_measures(task, h_y, mi_x1, mi_x2, mi_joint, i_wedge):
    m = load_pmf(task).exact_measures()
    # p(y) of IMPERFECTRDN is (0.5, 0.5) exactly; AND's I(Xi;Y) = 0.311 bits in the paper.
    assert m["h_y"] == pytest.approx(h_y, abs=1e-9)
    assert m["mi_sources"][0] == pytest.approx(mi_x1, abs=1e-9)
    if mi_x2 is not None:
        assert m["mi_sources"][1] == pytest.approx(mi_x2, abs=1e-9)
    assert m["mi_joint"] == pytest.approx(mi_joint, abs=1e-9)
    assert m["i_wedge"] == pytest.approx(i_wedge, abs=1e-9)


def test_imperfectrdn_second_source_carries_0_99_bits():
    # I(X2;Y) = H(Y) - p(x2=1) h(0.001/0.501), by hand.
    q = 0.001 / 0.501
    expected = 1.0 - 0.501 * -(q * math.log2(q) + (1 - q) * math.log2(1 - q))
    m = load_pmf("imperfectrdn").exact_measures()
    assert m["mi_sources"][1] == pytest.approx(expected, abs=1e-12)
    assert round(m["mi_sources"][1], 2) == 0.99
    assert m["min_mi_sources"] == pytest.approx(expected, abs=1e-12)


def test_and_mutual_information_matches_paper_0_311():
    assert load_pmf("and").exact_measures()["mi_sources"][0] == pytest.approx(0.311, abs=5e-4)


def test_gacs_korner_three_sources_sharing_one_bit():
    # X_i = (a, noise_i) with a shared fair bit a, Y = a: the common part is a, I∧ = 1 bit.
    joint = np.zeros((4, 4, 4, 2))
    for a in (0, 1):
        for n1 in (0, 1):
            for n2 in (0, 1):
                for n3 in (0, 1):
                    joint[2 * a + n1, 2 * a + n2, 2 * a + n3, a] = 1 / 16
    assert gacs_korner_redundancy_bits(joint) == pytest.approx(1.0)


def test_gacs_korner_three_sources_pairwise_but_not_jointly_common():
    # X1 = (a, b), X2 = (b, c), X3 = (c, a), Y = (a, b, c): each pair shares a bit, all
    # three share nothing, so the common part is constant and I∧ = 0.
    joint = np.zeros((4, 4, 4, 8))
    for a in (0, 1):
        for b in (0, 1):
            for c in (0, 1):
                joint[2 * a + b, 2 * b + c, 2 * c + a, 4 * a + 2 * b + c] = 1 / 8
    assert gacs_korner_redundancy_bits(joint) == pytest.approx(0.0, abs=1e-12)
    # ...while the first two sources alone share b: 1 bit about Y.
    assert gacs_korner_redundancy_bits(joint.sum(axis=2)) == pytest.approx(1.0)


def _sparse_pmfs():
    """Small joint pmfs whose sources have non-trivial common parts: random supports, 2 and 3 sources."""
    rng = np.random.default_rng(0)
    pmfs = []
    for shape in [(3, 3, 2), (4, 3, 3), (4, 4, 2), (2, 3, 2, 3), (3, 3, 3, 2)]:
        for density in (0.2, 0.35):
            joint = rng.random(shape) * (rng.random(shape) < density)
            if joint.sum() > 0:
                pmfs.append(joint / joint.sum())
    return pmfs


@pytest.mark.parametrize("name", ["unq", "and", "rdnxor", "imperfectrdn"])
def test_gacs_korner_agrees_with_dit_on_the_canonical_tasks(name):
    import dit.pid

    from rine.references import _to_dit

    pmf = load_pmf(name)
    dit_value = dit.pid.PID_GK(_to_dit(pmf), [[0], [1]], [2]).get_red(((0,), (1,)))
    assert gacs_korner_redundancy_bits(pmf.table) == pytest.approx(dit_value, abs=1e-9)


def test_gacs_korner_agrees_with_dit_on_random_sparse_pmfs():
    # rine.info's connected components against dit's Griffith et al. I∧ (PID_GK), which finds the
    # Gács–Körner common part its own way (its meet of partitions), on 2 and 3 sources.
    import dit
    import dit.pid

    pmfs = _sparse_pmfs()
    values = []
    for joint in pmfs:
        n = joint.ndim - 1
        cells = list(zip(*np.nonzero(joint)))
        distribution = dit.Distribution([tuple(str(s) for s in cell) for cell in cells], [joint[c] for c in cells])
        expected = dit.pid.PID_GK(distribution, [[i] for i in range(n)], [n]).get_red(tuple((i,) for i in range(n)))
        values.append(expected)
        assert gacs_korner_redundancy_bits(joint) == pytest.approx(expected, abs=1e-9)
    assert len(pmfs) >= 8 and max(values) > 0.1 and min(values) < 1e-9  # both cases are exercised

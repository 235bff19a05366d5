"""Matching solver: Munkres' choice among equal-cost assignments (official tie behaviour), and the fast path."""

from __future__ import annotations

import numpy as np
import pytest

from bottomup.codec.assignment import (
    is_unique_optimum,
    munkres_assignment,
    scipy_assignment,
    solve_assignment,
)


def _matrices(seed: int, count: int):
    """Random cost matrices: smooth floats, small integers (many ties), the matching cost of associative embedding
    (whole hundreds minus a per-row value, padded with 1e10 columns when taller than wide), and wide ones."""
    rng = np.random.default_rng(seed)
    for t in range(count):
        r, c = int(rng.integers(1, 10)), int(rng.integers(1, 10))
        kind = t % 3
        if kind == 0:
            yield rng.random((min(r, c), max(r, c)))
        elif kind == 1:
            yield rng.integers(0, 3, (min(r, c), max(r, c))).astype(float)
        else:
            m = rng.integers(0, 3, (r, c)) * 100.0 - np.round(rng.random((r, 1)), 1)
            yield np.concatenate([m, np.full((r, r - c), 1e10)], axis=1) if r > c else m


def test_munkres_tie_choice_derived_by_hand():
    # Rows minus their minimum: [[0,1,1],[0,1,1],[0,0,0]]; stars (0,0), (2,1). Prime (2,2) -> cover row 2, uncover
    # column 1; no uncovered zero: shift by 1 -> [[0,0,0],[0,0,0],[1,0,0]]. From (0,0): row 0's uncovered zeros are
    # columns 1 and 2, the scan keeps the last one met: prime (0,2) -> cover row 0, uncover column 0; row 1: prime
    # (1,2), no star in its row: star it. Munkres: columns [0, 2, 1]; scipy returns the other optimum [0, 1, 2].
    cost = np.array([[0, 1, 1], [0, 1, 1], [1, 1, 1]], float)
    rows, cols = munkres_assignment(cost)
    assert rows.tolist() == [0, 1, 2] and cols.tolist() == [0, 2, 1]
    assert scipy_assignment(cost)[1].tolist() == [0, 1, 2]  # the case separates the two solvers
    assert cost[rows, cols].sum() == cost[[0, 1, 2], [0, 1, 2]].sum()
    assert not is_unique_optimum(cost, *scipy_assignment(cost))
    assert solve_assignment(cost, "munkres")[1].tolist() == [0, 2, 1]
    assert solve_assignment(cost, "scipy")[1].tolist() == [0, 1, 2]


def test_munkres_is_optimal_and_fast_path_gives_the_same_assignment():
    ties = differ = 0
    for cost in _matrices(0, 600):
        rows, cols = munkres_assignment(cost)
        s_rows, s_cols = scipy_assignment(cost)
        assert rows.tolist() == list(range(cost.shape[0]))  # every row assigned (R <= C), rows ascending
        assert len(set(cols.tolist())) == len(cols)
        assert cost[rows, cols].sum() == pytest.approx(cost[s_rows, s_cols].sum(), rel=1e-12, abs=1e-6)
        fast_rows, fast_cols = solve_assignment(cost, "munkres")  # scipy where the optimum is unique, Munkres otherwise
        np.testing.assert_array_equal(fast_cols, cols)
        np.testing.assert_array_equal(fast_rows, rows)
        unique = is_unique_optimum(cost, s_rows, s_cols)
        ties += not unique
        differ += not np.array_equal(s_cols, cols)
        if unique:
            np.testing.assert_array_equal(s_cols, cols)
    assert ties > 100 and differ > 50  # the matrices do tie, and there the solvers disagree


def test_unique_optimum_detection():
    rng = np.random.default_rng(1)
    cost = rng.random((6, 6))
    assert is_unique_optimum(cost, *scipy_assignment(cost))
    cost[:2, :2] = [[0.0, 0.0], [0.0, 0.0]]  # rows 0 and 1 can swap columns 0 and 1 at no cost
    cost[2:, :2] = 5.0
    cost[:2, 2:] = 5.0
    assert not is_unique_optimum(cost, *scipy_assignment(cost))
    wide = np.array([[0.0, 1.0, 1.0]])  # a single row: the zero padding rows may swap among themselves
    assert is_unique_optimum(wide, *scipy_assignment(wide))
    assert not is_unique_optimum(np.array([[0.0, 0.0, 1.0]]), *scipy_assignment(np.array([[0.0, 0.0, 1.0]])))


def test_bad_input():
    with pytest.raises(ValueError, match="test.assignment"):
        solve_assignment(np.zeros((2, 2)), "hungarian")
    with pytest.raises(ValueError, match="finite"):
        munkres_assignment(np.array([[np.nan, 1.0]]))
    for empty in (np.zeros((0, 3)), np.zeros((0, 0))):
        rows, cols = solve_assignment(empty, "munkres")
        assert rows.size == 0 and cols.size == 0
        assert munkres_assignment(empty)[0].size == 0

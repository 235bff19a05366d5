"""Minimum-cost assignment with the tie behaviour of the official HigherHRNet matching (Munkres).

The official ``match_by_tag`` solves each joint's matching with the ``munkres`` package (Kuhn-Munkres in the form
of Munkres' 1957 paper as laid out by R. A. Pilgrim: stars, primes and covers). Where several assignments have the
minimum cost, which one comes out is decided by the order in which that algorithm meets zeros;
``scipy.optimize.linear_sum_assignment`` (shortest augmenting paths) often returns another one. The matching cost of
associative embedding, ``round(tag distance) * 100 - value``, ties whenever two people are at the same rounded tag
distance, so the choice changes which joints join which person.

:func:`munkres_assignment` re-implements that algorithm and its scan order with NumPy on float64 (the same operations
in the same order on every element, so the same zeros appear), for the official result at the cost of a few
vectorised passes per step. :func:`scipy_assignment` is the plain shortest-augmenting-path solver.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

__all__ = ["ASSIGNMENTS", "is_unique_optimum", "munkres_assignment", "scipy_assignment", "solve_assignment"]

#: Values of the grouping setting ``assignment`` (``test.assignment``).
ASSIGNMENTS = ("munkres", "scipy")

_STAR, _PRIME = 1, 2


def scipy_assignment(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``scipy.optimize.linear_sum_assignment``: ``(rows, cols)`` int64, rows ascending."""
    rows, cols = linear_sum_assignment(cost)
    return rows.astype(np.int64), cols.astype(np.int64)


def _find_zero(zero: np.ndarray, row_cov: np.ndarray, col_cov: np.ndarray, i0: int, j0: int) -> tuple[int, int]:
    """The uncovered zero Munkres' scan takes: rows from ``i0`` on (wrapping), in the first row that has one, the
    last one met scanning columns from ``j0`` on (wrapping). ``(-1, -1)`` when there is none."""
    free = zero & ~col_cov[None, :]
    free[row_cov] = False
    rows = np.flatnonzero(free.any(axis=1))
    if rows.size == 0:
        return -1, -1
    k = int(np.searchsorted(rows, i0))
    i = int(rows[k] if k < rows.size else rows[0])
    js = np.flatnonzero(free[i])
    k = int(np.searchsorted(js, j0))  # js[:k] < j0: met last when scanning from j0 and wrapping
    return i, int(js[k - 1] if k > 0 else js[-1])


def munkres_assignment(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Minimum-cost assignment, returning among equal-cost optima the one the official code gets from Munkres.

    Steps (Pilgrim's layout of Munkres' algorithm, as the ``munkres`` package the official code calls): pad to
    square with zeros; subtract each row's minimum; star the first zero of each row (row-major) whose column has no
    star; cover starred columns, done when all are covered; otherwise repeatedly take an uncovered zero (see
    :func:`_find_zero`: the search restarts at the row of the last prime and the column of its star), prime it, and
    either cover its row and uncover its star's column, or, with no star in its row, flip the alternating
    prime / star path; with no uncovered zero left, add the smallest uncovered value to covered rows and subtract
    it from uncovered columns.

    Args:
        cost: ``(R, C)`` finite costs.

    Returns:
        ``(rows, cols)`` int64 of the pairs inside the ``R x C`` matrix, rows ascending (every row when ``R <= C``).

    Raises:
        ValueError: not a 2-D matrix of finite numbers.
    """
    cost = np.asarray(cost, dtype=np.float64)
    if cost.ndim != 2 or not np.all(np.isfinite(cost)):
        raise ValueError(f"cost must be a 2-D matrix of finite numbers, got shape {cost.shape}")
    r0, c0 = cost.shape
    n = max(r0, c0)
    if n == 0 or min(r0, c0) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    c = np.zeros((n, n))
    c[:r0, :c0] = cost
    c -= c.min(axis=1, keepdims=True)
    marked = np.zeros((n, n), np.int8)
    row_cov = np.zeros(n, bool)
    col_cov = np.zeros(n, bool)
    for i in range(n):  # star the first free zero per row
        js = np.flatnonzero((c[i] == 0) & ~col_cov)
        if js.size:
            marked[i, js[0]] = _STAR
            col_cov[js[0]] = True
    while True:
        col_cov = (marked == _STAR).any(axis=0)
        row_cov = np.zeros(n, bool)
        if col_cov.sum() >= n:
            break
        row = col = 0
        zero = c == 0
        while True:  # prime uncovered zeros until one has no star in its row (then augment)
            row, col = _find_zero(zero, row_cov, col_cov, row, col)
            if row < 0:  # no uncovered zero: shift by the smallest uncovered value, search again from (0, 0)
                smallest = c[~row_cov][:, ~col_cov].min()
                c[row_cov] += smallest
                c[:, ~col_cov] -= smallest
                zero = c == 0
                row = col = 0
                continue
            marked[row, col] = _PRIME
            stars = np.flatnonzero(marked[row] == _STAR)
            if stars.size == 0:
                break
            col = int(stars[0])
            row_cov[row] = True
            col_cov[col] = False
        path = [(row, col)]
        while True:  # alternating path: star in the prime's column, prime in the star's row
            stars = np.flatnonzero(marked[:, path[-1][1]] == _STAR)
            if stars.size == 0:
                break
            r = int(stars[0])
            path.append((r, path[-1][1]))
            path.append((r, int(np.flatnonzero(marked[r] == _PRIME)[0])))
        for r, k in path:
            marked[r, k] = 0 if marked[r, k] == _STAR else _STAR
        marked[marked == _PRIME] = 0
    rows, cols = np.nonzero(marked[:r0, :c0] == _STAR)
    return rows.astype(np.int64), cols.astype(np.int64)


#: A cycle of reassignments whose cost change is at most this may be a tie (float64 sums of costs up to ~1e10).
_TIE_TOLERANCE = 1e-3


def is_unique_optimum(cost: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> bool:
    """Whether the optimal assignment ``(rows, cols)`` of ``cost`` is the only one, with margin.

    Another optimal assignment exists exactly when a cycle of rows, each taking the next one's column, changes the
    cost by zero (for an optimum every cycle changes it by >= 0). The smallest such change is found by Floyd-Warshall
    over the rows (``O(n^3)``, n vectorised passes); cycles through the zero rows that pad a wide matrix only are
    not counted (they reassign no real row). ``False`` (may tie) when the smallest change is <= ``1e-3``.

    Args:
        cost: ``(R, C)`` with ``R <= C``; rows, cols: an optimal assignment of every row.
    """
    cost = np.asarray(cost, dtype=np.float64)
    r0, c0 = cost.shape
    if r0 == 0 or (r0 == 1 and c0 == 1):
        return True
    n = c0
    full = np.zeros((n, n))
    full[:r0] = cost
    sigma = np.empty(n, np.int64)
    sigma[rows] = cols
    sigma[r0:] = np.setdiff1d(np.arange(n), cols)  # padding rows hold the free columns
    own = full[np.arange(n), sigma]
    change = full[:, sigma].T - own[None, :]  # [i, k]: row k takes row i's column
    np.fill_diagonal(change, np.inf)
    for m in range(n):
        np.minimum(change, change[:, m : m + 1] + change[m : m + 1, :], out=change)
    return bool(np.diagonal(change)[:r0].min() > _TIE_TOLERANCE)


def solve_assignment(cost: np.ndarray, assignment: str) -> tuple[np.ndarray, np.ndarray]:
    """The assignment by name (``test.assignment``).

    ``"munkres"``: the official result (:func:`munkres_assignment`), computed by ``scipy_assignment`` when that
    optimum is unique (:func:`is_unique_optimum`; then every solver returns it) and by Munkres' algorithm only where
    optima may tie. ``"scipy"``: :func:`scipy_assignment`.

    Raises:
        ValueError: an unknown ``assignment``.
    """
    if assignment == "munkres":
        cost = np.asarray(cost, dtype=np.float64)
        if cost.shape[0] <= cost.shape[1]:
            rows, cols = scipy_assignment(cost)
            if is_unique_optimum(cost, rows, cols):
                return rows, cols
        return munkres_assignment(cost)
    if assignment == "scipy":
        return scipy_assignment(cost)
    raise ValueError(f"assignment must be one of {ASSIGNMENTS} (test.assignment), got {assignment!r}")

"""Training targets for associative embedding: Gaussian heatmaps and tag indices.

This is the *encode* half of the codec (``bottomup.codec``); grouping (``bottomup.codec.grouping``) is the decode
half. Both share the same conventions:

Frames and conventions
    Keypoints are ``(x, y)`` in **heatmap pixels** of one output resolution: ``x_heatmap = x_input / stride``
    where ``x_input`` is in pixels of the network input. A joint at continuous position ``(x, y)`` belongs to
    heatmap pixel ``(int(x), int(y))`` (truncation, as in the official HigherHRNet ``HeatmapGenerator`` and
    ``JointsGenerator``); decoding puts it back at the pixel centre ``+0.5``.

Letters: N people, K keypoints, H x W heatmap, M = max people with tags.
"""

from __future__ import annotations

import numpy as np

__all__ = ["render_heatmaps", "tag_indices", "select_people"]


def _in_bounds(keypoints: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Integer pixel (x, y) and a validity mask for visible, in-map joints. keypoints: (N, K, 3)."""
    x = keypoints[..., 0].astype(np.float64)
    y = keypoints[..., 1].astype(np.float64)
    ok = (keypoints[..., 2] > 0) & (x >= 0) & (y >= 0) & (x < width) & (y < height)
    xi = np.where(ok, x, 0).astype(np.int64)  # truncation == floor for the kept (non-negative) values
    yi = np.where(ok, y, 0).astype(np.int64)
    return xi, yi, ok


def render_heatmaps(keypoints: np.ndarray, height: int, width: int, sigma: float = 2.0) -> np.ndarray:
    """Gaussian heatmap targets, people combined by maximum.

    Each visible joint inside the map paints ``exp(-d^2 / (2 sigma^2))`` (peak exactly 1.0 at its pixel)
    within a ``(6 sigma + 3)``-pixel square window around pixel ``(int(x), int(y))``; overlapping people take
    the maximum. Reference: Cheng et al. 2020 (HigherHRNet) Sec. 3.3 and the official ``HeatmapGenerator``.

    Args:
        keypoints: ``(N, K, 3)`` float, ``(x, y, visibility)`` in heatmap pixels; visibility 0 = unlabeled.
        height, width: map size H x W in heatmap pixels.
        sigma: Gaussian standard deviation in heatmap pixels.

    Returns:
        ``(K, H, W)`` float32 in ``[0, 1]``.

    Raises:
        ValueError: ``keypoints`` is not ``(N, K, 3)``.
    """
    keypoints = np.asarray(keypoints, dtype=np.float32)
    if keypoints.ndim != 3 or keypoints.shape[-1] < 3:
        raise ValueError(f"keypoints must be (N, K, 3), got shape {keypoints.shape}")
    num_keypoints = keypoints.shape[1]
    heatmaps = np.zeros((num_keypoints, height, width), dtype=np.float32)
    xi, yi, ok = _in_bounds(keypoints, height, width)
    person, joint = np.nonzero(ok)
    if person.size == 0:
        return heatmaps
    radius = int(3 * sigma + 1)
    offsets = np.arange(-radius, radius + 1)
    g = np.exp(-(offsets.astype(np.float32) ** 2) / (2 * sigma**2))  # separable 1-D Gaussian
    cx, cy = xi[person, joint], yi[person, joint]  # (V,)
    px = cx[:, None] + offsets[None, :]  # (V, 2r+1)
    py = cy[:, None] + offsets[None, :]
    vals = g[None, :, None] * g[None, None, :]  # (1, 2r+1, 2r+1): rows dy, cols dx
    inside = (py[:, :, None] >= 0) & (py[:, :, None] < height) & (px[:, None, :] >= 0) & (px[:, None, :] < width)
    flat = (joint[:, None, None] * height + py[:, :, None]) * width + px[:, None, :]
    vals = np.broadcast_to(vals, inside.shape)
    np.maximum.at(heatmaps.reshape(-1), flat[inside], vals[inside])
    return heatmaps


def select_people(keypoints: np.ndarray, max_people: int) -> np.ndarray:
    """Indices of at most ``max_people`` people, the most complete (most labeled joints) first.

    Args:
        keypoints: ``(N, K, 3)``.
        max_people: M.

    Returns:
        ``(min(N, M),)`` int64 indices into N, in their original order when nothing is dropped.
    """
    n = keypoints.shape[0]
    if n <= max_people:
        return np.arange(n)
    labeled = (keypoints[..., 2] > 0).sum(axis=1)
    keep = np.argsort(-labeled, kind="stable")[:max_people]
    return np.sort(keep)


def tag_indices(keypoints: np.ndarray, height: int, width: int, max_people: int = 30) -> np.ndarray:
    """Where to read each person's tags in the flattened ``(K, H, W)`` tag maps.

    Args:
        keypoints: ``(N, K, 3)`` ``(x, y, visibility)`` in heatmap pixels of the tag maps' resolution.
        height, width: tag map size.
        max_people: M; when N > M only the M most complete people are kept (see ``select_people``).

    Returns:
        ``(M, K, 2)`` int64: ``[k * H * W + y * W + x, valid]`` per person slot and joint; rows beyond N and
        invisible / out-of-map joints are ``[0, 0]``. Reference: official ``JointsGenerator`` (tag per joint).
    """
    keypoints = np.asarray(keypoints, dtype=np.float32)
    out = np.zeros((max_people, keypoints.shape[1], 2), dtype=np.int64)
    if keypoints.shape[0] == 0:
        return out
    keypoints = keypoints[select_people(keypoints, max_people)]
    xi, yi, ok = _in_bounds(keypoints, height, width)
    k = np.arange(keypoints.shape[1])[None, :]
    n = keypoints.shape[0]
    out[:n, :, 0] = np.where(ok, (k * height + yi) * width + xi, 0)
    out[:n, :, 1] = ok
    return out

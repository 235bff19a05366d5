"""Training targets for associative embedding: Gaussian heatmaps and tag indices.

This is the *encode* half of the codec (``bottomup.codec``); grouping (``bottomup.codec.grouping``) is the decode
half. Both share the same conventions:

Frames and conventions
    Keypoints are ``(x, y)`` in **heatmap pixels** of one output resolution: ``x_heatmap = x_input / stride``
    where ``x_input`` is in pixels of the network input. A joint at continuous position ``(x, y)`` belongs to
    heatmap pixel ``(int(x), int(y))``; decoding puts it back at the pixel centre ``+0.5``.

Joint pixel (``rounding``)
    ``"trunc"`` (default, official HigherHRNet ``HeatmapGenerator`` / ``JointsGenerator``): Python ``int()`` of
    the float64 coordinate, i.e. truncation toward zero, *then* the in-map test ``0 <= int(x) < W``; a joint at
    ``-1 < x < 0`` therefore lands on pixel 0 and is kept (heatmap and tag index). ``"floor"``: the pixel that
    contains the point, joints with ``x < 0`` dropped. Both work on float64 coordinates (no float32 cast before
    the truncation, which could move a value a few ulps below an integer onto the next pixel).

Gaussian window (official ``HeatmapGenerator`` / ``ScaleAwareHeatmapGenerator``)
    With ``x0 = 3 sigma + 1`` the kernel is ``g[i, j] = exp(-((j - x0)^2 + (i - x0)^2) / (2 sigma^2))`` (float64,
    stored as float32) for ``i, j`` in ``arange(0, 6 sigma + 3)``; its element ``(0, 0)`` is placed at pixel
    ``(round(x - 3 sigma - 1), round(y - 3 sigma - 1))`` (NumPy rounding, half to even) and it is cut at
    ``round(x + 3 sigma + 2)`` and at the map border. For an integer sigma the peak ``1.0`` is at the joint's pixel;
    a fractional sigma (scale-aware sigma) shifts the kernel centre by the rounding remainder, as officially.

UDP (``udp=True``; Huang et al. CVPR 2020, Sec. 4; MMPose 0.x ``HeatmapGenerator(use_udp=True)``)
    The same joint pixel, window and placement, but the Gaussian is centred on the joint's continuous position:
    ``x0 = 3 sigma + 1 + (x - int(x))`` (likewise ``y0``), so that for an integer sigma heatmap pixel ``(i, j)`` holds
    ``exp(-((j - x)^2 + (i - y)^2) / (2 sigma^2))``, pixel centres at integer coordinates. The coordinates of a UDP
    output ``S'`` px wide are ``x_input * (S' - 1) / (S - 1)``, not ``x_input / stride``
    (``bottomup.codec.AssociativeEmbeddingCodec.encode``).

Letters: N people, K keypoints, H x W heatmap, M = max people with tags.
"""

from __future__ import annotations

import functools
from typing import Literal

import numpy as np

__all__ = ["ROUNDINGS", "joint_pixels", "gaussian_kernel", "render_heatmaps", "tag_indices", "select_people"]

#: Values of ``rounding`` (``data.joint_rounding``).
ROUNDINGS = ("trunc", "floor")


def _check_rounding(rounding: str) -> str:
    if rounding not in ROUNDINGS:
        raise ValueError(f"rounding must be one of {ROUNDINGS} (data.joint_rounding), got {rounding!r}")
    return rounding


def joint_pixels(
    keypoints: np.ndarray, height: int, width: int, rounding: Literal["trunc", "floor"] = "trunc"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Integer heatmap pixel of every joint and whether it is visible and inside the map.

    Args:
        keypoints: ``(N, K, >=3)`` ``(x, y, visibility)`` in heatmap pixels (any float dtype; used as float64).
        height, width: map size.
        rounding: ``"trunc"`` (official ``int()``) or ``"floor"``, see the module docstring.

    Returns:
        ``x (N, K)`` int64, ``y (N, K)`` int64 (0 where not kept) and ``ok (N, K)`` bool.

    Raises:
        ValueError: unknown ``rounding``.
    """
    rounding = _check_rounding(rounding)
    kp = np.asarray(keypoints)
    x = kp[..., 0].astype(np.float64)
    y = kp[..., 1].astype(np.float64)
    if rounding == "trunc":
        x, y = np.trunc(x), np.trunc(y)
        with np.errstate(invalid="ignore"):
            ok = (kp[..., 2] > 0) & (x >= 0) & (y >= 0) & (x < width) & (y < height)
    else:
        with np.errstate(invalid="ignore"):
            ok = (kp[..., 2] > 0) & (x >= 0) & (y >= 0) & (x < width) & (y < height)
        x, y = np.floor(x), np.floor(y)
    xi = np.where(ok, x, 0).astype(np.int64)
    yi = np.where(ok, y, 0).astype(np.int64)
    return xi, yi, ok


def gaussian_kernel(sigma: float) -> np.ndarray:
    """``(n, n)`` float32 Gaussian window of the official generators, ``n = len(arange(0, 6 sigma + 3))``, centre
    ``(3 sigma + 1, 3 sigma + 1)``, computed in float64 (see the module docstring)."""
    size = 6 * sigma + 3
    x = np.arange(0, size, 1, np.float64)
    centre = 3 * sigma + 1
    d2 = (x[None, :] - centre) ** 2 + (x[:, None] - centre) ** 2
    return np.exp(-d2 / (2 * sigma**2)).astype(np.float32)


@functools.lru_cache(maxsize=256)
def _kernel(sigma: float) -> np.ndarray:
    """:func:`gaussian_kernel`, computed once per sigma and shared (read-only)."""
    g = gaussian_kernel(sigma)
    g.flags.writeable = False
    return g


def _paint(heatmaps: np.ndarray, joint: np.ndarray, cx: np.ndarray, cy: np.ndarray, sigma: float) -> None:
    """Paint the official window of ``sigma`` at pixels ``(cx, cy)`` of channels ``joint`` (all (V,)), by maximum."""
    g = _kernel(sigma)
    flat, inside = _window(heatmaps.shape, joint, cx, cy, sigma, g.shape[0])
    vals = np.broadcast_to(g[None], inside.shape)
    np.maximum.at(heatmaps.reshape(-1), flat[inside], vals[inside])


def _window(
    shape: tuple[int, ...], joint: np.ndarray, cx: np.ndarray, cy: np.ndarray, sigma: float, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """The official ``n x n`` window of ``sigma`` at pixels ``(cx, cy)`` of channels ``joint`` (all (V,)) in maps of
    ``shape`` ``(K, H, W)``: ``(flat (V, n, n) indices into the flattened maps, inside (V, n, n) in-map mask)``;
    window rows are dy, columns dx (upper left ``round(c - 3 sigma - 1)``, clipped at ``round(c + 3 sigma + 2)``)."""
    _, height, width = shape
    ul_x = np.round(cx - 3 * sigma - 1).astype(np.int64)
    ul_y = np.round(cy - 3 * sigma - 1).astype(np.int64)
    br_x = np.round(cx + 3 * sigma + 2).astype(np.int64)
    br_y = np.round(cy + 3 * sigma + 2).astype(np.int64)
    i = np.arange(n)
    px = ul_x[:, None] + i[None, :]  # (V, n)
    py = ul_y[:, None] + i[None, :]
    okx = (px >= 0) & (px < width) & (px < br_x[:, None])
    oky = (py >= 0) & (py < height) & (py < br_y[:, None])
    inside = oky[:, :, None] & okx[:, None, :]
    flat = (joint[:, None, None] * height + py[:, :, None]) * width + px[:, None, :]
    return flat, inside


def _paint_udp(
    heatmaps: np.ndarray, joint: np.ndarray, cx: np.ndarray, cy: np.ndarray, x: np.ndarray, y: np.ndarray, sigma: float
) -> None:
    """:func:`_paint` with the UDP window (MMPose 0.x ``HeatmapGenerator(use_udp=True)``): at joint pixel
    ``(cx, cy)`` the window of ``sigma`` centred at ``x0 = 3 sigma + 1 + x - cx`` (``y0`` likewise), computed in
    float64 for each joint, stored as float32, by maximum."""
    n = len(np.arange(0, 6 * sigma + 3, 1))
    flat, inside = _window(heatmaps.shape, joint, cx, cy, sigma, n)
    i = np.arange(n)
    x0 = 3 * sigma + 1 + (x - cx)  # (V,) float64: the window index of the joint's continuous position
    y0 = 3 * sigma + 1 + (y - cy)
    dx2 = (i[None, :] - x0[:, None]) ** 2  # (V, n)
    dy2 = (i[None, :] - y0[:, None]) ** 2
    vals = np.exp(-(dy2[:, :, None] + dx2[:, None, :]) / (2 * sigma**2)).astype(np.float32)
    np.maximum.at(heatmaps.reshape(-1), flat[inside], vals[inside])


def render_heatmaps(
    keypoints: np.ndarray,
    height: int,
    width: int,
    sigma: float | np.ndarray = 2.0,
    rounding: Literal["trunc", "floor"] = "trunc",
    udp: bool = False,
) -> np.ndarray:
    """Gaussian heatmap targets, people combined by maximum.

    Each visible joint inside the map (:func:`joint_pixels`) paints the official window of its person's ``sigma``
    (module docstring; for an integer sigma ``exp(-d^2 / (2 sigma^2))`` with peak 1.0 at its pixel within a
    ``(6 sigma + 3)``-pixel square); overlapping people take the maximum. Reference: Cheng et al. 2020
    (HigherHRNet) Sec. 3.3, official ``HeatmapGenerator``, and ``ScaleAwareHeatmapGenerator`` for per-person sigma.

    Args:
        keypoints: ``(N, K, 3)`` float, ``(x, y, visibility)`` in heatmap pixels; visibility 0 = unlabeled.
        height, width: map size H x W in heatmap pixels.
        sigma: Gaussian standard deviation in heatmap pixels: one value, or ``(N,)`` one per person
            (scale-aware sigma).
        rounding: joint pixel rule, ``"trunc"`` (official) or ``"floor"``.
        udp: centre each Gaussian on the joint's continuous position (module docstring, "UDP"; MMPose 0.x
            ``HeatmapGenerator(use_udp=True)``) instead of on its pixel.

    Returns:
        ``(K, H, W)`` float32 in ``[0, 1]``.

    Raises:
        ValueError: ``keypoints`` is not ``(N, K, 3)``, ``sigma`` is not one value or ``(N,)`` positive values, or
            an unknown ``rounding``.
    """
    keypoints = np.asarray(keypoints)
    if keypoints.ndim != 3 or keypoints.shape[-1] < 3:
        raise ValueError(f"keypoints must be (N, K, 3), got shape {keypoints.shape}")
    sigmas = _check_sigmas(sigma, keypoints.shape[0])
    return _render(keypoints, height, width, sigmas, joint_pixels(keypoints, height, width, rounding), udp)


def _check_sigmas(sigma: float | np.ndarray, num_people: int) -> float | np.ndarray:
    """One positive float, or ``(N,)`` float64 positive per-person sigmas.

    Raises:
        ValueError: neither.
    """
    sigmas = np.asarray(sigma, dtype=np.float64)
    if sigmas.ndim == 0:
        if sigmas > 0 and np.isfinite(sigmas):
            return float(sigmas)
        sigmas = np.full(num_people, float(sigmas))
    if sigmas.shape != (num_people,) or not np.all(sigmas > 0) or not np.all(np.isfinite(sigmas)):
        raise ValueError(f"sigma must be a positive number or one per person ({num_people},), got {sigma!r}")
    return sigmas


def _render(
    keypoints: np.ndarray,
    height: int,
    width: int,
    sigmas: float | np.ndarray,
    pixels: tuple[np.ndarray, np.ndarray, np.ndarray],
    udp: bool,
) -> np.ndarray:
    """:func:`render_heatmaps` of checked ``sigmas`` (:func:`_check_sigmas`) and the joints' ``pixels``
    (:func:`joint_pixels` of ``keypoints``)."""
    heatmaps = np.zeros((keypoints.shape[1], height, width), dtype=np.float32)
    xi, yi, ok = pixels
    if isinstance(sigmas, float):  # one sigma: every kept joint at once
        groups = [(sigmas, np.nonzero(ok))]
    else:
        groups = [(float(s), np.nonzero(ok & (sigmas == s)[:, None])) for s in np.unique(sigmas[ok.any(axis=1)])]
    for s, (person, joint) in groups:
        if joint.size == 0:
            continue
        if udp:
            x = keypoints[person, joint, 0].astype(np.float64)
            y = keypoints[person, joint, 1].astype(np.float64)
            _paint_udp(heatmaps, joint, xi[person, joint], yi[person, joint], x, y, s)
        else:
            _paint(heatmaps, joint, xi[person, joint], yi[person, joint], s)
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


def tag_indices(
    keypoints: np.ndarray,
    height: int,
    width: int,
    max_people: int,
    rounding: Literal["trunc", "floor"] = "trunc",
) -> np.ndarray:
    """Where to read each person's tags in the flattened ``(K, H, W)`` tag maps.

    Args:
        keypoints: ``(N, K, 3)`` ``(x, y, visibility)`` in heatmap pixels of the tag maps' resolution.
        height, width: tag map size.
        max_people: M; when N > M only the M most complete people are kept (see ``select_people``).
        rounding: joint pixel rule (:func:`joint_pixels`), the same as the heatmaps'.

    Returns:
        ``(M, K, 2)`` int64: ``[k * H * W + y * W + x, valid]`` per person slot and joint; rows beyond N and
        invisible / out-of-map joints are ``[0, 0]``. Reference: official ``JointsGenerator`` (tag per joint; it
        packs a person's valid joints into the first slots, here joint k has slot k: the AE loss reads the same
        set of pixels).
    """
    keypoints = np.asarray(keypoints)
    if keypoints.shape[0] == 0:
        return np.zeros((max_people, keypoints.shape[1], 2), dtype=np.int64)
    keypoints = keypoints[select_people(keypoints, max_people)]
    return _tags(joint_pixels(keypoints, height, width, rounding), height, width, max_people)


def _tags(pixels: tuple[np.ndarray, np.ndarray, np.ndarray], height: int, width: int, max_people: int) -> np.ndarray:
    """:func:`tag_indices` of the :func:`joint_pixels` of at most ``max_people`` selected people."""
    xi, yi, ok = pixels
    n, num_keypoints = ok.shape
    out = np.zeros((max_people, num_keypoints, 2), dtype=np.int64)
    k = np.arange(num_keypoints)[None, :]
    out[:n, :, 0] = np.where(ok, (k * height + yi) * width + xi, 0)
    out[:n, :, 1] = ok
    return out

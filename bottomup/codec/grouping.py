"""Associative-embedding grouping: heatmaps + tag maps -> people (the *decode* half of the codec).

Behaviour is that of the official HigherHRNet ``HeatmapParser`` (Cheng et al. 2020, after Newell et al. 2017,
"Associative Embedding", Sec. 3.2): max-pool NMS, top-k candidates per joint, joint-by-joint Hungarian
matching on tag distance, quarter-pixel adjustment, and refinement of missing joints. The implementation is
vectorised and avoids full-map passes where they cannot change the result:

* NMS is evaluated only in 16x16 tiles whose maximum exceeds the detection threshold (a pixel below the
  threshold can never become a candidate, and the window maximum is exact inside those tiles);
* refinement searches ``heatmap - round(tag distance)`` by branch and bound over 16x16 tiles, using per-tile
  maxima of the heatmap and bounding boxes of the tags; only tiles whose upper bound reaches the best value
  found are evaluated exactly, so the arg-max (first pixel in row-major order on ties) is exactly the one of
  the full-map search.

``bottomup.codec.reference`` is a straightforward loop implementation of the same algorithm; both give
identical outputs.

Frames: every coordinate is in pixels of the maps passed in (``x`` right, ``y`` down), pixel ``(i, j)`` spans
``[i, i + 1) x [j, j + 1)``: a detection at pixel ``(x, y)`` is returned at ``(x + 0.5 +- 0.25, y + 0.5 +- 0.25)``.

Ties (README "Where grouping can differ from the official code")
    Everything follows the official code, including its quirks (people are keyed by the first tag value, so a "new"
    person whose first tag equals an existing person's key overwrites that person's joint, as with the official
    ``dict``). Where candidates tie:

    * *Equal-cost assignments* (:func:`match_by_tag`): the cost ``round(distance) * 100 - value`` is a per-row
      constant plus whole multiples of 100, so two people at the same rounded tag distance from a candidate tie, and
      since a pair is accepted on the unrounded distance (``< tag_threshold``) the choice decides whether a joint
      joins a person or starts a new one. ``assignment="munkres"`` (default) returns the assignment the official
      Munkres solver returns (:mod:`bottomup.codec.assignment`; ``scipy.optimize.linear_sum_assignment`` where the
      optimum is unique, Munkres' algorithm only where it may tie). ``assignment="scipy"`` always uses scipy, which
      often picks another optimum.
    * *Top-k order of equal heatmap values* (:func:`nms_topk`), the one remaining difference: here value descending,
      then row-major pixel index ascending, the same on every device. The official code keeps ``torch.topk``'s order
      of equal values, which is not specified and changes with the PyTorch version and device (torch 2.13 on CPU:
      no fixed order), so it cannot be reproduced in general. It decides the order in which people are created,
      which candidates make the ``max_people`` cut when more than that tie at it, and the row order of the
      matching problem. Real network outputs rarely hold equal peak values; ideal maps (all peaks 1.0) and
      heavily quantised maps do.

UDP (``udp=True``; Huang et al. CVPR 2020; MMPose 0.x ``HeatmapParser`` with ``use_udp``)
    Pixel centres are the integer coordinates (the maps of a UDP network, ``bottomup.codec.targets``): the adjust
    step is MMPose's ``post_dark_udp`` (:func:`dark_udp_adjust`: a Newton step on the log of the 3 x 3
    Gaussian-blurred heatmap, Zhang et al. CVPR 2020 "DARK", in UDP's frame) instead of the +0.5 and quarter-pixel
    shift, and refinement places a filled joint at its pixel +- 0.25 without the +0.5.

Letters: K joints, H x W map, L tag dimensions (1, or 2 with flip test), M = max_people, N people.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

import cv2
import numpy as np

from bottomup.codec.assignment import solve_assignment
from bottomup.codec.settings import GroupingSettings

if TYPE_CHECKING:
    import torch

__all__ = [
    "Candidates",
    "nms_topk",
    "match_by_tag",
    "adjust_keypoints",
    "dark_udp_adjust",
    "refine_keypoints",
    "person_scores",
    "group_keypoints",
    "group_candidates",
    "candidates_from_topk",
]

_TILE = 16  # tile / band size (pixels) for the pruned NMS and refinement searches
_CHUNK = 96  # tiles evaluated at once in the refinement search


def _is_tensor(x: object) -> bool:
    """``isinstance(x, torch.Tensor)`` without importing torch: numpy-only callers (the torch-free runtime,
    ``bottomup.deploy.runtime``) never load it, and a tensor cannot exist before torch is imported."""
    torch_module = sys.modules.get("torch")
    return torch_module is not None and isinstance(x, torch_module.Tensor)


class Candidates(NamedTuple):
    """Top-k NMS peaks per joint.

    Attributes:
        vals: ``(K, M)`` float32 heatmap values, descending per joint; unused slots are ``-inf``.
        locs: ``(K, M, 2)`` int64 ``(x, y)`` map pixels (0 in unused slots).
        tags: ``(K, M, L)`` float32 tag vectors at those pixels (0 in unused slots).
    """

    vals: np.ndarray
    locs: np.ndarray
    tags: np.ndarray


def _as_maps(heatmaps, tags) -> tuple[np.ndarray, np.ndarray]:
    """Validate and convert to float32 numpy ``(K, H, W)`` and ``(K, H, W, L)`` (``(K, H, W)`` tags -> L=1).

    Tags may be a strided view (e.g. ``np.moveaxis`` of ``(K, L, H, W)`` maps): they are read by indexing, and
    the per-dimension planes of ``_tile_bounds`` are then contiguous already, so no transposed copy is made."""
    if _is_tensor(heatmaps):
        heatmaps = heatmaps.detach().float().cpu().numpy()
    if _is_tensor(tags):
        tags = tags.detach().float().cpu().numpy()
    heatmaps = np.ascontiguousarray(heatmaps, dtype=np.float32)
    tags = np.asarray(tags, dtype=np.float32)
    if heatmaps.ndim != 3:
        raise ValueError(f"heatmaps must be (K, H, W), got shape {heatmaps.shape}")
    if tags.ndim == 3:
        tags = tags[..., None]
    if tags.ndim != 4 or tags.shape[:3] != heatmaps.shape:
        raise ValueError(f"tags must be (K, H, W, L) matching heatmaps {heatmaps.shape}, got {tags.shape}")
    return heatmaps, tags


def _check_kernel(nms_kernel: int) -> int:
    if int(nms_kernel) != nms_kernel or nms_kernel < 1 or nms_kernel % 2 == 0:
        raise ValueError(f"nms_kernel must be a positive odd integer, got {nms_kernel}")
    return int(nms_kernel)


def _band_max(det: np.ndarray) -> np.ndarray:
    """``(K, ceil(H / 16))`` maximum of each 16-row band (contiguous reductions, one pass)."""
    k, h, w = det.shape
    full = h // _TILE
    parts = []
    if full:
        parts.append(det[:, : full * _TILE].reshape(k, full, _TILE * w).max(axis=2))
    if h % _TILE:
        parts.append(det[:, full * _TILE :].reshape(k, 1, -1).max(axis=2))
    return np.concatenate(parts, axis=1)


def _peaks_cpu(det: np.ndarray, threshold: float, kernel: int, band_max: np.ndarray | None) -> tuple:
    """All NMS peaks with value > threshold >= 0: ``(k, y, x, val)`` arrays, via thresholded tiles."""
    k_, h, w = det.shape
    pad = (kernel - 1) // 2
    if band_max is None:
        band_max = _band_max(det)
    kb, bb = np.nonzero(band_max > threshold)
    empty = (np.zeros(0, np.int64),) * 3 + (np.zeros(0, np.float32),)
    if kb.size == 0:
        return empty
    # Tile maxima inside the active bands (rows clipped to the map: duplicated rows do not change a max).
    rows = np.minimum(bb[:, None] * _TILE + np.arange(_TILE), h - 1)  # (B, 16)
    bands = det[kb[:, None], rows]  # (B, 16, W)
    tw = -(-w // _TILE)
    if w % _TILE:
        bands = np.concatenate([bands, np.full(bands.shape[:2] + (tw * _TILE - w,), -np.inf, np.float32)], axis=2)
    tile_max = bands.reshape(len(kb), _TILE, tw, _TILE).max(axis=(1, 3))  # (B, Tw)
    bi, tx = np.nonzero(tile_max > threshold)
    tk, ty = kb[bi], bb[bi]
    # Patches with a halo of `pad` pixels; indices clipped to the map, so a window max covers exactly the
    # valid pixels of the official (implicitly -inf padded) max-pool window.
    offs = np.arange(-pad, _TILE + pad)
    pr = np.clip(ty[:, None] * _TILE + offs, 0, h - 1)
    pc = np.clip(tx[:, None] * _TILE + offs, 0, w - 1)
    patch = det[tk[:, None, None], pr[:, :, None], pc[:, None, :]]  # (T, 16+2p, 16+2p)
    pooled = patch[:, :, :_TILE]
    for d in range(1, kernel):
        pooled = np.maximum(pooled, patch[:, :, d : d + _TILE])
    rowpooled = pooled[:, :_TILE]
    for d in range(1, kernel):
        rowpooled = np.maximum(rowpooled, pooled[:, d : d + _TILE])
    centre = patch[:, pad : pad + _TILE, pad : pad + _TILE]
    ys = ty[:, None] * _TILE + np.arange(_TILE)  # (T, 16)
    xs = tx[:, None] * _TILE + np.arange(_TILE)
    inside = (ys[:, :, None] < h) & (xs[:, None, :] < w)
    hit = (centre == rowpooled) & (centre > threshold) & inside
    t, yy, xx = np.nonzero(hit)
    return tk[t], ys[t, yy], xs[t, xx], centre[t, yy, xx]


def _peaks_torch(det: torch.Tensor, threshold: float, kernel: int) -> tuple:
    """Same as ``_peaks_cpu`` with a full max-pool on the tensor's device (GPU)."""
    import torch

    pooled = torch.nn.functional.max_pool2d(det[None], kernel, 1, (kernel - 1) // 2)[0]
    k, y, x = torch.nonzero((pooled == det) & (det > threshold), as_tuple=True)
    vals = det[k, y, x]
    return tuple(t.cpu().numpy() for t in (k, y, x)) + (vals.float().cpu().numpy(),)


def _peaks_full(det: np.ndarray, kernel: int) -> tuple:
    """All pixels of the official NMS map ``det * (maxpool(det) == det)`` (no threshold)."""
    import torch

    t = torch.from_numpy(det)
    pooled = torch.nn.functional.max_pool2d(t[None], kernel, 1, (kernel - 1) // 2)[0]
    nms = (t * (pooled == t).float()).numpy()
    k, y, x = np.indices(det.shape).reshape(3, -1)
    return k, y, x, nms.reshape(-1)


def _select_topk(k, y, x, val, num_joints: int, width: int, max_people: int, tags: np.ndarray) -> Candidates:
    """Order peaks per joint (value desc, pixel index asc) and keep the first ``max_people``."""
    flat = y.astype(np.int64) * width + x
    order = np.lexsort((flat, -val.astype(np.float64), k))
    k, y, x, val = k[order], y[order], x[order], val[order]
    start = np.searchsorted(k, np.arange(num_joints))
    rank = np.arange(k.size) - start[k]
    keep = rank < max_people
    k, y, x, val, rank = k[keep], y[keep], x[keep], val[keep], rank[keep]
    vals = np.full((num_joints, max_people), -np.inf, np.float32)
    locs = np.zeros((num_joints, max_people, 2), np.int64)
    tags_k = np.zeros((num_joints, max_people, tags.shape[-1]), np.float32)
    vals[k, rank] = val
    locs[k, rank, 0] = x
    locs[k, rank, 1] = y
    tags_k[k, rank] = tags[k, y, x]
    return vals, locs, tags_k


def nms_topk(
    heatmaps,
    tags,
    *,
    settings: GroupingSettings | None = None,
    threshold: float | None = None,
    _band_max_cache: np.ndarray | None = None,
    _host_maps: tuple[np.ndarray, np.ndarray] | None = None,
) -> Candidates:
    """Max-pool NMS and the top ``max_people`` peaks of every joint.

    A pixel survives NMS when it equals the maximum of its ``nms_kernel``-square window (official
    ``HeatmapParser.nms``: ``MaxPool2d(kernel, 1, (kernel - 1) // 2)``, ``det * (pool(det) == det)``);
    per joint, the ``max_people`` largest survivors are kept, ties by row-major pixel index.

    Args:
        heatmaps: ``(K, H, W)`` numpy array or tensor (any device; on a GPU the max-pool runs there).
        tags: ``(K, H, W, L)`` (or ``(K, H, W)`` for L = 1).
        settings: ``nms_kernel`` (odd window side) and ``max_people`` (M, candidates kept per joint) are read;
            default ``GroupingSettings()``.
        threshold: when given and ``>= 0``, only candidates with value ``> threshold`` are computed (the
            others are dropped by the matching anyway), which is much faster; unused slots hold ``-inf``.
            ``None`` (or a negative value) gives the exact official top-k including values below it.

    Returns:
        ``Candidates(vals (K, M) float32, locs (K, M, 2) int64 (x, y) map px, tags (K, M, L) float32)``.

    Raises:
        ValueError: bad shapes or kernel.
    """
    opts = GroupingSettings() if settings is None else settings
    kernel = _check_kernel(opts.nms_kernel)
    on_gpu = _is_tensor(heatmaps) and heatmaps.device.type != "cpu"
    det_t = heatmaps.detach().float() if on_gpu else None
    # _host_maps: the caller's host copy of the same maps (group_keypoints), so a GPU tensor is copied once
    det, tag = _as_maps(heatmaps, tags) if _host_maps is None else _host_maps
    num_joints, _, width = det.shape
    if threshold is None or threshold < 0:
        peaks = _peaks_full(det, kernel)
    elif on_gpu:
        peaks = _peaks_torch(det_t, float(threshold), kernel)
    else:
        peaks = _peaks_cpu(det, float(threshold), kernel, _band_max_cache)
    return Candidates(*_select_topk(*peaks, num_joints, width, opts.max_people, tag))


def match_by_tag(
    candidates: Candidates,
    *,
    joint_order: Sequence[int],
    settings: GroupingSettings | None = None,
) -> np.ndarray:
    """Group candidates into people, joint by joint (official ``match_by_tag``).

    For each joint in ``joint_order``: candidates with value ``> detection_threshold`` are matched to the
    first ``max_people`` people by a minimum-cost assignment (``assignment``: ``"munkres"``, the official solver's
    choice among equal-cost optima, :func:`bottomup.codec.assignment.munkres_assignment`; ``"scipy"``:
    ``scipy.optimize.linear_sum_assignment``) on
    ``round(||tag - mean tag of the person||) * 100 - value`` (or the plain distance without
    ``use_detection_val``); with more candidates than people the cost matrix is padded with ``1e10``.
    A pair is accepted when the (unrounded) distance is ``< tag_threshold``; every other candidate starts a
    new person keyed by its first tag value (an existing key is overwritten, as in the official ``dict``).
    With ``ignore_too_much``, a joint is skipped once ``max_people`` people exist.

    Args:
        candidates: from :func:`nms_topk`.
        joint_order: the K joint indices in matching order.
        settings: ``detection_threshold``, ``tag_threshold``, ``use_detection_val``, ``ignore_too_much``,
            ``max_people`` and ``assignment`` (``"munkres"`` or ``"scipy"``) are read; default
            ``GroupingSettings()``.

    Returns:
        ``(N, K, 3 + L)`` float32 rows ``(x, y, value, tag...)``, map pixels (integer pixel positions);
        missing joints are all zeros. People in creation order.
    """
    opts = GroupingSettings() if settings is None else settings
    detection_threshold, tag_threshold, max_people = opts.detection_threshold, opts.tag_threshold, opts.max_people
    vals, locs, tags = candidates
    num_joints, _, tag_dim = tags.shape
    order = [int(j) for j in joint_order]
    if sorted(order) != list(range(num_joints)):
        raise ValueError(f"joint_order must be a permutation of range({num_joints}), got {order}")
    people: list[np.ndarray] = []  # (K, 3 + L) float32 each
    tag_lists: list[list[np.ndarray]] = []
    means: list[np.ndarray | None] = []  # cached mean tag per person
    index: dict[float, int] = {}

    def start(key: float, joint: int, row: np.ndarray, tag: np.ndarray) -> None:
        p = index.get(key)
        if p is None:
            index[key] = p = len(people)
            people.append(np.zeros((num_joints, 3 + tag_dim), np.float32))
            tag_lists.append([])
            means.append(None)
        people[p][joint] = row
        tag_lists[p] = [tag]
        means[p] = None

    for i, joint in enumerate(order):
        sel = vals[joint] > detection_threshold
        if not sel.any():
            continue
        tag = tags[joint][sel]
        rows = np.concatenate([locs[joint][sel].astype(np.float32), vals[joint][sel, None], tag], axis=1)
        if i == 0 or not people:
            for r in range(rows.shape[0]):
                start(float(tag[r, 0]), joint, rows[r], tag[r])
            continue
        grouped = min(len(people), max_people)
        if opts.ignore_too_much and grouped == max_people:
            continue
        for p in range(grouped):
            if means[p] is None:
                means[p] = np.mean(tag_lists[p], axis=0)
        grouped_tags = np.array(means[:grouped])
        diff = tag.astype(np.float64)[:, None, :] - grouped_tags[None, :, :]
        dist = np.linalg.norm(diff, ord=2, axis=2)
        cost = np.round(dist) * 100 - rows[:, 2:3].astype(np.float64) if opts.use_detection_val else dist.copy()
        added = rows.shape[0]
        if added > grouped:
            cost = np.concatenate([cost, np.full((added, added - grouped), 1e10)], axis=1)
        row_ind, col_ind = solve_assignment(cost, opts.assignment)
        for r, c in zip(row_ind.tolist(), col_ind.tolist(), strict=True):
            if c < grouped and dist[r, c] < tag_threshold:
                people[c][joint] = rows[r]
                tag_lists[c].append(tag[r])
                means[c] = None
            else:
                start(float(tag[r, 0]), joint, rows[r], tag[r])
    if not people:
        return np.zeros((0, num_joints, 3 + tag_dim), np.float32)
    return np.stack(people).astype(np.float32)


def _quarter_offsets(det: np.ndarray, k: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple:
    """+-0.25 toward the larger horizontal / vertical neighbour (ties: -0.25), official ``adjust``."""
    _, h, w = det.shape
    right = det[k, y, np.minimum(x + 1, w - 1)] > det[k, y, np.maximum(x - 1, 0)]
    down = det[k, np.minimum(y + 1, h - 1), x] > det[k, np.maximum(y - 1, 0), x]
    return np.where(right, 0.25, -0.25), np.where(down, 0.25, -0.25)


def adjust_keypoints(keypoints: np.ndarray, heatmaps) -> np.ndarray:
    """Move each detected joint (value > 0) to its pixel centre plus a quarter pixel toward the larger
    neighbour in x and in y (official ``HeatmapParser.adjust``).

    Args:
        keypoints: ``(N, K, 3 + L)`` from :func:`match_by_tag` (pixel positions, map px).
        heatmaps: ``(K, H, W)`` the same maps.

    Returns:
        a new float32 array: ``x -> int(x) + 0.5 +- 0.25``, ``y`` likewise; other columns unchanged.
    """
    det = heatmaps.detach().float().cpu().numpy() if _is_tensor(heatmaps) else heatmaps
    out = np.array(keypoints, dtype=np.float32, copy=True)
    p, k = np.nonzero(out[..., 2] > 0)
    if p.size == 0:
        return out
    x = out[p, k, 0].astype(np.int64)
    y = out[p, k, 1].astype(np.int64)
    dx, dy = _quarter_offsets(det, k, x, y)
    out[p, k, 0] = x + 0.5 + dx
    out[p, k, 1] = y + 0.5 + dy
    return out


#: Side of the Gaussian blur before the UDP / DARK Newton step (MMPose 0.x ``post_dark_udp``'s ``kernel=3``).
DARK_KERNEL = 3


def dark_udp_adjust(keypoints: np.ndarray, heatmaps, kernel: int = DARK_KERNEL) -> np.ndarray:
    """Sub-pixel positions of the detected joints by UDP's DARK step (MMPose 0.x ``post_dark_udp``, the bottom-up
    ``HeatmapParser.parse`` adjust with ``use_udp``; Huang et al. CVPR 2020 + Zhang et al. CVPR 2020 "DARK").

    Each heatmap is blurred (``cv2.GaussianBlur``, ``kernel x kernel``, sigma from the kernel), clipped to
    ``[0.001, 50]`` and its log taken, all float32; with the map edge-padded by one pixel, the gradient ``d`` and
    Hessian ``h`` at the joint's integer pixel are central differences, and the joint moves by
    ``-(h + eps I)^-1 d`` (``eps`` float32's, the inverse in float64 as MMPose's mixed dtypes give it). The maps
    are not changed (MMPose changes a CPU tensor's maps in place, so that its refinement then reads the log maps;
    on a GPU, as here, it reads the heatmaps).

    Args:
        keypoints: ``(N, K, 3 + L)`` from :func:`match_by_tag`: integer pixel positions, map px (pixel centres at
            the integers).
        heatmaps: ``(K, H, W)`` the same maps.
        kernel: blur side (odd).

    Returns:
        a new float32 array; joints with value 0 (missing) are left as they are (MMPose moves them too, by the
        step at pixel ``(0, 0)``, before refinement fills or keeps them with score 0).
    """
    det = heatmaps.detach().float().cpu().numpy() if _is_tensor(heatmaps) else np.asarray(heatmaps, np.float32)
    out = np.array(keypoints, dtype=np.float32, copy=True)
    p, k = np.nonzero(out[..., 2] > 0)
    if p.size == 0:
        return out
    joints, v = np.unique(k, return_inverse=True)
    logs = []
    for j in joints:  # only the joints detected somewhere: (J, H + 2, W + 2), J <= K
        blurred = cv2.GaussianBlur(np.ascontiguousarray(det[j], dtype=np.float32), (kernel, kernel), 0)
        logs.append(np.pad(np.log(np.clip(blurred, 0.001, 50)), 1, mode="edge"))
    pad = np.stack(logs)
    x = out[p, k, 0].astype(np.int64) + 1  # padded frame
    y = out[p, k, 1].astype(np.int64) + 1
    i_ = pad[v, y, x]
    ix1, ix1_ = pad[v, y, x + 1], pad[v, y, x - 1]
    iy1, iy1_ = pad[v, y + 1, x], pad[v, y - 1, x]
    ix1y1, ix1_y1_ = pad[v, y + 1, x + 1], pad[v, y - 1, x - 1]
    dx = 0.5 * (ix1 - ix1_)
    dy = 0.5 * (iy1 - iy1_)
    dxx = ix1 - 2 * i_ + ix1_
    dyy = iy1 - 2 * i_ + iy1_
    dxy = 0.5 * (ix1y1 - ix1 - iy1 + i_ + i_ - ix1_ - iy1_ + ix1_y1_)
    hessian = np.stack([np.stack([dxx, dxy], -1), np.stack([dxy, dyy], -1)], -2)  # (V, 2, 2) float32
    inverse = np.linalg.inv(hessian + np.finfo(np.float32).eps * np.eye(2))  # float64, as MMPose's
    step = np.einsum("vmn,vn->vm", inverse, np.stack([dx, dy], -1))
    out[p, k, 0] -= step[:, 0]
    out[p, k, 1] -= step[:, 1]
    return out


def _tile_reduce(maps: np.ndarray, reduce: np.ufunc) -> np.ndarray:
    """``(J, H, W)`` -> ``(J, Ty * Tx)``: ``reduce`` (``np.maximum`` / ``np.minimum``) over each 16 x 16 tile, tiles in
    row-major order. Edge rows / columns are repeated to fill the last tiles, which changes no minimum or maximum.
    Rows first (whole-row operations), then the 16 columns of each tile on the 16x smaller result."""
    j, h, w = maps.shape
    ty, tx = -(-h // _TILE), -(-w // _TILE)
    if (h, w) != (ty * _TILE, tx * _TILE):
        maps = np.pad(maps, ((0, 0), (0, ty * _TILE - h), (0, tx * _TILE - w)), mode="edge")
    rows = reduce.reduce(maps.reshape(j, ty, _TILE, tx * _TILE), axis=2)  # (J, Ty, Tx * 16)
    return reduce.reduce(rows.reshape(j, ty, tx, _TILE), axis=3).reshape(j, -1)


def _tile_bounds(det: np.ndarray, tags: np.ndarray, joints: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per 16 x 16 tile of the given joints: heatmap maximum ``(J, T)`` and tag minimum and maximum per dimension
    ``(J, T, L)``, ``T = Ty * Tx`` tiles in row-major order."""
    top = _tile_reduce(det[joints], np.maximum)
    lo, hi = [], []
    for d in range(tags.shape[-1]):  # one contiguous (J, H, W) copy per tag dimension: fast reductions
        sub = tags[joints, :, :, d]
        lo.append(_tile_reduce(sub, np.minimum))
        hi.append(_tile_reduce(sub, np.maximum))
    return top, np.stack(lo, axis=-1), np.stack(hi, axis=-1)


def _eval_tiles(det, tags, means, pair_joint, items_pair, items_tile) -> tuple[np.ndarray, np.ndarray]:
    """Exact ``det - round(||tag - mean||)`` on (pair, tile) items: per item its max and first flat index."""
    _, h, w, _ = tags.shape
    tx = -(-w // _TILE)
    best = np.empty(items_pair.size, np.float32)
    where = np.empty(items_pair.size, np.int64)
    offs = np.arange(_TILE)
    for s in range(0, items_pair.size, _CHUNK):
        ip, it = items_pair[s : s + _CHUNK], items_tile[s : s + _CHUNK]
        k = pair_joint[ip]
        # Clipped rows / columns repeat the last one: they come after the pixel they copy in row-major order.
        rows = np.minimum((it // tx)[:, None] * _TILE + offs, h - 1)  # (n, 16)
        cols = np.minimum((it % tx)[:, None] * _TILE + offs, w - 1)
        d = det[k[:, None, None], rows[:, :, None], cols[:, None, :]]  # (n, 16, 16)
        t = tags[k[:, None, None], rows[:, :, None], cols[:, None, :]]  # (n, 16, 16, L)
        sq = (t - means[ip][:, None, None, :]) ** 2
        dist2 = sq[..., 0]
        for dim in range(1, sq.shape[-1]):  # the left-to-right float32 sum of .sum(axis=3), ~10x faster for L > 1
            dist2 = dist2 + sq[..., dim]
        score = (d - np.round(dist2**0.5)).reshape(len(ip), -1)
        am = score.argmax(axis=1)  # first maximum in the tile's row-major order = smallest flat index
        n = np.arange(len(ip))
        best[s : s + _CHUNK] = score[n, am]
        where[s : s + _CHUNK] = rows[n, am // _TILE] * w + cols[n, am % _TILE]
    return best, where


def refine_keypoints(keypoints: np.ndarray, heatmaps, tags, *, udp: bool = False, _band_max_cache=None) -> np.ndarray:
    """Fill each person's missing joints (official ``HeatmapParser.refine``).

    For person ``p`` with mean tag ``m`` (mean of the tag maps read at its detected joints, value > 0, at
    ``int(x), int(y)`` clipped to the map), each
    missing joint ``k`` (value == 0) is placed at the first arg-max (row-major) of
    ``heatmaps[k] - round(||tags[k] - m||)``, moved by the same +0.5 / quarter-pixel adjustment (``udp``: the
    quarter pixel only, MMPose 0.x ``HeatmapParser.refine(use_udp=True)``), and gets the
    heatmap value there as its score; it is filled only if that value is > 0. Tag columns of filled joints
    stay 0 (as official).

    Args:
        keypoints: ``(N, K, 3 + L)`` after :func:`adjust_keypoints` (or :func:`match_by_tag`), map px.
        heatmaps: ``(K, H, W)``; tags: ``(K, H, W, L)``.
        udp: pixel centres at the integers (no +0.5).

    Returns:
        a new float32 ``(N, K, 3 + L)`` array.
    """
    det, tag = _as_maps(heatmaps, tags)
    out = np.array(keypoints, dtype=np.float32, copy=True)
    num_people = out.shape[0]
    if num_people == 0:
        return out
    _, h, w = det.shape
    detected = out[..., 2] > 0
    missing = out[..., 2] == 0
    band_max = _band_max(det) if _band_max_cache is None else _band_max_cache
    # A joint whose map is nowhere > 0 can never be filled (the value at the arg-max must be > 0).
    missing &= (band_max.max(axis=1) > 0)[None, :]
    missing &= detected.any(axis=1)[:, None]
    pp, pk = np.nonzero(missing)
    if pp.size == 0:
        return out
    # Mean tag of each person, read from the maps at its detected joints (official order, float32 mean).
    means = np.zeros((num_people, tag.shape[-1]), np.float32)
    for p in np.unique(pp):
        k = np.nonzero(detected[p])[0]
        xy = out[p, k, :2].astype(np.int32)
        xs, ys = np.clip(xy[:, 0], 0, w - 1), np.clip(xy[:, 1], 0, h - 1)  # only UDP's DARK step leaves the map
        means[p] = np.mean(tag[k, ys, xs], axis=0)
    pair_means = means[pp]
    # Branch and bound over 16 x 16 tiles: upper bound = tile max - round(lower bound of the tag distance).
    joints, jpos = np.unique(pk, return_inverse=True)
    tile_max, lo, hi = _tile_bounds(det, tag, joints)  # (J, T), (J, T, L)
    m64 = pair_means.astype(np.float64)[:, None, :]
    gap = np.maximum(np.maximum(lo[jpos] - m64, m64 - hi[jpos]), 0.0)  # (P, T, L)
    dist_lb = np.sqrt((gap**2).sum(axis=2))
    r_lb = np.round(np.maximum(dist_lb * (1 - 1e-6) - 1e-6, 0.0)).astype(np.float32)
    upper = tile_max[jpos] - r_lb  # float32; >= every exact pixel score in the tile (monotone rounding)
    first = upper.argmax(axis=1)
    seed, _ = _eval_tiles(det, tag, pair_means, pk, np.arange(pp.size), first)
    ip, it = np.nonzero(upper >= seed[:, None])
    best, where = _eval_tiles(det, tag, pair_means, pk, ip, it)
    # Per pair: maximum score, then the smallest flat index among equal maxima.
    order = np.lexsort((where, -best.astype(np.float64), ip))
    firsts = order[np.searchsorted(ip[order], np.arange(pp.size))]
    flat = where[firsts]
    y, x = flat // w, flat % w
    val = det[pk, y, x]
    dx, dy = _quarter_offsets(det, pk, x, y)
    fill = val > 0
    centre = 0.0 if udp else 0.5
    out[pp[fill], pk[fill], 0] = (x + centre + dx)[fill]
    out[pp[fill], pk[fill], 1] = (y + centre + dy)[fill]
    out[pp[fill], pk[fill], 2] = val[fill]
    return out


def person_scores(keypoints: np.ndarray) -> np.ndarray:
    """Mean heatmap value over all K joints per person (missing joints count 0), official score.

    Returns:
        ``(N,)`` float32.
    """
    return keypoints[:, :, 2].mean(axis=1).astype(np.float32)


def group_keypoints(
    heatmaps,
    tags,
    *,
    joint_order: Sequence[int],
    settings: GroupingSettings | None = None,
    udp: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Decode people from one image's heatmaps and tag maps (official ``HeatmapParser.parse``).

    Steps: :func:`nms_topk` -> :func:`match_by_tag` -> :func:`adjust_keypoints` (if ``adjust``; with ``udp``
    :func:`dark_udp_adjust`) -> scores (:func:`person_scores`, before refinement) -> :func:`refine_keypoints` (if
    ``refine``).

    Args:
        heatmaps: ``(K, H, W)`` float numpy array or torch tensor (CPU or GPU).
        tags: ``(K, H, W, L)`` (``(K, H, W)`` means L = 1), same type rules.
        joint_order: matching order, a permutation of ``range(K)`` (``KeypointLayout.joint_order_index``).
        settings: the official ``TEST`` settings (:class:`bottomup.codec.settings.GroupingSettings`,
            ``conf/test/default.yaml``); default ``GroupingSettings()``.
        udp: maps of a UDP network (``test.udp``, module docstring "UDP"): DARK adjust, refinement without +0.5.

    Returns:
        ``keypoints (N, K, 3 + L)`` float32: ``x, y`` in pixels of the given maps (pixel centres + quarter-pixel
        offsets; ``udp``: pixel centres at the integers), heatmap value (0 = missing), then the tag vector at the
        detection (0 for missing / refined joints); ``scores (N,)`` float32. People in creation order (not sorted by
        score).

    Raises:
        ValueError: bad shapes, kernel or joint order.
    """
    opts = GroupingSettings() if settings is None else settings
    on_gpu = _is_tensor(heatmaps) and heatmaps.device.type != "cpu"
    det, tag = _as_maps(heatmaps, tags)
    band_max = None if on_gpu else _band_max(det)
    cands = nms_topk(
        heatmaps if on_gpu else det,
        tag,
        settings=opts,
        threshold=opts.detection_threshold,
        _band_max_cache=band_max,
        _host_maps=(det, tag) if on_gpu else None,
    )
    return group_candidates(cands, det, tag, joint_order=joint_order, settings=opts, udp=udp, _band_max_cache=band_max)


def group_candidates(
    candidates: Candidates,
    heatmaps: np.ndarray,
    tags: np.ndarray,
    *,
    joint_order: Sequence[int],
    settings: GroupingSettings | None = None,
    udp: bool = False,
    _band_max_cache: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The sequential half of :func:`group_keypoints`, from NMS / top-k candidates on: :func:`match_by_tag` ->
    :func:`adjust_keypoints` (if ``adjust``) -> :func:`person_scores` -> :func:`refine_keypoints` (if ``refine``).

    What an exported graph (``bottomup.deploy.graph.DecodeGraph``) leaves to the host: it runs on numpy arrays
    and never imports torch.

    Args:
        candidates: :func:`nms_topk` (or :func:`candidates_from_topk` on a graph's outputs).
        heatmaps: ``(K, H, W)`` float32 numpy array, the maps the candidates come from.
        tags: ``(K, H, W, L)`` float32.
        joint_order, settings, udp: as :func:`group_keypoints` (``nms_kernel`` is not read: the candidates are
            made).

    Returns:
        as :func:`group_keypoints`: ``keypoints (N, K, 3 + L)`` float32 in map pixels, ``scores (N,)`` float32.
    """
    det, tag = _as_maps(heatmaps, tags)
    opts = GroupingSettings() if settings is None else settings
    keypoints = match_by_tag(candidates, joint_order=joint_order, settings=opts)
    if opts.adjust:
        keypoints = dark_udp_adjust(keypoints, det) if udp else adjust_keypoints(keypoints, det)
    scores = person_scores(keypoints)
    if opts.refine:
        keypoints = refine_keypoints(keypoints, det, tag, udp=udp, _band_max_cache=_band_max_cache)
    return keypoints, scores


def candidates_from_topk(values: np.ndarray, indices: np.ndarray, tags: np.ndarray, width: int) -> Candidates:
    """:class:`Candidates` from a graph's top-k outputs (``bottomup.deploy.graph.DecodeGraph``).

    Args:
        values: ``(K, M)`` heatmap values after NMS, descending per joint (non-peaks are 0).
        indices: ``(K, M)`` integer row-major pixel indices ``y * W + x`` into the ``(H, W)`` maps.
        tags: ``(K, M, L)`` tags at those pixels.
        width: W, map width in pixels.

    Returns:
        ``Candidates(vals (K, M) float32, locs (K, M, 2) int64 (x, y), tags (K, M, L) float32)``; the matching
        keeps only values above its detection threshold, as with :func:`nms_topk`.

    Raises:
        ValueError: shapes that do not agree.
    """
    vals = np.asarray(values, dtype=np.float32)
    idx = np.asarray(indices).astype(np.int64)
    tag = np.asarray(tags, dtype=np.float32)
    if tag.ndim == 2:
        tag = tag[..., None]
    if vals.ndim != 2 or idx.shape != vals.shape or tag.shape[:2] != vals.shape:
        raise ValueError(
            f"top-k outputs must be values (K, M), indices (K, M) and tags (K, M, L); got {vals.shape}, "
            f"{idx.shape}, {tag.shape}"
        )
    locs = np.stack([idx % int(width), idx // int(width)], axis=-1)
    return Candidates(vals, locs, tag)

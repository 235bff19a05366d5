"""Slow, straightforward reference of associative-embedding grouping (official HigherHRNet behaviour).

Written to follow the structure of the published ``HeatmapParser`` (full-map max-pool NMS, top-k, a
``dict`` of people keyed by their first tag value, per-person / per-joint loops for adjust and refine), so
that ``bottomup.codec.grouping`` (the fast, pruned implementation) can be checked against it pixel for pixel.
It differs from the official code only where equal heatmap values tie in top-k, exactly as
``bottomup.codec.grouping`` does (see its "Ties" section): they are ordered by row-major pixel index ascending
(``torch.topk`` leaves that order unspecified). Assignments use the same solver setting as the fast code
(``assignment``, default Munkres' choice among equal-cost optima, as official). With ``torch.topk``'s order put back
it gave the official output on every round-trip and random-map case measured (README "Where grouping can differ").
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from bottomup.codec.assignment import solve_assignment
from bottomup.codec.settings import GroupingSettings


def reference_top_k(det: np.ndarray, tag: np.ndarray, nms_kernel: int, max_people: int):
    """Full-map NMS, then the ``max_people`` best pixels per joint: ``(vals (K,M), locs (K,M,2), tags (K,M,L))``."""
    num_joints, h, w = det.shape
    t = torch.from_numpy(det)[None]
    pool = torch.nn.MaxPool2d(nms_kernel, 1, (nms_kernel - 1) // 2)
    nms = (t * torch.eq(pool(t), t).float())[0].numpy().reshape(num_joints, -1)
    vals = np.zeros((num_joints, max_people), np.float32)
    locs = np.zeros((num_joints, max_people, 2), np.int64)
    tags = np.zeros((num_joints, max_people, tag.shape[-1]), np.float32)
    for k in range(num_joints):
        row = nms[k]
        # All pixels at least as large as the M-th value, then (value desc, index asc).
        kth = torch.from_numpy(row).topk(max_people).values[-1].item()
        idx = np.nonzero(row >= kth)[0]
        idx = idx[np.lexsort((idx, -row[idx].astype(np.float64)))][:max_people]
        for m, i in enumerate(idx):
            y, x = divmod(int(i), w)
            vals[k, m] = row[i]
            locs[k, m] = (x, y)
            tags[k, m] = tag[k, y, x]
    return vals, locs, tags


def reference_match(
    vals,
    locs,
    tags_k,
    joint_order,
    detection_threshold,
    tag_threshold,
    use_detection_val,
    ignore_too_much,
    max_people,
    assignment,
) -> np.ndarray:
    num_joints = vals.shape[0]
    default = np.zeros((num_joints, 3 + tags_k.shape[2]))
    joint_dict: dict = {}
    tag_dict: dict = {}
    for i in range(num_joints):
        idx = joint_order[i]
        tags = tags_k[idx]
        joints = np.concatenate((locs[idx], vals[idx, :, None], tags), 1)
        mask = joints[:, 2] > detection_threshold
        tags, joints = tags[mask], joints[mask]
        if joints.shape[0] == 0:
            continue
        if i == 0 or len(joint_dict) == 0:
            for tag, joint in zip(tags, joints, strict=True):
                key = tag[0]
                joint_dict.setdefault(key, np.copy(default))[idx] = joint
                tag_dict[key] = [tag]
            continue
        grouped_keys = list(joint_dict.keys())[:max_people]
        grouped_tags = [np.mean(tag_dict[key], axis=0) for key in grouped_keys]
        if ignore_too_much and len(grouped_keys) == max_people:
            continue
        diff = joints[:, None, 3:] - np.array(grouped_tags)[None, :, :]
        dist = np.linalg.norm(diff, ord=2, axis=2)
        saved = np.copy(dist)
        if use_detection_val:
            dist = np.round(dist) * 100 - joints[:, 2:3]
        num_added, num_grouped = diff.shape[0], diff.shape[1]
        if num_added > num_grouped:
            dist = np.concatenate((dist, np.zeros((num_added, num_added - num_grouped)) + 1e10), axis=1)
        rows, cols = solve_assignment(dist, assignment)
        for row, col in zip(rows, cols, strict=True):
            if row < num_added and col < num_grouped and saved[row][col] < tag_threshold:
                key = grouped_keys[col]
                joint_dict[key][idx] = joints[row]
                tag_dict[key].append(tags[row])
            else:
                key = tags[row][0]
                joint_dict.setdefault(key, np.copy(default))[idx] = joints[row]
                tag_dict[key] = [tags[row]]
    if not joint_dict:
        return np.zeros((0, num_joints, 3 + tags_k.shape[2]), np.float32)
    return np.array([joint_dict[key] for key in joint_dict]).astype(np.float32)


def reference_adjust(people: np.ndarray, det: np.ndarray) -> np.ndarray:
    people = people.copy()
    for p in range(people.shape[0]):
        for k in range(people.shape[1]):
            if people[p, k, 2] > 0:
                x, y = people[p, k, 0:2]
                xx, yy = int(x), int(y)
                tmp = det[k]
                if tmp[yy, min(xx + 1, tmp.shape[1] - 1)] > tmp[yy, max(xx - 1, 0)]:
                    x += 0.25
                else:
                    x -= 0.25
                if tmp[min(yy + 1, tmp.shape[0] - 1), xx] > tmp[max(0, yy - 1), xx]:
                    y += 0.25
                else:
                    y -= 0.25
                people[p, k, 0:2] = (x + 0.5, y + 0.5)
    return people


def reference_refine(det: np.ndarray, tag: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
    keypoints = keypoints.copy()
    tags = []
    for i in range(keypoints.shape[0]):
        if keypoints[i, 2] > 0:
            x, y = keypoints[i][:2].astype(np.int32)
            tags.append(tag[i, y, x])
    if not tags:
        return keypoints
    prev_tag = np.mean(tags, axis=0)
    found = []
    for i in range(keypoints.shape[0]):
        tmp = det[i]
        tt = ((tag[i] - prev_tag[None, None, :]) ** 2).sum(axis=2) ** 0.5
        tmp2 = tmp - np.round(tt)
        y, x = np.unravel_index(np.argmax(tmp2), tmp.shape)
        xx, yy = x, y
        val = tmp[y, x]
        x = x + 0.5
        y = y + 0.5
        if tmp[yy, min(xx + 1, tmp.shape[1] - 1)] > tmp[yy, max(xx - 1, 0)]:
            x += 0.25
        else:
            x -= 0.25
        if tmp[min(yy + 1, tmp.shape[0] - 1), xx] > tmp[max(0, yy - 1), xx]:
            y += 0.25
        else:
            y -= 0.25
        found.append((x, y, val))
    found = np.array(found)
    for i in range(det.shape[0]):
        if found[i, 2] > 0 and keypoints[i, 2] == 0:
            keypoints[i, :2] = found[i, :2]
            keypoints[i, 2] = found[i, 2]
    return keypoints


def reference_group(
    heatmaps,
    tags,
    *,
    joint_order: Sequence[int],
    settings: GroupingSettings | None = None,
    timings: dict | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Same contract as ``bottomup.codec.grouping.group_keypoints``; ``timings`` (if given) gets seconds per step."""
    import time

    opts = GroupingSettings() if settings is None else settings

    if isinstance(heatmaps, torch.Tensor):
        heatmaps = heatmaps.detach().cpu().numpy()
    if isinstance(tags, torch.Tensor):
        tags = tags.detach().cpu().numpy()
    det = np.ascontiguousarray(heatmaps, dtype=np.float32)
    tag = np.ascontiguousarray(tags, dtype=np.float32)
    if tag.ndim == 3:
        tag = tag[..., None]
    t0 = time.perf_counter()
    vals, locs, tags_k = reference_top_k(det, tag, opts.nms_kernel, opts.max_people)
    t1 = time.perf_counter()
    people = reference_match(
        vals,
        locs,
        tags_k,
        list(joint_order),
        opts.detection_threshold,
        opts.tag_threshold,
        opts.use_detection_val,
        opts.ignore_too_much,
        opts.max_people,
        opts.assignment,
    )
    t2 = time.perf_counter()
    if opts.adjust:
        people = reference_adjust(people, det)
    scores = np.array([people[p, :, 2].mean() for p in range(people.shape[0])], dtype=np.float32)
    if opts.refine:
        for p in range(people.shape[0]):
            people[p] = reference_refine(det, tag, people[p])
    t3 = time.perf_counter()
    if timings is not None:
        timings["nms_topk"] = timings.get("nms_topk", 0.0) + t1 - t0
        timings["match"] = timings.get("match", 0.0) + t2 - t1
        timings["adjust_refine"] = timings.get("adjust_refine", 0.0) + t3 - t2
    return people, scores

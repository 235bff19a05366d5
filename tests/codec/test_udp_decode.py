"""The UDP decode (``test.udp``) equals a re-statement of MMPose 0.x's bottom-up ``use_udp`` steps.

Restated from MMPose v0.29.0 (read, not copied): ``post_dark_udp`` (``core/evaluation/top_down_eval.py``), the
adjust of ``HeatmapParser.parse`` with ``use_udp`` and ``HeatmapParser.refine(use_udp=True)``
(``core/post_processing/group.py``). Maps: the ideal UDP outputs of real coco-mini people
(``bottomup.data.ideal_cases``), aggregated as the UDP test time does.
"""

from __future__ import annotations

import contextlib
import io
import math

import cv2
import numpy as np
import pytest

from bottomup.codec import GroupingSettings
from bottomup.codec.grouping import dark_udp_adjust, group_keypoints, refine_keypoints
from bottomup.codec.targets import render_heatmaps
from bottomup.data.ideal_cases import ideal_case
from bottomup.engine.inference import aggregate_scales

# ------------------------------------------------------------------------------ MMPose 0.x, restated


def mmpose_post_dark_udp(coords: np.ndarray, heatmaps: np.ndarray, kernel: int = 3) -> np.ndarray:
    """``post_dark_udp`` for one image (B = 1): blur, clip, log, edge-pad, central differences on the flattened
    padded maps at ``x + 1 + (y + 1) * (W + 2)``, one Newton step. ``coords (N, K, 2)`` float32."""
    maps = np.array(heatmaps, np.float32, copy=True)[None]  # (1, K, H, W)
    _, k, h, w = maps.shape
    for m in maps[0]:
        cv2.GaussianBlur(m, (kernel, kernel), 0, m)
    np.clip(maps, 0.001, 50, maps)
    np.log(maps, maps)
    flat = np.pad(maps, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="edge").flatten()
    coords = np.array(coords, np.float32, copy=True)
    index = coords[..., 0] + 1 + (coords[..., 1] + 1) * (w + 2)
    index += (w + 2) * (h + 2) * np.arange(0, k).reshape(-1, k)
    index = index.astype(int).reshape(-1, 1)
    i_ = flat[index]
    ix1, ix1_ = flat[index + 1], flat[index - 1]
    iy1, iy1_ = flat[index + w + 2], flat[index - 2 - w]
    ix1y1, ix1_y1_ = flat[index + w + 3], flat[index - w - 3]
    dx, dy = 0.5 * (ix1 - ix1_), 0.5 * (iy1 - iy1_)
    derivative = np.concatenate([dx, dy], axis=1).reshape(coords.shape[0], k, 2, 1)
    dxx = ix1 - 2 * i_ + ix1_
    dyy = iy1 - 2 * i_ + iy1_
    dxy = 0.5 * (ix1y1 - ix1 - iy1 + i_ + i_ - ix1_ - iy1_ + ix1_y1_)
    hessian = np.concatenate([dxx, dxy, dxy, dyy], axis=1).reshape(coords.shape[0], k, 2, 2)
    hessian = np.linalg.inv(hessian + np.finfo(np.float32).eps * np.eye(2))
    coords -= np.einsum("ijmn,ijnk->ijmk", hessian, derivative)[..., 0]
    return coords


def mmpose_refine_udp(heatmap: np.ndarray, tag: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
    """``HeatmapParser.refine(use_udp=True)`` for one person ``(K, 3 + L)``: mean tag at ``int`` of the detected
    joints (clipped), per joint the arg-max of ``heatmap - round(tag distance)``, +-0.25 toward the larger neighbour,
    no +0.5; missing joints filled where that value is > 0."""
    k, h, w = heatmap.shape
    kp = keypoints.copy()
    tags = []
    for i in range(k):
        if kp[i, 2] > 0:
            x, y = kp[i][:2].astype(int)
            tags.append(tag[i, np.clip(y, 0, h - 1), np.clip(x, 0, w - 1)])
    prev = np.mean(tags, axis=0)
    for i in range(k):
        dist = ((tag[i] - prev[None, None, :]) ** 2).sum(axis=2) ** 0.5
        y, x = np.unravel_index(np.argmax(heatmap[i] - np.round(dist)), heatmap[i].shape)
        val = heatmap[i, y, x]
        fx = x + (0.25 if heatmap[i, y, min(w - 1, x + 1)] > heatmap[i, y, max(0, x - 1)] else -0.25)
        fy = y + (0.25 if heatmap[i, min(h - 1, y + 1), x] > heatmap[i, max(0, y - 1), x] else -0.25)
        if val > 0 and kp[i, 2] == 0:
            kp[i, :3] = (fx, fy, val)
    return kp


# ------------------------------------------------------------------------------ real maps


def _ideal_udp_maps(coco_root, layout, flip: bool, count: int = 6):
    """``(heatmaps (K, h, w), tags (K, h, w, L))`` numpy: UDP ideal outputs of the first coco-mini val images with
    people, aggregated as the UDP test time does (``align_corners=True``, no projection)."""
    from pycocotools.coco import COCO

    from bottomup.codec import AssociativeEmbeddingCodec

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(coco_root / "annotations" / "person_keypoints_val2017.json"))
    codec = AssociativeEmbeddingCodec.from_layout(layout)
    out = []
    for img_id in sorted(coco.getImgIds()):
        anns = [a for a in coco.loadAnns(coco.getAnnIds(imgIds=img_id, iscrowd=False)) if a["num_keypoints"] > 0]
        if not anns:
            continue
        info = coco.loadImgs(img_id)[0]
        people = np.array([a["keypoints"] for a in anns], np.float64).reshape(-1, layout.num_keypoints, 3)
        per_scale, tf = ideal_case(people, info["height"], info["width"], layout, flip=flip, udp=True)
        heat, tag = aggregate_scales(per_scale, tf, codec)
        out.append((heat[0].numpy(), tag[0].numpy()))
        if len(out) == count:
            break
    return out


@pytest.mark.parametrize("flip", [False, True], ids=["noflip", "flip"])
def test_dark_adjust_equals_mmpose_post_dark_udp(coco_root, coco_layout, flip) -> None:
    joints = 0
    for heat, tag in _ideal_udp_maps(coco_root, coco_layout, flip):
        matched, _ = group_keypoints(
            heat, tag, joint_order=coco_layout.joint_order_index, settings=GroupingSettings(adjust=False, refine=False)
        )
        got = dark_udp_adjust(matched, heat)
        expect = mmpose_post_dark_udp(matched[..., :2], heat)
        found = matched[..., 2] > 0
        np.testing.assert_allclose(got[..., :2][found], expect[found], rtol=0, atol=2e-5)
        np.testing.assert_array_equal(got[~found], matched[~found])  # missing joints are left alone here
        np.testing.assert_array_equal(got[..., 2:], matched[..., 2:])
        joints += int(found.sum())
    assert joints > 100


def test_dark_adjust_finds_a_sub_pixel_joint() -> None:
    """A UDP Gaussian (sigma 2) at (10.3, 20.8): the DARK step lands within 0.01 px; the biased +0.5 / quarter-pixel
    rule of the non-UDP decode is off by ~0.45 px there."""
    hm = render_heatmaps(np.array([[[10.3, 20.8, 2.0]]]), 40, 32, 2.0, udp=True)
    peak = np.unravel_index(np.argmax(hm[0]), hm[0].shape)
    kp = np.array([[[peak[1], peak[0], hm[0][peak], 0.0]]], np.float32)
    got = dark_udp_adjust(kp, hm)[0, 0]
    assert math.hypot(got[0] - 10.3, got[1] - 20.8) < 0.01
    from bottomup.codec.grouping import adjust_keypoints

    biased = adjust_keypoints(kp, hm)[0, 0]
    assert math.hypot(biased[0] - 10.3, biased[1] - 20.8) > 0.3


@pytest.mark.parametrize("flip", [False, True], ids=["noflip", "flip"])
def test_udp_refine_equals_mmpose_refine(coco_root, coco_layout, flip) -> None:
    filled = 0
    for heat, tag in _ideal_udp_maps(coco_root, coco_layout, flip):
        opts = GroupingSettings(refine=False)
        adjusted, _ = group_keypoints(heat, tag, joint_order=coco_layout.joint_order_index, settings=opts, udp=True)
        # drop every third detected joint so that refinement has real joints to find
        dropped = adjusted.copy()
        p, k = np.nonzero(dropped[..., 2] > 0)
        keep_one = np.zeros_like(p, bool)
        keep_one[np.unique(p, return_index=True)[1]] = True
        drop = (np.arange(p.size) % 3 == 1) & ~keep_one
        dropped[p[drop], k[drop]] = 0
        got = refine_keypoints(dropped, heat, tag, udp=True)
        for n in range(dropped.shape[0]):
            expect = mmpose_refine_udp(heat, tag, dropped[n])
            np.testing.assert_allclose(got[n, :, :3], expect[:, :3], rtol=0, atol=1e-6)
        biased = refine_keypoints(dropped, heat, tag)  # the +0.5 that UDP drops
        new = (dropped[..., 2] == 0) & (got[..., 2] > 0)
        np.testing.assert_allclose(biased[..., :2][new] - got[..., :2][new], 0.5, atol=1e-6)
        filled += int(new.sum())
    assert filled > 20


@pytest.mark.parametrize("flip", [False, True], ids=["noflip", "flip"])
def test_udp_parse_is_match_then_dark_then_refine(coco_root, coco_layout, flip) -> None:
    """``group_keypoints(udp=True)`` = MMPose's parse with ``use_udp``: the same matching, scores before refinement,
    then ``post_dark_udp`` and ``refine(use_udp=True)``."""
    order = coco_layout.joint_order_index
    for heat, tag in _ideal_udp_maps(coco_root, coco_layout, flip, count=4):
        kp, scores = group_keypoints(heat, tag, joint_order=order, udp=True)
        matched, matched_scores = group_keypoints(
            heat, tag, joint_order=order, settings=GroupingSettings(adjust=False, refine=False)
        )
        np.testing.assert_array_equal(scores, matched_scores)
        adjusted = matched.copy()
        found = matched[..., 2] > 0
        adjusted[..., :2][found] = mmpose_post_dark_udp(matched[..., :2], heat)[found]
        for n in range(kp.shape[0]):
            np.testing.assert_allclose(kp[n, :, :3], mmpose_refine_udp(heat, tag, adjusted[n])[:, :3], atol=2e-5)

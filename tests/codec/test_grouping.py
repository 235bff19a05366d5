"""Grouping (decode): hand-made maps with known answers, and fast == reference on random maps."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as ndi
import torch

from bottomup.codec.grouping import (
    adjust_keypoints,
    group_keypoints,
    match_by_tag,
    nms_topk,
    person_scores,
    refine_keypoints,
)
from bottomup.codec.reference import reference_group
from bottomup.codec.settings import GroupingSettings

K, H, W = 3, 24, 32
ORDER = [0, 1, 2]


def _blob(det, k, x, y, peak=1.0, sigma=1.5):
    ys, xs = np.mgrid[0:H, 0:W]
    det[k] = np.maximum(det[k], peak * np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * sigma**2)))


def _two_people(tag_a=0.0, tag_b=3.0):
    """Person A at x ~ 8, person B at x ~ 22 (overlapping Gaussians on joint 2), tags constant per half."""
    det = np.zeros((K, H, W), np.float32)
    tags = np.zeros((K, H, W, 1), np.float32)
    a = [(6, 5), (8, 10), (12, 18)]
    b = [(22, 5), (20, 10), (15, 18)]  # joint 2 of A and B 3 px apart
    for k in range(K):
        _blob(det, k, *a[k], peak=0.9)
        _blob(det, k, *b[k], peak=0.8)
        tags[k, :, :, 0] = np.where(np.arange(W)[None, :] <= (a[k][0] + b[k][0]) / 2, tag_a, tag_b)
    return det, tags, a, b


def test_nms_keeps_local_maxima_in_value_order():
    det = np.zeros((1, 10, 10), np.float32)
    det[0, 2, 3] = 0.9
    det[0, 2, 5] = 0.5  # within 5x5 of the 0.9 peak: suppressed
    det[0, 8, 8] = 0.7
    det[0, 8, 1] = 0.7  # tie with (8, 8): lower pixel index first
    tags = np.arange(100, dtype=np.float32).reshape(1, 10, 10, 1)
    c = nms_topk(det, tags, settings=GroupingSettings(max_people=4))
    np.testing.assert_array_equal(c.vals[0, :3], np.float32([0.9, 0.7, 0.7]))
    assert c.vals[0, 3] == 0  # official NMS map is 0 elsewhere
    np.testing.assert_array_equal(c.locs[0, :3], [[3, 2], [1, 8], [8, 8]])
    np.testing.assert_array_equal(c.tags[0, :3, 0], [23, 81, 88])
    thr = nms_topk(
        det, tags, settings=GroupingSettings(max_people=4), threshold=0.1
    )  # pruned path: same kept candidates
    np.testing.assert_array_equal(thr.vals[0, :3], c.vals[0, :3])
    np.testing.assert_array_equal(thr.locs[0, :3], c.locs[0, :3])
    assert thr.vals[0, 3] == -np.inf


def test_topk_limits_candidates_per_joint():
    det = np.zeros((2, 40, 40), np.float32)
    for i in range(8):
        det[0, 2 + 5 * (i % 8), 3] = 0.2 + 0.05 * i
    c = nms_topk(det, np.zeros((2, 40, 40, 1), np.float32), settings=GroupingSettings(max_people=3), threshold=0.1)
    np.testing.assert_allclose(c.vals[0], [0.55, 0.5, 0.45], rtol=1e-6)
    np.testing.assert_array_equal(c.locs[0, :, 1], [37, 32, 27])
    assert np.all(c.vals[1] == -np.inf)


def test_match_by_tag_hand_computed():
    # joint 0: two people with tags 0 and 5; joint 1: candidates with tags 5.2 (val .6) and 0.3 (val .9)
    vals = np.float32([[0.8, 0.7], [0.9, 0.6]])
    locs = np.int64([[[1, 1], [9, 1]], [[2, 4], [8, 4]]])
    tags = np.float32([[[0.0], [5.0]], [[0.3], [5.2]]])
    out = match_by_tag((vals, locs, tags), joint_order=[0, 1], settings=GroupingSettings(detection_threshold=0.1))
    assert out.shape == (2, 2, 4)
    np.testing.assert_array_equal(out[0], np.float32([[1, 1, 0.8, 0.0], [2, 4, 0.9, 0.3]]))
    np.testing.assert_array_equal(out[1], np.float32([[9, 1, 0.7, 5.0], [8, 4, 0.6, 5.2]]))
    # A far tag (distance 2 >= 1) starts a new person; a low value is dropped.
    tags2 = np.float32([[[0.0], [5.0]], [[2.0], [5.2]]])
    vals2 = np.float32([[0.8, 0.05], [0.9, 0.6]])
    out2 = match_by_tag((vals2, locs, tags2), joint_order=[0, 1], settings=GroupingSettings(detection_threshold=0.1))
    assert out2.shape[0] == 3  # person (tag 0), new person tag 2 (far from 0), new person tag 5.2
    np.testing.assert_array_equal(out2[0, 1], 0)
    np.testing.assert_array_equal(out2[1, 1, :3], np.float32([2, 4, 0.9]))


def test_adjust_moves_toward_larger_neighbour():
    det = np.zeros((1, 5, 5), np.float32)
    det[0, 2, 2] = 1.0
    det[0, 2, 3] = 0.5  # right > left -> +0.25 in x
    det[0, 1, 2] = 0.4  # up > down -> -0.25 in y
    kp = np.float32([[[2, 2, 1.0, 7.0]]])
    out = adjust_keypoints(kp, det)
    np.testing.assert_array_equal(out[0, 0], [2.75, 2.25, 1.0, 7.0])
    flat = np.zeros((1, 5, 5), np.float32)  # ties go to -0.25
    np.testing.assert_array_equal(adjust_keypoints(np.float32([[[0, 4, 0.5, 0]]]), flat)[0, 0, :2], [0.25, 4.25])


def test_refine_fills_missing_joint_with_same_tag():
    det = np.zeros((2, 8, 8), np.float32)
    tags = np.zeros((2, 8, 8, 1), np.float32)
    det[0, 1, 1] = 0.9
    det[1, 6, 2] = 0.3  # weaker, but the person's tag (0) is there
    det[1, 2, 6] = 0.8  # stronger, but tag 3 away -> 0.8 - 3 < 0.3
    tags[1, :, 4:] = 3.0
    kp = np.zeros((1, 2, 4), np.float32)
    kp[0, 0] = [1.25, 1.25, 0.9, 0.0]
    out = refine_keypoints(kp, det, tags)
    np.testing.assert_array_equal(out[0, 0], kp[0, 0])
    np.testing.assert_array_equal(out[0, 1, :3], np.float32([2.25, 6.25, 0.3]))  # x = 2 + .5 - .25, y = 6 + .5 - .25


def test_two_overlapping_people_and_swapped_tags():
    det, tags, a, b = _two_people()
    kp, scores = group_keypoints(det, tags, joint_order=ORDER, settings=GroupingSettings(detection_threshold=0.1))
    assert kp.shape == (2, K, 4)
    people = sorted(kp.tolist(), key=lambda p: p[0][0])
    for person, truth in zip(people, (a, b), strict=True):
        np.testing.assert_allclose(np.array(person)[:, :2], np.array(truth) + 0.5, atol=0.25)
    np.testing.assert_allclose(sorted(scores), [0.8, 0.9], atol=1e-6)
    det2, tags2, _, _ = _two_people(tag_a=3.0, tag_b=0.0)
    kp2, scores2 = group_keypoints(det2, tags2, joint_order=ORDER)
    order1, order2 = np.argsort(kp[:, 0, 0]), np.argsort(kp2[:, 0, 0])
    np.testing.assert_array_equal(kp[order1, :, :3], kp2[order2, :, :3])
    np.testing.assert_array_equal(scores[order1], scores2[order2])


def test_no_peak_above_threshold_gives_no_people():
    det = np.full((K, H, W), 0.05, np.float32)
    kp, scores = group_keypoints(det, np.zeros((K, H, W, 2), np.float32), joint_order=ORDER)
    assert kp.shape == (0, K, 5) and scores.shape == (0,)
    assert person_scores(kp).shape == (0,)


def test_torch_input_and_bad_shapes():
    det, tags, _, _ = _two_people()
    kp_np, sc_np = group_keypoints(det, tags, joint_order=ORDER)
    kp_t, sc_t = group_keypoints(torch.from_numpy(det), torch.from_numpy(tags[..., 0]), joint_order=ORDER)
    np.testing.assert_array_equal(kp_np, kp_t)
    np.testing.assert_array_equal(sc_np, sc_t)
    with pytest.raises(ValueError, match="tags must be"):
        group_keypoints(det, tags[:, :5], joint_order=ORDER)
    with pytest.raises(ValueError, match="joint_order"):
        group_keypoints(det, tags, joint_order=[0, 1, 1])
    with pytest.raises(ValueError, match="nms_kernel"):
        group_keypoints(det, tags, joint_order=ORDER, settings=GroupingSettings(nms_kernel=4))


def _random_maps(seed: int, quantise: bool):
    rng = np.random.default_rng(seed)
    k, h, w, dim = 17, int(rng.integers(20, 90)), int(rng.integers(20, 90)), int(rng.integers(1, 3))
    det = ndi.gaussian_filter(rng.random((k, h, w)), (0, 2, 2))
    det = (det - det.min()) / (det.max() - det.min()) * rng.uniform(0.3, 1.2)
    tags = ndi.gaussian_filter(rng.standard_normal((k, h, w, dim)) * 5, (0, 3, 3, 0))
    if quantise:  # plateaus and exact ties everywhere
        det, tags = np.round(det * 8) / 8, np.round(tags)
    return det.astype(np.float32), tags.astype(np.float32)


@pytest.mark.parametrize("quantise", [False, True], ids=["smooth", "quantised"])
@pytest.mark.parametrize("settings", [{}, {"use_detection_val": False, "ignore_too_much": True, "max_people": 5}])
def test_fast_equals_reference_on_random_maps(quantise, settings):
    order = [0, 1, 2, 3, 4, 5, 6, 11, 12, 7, 8, 9, 10, 13, 14, 15, 16]
    total = 0
    for seed in range(12):
        det, tags = _random_maps(seed, quantise)
        kp, sc = group_keypoints(det, tags, joint_order=order, settings=GroupingSettings(**settings))
        rkp, rsc = reference_group(det, tags, joint_order=order, settings=GroupingSettings(**settings))
        assert kp.shape == rkp.shape, seed
        np.testing.assert_array_equal(kp, rkp)
        np.testing.assert_array_equal(sc, rsc)
        total += kp.shape[0]
    assert total > 12  # the maps do produce people

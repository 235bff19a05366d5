"""Heatmap and tag-index targets (encode half of the codec)."""

from __future__ import annotations

import numpy as np
import pytest

from bottomup.codec.targets import render_heatmaps, select_people, tag_indices


def test_heatmap_peaks_at_truncated_pixel_and_is_gaussian() -> None:
    kp = np.array([[[10.7, 5.2, 2], [0, 0, 0], [63.9, 63.9, 1]]], np.float32)
    hm = render_heatmaps(kp, 64, 64, sigma=2.0)
    assert hm.shape == (3, 64, 64) and hm.dtype == np.float32
    assert hm[0, 5, 10] == 1.0 and np.unravel_index(hm[0].argmax(), (64, 64)) == (5, 10)
    assert np.isclose(hm[0, 5, 12], np.exp(-4 / 8))  # two pixels right of the peak
    assert hm[0, 5, 18] == 0.0  # outside the 6*sigma+3 window (radius 7)
    assert hm[0, 5, 17] > 0.0
    assert hm[1].max() == 0.0  # unlabeled joint paints nothing
    assert hm[2, 63, 63] == 1.0  # border joint, window clipped


def test_people_combine_by_max_and_out_of_map_is_ignored() -> None:
    kp = np.array([[[10, 10, 2]], [[12, 10, 2]], [[-1, 3, 2]], [[64, 3, 2]]], np.float32)
    hm = render_heatmaps(kp, 64, 64)
    assert hm[0, 10, 10] == 1.0 and hm[0, 10, 12] == 1.0
    assert np.isclose(hm[0, 10, 11], np.exp(-1 / 8))  # max, not sum, of the two Gaussians
    assert hm[0, :, :3].max() == 0.0 and hm[0, :, 20:].max() == 0.0  # (-1, 3) and (64, 3) paint nothing


def test_tag_indices_layout_and_person_cap() -> None:
    kp = np.zeros((35, 2, 3), np.float32)
    kp[:, 0] = [3, 4, 2]
    kp[:5, 1] = [5, 6, 2]  # five people with two joints: the most complete
    idx = tag_indices(kp, 16, 16, max_people=30)
    assert idx.shape == (30, 2, 2)
    assert (idx[:, 0, 0] == 4 * 16 + 3).all() and idx[:, 0, 1].all()
    assert idx[:5, 1, 0].tolist() == [16 * 16 + 6 * 16 + 5] * 5 and idx[5:, 1, 1].sum() == 0
    keep = select_people(kp, 30)
    assert set(range(5)) <= set(keep.tolist()) and len(keep) == 30


def test_joint_rounding_trunc_keeps_just_outside_floor_drops() -> None:
    kp = np.array([[[-0.5, 3.2, 2], [4.0, -0.999, 1], [-1.0, 2.0, 2]]])
    for name in ("trunc", "floor"):
        hm = render_heatmaps(kp, 16, 16, rounding=name)
        idx = tag_indices(kp, 16, 16, max_people=2, rounding=name)
        if name == "trunc":  # official int(): toward zero, then the in-map test
            assert hm[0, 3, 0] == 1.0 and hm[1, 0, 4] == 1.0 and hm[2].max() == 0.0
            assert idx[0, :, 1].tolist() == [1, 1, 0] and idx[0, :2, 0].tolist() == [3 * 16, 256 + 4]
        else:
            assert hm.max() == 0.0 and idx[..., 1].sum() == 0
    with pytest.raises(ValueError, match="data.joint_rounding"):
        render_heatmaps(kp, 16, 16, rounding="round")


def test_per_person_sigma_and_fractional_window() -> None:
    kp = np.array([[[10.0, 10.0, 2]], [[40.0, 10.0, 2]]])
    hm = render_heatmaps(kp, 32, 64, sigma=np.array([1.0, 2.5]))
    assert hm[0, 10, 10] == 1.0 and hm[0, 10, 10 + 5] == 0.0  # sigma 1: window radius 4
    assert np.isclose(hm[0, 10, 12], np.exp(-4 / 2))
    # sigma 2.5: kernel centre 8.5 px right of / below round(40 - 8.5) = 32, round(10 - 8.5) = 2 (NumPy rounds half
    # to even): the centre is (40.5, 10.5), no pixel is 1.0, four share the maximum (official ScaleAwareHeatmapGenerator)
    top = hm[0, 10:12, 40:42]
    assert np.all(top == pytest.approx(np.exp(-0.5 / (2 * 2.5**2)))) and top.max() == hm[0, :, 20:].max()
    with pytest.raises(ValueError, match="sigma"):
        render_heatmaps(kp, 32, 64, sigma=np.array([1.0]))

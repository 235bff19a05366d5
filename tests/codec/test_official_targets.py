"""Training targets on real coco-mini crops equal a loop re-statement of the official HigherHRNet rules.

The re-statement below is written from the official behaviour (``CocoKeypoints.get_mask`` / ``get_joints``,
``RandomAffineTransform``, ``HeatmapGenerator``, ``ScaleAwareHeatmapGenerator``, ``JointsGenerator``), one person
and one joint at a time, given the sample's own affine (the project's affine parametrisation is its own, see
``bottomup.data.transforms``). The crops are searched so that they hit the cases where a looser rule differs:
joints at ``-1 < x < 0`` (kept on pixel 0 by ``int()``), mask pixels whose bilinear value is exactly one half
(kept by the uint8 warp: ``128 / 255 > 0.5``), and a coordinate a few float32 ulps below the map border.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import keypoint_dataset

from bottomup.data import AugmentParams, KeypointDataset

BASE_SIZE, BASE_SIGMA = 256.0, 2.0  # official DATASET.BASE_SIZE / BASE_SIGMA defaults


def _dataset(coco_root: Path, layout, **kw) -> KeypointDataset:
    ann = coco_root / "annotations" / "person_keypoints_train2017.json"
    return keypoint_dataset(ann, coco_root / "train2017", layout.keypoint_names, layout.flip_pairs, **kw)


# ------------------------------------------------------------------------------ official rules, restated


def official_people(ds: KeypointDataset, image_id: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Joints ``(N, K, 3)`` of the kept annotations (``iscrowd == 0 or num_keypoints > 0``), their box side
    ``max(w, h)`` and the keep-mask ``m < 0.5`` where ``m`` sums the crowd regions and the segmentations of
    people without keypoints."""
    info = ds.coco.imgs[image_id]
    anns = ds.coco.loadAnns(ds.coco.getAnnIds(imgIds=image_id))
    m = np.zeros((info["height"], info["width"]))
    for a in anns:
        if a["iscrowd"] or a["num_keypoints"] == 0:
            m += ds.coco.annToMask(a)
    kept = [a for a in anns if a["iscrowd"] == 0 or a["num_keypoints"] > 0]
    joints = np.array([np.reshape(a["keypoints"], (-1, 3)) for a in kept], np.float64)
    sizes = np.array([max(a["bbox"][2], a["bbox"][3]) for a in kept], np.float64)
    return joints, sizes, m < 0.5


def official_mask(mask: np.ndarray, matrix: np.ndarray, res: int) -> np.ndarray:
    """uint8(mask * 255) warped bilinearly (zero border), divided by 255, kept where > 0.5."""
    warped = cv2.warpAffine((mask * 255).astype(np.uint8), matrix, (res, res)) / 255
    return (warped > 0.5).astype(np.float32)


def official_heatmaps(joints: np.ndarray, sigmas: list[float], res: int) -> np.ndarray:
    """``HeatmapGenerator`` / ``ScaleAwareHeatmapGenerator``, one pixel at a time."""
    hms = np.zeros((joints.shape[1], res, res), np.float32)
    for person, sigma in zip(joints, sigmas, strict=True):
        size = 6 * sigma + 3
        grid = np.arange(0, size, 1, float)
        centre = 3 * sigma + 1
        g = np.exp(-((grid[None, :] - centre) ** 2 + (grid[:, None] - centre) ** 2) / (2 * sigma**2))
        for k, (px, py, v) in enumerate(person):
            if v <= 0:
                continue
            x, y = int(px), int(py)  # Python int(): toward zero, on the float64 value
            if x < 0 or y < 0 or x >= res or y >= res:
                continue
            ul = (int(np.round(x - 3 * sigma - 1)), int(np.round(y - 3 * sigma - 1)))
            br = (int(np.round(x + 3 * sigma + 2)), int(np.round(y + 3 * sigma + 2)))
            for yy in range(max(0, ul[1]), min(br[1], res)):
                for xx in range(max(0, ul[0]), min(br[0], res)):
                    i, j = yy - ul[1], xx - ul[0]
                    if i < len(g) and j < len(g):  # (the official slicing fails outright past the kernel)
                        hms[k, yy, xx] = max(hms[k, yy, xx], np.float32(g[i, j]))
    return hms


def official_tag_indices(joints: np.ndarray, res: int) -> list[list[int]]:
    """``JointsGenerator`` (tag per joint): per person, the flat indices ``k * res^2 + y * res + x`` of its valid
    joints (the official packs them into the first slots; compared as lists in joint order)."""
    out = []
    for person in joints:
        rows = []
        for k, (px, py, v) in enumerate(person):
            x, y = int(px), int(py)
            if v > 0 and 0 <= x < res and 0 <= y < res:
                rows.append(k * res * res + y * res + x)
        out.append(rows)
    return out


# ------------------------------------------------------------------------------ crops that hit the cases


def _warp(joints: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Official ``_affine_joints``: ``[x, y, 1] @ matrix.T`` in float64; visibility kept."""
    out = joints.copy()
    xy1 = np.concatenate([joints[..., :2], np.ones(joints.shape[:-1] + (1,))], axis=-1)
    out[..., :2] = xy1 @ matrix.T
    return out


def _just_outside(joints: np.ndarray, res: int) -> int:
    """Visible joints with ``-1 < x < 0`` or ``-1 < y < 0`` that ``int()`` keeps on the map."""
    x, y, v = joints[..., 0], joints[..., 1], joints[..., 2]
    near = ((x > -1) & (x < 0)) | ((y > -1) & (y < 0))
    return int(np.sum((v > 0) & near & (x > -1) & (y > -1) & (x < res) & (y < res)))


def _half_pixels(mask: np.ndarray, matrix: np.ndarray, res: int) -> int:
    """Pixels the uint8 warp keeps (``128 / 255 > 0.5``) and a float warp of the 0/1 mask drops (exactly 0.5)."""
    kept = official_mask(mask, matrix, res) > 0
    return int(np.sum(kept & ~(cv2.warpAffine(mask.astype(np.float32), matrix, (res, res)) > 0.5)))


def _hitting_crops(ds: KeypointDataset, wanted: int = 2) -> list[tuple[int, AugmentParams]]:
    """Crops of coco-mini train images with an ignore region: ``wanted`` that put a visible joint just outside a
    map and ``wanted`` with mask pixels at exactly one half (possibly the same crops). Candidates per image: the
    axis-aligned centre crops at the official scale range's ends and middle (where bilinear weights of exactly
    one half occur), then draws of the official distributions (no flip) with fixed seeds."""
    joints_hit, half_hit, found = 0, 0, []
    for index, image_id in enumerate(ds.image_ids):
        joints, _, mask = official_people(ds, image_id)
        if mask.all() or joints.shape[0] > ds.max_people:
            continue
        info = ds.coco.imgs[image_id]
        rng = np.random.default_rng(index)
        candidates = [AugmentParams(scale=v) for v in (0.75, 1.0, 1.25, 1.5)]
        for _ in range(20):
            p = ds.augmentation.random_params(rng)
            candidates.append(AugmentParams(p.rotation, p.scale, p.translate, flip=False))
        for p in candidates:
            m = ds.augmentation.matrix(info["height"], info["width"], p)
            outs = [(m / s, ds.input_size // s) for s in ds.output_strides]
            j = joints_hit < wanted and any(_just_outside(_warp(joints, mat), res) for mat, res in outs)
            h = half_hit < wanted and any(_half_pixels(mask, mat, res) for mat, res in outs)
            if j or h:
                found.append((index, p))
                joints_hit += j
                half_hit += h
                break
        if joints_hit == wanted and half_hit == wanted:
            break
    return found


@pytest.mark.parametrize(
    "scale_type, scale_aware, int_sigma",
    [("short", False, False), ("long", False, False), ("short", True, False), ("long", True, True)],
    ids=["short", "long", "scale_aware", "long_scale_aware_int"],
)
def test_targets_equal_official_rules_on_edge_crops(coco_root, coco_layout, scale_type, scale_aware, int_sigma):
    ds = _dataset(coco_root, coco_layout, scale_type=scale_type, scale_aware_sigma=scale_aware, int_sigma=int_sigma)
    crops = _hitting_crops(ds)
    assert 2 <= len(crops) <= 4
    outside = half = padding = fractional_sigma = 0
    for index, params in crops:
        image_id = ds.image_ids[index]
        s = ds.sample(index, params)
        info = ds.coco.imgs[image_id]
        m = ds.augmentation.matrix(info["height"], info["width"], params)
        np.testing.assert_array_equal(s["matrix"].numpy(), m)
        joints, sizes, mask = official_people(ds, image_id)
        if scale_aware:
            sigmas = sizes / BASE_SIZE * BASE_SIGMA
            if int_sigma:
                sigmas = np.array([int(np.round(v + 0.5)) for v in sigmas], np.float64)
            sigmas = list(sigmas / params.scale)  # official: joints[:, :, 3] / aug_scale, at every output
            fractional_sigma += sum(v != int(v) for v in sigmas)
        else:
            sigmas = [2.0] * len(joints)
        for r, stride in enumerate(ds.output_strides):
            res = ds.input_size // stride
            mat = m / stride
            out_joints = _warp(joints, mat)
            outside += _just_outside(out_joints, res)
            np.testing.assert_array_equal(s["heatmaps"][r].numpy(), official_heatmaps(out_joints, sigmas, res))
            expect_mask = official_mask(mask, mat, res)
            np.testing.assert_array_equal(s["masks"][r].numpy(), expect_mask)
            half += _half_pixels(mask, mat, res)  # pixels at exactly one half: kept (uint8), a float warp drops them
            inside = cv2.warpAffine(np.ones_like(mask, np.uint8), mat, (res, res)) > 0
            padding += int(np.sum(~inside & (expect_mask == 0)))
            if r == 0:
                tags = s["tag_indices"].numpy()
                expect = official_tag_indices(out_joints, res)
                got = [tags[n, tags[n, :, 1] == 1, 0].tolist() for n in range(len(joints))]
                assert got == expect
                assert not tags[len(joints) :].any()
    assert outside > 0  # joints at -1 < x < 0 were hit (and are kept on pixel 0 by both)
    assert half > 0  # mask pixels at exactly 0.5 were hit (uint8 warp keeps them)
    assert padding > 0  # the padding around the image is masked
    if scale_aware:
        assert fractional_sigma > 0 or int_sigma  # non-integer sigma: the shifted official window was hit


def test_long_scale_type_keeps_whole_image_and_masks_padding(coco_root, coco_layout):
    ds = _dataset(coco_root, coco_layout, scale_type="long", train=False)
    index = next(i for i, iid in enumerate(ds.image_ids) if ds.coco.imgs[iid]["width"] != ds.coco.imgs[iid]["height"])
    info = ds.coco.imgs[ds.image_ids[index]]
    h, w = info["height"], info["width"]
    s = ds.sample(index)
    # official crop frame: the box [0, W] x [0, H] centred at (W / 2, H / 2) is scaled onto [0, S] x [0, S]
    corners = np.array([[0, 0], [w, 0], [0, h], [w, h]], np.float64)
    xy = corners @ s["matrix"].numpy()[:, :2].T + s["matrix"].numpy()[:, 2]
    assert xy.min() >= -1e-9 and xy.max() <= 512 + 1e-9  # the whole image is in view
    assert np.isclose(np.ptp(xy[:, 0] if w > h else xy[:, 1]), 512)  # long side fills the input
    short = _dataset(coco_root, coco_layout, train=False).sample(index)
    assert s["masks"][0].mean() < short["masks"][0].mean()  # the padding is masked


def test_joint_a_few_ulps_below_the_border_stays_in_float64(coco_root, coco_layout):
    """float64 ``int()`` as official: a joint 1e-6 px left of the map's right border lands on the last column;
    cast to float32 first it would round onto the border and be dropped."""
    ds = _dataset(coco_root, coco_layout)
    index = 0
    image_id = ds.image_ids[index]
    joints, _, _ = official_people(ds, image_id)
    n, k = np.argwhere(joints[..., 2] > 0)[0]
    info = ds.coco.imgs[image_id]
    h, w = info["height"], info["width"]
    res = ds.input_size // 4
    target = 4 * (res - 1e-6)  # input px
    crop = min(h, w)
    scale = ds.input_size / crop
    centre_x = joints[n, k, 0] - (target - ds.input_size / 2) / scale
    centre_y = joints[n, k, 1]  # the joint on the middle row
    params = AugmentParams(translate=((centre_x - w / 2) * 200 / crop, (centre_y - h / 2) * 200 / crop))
    m = ds.augmentation.matrix(h, w, params)
    x = _warp(joints, m / 4)[n, k, 0]
    assert res - 1 < x < res and np.float32(x) == res  # the case is hit
    s = ds.sample(index, params)
    y = int(_warp(joints, m / 4)[n, k, 1])
    assert s["heatmaps"][0][k, y, res - 1] == 1.0
    tags = s["tag_indices"].numpy()
    assert tags[n, k, 1] == 1 and tags[n, k, 0] == (k * res + y) * res + res - 1


@pytest.mark.parametrize("key, value", [("mask_warp", "float"), ("joint_rounding", "floor")])
def test_looser_options_drop_the_edge_cases(coco_root, coco_layout, key, value):
    """The non-default options act: the float mask warp drops pixels at exactly one half, ``floor`` drops joints
    at ``-1 < x < 0``."""
    official = _dataset(coco_root, coco_layout)
    other = _dataset(coco_root, coco_layout, **{key: value})
    crops = _hitting_crops(official)
    differ = 0
    for index, params in crops:
        a, b = official.sample(index, params), other.sample(index, params)
        if key == "mask_warp":
            diff = [(x.numpy() - y.numpy()) for x, y in zip(a["masks"], b["masks"], strict=True)]
            assert all(d.min() >= 0 for d in diff)  # only pixels the official keeps and the float warp drops
            differ += sum(int(d.sum()) for d in diff)
            assert all(np.array_equal(x, y) for x, y in zip(a["heatmaps"], b["heatmaps"], strict=True))
        else:
            assert np.array_equal(a["masks"][0], b["masks"][0])
            kept = int(a["tag_indices"][..., 1].sum() - b["tag_indices"][..., 1].sum())
            assert kept >= 0
            differ += kept + sum(int((x != y).any()) for x, y in zip(a["heatmaps"], b["heatmaps"], strict=True))
    assert differ > 0


def test_config_keys_reach_the_dataset_and_codec(coco_root):
    from conftest import compose_train_config

    from bottomup.build import build_codec, build_train_dataset

    default = compose_train_config([f"data.root={coco_root}", "output_dir=/tmp/unused"])
    ds = build_train_dataset(default.data, default.model.strides)
    aug, targets = ds.augmentation.settings, ds.targets.settings
    assert (aug.scale_type, aug.mask_warp, ds.codec.joint_rounding, targets.scale_aware_sigma) == (
        "short",
        "uint8",
        "trunc",
        False,
    )
    cfg = compose_train_config(
        [
            f"data.root={coco_root}",
            "output_dir=/tmp/unused",
            "data.augmentation.scale_type=long",
            "data.augmentation.mask_warp=float",
            "data.joint_rounding=floor",
            "data.scale_aware_sigma=true",
            "data.base_size=128",
            "data.sigma=3.0",
            "data.int_sigma=true",
        ]
    )
    ds = build_train_dataset(cfg.data, cfg.model.strides)
    aug, targets = ds.augmentation.settings, ds.targets.settings
    assert (aug.scale_type, aug.mask_warp, ds.codec.joint_rounding, targets.scale_aware_sigma, targets.int_sigma) == (
        "long",
        "float",
        "floor",
        True,
        True,
    )
    assert targets.base_size == 128 and targets.base_sigma == 3.0  # base_sigma follows data.sigma
    assert build_codec(cfg).joint_rounding == "floor"
    np.testing.assert_array_equal(ds.targets.person_sigmas(np.array([128.0, 200.0])), [4.0, 5.0])  # int(round(s + .5))
    with pytest.raises(ValueError, match="data.augmentation.scale_type"):
        _dataset(coco_root, _layout(cfg), scale_type="wide")
    with pytest.raises(ValueError, match="data.joint_rounding"):
        _dataset(coco_root, _layout(cfg), joint_rounding="round")


def _layout(cfg):
    from bottomup.core.keypoints import KeypointLayout

    return KeypointLayout.from_config(cfg.data)

"""UDP geometry (``data.udp`` / ``test.udp``) equals a straightforward re-statement of MMPose 0.x's UDP formulas.

Restated here from MMPose v0.29.0 (read, not copied): ``get_warp_matrix`` / ``warp_affine_joints``
(``core/post_processing/post_transforms.py``), ``BottomUpRandomAffine(use_udp=True)``,
``HeatmapGenerator(use_udp=True)``, ``_get_multi_scale_size(use_udp=True)`` / ``_resize_align_multi_scale_udp``
(``datasets/pipelines/bottom_up_transform.py``) and ``get_group_preds(use_udp=True)``
(``core/evaluation/bottom_up_eval.py``). MMPose keeps its matrices in float32; the re-statements compute in float64
(the project's arithmetic), so the comparisons are to float64 rounding. Real coco-mini images and annotations.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import keypoint_dataset

from bottomup.data import AugmentParams
from bottomup.data.transforms import (
    preprocess_array,
    resize_transform,
    to_original,
    udp_affine_matrix,
    warp_keypoints,
)

# ------------------------------------------------------------------------------ MMPose 0.x, restated


def get_warp_matrix(theta: float, size_input, size_dst, size_target) -> np.ndarray:
    """MMPose ``get_warp_matrix``: rotation ``theta`` degrees about the centre of ``size_input``, the box
    ``size_target`` scaled onto ``size_dst`` (each ``(w, h)``)."""
    t = math.radians(theta)
    sx, sy = size_dst[0] / size_target[0], size_dst[1] / size_target[1]
    return np.array(
        [
            [
                math.cos(t) * sx,
                -math.sin(t) * sx,
                sx * (-0.5 * size_input[0] * math.cos(t) + 0.5 * size_input[1] * math.sin(t) + 0.5 * size_target[0]),
            ],
            [
                math.sin(t) * sy,
                math.cos(t) * sy,
                sy * (-0.5 * size_input[0] * math.sin(t) - 0.5 * size_input[1] * math.cos(t) + 0.5 * size_target[1]),
            ],
        ]
    )


def warp_affine_joints(joints: np.ndarray, mat: np.ndarray) -> np.ndarray:
    """MMPose ``warp_affine_joints``: ``[x, y, 1] @ mat.T``."""
    flat = np.asarray(joints, np.float64).reshape(-1, 2)
    return (np.concatenate([flat, np.ones((len(flat), 1))], axis=1) @ mat.T).reshape(np.shape(joints))


def ceil64(x: float) -> int:
    return int(np.ceil(x / 64)) * 64


def multi_scale_size_udp(h: int, w: int, input_size: int, current_scale: float, min_scale: float):
    """MMPose ``_get_multi_scale_size(..., use_udp=True)``: ``(w_resized, h_resized)``, centre and scale."""
    min_input = ceil64(min_scale * input_size)
    if w < h:
        w_resized = int(min_input * current_scale / min_scale)
        h_resized = int(ceil64(min_input / w * h) * current_scale / min_scale)
        scale_w = w - 1.0
        scale_h = (h_resized - 1.0) / (w_resized - 1.0) * (w - 1.0)
    else:
        h_resized = int(min_input * current_scale / min_scale)
        w_resized = int(ceil64(min_input / h * w) * current_scale / min_scale)
        scale_h = h - 1.0
        scale_w = (w_resized - 1.0) / (h_resized - 1.0) * (h - 1.0)
    return (w_resized, h_resized), (scale_w / 2.0, scale_h / 2.0), np.array([scale_w, scale_h])


def resize_align_udp_matrix(h: int, w: int, input_size: int, current_scale: float, min_scale: float) -> np.ndarray:
    """MMPose ``_resize_align_multi_scale_udp``'s warp: size at ``current_scale``, box at ``min_scale``."""
    size, _, _ = multi_scale_size_udp(h, w, input_size, current_scale, min_scale)
    _, _, scale = multi_scale_size_udp(h, w, input_size, min_scale, min_scale)
    return get_warp_matrix(0, scale, np.array(size, np.float64) - 1.0, scale)


def group_preds_udp(joints: np.ndarray, scale: np.ndarray, heatmap_size) -> np.ndarray:
    """MMPose ``get_group_preds(use_udp=True)``: heatmap px -> original px."""
    hm = np.asarray(heatmap_size, np.float64) - 1.0
    return warp_affine_joints(joints, get_warp_matrix(0, hm, scale, hm))


# ------------------------------------------------------------------------------ the training affine


def test_udp_affine_matrix_is_mmpose_get_warp_matrix() -> None:
    # a 640 x 480 image (coco-mini's most common size), crop 1.25 x the short side, rotated, translated
    w, h, s = 640, 480, 512
    center = ((w - 1) / 2 + 17.0, (h - 1) / 2 - 9.5)
    crop = 1.25 * min(w, h)
    for rotation in (0.0, 30.0, -12.5):
        m = udp_affine_matrix(center, crop, rotation, s)
        # MMPose: size_input = 2 * centre, size_dst = S - 1, size_target = the crop; its theta turns the other way
        expect = get_warp_matrix(-rotation, 2 * np.array(center), (s - 1.0, s - 1.0), (crop, crop))
        np.testing.assert_allclose(m, expect, rtol=0, atol=1e-12)
    # the numbers: the crop centre lands on the centre of the middle pixel (255.5), scale 511 / 600
    m = udp_affine_matrix(center, crop, 0.0, s)
    np.testing.assert_allclose(warp_keypoints(np.array([[center]]), m)[0, 0], (255.5, 255.5), atol=1e-12)
    np.testing.assert_allclose(m[:, :2], np.eye(2) * 511 / 600, atol=1e-15)
    # a flip is x -> S - 1 - x after the warp (MMPose BottomUpRandomFlip: output_size - x - 1)
    flipped = udp_affine_matrix(center, crop, 30.0, s, flip=True)
    plain = udp_affine_matrix(center, crop, 30.0, s)
    np.testing.assert_allclose(flipped[0], [-plain[0, 0], -plain[0, 1], s - 1 - plain[0, 2]], atol=1e-12)
    np.testing.assert_allclose(flipped[1], plain[1], atol=0)


def _dataset(coco_root: Path, layout, **kw):
    ann = coco_root / "annotations" / "person_keypoints_train2017.json"
    return keypoint_dataset(ann, coco_root / "train2017", layout.keypoint_names, layout.flip_pairs, **kw)


def mmpose_udp_heatmaps(joints: np.ndarray, sigma: float, res: int) -> np.ndarray:
    """MMPose ``HeatmapGenerator(use_udp=True)``, one joint and one pixel at a time."""
    hms = np.zeros((joints.shape[1], res, res), np.float32)
    grid = np.arange(0, 6 * sigma + 3, 1, np.float32)
    for person in joints:
        for k, (px, py, v) in enumerate(person[:, :3]):
            if v <= 0:
                continue
            x, y = int(px), int(py)
            if x < 0 or y < 0 or x >= res or y >= res:
                continue
            x0, y0 = 3 * sigma + 1 + px - x, 3 * sigma + 1 + py - y
            ul = (int(np.round(x - 3 * sigma - 1)), int(np.round(y - 3 * sigma - 1)))
            br = (int(np.round(x + 3 * sigma + 2)), int(np.round(y + 3 * sigma + 2)))
            for yy in range(max(0, ul[1]), min(br[1], res)):
                for xx in range(max(0, ul[0]), min(br[0], res)):
                    i, j = yy - ul[1], xx - ul[0]
                    g = np.exp(-((grid[j] - x0) ** 2 + (grid[i] - y0) ** 2) / (2 * sigma**2))
                    hms[k, yy, xx] = max(hms[k, yy, xx], np.float32(g))
    return hms


@pytest.mark.parametrize("flip", [False, True], ids=["noflip", "flip"])
def test_udp_training_sample_equals_mmpose_rules(coco_root, coco_layout, flip) -> None:
    """A real coco-mini sample with ``data.udp``: the input matrix, every output's joints, heatmaps, tag indices and
    (unflipped) masks equal MMPose's UDP affine + flip + ``HeatmapGenerator(use_udp=True)``, each output with its own
    ``get_warp_matrix(size_dst = S/s - 1)``."""
    ds = _dataset(coco_root, coco_layout, udp=True)
    index = next(
        i
        for i, iid in enumerate(ds.image_ids)
        if ds.coco.imgs[iid]["width"] != ds.coco.imgs[iid]["height"]
        and sum(a["num_keypoints"] > 8 for a in ds.coco.loadAnns(ds.coco.getAnnIds(imgIds=iid))) >= 2
    )
    image_id = ds.image_ids[index]
    info = ds.coco.imgs[image_id]
    w, h = info["width"], info["height"]
    params = AugmentParams(rotation=21.0, scale=1.3, translate=(11.0, -7.0), flip=flip)
    s = ds.sample(index, params)
    anns = [a for a in ds.coco.loadAnns(ds.coco.getAnnIds(imgIds=image_id)) if a["iscrowd"] == 0 or a["num_keypoints"]]
    joints = np.array([np.reshape(a["keypoints"], (-1, 3)) for a in anns], np.float64)
    crop = min(w, h) * params.scale
    shift = crop / 200.0
    center = np.array([(w - 1) / 2 + params.translate[0] * shift, (h - 1) / 2 + params.translate[1] * shift])
    size = ds.input_size
    m_in = get_warp_matrix(-params.rotation, 2 * center, (size - 1.0, size - 1.0), (crop, crop))
    if flip:
        m_in = np.array([[-1.0, 0, size - 1.0], [0, 1, 0]]) @ np.vstack([m_in, [0, 0, 1]])
    np.testing.assert_allclose(s["matrix"].numpy(), m_in, atol=1e-9)
    found = 0
    for r, stride in enumerate(ds.output_strides):
        res = size // stride
        mat = get_warp_matrix(-params.rotation, 2 * center, (res - 1.0, res - 1.0), (crop, crop))
        out = joints.copy()
        out[..., :2] = warp_affine_joints(joints[..., :2], mat)
        if flip:  # MMPose BottomUpRandomFlip, in each output frame
            out = out[:, coco_layout.flip_index]
            out[..., 0] = res - out[..., 0] - 1
        else:
            keep = ds.coco.annToMask
            m = np.zeros((h, w))
            for a in ds.coco.loadAnns(ds.coco.getAnnIds(imgIds=image_id)):
                if a["iscrowd"] or a["num_keypoints"] == 0:
                    m += keep(a)
            warped = cv2.warpAffine(((m < 0.5) * 255).astype(np.uint8), mat, (res, res), flags=cv2.INTER_LINEAR) / 255
            np.testing.assert_array_equal(s["masks"][r].numpy(), (warped > 0.5).astype(np.float32))
        expect = mmpose_udp_heatmaps(out, 2.0, res)
        np.testing.assert_allclose(s["heatmaps"][r].numpy(), expect, rtol=0, atol=2e-6)
        found += int((expect == 1.0).sum() == 0 and (expect > 0.5).sum() > 0)
        if r == 0:
            tags = s["tag_indices"].numpy()
            for n, person in enumerate(out):
                xi, yi = person[:, 0].astype(int), person[:, 1].astype(int)  # int(): toward zero
                ok = (person[:, 2] > 0) & (xi >= 0) & (yi >= 0) & (xi < res) & (yi < res)
                expect_idx = (np.arange(len(person)) * res + yi) * res + xi
                np.testing.assert_array_equal(tags[n, :, 1], ok)
                np.testing.assert_array_equal(tags[n, ok, 0], expect_idx[ok])
    assert found == len(ds.output_strides)  # real sub-pixel targets: no heatmap pixel is exactly 1


def test_udp_targets_peak_at_the_continuous_position() -> None:
    """One joint at input (101.3, 40.8) of a 512 input: at stride 4 UDP puts it at x * 127 / 511 (not x / 4) and the
    Gaussian's centre there; the biased targets put the peak 1.0 on pixel int(x / 4)."""
    from bottomup.codec import AssociativeEmbeddingCodec

    kp = np.array([[[101.3, 40.8, 2.0]]])
    udp = AssociativeEmbeddingCodec(1, strides=(4, 2), udp=True).encode(kp, 512)["heatmaps"]
    plain = AssociativeEmbeddingCodec(1, strides=(4, 2)).encode(kp, 512)["heatmaps"]
    for r, (stride, res) in enumerate(((4, 128), (2, 256))):
        x, y = 101.3 * (res - 1) / 511, 40.8 * (res - 1) / 511
        xi, yi = int(x), int(y)
        hm = udp[r][0]
        for dy in (-1, 0, 1, 2):
            for dx in (-1, 0, 1, 2):
                expect = math.exp(-((xi + dx - x) ** 2 + (yi + dy - y) ** 2) / 8.0)
                assert hm[yi + dy, xi + dx] == pytest.approx(expect, abs=1e-7)
        peak = np.unravel_index(np.argmax(hm), hm.shape)
        assert peak == (round(y), round(x))
        assert plain[r][0][int(40.8 / stride), int(101.3 / stride)] == 1.0


# ------------------------------------------------------------------------------ the test-time resize and mapping

#: (height, width) of coco-mini images: landscape, portrait, square; and an odd size.
SIZES = [(480, 640), (640, 427), (500, 500), (333, 517)]


@pytest.mark.parametrize("hw", SIZES, ids=[f"{h}x{w}" for h, w in SIZES])
@pytest.mark.parametrize("scales", [(1.0,), (2.0, 1.0, 0.5)], ids=["single", "multi"])
def test_udp_resize_is_mmpose_resize_align(hw, scales) -> None:
    h, w = hw
    min_scale = min(scales)
    for s in scales:
        tf = resize_transform(h, w, 512, s, min_scale, udp=True)
        size, center, scale = multi_scale_size_udp(h, w, 512, s, min_scale)
        assert tf.udp and tf.size == size
        np.testing.assert_allclose(tf.scale, scale, rtol=1e-15)
        np.testing.assert_allclose(tf.center, center, rtol=1e-15)
        np.testing.assert_allclose(tf.matrix, resize_align_udp_matrix(h, w, 512, s, min_scale), rtol=1e-14)
        h3 = lambda m: np.vstack([m, [0.0, 0.0, 1.0]])  # noqa: E731
        np.testing.assert_allclose(h3(tf.inverse) @ h3(tf.matrix), np.eye(3), atol=1e-12)
    base = resize_transform(h, w, 512, 1.0, min_scale, udp=True)
    # the decode frame: the last output (stride 2) of the largest scale
    largest = resize_transform(h, w, 512, max(scales), min_scale, udp=True)
    hm = (largest.size[0] // 2, largest.size[1] // 2)
    rng = np.random.default_rng(0)
    joints = rng.uniform(0, 1, (3, 17, 3)) * [hm[0] - 1, hm[1] - 1, 1]
    got = to_original(joints, base, map_size=hm)
    _, _, scale1 = multi_scale_size_udp(h, w, 512, 1.0, min_scale)
    np.testing.assert_allclose(got[..., :2], group_preds_udp(joints[..., :2], scale1, hm), rtol=1e-12)
    np.testing.assert_array_equal(got[..., 2], joints[..., 2])


def test_udp_resize_numbers_and_image(coco_root) -> None:
    """640 x 480 at 512, one scale: input 704 x 512 (as without UDP), x_in = x * 511 / 479 on both axes about pixel
    (0, 0) (corner pixel centres to corner pixel centres), not centred; the image is warped with that matrix."""
    from bottomup.data.io import read_image

    tf = resize_transform(480, 640, 512, udp=True)
    assert tf.size == (704, 512)
    np.testing.assert_allclose(tf.matrix, [[511 / 479, 0, 0], [0, 511 / 479, 0]], rtol=1e-15)
    np.testing.assert_allclose(warp_keypoints(np.array([[[639.0, 479.0]]]), tf.matrix)[0, 0], (639 * 511 / 479, 511))
    plain = resize_transform(480, 640, 512)
    assert plain.size == tf.size and not plain.udp
    assert abs(plain.matrix[0, 2]) > 1  # the biased resize centres the image (and scales by 512 / 480)
    image = read_image(coco_root / "val2017" / "000000018575.jpg")
    x, tf2 = preprocess_array(image, 512, udp=True)
    np.testing.assert_array_equal(tf2.matrix, tf.matrix)
    resized = cv2.warpAffine(image, tf.matrix, tf.size)
    mean, std = np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)
    expect = ((resized.astype(np.float32) / np.float32(255.0) - mean) / std).transpose(2, 0, 1)
    np.testing.assert_allclose(x[0], expect, rtol=0, atol=1e-6)


def test_udp_keys_are_checked_and_off_by_default() -> None:
    from bottomup.data.settings import TargetSettings
    from bottomup.engine.settings import TestSettings

    assert TargetSettings().udp is False and TestSettings().udp is False
    assert TargetSettings(udp=True).udp and TestSettings(udp=True).udp
    assert TestSettings.from_flat(TestSettings(udp=True).flat()).udp
    with pytest.raises(ValueError, match=r"data\.udp must be true or false"):
        TargetSettings(udp="false")
    with pytest.raises(ValueError, match="UDP"):
        resize_transform(1, 5, 512, udp=True)

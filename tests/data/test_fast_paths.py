"""The training pipeline's fast paths give exactly what the plain rules give: the ignore mask rasterised once per
image, the uint8 mask warp, the look-up-table normalisation, JPEGs decoded straight to RGB, and the codec's
encode (one joint-pixel pass per stride) against the public target functions."""

from __future__ import annotations

import importlib
import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import keypoint_dataset

from bottomup.codec import AssociativeEmbeddingCodec
from bottomup.codec.targets import render_heatmaps, tag_indices
from bottomup.data.augmentation import Augmentation
from bottomup.data.dataset import _INV_STD_255, _MEAN_255, _normalise
from bottomup.data.io import _decode, _to_uint8
from bottomup.data.settings import AugmentationSettings

CROWD_IMAGES = (433998, 129648, 370162, 174375, 538113)  # coco-mini train images with iscrowd regions


def _dataset(coco_root: Path, layout):
    ann = coco_root / "annotations" / "person_keypoints_train2017.json"
    return keypoint_dataset(ann, coco_root / "train2017", layout.keypoint_names, layout.flip_pairs)


def test_keep_mask_is_the_official_mask_and_rasterised_once(coco_root, coco_layout, monkeypatch):
    ds = _dataset(coco_root, coco_layout)
    source = ds.source
    first = {}
    for image_id in ds.image_ids:
        info = source.coco.imgs[image_id]
        h, w = info["height"], info["width"]
        m = np.zeros((h, w))  # official CocoKeypoints.get_mask: the regions summed, kept where < 0.5
        for a in source.coco.loadAnns(source.coco.getAnnIds(imgIds=image_id)):
            if a["iscrowd"] or a["num_keypoints"] == 0:
                m += source.coco.annToMask(a)
        expect = ((m < 0.5) * 255).astype(np.uint8)  # official uint8(mask * 255)
        got = source.keep_mask(image_id, h, w)
        assert got.dtype == np.uint8 and got.flags.c_contiguous and got.shape == (h, w)
        np.testing.assert_array_equal(got, expect)
        first[image_id] = got
    assert sum(not g.all() for g in first.values()) >= len(CROWD_IMAGES)  # ignore regions were hit

    def no_rasterising(*args, **kwargs):
        raise AssertionError("rasterised again")

    # (the module itself: the package's ``annotations`` attribute is ``from __future__ import annotations``)
    monkeypatch.setattr(importlib.import_module("bottomup.data.annotations"), "_region_mask", no_rasterising)
    for image_id, expect in first.items():
        info = source.coco.imgs[image_id]
        again = source.keep_mask(image_id, info["height"], info["width"])
        np.testing.assert_array_equal(again, expect)
        again[:] = 7  # a new array each call: the next one is unchanged
        np.testing.assert_array_equal(source.keep_mask(image_id, info["height"], info["width"]), expect)
    kp, mask, sizes = source.people(CROWD_IMAGES[0], *first[CROWD_IMAGES[0]].shape)
    assert mask.dtype == np.float32
    np.testing.assert_array_equal(mask, (first[CROWD_IMAGES[0]] == 255).astype(np.float32))
    assert kp.dtype == sizes.dtype == np.float64 and kp.shape == (sizes.shape[0], 17, 3)


@pytest.mark.parametrize("mask_warp", ["uint8", "float"])
def test_uint8_keep_mask_warps_as_the_float_mask(mask_warp):
    aug = Augmentation(AugmentationSettings(mask_warp=mask_warp), 512, (4, 2), list(range(17)))
    rng = np.random.default_rng(0)
    keep = np.ones((96, 128), np.float32)
    keep[20:50, 30:90] = 0
    keep[rng.random(keep.shape) < 0.05] = 0
    keep255 = (keep * 255).astype(np.uint8)
    for _ in range(20):
        m = aug.matrix(96, 128, aug.random_params(rng))
        for stride, size in zip(aug.output_strides, aug.output_sizes, strict=True):
            mat = aug.output_matrix(m, stride)
            a, b = aug.warp_mask(keep, mat, size), aug.warp_mask(keep255, mat, size)
            assert a.dtype == b.dtype == np.float32
            np.testing.assert_array_equal(a, b)
            if mask_warp == "uint8":  # the official rule: uint8(mask * 255) warped, / 255 > 0.5
                official = cv2.warpAffine((keep * 255).astype(np.uint8), mat, (size, size)) / 255
                np.testing.assert_array_equal(b, (official > 0.5).astype(np.float32))


def test_normalise_lookup_equals_the_arithmetic():
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (64, 48, 3), dtype=np.uint8), np.arange(256, dtype=np.uint8).reshape(16, 16, 1)]
    images[1] = np.repeat(images[1], 3, axis=2)  # every level in every channel
    for image in images:
        expect = np.ascontiguousarray(image.transpose(2, 0, 1)).astype(np.float32)
        expect -= _MEAN_255
        expect *= _INV_STD_255
        got = _normalise(image)
        assert got.is_contiguous() and got.shape == expect.shape
        np.testing.assert_array_equal(got.numpy(), expect)


def _unchanged_then_rgb(data: bytes) -> np.ndarray:
    image = _to_uint8(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED), "x")
    return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB if image.ndim == 2 else cv2.COLOR_BGR2RGB)


def test_jpeg_straight_to_rgb_is_unchanged_plus_cvtcolor(coco_root):
    from PIL import Image

    rng = np.random.default_rng(0)
    pixels = cv2.GaussianBlur(rng.integers(0, 256, (37, 53, 3), dtype=np.uint8), (5, 5), 0)
    for mode in ("RGB", "L", "CMYK"):
        buf = io.BytesIO()
        Image.fromarray(pixels).convert(mode).save(buf, "JPEG", quality=90)
        np.testing.assert_array_equal(_decode(buf.getvalue(), "x"), _unchanged_then_rgb(buf.getvalue()), mode)
    for path in sorted((coco_root / "train2017").glob("*.jpg"))[:10]:
        data = path.read_bytes()
        np.testing.assert_array_equal(_decode(data, str(path)), _unchanged_then_rgb(data))


@pytest.mark.parametrize("udp", [False, True])
def test_encode_equals_the_public_target_functions(udp):
    rng = np.random.default_rng(0)
    codec = AssociativeEmbeddingCodec(17, sigma=2.0, strides=(4, 2), max_people=3, udp=udp)
    for n in (0, 2, 5):  # 5 > max_people: the tags keep the 3 most complete
        kp = np.concatenate([rng.uniform(-8, 520, (n, 17, 2)), (rng.random((n, 17, 1)) < 0.7) * 2.0], axis=-1)
        for sigmas in (None, rng.uniform(1.0, 4.0, n)):
            out = codec.encode(kp, 512, sigmas=sigmas)
            for r, stride in enumerate(codec.strides):
                k = codec.to_output(kp, (512, 512), stride)
                sigma = 2.0 if sigmas is None else sigmas
                np.testing.assert_array_equal(
                    out["heatmaps"][r], render_heatmaps(k, 512 // stride, 512 // stride, sigma, udp=udp)
                )
                if r == 0:
                    np.testing.assert_array_equal(out["tag_indices"], tag_indices(k, 128, 128, 3))
    with pytest.raises(ValueError, match="sigma must be"):
        codec.encode(np.zeros((2, 17, 3)), 512, sigmas=np.array([1.0, -1.0]))

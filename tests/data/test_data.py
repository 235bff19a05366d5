"""Tests for the training data pipeline (bottomup.data) on real coco-mini / crowdpose-mini data."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import keypoint_dataset

from bottomup.codec.targets import render_heatmaps, select_people
from bottomup.core.keypoints import flip_index_from_pairs
from bottomup.data import AugmentParams, ImageReadError, KeypointDataset, collate, load_image
from bottomup.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    affine_matrix,
    flip_image,
    flip_keypoints,
    warp_keypoints,
)

COCO_FLIP = [0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15]  # official FLIP_CONFIG['COCO']
CROWDPOSE_FLIP = [1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 12, 13]  # official FLIP_CONFIG['CROWDPOSE']
CROWD_IMAGES = (433998, 129648, 370162, 174375, 538113)  # coco-mini train images with iscrowd regions


def _train_files(coco_root: Path) -> tuple[Path, Path]:
    return coco_root / "annotations" / "person_keypoints_train2017.json", coco_root / "train2017"


def _make(coco_root: Path, layout, **kw) -> KeypointDataset:
    ann, images = _train_files(coco_root)
    return keypoint_dataset(ann, images, layout.keypoint_names, layout.flip_pairs, **kw)


@pytest.fixture(scope="module")
def train_ds(coco_root, coco_layout) -> KeypointDataset:
    return _make(coco_root, coco_layout)


def _subset_json(src: Path, dst: Path, image_ids, transform=None) -> dict:
    """Write a COCO json with only ``image_ids`` (and their annotations) to ``dst``."""
    data = json.loads(src.read_text())
    keep = set(image_ids)
    data["images"] = [im for im in data["images"] if im["id"] in keep]
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] in keep]
    if transform is not None:
        transform(data)
    dst.write_text(json.dumps(data))
    return data


def _denormalise(image: torch.Tensor) -> np.ndarray:
    mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
    std = torch.tensor(IMAGENET_STD)[:, None, None]
    return ((image * std + mean) * 255).permute(1, 2, 0).numpy()


# --------------------------------------------------------------------------------------------- targets


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_heatmap_peaks_and_tags_at_transformed_joints(train_ds, seed):
    rng = np.random.default_rng(seed)
    checked = 0
    for index in rng.choice(len(train_ds), size=6, replace=False):
        params = train_ds.augmentation.random_params(rng)
        if seed == 0:
            params = AugmentParams(params.rotation, params.scale, params.translate, flip=True)
        s = train_ds.sample(int(index), params)
        m = s["matrix"].numpy()
        assert s["flipped"] == params.flip

        # the returned matrix is the one that warped the image
        raw = load_image(train_ds.image_path(s["image_id"]))
        expect_img = cv2.warpAffine(raw, m, (512, 512)).astype(np.float32)
        assert np.abs(_denormalise(s["image"]) - expect_img).max() < 0.01

        kp, _ = train_ds.annotations(s["image_id"])
        kp = kp[select_people(kp, train_ds.max_people)]
        if params.flip:
            kp = kp[:, train_ds.flip_index]
        kp_in = warp_keypoints(kp, m)
        for r, stride in enumerate((4, 2)):
            heat = s["heatmaps"][r].numpy()
            size = 512 // stride
            assert heat.shape == (17, size, size) and heat.dtype == np.float32
            # official int(): truncation toward zero first, then the in-map test (-1 < x < 0 lands on pixel 0)
            x, y = np.trunc(kp_in[..., 0] / stride), np.trunc(kp_in[..., 1] / stride)
            ok = (kp_in[..., 2] > 0) & (x >= 0) & (y >= 0) & (x < size) & (y < size)
            xi, yi = x.astype(int), y.astype(int)
            n, k = np.nonzero(ok)
            assert np.all(heat[k, yi[n, k], xi[n, k]] == 1.0)
            # and nowhere else is a peak of 1.0
            peaks = set(zip(*np.nonzero(heat == 1.0), strict=True))
            assert peaks == set(zip(k, yi[n, k], xi[n, k], strict=True))
            checked += len(n)
            if r == 0:
                tags = s["tag_indices"].numpy()
                assert tags.shape == (30, 17, 2) and tags.dtype == np.int64
                assert np.array_equal(tags[: len(kp), :, 1], ok.astype(np.int64))
                expect = (k * size + yi[n, k]) * size + xi[n, k]
                assert np.array_equal(tags[n, k, 0], expect)
                assert s["num_people"] == int(ok.any(axis=1).sum())
    assert checked > 20  # the check saw real joints


def test_val_mode_is_deterministic_centre_crop(coco_root, coco_layout):
    ds = _make(coco_root, coco_layout, train=False, input_size=256, output_strides=(4,))
    a, b = ds[0], ds[0]
    assert not a["flipped"]
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["heatmaps"][0], b["heatmaps"][0])
    h, w = ds.coco.imgs[a["image_id"]]["height"], ds.coco.imgs[a["image_id"]]["width"]
    s = 256 / min(h, w)  # scale 1: the short side fills the input, centred
    expect = np.array([[s, 0, 128 - s * w / 2], [0, s, 128 - s * h / 2]])
    np.testing.assert_allclose(a["matrix"].numpy(), expect, atol=1e-9)
    assert a["heatmaps"][0].shape == (17, 64, 64) and a["masks"][0].shape == (64, 64)


def test_train_mode_random_and_seeded(train_ds):
    torch.manual_seed(3)
    a = train_ds[1]
    torch.manual_seed(3)
    b = train_ds[1]
    c = train_ds[1]
    assert torch.equal(a["matrix"], b["matrix"]) and torch.equal(a["image"], b["image"])
    assert not torch.equal(a["matrix"], c["matrix"])


def test_random_params_follow_official_ranges(train_ds):
    rng = np.random.default_rng(0)
    draws = [train_ds.augmentation.random_params(rng) for _ in range(400)]
    rot = np.array([p.rotation for p in draws])
    scale = np.array([p.scale for p in draws])
    trans = np.array([p.translate for p in draws])
    assert np.all(np.abs(rot) <= 30) and rot.min() < -25 and rot.max() > 25
    assert np.all((scale >= 0.75) & (scale <= 1.5)) and scale.min() < 0.8 and scale.max() > 1.45
    assert np.all(np.abs(trans) <= 40) and trans.min() < -35 and trans.max() > 35
    assert 0.4 < np.mean([p.flip for p in draws]) < 0.6
    # translation: +-max_translate px per 200 px of crop side, in original pixels
    h, w = 400, 600
    m = train_ds.augmentation.matrix(h, w, AugmentParams(scale=1.2, translate=(40.0, -40.0)))
    crop = 400 * 1.2
    centre = np.array([[w / 2 + 40 * crop / 200, h / 2 - 40 * crop / 200, 1]])
    np.testing.assert_allclose(warp_keypoints(centre, m)[0, :2], [256, 256], atol=1e-9)


def test_affine_matrix_matches_opencv_rotation():
    # crop of the whole 100x100 frame onto itself + rotation == cv2.getRotationMatrix2D (counter-clockwise)
    for angle in (0.0, 17.0, -30.0, 90.0):
        m = affine_matrix((50, 50), 100, angle, 100)
        np.testing.assert_allclose(m, cv2.getRotationMatrix2D((50.0, 50.0), angle, 1.0), atol=1e-12)
    m = affine_matrix((50, 50), 100, 90.0, 100)
    right_of_centre = np.array([[60.0, 50.0]])
    np.testing.assert_allclose(warp_keypoints(right_of_centre, m), [[50.0, 40.0]], atol=1e-9)  # moved up


# --------------------------------------------------------------------------------------------- masks


def test_mask_zero_on_crowd_one_far_from_people(train_ds):
    crowd_checked = far_checked = outside_checked = 0
    for image_id in CROWD_IMAGES:
        index = train_ds.image_ids.index(image_id)
        s = train_ds.sample(index, AugmentParams(scale=1.5, rotation=10.0))  # whole image in view
        h, w = train_ds.coco.imgs[image_id]["height"], train_ds.coco.imgs[image_id]["width"]
        anns = train_ds.coco.loadAnns(train_ds.coco.getAnnIds(imgIds=image_id))
        crowd = np.zeros((h, w), np.uint8)
        near = np.zeros((h, w), np.uint8)
        for a in anns:
            if a["iscrowd"]:
                crowd |= train_ds.coco.annToMask(a)
            x, y, bw, bh = (int(round(v)) for v in a["bbox"])
            near[max(0, y - 16) : y + bh + 16, max(0, x - 16) : x + bw + 16] = 1
        crowd = cv2.erode(crowd, np.ones((9, 9), np.uint8))  # away from the region's border
        m = s["matrix"].numpy()
        for r, stride in enumerate((4, 2)):
            mask = s["masks"][r].numpy()
            assert mask.dtype == np.float32 and set(np.unique(mask)) <= {0.0, 1.0}
            size = 512 // stride
            # map every heatmap pixel centre back to the original image
            inv = cv2.invertAffineTransform(m / stride)
            gy, gx = np.mgrid[0:size, 0:size]
            pts = warp_keypoints(np.stack([gx, gy], -1).reshape(-1, 2).astype(float), inv)
            ox, oy = np.rint(pts[:, 0]).astype(int), np.rint(pts[:, 1]).astype(int)
            inside = (ox >= 4) & (oy >= 4) & (ox < w - 4) & (oy < h - 4)
            outside = (ox < -4) | (oy < -4) | (ox >= w + 4) | (oy >= h + 4)
            flat = mask.reshape(-1)
            on_crowd = inside.copy()
            on_crowd[inside] = crowd[oy[inside], ox[inside]] > 0
            far = inside.copy()
            far[inside] = near[oy[inside], ox[inside]] == 0
            assert np.all(flat[on_crowd] == 0.0)
            assert np.all(flat[far] == 1.0)
            assert np.all(flat[outside] == 0.0)  # padding is ignored too (official)
            crowd_checked += on_crowd.sum()
            far_checked += far.sum()
            outside_checked += outside.sum()
    assert crowd_checked > 1000 and far_checked > 1000 and outside_checked > 1000


def test_annotations_mask_and_people(train_ds):
    image_id = 129648
    kp, mask = train_ds.annotations(image_id)
    anns = train_ds.coco.loadAnns(train_ds.coco.getAnnIds(imgIds=image_id))
    kept = [a for a in anns if not a["iscrowd"] or a["num_keypoints"] > 0]
    assert kp.shape == (len(kept), 17, 3)
    assert mask.shape == (427, 640) and mask.dtype == np.float32
    ignore = np.zeros_like(mask, dtype=bool)
    for a in anns:
        if a["iscrowd"] or a["num_keypoints"] == 0:
            ignore |= train_ds.coco.annToMask(a) > 0
    assert np.array_equal(mask == 0, ignore)

    # per resolution: the uint8 mask warped and thresholded at 0.5 (official), from the same matrix
    index = train_ds.image_ids.index(image_id)
    s = train_ds.sample(index, AugmentParams(rotation=-20.0, scale=0.9, translate=(20.0, 20.0)))
    for r, stride in enumerate((4, 2)):
        size = 512 // stride
        warped = cv2.warpAffine((mask * 255).astype(np.uint8), s["matrix"].numpy() / stride, (size, size)) / 255
        assert np.array_equal(s["masks"][r].numpy(), (warped > 0.5).astype(np.float32))


def test_crowd_annotation_with_keypoints_is_a_person_and_ignored(coco_root, coco_layout, tmp_path):
    ann, images = _train_files(coco_root)
    image_id = 433998

    def label_crowd(data):
        for a in data["annotations"]:
            if a["iscrowd"]:
                x, y, w, h = a["bbox"]
                kps = [0.0] * 51
                kps[0:3] = [x + w / 2, y + h / 2, 2]  # a nose in the crowd box
                a["keypoints"], a["num_keypoints"] = kps, 1

    data = _subset_json(ann, tmp_path / "crowdkp.json", [image_id], label_crowd)
    ds = keypoint_dataset(tmp_path / "crowdkp.json", images, coco_layout.keypoint_names, coco_layout.flip_pairs)
    kp, mask = ds.annotations(image_id)
    kept = [a for a in data["annotations"] if not a["iscrowd"] or a["num_keypoints"] > 0]
    assert len(kept) == len(data["annotations"]) and kp.shape[0] == len(kept)
    crowd = next(a for a in data["annotations"] if a["iscrowd"])
    region = ds.coco.annToMask(crowd) > 0
    assert region.sum() > 100 and np.all(mask[region] == 0)  # still ignored, official
    crowd_row = [i for i, a in enumerate(kept) if a["iscrowd"]][0]
    np.testing.assert_allclose(kp[crowd_row, 0], crowd["keypoints"][:3])


# --------------------------------------------------------------------------------------------- flip


def test_flip_index_is_involution(coco_layout, crowdpose_layout, train_ds):
    for layout, official in ((coco_layout, COCO_FLIP), (crowdpose_layout, CROWDPOSE_FLIP)):
        fi = flip_index_from_pairs(layout.keypoint_names, layout.flip_pairs)
        assert fi == official
        assert [fi[fi[k]] for k in range(len(fi))] == list(range(len(fi)))
    assert train_ds.flip_index == COCO_FLIP


def test_flip_twice_is_identity_and_matches_folded_flip(train_ds):
    index = train_ds.image_ids.index(129648)
    base = AugmentParams(rotation=12.0, scale=1.1, translate=(12.0, -8.0))
    plain = train_ds.sample(index, base)
    flipped = train_ds.sample(index, AugmentParams(base.rotation, base.scale, base.translate, flip=True))
    img = plain["image"].permute(1, 2, 0).numpy()
    assert np.array_equal(flip_image(flip_image(img)), img)
    mask = plain["masks"][0].numpy()
    assert np.array_equal(flip_image(flip_image(mask)), mask)

    kp, _ = train_ds.annotations(129648)
    kp_in = warp_keypoints(kp, plain["matrix"].numpy())
    twice = flip_keypoints(flip_keypoints(kp_in, train_ds.flip_index, 512), train_ds.flip_index, 512)
    np.testing.assert_allclose(twice, kp_in, atol=1e-9)
    np.testing.assert_array_equal(
        render_heatmaps(twice / [4, 4, 1], 128, 128), plain["heatmaps"][0].numpy()
    )  # targets of the twice-flipped joints are the original targets

    # the flip folded into the affine == flipping image / joints after the plain warp
    np.testing.assert_allclose(
        warp_keypoints(kp[:, train_ds.flip_index], flipped["matrix"].numpy()),
        flip_keypoints(kp_in, train_ds.flip_index, 512),
        atol=1e-9,
    )
    diff = np.abs(flipped["image"].permute(1, 2, 0).numpy() - flip_image(img))
    assert np.mean(diff < 0.05) > 0.99  # bilinear fixed-point rounding only
    for r in range(2):
        agree = flipped["masks"][r].numpy() == flip_image(plain["masks"][r].numpy())
        assert agree.mean() > 0.97  # sub-pixel flip offset at heatmap resolution, borders only
    for r in range(2):  # peaks and totals survive the flip
        assert flipped["heatmaps"][r].sum().item() == pytest.approx(plain["heatmaps"][r].sum().item(), rel=0.02)


# --------------------------------------------------------------------------------------------- image io


def test_load_grayscale_rgba_16bit(tmp_path):
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (20, 30), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "gray.png"), gray)
    out = load_image(tmp_path / "gray.png")
    assert out.shape == (20, 30, 3) and out.dtype == np.uint8
    assert all(np.array_equal(out[..., c], gray) for c in range(3))

    bgra = np.zeros((10, 12, 4), np.uint8)
    bgra[..., 0], bgra[..., 1], bgra[..., 2] = 50, 100, 200  # B, G, R
    bgra[..., 3] = np.arange(12, dtype=np.uint8)[None] * 20  # varying alpha is dropped, not blended
    cv2.imwrite(str(tmp_path / "rgba.png"), bgra)
    out = load_image(tmp_path / "rgba.png")
    assert out.shape == (10, 12, 3) and out.dtype == np.uint8
    assert np.all(out == np.array([200, 100, 50], np.uint8))

    ramp = np.linspace(0, 65535, 256 * 4).astype(np.uint16).reshape(16, 64)
    cv2.imwrite(str(tmp_path / "deep.png"), ramp)
    out = load_image(tmp_path / "deep.png")
    assert out.shape == (16, 64, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[..., 0], np.rint(ramp / 257.0).astype(np.uint8))
    assert out.min() == 0 and out.max() == 255  # full range kept, not truncated to the low byte

    colour16 = np.zeros((4, 4, 3), np.uint16)
    colour16[..., 2] = 65535  # R in BGR order
    cv2.imwrite(str(tmp_path / "red16.png"), colour16)
    assert np.all(load_image(tmp_path / "red16.png") == np.array([255, 0, 0], np.uint8))


def test_load_ignores_exif_orientation(tmp_path):
    image_mod = pytest.importorskip("PIL.Image")
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, :10] = 255
    im = image_mod.fromarray(pixels)
    exif = im.getexif()
    exif[0x0112] = 6  # "rotate 90 CW" tag: COCO annotations are in the raw pixel frame
    im.save(tmp_path / "exif.jpg", exif=exif)
    assert load_image(tmp_path / "exif.jpg").shape == (20, 40, 3)


def _save_with_orientation(pixels: np.ndarray, path: Path, orientation: int, **options) -> Path:
    """``pixels`` (RGB) stored as they are, with an EXIF orientation tag (Pillow writes the EXIF block)."""
    from PIL import Image

    im = Image.fromarray(pixels)
    exif = im.getexif()
    exif[0x0112] = orientation
    im.save(path, exif=exif, **options)
    return path


@pytest.mark.parametrize(("suffix", "options"), [(".png", {}), (".webp", {"lossless": True})])
def test_exif_orientation_is_applied_like_pil_exif_transpose(tmp_path, suffix, options):
    """Every EXIF orientation (1-8), in PNG / WebP files: ``read_image`` (inference) turns the pixels like
    ``PIL.ImageOps.exif_transpose``; ``load_image`` keeps the stored pixels (COCO's frame)."""
    from PIL import Image, ImageOps

    from bottomup.data.io import exif_orientation, read_image

    pixels = np.random.default_rng(0).integers(0, 256, (6, 10, 3), dtype=np.uint8)  # not symmetric in any way
    for orientation in range(1, 9):
        path = _save_with_orientation(pixels, tmp_path / f"o{orientation}{suffix}", orientation, **options)
        assert exif_orientation(path.read_bytes()) == orientation
        with Image.open(path) as im:
            expected = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
        got = read_image(path)
        assert got.shape == ((10, 6, 3) if orientation >= 5 else (6, 10, 3)), orientation
        np.testing.assert_array_equal(got, expected, err_msg=f"orientation {orientation}")
        np.testing.assert_array_equal(load_image(path), pixels)


def test_exif_orientation_of_a_jpeg_written_by_hand(tmp_path):
    """A JPEG from OpenCV with an APP1 Exif segment spliced in by hand (big-endian TIFF, tag 6 = rotate 90 CW):
    read upright by ``read_image``, as ``cv2.imread`` shows it; stored pixels by ``load_image``."""
    import struct

    from bottomup.data.io import read_image

    bgr = np.zeros((40, 80, 3), np.uint8)
    bgr[:, :20] = (0, 0, 255)  # a red band on the left of the stored pixels
    ok, jpeg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 100])
    assert ok
    tiff = b"MM\x00*" + struct.pack(">I", 8) + struct.pack(">H", 1)
    tiff += struct.pack(">HHIHH", 0x0112, 3, 1, 6, 0) + struct.pack(">I", 0)
    body = b"Exif\x00\x00" + tiff
    data = jpeg.tobytes()
    path = tmp_path / "sideways.jpg"
    path.write_bytes(data[:2] + b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body + data[2:])
    upright = read_image(path)
    assert upright.shape == (80, 40, 3)
    assert upright[:20, :, 0].mean() > 200 and upright[-20:, :, 0].mean() < 50  # the band now on top
    np.testing.assert_array_equal(upright[..., ::-1], cv2.imread(str(path)))  # OpenCV's own reading
    assert load_image(path).shape == (40, 80, 3)


def test_annotated_images_stay_in_their_annotations_frame(coco_root, coco_layout, tmp_path):
    """Training / evaluation read the stored pixels (COCO's annotations are in that frame, and the official loader
    ignores the tag), unless only the upright image fits the image record's size: then the upright one."""
    ann, images = _train_files(coco_root)
    image_id = _make(coco_root, coco_layout).image_ids[0]
    folder = tmp_path / "img"
    folder.mkdir()
    data = _subset_json(ann, tmp_path / "one.json", [image_id])
    record = data["images"][0]
    original = load_image(images / record["file_name"])
    # a phone photo stored sideways: raw pixels turned 90 degrees counter-clockwise, tag 6 turns them back
    _save_with_orientation(np.rot90(original, 1), folder / record["file_name"], 6, format="PNG")
    ds = keypoint_dataset(tmp_path / "one.json", folder, coco_layout.keypoint_names, coco_layout.flip_pairs)
    np.testing.assert_array_equal(ds.source.read_image(image_id), original)  # the record is the upright size
    # tag 3 (rotate 180) keeps the size: the stored frame, as COCO and the official loader read it
    _save_with_orientation(original, folder / record["file_name"], 3, format="PNG")
    np.testing.assert_array_equal(ds.source.read_image(image_id), original)


def test_corrupt_or_missing_image_raises(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(ImageReadError, match="broken.jpg") as info:
        load_image(bad)
    assert isinstance(info.value, OSError) and isinstance(info.value, ValueError)
    assert info.value.path == str(bad)
    with pytest.raises(ImageReadError, match="nothere.jpg.*does not exist"):
        load_image(tmp_path / "nothere.jpg")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageReadError, match="empty"):
        load_image(tmp_path / "empty.png")


def test_video_file_is_named_as_a_video(coco_root, tmp_path):
    """A real video (MJPG .avi written by OpenCV from a coco-mini image) gets its own message, not "corrupt"."""
    import pickle

    import cv2

    frame = cv2.imread(str(sorted((coco_root / "val2017").glob("*.jpg"))[0]))
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (frame.shape[1], frame.shape[0]))
    for _ in range(3):
        writer.write(frame)
    writer.release()
    assert video.stat().st_size > 1000
    with pytest.raises(ImageReadError, match=r"clip\.avi: it is a video \(\.avi\).*ffmpeg") as info:
        load_image(video)
    assert "annotation file" not in str(info.value)
    assert str(pickle.loads(pickle.dumps(info.value))) == str(info.value)  # DataLoader workers pickle it


def test_corrupt_image_in_dataset_is_skipped(coco_root, coco_layout, tmp_path, caplog):
    ann, images = _train_files(coco_root)
    full = _make(coco_root, coco_layout)
    ids = full.image_ids[:3]
    (tmp_path / "img").mkdir()
    data = _subset_json(ann, tmp_path / "sub.json", ids)
    names = {im["id"]: im["file_name"] for im in data["images"]}
    for i in ids:
        shutil.copy(images / names[i], tmp_path / "img" / names[i])
    (tmp_path / "img" / names[ids[1]]).write_bytes(b"\xff\xd8 definitely not a jpeg" * 50)

    ds = keypoint_dataset(tmp_path / "sub.json", tmp_path / "img", coco_layout.keypoint_names, coco_layout.flip_pairs)
    assert ds.image_ids == ids
    with caplog.at_level(logging.WARNING, logger="bottomup.data.dataset"):
        assert ds[1] is None
    assert names[ids[1]] in caplog.text
    loader = torch.utils.data.DataLoader(ds, batch_size=3, num_workers=0, collate_fn=collate)
    batch = next(iter(loader))
    assert batch["num_skipped"] == 1
    assert batch["image"].shape == (2, 3, 512, 512)
    assert batch["image_id"].tolist() == [ids[0], ids[2]]
    assert collate([None, None]) is None


# --------------------------------------------------------------------------------------------- errors


def test_missing_files_raise_clear_errors(coco_root, coco_layout, tmp_path):
    ann, images = _train_files(coco_root)
    names, pairs = coco_layout.keypoint_names, coco_layout.flip_pairs
    with pytest.raises(FileNotFoundError, match=r"nope\.json.*data\.root.*data\.train_ann"):
        keypoint_dataset(tmp_path / "nope.json", images, names, pairs)
    with pytest.raises(FileNotFoundError, match=r"no_images.*data\.train_images"):
        keypoint_dataset(ann, tmp_path / "no_images", names, pairs)


def test_wrong_keypoints_raise_clear_errors(coco_root, coco_layout, crowdpose_layout):
    ann, images = _train_files(coco_root)
    with pytest.raises(ValueError, match=r"person_keypoints_train2017\.json.*17.*14.*data\.num_keypoints"):
        keypoint_dataset(ann, images, crowdpose_layout.keypoint_names, crowdpose_layout.flip_pairs)
    with pytest.raises(ValueError, match=r"person_keypoints_train2017\.json.*same order"):
        keypoint_dataset(ann, images, coco_layout.keypoint_names[::-1], coco_layout.flip_pairs)


def test_bad_json_raises_clear_errors(coco_root, coco_layout, tmp_path):
    ann, images = _train_files(coco_root)
    names, pairs = coco_layout.keypoint_names, coco_layout.flip_pairs
    (tmp_path / "other.json").write_text(json.dumps({"foo": [1, 2]}))
    with pytest.raises(ValueError, match=r"other\.json.*not a COCO keypoint file"):
        keypoint_dataset(tmp_path / "other.json", images, names, pairs)
    (tmp_path / "garbage.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"garbage\.json.*not valid JSON"):
        keypoint_dataset(tmp_path / "garbage.json", images, names, pairs)

    def drop_people(data):
        data["annotations"] = []

    _subset_json(ann, tmp_path / "empty.json", [433998, 129648], drop_people)
    with pytest.raises(ValueError, match=r"empty\.json.*no image with a usable person"):
        keypoint_dataset(tmp_path / "empty.json", images, names, pairs)

    def crowd_only(data):
        data["annotations"] = [a for a in data["annotations"] if a["num_keypoints"] == 0]

    _subset_json(ann, tmp_path / "nokp.json", CROWD_IMAGES, crowd_only)
    with pytest.raises(ValueError, match=r"nokp\.json.*no image with a usable person"):
        keypoint_dataset(tmp_path / "nokp.json", images, names, pairs)


# --------------------------------------------------------------------------------------------- many people


def test_more_than_max_people_keeps_most_complete(coco_root, coco_layout, tmp_path, caplog):
    ann, images = _train_files(coco_root)
    image_id = 129648  # 640 x 427
    rng = np.random.default_rng(0)

    def many_people(data):
        template = data["annotations"][0]
        data["annotations"] = []
        for i in range(35):
            n = 1 + i % 17  # people differ in completeness
            kps = np.zeros((17, 3))
            kps[:n, 0] = rng.uniform(150, 490, n)  # inside the centred 427 x 427 crop
            kps[:n, 1] = rng.uniform(20, 400, n)
            kps[:n, 2] = 2
            data["annotations"].append(
                {
                    **template,
                    "id": 10_000 + i,
                    "image_id": image_id,
                    "iscrowd": 0,
                    "num_keypoints": n,
                    "keypoints": kps.round(1).reshape(-1).tolist(),
                }
            )

    _subset_json(ann, tmp_path / "many.json", [image_id], many_people)
    ds = keypoint_dataset(
        tmp_path / "many.json", images, coco_layout.keypoint_names, coco_layout.flip_pairs, train=False
    )
    with caplog.at_level(logging.INFO, logger="bottomup.data.dataset"):
        s = ds[0]
        ds[0]
    assert [r.message for r in caplog.records].count(caplog.records[0].message) == 1
    assert "35 people" in caplog.text and "max_people=30" in caplog.text
    tags = s["tag_indices"].numpy()
    assert tags.shape == (30, 17, 2)
    counts = tags[:, :, 1].sum(axis=1)
    assert np.all(counts > 0) and s["num_people"] == 30
    expected = sorted(1 + i % 17 for i in range(35))[5:]  # the 5 least complete are dropped
    assert sorted(counts.tolist()) == expected


# --------------------------------------------------------------------------------------------- crowdpose, loader


def test_crowdpose_mini_loads(data_root, crowdpose_layout):
    root = data_root / "crowdpose-mini"
    ds = keypoint_dataset(
        root / "test_crowdpose.json", root, crowdpose_layout.keypoint_names, crowdpose_layout.flip_pairs
    )
    assert ds.num_keypoints == 14 and len(ds) == 2 and ds.flip_index == CROWDPOSE_FLIP
    for i in range(len(ds)):
        s = ds.sample(i, AugmentParams(scale=1.25, flip=i == 1))
        assert s["heatmaps"][0].shape == (14, 128, 128) and s["heatmaps"][1].shape == (14, 256, 256)
        assert s["tag_indices"].shape == (30, 14, 2)
        assert s["heatmaps"][0].max() == 1.0 and s["num_people"] > 0
        assert s["masks"][0].mean() > 0.5


def test_dataloader_batches(coco_root, coco_layout):
    ds = _make(coco_root, coco_layout, max_images=4)
    assert len(ds) == 4
    loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=0, collate_fn=collate, shuffle=False)
    batches = list(loader)
    assert len(batches) == 2
    b = batches[0]
    assert b["image"].shape == (2, 3, 512, 512) and b["image"].dtype == torch.float32
    assert [h.shape for h in b["heatmaps"]] == [(2, 17, 128, 128), (2, 17, 256, 256)]
    assert [m.shape for m in b["masks"]] == [(2, 128, 128), (2, 256, 256)]
    assert b["tag_indices"].shape == (2, 30, 17, 2) and b["tag_indices"].dtype == torch.int64
    assert b["image_id"].tolist() == ds.image_ids[:2] and b["num_people"].shape == (2,)
    assert b["matrix"].shape == (2, 2, 3) and b["flipped"].shape == (2,)
    assert b["num_skipped"] == 0
    # the tag indices address the first-stride tag maps
    assert int(b["tag_indices"][..., 0].max()) < 17 * 128 * 128


def test_dataloader_worker_batches_match_main_process(coco_root, coco_layout):
    # collate allocates in shared memory inside workers; contents must equal the in-process batch
    ds = _make(coco_root, coco_layout, train=False, max_images=2, input_size=256)
    ref = collate([ds[0], ds[1]])
    loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=1, collate_fn=collate)
    (batch,) = list(loader)
    assert batch["image"].is_shared()
    assert torch.equal(batch["image"], ref["image"]) and torch.equal(batch["tag_indices"], ref["tag_indices"])
    for a, b in zip(batch["heatmaps"] + batch["masks"], ref["heatmaps"] + ref["masks"], strict=True):
        assert torch.equal(a, b)


# --------------------------------------------------------------------------------------------- settings


def test_settings_check_their_values_and_name_the_key():
    from bottomup.data.settings import AnnotationSettings, AugmentationSettings, TargetSettings

    assert TargetSettings(sigma=3.0).base_sigma == 3.0 and TargetSettings(base_sigma=1.5).base_sigma == 1.5
    assert AugmentationSettings(max_rotation=30).max_rotation == 30.0
    assert TargetSettings(input_size=256.0).input_size == 256
    cases = [
        (lambda: AugmentationSettings(scale_type="wide"), r"data\.augmentation\.scale_type must be one of \('short', 'long'\)"),
        (lambda: AugmentationSettings(mask_warp="nearest"), r"data\.augmentation\.mask_warp must be one of"),
        (lambda: AugmentationSettings(min_scale=0.0), r"data\.augmentation\.min_scale must be > 0"),
        (lambda: AugmentationSettings(max_translate=-1.0), r"data\.augmentation\.max_translate must be >= 0"),
        (lambda: TargetSettings(joint_rounding="round"), r"data\.joint_rounding must be one of \('trunc', 'floor'\)"),
        (lambda: TargetSettings(input_size=0), r"data\.input_size must be an integer >= 1"),
        (lambda: TargetSettings(sigma=float("nan")), r"data\.sigma must be a finite number"),
        (lambda: TargetSettings(scale_aware_sigma=True, base_size=0.0), r"data\.base_size > 0 and data\.base_sigma > 0"),
        (lambda: TargetSettings(int_sigma="false"), r"data\.int_sigma must be true or false"),
        (lambda: AnnotationSettings(max_images=1.5), r"data\.max_images must be an integer >= 1"),
    ]  # fmt: skip
    for make, message in cases:
        with pytest.raises(ValueError, match=message):
            make()


def test_data_package_reads_no_config_library():
    """The config stays at the edge (``bottomup.build``): no module of ``bottomup.data`` imports Hydra / OmegaConf,
    and the settings import without torch."""
    import ast
    import subprocess
    import sys

    package = Path(__file__).resolve().parents[2] / "bottomup" / "data"
    for path in sorted(package.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            names += [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not [n for n in names if n.split(".")[0] in ("hydra", "omegaconf")], path.name
    code = "import sys, bottomup.data.settings; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)

"""Synthetic COCO-format data set: layout, annotation validity, figure/keypoint agreement, determinism, caching."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from bottomup.data.synthetic import (
    CROWD_OWNER_BASE,
    JPEG_QUALITY,
    MARKER,
    default_cache_root,
    ensure_synthetic_coco,
    generate_synthetic_coco,
    main,
    synthetic_image,
)

PARAMS = {"num_train": 16, "num_val": 6, "image_size": 128, "seed": 3, "max_people": 5}
SPLITS = ("train2017", "val2017")


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return generate_synthetic_coco(tmp_path_factory.mktemp("syn") / "coco", **PARAMS)


@pytest.fixture(scope="module")
def cocos(root) -> dict[str, COCO]:
    return {s: COCO(str(root / "annotations" / f"person_keypoints_{s}.json")) for s in SPLITS}


def _kps(ann: dict) -> np.ndarray:
    return np.asarray(ann["keypoints"], np.float64).reshape(-1, 3)


def test_layout_and_categories(root, cocos, coco_layout):
    assert (root / MARKER).is_file()
    assert not [p for p in root.parent.iterdir() if p.name.startswith(".")], "temporary folders left behind"
    for split, n in zip(SPLITS, (PARAMS["num_train"], PARAMS["num_val"]), strict=True):
        coco = cocos[split]
        assert len(coco.imgs) == n
        for img in coco.imgs.values():
            path = root / split / img["file_name"]
            im = cv2.imread(str(path))
            assert im is not None and im.shape == (img["height"], img["width"], 3) == (128, 128, 3)
        (cat,) = coco.dataset["categories"]
        assert cat["name"] == "person" and cat["id"] == 1
        assert cat["keypoints"] == list(coco_layout.keypoint_names)
        names = cat["keypoints"]
        skeleton = {(names[a - 1], names[b - 1]) for a, b in cat["skeleton"]}  # 1-based like COCO
        assert skeleton == {tuple(p) for p in coco_layout.skeleton}
    assert not set(cocos["train2017"].imgs) & set(cocos["val2017"].imgs)
    ann_ids = [a["id"] for s in SPLITS for a in cocos[s].dataset["annotations"]]
    assert len(ann_ids) == len(set(ann_ids))


def test_annotation_records_are_valid_coco(cocos):
    counts = {"labeled": 0, "unlabeled": 0, "crowd": 0, "v1": 0}
    areas: dict[bool, list[float]] = {True: [], False: []}
    for coco in cocos.values():
        for ann in coco.dataset["annotations"]:
            img = coco.imgs[ann["image_id"]]
            h, w = img["height"], img["width"]
            kps = _kps(ann)
            assert kps.shape == (17, 3)
            assert set(np.unique(kps[:, 2])) <= {0, 1, 2}
            assert ann["num_keypoints"] == int((kps[:, 2] > 0).sum())
            assert np.all(kps[kps[:, 2] == 0, :2] == 0)
            lab = kps[kps[:, 2] > 0, :2]
            assert np.all((lab >= 0) & (lab < [w, h]))
            x, y, bw, bh = ann["bbox"]
            assert bw > 0 and bh > 0 and x >= 0 and y >= 0 and x + bw <= w + 1e-6 and y + bh <= h + 1e-6
            assert np.all((lab >= [x, y]) & (lab <= [x + bw + 1e-6, y + bh + 1e-6])), (
                "bbox must contain the labeled keypoints"
            )
            m = coco.annToMask(ann)
            assert m.sum() > 0 and ann["area"] > 0
            if ann["iscrowd"]:
                counts["crowd"] += 1
                assert isinstance(ann["segmentation"]["counts"], list)  # uncompressed RLE, as COCO crowds
                assert ann["num_keypoints"] == 0
                assert ann["area"] == m.sum()
                ys, xs = np.nonzero(m)
                assert ann["bbox"] == [xs.min(), ys.min(), xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()]
            else:
                assert isinstance(ann["segmentation"], list) and all(len(p) >= 6 for p in ann["segmentation"])
                counts["labeled" if ann["num_keypoints"] else "unlabeled"] += 1
                areas[ann["num_keypoints"] > 0].append(ann["area"])
                counts["v1"] += int((kps[:, 2] == 1).sum())
    assert all(v > 0 for v in counts.values()), counts
    # small background figures are the unlabeled ones (as in COCO); the labeled people are the larger ones
    assert np.median(areas[True]) > 2 * np.median(areas[False]), areas


def test_visible_keypoints_lie_on_their_own_figure(root, cocos):
    checked = differs = 0
    for split in SPLITS:
        coco = cocos[split]
        first = min(coco.imgs)
        for image_id, img in coco.imgs.items():
            rendered = synthetic_image(PARAMS["seed"], split, image_id - first, 128, PARAMS["max_people"])
            path = root / split / img["file_name"]
            ok, buf = cv2.imencode(".jpg", rendered.image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            assert ok and buf.tobytes() == path.read_bytes()  # the file is this rendering
            jpeg = cv2.imread(str(path)).astype(np.float64)
            anns = coco.loadAnns(coco.getAnnIds(imgIds=image_id))
            assert [{k: v for k, v in a.items() if k not in ("id", "image_id")} for a in anns] == json.loads(
                json.dumps(rendered.annotations)
            )
            bg = rendered.background.astype(np.float64)
            for ann, oid in zip(anns, rendered.owners, strict=True):
                assert (rendered.owner == oid).any()
                if ann["iscrowd"]:
                    assert oid >= CROWD_OWNER_BASE
                    continue
                for x, y, v in _kps(ann):
                    if v != 2:
                        continue
                    xi, yi = int(x), int(y)
                    assert rendered.owner[yi, xi] == oid  # drawn by this figure, not hidden by a later one
                    sl = np.s_[max(0, yi - 1) : yi + 2, max(0, xi - 1) : xi + 2]
                    checked += 1
                    differs += np.abs(jpeg[sl] - bg[sl]).mean() > 20
                for x, y, v in _kps(ann):  # occluded joints: another figure drawn over them (ears aside)
                    if v == 1 and rendered.owner[int(y), int(x)] != oid:
                        assert rendered.owner[int(y), int(x)] != 0
    assert checked > 200
    assert differs / checked > 0.9, (differs, checked)


def test_some_people_overlap(cocos):
    def iou(a, b):
        ax0, ay0, aw, ah = a
        bx0, by0, bw, bh = b
        iw = max(0.0, min(ax0 + aw, bx0 + bw) - max(ax0, bx0))
        ih = max(0.0, min(ay0 + ah, by0 + bh) - max(ay0, by0))
        return iw * ih / (aw * ah + bw * bh - iw * ih)

    overlapping = 0
    for coco in cocos.values():
        for image_id in coco.imgs:
            boxes = [a["bbox"] for a in coco.loadAnns(coco.getAnnIds(imgIds=image_id, iscrowd=False))]
            overlapping += any(iou(a, b) > 0.1 for i, a in enumerate(boxes) for b in boxes[i + 1 :])
    assert overlapping >= 3


def test_same_seed_identical_other_seed_different(root, tmp_path):
    again = generate_synthetic_coco(tmp_path / "again", **PARAMS)
    assert _files(again) == _files(root)
    other = _files(generate_synthetic_coco(tmp_path / "other", **{**PARAMS, "seed": 4}))
    ref = _files(root)
    assert other.keys() == ref.keys()
    assert other["annotations/person_keypoints_train2017.json"] != ref["annotations/person_keypoints_train2017.json"]
    name = "train2017/000000000001.jpg"
    assert other[name] != ref[name]


def test_ensure_caches_and_regenerates_on_new_parameters(tmp_path, monkeypatch):
    small = {**PARAMS, "num_train": 3, "num_val": 2}
    root = ensure_synthetic_coco(tmp_path / "set", **small)
    ann = root / "annotations" / "person_keypoints_train2017.json"
    stamps = {p: p.stat().st_mtime_ns for p in (ann, root / MARKER)}
    assert ensure_synthetic_coco(tmp_path / "set", **small) == root
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps

    root2 = ensure_synthetic_coco(tmp_path / "set", **{**small, "num_train": 4})
    assert root2 == root
    assert len(list((root / "train2017").iterdir())) == 4
    assert json.loads((root / MARKER).read_text())["params"]["num_train"] == 4
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]

    monkeypatch.setenv("BOTTOMUP_CACHE", str(tmp_path / "cache"))
    a = default_cache_root(**small)
    assert a.parent == tmp_path / "cache" and a.name.startswith("synthetic-")
    assert default_cache_root(**{**small, "seed": 5}) != a
    assert ensure_synthetic_coco(**small) == a and (a / MARKER).is_file()


def test_errors(tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "precious.txt").write_text("user data")
    with pytest.raises(FileExistsError, match="refusing"):
        generate_synthetic_coco(foreign, num_train=1, num_val=1)
    assert (foreign / "precious.txt").read_text() == "user data"
    with pytest.raises(ValueError, match="image_size"):
        generate_synthetic_coco(tmp_path / "x", image_size=16)
    with pytest.raises(ValueError, match="num_train"):
        ensure_synthetic_coco(tmp_path / "x", num_train=0)
    with pytest.raises(TypeError, match="unknown"):
        ensure_synthetic_coco(tmp_path / "x", num_images=3)
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OSError, match="cannot write the synthetic data set"):
        generate_synthetic_coco(blocker / "sub" / "coco", num_train=1, num_val=1)


def test_cli_prints_root(tmp_path, capsys):
    assert main(["--root", str(tmp_path / "cli"), "--num-train", "2", "--num-val", "1", "--image-size", "96"]) == 0
    out = capsys.readouterr().out.strip()
    assert out == str(tmp_path / "cli")
    coco = COCO(str(tmp_path / "cli" / "annotations" / "person_keypoints_val2017.json"))
    assert len(coco.imgs) == 1


def test_crowd_rle_matches_owner_map():
    for i in range(40):
        r = synthetic_image(0, "train2017", i, 128)
        for ann, oid in zip(r.annotations, r.owners, strict=True):
            if ann["iscrowd"]:
                m = mask_utils.decode(mask_utils.frPyObjects(ann["segmentation"], 128, 128))
                assert np.array_equal(m, (r.owner == oid).astype(np.uint8))
                return
    pytest.fail("no crowd region in 40 images")


def test_normal_coco_loader_reads_it(root, coco_layout):
    from conftest import keypoint_dataset

    ds = keypoint_dataset(
        root / "annotations" / "person_keypoints_train2017.json",
        root / "train2017",
        coco_layout.keypoint_names,
        coco_layout.flip_pairs,
        input_size=128,
        seed=0,
    )
    assert len(ds) == PARAMS["num_train"]
    sample = ds[0]
    assert sample["heatmaps"][0].shape == (17, 32, 32) and float(sample["heatmaps"][0].max()) > 0.5

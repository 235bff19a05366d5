"""``bottomup.engine.explain`` on a real coco-mini image with small random models: maps, frames, tags, TB pictures."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import TinyNet
from hydra import compose, initialize_config_dir

from bottomup.api import PoseEstimator
from bottomup.codec.grouping import group_keypoints
from bottomup.data.io import load_image
from bottomup.data.transforms import preprocess, resize_transform
from bottomup.engine.explain import SNAPSHOT_KEYS, Explanation, explain, training_snapshot

REPO = Path(__file__).resolve().parents[2]
IMAGE = "000000000785.jpg"


@pytest.fixture(scope="module")
def image_path(coco_root: Path) -> Path:
    path = coco_root / "val2017" / IMAGE
    if not path.exists():  # any val image will do
        path = sorted((coco_root / "val2017").glob("*.jpg"))[0]
    return path


@pytest.fixture(scope="module")
def estimator(coco_layout) -> PoseEstimator:
    return PoseEstimator(
        TinyNet(), layout=coco_layout, input_size=256, device="cpu", detection_threshold=0.3, max_people=4
    )


@pytest.fixture(scope="module")
def explained(estimator: PoseEstimator, image_path: Path) -> Explanation:
    return explain(estimator, image_path)


def test_maps_and_people_shapes_and_frames(estimator, explained, image_path):
    ex = explained
    image = load_image(image_path)
    h0, w0 = image.shape[:2]
    tf = resize_transform(h0, w0, estimator.input_size)
    w, h = tf.size
    k = 17
    n = len(ex)
    assert n > 0  # a random sigmoid map has many peaks above 0.3
    np.testing.assert_array_equal(ex.image, image)
    np.testing.assert_allclose(ex.transform.matrix, tf.matrix)
    np.testing.assert_allclose(ex.transform.inverse, tf.inverse)
    assert ex.input_image.shape == (h, w, 3) and ex.input_image.dtype == np.uint8
    np.testing.assert_array_equal(ex.input_image, cv2.warpAffine(image, tf.matrix, tf.size))
    assert ex.heatmaps.shape == (k, h, w) and ex.heatmaps.dtype == np.float32
    assert ex.tags.shape == (k, h, w, 2) and ex.tags.dtype == np.float32  # flip test: plain + flipped tags
    assert ex.keypoints.shape == ex.keypoints_input.shape == (n, k, 3)
    assert ex.scores.shape == (n,) and ex.person_tags.shape == (n, k, 2) and ex.detected.shape == (n, k)
    assert ex.keypoint_names == estimator.layout.keypoint_names
    assert ex.skeleton == tuple(estimator.layout.skeleton_index)

    # The people are exactly those of the estimator (same pipeline).
    pred = estimator(image)
    np.testing.assert_array_equal(ex.keypoints, pred.keypoints)
    np.testing.assert_array_equal(ex.scores, pred.scores)

    # Input frame: a detected joint sits on its heatmap pixel, and its score is the heatmap value there.
    pn, pk = np.nonzero(ex.detected)
    assert pn.size > 0
    xy = ex.keypoints_input[pn, pk, :2]
    assert (xy >= 0).all() and (xy[:, 0] < w).all() and (xy[:, 1] < h).all()
    px, py = np.floor(xy[:, 0]).astype(int), np.floor(xy[:, 1]).astype(int)
    np.testing.assert_allclose(ex.keypoints[pn, pk, 2], ex.heatmaps[pk, py, px], rtol=1e-6)
    # Original frame: the resize transform maps original keypoints onto the input ones.
    found = ex.keypoints[..., 2] > 0
    orig = ex.keypoints[found][:, :2]
    back = orig @ tf.matrix[:, :2].T + tf.matrix[:, 2]
    np.testing.assert_allclose(back, ex.keypoints_input[found][:, :2], atol=1e-3)
    assert orig[:, 0].max() > 0.5 * w0 or orig[:, 1].max() > 0.5 * h0  # not left in input pixels


def test_person_tags_are_the_tag_maps_at_the_grouped_joints(estimator, explained):
    ex = explained
    found = ex.keypoints[..., 2] > 0
    assert found.any() and (found | ~ex.detected).all()  # detected joints are found joints
    assert np.isnan(ex.person_tags[~found]).all()
    assert np.isfinite(ex.person_tags[found]).all()
    for n, k in zip(*np.nonzero(found), strict=True):
        x, y = (int(v) for v in ex.keypoints_input[n, k, :2])
        np.testing.assert_array_equal(ex.person_tags[n, k], ex.tags[k, y, x])
    # The tags that grouping compared (its output's tag columns) are those of the detected joints.
    grouped, _ = group_keypoints(
        ex.heatmaps, ex.tags, joint_order=estimator.joint_order, settings=estimator.settings.grouping
    )
    np.testing.assert_array_equal(ex.person_tags[ex.detected], grouped[..., 3:][ex.detected])
    detected_tags = ex.detected_tags
    np.testing.assert_array_equal(detected_tags[ex.detected], ex.person_tags[ex.detected])
    assert np.isnan(detected_tags[~ex.detected]).all()


def test_top_selects_best_people_first(explained):
    ex = explained
    best = ex.top(2, min_score=float(np.sort(ex.scores)[-2]))
    assert len(best) == 2
    order = np.argsort(-ex.scores, kind="stable")[:2]
    np.testing.assert_array_equal(best.scores, ex.scores[order])
    np.testing.assert_array_equal(best.person_tags, ex.person_tags[order])
    assert best.heatmaps is ex.heatmaps


def test_no_flip_multiscale_matches_the_estimator(coco_layout, image_path):
    est = PoseEstimator(
        TinyNet(), layout=coco_layout, scales=(1.0, 0.5), flip_test=False, input_size=256, device="cpu", max_people=4
    )
    ex = explain(est, str(image_path))
    pred = est(str(image_path))
    np.testing.assert_array_equal(ex.keypoints, pred.keypoints)
    assert ex.tags.shape[-1] == 1 and ex.heatmaps.shape[1:] == ex.input_image.shape[:2]
    assert ex.heatmaps.shape[1] == 256 or ex.heatmaps.shape[2] == 256  # short side = input_size at scale 1


def test_bad_image(estimator, tmp_path):
    from bottomup.data.io import ImageReadError

    with pytest.raises(ImageReadError):
        explain(estimator, tmp_path / "missing.jpg")
    with pytest.raises(ValueError, match="uint8"):
        explain(estimator, np.zeros((32, 32, 3), np.float32))
    with pytest.raises(TypeError, match="path or an"):
        explain(estimator, 42)


def _check_pictures(pictures: dict[str, np.ndarray]) -> None:
    assert tuple(pictures) == SNAPSHOT_KEYS
    for name, pic in pictures.items():
        assert pic.dtype == np.uint8 and pic.ndim == 3 and pic.shape[2] == 3, (name, pic.dtype, pic.shape)
        assert pic.flags.c_contiguous and pic.std() > 1, name


def test_training_snapshot_with_an_estimator_and_a_photo(estimator, image_path):
    pictures = training_snapshot(estimator, image_path)
    _check_pictures(pictures)
    image = load_image(image_path)
    assert pictures["skeletons"].shape == image.shape  # drawn on the original image
    assert not np.array_equal(pictures["skeletons"], image)  # people were drawn
    w, h = resize_transform(*image.shape[:2], estimator.input_size).size
    assert pictures["heatmaps"].shape == (h, w, 3)  # predicted only (no target)


def _plain(cfg) -> dict:
    """What ``training_snapshot`` takes with a bare model, from a composed config (as training builds it)."""
    from bottomup.build import test_settings
    from bottomup.core.keypoints import KeypointLayout

    return {"layout": KeypointLayout.from_config(cfg.data), "settings": test_settings(cfg)}


class QuietNet(TinyNet):
    """Heatmaps and tags all zero: nobody is found."""

    def forward(self, x):
        return [o * 0.0 for o in super().forward(x)]


def test_training_snapshot_shows_a_batch_entry_unnormalised_in_its_frame(image_path):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["data.input_size=128"])
    x, _ = preprocess(load_image(image_path), 128)
    crop = x[0]
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    rgb = ((crop.permute(1, 2, 0).numpy() * std + mean) * 255).round().clip(0, 255)
    pictures = training_snapshot(QuietNet(), crop, **_plain(cfg))
    _check_pictures(pictures)
    assert np.abs(pictures["skeletons"].astype(int) - rgb).max() <= 1  # no people: the crop itself
    assert pictures["heatmaps"].shape == rgb.shape  # no target: the prediction only


def test_training_snapshot_with_the_training_model_and_a_batch_entry(coco_layout, image_path):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["data.input_size=128", "test.max_people=4"])
    model = TinyNet()
    model.train()
    x, _ = preprocess(load_image(image_path), 128)  # (1, 3, 128, w): an ImageNet-normalised input crop
    crop = x[0]
    target = [torch.zeros(1, 17, 32, crop.shape[2] // 4), torch.zeros(1, 17, 64, crop.shape[2] // 2)]
    target[1][0, 0, 30:34, 10:14] = 1.0  # one hot spot, in the left half
    pictures = training_snapshot(model, crop, target, **_plain(cfg))
    assert model.training  # mode restored
    _check_pictures(pictures)
    h, w = crop.shape[1:]
    assert pictures["skeletons"].shape == (h, w, 3)  # the crop is shown in its own frame (not resized)
    # Predicted and target side by side, 4 px apart; the target panel is tinted at its hot spot only.
    heat = pictures["heatmaps"]
    assert heat.shape == (h, 2 * w + 4, 3)
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    rgb = ((crop.permute(1, 2, 0).numpy() * std + mean) * 255).round().clip(0, 255)  # un-normalised crop
    diff = np.abs(heat[:, w + 4 :].astype(int) - rgb).max(-1)  # (h, w)
    ys, xs = np.nonzero(diff[h // 4 :] > 20)  # below the panel's label
    ys += h // 4
    assert ys.size > 0
    assert 26 <= ys.min() * 64 / h and ys.max() * 64 / h <= 38  # spot rows 30-33 of the 64-row target
    assert 6 * w / (w // 2) <= xs.min() + 1 and xs.max() <= 18 * w / (w // 2)
    model.eval()
    training_snapshot(model, crop, **_plain(cfg))
    assert not model.training
    with pytest.raises(ValueError, match="layout"):
        training_snapshot(model, crop)
    with pytest.raises(ValueError, match="target_heatmaps"):
        training_snapshot(model, crop, torch.zeros(5, 8, 8), **_plain(cfg))


# ------------------------------------------------------------------ one forward: every precision and folded copy
PRECISION_SETTINGS = {
    "fp32": {},
    "bf16_autocast": {"precision": "bf16"},
    "bf16_folded": {"precision": "bf16", "fold_bn": True},
    "bf16_folded_channels_last": {"precision": "bf16", "fold_bn": True, "channels_last": True},
}


def _biased_hrnet() -> torch.nn.Module:
    """A random W8 HigherHRNet (with BatchNorms to fold) whose heatmaps exceed the detection threshold."""
    from bottomup.models import HigherHRNet

    torch.manual_seed(0)
    net = HigherHRNet(width=8, stage_modules=(1, 1, 1), blocks_per_branch=1)
    with torch.no_grad():
        for layer in net.final_layers:
            torch.nn.init.normal_(layer.weight, std=0.05)
            layer.bias[:17] = 0.3
    return net


@pytest.fixture(scope="module")
def fp32_explanation(coco_layout, image_path) -> Explanation:
    est = PoseEstimator(_biased_hrnet(), layout=coco_layout, input_size=128, device="cpu", max_people=4)
    return explain(est, image_path)


@pytest.mark.parametrize("settings", list(PRECISION_SETTINGS.values()), ids=list(PRECISION_SETTINGS))
def test_explain_gives_the_estimators_people_at_every_precision(coco_layout, image_path, fp32_explanation, settings):
    est = PoseEstimator(_biased_hrnet(), layout=coco_layout, input_size=128, device="cpu", max_people=4, **settings)
    pred = est(image_path)
    ex = explain(est, image_path)
    assert len(pred) > 0
    np.testing.assert_array_equal(ex.keypoints, pred.keypoints)
    np.testing.assert_array_equal(ex.scores, pred.scores)
    if settings.get("precision", "fp32") != "fp32":  # the maps come from the low-precision network, not fp32
        assert not np.array_equal(ex.heatmaps, fp32_explanation.heatmaps)
        np.testing.assert_allclose(ex.heatmaps, fp32_explanation.heatmaps, atol=0.05)


@pytest.mark.parametrize("settings", list(PRECISION_SETTINGS.values()), ids=list(PRECISION_SETTINGS))
def test_training_snapshot_draws_the_estimators_people_at_every_precision(coco_layout, image_path, settings):
    """The bare-model path of training (``test.*`` of the config) draws exactly what the estimator finds."""
    from bottomup.vis import draw_people

    overrides = [
        "data.input_size=128",
        "test.max_people=4",
        *(f"test.{k}={str(v).lower()}" for k, v in settings.items()),
    ]
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    net = _biased_hrnet()
    net.train()
    pictures = training_snapshot(net, image_path, **_plain(cfg))
    assert net.training  # mode restored
    est = PoseEstimator.from_config(cfg, model=_biased_hrnet(), flip_test=False, scales=[1.0], device="cpu")
    pred = est(image_path)
    assert len(pred) > 0 and est.precision == settings.get("precision", "fp32")
    expected = draw_people(load_image(image_path), pred.keypoints, coco_layout.skeleton_index, scores=pred.scores)
    np.testing.assert_array_equal(pictures["skeletons"], expected)


def test_tag_panels_say_why_they_are_black(coco_layout, image_path):
    """A net whose heatmaps are all 0 (early training): the tag panels' title says why they are black; a net
    with peaks above the threshold gets the plain title."""
    from bottomup.engine.explain import explain, tag_panel_title

    quiet = explain(PoseEstimator(QuietNet(), layout=coco_layout, device="cpu", flip_test=False), image_path)
    assert "all black: no heatmap value above 0.10 yet" in tag_panel_title(quiet.heatmaps, 0.1)
    loud = explain(PoseEstimator(TinyNet(), layout=coco_layout, device="cpu", flip_test=False), image_path)
    assert float(loud.heatmaps.max()) > 0.1
    assert tag_panel_title(loud.heatmaps, 0.1) == "tag maps (masked where heatmap <= 0.10)"

"""PoseEstimator on a real coco-mini image with small random models; input validation; checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import TinyNet
from torch import nn

from bottomup.api import PoseEstimator, Prediction
from bottomup.data.io import ImageReadError, load_image
from bottomup.models import HigherHRNet

IMAGE = "000000000785.jpg"


@pytest.fixture(scope="module")
def image_path(coco_root):
    path = coco_root / "val2017" / IMAGE
    if not path.exists():  # any val image will do
        path = sorted((coco_root / "val2017").glob("*.jpg"))[0]
    return path


def test_prediction_shapes_and_frame(image_path, coco_layout):
    est = PoseEstimator(TinyNet(), layout=coco_layout, device="cpu", detection_threshold=0.3, max_people=3)
    image = load_image(image_path)
    pred = est(image)
    assert isinstance(pred, Prediction)
    n = len(pred)
    assert n > 0  # a random sigmoid map has many peaks above 0.3
    assert pred.keypoints.shape == (n, 17, 3) and pred.scores.shape == (n,)
    assert pred.keypoint_names == coco_layout.keypoint_names
    h, w = image.shape[:2]
    found = pred.keypoints[..., 2] > 0
    xy = pred.keypoints[found][:, :2]
    # Original-image frame: inside the image up to the 64-px alignment padding of the long side.
    assert xy[:, 0].min() > -64 and xy[:, 0].max() < w + 64
    assert xy[:, 1].min() > -64 and xy[:, 1].max() < h + 64
    assert xy[:, 0].max() > 0.5 * w or xy[:, 1].max() > 0.5 * h  # not left in input / heatmap pixels
    np.testing.assert_allclose(pred.scores, pred.keypoints[..., 2].mean(axis=1), atol=1.0)
    # Path and array inputs agree.
    pred_path = est(image_path)
    np.testing.assert_array_equal(pred_path.keypoints, pred.keypoints)
    np.testing.assert_array_equal(pred_path.scores, pred.scores)


def test_higherhrnet_multiscale_no_flip(image_path, coco_layout):
    model = HigherHRNet(width=4)
    est = PoseEstimator(model, layout=coco_layout, scales=(1.0, 0.5), flip_test=False, input_size=256, device="cpu")
    pred = est(str(image_path))
    assert pred.keypoints.shape[1:] == (17, 3) and pred.scores.shape == (pred.keypoints.shape[0],)


def test_any_test_scale_gives_an_input_the_network_runs(image_path, coco_layout):
    """Scale 1.25 of input 160 (ceil64: 192) used to ask the network for 240 px and stop with "multiples of 32";
    such a side is rounded to the nearest multiple of 32. The official sizes are unchanged."""
    from bottomup.data.io import load_image
    from bottomup.data.transforms import resize_transform

    image = load_image(image_path)
    h, w = image.shape[:2]
    assert resize_transform(h, w, 160, 1.25).size[1 if w > h else 0] == 256  # 240 -> nearest multiple of 32
    for size, scales in ((512, (2.0, 1.0, 0.5)), (640, (1.0, 0.5)), (160, (1.25, 1.0, 0.75))):
        for s in scales:
            tf = resize_transform(h, w, size, s, min(scales))
            assert all(side % 32 == 0 for side in tf.size), (size, s, tf.size)
            short = int((min(scales) * size + 63) // 64 * 64 * s / min(scales))
            if short % 32 == 0:  # what the official get_multi_scale_size gives, where the network can run it
                assert min(tf.size) == short
    model = HigherHRNet(width=4)
    est = PoseEstimator(model, layout=coco_layout, scales=(1.25, 1.0), flip_test=True, input_size=160, device="cpu")
    pred = est(str(image_path))
    assert pred.keypoints.shape[1:] == (17, 3)


def test_bad_inputs(tmp_path, coco_layout):
    est = PoseEstimator(TinyNet(), layout=coco_layout, device="cpu")
    with pytest.raises(ImageReadError, match="does not exist"):
        est(tmp_path / "missing.jpg")
    with pytest.raises(ValueError, match="uint8"):
        est(np.zeros((64, 64, 3), np.float32))
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        est(np.zeros((64, 64), np.uint8))
    with pytest.raises(TypeError, match="path or an"):
        est(42)
    with pytest.raises(ValueError, match="unknown grouping"):
        PoseEstimator(TinyNet(), layout=coco_layout, tag_treshold=1.0)


def test_a_float_image_gets_advice_that_keeps_its_brightness(image_path, coco_layout):
    """A 0-1 float64 image used to get the advice ``.astype(np.uint8)``, which turns it black: the message gives the
    range and the conversion for 0-1 and for 0-255 images, and following it gives back the uint8 image."""
    est = PoseEstimator(TinyNet(), layout=coco_layout, device="cpu")
    image = load_image(image_path)
    unit = image / 255.0  # float64, 0-1 (what skimage / matplotlib give)
    with pytest.raises(ValueError) as e:
        est(unit)
    assert str(e.value) == (
        f"image must be uint8 RGB (0-255), got dtype float64 (values {unit.min():g} to {unit.max():g}); a 0-1 float "
        "image (this one looks 0-1) converts with (img * 255).round().astype(np.uint8), a 0-255 one with "
        "img.clip(0, 255).round().astype(np.uint8) (.astype(np.uint8) alone turns a 0-1 image black)"
    )
    np.testing.assert_array_equal((unit * 255).round().astype(np.uint8), image)  # the advice, followed
    with pytest.raises(ValueError, match=r"\(this one looks 0-255\)"):
        est(image.astype(np.float32))
    with pytest.raises(ValueError, match=r"16-bit image converts with \(img / 257\)\.round\(\)\.astype"):
        est(image.astype(np.uint16) * 257)


def test_from_checkpoint_project(tmp_path, image_path):
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from bottomup.build import CONF_DIR as _CONF

    with initialize_config_dir(config_dir=str(_CONF), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["model.width=4", "data.input_size=256"])
    model = HigherHRNet(width=4)
    project = tmp_path / "project.pt"
    torch.save({"model": model.state_dict(), "config": OmegaConf.to_yaml(cfg)}, project)
    est = PoseEstimator.from_checkpoint(project, device="cpu", flip_test=False)
    assert est.input_size == 256 and est.layout.num_keypoints == 17
    for key, value in model.state_dict().items():
        torch.testing.assert_close(est.model.state_dict()[key], value)
    pred = est(image_path)
    assert pred.keypoints.shape[1:] == (17, 3)
    with pytest.raises(FileNotFoundError):
        PoseEstimator.from_checkpoint(tmp_path / "nope.pt")


@pytest.mark.slow  # builds two HigherHRNet-W32 (~20 s on 2 CPU cores)
def test_from_checkpoint_official(tmp_path):
    official = tmp_path / "official.pth"
    torch.save(HigherHRNet(width=32).state_dict(), official)
    with pytest.raises(ValueError, match="experiment="):
        PoseEstimator.from_checkpoint(official)
    est2 = PoseEstimator.from_checkpoint(official, experiment="higherhrnet_w32", device="cpu")
    assert est2.model.width == 32 and est2.flip_test and est2.input_size == 512
    assert est2.joint_order == [0, 1, 2, 3, 4, 5, 6, 11, 12, 7, 8, 9, 10, 13, 14, 15, 16]


def test_bf16_channels_last_fast_path_matches_fp32_maps(coco_root) -> None:
    """bf16 autocast + channels_last: the network outputs the pipeline sees stay close to fp32 on a real image."""

    class Recorder(nn.Module):
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner, self.seen = inner, []

        def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
            out = self.inner(x)
            self.seen.append((x.is_contiguous(memory_format=torch.channels_last), [o.float().clone() for o in out]))
            return out

    torch.manual_seed(0)
    net = HigherHRNet(width=8)
    image = coco_root / "val2017" / "000000000139.jpg"
    kwargs = dict(num_keypoints=17, input_size=256, flip_test=False, max_people=3, device="cpu")
    exact_rec, fast_rec = Recorder(net), Recorder(net)
    exact = PoseEstimator(exact_rec, **kwargs)(image)
    fast = PoseEstimator(fast_rec, precision="bf16", channels_last=True, **kwargs)(image)
    assert fast.keypoints.shape[1:] == exact.keypoints.shape[1:] == (17, 3)
    (cl_exact, out_exact), (cl_fast, out_fast) = exact_rec.seen[0], fast_rec.seen[0]
    assert not cl_exact and cl_fast
    for a, b in zip(out_exact, out_fast, strict=True):
        scale = a.abs().max()
        assert scale > 0 and (a - b).abs().max() < 0.05 * scale  # bf16 keeps ~3 significant digits
        assert not torch.equal(a, b)  # the fast path really ran in lower precision
    again = PoseEstimator(Recorder(net.float().to(memory_format=torch.contiguous_format)), **kwargs)(image)
    np.testing.assert_array_equal(again.keypoints, exact.keypoints)  # fp32 stays bit-for-bit
    with pytest.raises(ValueError, match="precision"):
        PoseEstimator(net, precision="int8", **kwargs)


def test_checkpoint_of_bottomup_0_1_loads_with_its_old_config_names(tmp_path, image_path):
    """A ``last.pt`` written before the role folders: its config names ``bottomup.losses`` /
    ``bottomup.schedule`` targets and a ``grouping`` test group. It still loads, builds and predicts."""
    from omegaconf import OmegaConf

    from bottomup.build import build_loss, build_optimizer, compose, load_model

    cfg = OmegaConf.to_container(
        compose(
            "train",
            [
                "model.width=4",
                "data.input_size=256",
                "data.root=/data",
                "test.flip_test=false",
                "test.tag_threshold=0.7",
            ],
        ),
        resolve=False,
    )
    cfg["grouping"] = cfg.pop("test")
    cfg["loss"]["_target_"] = "bottomup.losses.AssociativeEmbeddingLoss"
    cfg["schedule"]["_target_"] = "bottomup.schedule.warmup_multistep"
    cfg.pop("output_dir")
    old = OmegaConf.to_yaml(OmegaConf.create(cfg), resolve=True)
    model = HigherHRNet(width=4)
    path = tmp_path / "last.pt"
    torch.save({"model": model.state_dict(), "config": old, "epoch": 1, "step": 10}, path)

    est = PoseEstimator.from_checkpoint(path, device="cpu")
    assert not est.flip_test and est.grouping["tag_threshold"] == 0.7 and est.input_size == 256
    assert est(image_path).keypoints.shape[1:] == (17, 3)
    built, saved, kind = load_model(path)
    assert kind == "project" and saved.loss._target_ == "bottomup.models.losses.AssociativeEmbeddingLoss"
    assert build_loss(saved.loss)([torch.zeros(1, 34, 8, 8), torch.zeros(1, 17, 16, 16)], *_targets())["loss"] == 0
    optimizer, scheduler = build_optimizer(saved.optim, saved.schedule, built, iters_per_epoch=10)
    assert scheduler.get_last_lr()[0] == pytest.approx(saved.optim.lr * saved.schedule.warmup_factor)


def _targets():
    heatmaps = [torch.zeros(1, 17, 8, 8), torch.zeros(1, 17, 16, 16)]
    masks = [torch.ones(1, 8, 8), torch.ones(1, 16, 16)]
    return heatmaps, masks, torch.zeros(1, 30, 17, 2, dtype=torch.int64)


# ------------------------------------------------------------------------------------------- using the results
def test_prediction_is_a_sequence_of_people_with_boxes_and_exports(image_path, coco_layout, tmp_path):
    import json

    from bottomup.engine.inference import Person

    est = PoseEstimator(TinyNet(), layout=coco_layout, device="cpu", detection_threshold=0.3, max_people=5)
    pred = est(image_path)
    n = len(pred)
    assert n >= 2
    people = list(pred)
    assert len(people) == n and all(isinstance(p, Person) for p in people)
    first = pred[0]
    np.testing.assert_array_equal(first.keypoints, pred.keypoints[0])
    assert first.score == pytest.approx(float(pred.scores[0]))
    np.testing.assert_array_equal(
        first["left_wrist"], pred.keypoints[0, coco_layout.keypoint_names.index("left_wrist")]
    )
    with pytest.raises(KeyError, match="no keypoint 'tail'.*nose"):
        first["tail"]
    with pytest.raises(IndexError, match=f"has {n} people"):
        pred[n]
    np.testing.assert_array_equal(pred[-1].keypoints, pred.keypoints[-1])
    cut = float(np.median(pred.scores))
    strong = pred[pred.scores >= cut]
    assert isinstance(strong, Prediction) and len(strong) == int((pred.scores >= cut).sum())
    assert strong.image is pred.image and strong.skeleton == pred.skeleton
    # boxes: tight around each person's detected joints, original-image pixels
    for person, box in zip(pred, pred.boxes, strict=True):
        xy = person.keypoints[person.keypoints[:, 2] > 0, :2]
        np.testing.assert_allclose(box, [*xy.min(0), *xy.max(0)])
        np.testing.assert_array_equal(person.box, box)
    coco = pred.to_coco(image_id=785, category_id=3)
    assert len(coco) == n and {r["category_id"] for r in coco} == {3} and {r["image_id"] for r in coco} == {785}
    x0, y0, x1, y1 = pred.boxes[0]
    np.testing.assert_allclose(coco[0]["bbox"], [x0, y0, x1 - x0, y1 - y0], atol=1e-3)
    np.testing.assert_allclose(np.reshape(coco[0]["keypoints"], (17, 3)), pred.keypoints[0], atol=1e-3)
    text = pred.to_json(tmp_path / "people.json", image_id=785)
    assert json.loads((tmp_path / "people.json").read_text()) == json.loads(text)
    assert json.loads(text)[0]["category_id"] == 1


def test_prediction_plot_and_save(image_path, coco_layout, tmp_path):
    import cv2

    est = PoseEstimator(TinyNet(), layout=coco_layout, device="cpu", detection_threshold=0.3, max_people=5)
    image = load_image(image_path)
    pred = est(image)
    np.testing.assert_array_equal(pred.image, image)
    picture = pred.plot(min_score=0.0, joint_threshold=0.0)
    assert picture.shape == image.shape and not np.array_equal(picture, image)  # 640 px: not upscaled
    # nobody passes a person threshold above every score: the picture is the image
    np.testing.assert_array_equal(pred.plot(min_score=float(pred.scores.max()) + 0.01), image)
    # a stricter joint threshold draws fewer pixels
    loose = (pred.plot(min_score=0.0, joint_threshold=0.0, labels=False) != image).any(-1).sum()
    strict = (pred.plot(min_score=0.0, joint_threshold=0.6, labels=False) != image).any(-1).sum()
    assert strict < loose
    saved = pred.save(tmp_path / "people.png", min_score=0.0)
    np.testing.assert_array_equal(cv2.imread(str(saved))[..., ::-1], pred.plot(min_score=0.0))
    # a small image is upscaled to 640 px on its long side so that the labels stay legible
    small = np.ascontiguousarray(image[::4, ::4])
    up = est(small).plot()
    assert max(up.shape[:2]) == 640 and up.shape[0] / up.shape[1] == pytest.approx(
        small.shape[0] / small.shape[1], abs=0.01
    )
    with pytest.raises(ValueError, match="holds no image"):
        Prediction(pred.keypoints, pred.scores).plot()
    with pytest.raises(OSError, match="could not write"):
        pred.save(tmp_path / "missing" / "people.png")


def test_color_order_of_arrays(image_path, coco_layout):
    net = TinyNet()
    rgb = load_image(image_path)
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    kwargs = {"layout": coco_layout, "device": "cpu", "detection_threshold": 0.3, "max_people": 5}
    ref = PoseEstimator(net, **kwargs)(rgb)
    from_bgr = PoseEstimator(net, color="bgr", **kwargs)(bgr)
    np.testing.assert_array_equal(from_bgr.keypoints, ref.keypoints)
    np.testing.assert_array_equal(from_bgr.image, rgb)  # the prediction holds the RGB image
    # a file is decoded the same whatever color says
    np.testing.assert_array_equal(PoseEstimator(net, color="bgr", **kwargs)(image_path).keypoints, ref.keypoints)
    wrong = PoseEstimator(net, **kwargs)(bgr)  # BGR given as RGB: another input, other maps
    assert wrong.keypoints.shape != ref.keypoints.shape or not np.allclose(wrong.keypoints, ref.keypoints)
    with pytest.raises(ValueError, match="color must be one of"):
        PoseEstimator(net, color="hsv", **kwargs)

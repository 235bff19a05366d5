"""The UDP test time (``test.udp``): aggregation, the whole pipeline and the settings' way there.

The aggregation is checked against a re-statement of MMPose 0.x's (v0.29.0, read, not copied)
``AssociativeEmbedding.forward_test`` with its UDP config (``project2image=False``, ``align_corners=True``):
``split_ae_outputs``, ``flip_feature_maps``, ``aggregate_stage_flip`` (heatmaps: stage average at the last output,
flip average; tags: flip concatenation), ``aggregate_scale`` (index 0 = the largest scale) and the final resize of
the tags to the heatmaps' size (``core/evaluation/bottom_up_eval.py``, ``models/detectors/associative_embedding.py``).
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import compose_train_config

from bottomup.codec import AssociativeEmbeddingCodec
from bottomup.codec.ideal import flip_outputs, ideal_outputs
from bottomup.data.io import read_image
from bottomup.data.transforms import preprocess, resize_transform, to_original
from bottomup.engine.inference import aggregate_scales, postprocess, run_pipeline
from bottomup.engine.settings import TestSettings


def _resize(x: torch.Tensor, hw) -> torch.Tensor:
    return x if tuple(x.shape[-2:]) == tuple(hw) else F.interpolate(x, size=hw, mode="bilinear", align_corners=True)


def mmpose_udp_aggregate(per_scale, k: int, flip_index) -> tuple[torch.Tensor, torch.Tensor]:
    """MMPose's UDP test-time aggregation of ``(scale, outputs, flip_outputs)`` (largest scale first)."""
    heat_list, tag_list = [], []
    for s, outs, flips in per_scale:
        heatmaps = [o[:, :k] for o in outs]
        tags = [outs[0][:, k:]]
        last = heatmaps[-1].shape[-2:]
        heat = sum(_resize(h, last) for h in heatmaps) / len(heatmaps)
        tag_maps = [tags[0]]
        if flips is not None:
            fh = [torch.flip(o[:, :k], [3])[:, flip_index] for o in flips]
            heat = (heat + sum(_resize(h, last) for h in fh) / len(fh)) / 2.0
            tag_maps.append(torch.flip(flips[0][:, k:], [3])[:, flip_index])
        if s == 1 or len(per_scale) == 1:
            tag_list.extend(tag_maps)
        heat_list.append(heat)
    size = heat_list[0].shape[-2:]
    heat = sum(_resize(h, size) for h in heat_list) / len(heat_list)
    tsize = tag_list[0].shape[-2:]
    tags = torch.cat([_resize(t, tsize)[..., None] for t in tag_list], dim=4)  # (1, K, h, w, L)
    tags = torch.cat([_resize(tags[..., i], size)[..., None] for i in range(tags.shape[-1])], dim=-1)
    return heat, tags


@pytest.mark.parametrize("flip", [False, True], ids=["noflip", "flip"])
@pytest.mark.parametrize("scales", [(1.0,), (2.0, 1.0, 0.5)], ids=["single", "multi"])
def test_udp_aggregation_equals_mmpose(coco_layout, flip, scales) -> None:
    k = coco_layout.num_keypoints
    codec = AssociativeEmbeddingCodec.from_layout(coco_layout)
    gen = torch.Generator().manual_seed(0)
    h, w = 120, 170  # a landscape image at input size 128
    per_scale = []
    for s in sorted(scales, reverse=True):
        tf = resize_transform(h, w, 128, s, min(scales), udp=True)
        wi, hi = tf.size

        def outputs(hi: int = hi, wi: int = wi) -> list[torch.Tensor]:
            return [
                torch.rand(1, 2 * k, hi // 4, wi // 4, generator=gen),
                torch.rand(1, k, hi // 2, wi // 2, generator=gen),
            ]

        per_scale.append((s, outputs(), outputs() if flip else None))
    base = resize_transform(h, w, 128, 1.0, min(scales), udp=True)
    heat, tags = aggregate_scales(per_scale, base, codec)
    expect_heat, expect_tags = mmpose_udp_aggregate(per_scale, k, coco_layout.flip_index)
    largest = resize_transform(h, w, 128, max(scales), min(scales), udp=True).size
    assert heat.shape[-2:] == (largest[1] // 2, largest[0] // 2)  # the largest scale's stride-2 maps
    torch.testing.assert_close(heat, expect_heat, rtol=0, atol=1e-6)
    torch.testing.assert_close(tags, expect_tags, rtol=0, atol=1e-6)


class IdealNetwork(torch.nn.Module):
    """Returns the ideal UDP outputs of known people for the input it is given (and their mirror for the mirrored
    input): a perfect, flip-equivariant UDP-trained network for one image, for ``run_pipeline``."""

    def __init__(self, image: np.ndarray, people: np.ndarray, flip_index, udp_targets: bool) -> None:
        super().__init__()
        self.image, self.people, self.flip_index, self.udp_targets = image, people, list(flip_index), udp_targets
        self.anchor = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        h, w = x.shape[-2:]
        for udp in (True, False):  # which resize made x (scale 1): found by its pixels
            plain, tf = preprocess(self.image, 128, udp=udp)
            for mirrored in (False, True):
                if torch.equal(torch.flip(plain, [3]) if mirrored else plain, x):
                    kp = self.people.copy()
                    kp[..., :2] = kp[..., :2] @ tf.matrix[:, :2].T + tf.matrix[:, 2]
                    outs = ideal_outputs(kp, (h, w), (4, 2), udp=self.udp_targets)
                    return flip_outputs(outs, self.flip_index, kp.shape[1]) if mirrored else outs
        raise AssertionError("unexpected input")


def test_run_pipeline_with_udp_finds_the_people_of_a_real_image(coco_root, coco_layout) -> None:
    """The whole torch path with ``TestSettings(udp=True)`` on a real coco-mini image and the ideal outputs of its
    annotated people: the people come back within a pixel; the same network tested without UDP is off more."""
    import json

    ann = json.loads((coco_root / "annotations" / "person_keypoints_val2017.json").read_text())

    def people_of(image_id: int) -> list:
        return [a["keypoints"] for a in ann["annotations"] if a["image_id"] == image_id and a["num_keypoints"] > 5]

    info = next(i for i in sorted(ann["images"], key=lambda i: i["id"]) if len(people_of(i["id"])) >= 2)
    people = np.asarray(people_of(info["id"]), np.float64).reshape(-1, 17, 3)
    image = read_image(coco_root / "val2017" / info["file_name"])
    codec = AssociativeEmbeddingCodec.from_layout(coco_layout)
    net = IdealNetwork(image, people, coco_layout.flip_index, udp_targets=True)
    errors = {}
    for udp in (True, False):
        out = run_pipeline(net, image, codec=codec, settings=TestSettings(input_size=128, udp=udp))
        assert out.transform.udp is udp
        vis = people[..., 2] > 0
        dist = [np.linalg.norm(out.keypoints[:, v, :2] - p[None, v, :2], axis=2).mean(axis=1).min()
                for p, v in zip(people, vis, strict=True)]  # fmt: skip
        errors[udp] = float(np.mean(dist))
        print(f"{info['file_name']}: {len(people)} people, udp={udp}: mean error {errors[udp]:.3f} px")
        if udp:
            assert tuple(out.heatmaps.shape[-2:]) == (out.transform.size[1] // 2, out.transform.size[0] // 2)
            # the same as postprocess on the same outputs (the pipeline adds only the resize and the network)
            plain, base = preprocess(image, 128, udp=True)
            per_scale = [(1.0, net(plain), net(torch.flip(plain, [3])))]
            np.testing.assert_allclose(postprocess(per_scale, base, codec=codec)[0], out.keypoints, atol=1e-4)
    assert errors[True] < 0.5, errors
    assert errors[True] < errors[False], errors


def test_udp_settings_compose_and_reach_the_pipeline(caplog) -> None:
    cfg = compose_train_config([])
    assert cfg.data.udp is False and cfg.test.udp is False
    cfg = compose_train_config(["data.udp=true"])
    assert cfg.test.udp is True  # test.udp follows data.udp unless given
    from bottomup.build import build_model, test_settings
    from bottomup.build.networks import estimator_from_config

    assert test_settings(cfg).udp is True
    cfg = compose_train_config(["data.udp=true", "test.udp=false", "experiment=quickstart"])
    assert test_settings(cfg).udp is False
    model = build_model(cfg.model, pretrained=False)
    with caplog.at_level(logging.WARNING, logger="bottomup.build"):
        est = estimator_from_config(cfg, model, device="cpu")
    assert est.settings.udp is False and "data.udp=true but test.udp=false" in caplog.text
    assert est.with_settings(udp=True).settings.udp is True
    with pytest.raises(Exception, match="udp"):
        compose_train_config(["test.udp=maybe"])


def test_to_original_udp_needs_the_map_frame() -> None:
    tf = resize_transform(480, 640, 512, udp=True)
    box = (703 / 511 * 479, 479)  # landscape: the short side's H - 1, the long side by the resized ratio
    np.testing.assert_allclose(tf.scale, box)
    kp = np.array([[[351.0, 255.0, 1.0]]])  # the last pixel of the 704 x 512 input's stride-2 maps
    np.testing.assert_allclose(to_original(kp, tf, map_size=(352, 256))[0, 0, :2], box)
    np.testing.assert_allclose(to_original(kp * 2, tf)[0, 0, :2], (702 * 479 / 511, 510 * 479 / 511))


def test_explain_gives_input_pixels_with_udp(coco_root, coco_layout) -> None:
    """``bottomup.engine.explain`` on the UDP pipeline: the maps stay at the stride-2 resolution, and
    ``keypoints_input`` are input pixels (the original-image keypoints through the UDP resize)."""
    import json

    from bottomup.engine.estimator import PoseEstimator
    from bottomup.engine.explain import explain

    ann = json.loads((coco_root / "annotations" / "person_keypoints_val2017.json").read_text())
    info = next(i for i in sorted(ann["images"], key=lambda i: i["id"]) if any(
        a["image_id"] == i["id"] and a["num_keypoints"] > 5 for a in ann["annotations"]))  # fmt: skip
    people = [a["keypoints"] for a in ann["annotations"] if a["image_id"] == info["id"] and a["num_keypoints"] > 5]
    people = np.asarray(people, np.float64).reshape(-1, 17, 3)
    image = read_image(coco_root / "val2017" / info["file_name"])
    net = IdealNetwork(image, people, coco_layout.flip_index, udp_targets=True)
    est = PoseEstimator(net, layout=coco_layout, settings=TestSettings(input_size=128, udp=True), device="cpu")
    ex = explain(est, image)
    tf = ex.transform
    assert tf.udp and ex.heatmaps.shape[1:] == (tf.size[1] // 2, tf.size[0] // 2)
    assert ex.input_image.shape[:2] == (tf.size[1], tf.size[0])
    found = ex.keypoints[..., 2] > 0
    expect = ex.keypoints[..., :2] @ tf.matrix[:, :2].T + tf.matrix[:, 2]
    np.testing.assert_allclose(ex.keypoints_input[..., :2][found], expect[found], atol=1e-3)


def test_a_checkpoints_udp_travels_into_evaluation() -> None:
    """``bottomup.build.runs``: a project checkpoint trained with ``data.udp`` is evaluated with ``test.udp`` unless
    the command line sets ``data.udp`` / ``test.udp``."""
    from omegaconf import open_dict

    from bottomup.build.runs import _udp_of_checkpoint

    ran = compose_train_config(["data.udp=true"])
    for given, expect in ((set(), True), ({"test.udp"}, False), ({"data.udp"}, False)):
        cfg = compose_train_config([])
        with open_dict(cfg):
            _udp_of_checkpoint(cfg, ran, given)
        assert cfg.test.udp is expect and cfg.data.udp is expect
    cfg = compose_train_config([])
    old = compose_train_config([])
    with open_dict(cfg):
        _udp_of_checkpoint(cfg, old, set())  # a checkpoint without UDP (or saved before the key): off
    assert cfg.test.udp is False

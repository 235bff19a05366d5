"""SWAHR at test time: the scale maps are cut off before aggregation and grouping (official SWAHR
``get_multi_stage_outputs`` reads channels ``[K, ...)`` of every output), so a SWAHR network is decoded exactly like
the HigherHRNet it contains; project checkpoints and official SWAHR ``.pth`` files work through ``load_model``,
``PoseEstimator``, the evaluation and the fast (folded BN, bf16) path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import compose_train_config
from omegaconf import OmegaConf
from test_model import _randomize
from torch import nn

from bottomup.api import PoseEstimator
from bottomup.build import describe_weights, load_initial_weights, load_model
from bottomup.codec import AssociativeEmbeddingCodec
from bottomup.data import load_image
from bottomup.engine.checkpoint import save_checkpoint
from bottomup.engine.estimator import Predictor
from bottomup.engine.inference import network_forward, run_pipeline, scale_map_channels
from bottomup.engine.settings import TestSettings
from bottomup.models import HigherHRNet
from bottomup.models.fast import prepare_for_inference

SMALL = {"width": 16, "stage_modules": (1, 1, 1), "blocks_per_branch": 1, "stem_blocks": 1, "num_deconv_blocks": 1}
IMAGE = "val2017/000000000139.jpg"


def _randomized(model: nn.Module, seed: int = 0) -> nn.Module:
    """He-like conv weights and non-trivial BN statistics, so that maps and scale maps are O(1)."""
    _randomize(model, seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return model.eval()


@pytest.fixture(scope="module")
def pair() -> tuple[HigherHRNet, HigherHRNet]:
    """A SWAHR network and the HigherHRNet with the same weights (everything but the scale heads)."""
    swahr = _randomized(HigherHRNet(**SMALL, swahr=True))
    plain = HigherHRNet(**SMALL).eval()
    plain.load_state_dict({k: v for k, v in swahr.state_dict().items() if not k.startswith("conv_scale_layers.")})
    return swahr, plain


@pytest.fixture(scope="module")
def image(coco_root: Path) -> np.ndarray:
    return load_image(coco_root / IMAGE)


def test_network_forward_cuts_the_scale_maps(pair) -> None:
    swahr, plain = pair
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        raw = swahr(x)
        assert raw[0][:, :17].abs().max() > 0.1  # the scale maps are there, and not 0
        out, ref = network_forward(swahr, x), network_forward(plain, x)
    assert [tuple(o.shape) for o in out] == [(1, 34, 16, 24), (1, 17, 32, 48)]
    for o, r, full in zip(out, ref, raw, strict=True):
        torch.testing.assert_close(o, r)
        assert torch.equal(o, full[:, 17:])
    assert scale_map_channels(swahr) == 17 and scale_map_channels(plain) == 0
    assert scale_map_channels(torch.compile(swahr)) == 17  # through the compiled wrapper (not run)
    assert scale_map_channels(lambda x: [x]) == 0  # any callable without the attribute: HigherHRNet layout


def test_pipeline_finds_the_same_people_as_the_higherhrnet_inside(pair, image, coco_layout) -> None:
    swahr, plain = pair
    codec = AssociativeEmbeddingCodec.from_layout(coco_layout, detection_threshold=0.05)
    a = run_pipeline(swahr, image, codec=codec, settings=TestSettings(input_size=128))
    b = run_pipeline(plain, image, codec=codec, settings=TestSettings(input_size=128))
    assert a.keypoints.shape[0] > 0  # random weights still give peaks above the threshold
    torch.testing.assert_close(a.heatmaps, b.heatmaps, rtol=0, atol=0)
    torch.testing.assert_close(a.tags, b.tags, rtol=0, atol=0)
    np.testing.assert_array_equal(a.keypoints, b.keypoints)
    np.testing.assert_array_equal(a.scores, b.scores)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_fast_path_folds_the_scale_heads_and_drops_their_maps(pair, image, coco_layout, precision) -> None:
    """``prepare_for_inference`` folds the scale heads' BN like any other; a prepared copy keeps ``swahr``."""
    swahr, plain = pair
    fast = prepare_for_inference(swahr, precision=precision, channels_last=True)
    assert type(fast.conv_scale_layers[0][1]) is nn.Identity  # BN folded into the 1x1 conv
    assert scale_map_channels(fast) == 17
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        got, want = network_forward(fast, x), network_forward(swahr, x)
    tol = 1e-4 if precision == "fp32" else 0.1
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape and g.dtype == torch.float32
        assert (g - w).abs().max() <= tol * max(1.0, w.abs().max().item())
    kwargs = {"input_size": 128, "precision": precision, "fold_bn": True, "detection_threshold": 0.05}
    a = Predictor(swahr, layout=coco_layout, device="cpu", **kwargs).run(image)
    b = Predictor(plain, layout=coco_layout, device="cpu", **kwargs).run(image)
    assert a.heatmaps.shape == b.heatmaps.shape
    assert (a.heatmaps - b.heatmaps).abs().max() <= tol * max(1.0, b.heatmaps.abs().max().item())


def test_project_checkpoint_evaluates_and_predicts(pair, coco_root, image, tmp_path) -> None:
    """A SWAHR last.pt of this project: its saved config rebuilds the SWAHR network (load_model, PoseEstimator)
    and the COCO evaluation runs on it."""
    from bottomup.build import evaluate_model

    swahr, _ = pair
    cfg = compose_train_config(
        ["experiment=swahr_w32", f"data.root={coco_root}", f"output_dir={tmp_path}", "test.input_size=128",
         *(f"model.{k}={list(v) if isinstance(v, tuple) else v}" for k, v in SMALL.items())]
    )  # fmt: skip
    path = save_checkpoint(
        {"model": swahr.state_dict(), "config": OmegaConf.to_yaml(cfg), "epoch": 1, "step": 1, "metrics": {}},
        tmp_path / "last.pt",
    )
    model, config, kind = load_model(path)
    assert kind == "project" and model.swahr and config.model.swahr
    estimator = PoseEstimator.from_checkpoint(path, device="cpu", detection_threshold=0.05)
    assert "HigherHRNet + SWAHR W16" in estimator.summary
    prediction = estimator(image)
    reference = run_pipeline(
        swahr, image, codec=estimator.codec, settings=TestSettings(input_size=128, flip_test=True)
    )  # the same pipeline on the network in hand
    np.testing.assert_allclose(prediction.keypoints, reference.keypoints)
    stats = evaluate_model(model, cfg, device="cpu", max_images=2, progress=False)
    assert 0.0 <= stats["AP"] <= 1.0


def test_exported_swahr_model_finds_the_same_people(pair, image, coco_layout, tmp_path) -> None:
    """``bottomup.export`` of a SWAHR network: the graph drops the scale maps as the torch path does, so ONNX Runtime
    finds the same people (flip test on)."""
    from bottomup.deploy.export import export_model
    from bottomup.deploy.runtime import DeployedPoseEstimator

    swahr, _ = pair
    estimator = PoseEstimator(
        swahr, layout=coco_layout, device="cpu", input_size=128, detection_threshold=0.05, flip_test=True
    )
    onnx = export_model(estimator, tmp_path / "swahr.onnx", exporter="torchscript")["model"]
    expected, got = estimator(image), DeployedPoseEstimator(onnx, threads=1)(image)
    assert len(expected) > 0 and len(got) == len(expected)
    np.testing.assert_allclose(got.keypoints[..., :2], expected.keypoints[..., :2], atol=0.5)
    np.testing.assert_allclose(got.scores, expected.scores, atol=1e-3)


def test_official_swahr_pth_loads_with_its_experiment(tmp_path, image) -> None:
    """An official SWAHR .pth (raw state_dict, official keys): experiment=swahr_w32 builds the network it fits;
    a HigherHRNet experiment is refused with a message naming model.swahr."""
    state = _randomized(HigherHRNet(width=32, swahr=True)).state_dict()
    path = tmp_path / "pose_higher_hrnet_w32_512.pth"
    torch.save(state, path)
    model, config, kind = load_model(path, experiment="swahr_w32")
    assert kind == "official" and model.swahr and config.test.detection_threshold == 0.12
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert describe_weights(state) == "W32, K=17, SWAHR"
    estimator = PoseEstimator.from_checkpoint(path, experiment="swahr_w32", device="cpu", input_size=128)
    assert estimator(image).keypoints.shape[1:] == (17, 3)
    with pytest.raises(RuntimeError, match=r"SWAHR checkpoint .*\(model.swahr=true"):
        load_model(path, experiment="higherhrnet_w32")


def test_fine_tuning_swahr_from_a_higherhrnet_checkpoint_starts_the_scale_heads_fresh(pair, tmp_path) -> None:
    swahr, plain = pair
    path = tmp_path / "higherhrnet.pth"
    torch.save(plain.state_dict(), path)
    fresh = HigherHRNet(**SMALL, swahr=True)
    report = load_initial_weights(fresh, path)
    assert report["reinitialised"] and all(k.startswith("conv_scale_layers.") for k in report["reinitialised"])
    with torch.no_grad():
        out = fresh.eval()(torch.randn(1, 3, 64, 64))
    assert all(torch.equal(o[:, :17], torch.zeros_like(o[:, :17])) for o in out)  # official zero start

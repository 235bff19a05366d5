"""MMPose 0.x checkpoints (bottomup.models.weights): the associative-embedding models of MMPose's model zoo
(HigherHRNet-W32 / W48 with ``AEHigherResolutionHead``, HRNet-W32 / W48 with ``AESimpleHead``, HigherHRNet-W32 on
CrowdPose) load strictly into this project's networks after their names are converted, through every entry point,
from files whose mmcv ``meta`` holds NumPy values, with the weights-only loader.

The fixtures ``tests/fixtures/mmpose_*.json`` are the key -> shape dumps of ``model.state_dict()`` of the detectors
that MMPose v0.29.0 builds from its configs (each file's header names the commit and config)."""

from __future__ import annotations

import functools
import io
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from test_model import _randomize
from torch import nn

from bottomup import build
from bottomup.engine.checkpoint import CheckpointError, load_checkpoint
from bottomup.models import HigherHRNet, load_official_checkpoint
from bottomup.models.weights import (
    MMPOSE_LAYOUT,
    OFFICIAL_LAYOUT,
    convert_mmpose_state_dict,
    describe_weights,
    is_mmpose_checkpoint,
    is_mmpose_state_dict,
    load_pretrained_backbone,
    load_weights_file,
    match_state_dict,
    read_architecture,
    unwrap_state_dict,
    weights_layout,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
#: fixture -> (experiment + overrides that build its network, what describe_weights says, MMPose config)
ZOO = {
    "higherhrnet_w32_coco": (
        ("higherhrnet_w32", []),
        "W32, K=17, MMPose 0.x layout",
        "coco/higherhrnet_w32_coco_512x512.py",
    ),
    "higherhrnet_w48_coco": (
        ("higherhrnet_w48", []),
        "W48, K=17, MMPose 0.x layout",
        "coco/higherhrnet_w48_coco_512x512.py",
    ),
    "hrnet_w32_ae_coco": (
        ("hrnet_w32_ae", []),
        "W32, 34 output channels, MMPose 0.x layout",
        "coco/hrnet_w32_coco_512x512.py",
    ),
    "hrnet_w48_ae_coco": (
        ("hrnet_w48_ae", []),
        "W48, 34 output channels, MMPose 0.x layout",
        "coco/hrnet_w48_coco_512x512.py",
    ),
    "higherhrnet_w32_crowdpose": (
        ("higherhrnet_w32", ["data=crowdpose"]),
        "W32, K=14, MMPose 0.x layout",
        "crowdpose/higherhrnet_w32_crowdpose_512x512.py",
    ),
}
#: An mmcv 1.x ``save_checkpoint`` meta, with the NumPy values an mmcv hook may leave in it.
META = {
    "mmcv_version": "1.7.0",
    "time": "Thu Sep  1 12:00:00 2022",
    "mmpose_version": "0.29.0",
    "config": "model = dict(type='AssociativeEmbedding', backbone=dict(type='HRNet', in_channels=3))\n",
    "CLASSES": None,
    "seed": 0,
    "exp_name": "higherhrnet_w32_coco_512x512.py",
    "epoch": 300,
    "iter": 1543800,
    "hook_msgs": {"best_score": np.float64(0.6705), "best_ckpt": "work_dirs/best_AP_epoch_300.pth"},
    "score_history": np.array([0.52, 0.61, 0.67]),
    "step": np.int64(300),
}


def _fixture(name: str) -> dict:
    return json.loads((FIXTURES / f"mmpose_{name}.json").read_text())


def _shapes(name: str) -> dict[str, torch.Tensor]:
    """The MMPose key -> shape layout of a fixture, as shape-only tensors."""
    return {k: torch.empty(s, device="meta") for k, s in _fixture(name)["state_dict"].items()}


@functools.cache
def _config(name: str):
    experiment, overrides = ZOO[name][0]
    return build.compose("train", overrides, experiment=experiment)


def _model(name: str, device: str = "meta") -> nn.Module:
    with torch.device(device):
        return build.build_model(_config(name).model, pretrained=False)


def _to_mmpose(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """This project's names -> MMPose 0.x names, as MMPose's AssociativeEmbedding saves them (the inverse of the
    conversion; checked against the fixtures in test_inverse_names_are_mmposes)."""
    single = not any(k.startswith("deconv_layers.") for k in state)
    out = {}
    for key, value in state.items():
        if single and key.startswith("final_layers.0."):
            out["keypoint_head.final_layer." + key.rsplit(".", 1)[1]] = value
        elif key.startswith(("final_layers.", "deconv_layers.")):
            out["keypoint_head." + key] = value
        else:
            out["backbone." + key] = value
    return out


def _slim(**kw) -> HigherHRNet:
    torch.manual_seed(0)
    return _randomize(HigherHRNet(width=8, stage_modules=(1, 1, 1), blocks_per_branch=1, stem_blocks=1, **kw)).eval()


def _slim_cfg(*overrides: str):
    slim = ["model.width=8", "model.stage_modules=[1,1,1]", "model.blocks_per_branch=1", "model.stem_blocks=1"]
    return build.compose("train", [*slim, *overrides], experiment="higherhrnet_w32")


# --------------------------------------------------------------------------------------- the zoo's layouts
@pytest.mark.parametrize("name", sorted(ZOO))
def test_fixture_is_mmposes_dump(name):
    doc = _fixture(name)
    assert doc["mmpose_version"] == "0.29.0" and len(doc["mmpose_commit"]) == 40
    assert doc["config"].endswith(ZOO[name][2])
    assert doc["num_keys"] == len(doc["state_dict"])
    assert all(k.startswith(("backbone.", "keypoint_head.")) for k in doc["state_dict"])


@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_layout_converts_to_the_experiments_network(name):
    """Every MMPose key lands on the key of the same position in this project's network of the experiment, with the
    same shape: nothing left over, nothing missing, the order kept (a rename only)."""
    mmpose = _shapes(name)
    assert is_mmpose_state_dict(mmpose) and is_mmpose_checkpoint({"meta": {}, "state_dict": mmpose})
    converted = unwrap_state_dict({"meta": META, "state_dict": mmpose})
    model = _model(name).state_dict()
    assert list(converted) == list(model)
    assert match_state_dict(converted, model).exact
    assert all(converted[k] is v for k, v in zip(converted, mmpose.values(), strict=True))  # same tensors
    arch = read_architecture(mmpose)  # read through the conversion
    assert arch.layout == MMPOSE_LAYOUT and read_architecture(converted).layout == OFFICIAL_LAYOUT
    model_cfg = OmegaConf.to_container(_config(name).model, resolve=True)
    assert all(arch.model_kwargs()[k] == model_cfg[k] for k in arch.model_kwargs())
    assert describe_weights(mmpose) == ZOO[name][1]
    assert describe_weights(converted, weights_layout({"state_dict": mmpose})) == ZOO[name][1]
    assert weights_layout({"meta": {}, "state_dict": mmpose}) == weights_layout(mmpose) == MMPOSE_LAYOUT


@pytest.mark.parametrize(("name", "official"), [("higherhrnet_w32_coco", "w32"), ("higherhrnet_w48_coco", "w48")])
def test_mmpose_names_are_the_official_higherhrnets_with_prefixes(name, official):
    """MMPose's HRNet + AEHigherResolutionHead keep the official HigherHRNet names (tests/fixtures/
    official_state_dict_w*.json, dumped from the official code), behind backbone. / keypoint_head."""
    theirs = _fixture(name)["state_dict"]
    ours = json.loads((FIXTURES / f"official_state_dict_{official}.json").read_text())["state_dict"]
    assert [k.split(".", 1)[1] for k in theirs] == list(ours)
    assert list(theirs.values()) == list(ours.values())
    heads = [k for k in theirs if k.startswith("keypoint_head.")]
    assert heads and all(k.startswith(("keypoint_head.final_layers.", "keypoint_head.deconv_layers.")) for k in heads)


@pytest.mark.parametrize("name", ["hrnet_w32_ae_coco", "hrnet_w48_ae_coco"])
def test_ae_simple_head_names_its_conv_final_layer(name):
    heads = {k: v for k, v in _fixture(name)["state_dict"].items() if k.startswith("keypoint_head.")}
    assert list(heads) == ["keypoint_head.final_layer.weight", "keypoint_head.final_layer.bias"]
    converted = convert_mmpose_state_dict(_shapes(name))
    assert list(converted)[-2:] == ["final_layers.0.weight", "final_layers.0.bias"]


@pytest.mark.parametrize("name", sorted(ZOO))
def test_inverse_names_are_mmposes(name):
    """The helper that writes MMPose files below writes MMPose's very names."""
    assert list(_to_mmpose(_model(name).state_dict())) == list(_fixture(name)["state_dict"])


# --------------------------------------------------------------------------------------- files of the zoo's layouts
def _random_state(model: nn.Module, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random values for every tensor of ``model.state_dict()`` (on CPU, in its order): He-scaled conv weights, BN
    weights ~1 and statistics near (0, 1), so that the outputs are O(1)."""
    generator = torch.Generator().manual_seed(seed)
    out = {}
    for key, ref in model.state_dict().items():
        shape = tuple(ref.shape)
        if ref.dtype == torch.long:  # num_batches_tracked
            out[key] = torch.randint(0, 1000, shape, generator=generator)
        elif len(shape) == 4:
            out[key] = torch.randn(shape, generator=generator) * (shape[0] / ref.numel()) ** 0.5
        elif key.endswith(("running_var", ".weight")):
            out[key] = torch.rand(shape, generator=generator) + 0.5
        else:
            out[key] = torch.randn(shape, generator=generator) * 0.1
    return out


def _empty(name: str) -> nn.Module:
    """The experiment's network on CPU, memory not initialised (every tensor is loaded next)."""
    return _model(name).to_empty(device="cpu")


@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_file_loads_strictly_and_computes_what_the_official_layout_does(name, tmp_path):
    """Random tensors with a fixture's MMPose keys and shapes, saved as mmcv does ({"meta", "state_dict"}, NumPy
    values in meta): load_official_checkpoint loads the file strictly into the experiment's network, and the
    network computes exactly what the same tensors under the official names compute."""
    source = _empty(name)
    official = _random_state(source)
    source.load_state_dict(official, strict=True)
    shapes = _fixture(name)["state_dict"]
    state = dict(zip(shapes, official.values(), strict=True))  # the fixture's names, in its order
    assert all(list(v.shape) == shapes[k] for k, v in state.items())
    path = tmp_path / f"{name}.pth"
    torch.save({"meta": META, "state_dict": state}, path)

    model = load_official_checkpoint(_empty(name), path)
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in official.items())
    x = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        got, want = model.eval()(x), source.eval()(x)
    assert len(got) == len(want) == len(source.strides)
    for g, w in zip(got, want, strict=True):
        assert torch.isfinite(g).all() and g.abs().max() > 0.01  # not a degenerate output
        torch.testing.assert_close(g, w, rtol=0, atol=0)


def test_meta_with_numpy_values_loads_weights_only_and_nothing_more(tmp_path):
    """An mmcv meta's NumPy numbers and arrays load through the weights-only reader (in a scoped allow-list that is
    restored afterwards); a plain weights-only load refuses them, and anything else stays refused."""
    state = _to_mmpose(_slim().state_dict())
    path = tmp_path / "mmpose.pth"
    torch.save({"meta": META, "state_dict": state, "optimizer": {"state": {}, "param_groups": []}}, path)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)  # why the allow-list is needed
    before = list(torch.serialization.get_safe_globals())
    loaded = load_weights_file(path)
    # scoped to the load: no NumPy type stays allowed (torch may register globals of its own on a first load, e.g.
    # nested tensors, so only what the loader adds is compared)
    added = [g for g in torch.serialization.get_safe_globals() if g not in before]
    assert not [g for g in added if "numpy" in repr(g)], added
    assert loaded["meta"]["hook_msgs"]["best_score"] == np.float64(0.6705)
    assert isinstance(loaded["meta"]["hook_msgs"]["best_score"], np.float64)
    np.testing.assert_array_equal(loaded["meta"]["score_history"], META["score_history"])
    assert loaded["meta"]["step"] == 300 and loaded["meta"]["config"] == META["config"]
    assert load_checkpoint(path)["meta"]["time"] == META["time"]  # the engine's reader too

    refused = {"ObjectDType": np.array([{"a": 1}], dtype=object), "StrDType": np.array(["x"])}
    refused |= {"DateTime64DType": np.datetime64("2022-09-01"), "_io.BytesIO": io.BytesIO(b"code")}
    for what, other in refused.items():
        bad = tmp_path / "bad.pth"
        torch.save({"meta": {"x": other}, "state_dict": state}, bad)
        with pytest.raises(
            CheckpointError, match=rf"cannot load checkpoint .*bad\.pth: it holds Python objects .*{what}"
        ):
            load_checkpoint(bad)


def test_numpy_1_names_load(tmp_path):
    """Files of the MMPose 0.x era were pickled with NumPy 1, whose scalars and arrays are rebuilt by
    ``numpy.core.multiarray.*`` (NumPy 2: ``numpy._core.multiarray.*``): both names are allowed."""
    buffer = io.BytesIO()
    torch.save(
        {"meta": META, "state_dict": _to_mmpose(_slim().state_dict())}, buffer, _use_new_zipfile_serialization=False
    )
    data = buffer.getvalue()
    if b"numpy._core.multiarray" in data:
        data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert b"numpy.core.multiarray\nscalar" in data and b"numpy._core" not in data
    path = tmp_path / "numpy1.pth"
    path.write_bytes(data)
    loaded = load_weights_file(path)
    assert loaded["meta"]["hook_msgs"]["best_score"] == np.float64(0.6705)
    assert load_official_checkpoint(_slim(), path) is not None


# --------------------------------------------------------------------------------------- every entry point
@pytest.fixture
def slim_file(tmp_path) -> tuple[Path, HigherHRNet]:
    source = _slim()
    path = tmp_path / "mmpose_w8.pth"
    torch.save({"meta": META, "state_dict": _to_mmpose(source.state_dict())}, path)
    return path, source


def _same_weights(model: nn.Module, source: nn.Module) -> bool:
    theirs = source.state_dict()
    return all(torch.equal(v, theirs[k]) for k, v in model.state_dict().items())


def test_load_model_builds_from_the_given_config(slim_file):
    path, source = slim_file
    info: dict = {}
    model, _, kind = build.load_model(path, cfg=_slim_cfg(), info=info)
    assert kind == "official" and _same_weights(model, source)
    assert "MMPose 0.x weights (no metrics stored)" in info["summary"]


def test_load_model_without_an_experiment_names_the_layout_and_the_experiments(tmp_path):
    """A file without a config needs an experiment; the message says it is an MMPose file and which experiments
    build its network (here read from the file's shapes: MMPose's HRNet-W32 AE)."""
    path = tmp_path / "hrnet_w32_ae.pth"
    torch.save({"meta": META, "state_dict": _shapes("hrnet_w32_ae_coco")}, path)  # shapes only (meta tensors)
    with pytest.raises(build.ExperimentRequiredError) as exc:
        build.load_model(path)
    text = str(exc.value)
    assert f"checkpoint {path} is an MMPose 0.x checkpoint (W32, 34 output channels, MMPose 0.x layout)" in text
    assert "e.g. experiment='hrnet_w32_ae' (the experiment of its network: hrnet_w32_ae)" in text


def test_w48_file_into_a_w32_experiment_names_both_widths(tmp_path):
    path = tmp_path / "higherhrnet_w48_coco_512x512.pth"
    torch.save({"meta": META, "state_dict": _shapes("higherhrnet_w48_coco")}, path)  # shapes only (meta tensors)
    with pytest.raises(RuntimeError) as exc:
        build.load_model(path, experiment="higherhrnet_w32")
    first = str(exc.value).splitlines()[0]
    assert f"Checkpoint {path} does not match HigherHRNet(width=32, num_keypoints=17" in first
    assert "It is an MMPose 0.x checkpoint (its backbone. / keypoint_head. names converted)" in first
    assert "The checkpoint has width=48, num_keypoints=17, 34 stride-4 output channels, strides=[4, 2]" in first
    assert "Build the model as the file's network: model.width=48" in first
    assert "Pass the experiments of its network: higherhrnet_w48, higherhrnet_w48_640." in first

    with torch.device("meta"):
        w32 = HigherHRNet(width=32)
    with pytest.raises(
        CheckpointError, match=r"the file is W48, K=17, MMPose 0\.x layout, the config builds W32, K=17"
    ):
        build.load_initial_weights(w32, path)


def test_single_output_file_into_higherhrnet_says_strides(tmp_path):
    path = tmp_path / "hrnet_w32.pth"
    torch.save({"meta": META, "state_dict": _shapes("hrnet_w32_ae_coco")}, path)
    with torch.device("meta"):
        model = HigherHRNet(width=32)
    with pytest.raises(
        RuntimeError, match=r"strides=\[4\]\. Build the model as the file's network: model\.strides=\[4\]"
    ):
        load_official_checkpoint(model, path)


def test_fine_tune_from_an_mmpose_file(slim_file):
    """checkpoint= (fine-tuning): every tensor loads; on a data set with other keypoints the head starts fresh."""
    path, source = slim_file
    model = build.build_model(_slim_cfg().model, pretrained=False)
    split = build.load_initial_weights(model, path)
    assert not split["reinitialised"] and not split["ignored"] and _same_weights(model, source)

    other = build.build_model(_slim_cfg("data=crowdpose").model, pretrained=False)
    split = build.load_initial_weights(other, path)
    assert split["reinitialised"] and all(
        k.startswith(("final_layers.", "deconv_layers.0.0.0.")) for k in split["reinitialised"]
    )
    backbone = other.backbone_state_keys()
    assert all(torch.equal(other.state_dict()[k], source.state_dict()[k]) for k in backbone)


def test_pretrained_backbone_from_an_mmpose_file(slim_file):
    """model.pretrained: the backbone part of an MMPose file initialises the backbone; its head is skipped."""
    path, source = slim_file
    model = HigherHRNet(width=8, stage_modules=(1, 1, 1), blocks_per_branch=1, stem_blocks=1, num_keypoints=5)
    loaded, skipped = load_pretrained_backbone(model, path)
    assert loaded == len(model.backbone_state_keys()) and skipped > 0
    assert all(torch.equal(model.state_dict()[k], source.state_dict()[k]) for k in model.backbone_state_keys())


def test_single_output_file_loads_into_the_ae_network(tmp_path):
    """MMPose's AESimpleHead (final_layer) into the 1/4-only network (model.strides=[4])."""
    source = _slim(strides=(4,))
    path = tmp_path / "ae.pth"
    torch.save({"meta": META, "state_dict": _to_mmpose(source.state_dict())}, path)
    assert "keypoint_head.final_layer.weight" in load_weights_file(path)["state_dict"]
    model, _, _ = build.load_model(path, cfg=_slim_cfg("model.strides=[4]", "loss.heatmap_weights=[1.0]"))
    assert _same_weights(model, source)


def test_other_heads_stay_unexpected():
    """Head keys the conversion does not know (an AESimpleHead with deconvolutions) keep their names, and loading
    reports them instead of loading them somewhere."""
    state = {"backbone.conv1.weight": torch.zeros(1), "keypoint_head.final_layer.weight": torch.zeros(1)}
    state |= {"keypoint_head.deconv_layers.0.weight": torch.zeros(1), "keypoint_head.final_layer.bias": torch.zeros(1)}
    assert list(convert_mmpose_state_dict(state)) == [
        "conv1.weight",
        "final_layers.0.weight",
        "keypoint_head.deconv_layers.0.weight",
        "final_layers.0.bias",
    ]
    assert not is_mmpose_state_dict({"keypoint_head.final_layer.weight": torch.zeros(1)})  # no backbone
    assert not is_mmpose_state_dict({"backbone.conv1.weight": torch.zeros(1), "conv2.weight": torch.zeros(1)})
    assert weights_layout({"model": state, "config": ""}) == OFFICIAL_LAYOUT  # a project checkpoint

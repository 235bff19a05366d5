"""Checkpoints -> state dicts (bottomup.models.weights): unwrapping, the official and project layouts, the
architecture read from the tensors, matching a state dict against a model."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from bottomup import build
from bottomup.engine.checkpoint import CheckpointError
from bottomup.models import HigherHRNet, load_official_checkpoint
from bottomup.models.weights import (
    Architecture,
    describe_weights,
    has_scale_heads,
    holds_weights,
    is_project_checkpoint,
    load_pretrained_backbone,
    match_for_finetuning,
    match_state_dict,
    mismatch_summary,
    read_architecture,
    strip_wrapper_prefixes,
    unwrap_state_dict,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
ARCH_KEYS = (
    "width",
    "num_keypoints",
    "strides",
    "tag_dim",
    "num_deconv_blocks",
    "stage_modules",
    "blocks_per_branch",
    "stem_blocks",
    "stem_channels",
    "swahr",
)
#: experiment -> overrides; the slim W16 is the quickstart's earlier network (published stem and 1/2 branch), spelled out.
CONFIGS = {
    "w32": ("higherhrnet_w32", []),
    "w48": ("higherhrnet_w48_640", []),
    "slim_w16": (
        "higherhrnet_w32",
        ["model.width=16", "model.stage_modules=[1,1,1]", "model.blocks_per_branch=2", "model.stem_blocks=1"],
    ),
    "quickstart": ("quickstart", []),
    "swahr_w32": ("swahr_w32", []),
    "swahr_w48_crowdpose": ("swahr_w48_640_crowdpose", []),
}


def _model_config(name: str) -> dict:
    experiment, overrides = CONFIGS[name]
    cfg = build.compose("train", overrides, experiment=experiment)
    return OmegaConf.to_container(cfg.model, resolve=True)


def _built(name: str, device: str = "meta") -> tuple[torch.nn.Module, dict]:
    """A network built by ``build.build_model`` from the experiment's config (on ``meta``: shapes only)."""
    model_cfg = _model_config(name)
    with torch.device(device):
        model = build.build_model(OmegaConf.create(model_cfg), pretrained=False)
    return model, model_cfg


def _fixture_state(path: Path) -> dict[str, torch.Tensor]:
    """The key -> shape layout of an official checkpoint (fixture), as shape-only tensors."""
    shapes = json.loads(path.read_text())["state_dict"]
    return {k: torch.empty(s, device="meta") for k, s in shapes.items()}


def _slim(width: int = 8, **kw) -> HigherHRNet:
    return HigherHRNet(width=width, stage_modules=(1, 1, 1), blocks_per_branch=1, stem_blocks=1, **kw)


# --------------------------------------------------------------------------------------- architecture
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_architecture_read_from_tensors_is_the_config_that_built_them(name):
    model, model_cfg = _built(name)
    arch = read_architecture(model.state_dict())
    assert isinstance(arch, Architecture)
    assert arch.model_kwargs() == {k: model_cfg[k] for k in ARCH_KEYS}
    k = model_cfg["num_keypoints"]
    assert arch.out_channels == (k + k * model_cfg["tag_dim"], k)


def test_architecture_of_the_single_output_baseline():
    """bottom-up HRNet (strides [4]): no deconvolution; K and tag_dim from the one output (tag_dim 1)."""
    model = HigherHRNet(width=8, strides=(4,), num_keypoints=5)
    arch = read_architecture(model.state_dict())
    assert arch is not None
    assert (arch.strides, arch.out_channels, arch.num_keypoints, arch.tag_dim) == ((4,), (10,), 5, 1)
    assert arch.num_deconv_blocks is None and "num_deconv_blocks" not in arch.model_kwargs()
    assert describe_weights(model.state_dict()) == "W8, 10 output channels"


def test_architecture_rebuilds_the_same_layout():
    model = _slim(width=16, num_keypoints=5, tag_dim=2, num_deconv_blocks=1, swahr=True)
    arch = read_architecture(model.state_dict())
    again = HigherHRNet(**arch.model_kwargs())
    assert [(k, v.shape) for k, v in again.state_dict().items()] == [
        (k, v.shape) for k, v in model.state_dict().items()
    ]
    assert (arch.num_keypoints, arch.tag_dim, arch.num_deconv_blocks, arch.swahr) == (5, 2, 1, True)


@pytest.mark.parametrize(
    ("fixture", "described", "kwargs"),
    [
        ("official_state_dict_w32.json", "W32, K=17", {"width": 32, "num_keypoints": 17, "swahr": False}),
        ("official_state_dict_w48.json", "W48, K=17", {"width": 48, "num_keypoints": 17, "swahr": False}),
        ("official_swahr_state_dict_w32.json", "W32, K=17, SWAHR", {"width": 32, "num_keypoints": 17, "swahr": True}),
        (
            "official_swahr_state_dict_w48_crowdpose.json",
            "W48, K=14, SWAHR",
            {"width": 48, "num_keypoints": 14, "swahr": True},
        ),
    ],
)
def test_official_layouts(fixture, described, kwargs):
    """The official HigherHRNet / SWAHR key -> shape layouts read as the published architecture, and a network
    built by build.build_model with that architecture has exactly the layout (names, shapes, order)."""
    state = _fixture_state(FIXTURES / fixture)
    arch = read_architecture(state)
    published = {"strides": [4, 2], "tag_dim": 1, "num_deconv_blocks": 4, "stage_modules": [1, 4, 3]}
    published |= {"blocks_per_branch": 4, "stem_blocks": 4, "stem_channels": 64}
    assert arch.model_kwargs() == {**published, **kwargs}
    assert describe_weights(state) == described
    assert has_scale_heads(state) is kwargs["swahr"]
    cfg = OmegaConf.create({"_target_": "bottomup.models.HigherHRNet", **arch.model_kwargs()})
    with torch.device("meta"):
        model = build.build_model(cfg, pretrained=False)
    assert [(k, tuple(v.shape)) for k, v in model.state_dict().items()] == [
        (k, tuple(v.shape)) for k, v in state.items()
    ]
    assert match_state_dict(state, model.state_dict()).exact


def test_not_a_higherhrnet():
    assert read_architecture({"classifier.weight": torch.zeros(10, 4)}) is None
    assert read_architecture({"transition1.0.0.weight": torch.zeros(32, 256, 3, 3)}) is None
    assert describe_weights({}) == "not a HigherHRNet"


# --------------------------------------------------------------------------------------- unwrapping
def _wrappings(state: dict) -> dict[str, object]:
    return {
        "raw": dict(state),
        "module": {f"module.{k}": v for k, v in state.items()},
        "_orig_mod": {f"_orig_mod.{k}": v for k, v in state.items()},
        "module._orig_mod": {f"module._orig_mod.{k}": v for k, v in state.items()},
        "_orig_mod.module": {f"_orig_mod.module.{k}": v for k, v in state.items()},
        "state_dict": {"epoch": 300, "model": "pose_higher_hrnet", "state_dict": dict(state)},
        "state_dict+module": {"state_dict": {f"module.{k}": v for k, v in state.items()}, "best_perf": 0.7},
        "state_dict+_orig_mod": {"state_dict": {f"_orig_mod.{k}": v for k, v in state.items()}},
        "project": {"model": dict(state), "config": "model: {}", "epoch": 3},
        "project+module": {"model": {f"module.{k}": v for k, v in state.items()}, "epoch": 3},
    }


def test_wrappers_and_prefixes_unwrap_the_same():
    state = _slim().state_dict()
    for how, obj in _wrappings(state).items():
        got = unwrap_state_dict(obj)
        assert list(got) == list(state), how
        assert all(got[k] is state[k] for k in state), how
        assert holds_weights(obj), how
        assert build.checkpoint_state_dict(obj).keys() == state.keys(), how
    assert is_project_checkpoint(_wrappings(state)["project"])
    assert not is_project_checkpoint(_wrappings(state)["state_dict"])  # "model" is a name there, not weights


def test_unwrap_keeps_partial_prefixes_and_copies():
    state = {"module.a": torch.zeros(1), "b": torch.ones(1)}
    assert list(strip_wrapper_prefixes(state)) == ["module.a", "b"]
    out = unwrap_state_dict(state)
    assert out == state and out is not state
    assert unwrap_state_dict({}) == {}


def test_what_holds_no_weights():
    for obj in ({}, {"epoch": 3}, {"model": {"a": torch.zeros(1)}}, {"a": torch.zeros(1), "b": 2}, [torch.zeros(1)]):
        assert not holds_weights(obj), obj
    with pytest.raises(CheckpointError, match=r"checkpoint x\.pt holds no weights"):
        build.checkpoint_state_dict({"epoch": 3}, "x.pt")
    with pytest.raises(ValueError, match="Expected a state_dict .* got list"):
        unwrap_state_dict([torch.zeros(1)])


def test_built_model_round_trips_through_every_wrapping(tmp_path):
    """The weights of a build.build_model network load back strictly from every wrapping, in a file or not."""
    torch.manual_seed(0)
    source, model_cfg = _built("slim_w16", device="cpu")
    state = source.state_dict()
    for i, (how, obj) in enumerate(_wrappings(state).items()):
        target = build.build_model(OmegaConf.create(model_cfg), pretrained=False)
        if i % 2:
            path = tmp_path / f"{i}.pth"
            torch.save(obj, path)
            obj = str(path)
        assert load_official_checkpoint(target, obj) is target
        loaded = target.state_dict()
        assert all(torch.equal(loaded[k], v) for k, v in state.items()), how


# --------------------------------------------------------------------------------------- matching
def test_match_state_dict_by_name_and_shape():
    w8, w16 = _slim(8).state_dict(), _slim(16).state_dict()
    match = match_state_dict(w8, w16)
    assert match.fits and not match.missing and not match.unexpected and not match.exact
    assert match.mismatched["transition1.0.0.weight"] == ((8, 256, 3, 3), (16, 256, 3, 3))
    assert list(match.mismatched) == [k for k in w16 if k in match.mismatched]  # model order
    assert set(match.fits) | set(match.mismatched) == set(w16)

    longer = HigherHRNet(width=8, stage_modules=(1, 1, 1), blocks_per_branch=1, stem_blocks=2).state_dict()
    match = match_state_dict(w8, longer)
    assert match.missing == [k for k in longer if k.startswith("layer1.1.")]
    assert match.unfit == match.missing and not match.mismatched
    assert match_state_dict(longer, w8).unexpected == match.missing


def test_match_for_finetuning_keeps_other_heads_fresh():
    k17, k5 = _slim(8).state_dict(), _slim(8, num_keypoints=5, swahr=True).state_dict()
    split = match_for_finetuning(k17, k5)
    assert not split["unfit"] and not split["ignored"]
    assert all(
        k.startswith(("final_layers.", "deconv_layers.0.0.0.", "conv_scale_layers.")) for k in split["reinitialised"]
    )
    assert any(k.startswith("conv_scale_layers.") for k in split["reinitialised"])  # absent from the file
    assert set(split["loaded"]) | set(split["reinitialised"]) == set(k5)

    other_width = match_for_finetuning(_slim(16).state_dict(), k17)
    assert "transition1.0.0.weight: (16, 256, 3, 3) in the file, (8, 256, 3, 3) in the model" in other_width["unfit"]


def test_mismatch_summary_of_load_state_dict():
    model = _slim(16)
    with pytest.raises(RuntimeError) as exc:
        model.load_state_dict(_slim(8).state_dict(), strict=True)
    summary = mismatch_summary(exc.value)
    assert re.fullmatch(
        r"\d+ tensors of other shapes \(e\.g\. [\w.]+: torch\.Size\(.*\) in the file, .* in the model\)", summary
    )
    longer = HigherHRNet(width=8, stage_modules=(1, 1, 1), blocks_per_branch=1, stem_blocks=2)
    with pytest.raises(RuntimeError) as exc:
        longer.load_state_dict(_slim(8).state_dict(), strict=True)
    missing = match_state_dict(_slim(8).state_dict(), longer.state_dict()).missing
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]  # torch's BatchNorm fills those in
    assert mismatch_summary(exc.value) == f"{len(missing)} missing keys (e.g. {missing[0]})"
    assert mismatch_summary(RuntimeError("other\nlines")) == "other"


def test_official_checkpoint_message_names_the_files_architecture():
    state = _fixture_state(FIXTURES / "official_state_dict_w32.json")
    with torch.device("meta"):
        model = HigherHRNet(width=48)
    with pytest.raises(RuntimeError, match=r"The checkpoint has width=32, num_keypoints=17, 34 stride-4 output"):
        load_official_checkpoint(model, state)


def test_pretrained_backbone_accepts_wrappers(tmp_path):
    torch.manual_seed(0)
    source = _slim(8)
    backbone = {k: v for k, v in source.state_dict().items() if k in source.backbone_state_keys()}
    path = tmp_path / "hrnet_w8.pth"
    torch.save({"state_dict": {f"_orig_mod.{k}": v for k, v in backbone.items()}}, path)
    model = _slim(8)
    assert load_pretrained_backbone(model, path) == (len(backbone), 0)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in backbone.items())

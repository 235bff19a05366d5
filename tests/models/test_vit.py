"""ViTPose backbones under the associative-embedding head (bottomup.models.vit, ViT loading in bottomup.models.weights).

The fixtures ``tests/fixtures/vitpose_*`` were dumped from the official ViTPose ``ViT`` (see tests/fixtures/README.md):
key -> shape for S / B / L / H, and for ViT-S with the weights of :func:`fixed_tensor` the 256 x 192 output and the
official ``get_abs_pos`` resize to the 512 x 384 grid."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bottomup.models import ViTPoseAE
from bottomup.models.fast import conv_bn_pairs, prepare_for_inference
from bottomup.models.vit import VIT_SIZES, VisionTransformer, resize_pos_embed, token_grid
from bottomup.models.weights import (
    _VIT_NAMES,
    describe_weights,
    is_mmpose_state_dict,
    is_vit_state_dict,
    load_official_checkpoint,
    load_vit_pretrained,
    unwrap_state_dict,
    vit_backbone_state,
    weights_layout,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
K = 17
_TINY = {"arch": "custom", "embed_dim": 32, "depth": 2, "num_heads": 2, "neck_channels": 16, "num_deconv_blocks": 1}


def fixed_tensor(key: str, shape: tuple[int, ...]) -> np.ndarray:
    """The weights both the dump of the official ViT and this test use: NumPy ``default_rng`` seeded by the
    SHA-256 of the key; LayerNorm weights ``1 + 0.1 z``, ``pos_embed`` ``0.5 z``, everything else ``0.02 z``."""
    seed = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little")
    z = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    if key.endswith(".weight") and "norm" in key.rsplit(".", 2)[-2]:
        return 1.0 + 0.1 * z
    if key == "pos_embed":
        return 0.5 * z
    return 0.02 * z


def _backbone(size: str, device: str = "cpu") -> VisionTransformer:
    s = VIT_SIZES[size]
    with torch.device(device):
        return VisionTransformer(s.embed_dim, s.depth, s.num_heads, drop_path_rate=s.drop_path_rate)


@pytest.fixture(scope="module")
def official_dump() -> dict[str, np.ndarray]:
    with np.load(FIXTURES / "vitpose_small_output.npz") as data:
        return {k: data[k] for k in data.files}


@pytest.mark.parametrize("size", list(VIT_SIZES))
def test_backbone_state_dict_equals_official(size):
    """Key -> shape of our backbone == the official ViT's (ViTPose_<size>_coco_256x192), in the same order."""
    ref = json.loads((FIXTURES / f"vitpose_backbone_{size}.json").read_text())
    model = _backbone(size, "meta")
    ours = [[k, list(v.shape)] for k, v in model.state_dict().items()]
    assert ours == ref["state_dict"]
    assert sum(v.numel() for v in model.state_dict().values()) == ref["num_parameters"]
    s = VIT_SIZES[size]
    assert (s.embed_dim, s.depth, s.num_heads) == (ref["embed_dim"], ref["depth"], ref["num_heads"])


def test_backbone_output_equals_official(official_dump):
    """ViT-S with the fixed weights at 256 x 192, fp32, eval: our output == the official ViT's within 1e-5."""
    model = _backbone("small").eval()
    with torch.no_grad():
        for key, value in model.state_dict().items():
            value.copy_(torch.from_numpy(fixed_tensor(key, tuple(value.shape))))
        image = np.random.default_rng(0).integers(0, 256, (1, 3, 256, 192), dtype=np.uint8)  # the dump's input
        x = (torch.from_numpy(image).float() - 127.5) / 64.0
        y = model(x)
    expected = torch.from_numpy(official_dump["output"])
    assert y.shape == expected.shape == (1, 384, 16, 12)
    assert (y - expected).abs().max().item() < 1e-5


def test_pos_embed_resize_equals_official_get_abs_pos(official_dump):
    """At a bottom-up size (512 x 384: a 32 x 24 grid) the position embeddings are the official ``get_abs_pos``
    bicubic resize of the stored 16 x 12 grid, class slot added to every token (as the official forward adds it)."""
    pos = torch.from_numpy(fixed_tensor("pos_embed", (1, 16 * 12 + 1, 384)))[..., :16]
    ours = resize_pos_embed(pos, (16, 12), token_grid(512, 384))
    expected = torch.from_numpy(official_dump["pos_embed_512x384"])
    assert ours.shape == expected.shape == (1, 32 * 24, 16)
    assert (ours - expected).abs().max().item() < 1e-6
    # the stored grid itself: no resize, slot 0 added (official forward at 256 x 192)
    assert torch.equal(resize_pos_embed(pos, (16, 12), (16, 12)), pos[:, 1:] + pos[:, :1])


def test_backbone_runs_at_any_multiple_of_16():
    model = VisionTransformer(embed_dim=16, depth=1, num_heads=2).eval()
    with torch.no_grad():
        for h, w in ((512, 384), (256, 192), (320, 448), (48, 80)):
            assert model(torch.zeros(1, 3, h, w)).shape == (1, 16, h // 16, w // 16)
            assert token_grid(h, w) == (h // 16, w // 16)


def test_ae_model_parameter_names():
    """The backbone's keys under ``backbone.`` (ViTPose's names, on which layer decay keys), the rest in the neck
    and the HigherHRNet head lists."""
    with torch.device("meta"):
        model = ViTPoseAE("base", swahr=True)
    ref = json.loads((FIXTURES / "vitpose_backbone_base.json").read_text())
    keys = list(model.state_dict())
    assert [k for k in keys if k.startswith("backbone.")] == ["backbone." + k for k, _ in ref["state_dict"]]
    prefixes = ("backbone.", "neck.", "final_layers.", "deconv_layers.", "conv_scale_layers.")
    assert all(k.startswith(prefixes) for k in keys)
    assert model.backbone_state_keys() == ["backbone." + k for k, _ in ref["state_dict"]]
    assert model.strides == (4, 2) and model.out_channels == (3 * K, 2 * K) and model.swahr
    assert model.backbone.blocks[-1].drop_path.p == pytest.approx(0.3)
    assert model.neck[0].weight.shape == (768, 256, 4, 4) and model.neck[3].weight.shape == (256, 256, 4, 4)


@pytest.mark.parametrize("strides", [(4,), (4, 2)])
@pytest.mark.parametrize("neck", ["classic", "simple"])
@pytest.mark.parametrize("swahr", [False, True])
def test_outputs_layout(strides, neck, swahr):
    """Outputs as HigherHRNet's: stride 4 ``[scales K (SWAHR), heatmaps K, tags K * tag_dim]``, stride 2
    ``[scales K (SWAHR), heatmaps K]``, each ``H / s x W / s``."""
    torch.manual_seed(0)
    model = ViTPoseAE(**_TINY, strides=strides, neck=neck, swahr=swahr, tag_dim=2).eval()
    extra = K if swahr else 0
    expected = [extra + K + 2 * K] + [extra + K] * (len(strides) - 1)
    assert model.out_channels == tuple(expected)
    assert model.num_keypoints == K and model.tag_dim == 2 and model.swahr is swahr
    with torch.no_grad():
        outputs = model(torch.randn(2, 3, 64, 96))
    assert [tuple(o.shape) for o in outputs] == [
        (2, c, 64 // s, 96 // s) for c, s in zip(expected, strides, strict=True)
    ]
    if swahr:  # the official SWAHR initialisation: scale maps start at 0
        assert all(o[:, :K].abs().max() == 0 for o in outputs)
    assert (model.final_layers[0].kernel_size == (1, 1)) is (neck == "classic")


def test_training_step_and_drop_path():
    model = ViTPoseAE(**_TINY, drop_path_rate=0.5).train()
    outputs = model(torch.randn(2, 3, 32, 32))
    sum(o.square().mean() for o in outputs).backward()
    assert model.backbone.pos_embed.grad is not None and model.backbone.patch_embed.proj.weight.grad is not None


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"arch": "giant"}, "model.arch"),
        ({"arch": "custom", "embed_dim": 32}, "model.arch=custom needs model.depth, model.num_heads"),
        ({**_TINY, "neck": "fancy"}, "model.neck"),
        ({**_TINY, "strides": (2,)}, "model.strides"),
        ({**_TINY, "num_keypoints": 0}, "model.num_keypoints"),
        ({**_TINY, "num_heads": 3}, "model.num_heads"),
        ({**_TINY, "drop_path_rate": 1.5}, "model.drop_path_rate"),
        ({**_TINY, "img_size": (8, 8)}, "model.img_size"),
    ],
)
def test_bad_arguments(kwargs, key):
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        ViTPoseAE(**kwargs)


def test_input_must_be_a_multiple_of_16():
    model = ViTPoseAE(**_TINY).eval()
    with pytest.raises(ValueError, match="multiples of 16"):
        model(torch.zeros(1, 3, 72, 64))


# --------------------------------------------------------------------------------------- checkpoints
def _numbered(shapes: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    """Tensor ``i`` filled with ``i + 1``: which file tensor landed where is visible in the model. Each is one
    number expanded to its shape (saved as one element with zero strides), so a ViT-B file is a few kB."""
    return {k: torch.tensor(float(i + 1)).expand(s) for i, (k, s) in enumerate(shapes.items())}


@pytest.fixture(scope="module")
def base_model() -> ViTPoseAE:
    with torch.device("meta"):
        model = ViTPoseAE("base")
    return model.to_empty(device="cpu")


def _official_backbone_shapes(size: str) -> dict[str, tuple[int, ...]]:
    ref = json.loads((FIXTURES / f"vitpose_backbone_{size}.json").read_text())
    return {k: tuple(s) for k, s in ref["state_dict"]}


def test_load_vitpose_release_checkpoint(tmp_path, base_model, caplog):
    """A ViTPose-B release (mmcv ``{"meta", "state_dict"}``: the official backbone under ``backbone.`` and the
    top-down ``keypoint_head.``): the 149 backbone tensors load as they are, the 14 head tensors are skipped."""
    shapes = {"backbone." + k: s for k, s in _official_backbone_shapes("base").items()}
    head = {"keypoint_head.deconv_layers.0.weight": (768, 256, 4, 4)}
    for i, c in ((1, 256), (4, 256)):
        head |= {
            f"keypoint_head.deconv_layers.{i}.{n}": (c,) for n in ("weight", "bias", "running_mean", "running_var")
        }
        head[f"keypoint_head.deconv_layers.{i}.num_batches_tracked"] = ()
        if i == 1:
            head["keypoint_head.deconv_layers.3.weight"] = (256, 256, 4, 4)
    head |= {"keypoint_head.final_layer.weight": (17, 256, 1, 1), "keypoint_head.final_layer.bias": (17,)}
    state = _numbered(shapes | head)
    path = tmp_path / "vitpose-b.pth"
    torch.save({"meta": {"epoch": 210, "mmcv_version": "1.3.9"}, "state_dict": state}, path)

    assert is_vit_state_dict(state) and not is_mmpose_state_dict(state)
    assert list(unwrap_state_dict(state)) == list(state)  # not renamed as an MMPose HigherHRNet
    with caplog.at_level(logging.INFO, logger="bottomup.models.hrnet"):
        loaded, skipped = load_vit_pretrained(base_model, path)
    assert (loaded, skipped) == (149, 14)
    assert "Loaded 149 ViT backbone tensors" in caplog.text and "(ViTPose layout)" in caplog.text
    assert "skipped 14: 14 keypoint_head.* tensors (ViTPose's top-down head, not this network's)" in caplog.text
    ours = base_model.state_dict()
    assert all(torch.equal(ours[k], state[k]) for k in shapes)


def test_load_mae_checkpoint(tmp_path, base_model, caplog):
    """An MAE ViT-B pre-training file (``{"model": ...}``, 14 x 14 grid at 224 / 16, ``cls_token``, ``norm``):
    ``pos_embed`` resized bicubically to 16 x 12, class slot kept; ``cls_token`` and ``norm.*`` skipped (ViTPose
    loads them nowhere: ``last_norm`` keeps its initialisation)."""
    shapes = {"cls_token": (1, 1, 768), "pos_embed": (1, 197, 768)}
    shapes |= {k: s for k, s in _official_backbone_shapes("base").items() if k not in ("pos_embed",)}
    shapes = {k: s for k, s in shapes.items() if not k.startswith("last_norm")}
    shapes |= {"norm.weight": (768,), "norm.bias": (768,)}
    state = _numbered(shapes)
    state["pos_embed"] = torch.randn(1, 197, 768)
    path = tmp_path / "mae_pretrain_vit_base.pth"
    torch.save({"model": state}, path)
    with torch.no_grad():
        base_model.backbone.last_norm.weight.fill_(1.0)

    with caplog.at_level(logging.INFO, logger="bottomup.models.hrnet"):
        loaded, skipped = base_model.load_pretrained_backbone(path)
    assert (loaded, skipped) == (147, 3)
    assert (
        "Loaded 147 ViT backbone tensors" in caplog.text
        and "(MAE layout; pos_embed resized from 14x14 to 16x12" in caplog.text
    )
    assert "skipped 3: cls_token, norm.weight, norm.bias" in caplog.text
    assert "2 backbone tensors not in the checkpoint keep their initialisation" in caplog.text
    grid = state["pos_embed"][:, 1:].reshape(1, 14, 14, 768).permute(0, 3, 1, 2)
    grid = (
        F.interpolate(grid, size=(16, 12), mode="bicubic", align_corners=False).permute(0, 2, 3, 1).reshape(1, -1, 768)
    )
    pos = base_model.backbone.pos_embed.detach()
    assert torch.equal(pos[:, :1], state["pos_embed"][:, :1]) and torch.allclose(pos[:, 1:], grid)
    assert torch.equal(base_model.backbone.blocks[11].mlp.fc2.weight, state["blocks.11.mlp.fc2.weight"])
    assert torch.equal(base_model.backbone.last_norm.weight, torch.ones(768))


def test_mae_huge_patch_kernel_is_zero_padded(tmp_path):
    """MAE ViT-H has 14 x 14 patches: ViTPose's loader zero-pads the kernel to 16 x 16 (1 px each side); its
    16 x 16 position grid (224 / 14) is resized to the model's. Through ``model.pretrained``."""
    kernel = torch.randn(32, 3, 14, 14)
    state = {
        "patch_embed.proj.weight": kernel,
        "patch_embed.proj.bias": torch.randn(32),
        "pos_embed": torch.randn(1, 257, 32),
    }
    path = tmp_path / "mae_pretrain_vit_huge.pth"
    torch.save({"model": state}, path)
    model = ViTPoseAE(**_TINY, pretrained=path)
    weight = model.backbone.patch_embed.proj.weight.detach()
    assert torch.equal(weight[:, :, 1:15, 1:15], kernel) and weight[:, :, 0].abs().sum() == 0
    assert weight[:, :, 15].abs().sum() == 0 and weight[..., 0].abs().sum() == 0


def test_vit_checkpoint_errors(tmp_path):
    model = ViTPoseAE(**_TINY)
    with pytest.raises(FileNotFoundError, match="model.pretrained"):
        load_vit_pretrained(model, tmp_path / "absent.pth")
    other = tmp_path / "wide.pth"
    torch.save({"model": {"patch_embed.proj.weight": torch.zeros(48, 3, 16, 16)}}, other)
    with pytest.raises(ValueError, match=r"model\.arch=custom.*shape mismatches"):
        load_vit_pretrained(model, other)
    odd = tmp_path / "odd_grid.pth"
    torch.save({"model": {"pos_embed": torch.zeros(1, 1 + 15, 32)}}, odd)
    with pytest.raises(ValueError, match="neither the model's 16x12 grid nor square nor 4:3"):
        load_vit_pretrained(model, odd)
    nothing = tmp_path / "nothing.pth"
    torch.save({"model": {"fc.weight": torch.zeros(2, 2)}}, nothing)
    with pytest.raises(ValueError, match="no ViT backbone keys"):
        load_vit_pretrained(model, nothing)
    backbone, outside, layout = vit_backbone_state({"state_dict": {"module.backbone.pos_embed": torch.zeros(1)}})
    assert list(backbone) == ["pos_embed"] and outside == [] and layout == "ViTPose"


def test_project_state_dict_loads_strictly_and_describes_itself():
    """A ``ViTPoseAE`` state_dict loads strictly through ``load_official_checkpoint``; a ViTPose top-down release
    is refused with the way to use it (``model.pretrained``); ``describe_weights`` names the ViT size."""
    torch.manual_seed(0)
    source = ViTPoseAE(**_TINY, swahr=True)
    model = ViTPoseAE(**_TINY, swahr=True)
    load_official_checkpoint(model, {"state_dict": source.state_dict()})
    assert all(
        torch.equal(a, b) for a, b in zip(model.state_dict().values(), source.state_dict().values(), strict=True)
    )
    assert describe_weights(source.state_dict()) == "ViT-custom (embed_dim 32, depth 2), K=17, SWAHR"
    release = {"backbone." + k: v for k, v in source.backbone.state_dict().items()}
    release["keypoint_head.final_layer.weight"] = torch.zeros(17, 256, 1, 1)
    assert weights_layout({"state_dict": release}) == "ViTPose"
    assert describe_weights(release, "ViTPose") == "ViT-custom (embed_dim 32, depth 2) backbone, ViTPose layout"
    with pytest.raises(RuntimeError, match=r"does not match ViTPoseAE\(arch='custom'.*model\.pretrained=<this file>"):
        load_official_checkpoint(model, {"state_dict": release}, name="vitpose-s.pth")
    with torch.device("meta"):
        assert describe_weights(ViTPoseAE("large", strides=(4,)).state_dict()).startswith("ViT-large (embed_dim 1024")
    assert _VIT_NAMES == {(s.embed_dim, s.depth): name for name, s in VIT_SIZES.items()}


def test_fold_batchnorm_and_low_precision_copy():
    """``prepare_for_inference`` works on ``ViTPoseAE`` (BN after the stride-2 branch's convs folded; the neck's
    transposed convs keep theirs): same outputs in fp32."""
    torch.manual_seed(0)
    model = ViTPoseAE(**_TINY, swahr=True).eval()
    with torch.no_grad():  # BN statistics away from the identity, so that folding is visible
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    x = torch.randn(1, 3, 64, 64)
    fast = prepare_for_inference(model)
    assert conv_bn_pairs(model)
    with torch.no_grad():
        for a, b in zip(model(x), fast(x), strict=True):
            assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)
        assert [o.dtype for o in prepare_for_inference(model, precision="bf16")(x.bfloat16())] == [torch.bfloat16] * 2


def test_mae_backbones_by_name(weights_server, monkeypatch):
    """``model.pretrained=mae_vit_<size>``: the MAE entries of the zoo (B / L / H from MAE's own base URL, S by
    hand); a file served from 127.0.0.1 in the entry's place is downloaded into the cache and loaded into the
    backbone (pos_embed resized) through ``build_model``."""
    from omegaconf import OmegaConf

    from bottomup import build
    from bottomup.models.zoo import ENV_MIRROR, MAE_BASE, ZOO

    monkeypatch.delenv(ENV_MIRROR, raising=False)
    assert ZOO["mae_vit_base"].url() == MAE_BASE + "mae/pretrain/mae_pretrain_vit_base.pth"
    assert ZOO["mae_vit_huge"].arch == "huge" and ZOO["mae_vit_small"].url() is None and ZOO["mae_vit_small"].get
    assert {ZOO[f"mae_vit_{s}"].layout for s in VIT_SIZES} == {"mae"}
    torch.manual_seed(0)
    donor = ViTPoseAE(**_TINY).backbone.state_dict()
    state = {"cls_token": torch.randn(1, 1, 32), **donor, "pos_embed": torch.randn(1, 197, 32)}
    path = weights_server.root / "mae" / "pretrain" / "mae_pretrain_vit_base.pth"
    path.parent.mkdir(parents=True)
    torch.save({"model": state}, path)
    entry = dataclasses.replace(ZOO["mae_vit_base"], base=weights_server.url + "/")
    monkeypatch.setitem(ZOO, entry.name, entry)
    cfg = OmegaConf.create({"_target_": "bottomup.models.ViTPoseAE", **_TINY, "pretrained": "mae_vit_base"})
    model = build.build_model(cfg)
    assert weights_server.requests == ["/mae/pretrain/mae_pretrain_vit_base.pth"] and entry.cache_path().is_file()
    assert torch.equal(model.backbone.blocks[1].attn.qkv.weight, donor["blocks.1.attn.qkv.weight"])
    assert model.backbone.pos_embed.shape == (1, 16 * 12 + 1, 32)


def test_grad_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    plain = ViTPoseAE(**_TINY, drop_path_rate=0.3).train()
    saving = ViTPoseAE(**_TINY, drop_path_rate=0.3, grad_checkpointing=True).train()
    saving.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 32, 48)
    grads = []
    for model in (plain, saving):
        torch.manual_seed(1)
        sum(o.square().mean() for o in model(x)).backward()
        grads.append(model.backbone.blocks[0].attn.qkv.weight.grad)
    assert torch.allclose(grads[0], grads[1], rtol=1e-5, atol=1e-8)


def test_finetuning_to_other_keypoints_keeps_backbone_and_neck(tmp_path):
    """Fine-tuning a ViTPoseAE checkpoint on a data set with other keypoints (``checkpoint=``): backbone and neck
    load, the K-dependent head (``final_layers`` / ``deconv_layers`` / ``conv_scale_layers``) starts fresh."""
    from bottomup.build.checkpoints import load_initial_weights

    torch.manual_seed(0)
    source = ViTPoseAE(**_TINY, swahr=True)
    path = tmp_path / "coco.pt"
    torch.save(source.state_dict(), path)
    model = ViTPoseAE(**_TINY, swahr=True, num_keypoints=14)
    split = load_initial_weights(model, path)
    assert not any(k.startswith(("backbone.", "neck.")) for k in split["reinitialised"])
    assert {k.split(".", 1)[0] for k in split["reinitialised"]} == {
        "final_layers",
        "deconv_layers",
        "conv_scale_layers",
    }
    assert torch.equal(model.neck[0].weight, source.neck[0].weight)
    assert torch.equal(model.backbone.pos_embed, source.backbone.pos_embed)


def test_vitpose_release_as_a_network_says_how_to_use_it(tmp_path):
    """A ViTPose top-down release given where a whole network is expected (``checkpoint=`` / ``--weights``): the
    message says it is a ViTPose backbone for ``model.pretrained``."""
    from bottomup.build.checkpoints import ExperimentRequiredError, load_model

    backbone = ViTPoseAE(**_TINY).backbone.state_dict()
    state = {"backbone." + k: v for k, v in backbone.items()} | {"keypoint_head.final_layer.bias": torch.zeros(17)}
    path = tmp_path / "vitpose_tiny.pth"
    torch.save({"meta": {}, "state_dict": state}, path)
    with pytest.raises(ExperimentRequiredError, match=r"ViTPose top-down release \(ViT-custom .*model\.pretrained="):
        load_model(path)


def test_vitpose_release_into_another_grid(tmp_path):
    """A ViTPose release (16 x 12 grid, 4:3) into a model whose stored grid is 32 x 32 (``img_size=512``): resized
    bicubically like a square MAE grid."""
    pos = torch.randn(1, 16 * 12 + 1, 32)
    path = tmp_path / "vitpose.pth"
    torch.save({"state_dict": {"backbone.pos_embed": pos, "keypoint_head.final_layer.bias": torch.zeros(17)}}, path)
    model = ViTPoseAE(**_TINY, img_size=512)
    assert load_vit_pretrained(model, path) == (1, 1)
    grid = pos[:, 1:].reshape(1, 16, 12, 32).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(32, 32), mode="bicubic", align_corners=False).permute(0, 2, 3, 1)
    assert torch.allclose(model.backbone.pos_embed[:, 1:].detach(), grid.reshape(1, -1, 32))

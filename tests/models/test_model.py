"""Tests for the HRNet / HigherHRNet model (bottomup.models)."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from bottomup.models import HigherHRNet, load_official_checkpoint

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"

# Published parameter counts of pose_higher_hrnet_w32_512 / w48_640 (COCO, 17 keypoints).
PARAMS = {32: 28_645_331, 48: 63_827_139}


def _fixture(width: int) -> dict:
    with open(FIXTURES / f"official_state_dict_w{width}.json") as f:
        return json.load(f)


def _official_like_state_dict(width: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors with the key/shape layout of the official checkpoint."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in _fixture(width)["state_dict"].items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(1234, dtype=torch.long)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=gen) + 0.5
        else:
            state[key] = torch.randn(shape, generator=gen)
    return state


def _randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give conv weights a He-like scale so that outputs are O(1) (the official init gives ~0)."""
    torch.manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            fan_in = m.weight[0].numel() if isinstance(m, nn.Conv2d) else m.weight[:, 0].numel()
            nn.init.normal_(m.weight, std=math.sqrt(1.0 / fan_in))
            if m.bias is not None:
                nn.init.normal_(m.bias, std=0.1)
    return model


def _formula_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Deterministic, RNG-free weights (sinusoids with He-like scale) for golden-value tests."""
    state = {}
    for i, (key, ref) in enumerate(model.state_dict().items()):
        shape = tuple(ref.shape)
        s = torch.sin(torch.arange(ref.numel(), dtype=torch.float64) * 0.37 + i).reshape(shape)
        if key.endswith("num_batches_tracked"):
            state[key] = torch.zeros_like(ref)
            continue
        if len(shape) == 4:
            transposed = key.startswith("deconv_layers") and key.endswith(".0.0.weight")
            fan_in = (shape[0] if transposed else shape[1]) * shape[2] * shape[3]
            value = s * math.sqrt(3.0 / fan_in)
        elif key.endswith("running_var"):
            value = 1 + 0.5 * s.abs()
        elif key.endswith("running_mean"):
            value = 0.1 * s
        elif key.endswith("weight"):
            value = 1 + 0.2 * s
        else:
            value = 0.1 * s
        state[key] = value.float()
    return state


def _formula_image(height: int, width: int) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    return torch.stack([torch.sin(xx * 0.3 + c) * torch.cos(yy * 0.2 - c) for c in range(3)])[None].float()


@pytest.fixture(scope="module")
def w32() -> HigherHRNet:
    torch.manual_seed(0)
    return HigherHRNet(width=32)


@pytest.fixture(scope="module")
def w48() -> HigherHRNet:
    torch.manual_seed(0)
    return HigherHRNet(width=48)


def _model(request: pytest.FixtureRequest, width: int) -> HigherHRNet:
    return request.getfixturevalue(f"w{width}")


# --------------------------------------------------------------------------- structure


@pytest.mark.parametrize("width", [32, 48])
def test_parameter_count_matches_published(request, width):
    model = _model(request, width)
    assert sum(p.numel() for p in model.parameters()) == PARAMS[width]
    assert _fixture(width)["num_parameters"] == PARAMS[width]


@pytest.mark.parametrize("width", [32, 48])
def test_state_dict_keys_and_shapes_match_official(request, width):
    model = _model(request, width)
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    official = _fixture(width)["state_dict"]
    assert len(official) == 1810
    assert sorted(set(ours) - set(official)) == []
    assert sorted(set(official) - set(ours)) == []
    assert ours == official
    assert list(ours) == list(official)  # same order, too


def test_smaller_variant_drops_modules_and_blocks():
    """stage_modules / blocks_per_branch shrink stages 2-4 only: stem, transitions and head keep their shapes."""
    full = HigherHRNet(width=16)
    small = HigherHRNet(width=16, stage_modules=(1, 1, 1), blocks_per_branch=2)
    assert [len(getattr(small, f"stage{i}")) for i in (2, 3, 4)] == [1, 1, 1]
    assert all(len(branch) == 2 for branch in small.stage3[0].branches)
    shared = {k: v.shape for k, v in small.state_dict().items() if not k.startswith("stage")}
    assert shared == {k: v.shape for k, v in full.state_dict().items() if not k.startswith("stage")}
    assert sum(p.numel() for p in small.parameters()) < 0.3 * sum(p.numel() for p in full.parameters())
    out = small(torch.zeros(1, 3, 128, 128))
    assert [tuple(o.shape) for o in out] == [(1, 34, 32, 32), (1, 17, 64, 64)]


def test_baseline_has_no_deconv_and_official_stride4_head():
    model = HigherHRNet(width=32, strides=(4,))
    keys = model.state_dict().keys()
    assert not any(k.startswith("deconv_layers") for k in keys)
    assert model.final_layers[0].weight.shape == (34, 32, 1, 1)
    assert len(model.final_layers) == 1
    official = _fixture(32)["state_dict"]
    head_free = {k for k in official if not k.startswith(("deconv_layers", "final_layers.1"))}
    assert set(keys) == head_free


def test_attributes():
    model = HigherHRNet(width=32, num_keypoints=14, strides=[4, 2], tag_dim=2)
    assert model.strides == (4, 2)
    assert isinstance(model.strides, tuple)
    assert model.num_keypoints == 14
    assert model.tag_dim == 2
    assert model.out_channels == (14 + 28, 14)
    assert model.deconv_layers[0][0][0].weight.shape == (32 + 42, 32, 4, 4)


def test_official_initialisation():
    torch.manual_seed(0)
    w32 = HigherHRNet(width=32, init="official")
    convs = [m for m in w32.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    weights = torch.cat([m.weight.detach().flatten() for m in convs])
    assert weights.std().item() == pytest.approx(0.001, rel=0.01)
    assert abs(weights.mean().item()) < 1e-5
    for m in convs:
        if m.bias is not None:
            assert torch.count_nonzero(m.bias) == 0
    bns = [m for m in w32.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) > 100
    for bn in bns:
        assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0)


def test_kaiming_initialisation_for_training_from_scratch():
    """init="kaiming" (what "auto" picks without an ImageNet backbone): conv weights N(0, 2 / fan_out), every
    residual block starts as the identity (last BN weight 0), heads N(0, 0.001^2) so that the first maps are ~0."""
    from bottomup.models.hrnet import BasicBlock, Bottleneck

    torch.manual_seed(0)
    model = HigherHRNet(width=16, stage_modules=(1, 1, 1), blocks_per_branch=2)
    assert model.init == "kaiming"
    conv = model.stage2[0].branches[0][0].conv1
    fan_out = conv.weight.shape[0] * conv.weight[0, 0].numel()
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / fan_out), rel=0.15)
    blocks = [m for m in model.modules() if isinstance(m, (BasicBlock, Bottleneck))]
    assert blocks and all(
        torch.all((m.bn2 if isinstance(m, BasicBlock) else m.bn3).weight == 0) and torch.all(m.bn1.weight == 1)
        for m in blocks
    )
    head = torch.cat([m.weight.detach().flatten() for m in model.final_layers])
    assert head.std().item() == pytest.approx(0.001, rel=0.1)
    out = model.eval()(torch.rand(1, 3, 128, 128))
    assert all(o.abs().max() < 0.05 for o in out)  # first heatmaps and tags ~0
    with pytest.raises(ValueError, match="model.init='xavier' is not one of auto, official, kaiming"):
        HigherHRNet(width=16, init="xavier")


def test_stem_blocks_shorten_layer1_only():
    """stem_blocks=1 keeps the first Bottleneck of layer1 (its keys and shapes are the published model's) and
    drops the other three; the output shapes are unchanged."""
    full = HigherHRNet(width=16, stage_modules=(1, 1, 1), blocks_per_branch=2)
    short = HigherHRNet(width=16, stage_modules=(1, 1, 1), blocks_per_branch=2, stem_blocks=1)
    assert len(full.layer1) == 4 and len(short.layer1) == 1
    fk, sk = full.state_dict(), short.state_dict()
    assert set(fk) - set(sk) == {k for k in fk if k.startswith(("layer1.1.", "layer1.2.", "layer1.3."))}
    assert all(fk[k].shape == v.shape for k, v in sk.items())
    x = torch.zeros(1, 3, 128, 128)
    assert [o.shape for o in short(x)] == [o.shape for o in full(x)]
    with pytest.raises(ValueError, match="stem_blocks"):
        HigherHRNet(width=16, stem_blocks=0)


def test_stem_channels_narrow_the_stem_and_are_read_back_from_the_weights(tmp_path):
    """stem_channels=32 halves the stem convolutions and layer1's inner channels (layer1 gives 4 x 32 = 128),
    everything from transition1's branches on keeps its shape; the architecture read from the weights gives the
    same network back, and an ImageNet backbone of the published 64-channel stem is refused naming the shapes."""
    from bottomup.models.weights import describe_weights, read_architecture

    kw = dict(width=16, stage_modules=(1, 1, 1), blocks_per_branch=2, stem_blocks=1)
    full, slim = HigherHRNet(**kw), HigherHRNet(**kw, stem_channels=32)
    fk, sk = full.state_dict(), slim.state_dict()
    assert set(fk) == set(sk)
    assert sk["conv1.weight"].shape == (32, 3, 3, 3) and sk["layer1.0.conv3.weight"].shape == (128, 32, 1, 1)
    assert sk["transition1.0.0.weight"].shape == (16, 128, 3, 3)
    differ = {k for k in fk if fk[k].shape != sk[k].shape}
    assert differ and all(k.startswith(("conv1.", "bn1.", "conv2.", "bn2.", "layer1.", "transition1.")) for k in differ)
    x = torch.zeros(1, 3, 128, 128)
    assert [o.shape for o in slim(x)] == [o.shape for o in full(x)]
    arch = read_architecture(sk)
    assert arch.stem_channels == 32 and read_architecture(fk).stem_channels == 64
    rebuilt = HigherHRNet(**arch.model_kwargs())
    rebuilt.load_state_dict(sk)  # strict: the same keys and shapes
    assert describe_weights(sk) == "W16 (stem 32), K=17" and describe_weights(fk) == "W16, K=17"
    with pytest.raises(ValueError, match="stem_channels"):
        HigherHRNet(width=16, stem_channels=0)
    backbone = tmp_path / "hrnet_w16_imagenet.pth"  # the published stem's tensors, as an ImageNet file has them
    torch.save({k: v for k, v in fk.items() if not k.startswith(("final_layers.", "deconv_layers."))}, backbone)
    HigherHRNet(**kw, pretrained=backbone)
    with pytest.raises(ValueError, match=r"does not match .*conv1\.weight: checkpoint \(64, 3, 3, 3\) vs model \(32"):
        HigherHRNet(**kw, stem_channels=32, pretrained=backbone)


def test_precision_auto_picks_native_bf16_only():
    from bottomup.models.precision import native_bf16, resolve_precision

    cpu_native = native_bf16("cpu")
    assert cpu_native == bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    assert resolve_precision("auto", "cpu") == ("bf16" if cpu_native else "fp32")
    assert resolve_precision("fp16", "cpu") == "fp16"
    with pytest.raises(ValueError, match=r"trainer\.precision must be one of \['auto', 'fp32', 'bf16', 'fp16'\]"):
        resolve_precision("int8", "cpu", "trainer.precision")


@pytest.mark.parametrize(
    ("timings", "correct", "expected"),
    [
        ({"fp32": 100.0, "bf16": 60.0}, None, "bf16"),  # native bf16 (AMD EPYC, AMX): faster
        ({"fp32": 100.0, "bf16": 160.0}, None, "fp32"),  # AVX512-BF16 without AMX (issue 29's Xeon): slower
        ({"fp32": 100.0, "bf16": 95.0}, None, "fp32"),  # within the probe's noise: the exact arithmetic
        ({"fp32": 100.0, "bf16": 60.0}, {"bf16": False}, "fp32"),  # faster but wrong
    ],
)
def test_auto_precision_follows_the_probe(tmp_path, timings, correct, expected):
    """Issue 29: ``trainer.precision=auto`` runs the precision the probe measured fastest (and correct), whatever the
    CPU flags say; the choice is cached per machine, torch version and network, so a second run does not probe."""
    from bottomup.models.precision import measured_precision, pick_precision

    assert pick_precision(timings, correct) == expected
    model = HigherHRNet(width=8, num_keypoints=17)
    calls = []

    def probe():
        calls.append(1)
        return timings, {"fp32": True, **(correct or {})}

    cache = tmp_path / "precision.json"
    choice, record = measured_precision(model, "cpu", cache_file=cache, probe=probe)
    assert choice == expected and not record["cached"] and record["timings_ms"] == timings and calls == [1]
    assert f"torch {torch.__version__}" in record["key"] and "HigherHRNet" in record["key"]
    choice, record = measured_precision(model, "cpu", cache_file=cache, probe=lambda: pytest.fail("probed again"))
    assert choice == expected and record["cached"]
    other = HigherHRNet(width=16, num_keypoints=17)  # another network: measured on its own
    measured_precision(other, "cpu", cache_file=cache, probe=probe)
    assert calls == [1, 1] and len(json.loads(cache.read_text())) == 2
    with pytest.raises(ValueError, match="fp32 timing"):
        pick_precision({"bf16": 1.0})


def test_the_precision_probe_times_a_real_training_step_and_leaves_the_weights(tmp_path):
    """The probe runs forward + backward of the network in fp32 and bf16 (emulated where the CPU has no bf16:
    slower, still correct), compares the outputs, and leaves weights, gradients and train / eval mode as they were."""
    from bottomup.models.precision import probe_training_precisions

    torch.manual_seed(0)
    model = HigherHRNet(width=8, num_keypoints=17).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    timings, correct = probe_training_precisions(model, "cpu", size=64, repeats=1)
    assert set(timings) == {"fp32", "bf16"} and all(ms > 0 for ms in timings.values())
    assert correct == {"fp32": True, "bf16": True}
    assert not model.training and all(p.grad is None for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


# --------------------------------------------------------------------------- checkpoints


@pytest.mark.parametrize("width", [32, 48])
@pytest.mark.parametrize("wrapping", ["raw", "module", "state_dict", "state_dict+module", "mapping"])
def test_load_official_checkpoint(request, tmp_path, width, wrapping):
    model = _model(request, width)
    state = _official_like_state_dict(width, seed=width)
    if "module" in wrapping:
        obj = {"module." + k: v for k, v in state.items()}
    else:
        obj = dict(state)
    if wrapping.startswith("state_dict"):
        obj = {"epoch": 300, "model": "pose_higher_hrnet", "state_dict": obj, "best_perf": 0.67}
    if wrapping == "mapping":
        assert load_official_checkpoint(model, obj) is model
    else:
        path = tmp_path / "ckpt.pth"
        torch.save(obj, path)
        assert load_official_checkpoint(model, str(path)) is model
    loaded = model.state_dict()
    for key, value in state.items():
        assert torch.equal(loaded[key], value), key
    assert loaded["final_layers.1.weight"].shape == (17, width, 1, 1)


def test_load_official_checkpoint_wrong_width(tmp_path):
    path = tmp_path / "w32.pth"
    torch.save(_official_like_state_dict(32), path)
    model = HigherHRNet(width=48, num_deconv_blocks=0)
    with pytest.raises(RuntimeError) as exc:
        load_official_checkpoint(model, path)
    msg = str(exc.value)
    assert "width=32" in msg and "num_keypoints=17" in msg
    assert "transition1.0.0.weight: checkpoint (32, 256, 3, 3) vs model (48, 256, 3, 3)" in msg
    assert "deconv_layers.0.1.0.conv1.weight" in msg  # unexpected: model has no deconv blocks


def test_load_official_checkpoint_wrong_num_keypoints():
    model = HigherHRNet(width=32, num_keypoints=14)
    with pytest.raises(RuntimeError, match=r"final_layers\.0\.weight: checkpoint \(34, 32, 1, 1\)"):
        load_official_checkpoint(model, _official_like_state_dict(32))


def test_load_official_checkpoint_missing_file(tmp_path):
    missing = tmp_path / "nope.pth"
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_official_checkpoint(HigherHRNet(width=8), missing)


# --------------------------------------------------------------------------- forward


@pytest.mark.parametrize(
    ("kwargs", "size", "expected"),
    [
        ({}, (128, 128), [(1, 34, 32, 32), (1, 17, 64, 64)]),
        ({}, (96, 160), [(1, 34, 24, 40), (1, 17, 48, 80)]),
        ({"num_keypoints": 14}, (64, 128), [(1, 28, 16, 32), (1, 14, 32, 64)]),
        ({"strides": (4,)}, (128, 96), [(1, 34, 32, 24)]),
        ({"tag_dim": 2, "num_deconv_blocks": 1}, (64, 64), [(1, 51, 16, 16), (1, 17, 32, 32)]),
        ({"width": 16, "strides": (4, 2, 1)}, (64, 32), [(1, 34, 16, 8), (1, 17, 32, 16), (1, 17, 64, 32)]),
    ],
)
def test_output_shapes(kwargs, size, expected):
    torch.manual_seed(0)
    model = HigherHRNet(**kwargs).eval()
    with torch.no_grad():
        outputs = model(torch.randn(1, 3, *size))
    assert isinstance(outputs, list)
    assert [tuple(o.shape) for o in outputs] == expected
    assert all(torch.isfinite(o).all() for o in outputs)


def test_channels_last_matches_contiguous():
    torch.manual_seed(0)
    model = _randomize(HigherHRNet(width=32)).train()  # train(): BN batch stats keep outputs O(1)
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        ref = model(x)
        model_cl = model.to(memory_format=torch.channels_last)
        out = model_cl(x.contiguous(memory_format=torch.channels_last))
    assert len(out) == len(ref) == 2
    for r, o in zip(ref, out, strict=True):
        assert r.shape == o.shape
        assert r.std() > 0.1  # non-trivial outputs
        torch.testing.assert_close(o, r, rtol=1e-4, atol=1e-4 * r.abs().max().item())


# Reference values produced by the official PoseHigherResolutionNet (w32_512 config) loaded with
# _formula_state_dict and run on _formula_image(64, 96) in eval mode: per-channel means,
# channel-mean pooled to a 2x3 grid, and three pixels (channels 0, C // 2, -1 at y=5, x=7).
GOLDEN_W32 = [
    {
        "means": [
            -5.9567,
            12.2485,
            24.2836,
            24.0844,
            11.7599,
            -6.4645,
            -21.3899,
            -25.4876,
            -16.699,
            0.5265,
            17.4797,
            25.5894,
            20.7517,
            5.4026,
            -12.7106,
            -24.4404,
            -23.8571,
            -11.2437,
            7.0457,
            21.7916,
            25.5615,
            16.4605,
            -0.9133,
            -17.7905,
            -25.6573,
            -20.5523,
            -5.0654,
            12.9718,
            24.441,
            23.5424,
            10.7235,
            -7.5456,
            -22.0385,
            -25.4308,
        ],
        "pooled": [0.1483, 0.1892, 0.1603, 0.3897, 0.5949, 0.5331],
        "pix": [-11.4794, -17.8519, -32.7834],
    },
    {
        "means": [
            -1.1817,
            -2.1393,
            -1.9909,
            -0.8228,
            0.7622,
            1.9505,
            2.1303,
            1.2023,
            -0.3693,
            -1.7904,
            -2.3379,
            -1.7259,
            -0.2507,
            1.3565,
            2.2972,
            2.1069,
            0.8881,
        ],
        "pooled": [0.0082, 0.0293, 0.0276, -0.0051, -0.0139, -0.016],
        "pix": [-5.2718, -7.6438, -7.9785],
    },
]


@pytest.mark.parametrize("channels_last", [False, True])
def test_forward_matches_official_reference_values(channels_last):
    model = HigherHRNet(width=32).eval()
    model.load_state_dict(_formula_state_dict(model))
    x = _formula_image(64, 96)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        outputs = model(x)
    assert len(outputs) == len(GOLDEN_W32)
    for out, ref in zip(outputs, GOLDEN_W32, strict=True):
        got = {
            "means": out.mean((0, 2, 3)),
            "pooled": nn.functional.adaptive_avg_pool2d(out, (2, 3)).mean(1).flatten(),
            "pix": out[0, [0, out.shape[1] // 2, -1], 5, 7],
        }
        for name, value in got.items():
            torch.testing.assert_close(value, torch.tensor(ref[name]), rtol=1e-3, atol=2e-3, msg=name)


def test_stride2_output_sees_stride4_output():
    """The deconv stage consumes concat(features, stride-4 output): changing the stride-4 head changes
    the stride-2 heatmaps, while the backbone features (and the baseline) are unaffected."""
    torch.manual_seed(0)
    model = _randomize(HigherHRNet(width=16, num_deconv_blocks=1)).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        a4, a2 = model(x)
        model.final_layers[0].bias.add_(1.0)
        b4, b2 = model(x)
    torch.testing.assert_close(b4, a4 + 1.0)
    assert (b2 - a2).abs().max() > 1e-3


def test_batch_independence_in_eval():
    torch.manual_seed(0)
    model = _randomize(HigherHRNet(width=16, num_deconv_blocks=1)).eval()
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        full = model(x)
        single = model(x[1:2])
    for f, s in zip(full, single, strict=True):
        torch.testing.assert_close(f[1:2], s, rtol=1e-4, atol=1e-4 * s.abs().max().item())
        assert (f[0] - f[1]).abs().max() > 1e-3


# --------------------------------------------------------------------------- arguments


@pytest.mark.parametrize(
    "kwargs",
    [
        {"width": 0},
        {"width": -32},
        {"width": 32.0},
        {"width": True},
        {"num_keypoints": 0},
        {"tag_dim": 0},
        {"num_deconv_blocks": -1},
        {"strides": ()},
        {"strides": (2,)},
        {"strides": (8, 4)},
        {"strides": (4, 1)},
        {"strides": (4, 2, 2)},
        {"strides": (4, 2.0)},
        {"strides": "42"},
        {"strides": 4},
        {"stage_modules": (1, 1)},
        {"stage_modules": (1, 0, 1)},
        {"blocks_per_branch": 0},
    ],
)
def test_bad_arguments_raise_value_error(kwargs):
    with pytest.raises(ValueError):
        HigherHRNet(**kwargs)


@pytest.mark.parametrize("shape", [(1, 3, 100, 128), (1, 3, 128, 48), (1, 1, 64, 64), (3, 64, 64)])
def test_bad_input_shape_raises(shape):
    model = HigherHRNet(width=8, num_deconv_blocks=0)
    with pytest.raises(ValueError, match="multiples of 32"):
        model(torch.zeros(shape))


def test_bad_strides_message():
    with pytest.raises(ValueError, match=r"strides .*starts with 4.*\(4, 3\)"):
        HigherHRNet(strides=(4, 3))


# --------------------------------------------------------------------------- ImageNet pretrained


def test_missing_pretrained_raises(tmp_path):
    path = tmp_path / "hrnet_w32-36af842e.pth"
    with pytest.raises(FileNotFoundError) as exc:
        HigherHRNet(width=32, pretrained=str(path))
    assert str(path) in str(exc.value)
    assert "model.pretrained" in str(exc.value)


def test_pretrained_imagenet_backbone(tmp_path, caplog):
    torch.manual_seed(1)
    donor = HigherHRNet(width=16, strides=(4,)).state_dict()
    prefixes = ("conv1.", "bn1.", "layer1.", "transition1.", "stage2.")
    imagenet = {
        k: torch.rand_like(v) + 0.5 if v.is_floating_point() else v + 7
        for k, v in donor.items()
        if k.startswith(prefixes)
    }
    n_backbone = len(imagenet)
    assert n_backbone > 100
    # Classifier-only tensors of the ImageNet model: must be skipped.
    imagenet["classifier.weight"] = torch.randn(1000, 2048)
    imagenet["incre_modules.0.0.conv1.weight"] = torch.randn(32, 16, 1, 1)
    imagenet["final_layer.0.weight"] = torch.randn(2048, 1024, 1, 1)
    # The classifier's last stage-4 module keeps all fusion outputs; ours keeps only the first.
    imagenet["stage4.2.fuse_layers.1.0.0.0.weight"] = torch.randn(32, 16, 3, 3)
    path = tmp_path / "hrnet_w16.pth"
    torch.save(imagenet, path)

    torch.manual_seed(0)
    reference = HigherHRNet(width=16, init="official").state_dict()  # auto picks official with pretrained
    torch.manual_seed(0)
    with caplog.at_level(logging.INFO, logger="bottomup.models.hrnet"):
        model = HigherHRNet(width=16, pretrained=path)
    state = model.state_dict()
    changed = 0
    for key, value in state.items():
        if key in imagenet:
            assert torch.equal(value, imagenet[key]), key
            changed += int(not torch.equal(value, reference[key]))
        else:
            assert torch.equal(value, reference[key]), key  # head and unlisted stages untouched
    assert changed == n_backbone
    assert f"Loaded {n_backbone} backbone tensors" in caplog.text
    assert "skipped 4" in caplog.text
    assert model.load_pretrained_backbone(path) == (n_backbone, 4)


def test_pretrained_wrong_width_raises(tmp_path):
    path = tmp_path / "hrnet_w48.pth"
    torch.save({"transition1.0.0.weight": torch.zeros(48, 256, 3, 3)}, path)
    with pytest.raises(ValueError, match="HRNet-W32"):
        HigherHRNet(width=32, pretrained=path)


def test_pretrained_without_backbone_keys_raises(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"classifier.weight": torch.zeros(1000, 2048)}, path)
    with pytest.raises(ValueError, match="no HRNet backbone keys"):
        HigherHRNet(width=8, pretrained=path)


# --------------------------------------------------------------------------- SWAHR (model.swahr)

SWAHR_FIXTURES = {"w32": (32, 17), "w48": (48, 17), "w48_crowdpose": (48, 14)}


def _swahr_fixture(name: str) -> dict:
    with open(FIXTURES / f"official_swahr_state_dict_{name}.json") as f:
        return json.load(f)


@pytest.mark.parametrize("name", sorted(SWAHR_FIXTURES))
def test_swahr_state_dict_matches_official_swahr(name):
    """Keys, shapes, order and parameter count of the official SWAHR model (fixture dumped from its code)."""
    width, k = SWAHR_FIXTURES[name]
    fixture = _swahr_fixture(name)
    model = HigherHRNet(width=width, num_keypoints=k, swahr=True)
    ours = {key: list(v.shape) for key, v in model.state_dict().items()}
    assert len(fixture["state_dict"]) == fixture["num_keys"] == 1828  # HigherHRNet's 1810 + 2 scale heads x 9
    assert sorted(set(ours) ^ set(fixture["state_dict"])) == []
    assert list(ours.items()) == list(fixture["state_dict"].items())
    assert sum(p.numel() for p in model.parameters()) == fixture["num_parameters"]
    assert model.out_channels == (3 * k, 2 * k)


@pytest.mark.parametrize("name", sorted(SWAHR_FIXTURES))
def test_load_official_swahr_checkpoint_strictly(tmp_path, name):
    width, k = SWAHR_FIXTURES[name]
    gen = torch.Generator().manual_seed(1)
    state = {
        key: torch.tensor(7) if key.endswith("num_batches_tracked") else torch.rand(shape, generator=gen) + 0.5
        for key, shape in _swahr_fixture(name)["state_dict"].items()
    }
    path = tmp_path / "pose_higher_hrnet_swahr.pth"
    torch.save({"state_dict": {f"module.{key}": v for key, v in state.items()}}, path)
    model = load_official_checkpoint(HigherHRNet(width=width, num_keypoints=k, swahr=True), path)
    loaded = model.state_dict()
    assert all(torch.equal(loaded[key], v) for key, v in state.items())
    model.load_state_dict(state, strict=True)  # torch's own strict check agrees


def test_swahr_and_higherhrnet_checkpoints_name_the_option():
    with pytest.raises(RuntimeError, match=r"SWAHR checkpoint \(conv_scale_layers\): build the model with swahr=True"):
        load_official_checkpoint(
            HigherHRNet(width=32),
            {key: torch.zeros(shape) for key, shape in _swahr_fixture("w32")["state_dict"].items()},
        )
    with pytest.raises(RuntimeError, match="no SWAHR scale heads"):
        load_official_checkpoint(HigherHRNet(width=32, swahr=True), _official_like_state_dict(32))
    with pytest.raises(ValueError, match="model.swahr must be true or false"):
        HigherHRNet(width=8, swahr="yes")  # type: ignore[arg-type]


def test_swahr_forward_matches_official_reference_values():
    """Outputs of the official SWAHR model (its code, formula weights, formula image; values in the fixture):
    scale maps first, then heatmaps (+ tags at 1/4); the deconv stage sees the heatmaps and tags, not the scales."""
    model = HigherHRNet(width=32, swahr=True).eval()
    model.load_state_dict(_formula_state_dict(model))
    with torch.no_grad():
        outputs = model(_formula_image(64, 96))
    golden = _swahr_fixture("w32")["golden"]
    assert [list(o.shape) for o in outputs] == [g["shape"] for g in golden] == [[1, 51, 16, 24], [1, 34, 32, 48]]
    for out, ref in zip(outputs, golden, strict=True):
        got = {
            "means": out.mean((0, 2, 3)),
            "pooled": nn.functional.adaptive_avg_pool2d(out, (2, 3)).mean(1).flatten(),
            "pix": out[0, [0, 16, 17, 33, out.shape[1] // 2, -1], 5, 7],
        }
        for name, value in got.items():
            torch.testing.assert_close(value, torch.tensor(ref[name]), rtol=1e-3, atol=2e-3, msg=name)


def test_swahr_is_higherhrnet_plus_scale_maps():
    """Same weights: the SWAHR outputs after their K scale maps are the HigherHRNet outputs; the scale maps start
    at exactly 0 (official init: last scale conv zero) and are the only extra output."""
    torch.manual_seed(0)
    plain = _randomize(HigherHRNet(width=16, num_deconv_blocks=1)).eval()
    swahr = HigherHRNet(width=16, num_deconv_blocks=1, swahr=True).eval()
    missing, unexpected = swahr.load_state_dict(plain.state_dict(), strict=False)
    scale_keys = [key for key in swahr.state_dict() if key.startswith("conv_scale_layers.")]
    assert unexpected == [] and set(missing) <= set(scale_keys) and len(scale_keys) == 18
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref, out = plain(x), swahr(x)
        for r, o in zip(ref, out, strict=True):
            assert o.shape[1] == r.shape[1] + 17
            assert torch.equal(o[:, :17], torch.zeros_like(o[:, :17]))
            torch.testing.assert_close(o[:, 17:], r)
        _randomize(swahr.conv_scale_layers)
        moved = swahr(x)
    assert all(m[:, :17].abs().max() > 1e-3 for m in moved)
    for r, m in zip(ref, moved, strict=True):
        torch.testing.assert_close(m[:, 17:], r)  # scale heads change nothing else

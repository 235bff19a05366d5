"""Inference-only preparation (bottomup.models.fast): BatchNorm folding, bf16 weights, channels_last."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from bottomup.api import PoseEstimator
from bottomup.data.io import load_image
from bottomup.data.transforms import preprocess
from bottomup.models import HigherHRNet
from bottomup.models.fast import conv_bn_pairs, fold_batchnorm, prepare_for_inference


def _trained_like(model: nn.Module) -> nn.Module:
    """Give every BatchNorm non-trivial statistics and affine parameters, as training would."""
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(1 + 0.2 * torch.randn(n, generator=g))
            m.bias.data.copy_(0.1 * torch.randn(n, generator=g))
    return model


def _bns(model: nn.Module) -> int:
    return sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def test_fold_batchnorm_keeps_the_outputs_and_leaves_the_model_alone(coco_root: Path) -> None:
    torch.manual_seed(0)
    net = _trained_like(HigherHRNet(width=8, stage_modules=(1, 1, 1), blocks_per_branch=1)).eval()
    x, _ = preprocess(load_image(coco_root / "val2017" / "000000000139.jpg"), 256, 1.0, 1.0)
    before = _bns(net)
    pairs = conv_bn_pairs(net)
    # every BN follows a Conv2d except the one after the ConvTranspose2d of the deconv stage
    assert len(pairs) == before - 1 and len({bn for _, bn in pairs}) == len(pairs)
    folded = fold_batchnorm(net)
    assert _bns(folded) == 1 and _bns(net) == before  # a copy: the original keeps its BatchNorms
    with torch.inference_mode():
        for a, b in zip(net(x), folded(x), strict=True):
            assert (a - b).abs().max() <= 1e-4 * a.abs().max()
    with pytest.raises(ValueError, match="eval"):
        fold_batchnorm(net.train())


def test_prepared_bf16_copy_matches_fp32_on_a_real_image(quickstart_checkpoint: Path, coco_root: Path) -> None:
    """A trained checkpoint: folded BN + bf16 weights + channels_last stay within bf16 rounding of fp32."""
    est = PoseEstimator.from_checkpoint(quickstart_checkpoint, device="cpu")
    net = est.model
    image = load_image(coco_root / "val2017" / "000000000139.jpg")
    x, _ = preprocess(image, 192, 1.0, 1.0)
    fast = prepare_for_inference(net, precision="bf16", channels_last=True)
    assert next(fast.parameters()).dtype == torch.bfloat16 and _bns(fast) < _bns(net)
    assert next(net.parameters()).dtype == torch.float32  # the original is untouched
    with torch.inference_mode():
        exact = net(x)
        low = fast(x.bfloat16().contiguous(memory_format=torch.channels_last))
    for a, b in zip(exact, low, strict=True):
        assert b.dtype == torch.bfloat16
        assert (a - b.float()).abs().max() < 0.05 * a.abs().max()
    # the same through PoseEstimator, which casts the input and the outputs
    prepared = PoseEstimator.from_checkpoint(
        quickstart_checkpoint, device="cpu", precision="bf16", channels_last=True, fold_bn=True
    )
    assert next(prepared.model.parameters()).dtype == torch.bfloat16
    pred = prepared(image)
    assert pred.keypoints.shape[1:] == (17, 3) and np.isfinite(pred.keypoints).all()
    # PoseEstimator hands the maps on in float32 (the same people as fp32: see test_learning.py)
    folded = PoseEstimator.from_checkpoint(quickstart_checkpoint, device="cpu", fold_bn=True)
    assert next(folded.model.parameters()).dtype == torch.float32 and _bns(folded.model) < _bns(net)


def test_prepare_rejects_unknown_precision() -> None:
    with pytest.raises(ValueError, match="precision"):
        prepare_for_inference(HigherHRNet(width=8), precision="int8")


# --------------------------------------------------------------------------- test.precision=auto (issue 29)
_PLAIN = "fp32"
_CL, _FOLDED = "fp32 channels_last", "fp32 channels_last folded"


#: Probe timings (ms) on a device with native bf16, where the bf16 paths compete.
_NATIVE_TIMINGS = {
    _PLAIN: 100.0, _CL: 90.0, _FOLDED: 80.0, "bf16": 60.0, "bf16 channels_last": 50.0, "bf16 channels_last folded": 40.0,
}  # fmt: skip


@pytest.mark.parametrize(
    ("timings", "correct", "native", "expected"),
    [
        ({_PLAIN: 100.0, _CL: 95.0, _FOLDED: 80.0}, {}, False, _FOLDED),  # folding pays: picked
        ({_PLAIN: 100.0, _CL: 95.0, _FOLDED: 92.0}, {}, False, _PLAIN),  # within the margin: the exact path
        ({_PLAIN: 100.0, _CL: 130.0, _FOLDED: 120.0}, {}, False, _PLAIN),  # slower (a CPU where NHWC loses)
        # native bf16: the bf16 paths compete; the fastest correct one wins
        (
            _NATIVE_TIMINGS,
            {},
            True,
            "bf16 channels_last folded",
        ),  # fmt: skip
        # wrong but fast: rejected, the next fastest correct path runs
        (
            _NATIVE_TIMINGS,
            {"bf16 channels_last folded": False},
            True,
            "bf16 channels_last",
        ),  # fmt: skip
    ],
)
def test_auto_fast_path_follows_the_probe(tmp_path, monkeypatch, timings, correct, native, expected) -> None:
    """Issue 29: ``test.precision=auto`` runs the path the probe measured fastest and correct, by at least the
    training probe's margin over plain fp32 (injected timings); the choice is cached per machine / torch / network
    under a key of its own, so a second estimator does not probe and training's choice is not overwritten."""
    import json

    import bottomup.models.fast as fast
    from bottomup.models.fast import FAST_PATHS, measured_fast_path
    from bottomup.models.precision import measured_precision

    monkeypatch.setattr(fast, "native_bf16", lambda device: native)
    model = HigherHRNet(width=8, num_keypoints=17)
    calls = []

    def probe(candidates):
        calls.append(candidates)
        return {k: v for k, v in timings.items() if k in candidates}, {k: correct.get(k, True) for k in candidates}

    cache = tmp_path / "precision.json"
    path, record = measured_fast_path(model, "cpu", cache_file=cache, probe=probe)
    assert path == FAST_PATHS[expected] and record["path"] == expected and not record["cached"]
    assert set(calls[0]) == set(timings) and calls[0][0] == _PLAIN  # bf16 paths only where bf16 is native
    assert record["key"].startswith("inference | cpu |") and "HigherHRNet" in record["key"]
    again, record = measured_fast_path(model, "cpu", cache_file=cache, probe=lambda c: pytest.fail("probed again"))
    assert again == path and record["cached"] and len(calls) == 1
    # training's auto shares the file, not the entry
    measured_precision(model, "cpu", cache_file=cache, probe=lambda: ({"fp32": 1.0, "bf16": 2.0}, {}))
    keys = list(json.loads(cache.read_text()))
    assert len(keys) == 2 and sum(k.startswith("inference |") for k in keys) == 1


def test_explicit_channels_last_or_fold_bn_keep_only_their_paths(tmp_path, monkeypatch) -> None:
    """``channels_last`` / ``fold_bn`` set to true with ``auto``: only paths with them compete, and the first of
    them is the baseline to beat; a single candidate is taken without a probe."""
    import bottomup.models.fast as fast
    from bottomup.models.fast import fast_path_candidates, measured_fast_path

    monkeypatch.setattr(fast, "native_bf16", lambda device: False)
    model = HigherHRNet(width=8, num_keypoints=17)
    assert fast_path_candidates("cpu", channels_last=True) == (_CL, _FOLDED)
    path, record = measured_fast_path(
        model, "cpu", channels_last=True, cache_file=tmp_path / "c.json", probe=lambda c: ({_CL: 100, _FOLDED: 95}, {})
    )
    assert path == ("fp32", True, False)  # 95 / 100 is within the margin
    path, record = measured_fast_path(
        model, "cpu", fold_bn=True, cache_file=tmp_path / "c.json", probe=lambda c: pytest.fail("nothing to choose")
    )
    assert path == ("fp32", True, True) and record["timings_ms"] == {}


def test_the_real_fast_path_probe_on_a_tiny_network() -> None:
    """The probe times every candidate path on one copy of the network, finds them all correct (fp32 folding is
    exact up to rounding; bf16 within the tolerance), and leaves the network as it was."""
    from bottomup.models.fast import FAST_PATHS, probe_fast_paths

    torch.manual_seed(0)
    net = _trained_like(HigherHRNet(width=8, stage_modules=(1, 1, 1), blocks_per_branch=1)).eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    bns = _bns(net)
    timings, correct = probe_fast_paths(net, "cpu", size=64, repeats=1)
    assert set(timings) == set(correct) == set(FAST_PATHS) and all(ms > 0 for ms in timings.values())
    assert all(correct.values()), correct
    assert _bns(net) == bns and all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert net.conv1.weight.is_contiguous() and net.conv1.weight.dtype == torch.float32


def test_the_estimator_resolves_auto_and_says_what_it_picked(tmp_path, monkeypatch) -> None:
    """``PoseEstimator(precision="auto")``: the settings hold the measured path, ``fast_path`` and ``repr`` say
    what was picked; an explicit path is not probed."""
    import bottomup.models.fast as fast

    monkeypatch.setenv("BOTTOMUP_CACHE", str(tmp_path))
    monkeypatch.setattr(fast, "native_bf16", lambda device: False)
    monkeypatch.setattr(fast, "probe_fast_paths", lambda *a, **k: ({_PLAIN: 100.0, _CL: 95.0, _FOLDED: 70.0}, {}))
    net = HigherHRNet(width=8, stage_modules=(1, 1, 1), blocks_per_branch=1)
    est = PoseEstimator(net, num_keypoints=17, flip_test=False, precision="auto", device="cpu")
    assert (est.precision, est.channels_last, est.fold_bn) == ("fp32", True, True)
    assert est.fast_path["path"] == _FOLDED and "auto: fp32 channels_last folded" in repr(est)
    assert est.with_settings(detection_threshold=0.2).fast_path["path"] == _FOLDED  # the same network path
    assert len(est(np.zeros((64, 80, 3), np.uint8)).keypoints) >= 0
    monkeypatch.setattr(fast, "probe_fast_paths", lambda *a, **k: pytest.fail("an explicit path is not probed"))
    exact = PoseEstimator(net, num_keypoints=17, flip_test=False, device="cpu")
    assert exact.fast_path is None and exact.precision == "fp32" and not exact.fold_bn
    assert est.with_settings(precision="fp32", channels_last=False, fold_bn=False).fast_path is None

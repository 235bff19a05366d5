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

"""Inference-only model preparation: BatchNorm folding, low-precision weights, channels_last, torch.compile.

The published test pipeline runs the network as trained. For inference these give the same maps up to float
rounding, faster:

* **BatchNorm folding** -- an eval-mode ``BatchNorm2d`` right after a ``Conv2d`` is an affine map per channel,
  so it can be merged into the convolution's weight and bias (``torch.nn.utils.fusion.fuse_conv_bn_eval``),
  removing one pass over every feature map. ``ConvTranspose2d`` + BN in the HigherHRNet deconv stage is left as
  it is.
* **bf16 / fp16 weights** -- the whole network in the low precision instead of autocast: no per-call weight
  casts and no fp32 round trips between layers. Inputs must then come in the same dtype (``predict`` does it).
* **channels_last** -- NHWC weights and activations, the layout oneDNN and cuDNN convolutions prefer.
* **torch.compile** -- optional; on CPU it needs a C++ compiler and takes minutes the first time.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.ao.quantization import fuse_modules

from bottomup.models.precision import PRECISION_DTYPES, check_precision

__all__ = ["conv_bn_pairs", "fold_batchnorm", "prepare_for_inference"]


def conv_bn_pairs(model: nn.Module) -> list[list[str]]:
    """Names ``[conv, bn]`` of every ``Conv2d`` whose output goes straight into a ``BatchNorm2d``.

    Follows the naming of the HRNet family (and torchvision ResNets): ``convN`` is normalised by ``bnN`` of
    the same parent module, and in an ``nn.Sequential`` a ``Conv2d`` at index ``i`` by a ``BatchNorm2d`` at
    ``i + 1``.

    Args:
        model: any module; only names and types are inspected.

    Returns:
        ``[[conv_name, bn_name], ...]`` in ``named_modules`` order, for ``torch.ao.quantization.fuse_modules``.
    """
    mods = dict(model.named_modules())
    pairs = []
    for name, mod in mods.items():
        if type(mod) is not nn.Conv2d:
            continue
        parent, _, leaf = name.rpartition(".")
        prefix = f"{parent}." if parent else ""
        if leaf.startswith("conv") and leaf[4:].isdigit():
            bn = f"{prefix}bn{leaf[4:]}"
        elif leaf.isdigit() and isinstance(mods.get(parent), nn.Sequential):
            bn = f"{prefix}{int(leaf) + 1}"
        else:
            continue
        if type(mods.get(bn)) is nn.BatchNorm2d:
            pairs.append([name, bn])
    return pairs


def fold_batchnorm(model: nn.Module, inplace: bool = False) -> nn.Module:
    """``model`` with every ``Conv2d`` -> ``BatchNorm2d`` pair merged into the conv (a copy unless ``inplace``).

    The folded BatchNorms become ``nn.Identity``; the conv gains a bias. Outputs equal the original eval-mode
    outputs up to float rounding (relative 1e-5 in fp32).

    Raises:
        ValueError: ``model`` is in training mode (folding uses the running statistics, which training
            would still change).
    """
    if model.training:
        raise ValueError("fold_batchnorm needs an eval-mode model: call model.eval() first")
    pairs = conv_bn_pairs(model)
    if not pairs:
        return model if inplace else copy.deepcopy(model)
    return fuse_modules(model, pairs, inplace=inplace)


def prepare_for_inference(
    model: nn.Module,
    *,
    precision: str = "fp32",
    channels_last: bool = False,
    fold_bn: bool = True,
    compile: bool = False,
) -> nn.Module:
    """A fast inference copy of ``model``: eval mode, BN folded, weights in ``precision``, NHWC, compiled.

    Feed it inputs ``(N, 3, H, W)`` in the dtype of :data:`bottomup.models.precision.PRECISION_DTYPES` ``[precision]`` (and NHWC when
    ``channels_last``); its outputs come in that dtype too. ``bottomup.engine.inference.predict`` does both.

    Args:
        model: a trained model (any mode; the copy is put in eval mode, ``model`` is not changed).
        precision: ``"fp32"``, ``"bf16"`` (CPUs with AVX-512 BF16 / AMX, CUDA) or ``"fp16"`` (CUDA) weights.
        channels_last: convert weights to NHWC.
        fold_bn: merge BatchNorms into their convolutions (:func:`fold_batchnorm`).
        compile: wrap in ``torch.compile`` (first call compiles, which takes minutes on CPU).

    Returns:
        the prepared module (an ``OptimizedModule`` when compiled); ``requires_grad`` is off.

    Raises:
        ValueError: unknown ``precision``.
    """
    check_precision(precision)
    fast = copy.deepcopy(model).eval()
    if fold_bn:
        fast = fold_batchnorm(fast, inplace=True)
    fast = fast.to(PRECISION_DTYPES[precision])
    if channels_last:
        fast = fast.to(memory_format=torch.channels_last)
    fast.requires_grad_(False)
    if compile:
        fast = torch.compile(fast, options={"freezing": True})  # weights are constants: inductor folds them
    return fast

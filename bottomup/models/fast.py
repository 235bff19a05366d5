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

__all__ = ["conv_bn_pairs", "fold_batchnorm", "prepare_for_inference", "refresh_prepared"]


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
    freeze: bool = True,
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
        freeze: compile with inductor's ``freezing`` (weights folded into the code as constants: fastest, but then
            :func:`refresh_prepared` cannot update them); ``False`` for a copy that follows a training network.

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
        # frozen: weights are constants that inductor folds; unfrozen: they stay parameters (refresh_prepared)
        fast = torch.compile(fast, options={"freezing": True}) if freeze else torch.compile(fast)
    return fast


def refresh_prepared(fast: nn.Module, model: nn.Module) -> nn.Module:
    """Copy ``model``'s current weights into ``fast``, a :func:`prepare_for_inference` copy of it, in place:
    BatchNorms folded again from their running statistics (``fuse_conv_bn_weights``, the arithmetic of
    :func:`fold_batchnorm`), cast to ``fast``'s dtype. No deep copy and, for a copy compiled with ``freeze=False``,
    no recompilation: what in-training evaluation needs each time the weights have moved.

    Args:
        fast: the prepared copy (compiled or not; not one compiled with ``freeze=True``).
        model: the network it was prepared from (any mode, possibly DDP / compile-wrapped), same architecture.

    Returns:
        ``fast``.

    Raises:
        KeyError: ``fast`` was not prepared from this architecture (a tensor of ``fast`` has no source).
    """
    from torch.nn.utils.fusion import fuse_conv_bn_weights

    source = model
    for _ in range(4):  # DDP .module / torch.compile ._orig_mod wrappers
        inner = getattr(source, "module", None) or getattr(source, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            break
        source = inner
    target = getattr(fast, "_orig_mod", fast)
    mods = dict(source.named_modules())
    values = dict(source.state_dict())
    for conv_name, bn_name in conv_bn_pairs(source):
        conv, bn = mods[conv_name], mods[bn_name]
        assert bn.running_mean is not None and bn.running_var is not None
        weight, bias = fuse_conv_bn_weights(
            conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias
        )
        values[f"{conv_name}.weight"], values[f"{conv_name}.bias"] = weight, bias
    with torch.no_grad():
        for name, tensor in target.state_dict(keep_vars=True).items():
            tensor.copy_(values[name].detach())
    return fast

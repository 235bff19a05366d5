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

``test.precision=auto`` picks among these by measurement (:func:`measured_fast_path`): one small forward of a copy
of the network per candidate of :data:`FAST_PATHS`, the fastest that computes correctly and beats plain fp32 by the
training probe's margin (``bottomup.models.precision.pick_precision``), cached per machine, torch version and network.
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.ao.quantization import fuse_modules

from bottomup.models.precision import (
    MAX_RELATIVE_ERROR,
    PRECISION_DTYPES,
    autocast,
    cache_key,
    check_precision,
    native_bf16,
    pick_precision,
    read_choices,
    store_choice,
)

__all__ = [
    "conv_bn_pairs",
    "fold_batchnorm",
    "prepare_for_inference",
    "refresh_prepared",
    "FAST_PATHS",
    "fast_path_name",
    "fast_path_candidates",
    "probe_fast_paths",
    "measured_fast_path",
    "describe_fast_path",
]


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


# ---------------------------------------------------------------------------------- fast path by measurement
#: The test-time paths ``test.precision=auto`` compares, by name: ``(precision, channels_last, fold_bn)``. ``fp32`` is
#: the plain network (the official HigherHRNet arithmetic: contiguous memory, BatchNorm unfolded); unfolded
#: low-precision paths run under autocast, folded ones as a copy with the weights in that precision.
FAST_PATHS: dict[str, tuple[str, bool, bool]] = {
    "fp32": ("fp32", False, False),
    "fp32 channels_last": ("fp32", True, False),
    "fp32 channels_last folded": ("fp32", True, True),
    "bf16": ("bf16", False, False),
    "bf16 channels_last": ("bf16", True, False),
    "bf16 channels_last folded": ("bf16", True, True),
}


def fast_path_name(precision: str, channels_last: bool, fold_bn: bool) -> str:
    """The name of a path (:data:`FAST_PATHS`' keys; ``"bf16 folded"`` for one that is not among them)."""
    return " ".join([precision, *(["channels_last"] if channels_last else []), *(["folded"] if fold_bn else [])])


def fast_path_candidates(
    device: torch.device | str, *, channels_last: bool = False, fold_bn: bool = False
) -> tuple[str, ...]:
    """The paths ``auto`` compares on ``device``: the fp32 ones always, the bf16 ones where the device computes bf16
    natively (``bottomup.models.precision.native_bf16``: CUDA with bf16, CPUs with AVX512-BF16 / AMX; elsewhere it is
    emulated, several times slower, and not probed); only those with ``channels_last`` / ``fold_bn`` when these are
    asked for. The first is the exact baseline the others must beat."""
    low = native_bf16(device)
    return tuple(
        name
        for name, (precision, cl, fold) in FAST_PATHS.items()
        if (precision == "fp32" or low) and (cl or not channels_last) and (fold or not fold_bn)
    )


def _outputs(out: Any) -> list[torch.Tensor]:
    return [o.float() for o in (out if isinstance(out, (list, tuple)) else [out]) if torch.is_tensor(o)]


def probe_fast_paths(
    model: nn.Module,
    device: torch.device | str,
    *,
    candidates: tuple[str, ...] = tuple(FAST_PATHS),
    size: int = 128,
    repeats: int = 2,
) -> tuple[dict[str, float], dict[str, bool]]:
    """Time one batch-1 forward (``(1, 3, size, size)`` random input, ``torch.inference_mode``) of each candidate
    path of :data:`FAST_PATHS` on one copy of ``model``, after a warm-up forward each (the fastest of ``repeats``
    timed calls is kept: a busy machine only ever slows a call down); compare each path's outputs with the plain
    fp32 network's.

    One ``copy.deepcopy`` of ``model`` runs all paths, converted in place from one to the next (contiguous, then
    channels_last, then BatchNorm folded, then bf16 weights): ``model`` itself is not touched.

    Returns:
        ``(ms per forward by candidate, computes-correctly by candidate)``: correct is finite outputs within
        ``bottomup.models.precision.MAX_RELATIVE_ERROR`` of fp32's, relative to their norm.
    """
    device = torch.device(device)
    unknown = [c for c in candidates if c not in FAST_PATHS]
    if unknown:
        raise ValueError(f"unknown fast paths {unknown}; known: {list(FAST_PATHS)}")
    net = copy.deepcopy(model).to(device).eval().requires_grad_(False)
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0)).to(device)

    def forward(precision: str, channels_last: bool, folded: bool) -> list[torch.Tensor]:
        inp = x.contiguous(memory_format=torch.channels_last) if channels_last else x
        with torch.inference_mode():
            if folded:
                out = net(inp.to(PRECISION_DTYPES[precision]))
            else:
                with autocast(device.type, precision):
                    out = net(inp)
            outs = _outputs(out)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return outs

    reference = forward("fp32", False, False)
    timings: dict[str, float] = {}
    correct: dict[str, bool] = {}
    # the order of the in-place conversions: contiguous, channels_last, folded in fp32, folded in bf16
    order = sorted(
        candidates, key=lambda c: (FAST_PATHS[c][2], FAST_PATHS[c][1], FAST_PATHS[c][2] and FAST_PATHS[c][0] != "fp32")
    )
    for name in order:
        precision, cl, folded = FAST_PATHS[name]
        if cl:
            net = net.to(memory_format=torch.channels_last)
        if folded and any(True for _ in conv_bn_pairs(net)):
            net = fold_batchnorm(net, inplace=True)
        if folded:
            net = net.to(PRECISION_DTYPES[precision])
        outs = forward(precision, cl, folded)  # warm-up (and the outputs compared)
        times = []
        for _ in range(max(1, int(repeats))):
            start = time.perf_counter()
            forward(precision, cl, folded)
            times.append((time.perf_counter() - start) * 1e3)
        timings[name] = min(times)
        err = max(float((o - r).norm() / r.norm().clamp_min(1e-12)) for o, r in zip(outs, reference, strict=True))
        correct[name] = bool(err <= MAX_RELATIVE_ERROR) and all(bool(torch.isfinite(o).all()) for o in outs)
    return timings, correct


def measured_fast_path(
    model: nn.Module,
    device: torch.device | str,
    *,
    channels_last: bool = False,
    fold_bn: bool = False,
    size: int = 128,
    cache_file: str | os.PathLike | None = None,
    probe: Callable[[tuple[str, ...]], tuple[dict[str, float], dict[str, bool]]] | None = None,
) -> tuple[tuple[str, bool, bool], dict[str, Any]]:
    """``test.precision=auto`` by measurement: the test-time path (precision, channels_last, fold_bn) to run ``model``
    on ``device`` with.

    The cached choice for this hardware, torch version, network (class and parameter count) and candidate set, else
    :func:`probe_fast_paths` over :func:`fast_path_candidates` and the rule of training's ``auto``
    (``bottomup.models.precision.pick_precision``: the fastest correct path, if at least ``SPEEDUP_MARGIN`` times the
    exact baseline's time), cached. Test-time keys start with ``"inference"``: they never meet training's choices in
    the shared cache file.

    Args:
        model, device: the network and where it runs.
        channels_last, fold_bn: asked for explicitly (an explicit setting wins): only paths with them compete.
        size: the probe's input side, pixels (small: the probe must stay well under a second or two).
        cache_file: the JSON cache (default ``$BOTTOMUP_CACHE/precision.json``, else
            ``~/.cache/bottomup/precision.json``).
        probe: ``(candidates) -> (timings, correct)`` instead of the real probe (tests inject timings).

    Returns:
        ``((precision, channels_last, fold_bn), record)``: the record has ``path`` (the name), ``candidates``,
        ``timings_ms``, ``correct``, ``key``, ``cached`` (reused), ``probe_s`` (the probe's wall time, 0 when
        cached) for the log (:func:`describe_fast_path`).
    """
    device = torch.device(device)
    candidates = fast_path_candidates(device, channels_last=channels_last, fold_bn=fold_bn)
    key = f"{cache_key(model, device, prefix='inference')} | {','.join(candidates)}"
    cache, path = read_choices(cache_file)
    entry = cache.get(key)
    if isinstance(entry, dict) and entry.get("path") in candidates:
        return FAST_PATHS[entry["path"]], {**entry, "key": key, "cached": True, "probe_s": 0.0}
    if len(candidates) == 1:  # nothing to choose (fold_bn asked for where bf16 is not native)
        return FAST_PATHS[candidates[0]], {"path": candidates[0], "candidates": list(candidates), "timings_ms": {},
                                           "correct": {}, "key": key, "cached": False, "probe_s": 0.0}  # fmt: skip
    start = time.perf_counter()
    timings, correct = (
        probe(candidates) if probe is not None else probe_fast_paths(model, device, candidates=candidates, size=size)
    )
    probe_s = time.perf_counter() - start
    choice = pick_precision(timings, correct, baseline=candidates[0])
    record = {"path": choice, "candidates": list(candidates), "timings_ms": timings, "correct": correct, "size": size}
    store_choice(path, cache, key, record)
    return FAST_PATHS[choice], {**record, "key": key, "cached": False, "probe_s": probe_s}


def describe_fast_path(record: dict[str, Any]) -> str:
    """One line for the log: what ``auto`` picked and what it measured, e.g. ``"fp32 channels_last folded (forward
    at 128 px: fp32 52 ms, fp32 channels_last 47 ms, fp32 channels_last folded 41 ms; probe 0.6 s)"``."""
    if not record.get("timings_ms"):
        return f"{record['path']} (the only candidate on this device)"
    timings = ", ".join(
        f"{name} {ms:.0f} ms" + ("" if record.get("correct", {}).get(name, True) else " (wrong)")
        for name, ms in record.get("timings_ms", {}).items()
    )
    how = (
        "the choice cached earlier for this machine"
        if record.get("cached")
        else f"probe {record.get('probe_s', 0):.1f} s"
    )
    return f"{record['path']} (forward at {record.get('size', 128)} px: {timings}; {how})"

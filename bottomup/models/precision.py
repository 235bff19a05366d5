"""Numeric precisions: the one table of names and dtypes used by training, inference and the benchmarks.

``fp32`` runs as is (exact); ``bf16`` / ``fp16`` run the network under ``torch.autocast`` (training, the default
inference path) or with weights cast to that dtype (``bottomup.models.fast.prepare_for_inference``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from bottomup.core.precision import AUTO, PRECISIONS, check_precision

__all__ = [
    "PRECISION_DTYPES",
    "PRECISIONS",
    "AUTO",
    "check_precision",
    "native_bf16",
    "resolve_precision",
    "autocast",
    "pick_precision",
    "probe_training_precisions",
    "measured_precision",
    "cache_key",
    "read_choices",
    "store_choice",
]

#: Precision name (:data:`bottomup.core.precision.PRECISIONS`) -> dtype of the arithmetic (weights of a prepared
#: copy, autocast dtype otherwise).
PRECISION_DTYPES: dict[str, torch.dtype] = dict(
    zip(PRECISIONS, (torch.float32, torch.bfloat16, torch.float16), strict=True)
)


def native_bf16(device: torch.device | str) -> bool:
    """Whether ``device`` computes bf16 in hardware: a CUDA GPU with bf16 support (Ampere and newer), or a CPU
    with AVX512-BF16 or AMX tiles (as oneDNN uses them).

    On a CPU without them (AVX2 only, e.g. many AMD EPYC) PyTorch emulates bf16 convolutions: measured here on
    2 AVX2 cores, a W16 training step in bf16 autocast was ~8x slower than in fp32.
    """
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        cpu = torch.cpu
        return bool(
            getattr(cpu, "_is_avx512_bf16_supported", lambda: False)()
            or getattr(cpu, "_is_amx_tile_supported", lambda: False)()
        )
    return False


def resolve_precision(precision: str, device: torch.device | str, key: str = "precision") -> str:
    """``precision`` itself, or for ``"auto"`` the fastest safe choice on ``device``: ``"bf16"`` where
    :func:`native_bf16`, else ``"fp32"`` (fp16 is never picked: it needs loss scaling and overflows more easily).

    Raises:
        ValueError: a name that is neither ``"auto"`` nor in :data:`PRECISIONS` (the message names ``key``).
    """
    if precision == AUTO:
        return "bf16" if native_bf16(device) else "fp32"
    if precision not in PRECISION_DTYPES:
        raise ValueError(f"{key} must be one of {[AUTO, *PRECISIONS]}, got {precision!r}")
    return precision


def autocast(device_type: str, precision: str) -> contextlib.AbstractContextManager:
    """``torch.autocast(device_type, dtype)`` for ``bf16`` / ``fp16``; a no-op context for ``fp32``.

    Raises:
        ValueError: an unknown precision.
    """
    check_precision(precision)
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type, dtype=PRECISION_DTYPES[precision])


# ------------------------------------------------------------------------------- precision by measurement
#: ``auto`` picks a low precision only when it is at least this much faster than fp32 (time ratio): a tie within
#: the probe's noise keeps the exact arithmetic.
SPEEDUP_MARGIN = 0.9
#: A low precision computes correctly when its outputs differ from fp32's by at most this, relative to their norm.
#: bf16 autocast measured 1.5-3 % on freshly initialised quickstart / W8 / W32 / SWAHR-W32 networks at 64-128 px (bf16
#: keeps ~3 significant digits, the error grows with depth); a broken path that loses the signal gives O(1).
MAX_RELATIVE_ERROR = 0.15


def device_name(device: torch.device | str) -> str:
    """The hardware's name for the choice's cache: the GPU's (``torch.cuda.get_device_name``) or the CPU's model
    name (``/proc/cpuinfo``, else ``platform.processor()``), with the CPU's bf16 / AMX flags."""
    import platform

    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            name = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), name)
    except OSError:
        pass
    return f"{name}{' +bf16' if native_bf16(device) else ''}"


def pick_precision(
    timings_ms: dict[str, float], correct: dict[str, bool] | None = None, *, baseline: str = "fp32"
) -> str:
    """The precision ``auto`` runs, from the probe's timings: the fastest candidate that computes correctly and is at
    least :data:`SPEEDUP_MARGIN` times fp32's time; fp32 otherwise.

    The test-time probe (``bottomup.models.fast.measured_fast_path``) applies the same rule to its fast paths
    (``"fp32 channels_last folded"``, ...), with the plain path it must beat as ``baseline``.

    Args:
        timings_ms: candidate -> ms per probe step (``baseline`` must be among them; other entries: ``"bf16"``).
        correct: candidate -> whether its outputs matched fp32's (default: all did).
        baseline: the exact candidate, kept unless another is faster by the margin.

    Raises:
        ValueError: no ``baseline`` timing.
    """
    if baseline not in timings_ms:
        raise ValueError(f"pick_precision needs the {baseline} timing, got {sorted(timings_ms)}")
    best = baseline
    for name, ms in sorted(timings_ms.items(), key=lambda kv: kv[1]):
        if name == baseline or (correct or {}).get(name, True) is False:
            continue
        if ms <= SPEEDUP_MARGIN * timings_ms[baseline] and ms < timings_ms[best]:
            best = name
    return best


def probe_training_precisions(
    model: torch.nn.Module,
    device: torch.device | str,
    *,
    candidates: tuple[str, ...] = ("fp32", "bf16"),
    size: int = 128,
    repeats: int = 3,
) -> tuple[dict[str, float], dict[str, bool]]:
    """Time one training step (forward + backward, batch 1, ``(1, 3, size, size)`` random input) of ``model`` in
    each candidate precision, after one warm-up step each; compare each low precision's outputs with fp32's.

    A copy of the model runs (``copy.deepcopy``): the model's weights, BatchNorm statistics, gradients and train /
    eval mode stay as they were.

    Args:
        model: the network (on ``device``), returning a tensor or a list / tuple of tensors.
        device: where it runs. candidates: precisions to time (fp32 always). size: input side, pixels.
        repeats: timed steps per candidate (the median is kept).

    Returns:
        ``(ms per step by candidate, computes-correctly by candidate)``.
    """
    import copy
    import time

    device = torch.device(device)
    model = copy.deepcopy(model)
    names = ("fp32", *[c for c in candidates if c != "fp32"])
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0)).to(device)
    model.train()
    reference: list[torch.Tensor] = []
    timings: dict[str, float] = {}
    correct: dict[str, bool] = {}

    def step(precision: str) -> list[torch.Tensor]:
        with autocast(device.type, precision):
            out = model(x)
        outs = [o for o in (out if isinstance(out, (list, tuple)) else [out]) if torch.is_tensor(o)]
        sum(o.float().mean() for o in outs).backward()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return [o.detach().float() for o in outs]

    for name in names:
        outs = step(name)  # warm-up (and the outputs compared)
        times = []
        for _ in range(max(1, int(repeats))):
            start = time.perf_counter()
            step(name)
            times.append((time.perf_counter() - start) * 1e3)
        timings[name] = sorted(times)[len(times) // 2]
        if name == "fp32":
            reference = outs
            correct[name] = True
        else:
            err = max(float((o - r).norm() / r.norm().clamp_min(1e-12)) for o, r in zip(outs, reference, strict=True))
            correct[name] = bool(err <= MAX_RELATIVE_ERROR) and all(bool(torch.isfinite(o).all()) for o in outs)
    return timings, correct


def measured_precision(
    model: torch.nn.Module,
    device: torch.device | str,
    *,
    cache_file: str | os.PathLike | None = None,
    probe: Callable[[], tuple[dict[str, float], dict[str, bool]]] | None = None,
) -> tuple[str, dict[str, Any]]:
    """``trainer.precision=auto`` by measurement: the cached choice for this hardware, torch version and network
    (class and parameter count), else :func:`probe_training_precisions` then :func:`pick_precision`, cached.

    A CPU without native bf16 is not probed (fp32, not cached: bf16 is emulated there, ~8x slower) unless ``probe``
    is given.

    Args:
        model, device: the network and where it trains.
        cache_file: the JSON cache (default ``$BOTTOMUP_CACHE/precision.json``, else
            ``~/.cache/bottomup/precision.json``); an unreadable cache is ignored, one that cannot be written is
            skipped.
        probe: ``() -> (timings, correct)`` instead of the real probe (tests inject timings).

    Returns:
        ``(precision, record)``: the record has ``key``, ``timings_ms``, ``correct``, ``cached`` (reused) for the
        log.
    """
    device = torch.device(device)
    key = cache_key(model, device)
    cache, path = read_choices(cache_file)
    if isinstance(cache.get(key), dict) and cache[key].get("precision") in PRECISIONS:
        return str(cache[key]["precision"]), {**cache[key], "key": key, "cached": True}
    if probe is None and device.type == "cpu" and not native_bf16(device):
        return "fp32", {"precision": "fp32", "timings_ms": {}, "correct": {}, "key": key, "cached": False}
    timings, correct = probe() if probe is not None else probe_training_precisions(model, device)
    choice = pick_precision(timings, correct)
    record = {"precision": choice, "timings_ms": timings, "correct": correct}
    store_choice(path, cache, key, record)
    return choice, {**record, "key": key, "cached": False}


def cache_key(model: torch.nn.Module, device: torch.device | str, prefix: str = "") -> str:
    """The cache key of a measured choice: ``prefix``, the device and its hardware (:func:`device_name`), the torch
    version and the network (class and parameter count). Training keys have no prefix, test-time ones
    ``"inference"``, so that the two choices never share an entry."""
    device = torch.device(device)
    params = sum(p.numel() for p in model.parameters())
    key = f"{device.type} | {device_name(device)} | torch {torch.__version__} | {type(model).__name__} {params}"
    return f"{prefix} | {key}" if prefix else key


def read_choices(cache_file: str | os.PathLike | None = None) -> tuple[dict[str, Any], Path]:
    """The measured choices cached so far and the cache's path (default ``$BOTTOMUP_CACHE/precision.json``, else
    ``~/.cache/bottomup/precision.json``); an unreadable cache reads as empty."""
    import json

    path = Path(cache_file) if cache_file else _cache_dir() / "precision.json"
    try:
        cache = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        cache = {}
    return (cache if isinstance(cache, dict) else {}), path


def store_choice(path: Path, cache: dict[str, Any], key: str, record: dict[str, Any]) -> None:
    """Add ``key: record`` to the cache at ``path`` (atomic write; a cache that cannot be written is skipped)."""
    try:
        from bottomup.core.io import write_json

        write_json(path, {**cache, key: record})
    except OSError:
        pass


def _cache_dir() -> Path:
    return Path(os.environ.get("BOTTOMUP_CACHE") or Path.home() / ".cache" / "bottomup")

"""Section ``memory``: peak memory of one inference forward and of one training step, per precision."""

from __future__ import annotations

import ctypes
import gc
import re
import resource
import statistics
import sys
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from bottomup.bench.common import Result, Settings, bench_model, memory_format, sync, train_config
from bottomup.bench.train import train_step_fn
from bottomup.build import build_loss
from bottomup.models.precision import autocast

__all__ = ["measure_peak", "bench_memory"]

_MIB = 1024.0 * 1024.0


def _release_free_memory() -> None:
    """Collect garbage and give freed heap memory back to the OS (glibc ``malloc_trim``), so that the RSS
    before a measurement is the live memory only and not what earlier sections freed but malloc kept."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the RSS before may include freed memory
        pass


def _reset_peak_rss() -> bool:
    """Reset this process's peak RSS (``VmHWM``); ``False`` if the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _proc_status_kib(field_name: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="utf-8") as f:
            m = re.search(rf"^{field_name}:\s*(\d+)\s*kB", f.read(), re.MULTILINE)
        return int(m.group(1)) if m else None
    except OSError:
        return None


def _peak_rss_mib() -> float:
    hwm = _proc_status_kib("VmHWM")
    if hwm is not None:
        return hwm / 1024.0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return rss / (_MIB if sys.platform == "darwin" else 1024.0)


def measure_peak(fn: Callable[[], None], device: torch.device, repeats: int) -> tuple[list[float], dict[str, Any]]:
    """Peak memory (MiB) of ``fn`` per repeat, after one warm-up call: CUDA max allocated, or CPU peak RSS (with
    the RSS just before in ``info["rss_before_mib"]``, MiB)."""
    fn()  # warm-up: allocator caches, lazy initialisation, optimizer state
    values, info = [], {}
    for _ in range(repeats):
        if device.type == "cuda":
            sync(device)
            torch.cuda.reset_peak_memory_stats(device)
            fn()
            sync(device)
            values.append(torch.cuda.max_memory_allocated(device) / _MIB)
            info = {
                "kind": "torch.cuda.max_memory_allocated",
                "max_reserved_mib": torch.cuda.max_memory_reserved(device) / _MIB,
            }
        else:
            _release_free_memory()
            resettable = _reset_peak_rss()
            before = (_proc_status_kib("VmRSS") or 0) / 1024.0
            fn()
            values.append(_peak_rss_mib())
            info = {
                "kind": "peak RSS (VmHWM, reset per repeat after malloc_trim)"
                if resettable
                else "process max RSS (not resettable)",
                "rss_before_mib": before,
            }
    return values, info


def _rss_note(values: list[float], info: dict[str, Any]) -> str:
    if "rss_before_mib" not in info:
        return ""
    before = info["rss_before_mib"]
    return f"+{statistics.median(values) - before:.0f} MiB over the {before:.0f} MiB RSS before"


def bench_memory(s: Settings, batch: dict[str, Any] | None) -> list[Result]:
    """Peak memory (MiB) of one inference forward (batch 1) and, with ``batch``, one training step, per
    precision."""
    criterion = build_loss(train_config(s).loss)
    results = []
    cl = s.channels_last[0]
    fmt = memory_format(cl)
    for precision in s.precisions:
        model = bench_model(s).to(memory_format=fmt).eval()
        x = torch.randn(1, 3, s.size, s.size, device=s.device).contiguous(memory_format=fmt)

        def fwd(model: nn.Module = model, x: torch.Tensor = x, precision: str = precision) -> None:
            with torch.inference_mode(), autocast(s.device.type, precision):
                model(x)

        values, info = measure_peak(fwd, s.device, s.repeats)
        info.update(precision=precision, channels_last=cl, batch=1)
        results.append(Result("memory", f"inference {precision} batch 1", "MiB", values, info, _rss_note(values, info)))
        if batch is not None:
            model.train()
            step = train_step_fn(s, model, criterion, batch, precision, cl)
            n = int(batch["image"].shape[0])
            values, info = measure_peak(step, s.device, s.repeats)
            info.update(precision=precision, channels_last=cl, batch=n)
            note = _rss_note(values, info)
            results.append(Result("memory", f"train step {precision} batch {n}", "MiB", values, info, note=note))
            del step
        del model
        if s.device.type == "cuda":
            torch.cuda.empty_cache()
    return results

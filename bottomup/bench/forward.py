"""Section ``forward``: latency of one batch-1 forward, with autocast and with BatchNorm folded."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from bottomup.bench.common import Result, Settings, layout_name, memory_format, sync, time_fn
from bottomup.models.fast import prepare_for_inference
from bottomup.models.precision import PRECISION_DTYPES, autocast

__all__ = ["forward_variants", "bench_forward"]


def forward_variants(s: Settings) -> Iterator[tuple[str, bool, bool]]:
    """``(precision, channels_last, compiled)`` of every forward variant, in the table's order."""
    for precision in s.precisions:
        for cl in s.channels_last:
            for compiled in (False, True) if s.compile else (False,):
                yield precision, cl, compiled


def _time_forward(
    s: Settings, name: str, step: Callable[[], None], info: dict[str, Any], compiled: bool, note: str = ""
) -> tuple[Result, list[float]]:
    """Time one forward variant: the compiling first call (recorded in ``info``, s) when ``compiled``, then warm-up
    and repeats (ms). A failing ``torch.compile`` gives a Result without values and a note saying why; times ``[]``."""
    if compiled:
        try:
            t0 = time.perf_counter()
            step()
            sync(s.device)
        except Exception as e:  # noqa: BLE001 - report and go on with the other variants
            return Result("forward", name, "ms", [], info, note=f"torch.compile failed: {e!r}"[:200]), []
        info["first_call_s"] = time.perf_counter() - t0
        note = "; ".join(filter(None, [note, f"compile+1st call {info['first_call_s']:.1f} s"]))
    times = time_fn(step, max(s.warmup, 3) if compiled else s.warmup, s.repeats, s.device)
    return Result("forward", name, "ms", [t * 1e3 for t in times], info, note=note), times


def bench_forward(s: Settings, model: nn.Module, times_out: dict[tuple[str, bool, bool], list[float]]) -> list[Result]:
    """Forward latency (ms) of batch 1 at ``s.size`` per precision / memory format / compile, then the same for
    BatchNorm-folded copies with weights in the precision itself.

    ``times_out[(precision, channels_last, compiled)]`` receives the seconds per repeat of the autocast variants
    (used by ``flops``).
    """
    results = []
    model.eval()
    compiled_models: dict[bool, Any] = {}
    for precision, cl, compiled in forward_variants(s):
        fmt = memory_format(cl)
        model.to(memory_format=fmt)
        x = torch.randn(1, 3, s.size, s.size, device=s.device).contiguous(memory_format=fmt)
        net: Any = model
        info: dict[str, Any] = {"precision": precision, "channels_last": cl, "compiled": compiled, "batch": 1}
        name = f"{precision} {layout_name(cl)}" + (" compiled" if compiled else "")
        if compiled:
            if cl not in compiled_models:
                compiled_models[cl] = torch.compile(model)
            net = compiled_models[cl]

        def step(net: Any = net, x: torch.Tensor = x, precision: str = precision) -> None:
            with torch.inference_mode(), autocast(s.device.type, precision):
                net(x)

        result, times = _time_forward(s, name, step, info, compiled)
        results.append(result)
        if times:
            times_out[(precision, cl, compiled)] = times
    model.to(memory_format=torch.contiguous_format)
    results += _bench_forward_folded(s, model)
    return results


def _bench_forward_folded(s: Settings, model: nn.Module) -> list[Result]:
    """Forward latency (ms) of ``bottomup.models.fast.prepare_for_inference`` copies: BatchNorm folded, weights in
    the precision itself (no autocast), per precision and memory format (compiled too with ``--compile``)."""
    results = []
    for precision, cl, compiled in forward_variants(s):
        info: dict[str, Any] = {"precision": precision, "channels_last": cl, "compiled": compiled, "batch": 1}
        info["folded_bn"] = True
        name = f"{precision} {layout_name(cl)} folded" + (" compiled" if compiled else "")
        net = prepare_for_inference(model, precision=precision, channels_last=cl, compile=compiled)
        dtype = PRECISION_DTYPES[precision]
        x = torch.randn(1, 3, s.size, s.size, device=s.device, dtype=dtype).contiguous(memory_format=memory_format(cl))

        def step(net: Any = net, x: torch.Tensor = x) -> None:
            with torch.inference_mode():
                net(x)

        results.append(_time_forward(s, name, step, info, compiled, note=f"BN folded, weights in {precision}")[0])
        del net
    return results

"""Section ``train``: throughput of a full training step, and the loss curves of the precisions against fp32."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from bottomup.bench.common import Result, Settings, bench_model, layout_name, memory_format, time_fn, train_config
from bottomup.build import build_loss, build_optimizer
from bottomup.models.precision import autocast

__all__ = ["train_step_fn", "bench_train"]


def train_step_fn(
    s: Settings,
    model: nn.Module,
    criterion: nn.Module,
    batch: dict[str, Any],
    precision: str,
    cl: bool,
    losses: list[torch.Tensor] | None = None,
) -> Callable[[], None]:
    """One training step of ``model`` on ``batch`` as ``python -m bottomup.train`` takes it: autocast in
    ``precision`` (``GradScaler`` for fp16), the loss, backward, the optimiser and LR schedule of the training
    config (``conf/optim/adam.yaml``, ``conf/schedule/warmup_multistep.yaml``: Adam 1.5e-3 after a linear warm-up
    from x0.001 over 500 steps). Each call appends the loss to ``losses`` when given."""
    # The training recipe as configured, warm-up included. A fixed LR skipping the warm-up (Adam at 1e-4 or 1e-3
    # from the first step) moves the official init (weights of std 0.001) so far per step that even fp32
    # channels_last and fp32 contiguous part by 3-30 % within two steps: no curve to compare bf16 against.
    cfg = train_config(s)
    optimizer, scheduler = build_optimizer(cfg.optim, cfg.schedule, model, iters_per_epoch=1000)
    scaler = torch.amp.GradScaler(s.device.type, enabled=precision == "fp16")
    image = batch["image"].contiguous(memory_format=memory_format(cl))

    def step() -> None:
        with autocast(s.device.type, precision):
            outputs = model(image)
        parts = criterion([o.float() for o in outputs], batch["heatmaps"], batch["masks"], batch["tag_indices"])
        if losses is not None:
            losses.append(parts["loss"].detach())
        optimizer.zero_grad(set_to_none=True)
        if scaler.is_enabled():
            scaler.scale(parts["loss"]).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            parts["loss"].backward()
            optimizer.step()
        scheduler.step()

    return step


def bench_train(s: Settings, batch: dict[str, Any]) -> list[Result]:
    """Training throughput (images/s; ms/step in the info) of a full step per precision and memory format, and
    each variant's loss curve against fp32 contiguous (% max relative difference)."""
    criterion = build_loss(train_config(s).loss)
    n = int(batch["image"].shape[0])
    results = []
    curves: dict[tuple[str, bool], list[float]] = {}
    for precision in s.precisions:
        for cl in s.channels_last:
            model = bench_model(s).to(memory_format=memory_format(cl)).train()
            losses: list[torch.Tensor] = []
            step = train_step_fn(s, model, criterion, batch, precision, cl, losses)
            times = time_fn(step, s.warmup, s.repeats, s.device)
            curves[(precision, cl)] = [float(v) for v in losses]
            info = {"precision": precision, "channels_last": cl, "batch": n, "ms_per_step": [t * 1e3 for t in times]}
            info["losses"] = curves[(precision, cl)]
            results.append(
                Result(
                    "train",
                    f"{precision} {layout_name(cl)} batch {n}",
                    "images/s",
                    [n / t for t in times],
                    info,
                    note=f"median {statistics.median(times) * 1e3:.0f} ms/step",
                )
            )
            del model, step
    return results + _loss_curves(curves, n)


def _loss_curves(curves: dict[tuple[str, bool], list[float]], n: int) -> list[Result]:
    """Every variant starts from the same weights (seed 0) on the same batch, so the curves should agree; fp32
    channels_last against fp32 contiguous shows how far float rounding alone moves the curve."""
    results = []
    ref = curves.get(("fp32", False))
    for (precision, cl), curve in curves.items():
        if ref is None or (precision, cl) == ("fp32", False):
            continue
        rel = [abs(a - b) / abs(b) for a, b in zip(curve, ref, strict=True)]
        results.append(
            Result(
                "train",
                f"{precision} {layout_name(cl)} loss vs fp32 contiguous",
                "% max rel. diff",
                [100 * max(rel)],
                {
                    "precision": precision,
                    "channels_last": cl,
                    "batch": n,
                    "steps": len(rel),
                    "losses": curve,
                    "fp32_losses": ref,
                },  # fmt: skip
                note=f"over {len(rel)} steps of the training recipe (Adam, LR warm-up) on one real batch",
            )
        )
    return results

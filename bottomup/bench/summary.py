"""Section ``summary`` (only when named): the machine summary a README column is made of, for the machine it runs on.

* ``matmul probe <precision>``: GFLOP/s of a dense ``--probe-size`` square matmul (``bottomup.bench.flops``);
* ``forward <path>``: ms of one batch-1 forward of HigherHRNet-W``--width`` at ``--size`` per test-time path of
  ``bottomup.models.fast.FAST_PATHS`` (fp32, fp32 channels_last, fp32 channels_last folded, and the same in bf16),
  timed round-robin (one call of each path per round, so that a load that comes and goes touches all alike), median
  of ``--repeats`` rounds, with its speed-up over **official fp32**: the forward as the official HigherHRNet code
  runs it (``tools/valid.py``: the network in fp32, contiguous NCHW memory, BatchNorm as separate layers, no
  autocast) -- this project's ``HigherHRNet`` in that configuration, the same layers in the same order, loading the
  official weights unchanged (``bottomup.models.weights``), on the same input in the same process;
* ``auto picks``: what ``test.precision=auto`` picks on this machine (the probe run afresh, its cost in the note) and
  that path's full-size forward against official fp32; what ``trainer.precision=auto`` picks;
* ``train <network> <precision>``: images/s of a full training step (forward, loss, backward, Adam;
  ``bottomup.bench.train.train_step_fn``) of the quickstart network (``conf/experiment/quickstart.yaml``: W16, input
  160, batch 8, channels_last, as ``python -m bottomup.train experiment=quickstart`` runs it) and of
  HigherHRNet-W``--width`` at ``--size`` (batch ``--train-batch``, contiguous, as the official training), on one
  coco-mini train batch;
* ``INT8``: when the ``backends`` section ran in the same run, its per-image network times (flip test: two forwards and
  the aggregation) of ONNX Runtime / OpenVINO INT8 and the torch fast path against torch fp32 there.

The compact block ``machine summary`` after the table lists the same figures.
"""

from __future__ import annotations

import copy
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bottomup.bench.common import Result, Settings, bench_model, sync, time_fn, train_batch, train_config
from bottomup.bench.flops import matmul_probe
from bottomup.bench.train import train_step_fn
from bottomup.build import build_loss, build_model, compose
from bottomup.models.fast import FAST_PATHS, describe_fast_path, fold_batchnorm, measured_fast_path
from bottomup.models.precision import PRECISION_DTYPES, autocast, measured_precision

__all__ = ["OFFICIAL", "bench_summary"]

#: The path the official code runs: plain fp32, contiguous memory, BatchNorm unfolded.
OFFICIAL = "fp32"


def _forward_nets(s: Settings, model: nn.Module) -> dict[str, Any]:
    """Path name -> ``step()`` running one forward of that path (its own copy of ``model``)."""
    steps: dict[str, Any] = {}
    x = torch.randn(1, 3, s.size, s.size, generator=torch.Generator().manual_seed(0)).to(s.device)
    for name, (precision, cl, folded) in FAST_PATHS.items():
        if precision not in s.precisions:
            continue
        net = model if name == OFFICIAL else copy.deepcopy(model)
        net = net.eval().requires_grad_(False)
        if cl:
            net = net.to(memory_format=torch.channels_last)
        if folded:
            net = fold_batchnorm(net, inplace=True).to(PRECISION_DTYPES[precision])
        inp = x.contiguous(memory_format=torch.channels_last) if cl else x
        inp = inp.to(PRECISION_DTYPES[precision]) if folded else inp

        def step(
            net: nn.Module = net, inp: torch.Tensor = inp, precision: str = precision, folded: bool = folded
        ) -> None:
            with torch.inference_mode(), autocast(s.device.type, "fp32" if folded else precision):
                net(inp)

        steps[name] = step
    return steps


def _round_robin(s: Settings, steps: dict[str, Any]) -> dict[str, list[float]]:
    """Seconds per call of each step: ``s.warmup`` untimed calls each, then ``s.repeats`` rounds of one call each."""
    for step in steps.values():
        for _ in range(s.warmup):
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(s.repeats):
        for name, step in steps.items():
            sync(s.device)
            t0 = time.perf_counter()
            step()
            sync(s.device)
            times[name].append(time.perf_counter() - t0)
    return times


def _quickstart(s: Settings) -> tuple[nn.Module, nn.Module, Settings]:
    """The quickstart network (random weights, seed 0) and loss, and the settings of its batch (input 160, batch 8;
    64 px and batch 2 with ``--quick``)."""
    cfg = compose("train", ["experiment=quickstart"])
    torch.manual_seed(0)
    model = build_model(cfg.model, 17, pretrained=False).to(s.device)
    qs = dataclasses.replace(
        s, width=int(cfg.model.width), size=64 if s.quick else int(cfg.data.input_size),
        train_batch=2 if s.quick else int(cfg.data.batch_size),
    )  # fmt: skip
    return model, build_loss(cfg.loss), qs


def _train(s: Settings, model: nn.Module, criterion: nn.Module, precision: str, cl: bool) -> list[float]:
    batch = train_batch(s)
    model = copy.deepcopy(model).to(memory_format=torch.channels_last if cl else torch.contiguous_format).train()
    step = train_step_fn(s, model, criterion, batch, precision, cl)
    n = int(batch["image"].shape[0])
    return [n / t for t in time_fn(step, max(1, s.warmup), s.repeats, s.device)]


def bench_summary(s: Settings, model: nn.Module, earlier: list[Result]) -> tuple[list[Result], list[str]]:
    """The machine summary (see the module docstring). ``earlier``: the results of this run's sections so far (the
    ``backends`` rows give the INT8 figures). Returns the results and the compact lines printed after the table."""
    results: list[Result] = []
    lines = [f"machine summary: HigherHRNet-W{s.width} at {s.size} x {s.size}, batch 1, {s.device}, medians"]
    # matmul probe
    probes = {}
    for precision in s.precisions:
        probe = matmul_probe(s.probe_size, precision, s.device, max(1, s.warmup), max(s.repeats, 3))
        probes[precision] = statistics.median(probe)
        results.append(Result("summary", f"matmul probe {precision}", "GFLOP/s", probe, {"n": s.probe_size}))
    rates = ", ".join(f"{p} {g:.0f} GFLOP/s" for p, g in probes.items())
    lines.append(f"matmul probe (n={s.probe_size}): {rates}")
    # forward per path, against official fp32
    times = _round_robin(s, _forward_nets(s, model))
    medians = {name: statistics.median(t) * 1e3 for name, t in times.items()}
    official = medians[OFFICIAL]
    for name, t in times.items():
        ratio = official / medians[name]
        results.append(
            Result("summary", f"forward {name}", "ms", [v * 1e3 for v in t],
                   {"path": name, "speedup_vs_official_fp32": ratio},
                   note="official fp32 (contiguous, BN unfolded)" if name == OFFICIAL else f"{ratio:.2f}x official fp32")
        )  # fmt: skip
    lines.append(
        "forward ms (x official fp32 = fp32 contiguous, BN unfolded, no autocast): "
        + ", ".join(f"{name} {ms:.0f} ({official / ms:.2f}x)" for name, ms in medians.items())
    )
    # what auto picks, probed afresh
    with tempfile.TemporaryDirectory(prefix="bottomup-bench-") as tmp:
        path, record = measured_fast_path(model, s.device, cache_file=Path(tmp) / "precision.json")
        name = record["path"]
        train_choice, train_record = measured_precision(
            bench_model(s), s.device, cache_file=Path(tmp) / "precision.json"
        )
    full = medians.get(name)
    versus = f"; at full size {full:.0f} ms = {official / full:.2f}x official fp32" if full else ""
    results.append(
        Result("summary", f"auto picks: {name}", "s (probe)", [record["probe_s"]], {"record": record, "path": path},
               note=describe_fast_path(record)[:200])
    )  # fmt: skip
    why = "probed" if train_record["timings_ms"] else "no native bf16: not probed"
    lines.append(f"test.precision=auto picks {describe_fast_path(record)}{versus}")
    lines.append(f"trainer.precision=auto picks {train_choice} ({why})")
    # training images/s
    qs_model, qs_loss, qs = _quickstart(s)
    w_loss = build_loss(train_config(s).loss)
    train_lines = []
    for label, settings, net, loss, cl in (
        ("quickstart", qs, qs_model, qs_loss, True),
        (f"W{s.width}-{s.size}", s, bench_model(s), w_loss, False),
    ):
        for precision in s.precisions:
            ips = _train(settings, net, loss, precision, cl)
            n = settings.train_batch
            results.append(
                Result("summary", f"train {label} {precision} batch {n}", "images/s", ips,
                       {"network": label, "precision": precision, "batch": n, "channels_last": cl,
                        "size": settings.size})
            )  # fmt: skip
            train_lines.append(f"{label} {precision} {statistics.median(ips):.2f}")
        del net
    lines.append(
        f"training images/s (quickstart: W16, {qs.size} px, batch {qs.train_batch}, channels_last; "
        f"W{s.width}-{s.size}: batch {s.train_batch}, contiguous): " + ", ".join(train_lines)
    )
    # INT8, from the backends section of the same run
    net_ms = {
        r.name[: -len(" network")]: r.stats()["median"]
        for r in earlier
        if r.section == "backends" and r.name.endswith(" network")
    }
    if "torch fp32" in net_ms:
        base = net_ms["torch fp32"]
        lines.append(
            "per image with flip test (backends section, network part): "
            + ", ".join(f"{k} {v:.0f} ms ({base / v:.2f}x)" for k, v in net_ms.items())
        )
    else:
        lines.append("INT8: run with --only backends,summary for ONNX Runtime / OpenVINO INT8 in the same run")
    return results, lines

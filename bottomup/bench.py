"""One benchmark entry point for speed and memory: ``python -m bottomup.bench``.

Sections (``--only`` picks a subset, comma separated; all run by default):

* ``forward``: latency of one forward pass of HigherHRNet-W\\ ``--width`` on a ``(1, 3, S, S)`` input
  (``S = --size``), under ``torch.inference_mode()``, in eval mode, per precision (``fp32``; ``bf16`` autocast;
  ``fp16`` autocast on CUDA only), memory format (contiguous / channels_last) and, with ``--compile``,
  ``torch.compile`` (at least 3 warm-up calls after the compiling one). Unit: ms per forward.
* ``train``: throughput of a full training step (forward, ``bottomup.losses.AssociativeEmbeddingLoss`` on real
  targets of one coco-mini train batch, backward, ``Adam.step``) with batch ``--train-batch``, fp32 and bf16
  autocast (fp16 autocast + ``GradScaler`` on CUDA), as in ``bottomup.train``. The same batch is reused, so data
  loading is excluded (see ``data``). Unit: images/s (ms/step in the notes).
* ``data``: throughput of ``bottomup.data.KeypointDataset`` (training augmentation, input ``S``) on coco-mini
  train through a ``DataLoader`` with ``bottomup.data.collate``, per worker count (``--workers``, default
  0, 1, 2). Each repeat starts a fresh loader; the first ``max(1, --warmup)`` batches (worker start-up) are not
  timed. Unit: samples/s.
* ``grouping``: CPU ms per image of ``bottomup.grouping`` on ideal (round-trip) maps of the coco-mini val
  images (input 512 at scale 1, whatever ``--size``), with flip test off and on, split into NMS/top-k, tag
  matching and adjust+refine. Reuses the functions of ``bottomup.bench_grouping`` (the ideal maps are built
  untimed); "not available" if that module is missing.
* ``e2e``: ms per image of ``bottomup.api.PoseEstimator`` on coco-mini val image files (JPEG decode,
  resize, network, flip test off / on, aggregation, grouping, back-projection). The network has random
  weights unless ``--checkpoint`` is given; with random weights grouping finds no peaks and costs next to
  nothing, so the figure is then the network + pre/post-processing.
* ``flops``: multiply-adds of one forward (``torch.utils.flop_counter.FlopCounterMode``, cross-checked with a
  per-layer analytic count of every Conv2d / ConvTranspose2d), a dense square matmul probe (``--probe-size``)
  per precision giving the machine's attainable GFLOP/s, and the forward's achieved GFLOP/s
  (``2 * MACs / time``, from the ``forward`` section's fastest non-compiled variant of that precision, or timed
  here) with its percentage of the probe.
* ``memory``: peak memory of one inference forward (batch 1) and of one training step (batch
  ``--train-batch``) per precision. CPU: peak resident set size of this process (``VmHWM``, reset before each
  measurement through ``/proc/self/clear_refs``, after ``gc.collect()`` and glibc ``malloc_trim`` so that
  memory freed by earlier sections does not count; the RSS just before is in the note); where that is not possible, ``resource.getrusage`` max RSS,
  which cannot be reset and is then a process-lifetime maximum). CUDA: ``torch.cuda.max_memory_allocated``.
  Unit: MiB.

Every measurement is taken ``--repeats`` times after ``--warmup`` untimed runs and reported as min / median / max,
as a table on stdout and, with ``--json PATH``, as JSON. On CUDA every timing is bracketed by
``torch.cuda.synchronize()`` and ``cudnn.benchmark`` is on. ``--quick`` is a smoke test for CI (small input,
one repeat, a few images); its numbers mean nothing.

Examples::

    python -m bottomup.bench                              # everything, CPU or CUDA (auto)
    python -m bottomup.bench --only forward,flops --size 640 --width 48 --repeats 10
    python -m bottomup.bench --device cuda --compile --json bench.json
    python -m bottomup.bench --quick --json /tmp/bench.json
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import itertools
import json
import math
import os
import platform
import re
import resource
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bottomup.models.fast import PRECISION_DTYPES

__all__ = [
    "SECTIONS",
    "Result",
    "Settings",
    "machine_info",
    "time_fn",
    "count_macs",
    "matmul_probe",
    "bench_forward",
    "bench_train",
    "bench_data",
    "bench_grouping",
    "bench_e2e",
    "bench_flops",
    "bench_memory",
    "format_table",
    "main",
]

REPO = Path(__file__).resolve().parents[1]
SECTIONS: tuple[str, ...] = ("forward", "train", "data", "grouping", "e2e", "flops", "memory")
#: Sections that read coco-mini.
DATA_SECTIONS = frozenset({"train", "data", "grouping", "e2e"})
#: Published / expected multiply-adds (G MACs) of one forward, by (width, input size), 17 keypoints, strides (4, 2).
EXPECTED_GMAC: dict[tuple[int, int], float] = {(32, 512): 46.2}
_MIB = 1024.0 * 1024.0


# ---------------------------------------------------------------------------------------------- results
@dataclass
class Result:
    """One measurement: the raw values of its repeats and their min / median / max.

    Attributes:
        section: one of ``SECTIONS``.
        name: what was measured, e.g. ``"bf16 channels_last"``.
        unit: unit of ``values`` (``"ms"``, ``"images/s"``, ``"GFLOP/s"``, ``"MiB"``, ...).
        values: one value per repeat (or per image), in ``unit``.
        info: extra facts (precision, batch, percentage of the probe, ...), JSON-serialisable.
        note: short free text for the table.
    """

    section: str
    name: str
    unit: str
    values: list[float]
    info: dict[str, Any] = field(default_factory=dict)
    note: str = ""

    def stats(self) -> dict[str, float]:
        """``{"min", "median", "max", "n"}`` of ``values`` (NaN when empty)."""
        if not self.values:
            return {"min": math.nan, "median": math.nan, "max": math.nan, "n": 0}
        v = [float(x) for x in self.values]
        return {"min": min(v), "median": statistics.median(v), "max": max(v), "n": len(v)}

    def to_json(self) -> dict[str, Any]:
        """JSON record: name, unit, min, median, max, n, values, info, note."""
        return {
            "name": self.name,
            "unit": self.unit,
            **self.stats(),
            "values": [float(x) for x in self.values],
            "info": self.info,
            "note": self.note,
        }


@dataclass
class Settings:
    """Resolved command-line settings (see ``main --help``)."""

    device: torch.device
    size: int
    width: int
    repeats: int
    warmup: int
    train_batch: int
    precisions: list[str]
    channels_last: list[bool]
    compile: bool
    workers: list[int]
    data_batch: int
    data_batches: int
    grouping_images: int | None
    e2e_images: int
    probe_size: int
    data_root: Path | None
    checkpoint: str | None
    experiment: str | None
    quick: bool

    def to_json(self) -> dict[str, Any]:
        """JSON-serialisable copy."""
        out = dict(self.__dict__)
        out["device"] = str(self.device)
        out["data_root"] = str(self.data_root) if self.data_root is not None else None
        return out


# ---------------------------------------------------------------------------------------------- machine
def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def machine_info(device: torch.device) -> dict[str, Any]:
    """Describe the machine: CPU model, cores, bf16 support, torch version and threads, GPU if used."""
    flags = _cpu_flags()
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count() or 0
    info: dict[str, Any] = {
        "cpu": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": usable,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_bf16_flags": sorted(flags & {"avx512_bf16", "amx_bf16", "amx_tile", "avx512_vnni", "avx512f"}),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "device": str(device),
    }
    try:
        import cv2

        info["opencv"] = cv2.__version__
    except ImportError:  # pragma: no cover - a dependency
        pass
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(
            gpu=props.name,
            gpu_memory_gib=round(props.total_memory / 1024**3, 1),
            cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
            cudnn_allow_tf32=torch.backends.cudnn.allow_tf32,
            matmul_allow_tf32=torch.backends.cuda.matmul.allow_tf32,
        )
    return info


# ---------------------------------------------------------------------------------------------- helpers
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_fn(fn: Callable[[], Any], warmup: int, repeats: int, device: torch.device) -> list[float]:
    """Run ``fn`` ``warmup`` times untimed, then time ``repeats`` calls; seconds per call.

    On CUDA the device is synchronised before and after each timed call.
    """
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return times


def _autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=PRECISION_DTYPES[precision])


def _memory_format(channels_last: bool) -> torch.memory_format:
    return torch.channels_last if channels_last else torch.contiguous_format


def _layout_name(channels_last: bool) -> str:
    return "channels_last" if channels_last else "contiguous"


def build_model(width: int, device: torch.device, num_keypoints: int = 17) -> nn.Module:
    """HigherHRNet-W``width`` (strides 4 and 2, tag dim 1) with its official random initialisation, on ``device``."""
    from bottomup.models import HigherHRNet

    torch.manual_seed(0)
    return HigherHRNet(width=width, num_keypoints=num_keypoints).to(device)


def _coco_layout() -> Any:
    """COCO ``KeypointLayout`` from ``conf/data/coco.yaml``."""
    from bottomup.keypoints import KeypointLayout

    return KeypointLayout.from_config(REPO / "conf" / "data" / "coco.yaml")


def _train_dataset(s: Settings) -> Any:
    """coco-mini train ``KeypointDataset`` with the official training augmentation (``conf/data/coco.yaml``)."""
    from omegaconf import OmegaConf

    from bottomup.train import build_train_dataset

    assert s.data_root is not None
    cfg = OmegaConf.create({"data": OmegaConf.load(REPO / "conf" / "data" / "coco.yaml")})
    cfg.data.root = str(s.data_root)
    cfg.data.input_size = s.size
    return build_train_dataset(cfg.data, (4, 2), train=True, seed=0)


def _train_batch(s: Settings) -> dict[str, Any]:
    """One deterministic augmented coco-mini train batch of ``s.train_batch`` samples, on ``s.device``."""
    from bottomup.data import collate

    dataset = _train_dataset(s)
    samples = [dataset[(i % len(dataset), 0)] for i in range(s.train_batch)]
    batch = collate(samples)
    if batch is None:
        raise RuntimeError(f"no readable image among the first {s.train_batch} coco-mini train images")
    dev = s.device
    return {
        "image": batch["image"].to(dev),
        "heatmaps": [h.to(dev) for h in batch["heatmaps"]],
        "masks": [m.to(dev) for m in batch["masks"]],
        "tag_indices": batch["tag_indices"].to(dev),
    }


def _val_images(data_root: Path) -> list[Path]:
    """coco-mini val image files, sorted by name."""
    files = sorted((data_root / "val2017").glob("*.jpg"))
    if not files:
        raise FileNotFoundError(f"no .jpg images in {data_root / 'val2017'}")
    return files


# ---------------------------------------------------------------------------------------------- forward
def _forward_variants(s: Settings) -> Iterator[tuple[str, bool, bool]]:
    for precision in s.precisions:
        for cl in s.channels_last:
            for compiled in (False, True) if s.compile else (False,):
                yield precision, cl, compiled


def _time_forward(
    s: Settings, name: str, step: Callable[[], None], info: dict[str, Any], compiled: bool, note: str = ""
) -> tuple[Result, list[float]]:
    """Time one forward variant: the compiling first call (recorded in ``info``) when ``compiled``, then warm-up
    and repeats. A failing ``torch.compile`` gives a Result without values and a note saying why; times ``[]``."""
    if compiled:
        try:
            t0 = time.perf_counter()
            step()
            _sync(s.device)
        except Exception as e:  # noqa: BLE001 - report and go on with the other variants
            return Result("forward", name, "ms", [], info, note=f"torch.compile failed: {e!r}"[:200]), []
        info["first_call_s"] = time.perf_counter() - t0
        note = "; ".join(filter(None, [note, f"compile+1st call {info['first_call_s']:.1f} s"]))
    times = time_fn(step, max(s.warmup, 3) if compiled else s.warmup, s.repeats, s.device)
    return Result("forward", name, "ms", [t * 1e3 for t in times], info, note=note), times


def bench_forward(s: Settings, model: nn.Module, times_out: dict[tuple[str, bool, bool], list[float]]) -> list[Result]:
    """Forward latency (ms) of batch 1 at ``s.size`` per precision / memory format / compile.

    ``times_out[(precision, channels_last, compiled)]`` receives the seconds per repeat (used by ``flops``).
    """
    results = []
    model.eval()
    compiled_models: dict[bool, Any] = {}
    for precision, cl, compiled in _forward_variants(s):
        fmt = _memory_format(cl)
        model.to(memory_format=fmt)
        x = torch.randn(1, 3, s.size, s.size, device=s.device).contiguous(memory_format=fmt)
        net: Any = model
        info: dict[str, Any] = {"precision": precision, "channels_last": cl, "compiled": compiled, "batch": 1}
        name = f"{precision} {_layout_name(cl)}" + (" compiled" if compiled else "")
        if compiled:
            if cl not in compiled_models:
                compiled_models[cl] = torch.compile(model)
            net = compiled_models[cl]

        def step(net: Any = net, x: torch.Tensor = x, precision: str = precision) -> None:
            with torch.inference_mode(), _autocast(s.device, precision):
                net(x)

        result, times = _time_forward(s, name, step, info, compiled)
        results.append(result)
        if times:
            times_out[(precision, cl, compiled)] = times
    model.to(memory_format=torch.contiguous_format)
    results += _bench_forward_folded(s, model)
    return results


def _bench_forward_folded(s: Settings, model: nn.Module) -> list[Result]:
    """Forward latency of ``bottomup.models.fast.prepare_for_inference`` copies: BatchNorm folded, weights in the
    precision itself (no autocast), per precision and memory format (compiled too with ``--compile``)."""
    from bottomup.models.fast import prepare_for_inference

    results = []
    for precision, cl, compiled in _forward_variants(s):
        info: dict[str, Any] = {"precision": precision, "channels_last": cl, "compiled": compiled, "batch": 1}
        info["folded_bn"] = True
        name = f"{precision} {_layout_name(cl)} folded" + (" compiled" if compiled else "")
        net = prepare_for_inference(model, precision=precision, channels_last=cl, compile=compiled)
        dtype = PRECISION_DTYPES[precision]
        x = torch.randn(1, 3, s.size, s.size, device=s.device, dtype=dtype).contiguous(memory_format=_memory_format(cl))

        def step(net: Any = net, x: torch.Tensor = x) -> None:
            with torch.inference_mode():
                net(x)

        results.append(_time_forward(s, name, step, info, compiled, note=f"BN folded, weights in {precision}")[0])
        del net
    return results


# ---------------------------------------------------------------------------------------------- train
def _training_recipe(params: Any) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """The optimiser and LR schedule ``python -m bottomup.train`` uses (``conf/optim/adam.yaml``,
    ``conf/schedule/warmup_multistep.yaml``): Adam 1.5e-3 after a linear warm-up from x0.001 over 500 steps."""
    from omegaconf import OmegaConf

    from bottomup.train import build_optimizer

    conf = REPO / "conf"
    optim, schedule = (
        OmegaConf.load(conf / "optim" / "adam.yaml"),
        OmegaConf.load(conf / "schedule" / "warmup_multistep.yaml"),
    )
    return build_optimizer(optim, schedule, params, iters_per_epoch=1000)


def _train_step_fn(
    model: nn.Module,
    criterion: nn.Module,
    batch: dict[str, Any],
    device: torch.device,
    precision: str,
    cl: bool,
    losses: list[torch.Tensor] | None = None,
) -> Callable[[], None]:
    # The training recipe as configured, warm-up included. A fixed LR skipping the warm-up (Adam at 1e-4 or 1e-3
    # from the first step) moves the official init (weights of std 0.001) so far per step that even fp32
    # channels_last and fp32 contiguous part by 3-30 % within two steps: no curve to compare bf16 against.
    optimizer, scheduler = _training_recipe(model.parameters())
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    image = batch["image"].contiguous(memory_format=_memory_format(cl))

    def step() -> None:
        with _autocast(device, precision):
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
    """Training throughput (images/s) of a full step per precision and memory format."""
    from bottomup.losses import AssociativeEmbeddingLoss

    criterion = AssociativeEmbeddingLoss(num_keypoints=17)
    n = int(batch["image"].shape[0])
    results = []
    curves: dict[tuple[str, bool], list[float]] = {}
    for precision in s.precisions:
        for cl in s.channels_last:
            model = build_model(s.width, s.device).to(memory_format=_memory_format(cl)).train()
            losses: list[torch.Tensor] = []
            step = _train_step_fn(model, criterion, batch, s.device, precision, cl, losses)
            times = time_fn(step, s.warmup, s.repeats, s.device)
            curves[(precision, cl)] = [float(v) for v in losses]
            info = {"precision": precision, "channels_last": cl, "batch": n, "ms_per_step": [t * 1e3 for t in times]}
            info["losses"] = curves[(precision, cl)]
            results.append(
                Result(
                    "train",
                    f"{precision} {_layout_name(cl)} batch {n}",
                    "images/s",
                    [n / t for t in times],
                    info,
                    note=f"median {statistics.median(times) * 1e3:.0f} ms/step",
                )
            )
            del model, step
    # Loss curves: every variant starts from the same weights (seed 0) on the same batch, so they should agree;
    # fp32 channels_last against fp32 contiguous shows how far float rounding alone moves the curve.
    ref = curves.get(("fp32", False))
    for (precision, cl), curve in curves.items():
        if ref is None or (precision, cl) == ("fp32", False):
            continue
        rel = [abs(a - b) / abs(b) for a, b in zip(curve, ref, strict=True)]
        results.append(
            Result(
                "train",
                f"{precision} {_layout_name(cl)} loss vs fp32 contiguous",
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


# ---------------------------------------------------------------------------------------------- data
def bench_data(s: Settings) -> list[Result]:
    """Samples/s of the augmented training pipeline through a DataLoader, per worker count."""
    from torch.utils.data import DataLoader

    from bottomup.data import collate

    dataset = _train_dataset(s)
    warm = max(1, s.warmup)
    batches = max(1, min(s.data_batches, len(dataset) // s.data_batch - warm))
    results = []
    for workers in s.workers:
        rates = []
        for rep in range(s.repeats):
            torch.manual_seed(rep)
            loader = DataLoader(
                dataset,
                batch_size=s.data_batch,
                shuffle=True,
                num_workers=workers,
                collate_fn=collate,
                drop_last=True,
            )
            it = iter(loader)
            for _ in range(warm):  # includes the workers' start-up
                next(it)
            t0 = time.perf_counter()
            samples = 0
            for _ in range(batches):
                b = next(it)
                samples += int(b["image"].shape[0]) if b is not None else 0
            rates.append(samples / (time.perf_counter() - t0))
            del it, loader
        info = {"workers": workers, "batch": s.data_batch, "timed_batches": batches, "input_size": s.size}
        results.append(
            Result(
                "data",
                f"{workers} worker{'s' if workers != 1 else ''}",
                "samples/s",
                rates,
                info,
                note=f"batch {s.data_batch} x {batches}, {1e3 / statistics.median(rates):.0f} ms/sample",
            )
        )
    return results


# ---------------------------------------------------------------------------------------------- grouping
def bench_grouping(s: Settings) -> list[Result]:
    """Grouping ms per image on ideal coco-mini val maps (flip off / on), per step, via ``bench_grouping``.

    Per image the median over ``s.repeats`` runs is kept; min / median / max are over images.

    Raises:
        ImportError / AttributeError: ``bottomup.bench_grouping`` (or what it needs) is not available.
    """
    from bottomup import bench_grouping as bg

    for attr in ("coco_layout", "iter_ideal_cases", "_maps", "_fast_timed"):
        if not hasattr(bg, attr):
            raise AttributeError(f"bottomup.bench_grouping has no {attr}()")
    assert s.data_root is not None
    layout = bg.coco_layout()
    order = list(layout.joint_order_index)
    results = []
    steps = ("nms_topk", "match", "adjust_refine")
    labels = {"nms_topk": "NMS/top-k", "match": "matching", "adjust_refine": "adjust+refine", "total": "total"}
    for flip in (False, True):
        per_image: dict[str, list[float]] = {k: [] for k in (*steps, "total")}
        people = []
        shape = None
        for i, (_, per_scale, tf) in enumerate(bg.iter_ideal_cases(s.data_root, layout, flip, s.grouping_images)):
            det, tag = bg._maps(per_scale, tf, layout)
            shape = tuple(det.shape)
            if i == 0:
                for _ in range(s.warmup):
                    bg._fast_timed(det, tag, order, {})
            reps: dict[str, list[float]] = {k: [] for k in per_image}
            for _ in range(s.repeats):
                t: dict[str, float] = {}
                t0 = time.perf_counter()
                kp, _ = bg._fast_timed(det, tag, order, t)
                reps["total"].append(time.perf_counter() - t0)
                for k in steps:
                    reps[k].append(t.get(k, math.nan))
            people.append(int(np.asarray(kp).shape[0]))
            for k, v in reps.items():
                per_image[k].append(statistics.median(v) * 1e3)
        info = {"flip": flip, "images": len(people), "map_shape_last": shape, "mean_people": float(np.mean(people))}
        for k in (*steps, "total"):
            results.append(
                Result(
                    "grouping",
                    f"flip {'on' if flip else 'off'}: {labels[k]}",
                    "ms/image",
                    per_image[k],
                    dict(info, step=k),
                    note=f"{len(people)} images, {np.mean(people):.1f} people/img" if k == "total" else "",
                )
            )
        # Most coco-mini val images have no annotated person, so the median above is mostly empty maps.
        busy = [t for t, n in zip(per_image["total"], people, strict=True) if n > 0]
        if busy:
            results.append(
                Result(
                    "grouping",
                    f"flip {'on' if flip else 'off'}: total, images with people",
                    "ms/image",
                    busy,
                    dict(info, step="total", images=len(busy)),
                    note=f"{len(busy)} images, {np.mean([n for n in people if n > 0]):.1f} people/img",
                )
            )
    return results


# ---------------------------------------------------------------------------------------------- e2e
def _input_size(path: Path, size: int) -> tuple[int, int]:
    """Network input ``(width, height)`` px for the image file at scale 1 (``inference.resize_transform``)."""
    import cv2

    from bottomup.inference import resize_transform

    image = cv2.imread(str(path))
    if image is None:
        raise FileNotFoundError(f"cannot read image {path}")
    w, h = resize_transform(image.shape[0], image.shape[1], size, 1.0, 1.0).size
    return int(w), int(h)


def bench_e2e(s: Settings, model: nn.Module | None) -> list[Result]:
    """``PoseEstimator`` ms per val image file, flip test off / on (random weights unless ``s.checkpoint``).

    Raises:
        ImportError: ``bottomup.api`` is not available.
    """
    from bottomup.api import PoseEstimator

    assert s.data_root is not None
    files = _val_images(s.data_root)[: s.e2e_images]
    # Network input (width, height) per image at scale 1: the short side becomes s.size, the long side a multiple
    # of 64, so a forward pass costs (w * h) / s.size**2 times the square one.
    sizes = [_input_size(f, s.size) for f in files]
    area = statistics.median(w * h / s.size**2 for w, h in sizes)
    results = []
    paths: list[tuple[str, dict[str, Any]]] = [("fp32", {})]
    for precision in s.precisions:
        if precision != "fp32":
            paths.append((f"{precision} channels_last folded", {"precision": precision, "channels_last": True}))
            paths[-1][1]["fold_bn"] = True
    for (path, fast), flip in itertools.product(paths, (False, True)):
        if s.checkpoint:
            est = PoseEstimator.from_checkpoint(
                s.checkpoint, experiment=s.experiment, device=s.device, input_size=s.size, flip_test=flip, **fast
            )
        else:
            assert model is not None
            est = PoseEstimator(
                model, layout=_coco_layout(), input_size=s.size, flip_test=flip, device=s.device, **fast
            )
        for _ in range(s.warmup):
            est(files[0])
        times, people = [], []
        for f in files:
            _sync(s.device)
            t0 = time.perf_counter()
            pred = est(f)
            _sync(s.device)
            times.append(time.perf_counter() - t0)
            people.append(len(pred))
        weights = "checkpoint" if s.checkpoint else "random weights"
        results.append(
            Result(
                "e2e",
                f"{path} flip {'on' if flip else 'off'}",
                "ms/image",
                [t * 1e3 for t in times],
                {
                    "flip": flip,
                    "images": len(files),
                    "mean_people": float(np.mean(people)),
                    "weights": weights,
                    "input_sizes": sizes,
                    **fast,
                },
                note=f"{len(files)} images, {weights}, {np.mean(people):.1f} people/img, "
                f"median input {area:.2f}x the {s.size}x{s.size} area",
            )
        )
    return results


# ---------------------------------------------------------------------------------------------- flops
def _analytic_macs(model: nn.Module, x: torch.Tensor) -> tuple[int, int, list[tuple[nn.ConvTranspose2d, tuple]]]:
    """Multiply-adds of every Conv2d / ConvTranspose2d in one forward: ``(conv, transposed, deconv inputs)``.

    Conv2d: ``N * Cout * Hout * Wout * Cin / groups * kh * kw``. ConvTranspose2d: every input pixel is
    multiplied by the whole kernel, ``N * Cin * Hin * Win * Cout / groups * kh * kw`` (the products that
    fall into the cropped padding are counted too, as FlopCounterMode does).
    """
    counts = {"conv": 0, "deconv": 0}
    deconvs: list[tuple[nn.ConvTranspose2d, tuple]] = []

    def hook(mod: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        kh, kw = mod.kernel_size
        if isinstance(mod, nn.ConvTranspose2d):
            n, _, h, w = inputs[0].shape
            counts["deconv"] += n * h * w * mod.in_channels * mod.out_channels // mod.groups * kh * kw
            deconvs.append((mod, tuple(inputs[0].shape)))
        else:
            n, _, h, w = output.shape
            counts["conv"] += n * h * w * mod.out_channels * mod.in_channels // mod.groups * kh * kw

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    try:
        with torch.inference_mode():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return counts["conv"], counts["deconv"], deconvs


def count_macs(model: nn.Module, size: int, device: torch.device) -> dict[str, float]:
    """Multiply-adds (MACs) of one batch-1 forward at ``size x size``.

    Returns:
        dict with ``flop_counter`` (FlopCounterMode FLOPs / 2), ``analytic`` (per-layer conv count),
        ``analytic_conv``, ``analytic_transposed``, ``flop_counter_transposed`` (FlopCounterMode on the
        transposed convolutions alone, with their real input shapes), all in MACs.
    """
    from torch.utils.flop_counter import FlopCounterMode

    model.eval()
    x = torch.zeros(1, 3, size, size, device=device)
    with torch.inference_mode(), FlopCounterMode(display=False) as fc:
        model(x)
    conv, deconv, deconvs = _analytic_macs(model, x)
    fc_deconv = 0
    for mod, shape in deconvs:
        with torch.inference_mode(), FlopCounterMode(display=False) as fcd:
            mod(torch.zeros(shape, device=device))
        fc_deconv += fcd.get_total_flops()
    return {
        "flop_counter": fc.get_total_flops() / 2,
        "analytic": float(conv + deconv),
        "analytic_conv": float(conv),
        "analytic_transposed": float(deconv),
        "flop_counter_transposed": fc_deconv / 2,
    }


def matmul_probe(n: int, precision: str, device: torch.device, warmup: int, repeats: int) -> list[float]:
    """GFLOP/s of an ``n x n @ n x n`` matmul in ``precision`` (``2 n^3`` FLOPs), one value per repeat.

    On CUDA the fp32 probe uses TF32 exactly when cuDNN convolutions do (``cudnn.allow_tf32``), so that it is
    the ceiling of the same arithmetic as the fp32 forward.
    """
    gen = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(device=device, dtype=PRECISION_DTYPES[precision])
    b = torch.randn(n, n, generator=gen).to(device=device, dtype=PRECISION_DTYPES[precision])
    ctx: contextlib.AbstractContextManager = contextlib.nullcontext()
    if device.type == "cuda" and precision == "fp32":
        ctx = _tf32_matmul(torch.backends.cudnn.allow_tf32)
    with ctx, torch.inference_mode():
        times = time_fn(lambda: torch.mm(a, b), warmup, repeats, device)
    return [2.0 * n**3 / t / 1e9 for t in times]


@contextlib.contextmanager
def _tf32_matmul(enabled: bool) -> Iterator[None]:
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old


def bench_flops(
    s: Settings, model: nn.Module, forward_times: dict[tuple[str, bool, bool], list[float]]
) -> tuple[list[Result], list[str]]:
    """MAC count, matmul probe and achieved forward GFLOP/s per precision. Returns results and notes."""
    macs = count_macs(model, s.size, s.device)
    gmac = macs["flop_counter"] / 1e9
    notes = [
        f"forward MACs at {s.size}x{s.size}, W{s.width}: FlopCounterMode {gmac:.2f} G, analytic {macs['analytic'] / 1e9:.2f} G "
        f"(conv {macs['analytic_conv'] / 1e9:.2f} + transposed conv {macs['analytic_transposed'] / 1e9:.3f}); "
        f"FlopCounterMode on the transposed convs alone: {macs['flop_counter_transposed'] / 1e9:.3f} G "
        + (
            "(= Cin*Cout*k*k*Hin*Win: counted properly)"
            if math.isclose(macs["flop_counter_transposed"], macs["analytic_transposed"], rel_tol=1e-6)
            else "(differs from Cin*Cout*k*k*Hin*Win!)"
        )
    ]
    expected = EXPECTED_GMAC.get((s.width, s.size))
    if expected is not None:
        ok = abs(gmac - expected) / expected < 0.01
        notes.append(f"expected ~{expected} G MACs for W{s.width}-{s.size}: {'matches' if ok else 'DIFFERS'}")
    results = [
        Result("flops", "forward MACs (FlopCounterMode)", "GMAC", [gmac], {"macs": macs}),
        Result("flops", "forward MACs (analytic)", "GMAC", [macs["analytic"] / 1e9], {}),
    ]
    for precision in s.precisions:
        probe = matmul_probe(s.probe_size, precision, s.device, max(1, s.warmup), max(s.repeats, 3))
        results.append(
            Result("flops", f"matmul probe {precision} n={s.probe_size}", "GFLOP/s", probe, {"precision": precision})
        )
        # The compute floor: no forward pass can beat its MACs done at the dense-matmul rate of the same machine.
        floor = [2.0 * macs["flop_counter"] / (g * 1e9) * 1e3 for g in probe]
        results.append(
            Result(
                "flops",
                f"forward floor {precision} at the probe's rate",
                "ms",
                floor,
                {"precision": precision},
                note=f"{2 * gmac:.1f} GFLOP at the {precision} matmul probe's GFLOP/s",
            )
        )
        candidates = {k: v for k, v in forward_times.items() if k[0] == precision and not k[2] and v}
        if candidates:
            key = min(candidates, key=lambda k: statistics.median(candidates[k]))
            times = candidates[key]
            source = f"forward section, {_layout_name(key[1])}"
        else:
            fmt = _memory_format(False)
            x = torch.randn(1, 3, s.size, s.size, device=s.device).contiguous(memory_format=fmt)

            def step(precision: str = precision, x: torch.Tensor = x) -> None:
                with torch.inference_mode(), _autocast(s.device, precision):
                    model(x)

            times = time_fn(step, s.warmup, s.repeats, s.device)
            source = "timed here, contiguous"
        achieved = [2.0 * macs["flop_counter"] / t / 1e9 for t in times]
        pct = 100.0 * statistics.median(achieved) / statistics.median(probe)
        results.append(
            Result(
                "flops",
                f"forward {precision}",
                "GFLOP/s",
                achieved,
                {"precision": precision, "source": source, "pct_of_probe": pct},
                note=f"{pct:.0f}% of the {precision} matmul probe ({source})",
            )
        )
    return results, notes


# ---------------------------------------------------------------------------------------------- memory
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


def _measure_peak(fn: Callable[[], None], device: torch.device, repeats: int) -> tuple[list[float], dict[str, Any]]:
    """Peak memory (MiB) of ``fn`` per repeat: CUDA max allocated, or CPU peak RSS."""
    fn()  # warm-up: allocator caches, lazy initialisation, optimizer state
    values, info = [], {}
    for _ in range(repeats):
        if device.type == "cuda":
            _sync(device)
            torch.cuda.reset_peak_memory_stats(device)
            fn()
            _sync(device)
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
    """Peak memory of one inference forward (batch 1) and, with ``batch``, one training step, per precision."""
    from bottomup.losses import AssociativeEmbeddingLoss

    results = []
    cl = s.channels_last[0]
    fmt = _memory_format(cl)
    for precision in s.precisions:
        model = build_model(s.width, s.device).to(memory_format=fmt).eval()
        x = torch.randn(1, 3, s.size, s.size, device=s.device).contiguous(memory_format=fmt)

        def fwd(model: nn.Module = model, x: torch.Tensor = x, precision: str = precision) -> None:
            with torch.inference_mode(), _autocast(s.device, precision):
                model(x)

        values, info = _measure_peak(fwd, s.device, s.repeats)
        info.update(precision=precision, channels_last=cl, batch=1)
        note = _rss_note(values, info)
        results.append(Result("memory", f"inference {precision} batch 1", "MiB", values, info, note=note))
        if batch is not None:
            model.train()
            step = _train_step_fn(model, AssociativeEmbeddingLoss(num_keypoints=17), batch, s.device, precision, cl)
            n = int(batch["image"].shape[0])
            values, info = _measure_peak(step, s.device, s.repeats)
            info.update(precision=precision, channels_last=cl, batch=n)
            note = _rss_note(values, info)
            results.append(Result("memory", f"train step {precision} batch {n}", "MiB", values, info, note=note))
            del step
        del model
        if s.device.type == "cuda":
            torch.cuda.empty_cache()
    return results


# ---------------------------------------------------------------------------------------------- output
def _fmt(v: float) -> str:
    if math.isnan(v):
        return "-"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.3g}"


def format_table(results: Sequence[Result]) -> str:
    """Fixed-width table: section, measurement, unit, min, median, max, n, note."""
    header = ("section", "measurement", "unit", "min", "median", "max", "n", "note")
    rows = [header]
    for r in results:
        st = r.stats()
        rows.append(
            (r.section, r.name, r.unit, _fmt(st["min"]), _fmt(st["median"]), _fmt(st["max"]), str(st["n"]), r.note)
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    lines = []
    for j, row in enumerate(rows):
        cells = [
            c.rjust(w) if 3 <= i <= 6 and j else c.ljust(w)
            for i, (c, w) in enumerate(zip(row[:-1], widths, strict=True))
        ]
        lines.append("  ".join(cells) + "  " + row[-1])
        if j == 0:
            lines.append("-" * len(lines[0]))
    return "\n".join(line.rstrip() for line in lines)


# ---------------------------------------------------------------------------------------------- CLI
def _default_data_root() -> Path:
    env = os.environ.get("BOTTOMUP_TEST_DATA")
    if env:
        return Path(env) / "coco-mini"
    return REPO.parent / "shared" / "data" / "coco-mini"


def _int_list(text: str) -> list[int]:
    return [int(t) for t in text.split(",") if t.strip()]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bottomup.bench",
        description="Speed / memory benchmark: forward latency, training and data throughput, grouping, "
        "end-to-end inference, FLOP/s against a matmul probe, peak memory.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated sections out of {','.join(SECTIONS)}")
    p.add_argument("--size", type=int, default=None, help="square input side (default 512; 64 with --quick)")
    p.add_argument("--width", type=int, default=32, help="HRNet width (32 = W32, 48 = W48)")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats (default 5; 1 with --quick)")
    p.add_argument("--warmup", type=int, default=None, help="untimed warm-up runs (default 2; 1 with --quick)")
    p.add_argument("--train-batch", type=int, default=None, help="training batch (default 2 on CPU, 12 on CUDA)")
    p.add_argument(
        "--precisions", default=None, help="comma-separated out of fp32,bf16,fp16 (default fp32,bf16 (+fp16 on CUDA))"
    )
    p.add_argument(
        "--channels-last",
        choices=("off", "on", "both"),
        default=None,
        help="memory format(s) for forward / train (default both; off with --quick)",
    )
    p.add_argument("--compile", action="store_true", help="also time torch.compile'd forwards")
    p.add_argument("--workers", default="0,1,2", help="DataLoader worker counts for the data section")
    p.add_argument("--data-batch", type=int, default=None, help="DataLoader batch (default 4; 2 with --quick)")
    p.add_argument(
        "--data-batches", type=int, default=None, help="timed batches per repeat (default 8; 1 with --quick)"
    )
    p.add_argument(
        "--grouping-images", type=int, default=None, help="val images for grouping (default all; 2 with --quick)"
    )
    p.add_argument("--e2e-images", type=int, default=None, help="val images for e2e (default 8; 1 with --quick)")
    p.add_argument("--probe-size", type=int, default=None, help="matmul probe side (default 2048 CPU / 8192 CUDA)")
    p.add_argument("--data-root", type=Path, default=None, help=f"coco-mini folder (default {_default_data_root()})")
    p.add_argument("--checkpoint", default=None, help="weights for the e2e section (project .pt or official .pth)")
    p.add_argument("--experiment", default=None, help="conf/experiment name for an official --checkpoint")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--quick", action="store_true", help="CI smoke test: tiny input, 1 repeat, few images")
    p.add_argument("--json", type=Path, default=None, help="also write the results as JSON here")
    return p


def _resolve(args: argparse.Namespace) -> tuple[Settings, list[str]]:
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda but torch.cuda.is_available() is False")
    device = torch.device(
        "cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()) else "cpu"
    )
    sections = [t.strip() for t in args.only.split(",") if t.strip()]
    unknown = [t for t in sections if t not in SECTIONS]
    if unknown or not sections:
        raise SystemExit(f"error: --only {args.only!r}: unknown section(s) {unknown}; choose from {','.join(SECTIONS)}")
    q = args.quick
    cuda = device.type == "cuda"
    precisions = (
        [t.strip() for t in args.precisions.split(",") if t.strip()]
        if args.precisions
        else ["fp32", "bf16"] + (["fp16"] if cuda else [])
    )
    bad = [p for p in precisions if p not in PRECISION_DTYPES]
    if bad:
        raise SystemExit(f"error: --precisions: unknown {bad}; choose from fp32,bf16,fp16")
    if "fp16" in precisions and not cuda:
        print("note: fp16 autocast is benchmarked on CUDA only; dropping fp16 on CPU")
        precisions = [p for p in precisions if p != "fp16"]
    size = args.size if args.size is not None else (64 if q else 512)
    if size <= 0 or size % 32:
        raise SystemExit(f"error: --size {size} must be a positive multiple of 32")
    data_root = args.data_root if args.data_root is not None else _default_data_root()
    if any(sec in DATA_SECTIONS for sec in sections):
        needed = [
            data_root / "annotations" / "person_keypoints_train2017.json",
            data_root / "annotations" / "person_keypoints_val2017.json",
            data_root / "train2017",
            data_root / "val2017",
        ]
        missing = [str(p) for p in needed if not p.exists()]
        if missing:
            raise SystemExit(
                f"error: coco-mini not found at {data_root} (missing {missing}). Pass --data-root, set "
                "BOTTOMUP_TEST_DATA to the shared data/ folder, or leave out the data sections with "
                "--only forward,flops,memory"
            )
    s = Settings(
        device=device,
        size=size,
        width=args.width,
        repeats=max(1, args.repeats if args.repeats is not None else (1 if q else 5)),
        warmup=max(0, args.warmup if args.warmup is not None else (1 if q else 2)),
        train_batch=args.train_batch if args.train_batch is not None else (12 if cuda else 2),
        precisions=precisions,
        channels_last={"off": [False], "on": [True], "both": [False, True]}[
            args.channels_last or ("off" if q else "both")
        ],
        compile=args.compile,
        workers=_int_list(args.workers),
        data_batch=args.data_batch if args.data_batch is not None else (2 if q else 4),
        data_batches=args.data_batches if args.data_batches is not None else (1 if q else 8),
        grouping_images=args.grouping_images if args.grouping_images is not None else (2 if q else None),
        e2e_images=args.e2e_images if args.e2e_images is not None else (1 if q else 8),
        probe_size=args.probe_size if args.probe_size is not None else (512 if q else (8192 if cuda else 2048)),
        data_root=data_root,
        checkpoint=args.checkpoint,
        experiment=args.experiment,
        quick=q,
    )
    if s.checkpoint and not Path(s.checkpoint).is_file():
        raise SystemExit(f"error: --checkpoint {s.checkpoint} does not exist")
    return s, sections


def main(argv: Sequence[str] | None = None) -> int:
    """Run the selected sections, print the table and write ``--json``. Returns the exit status."""
    args = _parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    s, sections = _resolve(args)
    if s.device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    machine = machine_info(s.device)

    print("== bottomup.bench ==")
    print(f"machine: {machine['cpu']}, {machine['logical_cores']} logical cores ({machine['usable_cores']} usable), "
          f"capability {machine['cpu_capability']}, flags {' '.join(machine['cpu_bf16_flags']) or '-'}")  # fmt: skip
    print(f"torch {machine['torch']} (threads {machine['torch_threads']}, interop {machine['torch_interop_threads']}), "
          f"python {machine['python']}, numpy {machine['numpy']}, opencv {machine.get('opencv', '?')}, "
          f"load average {machine['load_average']}")  # fmt: skip
    if s.device.type == "cuda":
        print(f"GPU: {machine['gpu']} ({machine['gpu_memory_gib']} GiB), CUDA {machine['cuda']}, cuDNN "
              f"{machine['cudnn']}, cudnn.allow_tf32={machine['cudnn_allow_tf32']}, "
              f"matmul.allow_tf32={machine['matmul_allow_tf32']}")  # fmt: skip
    print(f"device {s.device}; HigherHRNet-W{s.width}, input {s.size}; precisions {','.join(s.precisions)}; "
          f"warmup {s.warmup}, repeats {s.repeats}; sections {','.join(sections)}"
          + ("; QUICK (smoke test, numbers mean nothing)" if s.quick else ""))  # fmt: skip
    load = machine["load_average"]
    if load and machine["usable_cores"] and load[0] > 0.5 * machine["usable_cores"]:
        print(f"WARNING: 1-min load average {load[0]:.1f} on {machine['usable_cores']} cores: other processes compete "
              "for the CPU, timings will be noisy (and slow: OpenMP threads wait for descheduled peers; try --threads 1)")  # fmt: skip
    sys.stdout.flush()

    results: list[Result] = []
    skipped: dict[str, str] = {}
    notes: list[str] = []
    forward_times: dict[tuple[str, bool, bool], list[float]] = {}
    model: nn.Module | None = None
    batch: dict[str, Any] | None = None
    durations: dict[str, float] = {}

    def need_model() -> nn.Module:
        nonlocal model
        if model is None:
            model = build_model(s.width, s.device).eval()
        return model

    def need_batch() -> dict[str, Any]:
        nonlocal batch
        if batch is None:
            batch = _train_batch(s)
        return batch

    for sec in SECTIONS:  # fixed order: flops reuses forward timings
        if sec not in sections:
            continue
        t0 = time.perf_counter()
        print(f"-- {sec} ...", flush=True)
        try:
            if sec == "forward":
                results += bench_forward(s, need_model(), forward_times)
            elif sec == "train":
                results += bench_train(s, need_batch())
            elif sec == "data":
                results += bench_data(s)
            elif sec == "grouping":
                try:
                    import bottomup.bench_grouping  # noqa: F401
                except Exception as e:  # noqa: BLE001 - a module written concurrently may be absent or broken
                    raise _Unavailable(f"bottomup.bench_grouping does not import ({e!r})") from e
                try:
                    results += bench_grouping(s)
                except AttributeError as e:
                    raise _Unavailable(str(e)) from e
            elif sec == "e2e":
                try:
                    import bottomup.api  # noqa: F401
                except Exception as e:  # noqa: BLE001
                    raise _Unavailable(f"bottomup.api (PoseEstimator) does not import ({e!r})") from e
                results += bench_e2e(s, None if s.checkpoint else need_model())
            elif sec == "flops":
                res, sec_notes = bench_flops(s, need_model(), forward_times)
                results += res
                notes += sec_notes
            elif sec == "memory":
                mem_batch = None
                if s.data_root is not None and (s.data_root / "train2017").is_dir():
                    mem_batch = need_batch()
                else:
                    notes.append(f"memory: coco-mini not found at {s.data_root}; inference only")
                results += bench_memory(s, mem_batch)
        except _Unavailable as e:
            skipped[sec] = str(e)
            print(f"   {sec}: not available: {e}", flush=True)
        durations[sec] = time.perf_counter() - t0

    print()
    print(format_table(results))
    for sec, reason in skipped.items():
        print(f"{sec}: not available -- {reason}")
    for note in notes:
        print(f"note: {note}")
    print("section wall time: " + ", ".join(f"{k} {v:.1f} s" for k, v in durations.items()))

    if args.json is not None:
        report = {
            "machine": machine,
            "settings": s.to_json(),
            "sections": {sec: [r.to_json() for r in results if r.section == sec] for sec in sections},
            "skipped": skipped,
            "notes": notes,
            "wall_time_s": durations,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2, default=_json_default)
        print(f"wrote {args.json}")
    return 0


class _Unavailable(RuntimeError):
    """A section whose code (written elsewhere) is not there yet."""


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.integer, np.floating)):
        return obj.item()
    if isinstance(obj, (tuple, set)):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)


if __name__ == "__main__":
    raise SystemExit(main())

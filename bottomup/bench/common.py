"""What every section of :mod:`bottomup.bench` shares: results, settings, the machine, timing, the model, the
coco-mini inputs and the table."""

from __future__ import annotations

import functools
import math
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig
from torch import nn

from bottomup.build import build_model, build_train_dataset, compose, data_layout
from bottomup.core.keypoints import KeypointLayout

__all__ = [
    "Result",
    "Settings",
    "machine_info",
    "sync",
    "time_fn",
    "memory_format",
    "layout_name",
    "train_config",
    "model_label",
    "bench_model",
    "coco_layout",
    "train_dataset",
    "train_batch",
    "val_images",
    "format_table",
]


# ---------------------------------------------------------------------------------------------- results
@dataclass
class Result:
    """One measurement: the raw values of its repeats and their min / median / max.

    Attributes:
        section: one of ``bottomup.bench.SECTIONS``.
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
    """Resolved command-line settings (see ``python -m bottomup.bench --help``)."""

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
    tracking_videos: int
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
    """Describe the machine: CPU model, cores, bf16 support, torch version and threads, GPU if used
    (``gpu_memory_gib`` in GiB)."""
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


# ---------------------------------------------------------------------------------------------- timing
def sync(device: torch.device) -> None:
    """Wait for the queued work of ``device`` (CUDA); a no-op on CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_fn(fn: Callable[[], Any], warmup: int, repeats: int, device: torch.device) -> list[float]:
    """Run ``fn`` ``warmup`` times untimed, then time ``repeats`` calls; seconds per call.

    On CUDA the device is synchronised before and after each timed call.
    """
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return times


def memory_format(channels_last: bool) -> torch.memory_format:
    """``torch.channels_last`` or ``torch.contiguous_format``."""
    return torch.channels_last if channels_last else torch.contiguous_format


def layout_name(channels_last: bool) -> str:
    """``"channels_last"`` or ``"contiguous"``, as in the measurement names."""
    return "channels_last" if channels_last else "contiguous"


# ---------------------------------------------------------------------------------------------- inputs
@functools.cache
def _composed(width: int, size: int, data_root: str | None, experiment: str | None = None) -> DictConfig:
    model = [f"experiment={experiment}"] if experiment else [f"model.width={width}"]
    cfg = compose("train", [*model, f"data.input_size={size}"])
    if data_root is not None:
        cfg.data.root = data_root
    return cfg


def train_config(s: Settings) -> DictConfig:
    """The training config of ``conf/train.yaml`` (COCO data, HigherHRNet, AE loss, Adam, warm-up schedule) with
    ``model.width = s.width`` -- or, with ``s.experiment``, that experiment's config (its model, loss, optimiser)
    -- and ``data.input_size = s.size`` (px) and ``data.root = s.data_root``. Shared: do not modify it."""
    return _composed(s.width, s.size, str(s.data_root) if s.data_root is not None else None, s.experiment)


def model_label(s: Settings) -> str:
    """The benchmarked network in words: ``HigherHRNet-W32`` (``--width``), or the ``--experiment``'s name."""
    return s.experiment if s.experiment else f"HigherHRNet-W{s.width}"


def bench_model(s: Settings) -> nn.Module:
    """The network of :func:`train_config` -- HigherHRNet-W``s.width`` of ``conf/model`` (strides 4 and 2, tag dim
    1), or ``s.experiment``'s model (e.g. ``vitpose_b_ae``; no pre-trained weights are loaded) -- with its random
    initialisation (seed 0), on ``s.device``."""
    cfg = train_config(s)
    torch.manual_seed(0)
    return build_model(cfg.model, cfg.data.num_keypoints, pretrained=False).to(s.device)


def coco_layout() -> KeypointLayout:
    """COCO ``KeypointLayout`` from ``conf/data/coco.yaml``."""
    return data_layout("coco")


def train_dataset(s: Settings) -> Any:
    """coco-mini train ``KeypointDataset`` with the official training augmentation (``conf/data/coco.yaml``) at
    input ``s.size`` px."""
    assert s.data_root is not None
    cfg = train_config(s)
    return build_train_dataset(cfg.data, cfg.model.strides, train=True, seed=0)


def train_batch(s: Settings) -> dict[str, Any]:
    """One deterministic augmented coco-mini train batch of ``s.train_batch`` samples, on ``s.device``."""
    from bottomup.data import collate

    dataset = train_dataset(s)
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


def val_images(data_root: Path) -> list[Path]:
    """coco-mini val image files, sorted by name."""
    files = sorted((data_root / "val2017").glob("*.jpg"))
    if not files:
        raise FileNotFoundError(f"no .jpg images in {data_root / 'val2017'}")
    return files


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

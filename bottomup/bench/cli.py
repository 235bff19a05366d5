"""Command line of :mod:`bottomup.bench`: options, the dispatch table :data:`SECTIONS`, the report."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bottomup.bench.backends import bench_backends
from bottomup.bench.common import (
    Result,
    Settings,
    bench_model,
    format_table,
    machine_info,
    model_label,
    train_batch,
    train_config,
)
from bottomup.bench.data import bench_data
from bottomup.bench.e2e import bench_e2e
from bottomup.bench.flops import bench_flops
from bottomup.bench.forward import bench_forward
from bottomup.bench.grouping import bench_grouping, bench_grouping_reference
from bottomup.bench.memory import bench_memory
from bottomup.bench.summary import bench_summary
from bottomup.bench.tracking import bench_tracking
from bottomup.bench.train import bench_train
from bottomup.bench.video import bench_video
from bottomup.engine.distributed import resolve_device
from bottomup.models.precision import check_precision

__all__ = ["SECTIONS", "DEFAULT_SECTIONS", "DATA_SECTIONS", "Run", "main"]

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Run:
    """What the sections of one run share: the settings, the model and train batch (built on first use), the
    forward timings (s, for ``flops``), notes for the report and failed checks (exit status 1)."""

    s: Settings
    forward_times: dict[tuple[str, bool, bool], list[float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    #: the results of the sections run so far (``summary`` reads the ``backends`` rows)
    results: list[Result] = field(default_factory=list)
    #: the ``summary`` section's compact lines, printed after the table
    summary: list[str] = field(default_factory=list)
    #: coco-mini train images calibrating the INT8 model of ``backends`` (``--calib-images``)
    calib_images: int = 32
    _model: nn.Module | None = None
    _batch: dict[str, Any] | None = None

    def model(self) -> nn.Module:
        """The random-weight network (``bench_model``: HigherHRNet-W``--width`` or the ``--experiment``'s; eval
        mode), built once."""
        if self._model is None:
            self._model = bench_model(self.s).eval()
        return self._model

    def batch(self) -> dict[str, Any]:
        """The coco-mini train batch, built once."""
        if self._batch is None:
            self._batch = train_batch(self.s)
        return self._batch


def _flops(run: Run) -> list[Result]:
    results, notes = bench_flops(run.s, run.model(), run.forward_times)
    run.notes += notes
    return results


def _grouping_reference(run: Run) -> list[Result]:
    results, identical = bench_grouping_reference(run.s)
    if not identical:
        run.failures.append("grouping_reference: the fast grouping and the reference give different outputs")
    return results


def _backends(run: Run) -> list[Result]:
    results, notes = bench_backends(
        run.s, None if run.s.checkpoint else run.model(), torch.get_num_threads(), run.calib_images
    )
    run.notes += notes
    return results


def _summary(run: Run) -> list[Result]:
    results, lines = bench_summary(run.s, run.model(), run.results)
    run.summary += lines
    return results


def _memory(run: Run) -> list[Result]:
    s = run.s
    if s.data_root is not None and (s.data_root / "train2017").is_dir():
        return bench_memory(s, run.batch())
    run.notes.append(f"memory: coco-mini not found at {s.data_root}; inference only")
    return bench_memory(s, None)


#: Section name -> function of the run giving its results, in the order they run (``flops`` reuses the
#: ``forward`` timings).
SECTIONS: dict[str, Callable[[Run], list[Result]]] = {
    "forward": lambda run: bench_forward(run.s, run.model(), run.forward_times),
    "train": lambda run: bench_train(run.s, run.batch()),
    "data": lambda run: bench_data(run.s),
    "grouping": lambda run: bench_grouping(run.s),
    "grouping_reference": _grouping_reference,
    "e2e": lambda run: bench_e2e(run.s, None if run.s.checkpoint else run.model()),
    "flops": _flops,
    "memory": _memory,
    "video": lambda run: bench_video(run.s, run.model()),
    "tracking": lambda run: bench_tracking(run.s),
    "backends": _backends,
    "summary": _summary,
}
#: Sections run without ``--only``: all but the slow reference comparison, the long video stream and the backends
#: (exports, INT8).
DEFAULT_SECTIONS: tuple[str, ...] = tuple(
    sec for sec in SECTIONS if sec not in ("grouping_reference", "video", "backends", "tracking", "summary")
)
#: Sections that read coco-mini.
DATA_SECTIONS = frozenset({"train", "data", "grouping", "grouping_reference", "e2e", "backends", "summary"})
#: Sections whose figures do not depend on the benchmarked network: with several ``--experiment`` s they run once.
MODEL_FREE_SECTIONS = frozenset({"data", "grouping", "grouping_reference", "tracking"})


# ---------------------------------------------------------------------------------------------- options
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
        description="Speed / memory benchmark: forward latency, training and data throughput, grouping (and "
        "against its reference), end-to-end inference, FLOP/s against a matmul probe, peak memory.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument(
        "--only",
        default=",".join(DEFAULT_SECTIONS),
        help=f"comma-separated sections out of {','.join(SECTIONS)} (grouping_reference, video, backends, tracking and "
        "summary only when named; --only backends,summary: the machine summary with INT8)",
    )
    p.add_argument("--size", type=int, default=None, help="square input side (default 512; 64 with --quick)")
    p.add_argument(
        "--width", type=int, default=None, help="HRNet width of the default network (32 = W32, 48 = W48; default 32)"
    )
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
        "--grouping-images",
        type=int,
        default=None,
        help="val images for grouping and grouping_reference (default all; 2 with --quick)",
    )
    p.add_argument("--e2e-images", type=int, default=None, help="val images for e2e (default 8; 1 with --quick)")
    p.add_argument(
        "--tracking-videos",
        type=int,
        default=None,
        help="synthetic videos of the tracking section, seeds 0 to N-1: a row for each of the first 3 and one over all "
        "N (default 3; 1 with --quick; the README's means use 42)",
    )
    p.add_argument("--probe-size", type=int, default=None, help="matmul probe side (default 2048 CPU / 8192 CUDA)")
    p.add_argument("--data-root", type=Path, default=None, help=f"coco-mini folder (default {_default_data_root()})")
    p.add_argument("--checkpoint", default=None, help="weights for the e2e section (project .pt or official .pth)")
    p.add_argument(
        "--experiment",
        default=None,
        help="conf/experiment name(s), comma separated: the network of the model sections (forward, flops, train, "
        "memory, e2e, video, backends; random weights) instead of HigherHRNet-W--width, each in turn (rows prefixed "
        "with its name when several, e.g. vitpose_b_ae,higherhrnet_w32); also the experiment of an official "
        "--checkpoint",
    )
    p.add_argument(
        "--threads", type=int, default=None, help="torch.set_num_threads (and the ONNX Runtime / OpenVINO threads)"
    )
    p.add_argument(
        "--calib-images",
        type=int,
        default=None,
        help="INT8 calibration images for backends (default 32; 2 with --quick)",
    )
    p.add_argument("--quick", action="store_true", help="CI smoke test: tiny input, 1 repeat, few images")
    p.add_argument("--json", type=Path, default=None, help="also write the results as JSON here")
    return p


def _sections(only: str) -> list[str]:
    sections = [t.strip() for t in only.split(",") if t.strip()]
    unknown = [t for t in sections if t not in SECTIONS]
    if unknown or not sections:
        raise SystemExit(f"error: --only {only!r}: unknown section(s) {unknown}; choose from {','.join(SECTIONS)}")
    return sections


def _precisions(text: str | None, cuda: bool) -> list[str]:
    precisions = (
        [t.strip() for t in text.split(",") if t.strip()] if text else ["fp32", "bf16"] + (["fp16"] if cuda else [])
    )
    try:
        for p in precisions:
            check_precision(p, key="--precisions")
    except ValueError as e:
        raise SystemExit(f"error: {e}") from e
    if "fp16" in precisions and not cuda:
        print("note: fp16 autocast is benchmarked on CUDA only; dropping fp16 on CPU")
        precisions = [p for p in precisions if p != "fp16"]
    return precisions


def _check_data_root(data_root: Path) -> None:
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


def _resolve(args: argparse.Namespace) -> tuple[Settings, list[str], list[str]]:
    try:
        device = resolve_device(args.device, key="--device")
    except ValueError as e:
        raise SystemExit(f"error: {e}") from e
    sections = _sections(args.only)
    q = args.quick
    cuda = device.type == "cuda"
    precisions = _precisions(args.precisions, cuda)
    size = args.size if args.size is not None else (64 if q else 512)
    if size <= 0 or size % 32:
        raise SystemExit(f"error: --size {size} must be a positive multiple of 32")
    data_root = args.data_root if args.data_root is not None else _default_data_root()
    if any(sec in DATA_SECTIONS for sec in sections):
        _check_data_root(data_root)
    experiments = [t.strip() for t in (args.experiment or "").split(",") if t.strip()]
    if experiments and args.width is not None:
        raise SystemExit(
            "error: --width sets the default HigherHRNet; with --experiment the network is the experiment's"
        )
    if len(experiments) > 1 and args.checkpoint:
        raise SystemExit("error: --checkpoint takes one --experiment")
    s = Settings(
        device=device,
        size=size,
        width=args.width if args.width is not None else 32,
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
        tracking_videos=args.tracking_videos if args.tracking_videos is not None else (1 if q else 3),
        probe_size=args.probe_size if args.probe_size is not None else (512 if q else (8192 if cuda else 2048)),
        data_root=data_root,
        checkpoint=args.checkpoint,
        experiment=experiments[0] if experiments else None,
        quick=q,
    )
    if s.tracking_videos < 1:
        raise SystemExit(f"error: --tracking-videos {s.tracking_videos} must be >= 1")
    if s.checkpoint and not Path(s.checkpoint).is_file():
        raise SystemExit(f"error: --checkpoint {s.checkpoint} does not exist")
    for experiment in experiments:
        try:
            train_config(dataclasses.replace(s, experiment=experiment))
        except Exception as e:  # noqa: BLE001 - hydra's errors: unknown experiment, bad config
            raise SystemExit(f"error: --experiment {experiment}: {e}".splitlines()[0]) from e
    return s, sections, experiments


# ---------------------------------------------------------------------------------------------- report
def _print_header(s: Settings, sections: list[str], machine: dict[str, Any], models: list[str]) -> None:
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
    print(f"device {s.device}; {', '.join(models)}, input {s.size}; precisions {','.join(s.precisions)}; "
          f"warmup {s.warmup}, repeats {s.repeats}; sections {','.join(sections)}"
          + ("; QUICK (smoke test, numbers mean nothing)" if s.quick else ""))  # fmt: skip
    load = machine["load_average"]
    if load and machine["usable_cores"] and load[0] > 0.5 * machine["usable_cores"]:
        print(f"WARNING: 1-min load average {load[0]:.1f} on {machine['usable_cores']} cores: other processes compete "
              "for the CPU, timings will be noisy (and slow: OpenMP threads wait for descheduled peers; try --threads 1)")  # fmt: skip
    sys.stdout.flush()


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.integer, np.floating)):
        return obj.item()
    if isinstance(obj, (tuple, set)):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)


def _write_json(
    path: Path,
    machine: dict[str, Any],
    run: Run,
    sections: list[str],
    results: list[Result],
    durations: dict[str, float],
) -> None:
    report = {
        "machine": machine,
        "settings": run.s.to_json(),
        "sections": {sec: [r.to_json() for r in results if r.section == sec] for sec in sections},
        "notes": run.notes,
        "summary": run.summary,
        "wall_time_s": durations,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2, default=_json_default)
    print(f"wrote {path}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the selected sections in the order of :data:`SECTIONS`, print the table and write ``--json``.

    Returns:
        The exit status: 0, or 1 when a check failed (``grouping_reference``: outputs differ from the reference).
    """
    args = _parser().parse_args(argv)
    threads = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        return _main(args)
    finally:
        torch.set_num_threads(threads)  # called in-process (tests, notebooks): leave the caller's setting as it was


def _main(args: argparse.Namespace) -> int:
    s, sections, experiments = _resolve(args)
    if s.device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    machine = machine_info(s.device)
    runs = [Run(dataclasses.replace(s, experiment=e)) for e in experiments] or [Run(s)]
    _print_header(s, sections, machine, [model_label(r.s) for r in runs])

    results: list[Result] = []
    durations: dict[str, float] = {}
    for i, one in enumerate(runs):
        one.calib_images = args.calib_images if args.calib_images is not None else (2 if s.quick else 32)
        label = f"{model_label(one.s)}: " if len(runs) > 1 else ""
        for sec, bench in SECTIONS.items():
            if sec not in sections or (i and sec in MODEL_FREE_SECTIONS):
                continue
            t0 = time.perf_counter()
            print(f"-- {label}{sec} ...", flush=True)
            for r in bench(one):
                r.name = label + r.name
                results.append(r)
            one.results = results  # the summary reads the rows before it (INT8 from backends)
            durations[label + sec] = time.perf_counter() - t0
        if i:  # one list of notes and failures: the first run's
            runs[0].notes += [label + note for note in one.notes]
            runs[0].failures += [label + f for f in one.failures]
        elif label:
            one.notes[:] = [label + note for note in one.notes]
        one._model = one._batch = None  # free the network before the next one's
    run = runs[0]

    print()
    print(format_table(results))
    for note in run.notes:
        print(f"note: {note}")
    if run.summary:
        print()
        print("== machine summary ==")
        print(f"{machine['cpu']}, {machine['usable_cores']} cores, torch threads {machine['torch_threads']}, flags "
              f"{' '.join(machine['cpu_bf16_flags']) or '-'}, load average {machine['load_average']}"
              + (f"; GPU {machine['gpu']}" if s.device.type == "cuda" else ""))  # fmt: skip
        for line in run.summary:
            print(line)
    print("section wall time: " + ", ".join(f"{k} {v:.1f} s" for k, v in durations.items()))
    for failure in run.failures:
        print(f"FAILED: {failure}")
    if args.json is not None:
        _write_json(args.json, machine, run, sections, results, durations)
    return 1 if run.failures else 0

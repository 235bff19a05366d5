"""Section ``data``: throughput of the augmented training pipeline, per core (``dataset[i]`` in one thread) and
through a ``DataLoader``."""

from __future__ import annotations

import statistics
import time

import cv2
import torch
from torch.utils.data import DataLoader

from bottomup.bench.common import Result, Settings, train_dataset
from bottomup.data import collate

__all__ = ["bench_data"]


def bench_dataset_per_core(s: Settings, dataset) -> Result:
    """Samples/s of ``dataset[(i, epoch)]`` over the data set in this process with one torch and one OpenCV thread
    (one core's worth of a DataLoader worker, without collate / transfer), process CPU time, one epoch per repeat.
    The first ``max(1, --warmup)`` epochs are not timed (they include what each worker makes once: the ignore
    masks). Threads are restored afterwards."""
    torch_threads, cv2_threads = torch.get_num_threads(), cv2.getNumThreads()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    try:
        n = len(dataset)
        rates, epoch = [], 0
        for rep in range(max(1, s.warmup) + s.repeats):
            t0 = time.process_time()
            for i in range(n):
                dataset[(i, epoch)]
            elapsed = time.process_time() - t0
            epoch += 1
            if rep >= max(1, s.warmup):
                rates.append(n / max(elapsed, 1e-9))
    finally:
        torch.set_num_threads(torch_threads)
        cv2.setNumThreads(cv2_threads)
    return Result(
        "data",
        "dataset[i], 1 thread",
        "samples/s",
        rates,
        {"per_core": True, "samples": n, "input_size": s.size, "clock": "process CPU time"},
        note=f"{n} samples x {len(rates)} epochs, {1e3 / statistics.median(rates):.1f} ms CPU/sample",
    )


def bench_data(s: Settings) -> list[Result]:
    """Samples/s of the augmented training pipeline: ``dataset[i]`` on one core (:func:`bench_dataset_per_core`),
    then through a DataLoader, per worker count."""
    dataset = train_dataset(s)
    results = [bench_dataset_per_core(s, dataset)]
    warm = max(1, s.warmup)
    batches = max(1, min(s.data_batches, len(dataset) // s.data_batch - warm))
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

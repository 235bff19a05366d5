"""Section ``data``: throughput of the augmented training pipeline through a ``DataLoader``."""

from __future__ import annotations

import statistics
import time

import torch
from torch.utils.data import DataLoader

from bottomup.bench.common import Result, Settings, train_dataset
from bottomup.data import collate

__all__ = ["bench_data"]


def bench_data(s: Settings) -> list[Result]:
    """Samples/s of the augmented training pipeline through a DataLoader, per worker count."""
    dataset = train_dataset(s)
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

"""Section ``e2e``: ``bottomup.api.PoseEstimator`` per coco-mini val image file, flip test off / on."""

from __future__ import annotations

import itertools
import statistics
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from torch import nn

from bottomup.api import PoseEstimator
from bottomup.bench.common import Result, Settings, coco_layout, sync, val_images
from bottomup.data.transforms import resize_transform

__all__ = ["bench_e2e"]


def _input_size(path: Path, size: int) -> tuple[int, int]:
    """Network input ``(width, height)`` px for the image file at scale 1 (``resize_transform``)."""
    image = cv2.imread(str(path))
    if image is None:
        raise FileNotFoundError(f"cannot read image {path}")
    w, h = resize_transform(image.shape[0], image.shape[1], size, 1.0, 1.0).size
    return int(w), int(h)


def _estimator(s: Settings, model: nn.Module | None, flip: bool, fast: dict[str, Any]) -> PoseEstimator:
    """The estimator of ``s.checkpoint``, else around ``model`` (random weights)."""
    if s.checkpoint:
        return PoseEstimator.from_checkpoint(
            s.checkpoint, experiment=s.experiment, device=s.device, input_size=s.size, flip_test=flip, **fast
        )
    assert model is not None
    return PoseEstimator(model, layout=coco_layout(), input_size=s.size, flip_test=flip, device=s.device, **fast)


def bench_e2e(s: Settings, model: nn.Module | None) -> list[Result]:
    """``PoseEstimator`` ms per val image file, flip test off / on, fp32 and per other precision a channels_last
    BN-folded copy (random weights ``model`` unless ``s.checkpoint``)."""
    assert s.data_root is not None
    files = val_images(s.data_root)[: s.e2e_images]
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
    weights = "checkpoint" if s.checkpoint else "random weights"
    for (path, fast), flip in itertools.product(paths, (False, True)):
        est = _estimator(s, model, flip, fast)
        for _ in range(s.warmup):
            est(files[0])
        times, people = [], []
        for f in files:
            sync(s.device)
            t0 = time.perf_counter()
            pred = est(f)
            sync(s.device)
            times.append(time.perf_counter() - t0)
            people.append(len(pred))
        info = {"flip": flip, "images": len(files), "mean_people": float(np.mean(people)), "weights": weights}
        info.update(input_sizes=sizes, **fast)
        results.append(
            Result(
                "e2e",
                f"{path} flip {'on' if flip else 'off'}",
                "ms/image",
                [t * 1e3 for t in times],
                info,
                note=f"{len(files)} images, {weights}, {np.mean(people):.1f} people/img, "
                f"median input {area:.2f}x the {s.size}x{s.size} area",
            )
        )
    return results

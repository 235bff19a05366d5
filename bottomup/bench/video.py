"""Section ``video``: a long generated stream through ``PoseEstimator.track`` as ``python -m bottomup.infer`` runs a
video (estimate, track, a JSON line per frame, a rendered MP4 frame): resident memory at the start, middle and end,
frames/s end to end, tracking cost per frame; then frames/s of HigherHRNet-W``width`` at ``--size`` (fp32, and per
other precision the BN-folded channels_last fast path) on 640 x 480 frames.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import torch
from torch import nn

from bottomup.api import PoseEstimator
from bottomup.bench.common import Result, Settings, coco_layout, model_label
from bottomup.build import build_model, compose
from bottomup.data.synthetic_video import SyntheticVideo
from bottomup.data.video import VideoWriter
from bottomup.engine.tracking import PoseTracker

__all__ = ["bench_video", "current_rss_mib"]

#: Frames of the memory stream (``--quick``: 40).
STREAM_FRAMES = 2000


def current_rss_mib() -> float:
    """This process's resident set size now, MiB (``/proc/self/statm``; NaN where there is none)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return float("nan")
    import os

    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _stream_estimator(s: Settings) -> tuple[PoseEstimator, str]:
    """The ``--checkpoint``'s estimator, else the quickstart network (``experiment=quickstart``) with random
    weights; and what it is."""
    if s.checkpoint:
        est = PoseEstimator.from_checkpoint(s.checkpoint, experiment=s.experiment, device=s.device, color="bgr")
        return est, est.summary
    cfg = compose("train", ["experiment=quickstart", "output_dir=unused"])
    torch.manual_seed(0)
    model = build_model(cfg.model, int(cfg.data.num_keypoints), pretrained=False)
    return PoseEstimator.from_config(cfg, model=model, device=s.device, color="bgr"), "quickstart W16, random weights"


def _stream(s: Settings) -> list[Result]:
    frames = 40 if s.quick else STREAM_FRAMES
    est, what = _stream_estimator(s)
    video = SyntheticVideo(seed=0, num_frames=frames, width=320, height=240, num_people=4)
    marks = sorted({1, frames // 4, frames // 2, 3 * frames // 4, frames})
    rss: dict[int, float] = {}
    track_ms: list[float] = []
    people = 0
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        t_start = 0.0
        with (out / "stream.jsonl").open("w") as lines, VideoWriter(out / "stream.mp4", video.fps, (320, 240)) as mp4:
            images = (f.image for f in video)
            tracker = _timed_tracker(PoseTracker(est.layout.oks_sigmas, fps=video.fps), track_ms)
            for n, result in enumerate(est.track(images, fps=video.fps, min_score=0.1, tracker=tracker), start=1):
                lines.write(json.dumps(result.to_dict()) + "\n")
                lines.flush()
                mp4.write(cv2.cvtColor(result.plot(min_side=0), cv2.COLOR_RGB2BGR))
                people += len(result.prediction)
                if n == 10:
                    t_start = time.perf_counter()
                if n in marks:
                    rss[n] = current_rss_mib()
        elapsed = time.perf_counter() - t_start
    timed = max(1, frames - 10)
    values = [rss[m] for m in marks]
    note = ", ".join(f"frame {m}: {rss[m]:.0f}" for m in marks)
    info: dict[str, Any] = {"frames": frames, "frame_size": [320, 240], "model": what, "rss_mib_at": rss}
    return [
        Result("video", "stream RSS", "MiB", values, info, note=f"{what}; {note}"),
        Result(
            "video",
            "stream end to end",
            "frames/s",
            [timed / elapsed] if frames > 10 else [],
            {**info, "people_per_frame": people / frames, "flip": est.flip_test, "input_size": est.input_size},
            note=f"{what}, input {est.input_size}, flip {'on' if est.flip_test else 'off'}: estimate + track + "
            f"jsonl + render + mp4, {people / frames:.1f} people/frame",
        ),
        Result(
            "video",
            "tracking per frame",
            "ms",
            track_ms,
            {"people_per_frame": people / frames},
            note=f"PoseTracker.update, {people / frames:.1f} people/frame",
        ),
    ]


def _timed_tracker(tracker: PoseTracker, times: list[float]) -> PoseTracker:
    """``tracker`` with its ``update`` timed: ms per call appended to ``times``."""
    update = tracker.update

    def timed(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        out = update(*args, **kwargs)
        times.append((time.perf_counter() - t0) * 1e3)
        return out

    tracker.update = timed  # type: ignore[method-assign]
    return tracker


def _fps(s: Settings, model: nn.Module) -> list[Result]:
    n = 1 if s.quick else 8
    video = SyntheticVideo(seed=1, num_frames=n + s.warmup, width=640, height=480, num_people=4)
    frames = [f.image for f in video]
    paths: list[tuple[str, dict[str, Any]]] = [("fp32", {})]
    paths += [
        (f"{p} channels_last folded", {"precision": p, "channels_last": True, "fold_bn": True})
        for p in s.precisions
        if p != "fp32"
    ]
    results = []
    for name, fast in paths:
        for flip in (False, True):
            est = PoseEstimator(
                model, layout=coco_layout(), input_size=s.size, flip_test=flip, device=s.device, color="bgr", **fast
            )
            it = est.track(iter(frames), fps=video.fps)
            for _ in range(s.warmup):
                next(it)
            t0 = time.perf_counter()
            count = sum(1 for _ in it)
            rate = count / (time.perf_counter() - t0)
            results.append(
                Result(
                    "video",
                    f"{model_label(s)}-{s.size} {name} flip {'on' if flip else 'off'}",
                    "frames/s",
                    [rate],
                    {"frames": count, "frame_size": [640, 480], "flip": flip, **fast},
                    note=f"640x480 synthetic frames, estimate + track, random weights, {count} frames",
                )
            )
    return results


def bench_video(s: Settings, model: nn.Module) -> list[Result]:
    """The stream (:data:`STREAM_FRAMES` frames: RSS, frames/s, tracking ms) and the ``model``'s frames/s."""
    return _stream(s) + _fps(s, model)

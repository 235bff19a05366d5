"""Section ``tracking``: how good the tracks are with a real model, and what tracking costs.

* Generated videos of walking, crossing and occluding figures with ground-truth identities
  (:class:`~bottomup.data.synthetic_video.SyntheticVideo`, seeds 0 to ``--tracking-videos`` - 1, default 0-2, 100
  frames of 320 x 240, 4 people; ``--quick``: seed 0, 20 frames) through ``PoseEstimator.track`` of ``--checkpoint``
  (the quickstart model is what it was made for), scored with motmetrics (:func:`bottomup.api.evaluate_tracking`:
  MOTA, IDF1, ID switches, mostly tracked / lost): a row for each of seeds 0-2 and, with more than one video, one over
  all of them (min / median / max IDF1 over the videos, the means in its note). A single video's IDF1 swings with
  single events; compare the means over many videos (README "Tracking": 42).
* A still-image clip: held-out images of the checkpoint's synthetic validation set, each shown for 4 frames shifted
  by 2 px per frame (the first 50, the quickstart's whole val split: ~190 people compared, so that a share near 98 %
  is resolved; ``--quick``: 2): the share of confident people (score >= 0.3) that keep the id of
  the same person (OKS >= 0.5 after the shift) one frame earlier, over all of them and over those that were
  confident one frame earlier too (a person whose score rises past the tracker's ``high_score`` between the two
  frames had no track to keep: new tracks start only from high-score people). Nothing moves but the pixels.
* ``PoseTracker.update`` per frame on the ground truth's visible joints of 4 and of 13 people, ms.

Without ``--checkpoint`` the quality rows use the ground truth's visible joints as detections (the tracker alone).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from bottomup.api import PoseEstimator, evaluate_tracking
from bottomup.bench.common import Result, Settings
from bottomup.data.synthetic_video import SyntheticVideo
from bottomup.engine.tracking import PoseTracker, keypoint_oks

__all__ = ["ClipContinuity", "bench_tracking", "clip_continuity"]

#: Person score from which a person counts as confident in the clip's continuity.
CONFIDENT = 0.3


def _visible(keypoints: np.ndarray) -> np.ndarray:
    out = np.asarray(keypoints, np.float64).copy()
    out[..., 2] = (out[..., 2] > 0).astype(np.float64)
    return out


def _exact_rows(video: SyntheticVideo, sigmas: np.ndarray) -> dict[str, float]:
    from bottomup.engine.tracking import tracking_metrics

    tracker = PoseTracker(sigmas, fps=video.fps)
    rows = []
    for frame in video:
        det = _visible(frame.keypoints)
        det = det[det[..., 2].sum(1) > 0]
        ids, kpts = tracker.update(det)
        rows.append((frame.ids, frame.keypoints, frame.areas, ids[ids > 0], kpts[ids > 0]))
    return tracking_metrics(rows, sigmas)


def _union_oks(before: np.ndarray, after: np.ndarray, sigmas: np.ndarray) -> np.ndarray:
    """``(M, N)`` OKS averaged over the joints present (score > 0.1) in either pose: a joint present in one pose only
    counts 0, so a partial duplicate of a person is not similar to the whole person."""
    oks, common = keypoint_oks(before, after, sigmas, threshold=0.1)
    present_before = (before[..., 2] > 0.1).sum(1)[:, None]
    present_after = (after[..., 2] > 0.1).sum(1)[None, :]
    union = np.maximum(present_before + present_after - common, 1)
    return oks * common / union


@dataclass(frozen=True)
class ClipContinuity:
    """What :func:`clip_continuity` counts: confident people (score >= :data:`CONFIDENT`) compared with the same
    person one frame earlier, and those of them that kept its id.

    Attributes:
        kept, compared: over every confident person paired with one of the frame before.
        steady_kept, steady_compared: over those whose pair one frame earlier was confident too. The others rose
            past :data:`CONFIDENT` between the two frames; with a tracker's ``high_score`` at or above it they had no
            track one frame earlier (new tracks start only from high-score people), so they count in ``compared``
            and never in ``kept``.
    """

    kept: int
    compared: int
    steady_kept: int
    steady_compared: int

    @property
    def rising(self) -> int:
        """Confident people whose pair one frame earlier scored under :data:`CONFIDENT`."""
        return self.compared - self.steady_compared


def clip_continuity(
    estimator: PoseEstimator, images: list[np.ndarray], repeats: int = 4, shift: int = 2, **tracker_settings: Any
) -> ClipContinuity:
    """Identity continuity on a still-image clip: each image (``(H, W, 3)`` uint8 RGB) shown ``repeats`` times,
    shifted ``shift`` px to the right per frame. The people of a frame after the first of its image are paired one to
    one with those of the frame before (moved by the shift; Hungarian assignment on OKS over the joints present in
    either pose minus the difference of the two person scores, so that neither a partial duplicate nor a low-score
    duplicate at the same place is taken for the person); every confident person (score >= :data:`CONFIDENT`) paired
    at OKS >= 0.5 is compared with its pair.

    Returns:
        :class:`ClipContinuity`: people that kept the earlier person's id (both tracked) and people compared, over
        all confident people and over those confident in both frames.
    """
    from scipy.optimize import linear_sum_assignment

    sigmas = np.asarray(estimator.layout.oks_sigmas)
    tracker = PoseTracker(sigmas, **tracker_settings)
    kept = compared = steady_kept = steady_compared = 0
    for image in images:
        previous: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        for j in range(repeats):
            frame = np.roll(image, shift * j, axis=1)
            pred = estimator(np.ascontiguousarray(frame if estimator.color == "rgb" else frame[..., ::-1]))
            ids, _ = tracker.update(pred.keypoints, scores=pred.scores)
            if previous is not None and len(previous[0]) and len(pred.keypoints):
                before, before_scores, before_ids = previous
                moved = before.copy()
                moved[..., 0] += shift
                oks = _union_oks(moved, pred.keypoints, sigmas)
                cost = np.abs(before_scores[:, None] - pred.scores[None, :]) - oks
                for row, person in zip(*linear_sum_assignment(cost), strict=True):
                    if oks[row, person] < 0.5 or pred.scores[person] < CONFIDENT:
                        continue
                    same = int(ids[person] > 0 and ids[person] == before_ids[row])
                    compared, kept = compared + 1, kept + same
                    if before_scores[row] >= CONFIDENT:
                        steady_compared, steady_kept = steady_compared + 1, steady_kept + same
            previous = (pred.keypoints, pred.scores, ids)
    return ClipContinuity(kept, compared, steady_kept, steady_compared)


def _clip_images(checkpoint: str, count: int) -> list[np.ndarray]:
    """The first ``count`` validation images of the synthetic set the checkpoint was trained on (RGB)."""
    from bottomup import build
    from bottomup.engine.checkpoint import load_checkpoint

    config = build.saved_config(load_checkpoint(checkpoint), checkpoint)  # weights-only
    if config is None or config.data.get("synthetic") is None:
        return []
    root = Path(build.prepare_data_root(config.data))
    paths = sorted((root / "val2017").glob("*.jpg"))[:count]
    return [np.ascontiguousarray(cv2.imread(str(p))[..., ::-1]) for p in paths]


def _cost(num_people: int, frames: int, sigmas: np.ndarray) -> list[float]:
    video = SyntheticVideo(seed=3, num_frames=frames, num_people=num_people, width=640, height=480)
    tracker = PoseTracker(sigmas, fps=video.fps)
    times = []
    for frame in video:
        det = _visible(frame.keypoints)
        t0 = time.perf_counter()
        tracker.update(det)
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def bench_tracking(s: Settings) -> list[Result]:
    """MOTA / IDF1 / ID switches per seed (and over ``tracking_videos`` seeds), the still-image clip's continuity,
    tracking ms at 4 and 13 people."""
    frames, images = (20, 2) if s.quick else (100, 50)
    seeds = range(s.tracking_videos)
    from bottomup.build import data_layout

    sigmas = np.asarray(data_layout("coco").oks_sigmas)
    estimator = None
    what = "ground truth's visible joints (no --checkpoint)"
    if s.checkpoint:
        estimator = PoseEstimator.from_checkpoint(s.checkpoint, experiment=s.experiment, device=s.device, color="bgr")
        what = estimator.summary
    results: list[Result] = []
    videos = []
    for seed in seeds:
        video = SyntheticVideo(seed=seed, num_frames=frames, num_people=4)
        m = evaluate_tracking(estimator, video) if estimator is not None else _exact_rows(video, sigmas)
        videos.append(m)
        if seed >= 3:
            continue
        info = {k: float(v) for k, v in m.items()}
        note = (
            f"seed {seed}, {frames} frames, 4 people: MOTA {m['mota']:.3f}, {int(m['num_switches'])} ID switches, "
            f"{int(m['mostly_tracked'])} mostly tracked; {what}"
        )
        results.append(Result("tracking", f"synthetic video seed {seed} IDF1", "IDF1", [m["idf1"]], info, note=note))
    if len(videos) > 1:
        mean = {k: float(np.mean([m[k] for m in videos])) for k in ("idf1", "num_switches", "mota")}
        results.append(
            Result(
                "tracking",
                f"synthetic videos seeds 0-{len(videos) - 1}: IDF1",
                "IDF1",
                [m["idf1"] for m in videos],
                {"videos": len(videos), **{f"mean_{k}": v for k, v in mean.items()}},
                note=(
                    f"{len(videos)} videos of {frames} frames, 4 people: mean IDF1 {mean['idf1']:.3f}, mean ID switches "
                    f"{mean['num_switches']:.2f}, mean MOTA {mean['mota']:.3f}; {what}"
                ),
            )
        )
    if estimator is not None:
        clip = _clip_images(str(s.checkpoint), images)
        if clip:
            c = clip_continuity(estimator, clip)
            info = {**dataclasses.asdict(c), "images": len(clip)}
            results.append(
                Result(
                    "tracking",
                    "still-image clip: id kept one frame later",
                    "fraction",
                    [c.kept / max(c.compared, 1)],
                    info,
                    note=(
                        f"{c.kept} of {c.compared} confident people, {len(clip)} images x 4 frames shifted 2 px; "
                        f"{c.rising} of them scored < {CONFIDENT} one frame earlier (no track yet)"
                    ),
                )
            )
            results.append(
                Result(
                    "tracking",
                    "still-image clip: id kept, confident in both frames",
                    "fraction",
                    [c.steady_kept / max(c.steady_compared, 1)],
                    info,
                    note=f"{c.steady_kept} of {c.steady_compared} people confident one frame earlier too",
                )
            )
    for people in (4, 13):
        times = _cost(people, 20 if s.quick else 100, sigmas)
        results.append(
            Result(
                "tracking",
                f"PoseTracker.update, {people} people",
                "ms",
                times,
                {"people": people},
                note="ground truth's visible joints, 640 x 480",
            )
        )
    return results

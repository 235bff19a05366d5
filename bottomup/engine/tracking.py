"""Pose tracking across video frames: identities by Hungarian matching on OKS, One Euro smoothing, MOT metrics.

:class:`PoseTracker` gives each person of each frame a track id (1, 2, ...), as in the tracking-by-detection
trackers of bottom-up pose tools (PoseFlow's frame-to-frame pose matching, Xiao et al. 2018 "Simple Baselines"
Sec. 4 with OKS as the similarity): the people of a new frame are matched to the live tracks by
:func:`scipy.optimize.linear_sum_assignment` on ``1 - similarity``, where the similarity is the object keypoint
similarity (COCO OKS, with the data set's ``oks_sigmas``) between the person and the track's last pose moved by its
velocity, or the IoU of their boxes when they share no confident joint (fewer than ``min_joints``). Unmatched people
start new tracks; a track that is not matched survives ``max_age`` frames and can take its person back in that
window (re-identification); after it, the person gets a new id. Optional One Euro smoothing (Casiez et al.,
CHI 2012) of each track's keypoints.

:func:`tracking_metrics` scores tracks against ground truth with motmetrics (CLEAR MOT: MOTA, ID switches;
Ristani et al. 2016: IDF1), matching people by OKS.

Letters: N people of a frame, T tracks, G ground-truth people, K keypoints. Coordinates are pixels of the frame.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

__all__ = ["OneEuroFilter", "PoseTracker", "box_iou", "keypoint_oks", "tracking_metrics"]


def _boxes(keypoints: np.ndarray, visible: np.ndarray) -> np.ndarray:
    """``(M, 4)`` x0, y0, x1, y1 around the ``visible`` joints of ``(M, K, 3)`` keypoints (NaN when none)."""
    xy = np.where(visible[..., None], keypoints[..., :2], np.nan)
    out = np.full((len(keypoints), 4), np.nan)
    has = visible.any(-1)
    if has.any():
        out[has, :2] = np.nanmin(xy[has], axis=1)
        out[has, 2:] = np.nanmax(xy[has], axis=1)
    return out


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of boxes ``a (M, 4)`` and ``b (N, 4)`` (x0, y0, x1, y1 pixels): ``(M, N)``; 0 where
    a box is NaN or empty."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = inter / union
    return np.nan_to_num(np.where(union > 0, iou, 0.0), nan=0.0)


def keypoint_oks(
    reference: np.ndarray,
    others: np.ndarray,
    sigmas: Sequence[float],
    areas: np.ndarray | None = None,
    threshold: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Object keypoint similarity (COCO) between each reference pose and each other pose.

    ``OKS = mean_k exp(-d_k^2 / (2 s^2 (2 sigma_k)^2))`` over the joints present in both (third column
    ``> threshold``), with ``s^2`` the reference's area (COCO: the ground truth's segment area).

    Args:
        reference: ``(M, K, 3)`` x, y, visibility / score, pixels.
        others: ``(N, K, 3)`` x, y, score.
        sigmas: ``(K,)`` per-keypoint OKS sigmas (``KeypointLayout.oks_sigmas``).
        areas: ``(M,)`` square pixels; default the area of the box around each reference's present joints
            (at least 1).
        threshold: a joint is present when its third value is above this.

    Returns:
        ``(oks (M, N), common (M, N))``: the similarity in [0, 1] (0 with no common joint) and the number of
        joints present in both.

    Raises:
        ValueError: shapes that do not agree with ``sigmas``.
    """
    ref, oth = np.asarray(reference, np.float64), np.asarray(others, np.float64)
    sig = np.asarray(sigmas, np.float64)
    if ref.ndim != 3 or oth.ndim != 3 or ref.shape[1:] != oth.shape[1:] or ref.shape[1] != sig.shape[0]:
        raise ValueError(
            f"keypoint_oks: reference {ref.shape} and others {oth.shape} must be (M, K, 3) / (N, K, 3) with "
            f"K = len(sigmas) = {sig.shape[0]}"
        )
    vr = (ref[..., 2] > threshold) & np.isfinite(ref[..., :2]).all(-1)
    vo = (oth[..., 2] > threshold) & np.isfinite(oth[..., :2]).all(-1)
    if areas is None:
        box = _boxes(ref, vr)
        areas = np.nan_to_num((box[:, 2] - box[:, 0]) * (box[:, 3] - box[:, 1]), nan=0.0)
    areas = np.maximum(np.asarray(areas, np.float64), 1.0)
    d2 = ((np.nan_to_num(ref[:, None, :, :2]) - np.nan_to_num(oth[None, :, :, :2])) ** 2).sum(-1)  # (M, N, K)
    e = d2 / ((2.0 * sig) ** 2 * 2.0 * areas[:, None, None])
    both = vr[:, None, :] & vo[None, :, :]
    common = both.sum(-1)
    oks = np.where(both, np.exp(-e), 0.0).sum(-1) / np.maximum(common, 1)
    return oks, common


class OneEuroFilter:
    """The One Euro filter (Casiez, Roussel & Vogel, CHI 2012) on arrays: per element a low-pass filter whose
    cutoff rises with the speed, so slow jitter is smoothed and fast motion follows with little lag.

    Args:
        min_cutoff: cutoff at rest, Hz (lower: smoother when still).
        beta: cutoff increase per unit of speed, 1 / (pixel) (higher: less lag when moving).
        d_cutoff: cutoff of the speed estimate, Hz.

    Call with ``(x, t, valid)``: ``x`` an array of one fixed shape ``(..., D)`` (e.g. ``(K, 2)`` joint
    coordinates), ``t`` seconds, ``valid`` ``(...)`` which rows are observed; an unobserved row is returned as
    given and its state kept, an observed row after a gap continues from its own last time.
    """

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.05, d_cutoff: float = 1.0) -> None:
        if not (min_cutoff > 0 and d_cutoff > 0 and beta >= 0):
            raise ValueError(
                f"OneEuroFilter: min_cutoff, d_cutoff > 0 and beta >= 0, got {min_cutoff}, {d_cutoff}, {beta}"
            )
        self.min_cutoff, self.beta, self.d_cutoff = float(min_cutoff), float(beta), float(d_cutoff)
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._t: np.ndarray | None = None
        self._seen: np.ndarray | None = None

    @staticmethod
    def _alpha(cutoff: np.ndarray, dt: np.ndarray) -> np.ndarray:
        tau = 1.0 / (2.0 * math.pi * cutoff)
        return 1.0 / (1.0 + tau / dt)

    def __call__(self, x: np.ndarray, t: float, valid: np.ndarray | None = None) -> np.ndarray:
        x = np.asarray(x, np.float64)
        rows = x.shape[:-1]
        valid = np.ones(rows, bool) if valid is None else np.asarray(valid, bool) & np.isfinite(x).all(-1)
        if self._x is None or self._x.shape != x.shape:
            self._x, self._dx = x.copy(), np.zeros_like(x)
            self._t, self._seen = np.full(rows, float(t)), valid.copy()
            return x.copy()
        assert self._dx is not None and self._t is not None and self._seen is not None
        out = x.copy()
        update = valid & self._seen
        if update.any():
            dt = np.maximum(float(t) - self._t[update], 1e-6)[:, None]
            dx = (x[update] - self._x[update]) / dt
            dx_hat = self._dx[update] + self._alpha(np.full_like(dt, self.d_cutoff), dt) * (dx - self._dx[update])
            cutoff = self.min_cutoff + self.beta * np.linalg.norm(dx_hat, axis=-1, keepdims=True)
            out[update] = self._x[update] + self._alpha(cutoff, dt) * (x[update] - self._x[update])
            self._dx[update] = dx_hat
        fresh = valid & ~self._seen  # first observation of this row: start its state
        self._dx[fresh] = 0.0
        self._x[valid] = out[valid]
        self._t[valid] = float(t)
        self._seen |= valid
        return out


@dataclass
class _Track:
    track_id: int
    keypoints: np.ndarray  # (K, 3) last matched pose (raw, not smoothed), with recently seen joints kept
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2))  # px / frame of the joints' mean position
    misses: int = 0  # frames since last matched
    joint_age: np.ndarray = field(
        default_factory=lambda: np.zeros(0, np.int64)
    )  # (K,) frames since each joint was seen
    smoother: OneEuroFilter | None = None

    def predicted(self) -> np.ndarray:
        """The last pose moved by the velocity over the frames since it was seen."""
        out = self.keypoints.copy()
        out[:, :2] += self.velocity * (self.misses + 1)
        return out


class PoseTracker:
    """Identities for the people of consecutive frames (see the module docstring for the method).

    Args:
        oks_sigmas: ``(K,)`` per-keypoint OKS sigmas of the data set (``KeypointLayout.oks_sigmas``).
        max_age: frames a track that is not matched survives (and can be re-identified); a person away for more
            processed frames gets a new id. 0: a track ends the first frame it is missed.
        min_similarity: least OKS (or box IoU) for a person to continue a track.
        keypoint_threshold: a joint counts for the similarity when its score is above this.
        min_joints: fewer common confident joints than this (default 1: none): the box IoU is the similarity
            instead of OKS. The track's pose keeps the joints seen in the last ``max_age`` frames, so a person
            half hidden by a passer-by still shares joints with its track.
        smoothing: One Euro filter each track's keypoints (:class:`OneEuroFilter` with ``min_cutoff``, ``beta``).
        fps: frame rate for the filter when ``update`` gets no ``time_s``, frames per second.

    Raises:
        ValueError: bad settings (the message names the argument).
    """

    def __init__(
        self,
        oks_sigmas: Sequence[float],
        *,
        max_age: int = 30,
        min_similarity: float = 0.3,
        keypoint_threshold: float = 0.1,
        min_joints: int = 1,
        smoothing: bool = False,
        min_cutoff: float = 1.0,
        beta: float = 0.05,
        fps: float = 30.0,
    ) -> None:
        if int(max_age) < 0:
            raise ValueError(f"max_age must be >= 0 frames, got {max_age}")
        if not 0.0 < float(min_similarity) <= 1.0:
            raise ValueError(f"min_similarity must be in (0, 1], got {min_similarity}")
        if not float(fps) > 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        self.sigmas = np.asarray(oks_sigmas, np.float64)
        self.max_age, self.min_similarity = int(max_age), float(min_similarity)
        self.keypoint_threshold, self.min_joints = float(keypoint_threshold), int(min_joints)
        self.smoothing, self.min_cutoff, self.beta, self.fps = (
            bool(smoothing),
            float(min_cutoff),
            float(beta),
            float(fps),
        )
        self.tracks: list[_Track] = []
        self.frames = 0
        self._next_id = 1

    def reset(self) -> None:
        """Forget all tracks; ids start at 1 again."""
        self.tracks, self.frames, self._next_id = [], 0, 1

    def similarity(self, tracks: np.ndarray, people: np.ndarray) -> np.ndarray:
        """``(T, N)`` similarity of track poses ``(T, K, 3)`` and people ``(N, K, 3)``: OKS over the common
        confident joints, box IoU where fewer than ``min_joints`` are common."""
        oks, common = keypoint_oks(tracks, people, self.sigmas, threshold=self.keypoint_threshold)
        low = common < self.min_joints
        if low.any():
            vt = tracks[..., 2] > self.keypoint_threshold
            vp = people[..., 2] > self.keypoint_threshold
            iou = box_iou(_boxes(tracks, vt), _boxes(people, vp))
            oks = np.where(low, iou, oks)
        return oks

    def update(self, keypoints: np.ndarray, time_s: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Track the people of the next frame.

        Args:
            keypoints: ``(N, K, 3)`` x, y (frame pixels), score.
            time_s: the frame's time, seconds (for smoothing); default ``frames / fps``.

        Returns:
            ``(track_ids (N,) int64, keypoints (N, K, 3))``: each person's id (>= 1) and its keypoints (smoothed
            when ``smoothing``, else as given).

        Raises:
            ValueError: keypoints not ``(N, K, 3)`` with the sigmas' K.
        """
        kpts = np.asarray(keypoints, np.float64)
        if kpts.ndim != 3 or kpts.shape[1:] != (len(self.sigmas), 3):
            if not (kpts.size == 0 and kpts.ndim >= 1 and kpts.shape[0] == 0):
                raise ValueError(f"keypoints must be (N, {len(self.sigmas)}, 3), got {kpts.shape}")
            kpts = np.zeros((0, len(self.sigmas), 3))
        t = self.frames / self.fps if time_s is None else float(time_s)
        self.frames += 1
        n = len(kpts)
        ids = np.zeros(n, np.int64)
        matched_tracks: set[int] = set()
        if self.tracks and n:
            predicted = np.stack([tr.predicted() for tr in self.tracks])
            sim = self.similarity(predicted, kpts)
            rows, cols = linear_sum_assignment(1.0 - sim)
            for r, c in zip(rows, cols, strict=True):
                if sim[r, c] >= self.min_similarity:
                    ids[c] = self._continue(self.tracks[r], kpts[c])
                    matched_tracks.add(r)
        for i, tr in enumerate(self.tracks):
            if i not in matched_tracks:
                tr.misses += 1
        for c in np.flatnonzero(ids == 0):
            tr = _Track(self._next_id, kpts[c].copy(), joint_age=np.zeros(len(self.sigmas), np.int64))
            self._next_id += 1
            if self.smoothing:
                tr.smoother = OneEuroFilter(self.min_cutoff, self.beta)
            self.tracks.append(tr)
            ids[c] = tr.track_id
        self.tracks = [tr for tr in self.tracks if tr.misses <= self.max_age]
        out = kpts.copy()
        if self.smoothing:
            by_id = {tr.track_id: tr for tr in self.tracks}
            for i in range(n):
                tr = by_id[int(ids[i])]
                assert tr.smoother is not None
                valid = kpts[i, :, 2] > self.keypoint_threshold
                out[i, :, :2] = tr.smoother(kpts[i, :, :2], t, valid)
        return ids, out

    def _continue(self, tr: _Track, person: np.ndarray) -> int:
        """Match ``person`` to ``tr``: update its velocity (from the joints present in both) and pose.

        The track's pose keeps the joints not seen in this frame (moved along with the person, for at most
        ``max_age`` frames), so that a person seen from another part of the body next (an occluder passing)
        still overlaps its track.
        """
        thr = self.keypoint_threshold
        seen = person[:, 2] > thr
        both = (tr.keypoints[:, 2] > thr) & seen
        frames = tr.misses + 1
        step = tr.velocity * frames
        if both.any():
            step = (person[both, :2] - tr.keypoints[both, :2]).mean(0)
            tr.velocity = 0.5 * tr.velocity + 0.5 * step / frames
        kept = tr.keypoints.copy()
        kept[:, :2] += step
        tr.joint_age += frames
        kept[tr.joint_age > self.max_age, 2] = 0.0
        kept[seen] = person[seen]
        tr.joint_age[seen] = 0
        tr.keypoints = kept
        tr.misses = 0
        return tr.track_id


def tracking_metrics(
    frames: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
    oks_sigmas: Sequence[float],
    min_oks: float = 0.5,
) -> dict[str, float]:
    """CLEAR MOT and identity metrics of tracked poses against ground truth (motmetrics).

    A hypothesis can match a ground-truth person of the same frame when their OKS (the ground truth's visible
    joints, its area) is at least ``min_oks``; motmetrics then does the per-frame matching, counting misses,
    false positives and identity switches.

    Args:
        frames: per frame ``(gt_ids (G,), gt_keypoints (G, K, 3) x, y, visibility, gt_areas (G,) px^2,
            track_ids (N,), keypoints (N, K, 3) x, y, score)``.
        oks_sigmas: ``(K,)`` the data set's OKS sigmas.
        min_oks: least OKS of a match.

    Returns:
        ``{"mota", "motp" (mean 1 - OKS of matches), "idf1", "idp", "idr", "num_switches", "num_false_positives",
        "num_misses", "num_objects", "num_unique_objects", "mostly_tracked", "num_frames", "precision", "recall"}``.
    """
    import motmetrics as mm

    acc = mm.MOTAccumulator(auto_id=True)
    for gt_ids, gt_kpts, gt_areas, ids, kpts in frames:
        gt_kpts = np.asarray(gt_kpts, np.float64).reshape(len(gt_ids), len(oks_sigmas), 3)
        kpts = np.asarray(kpts, np.float64).reshape(len(ids), len(oks_sigmas), 3)
        if len(gt_ids) and len(ids):
            oks, _ = keypoint_oks(gt_kpts, kpts, oks_sigmas, areas=np.asarray(gt_areas, np.float64))
            dist = np.where(oks >= min_oks, 1.0 - oks, np.nan)
        else:
            dist = np.empty((len(gt_ids), len(ids)))
        acc.update([int(i) for i in gt_ids], [int(i) for i in ids], dist)
    names = [
        "mota", "motp", "idf1", "idp", "idr", "num_switches", "num_false_positives", "num_misses", "num_objects",
        "num_unique_objects", "mostly_tracked", "num_frames", "precision", "recall",
    ]  # fmt: skip
    summary = mm.metrics.create().compute(acc, metrics=names, name="all")
    return {k: float(summary[k].iloc[0]) for k in names}

"""Pose tracking across video frames: identities by Hungarian matching on OKS, One Euro smoothing, MOT metrics.

:class:`PoseTracker` gives each person of each frame a track id (1, 2, ...), as in the tracking-by-detection
trackers of bottom-up pose tools (PoseFlow's frame-to-frame pose matching, Xiao et al. 2018 "Simple Baselines"
Sec. 4 with OKS as the similarity): the people of a new frame are matched to the live tracks by
:func:`scipy.optimize.linear_sum_assignment` on ``1 - similarity``, where the similarity is the object keypoint
similarity (COCO OKS, with the data set's ``oks_sigmas``) between the person and the track's last pose moved by its
velocity, or the IoU of their boxes when they share no confident joint (fewer than ``min_joints``). Real detections
hold junk (partial duplicates of a person, low scores), so the association is ByteTrack's (Zhang et al., ECCV 2022;
:class:`TrackerSettings`): duplicates removed by pose NMS, high-score people matched first, low-score people only
continuing tracks, new tracks only from high-score people. Unmatched high-score people start new tracks; a track that
is not matched survives ``max_age`` frames and can take its person back in that window (re-identification); after
it, the person gets a new id. Optional One Euro smoothing (Casiez et al., CHI 2012) of each track's keypoints.

:func:`tracking_metrics` scores tracks against ground truth with motmetrics (CLEAR MOT: MOTA, ID switches;
Ristani et al. 2016: IDF1), matching people by OKS.

Letters: N people of a frame, T tracks, G ground-truth people, K keypoints. Coordinates are pixels of the frame.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

__all__ = [
    "OneEuroFilter", "PoseTracker", "TrackerSettings", "TRACKER_KEYS", "box_iou", "keypoint_oks", "pose_nms",
    "tracking_metrics",
]  # fmt: skip


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


@dataclass(frozen=True)
class TrackerSettings:
    """How :class:`PoseTracker` associates people with tracks (ByteTrack-style, Zhang et al., ECCV 2022, on poses).

    People are first de-duplicated (pose NMS: a person whose OKS with a higher-scoring one is at least ``nms_oks``
    is the same person found twice and gets no track), then split by person score: *high* (``>= high_score``)
    people are matched to the live tracks first; *low* ones (``low_score`` <= score < ``high_score``) only continue
    the tracks that were seen in the previous frame and are still unmatched, and never start a track; people below
    ``low_score`` are ignored. A new track starts from an unmatched high person and is confirmed (gets its id) after
    ``min_hits`` consecutive matched frames (the people of the first frame at once); an unconfirmed track that misses a
    frame is dropped.

    Attributes:
        max_age: frames a confirmed track that is not matched survives (and can take its person back); 0: it ends
            the first frame it is missed.
        min_similarity: least similarity (OKS, or box IoU without common joints) of any match.
        high_score: person score (mean joint score, ``Prediction.scores``) from which a person is matched first and
            may start a track. 0.3 and 0.25 were measured with the quickstart models on synthetic videos and a
            still-image clip (README "Tracking"): a start threshold of 0.4 left people that stay at 0.3-0.4 without a
            track, and people under 0.25 are mostly junk.
        low_score: person score below which a person is not tracked at all.
        min_hits: matched frames a new track needs to be confirmed (1: at once).
        nms_oks: OKS at or above which a lower-scoring person is a duplicate of a higher-scoring one (1.0: off).
        max_jump: largest difference between a match's step and the step the track predicted, in person sizes (the
            square root of the box area of the person's joints), that counts as motion. A larger one is a jump (a
            scene cut, where an old track takes a person of the new scene): the track moves onto the person and keeps
            its velocity, which would otherwise carry the jump into the next frame's prediction and lose the person
            there (README "Tracking"). ``inf``: every step updates the velocity.
        max_joint_shift: largest distance, in the track's person sizes (the square root of the box area of its
            joints), between a matched person's joint and where the track predicted it, for that joint to update the
            track's pose. A joint farther off is one that grouping put on a neighbour where people overlap: the track
            keeps its predicted joint, so that its pose does not become a mix of two people that then fits the
            neighbour better than the person (README "Tracking"). It applies where at least 3 joints are common and
            at most half of them are off (more: the pose really changed, and the person is taken whole), and not at a
            jump. ``inf``: every joint updates.
        keypoint_threshold: a joint counts for the similarity when its score is above this.
        min_joints: fewer common confident joints than this: the box IoU is the similarity instead of OKS.
        smoothing: One Euro filter each track's keypoints (:class:`OneEuroFilter` with ``min_cutoff``, ``beta``).
        min_cutoff: One Euro cutoff at rest, Hz.
        beta: One Euro speed coefficient, 1 / pixel.

    Raises:
        ValueError: a value out of its range (the message names the setting).
    """

    max_age: int = 30
    min_similarity: float = 0.1
    high_score: float = 0.3
    low_score: float = 0.25
    min_hits: int = 1
    nms_oks: float = 0.8
    max_jump: float = 0.5
    max_joint_shift: float = 0.35
    keypoint_threshold: float = 0.1
    min_joints: int = 1
    smoothing: bool = False
    min_cutoff: float = 1.0
    beta: float = 0.05

    def __post_init__(self) -> None:
        if int(self.max_age) < 0:
            raise ValueError(f"max_age must be >= 0 frames, got {self.max_age}")
        if not 0.0 < float(self.min_similarity) <= 1.0:
            raise ValueError(f"min_similarity must be in (0, 1], got {self.min_similarity}")
        if not 0.0 <= float(self.low_score) <= float(self.high_score) <= 1.0:
            raise ValueError(
                f"scores must satisfy 0 <= low_score <= high_score <= 1, got low_score={self.low_score}, "
                f"high_score={self.high_score}"
            )
        if int(self.min_hits) < 1:
            raise ValueError(f"min_hits must be >= 1 frame, got {self.min_hits}")
        if not 0.0 < float(self.nms_oks) <= 1.0:
            raise ValueError(f"nms_oks must be in (0, 1] (1: no duplicate suppression), got {self.nms_oks}")
        if not float(self.max_jump) > 0.0:
            raise ValueError(f"max_jump must be > 0 person sizes (inf: off), got {self.max_jump}")
        if not float(self.max_joint_shift) > 0.0:
            raise ValueError(f"max_joint_shift must be > 0 person sizes (inf: off), got {self.max_joint_shift}")
        if not (self.min_cutoff > 0 and self.beta >= 0):
            raise ValueError(f"min_cutoff must be > 0 and beta >= 0, got {self.min_cutoff}, {self.beta}")
        for name in ("max_age", "min_hits", "min_joints"):
            object.__setattr__(self, name, int(getattr(self, name)))
        for name in (
            "min_similarity",
            "high_score",
            "low_score",
            "nms_oks",
            "max_jump",
            "max_joint_shift",
            "keypoint_threshold",
            "min_cutoff",
            "beta",
        ):
            object.__setattr__(self, name, float(getattr(self, name)))
        object.__setattr__(self, "smoothing", bool(self.smoothing))

    def replace(self, **changes: float | int | bool) -> TrackerSettings:
        """A copy with ``changes``, checked again.

        Raises:
            ValueError: an unknown setting (the message lists the known ones) or a value out of range.
        """
        unknown = set(changes) - set(TRACKER_KEYS)
        if unknown:
            raise ValueError(f"unknown tracker settings {sorted(unknown)}; allowed: {list(TRACKER_KEYS)}")
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


#: The keys of :class:`TrackerSettings`.
TRACKER_KEYS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(TrackerSettings))


@dataclass
class _Track:
    track_id: int  # 0 until confirmed
    keypoints: np.ndarray  # (K, 3) last matched pose (raw, not smoothed), with recently seen joints kept
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2))  # px / frame, median joint displacement
    misses: int = 0  # frames since last matched
    hits: int = 1  # frames matched (a new track has its first)
    joint_age: np.ndarray = field(
        default_factory=lambda: np.zeros(0, np.int64)
    )  # (K,) frames since each joint was seen
    smoother: OneEuroFilter | None = None

    def predicted(self) -> np.ndarray:
        """The last pose moved by the velocity over the frames since it was seen."""
        out = self.keypoints.copy()
        out[:, :2] += self.velocity * (self.misses + 1)
        return out


def pose_nms(keypoints: np.ndarray, scores: np.ndarray, sigmas: Sequence[float], oks: float, threshold: float = 0.1):
    """Which people are kept by greedy pose NMS: in order of score, a person whose OKS with a kept higher-scoring
    one (that one's box area) is at least ``oks`` is a duplicate.

    Args:
        keypoints: ``(N, K, 3)`` x, y, score (pixels).
        scores: ``(N,)`` person scores.
        sigmas: ``(K,)`` OKS sigmas.
        oks: the duplicate threshold (1.0 or more: keep all).
        threshold: a joint is present when its score is above this.

    Returns:
        ``(N,)`` bool, True for the people kept.
    """
    n = len(keypoints)
    keep = np.ones(n, bool)
    if n < 2 or oks > 1.0:
        return keep
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    sim, common = keypoint_oks(keypoints, keypoints, sigmas, threshold=threshold)
    kept: list[int] = []
    for i in order:
        if any(common[j, i] > 0 and sim[j, i] >= oks for j in kept):
            keep[i] = False
        else:
            kept.append(int(i))
    return keep


class PoseTracker:
    """Identities for the people of consecutive frames (see the module docstring and :class:`TrackerSettings`).

    Args:
        oks_sigmas: ``(K,)`` per-keypoint OKS sigmas of the data set (``KeypointLayout.oks_sigmas``).
        settings: the association settings (default :class:`TrackerSettings`).
        fps: frame rate for the filter when ``update`` gets no ``time_s``, frames per second.
        **changes: settings to change (``max_age=10``, ``smoothing=True``, ...), as ``settings.replace``.

    Raises:
        ValueError: bad settings (the message names the setting).
    """

    def __init__(
        self,
        oks_sigmas: Sequence[float],
        settings: TrackerSettings | None = None,
        *,
        fps: float = 30.0,
        **changes: float | int | bool,
    ) -> None:
        if not float(fps) > 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        self.settings = (settings or TrackerSettings()).replace(**changes)
        self.sigmas = np.asarray(oks_sigmas, np.float64)
        self.fps = float(fps)
        self.tracks: list[_Track] = []
        self.frames = 0
        self._next_id = 1

    @property
    def smoothing(self) -> bool:
        """Whether the returned keypoints are smoothed (``settings.smoothing``)."""
        return self.settings.smoothing

    def reset(self) -> None:
        """Forget all tracks; ids start at 1 again."""
        self.tracks, self.frames, self._next_id = [], 0, 1

    def similarity(self, tracks: np.ndarray, people: np.ndarray) -> np.ndarray:
        """``(T, N)`` similarity of track poses ``(T, K, 3)`` and people ``(N, K, 3)``: OKS over the common
        confident joints, box IoU where fewer than ``min_joints`` are common."""
        thr = self.settings.keypoint_threshold
        oks, common = keypoint_oks(tracks, people, self.sigmas, threshold=thr)
        low = common < self.settings.min_joints
        if low.any():
            iou = box_iou(_boxes(tracks, tracks[..., 2] > thr), _boxes(people, people[..., 2] > thr))
            oks = np.where(low, iou, oks)
        return oks

    def _match(self, track_idx: list[int], people_idx: list[int], kpts: np.ndarray) -> list[tuple[int, int]]:
        """Hungarian matching of tracks ``track_idx`` and people ``people_idx`` on ``1 - similarity``, pairs below
        ``min_similarity`` left out: ``[(track index, person index)]``."""
        if not track_idx or not people_idx:
            return []
        predicted = np.stack([self.tracks[t].predicted() for t in track_idx])
        sim = self.similarity(predicted, kpts[people_idx])
        rows, cols = linear_sum_assignment(1.0 - sim)
        return [
            (track_idx[r], people_idx[c])
            for r, c in zip(rows, cols, strict=True)
            if sim[r, c] >= self.settings.min_similarity
        ]

    def update(
        self, keypoints: np.ndarray, time_s: float | None = None, scores: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Track the people of the next frame.

        Args:
            keypoints: ``(N, K, 3)`` x, y (frame pixels), score.
            time_s: the frame's time, seconds (for smoothing); default ``frames / fps``.
            scores: ``(N,)`` person scores (``Prediction.scores``); default: every person is a high-score one
                (exact detections).

        Returns:
            ``(track_ids (N,) int64, keypoints (N, K, 3))``: each person's id (>= 1), or 0 for a person that is
            not tracked (a duplicate, a low-score person that continues no track, a track not yet confirmed), and
            its keypoints (smoothed when ``smoothing``, else as given).

        Raises:
            ValueError: keypoints not ``(N, K, 3)`` with the sigmas' K, or scores not ``(N,)``.
        """
        st = self.settings
        kpts = np.asarray(keypoints, np.float64)
        if kpts.ndim != 3 or kpts.shape[1:] != (len(self.sigmas), 3):
            if not (kpts.size == 0 and kpts.ndim >= 1 and kpts.shape[0] == 0):
                raise ValueError(f"keypoints must be (N, {len(self.sigmas)}, 3), got {kpts.shape}")
            kpts = np.zeros((0, len(self.sigmas), 3))
        n = len(kpts)
        score = np.ones(n) if scores is None else np.asarray(scores, np.float64).reshape(-1)
        if len(score) != n:
            raise ValueError(f"scores must be ({n},) for {n} people, got {np.shape(scores)}")
        t = self.frames / self.fps if time_s is None else float(time_s)
        self.frames += 1

        unique = pose_nms(kpts, score, self.sigmas, st.nms_oks if st.nms_oks < 1.0 else 2.0, st.keypoint_threshold)
        high = [i for i in range(n) if unique[i] and score[i] >= st.high_score]
        low = [i for i in range(n) if unique[i] and st.low_score <= score[i] < st.high_score]
        matched: dict[int, int] = {}  # track index -> person index
        first = self._match(list(range(len(self.tracks))), high, kpts)
        matched.update(first)
        left = [
            t
            for t in range(len(self.tracks))
            if t not in matched and self.tracks[t].misses == 0 and self.tracks[t].track_id > 0
        ]
        matched.update(self._match(left, low, kpts))

        ids = np.zeros(n, np.int64)
        for ti, pi in matched.items():
            tr = self.tracks[ti]
            self._continue(tr, kpts[pi])
            tr.hits += 1
            if tr.track_id == 0 and tr.hits >= st.min_hits:
                tr.track_id, self._next_id = self._next_id, self._next_id + 1
            ids[pi] = tr.track_id
        survivors = []
        for ti, tr in enumerate(self.tracks):
            if ti not in matched:
                tr.misses += 1
                if tr.track_id == 0 or tr.misses > st.max_age:
                    continue  # an unconfirmed track ends with its first miss
            survivors.append(tr)
        taken = set(matched.values())
        for c in high:
            if c in taken:
                continue
            tr = _Track(0, kpts[c].copy(), joint_age=np.zeros(len(self.sigmas), np.int64))
            if st.min_hits <= 1 or self.frames == 1:  # the first frame's people are confirmed at once (ByteTrack)
                tr.track_id, self._next_id = self._next_id, self._next_id + 1
            if st.smoothing:
                tr.smoother = OneEuroFilter(st.min_cutoff, st.beta)
            survivors.append(tr)
            ids[c] = tr.track_id
        self.tracks = survivors
        out = kpts.copy()
        if st.smoothing:
            by_id = {tr.track_id: tr for tr in self.tracks if tr.track_id > 0}
            for i in np.flatnonzero(ids > 0):
                tr = by_id[int(ids[i])]
                assert tr.smoother is not None
                valid = kpts[i, :, 2] > st.keypoint_threshold
                out[i, :, :2] = tr.smoother(kpts[i, :, :2], t, valid)
        return ids, out

    def _continue(self, tr: _Track, person: np.ndarray) -> None:
        """Match ``person`` to ``tr``: update its velocity and pose.

        The velocity is an exponential average (weight 0.5) of the step, the median over the joints present in both
        poses of their displacement (robust to the few joints that grouping puts on another person). A step more than
        ``max_jump`` person sizes away from the predicted one is a jump (a scene cut), not motion: the velocity stays.

        The track's pose takes the person's joints, except those more than ``max_joint_shift`` track sizes from
        where the track predicted them (grouping put them on a neighbour; the track keeps its predicted joint). It
        keeps the joints not seen in this frame (moved along with the person, for at most ``max_age`` frames), so
        that a person seen from another part of the body next (an occluder passing) still overlaps its track.
        """
        st = self.settings
        thr = st.keypoint_threshold
        seen = person[:, 2] > thr
        had = tr.keypoints[:, 2] > thr
        both = had & seen
        frames = tr.misses + 1
        step = tr.velocity * frames
        take = seen
        if both.any():
            # the median over joints: where grouping put a few joints on a neighbour (people crossing), the mean
            # would carry the track towards the neighbour and the next frame's prediction would miss the person
            was = tr.keypoints[both, :2]
            shift = person[both, :2] - was
            moved = np.sort(shift, axis=0)  # per axis: np.median, 6x cheaper
            step = 0.5 * (moved[(len(moved) - 1) // 2] + moved[len(moved) // 2])
            xy = person[seen, :2]
            w, h = (xy.max(0) - xy.min(0)).tolist()
            dx, dy = (step - tr.velocity * frames).tolist()  # the step's difference from the predicted one
            if dx * dx + dy * dy <= st.max_jump**2 * max(w * h, 1.0):  # within max_jump person sizes: motion
                tr.velocity = 0.5 * tr.velocity + 0.5 * step / frames
                if len(was) >= 3:  # joints far from the track's step: on a neighbour, unless most are
                    box = tr.keypoints[had, :2]  # the track's size: the box of all its joints
                    tw, th = (box.max(0) - box.min(0)).tolist()
                    off = ((shift - step) ** 2).sum(1) > st.max_joint_shift**2 * max(tw * th, 1.0)
                    if off.any() and 2 * int(off.sum()) <= len(was):
                        take = seen.copy()
                        take[np.flatnonzero(both)[off]] = False
        kept = tr.keypoints.copy()
        kept[:, :2] += step
        tr.joint_age += frames
        kept[tr.joint_age > st.max_age, 2] = 0.0
        kept[take] = person[take]
        tr.joint_age[take] = 0
        tr.keypoints = kept
        tr.misses = 0


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

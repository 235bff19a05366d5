"""The tracker with real detections' junk: duplicates and low-score people never take a confident person's track and
start none; people missed for up to ``max_age`` frames, crossing people, overlapping people whose grouping swaps
joints, and a person an old track takes at a scene cut keep their ids (ByteTrack-style association,
``bottomup.engine.tracking.TrackerSettings``)."""

from __future__ import annotations

import numpy as np
import pytest

from bottomup.data.synthetic_video import SyntheticVideo
from bottomup.engine.tracking import PoseTracker, TrackerSettings, pose_nms, tracking_metrics


def _visible_only(keypoints: np.ndarray) -> np.ndarray:
    out = np.asarray(keypoints, np.float64).copy()
    out[..., 2] = (out[..., 2] > 0).astype(np.float64)
    return out


def _junk_of(person: np.ndarray, rng: np.random.Generator, joints: int = 4) -> np.ndarray:
    """A partial duplicate of ``person`` as grouping leaves them: a few of its joints, a few px off, low scores."""
    junk = np.zeros_like(person)
    seen = np.flatnonzero(person[:, 2] > 0)
    pick = rng.choice(seen, size=min(joints, len(seen)), replace=False)
    junk[pick, :2] = person[pick, :2] + rng.normal(0, 2.0, (len(pick), 2))
    junk[pick, 2] = 0.2
    return junk


def _frames_with_junk(seed: int, num_frames: int = 80, num_people: int = 4):
    """Per frame of a synthetic crossing video: ground truth, and detections = the visible joints of each person
    (scores 0.4-0.9) plus one partial low-score duplicate (from 0.01 up to the default ``high_score``: ignored or
    low) of each, shuffled."""
    rng = np.random.default_rng(seed)
    high = TrackerSettings().high_score
    for frame in SyntheticVideo(seed=seed, num_frames=num_frames, num_people=num_people):
        real = _visible_only(frame.keypoints)
        present = real[..., 2].sum(1) > 0
        real = real[present]
        junk = np.stack([_junk_of(p, rng) for p in real]) if len(real) else real
        kpts = np.concatenate([real, junk])
        scores = np.concatenate([rng.uniform(0.4, 0.9, len(real)), rng.uniform(0.01, high, len(junk))])
        order = rng.permutation(len(kpts))
        yield frame, kpts[order], scores[order], order < len(real)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_junk_never_takes_a_track_nor_starts_one(seed, coco_layout):
    """With a low-score partial duplicate beside every person of a crossing video, the real people keep their ids
    (no switch, IDF1 >= 0.99 as on exact detections) and no duplicate holds a track."""
    tracker = PoseTracker(coco_layout.oks_sigmas, max_age=10)
    rows, junk_ids = [], []
    for frame, kpts, scores, real in _frames_with_junk(seed):
        ids, out = tracker.update(kpts, scores=scores)
        junk_ids += ids[~real].tolist()
        rows.append((frame.ids, frame.keypoints, frame.areas, ids[ids > 0], out[ids > 0]))
    m = tracking_metrics(rows, coco_layout.oks_sigmas)
    assert set(junk_ids) == {0}, "a duplicate held a track"
    assert m["num_switches"] == 0 and m["idf1"] >= 0.99, m
    assert {t.track_id for t in tracker.tracks} <= {1, 2, 3, 4}
    # the same detections through one assignment over everyone (the previous association: no score split, no
    # NMS): the duplicates start tracks of their own
    plain = PoseTracker(coco_layout.oks_sigmas, TrackerSettings(high_score=0.0, low_score=0.0, nms_oks=1.0), max_age=10)
    held = [plain.update(kpts, scores=scores)[0][~real] for _, kpts, scores, real in _frames_with_junk(seed)]
    assert (np.concatenate(held) > 0).mean() > 0.5


def test_a_confident_person_keeps_its_track_against_its_duplicate(coco_layout):
    """The case seen with the quickstart model: a person (0.48-0.52) and its partial duplicate (0.05-0.25) on the
    person's own joints, which fits the track's pose as well as the person. The person keeps id 1 in every frame,
    the duplicate never gets an id, and no second track starts."""
    rng = np.random.default_rng(0)
    tracker = PoseTracker(coco_layout.oks_sigmas)
    for i, frame in enumerate(SyntheticVideo(seed=0, num_frames=6, num_people=1)):
        person = _visible_only(frame.keypoints)[0]
        duplicate = _junk_of(person, rng, joints=8)
        duplicate[duplicate[:, 2] > 0, :2] = person[duplicate[:, 2] > 0, :2]
        scores = np.array([0.05, 0.48]) if i % 2 else np.array([0.25, 0.52])
        ids, _ = tracker.update(np.stack([duplicate, person]), scores=scores)
        assert ids.tolist() == [0, 1], (i, ids)
    assert [t.track_id for t in tracker.tracks] == [1]


def test_low_score_people_only_continue_tracks(coco_layout):
    """A low-score person alone starts nothing; a tracked person whose score drops continues its track."""
    frames = list(SyntheticVideo(seed=1, num_frames=8, num_people=1))
    person = [_visible_only(f.keypoints)[0] for f in frames]
    tracker = PoseTracker(coco_layout.oks_sigmas)
    low = (tracker.settings.low_score + tracker.settings.high_score) / 2
    for p in person[:3]:
        ids, _ = tracker.update(p[None], scores=np.array([low]))
        assert ids.tolist() == [0]
    assert tracker.tracks == []
    ids, _ = tracker.update(person[3][None], scores=np.array([0.8]))
    assert ids.tolist() == [1]
    for p in person[4:]:
        ids, _ = tracker.update(p[None], scores=np.array([low]))
        assert ids.tolist() == [1]
    below = tracker.settings.low_score / 2
    ids, _ = tracker.update(person[-1][None], scores=np.array([below]))
    assert ids.tolist() == [0]


def test_a_track_keeps_its_persons_motion_when_grouping_puts_joints_on_a_neighbour(coco_layout):
    """Where people cross, grouping puts a few of a person's joints on the neighbour. The track's velocity (what its
    next pose is predicted with) must stay the person's own motion: the median joint displacement ignores the
    outliers, where the mean (the earlier rule) moved the track ~10 px per frame towards the neighbour."""
    frame = next(iter(SyntheticVideo(seed=0, num_frames=1, num_people=1)))
    person = _visible_only(frame.keypoints)[0]
    neighbour = person.copy()
    neighbour[:, 0] += 60.0  # standing still, 60 px to the right
    clean, mixed = PoseTracker(coco_layout.oks_sigmas), PoseTracker(coco_layout.oks_sigmas)
    for t in range(8):
        walker = person.copy()
        walker[:, 0] += 2.0 * t  # 2 px per frame to the right
        grouped = walker.copy()
        if t in (2, 3):
            grouped[5:10, :2] = neighbour[5:10, :2]  # 5 of 17 joints on the neighbour
        ids_clean, _ = clean.update(np.stack([walker, neighbour]), scores=np.array([0.8, 0.8]))
        ids_mixed, _ = mixed.update(np.stack([grouped, neighbour]), scores=np.array([0.8, 0.8]))
        assert ids_clean.tolist() == ids_mixed.tolist() == [1, 2]
        np.testing.assert_allclose(mixed.tracks[0].velocity, clean.tracks[0].velocity, atol=0.05)
    np.testing.assert_allclose(clean.tracks[0].velocity, [2.0, 0.0], atol=0.05)


def test_a_track_keeps_its_persons_pose_when_grouping_swaps_joints_with_a_neighbour(coco_layout):
    """Two overlapping people (0.7 of a body width apart) whose grouping swaps the joints of one side between them
    for a frame (the left arm and leg, then the right ones, as the quickstart model does where figures overlap). The
    joints far from where the track predicted them do not replace the track's: each track stays one person's pose
    and both keep their ids. Taking every joint (``max_joint_shift=inf``, the earlier rule) leaves each track half
    the other person after the first swap, and the second swap hands each id to the other person for good."""
    frame = next(iter(SyntheticVideo(seed=0, num_frames=1, num_people=1)))
    person = _visible_only(frame.keypoints)[0]
    width = np.ptp(person[person[:, 2] > 0, 0])
    left, right = [5, 7, 9, 11, 13, 15], [6, 8, 10, 12, 14, 16]

    def ids_over_the_swaps(**changes: float) -> list[list[int]]:
        tracker = PoseTracker(coco_layout.oks_sigmas, **changes)
        out = []
        for t in range(8):
            a = _moved(person, np.array([1.0 * t, 0.0]))  # walks 1 px per frame to the right
            b = _moved(person, np.array([0.7 * width, 0.0]))  # stands
            swap = {3: left, 4: right}.get(t, [])
            a[swap, :2], b[swap, :2] = b[swap, :2].copy(), a[swap, :2].copy()
            out.append(tracker.update(np.stack([a, b]), scores=np.array([0.8, 0.7]))[0].tolist())
        return out

    assert ids_over_the_swaps() == [[1, 2]] * 8
    assert ids_over_the_swaps(max_joint_shift=float("inf"))[4:] == [[2, 1]] * 4


def test_new_tracks_are_confirmed_after_min_hits(coco_layout):
    """With ``min_hits=3`` a person appearing after the first frame gets its id on its third frame; one seen for a
    single frame (a flicker) never gets one, and ids stay consecutive."""
    video = list(SyntheticVideo(seed=2, num_frames=8, num_people=2))
    a = [_visible_only(f.keypoints)[0] for f in video]
    b = [_visible_only(f.keypoints)[1] for f in video]
    tracker = PoseTracker(coco_layout.oks_sigmas, min_hits=3)
    assert tracker.update(a[0][None], scores=np.array([0.9]))[0].tolist() == [1]  # the first frame: at once
    assert tracker.update(np.stack([a[1], b[1]]), scores=np.array([0.9, 0.9]))[0].tolist() == [1, 0]  # flicker
    assert tracker.update(a[2][None], scores=np.array([0.9]))[0].tolist() == [1]
    got = [tracker.update(np.stack([a[i], b[i]]), scores=np.array([0.9, 0.9]))[0].tolist() for i in (3, 4, 5)]
    assert got == [[1, 0], [1, 0], [1, 2]]


def test_pose_nms_keeps_distinct_people_and_drops_duplicates(coco_layout):
    frame = next(iter(SyntheticVideo(seed=0, num_frames=1, num_people=3)))
    real = _visible_only(frame.keypoints)
    duplicate = real[0].copy()
    duplicate[:, :2] += 1.5
    kpts = np.concatenate([real, duplicate[None]])
    keep = pose_nms(kpts, np.array([0.9, 0.8, 0.7, 0.1]), coco_layout.oks_sigmas, oks=0.5)
    assert keep.tolist() == [True, True, True, False]
    keep = pose_nms(kpts, np.array([0.9, 0.8, 0.7, 0.95]), coco_layout.oks_sigmas, oks=0.5)
    assert keep.tolist() == [False, True, True, True]  # the higher-scoring copy is the one kept


def test_tracker_settings_check_their_values():
    for bad, key in [({"high_score": 0.1, "low_score": 0.2}, "low_score"), ({"min_hits": 0}, "min_hits"),
                     ({"nms_oks": 0.0}, "nms_oks"), ({"max_age": -1}, "max_age"),
                     ({"max_joint_shift": 0.0}, "max_joint_shift"), ({"max_jump": -1.0}, "max_jump")]:  # fmt: skip
        with pytest.raises(ValueError, match=key):
            TrackerSettings(**bad)
    with pytest.raises(ValueError, match="unknown tracker settings"):
        PoseTracker([0.1] * 17, max_agee=3)


class _StillImageDetector:
    """Stands in for the estimator on a still-image clip: the people of a synthetic frame, moved with the shift
    ``clip_continuity`` applies (read from the first image column's roll), each with a whole-body duplicate of low
    score at the same place (what grouping leaves beside a person)."""

    color = "rgb"

    def __init__(
        self, layout, people: np.ndarray, scores: list[float], first_scores: list[float] | None = None
    ) -> None:
        self.layout, self.people, self.person_scores = layout, people, scores
        self.first_scores = scores if first_scores is None else first_scores  # at the image's first frame (shift 0)

    def __call__(self, image: np.ndarray):
        from types import SimpleNamespace

        shift = int(np.flatnonzero(image[0, :, 0] == 255)[0])  # the marker column, rolled right by the shift
        moved = self.people.copy()
        moved[..., 0] += shift
        duplicate = moved.copy()
        duplicate[..., 2] *= 0.3
        keypoints = np.concatenate([duplicate, moved])
        scores = np.array([0.04] * len(moved) + list(self.first_scores if shift == 0 else self.person_scores))
        return SimpleNamespace(keypoints=keypoints, scores=scores)


def test_the_clip_metric_compares_each_person_with_itself_not_its_duplicate(coco_layout):
    """``bench --only tracking``'s still-image clip: each confident person is compared with the same person one
    frame earlier, not with a low-score duplicate at the same place (which the tracker rightly leaves without an id):
    with the default tracker all are kept; a tracker that tracks nobody (``high_score`` above every score) keeps none."""
    from bottomup.bench.tracking import clip_continuity

    frame = next(iter(SyntheticVideo(seed=0, num_frames=1, num_people=3)))
    people = _visible_only(frame.keypoints)
    people = people[people[..., 2].sum(1) > 0]
    image = np.zeros((240, 320, 3), np.uint8)
    image[0, 0, 0] = 255
    detector = _StillImageDetector(coco_layout, people, [0.45, 0.7, 0.9][: len(people)])
    c = clip_continuity(detector, [image, image], repeats=4)
    assert c.compared == 2 * 3 * len(people) and c.kept == c.compared
    assert (c.steady_kept, c.steady_compared) == (c.kept, c.compared)
    c = clip_continuity(detector, [image], repeats=4, high_score=0.95, low_score=0.95)
    assert c.compared == 3 * len(people) and c.kept == 0 and c.steady_compared == c.compared


def test_the_clip_metric_counts_a_person_whose_score_rises_past_the_start_threshold_apart(coco_layout):
    """A person under the tracker's start threshold at an image's first frame (0.29, no track yet: new tracks only
    from high-score people) and confident after it has no id to keep at the second frame: it counts against the
    clip's share over all confident people, not against the share over people confident in both frames."""
    from bottomup.bench.tracking import clip_continuity

    frame = next(iter(SyntheticVideo(seed=0, num_frames=1, num_people=3)))
    people = _visible_only(frame.keypoints)
    people = people[people[..., 2].sum(1) > 0]
    assert len(people) >= 2
    image = np.zeros((240, 320, 3), np.uint8)
    image[0, 0, 0] = 255
    scores = [0.7] * len(people)
    detector = _StillImageDetector(coco_layout, people, scores, first_scores=[0.29] + scores[1:])
    c = clip_continuity(detector, [image], repeats=4)
    assert (c.compared, c.kept) == (3 * len(people), 3 * len(people) - 1)
    assert (c.steady_compared, c.steady_kept) == (3 * len(people) - 1, 3 * len(people) - 1) and c.rising == 1


def test_a_scene_cut_does_not_become_the_tracks_motion(coco_layout):
    """At a scene cut an old track can take a person of the new scene with a weak match (here a person half the size,
    as after a cut from a near to a far shot). The jump is not motion: a step more than ``max_jump`` person sizes
    from the predicted one moves the track onto the person and keeps the velocity, so the next frame's prediction
    stays on the person, who keeps the id. With ``max_jump=inf`` the jump becomes the velocity, and with every joint
    taken as well (``max_joint_shift=inf``: the earlier rules) the next prediction is carried off the person: a new
    id."""
    sigmas = coco_layout.oks_sigmas
    frame = next(iter(SyntheticVideo(seed=0, num_frames=1, num_people=1)))
    person = _visible_only(frame.keypoints)[0]
    walked = _moved(person, np.array([2.0 * 6, 0.0]))  # where the person walking 2 px per frame is at the cut
    centre = walked[walked[:, 2] > 0, :2].mean(0)
    far = walked.copy()
    far[:, :2] = centre + 0.5 * (walked[:, :2] - centre)
    # the jump of the cut: the first (down and right) whose similarity with the track's prediction is weak
    probe = PoseTracker(sigmas)
    jumps = [np.array([d, 1.5 * d]) for d in np.arange(0.0, 60.0, 1.0)]
    sims = [probe.similarity(walked[None], _moved(far, j)[None])[0, 0] for j in jumps]
    jump = next(j for j, s in zip(jumps, sims, strict=True) if 0.15 < s < 0.2)
    cut = _moved(far, jump)

    def ids_over_the_cut(**changes: float) -> tuple[list[int], np.ndarray]:
        t = PoseTracker(sigmas, **changes)
        ids = [int(t.update(_moved(person, np.array([2.0 * i, 0.0]))[None])[0][0]) for i in range(6)]
        ids.append(int(t.update(cut[None])[0][0]))
        velocity = t.tracks[0].velocity.copy()  # after the cut
        ids.append(int(t.update(_moved(cut, np.array([2.0, 0.0]))[None])[0][0]))  # the new scene pans 2 px
        return ids, velocity

    ids, velocity = ids_over_the_cut()
    assert ids == [1] * 8
    np.testing.assert_allclose(velocity, [2.0, 0.0], atol=0.25)  # the person's walk (1.94 after 6 frames), not the jump
    ids, velocity = ids_over_the_cut(max_jump=float("inf"))
    assert np.linalg.norm(velocity) > 0.25 * np.linalg.norm(jump), velocity  # the jump, averaged in
    taken, _ = ids_over_the_cut(max_jump=float("inf"), max_joint_shift=float("inf"))
    assert taken[:7] == [1] * 7 and taken[7] != 1, taken


def _moved(pose: np.ndarray, by: np.ndarray) -> np.ndarray:
    out = pose.copy()
    out[:, :2] += by
    return out

"""Videos, cameras and streams: ``python -m bottomup.infer`` on synthetic videos (jsonl + rendered mp4), the pose
tracker on ideal detections of the synthetic video (identities, survival window), the One Euro filter, and the
``PoseEstimator.track`` API."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import compose_train_config
from omegaconf import OmegaConf

from bottomup.api import PoseEstimator, evaluate_tracking
from bottomup.build import build_model
from bottomup.codec import AssociativeEmbeddingCodec
from bottomup.data.ideal_cases import ideal_case
from bottomup.data.synthetic_video import SyntheticVideo, write_synthetic_video
from bottomup.data.video import TruncatedVideoWarning, VideoReadError, open_source
from bottomup.engine.inference import postprocess
from bottomup.engine.tracking import OneEuroFilter, PoseTracker, box_iou, keypoint_oks, tracking_metrics
from bottomup.engine.writers import VideoOutput
from bottomup.infer import main

REPO = Path(__file__).resolve().parents[2]


def _frames_of(path: Path) -> tuple[int, tuple[int, int], float]:
    """Frames decoded by OpenCV (counted, not the header's number), ``(width, height)`` and fps of a video."""
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened(), path
    size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    fps = cap.get(cv2.CAP_PROP_FPS)
    n = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        assert frame.shape[:2] == (size[1], size[0])
        n += 1
    cap.release()
    return n, size, fps


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A width-8 HigherHRNet (COCO layout) with biased random heads, so that it finds people in any frame."""
    cfg = compose_train_config(["data.root=unused", "model.width=8", "data.input_size=128", "output_dir=unused"])
    torch.manual_seed(0)
    model = build_model(cfg.model, 17)
    with torch.no_grad():
        for layer in model.final_layers:
            torch.nn.init.normal_(layer.weight, std=0.05)
            layer.bias[:17] = 0.15
    from bottomup.engine.checkpoint import save_checkpoint

    path = tmp_path_factory.mktemp("tiny") / "run" / "last.pt"
    return save_checkpoint(
        {"model": model.state_dict(), "config": OmegaConf.to_yaml(cfg, resolve=True), "epoch": 1, "step": 1}, path
    )


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """An 8-frame 160 x 120 synthetic video at 25 fps."""
    path = tmp_path_factory.mktemp("clip") / "walk.mp4"
    write_synthetic_video(path, SyntheticVideo(seed=1, num_frames=8, width=160, height=120, num_people=2))
    return path


def test_video_cli_writes_one_line_per_frame_and_a_playable_mp4(clip, tiny_checkpoint, tmp_path):
    out = tmp_path / "out"
    args = [str(clip), "--checkpoint", str(tiny_checkpoint), "--output-dir", str(out), "--no-progress", "--no-flip"]
    assert main([*args, "--min-score", "0.05"]) == 0
    lines = _lines(out / "walk.jsonl")
    assert [r["frame"] for r in lines] == list(range(8))
    np.testing.assert_allclose([r["time_s"] for r in lines], np.arange(8) / 25.0, atol=1e-3)
    people = [p for r in lines for p in r["people"]]
    assert people, "the biased net finds people"
    for p in people:
        assert set(p) == {"track_id", "keypoints", "score"}
        assert isinstance(p["track_id"], int) and p["track_id"] >= 1
        assert len(p["keypoints"]) == 17 * 3 and p["score"] >= 0.05
    for r in lines:  # ids are unique within a frame
        ids = [p["track_id"] for p in r["people"]]
        assert len(ids) == len(set(ids))
    n, size, fps = _frames_of(out / "walk.mp4")
    assert (n, size) == (8, (160, 120)) and fps == pytest.approx(25.0, abs=0.01)
    assert not (out / "results.json").exists()  # videos only: no image results

    # every 3rd frame, at most 2, no tracking, no rendering
    out2 = tmp_path / "out2"
    rc = main(
        [
            *args[:3],
            "--output-dir",
            str(out2),
            "--no-progress",
            "--no-flip",
            "--stride",
            "3",
            "--max-frames",
            "2",
            "--no-track",
            "--no-render",
        ]
    )
    assert rc == 0
    lines = _lines(out2 / "walk.jsonl")
    assert [r["frame"] for r in lines] == [0, 3]
    assert all(p["track_id"] is None for r in lines for p in r["people"])
    assert not (out2 / "walk.mp4").exists()


def test_image_folder_as_a_sequence(clip, tiny_checkpoint, tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    with open_source(clip) as src:
        for f in src:
            cv2.imwrite(str(folder / f"{f.index:04d}.png"), f.image)
    out = tmp_path / "out"
    ck = ["--checkpoint", str(tiny_checkpoint), "--output-dir", str(out), "--no-progress", "--no-flip"]
    assert main([str(folder), "--sequence", "--fps", "10", "--max-frames", "5", *ck]) == 0
    lines = _lines(out / "frames.jsonl")
    assert [r["frame"] for r in lines] == list(range(5))
    assert lines[-1]["time_s"] == pytest.approx(0.4)
    assert _frames_of(out / "frames.mp4") == (5, (160, 120), pytest.approx(10.0, abs=0.01))


def test_corrupt_video_is_reported_and_skipped(clip, tiny_checkpoint, tmp_path, capsys):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(3000))
    out = tmp_path / "out"
    rc = main(
        [str(bad), str(clip), "--checkpoint", str(tiny_checkpoint), "--output-dir", str(out), "--no-progress"]
        + ["--no-flip", "--max-frames", "2", "--no-render"]
    )
    assert rc == 1
    printed = capsys.readouterr()
    assert "broken.mp4" in printed.out and "cannot open" in printed.out
    assert len(_lines(out / "walk.jsonl")) == 2  # the good video after it is done
    assert not (out / "broken.jsonl").exists()
    with pytest.raises(VideoReadError, match="broken.mp4"):
        open_source(bad)
    with pytest.raises(VideoReadError, match="no such file"):
        open_source(tmp_path / "missing.mp4")


def test_ctrl_c_keeps_valid_jsonl_and_a_readable_mp4(tiny_checkpoint, tmp_path):
    long_clip = tmp_path / "long.mp4"
    write_synthetic_video(long_clip, SyntheticVideo(seed=2, num_frames=300, width=160, height=120, num_people=2))
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-m", "bottomup.infer", str(long_clip), "--checkpoint", str(tiny_checkpoint)]
    cmd += ["--output-dir", str(out), "--no-progress", "--no-flip"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    jsonl = out / "long.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if jsonl.exists() and jsonl.read_text().count("\n") >= 3:
            break
        time.sleep(0.1)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "interrupted" in stdout
    lines = _lines(jsonl)  # every line is complete JSON
    assert 3 <= len(lines) < 300
    assert [r["frame"] for r in lines] == list(range(len(lines)))
    n, size, _ = _frames_of(out / "long.mp4")
    assert size == (160, 120) and n == len(lines)


# ------------------------------------------------------------------------------------------------ tracking
def _visible_only(keypoints: np.ndarray) -> np.ndarray:
    """Ground truth as an ideal detector sees it: visible joints (v = 2) with score 1, the rest absent."""
    det = keypoints.copy()
    det[..., 2] = (keypoints[..., 2] == 2).astype(np.float64)
    return det


def _ideal_detections(frame, layout, codec) -> np.ndarray:
    """The people decoded from the ideal network outputs of the frame's visible joints (the real grouping)."""
    per_scale, tf = ideal_case(
        _visible_only(frame.keypoints), frame.image.shape[0], frame.image.shape[1], layout, input_size=256
    )
    keypoints, _ = postprocess(per_scale, tf, codec=codec)
    return keypoints


def _overlaps(frame) -> int:
    """Pairs of people whose boxes overlap (IoU > 0.1) in the frame."""
    boxes = np.concatenate([frame.keypoints[..., :2].min(1), frame.keypoints[..., :2].max(1)], 1)
    return int((np.triu(box_iou(boxes, boxes), 1) > 0.1).sum())


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_ideal_detections_are_tracked_without_identity_switches(seed, coco_layout):
    """Every visible joint of every person found exactly (the ground truth fed to the tracker)."""
    video = SyntheticVideo(seed=seed, num_frames=100, num_people=4)
    tracker = PoseTracker(coco_layout.oks_sigmas, max_age=10)
    rows, overlaps = [], 0
    for frame in video:
        det = _visible_only(frame.keypoints)
        det = det[det[..., 2].sum(1) > 0]  # a fully hidden person is not detected
        ids, kpts = tracker.update(det)
        rows.append((frame.ids, frame.keypoints, frame.areas, ids, kpts))
        overlaps += _overlaps(frame)
    m = tracking_metrics(rows, coco_layout.oks_sigmas)
    assert overlaps > 20, "the figures cross and occlude each other (what makes tracking hard)"
    assert m["num_unique_objects"] == 4
    assert m["num_switches"] == 0
    assert m["idf1"] >= 0.99 and m["mota"] >= 0.99


@pytest.mark.parametrize("seed", [0, 1])
def test_ideal_network_outputs_are_tracked_without_identity_switches(seed, coco_layout):
    """Ideal heatmaps and tags of the visible joints, decoded by the real test-time pipeline, then tracked: no
    identity switch. The few misses are grouping's (two figures' same joint within a heatmap pixel where they
    cross gives one peak), so IDF1 is a little below the ideal detections'."""
    video = SyntheticVideo(seed=seed, num_frames=60, num_people=4)
    codec = AssociativeEmbeddingCodec.from_layout(coco_layout)
    tracker = PoseTracker(coco_layout.oks_sigmas, max_age=10)
    rows = []
    for frame in video:
        ids, kpts = tracker.update(_ideal_detections(frame, coco_layout, codec))
        rows.append((frame.ids, frame.keypoints, frame.areas, ids, kpts))
    m = tracking_metrics(rows, coco_layout.oks_sigmas)
    assert m["num_switches"] == 0
    assert m["idf1"] >= 0.97 and m["mota"] >= 0.94


def _gt_tracks(video, layout, drop: dict[int, range], max_age: int) -> dict[int, set[int]]:
    """Ground truth fed to a tracker with person ``p`` left out in frames ``drop[p]``: gt id -> track ids."""
    tracker = PoseTracker(layout.oks_sigmas, max_age=max_age)
    seen: dict[int, set[int]] = {}
    for frame in video:
        keep = np.array([frame.index not in drop.get(int(g), ()) for g in frame.ids], bool)
        det = _visible_only(frame.keypoints[keep])
        ids, _ = tracker.update(det)
        for g, t in zip(frame.ids[keep], ids, strict=True):
            seen.setdefault(int(g), set()).add(int(t))
    return seen


@pytest.mark.parametrize("max_age", [3, 8])
def test_people_dropped_within_the_survival_window_keep_their_ids(max_age, coco_layout):
    video = SyntheticVideo(seed=0, num_frames=40, num_people=3)
    assert _gt_tracks(video, coco_layout, {}, max_age) == {1: {1}, 2: {2}, 3: {3}}
    within = _gt_tracks(video, coco_layout, {1: range(10, 10 + max_age), 3: range(20, 20 + max_age)}, max_age)
    assert within == {1: {1}, 2: {2}, 3: {3}}
    beyond = _gt_tracks(video, coco_layout, {1: range(10, 11 + max_age)}, max_age)
    assert beyond[1] == {1, 4} and beyond[2] == {2} and beyond[3] == {3}


def test_oks_and_iou():
    sigmas = [0.05] * 4
    a = np.array([[[0, 0, 1], [10, 0, 1], [0, 10, 1], [10, 10, 1]]], float)
    oks, common = keypoint_oks(a, a, sigmas)
    assert oks[0, 0] == pytest.approx(1.0) and common[0, 0] == 4
    far = a.copy()
    far[..., :2] += 50
    assert keypoint_oks(a, far, sigmas)[0][0, 0] < 1e-6
    hidden = a.copy()
    hidden[0, :2, 2] = 0
    assert keypoint_oks(a, hidden, sigmas)[1][0, 0] == 2
    boxes = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]], float)
    np.testing.assert_allclose(box_iou(boxes[:1], boxes), [[1.0, 50 / 150, 0.0]])


def test_one_euro_filter_smooths_jitter_and_follows_motion():
    rng = np.random.default_rng(0)
    t = np.arange(200) / 30.0
    still = 100 + rng.normal(0, 2.0, (200, 1, 2))
    f = OneEuroFilter(min_cutoff=1.0, beta=0.05)
    out = np.stack([f(x, ti) for x, ti in zip(still, t, strict=True)])
    assert out[50:].std() < 0.5 * still[50:].std()
    moving = (300 * t)[:, None, None] * np.ones((1, 1, 2))  # 300 px/s, no noise
    f = OneEuroFilter(min_cutoff=1.0, beta=0.05)
    out = np.stack([f(x, ti) for x, ti in zip(moving, t, strict=True)])
    assert np.abs(out[30:] - moving[30:]).max() < 15  # a frame moves 10 px: the lag stays under 1.5 frames
    # an unobserved row is passed through and its state kept
    f = OneEuroFilter()
    f(np.array([[0.0, 0.0], [5.0, 5.0]]), 0.0)
    y = f(np.array([[1.0, 1.0], [np.nan, np.nan]]), 0.1, valid=np.array([True, False]))
    assert np.isnan(y[1]).all() and 0 < y[0, 0] < 1


def test_estimator_track_api(clip, tiny_checkpoint):
    est = PoseEstimator.from_checkpoint(tiny_checkpoint, flip_test=False)
    results = list(est.track(clip, stride=2, max_frames=3, min_score=0.05, smoothing=True))
    assert [r.index for r in results] == [0, 2, 4]
    assert [r.time_s for r in results] == pytest.approx([0.0, 0.08, 0.16])
    for r in results:
        assert r.track_ids is not None and len(r.track_ids) == len(r.prediction)
        assert r.prediction.image.shape == (120, 160, 3)
        assert r.plot().shape == (120, 160, 3)
        assert json.loads(json.dumps(r.to_dict()))["frame"] == r.index
    # arrays in the estimator's colour order, untracked
    with open_source(clip) as src:
        frames = [f.image[..., ::-1].copy() for f in src]
    plain = list(est.track(iter(frames), tracking=False, fps=25.0, max_frames=2))
    assert [r.index for r in plain] == [0, 1] and all(r.track_ids is None for r in plain)
    np.testing.assert_allclose(plain[0].prediction.keypoints, est(frames[0]).keypoints)


def test_evaluate_tracking_scores_the_estimator(tiny_checkpoint):
    est = PoseEstimator.from_checkpoint(tiny_checkpoint, flip_test=False)
    video = SyntheticVideo(seed=0, num_frames=4, width=160, height=120, num_people=2)
    m = evaluate_tracking(est, video, min_score=0.05)
    assert m["num_frames"] == 4 and m["num_objects"] > 0
    assert m["mota"] <= 1.0 and 0.0 <= m["idf1"] <= 1.0


def test_bench_video_section_quick(tmp_path):
    """``python -m bottomup.bench --quick --only video`` reports the stream's RSS marks, frames/s and tracking ms."""
    from bottomup.bench.cli import main as bench_main

    report_path = tmp_path / "bench.json"
    assert bench_main(["--quick", "--only", "video", "--device", "cpu", "--json", str(report_path)]) == 0
    results = {r["name"]: r for r in json.loads(report_path.read_text())["sections"]["video"]}
    rss = results["stream RSS"]
    assert len(rss["values"]) == 5 and all(v > 0 for v in rss["values"])
    assert results["stream end to end"]["values"][0] > 0
    assert len(results["tracking per frame"]["values"]) == 40
    assert any(name.startswith("HigherHRNet-W32-64 bf16") for name in results)  # the bench's network, named


# ------------------------------------------------------------------------------------------------ issue 31
@pytest.fixture(scope="module")
def long_clip(tmp_path_factory) -> Path:
    """A 300-frame 160 x 120 synthetic video: long enough that a run is stopped well before its end."""
    path = tmp_path_factory.mktemp("long") / "long.mp4"
    write_synthetic_video(path, SyntheticVideo(seed=2, num_frames=300, width=160, height=120, num_people=2))
    return path


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_sigterm_and_sighup_keep_the_jsonl_and_a_playable_mp4(long_clip, tiny_checkpoint, tmp_path, signum):
    """Issue 31: SIGTERM left a 44-byte mp4 that did not play; now SIGTERM and SIGHUP stop as Ctrl-C does: the
    frame at hand is finished, the jsonl and the finalised mp4 hold the same frames, one line on stderr, exit
    status 128 + the signal's number."""
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-m", "bottomup.infer", str(long_clip), "--checkpoint", str(tiny_checkpoint)]
    cmd += ["--output-dir", str(out), "--no-progress", "--no-flip"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    jsonl = out / "long.jsonl"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if jsonl.exists() and jsonl.read_text().count("\n") >= 1:
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signum, stdout + stderr
    assert "Traceback" not in stderr, stderr
    lines = _lines(jsonl)
    assert 1 <= len(lines) < 300 and [r["frame"] for r in lines] == list(range(len(lines)))
    n, size, fps = _frames_of(out / "long.mp4")
    assert n == len(lines) and size == (160, 120) and fps == pytest.approx(25.0, abs=0.01)
    said = [line for line in stderr.splitlines() if "interrupted" in line]
    assert said == [
        f"interrupted by {signum.name}: stopped after {n} frame{'s' * (n != 1)} of {long_clip}; "
        f"kept: {jsonl}, {out / 'long.mp4'}"
    ], stderr


def test_a_sequence_whose_frames_change_size_fails_with_both_sizes_and_agreeing_files(clip, tiny_checkpoint, tmp_path,
                                                                                     capsys):  # fmt: skip
    """Issue 31: a --sequence folder whose images change size left the jsonl a line ahead of the mp4; now the image
    of another size fails the video (naming it, the first image and both sizes) and both files hold the frames
    before it; the same without rendering."""
    folder = tmp_path / "frames"
    folder.mkdir()
    with open_source(clip) as src:
        for f in src:
            image = f.image if f.index < 3 else cv2.resize(f.image, (200, 100))
            cv2.imwrite(str(folder / f"{f.index:04d}.png"), image)
    ck = ["--checkpoint", str(tiny_checkpoint), "--no-progress", "--no-flip", "--sequence"]
    for out, render in ((tmp_path / "out", []), (tmp_path / "lines", ["--no-render"])):
        assert main([str(folder), *ck, "--output-dir", str(out), *render]) == 1
        printed = capsys.readouterr()
        message = (
            f"{folder / '0003.png'}: 200x100 pixels, but the sequence's first image {folder / '0000.png'} is 160x120"
        )
        assert message in printed.err and message in printed.out
        assert [r["frame"] for r in _lines(out / "frames.jsonl")] == [0, 1, 2]
        if not render:
            assert (
                f"(the 3 frames before it are kept in {out / 'frames.jsonl'} and {out / 'frames.mp4'})" in printed.out
            )
            assert _frames_of(out / "frames.mp4")[:2] == (3, (160, 120))
        else:
            assert not (out / "frames.mp4").exists()


def _moov_first(data: bytes) -> bytes:
    """The MP4 ``data`` with its ``moov`` box before ``mdat`` (as ``ffmpeg -movflags faststart`` writes it, and as
    a download cut short still opens): ``stco`` chunk offsets moved by the box's size."""
    import struct

    def boxes(buf, start, end):
        i = start
        while i < end:
            size, kind = struct.unpack(">I4s", buf[i : i + 8])
            yield kind, i, size
            i += size

    top = {kind: (i, size) for kind, i, size in boxes(data, 0, len(data))}
    at, size = top[b"moov"]
    assert at + size == len(data), "OpenCV writes moov last"
    moov = bytearray(data[at:])

    def shift(start, end):
        for kind, i, n in boxes(moov, start, end):
            if kind in (b"trak", b"mdia", b"minf", b"stbl"):
                shift(i + 8, i + n)
            elif kind == b"stco":
                (count,) = struct.unpack(">I", moov[i + 12 : i + 16])
                for k in range(count):
                    o = i + 16 + 4 * k
                    moov[o : o + 4] = struct.pack(">I", struct.unpack(">I", moov[o : o + 4])[0] + size)
            assert kind != b"co64"

    shift(8, size)
    ftyp_end = sum(top[b"ftyp"])
    return data[:ftyp_end] + bytes(moov) + data[ftyp_end:at]


def test_a_video_cut_short_warns_once_with_both_counts(tiny_checkpoint, tmp_path, capsys):
    """Issue 31: a video file cut short was read to where it breaks with no word; now a warning names the file,
    the frame count its container reports and the frames read, once; the outputs hold the frames read."""
    whole = tmp_path / "whole.mp4"
    writer = cv2.VideoWriter(str(whole), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (160, 120))
    rng = np.random.default_rng(0)
    for _ in range(24):
        writer.write(rng.integers(0, 256, (120, 160, 3), dtype=np.uint8))
    writer.release()
    data = _moov_first(whole.read_bytes())
    whole.write_bytes(data)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the whole file: no warning
        with open_source(whole) as src:
            assert sum(1 for _ in src) == 24
    with pytest.warns(TruncatedVideoWarning) as caught, open_source(cut, stride=2) as src:
        assert src.total == 12
        read = [f.index for f in src]
    assert len(caught) == 1 and f"{cut}: the file says it holds 24 frames, but only" in str(caught[0].message)
    assert 1 <= len(read) < 12

    out = tmp_path / "out"
    argv = [str(cut), "--checkpoint", str(tiny_checkpoint), "--output-dir", str(out), "--no-progress", "--no-flip"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    said = [line for line in err.splitlines() if "warning:" in line]
    assert len(said) == 1, err
    frames = len(_lines(out / "cut.jsonl"))
    assert said[0] == (
        f"warning: {cut}: the file says it holds 24 frames, but only {frames} could be read (cut short or damaged "
        "there); the frames after that are missing"
    )
    assert 1 <= frames < 24 and _frames_of(out / "cut.mp4")[0] == frames


def test_video_output_names_only_the_files_it_wrote(tmp_path):
    """Issue 31: a video failing before its first frame was reported as "kept in clip.jsonl" with nothing written;
    now the empty files are removed and the message says no frame was written."""

    def failing():
        raise RuntimeError("the network failed")
        yield

    out = VideoOutput(tmp_path / "clip.jsonl", tmp_path / "clip.mp4", fps=25.0, size=(64, 48), style={})
    with pytest.raises(RuntimeError, match="the network failed"):
        out.write(failing(), stop=[])
    assert out.kept() == "no frame was written" and out.files() == []
    assert not list(tmp_path.iterdir())


def test_the_tracking_thresholds_of_the_command_line_act(clip, tiny_checkpoint, tmp_path):
    """``--track-min-similarity`` and ``--track-nms-oks`` reach the tracker: at 1.0 no person matches a track (every
    person of every frame has an id of its own), and a low duplicate threshold leaves fewer people tracked."""

    def run(name: str, *flags: str) -> list[list[int]]:
        out = tmp_path / name
        args = [str(clip), "--checkpoint", str(tiny_checkpoint), "--output-dir", str(out), "--no-progress"]
        assert main([*args, "--no-flip", "--no-render", *flags]) == 0
        return [[p["track_id"] for p in r["people"]] for r in _lines(out / "walk.jsonl")]

    default = run("default")
    ids = [i for frame in default for i in frame]
    assert len(set(ids)) < len(ids), "by default people keep their ids from frame to frame"
    strict = [i for frame in run("strict", "--track-min-similarity", "1.0") for i in frame]
    assert len(strict) == len(set(strict)) > len(set(ids))
    fewer = run("fewer", "--track-nms-oks", "0.05")
    assert all(len(a) <= len(b) for a, b in zip(fewer, default, strict=True))
    assert sum(map(len, fewer)) < len(ids)

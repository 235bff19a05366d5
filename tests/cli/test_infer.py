"""Tests of the inference CLI ``python -m bottomup.infer`` on real coco-mini images."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from bottomup.build import build_model
from bottomup.data.io import expand_inputs, expand_labelled_inputs
from bottomup.engine.checkpoint import find_checkpoint, save_checkpoint
from bottomup.engine.evaluator import coco_keypoint_eval
from bottomup.engine.writers import LOCK_NAME, OutputFolder, claim_output_dir
from bottomup.infer import main

REPO = Path(__file__).resolve().parents[2]
IMAGES = ("000000000139.jpg", "000000000802.jpg", "000000217285.jpg")


def _tiny_model_and_config(coco_root: Path):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[f"data.root={coco_root}", "model.width=8", "data.input_size=128", "output_dir=unused"],
        )
    torch.manual_seed(0)
    model = build_model(cfg.model, 17)
    with torch.no_grad():  # random net whose heatmaps pass the detection threshold, so people are found
        for layer in model.final_layers:
            torch.nn.init.normal_(layer.weight, std=0.05)
            layer.bias[:17] = 0.3
    return model, cfg


@pytest.fixture(scope="module")
def checkpoints(coco_root, tmp_path_factory) -> dict[str, Path]:
    """A width-8 HigherHRNet saved as this project's checkpoint and as an official-style raw state dict."""
    model, cfg = _tiny_model_and_config(coco_root)
    root = tmp_path_factory.mktemp("ckpt")
    project = save_checkpoint(
        {"model": model.state_dict(), "config": OmegaConf.to_yaml(cfg, resolve=True), "epoch": 1, "step": 5},
        root / "run" / "last.pt",
    )
    official = root / "pose_higher_hrnet_w8.pth"
    torch.save(model.state_dict(), official)
    return {"project": project, "official": official}


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def _size(path: Path) -> tuple[int, int]:
    image = cv2.imread(str(path))
    assert image is not None, path
    return image.shape[1], image.shape[0]


def test_single_image(coco_root, checkpoints, tmp_path, capsys):
    src = coco_root / "val2017" / IMAGES[0]
    out = tmp_path / "out"
    rc = main([str(src), "--checkpoint", str(checkpoints["project"]), "--output-dir", str(out), "--no-progress"])
    assert rc == 0
    results = json.loads((out / "results.json").read_text())
    assert results, "the biased random net finds people"
    for r in results:
        assert set(r) <= {"file_name", "image_id", "category_id", "keypoints", "score", "bbox"}
        assert set(r) >= {"file_name", "image_id", "category_id", "keypoints", "score"}
        kpts = np.reshape(r["keypoints"], (17, 3))
        xy = kpts[kpts[:, 2] > 0, :2]
        if len(xy):  # bbox [x, y, w, h] around the detected joints
            np.testing.assert_allclose(r["bbox"], [*xy.min(0), *(xy.max(0) - xy.min(0))], atol=2e-3)
        assert r["file_name"] == src.name and r["image_id"] == 139 and r["category_id"] == 1
        assert len(r["keypoints"]) == 17 * 3
    png = out / "000000000139.png"
    assert _size(png) == _size(src)
    rendered, original = cv2.imread(str(png)), cv2.imread(str(src))
    assert np.abs(rendered.astype(int) - original.astype(int)).max() > 50, "skeletons are drawn"
    captured = capsys.readouterr()
    assert f"1/1 images done, {len(results)} people found, 0 failed" in captured.out
    # what the model is: its data set, network and validation AP
    assert f"checkpoint {checkpoints['project']} (given): coco data (17 keypoints), HigherHRNet W8" in captured.err
    assert "never evaluated" in captured.err and "synthetic" not in captured.err
    # the file is COCO keypoint results: the evaluator takes it as it is
    ann = coco_root / "annotations" / "person_keypoints_val2017.json"
    stats = coco_keypoint_eval(results, ann, oks_sigmas=[0.05] * 17, image_ids=[139], verbose=False)
    assert set(stats) >= {"AP", "AR"}


def test_folder_with_corrupt_file(coco_root, checkpoints, tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for name in IMAGES[:2]:
        shutil.copy(coco_root / "val2017" / name, folder / name)
    (folder / "broken.jpg").write_bytes(b"this is not a JPEG")
    (folder / "notes.txt").write_text("not an image; folders contribute image files only")
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "bottomup.infer", str(folder), "--checkpoint", str(checkpoints["project"])]
        + ["--output-dir", str(out), "--no-flip", "--scales", "1.0", "--min-score", "0.05"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=300,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "broken.jpg" in proc.stdout and "notes.txt" not in proc.stdout + proc.stderr
    assert "2/3 images done" in proc.stdout and "1 failed" in proc.stdout
    results = json.loads((out / "results.json").read_text())
    by_file: dict[str, list[dict]] = {}
    for r in results:
        by_file.setdefault(r["file_name"], []).append(r)
    assert set(by_file) == {f"images/{name}" for name in IMAGES[:2]}  # relative to the folder's parent
    for name, people in by_file.items():
        assert all(r["image_id"] == int(Path(name).stem) and r["score"] >= 0.05 for r in people)
        assert _size(out / f"{Path(name).stem}.png") == _size(folder / Path(name).name)
    assert not (out / "broken.png").exists()


def test_min_score_drops_people(coco_root, checkpoints, tmp_path):
    src = str(coco_root / "val2017" / IMAGES[0])
    out = tmp_path / "out"
    assert main([src, "--checkpoint", str(checkpoints["project"]), "--output-dir", str(out), "--no-progress"]) == 0
    scores = [r["score"] for r in json.loads((out / "results.json").read_text())]
    cut = float(np.median(scores))
    argv = [src, "--checkpoint", str(checkpoints["project"]), "--output-dir", str(out), "--no-progress"]
    assert main([*argv, "--min-score", str(cut), "--no-render", "--exist-ok"]) == 0  # overwrite out/results.json
    kept = [r["score"] for r in json.loads((out / "results.json").read_text())]
    assert kept and all(s >= cut for s in kept) and len(kept) == sum(s >= cut for s in scores)


def test_drawing_thresholds_and_small_images(coco_root, checkpoints, tmp_path):
    src = coco_root / "val2017" / IMAGES[0]
    argv = [str(src), "--checkpoint", str(checkpoints["project"]), "--no-progress"]
    assert main([*argv, "--output-dir", str(tmp_path / "none"), "--draw-min-score", "1"]) == 0
    original = cv2.imread(str(src))
    none = cv2.imread(str(tmp_path / "none" / f"{src.stem}.png"))
    np.testing.assert_array_equal(none, original)  # nobody scores 1: nothing drawn, results.json still has them
    assert json.loads((tmp_path / "none" / "results.json").read_text())
    assert main([*argv, "--output-dir", str(tmp_path / "all"), "--draw-min-score", "0", "--joint-threshold", "0"]) == 0
    assert main([*argv, "--output-dir", str(tmp_path / "default")]) == 0
    changed = {
        k: int((cv2.imread(str(tmp_path / k / f"{src.stem}.png")) != original).any(-1).sum())
        for k in ("all", "default")
    }
    assert 0 < changed["default"] < changed["all"], changed  # the defaults leave weak people and joints out
    small = tmp_path / "small.jpg"
    cv2.imwrite(str(small), cv2.resize(original, (original.shape[1] // 4, original.shape[0] // 4)))
    assert main([str(small), "--checkpoint", str(checkpoints["project"]), "--no-progress",
                 "--output-dir", str(tmp_path / "small")]) == 0  # fmt: skip
    assert max(_size(tmp_path / "small" / "small.png")) == 640  # upscaled for legible labels
    assert main([str(small), "--checkpoint", str(checkpoints["project"]), "--no-progress", "--min-side", "1",
                 "--output-dir", str(tmp_path / "small1")]) == 0  # fmt: skip
    assert _size(tmp_path / "small1" / "small.png") == _size(small)
    assert main([*argv, "--output-dir", str(tmp_path / "bad"), "--joint-threshold", "2"]) == 2


def test_synthetic_checkpoint_warns(coco_root, checkpoints, tmp_path, capsys):
    ckpt = torch.load(checkpoints["project"], map_location="cpu", weights_only=True)
    ckpt["config"] = ckpt["config"].replace("name: coco", "name: synthetic", 1)
    ckpt["metrics"] = {"best_ap": 0.612}
    assert "name: synthetic" in ckpt["config"]
    path = save_checkpoint(ckpt, tmp_path / "synthetic" / "best.pt")
    src = str(coco_root / "val2017" / IMAGES[0])
    assert main([src, "--checkpoint", str(path), "--no-progress", "--no-render", "--output-dir", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert "synthetic data (17 keypoints), HigherHRNet W8" in err and "best val AP 0.612" in err
    assert "warning: this model was trained on the synthetic quickstart figures" in err


def test_no_checkpoint_anywhere(coco_root, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "bottomup.infer", str(coco_root / "val2017" / IMAGES[0])],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 2
    assert "python -m bottomup.train experiment=quickstart" in proc.stderr
    assert "--checkpoint" in proc.stderr


def test_official_state_dict_needs_experiment(coco_root, checkpoints, tmp_path, capsys):
    src = str(coco_root / "val2017" / IMAGES[0])
    rc = main([src, "--checkpoint", str(checkpoints["official"]), "--output-dir", str(tmp_path), "--no-progress"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "official" in err and "--experiment NAME" in err and "higherhrnet_w32" in err
    assert not (tmp_path / "results.json").exists()


def test_official_state_dict_with_wrong_experiment(coco_root, checkpoints, tmp_path, capsys):
    src = str(coco_root / "val2017" / IMAGES[0])
    argv = [src, "--checkpoint", str(checkpoints["official"]), "--experiment", "higherhrnet_w32"]
    assert main([*argv, "--output-dir", str(tmp_path), "--no-progress"]) == 2
    assert "width=8" in capsys.readouterr().err  # the diagnosis says what the file holds


def test_usage_errors(coco_root, tmp_path, capsys):
    assert main([str(tmp_path / "missing*.jpg"), "--checkpoint", "x.pt"]) == 2
    assert "no input image matched" in capsys.readouterr().err
    src = str(coco_root / "val2017" / IMAGES[0])
    assert main([src, "--checkpoint", str(tmp_path / "nope.pt")]) == 2
    assert "nope.pt: no such file" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:  # argparse: bad option value
        main([src, "--device", "tpu"])
    assert e.value.code == 2


def test_find_checkpoint_prefers_best_of_newest_run(tmp_path):
    assert find_checkpoint(tmp_path / "outputs") is None
    old, new = tmp_path / "outputs" / "a" / "old", tmp_path / "outputs" / "b" / "new"
    for run, names in ((old, ("best.pt", "last.pt")), (new, ("best.pt", "last.pt"))):
        run.mkdir(parents=True)
        for n in names:
            (run / n).write_bytes(b"x")
    for n, t in (("best.pt", 1000), ("last.pt", 2000)):
        os.utime(old / n, (t, t))
    for n, t in (("best.pt", 1500), ("last.pt", 3000)):
        os.utime(new / n, (t, t))
    assert find_checkpoint(tmp_path / "outputs") == new / "best.pt"
    (new / "best.pt").unlink()
    assert find_checkpoint(tmp_path / "outputs") == new / "last.pt"
    os.utime(old / "last.pt", (5000, 5000))
    assert find_checkpoint(tmp_path / "outputs") == old / "best.pt"


def test_expand_inputs(coco_root, tmp_path):
    val = coco_root / "val2017"
    files, unmatched = expand_inputs([str(val / IMAGES[0]), str(val / "00000000013*.jpg"), str(tmp_path / "none.jpg")])
    assert files == [val / IMAGES[0]]  # the glob matches the same file: no duplicate
    assert unmatched == [str(tmp_path / "none.jpg")]
    folder, _ = expand_inputs([str(val)])
    assert len(folder) == 79 and folder == sorted(folder)


def test_tracking_options_are_checked_before_any_video_is_read(quickstart_checkpoint, tmp_path, capsys):
    """``--track-low-score`` above ``--track-high-score`` (or a score outside [0, 1], ``--min-hits 0``, an OKS
    threshold outside (0, 1]) is a usage error naming the setting, before any video is opened or any file written."""
    out = tmp_path / "out"
    video = str(tmp_path / "clip.mp4")  # never opened
    base = [video, "--checkpoint", str(quickstart_checkpoint), "--output-dir", str(out), "--no-progress"]
    for flags, message in [
        (["--track-high-score", "0.3", "--track-low-score", "0.5"], "--track-low-score <= --track-high-score"),
        (["--track-high-score", "1.5"], "--track-high-score must be in [0, 1]"),
        (["--min-hits", "0"], "--min-hits must be >= 1"),
        (["--track-min-similarity", "0"], "--track-min-similarity must be in (0, 1]"),
        (["--track-nms-oks", "1.2"], "--track-nms-oks must be in (0, 1]"),
        (["--track-max-jump", "0"], "--track-max-jump must be > 0"),
        (["--track-max-joint-shift", "-1"], "--track-max-joint-shift must be > 0"),
    ]:
        assert main([*base, *flags]) == 2, flags
        assert message in capsys.readouterr().err, flags
    assert not list(out.glob("*"))


def test_every_association_setting_of_the_tracker_is_an_infer_option():
    """Each ``TrackerSettings`` key of the association (all but the joint threshold, ``min_joints`` and the One Euro
    constants) has an ``infer`` option, and the value given on the command line is the tracker's setting."""
    from bottomup.engine.tracking import TRACKER_KEYS, TrackerSettings
    from bottomup.infer import _parser, _tracker_settings

    given = {"max_age": 7, "high_score": 0.6, "low_score": 0.5, "min_hits": 2, "min_similarity": 0.2, "nms_oks": 0.7,
             "max_jump": 0.9, "max_joint_shift": 0.6}  # fmt: skip
    fixed = {"keypoint_threshold", "min_joints", "smoothing", "min_cutoff", "beta"}
    assert set(given) | fixed == set(TRACKER_KEYS)
    defaults = TrackerSettings()
    assert all(getattr(defaults, key) != value for key, value in given.items())
    flags = {"max_age": "--max-age", "min_hits": "--min-hits"}
    argv = ["clip.mp4", "--smooth"]
    for key, value in given.items():
        argv += [flags.get(key, "--track-" + key.replace("_", "-")), str(value)]
    settings = defaults.replace(**_tracker_settings(_parser().parse_args(argv)))
    assert {key: getattr(settings, key) for key in given} == given and settings.smoothing


# ------------------------------------------------------------------------------- interruptions and output folders
def _wait_for(proc: subprocess.Popen, ready, what: str, timeout_s: float = 300.0) -> None:
    """Poll until ``ready()`` while ``proc`` runs (generous deadline; the test does not time anything)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        if ready():
            return
        time.sleep(0.05)
    out, err = proc.communicate(timeout=60) if proc.poll() is None else proc.communicate()
    raise AssertionError(f"{what} never appeared (exit status {proc.returncode})\n{out}\n{err}")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_a_stop_signal_keeps_results_json_of_the_images_done(coco_root, checkpoints, tmp_path, signum):
    """Issue 31: Ctrl-C / SIGTERM / SIGHUP during a folder run exited 130 with a traceback and no results.json;
    now the run ends after the image at hand, results.json lists the images done, one line says so, and the exit
    status is 128 + the signal's number."""
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "bottomup.infer", str(coco_root / "val2017"), "--checkpoint"]
    cmd += [str(checkpoints["project"]), "--output-dir", str(out), "--no-progress", "--no-flip", "--scales", "1.0"]
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(proc, lambda: any(out.glob("*.png")), "the first picture")
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signum, stdout + stderr
    assert "Traceback" not in stderr, stderr
    said = [line for line in stderr.splitlines() if "interrupted" in line]
    assert len(said) == 1 and said[0].startswith(f"interrupted by {signum.name}: stopped after "), stderr
    assert f"{out / 'results.json'} holds the results of those done" in said[0]
    done = {p.stem for p in out.glob("*.png")}
    assert 1 <= len(done) < 79, "stopped after the image at hand, not at the end"
    results = json.loads((out / "results.json").read_text())
    assert {r["file_name"] for r in results} == {f"val2017/{stem}.jpg" for stem in done}
    assert {r["image_id"] for r in results} == {int(stem) for stem in done}
    assert f"{len(done)}/79 images done" in stdout
    assert sorted(p.name for p in out.iterdir()) == sorted([*(f"{s}.png" for s in done), "results.json"])


def test_a_second_run_writes_into_a_numbered_folder(coco_root, checkpoints, tmp_path, capsys):
    """Issue 31: two runs into one --output-dir both exited 0 and the second replaced results.json; now the second
    writes into ``<dir>2`` (the next into ``<dir>3``) and says so; --exist-ok writes into the folder given."""
    src = str(coco_root / "val2017" / IMAGES[0])
    out = tmp_path / "infer"
    argv = [src, "--checkpoint", str(checkpoints["project"]), "--output-dir", str(out), "--no-progress", "--no-flip"]
    assert main(argv) == 0
    first = (out / "results.json").read_bytes()
    capsys.readouterr()
    assert main([*argv, "--min-score", "0.9"]) == 0
    printed = capsys.readouterr()
    note = f"{out} holds an earlier run's results (000000000139.png, results.json): writing into {out}2 instead"
    assert note in printed.err and f"--exist-ok writes into {out}, overwriting" in printed.err
    assert f"results: {out}2/results.json" in printed.out
    assert (out / "results.json").read_bytes() == first, "the first run's results are untouched"
    second = json.loads((tmp_path / "infer2" / "results.json").read_text())
    assert all(r["score"] >= 0.9 for r in second) and len(second) < len(json.loads(first))
    assert main([*argv, "--no-render"]) == 0
    assert "writing into" in capsys.readouterr().err and (tmp_path / "infer3" / "results.json").is_file()
    assert main([*argv, "--exist-ok", "--min-score", "0.9"]) == 0
    assert "writing into" not in capsys.readouterr().err
    assert json.loads((out / "results.json").read_text()) == second, "--exist-ok overwrites"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["infer", "infer2", "infer3"]
    assert not list(tmp_path.glob("*/.bottomup-infer.lock")), "the lock goes with the run"

    # a folder holding other files, or nothing, is used as it is; a PNG of a name this run writes is not
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    assert main([src, "--checkpoint", str(checkpoints["project"]), "--output-dir", str(mine), "--no-progress"]) == 0
    assert (mine / "results.json").is_file() and (mine / "notes.txt").read_text() == "keep"
    drawn = tmp_path / "drawn"
    drawn.mkdir()
    (drawn / "000000000139.png").write_bytes(b"someone else's picture")
    capsys.readouterr()
    assert main([src, "--checkpoint", str(checkpoints["project"]), "--output-dir", str(drawn), "--no-progress"]) == 0
    assert f"{drawn} holds an earlier run's results (000000000139.png)" in capsys.readouterr().err
    assert (drawn / "000000000139.png").read_bytes() == b"someone else's picture"
    assert (tmp_path / "drawn2" / "000000000139.png").is_file()


def test_concurrent_runs_never_share_an_output_folder(tmp_path):
    """Runs started together into one folder each get their own (``mkdir(exist_ok=False)`` / an exclusive lock):
    the first the folder given, the others ``<dir>2``, ``<dir>3``, ...; empty folders a run made go with it."""
    given = tmp_path / "infer"
    n = 8
    barrier = threading.Barrier(n)
    got: list[OutputFolder] = []

    def run() -> None:
        barrier.wait()
        with claim_output_dir(given, {"x.png"}) as folder:
            got.append(folder)
            barrier.wait()  # every run holds its folder at once

    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    paths = sorted(f.path.name for f in got)
    assert paths == sorted(["infer", *(f"infer{i}" for i in range(2, n + 1))])
    assert {f.reason for f in got if f.path != given} == {"is being written by another run"}
    assert [p.name for p in tmp_path.iterdir()] in ([], ["infer"]), "the numbered folders, empty, are gone"
    assert not given.exists() or not list(given.iterdir()), "no lock is left behind"
    shutil.rmtree(given, ignore_errors=True)

    given.mkdir()
    (given / "clip.jsonl").write_text("{}\n")
    with claim_output_dir(given) as folder:
        assert folder.path == tmp_path / "infer2" and folder.reason == "holds an earlier run's results (clip.jsonl)"
        (folder.path / "results.json").write_text("[]")
    assert (tmp_path / "infer2" / "results.json").is_file() and not (tmp_path / "infer2" / LOCK_NAME).exists()
    with claim_output_dir(given, exist_ok=True) as folder:
        assert folder.path == given and folder.reason is None


def test_file_names_tell_apart_files_of_one_name_in_different_folders(coco_root, checkpoints, tmp_path):
    """Issue 31: ``a/x.jpg`` and ``b/x.jpg`` were both ``x.jpg`` in results.json; now ``file_name`` is the path
    relative to the input's parent (a file given directly: its name), ``image_id`` still from the stem."""
    val = coco_root / "val2017"
    for folder, source in (("a", IMAGES[0]), ("b", IMAGES[1])):
        (tmp_path / folder).mkdir()
        shutil.copy(val / source, tmp_path / folder / IMAGES[0])
    out = tmp_path / "out"
    argv = [str(tmp_path / "a"), str(tmp_path / "b"), str(val / IMAGES[2]), "--checkpoint", str(checkpoints["project"])]
    assert main([*argv, "--output-dir", str(out), "--no-progress", "--no-flip"]) == 0
    results = json.loads((out / "results.json").read_text())
    names = {r["file_name"]: r["image_id"] for r in results}
    assert names == {f"a/{IMAGES[0]}": 139, f"b/{IMAGES[0]}": 139, IMAGES[2]: 217285}
    assert _size(out / "000000000139.png") == _size(val / IMAGES[0])
    assert _size(out / "000000000139_2.png") == _size(val / IMAGES[1])  # b's picture: a name of its own

    labelled, unmatched = expand_labelled_inputs([str(val / "00000000013*.jpg"), "nothing*.jpg", str(val)])
    assert labelled[0] == (val / IMAGES[0], f"val2017/{IMAGES[0]}") and unmatched == ["nothing*.jpg"]
    assert len(labelled) == 79 and all(label.startswith("val2017/") for _, label in labelled)


def _without_write_permission_override() -> None:
    """In the child: drop CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH from the bounding set, so that root obeys the
    folder's permission bits as any user does (``prctl(PR_CAPBSET_DROP)``)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def test_an_unwritable_output_dir_is_a_usage_error_before_any_work(coco_root, checkpoints, tmp_path):
    """Issue 31: a read-only --output-dir ended in a traceback, and a video's failure claimed frames "kept in
    clip.jsonl" that were never written; now one usage line names the folder before the model is loaded."""
    clip = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (64, 48))
    for i in range(3):
        writer.write(np.full((48, 64, 3), 40 * i, np.uint8))
    writer.release()
    read_only = tmp_path / "read_only"
    read_only.mkdir()
    read_only.chmod(0o555)
    cmd = [sys.executable, "-m", "bottomup.infer", str(coco_root / "val2017" / IMAGES[0]), str(clip)]
    cmd += ["--checkpoint", str(checkpoints["project"]), "--output-dir", str(read_only), "--no-progress"]
    as_root = os.geteuid() == 0  # root writes anywhere unless it gives up CAP_DAC_OVERRIDE
    proc = subprocess.run(
        cmd, capture_output=True, text=True, env=_env(), timeout=300,
        preexec_fn=_without_write_permission_override if as_root else None,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"error: --output-dir: {read_only}: cannot write into this folder (Permission denied); "
        "give a folder you can write to"
    ]
    assert proc.stdout == "" and not list(read_only.iterdir())


def test_a_sideways_phone_photo_is_read_upright_by_infer_and_the_api(coco_root, checkpoints, tmp_path):
    """A photo stored sideways with an EXIF orientation tag (6: turn 90 degrees clockwise), as phones write them,
    gives the people of the upright image, in the upright frame (it used to run on the sideways pixels)."""
    from PIL import Image

    from bottomup.api import PoseEstimator
    from bottomup.data.io import load_image

    upright = load_image(coco_root / "val2017" / IMAGES[0])
    im = Image.fromarray(np.ascontiguousarray(np.rot90(upright, 1)))  # stored turned 90 degrees counter-clockwise
    exif = im.getexif()
    exif[0x0112] = 6
    phone = tmp_path / "phone.png"  # lossless: the same pixels once turned
    im.save(phone, exif=exif)
    estimator = PoseEstimator.from_checkpoint(checkpoints["project"], device="cpu")
    expected = estimator(upright)
    assert len(expected) > 0
    got = estimator(phone)
    assert got.image.shape == upright.shape
    np.testing.assert_array_equal(got.keypoints, expected.keypoints)
    out = tmp_path / "out"
    assert (
        main([str(phone), "--checkpoint", str(checkpoints["project"]), "--output-dir", str(out), "--no-progress"]) == 0
    )
    results = json.loads((out / "results.json").read_text())
    assert len(results) == len(expected)
    np.testing.assert_allclose(
        np.reshape([r["keypoints"] for r in results], (-1, 17, 3)), expected.keypoints, atol=1e-3
    )


def test_mmpose_checkpoint_with_its_experiment(coco_root, tmp_path, capsys):
    """``--checkpoint`` an MMPose 0.x file (mmcv ``{"meta", "state_dict"}``, NumPy values in meta, MMPose's names:
    ``AESimpleHead``'s ``final_layer``) with ``--experiment hrnet_w32_ae`` finds the people that the same weights
    saved as an official state dict find."""
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=hrnet_w32_ae", f"data.root={coco_root}", "output_dir=unused"])
    torch.manual_seed(0)
    model = build_model(cfg.model, 17)
    with torch.no_grad():  # random net whose heatmaps pass the detection threshold, so people are found
        torch.nn.init.normal_(model.final_layers[0].weight, std=0.05)
        model.final_layers[0].bias[:17] = 0.3
    state = model.state_dict()
    mmpose = {
        ("keypoint_head.final_layer." + k.rsplit(".", 1)[1] if k.startswith("final_layers.") else "backbone." + k): v
        for k, v in state.items()
    }
    meta = {"mmcv_version": "1.7.0", "config": "model = dict(type='AssociativeEmbedding')", "best": np.float64(0.6)}
    files = {"mmpose": tmp_path / "hrnet_w32_coco_512x512.pth", "official": tmp_path / "official.pth"}
    torch.save({"meta": meta, "state_dict": mmpose}, files["mmpose"])
    torch.save({"state_dict": state}, files["official"])
    src = str(coco_root / "val2017" / IMAGES[0])
    found = {}
    for kind, path in files.items():
        out = tmp_path / kind
        argv = [src, "--checkpoint", str(path), "--experiment", "hrnet_w32_ae", "--output-dir", str(out)]
        assert main([*argv, "--no-flip", "--no-render", "--no-progress", "--device", "cpu"]) == 0
        found[kind] = json.loads((out / "results.json").read_text())
        err = capsys.readouterr().err
        assert ("MMPose 0.x weights (no metrics stored)" in err) is (kind == "mmpose"), err
    assert found["mmpose"], "the biased random net finds people"
    assert found["mmpose"] == found["official"]


def test_infer_runs_the_measured_fast_path_unless_a_precision_is_given(tmp_path, monkeypatch, capsys) -> None:
    """Issue 29: without ``--precision`` infer runs ``auto`` (the path measured fastest on this machine, plain fp32
    unless another beats it by the margin) and says in one line what it picked; ``--precision fp32`` is the exact
    path, not probed."""
    import bottomup.infer as infer
    import bottomup.models.fast as fast
    from bottomup.api import PoseEstimator
    from bottomup.models import HigherHRNet

    monkeypatch.setenv("BOTTOMUP_CACHE", str(tmp_path))
    monkeypatch.setattr(fast, "native_bf16", lambda device: False)
    timings = {"fp32": 100.0, "fp32 channels_last": 80.0, "fp32 channels_last folded": 85.0}
    monkeypatch.setattr(fast, "probe_fast_paths", lambda *a, **k: (timings, {}))
    base = PoseEstimator(HigherHRNet(width=8, stage_modules=(1, 1, 1), blocks_per_branch=1), num_keypoints=17)
    est = infer._with_options(infer._parser().parse_args(["x.jpg"]), base)
    assert (est.precision, est.channels_last, est.fold_bn) == ("fp32", True, False)
    infer._say_fast_path(est)
    line = capsys.readouterr().err.strip()
    assert (
        line.startswith("precision auto on cpu: fp32 channels_last (forward at 128 px: fp32 100 ms")
        and "\n" not in line
    )
    monkeypatch.setattr(fast, "probe_fast_paths", lambda *a, **k: pytest.fail("--precision fp32 is not probed"))
    exact = infer._with_options(infer._parser().parse_args(["x.jpg", "--precision", "fp32"]), base)
    assert exact.fast_path is None and (exact.precision, exact.channels_last, exact.fold_bn) == ("fp32", False, False)

"""Tests of the inference CLI ``python -m bottomup.infer`` on real coco-mini images."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from bottomup.build import build_model
from bottomup.data.io import expand_inputs
from bottomup.engine.checkpoint import find_checkpoint, save_checkpoint
from bottomup.engine.evaluator import coco_keypoint_eval
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
    assert set(by_file) == set(IMAGES[:2])
    for name, people in by_file.items():
        assert all(r["image_id"] == int(Path(name).stem) and r["score"] >= 0.05 for r in people)
        assert _size(out / f"{Path(name).stem}.png") == _size(folder / name)
    assert not (out / "broken.png").exists()


def test_min_score_drops_people(coco_root, checkpoints, tmp_path):
    src = str(coco_root / "val2017" / IMAGES[0])
    out = tmp_path / "out"
    assert main([src, "--checkpoint", str(checkpoints["project"]), "--output-dir", str(out), "--no-progress"]) == 0
    scores = [r["score"] for r in json.loads((out / "results.json").read_text())]
    cut = float(np.median(scores))
    argv = [src, "--checkpoint", str(checkpoints["project"]), "--output-dir", str(out), "--no-progress"]
    assert main([*argv, "--min-score", str(cut), "--no-render"]) == 0
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
